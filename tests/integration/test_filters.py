#!/usr/bin/python3
"""Filter expressions through the real binary: a generated HAR of a few
hundred varied flows is imported, `reel flows --json S FILTER` is checked
against a brute-force evaluation in Python for every operator (header and
body terms included), and `reel tag/mark/annotate --filter` act on exactly
the matches and say how many.
"""
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

REEL = os.environ["REEL"]
TMPBASE = os.environ.get("REEL_TEST_TMP") or tempfile.gettempdir()
N = 300


def gen_flows():
    flows = []
    for i in range(1, N + 1):
        post = i % 3 == 0
        host = "api.test" if i % 4 == 0 else "www.test"
        req_headers = [{"name": "Host", "value": host}]
        if i % 5 == 0:
            req_headers.append({"name": "X-Trace", "value": "abc-%d" % i})
        req_body = ""
        req_ct = None
        if post:
            req_ct = "application/json" if i % 2 else "application/x-www-form-urlencoded"
            req_headers.append({"name": "Content-Type", "value": req_ct})
            req_body = "payload %d%s" % (i, " NeEdLe!" if i % 11 == 0 else "")
        failed = i % 13 == 0
        status = 0 if failed else (404 if i % 6 == 5 else 200)
        resp_ct = "text/html" if i % 3 == 1 else "application/json"
        resp_body = "" if failed else ("x" * (i * 7 % 3000)) + (" needle" if i % 7 == 0 else "")
        resp_headers = [] if failed else [{"name": "Content-Type", "value": resp_ct}]
        if not failed and i % 9 == 0:
            resp_headers.append({"name": "Set-Cookie", "value": "sid=%d" % i})
        flows.append(dict(i=i, post=post, host=host, req_headers=req_headers, req_body=req_body,
                          req_ct=req_ct, failed=failed, status=status, resp_ct=resp_ct,
                          resp_body=resp_body, resp_headers=resp_headers,
                          url="http://%s/p/%d" % (host, i)))
    return flows


def har_of(flows):
    entries = []
    for f in flows:
        req = {"method": "POST" if f["post"] else "GET", "url": f["url"],
               "httpVersion": "HTTP/1.1", "headers": f["req_headers"], "queryString": [],
               "cookies": [], "headersSize": -1, "bodySize": len(f["req_body"])}
        if f["post"]:
            req["postData"] = {"mimeType": f["req_ct"], "text": f["req_body"]}
        content = {"size": len(f["resp_body"]), "mimeType": f["resp_ct"], "text": f["resp_body"]}
        resp = {"status": f["status"], "statusText": "", "httpVersion": "HTTP/1.1",
                "headers": f["resp_headers"], "cookies": [], "content": content,
                "redirectURL": "", "headersSize": -1, "bodySize": len(f["resp_body"])}
        entries.append({"startedDateTime": "2026-01-02T03:%02d:%02d.000Z" % (f["i"] // 60 % 60,
                                                                          f["i"] % 60),
                        "time": 1.0, "request": req, "response": resp, "cache": {},
                        "timings": {"send": 0.1, "wait": 0.5, "receive": 0.4}})
    return {"log": {"version": "1.2", "creator": {"name": "gen", "version": "1"},
                    "entries": entries}}


def hdr_text(hs):
    return "".join("%s: %s\r\n" % (h["name"], h["value"]) for h in hs)


def search(rx, s, flags=0):
    return re.search(rx, s, re.IGNORECASE | flags) is not None


class Filters(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-filters-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=os.path.join(cls.root, "home"),
                       XDG_CONFIG_HOME=os.path.join(cls.root, "cfg"))
        cls.flows = gen_flows()
        har = os.path.join(cls.root, "gen.har")
        with open(har, "w") as fh:
            json.dump(har_of(cls.flows), fh)
        cls.reel("import", har, "--into", "s")
        rows = json.loads(cls.reel("flows", "--json", "s"))
        assert len(rows) == N, len(rows)
        cls.rows = {r["id"]: r for r in rows}
        # HAR entries go in in order: flow ids follow
        cls.by_id = {r["id"]: f for r, f in zip(rows, cls.flows)}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    @classmethod
    def reel(cls, *args, code=0):
        p = subprocess.run([REEL] + list(args), env=cls.env, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == code, (args, p.returncode, p.stderr)
        return p.stdout if code == 0 else p.stderr

    def ids(self, expr):
        return sorted(r["id"] for r in json.loads(self.reel("flows", "--json", "s", expr)))

    def brute(self, pred):
        return sorted(i for i, f in self.by_id.items() if pred(f, self.rows[i]))

    def check(self, expr, pred):
        want = self.brute(pred)
        self.assertEqual(self.ids(expr), want, expr)
        self.assertEqual(self.ids("!(%s)" % expr), sorted(set(self.by_id) - set(want)),
                         "!" + expr)
        return want

    def test_operators(self):
        cases = [
            ("~b needle", lambda f, r: search("needle", f["req_body"] + "\n" + f["resp_body"])),
            ("~bq 'needle!'", lambda f, r: search("needle!", f["req_body"])),
            ("~bs '^x{20}'", lambda f, r: search("^x{20}", f["resp_body"])),
            ("~bs 'x needle$'", lambda f, r: search("x needle$", f["resp_body"])),
            ("~h 'x-trace: abc-1'", lambda f, r: search("x-trace: abc-1",
                                                         hdr_text(f["req_headers"]))),
            ("~hq '^host: api\\.test$'", lambda f, r: f["host"] == "api.test"),
            ("~hs set-cookie", lambda f, r: search("set-cookie", hdr_text(f["resp_headers"]))),
            ("~t json", lambda f, r: "json" in (f["req_ct"] or "") or
             (not f["failed"] and "json" in f["resp_ct"])),
            ("~tq form", lambda f, r: "form" in (f["req_ct"] or "")),
            ("~ts html", lambda f, r: not f["failed"] and "html" in f["resp_ct"]),
            ("~c 404", lambda f, r: f["status"] == 404),
            ("~e", lambda f, r: f["failed"]),
            ("~s", lambda f, r: not f["failed"]),
            ("~q", lambda f, r: f["failed"]),
            ("~d ^api", lambda f, r: f["host"] == "api.test"),
            ("~m post", lambda f, r: f["post"]),
            ("~u '/p/1[0-9]$'", lambda f, r: search("/p/1[0-9]$", f["url"])),
            ("~id 10-50", lambda f, r: 10 <= r["id"] <= 50),
            ("~id 7", lambda f, r: r["id"] == 7),
            ("~size >1k", lambda f, r: r["request_body_size"] + r["response_body_size"] > 1024),
            ("~size <=100", lambda f, r: r["request_body_size"] + r["response_body_size"] <= 100),
            ("~all", lambda f, r: True),
            ("~http", lambda f, r: True),
            ("~tcp", lambda f, r: False),
            ("~since '2026-01-01'", lambda f, r: True),
            ("~until @1000", lambda f, r: False),
            ("~d api & ~b needle | ~hs cookie",
             lambda f, r: (f["host"] == "api.test" and
                           search("needle", f["req_body"] + "\n" + f["resp_body"])) or
             search("cookie", hdr_text(f["resp_headers"]))),
            ("!~b needle ~c 200", lambda f, r: f["status"] == 200 and
             not search("needle", f["req_body"] + "\n" + f["resp_body"])),
        ]
        for expr, pred in cases:
            with self.subTest(expr=expr):
                want = self.check(expr, pred)
                if expr not in ("~all", "~http", "~since '2026-01-01'"):
                    self.assertLess(len(want), N, expr)  # each case splits the flows

    def test_limit_with_body_filter(self):
        want = self.brute(lambda f, r: search("needle", f["resp_body"]))
        got = [r["id"] for r in json.loads(self.reel("flows", "--json", "--limit", "3", "s",
                                                     "~bs needle"))]
        self.assertEqual(got, want[-3:])

    def test_export_with_body_filter(self):
        want = self.brute(lambda f, r: search("needle", f["resp_body"]) and f["host"] == "api.test")
        self.assertTrue(want)
        out = self.reel("export", "--format", "ndjson", "s", "~bs needle & ~d api")
        got = [json.loads(line)["id"] for line in out.splitlines() if line.strip()]
        self.assertEqual(got, want)

    def test_no_match_is_said(self):
        def run(*args):
            p = subprocess.run([REEL] + list(args), env=self.env, capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, (args, p.stderr))
            return p.stdout, p.stderr
        # "999" is in no URL: said, with how to name flow 999
        out, err = run("flows", "s", "999")
        self.assertEqual(out, "")
        self.assertEqual(err, "reel flows: no flow of session 's' matches '999' (a bare word is "
                              "matched against URLs; flow ids are '~id 999')\n")
        out, err = run("export", "--format", "ndjson", "s", "990-999")
        self.assertEqual(out, "")
        self.assertIn("reel export: no flow of session 's' matches '990-999' (", err)
        self.assertIn("'~id 990-999')", err)
        out, err = run("flows", "s", "~d nothing-like-this")
        self.assertEqual((out, err), ("", "reel flows: no flow of session 's' matches "
                                          "'~d nothing-like-this'\n"))
        # a bare number that is in URLs lists them as before, without a word
        out, err = run("flows", "s", "150")
        self.assertIn("/p/150", out)
        self.assertEqual(err, "")
        # JSON says it with an empty array
        out, err = run("flows", "--json", "s", "999")
        self.assertEqual((json.loads(out), err), ([], ""))

    def test_bulk_actions(self):
        want = self.brute(lambda f, r: search("needle", f["req_body"]))
        self.assertTrue(want)
        out = self.reel("tag", "s", "--filter", "~bq needle", "hit")
        self.assertEqual(out.strip(), "added %d tags to %d matching flows" % (len(want), len(want)))
        self.assertEqual(self.ids("~tag hit"), want)
        out = self.reel("tag", "--json", "s", "--filter", "~bq needle", "hit")
        self.assertEqual(json.loads(out), {"matched": len(want), "added": 0})
        out = self.reel("mark", "s", "--filter", "~tag hit & ~m post")
        self.assertEqual(out.strip(), "marked %d matching flows" % len(want))
        self.assertEqual(self.ids("~marked"), want)
        out = self.reel("annotate", "s", "--filter", "~marked", "found the needle")
        self.assertEqual(out.strip(), "added a note to %d matching flows" % len(want))
        self.assertEqual(self.ids("~comment 'THE needle'"), want)
        out = self.reel("unmark", "--json", "s", "--filter", "~marked")
        self.assertEqual(json.loads(out), {"unmarked": len(want)})
        self.assertEqual(self.ids("~marked"), [])
        out = self.reel("untag", "s", "--filter", "~all", "hit")
        self.assertEqual(out.strip(), "removed %d tags from %d matching flows" % (len(want), N))
        out = self.reel("mark", "s", "--filter", "~b nothing-like-this")
        self.assertEqual(out.strip(), "marked 0 matching flows")
        err = self.reel("tag", "s", "--filter", "~b (", "x", code=1)
        self.assertIn("column", err)
        err = self.reel("annotate", "s", "--filter", "~zz", "x", code=1)
        self.assertIn("unknown operator '~zz' at column 1", err)
        self.assertEqual(self.ids("~tag x"), [])

    def test_parse_errors(self):
        err = self.reel("flows", "s", "~c 200 & (~b x", code=1)
        self.assertIn("expected ')' at column 15", err)
        err = self.reel("flows", "s", "~size >10q", code=1)
        self.assertIn("~size expects", err)
        self.assertIn("column 7", err)
        err = self.reel("flows", "s", "~id 9-3", code=1)
        self.assertIn("~id expects", err)
        err = self.reel("flows", "s", "~since yesterday", code=1)
        self.assertIn("~since expects a time at column 8", err)


class RegexLimit(unittest.TestCase):
    """A regex of the index's terms that runs into PCRE2's match limit on
    one flow (catastrophic backtracking on a long URL) said only
    "session.db: regexp: match limit exceeded", after the rows before it:
    neither the term nor the flow, nor that the listing was incomplete.
    Now it names both, as the body terms' error does."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-filters-rx-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=os.path.join(cls.root, "home"),
                       XDG_CONFIG_HOME=os.path.join(cls.root, "cfg"))
        flows = gen_flows()[:3]
        flows[0]["url"] = "http://www.test/head"  # matches "(a|aa)+[^a]$"
        flows[1]["url"] = "http://%s.test/long?%s" % ("a" * 60, "a" * 3000)
        har = os.path.join(cls.root, "rx.har")
        with open(har, "w") as fh:
            json.dump(har_of(flows), fh)
        subprocess.run([REEL, "import", har, "--into", "rx"], env=cls.env, check=True,
                       capture_output=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def run_reel(self, *args):
        p = subprocess.run([REEL] + list(args), env=self.env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 1, (args, p.stdout, p.stderr))
        return p.stdout, p.stderr

    def test_term_and_flow_are_named(self):
        rx = '"(a|aa)+[^a]$"'
        out, err = self.run_reel("flows", "rx", "~u " + rx)
        self.assertIn("/head", out)  # flow 1, listed before flow 2 failed
        self.assertEqual(err, "reel flows: filter: a URL regex (~u) ran into PCRE2's match "
                              "limit (flow 2)\nreel flows: the listing above is incomplete: it "
                              "stopped at that error (1 flow listed before it)\n")
        # a bare word is a URL regex too; JSON prints nothing before
        out, err = self.run_reel("flows", "--json", "rx", rx)
        self.assertEqual((out, err), ("", "reel flows: filter: a URL regex (~u) ran into "
                                          "PCRE2's match limit (flow 2)\n"))
        for args, term in [(["export", "rx", "~d '(a|aa)+[^a]$'"], "a host regex (~d)"),
                           (["tag", "rx", "--filter", "~u " + rx, "t"], "a URL regex (~u)"),
                           (["flows", "rx", "~m GET & ~u " + rx], "a URL regex (~u)")]:
            with self.subTest(args=args):
                out, err = self.run_reel(*args)
                self.assertIn("reel %s: filter: %s ran into PCRE2's match limit (flow 2)\n"
                              % (args[0], term), err)
                self.assertNotIn("session.db", err)


class BodiesAsShown(unittest.TestCase):
    """Through the real proxy, from an origin whose Content-Encoding lies or
    breaks off: body filters search what `reel flow` shows (the stored bytes
    where decoding failed, as mitmproxy's get_content(strict=False)), and a
    body of no bytes (a HEAD's, an empty GET's) is no body to search."""

    LATE = gzip.compress(b"".join(b"line %d of the good part\n" % i for i in range(5000)))

    BODIES = {
        b"/lie": b"this is not gzip at all MANGO",
        b"/trail": gzip.compress(b"good part KIWI\n") + b"garbage after it PAPAYA",
        b"/late": LATE + b"garbage LYCHEE",
        b"/empty": b"",
    }

    @classmethod
    def setUpClass(cls):
        from proxyenv import Reel  # noqa: E402 (sets nothing up on import)
        cls.root = tempfile.mkdtemp(prefix="reel-shown-", dir=TMPBASE)
        cls.srv = socket.socket()
        cls.srv.bind(("127.0.0.1", 0))
        cls.srv.listen(16)
        cls.port = cls.srv.getsockname()[1]
        threading.Thread(target=cls.serve, daemon=True).start()
        cls.reel = Reel(cls.root, "shown")
        cls.ids = {}
        for k, (method, path) in enumerate((("GET", "/lie"), ("GET", "/trail"), ("GET", "/late"),
                                            ("GET", "/empty"), ("HEAD", "/lie"))):
            url = "http://127.0.0.1:%d%s" % (cls.port, path)
            subprocess.run(["curl", "-sS", "--max-time", "20", "-x", cls.reel.proxy, "-o",
                            os.devnull, "-X", method] + (["-I"] if method == "HEAD" else []) +
                           [url], check=True, timeout=30)
            cls.ids[method + " " + path] = max(f["id"] for f in cls.reel.wait_flows(k + 1))
        assert len(cls.reel.wait_flows(5)) == 5

    @classmethod
    def serve(cls):
        while True:
            try:
                c, _ = cls.srv.accept()
            except OSError:
                return
            with c:
                head = b""
                while b"\r\n\r\n" not in head:
                    d = c.recv(4096)
                    if not d:
                        break
                    head += d
                method, target = head.split(b" ")[:2]
                body = cls.BODIES.get(target, b"")
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Encoding: gzip\r\n"
                          b"Connection: close\r\n\r\n" % len(body) +
                          (b"" if method == b"HEAD" else body))

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.srv.close()
        assert code == 0, cls.reel.log()
        shutil.rmtree(cls.root, ignore_errors=True)

    def ids_of(self, expr):
        return sorted(f["id"] for f in self.reel.flows(expr))

    def shown(self, key):
        return self.reel.cli("flow", "shown", str(self.ids[key])).stdout

    def test_undecodable_bodies_are_searched_as_shown(self):
        lie, trail, late = self.ids["GET /lie"], self.ids["GET /trail"], self.ids["GET /late"]
        text = self.shown("GET /lie")
        self.assertIn(b"the body follows as stored)\nthis is not gzip at all MANGO\n", text)
        self.assertEqual(self.ids_of("~b MANGO"), [lie])
        self.assertEqual(self.ids_of("~bs '^this is not gzip'"), [lie])
        # garbage after a short member: shown (and searched) as stored, whole
        self.assertIn(b"garbage after it PAPAYA", self.reel.cli("flow", "shown", str(trail),
                                                                "--view", "raw").stdout)
        self.assertEqual(self.ids_of("~bs PAPAYA"), [trail])
        self.assertEqual(self.ids_of("~bs KIWI"), [])
        # after 5000 decoded lines: those, then the rest as stored
        text = self.shown("GET /late")
        self.assertIn(b"line 4999 of the good part\n(could not decode Content-Encoding 'gzip' past "
                      b"this point: ", text)
        self.assertEqual(self.ids_of("~bs 'line 4999 of the good part'"), [late])
        self.assertEqual(self.ids_of("~bs LYCHEE"), [late])

    def test_no_body_is_not_searched(self):
        empty, head = self.ids["GET /empty"], self.ids["HEAD /lie"]
        self.assertEqual(self.ids_of("~b ''"), sorted(set(self.ids.values()) - {empty, head}))
        self.assertEqual(self.ids_of("~bq '^$'"), [])
        self.assertEqual(self.ids_of("~bs '^$'"), [])
        self.assertEqual(self.ids_of("!~b ."), sorted([empty, head]))


if __name__ == "__main__":
    unittest.main()
