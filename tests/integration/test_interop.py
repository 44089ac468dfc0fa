#!/usr/bin/python3
"""Interop: a session is readable without reel.

docs/examples/read_spool.py (protoc + python3-protobuf + python3-zstandard,
from schema/flow.proto and docs/format.md alone) must print, for every flow,
exactly the JSON of `reel flow --json`; the sqlite3 shell must open
session.db and see the documented tables.

Environment: REEL (the reel binary), REEL_SOURCE_DIR (repository root),
REEL_TEST_TMP (scratch directory). Run with /usr/bin/python3, where Debian's
python3-protobuf and python3-zstandard are importable.
"""
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

REEL = os.environ.get("REEL", "reel")
SRC = os.environ.get("REEL_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(SRC, "docs", "examples", "read_spool.py")
FIXTURE = os.path.join(SRC, "tests", "data", "har", "chromium.har")
TIMEOUT = 120


def run(argv, check=True):
    p = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv!r} exited {p.returncode}:\n{p.stderr.decode(errors='replace')}")
    return p


def har_entry(method, url, status, req_headers=(), resp_headers=(), post=None, content=None,
              start="2026-02-03T04:05:06.000Z"):
    def hs(pairs):
        return [{"name": n, "value": v} for n, v in pairs]
    entry = {
        "startedDateTime": start,
        "time": 12.5,
        "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1",
                    "headers": hs(req_headers), "queryString": [], "cookies": [],
                    "headersSize": -1, "bodySize": -1},
        "response": {"status": status, "statusText": "OK" if status == 200 else "",
                     "httpVersion": "HTTP/1.1", "headers": hs(resp_headers), "cookies": [],
                     "content": content or {"size": 0, "mimeType": ""}, "redirectURL": "",
                     "headersSize": -1, "bodySize": -1},
        "cache": {},
        "timings": {"blocked": 1, "dns": -1, "connect": 2.25, "send": 0.5, "wait": 7,
                    "receive": 1.75, "ssl": -1},
    }
    if post is not None:
        entry["request"]["postData"] = post
    return entry


def make_har(path):
    """A HAR with a binary base64 body large enough to span several spool
    frames, a POST body, a gzip-coded (decoded in HAR) body, modify_body's
    records of both bodies and odd ports."""
    rnd = random.Random(7)
    big = bytes(rnd.randrange(256) for _ in range(300 * 1024))
    small_bin = bytes(range(256)) * 3
    entries = [
        har_entry("GET", "http://bin.example.test:8081/blob.bin", 200,
                  resp_headers=[("Content-Type", "application/octet-stream")],
                  content={"size": len(big), "mimeType": "application/octet-stream",
                           "text": base64.b64encode(big).decode(), "encoding": "base64"}),
        har_entry("POST", "https://api.example.test/v1/items?x=1", 200,
                  req_headers=[("Content-Type", "application/json"), ("X-Dup", "a"),
                               ("X-Dup", "b")],
                  post={"mimeType": "application/json", "text": '{"name":"caf\u00e9","n":1}'},
                  resp_headers=[("Content-Type", "application/json"),
                                ("Content-Encoding", "gzip")],
                  content={"size": 11, "mimeType": "application/json", "text": '{"ok":true}'},
                  start="2026-02-03T04:05:06.100Z"),
        har_entry("PUT", "https://[2001:db8::2]/upload", 201,
                  post={"mimeType": "application/octet-stream",
                        "text": base64.b64encode(small_bin).decode(), "encoding": "base64"},
                  content={"size": 0, "mimeType": ""}, start="2026-02-03T04:05:06.200Z"),
        har_entry("GET", "https://blocked.example.test/t.js", 0,
                  start="2026-02-03T04:05:06.300Z"),
    ]
    # what modify_body rules did to the POST's request and response bodies:
    # two body_edit records, told apart by their response flag
    entries[1]["_reel"] = {
        "request_body_edit": {"rules": ["|caf\u00e9|cafe"], "replacements": 1, "sent_size": 23,
                              "decoded": False, "not_applied": None,
                              # the body the origin got, its first 8 bytes kept
                              "sent_body_b64": "eyJvcmRlciI6", "sent_body_truncated": True},
        "response_body_edit": {"rules": ["|true|false"], "replacements": 0, "sent_size": 0,
                               "decoded": False, "not_applied": "the body is over 8 MiB"}}
    har = {"log": {"version": "1.2", "creator": {"name": "test_interop", "version": "1"},
                   "entries": entries}}
    with open(path, "w") as f:
        json.dump(har, f)


class Interop(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        base = os.environ.get("REEL_TEST_TMP") or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="interop-", dir=base)
        cls.home = os.path.join(cls.tmp, "home")
        cls.session = "interop"
        cls.dir = os.path.join(cls.home, cls.session)
        hars = [FIXTURE] if os.path.exists(FIXTURE) else []
        generated = os.path.join(cls.tmp, "generated.har")
        make_har(generated)
        hars.append(generated)
        for har in hars:  # two imports: later flows land in later frames
            run([REEL, "import", har, "--into", cls.session, "--home", cls.home])
        out = run([REEL, "flows", "--home", cls.home, "--json", cls.session]).stdout
        flows = json.loads(out)
        if isinstance(flows, dict):
            flows = flows.get("flows", [])
        cls.ids = [f["id"] for f in flows]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def sql(self, query):
        return run(["sqlite3", os.path.join(self.dir, "session.db"), query]).stdout.decode()

    def test_flows_match_reel_flow_json(self):
        self.assertGreaterEqual(len(self.ids), 4)
        for i in self.ids:
            with self.subTest(flow=i):
                want = json.loads(run([REEL, "flow", "--home", self.home, self.session, str(i),
                                       "--json"]).stdout)
                got = json.loads(run(["/usr/bin/python3", SCRIPT, self.dir, "--flow", str(i),
                                      "--json"]).stdout)
                # Known holes come from the index (repair finds them): none here.
                self.assertEqual(want.pop("damage"), [])
                self.assertEqual(got, want)

    def test_interesting_flows_present(self):
        bodies = [json.loads(run(["/usr/bin/python3", SCRIPT, self.dir, "--flow", str(i),
                                  "--json"]).stdout) for i in self.ids]
        sizes = [f["response"]["body_size"] for f in bodies if f["response"]]
        self.assertIn(300 * 1024, sizes)  # the big binary body, over several frames
        self.assertTrue(any(f["state"] == "error" for f in bodies))
        self.assertTrue(any(f["request"]["method"] == "POST" and f["request"]["body_size"] > 0
                            for f in bodies))
        # a flow with both body_edit records, each under its own key
        self.assertTrue(any(f["request_body_edit"] and f["request_body_edit"]["replacements"] == 1
                            and f["response_body_edit"]
                            and f["response_body_edit"]["not_applied"] for f in bodies))

    def test_list(self):
        out = run(["/usr/bin/python3", SCRIPT, self.dir, "--json"]).stdout
        listed = json.loads(out)
        self.assertEqual([f["id"] for f in listed], sorted(self.ids))
        text = run(["/usr/bin/python3", SCRIPT, self.dir]).stdout.decode().splitlines()
        self.assertEqual(len(text), len(self.ids))

    def test_missing_flow_fails(self):
        p = run(["/usr/bin/python3", SCRIPT, self.dir, "--flow", "999999", "--json"],
                check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_several_frames(self):
        self.assertGreater(int(self.sql("SELECT count(*) FROM frames")), 1)

    def test_sqlite_shell(self):
        tables = self.sql(".tables").split()
        for t in ("flows", "annotations", "tags", "config_overlay", "meta", "frames",
                  "flow_frames", "marks"):
            self.assertIn(t, tables)
        self.assertEqual(int(self.sql("SELECT count(*) FROM flows")), len(self.ids))
        migrations = [n for n in os.listdir(os.path.join(SRC, "schema")) if n.endswith(".sql")]
        self.assertEqual(int(self.sql("PRAGMA user_version")), len(migrations))


class CraftedSpool(unittest.TestCase):
    maxDiff = None

    """Records a HAR import never writes, put in a spool by hand (two
    segments, several frames) and indexed by `reel repair`: a tunnel (bodies
    without heads), header bytes that are not UTF-8 or hold a NUL, an empty
    and an asterisk target, a non-default port, a truncated body, an error
    with an empty message, flows cut off (no end record), server
    connections with and without their set-up (opened_us ...), and a
    request's body_edit."""

    @classmethod
    def setUpClass(cls):
        base = os.environ.get("REEL_TEST_TMP") or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        cls.tmp = tempfile.mkdtemp(prefix="interop-craft-", dir=base)
        cls.home = os.path.join(cls.tmp, "home")
        cls.session = "crafted"
        cls.dir = os.path.join(cls.home, cls.session)
        gen = os.path.join(cls.tmp, "gen")
        os.mkdir(gen)
        run(["protoc", "--python_out=" + gen, "-I", os.path.join(SRC, "schema"), "flow.proto"])
        sys.path.insert(0, gen)
        try:
            import flow_pb2 as pb
        finally:
            sys.path.remove(gen)
        import zstandard
        from google.protobuf.internal.encoder import _VarintBytes

        def rec(fid, t, **event):
            b = pb.Record(flow_id=fid, time_us=t, **event).SerializeToString()
            return _VarintBytes(len(b)) + b

        H, T0 = pb.Header, 1767323045000000
        segments = [[  # segment -> blocks -> records
            rec(1, T0, start=pb.FlowStart(uuid="u-1", client_addr="127.0.0.1:5000",
                                          server_addr="192.0.2.1:80", source="proxy"))
            + rec(1, T0 + 1, request_head=pb.RequestHead(
                method=b"OPTIONS", scheme="http", host=b"h.test", port=80, target=b"",
                http_version="HTTP/1.1",
                headers=[H(name=b"X-Bin", value=b"\xff\xfe\x80"), H(name=b"x-nul", value=b"a\0b"),
                         H(name=b"x-utf8", value="caf\u00e9".encode())]))
            # its connection's set-up (opened_us), and flow 4's not known
            + rec(1, T0 + 1, server_conn=pb.ServerConn(
                conn_id=3, address="192.0.2.1:80", reused=True, opened_us=T0 - 900,
                dns_us=0, connect_us=250, ssl_us=-1))
            + rec(2, T0 + 2, start=pb.FlowStart(uuid="u-2", kind=pb.FLOW_KIND_TUNNEL,
                                                server_addr="[::1]:443", source="proxy"))
            + rec(2, T0 + 3, request_body=pb.BodyChunk(data=b"\x16\x03\x01hello")),
            rec(1, T0 + 4, response_head=pb.ResponseHead(
                status=200, reason=b"OK", http_version="HTTP/1.1",
                headers=[H(name=b"Content-Encoding", value=b"gzip")]))
            + rec(1, T0 + 5, response_body=pb.BodyChunk(data=b"\x1f\x8b\x08cut"))
            + rec(2, T0 + 6, response_body=pb.BodyChunk(data=b"\x17\x03\x03")),
        ], [
            rec(1, T0 + 7, response_body=pb.BodyChunk(data=b"more"))
            + rec(1, T0 + 8, end=pb.FlowEnd(response_body_size=5000, response_truncated=True,
                                            request_end_us=T0 + 2, response_start_us=T0 + 4,
                                            response_excess=11))
            + rec(3, T0 + 9, start=pb.FlowStart(uuid="u-3"))
            + rec(3, T0 + 10, request_head=pb.RequestHead(
                method=b"OPTIONS", scheme="https", host=b"x.test", port=8443, target=b"*",
                absolute_form=True)),
            rec(4, T0 + 11, start=pb.FlowStart(uuid="u-4", source="proxy"))
            + rec(4, T0 + 12, request_body=pb.BodyChunk(data=b"abc"))
            # what modify_body did to the request body (response not set)
            + rec(4, T0 + 12, body_edit=pb.BodyEdit(rules=["|b|B"], replacements=1, sent_size=3))
            + rec(4, T0 + 12, server_conn=pb.ServerConn(conn_id=9, address="192.0.2.9:80"))
            # a response reel sent itself, and an error with what is known
            + rec(4, T0 + 13, response_head=pb.ResponseHead(
                status=502, reason=b"Bad Gateway", http_version="HTTP/1.1", generated=True))
            + rec(4, T0 + 14, error=pb.FlowError(
                message="", request_body_size=3, server_addr="192.0.2.9:80",
                request_end_us=T0 + 12, response_start_us=T0 + 13, request_body_dropped=7,
                timings=pb.Timings(blocked_us=-1, dns_us=1, connect_us=2, ssl_us=-1,
                                   send_us=3, wait_us=4, receive_us=-1))),
        ]]
        run([REEL, "new", cls.session, "--home", cls.home])
        z = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True)
        for n, blocks in enumerate(segments, 1):
            with open(os.path.join(cls.dir, "spool", "%08d.zst" % n), "wb") as f:
                for block in blocks:
                    f.write(z.compress(block))
        run([REEL, "repair", cls.session, "--home", cls.home])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_flows_match_reel_flow_json(self):
        for i in (1, 2, 3, 4):
            with self.subTest(flow=i):
                want = json.loads(run([REEL, "flow", "--home", self.home, self.session, str(i),
                                       "--json"]).stdout)
                got = json.loads(run(["/usr/bin/python3", SCRIPT, self.dir, "--flow", str(i),
                                      "--json"]).stdout)
                # flows 2 and 3 had no end: repair wrote one, interrupted,
                # where the spool ended, which the reader reads as reel does
                self.assertEqual(want["state"], "interrupted" if i in (2, 3) else got["state"])
                self.assertEqual(want.pop("damage"), [])  # index only, as above
                self.assertEqual(got, want)
                if i == 4:  # the request's body_edit, not the response's
                    self.assertEqual((want["request_body_edit"]["rules"],
                                      want["response_body_edit"]), (["|b|B"], None))


if __name__ == "__main__":
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    # A failing subTest is one entry each: count failed test methods.
    failed = len({getattr(t, "test_case", t).id() for t, _ in result.failures + result.errors})
    passed = result.testsRun - failed - len(result.skipped)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or result.testsRun == 0 else 0)
