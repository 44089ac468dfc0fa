#!/usr/bin/python3
"""Indexed body search through the real binary: flows recorded by `reel
record` in front of nginx (request bodies in gzip, br and zstd, form data,
a gzip text response, a binary body, a body over body_index_max), then
`reel flows S '~b WORD'` answered from the body index must list exactly what
the spool pass lists for the same search written as a regex; `reel search`
prints the flows with the text around the match; the spool pass draws a
progress line on a terminal only."""
import gzip
import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import unittest

import brotli
import zstandard

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxyenv  # noqa: E402
from proxyenv import REEL, TMPBASE, Origin, Reel, curl, stop_class  # noqa: E402

BIG = 2 << 20  # over body_index_max (1 MiB here; the default is 0: no index)


class Search(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-search-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        with open(os.path.join(cls.origin.www, "page.txt"), "wb") as f:
            f.write(b"<html><body>" + b"filler text " * 50 + b"EpsilonWord</body></html>\n")
        with open(os.path.join(cls.origin.www, "big.txt"), "wb") as f:
            f.write(b"headword " + b"y" * BIG + b" tailword\n")
        with open(os.path.join(cls.origin.www, "blob.bin"), "wb") as f:
            f.write(os.urandom(4000) + b"\0zetaword\0" + os.urandom(4000))
        # the index is off by default (body_index_max 0): on with 1 MiB
        os.makedirs(os.path.join(cls.root, "config", "reel"))
        with open(os.path.join(cls.root, "config", "reel", "config.yaml"), "w") as f:
            f.write("body_index_max: 1m\n")
        cls.reel = Reel(cls.root, "s")
        cls.ids = {}
        echo = cls.origin.url("/echo")

        def post(name, data, ctype, enc=None):
            path = os.path.join(cls.root, name + ".body")
            with open(path, "wb") as f:
                f.write(data)
            args = ["-o", "/dev/null", "-H", "Content-Type: " + ctype, "--data-binary", "@" + path]
            if enc:
                args += ["-H", "Content-Encoding: " + enc]
            curl(cls.reel, *args, echo + "?" + name)

        doc = b'{"user": "alice", "note": "%s here"}'
        post("gzip", gzip.compress(doc % b"AlphaWord"), "application/json", "gzip")
        post("br", brotli.compress(doc % b"betaword"), "application/json", "br")
        post("zstd", zstandard.ZstdCompressor().compress(doc % b"gammaword"), "application/json",
             "zstd")
        post("form", b"user=deltaword&x=1", "application/x-www-form-urlencoded")
        post("plain", b"just alphaword again", "text/plain")
        post("chunks", b"".join(b"chunk %d needle " % i for i in range(20)), "text/plain")
        curl(cls.reel, "--compressed", "-o", "/dev/null", cls.origin.url("/page.txt"))
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/blob.bin"))
        curl(cls.reel, "--compressed", "-o", "/dev/null", cls.origin.url("/big.txt"))
        flows = cls.reel.wait_flows(9)
        assert len(flows) == 9, flows
        for f in flows:
            cls.ids[f["url"].rsplit("?", 1)[-1].rsplit("/", 1)[-1]] = f["id"]

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def ids_of(self, filt):
        return [f["id"] for f in self.reel.flows(filt)]

    def same(self, op, word, expect):
        indexed = self.ids_of("%s '%s'" % (op, word))
        scan = self.ids_of("%s '%s[%s]'" % (op, word[:-1], word[-1]))
        self.assertEqual(indexed, scan, "%s %s" % (op, word))
        self.assertEqual(indexed, sorted(self.ids[k] for k in expect), "%s %s" % (op, word))

    def test_indexed_equals_scan(self):
        self.same("~b", "alphaword", ["gzip", "plain"])
        self.same("~bq", "BETAWORD", ["br"])
        self.same("~bs", "betaword", [])
        self.same("~b", "gammaword here", ["zstd"])
        self.same("~bq", "user=deltaword", ["form"])
        self.same("~bs", "epsilonword", ["page.txt"])
        self.same("~b", "zetaword", ["blob.bin"])  # binary: not indexed, still found
        self.same("~b", "headword", ["big.txt"])
        self.same("~b", "tailword", ["big.txt"])  # past body_index_max: found by the spool
        self.same("~b", '"user": "alice"', ["gzip", "br", "zstd"])
        self.same("~b", "nowhere to be found", [])
        self.assertEqual(self.ids_of("~b alphaword & !~bq 'just'"), [self.ids["gzip"]])

    def test_search(self):
        r = self.reel.cli("search", "s", "alphaword")
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 4, r.stdout)
        self.assertRegex(lines[0], r"^\s*%d POST http://127\.0\.0\.1:\d+/echo\?gzip 200$"
                         % self.ids["gzip"])
        self.assertIn("request> ", lines[1])
        self.assertIn("[[AlphaWord]] here", lines[1])
        js = json.loads(self.reel.cli("search", "--json", "s", "EPSILONWORD").stdout)
        self.assertEqual([(o["id"], o["side"], o["status"]) for o in js],
                         [(self.ids["page.txt"], "response", 200)])
        self.assertIn("EpsilonWord</body>", js[0]["snippet"])
        self.assertNotIn("[[", js[0]["snippet"])
        # every word must be found; FTS5 syntax; a limit
        both = json.loads(self.reel.cli("search", "--json", "s", "alice", "gammaword").stdout)
        self.assertEqual([o["id"] for o in both], [self.ids["zstd"]])
        either = json.loads(self.reel.cli("search", "--json", "s", "betaword", "OR",
                                          "req:deltaword").stdout)
        self.assertEqual([o["id"] for o in either], sorted([self.ids["br"], self.ids["form"]]))
        lim = json.loads(self.reel.cli("search", "--json", "--limit", "1", "s", "alice").stdout)
        self.assertEqual(len(lim), 1)
        # the index holds neither binary bodies nor what is past body_index_max
        self.assertEqual(json.loads(self.reel.cli("search", "--json", "s", "zetaword").stdout),
                         [])
        r = self.reel.cli("search", "s", "tailword")
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"no flow has that", r.stderr)
        self.assertEqual(json.loads(self.reel.cli("search", "--json", "s", "headword").stdout)[0]
                         ["id"], self.ids["big.txt"])

    def test_a_match_the_snippet_cuts_is_not_highlighted(self):
        # the snippet's window (24 trigrams) ends inside the last match: it
        # used to be highlighted as a word of its own, "chunk 1 [[nee]]..."
        for words in (["needle"], ["NEEDLE"], ["chunk", "needle"]):
            with self.subTest(words=words):
                r = self.reel.cli("search", "s", *words)
                line = r.stdout.decode().splitlines()[1]
                self.assertTrue(line.endswith("..."), line)
                spans = re.findall(r"\[\[(.*?)\]\]", line)
                self.assertIn("needle", spans, line)
                for sp in spans:
                    self.assertIn(sp, ("needle", "chunk"), line)

    def test_flows_recorded_with_the_index_off_are_counted(self):
        har = os.path.join(self.root, "one.har")

        def entry(word):
            return {"startedDateTime": "2026-12-03T10:00:00.000Z", "time": 1,
                    "request": {"method": "GET", "url": "http://a.test/" + word,
                                "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                                "cookies": [], "headersSize": -1, "bodySize": 0},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                                 "headers": [], "cookies": [], "redirectURL": "",
                                 "headersSize": -1, "bodySize": 9,
                                 "content": {"size": 9, "mimeType": "text/plain",
                                             "text": word}},
                    "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        self.reel.cli("new", "off")
        self.reel.cli("config", "off", "set", "body_index_max", "0")
        for n, word in ((1, "omegaword"), (2, "sigmaword")):
            with open(har, "w") as f:
                json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                                   "entries": [entry(word)]}}, f)
            self.reel.cli("import", har, "--into", "off")
            err = self.reel.cli("search", "off", "omegaword").stderr.decode()
            said = ("1 flow was recorded with the body index off" if n == 1 else
                    "2 flows were recorded with the body index off")
            self.assertIn(said, err)
            self.assertIn("indexes %s, and 'reel flows off \"~b WORD\"' searches %s without"
                          % (("it", "it") if n == 1 else ("them", "them")), err)

    def import_one(self, name, index_max, resp, req=None):
        """A new session name, its body index at index_max, with one flow
        imported: resp (and req) as its text bodies."""
        def content(text):
            return {"mimeType": "text/plain", "text": text, "size": len(text.encode())}
        entry = {"startedDateTime": "2026-12-03T10:00:00.000Z", "time": 1,
                 "request": {"method": "POST" if req else "GET", "url": "http://a.test/" + name,
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": -1},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [], "redirectURL": "", "headersSize": -1,
                              "bodySize": -1, "content": content(resp)},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        if req:
            entry["request"]["postData"] = content(req)
        har = os.path.join(self.root, name + ".har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        self.reel.cli("new", name)
        self.reel.cli("config", name, "set", "body_index_max", index_max)
        self.reel.cli("import", har, "--into", name)

    def test_snippets_of_cut_characters_and_control_bytes(self):
        # body_index_max cuts a character in two: --json left the hit out
        # (its snippet was not UTF-8), and said nothing
        self.import_one("cutchar", "20", "qwertyneedle \u65e5\u672c\u8a9e\u65e5\u672c")
        hits = json.loads(self.reel.cli("search", "--json", "cutchar", "qwertyneedle").stdout)
        self.assertEqual(len(hits), 1, hits)
        self.assertTrue(hits[0]["snippet"].startswith("qwertyneedle \u65e5\u672c"),
                        hits[0]["snippet"])
        self.assertIn("\ufffd", hits[0]["snippet"])
        # the markers of a match are control bytes, which a body may hold:
        # a \x01 in the request was taken for a match there
        self.import_one("ctl", "1m", "the answer holds qwertyneedle here",
                        req="hello \x01 world \x02 " + "this is a long request body " * 10)
        out = self.reel.cli("search", "ctl", "qwertyneedle").stdout.decode().splitlines()
        self.assertRegex(out[1], r"^\s+response> \.\.\.holds \[\[qwertyneedle\]\] here$")
        hit = json.loads(self.reel.cli("search", "--json", "ctl", "qwertyneedle").stdout)[0]
        self.assertEqual((hit["side"], hit["snippet"]), ("response", "...holds qwertyneedle here"))

    def test_many_matches_in_one_body(self):
        """FTS5's snippet() scored every match against every other: a body
        of 32,000 "x" searched for "xxx" took 7 s, 100,000 minutes. The
        snippet now reads each match once."""
        self.import_one("many", "1m", "x" * 100000 + " needle")
        # (a hang guard, not a timing: the old snippet took minutes here)
        r = proxyenv.run([REEL, "search", "many", "xxx"], env=self.reel.env, timeout=30)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 2, r.stdout)
        # the window's matches overlap: one run, the text going on after it
        self.assertRegex(lines[1], r"^\s+response> \[\[x{20,40}\]\]\.\.\.$")
        r = self.reel.cli("search", "many", "needle")
        self.assertRegex(r.stdout.decode().splitlines()[1], r"response> \.\.\.x+ \[\[needle\]\]$")

    def test_search_errors(self):
        r = self.reel.cli("search", "s", '"unterminated', check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"bad query", r.stderr)
        r = self.reel.cli("search", "s", "ab", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"'ab' is too short", r.stderr)
        # the words a message quotes have their control characters escaped
        r = self.reel.cli("search", "s", "(\x1b]0;title\x07", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(b"reel search: bad query (\\x1b]0;title\\x07: "),
                        r.stderr)
        r = self.reel.cli("search", "s", "req:\x1b]", check=False)
        self.assertEqual(r.stderr, b"reel search: '\\x1b]' in 'req:\\x1b]' is too short: the "
                         b"body index finds strings of 3 characters or more (reel flows SESSION "
                         b"'~b REGEX' reads the spool instead)\n")
        r = self.reel.cli("search", "s", check=False)
        self.assertEqual(r.returncode, 2)
        r = self.reel.cli("search", "nosuch", "word", check=False)
        self.assertEqual(r.returncode, 1)

    def run_pty(self, args):
        """Runs reel with stderr on a terminal; returns (stdout, terminal output)."""
        master, slave = pty.openpty()
        env = dict(self.reel.env, REEL_PROGRESS_DELAY_MS="0")
        p = subprocess.Popen([REEL] + args, env=env, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        out = p.stdout.read()
        p.stdout.close()
        p.wait(60)
        tty = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                d = os.read(master, 65536)
            except OSError:
                break
            if not d:
                break
            tty += d
        os.close(master)
        return out, tty

    def test_progress_only_on_a_terminal(self):
        out, tty = self.run_pty(["flows", "--json", "s", "~b 'zeta.ord'"])
        self.assertEqual([f["id"] for f in json.loads(out)], [self.ids["blob.bin"]])
        self.assertIn(b"reel: searching the spool: ", tty)
        self.assertRegex(tty, rb"\d+/9 flows, \d+/s, [\d.]+ MB/s")
        self.assertTrue(tty.endswith(b"\r\x1b[K"), tty[-40:])  # the line is cleared at the end
        env = dict(self.reel.env, REEL_PROGRESS_DELAY_MS="0")
        r = proxyenv.run([REEL, "flows", "--json", "s", "~b 'zeta.ord'"], env=env)
        self.assertEqual(r.stderr, b"")


if __name__ == "__main__":
    proxyenv.main()
