#!/usr/bin/python3
"""reel diff on two imported flows with known differences: the exact lines
for people (url, status, headers changed/removed/added with repeated ones,
the JSON bodies pretty-printed and diffed), --json, SESSION1:ID1 SESSION2:ID2
across sessions, colour on a terminal only, and the errors."""
import json
import os
import pty
import shutil
import subprocess
import tempfile
import unittest

from proxyenv import REEL, TMPBASE, main, run


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


if __name__ == "__main__":
    main()
