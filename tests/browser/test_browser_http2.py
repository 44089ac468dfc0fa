#!/usr/bin/python3
"""Chromium through reel over HTTP/2 (issue 11).

Debian's headless chromium (playwright-core from npm, as in
test_browser_websocket.py) loads an HTTPS page from nginx (h2 on) through
`reel record`; reel intercepts the TLS connection and, Chromium and the
origin both offering h2, speaks HTTP/2 to Chromium. The page fetches 20 resources of known sizes at once (multiplexed on
the one connection) and POSTs a body. The page must get every byte, and
the session must hold each stream as its own flow marked HTTP/2.0 on one
client connection, with the exact bodies.

Prints "skipped: ..." and exits 0 when chromium, node/npm or certutil are
not installed (scripts/bootstrap --test installs them).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from proxyenv import TMPBASE, Origin, Reel, body, stop_class  # noqa: E402
from test_browser_websocket import install_playwright, main, trust_ca  # noqa: E402

SIZES = [0, 1, 100, 16383, 16384, 16385, 65535, 65536, 100000, 1 << 20] + [5000] * 10


def resource(i, n):
    return bytes((k * 31 + i) & 255 for k in range(n))


class BrowserHttp2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node_modules = install_playwright()
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="browser-h2.", dir=TMPBASE)
        # nginx with h2 on its TLS port: reel offers Chromium h2 because the
        # origin speaks it (ALPN mirrored)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        www = cls.origin.www
        shutil.copy(os.path.join(HERE, "h2_page.html"), os.path.join(www, "h2_page.html"))
        os.makedirs(os.path.join(www, "r"))
        for i, n in enumerate(SIZES):
            with open(os.path.join(www, "r", str(i)), "wb") as f:
                f.write(resource(i, n))
        cls.reel = Reel(cls.root, "browser", "upstream_trusted_ca=" + cls.origin.ca)
        cls.home = trust_ca(os.path.join(cls.root, "chromium-home"), cls.reel.ca)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_chromium_page_over_http2(self):
        r = self.reel
        url = "https://localhost:%d/h2_page.html?sizes=%s" % (self.origin.https_port,
                                                             json.dumps(SIZES).replace(" ", ""))
        env = dict(os.environ, HOME=self.home, NODE_PATH=self.node_modules)
        t0 = time.time()
        p = subprocess.run(["node", os.path.join(HERE, "drive.cjs"), url, r.proxy, "45000"],
                           env=env, capture_output=True, timeout=90)
        sys.stderr.write("chromium run: %.1f s\n" % (time.time() - t0))
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-3000:])
        res = json.loads(p.stdout)
        self.assertNotIn("error", res, res)
        self.assertEqual(res["post"], "posted\n")
        for got in res["results"]:
            i = got["i"]
            self.assertEqual(got["status"], 200)
            self.assertEqual(got["len"], SIZES[i])
            self.assertEqual(got["sha256"], hashlib.sha256(resource(i, SIZES[i])).hexdigest())

        flows = r.wait_flows(len(SIZES) + 2, "~d localhost", timeout=15)
        full = [r.flow(f["id"]) for f in flows]
        h2 = [f for f in full if f["request"]["http_version"] == "HTTP/2.0"]
        # the page, every resource and the POST (a favicon request may add one)
        self.assertGreaterEqual(len(h2), len(SIZES) + 2, [f["request"]["target"] for f in full])
        self.assertEqual(len({f["client_conn"] for f in h2}), 1)
        self.assertEqual(len({f["stream_id"] for f in h2}), len(h2))
        # HTTP/2 to nginx too (ALPN mirrored), every stream on one shared
        # connection to it, recorded as nginx answered
        self.assertEqual({f["response"]["http_version"] for f in h2}, {"HTTP/2.0"})
        self.assertEqual(len({f["server_conn"]["conn_id"] for f in h2}), 1)
        seen, posted = 0, False
        for f in h2:
            t = f["request"]["target"]
            self.assertEqual(f["state"], "complete", f.get("error"))
            if t.startswith("/r/"):
                i = int(t[3:].split("?")[0])
                self.assertEqual(body(f, "response"), resource(i, SIZES[i]), t)
                seen += 1
            elif t == "/upload":
                # (/upload, not /echo: nginx answers /echo without reading
                # the body, and when its answer came first reel rightly
                # ended the upload early, with none of the body recorded)
                self.assertEqual(body(f, "request"), b"x" * 100000)
                self.assertEqual(f["request"]["method"], "POST")
                posted = True
        self.assertEqual(seen, len(SIZES))
        self.assertTrue(posted)


if __name__ == "__main__":
    main()
