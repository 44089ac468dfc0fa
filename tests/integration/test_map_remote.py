#!/usr/bin/python3
"""map_remote: requests sent to another URL than their client asked for;
map_local: requests answered from local files.

nginx is the origin (plain and TLS), curl the client. A rule maps plain
HTTP to HTTPS and back, inside a CONNECT tunnel and from an HTTP/2 client
too; the origin gets the mapped URL's Host; each flow records the
client's URL and where reel sent it (mapped_to, in reel flow, HAR and
NDJSON); a rule making no http(s) URL is a 502 naming it; reel replay
sends a mapped flow where it went; a bad rule is refused.

map_local (the same reel): a file rule and a directory rule over plain
HTTP, HTTPS in a tunnel and HTTP/2; index.html, 404 for a missing file,
403 for a name leaving the directory; a file larger than reel's queue
toward the client; a POST's body read and recorded; HEAD; the next
request on the connection going to its origin; the flow marked
generated with local_file (reel flow, HAR, NDJSON, import) and no
server_conn; map_local before map_remote; byte ranges and conditional
requests (206, 416, 304, 412) with the file's ETag and Last-Modified, and
types from /etc/mime.types.

modify_headers (the same reel): fields set and removed in requests and in
responses, over HTTP/1.1 and HTTP/2 to nginx, rules judged on each side
(~q ~s ~c ~hs); the flow records the heads as they came and each change
(reel flow, HAR, NDJSON, import); reel replay sends the changed request.

dns_overrides (the same reel): names reached at the entry's address, the
name kept in Host, SNI and the certificate check; a wildcard entry; the
flow's server_conn names the entry.

modify_body on requests (a reel of its own, a Python origin that echoes
what it got): bodies with a length, chunked and gzip-encoded changed and
sent with a Content-Length; a rule without ~q changing both bodies; not
applied to a request asking for 100-continue, nor past 8 MiB (with a
length: at once; chunked: once held that far, the rest chunked by reel);
the record keeps the client's body and what the rules did. (And reel
flow's text view of a body that ends in half a character.)
"""
import base64
import email.utils
import gzip
import http.client
import http.server
import json
import os
import re
import subprocess
import socket
import tempfile
import threading
import time
import unittest

from proxyenv import TMPBASE, Origin, Reel, body, curl, main, only_flow, stop_class


class MapRemoteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="map-remote.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        o = cls.origin
        cls.reel = Reel(cls.root, "mr", "upstream_trusted_ca=" + o.ca)
        cls.rules = [
            # plain HTTP to the TLS origin
            r"|^http://127\.0\.0\.1:%d/to-tls/|https://localhost:%d/" % (o.http_port, o.https_port),
            # HTTPS (in a tunnel) to the plain origin, a group kept
            r"|^https://localhost:%d/to-plain/(.*)|http://127.0.0.1:%d/$1"
            % (o.https_port, o.http_port),
            # a result that is no http(s) URL
            r"|^http://127\.0\.0\.1:%d/bad|ftp://example.test/" % o.http_port,
            # to the TLS origin's /hdr: modify_headers judges the URL it goes to
            r"|^http://127\.0\.0\.1:%d/via-map/hdr$|https://localhost:%d/hdr?mapped"
            % (o.http_port, o.https_port),
        ]
        cls.reel.set_config("set", "map_remote", json.dumps(cls.rules))
        # map_local's files
        cls.files = os.path.join(cls.root, "files")
        os.makedirs(os.path.join(cls.files, "site", "sub"))
        cls.app = os.path.join(cls.files, "app.js")
        with open(cls.app, "w") as f:
            f.write('console.log("local");\n')
        for name, text in (("site/index.html", "<h1>index</h1>\n"),
                           ("site/sub/page.txt", "sub page\n"), ("site/book.epub", "epub\n")):
            with open(os.path.join(cls.files, name), "w") as f:
                f.write(text)
        cls.big = os.urandom(3 << 20)  # more than reel queues toward a client (1 MiB)
        with open(os.path.join(cls.files, "site", "big.bin"), "wb") as f:
            f.write(cls.big)
        cls.site = os.path.join(cls.files, "site")
        cls.local_rules = [
            r"|/local/app\.js|" + cls.app,
            r"|^https?://[^/]+/site/|" + cls.site,
            # map_remote's /to-tls/ too: map_local comes first
            r"|/to-tls/local$|" + cls.app,
            # a flow filter: POSTs with this field only
            r"|~m POST & ~hq x-mock:\s*yes|/filtered$|" + cls.app,
            # block_list's rule for it comes first
            r"|/both$|" + cls.app,
        ]
        cls.reel.set_config("set", "map_local", json.dumps(cls.local_rules))
        cls.block_rules = [r"|~u /blocked$|404", r"|~m DELETE & ~u /del|403",
                           r"|~u /kill$|444", r"|~u /empty-block$|204",
                           # before map_local's rules: this one has a file rule too
                           r"|~u /both$ & ~hq x-block|451"]
        cls.reel.set_config("set", "block_list", json.dumps(cls.block_rules))
        cls.header_rules = [r"|~u /hdr & ~q|X-Debug|on",      # the request only
                            r"|~u /hdr|User-Agent|",          # removed, where there is one
                            r"|~u /hdr & ~s|X-Origin|",       # the response only
                            r"|~u /hdr & ~c 200 & ~hs origin-says|X-Reel|set",
                            r"|~u /hdr & ~c 404|X-Never|x",   # matches no response here
                            # map_local's answer too (a mapped file, CORS)
                            r"|~u page\.txt\?cors & ~s|Access-Control-Allow-Origin|*",
                            # map_remote's URL, not the client's (as in mitmproxy)
                            r"|~u ^https://localhost:\d+/hdr\?mapped$ & ~q|X-Mapped|yes",
                            r"|~d ^localhost$ & ~u hdr\?mapped & ~s|X-Mapped-Response|yes",
                            r"|~u /via-map/|X-Client-URL|yes"]
        cls.reel.set_config("set", "modify_headers", json.dumps(cls.header_rules))
        cls.body_rules = [r"|~u /mb/|debug=false|debug=true",
                          r"|~u /mb/ & ~c 200 & ~ts plain|(world)|[$1]"]
        cls.reel.set_config("set", "modify_body", json.dumps(cls.body_rules))
        os.makedirs(os.path.join(o.www, "mb"))
        cls.mb_text = b"hello world, debug=false\n" * 40  # (gzip: over nginx's 100 B)
        with open(os.path.join(o.www, "mb", "a.txt"), "wb") as f:
            f.write(cls.mb_text)
        # past what reel holds (8 MiB), and chunked (gzip, no length)
        cls.mb_big = os.urandom(9 << 20)
        with open(os.path.join(o.www, "mb", "big.txt"), "wb") as f:
            f.write(cls.mb_big)
        cls.dns_entries = ["reel-override.test=127.0.0.1", "*.wild.test=[127.0.0.1]"]
        cls.reel.set_config("set", "dns_overrides", json.dumps(cls.dns_entries))

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def last(self, path):
        return only_flow(self, self.reel, path)

    def test_plain_to_tls(self):
        o, r = self.origin, self.reel
        out = curl(r, "http://127.0.0.1:%d/to-tls/host" % o.http_port)
        self.assertEqual(out.stdout, b"localhost:%d\n" % o.https_port)  # the mapped Host
        row, full = self.last("/to-tls/host")
        self.assertEqual(row["url"], "http://127.0.0.1:%d/to-tls/host" % o.http_port)
        want = "https://localhost:%d/host" % o.https_port
        self.assertEqual(full["request"]["mapped_to"], want)
        self.assertEqual(full["server_conn"]["sni"], "localhost")
        text = r.cli("flow", "mr", str(row["id"])).stdout.decode()
        self.assertIn("\n~ map_remote sent it to %s (Host from it)\n" % want, text)
        # HAR and NDJSON say it; reel import keeps it
        har = os.path.join(self.root, "mapped.har")
        r.cli("export", "mr", "~u /to-tls/host$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["mapped_to"], want)
        nd = json.loads(r.cli("export", "mr", "~u /to-tls/host$", "--format", "ndjson", "-o",
                              "-").stdout)
        self.assertEqual(nd["request"]["mapped_to"], want)
        r.cli("import", har, "--into", "mr-back")
        back = json.loads(r.cli("flow", "mr-back", "1", "--json").stdout)
        self.assertEqual(back["request"]["mapped_to"], want)
        # reel replay sends it where it went
        out = r.cli("replay", "mr", str(row["id"]), "--into", "mr-replays", "--json", "--set",
                    "upstream_trusted_ca=" + o.ca)
        (rep,) = json.loads(out.stdout)["replays"]
        self.assertEqual((rep["status"], rep["url"]), (200, want), rep)

    def test_tls_to_plain_http1_and_http2(self):
        o, r = self.origin, self.reel
        for args, path in ((["--http1.1"], "/to-plain/100b?h1"), (["--http2"], "/to-plain/100b?h2")):
            out = curl(r, *args, o.url(path, https=True))
            self.assertEqual(len(out.stdout), 100)
            row, full = self.last(path)
            self.assertEqual(row["url"], "https://localhost:%d%s" % (o.https_port, path))
            self.assertEqual(full["request"]["mapped_to"],
                             "http://127.0.0.1:%d%s" % (o.http_port, path.replace("/to-plain", "")))
            self.assertIsNone(full["server_conn"]["tls_version"])

    def test_no_match_and_bad_result(self):
        o, r = self.origin, self.reel
        curl(r, o.url("/100b?unmapped"))
        self.assertIsNone(self.last("/100b?unmapped")[1]["request"]["mapped_to"])
        out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                   "http://127.0.0.1:%d/bad" % o.http_port, check=False)
        self.assertEqual(out.stdout, b"502")
        row, _ = self.last("/bad")
        self.assertEqual(row["error"], "map_remote rule '%s' made 'ftp://example.test/' of the URL, "
                                       "which is not an http:// or https:// URL" % self.rules[2])

    def test_bad_rules_refused(self):
        for rule, why in (("abc", "a rule starts with its separator"),
                          ("|(|x", "bad pattern at 1"),
                          ("|a|b|c|d", "more than three parts"),
                          ("|~c 200|a|http://b/", "~c is not known before the request is sent")):
            out = self.reel.cli("config", "mr", "set", "map_remote", json.dumps([rule]),
                                check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(why.encode(), out.stderr)

    # ---- modify_headers ----

    def test_modify_headers(self):
        o, r, rules = self.origin, self.reel, self.header_rules
        want_req = [{"name": "X-Debug", "value": "on", "rule": rules[0]},
                    {"name": "User-Agent", "value": None, "rule": rules[1]}]
        want_resp = [{"name": "X-Origin", "value": None, "rule": rules[2]},
                     {"name": "X-Reel", "value": "set", "rule": rules[3]}]
        ids = {}
        for args, path in ((["--http1.1"], "/hdr?h1"), (["--http2"], "/hdr?h2")):
            out = curl(r, "-D", "-", *args, o.url(path, https="--http2" in args))
            # (after the CONNECT's answer, over HTTPS)
            head, _, got = out.stdout.rpartition(b"\r\n\r\n")
            head = head.rpartition(b"\r\n\r\n")[2]
            # what the origin got, and what the client got
            self.assertEqual(got, b"debug=[on] ua=[]\n")
            fields = [l.split(b":", 1)[0].lower() for l in head.split(b"\r\n")[1:]]
            self.assertIn(b"x-reel: set", head.lower())
            self.assertNotIn(b"x-origin", fields)
            self.assertNotIn(b"x-never", fields)
            # the record: the heads as they came, and each change
            row, full = self.last(path)
            ids[path] = row["id"]
            self.assertEqual(full["request"]["modified"], want_req, path)
            self.assertEqual(full["response"]["modified"], want_resp, path)
            names = [h[0].lower() for h in full["request"]["headers"]]
            self.assertIn("user-agent", names)
            self.assertNotIn("x-debug", names)
            self.assertIn("x-origin", [h[0].lower() for h in full["response"]["headers"]])
        # a reader of the spool that follows docs/format.md finds them too
        script = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples",
                              "read_spool.py")
        got = json.loads(subprocess.run(
            ["/usr/bin/python3", script, os.path.join(r.env["REEL_HOME"], "mr"), "--flow",
             str(ids["/hdr?h2"]), "--json"], check=True, capture_output=True, timeout=60).stdout)
        self.assertEqual((got["request"]["modified"], got["response"]["modified"]),
                         (want_req, want_resp))
        text = r.cli("flow", "mr", str(ids["/hdr?h1"])).stdout.decode()
        self.assertIn("\n~ modify_headers changed the request reel sent on (the fields above are "
                      "as they came):\n~   set X-Debug: on  (rule '%s')\n~   removed User-Agent  "
                      "(rule '%s')\n" % (rules[0], rules[1]), text)
        self.assertIn("\n~   removed X-Origin  (rule '%s')\n" % rules[2], text)
        # map_local's answer gets its changes too, recorded with it
        out = curl(r, "-D", "-", o.url("/site/sub/page.txt?cors"))
        self.assertIn(b"\r\nAccess-Control-Allow-Origin: *\r\n", out.stdout)
        self.assertTrue(out.stdout.endswith(b"\r\n\r\nsub page\n"), out.stdout)
        _, local = self.last("/site/sub/page.txt?cors")
        self.assertEqual(local["response"]["local_file"],
                         os.path.join(self.site, "sub", "page.txt"))
        self.assertEqual(local["response"]["modified"],
                         [{"name": "Access-Control-Allow-Origin", "value": "*", "rule": rules[5]}])
        # a flow no rule matches has none
        curl(r, o.url("/100b?unmodified"))
        _, plain = self.last("/100b?unmodified")
        self.assertEqual((plain["request"]["modified"], plain["response"]["modified"]), ([], []))
        # HAR and NDJSON say them; reel import keeps them
        har = os.path.join(self.root, "modified.har")
        r.cli("export", "mr", "~u /hdr.h1$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["request_modified"], want_req)
        self.assertEqual(entry["_reel"]["response_modified"], want_resp)
        nd = json.loads(r.cli("export", "mr", "~u /hdr.h1$", "--format", "ndjson", "-o",
                              "-").stdout)
        self.assertEqual((nd["request"]["modified"], nd["response"]["modified"]),
                         (want_req, want_resp))
        r.cli("import", har, "--into", "mh-back")
        back = json.loads(r.cli("flow", "mh-back", "1", "--json").stdout)
        self.assertEqual((back["request"]["modified"], back["response"]["modified"]),
                         (want_req, want_resp))
        # reel replay sends the request as it went, with the changes
        out = r.cli("replay", "mr", str(ids["/hdr?h1"]), "--into", "mh-replays", "--json")
        (rep,) = json.loads(out.stdout)["replays"]
        self.assertEqual(rep["status"], 200, rep)
        again = json.loads(r.cli("flow", "mh-replays", str(rep["id"]), "--json").stdout)
        self.assertEqual(body(again, "response"), b"debug=[on] ua=[]\n")
        # bad rules are refused, named
        for rule, why in (("|Content-Length|5", "reel writes Content-Length itself"),
                          ("|host|x", "map_remote sends a request to another host"),
                          ("|~b x|X-A|1", "~b is not known when a head is sent on"),
                          ("|X A|1", "'X A' is not a field name"),
                          ("|X-A|@/etc/passwd", "a value from a file"),
                          ("|X-A| 1", "white space at an end"),
                          ("|~q|X-A|1|2", "more than three parts")):
            out = r.cli("config", "mr", "set", "modify_headers", json.dumps([rule]), check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(b"modify_headers rule '%s'" % rule.encode(), out.stderr)
            self.assertIn(why.encode(), out.stderr)

    def test_modify_headers_after_map_remote(self):
        """modify_headers' rules judge the request map_remote sends (its
        URL and host), on the way there and again with its response, as
        mitmproxy's do: its map_remote comes before them. The record keeps
        the client's URL and where map_remote sent it."""
        o, r, rules = self.origin, self.reel, self.header_rules
        out = curl(r, "-D", "-", o.url("/via-map/hdr"))
        head, _, got = out.stdout.rpartition(b"\r\n\r\n")
        self.assertEqual(got, b"debug=[on] ua=[]\n")
        self.assertIn(b"\r\nx-mapped-response: yes", head.lower())
        self.assertNotIn(b"x-client-url", head.lower())
        row, full = self.last("/via-map/hdr")
        self.assertEqual(full["request"]["mapped_to"], "https://localhost:%d/hdr?mapped"
                         % o.https_port)
        self.assertEqual(full["request"]["modified"],
                         [{"name": "X-Debug", "value": "on", "rule": rules[0]},
                          {"name": "User-Agent", "value": None, "rule": rules[1]},
                          {"name": "X-Mapped", "value": "yes", "rule": rules[6]}])
        self.assertEqual(full["response"]["modified"],
                         [{"name": "X-Origin", "value": None, "rule": rules[2]},
                          {"name": "X-Reel", "value": "set", "rule": rules[3]},
                          {"name": "X-Mapped-Response", "value": "yes", "rule": rules[7]}])

    # ---- modify_body ----

    def test_modify_body(self):
        o, r, rules = self.origin, self.reel, self.body_rules
        want = self.mb_text.replace(b"debug=false", b"debug=true").replace(b"world", b"[world]")
        for args, path, coded in ((["--http1.1"], "/mb/a.txt?h1", False),
                                  (["--http1.1", "-H", "Accept-Encoding: gzip"], "/mb/a.txt?gz",
                                   True),
                                  (["--http2"], "/mb/a.txt?h2", False)):
            out = curl(r, "-D", "-", *args, o.url(path, https="--http2" in args))
            head, _, got = out.stdout.rpartition(b"\r\n\r\n")
            head = head.rpartition(b"\r\n\r\n")[2].lower()
            # the client got the body changed, framed by a length, not encoded
            self.assertEqual(got, want, path)
            self.assertIn(b"\r\ncontent-length: %d" % len(want), head)
            self.assertNotIn(b"content-encoding", head)
            self.assertNotIn(b"transfer-encoding", head)
            # the record: the origin's body as it came, and what the rules did
            row, full = self.last(path)
            edit = full["response_body_edit"]
            # ... and the body the client got, kept whole (under 256 KiB)
            self.assertEqual(edit, {"rules": rules, "replacements": 80, "sent_size": len(want),
                                    "decoded": coded, "not_applied": None,
                                    "sent_body_b64": base64.b64encode(want).decode(),
                                    "sent_body_truncated": False}, path)
            self.assertEqual(row["state"], "complete")
            if coded:
                self.assertIn(["Content-Encoding", "gzip"], full["response"]["headers"])
            else:
                self.assertEqual(body(full, "response"), self.mb_text)
        text = r.cli("flow", "mr", str(self.last("/mb/a.txt?gz")[0]["id"])).stdout.decode()
        self.assertIn("\n~ modify_body: 80 replacements by '%s', '%s'; the client got %d bytes, "
                      "decoded from its Content-Encoding, with a Content-Length:\n%s"
                      % (rules[0], rules[1], len(want), want.decode()), text)
        # HAR, NDJSON and a reader of the spool say it
        gz = self.last("/mb/a.txt?gz")
        har = os.path.join(self.root, "body.har")
        r.cli("export", "mr", "~u a.txt.gz$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["response_body_edit"], gz[1]["response_body_edit"])
        r.cli("import", har, "--into", "mb-back")  # ... which reel import keeps
        back = json.loads(r.cli("flow", "mb-back", "1", "--json").stdout)
        self.assertEqual(back["response_body_edit"], gz[1]["response_body_edit"])
        nd = json.loads(r.cli("export", "mr", "~u a.txt.gz$", "--format", "ndjson", "-o",
                              "-").stdout)
        self.assertEqual(nd["response"]["body_edit"], gz[1]["response_body_edit"])
        script = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples",
                              "read_spool.py")
        got = json.loads(subprocess.run(
            ["/usr/bin/python3", script, os.path.join(r.env["REEL_HOME"], "mr"), "--flow",
             str(gz[0]["id"]), "--json"], check=True, capture_output=True, timeout=60).stdout)
        self.assertEqual(got["response_body_edit"], gz[1]["response_body_edit"])
        # over 8 MiB, of no known length: sent on as it came (chunked by
        # reel), the record saying why
        out = curl(r, "--compressed", "-D", "-", o.url("/mb/big.txt"))
        head, _, got = out.stdout.partition(b"\r\n\r\n")
        self.assertEqual(got, self.mb_big)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        _, full = self.last("/mb/big.txt")
        self.assertEqual(full["response_body_edit"]["not_applied"], "the body is over 8 MiB")
        self.assertIsNone(full["response_body_edit"]["sent_body_b64"])  # (as it came)
        # ... to an HTTP/2 client too (its stream takes what reel framed)
        out = curl(r, "--http2", "--compressed", o.url("/mb/big.txt?h2", https=True))
        self.assertEqual(out.stdout, self.mb_big)
        _, full = self.last("/mb/big.txt?h2")
        self.assertEqual(full["response_body_edit"]["not_applied"], "the body is over 8 MiB")
        # a flow no rule matches has none
        curl(r, o.url("/100b?nobody"))
        self.assertIsNone(self.last("/100b?nobody")[1]["response_body_edit"])
        # bad rules are refused, named
        for rule, why in (("|(|x", "bad pattern at 1"),
                          ("|~b x|a|b", "~b is not known when a head is sent on"),
                          ("|a|${x", "bad replacement")):
            out = r.cli("config", "mr", "set", "modify_body", json.dumps([rule]), check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(b"modify_body rule '%s'" % rule.encode(), out.stderr)
            self.assertIn(why.encode(), out.stderr)

    # ---- dns_overrides ----

    def test_dns_overrides(self):
        o, r = self.origin, self.reel
        # a name no DNS knows, reached at the entry's address; the origin
        # got the name in Host
        out = curl(r, "http://reel-override.test:%d/host" % o.http_port)
        self.assertEqual(out.stdout, b"reel-override.test:%d\n" % o.http_port)
        row, full = self.last("/host")
        sc = full["server_conn"]
        self.assertEqual((sc["address"], sc["dns_override"]),
                         ("127.0.0.1:%d" % o.http_port, self.dns_entries[0]))
        text = r.cli("flow", "mr", str(row["id"])).stdout.decode()
        self.assertIn("\n~ its address from dns_overrides '%s', not from DNS (SNI and the "
                      "certificate check kept the name)\n" % self.dns_entries[0], text)
        # reel replay takes the session's entries too
        out = r.cli("replay", "mr", str(row["id"]), "--into", "dns-replays", "--json")
        (rep,) = json.loads(out.stdout)["replays"]
        self.assertEqual(rep["status"], 200, rep)
        again = json.loads(r.cli("flow", "dns-replays", str(rep["id"]), "--json").stdout)
        self.assertEqual(again["server_conn"]["dns_override"], self.dns_entries[0])
        # a name under a wildcard entry (its address in brackets)
        curl(r, "http://a.wild.test:%d/100b?wild" % o.http_port)
        self.assertEqual(self.last("/100b?wild")[1]["server_conn"]["dns_override"],
                         self.dns_entries[1])
        # a name no entry has: looked up as ever (and not found)
        out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                   "http://reel-no-override.test:%d/nx" % o.http_port, check=False)
        self.assertEqual(out.stdout, b"502")
        self.assertIn("cannot resolve reel-no-override.test", self.last("/nx")[0]["error"])
        # HTTPS: the TLS keeps the name (SNI, the certificate check): the
        # origin's certificate is for localhost, so the check refuses it
        out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                   "https://reel-override.test:%d/100b?tls" % o.https_port, check=False)
        self.assertEqual(out.stdout, b"502")
        row, full = self.last("/100b?tls")
        sc = full["server_conn"]
        self.assertEqual((sc["address"], sc["sni"], sc["dns_override"]),
                         ("127.0.0.1:%d" % o.https_port, "reel-override.test",
                          self.dns_entries[0]))
        self.assertEqual(sc["verify_error"], "hostname mismatch")
        # over HTTP/2 to the origin (its own connection code), the name
        # valid for the certificate
        entries = self.dns_entries + ["LOCALHOST.=127.0.0.1"]
        r.set_config("set", "dns_overrides", json.dumps(entries))
        try:
            out = curl(r, "--http2", o.url("/100b?h2dns", https=True))
            self.assertEqual(len(out.stdout), 100)
            sc = self.last("/100b?h2dns")[1]["server_conn"]
            self.assertEqual((sc["alpn"], sc["sni"], sc["dns_override"]),
                             ("h2", "localhost", entries[2]))
        finally:
            r.set_config("set", "dns_overrides", json.dumps(self.dns_entries))
        # a change applies to the next request of a kept-alive client
        # connection: its upstream connection, to the old address, is not
        # reused (nginx listens on 127.0.0.1 only: 127.0.0.2 refuses)
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
        url = "http://reel-override.test:%d/host?keep" % o.http_port
        try:
            conn.request("GET", url + "1")
            self.assertEqual(conn.getresponse().read(), b"reel-override.test:%d\n" % o.http_port)
            moved = ["reel-override.test=127.0.0.2"]
            r.set_config("set", "dns_overrides", json.dumps(moved))
            conn.request("GET", url + "2")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 502)
        finally:
            conn.close()
            r.set_config("set", "dns_overrides", json.dumps(self.dns_entries))
        row, full = self.last("/host?keep2")
        self.assertRegex(row["error"], r"^cannot connect to reel-override\.test:%d at "
                                       r"127\.0\.0\.2:%d \(dns_overrides '%s'\): "
                         % (o.http_port, o.http_port, re.escape(moved[0])))
        self.assertIsNone(full["server_conn"])  # (never connected)
        # ports: an entry for one port of a name, connecting to another
        # (curl's --resolve and --connect-to); the Host keeps the URL's port
        ported = self.dns_entries + ["reel-port.test:1=127.0.0.1:%d" % o.http_port]
        r.set_config("set", "dns_overrides", json.dumps(ported))
        try:
            out = curl(r, "http://reel-port.test:1/host?port")
            self.assertEqual(out.stdout, b"reel-port.test:1\n")
            row, full = self.last("/host?port")
            sc = full["server_conn"]
            self.assertEqual((sc["address"], sc["dns_override"]),
                             ("127.0.0.1:%d" % o.http_port, ported[-1]))
            # reel replay goes there too
            out = r.cli("replay", "mr", str(row["id"]), "--into", "mr-dns-replays", "--json")
            (rep,) = json.loads(out.stdout)["replays"]
            self.assertEqual(rep["status"], 200, rep)
            # ... and no other port of that name: DNS, which knows none
            out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                       "http://reel-port.test:2/host?other")
            self.assertEqual(out.stdout, b"502")
            self.assertNotIn("dns_overrides", self.last("/host?other")[0]["error"])
        finally:
            r.set_config("set", "dns_overrides", json.dumps(self.dns_entries))
        # HAR carries it
        har = os.path.join(self.root, "dns.har")
        r.cli("export", "mr", "~u /host$ & ~d reel-override", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["dns_override"], self.dns_entries[0])
        # bad entries are refused, named
        for entry, why in (("reel.test", "not NAME=ADDRESS"),
                           ("a b=127.0.0.1", "'a b' is not a host name"),
                           ("x.test=example.com", "'example.com' is not an IPv4 or IPv6 address"),
                           ("x.test:99999=127.0.0.1", "'99999' is not a port"),
                           ("*.=1.2.3.4", "is not a host name")):
            out = r.cli("config", "mr", "set", "dns_overrides", json.dumps([entry]), check=False)
            self.assertNotEqual(out.returncode, 0, entry)
            self.assertIn(b"dns_overrides entry '%s'" % entry.encode(), out.stderr)
            self.assertIn(why.encode(), out.stderr)

    # ---- map_local ----

    def local_flow(self, path, want_file):
        row, full = self.last(path)
        self.assertTrue(full["response"]["generated"], full["response"])
        self.assertEqual(full["response"]["local_file"], want_file)
        self.assertIsNone(full["server_conn"])
        self.assertIsNone(full["server_addr"])
        return row, full

    def test_local_file(self):
        o, r = self.origin, self.reel
        out = curl(r, "-i", o.url("/local/app.js?v=1"))
        head, _, got = out.stdout.partition(b"\r\n\r\n")
        self.assertEqual(got, b'console.log("local");\n')
        self.assertIn(b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=utf-8\r\n"
                      b"Content-Length: 22", head)
        row, full = self.local_flow("/local/app.js?v=1", self.app)
        self.assertEqual((row["state"], row["status"]), ("complete", 200))
        self.assertEqual(body(full, "response"), b'console.log("local");\n')
        text = r.cli("flow", "mr", str(row["id"])).stdout.decode()
        self.assertIn("< HTTP/1.1 200 OK   [sent by reel, not by the server]\n", text)
        self.assertIn("\n~ map_local answered from %s (no origin got the request)\n" % self.app,
                      text)
        # no request reached nginx
        self.assertFalse([l for l in o.log_lines() if "/local/" in l[2]])
        # HAR and NDJSON say it; reel import keeps it
        har = os.path.join(self.root, "local.har")
        r.cli("export", "mr", "~u /local/app.js\\?v=1$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual((entry["_reel"]["local_file"], entry["_reel"]["generated"]),
                         (self.app, True))
        nd = json.loads(r.cli("export", "mr", "~u /local/app.js\\?v=1$", "--format", "ndjson", "-o",
                              "-").stdout)
        self.assertEqual((nd["response"]["local_file"], nd["response"]["generated"]),
                         (self.app, True))
        r.cli("import", har, "--into", "mr-local-back")
        back = json.loads(r.cli("flow", "mr-local-back", "1", "--json").stdout)
        self.assertEqual(back["response"]["local_file"], self.app)
        # a host that does not exist, in a CONNECT tunnel: the tunnel's
        # early connection to it fails, its requests are answered all the same
        for v in ("--http1.1", "--http2"):
            out = curl(r, v, "https://no-such-host.invalid/local/app.js?" + v)
            self.assertEqual(out.stdout, b'console.log("local");\n')
            self.local_flow("/local/app.js?" + v, self.app)
        # map_local before map_remote: /to-tls/local is answered here
        out = curl(r, "http://127.0.0.1:%d/to-tls/local" % o.http_port)
        self.assertEqual(out.stdout, b'console.log("local");\n')
        _, full = self.local_flow("/to-tls/local", self.app)
        self.assertIsNone(full["request"]["mapped_to"])

    def test_local_directory_h1_h2(self):
        o, r = self.origin, self.reel
        for args, https in ((["--http1.1"], False), (["--http1.1"], True), (["--http2"], True)):
            tag = "%s-%s" % (args[0][2:], https)
            cases = (("/site/sub/page.txt?" + tag, 200, b"sub page\n", "sub/page.txt"),
                     ("/site/?" + tag, 200, b"<h1>index</h1>\n", "index.html"),
                     ("/site/sub?" + tag, 404, None, "sub"),
                     ("/site/nope.css?" + tag, 404, None, "nope.css"),
                     ("/site/a/%2e%2e/%2e%2e/x?" + tag, 403, None, None))
            for path, status, want, name in cases:
                out = curl(r, *args, "-w", "\n%{http_code} %{http_version}", o.url(path, https),
                           check=False)
                got, _, code = out.stdout.rpartition(b"\n")
                self.assertEqual(code.decode(), "%d %s" % (status, "2" if "2" in args[0] else "1.1"),
                                 (path, out))
                fl = r.wait_flows(1, "~u %s$" % path.replace("?", "\\?").replace(".", "\\."))
                self.assertEqual(len(fl), 1, (path, fl))
                full = r.flow(fl[0]["id"])
                want_file = os.path.join(self.site, name) if name else self.site
                self.assertEqual(full["response"]["local_file"], want_file, path)
                self.assertTrue(full["response"]["generated"])
                self.assertEqual(full["state"], "complete", full)
                if want is not None:
                    self.assertEqual(got, want, path)
                elif status == 404:
                    self.assertEqual(got, b"reel: map_local: no file %s\n" % want_file.encode())
                else:
                    self.assertEqual(got, b"reel: map_local: the URL names a file outside %s\n"
                                     % self.site.encode())
                if "2" in args[0]:
                    self.assertEqual(full["response"]["http_version"], "HTTP/2.0")
            # a file larger than reel queues toward the client, whole
            out = curl(r, *args, o.url("/site/big.bin?" + tag, https))
            self.assertEqual(out.stdout, self.big)
            _, full = self.local_flow("/site/big.bin?" + tag, os.path.join(self.site, "big.bin"))
            self.assertEqual(body(full, "response"), self.big)

    def test_local_ranges_and_conditions(self):
        """Range, If-None-Match, If-Modified-Since, If-Range and If-Match on
        map_local's files, over plain HTTP/1.1, in a TLS tunnel and over
        HTTP/2: what the client gets is what the flow records."""
        o, r = self.origin, self.reel
        big = os.path.join(self.site, "big.bin")
        for args, https in ((["--http1.1"], False), (["--http1.1"], True), (["--http2"], True)):
            tag = "%s-%s" % (args[0][2:], https)
            h2 = "2" in args[0]

            def get(name, *extra):
                path = "/site/%s?%s-%d" % (name, tag, len(self._seen))
                self._seen.append(path)
                out = curl(r, *args, "--suppress-connect-headers", "-D", "-", *extra,
                           o.url(path, https))
                head, _, got = out.stdout.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                fields = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                status = int(lines[0].split()[1])
                _, full = self.local_flow(path, os.path.join(self.site, name))
                # the record says what the client got
                self.assertEqual(full["response"]["status"], status, path)
                rec = {k.lower(): v for k, v in full["response"]["headers"]}
                for k in ("content-range", "etag", "last-modified", "accept-ranges",
                          "content-length"):
                    self.assertEqual(rec.get(k), fields.get(k), (path, k))
                self.assertEqual(body(full, "response"), got, path)
                self.assertEqual(full["state"], "complete", path)
                return status, fields, got

            self._seen = getattr(self, "_seen", [])
            status, f, got = get("big.bin")
            self.assertEqual((status, got, f["accept-ranges"]), (200, self.big, "bytes"))
            etag, lastmod = f["etag"], f["last-modified"]
            st = os.stat(big)
            self.assertEqual(lastmod, email.utils.formatdate(int(st.st_mtime), usegmt=True))
            # one range, across more than reel queues toward a client
            status, f, got = get("big.bin", "-r", "1000000-2999999")
            self.assertEqual((status, got, f["content-range"], f["content-length"]),
                             (206, self.big[1000000:3000000], "bytes 1000000-2999999/%d"
                              % len(self.big), "2000000"), tag)
            # the last bytes; a range past the end is cut to it
            status, f, got = get("big.bin", "-r", "-10")
            self.assertEqual((status, got), (206, self.big[-10:]))
            status, f, got = get("big.bin", "-r", "%d-%d" % (len(self.big) - 4, 10 << 20))
            self.assertEqual((status, got, f["content-range"]),
                             (206, self.big[-4:], "bytes %d-%d/%d" % (len(self.big) - 4,
                                                                     len(self.big) - 1,
                                                                     len(self.big))))
            # past the end: 416 with the length; two ranges: the whole file
            status, f, got = get("big.bin", "-r", "%d-" % len(self.big))
            self.assertEqual((status, f["content-range"]), (416, "bytes */%d" % len(self.big)))
            self.assertIn(b"the range asked for is not in", got)
            status, f, got = get("big.bin", "-r", "0-1,5-6")
            self.assertEqual((status, got), (200, self.big))
            # the validators: 304 without a body
            status, f, got = get("big.bin", "-H", "If-None-Match: \"x\", " + etag)
            self.assertEqual((status, got, f["etag"], f.get("content-length")),
                             (304, b"", etag, None))
            status, f, got = get("big.bin", "-H", "If-Modified-Since: " + lastmod)
            self.assertEqual((status, got), (304, b""))
            earlier = email.utils.formatdate(int(st.st_mtime) - 1, usegmt=True)
            status, f, got = get("big.bin", "-H", "If-Modified-Since: " + earlier)
            self.assertEqual((status, got), (200, self.big))
            # If-Range: the range only for this file's entity-tag
            status, f, got = get("big.bin", "-r", "0-9", "-H", "If-Range: " + etag)
            self.assertEqual((status, got), (206, self.big[:10]))
            status, f, got = get("big.bin", "-r", "0-9", "-H", "If-Range: \"other\"")
            self.assertEqual((status, got), (200, self.big))
            # If-Match of another entity-tag: 412
            status, f, got = get("big.bin", "-H", "If-Match: \"other\"")
            self.assertEqual(status, 412)
            self.assertIn(b"a precondition of the request fails", got)
            # a type /etc/mime.types knows and reel's own table does not
            status, f, got = get("book.epub")
            self.assertEqual((status, f["content-type"]), (200, "application/epub+zip"))
            if h2:
                self.assertNotIn("connection", f)

    def test_local_answer_longer_than_256_bytes(self):
        """reel's own answers with a long file name or rule in their body are
        sent whole (they were cut to 256 bytes with the head, and the client
        waited for the rest of their Content-Length)."""
        o, r = self.origin, self.reel
        name = "n" * 200 + ".txt"
        out = curl(r, "-w", "\n%{http_code}", o.url("/site/" + name))
        got, _, code = out.stdout.rpartition(b"\n")
        want = os.path.join(self.site, name)
        self.assertEqual((code, got), (b"404", b"reel: map_local: no file %s\n" % want.encode()))
        _, full = self.local_flow("/site/" + name, want)
        self.assertEqual(body(full, "response"), got)
        self.assertEqual(full["state"], "complete")

    def test_local_body_head_and_next_request(self):
        o, r = self.origin, self.reel
        # a POST's body is read and recorded; the answer is the file's
        out = curl(r, "--data-binary", "x" * 100000, o.url("/local/app.js?post"))
        self.assertEqual(out.stdout, b'console.log("local");\n')
        _, full = self.local_flow("/local/app.js?post", self.app)
        self.assertEqual(body(full, "request"), b"x" * 100000)
        self.assertEqual(full["state"], "complete")
        # HEAD: the file's length, no body
        out = curl(r, "-I", o.url("/local/app.js?head"))
        self.assertIn(b"Content-Length: 22\r\n", out.stdout)
        self.local_flow("/local/app.js?head", self.app)
        # on one connection: the origin, a local answer, the origin again
        out = curl(r, o.url("/100b?ka1"), o.url("/local/app.js?ka"), o.url("/100b?ka2"))
        self.assertEqual(len(out.stdout), 100 + 22 + 100)
        rows = [self.last(p) for p in ("/100b?ka1", "/local/app.js?ka", "/100b?ka2")]
        self.assertEqual(len({f["client_conn"] for _, f in rows}), 1, rows)
        self.assertEqual([f["response"]["generated"] for _, f in rows], [False, True, False])
        self.assertEqual([f["state"] for _, f in rows], ["complete"] * 3)
        self.assertEqual(rows[2][1]["server_conn"]["address"],
                         "127.0.0.1:%d" % o.http_port)

    def test_local_rule_with_a_filter(self):
        o, r = self.origin, self.reel
        out = curl(r, "-H", "X-Mock: yes", "--data", "x", o.url("/filtered"))
        self.assertEqual(out.stdout, b'console.log("local");\n')
        _, full = self.local_flow("/filtered", self.app)
        self.assertEqual(full["request"]["method"], "POST")
        # a GET, and a POST without the field, go to the origin (nginx's 404)
        for args in ((), ("--data", "x")):
            out = curl(r, "-H", "X-Mock: yes" if not args else "X-Other: 1", *args, "-o",
                       "/dev/null", "-w", "%{http_code}", o.url("/filtered"))
            self.assertEqual(out.stdout, b"404")
        fl = r.wait_flows(3, "~u /filtered$")
        self.assertEqual([f["response_generated"] for f in fl], [True, False, False], fl)

    def test_block_list(self):
        o, r = self.origin, self.reel
        for args, path, code, rule in (((), "/blocked", "404", 0),
                                       (("-X", "DELETE"), "/del", "403", 1),
                                       (("--http2",), "/empty-block", "204", 3),
                                       (("-H", "X-Block: 1"), "/both", "451", 4)):
            https = "--http2" in args
            out = curl(r, *args, "-w", "\n%{http_code}", o.url(path, https=https), check=False)
            body, _, got = out.stdout.rpartition(b"\n")
            self.assertEqual(got.decode(), code, (path, out))
            want = b"" if code == "204" else (b"reel: blocked (block_list rule '%s')\n"
                                              % self.block_rules[rule].encode())
            self.assertEqual(body, want)
            row, full = self.last(path)
            self.assertEqual(full["response"]["blocked_by"], self.block_rules[rule])
            self.assertTrue(full["response"]["generated"])
            self.assertIsNone(full["server_conn"])
            self.assertEqual(row["state"], "complete")
        text = r.cli("flow", "mr", str(self.last("/blocked")[0]["id"])).stdout.decode()
        self.assertIn("\n~ block_list rule '%s' answered (no origin got the request)\n"
                      % self.block_rules[0], text)
        # 444: the connection closed, no answer; the flow says why
        out = curl(r, "-o", "/dev/null", "-w", "%{http_code}", o.url("/kill"), check=False)
        self.assertEqual(out.stdout, b"000")
        row, full = self.last("/kill")
        self.assertEqual(row["error"], "blocked by block_list rule '%s' (444): reel closed the "
                                       "connection without an answer" % self.block_rules[2])
        self.assertIsNone(full["response"])
        # nothing of these reached nginx
        self.assertFalse([l for l in o.log_lines() if l[2] in ("/blocked", "/del", "/kill")])
        # bad rules are refused, named
        for rule, why in (("|~d x|99", "the status '99' is not 200..599, or 444"),
                          ("|~c 200|404", "~c is not known before the request is sent"),
                          ("|~d x", "no status after the filter")):
            out = r.cli("config", "mr", "set", "block_list", json.dumps([rule]), check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(b"block_list rule '%s'" % rule.encode(), out.stderr)
            self.assertIn(why.encode(), out.stderr)

    def test_local_bad_rules_refused(self):
        for rule, why in (("|x|relative/file", "is not absolute"),
                          ("|(|/x", "bad pattern at 1"),
                          ("|a|b|/c|d", "more than three parts")):
            out = self.reel.cli("config", "mr", "set", "map_local", json.dumps([rule]),
                                check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(b"map_local rule", out.stderr)
            self.assertIn(why.encode(), out.stderr)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers any request with JSON: its framing fields and its body
    (base64), as the origin got them."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = b""
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.rfile.read(n)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out = json.dumps({k: self.headers.get(k) for k in (
            "Content-Length", "Transfer-Encoding", "Content-Encoding", "Expect")} |
            {"body": base64.b64encode(data).decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


class ModifyRequestBodyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="mb-request.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))  # (for stop_class)
        cls.echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=cls.echo.serve_forever, daemon=True).start()
        cls.reel = Reel(cls.root, "mbq")
        cls.rules = [r"|~q & ~u /q/|token=\w+|token=XXX",   # requests only
                     r"|~u /both/|apple|pear"]                  # requests and responses
        cls.reel.set_config("set", "modify_body", json.dumps(cls.rules))

    @classmethod
    def tearDownClass(cls):
        cls.echo.shutdown()
        cls.echo.server_close()
        stop_class(cls)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.echo.server_address[1], path)

    def post(self, path, data, *headers):
        args = []
        for h in headers:
            args += ["-H", h]
        out = curl(self.reel, "--data-binary", "@-", *args, self.url(path), input=data)
        return json.loads(out.stdout)

    def test_request_bodies(self):
        r, rules = self.reel, self.rules
        sent = b"user=a&token=s3cr3t&more=" + b"x" * 100
        want = sent.replace(b"token=s3cr3t", b"token=XXX")
        for path, hdrs, coded in (("/q/len", [], False),
                                  ("/q/chunked", ["Transfer-Encoding: chunked"], False),
                                  ("/q/gzip", ["Content-Encoding: gzip"], True)):
            data = gzip.compress(sent) if coded else sent
            got = self.post(path, data, *hdrs)
            # the origin got the body changed, framed by a length, decoded
            self.assertEqual(base64.b64decode(got["body"]), want, path)
            self.assertEqual(got["Content-Length"], str(len(want)), path)
            self.assertIsNone(got["Transfer-Encoding"], path)
            self.assertIsNone(got["Content-Encoding"], path)
            # the record: the client's body as it came, and what the rules did
            row, full = only_flow(self, r, path)
            self.assertEqual(full["request_body_edit"],
                             {"rules": [rules[0]], "replacements": 1, "sent_size": len(want),
                              "decoded": coded, "not_applied": None, "answered_continue": False,
                              "sent_body_b64": base64.b64encode(want).decode(),
                              "sent_body_truncated": False},
                             path)
            self.assertIsNone(full["response_body_edit"], path)  # (~q)
            self.assertEqual(body(full, "request"), data, path)
            self.assertEqual(row["state"], "complete")
        text = r.cli("flow", "mbq", str(only_flow(self, r, "/q/gzip")[0]["id"])).stdout.decode()
        self.assertIn("~ modify_body: 1 replacement by '%s'; the origin got %d bytes, decoded "
                      "from its Content-Encoding, with a Content-Length:\n%s\n"
                      % (rules[0], len(want), want.decode()), text)
        # a rule without ~q or ~s: the request's body, then the response's
        got = self.post("/both/x", b"an apple a day")
        self.assertEqual(base64.b64decode(got["body"]), b"an pear a day")
        _, full = only_flow(self, r, "/both/x")
        self.assertEqual(full["request_body_edit"]["replacements"], 1)
        self.assertEqual(full["response_body_edit"]["replacements"], 0)  # (base64 of it)
        # a request without a body has no edit
        curl(r, self.url("/q/get"), check=False)
        self.assertIsNone(only_flow(self, r, "/q/get")[1]["request_body_edit"])

    def test_expect_100_continue(self):
        # the client waits for a 100 before its body, which reel holds: reel
        # answers it, and the origin gets the request without Expect
        out = curl(self.reel, "-D", "-", "--data-binary", "@-", "-H", "Expect: 100-continue",
                   self.url("/q/expect"), input=b"token=s3cr3t")
        head, _, got = out.stdout.rpartition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), head)
        got = json.loads(got)
        self.assertEqual(base64.b64decode(got["body"]), b"token=XXX")
        self.assertIsNone(got["Expect"])
        row, full = only_flow(self, self.reel, "/q/expect")
        self.assertTrue(full["request_body_edit"]["answered_continue"])
        self.assertIn(["Expect", "100-continue"], full["request"]["headers"])  # (as it came)
        text = self.reel.cli("flow", "mbq", str(row["id"])).stdout.decode()
        self.assertIn("reel answered its Expect: 100-continue", text)

    def test_request_body_from_an_http2_client(self):
        # a prior-knowledge h2c client: its stream's body, which reel passes
        # on as an HTTP/1.1 request's, held and changed as any
        from test_http2 import H2C
        c = H2C(self.reel.port)
        try:
            sid = c.request("POST", "127.0.0.1:%d" % self.echo.server_address[1], "/q/h2",
                            body=b"a=1&token=s3cr3t&b=2")
            c.wait(lambda: c.streams[sid]["ended"])
            got = json.loads(c.streams[sid]["data"])
        finally:
            c.s.close()
        self.assertEqual(base64.b64decode(got["body"]), b"a=1&token=XXX&b=2")
        self.assertEqual(got["Content-Length"], "17")
        _, full = only_flow(self, self.reel, "/q/h2")
        self.assertEqual(full["request_body_edit"]["replacements"], 1)
        self.assertEqual(body(full, "request"), b"a=1&token=s3cr3t&b=2")

    def test_body_ending_in_half_a_character_is_shown_in_hex(self):
        # (no rule: the echo origin is at hand) a 5-byte body whose last byte
        # starts a UTF-8 character: reel flow took it for text, a sample cut
        # mid-character, and wrote bytes that are not UTF-8 (seen once in
        # test_http2, whose bodies are random)
        self.post("/plain/half", b"abcd\xe0")
        row, _ = only_flow(self, self.reel, "/plain/half")
        out = self.reel.cli("flow", "mbq", str(row["id"])).stdout
        out.decode()  # (UTF-8 throughout)
        self.assertIn(b"00000000  61 62 63 64 e0", out)

    def held_on_closed_connection(self, path, answer_new):
        # an origin that closes a kept-alive connection after 0.5 s of
        # silence (a new one waits for its request, and answers it if
        # answer_new, else closes without a word); the client's body comes
        # 1.5 s after its head, which reel holds. Returns the status line
        # and body the client got.
        class Quick(EchoHandler):
            do_GET = EchoHandler.do_POST

            def handle(self):
                if not answer_new and self.server.conns:
                    self.rfile.readline()  # the request line: then a close
                    return
                self.server.conns += 1
                self.handle_one_request()
                self.connection.settimeout(0.5)  # kept alive: 0.5 s of silence
                while not self.close_connection:
                    self.handle_one_request()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quick)
        srv.conns = 0
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            port = srv.server_address[1]
            c = socket.create_connection(("127.0.0.1", self.reel.port), 10)
            c.settimeout(20)
            c.sendall(b"GET http://127.0.0.1:%d/q/first HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 0\r\n\r\n" % port)
            f = c.makefile("rb")
            self.assertIn(b" 200 ", f.readline())
            n = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            f.read(n)
            c.sendall(b"POST http://127.0.0.1:%d%s HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 12\r\n\r\n" % (port, path.encode()))
            time.sleep(1.5)
            c.sendall(b"token=s3cr3t")
            status = f.readline()
            while f.readline() not in (b"\r\n", b""):
                pass
            got = f.read1(65536)
            c.close()
        finally:
            srv.shutdown()
            srv.server_close()
        return status, got

    def test_kept_alive_connection_closed_while_held(self):
        # nothing went on the old connection, so the request goes whole on
        # a new one (it was a 502 saying the origin never answered), and
        # the record does not call it a retry: it went out once
        status, got = self.held_on_closed_connection("/q/slow", True)
        self.assertIn(b" 200 ", status)
        self.assertEqual(base64.b64decode(json.loads(got)["body"]), b"token=XXX")
        row, full = only_flow(self, self.reel, "/q/slow")
        self.assertEqual(row["state"], "complete", full)
        self.assertFalse(full["server_conn"]["reused"], full["server_conn"])
        self.assertFalse(full["server_conn"]["retried"], full["server_conn"])

    def test_held_request_unanswered_on_its_new_connection(self):
        # the new connection closes without answering too: the 502 says
        # the request went out once, on the new connection, and why there
        # (it said "retried once: the first attempt ... went unanswered
        # too", of an attempt that sent nothing)
        status, got = self.held_on_closed_connection("/q/slow-lost", False)
        self.assertIn(b" 502 ", status)
        row, full = only_flow(self, self.reel, "/q/slow-lost")
        self.assertEqual(row["status"], 502, full)
        self.assertIn("closed while reel held the request for modify_body", row["error"])
        self.assertNotIn("retried", row["error"])
        self.assertFalse(full["server_conn"]["retried"], full["server_conn"])

    def test_sent_body_kept_to_256_kib(self):
        # a changed body over 256 KiB: the record keeps the first 256 KiB
        # of what the origin got, and says so
        r = self.reel
        sent = b"token=s3cr3t&" + b"a" * (600 << 10)
        want = sent.replace(b"token=s3cr3t", b"token=XXX")
        got = self.post("/q/big-edit", sent, "Expect:")
        self.assertEqual(base64.b64decode(got["body"]), want)
        row, full = only_flow(self, r, "/q/big-edit")
        edit = full["request_body_edit"]
        self.assertEqual((edit["sent_size"], edit["sent_body_truncated"]), (len(want), True))
        self.assertEqual(base64.b64decode(edit["sent_body_b64"]), want[:256 << 10])
        self.assertEqual(body(full, "request"), sent)  # (the client's, whole)
        text = r.cli("flow", "mbq", str(row["id"])).stdout.decode()
        self.assertIn("with a Content-Length:\ntoken=XXX&aaa", text)
        self.assertIn("\n  (the first 262144 bytes: the record keeps no more)\n", text)
        self.assertNotIn("token=XXX&aaa", r.cli("flow", "mbq", str(row["id"]),
                                                "--headers-only").stdout.decode())

    def test_replay_sends_the_body_as_the_origin_got_it(self):
        # replay sends a request as reel sent it on (map_remote's URL,
        # modify_headers' fields): with modify_body's, the body the origin
        # got, decoded as it went and without the Expect reel answered; a
        # body the record keeps only part of is not replayed (it sent the
        # client's body, which the origin never got)
        r = self.reel
        sent = b"user=a&token=s3cr3t"
        self.post("/q/rp-gzip", gzip.compress(sent), "Content-Encoding: gzip")
        self.post("/q/rp-expect", sent, "Expect: 100-continue")
        self.post("/q/rp-big", b"token=s3cr3t&" + b"a" * (600 << 10), "Expect:")
        for p in ("/q/rp-gzip", "/q/rp-expect", "/q/rp-big"):
            only_flow(self, r, p)
        out = r.cli("replay", "mbq", "~u /q/rp-", "--into", "mbq-rp", check=False)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"skipped: modify_body rules changed its request body, and the record "
                      b"keeps only the first 262144 of the 614410 bytes the origin got",
                      out.stdout + out.stderr)
        got = {}
        for row in json.loads(r.cli("flows", "mbq-rp", "--json").stdout):
            full = json.loads(r.cli("flow", "mbq-rp", str(row["id"]), "--json").stdout)
            got[row["url"].rpartition("/")[2]] = (
                json.loads(base64.b64decode(full["response"]["body_b64"])),
                base64.b64decode(full["request"]["body_b64"]), full["request"]["headers"])
        self.assertEqual(sorted(got), ["rp-expect", "rp-gzip"])
        for name in got:
            echo, stored, headers = got[name]
            self.assertEqual(base64.b64decode(echo["body"]), b"user=a&token=XXX", name)
            self.assertEqual(stored, b"user=a&token=XXX", name)  # (the new flow's: as sent)
            self.assertIsNone(echo["Content-Encoding"], name)
            self.assertIsNone(echo["Expect"], name)
            self.assertFalse([h for h in headers if h[0].lower() in ("expect",
                                                                    "content-encoding")], name)

    def test_request_bodies_not_changed(self):
        r = self.reel
        big = b"token=s3cr3t" + os.urandom(9 << 20)
        for path, hdrs, framing in (("/q/big-len", [], ("Content-Length", str(len(big)))),
                                    ("/q/big-chunked", ["Transfer-Encoding: chunked"],
                                     ("Transfer-Encoding", "chunked"))):
            got = self.post(path, big, "Expect:", *hdrs)  # (curl's past 1 MiB)
            self.assertEqual(base64.b64decode(got["body"]), big, path)
            self.assertEqual(got[framing[0]], framing[1], path)
            _, full = only_flow(self, r, path)
            self.assertEqual(full["request_body_edit"]["not_applied"], "the body is over 8 MiB")
            self.assertEqual(full["request"]["body_size"], len(big))


if __name__ == "__main__":
    main()
