#!/usr/bin/python3
"""reel diff on two imported flows with known differences: the exact lines
for people (url, status, headers changed/removed/added with repeated ones,
the JSON bodies pretty-printed and diffed), --json, SESSION1:ID1 SESSION2:ID2
across sessions, colour on a terminal only, and the errors; and bodies not
stored whole (body_limit), recorded through a real proxy and replayed."""
import json
import os
import pty
import re
import shutil
import tempfile
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, curl, main, run, ws_echo_server, ws_echo_through


def entry(url, reqh, status, text, resph, body):
    return {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
            "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1",
                        "headers": [{"name": n, "value": v} for n, v in reqh], "queryString": [],
                        "cookies": [], "headersSize": -1, "bodySize": -1},
            "response": {"status": status, "statusText": text, "httpVersion": "HTTP/1.1",
                         "headers": [{"name": n, "value": v} for n, v in resph], "cookies": [],
                         "content": {"size": len(body), "mimeType": "application/json", "text": body},
                         "redirectURL": "", "headersSize": -1, "bodySize": len(body)},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}


HAR = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [
    entry("https://api.test/items?x=1", [("Accept", "a"), ("X-Old", "o")], 200, "OK",
          [("Content-Type", "application/json"), ("Set-Cookie", "s=1"), ("Set-Cookie", "t=2")],
          '{"a": 1, "b": [1, 2], "c": "same"}'),
    entry("https://api.test/items?x=2", [("accept", "b"), ("X-New", "n")], 404, "Not Found",
          [("Content-Type", "application/json"), ("Set-Cookie", "s=1"), ("Set-Cookie", "t=3")],
          '{"a": 2, "b": [1, 2], "c": "same"}'),
    entry("https://api.test/items?x=1", [("Accept", "a"), ("X-Old", "o")], 200, "OK",
          [("Content-Type", "application/json"), ("Set-Cookie", "s=1"), ("Set-Cookie", "t=2")],
          '{"a":1,"b":[1,2],"c":"same"}'),
]}}

EXPECTED = """\
--- d #1 GET https://api.test/items?x=1
+++ d #2 GET https://api.test/items?x=2
url: https://api.test/items?x=1 -> https://api.test/items?x=2
status: 200 OK -> 404 Not Found
request headers:
  ~ Accept: a -> b
  - X-Old: o
  + X-New: n
response headers:
  ~ Set-Cookie: s=1, t=2 -> s=1, t=3
response body (json, 34 bytes -> json, 34 bytes):
@@ -1,5 +1,5 @@
 {
-  "a": 1,
+  "a": 2,
   "b": [
     1,
     2
"""


class Diff(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-diff-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home", NO_COLOR="")
        del cls.env["NO_COLOR"]
        har = os.path.join(cls.root, "d.har")
        with open(har, "w") as f:
            json.dump(HAR, f)
        cls.reel("import", har, "--into", "d")
        cls.reel("import", har, "--into", "d2")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    @classmethod
    def reel(cls, *args, check=True):
        return run([REEL] + list(args), env=cls.env, check=check)

    def test_lines(self):
        r = self.reel("diff", "d", "1", "2")
        self.assertEqual(r.stdout.decode(), EXPECTED)
        self.assertNotIn(b"\033[", r.stdout)  # no colour into a pipe
        # the other way round, with one line of context
        r = self.reel("diff", "d", "2", "1", "--context", "1")
        out = r.stdout.decode().splitlines()
        self.assertIn("  ~ accept: b -> a", out)
        self.assertIn("  - X-New: n", out)
        self.assertIn("  + X-Old: o", out)
        self.assertEqual(out[-5:], ["@@ -1,3 +1,3 @@", " {", '-  "a": 2,', '+  "a": 1,', '   "b": ['])

    def test_same_once_pretty_printed(self):
        r = self.reel("diff", "d", "1", "3")
        self.assertEqual(r.stdout.decode().splitlines()[2:], [
            "response body (json, 34 bytes -> json, 28 bytes): the same once pretty-printed"])
        r = self.reel("diff", "d", "1", "1")
        self.assertEqual(r.stdout.decode().splitlines()[2:], ["no differences"])

    def test_across_sessions_json(self):
        r = self.reel("diff", "d:1", "d2:2", "--json")
        j = json.loads(r.stdout)
        self.assertEqual((j["a"]["session"], j["a"]["id"], j["b"]["session"], j["b"]["id"]), ("d", 1, "d2", 2))
        self.assertFalse(j["same"])
        self.assertEqual(j["changes"], ["url", "status", "request.headers", "response.headers", "response.body"])
        h = j["request"]["headers"]
        self.assertEqual(h["added"], [["X-New", "n"]])
        self.assertEqual(h["removed"], [["X-Old", "o"]])
        self.assertEqual(h["changed"], [{"name": "Accept", "a": ["a"], "b": ["b"]}])
        self.assertEqual(j["response"]["headers"]["changed"],
                         [{"name": "Set-Cookie", "a": ["s=1", "t=2"], "b": ["s=1", "t=3"]}])
        body = j["response"]["body"]
        self.assertEqual((body["same"], body["view_a"], body["view_b"]), (False, "json", "json"))
        self.assertTrue(body["diff"].startswith('@@ -1,5 +1,5 @@\n {\n-  "a": 1,\n+  "a": 2,\n'))
        self.assertTrue(j["request"]["body"]["same"])
        self.assertTrue(json.loads(self.reel("diff", "d:1", "d2:1", "--json").stdout)["same"])

    def test_colour_on_terminal(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(REEL, [REEL, "diff", "d", "1", "2"], self.env)
        out = b""
        while True:
            try:
                d = os.read(fd, 65536)
            except OSError:
                break
            if not d:
                break
            out += d
        os.waitpid(pid, 0)
        self.assertIn(b"\033[31m-  \"a\": 1,\033[0m", out)
        self.assertIn(b"\033[32m+  \"a\": 2,\033[0m", out)

    def test_errors(self):
        r = self.reel("diff", "d", "1", "9", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no flow 9 in session 'd'", r.stderr)
        r = self.reel("diff", "d", "1", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.reel("diff", "nosuch:1", "d:1", check=False)
        self.assertEqual(r.returncode, 1)


class NotWhole(unittest.TestCase):
    """Bodies body_limit cut: compared only in the bytes both sides stored,
    never "the same", never changed past the stored prefix; sizes are the
    wire's."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-diffcut-", dir=TMPBASE)
        cls.origin = o = Origin(cls.root)
        cls.reel = Reel(cls.root, "d1", "body_limit=10")
        try:
            # chunked, so that the heads are the same and only the bodies differ
            for body in ('{"name": "alpha", "n": 12345}', '{"name": "alpha", "n": 12345678}',
                         '{"name": "alpha", "n": 12345}', '{"nome": "alpha", "n": 12345}',
                         "hello world, 15"[:15]):
                curl(cls.reel, "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: text/plain",
                     "--data-binary", body, o.url("/echo"))
            cls.reel.wait_flows(5)
        finally:
            code = cls.reel.stop()
        assert code == 0, cls.reel.log()
        # The reverse: a session stored whole, replayed under body_limit 10.
        cls.reel.cli("new", "s1")
        cls.rec2 = Reel(cls.root, "s1", resume=True)
        try:
            curl(cls.rec2, "-H", "Transfer-Encoding: chunked", "--data-binary", "hello world, 15",
                 o.url("/echo"))
            cls.rec2.wait_flows(1)
        finally:
            code = cls.rec2.stop()
        assert code == 0, cls.rec2.log()
        cls.reel.cli("config", "s1", "set", "body_limit", "10")
        cls.reel.cli("replay", "s1", "1", "--into", "r1")

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def diff(self, *args):
        """The diff's text and JSON, less the origin's Date when that is the
        only response header changed: it moves on when the two requests
        straddle a second, which says nothing about the bodies."""
        out = self.reel.cli("diff", *args).stdout.decode()
        j = json.loads(self.reel.cli("diff", *args, "--json").stdout)
        date_only = re.compile(r"response headers:\n  ~ Date: [^\n]*\n(?!  [~+-] )(\n)?")
        if date_only.search(out):
            out = date_only.sub("", out)
            j["changes"] = [c for c in j["changes"] if c != "response.headers"]
        return out, j

    def test_sizes_differ_past_the_limit(self):
        out, j = self.diff("d1", "1", "2")
        self.assertNotIn("no differences", out)
        self.assertEqual(out.splitlines()[2:], [
            "request body (raw, 29 bytes -> raw, 32 bytes): not stored whole; the same in the "
            "10 bytes both hold, but the sizes differ",
            "(---: request body cut by body_limit at 10 of 29 bytes)",
            "(+++: request body cut by body_limit at 10 of 32 bytes)"])
        self.assertFalse(j["same"])
        self.assertEqual(j["changes"], ["request.body"])
        b = j["request"]["body"]
        self.assertEqual((b["same"], b["bytes_same"], b["size_a"], b["size_b"], b["stored_a"],
                          b["stored_b"], b["compared"]), (False, False, 29, 32, 10, 10, 10))
        self.assertEqual(b["partial_a"], "cut by body_limit at 10 of 29 bytes")

    def test_same_prefix_same_size_is_not_known(self):
        out, j = self.diff("d1", "1", "3")
        self.assertNotIn("no differences\n", out)
        self.assertIn("not stored whole; the same in the 10 bytes both hold, past them not known",
                      out)
        self.assertFalse(j["same"])
        self.assertEqual((j["changes"], j["unknown"]), ([], ["request.body"]))
        self.assertIsNone(j["request"]["body"]["same"])
        self.assertIsNone(j["request"]["body"]["bytes_same"])
        self.assertTrue(j["response"]["body"]["same"])
        # The conclusion, which any other change (a Date moved on) replaces:
        # a flow against itself, whose stored bytes are all the same.
        out = self.reel.cli("diff", "d1", "1", "1").stdout.decode()
        self.assertTrue(out.endswith("\nno differences in what was stored, but a body was not "
                                     "stored whole: not known to be the same\n"), out)

    def test_differs_in_the_prefix(self):
        out, j = self.diff("d1", "1", "4")
        self.assertIn('request body (raw, 29 bytes -> raw, 29 bytes): compared in the 10 bytes '
                      'both hold\n', out)
        self.assertIn('\n-{"name": "\n+{"nome": "\n', out)
        self.assertEqual(j["changes"], ["request.body"], out)

    def test_replay_under_a_smaller_limit(self):
        out, j = self.diff("s1:1", "r1:1")
        self.assertNotIn("-hello world", out)
        self.assertIn("(+++: request body cut by body_limit at 10 of 15 bytes)", out)
        # replay sends a Content-Length in place of chunked (and the Date may
        # have moved on): headers differ, the body is not a change
        self.assertNotIn("request.body", j["changes"])
        self.assertEqual(j["unknown"], ["request.body"])
        b = j["request"]["body"]
        self.assertEqual((b["size_a"], b["size_b"], b["stored_a"], b["stored_b"], b["partial_a"]),
                         (15, 15, 15, 10, None))


class WebSocket(unittest.TestCase):
    """WebSocket flows, whose end records count their messages' bytes:
    their messages are not compared, and the handshakes' bodies (none) are
    whole. A flow against itself used to be "not known to be the same"
    (0 of 75 bytes stored)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-diffws-", dir=TMPBASE)
        cls.reel = Reel(cls.root, "ws")
        try:
            with ws_echo_server() as port:
                cls.capture(port, b"hello there, one")
                cls.capture(port, b"something else, a longer message")
            flows = cls.reel.wait_flows(2, "~websocket", timeout=10)
            assert len(flows) == 2, flows
        finally:
            code = cls.reel.stop()
        assert code == 0, cls.reel.log()

    @classmethod
    def capture(cls, port, text):
        """One text message through reel, echoed, then a close."""
        ws_echo_through(cls.reel.port, port, text, b"\x03\xe8")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def diff(self, *args):
        """The diff's text and JSON, less the origin's Date when that is the
        only response header changed: it moves on when the two requests
        straddle a second, which says nothing about the bodies."""
        out = self.reel.cli("diff", *args).stdout.decode()
        j = json.loads(self.reel.cli("diff", *args, "--json").stdout)
        date_only = re.compile(r"response headers:\n  ~ Date: [^\n]*\n(?!  [~+-] )(\n)?")
        if date_only.search(out):
            out = date_only.sub("", out)
            j["changes"] = [c for c in j["changes"] if c != "response.headers"]
        return out, j

    def test_against_itself(self):
        out, j = self.diff("ws", "1", "1")
        self.assertTrue(out.endswith("\nno differences\n"), out)
        self.assertNotIn("body", out)
        self.assertTrue(j["same"], j)
        self.assertEqual((j["changes"], j["unknown"]), ([], []))
        for side in ("request", "response"):
            b = j[side]["body"]
            self.assertEqual((b["same"], b["size_a"], b["partial_a"]), (True, 0, None), b)

    def test_two_flows_differ_only_in_handshakes(self):
        out, j = self.diff("ws", "1", "2")
        self.assertNotIn("body", out)
        self.assertNotIn("not known", out)
        self.assertEqual(j["unknown"], [])
        self.assertNotIn("request.body", j["changes"])
        self.assertNotIn("response.body", j["changes"])


if __name__ == "__main__":
    main()
