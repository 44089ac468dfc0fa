#!/usr/bin/python3
"""Heads as large as reel accepts are recorded whole; larger ones are
refused; none is ever dropped from the record in silence.

A head is recorded as one spool record, and a record holds at most 512
KiB. max_head_size used to go up to 1 MiB: a request head of 600 KB went to
the origin and back to the client, while its record was dropped ("record
too large for a block; dropped" on stderr) and the flow had no method, URL
or headers, with verify passing. Now max_head_size stops at 248 KiB, which
every head fits in, and `reel import` refuses an entry whose head does not
fit instead of importing the flow without it.

A raw-socket origin (nginx refuses heads over 32 KiB) answers each request
with "ok" and, when the request asks with X-Resp-Pad, a response field of
that many bytes.
"""
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import unittest

from proxyenv import REEL, TMPBASE, Reel, main, raw, run, stop_class

FIELD = 60000  # each big field: under Python's and curl's own line limits


class RawOrigin:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c):
        c.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            m = re.search(rb"\r\nX-Resp-Pad: (\d+)\r\n", data)
            pad = b""
            if m:
                n = int(m.group(1))
                pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * FIELD)
                               for i in range(n // FIELD))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n" + pad +
                      b"\r\nok")
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.sock.close()


def big_request(port, n, resp_pad=0, path=b"/big"):
    fields = b"".join(b"X-Big-%d: %s\r\n" % (i, b"%d" % (i % 10) * FIELD) for i in range(n))
    if resp_pad:
        fields += b"X-Resp-Pad: %d\r\n" % resp_pad
    return (b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (port, path, port) +
            fields + b"Connection: close\r\n\r\n")


class BigHeads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bighead.", dir=TMPBASE)
        cls.origin = RawOrigin()
        cls.reel = Reel(cls.root, "big", "max_head_size=248k")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def one_flow(self, path):
        flows = self.reel.wait_flows(1, "~u %s$" % path)
        self.assertEqual(len(flows), 1, flows)
        return flows[0]

    def assert_clean(self):
        self.assertNotIn("too large", self.reel.log())
        self.assertNotIn("dropped", self.reel.log())
        self.assertEqual(self.reel.flows("~damaged"), [])

    def test_max_head_size_stops_where_a_record_would_not_hold_it(self):
        """The tester's setting: 1m was accepted, and heads over 512 KiB were
        then dropped from the record."""
        r = self.reel.cli("config", "big", "set", "max_head_size", "1m", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"max_head_size", r.stderr)
        self.assertIn(b"248 KiB", r.stderr)
        r = self.reel.cli("config", "big", "set", "max_head_size", "249k", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"248 KiB", self.reel.cli("config", "--help").stdout)

    def test_tester_case_never_drops_in_silence(self):
        """`reel record --set max_head_size=1m` and ten 60 KB fields: reel
        refuses the setting at start (before the fix it ran, forwarded the
        request and recorded the flow without its request)."""
        root = os.path.join(self.root, "s5")
        os.makedirs(root)
        try:
            reel = Reel(root, "s5", "max_head_size=1m")
        except RuntimeError as e:
            self.assertIn("max_head_size", str(e))
            self.assertIn("248 KiB", str(e))
            return
        try:  # the setting was taken: the head must be refused or recorded whole
            out = raw(reel.port, big_request(self.origin.port, 10, path=b"/s5"))
            flows = reel.wait_flows(1, "~u /s5$")
            self.assertEqual(len(flows), 1)
            if not out.startswith(b"HTTP/1.1 431 "):
                req = reel.flow(flows[0]["id"])["request"]
                self.assertEqual(req["method"], "GET")
                self.assertEqual(len(req["headers"]), 12)
            self.assertNotIn("too large", reel.log())
        finally:
            reel.stop()

    def test_head_at_the_limit_is_recorded_whole(self):
        """Four 60 KB fields (240 KB, under 248 KiB) pass and are recorded
        field for field."""
        out = raw(self.reel.port, big_request(self.origin.port, 4, path=b"/whole"))
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        f = self.one_flow("/whole")
        self.assertEqual(f["status"], 200)
        req = self.reel.flow(f["id"])["request"]
        self.assertEqual(req["method"], "GET")
        self.assertTrue(req["url"].endswith("/whole"), req["url"])
        big = [h for h in req["headers"] if h[0].startswith("X-Big-")]
        self.assertEqual([len(h[1]) for h in big], [FIELD] * 4)
        self.assert_clean()

    def test_head_over_the_limit_is_refused_and_recorded(self):
        """Ten 60 KB fields: 431, and the refusal is a flow with its method
        and URL (never a flow without them)."""
        out = raw(self.reel.port, big_request(self.origin.port, 10, path=b"/over"))
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])
        f = self.one_flow("/over")
        self.assertEqual(f["status"], 431)
        self.assertEqual(f["method"], "GET")
        self.assert_clean()

    def test_response_heads(self):
        """Response heads are held to 64 KiB whatever max_head_size says: a
        60 KB one is recorded whole; a 120 KB one is refused (502), and its
        flow says why."""
        out = raw(self.reel.port, big_request(self.origin.port, 0, FIELD, path=b"/rwhole"))
        self.assertTrue(out.startswith(b"HTTP/1.1 200 "), out[:100])
        f = self.one_flow("/rwhole")
        resp = self.reel.flow(f["id"])["response"]
        self.assertEqual([len(h[1]) for h in resp["headers"] if h[0].startswith("X-Pad-")],
                         [FIELD])
        out = raw(self.reel.port, big_request(self.origin.port, 0, 2 * FIELD, path=b"/rover"))
        self.assertTrue(out.startswith(b"HTTP/1.1 502 "), out[:100])
        self.assertIn(b"header section too large", out)
        f = self.one_flow("/rover")
        self.assertEqual(f["status"], 502)
        self.assertEqual(f["method"], "GET")
        self.assert_clean()
        self.reel.cli("verify", "big")


class BigImports(unittest.TestCase):
    """`reel import` of an entry whose head cannot be one record: refused,
    naming the entry, exit status non-zero, nothing imported (before the
    fix: "imported 1 flow", rc 0, and the flow had no request)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bigimport.", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home", XDG_DATA_HOME=cls.root + "/data",
                       XDG_CONFIG_HOME=cls.root + "/config")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def reel(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check)

    def har(self, name, url_pad=0, req_field=0, resp_field=0, entries=1):
        def entry(i):
            return {
                "startedDateTime": "2026-01-01T00:00:0%d.000Z" % i, "time": 1,
                "request": {"method": "GET", "url": "http://a.test/%d/%s" % (i, "x" * url_pad),
                            "httpVersion": "HTTP/1.1",
                            "headers": [{"name": "Host", "value": "a.test"}] +
                            ([{"name": "X-H", "value": "v" * req_field}] if req_field else []),
                            "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
                "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                             "headers": [{"name": "X-R", "value": "r" * resp_field}]
                             if resp_field else [],
                             "cookies": [], "content": {"size": 2, "mimeType": "text/plain",
                                                        "text": "hi"},
                             "redirectURL": "", "headersSize": -1, "bodySize": 2},
                "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}}
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry(i) for i in range(entries)]}}, f)
        return path

    def refused(self, path, session, member, what):
        r = self.reel("import", path, "--into", session, check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        err = r.stderr.decode()
        self.assertIn(member, err)
        self.assertIn("its %s would take" % what, err)
        self.assertIn("nothing was imported", err)
        self.assertFalse(os.path.exists(os.path.join(self.root, "home", session)), session)

    def test_url_too_large(self):
        self.refused(self.har("url.har", url_pad=600000), "big-url", "entries[0].request", "request head")

    def test_request_field_too_large(self):
        self.refused(self.har("req.har", req_field=600000), "big-req", "entries[0].request",
                     "request head")

    def test_response_field_too_large(self):
        self.refused(self.har("resp.har", resp_field=600000), "big-resp", "entries[0].response",
                     "response head")

    def test_all_or_nothing_into_a_session_with_flows(self):
        """The second entry is refused: the first is removed again, and the
        flows the session had stay."""
        self.reel("import", self.har("ok.har"), "--into", "keep")
        path = self.har("two.har", entries=2)
        with open(path) as f:
            doc = json.load(f)
        doc["log"]["entries"][1]["request"]["url"] += "y" * 600000
        with open(path, "w") as f:
            json.dump(doc, f)
        r = self.reel("import", path, "--into", "keep", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"entries[1].request", r.stderr)
        self.assertEqual(len(json.loads(self.reel("flows", "keep", "--json").stdout)), 1)
        self.reel("verify", "keep")

    def test_large_head_that_fits_is_imported_whole(self):
        path = self.har("fits.har", url_pad=400000)
        self.reel("import", path, "--into", "fits")
        flows = json.loads(self.reel("flows", "fits", "--json").stdout)
        self.assertEqual(len(flows), 1)
        fl = json.loads(self.reel("flow", "fits", str(flows[0]["id"]), "--json").stdout)
        self.assertEqual(len(fl["request"]["url"]), len("http://a.test/0/") + 400000)
        self.assertEqual(fl["response"]["status"], 200)


if __name__ == "__main__":
    main()
