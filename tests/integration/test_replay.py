#!/usr/bin/python3
"""reel replay against a real recorded session: flows recorded through reel
(curl, nginx origin over HTTP and HTTPS with the test CA) are sent again by
id and by filter, into the same session and into another; the new flows
hold the same responses (bodies as they came, still gzip), link to the flows
they replay (flows.replay_of, kept by repair), and failures (a refused
connection, an untrusted certificate) are recorded as the new flows' errors.
"""
import gzip
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import unittest

from proxyenv import TMPBASE, Origin, Reel, body, curl, free_port, main


class Replay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-replay-", dir=TMPBASE)
        cls.origin = o = Origin(cls.root)
        cls.reel = Reel(cls.root, "rp", "upstream_trusted_ca=" + o.ca)
        cls.dead = free_port()
        curl(cls.reel, o.url("/100b"))
        curl(cls.reel, "--compressed", o.url("/text.txt", https=True))
        curl(cls.reel, "-H", "X-Test: one", "--data-binary", "a=1&b=2", o.url("/echo?x=1"))
        curl(cls.reel, "http://127.0.0.1:%d/gone" % cls.dead, check=False)
        # curl sends a proxy an http:// URL in absolute form: with a Host of
        # its own, the origin got one made from the URL instead
        curl(cls.reel, "-H", "Host: other.example", o.url("/100b?vhost"))
        # A proxy that stores 4 bytes of each body and waits 1 s for an origin:
        # a request body cut short, and an origin that never answers.
        cls.silent = socket.socket()
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(8)  # connections complete in the backlog; nothing is ever read
        cls.reel2 = Reel(cls.root, "cut", "body_limit=4", "upstream_timeout=1")
        curl(cls.reel2, "--data-binary", "0123456789", o.url("/echo"))
        curl(cls.reel2, "http://127.0.0.1:%d/silent" % cls.silent.getsockname()[1], check=False)
        # curl waits for "100 Continue" before its body (as it does by itself
        # for large uploads); nginx answers 100 and 200 at once
        curl(cls.reel2, "-H", "Expect: 100-continue", "--data-binary", "0123456789abcdefghij",
             o.url("/echo?continue"))
        # a body cut short in a flow that then failed (the origin never answers)
        curl(cls.reel2, "-H", "Expect:", "--data-binary", "0123456789",
             "http://127.0.0.1:%d/silentpost" % cls.silent.getsockname()[1], check=False)
        assert len(cls.reel2.wait_flows(4)) == 4
        assert cls.reel2.stop() == 0, cls.reel2.log()
        # A proxy whose disk falls behind (capture=on, a 1 MiB capture
        # buffer, random bodies zstd cannot shrink): request bodies of 6 and
        # 16 MiB are shed part way, the 16 MiB one also past body_limit.
        cls.reel3 = Reel(cls.root, "behind", "capture=on", "capture_buffer=1m",
                         "body_limit=10m")
        cls.behind = {}
        for n in (6 << 20, 16 << 20):
            path = os.path.join(cls.root, "up%d" % n)
            with open(path, "wb") as f:
                f.write(os.urandom(n))
            curl(cls.reel3, "-H", "Expect:", "--data-binary", "@" + path, o.url("/echo?%d" % n))
        for f in cls.reel3.wait_flows(2):
            cls.behind[int(f["url"].rsplit("?", 1)[1])] = f["id"]
        assert cls.reel3.stop() == 0, cls.reel3.log()
        cls.flows = cls.reel.wait_flows(5)
        assert len(cls.flows) == 5, cls.flows
        cls.ids = {f["url"]: f["id"] for f in cls.flows}
        # While the proxy records into rp, replay may read rp but not write to it.
        cls.live = cls.reel.cli("replay", "rp", str(cls.ids[o.url("/100b")]), check=False)
        cls.live_into = cls.reel.cli("replay", "rp", str(cls.ids[o.url("/100b")]), "--into", "live",
                                     "--json", check=False)
        code = cls.reel.stop()
        assert code == 0, cls.reel.log()
        # replay reads upstream_trusted_ca from the session's configuration
        cls.reel.cli("config", "rp", "set", "upstream_trusted_ca", o.ca)

    @classmethod
    def tearDownClass(cls):
        cls.silent.close()
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def cli(self, *args, check=True):
        return self.reel.cli(*args, check=check)

    def flow(self, session, fid):
        return json.loads(self.cli("flow", session, str(fid), "--json").stdout)

    def rows(self, session):
        db = sqlite3.connect("file:%s/home/%s/session.db?mode=ro" % (self.root, session), uri=True)
        try:
            return {r[0]: r[1:] for r in db.execute(
                "SELECT id, replay_of, replay_session, source, status, error FROM flows")}
        finally:
            db.close()

    def replay(self, *args, check=True):
        r = self.cli("replay", *args, "--json", check=check)
        return r, json.loads(r.stdout)

    def test_live_session(self):
        self.assertEqual(self.live.returncode, 1)
        self.assertIn(b"being recorded by PID", self.live.stderr)
        self.assertIn(b"--into", self.live.stderr)
        self.assertEqual(self.live_into.returncode, 0, self.live_into.stderr)
        out = json.loads(self.live_into.stdout)
        self.assertEqual(out["ok"], 1)
        self.assertEqual(self.rows("live")[1][:2], (self.ids[self.origin.url("/100b")], "rp"))

    def test_by_id_same_session(self):
        o = self.origin
        src = self.ids[o.url("/100b")]
        before = set(self.rows("rp"))
        r, out = self.replay("rp", str(src))
        self.assertEqual(r.returncode, 0, r.stderr)
        [rep] = out["replays"]
        new = rep["id"]
        self.assertNotIn(new, before)
        self.assertEqual((rep["of"], rep["status"], rep["error"], rep["url"]), (src, 200, None, o.url("/100b")))
        self.assertEqual(self.rows("rp")[new], (src, None, "replay", 200, None))
        f, orig = self.flow("rp", new), self.flow("rp", src)
        self.assertEqual(f["source"], "replay")
        self.assertEqual(body(f, "response"), b"x" * 99 + b"\n")
        self.assertEqual(body(f, "response"), body(orig, "response"))
        self.assertEqual(f["request"]["target"], "/100b")
        names = [h[0].lower() for h in f["request"]["headers"]]
        self.assertNotIn("proxy-connection", names)
        self.assertEqual(names.count("host"), 1)
        self.assertIsNotNone(f["server_conn"])
        # a connection of its own: its set-up is the flow's dns and connect
        sc, t = f["server_conn"], f["timings"]
        self.assertGreaterEqual(sc["opened_us"] or 0, f["start_us"], sc)
        self.assertEqual((sc["dns_us"], sc["connect_us"], sc["ssl_us"]),
                         (t["dns_us"], t["connect_us"], -1), (sc, t))
        # ~replay selects exactly the flows replay made
        listed = {x["id"] for x in json.loads(self.cli("flows", "rp", "--json", "~replay").stdout)}
        self.assertIn(new, listed)
        self.assertNotIn(src, listed)
        self.assertEqual(listed, {i for i, r in self.rows("rp").items() if r[0] is not None})
        # reel flow shows the link both ways, and --json carries it
        self.assertEqual(f["replay_of"], src)
        self.assertIn(new, orig["replayed_as"])
        text = self.cli("flow", "rp", str(new), "--headers-only").stdout.decode()
        self.assertIn("replay of #%d" % src, text.split("\n")[0])
        text = self.cli("flow", "rp", str(src), "--headers-only").stdout.decode()
        self.assertRegex(text.split("\n")[0], r"replayed as .*#%d\b" % new)
        # a human line names both flows
        r = self.cli("replay", "rp", str(src))
        self.assertRegex(r.stdout.decode(), r"^#%d -> #\d+ GET %s 200 OK\n$" % (src, o.url("/100b")))
        self.assertIn(b"replayed 1 of 1 flow into rp: 1 answered, 0 failed", r.stderr)

    def test_absolute_form_goes_again_with_host_from_its_url(self):
        o = self.origin
        url = o.url("/100b?vhost")
        src = self.ids[url]
        orig = self.flow("rp", src)
        self.assertTrue(orig["request"]["absolute_form"])
        self.assertFalse(self.flow("rp", self.ids[o.url("/text.txt", https=True)])["request"]
                         ["absolute_form"])  # origin form inside the tunnel
        hosts = [h[1] for h in orig["request"]["headers"] if h[0].lower() == "host"]
        self.assertEqual(hosts, ["other.example"])  # the record keeps what the client sent
        # shown and exported as the client sent it; curl's command makes the
        # Host the origin got, from the URL
        text = self.cli("flow", "rp", str(src), "--headers-only").stdout.decode()
        self.assertIn("> GET %s HTTP/1.1\n" % url, text)
        raw = self.cli("export", "rp", "--format", "raw", "~id %d" % src).stdout
        self.assertTrue(raw.startswith(b"GET %s HTTP/1.1\r\n" % url.encode()), raw[:100])
        self.assertIn(b"\r\nHost: other.example\r\n", raw)
        cmd = self.cli("export", "rp", "--format", "curl", "~id %d" % src).stdout.decode()
        self.assertIn("'%s'" % url, cmd)
        self.assertNotIn("other.example", cmd)
        nd = json.loads(self.cli("export", "rp", "--format", "ndjson", "~id %d" % src).stdout)
        self.assertTrue(nd["request"]["absolute_form"])
        # replay sends what reel sent the origin: Host from the URL
        r, out = self.replay("rp", str(src), "--into", "vhost")
        self.assertEqual(r.returncode, 0, r.stderr)
        [rep] = out["replays"]
        f = self.flow("vhost", rep["id"])
        hosts = [h[1] for h in f["request"]["headers"] if h[0].lower() == "host"]
        self.assertEqual(hosts, ["127.0.0.1:%d" % o.http_port])
        self.assertFalse(f["request"]["absolute_form"])

    def test_https_gzip_and_post_into_other(self):
        o = self.origin
        r, out = self.replay("rp", "~u text.txt | ~m POST", "--into", "other", "--concurrency", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(x["of"] for x in out["replays"]),
                         sorted([self.ids[o.url("/text.txt", https=True)], self.ids[o.url("/echo?x=1")]]))
        self.assertEqual(out["into"], "other")
        rows = self.rows("other")
        for rep in out["replays"]:
            self.assertEqual(rows[rep["id"]][:2], (rep["of"], "rp"))
            new, orig = self.flow("other", rep["id"]), self.flow("rp", rep["of"])
            self.assertEqual(new["response"]["status"], orig["response"]["status"])
            if rep["url"].startswith("https:"):
                enc = [v for k, v in new["response"]["headers"] if k.lower() == "content-encoding"]
                self.assertEqual(enc, ["gzip"])  # recorded as it came, not decoded
                with open(o.www + "/text.txt", "rb") as fh:
                    self.assertEqual(gzip.decompress(body(new, "response")), fh.read())
                self.assertEqual(new["server_conn"]["sni"], "localhost")
                self.assertTrue(new["server_conn"]["tls_version"].startswith("TLS"))
                self.assertEqual(new["server_conn"]["ssl_us"], new["timings"]["ssl_us"])
                self.assertGreaterEqual(new["server_conn"]["ssl_us"], 0)
                # reel diff: the same body once decoded, whatever else differs
                d = json.loads(self.cli("diff", "rp:%d" % rep["of"], "other:%d" % rep["id"],
                                        "--json").stdout)
                self.assertNotIn("response.body", d["changes"])
                self.assertNotIn("status", d["changes"])
                self.assertEqual((d["b"]["session"], d["b"]["id"]), ("other", rep["id"]))
            else:
                self.assertEqual(body(new, "request"), b"a=1&b=2")
                self.assertEqual(body(new, "response"), b"posted\n")
                hdr = {k.lower(): v for k, v in new["request"]["headers"]}
                self.assertEqual(hdr["x-test"], "one")
                self.assertEqual(hdr["content-length"], "7")
        # the link survives an index rebuilt from the spool
        self.cli("repair", "other")
        self.assertEqual(self.rows("other"), rows)

    def test_unreachable_origin(self):
        src = self.ids["http://127.0.0.1:%d/gone" % self.dead]
        r, out = self.replay("rp", str(src), "--into", "dead", check=False)
        self.assertEqual(r.returncode, 1)
        [rep] = out["replays"]
        self.assertIsNone(rep["status"])
        self.assertIn("Connection refused", rep["error"])
        self.assertEqual(out["failed"], 1)
        row = self.rows("dead")[rep["id"]]
        self.assertEqual(row[0], src)
        self.assertIn("connecting to 127.0.0.1:%d: Connection refused" % self.dead, row[4])
        f = self.flow("dead", rep["id"])
        self.assertEqual(f["state"], "error")
        self.assertIsNone(f["server_addr"])  # no origin was reached
        self.assertIsNone(f["response"])

    def test_untrusted_certificate(self):
        src = self.ids[self.origin.url("/text.txt", https=True)]
        r, out = self.replay("rp", str(src), "--into", "tls", "--set", "upstream_trusted_ca=",
                             check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("certificate verify failed", out["replays"][0]["error"])
        self.assertIn("certificate verify failed", self.rows("tls")[out["replays"][0]["id"]][4])
        # the record says what the check found, as the proxy's does: the
        # handshake it ended, then one made with verification off (the
        # replay's server_conn said neither)
        sc = self.flow("tls", out["replays"][0]["id"])["server_conn"]
        self.assertEqual((sc["unverified"], sc["verify_error"], sc["ssl_us"]),
                         (False, "unable to get local issuer certificate", -1), sc)
        self.assertTrue(sc["peer_cert"].startswith("certificate for "), sc)
        r, out = self.replay("rp", str(src), "--into", "tls", "--set", "upstream_trusted_ca=",
                             "--set", "upstream_cert_verify=false")
        self.assertEqual(out["replays"][0]["status"], 200)
        sc = self.flow("tls", out["replays"][0]["id"])["server_conn"]
        self.assertEqual((sc["unverified"], sc["verify_error"]),
                         (True, "unable to get local issuer certificate"), sc)
        self.assertTrue(sc["peer_cert"].startswith("certificate for "), sc)
        text = self.cli("flow", "tls", str(out["replays"][0]["id"]), "--headers-only").stdout
        self.assertIn(b"certificate NOT verified", text)
        self.assertIn(b"~ certificate would have FAILED verification (reel went on): unable to get "
                      b"local issuer certificate", text)
        # HAR's _reel carries it, and an import of that HAR keeps it
        har = os.path.join(self.root, "unverified.har")
        self.cli("export", "tls", "~id %d" % out["replays"][0]["id"], "-o", har)
        with open(har) as fh:
            rx = json.load(fh)["log"]["entries"][0]["_reel"]
        self.assertEqual((rx["unverified"], rx["verify_error"], rx["peer_cert"]),
                         (True, sc["verify_error"], sc["peer_cert"]), rx)
        self.cli("import", har, "--into", "tls-har")
        back = self.flow("tls-har", 1)["server_conn"]
        self.assertEqual((back["unverified"], back["verify_error"], back["peer_cert"]),
                         (True, sc["verify_error"], sc["peer_cert"]), back)

    def test_body_not_stored_whole_is_skipped(self):
        r, out = self.replay("cut", "1", check=False)
        self.assertEqual(r.returncode, 1)  # nothing could be replayed
        self.assertEqual(out["replays"], [])
        # the cause the flow's end record gives (body_limit=4), not a guess
        self.assertEqual(out["skipped"], [{"of": 1, "why": "its request body was not stored whole "
                                           "(4 of 10 bytes): body_limit cut it"}])
        r = self.cli("replay", "cut", "1", check=False)
        self.assertEqual(r.stdout, b"#1 skipped: its request body was not stored whole "
                         b"(4 of 10 bytes): body_limit cut it\n")
        self.assertEqual(len(self.rows("cut")), 4)  # no flow made
        # a flow that failed after body_limit cut its request body: its
        # error record says so as an end would
        r, out = self.replay("cut", "4", check=False)
        self.assertEqual(out["skipped"], [{"of": 4, "why": "its request body was not stored whole "
                                           "(4 of 10 bytes): body_limit cut it"}])

    def test_cut_body_after_100_continue_has_one_true_note(self):
        # 'reel flow' closed the request body at the 1xx and at the response
        # head, both recorded before the body's bytes: a false "(body
        # truncated at 0 of 20 bytes by body_limit)" came first.
        text = self.cli("flow", "cut", "3").stdout
        self.assertNotIn(b"truncated at 0", text)
        note = b"(body truncated at 4 of 20 bytes by body_limit)\n"
        self.assertEqual(text.count(b"truncated at 4 of 20 bytes"), 1, text)
        self.assertIn(b"\n0123\n" + note, text)
        self.assertLess(text.index(b"< HTTP/1.1 100 Continue   [interim]\n"), text.index(note))
        # the response's note names its body when it follows the request's
        self.assertRegex(text, rb"\npost\n\(body truncated at 4 of 7 bytes by body_limit\)\n|"
                         rb"\n\(response body truncated at 4 of 7 bytes by body_limit\)\n")
        self.assertEqual(self.flow("cut", 3)["request"]["body_b64"], "MDEyMw==")
        # --view shows each body at its end: the same single note, and a
        # body shown after the other one's bytes says whose it is
        text = self.cli("flow", "cut", "3", "--view", "hex").stdout
        self.assertNotIn(b"truncated at 0", text)
        self.assertEqual(text.count(b"truncated at 4 of 20 bytes"), 1, text)
        self.assertLess(text.index(b"|0123|"), text.index(b"truncated at 4 of 20 bytes"))
        # (when the response head was recorded before the request body's
        # bytes: nginx may send the 100 and the 200 at once, or not)
        if text.index(b"< HTTP/1.1 200 OK") < text.index(b"|0123|") < text.index(b"|post|"):
            self.assertIn(b"\n< (response body)\n", text)
        # an ordinary flow: the note right after the body, before the response
        self.assertIn(b"\n0123\n(body truncated at 4 of 10 bytes by body_limit)\n\n"
                      b"< HTTP/1.1 200 OK\n", self.cli("flow", "cut", "1").stdout)

    def test_body_shed_by_capture_is_not_blamed_on_body_limit(self):
        # The recorder says truncated for a body it shed; the end record's
        # request_body_dropped says why. 'reel replay' and 'reel flow' named
        # body_limit (or "body_limit, or capture fell behind") before.
        for n, tail in ((6 << 20, b"capture fell behind the disk"),
                        (16 << 20, b"capture fell behind the disk, and body_limit cut the rest")):
            fid = self.behind[n]
            req = self.flow("behind", fid)["request"]
            stored, dropped = len(body({"request": req}, "request")), req["body_dropped"]
            self.assertEqual(req["body_size"], n)
            self.assertTrue(req["body_truncated"])
            self.assertTrue(0 < dropped, "capture did not fall behind: %r" % req["body_dropped"])
            self.assertEqual(stored + dropped < n, n > (10 << 20))
            r = self.cli("replay", "behind", str(fid), check=False)
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stdout, b"#%d skipped: its request body was not stored whole "
                             b"(%d of %d bytes): %s\n" % (fid, stored, n, tail))
            text = self.cli("flow", "behind", str(fid)).stdout
            self.assertIn(b"\n(body truncated at %d of %d bytes: %s)\n" % (stored, n, tail), text)
            self.assertNotIn(b"body_limit)", text)
            self.assertIn(b"\n! %d bytes of the request body were not stored (capture fell behind)"
                          b"\n" % dropped, text)

    def test_timeout(self):
        r, out = self.replay("cut", "2", "--set", "upstream_timeout=1", check=False)
        self.assertEqual(r.returncode, 1)
        [rep] = out["replays"]
        self.assertEqual(rep["error"], "upstream timed out after 1 s waiting for the response")
        f = self.flow("cut", rep["id"])
        self.assertEqual((f["state"], f["response"]), ("error", None))
        self.assertEqual(f["error"], rep["error"])

    def test_all_concurrent_and_errors(self):
        r, out = self.replay("rp", "~id 1-4", "--into", "many", "--concurrency", "4", check=False)
        self.assertEqual(r.returncode, 1)  # the dead origin fails
        self.assertEqual([x["of"] for x in out["replays"]], [1, 2, 3, 4])
        self.assertEqual((out["ok"], out["failed"]), (3, 1))
        self.assertEqual(len(self.rows("many")), 4)
        r = self.cli("replay", "rp", "~u nothing-matches", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no flow of session 'rp' matches", r.stderr)
        r = self.cli("replay", "rp", "999", check=False)
        self.assertIn(b"no flow 999", r.stderr)
        r = self.cli("replay", "rp", "1", "--concurrency", "0", check=False)
        self.assertEqual(r.returncode, 2)


class RawOrigin:
    """HTTP/1.1 on 127.0.0.1, one answer per connection, by path: what
    nginx does not send (trailers, a 103, bytes past the end, a TLS close
    without close_notify); keeps each request's bytes."""
    ANSWERS = {
        b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
                     b"0\r\nX-Checksum: abc\r\n\r\n",
        b"/early": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"/excess": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
        b"/trailers": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"/close": b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
    }

    def __init__(self, ctx=None):
        self.ctx = ctx
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.requests = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                raw, _ = self.srv.accept()
            except OSError:
                return
            try:
                raw.settimeout(5)
                c = self.ctx.wrap_socket(raw, server_side=True) if self.ctx else raw
                got = b""
                while b"\r\n\r\n" not in got or (b"Transfer-Encoding: chunked" in got and not
                                                      got.endswith(b"\r\n\r\n0\r\n\r\n") and
                                                      not got.endswith(b"X-Req: t1\r\n\r\n")):
                    d = c.recv(65536)
                    if not d:
                        break
                    got += d
                self.requests.append(got)
                path = got.split(b" ")[1].split(b"?")[0] if b" " in got else b""
                c.sendall(self.ANSWERS.get(path, b"HTTP/1.1 404 X\r\nContent-Length: 0\r\n\r\n"))
                c.close()  # (under TLS: no close_notify; raw was detached into c)
            except (OSError, ssl.SSLError):
                raw.close()

    def close(self):
        self.srv.close()


class ReplayKeeps(unittest.TestCase):
    """A replay records what the origin did as the proxy does: its 1xx,
    trailers, the bytes past the response's end, a body read until a TLS
    close without close_notify as cut short; and sends the request's
    trailer fields (they were dropped, and all of those were lost, the new
    flows complete as if nothing had been)."""

    def test_replay_records_what_the_proxy_records(self):
        root = tempfile.mkdtemp(prefix="reel-replay-keeps-", dir=TMPBASE)
        key, cert = os.path.join(root, "k.pem"), os.path.join(root, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost"], check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        plain, tls = RawOrigin(), RawOrigin(ctx)
        reel = Reel(root, "src", "upstream_trusted_ca=" + cert)
        try:
            for path in ("/chunked", "/early", "/excess"):
                curl(reel, "http://127.0.0.1:%d%s" % (plain.port, path))
            s = socket.create_connection(("127.0.0.1", reel.port), timeout=10)
            s.sendall(b"POST http://127.0.0.1:%d/trailers HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\nTrailer: X-Req\r\n\r\n"
                      b"3\r\nabc\r\n0\r\nX-Req: t1\r\n\r\n" % plain.port)
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
            s.close()
            curl(reel, "https://localhost:%d/close" % tls.port, check=False)
            assert len(reel.wait_flows(5)) == 5
        finally:
            self.assertEqual(reel.stop(), 0, reel.log())
        try:
            src = {f["url"].rsplit("/", 1)[1]: f for f in reel.flows()}
            self.assertEqual(src["close"]["state"], "error", src["close"])
            plain.requests.clear()
            reel.cli("config", "src", "set", "upstream_trusted_ca", cert)  # (replay reads it)
            reel.cli("replay", "src", "1-5", "--into", "dst", check=False)
            dst = {f["url"].rsplit("/", 1)[1]: f["id"] for f in
                   json.loads(reel.cli("flows", "dst", "--json").stdout)}

            def full(name):
                return json.loads(reel.cli("flow", "dst", str(dst[name]), "--json").stdout)
            self.assertEqual(full("chunked")["response_trailers"], [["X-Checksum", "abc"]])
            self.assertEqual([i["status"] for i in full("early")["interim"]], [103])
            nd = json.loads(reel.cli("export", "dst", "~id %d" % dst["excess"], "--format",
                                     "ndjson").stdout)
            self.assertEqual(nd["response_excess"], 5, nd)
            c = full("close")
            self.assertEqual(c["state"], "error", c)
            self.assertEqual(c["error"], "the origin closed the TLS connection without "
                             "close_notify: the body may be cut short (RFC 9112 9.8)")
            # the request's trailer fields went again, chunked, and are on record
            [sent] = [r for r in plain.requests if b"/trailers" in r]
            self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", sent)
            self.assertIn(b"\r\nTrailer: X-Req\r\n", sent)  # (end to end: the proxy keeps it)
            self.assertTrue(sent.endswith(b"3\r\nabc\r\n0\r\nX-Req: t1\r\n\r\n"), sent)
            self.assertEqual(full("trailers")["request_trailers"], [["X-Req", "t1"]])
        finally:
            plain.close()
            tls.close()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
