#!/usr/bin/python3
"""A HAR round trip keeps what body_limit cut: `reel record` with a small
body_limit in front of the nginx origin, curl posting and fetching bodies
longer than the limit, `reel export --format har`, `reel import` of that
file into another session. The imported flows must say their bodies were
truncated, with the sizes the wire had, exactly as the captured ones do,
and `reel replay` must refuse to send the partial request body as if it
were whole, as it does for the captured flow.
"""
import json
import os
import tempfile
import unittest

from proxyenv import TMPBASE, Origin, Reel, body, curl, main, stop_class

LIMIT = 1024


class HarRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "cut", "body_limit=%d" % LIMIT,
                        "upstream_trusted_ca=" + cls.origin.ca)
        cls.upload = bytes(range(256)) * 20  # 5120 bytes, not UTF-8: base64 in the HAR
        path = os.path.join(cls.root, "upload.bin")
        with open(path, "wb") as f:
            f.write(cls.upload)
        r = curl(cls.reel, cls.origin.url("/echo?cut"), "--data-binary", "@" + path)
        assert r.returncode == 0, r.stderr
        r = curl(cls.reel, cls.origin.url("/file1m?cut"))
        assert r.stdout == cls.origin.file1m
        cls.captured = cls.reel.wait_flows(2)
        assert len(cls.captured) == 2, cls.captured
        cls.har = os.path.join(cls.root, "cut.har")
        cls.reel.cli("export", "cut", "--format", "har", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def flow(self, session, fid):
        return json.loads(self.reel.cli("flow", session, str(fid), "--json").stdout)

    def pairs(self):
        """(captured flow, imported flow) by URL."""
        back = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual(len(back), 2, back)
        by_url = {f["url"]: f for f in back}
        return [(self.flow("cut", c["id"]), self.flow("back", by_url[c["url"]]["id"]))
                for c in self.captured]

    def test_the_har_says_what_was_cut(self):
        with open(self.har) as f:
            entries = json.load(f)["log"]["entries"]
        extras = sorted(sorted(k for k in e.get("_reel", {}) if k.endswith("_truncated"))
                        for e in entries)
        self.assertEqual(extras, [["request_truncated"], ["response_truncated"]])

    def test_imported_flows_are_truncated_as_captured(self):
        for cap, imp in self.pairs():
            for side in ("request", "response"):
                self.assertEqual(imp[side]["body_truncated"], cap[side]["body_truncated"],
                                 (side, cap["request"]["url"]))
                self.assertEqual(imp[side]["body_size"], cap[side]["body_size"],
                                 (side, cap["request"]["url"]))
                self.assertEqual(body(imp, side), body(cap, side))
        post = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "POST"][0]
        self.assertTrue(post["request"]["body_truncated"])
        self.assertEqual(post["request"]["body_size"], len(self.upload))
        self.assertEqual(body(post, "request"), self.upload[:LIMIT])
        get = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "GET"][0]
        self.assertTrue(get["response"]["body_truncated"])
        self.assertEqual(get["response"]["body_size"], len(self.origin.file1m))
        self.assertEqual(body(get, "response"), self.origin.file1m[:LIMIT])
        # 'reel flow' says so, as it does for the captured flow, with the
        # cause each record knows: body_limit for the capture; for the
        # import, that the HAR held no more (a HAR's cut may be a
        # browser's, and the record does not say which)
        cap = [c for c in self.captured if c["method"] == "POST"][0]
        line = b"(body truncated at %d of %d bytes" % (LIMIT, len(self.upload))
        self.assertIn(line + b" by body_limit)\n",
                      self.reel.cli("flow", "cut", str(cap["id"])).stdout)
        self.assertIn(line + b": the HAR it was imported from held no more)\n",
                      self.reel.cli("flow", "back", str(post["id"])).stdout)

    def test_replay_refuses_the_partial_body(self):
        post = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "POST"][0]
        r = self.reel.cli("replay", "back", str(post["id"]), check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, b"#%d skipped: its request body was not stored whole "
                         b"(%d of %d bytes): the HAR it was imported from held no more\n" % (
                             post["id"], LIMIT, len(self.upload)))

    def test_cut_of_unknown_size(self):
        # _reel.request_truncated without a bodySize: cut, size unknown
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                 "request": {"method": "POST", "url": "http://example.test/p",
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": -1,
                             "postData": {"mimeType": "text/plain", "text": "hello"}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [],
                              "content": {"size": 0, "mimeType": "text/plain"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 0},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
                 "_reel": {"request_truncated": True}}
        path = os.path.join(self.root, "nosize.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        self.reel.cli("import", path, "--into", "nosize")
        text = self.reel.cli("flow", "nosize", "1").stdout
        self.assertIn(b"\n(body truncated at 5 bytes: the HAR it was imported from held no more)\n",
                      text)
        r = self.reel.cli("replay", "nosize", "1", check=False)
        self.assertEqual(r.stdout, b"#1 skipped: its request body was not stored whole (its first "
                         b"5 bytes): the HAR it was imported from held no more\n")

    def test_help_says_a_cut_body_stays_cut(self):
        # 'reel import --help' said an import stores "whole bodies"
        out = self.reel.cli("import", "--help").stdout
        self.assertNotIn(b"whole bodies", out)
        text = b" ".join(out.split())
        self.assertIn(b"is recorded as truncated, with the size the wire had", text)
        self.assertIn(b"_reel.request_truncated", text)


if __name__ == "__main__":
    main()
