#!/usr/bin/python3
"""reel export against a real recorded session (nginx origin, curl through
reel): HAR that parses, holds every body and goes back in with reel import
intact; curl commands that, run with bash against the origin, get the same
responses; ndjson that Python reads line by line; raw HTTP; --redact.
"""
import asyncio
import base64
import gzip
import http.server
import json
import os
import shutil
import socket
import sqlite3
import stat
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, connect, curl, main, raw, read_all, stop_class

SECRET = "SECRETTOKEN123"
COOKIE = "COOKIEVALUE456"


def refused(t, doc, good, bad, message):
    """doc with the entries good then bad is refused by reel import of
    t's reel, naming entries[1] and message; a good entry first, so that
    nothing of it stays either (no session made)."""
    d = json.loads(json.dumps(doc))
    d["log"]["entries"] = [good, bad]
    p = os.path.join(t.root, "bad.har")
    with open(p, "w", encoding="utf-8") as f:
        json.dump(d, f)
    r = t.reel.cli("import", p, "--into", "bad", check=False)
    t.assertEqual(r.returncode, 1, r.stderr)
    t.assertIn(b"bad.har: entries[1]." + message, r.stderr)
    t.assertFalse(os.path.exists(os.path.join(t.root, "home", "bad")))


class Export(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "exp", "upstream_trusted_ca=" + cls.origin.ca)
        o = cls.origin
        curl(cls.reel, o.url("/100b"))
        curl(cls.reel, "--compressed", o.url("/text.txt", https=True))
        curl(cls.reel, "-H", "Authorization: Bearer " + SECRET, "-H", "Cookie: sid=" + COOKIE,
             "-H", "X-Tenant: TENANT789",
             "--data-binary", "password=" + SECRET + "&user=alice", o.url("/echo?token=" + SECRET))
        curl(cls.reel, o.url("/file1m"))
        cls.flows = cls.reel.wait_flows(4)
        assert len(cls.flows) == 4, cls.flows

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def export(self, *args):
        return self.reel.cli("export", "exp", *args)

    def test_har(self):
        path = os.path.join(self.root, "out.har")
        r = self.export("-o", path)
        self.assertIn(b"exported 4 flows", r.stderr)
        self.assertNotIn(b"\r", r.stderr)  # no progress bar when stderr is not a terminal
        with open(path) as f:
            har = json.load(f)
        log = har["log"]
        self.assertEqual(log["version"], "1.2")
        self.assertEqual(len(log["pages"]), 1)
        entries = log["entries"]
        self.assertEqual(len(entries), 4)
        by_url = {e["request"]["url"]: e for e in entries}
        text = by_url[self.origin.url("/text.txt", https=True)]["response"]
        with open(self.origin.www + "/text.txt", "rb") as f:
            self.assertEqual(text["content"]["text"].encode(), f.read())
        self.assertIn("gzip", [h["value"] for h in text["headers"] if h["name"].lower() == "content-encoding"])
        # HAR 1.2: size is the decoded length, compression the bytes gzip saved
        self.assertEqual(text["content"]["size"], os.path.getsize(self.origin.www + "/text.txt"))
        self.assertGreater(text["content"]["compression"], 0)
        self.assertEqual(text["content"]["compression"], text["content"]["size"] - text["bodySize"])
        for e in entries:  # nothing else was encoded: nothing saved
            if e["response"] is not text:
                self.assertEqual(e["response"]["content"].get("compression", 0), 0)
        big = by_url[self.origin.url("/file1m")]["response"]["content"]
        self.assertEqual(big["encoding"], "base64")
        self.assertEqual(base64.b64decode(big["text"]), self.origin.file1m)
        post = by_url[self.origin.url("/echo?token=" + SECRET)]["request"]["postData"]
        # curl sends --data-binary as a form: its fields are params too
        self.assertEqual({p["name"]: p["value"] for p in post["params"]}.get("user"), "alice")
        for e in entries:
            for k in ("send", "wait", "receive"):
                self.assertGreaterEqual(e["timings"][k], 0)
            self.assertIsInstance(e["time"], (int, float))

        # and back in: the same flows, headers and bodies
        self.reel.cli("import", path, "--into", "back")
        back = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual([(f["method"], f["url"], f["status"]) for f in back],
                         [(f["method"], f["url"], f["status"]) for f in self.flows])
        for a, b in zip(self.flows, back):
            fa = self.reel.flow(a["id"])
            fb = json.loads(self.reel.cli("flow", "back", str(b["id"]), "--json").stdout)
            self.assertEqual(fa["request"]["headers"], fb["request"]["headers"])
            self.assertEqual(fa["response"]["headers"], fb["response"]["headers"])
            self.assertEqual(fa["request"]["body_b64"], fb["request"]["body_b64"])
            ra = base64.b64decode(fa["response"]["body_b64"] or "")
            if any(h[0].lower() == "content-encoding" for h in fa["response"]["headers"]):
                ra = gzip.decompress(ra)  # HAR holds bodies decoded
            self.assertEqual(ra, base64.b64decode(fb["response"]["body_b64"] or ""))

    def test_curl_commands_reproduce_responses(self):
        out = self.export("--format", "curl").stdout.decode()
        blocks = ["# flow" + b for b in out.split("# flow")[1:]]
        self.assertEqual(len(blocks), 4)
        env = dict(os.environ, CURL_CA_BUNDLE=self.origin.ca)
        for block, flow in zip(blocks, self.flows):
            r = subprocess.run(["bash", "-c", block], capture_output=True, env=env, timeout=30)
            self.assertEqual(r.returncode, 0, (block, r.stderr))
            recorded = base64.b64decode(self.reel.flow(flow["id"])["response"]["body_b64"] or "")
            got = r.stdout
            if recorded[:2] == b"\x1f\x8b":
                recorded, got = gzip.decompress(recorded), gzip.decompress(got)
            self.assertEqual(got, recorded, block)
        # the POST went out with its body and headers: nginx logged it
        self.assertEqual(sum(1 for l in self.origin.log_lines() if l[1] == "POST"), 2)

    def test_ndjson(self):
        bodies = os.path.join(self.root, "bodies")
        lines = self.export("--format", "ndjson").stdout.decode().splitlines()
        self.assertEqual(len(lines), 4)
        objs = [json.loads(l) for l in lines]
        self.assertEqual([o["id"] for o in objs], [f["id"] for f in self.flows])
        self.assertEqual(objs[0]["response"]["body"], "x" * 99 + "\n")
        self.assertEqual(base64.b64decode(objs[3]["response"]["body_b64"]), self.origin.file1m)
        # bodies as files
        lines = self.export("--format", "ndjson", "--bodies", bodies, "~u file1m").stdout.decode().splitlines()
        o = json.loads(lines[0])
        with open(o["response"]["body_file"], "rb") as f:
            self.assertEqual(f.read(), self.origin.file1m)

    def test_raw(self):
        out = self.export("--format", "raw", "~u 100b").stdout
        # curl sent its plain HTTP request to the proxy in absolute form
        self.assertTrue(out.startswith(b"GET %s HTTP/1.1\r\n" % self.origin.url("/100b").encode()),
                        out[:100])
        self.assertIn(b"\r\n\r\nHTTP/1.1 200 OK\r\n", out)
        self.assertTrue(out.endswith(b"\r\n\r\n" + b"x" * 99 + b"\n"))

    def test_redact(self):
        for fmt in ("har", "curl", "raw", "ndjson"):
            plain = self.export("--format", fmt, "~m POST").stdout
            self.assertIn(SECRET.encode(), plain, fmt)
            self.assertIn(COOKIE.encode(), plain, fmt)
            red = self.export("--format", fmt, "--redact", "~m POST").stdout
            self.assertNotIn(SECRET.encode(), red, fmt)
            self.assertNotIn(COOKIE.encode(), red, fmt)
            self.assertIn(b"REDACTED", red, fmt)
            self.assertIn(b"alice", red, fmt)
            self.assertIn(b"TENANT789", red, fmt)
        # more rules in the user's config file
        conf = os.path.join(self.root, "config", "reel")
        os.makedirs(conf, exist_ok=True)
        with open(os.path.join(conf, "config.yaml"), "w") as f:
            f.write("redact_headers: [x-tenant]\nredact_keys: [user]\n")
        try:
            red = self.export("--format", "har", "--redact", "~m POST").stdout
        finally:
            os.unlink(os.path.join(conf, "config.yaml"))
        self.assertNotIn(b"TENANT789", red)
        self.assertNotIn(b"alice", red)
        self.assertNotIn(SECRET.encode(), red)

    def test_output_that_is_not_a_file(self):
        # -o FILE writes FILE.part and renames it over FILE: over a FIFO
        # (or, run as root, /dev/null itself, which then became a file)
        # the rename replaced it, and a reader of the FIFO waited for ever
        fifo = os.path.join(self.root, "out.fifo")
        os.mkfifo(fifo)
        got = []

        def read():
            with open(fifo, "rb") as f:
                got.append(f.read())
        t = threading.Thread(target=read, daemon=True)
        t.start()
        r = self.reel.cli("export", "exp", "--format", "ndjson", "-o", fifo, check=False)
        t.join(20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0], self.export("--format", "ndjson").stdout)
        self.assertFalse(os.path.exists(fifo + ".part"))
        # a symbolic link stays one: the file it names gets the export
        real = os.path.join(self.root, "real.ndjson")
        link = os.path.join(self.root, "link.ndjson")
        open(real, "w").close()
        os.symlink(real, link)
        self.export("--format", "ndjson", "-o", link)
        self.assertTrue(os.path.islink(link))
        with open(real, "rb") as f:
            self.assertEqual(f.read(), got[0])
        # also one that names a file not made yet (relative to the link's
        # directory), as a shell's > makes it: the link was replaced
        os.makedirs(os.path.join(self.root, "sub"))
        dangling = os.path.join(self.root, "dangling.ndjson")
        os.symlink("sub/made.ndjson", dangling)
        self.export("--format", "ndjson", "-o", dangling)
        self.assertTrue(os.path.islink(dangling))
        with open(os.path.join(self.root, "sub", "made.ndjson"), "rb") as f:
            self.assertEqual(f.read(), got[0])
        # and a chain of links: each stays one, the last one's file is made
        chain = os.path.join(self.root, "chain.ndjson")
        os.symlink("mid.ndjson", chain)
        os.symlink(os.path.join(self.root, "sub", "final.ndjson"),
                   os.path.join(self.root, "mid.ndjson"))
        self.export("--format", "ndjson", "-o", chain)
        self.assertTrue(os.path.islink(chain))
        self.assertTrue(os.path.islink(os.path.join(self.root, "mid.ndjson")))
        with open(os.path.join(self.root, "sub", "final.ndjson"), "rb") as f:
            self.assertEqual(f.read(), got[0])

    def test_bad_usage(self):
        r = self.reel.cli("export", "exp", "--format", "xml", check=False)
        self.assertEqual(r.returncode, 2)
        # a bad filter is an error (exit 1), as in reel flows, replay, tag...
        r = self.reel.cli("export", "exp", "~c (", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"column", r.stderr)
        r = self.reel.cli("export", "nosuch", check=False)
        self.assertEqual(r.returncode, 1)


class ExportRedactMultipart(unittest.TestCase):
    """A multipart form (curl -F: a password field, a JSON part and a
    binary file) exported with --redact: the secrets are gone, the file's
    bytes and the other field are as they were, in every format, and the
    request's sizes are the redacted body's. Before, a binary part made
    the whole body binary, and redaction left every secret in it. Then
    markup: a SOAP request's WS-Security password and an HTML page's
    CSRF tokens, the JSON of server-sent events and a YAML configuration,
    which the rules for text left as they were; tokens known by their
    prefix, in a URL's path and a header; a GraphQL login's passwords, one
    in the query and one in its variables; JSON inside a JSON string."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-mp-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.blob = bytes(range(256)) * 8
        blob = os.path.join(cls.root, "blob.bin")
        with open(blob, "wb") as f:
            f.write(cls.blob)
        cls.reel = Reel(cls.root, "mp")
        curl(cls.reel, "-o", "/dev/null", "-F", "user=alice", "-F", "password=" + SECRET,
             "-F", "upload=@%s;type=application/octet-stream" % blob,
             "-F", 'meta={"api_key": "%s", "n": 1};type=application/json' % COOKIE,
             cls.origin.url("/echo"))
        cls.soap = ('<?xml version="1.0"?>\n<s:Envelope xmlns:s="http://www.w3.org/2003/05/'
                    'soap-envelope"><s:Header><wsse:Security><wsse:UsernameToken><wsse:Username>'
                    'bob</wsse:Username><wsse:Password>%s</wsse:Password></wsse:UsernameToken>'
                    '</wsse:Security></s:Header><s:Body><GetQuote><Symbol>ACME</Symbol>'
                    '</GetQuote></s:Body></s:Envelope>' % SECRET)
        curl(cls.reel, "-o", "/dev/null", "-H", "Content-Type: application/soap+xml",
             "--data-binary", cls.soap, cls.origin.url("/echo"))
        with open(os.path.join(cls.origin.www, "login.html"), "w") as f:
            f.write('<!DOCTYPE html><html><head><meta name="csrf-token" content="%s"></head>'
                    '<body><form method="post"><input type="hidden" name="authenticity_token" '
                    'value="%s"><input name="user" value="alice"></form></body></html>\n'
                    % (SECRET, COOKIE))
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/login.html"))
        cls.events = ('event: session\ndata: {"user": "alice", "token": "%s"}\n\n'
                      ': keep-alive\ndata: {"n": 1, "api_key": "%s"}\n\n' % (SECRET, COOKIE))
        with open(os.path.join(cls.origin.www, "events.sse"), "w") as f:
            f.write(cls.events)
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/events.sse"))
        cls.yaml = ("spring:\n  datasource:\n    username: app\n    password: %s\n"
                    "    url: jdbc:postgresql://db/app\n" % SECRET)
        with open(os.path.join(cls.origin.www, "app.yml"), "w") as f:
            f.write(cls.yaml)
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/app.yml"))
        cls.gh = "ghp_" + "0123456789abcdefghij" + "ABCDEFGHIJ012345"
        cls.slack = "xoxb-1234567890-" + SECRET
        curl(cls.reel, "-o", "/dev/null", "-H", "X-Deploy: token " + cls.gh,
             cls.origin.url("/hooks/%s/x" % cls.slack))
        # as Apollo sends it: the secret in "variables", by a name that
        # says nothing (password: $pw), and one written in the query
        cls.gql = json.dumps({"operationName": "Login",
                              "query": 'mutation Login($pw: String!) { a: login(user: "alice", '
                                       'password: $pw) { session { id } } b: login(user: "bob", '
                                       'password: "%s") { session { id } } }' % SECRET,
                              "variables": {"pw": COOKIE}})
        curl(cls.reel, "-o", "/dev/null", "-H", "Content-Type: application/json",
             "--data-binary", cls.gql, cls.origin.url("/echo"))
        # an SQS event as a Lambda gets it: JSON in the string "body"
        cls.sqs = json.dumps({"Records": [{"messageId": "m1", "body": json.dumps(
            {"user": "alice", "password": SECRET, "note": "caf\u00e9"})}]})
        curl(cls.reel, "-o", "/dev/null", "-H", "Content-Type: application/json",
             "--data-binary", cls.sqs, cls.origin.url("/echo"))
        assert len(cls.reel.wait_flows(8)) == 8

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def check_body(self, b, plain):
        if plain:
            self.assertIn(SECRET.encode(), b)
            self.assertIn(COOKIE.encode(), b)
            return
        self.assertNotIn(SECRET.encode(), b)
        self.assertNotIn(COOKIE.encode(), b)
        self.assertIn(b"\r\n\r\nREDACTED\r\n--", b)
        self.assertIn(b'{"api_key": "REDACTED", "n": 1}', b)
        self.assertIn(b"\r\n\r\nalice\r\n--", b)
        self.assertIn(b"\r\n\r\n" + self.blob + b"\r\n--", b)

    def test_ndjson_har_raw_curl(self):
        for plain in (True, False):
            red = () if plain else ("--redact",)
            o = json.loads(self.reel.cli("export", "mp", "--format", "ndjson", *red,
                                         "~id 1").stdout)
            b = base64.b64decode(o["request"]["body_b64"])
            self.check_body(b, plain)
            self.assertEqual(o["request"]["body_size"], len(b))
            e = json.loads(self.reel.cli("export", "mp", *red).stdout)["log"]["entries"][0]
            self.assertIn("multipart", e["request"]["postData"]["mimeType"])
            pd = e["request"]["postData"]
            self.assertEqual(pd["encoding"], "base64")
            b = base64.b64decode(pd["text"])
            self.check_body(b, plain)
            self.assertEqual(e["request"]["bodySize"], len(b))
            self.assertTrue(pd["mimeType"].startswith("multipart/form-data; boundary="))
            out = self.reel.cli("export", "mp", "--format", "raw", *red, "~id 1").stdout
            head, _, rest = out.partition(b"\r\n\r\n")
            self.assertIn(b"\r\nContent-Length: %d\r\n" % len(b), head + b"\r\n")
            self.assertTrue(rest.startswith(b), rest[:200])
            out = self.reel.cli("export", "mp", "--format", "curl", *red, "~id 1").stdout
            self.assertEqual(SECRET.encode() in out, plain)
            self.assertEqual(COOKIE.encode() in out, plain)

    def test_soap_and_html(self):
        lines = self.reel.cli("export", "mp", "--format", "ndjson", "--redact",
                              "~id 2-3").stdout.splitlines()
        soap, html = [json.loads(x) for x in lines]
        want = self.soap.replace(SECRET, "REDACTED").replace(">bob<", ">REDACTED<")
        self.assertEqual(soap["request"]["body"], want)
        self.assertIn("<Symbol>ACME</Symbol>", want)
        page = html["response"]["body"]
        self.assertNotIn(SECRET, page)
        self.assertNotIn(COOKIE, page)
        self.assertIn('content="REDACTED"', page)
        self.assertIn('name="authenticity_token" value="REDACTED"', page)
        self.assertIn('name="user" value="alice"', page)
        for fmt in ("har", "raw", "curl"):
            out = self.reel.cli("export", "mp", "--format", fmt, "--redact", "! ~id 1").stdout
            self.assertNotIn(SECRET.encode(), out, fmt)
            self.assertNotIn(COOKIE.encode(), out, fmt)

    def test_yaml(self):
        o = json.loads(self.reel.cli("export", "mp", "--format", "ndjson", "--redact",
                                     "~id 5").stdout)
        self.assertEqual(o["response"]["body"], self.yaml.replace(SECRET, "REDACTED"))

    def test_known_tokens(self):
        for fmt in ("ndjson", "har", "raw", "curl"):
            plain = self.reel.cli("export", "mp", "--format", fmt, "~id 6").stdout
            self.assertIn(self.gh.encode(), plain, fmt)
            self.assertIn(self.slack.encode(), plain, fmt)
            out = self.reel.cli("export", "mp", "--format", fmt, "--redact", "~id 6").stdout
            self.assertNotIn(self.gh.encode(), out, fmt)
            self.assertNotIn(SECRET.encode(), out, fmt)
            self.assertIn(b"/hooks/xoxb-REDACTED/x", out, fmt)
            self.assertIn(b"token ghp_REDACTED", out, fmt)

    def test_graphql(self):
        o = json.loads(self.reel.cli("export", "mp", "--format", "ndjson", "--redact",
                                     "~id 7").stdout)
        self.assertEqual(o["request"]["body"],
                         self.gql.replace(SECRET, "REDACTED").replace(COOKIE, "REDACTED"))
        self.assertIn('user: \\"alice\\", password: $pw', o["request"]["body"])

    def test_json_in_a_string(self):
        o = json.loads(self.reel.cli("export", "mp", "--format", "ndjson", "--redact",
                                     "~id 8").stdout)
        self.assertEqual(o["request"]["body"], self.sqs.replace(SECRET, "REDACTED"))
        self.assertIn('\\"note\\": \\"caf\\\\u00e9\\"', o["request"]["body"])

    def test_event_stream(self):
        o = json.loads(self.reel.cli("export", "mp", "--format", "ndjson", "--redact",
                                     "~id 4").stdout)
        self.assertEqual(o["response"]["body"],
                         self.events.replace(SECRET, "REDACTED").replace(COOKIE, "REDACTED"))


class ExportRedactedSizes(unittest.TestCase):
    """A body --redact rewrote is written with the redacted bytes' size in
    every format, as its Content-Length is: HAR's bodySize kept the size
    before redaction, so reel import of the redacted HAR took the body for
    cut (and replay refused it). A form POST whose password is redacted,
    and a gzipped text with URLs whose token is (written decoded)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-redsize-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        with open(os.path.join(cls.origin.www, "secret.txt"), "w") as f:
            f.write("see https://a.test/cb?token=%s now\n" % SECRET * 6)
        cls.reel = Reel(cls.root, "red")
        curl(cls.reel, "--data-binary", "password=%s&user=alice" % SECRET,
             cls.origin.url("/echo"))
        curl(cls.reel, "-H", "Accept-Encoding: gzip", "-o", "/dev/null",
             cls.origin.url("/secret.txt"))
        assert len(cls.reel.wait_flows(2)) == 2

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_har_sizes_are_the_redacted_ones(self):
        plain = json.loads(self.reel.cli("export", "red").stdout)["log"]["entries"]
        self.assertIn("compression", plain[1]["response"]["content"])  # it was gzipped
        path = os.path.join(self.root, "red.har")
        self.reel.cli("export", "red", "--redact", "-o", path)
        with open(path, "rb") as f:
            raw_har = f.read()
        self.assertNotIn(SECRET.encode(), raw_har)
        post, get = json.loads(raw_har)["log"]["entries"]
        text = post["request"]["postData"]["text"].encode()
        self.assertIn(b"REDACTED", text)
        self.assertEqual(post["request"]["bodySize"], len(text))
        c = get["response"]["content"]
        self.assertIn("REDACTED", c["text"])
        self.assertEqual((get["response"]["bodySize"], c["size"]),
                         (len(c["text"].encode()), len(c["text"].encode())))
        self.assertNotIn("compression", c)  # written without its Content-Encoding
        # read back: whole, as the export was
        self.reel.cli("import", path, "--into", "back")
        for fid in (1, 2):
            f = json.loads(self.reel.cli("flow", "back", str(fid), "--json").stdout)
            for side in ("request", "response"):
                self.assertFalse(f[side]["body_truncated"], (fid, side))
        self.assertNotIn(b"incomplete", self.reel.cli("export", "back").stdout)

    def test_ndjson_and_raw_sizes_are_the_redacted_ones(self):
        for line in self.reel.cli("export", "red", "--format", "ndjson",
                                  "--redact").stdout.splitlines():
            o = json.loads(line)
            for side in ("request", "response"):
                self.assertEqual(o[side]["body_size"], o[side]["body_stored"], (o["id"], side))
        out = self.reel.cli("export", "red", "--format", "raw", "--redact").stdout
        self.assertIn(b"REDACTED", out)
        self.assertNotIn(b"X-Reel-Body-Cut", out)

    def test_a_redacted_message_has_its_redacted_length(self):
        msg = '{"token": "%s"}' % SECRET
        doc = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                       "entries": [ExportWebSocket.chrome_entry(None, [
                           {"type": "send", "time": 1767323045.5, "opcode": 1, "data": msg}])]}}
        path = os.path.join(self.root, "ws.har")
        with open(path, "w") as f:
            json.dump(doc, f)
        self.reel.cli("import", path, "--into", "wsred")
        o = json.loads(self.reel.cli("export", "wsred", "--format", "ndjson", "--redact").stdout)
        m = o["messages"][0]
        data = base64.b64decode(m["data_b64"]) if "data_b64" in m else m["data"].encode()
        self.assertEqual(data, b'{"token": "REDACTED"}')
        self.assertEqual((m["length"], m["truncated"]), (len(data), False))


class ExportUpgrade(unittest.TestCase):
    """An upgrade to a protocol that is not WebSocket (a 101 to `Upgrade:
    foo`): its bytes are TCP messages of its own flow, not WebSocket
    messages, so its HAR entry is the http:// exchange it was, with the
    messages under _reel (docs/export.md), which reel import reads back;
    its curl command keeps the handshake's Upgrade and Connection."""

    # what the client sends after the 101, one write at a time; the origin
    # echoes each: bytes that are not UTF-8, text, and text longer than
    # body_limit (stored cut, as truncated)
    SENT = [b"\x00\xffhello", b"hi", b"a text longer than body_limit"]
    LIMIT = 16

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-up-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "up", "body_limit=%d" % cls.LIMIT)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cls.eport = srv.getsockname()[1]

        def serve():
            c, _ = srv.accept()
            c.settimeout(10)
            got = b""
            while b"\r\n\r\n" not in got:
                got += c.recv(65536)
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n"
                      b"Connection: Upgrade\r\n\r\n")
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(b"echo:" + d)
            c.close()
            srv.close()

        t = threading.Thread(target=serve)
        t.start()
        s = connect(cls.reel.port)
        s.sendall(b"GET http://127.0.0.1:%d/up HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Upgrade: foo\r\nConnection: Upgrade\r\n\r\n" % (cls.eport, cls.eport))
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        assert got.startswith(b"HTTP/1.1 101"), got
        got = got.split(b"\r\n\r\n", 1)[1]
        for data in cls.SENT:
            # one echo back before the next write: one read, one message
            s.sendall(data)
            while not got.endswith(b"echo:" + data):
                d = s.recv(65536)
                assert d, got
                got += d
        s.shutdown(socket.SHUT_WR)
        out, _ = read_all(s)
        s.close()
        t.join(10)
        assert got + out == b"".join(b"echo:" + d for d in cls.SENT), (got, out)
        cls.reel.wait_flows(1)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_har_is_no_websocket(self):
        (e,) = json.loads(self.reel.cli("export", "up").stdout)["log"]["entries"]
        self.assertEqual(e["request"]["url"], "http://127.0.0.1:%d/up" % self.eport)
        self.assertEqual(e["response"]["status"], 101)
        # the handshake has no body; the flow's sizes count the messages
        self.assertEqual((e["request"]["bodySize"], e["response"]["bodySize"]), (0, 0))
        self.assertNotIn("_resourceType", e)
        self.assertNotIn("_webSocketMessages", e)
        msgs = e["_reel"]["messages"]
        want = []
        for d in self.SENT:
            want += [("send", d), ("receive", b"echo:" + d)]
        got = [(m["type"], base64.b64decode(m["data"]) if m.get("encoding") == "base64"
                else m["data"].encode()) for m in msgs]
        self.assertEqual(got, [(t, d[:self.LIMIT]) for t, d in want])
        self.assertEqual([m.get("encoding") for m in msgs][:4],
                         ["base64", "base64", None, None])
        self.assertEqual([(m.get("truncated"), m.get("length")) for m in msgs],
                         [(None, None)] * 4 + [(True, len(d)) for _, d in want[4:]])
        for m in msgs:
            self.assertIsInstance(m["time"], float)
            self.assertNotIn("opcode", m)

    def har(self):
        """The session exported to up.har, parsed."""
        har = os.path.join(self.root, "up.har")
        self.reel.cli("export", "up", "-o", har)
        with open(har, encoding="utf-8") as f:
            return json.load(f)

    def test_import_reads_the_messages_back(self):
        exported = self.har()
        self.reel.cli("import", os.path.join(self.root, "up.har"), "--into", "up2")
        ((cap,), (imp,)) = [json.loads(self.reel.cli("flows", s, "--json").stdout)
                            for s in ("up", "up2")]
        cap = self.reel.flow(cap["id"])
        imp = json.loads(self.reel.cli("flow", "up2", str(imp["id"]), "--json").stdout)
        self.assertEqual(len(cap["messages"]), 2 * len(self.SENT))
        # direction, opcode 0, bytes (not UTF-8 too), length, truncated,
        # time to the microsecond: byte for byte what was captured
        self.assertEqual(json.dumps(imp["messages"], sort_keys=True),
                         json.dumps(cap["messages"], sort_keys=True))
        self.assertEqual(base64.b64decode(imp["messages"][0]["data_b64"]), self.SENT[0])
        # and the sizes the flow's end counts them in
        for side in ("request", "response"):
            for k in ("body_size", "body_truncated"):
                self.assertEqual(imp[side].get(k), cap[side].get(k), (side, k))
        # exported again, the same messages
        (e,) = json.loads(self.reel.cli("export", "up2").stdout)["log"]["entries"]
        self.assertEqual(e["_reel"]["messages"], exported["log"]["entries"][0]["_reel"]["messages"])

    def test_malformed_messages_are_refused(self):
        doc = self.har()
        cases = [
            ((), "messages", {}, b"_reel.messages: not an array but an object"),
            ((1,), None, 5, b"_reel.messages[1]: not an object but a number"),
            ((1,), "type", "sideways", b"_reel.messages[1].type: not \"send\" or \"receive\""),
            ((0,), "time", "now", b"_reel.messages[0].time: not a number but a string"),
            ((0,), "time", -1, b"_reel.messages[0].time: not a time"),
            ((2,), "data", None, b"_reel.messages[2].data: missing"),
            ((0,), "data", "AP9oZWxsbw", b"_reel.messages[0].data: invalid base64 at offset 8"),
            ((0,), "encoding", "gzip", b"_reel.messages[0].encoding: unsupported encoding"),
            ((4,), "length", 3, b"_reel.messages[4].length: less than the 16 bytes of data"),
            ((4,), "length", None, b"_reel.messages[4].length: missing"),
            ((4,), "truncated", "yes", b"_reel.messages[4].truncated: not a boolean but a string"),
            ((2,), "length", 9, b"_reel.messages[2].length: 9 bytes, more than the 2 of data"),
        ]
        for where, key, value, message in cases:
            with self.subTest(message=message):
                good = doc["log"]["entries"][0]
                bad = json.loads(json.dumps(good))
                obj = bad["_reel"]
                if where:
                    obj = obj["messages"]
                    for k in where[:-1]:
                        obj = obj[k]
                    if key is None:
                        obj[where[-1]] = value
                        obj = None
                    else:
                        obj = obj[where[-1]]
                if obj is not None:
                    if value is None:
                        del obj[key]
                    else:
                        obj[key] = value
                refused(self, doc, good, bad, message)

    def test_curl_keeps_the_handshake(self):
        cmd = self.reel.cli("export", "up", "--format", "curl").stdout.decode()
        self.assertIn("'Upgrade: foo'", cmd)
        self.assertIn("'Connection: Upgrade'", cmd)
        self.assertIn("http://127.0.0.1:%d/up" % self.eport, cmd)


class ExportWebSocket(unittest.TestCase):
    """A WebSocket flow recorded through reel (python3-websockets, no
    compression) goes out in _webSocketMessages and comes back with reel
    import message by message as `reel flow --json` shows them: text,
    binary that is not UTF-8, a ping and its pong, text longer than
    body_limit (cut, and cut inside a character), a close with a code and
    a reason each way. A HAR as Chromium's DevTools write it comes in with
    its messages too, and malformed messages are refused."""

    LIMIT = 16
    BINARY = b"\x00\xff\xfe\x80bin"
    PING = b"\x01\xc0ping"
    LONG = "L" * 40
    ACCENTS = "x" + "\u00e9" * 20  # 41 bytes: body_limit cuts inside the 8th character

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-ws-", dir=TMPBASE)
        cls.reel = Reel(cls.root, "ws", "body_limit=%d" % cls.LIMIT)
        asyncio.run(cls.websocket())
        cls.flows = cls.reel.wait_flows(1, "~websocket")

    @classmethod
    async def websocket(cls):
        import websockets

        async def echo(ws, path=None):
            try:
                async for m in ws:
                    await ws.send(m)
            except websockets.ConnectionClosed:  # 4000 is no normal closure
                pass
        server = await websockets.serve(echo, "127.0.0.1", 0, compression="deflate")
        port = server.sockets[0].getsockname()[1]
        s = connect(cls.reel.port)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
        assert recv_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"), "CONNECT refused"
        s.setblocking(False)
        async with websockets.connect("ws://127.0.0.1:%d/w" % port, sock=s,
                                      compression="deflate") as ws:
            for m in ("hello", cls.BINARY, cls.LONG, cls.ACCENTS):
                await ws.send(m)
                assert await ws.recv() == m
            await (await ws.ping(cls.PING))
            await ws.close(4000, "bye")
        server.close()
        await server.wait_closed()

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def har(self):
        """The session exported to ws.har, parsed."""
        har = os.path.join(self.root, "ws.har")
        self.reel.cli("export", "ws", "-o", har)
        with open(har, encoding="utf-8") as f:
            return json.load(f)

    def imported(self, doc, session):
        """doc written to SESSION.har and imported into session: `reel
        flow --json` of each of its flows."""
        p = os.path.join(self.root, session + ".har")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        self.reel.cli("import", p, "--into", session)
        flows = json.loads(self.reel.cli("flows", session, "--json").stdout)
        return [json.loads(self.reel.cli("flow", session, str(f["id"]), "--json").stdout)
                for f in flows]

    def test_round_trip(self):
        doc = self.har()
        (cap,) = [self.reel.flow(f["id"]) for f in self.flows]
        msgs = [(m["from_client"], m["type"], base64.b64decode(m["data_b64"]),
                 m["truncated"], m["length"], m.get("close_code")) for m in cap["messages"]]
        accents = self.ACCENTS.encode()
        want = []
        for d in (b"hello", self.BINARY, self.LONG.encode(), accents):
            t = "text" if d != self.BINARY else "binary"
            want += [(c, t, d[:self.LIMIT], len(d) > self.LIMIT, len(d), None)
                     for c in (True, False)]
        close = struct.pack("!H", 4000) + b"bye"
        want += [(True, "ping", self.PING, False, 6, None), (False, "pong", self.PING, False, 6, None),
                 (True, "close", close, False, 5, 4000), (False, "close", close, False, 5, 4000)]
        # what the capture has (the one that imports must equal)
        self.assertEqual(msgs, want)
        # permessage-deflate: the data messages were sent compressed, the
        # control ones cannot be (RFC 7692); the HAR says which
        self.assertEqual([m["compressed"] for m in cap["messages"]], [True] * 8 + [False] * 4)
        wsm = doc["log"]["entries"][0]["_webSocketMessages"]
        self.assertEqual([m.get("compressed", False) for m in wsm], [True] * 8 + [False] * 4)
        # a text cut inside a character (not UTF-8) is written in base64,
        # said by "encoding", not as one character per byte
        self.assertEqual((wsm[7]["opcode"], wsm[7].get("encoding")), (1, "base64"))
        self.assertEqual(base64.b64decode(wsm[7]["data"]), accents[:self.LIMIT])
        self.assertNotIn("encoding", wsm[0])

        (imp,) = self.imported(doc, "ws2")
        # every message: direction, opcode, bytes (not UTF-8, cut inside
        # a character too), length, truncated, close code, time to the µs
        self.assertEqual(json.dumps(imp["messages"], sort_keys=True, indent=0),
                         json.dumps(cap["messages"], sort_keys=True, indent=0))
        self.assertEqual(base64.b64decode(imp["messages"][7]["data_b64"]), accents[:self.LIMIT])
        for side in ("request", "response"):
            for k in ("body_size", "body_truncated"):
                self.assertEqual(imp[side].get(k), cap[side].get(k), (side, k))
        self.assertEqual(imp["error"], cap["error"])
        self.assertEqual(len(json.loads(self.reel.cli("flows", "ws2", "--json", "~websocket")
                                        .stdout)), 1)
        # exported again, the same messages
        (e,) = json.loads(self.reel.cli("export", "ws2").stdout)["log"]["entries"]
        self.assertEqual(e["_webSocketMessages"], doc["log"]["entries"][0]["_webSocketMessages"])

    def chrome_entry(self, messages):
        """A WebSocket entry as Chromium's DevTools write it (Save all as
        HAR with content)."""
        return {
            "_initiator": {"type": "script"}, "_priority": "Low", "_resourceType": "websocket",
            "cache": {}, "connection": "231947", "pageref": "page_2",
            "request": {
                "method": "GET", "url": "wss://stream.example.test/live?v=2", "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Host", "value": "stream.example.test"},
                            {"name": "Connection", "value": "Upgrade"},
                            {"name": "Upgrade", "value": "websocket"},
                            {"name": "Sec-WebSocket-Version", "value": "13"},
                            {"name": "Sec-WebSocket-Key", "value": "dGhlIHNhbXBsZSBub25jZQ=="},
                            {"name": "Sec-WebSocket-Extensions",
                             "value": "permessage-deflate; client_max_window_bits"}],
                "queryString": [{"name": "v", "value": "2"}], "cookies": [],
                "headersSize": 412, "bodySize": 0},
            "response": {
                "status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1",
                "headers": [{"name": "Upgrade", "value": "websocket"},
                            {"name": "Connection", "value": "Upgrade"},
                            {"name": "Sec-WebSocket-Accept", "value": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}],
                "cookies": [], "content": {"size": 0, "mimeType": "x-unknown"},
                "redirectURL": "", "headersSize": 129, "bodySize": 0, "_transferSize": 129,
                "_error": None},
            "serverIPAddress": "192.0.2.10", "startedDateTime": "2026-01-02T03:04:05.120Z",
            "time": 8.417,
            "timings": {"blocked": 1.2, "dns": -1, "ssl": -1, "connect": -1, "send": 0,
                        "wait": 7.2, "receive": 0, "_blocked_queueing": 0.9},
            "_webSocketMessages": messages}

    def test_chrome_har(self):
        doc = {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
                       "pages": [], "entries": [
            self.chrome_entry([
                {"type": "send", "time": 1767323045.234567, "opcode": 1,
                 "data": "{\"op\":\"sub\",\"ch\":\"caf\u00e9\"}"},
                {"type": "receive", "time": 1767323045.3456, "opcode": 2, "data": "AP8Q"},
                {"type": "receive", "time": 1767323046.5, "opcode": 1, "data": ""}]),
            self.chrome_entry([
                {"type": "send", "time": 1767323050.25, "opcode": 1, "data": "hi"},
                {"type": "error", "time": 1767323050.5, "opcode": -1,
                 "data": "Could not decode a text frame as UTF-8."},
                {"type": "error", "time": 1767323050.75, "opcode": -1, "data": "later"}]),
            self.chrome_entry([
                {"type": "error", "time": 1767323051.5, "opcode": -1, "data": ""}])]}}
        (a, b, c) = self.imported(doc, "chrome")
        self.assertEqual(c["error"], "the browser reported a WebSocket error (without a reason)")
        got = [(m["time_us"], m["from_client"], m["opcode"], m["type"],
                base64.b64decode(m["data_b64"]), m["length"], m["truncated"], m["compressed"])
               for m in a["messages"]]
        text = "{\"op\":\"sub\",\"ch\":\"caf\u00e9\"}".encode()
        self.assertEqual(got, [
            (1767323045234567, True, 1, "text", text, len(text), False, False),
            (1767323045345600, False, 2, "binary", b"\x00\xff\x10", 3, False, False),
            (1767323046500000, False, 1, "text", b"", 0, False, False)])
        self.assertEqual(a["response"]["status"], 101)
        self.assertIsNone(a["error"])
        # Chromium's error is no message: the flow failed with it
        self.assertEqual([(m["type"], base64.b64decode(m["data_b64"])) for m in b["messages"]],
                         [("text", b"hi")])
        self.assertEqual(b["error"],
                         "the browser reported a WebSocket error: "
                         "Could not decode a text frame as UTF-8.")
        flows = json.loads(self.reel.cli("flows", "chrome", "--json", "~websocket").stdout)
        self.assertEqual(len(flows), 3)

    def test_malformed_messages_are_refused(self):
        doc = self.har()
        # the messages: 0-7 text and binary, 8 ping, 9 pong, 10-11 close
        cases = [
            ((), {}, b"_webSocketMessages: not an array but an object"),
            ((1,), 5, b"_webSocketMessages[1]: not an object but a number"),
            ((1, "type"), "sideways",
             b"_webSocketMessages[1].type: not \"send\", \"receive\" or \"error\""),
            ((0, "time"), None, b"_webSocketMessages[0].time: missing"),
            ((0, "time"), "now", b"_webSocketMessages[0].time: not a number but a string"),
            ((0, "opcode"), None, b"_webSocketMessages[0].opcode: missing"),
            ((0, "opcode"), "1", b"_webSocketMessages[0].opcode: not an integer but a string"),
            ((0, "opcode"), 3, b"_webSocketMessages[0].opcode: 3 is not the opcode of a WebSocket"
             b" message (1 text, 2 binary, 8 close, 9 ping, 10 pong) nor 0"),
            ((2, "data"), None, b"_webSocketMessages[2].data: missing"),
            ((2, "data"), "AP/+gGJp*", b"_webSocketMessages[2].data: invalid base64 at offset 8"),
            ((2, "encoding"), "hex", b"_webSocketMessages[2].encoding: unsupported encoding"),
            ((4, "length"), 3, b"_webSocketMessages[4].length: less than the 16 bytes of data"),
            ((4, "length"), None, b"_webSocketMessages[4].length: missing"),
            ((4, "truncated"), 1, b"_webSocketMessages[4].truncated: not a boolean but a number"),
            ((0, "length"), 9, b"_webSocketMessages[0].length: 9 bytes, more than the 5 of data"),
            ((8, "data"), base64.b64encode(b"p" * 126).decode(),
             b"_webSocketMessages[8].data: 126 bytes: a control message (close, ping, pong) "
             b"has at most 125"),
            ((10, "data"), "AA==",
             b"_webSocketMessages[10].data: 1 byte: a close message has none or at least"),
            # what reel's codec refuses on the wire, a file cannot record
            ((10, "data"), base64.b64encode(struct.pack("!H", 999)).decode(),
             b"_webSocketMessages[10].data: close code 999, which no endpoint sends"),
            ((8, "compressed"), True,
             b"_webSocketMessages[8].compressed: true on a control message"),
            ((), "both",
             b"_webSocketMessages: WebSocket messages beside _reel.messages"),
        ]
        for where, value, message in cases:
            with self.subTest(message=message):
                good = doc["log"]["entries"][0]
                bad = json.loads(json.dumps(good))
                if value == "both":
                    bad["_reel"]["messages"] = [{"type": "send", "time": 1.5, "data": "x"}]
                elif not where:
                    bad["_webSocketMessages"] = value
                else:
                    obj, key = bad["_webSocketMessages"], where[-1]
                    if len(where) == 2:
                        obj = obj[where[0]]
                    if value is None:
                        del obj[key]
                    else:
                        obj[key] = value
                refused(self, doc, good, bad, message)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the exact bytes of its body and keeps them."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, data))
        if hasattr(self.server, "heads"):
            self.server.heads.append(self.headers.items())
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# Request bodies that a shell command can mangle: '@' makes curl read a
# file, a leading '-' made printf take its format for an option.
BODIES = {
    "/at": b"@/etc/hostname",
    "/at-nul": b"@/etc/hostname\x00",
    "/dash": b"--------boundary\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--------boundary--\r\n",
    "/dash-nul": b"--------boundary\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n\x00\x01\xff'%\\\r\n--------boundary--\r\n",
    "/dash-only": b"-",
    "/empty": b"",
}


class ExportBodies(unittest.TestCase):
    """Exported curl commands send recorded bodies byte for byte (bash and
    dash), against a Python echo origin; raw names a tunnel's authority."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-bodies-", dir=TMPBASE)
        cls.echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        cls.echo.received = []
        cls.echo.heads = []
        cls.echo_thread = threading.Thread(target=cls.echo.serve_forever, daemon=True)
        cls.echo_thread.start()
        cls.port = cls.echo.server_address[1]
        cls.reel = Reel(cls.root, "bodies")
        for path, data in BODIES.items():
            curl(cls.reel, "--data-binary", "@-", "http://127.0.0.1:%d%s" % (cls.port, path), input=data)
        # A CONNECT tunnel carrying neither TLS nor HTTP: a tunnel flow.
        s = connect(cls.reel.port)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % cls.port)
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(4096)
            if not d:
                break
            got += d
        assert got.startswith(b"HTTP/1.1 200"), got
        s.sendall(b"\x00\x01binary hello\r\n\r\n")
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        cls.flows = cls.reel.wait_flows(len(BODIES) + 1)

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.echo.shutdown()
        cls.echo.server_close()
        cls.echo_thread.join(10)
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_curl_sends_recorded_bodies(self):
        out = self.reel.cli("export", "bodies", "--format", "curl", "~m POST").stdout.decode("latin-1")
        blocks = ["# flow" + b for b in out.split("# flow")[1:]]
        self.assertEqual(len(blocks), len(BODIES), out)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        shells = [sh for sh in ("bash", "dash") if shutil.which(sh)]
        for sh in shells:
            for block in blocks:
                path = next(p for p in BODIES if ":%d%s'" % (self.port, p) in block)
                with self.subTest(shell=sh, path=path):
                    del self.echo.received[:]
                    r = subprocess.run([sh, "-c", block.encode("latin-1")], capture_output=True,
                                       env=env, timeout=30)
                    self.assertEqual(r.returncode, 0, (block, r.stderr))
                    self.assertEqual(r.stderr, b"", block)
                    self.assertEqual(self.echo.received, [(path, BODIES[path])], block)
                    self.assertEqual(r.stdout, BODIES[path], block)
                    # Content-Length: 0 as recorded: with no body option
                    # curl sent none (RFC 9110 8.6: a POST sends it)
                    self.assertIn(("Content-Length", str(len(BODIES[path]))),
                                  self.echo.heads[-1], block)
        self.assertIn("--data-raw '@/etc/hostname'", out)
        self.assertNotIn("printf '-", out)

    def test_curl_bodies_from_anywhere(self):
        # --bodies with a relative DIR: the script runs from any directory
        # (its commands named DIR relative to the export's, and curl sent an
        # empty body from elsewhere), and a body file gone fails loudly
        # rather than sending an empty body
        work = os.path.join(self.root, "work")
        os.makedirs(os.path.join(work, "out"), exist_ok=True)
        env = dict(self.reel.env)
        r = subprocess.run([REEL, "export", "bodies", "--format", "curl", "--bodies", "b",
                            "-o", "out/x.curl", "~u /dash-nul"], cwd=work, env=env,
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        script = os.path.join(work, "out", "x.curl")
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        shells = [sh for sh in ("bash", "dash") if shutil.which(sh)]
        for sh in shells:
            with self.subTest(shell=sh):
                del self.echo.received[:]
                r = subprocess.run([sh, script], capture_output=True, env=env, timeout=30,
                                   cwd=self.root)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(self.echo.received, [("/dash-nul", BODIES["/dash-nul"])])
        with open(script, "rb") as f:  # the file by its absolute path
            self.assertIn(b" < '%s/b/" % os.path.realpath(work).encode(), f.read())
        for name in os.listdir(os.path.join(work, "b")):
            os.unlink(os.path.join(work, "b", name))
        for sh in shells:
            with self.subTest(shell=sh, missing=True):
                del self.echo.received[:]
                r = subprocess.run([sh, script], capture_output=True, env=env, timeout=30)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(b".request", r.stderr)
                self.assertEqual(self.echo.received, [])

    def test_raw_tunnel_names_authority(self):
        tun = [f for f in self.flows if f["kind"] == "tunnel"]
        self.assertEqual(len(tun), 1, self.flows)
        out = self.reel.cli("export", "bodies", "--format", "raw", "~u tcp://").stdout
        self.assertTrue(out.startswith(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % self.port), out[:200])
        self.assertIn(b"\x00\x01binary hello", out)
        # curl has no command for it: nothing on stdout, and stderr says why
        r = self.reel.cli("export", "bodies", "--format", "curl", "~u tcp://")
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"reel export: skipped 1 flow: TCP tunnels, refused SOCKS5 requests, or "
                      b"requests refused before their host was known (no URL to write)", r.stderr)


def echo_server():
    """An EchoHandler origin that also keeps each request's header fields,
    and the thread serving it."""
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    echo.received, echo.heads = [], []
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    return echo, thread


def run_script(sh, text, env, root):
    """Runs text as a script file under shell sh, as a user runs an export
    (a command over 128 KiB cannot be passed with -c: one execve argument)."""
    path = os.path.join(root, "cmd.sh")
    with open(path, "wb") as f:
        f.write(text.encode("latin-1") if isinstance(text, str) else text)
    return subprocess.run([sh, path], capture_output=True, env=env, timeout=60)


class ExportSends(unittest.TestCase):
    """What a curl command sends and what a raw export writes, checked at a
    Python echo origin that keeps every field it gets."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-sends-", dir=TMPBASE)
        cls.echo, cls.echo_thread = echo_server()
        cls.port = cls.echo.server_address[1]
        cls.reel = Reel(cls.root, "sends")
        cls.env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        cls.shells = [sh for sh in ("bash", "dash") if shutil.which(sh)]

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.echo.shutdown()
        cls.echo.server_close()
        cls.echo_thread.join(10)
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_long_body(self):
        # 200,000 bytes of text: inline, one curl argument over Linux's
        # 128 KiB cap on one, the shell could not start curl
        line = b"it's 100%% \\ done, line %06d\n"
        data = b"".join(line % i for i in range(200000 // len(line % 0) + 1))[:200000]
        url = "http://127.0.0.1:%d/long" % self.port
        curl(self.reel, "--data-binary", "@-", url, input=data)
        self.reel.wait_flows(1, "~u /long")
        cmd = self.reel.cli("export", "sends", "--format", "curl", "~u /long").stdout
        for sh in self.shells:
            with self.subTest(shell=sh):
                del self.echo.received[:]
                r = run_script(sh, cmd, self.env, self.root)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, b"")
                self.assertEqual(self.echo.received, [("/long", data)])
                self.assertEqual(r.stdout, data)

    def test_a_request_without_a_host_is_left_out_of_har_and_curl(self):
        # refused before its host was known: no absolute URL to write, and a
        # HAR with a relative one could not be imported back
        s = connect(self.reel.port)
        s.sendall(b"GET /nohost HTTP/1.1\r\n\r\n")
        got, _ = read_all(s)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 400"), got)
        self.reel.wait_flows(1, "~u /nohost")
        har = os.path.join(self.root, "nohost.har")
        r = self.reel.cli("export", "sends", "-o", har, "~u /nohost")
        self.assertIn(b"skipped", r.stderr + r.stdout)
        with open(har) as f:
            self.assertEqual(json.load(f)["log"]["entries"], [])
        r = self.reel.cli("export", "sends", "-o", har)  # the whole session imports back
        self.reel.cli("import", har, "--into", "nohost-back")
        self.assertFalse(self.reel.cli("export", "sends", "--format", "curl", "~u /nohost").stdout)
        raw = self.reel.cli("export", "sends", "--format", "raw", "~u /nohost").stdout
        self.assertTrue(raw.startswith(b"GET /nohost HTTP/1.1\r\n"), raw)  # raw keeps it

    def test_raw_of_an_open_flow(self):
        # a request body still arriving: no end record says it is cut, its
        # Content-Length does; raw used to keep 10 with 5 bytes after it
        # (an origin that never reads: the echo origin would answer late)
        origin = socket.socket()
        origin.bind(("127.0.0.1", 0))
        origin.listen(1)
        port = origin.getsockname()[1]
        s = connect(self.reel.port)
        try:
            s.sendall(b"POST http://127.0.0.1:%d/open HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Content-Length: 10\r\n\r\nhello" % (port, port))
            deadline = time.time() + 10
            raw = b""
            while not raw.endswith(b"hello") and time.time() < deadline:
                time.sleep(0.1)
                raw = self.reel.cli("export", "sends", "--format", "raw", "~u /open").stdout
            head, _, rest = raw.partition(b"\r\n\r\n")
            self.assertIn(b"\r\nContent-Length: 5\r\n", head + b"\r\n", raw)
            self.assertIn(b"\r\nX-Reel-Body-Cut: 5 of 10 bytes stored", head, raw)
            self.assertEqual(rest, b"hello")
        finally:
            s.close()
            origin.close()

    def test_no_fields_the_origin_never_got(self):
        # A client that sent no Accept nor User-Agent, its proxy credentials
        # and hop-by-hop fields (for reel, which did not pass them on; a TE
        # naming "trailers" it would, as TE: trailers)
        s = connect(self.reel.port)
        s.sendall(b"POST http://127.0.0.1:%d/hop HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Proxy-Authorization: Basic dXNlcjpwcm94eXNlY3JldA==\r\n"
                  b"Proxy-Connection: keep-alive\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
                  b"Keep-Alive: timeout=5\r\nTE: gzip\r\nX-Kept: yes\r\n"
                  b"Content-Length: 5\r\n\r\nhello" % (self.port, self.port))
        got, _ = read_all(s)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        self.reel.wait_flows(1, "~u /hop")
        via_reel = [k.lower() for k, v in self.echo.heads[-1]]  # what reel sent on
        cmd = self.reel.cli("export", "sends", "--format", "curl", "~u /hop").stdout.decode()
        self.assertNotIn("Proxy-Authorization", cmd)
        for sh in self.shells:
            with self.subTest(shell=sh):
                del self.echo.received[:], self.echo.heads[:]
                r = run_script(sh, cmd, self.env, self.root)
                self.assertEqual(r.returncode, 0, (cmd, r.stderr))
                self.assertEqual(self.echo.received, [("/hop", b"hello")])
                # the origin gets what it got from reel, and nothing of curl's
                self.assertEqual(sorted(k.lower() for k, v in self.echo.heads[0]),
                                 sorted(via_reel), cmd)
                self.assertEqual(sorted(via_reel), ["content-length", "host", "x-kept"])

    def test_imported_decoded_bodies(self):
        # reel import stores a HAR's bodies decoded (HAR holds them so) and
        # keeps Content-Encoding: gzip and the encoded Content-Length
        text = "hello hello " * 8
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 3,
                 "request": {"method": "POST", "url": "http://127.0.0.1:%d/decoded" % self.port,
                             "httpVersion": "HTTP/1.1",
                             "headers": [{"name": "Host", "value": "127.0.0.1:%d" % self.port},
                                         {"name": "Content-Encoding", "value": "gzip"},
                                         {"name": "Content-Length", "value": "94"},
                                         {"name": "Content-Type", "value": "text/plain"}],
                             "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 94,
                             "postData": {"mimeType": "text/plain", "text": text}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [{"name": "Content-Encoding", "value": "gzip"},
                                          {"name": "Content-Length", "value": "31"}],
                              "cookies": [], "content": {"size": 11, "mimeType": "text/plain",
                                                         "text": "hello world"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 31},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        path = os.path.join(self.root, "decoded.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        self.reel.cli("import", path, "--into", "decoded")
        raw = self.reel.cli("export", "decoded", "--format", "raw").stdout
        req_head, rest = raw.split(b"\r\n\r\n", 1)
        self.assertNotIn(b"content-encoding", req_head.lower())
        self.assertIn(b"\r\nContent-Length: %d" % len(text), req_head)
        self.assertTrue(rest.startswith(text.encode() + b"HTTP/1.1 200 OK\r\n"), rest)
        resp_head, resp_body = rest[len(text):].split(b"\r\n\r\n", 1)
        self.assertNotIn(b"content-encoding", resp_head.lower())
        self.assertIn(b"\r\nContent-Length: 11", resp_head)
        self.assertEqual(resp_body, b"hello world")
        cmd = self.reel.cli("export", "decoded", "--format", "curl").stdout.decode()
        for sh in self.shells:
            with self.subTest(shell=sh):
                del self.echo.received[:], self.echo.heads[:]
                r = run_script(sh, cmd, self.env, self.root)
                self.assertEqual(r.returncode, 0, (cmd, r.stderr))
                self.assertEqual(self.echo.received, [("/decoded", text.encode())])
                names = [k.lower() for k, v in self.echo.heads[0]]
                self.assertNotIn("content-encoding", names, cmd)


def recv_until(c, end):
    d = b""
    while end not in d:
        x = c.recv(4096)
        if not x:
            break
        d += x
    return d


def hints_origin():
    """A plain socket origin: answers 100 Continue to an Expect, reads a
    chunked body to its trailers, then sends a 103 Early Hints and a chunked
    200 with a trailer field. Returns (server socket, port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                head = recv_until(c, b"\r\n\r\n")
                if b"100-continue" in head.lower():
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if not head.endswith(b"\r\n\r\n\r\n"):
                    recv_until(c, b"X-Req-Sum: rs1\r\n\r\n")
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                          b"5\r\nworld\r\n0\r\nX-Checksum: sha1-abc\r\n\r\n")
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


class ExportExtras(unittest.TestCase):
    """What exports used to leave out, recorded through reel from real
    clients: 1xx answers (100 Continue, 103 Early Hints) and trailer fields
    on both sides of a chunked exchange (python socket client and origin),
    and a WebSocket message body_limit cut (python3-websockets, 64 bytes
    kept of 300)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-extras-", dir=TMPBASE)
        cls.srv, cls.port = hints_origin()
        cls.reel = Reel(cls.root, "ex", "body_limit=64")
        s = connect(cls.reel.port)
        s.sendall(b"POST http://127.0.0.1:%d/up HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Sum\r\n"
                  b"Connection: close\r\n\r\n" % (cls.port, cls.port))
        assert recv_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue"), "no 100"
        s.sendall(b"5\r\nhello\r\n0\r\nX-Req-Sum: rs1\r\n\r\n")
        got, _ = read_all(s)
        s.close()
        assert got.endswith(b"0\r\nX-Checksum: sha1-abc\r\n\r\n"), got
        asyncio.run(cls.websocket())
        cls.flows = cls.reel.wait_flows(2)

    @classmethod
    async def websocket(cls):
        import websockets

        async def echo(ws, path=None):
            async for m in ws:
                await ws.send(m)
        server = await websockets.serve(echo, "127.0.0.1", 0, compression=None)
        port = server.sockets[0].getsockname()[1]
        s = connect(cls.reel.port)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
        assert recv_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"), "CONNECT refused"
        s.setblocking(False)
        async with websockets.connect("ws://127.0.0.1:%d/w" % port, sock=s, compression=None) as ws:
            await ws.send("short")
            assert await ws.recv() == "short"
            await ws.send("L" * 300)
            assert await ws.recv() == "L" * 300
        server.close()
        await server.wait_closed()

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.srv.close()
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def export(self, *args):
        return self.reel.cli("export", "ex", *args).stdout

    def test_interim_and_trailers(self):
        har = json.loads(self.export("~m POST"))
        (e,) = har["log"]["entries"]
        r = e["_reel"]
        self.assertEqual([(i["status"], i["statusText"]) for i in r["interim"]],
                         [(100, "Continue"), (103, "Early Hints")])
        self.assertEqual(r["interim"][1]["headers"], [{"name": "Link", "value": "</s.css>; rel=preload"}])
        self.assertEqual(r["request_trailers"], [{"name": "X-Req-Sum", "value": "rs1"}])
        self.assertEqual(r["response_trailers"], [{"name": "X-Checksum", "value": "sha1-abc"}])
        (o,) = [json.loads(l) for l in self.export("--format", "ndjson", "~m POST").splitlines()]
        self.assertEqual([i["status"] for i in o["interim"]], [100, 103])
        self.assertEqual(o["request"]["trailers"], [{"name": "X-Req-Sum", "value": "rs1"}])
        self.assertEqual(o["response"]["trailers"], [{"name": "X-Checksum", "value": "sha1-abc"}])
        raw = self.export("--format", "raw", "~m POST")
        self.assertIn(b"\r\n\r\n5\r\nhello\r\n0\r\nX-Req-Sum: rs1\r\n\r\n"
                      b"HTTP/1.1 100 Continue\r\n\r\n"
                      b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\n", raw)
        self.assertTrue(raw.endswith(b"5\r\nworld\r\n0\r\nX-Checksum: sha1-abc\r\n\r\n"), raw[-80:])
        cmd = self.export("--format", "curl", "~m POST").decode()
        self.assertIn("# not sent: curl cannot send the request's trailer fields (X-Req-Sum)\n", cmd)

    def test_truncated_websocket_message(self):
        har = json.loads(self.export("~websocket"))
        (e,) = har["log"]["entries"]
        msgs = [m for m in e["_webSocketMessages"] if m["opcode"] == 1]
        self.assertEqual(len(msgs), 4, msgs)
        # each message's time to the microsecond recorded (12 digits of
        # the epoch's seconds rounded them to 10 ms)
        rec = [m["time_us"] for m in self.reel.flow(e["_reel"]["id"])["messages"]
               if m["opcode"] == 1]
        self.assertEqual([round(m["time"] * 1e6) for m in msgs], rec)
        self.assertTrue(all("truncated" not in m for m in msgs if m["data"] == "short"))
        cut = [m for m in msgs if m["data"].startswith("L")]
        self.assertEqual(len(cut), 2)
        for m in cut:
            self.assertEqual((m["data"], m.get("truncated"), m.get("length")), ("L" * 64, True, 300))
        # the handshake has no body: its bodySize is 0, not the messages'
        # bytes (reel import took those for a cut body, 'truncated')
        self.assertEqual((e["request"]["bodySize"], e["response"]["bodySize"]), (0, 0))
        self.assertEqual(e["response"]["content"]["size"], 0)
        (o,) = [json.loads(l) for l in self.export("--format", "ndjson", "~websocket").splitlines()]
        texts = [m for m in o["messages"] if m["type"] == "text"]
        self.assertEqual([(m["length"], m["truncated"]) for m in texts],
                         [(5, False), (5, False), (300, True), (300, True)])


class RecordedAndImported(unittest.TestCase):
    """One session with an HTTP/1.1 flow curl sent through reel and a flow
    imported from HAR, the first annotated with notes that quote secrets:
    what reel flow --json and reel flows --json say of them agrees, and
    --redact reaches the notes."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-mix-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "mix")
        curl(cls.reel, cls.origin.url("/100b"))
        assert len(cls.reel.wait_flows(1)) == 1
        code = cls.reel.stop()  # the import needs the session to itself
        assert code == 0, cls.reel.log()
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 3,
                 "request": {"method": "GET", "url": "http://imported.test/x",
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": 0},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [],
                              "content": {"size": 2, "mimeType": "text/plain", "text": "ok"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 2},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        path = os.path.join(cls.root, "one.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        cls.reel.cli("import", path, "--into", "mix")
        cls.reel.cli("annotate", "mix", "1", "retried with Authorization: Bearer " + SECRET)
        cls.reel.cli("annotate", "mix", "1", 'the login sent {"password": "%s"}' % COOKIE)

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_flow_and_flows_json_agree_on_connection_and_stream(self):
        rows = {r["id"]: r for r in self.reel.flows()}
        self.assertEqual(sorted(rows), [1, 2])
        for fid, row in rows.items():
            one = self.reel.flow(fid)
            for k in ("client_conn", "stream_id"):
                self.assertEqual(one[k], row[k], (fid, k, one[k], row[k]))
        # recorded: a client connection, no HTTP/2 stream; imported: neither
        self.assertIsInstance(rows[1]["client_conn"], int)
        self.assertIsNone(rows[1]["stream_id"])
        self.assertEqual(self.reel.flow(2)["source"], "har-import")
        self.assertIsNone(rows[2]["client_conn"])
        self.assertIsNone(rows[2]["stream_id"])

    def test_redact_reaches_annotations(self):
        for fmt in ("har", "ndjson"):  # the formats that carry notes
            plain = self.reel.cli("export", "mix", "--format", fmt, "~id 1").stdout
            self.assertIn(SECRET.encode(), plain, fmt)
            self.assertIn(COOKIE.encode(), plain, fmt)
            red = self.reel.cli("export", "mix", "--format", fmt, "--redact", "~id 1").stdout
            self.assertNotIn(SECRET.encode(), red, fmt)
            self.assertNotIn(COOKIE.encode(), red, fmt)
            self.assertIn(b"retried with Authorization: Bearer REDACTED", red, fmt)
        har = json.loads(self.reel.cli("export", "mix", "--redact", "~id 1").stdout)
        e = har["log"]["entries"][0]
        self.assertEqual([a["text"] for a in e["_reel"]["annotations"]],
                         ["retried with Authorization: Bearer REDACTED",
                          'the login sent {"password": "REDACTED"}'])
        self.assertTrue(e["_reel"]["redacted"])
        self.assertNotIn(SECRET, e["comment"])


class EarlyAnswer(unittest.TestCase):
    """An upload the origin answered before it ended: curl POSTs 20 MB
    (without Expect) to a python origin that answers 413 with Connection:
    close after the head and closes, and curl stops sending (nginx, whose
    lingering close reads the rest, would get it all). The flow holds the
    bytes that came and no request end; the HAR says so (its bodySize
    alone read as the whole request), and reel import of it keeps the
    request unfinished."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-early-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "ea")
        big = os.path.join(cls.root, "big3m")
        with open(big, "wb") as f:
            f.write(b"u" * 20000000)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)

        def early_413():
            conn, _ = srv.accept()
            conn.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n"
                         b"Connection: close\r\n\r\nbig\n")
            time.sleep(0.05)
            conn.close()
            srv.close()
        t = threading.Thread(target=early_413)
        t.start()
        r = curl(cls.reel, "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
                 "--data-binary", "@" + big, "http://127.0.0.1:%d/up" % srv.getsockname()[1],
                 check=False)
        t.join(10)
        assert r.stdout == b"413", r
        curl(cls.reel, "-o", "/dev/null", "--data-binary", "whole", cls.origin.url("/echo"))
        cls.flows = cls.reel.wait_flows(2)
        code = cls.reel.stop()  # the imports below need no proxy
        assert code == 0, cls.reel.log()

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def har(self, session, filt):
        (e,) = json.loads(self.reel.cli("export", session, filt).stdout)["log"]["entries"]
        return e

    def imported(self, entry, name):
        """entry imported alone into session name; its flow (reel flow --json)."""
        path = os.path.join(self.root, name + ".har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        self.reel.cli("import", path, "--into", name)
        return json.loads(self.reel.cli("flow", name, "1", "--json").stdout)

    def test_har_says_the_upload_never_ended(self):
        (f,) = [x for x in self.flows if x["status"] == 413]
        full = self.reel.flow(f["id"])
        sent = full["request"]["body_size"]
        self.assertLess(sent, 20000000)
        self.assertIsNone(full["request_end_us"])
        # the index says so too (the response head's time stood in for the
        # request's end while the flow was open)
        self.assertIsNone(f["request_end_us"], f)
        e = self.har("ea", "~c 413")
        self.assertEqual(e["request"]["bodySize"], sent)
        self.assertIs(e["_reel"].get("request_unfinished"), True, e["_reel"])
        self.assertIn("request unfinished: the response came before the client had sent the "
                      "whole request (bodySize counts the %d bytes that came of the "
                      "Content-Length's 20000000)" % sent, e["comment"])
        self.assertNotIn("request_truncated", e["_reel"])  # every byte that came is there
        # a whole upload says nothing of the kind
        w = self.har("ea", "~u /echo$")
        self.assertNotIn("request_unfinished", w["_reel"])
        self.assertNotIn("comment", w)

    def test_flow_says_the_upload_never_ended(self):
        """reel flow's text says it too, with the bytes that came; a whole
        upload, and the same flow imported back, as the record has them."""
        (f,) = [x for x in self.flows if x["status"] == 413]
        sent = self.reel.flow(f["id"])["request"]["body_size"]
        text = self.reel.cli("flow", "--headers-only", "ea", str(f["id"])).stdout.decode()
        self.assertIn("\n~ the request was not sent whole: the final response came before its "
                      "body ended, and the exchange ended with %d bytes of it (RFC 9110 10.1.1 "
                      "lets a client stop sending)\n" % sent, text)
        w = self.reel.flows("~u /echo$")[0]
        text = self.reel.cli("flow", "ea", str(w["id"])).stdout.decode()
        self.assertNotIn("not sent whole", text)

    def test_import_keeps_the_request_unfinished(self):
        e = self.har("ea", "~c 413")
        back = self.imported(e, "ea-back")
        self.assertIsNone(back["request_end_us"])
        self.assertEqual(back["request"]["body_size"], e["request"]["bodySize"])
        self.assertFalse(back["request"]["body_truncated"])
        again = self.har("ea-back", "~c 413")
        self.assertIs(again["_reel"].get("request_unfinished"), True, again["_reel"])
        self.assertEqual(again["comment"], e["comment"])
        # the mark wins over times that say the request ended: without
        # reel's own times, the phases would give it an end
        bare = json.loads(json.dumps(e))
        for k in ("duration_ms", "request_end_ms", "response_start_ms"):
            del bare["_reel"][k]
        self.assertIsNone(self.imported(bare, "ea-bare")["request_end_us"])
        del bare["_reel"]["request_unfinished"]
        self.assertIsNotNone(self.imported(bare, "ea-ended")["request_end_us"])
        # reel's own times without a request end, and not said to be
        # unfinished: the phases give the end (a re-export must not call
        # the request unfinished)
        kept = json.loads(json.dumps(e))
        kept["_reel"]["request_unfinished"] = False
        kept["_reel"]["request_end_ms"] = -1
        self.assertIsNotNone(self.imported(kept, "ea-kept")["request_end_us"])
        self.assertNotIn("request_unfinished", self.har("ea-kept", "~c 413")["_reel"])
        bad = json.loads(json.dumps(e))
        bad["_reel"]["request_unfinished"] = "yes"
        refused(self, {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}}},
                self.har("ea", "~u /echo$"), bad,
                b"_reel.request_unfinished: not a boolean but a string")


class RedirectHandler(http.server.BaseHTTPRequestHandler):
    """An origin whose answers carry secrets in URLs: a 302 of the OAuth
    implicit flow (the token in the Location's fragment), and a
    Content-Location with one in a nested URL; POSTs echoed."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/cookie"):
            self.send_response(200)
            self.send_header("Set-Cookie", "SCNOEQSECRET; Path=/; HttpOnly")
        elif self.path.startswith("/implicit"):
            self.send_response(302)
            self.send_header("Location", "https://client.test/cb#access_token=IMPLICITSECRET"
                             "&token_type=bearer")
        else:
            self.send_response(200)
            self.send_header("Content-Location", "/cb?next=https%3A%2F%2Fc.test%2F%23id_token%3D"
                             "CLOCSECRET")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


# Each secret reel recorded from LeakedSecrets' traffic, and what must
# stand in its place in every redacted export.
URL_SECRETS = {
    "IMPLICITSECRET": b"#access_token=REDACTED&token_type=REDACTED",
    "NESTEDQSECRET": b"redirect_uri=https%3A%2F%2Fc.test%2Fcb%3Ftoken%3DREDACTED",
    "DOUBLESECRET": b"r=https%253A%252F%252Fc.test%252Fcb%253Faccess_token%253DREDACTED",
    "RAWNESTSECRET": b"next=/cb?token=REDACTED",
    "CLOCSECRET": b"next=https%3A%2F%2Fc.test%2F%23id_token%3DREDACTED",
    "REFFRAGSECRET": b"#/cb?state=1&access_token=REDACTED",
    "REFUSERSECRET": b"http://ref:REDACTED@x.test/",
    "USERINFOSECRET": b"http://user:REDACTED@127.0.0.1:",
    "TARGETFRAGSECRET": b"/frag#id_token=REDACTED",
    "PATHPARAMSECRET": b"/semi;jsessionid=REDACTED?a=1;token=REDACTED",
    "SEMIQSECRET": b"/semi;jsessionid=REDACTED?a=1;token=REDACTED",
}
# A cookie without '=' is a value (RFC 6265bis 5.6: the name is "")
COOKIE_SECRETS = {
    "CNOEQSECRET": b"REDACTED; sid=REDACTED",
    "SCNOEQSECRET": b"REDACTED; Path=/; HttpOnly",
}
BODY_SECRETS = {
    "SQ4SECRET": b"{'api_key': 'REDACTED', 'ok': 1}",
    "DQ5SECRET": b'{"api_key": "REDACTED", \'ok\': 1}',
    "SQVSECRET": b"{\"token\": 'REDACTED', 'password': \"REDACTED\"}",
    # URLs in bodies, their JSON escapes kept
    "JSONURLSECRET": b'"https://api.example/cb?access_token=REDACTED&x=1"',
    "ESCURLSECRET": b'"https:\\/\\/a.example\\/?x=1\\u0026token=REDACTED"',
    "HTMLURLSECRET": b'<a href="/cb?x=1&amp;token=REDACTED">x</a>',
}


class LeakedSecrets(unittest.TestCase):
    """Secrets that redacted exports once let through, sent through reel
    by curl and a raw socket to a Python origin: tokens in URL fragments
    (OAuth's implicit flow) and in URLs nested in a query, single-quoted
    keys of a body that is not JSON, a URL's userinfo password, ';'
    parameters of a query and a path, and URLs in JSON and HTML bodies."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-leaks-", dir=TMPBASE)
        cls.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RedirectHandler)
        cls.thread = threading.Thread(target=cls.srv.serve_forever, daemon=True)
        cls.thread.start()
        cls.port = cls.srv.server_address[1]
        base = "http://127.0.0.1:%d" % cls.port
        cls.reel = Reel(cls.root, "leaks")
        n = 0
        for url, extra in [
                (base + "/implicit", []),
                (base + "/nested?redirect_uri=https%3A%2F%2Fc.test%2Fcb%3Ftoken%3DNESTEDQSECRET"
                 "&r=https%253A%252F%252Fc.test%252Fcb%253Faccess_token%253DDOUBLESECRET"
                 "&next=/cb?token=RAWNESTSECRET",
                 ["-H", "Referer: http://x.test/p#/cb?state=1&access_token=REFFRAGSECRET"]),
                (base + "/ref", ["-H", "Referer: http://ref:REFUSERSECRET@x.test/"]),
                (base + "/semi;jsessionid=PATHPARAMSECRET?a=1;token=SEMIQSECRET", []),
                (base + "/cookie", ["-H", "Cookie: CNOEQSECRET; sid=CSIDSECRET"])]:
            r = curl(cls.reel, "-o", "/dev/null", "-w", "%{http_code}", *extra, url)
            assert r.stdout in (b"200", b"302"), r.stdout
            n += 1
        for body in (b"{'api_key': 'SQ4SECRET', 'ok': 1}", b'{"api_key": "DQ5SECRET", \'ok\': 1}',
                     b"{\"token\": 'two SQVSECRET', 'password': \"SQVSECRET\"}",
                     b'{"next": "https://api.example/cb?access_token=JSONURLSECRET&x=1",'
                     b' "r": "https:\\/\\/a.example\\/?x=1\\u0026token=ESCURLSECRET"}'):
            curl(cls.reel, "-H", "Content-Type: application/json", "--data-binary", "@-",
                 base + "/json", input=body)
            n += 1
        curl(cls.reel, "-H", "Content-Type: text/html", "--data-binary", "@-", base + "/html",
             input=b'<a href="/cb?x=1&amp;token=HTMLURLSECRET">x</a>')
        n += 1
        # reel refuses userinfo in a target (400) and records the request
        out = raw(cls.reel.port, b"GET http://user:USERINFOSECRET@127.0.0.1:%d/ui HTTP/1.1\r\n"
                  b"Host: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (cls.port, cls.port))
        assert out.startswith(b"HTTP/1.1 400"), out[:100]
        out = raw(cls.reel.port, b"GET /frag#id_token=TARGETFRAGSECRET HTTP/1.1\r\n"
                  b"Host: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % cls.port)
        assert out.startswith(b"HTTP/1.1 "), out[:100]
        cls.flows = cls.reel.wait_flows(n + 2)
        assert len(cls.flows) == n + 2, cls.flows

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.srv.shutdown()
        cls.srv.server_close()
        cls.thread.join(10)
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def check(self, secrets):
        for fmt in ("har", "ndjson", "raw", "curl"):
            plain = self.reel.cli("export", "leaks", "--format", fmt).stdout
            red = self.reel.cli("export", "leaks", "--format", fmt, "--redact").stdout
            for secret, stands in secrets.items():
                with self.subTest(fmt=fmt, secret=secret):
                    if secret.encode() not in plain:
                        # HAR and curl skip the refused requests, curl has
                        # no responses; ndjson and raw have everything
                        self.assertIn(fmt, ("har", "curl"), secret)
                        continue
                    at = red.find(secret.encode())
                    self.assertEqual(at, -1, red[max(at - 200, 0):at + 50])
                    if fmt == "raw":
                        self.assertIn(stands, red)
                    elif fmt == "ndjson":
                        self.assertIn(json.dumps(stands.decode())[1:-1].encode(), red)

    def test_url_secrets(self):
        self.check(URL_SECRETS)
        har = json.loads(self.reel.cli("export", "leaks", "--redact").stdout)
        e = next(e for e in har["log"]["entries"] if e["response"]["status"] == 302)
        self.assertEqual(e["response"]["redirectURL"],
                         "https://client.test/cb#access_token=REDACTED&token_type=REDACTED")
        nd = [json.loads(line) for line in
              self.reel.cli("export", "leaks", "--format", "ndjson", "--redact").stdout.splitlines()]
        ui = next(f for f in nd if "/ui" in f["request"]["target"])
        self.assertEqual(ui["request"]["target"],
                         "http://user:REDACTED@127.0.0.1:%d/ui" % self.port)
        self.assertNotIn("USERINFOSECRET", json.dumps(ui))

    def test_body_secrets(self):
        self.check(BODY_SECRETS)

    def test_cookie_secrets(self):
        self.check(dict(COOKIE_SECRETS, CSIDSECRET=b"sid=REDACTED"))
        har = json.loads(self.reel.cli("export", "leaks", "--redact").stdout)
        e = next(e for e in har["log"]["entries"] if e["request"]["url"].endswith("/cookie"))
        heads = {h["name"].lower(): h["value"] for h in e["request"]["headers"]}
        self.assertEqual(heads["cookie"], "REDACTED; sid=REDACTED")
        heads = {h["name"].lower(): h["value"] for h in e["response"]["headers"]}
        self.assertEqual(heads["set-cookie"], "REDACTED; Path=/; HttpOnly")
        # the cookies arrays are read from the redacted headers: the
        # nameless cookies are not listed there (HAR names every cookie)
        self.assertEqual(e["request"]["cookies"], [{"name": "sid", "value": "REDACTED"}])
        self.assertEqual(e["response"]["cookies"], [])


class ExportDamage(unittest.TestCase):
    """Flows damage took the records of: export said "1 flow was dropped by
    retention while the export ran (the session is being recorded with a
    retention limit)", then "no flow ... matches", exit 0, for a flow whose
    records a segment cut short had lost (no retention set, nothing
    recording): every NOTFOUND of a flow's read was taken for retention.
    Now a flow known damaged is named as damage, and a flow without records
    and without known damage fails the export."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-damage-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "dmg")
        # one flow indexed before the next is sent: their records are in
        # different frames
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/100b?first"))
        cls.reel.wait_flows(1)
        curl(cls.reel, "-o", "/dev/null", cls.origin.url("/100b?second"))
        cls.reel.wait_flows(2)
        assert cls.reel.stop() == 0
        cls.home = cls.reel.env["REEL_HOME"]
        # a tag: repair keeps the row of a flow that lost all its records
        cls.reel.cli("tag", "dmg", "2", "keep")

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def copy(self, name):
        shutil.copytree(os.path.join(self.home, "dmg"), os.path.join(self.home, name))
        return os.path.join(self.home, name)

    def test_flow_that_lost_its_records_is_named_as_damage(self):
        d = self.copy("cut")
        with sqlite3.connect(os.path.join(d, "session.db")) as db:
            seg, off = db.execute("SELECT segment, min(offset) FROM flow_frames WHERE "
                                  "flow_id = 2").fetchone()
            self.assertEqual(db.execute("SELECT count(*) FROM flow_frames WHERE flow_id = 1 "
                                        "AND (segment, offset) >= (?, ?)", (seg, off))
                             .fetchone()[0], 0)
        db.close()
        os.truncate(os.path.join(d, "spool", "%08d.zst" % seg), off)
        self.reel.cli("verify", "cut")
        self.assertIn(b"/100b?second", self.reel.cli("flows", "cut", "~damaged").stdout)
        for fmt in ("har", "curl", "raw", "ndjson"):
            for filt in (["~id 2"], []):
                with self.subTest(fmt=fmt, filt=filt):
                    r = self.reel.cli("export", "cut", "--format", fmt, *filt)
                    err = r.stderr.decode()
                    self.assertNotIn("retention", err)
                    self.assertNotIn("matches", err)
                    self.assertIn("reel export: flow 2 not written: damaged, it lost ", err)
                    self.assertIn("'reel flow cut 2' says what", err)
                    self.assertEqual(b"/100b?first" in r.stdout, not filt, r.stdout)
                    self.assertNotIn(b"/100b?second", r.stdout)
        r = self.reel.cli("export", "cut", "-o", os.path.join(self.root, "cut.har"))
        self.assertIn(b"exported 1 flow to ", r.stderr)
        self.assertIn(b"flow 2 not written: damaged", r.stderr)

    def test_flow_without_records_nor_damage_fails(self):
        d = self.copy("norec")
        with sqlite3.connect(os.path.join(d, "session.db")) as db:
            db.execute("DELETE FROM flow_frames WHERE flow_id = 2")
        db.close()
        for filt in (["~id 2"], []):
            r = self.reel.cli("export", "norec", *filt, check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            err = r.stderr.decode()
            self.assertNotIn("retention", err)
            self.assertIn("flow 2: the index has no spool records of it, nor damage", err)


def parse_raw(t, data):
    """The messages of a raw export, read as an HTTP/1.1 parser reads them
    (RFC 9112 6.3: Content-Length or chunked framing, else no body for a
    request, and for a response that has none by rule; any other response
    runs to the end): a list of (start line, [(name, value)], body). t
    fails on anything else."""
    out = []
    method = None
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        t.assertTrue(sep, head[:200])
        lines = head.decode("latin-1").split("\r\n")
        fields = [tuple(x.split(": ", 1)) for x in lines[1:]]
        names = {k.lower(): v for k, v in fields}
        bodiless = lines[0].startswith("HTTP/") and (
            method in ("HEAD", "CONNECT") or lines[0].split(" ")[1][0] == "1" or
            lines[0].split(" ")[1] in ("204", "304"))
        if bodiless:  # whatever its fields say (RFC 9112 6.3, rule 1)
            body = b""
        elif "chunked" in names.get("transfer-encoding", ""):
            body = b""
            while True:
                size, _, data = data.partition(b"\r\n")
                n = int(size, 16)
                if n == 0:
                    trailers, _, data = data.partition(b"\r\n\r\n") if not \
                        data.startswith(b"\r\n") else (b"", b"", data[2:])
                    break
                body, data = body + data[:n], data[n:]
                t.assertTrue(data.startswith(b"\r\n"), data[:40])
                data = data[2:]
        elif "content-length" in names:
            n = int(names["content-length"])
            body, data = data[:n], data[n:]
        elif lines[0].startswith("HTTP/"):
            body, data = data, b""  # to the end of the file
        else:
            body = b""
        if not lines[0].startswith("HTTP/"):
            method = lines[0].split(" ")[0]
        if out and not lines[0].startswith("HTTP/"):  # a request line
            t.assertTrue(out[-1][0].startswith("HTTP/"), (out[-1][0], lines[0]))
        out.append((lines[0], fields, body))
    return out


class ExportRawCut(unittest.TestCase):
    """A raw export is a sequence of HTTP/1.1 messages a parser can read:
    a body body_limit cut says so and is framed by the bytes written (it
    used to keep the wire's Content-Length, so the next flow's request
    line was read as body); an imported request gets the Host its URL
    names and a Content-Length for its body, an empty response a
    Content-Length: 0."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-export-rawcut-", dir=TMPBASE)
        cls.origin = o = Origin(cls.root)
        cls.reel = Reel(cls.root, "cut", "body_limit=1000")
        try:
            curl(cls.reel, o.url("/text.txt"))
            curl(cls.reel, "-H", "Transfer-Encoding: chunked", "--data-binary", "y" * 5000,
                 o.url("/echo"))
            curl(cls.reel, o.url("/100b"))
            assert len(cls.reel.wait_flows(3)) == 3
        finally:
            code = cls.reel.stop()
        assert code == 0, cls.reel.log()
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 3,
                 "request": {"method": "POST", "url": "http://imported.test:8080/b?q=1",
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": 3,
                             "postData": {"mimeType": "text/plain", "text": "abc"}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [],
                              "content": {"size": 2, "mimeType": "text/plain", "text": "ok"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 2},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        path = os.path.join(cls.root, "one.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        cls.reel.cli("import", path, "--into", "imp")
        # empty responses with no framing: a redirect, a 204, an answer
        # to HEAD, then a 200 that must not be read as the first one's body
        def empty(method, status, headers, text=""):
            e = json.loads(json.dumps(entry))
            e["request"].update(method=method, bodySize=0, url="http://imported.test/%d" % status)
            del e["request"]["postData"]
            e["response"].update(status=status, statusText="X", headers=headers, bodySize=len(text),
                                 content={"size": len(text), "mimeType": "", "text": text})
            return e
        path = os.path.join(cls.root, "empty.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [empty("GET", 301, [{"name": "Location", "value": "/"}]),
                                           empty("GET", 204, []),
                                           empty("HEAD", 200, [{"name": "Transfer-Encoding",
                                                                "value": "chunked"}]),
                                           empty("GET", 200, [], "hi")]}}, f)
        cls.reel.cli("import", path, "--into", "empty")

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_cut_bodies_parse(self):
        raw = self.reel.cli("export", "cut", "--format", "raw").stdout
        msgs = parse_raw(self, raw)
        # (curl sent its requests to the proxy in absolute form: kept)
        self.assertEqual([[m[0].split(" ")[0], m[0].split(" ")[1].split(str(self.origin.http_port))[-1]]
                          for m in msgs],
                         [["GET", "/text.txt"], ["HTTP/1.1", "200"], ["POST", "/echo"],
                          ["HTTP/1.1", "200"], ["GET", "/100b"], ["HTTP/1.1", "200"]])
        text = os.path.getsize(os.path.join(self.origin.www, "text.txt"))
        resp = dict(msgs[1][1])
        self.assertEqual(resp["Content-Length"], "1000")
        self.assertEqual(resp["X-Reel-Body-Cut"], "1000 of %d bytes stored" % text)
        with open(os.path.join(self.origin.www, "text.txt"), "rb") as f:
            self.assertEqual(msgs[1][2], f.read(1000))
        req = dict(msgs[2][1])
        self.assertEqual(req["Transfer-Encoding"], "chunked")
        self.assertEqual(req["X-Reel-Body-Cut"], "1000 of 5000 bytes stored")
        self.assertEqual(msgs[2][2], b"y" * 1000)
        for whole in (msgs[0], msgs[3], msgs[4], msgs[5]):
            self.assertNotIn("X-Reel-Body-Cut", dict(whole[1]))
        self.assertEqual(msgs[5][2], b"x" * 99 + b"\n")

    def test_cut_body_of_an_imported_flow_keeps_its_size(self):
        # an import stores a HAR's responses decoded: without a coding that
        # is the wire's bytes, and the size is known (it said "not all")
        har = os.path.join(self.root, "cut.har")
        self.reel.cli("export", "cut", "--format", "har", "-o", har)
        self.reel.cli("import", har, "--into", "cutimp")
        msgs = parse_raw(self, self.reel.cli("export", "cutimp", "--format", "raw").stdout)
        text = os.path.getsize(os.path.join(self.origin.www, "text.txt"))
        self.assertEqual(dict(msgs[1][1])["X-Reel-Body-Cut"], "1000 of %d bytes stored" % text)

    def test_curl_says_a_body_was_cut(self):
        # the command sends the 1000 bytes stored of a 5000-byte body: it
        # said nothing of it, where raw says X-Reel-Body-Cut
        out = self.reel.cli("export", "cut", "--format", "curl", "~id 2").stdout.decode()
        self.assertIn("# not sent whole: the request body was not stored whole (1000 of 5000 "
                      "bytes stored)\n", out)
        out = self.reel.cli("export", "cut", "--format", "curl", "~id 3").stdout.decode()
        self.assertNotIn("not sent whole", out)

    def test_empty_responses_are_framed(self):
        """An empty response without a Content-Length runs to the end of
        the file (RFC 9112 6.3): it gets Content-Length: 0, unless it has
        no body by rule (204, an answer to HEAD). It used to get none, and
        a parser read every flow after it as its body. One that has no body
        by rule gets none whatever its fields: a HEAD answer's chunked
        Transfer-Encoding got a last chunk, read as the next request."""
        msgs = parse_raw(self, self.reel.cli("export", "empty", "--format", "raw").stdout)
        self.assertEqual([(m[0], dict(m[1]).get("Content-Length"), m[2]) for m in msgs],
                         [("GET /301 HTTP/1.1", None, b""), ("HTTP/1.1 301 X", "0", b""),
                          ("GET /204 HTTP/1.1", None, b""), ("HTTP/1.1 204 X", None, b""),
                          ("HEAD /200 HTTP/1.1", None, b""), ("HTTP/1.1 200 X", None, b""),
                          ("GET /200 HTTP/1.1", None, b""), ("HTTP/1.1 200 X", "2", b"hi")])

    def test_output_inside_a_session_is_refused(self):
        """-o (or --bodies) inside a session's directory could replace a
        segment, session.db or the journal with the export: it was
        renamed over a segment, and recovery then dropped its flows."""
        home = self.reel.env["REEL_HOME"]
        seg = os.path.join(home, "cut", "spool", "00000001.zst")
        with open(seg, "rb") as f:
            before = f.read()
        # a symbolic link to a file not there yet, which -o would make
        dangling = os.path.join(self.root, "dangling.har")
        os.symlink(os.path.join(home, "cut", "spool", "00000009.zst"), dangling)
        for args in (["-o", seg], ["-o", os.path.join(home, "imp", "session.db")],
                     ["-o", os.path.join(home, "cut", "spool", "new.har")], ["-o", dangling],
                     ["--format", "ndjson", "--bodies", os.path.join(home, "cut", "b")]):
            with self.subTest(args=args):
                r = self.reel.cli("export", "cut", *args, check=False)
                self.assertEqual(r.returncode, 1, r.stderr)
                where = os.path.realpath(os.path.join(home, "imp" if "imp" in args[1] else "cut"))
                self.assertIn(("reel export: %s %s is inside the session directory %s, whose files "
                               "it could replace; write the export outside it"
                               % (args[-2], args[-1], where)).encode(), r.stderr)
        with open(seg, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(os.path.join(home, "cut", "b")))
        self.assertFalse(os.path.exists(os.path.join(home, "cut", "spool", "00000009.zst")))
        os.unlink(dangling)
        self.reel.cli("verify", "imp")
        # beside the sessions (not in one) is fine
        out = os.path.join(home, "cut.har")
        self.reel.cli("export", "cut", "-o", out)
        self.assertTrue(os.path.getsize(out) > 0)
        os.unlink(out)

    def test_imported_request_is_http11(self):
        raw = self.reel.cli("export", "imp", "--format", "raw").stdout
        self.assertTrue(raw.startswith(b"POST /b?q=1 HTTP/1.1\r\nHost: imported.test:8080\r\n"
                                       b"Content-Length: 3\r\n\r\nabc"), raw)
        msgs = parse_raw(self, raw)
        self.assertEqual([(m[0], m[2]) for m in msgs],
                         [("POST /b?q=1 HTTP/1.1", b"abc"), ("HTTP/1.1 200 OK", b"ok")])


class QueryString(unittest.TestCase):
    """HAR's queryString is the query alone: it ends at the fragment, and a
    '?' inside the fragment is not a query (RFC 3986 3.4, 3.5). reel
    import keeps a fragment its client sent in an entry of reel's, and
    cuts it from a browser's."""

    def test_fragment_is_not_in_query_string(self):
        root = tempfile.mkdtemp(prefix="reel-export-qs-", dir=TMPBASE)
        origin = Origin(root)
        reel = Reel(root, "qs")
        try:
            for target in (b"/100b?q=1&password=p#access_token=a&state=1", b"/100b#/route?token=x"):
                out = raw(reel.port, b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n" % (origin.http_port, target))
                self.assertTrue(out.startswith(b"HTTP/1.1 "), out)
            reel.wait_flows(2)
            har = json.loads(reel.cli("export", "qs").stdout)
            got = [[(q["name"], q["value"]) for q in e["request"]["queryString"]]
                   for e in har["log"]["entries"]]
            self.assertEqual(got, [[("q", "1"), ("password", "p")], []])
            # imported again, the targets keep the fragments their client
            # sent (they were cut at the '#')
            path = os.path.join(root, "qs.har")
            with open(path, "w") as f:
                json.dump(har, f)
            reel.cli("import", path, "--into", "qs2")
            def targets(name):
                msgs = parse_raw(self, reel.cli("export", name, "--format", "raw").stdout)
                return [m[0].split(" ")[1] for m in msgs if m[0].startswith("GET ")]
            self.assertEqual(targets("qs2"), ["http://127.0.0.1:%d/100b?q=1&password=p#access_token"
                                              "=a&state=1" % origin.http_port,
                                              "http://127.0.0.1:%d/100b#/route?token=x"
                                              % origin.http_port])
            # a HAR of a browser's (no _reel): a URL's fragment was never sent
            for e in har["log"]["entries"]:
                del e["_reel"]
            with open(path, "w") as f:
                json.dump(har, f)
            reel.cli("import", path, "--into", "qs3")
            self.assertEqual(targets("qs3"), ["/100b?q=1&password=p", "/100b"])
        finally:
            reel.stop()
            origin.stop()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
