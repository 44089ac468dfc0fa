#!/usr/bin/python3
"""A HAR from `reel export` read by a real consumer (issue 12).

Debian's headless chromium (playwright-core from npm, as in
test_browser_websocket.py) loads a page from nginx through `reel record`:
a stylesheet, a PNG, text nginx gzips, JSON with a query string, and a
form POST. `reel export --format har` writes the session; the origin is
stopped; Playwright's routeFromHAR (notFound: abort, so nothing may come
from the network) serves the same page to a fresh browser context from
that HAR alone. The page must see the same bytes, text, JSON, styles, image
and POST answer as the first time.

Prints "skipped: ..." and exits 0 when chromium or node/npm are missing.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from proxyenv import REEL, TMPBASE, Origin, Reel, run, stop_class  # noqa: E402
from test_browser_websocket import install_playwright, main  # noqa: E402


def png(w, h):
    """A w x h RGB PNG (gradient), made here so the test needs no file."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\0" + bytes((x * 7 + y * 3) & 255 for x in range(w) for _ in range(3))
                   for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class BrowserHarTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node_modules = install_playwright()
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="browser-har.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        www = cls.origin.www
        shutil.copy(os.path.join(HERE, "har_page.html"), os.path.join(www, "har_page.html"))
        with open(os.path.join(www, "har_style.css"), "w") as f:
            f.write("#p { color: rgb(1, 2, 3); }\n")
        os.makedirs(os.path.join(www, "r"))
        with open(os.path.join(www, "r", "img.png"), "wb") as f:
            f.write(png(37, 11))
        with open(os.path.join(www, "data.json"), "w") as f:
            json.dump({"name": "reel", "list": [1, 2, 3], "unicode": "\u00e9\u4e2d"}, f)
        cls.reel = Reel(cls.root, "har")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_har_replayed_by_playwright(self):
        r = self.reel
        url = self.origin.url("/har_page.html")
        env = dict(os.environ, NODE_PATH=self.node_modules)
        p = subprocess.run(["node", os.path.join(HERE, "drive.cjs"), url, r.proxy, "30000"],
                           env=env, capture_output=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-3000:])
        first = json.loads(p.stdout)
        self.assertNotIn("error", first, first)
        self.assertEqual(first["post"], {"status": 200, "text": "posted\n"})
        self.assertEqual(first["color"], "rgb(1, 2, 3)")
        # page, stylesheet, the image twice, text, JSON, POST
        r.wait_flows(7, "~d 127.0.0.1 & !~u favicon", timeout=15)
        har = os.path.join(self.root, "page.har")
        run([REEL, "export", "har", "--format", "har", "-o", har], env=r.env)
        with open(har) as f:
            entries = json.load(f)["log"]["entries"]
        self.assertGreaterEqual(len(entries), 7)
        gz = [e for e in entries if e["request"]["url"].endswith("/text.txt")]
        self.assertEqual(len(gz), 1)
        self.assertIn(["content-encoding", "gzip"],
                      [[h["name"].lower(), h["value"]] for h in gz[0]["response"]["headers"]])
        self.origin.stop()  # from now on only the HAR answers

        p = subprocess.run(["node", os.path.join(HERE, "har_replay.cjs"), har, url], env=env,
                           capture_output=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-3000:])
        second = json.loads(p.stdout)
        self.assertNotIn("error", second, second)
        self.assertEqual(second.pop("failed"), [])
        self.assertEqual(second.pop("img_width"), 37)
        self.assertEqual(second, first)


if __name__ == "__main__":
    main()
