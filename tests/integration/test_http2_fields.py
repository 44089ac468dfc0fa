#!/usr/bin/python3
"""What reel changes in a message's head when it translates between
HTTP/2 and HTTP/1.1, checked at both ends (what the origin got, what the
client got) and in the record:

- `te: trailers` goes on in every direction: as `te: trailers` to an
  HTTP/2 origin (RFC 9113 8.2.2, gRPC servers refuse a request without
  it), as `TE: trailers` named in Connection to an HTTP/1.1 origin (TE is
  hop-by-hop: RFC 9110 7.6.1, 10.1.4), whatever else the client's TE
  listed dropped. reel used to drop it every time;
- an HTTP/1.1 origin's 204 (or 1xx) with a Content-Length reaches an
  HTTP/2 client without it (RFC 9110 8.6; curl failed the stream with
  PROTOCOL_ERROR, python-h2 with InvalidBodyLengthError), a 304's and a
  HEAD answer's stay; the record keeps what the origin sent;
- OPTIONS with `:path *` (RFC 9113 8.3.1) goes to an HTTP/1.1 origin as
  `OPTIONS * HTTP/1.1` and to an HTTP/2 one as `:path *`, recorded with
  the target `*`; reel used to answer it 400. An HTTP/1.1 client's
  `OPTIONS http://host:port HTTP/1.1` (RFC 9112 3.2.4) goes as `*` too.
"""
import json
import os
import socket
import subprocess
import tempfile
import threading
import unittest

from proxyenv import TMPBASE, Origin, Reel, main, raw, stop_class
from test_http2 import H2C, hdr
from test_http2_upstream import H2Origin, tunnel_h2


class RawOrigin:
    """An HTTP/1.1 origin on 127.0.0.1 that keeps every request head it
    reads (request line, [(name, value)] as sent) and answers by path:
    /nocl204  204 with Content-Length: 5 (which RFC 9110 8.6 forbids)
    /cl304    304 with Content-Length: 5 (the representation's length)
    /head     200 with Content-Length: 1234 and no body (for HEAD)
    /trailers 200 chunked "hello" with trailers x-t, x-u
    anything else 200 "ok"
    (a query is the test's tag: the path alone chooses)"""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                fields = []
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    fields.append((k.strip(), v.strip()))
                self.requests.append((line.decode().rstrip("\r\n"), fields))
                target = line.split()[1].split(b"?")[0]
                if target == b"/nocl204":
                    c.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
                elif target == b"/cl304":
                    c.sendall(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n"
                              b"ETag: \"x\"\r\n\r\n")
                elif target == b"/head":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
                elif target == b"/trailers":
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              b"Trailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: tv\r\nx-u: uv\r\n\r\n")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def request(self, part):
        """The head of the one request whose request line holds part."""
        got = [r for r in self.requests if part in r[0]]
        assert len(got) == 1, (part, self.requests)
        return got[0]

    def stop(self):
        self.sock.close()


def values(fields, name):
    return [v for k, v in fields if k.lower() == name.lower()]


class Http2FieldsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2fields-", dir=TMPBASE)
        cls.origin = Origin(cls.root, h2=True)  # certificates for the h2 origin
        cls.h1 = RawOrigin()
        cls.h2 = H2Origin(os.path.join(cls.root, "server.pem"),
                          os.path.join(cls.root, "server.key"))
        cls.h2c = H2Origin()  # plain: h2c_upstreams names it
        cls.reel = Reel(cls.root, "h2fields", "upstream_trusted_ca=" + cls.origin.ca,
                        "h2c_upstreams=127.0.0.1:%d" % cls.h2c.port)
        cls.a1 = "127.0.0.1:%d" % cls.h1.port

    @classmethod
    def tearDownClass(cls):
        cls.h1.stop()
        cls.h2.stop()
        cls.h2c.stop()
        stop_class(cls)

    def flow(self, filt):
        fs = self.reel.wait_flows(1, filt, timeout=10)
        self.assertEqual(len(fs), 1, fs)
        return self.reel.flow(fs[0]["id"])

    def warm_h2(self):
        """reel learns the h2 origin's ALPN (a probe), then uses h2 to it."""
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "30", "-x",
                        self.reel.proxy, "--cacert", self.reel.ca, "--http2",
                        "https://localhost:%d/t/plain?warm" % self.h2.port], check=True)

    def h2c_get(self, method, authority, path, extra=()):
        c = H2C(self.reel.port)
        try:
            sid = c.request(method, authority, path, extra=list(extra))
            c.wait(lambda: c.done(sid))
            return c.streams[sid]
        finally:
            c.close()

    # ---- te: trailers ----

    def test_te_trailers_h2_client_to_h1_origin(self):
        st = self.h2c_get("POST", self.a1, "/trailers?te-h2h1", [("te", "trailers")])
        self.assertIsNone(st["reset"])
        self.assertEqual(st["data"], b"hello")
        self.assertEqual(hdr(st["trailers"], "x-t"), "tv")
        _, fields = self.h1.request("te-h2h1")
        self.assertEqual(values(fields, "te"), ["trailers"])
        self.assertIn("TE", [t.strip() for v in values(fields, "connection") for t in v.split(",")])
        # the record says what the client sent
        f = self.flow("~u te-h2h1")
        self.assertIn(["te", "trailers"], f["request"]["headers"])
        # without it, none is made up
        self.h2c_get("GET", self.a1, "/x?te-none")
        _, fields = self.h1.request("te-none")
        self.assertEqual(values(fields, "te"), [])

    def test_te_trailers_h1_client_to_h1_origin(self):
        # "trailers" is the client's word to reel and to the origin alike;
        # the codings reel would have to decode are not passed on
        out = raw(self.reel.port,
                  b"GET http://%s/trailers?te-h1h1 HTTP/1.1\r\nHost: %s\r\n"
                  b"TE: gzip;q=0.5, trailers\r\nConnection: TE, close\r\n\r\n" %
                  (self.a1.encode(), self.a1.encode()))
        self.assertIn(b"x-t: tv", out)
        _, fields = self.h1.request("te-h1h1")
        self.assertEqual(values(fields, "TE"), ["trailers"])
        self.assertEqual(values(fields, "Connection"), ["TE"])
        raw(self.reel.port, b"GET http://%s/x?te-h1gz HTTP/1.1\r\nHost: %s\r\nTE: gzip\r\n"
            b"Connection: close\r\n\r\n" % (self.a1.encode(), self.a1.encode()))
        _, fields = self.h1.request("te-h1gz")
        self.assertEqual(values(fields, "te"), [])
        # reel replay and the curl export send it as reel did
        f = self.flow("~u te-h1h1")
        self.reel.cli("replay", self.reel.session, str(f["id"]), "--into", "te-replay")
        cmd = self.reel.cli("export", self.reel.session, "--format", "curl",
                            "~u te-h1h1").stdout.decode()
        self.assertIn("-H 'TE: trailers'", cmd)
        subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, timeout=30)
        again = [r[1] for r in self.h1.requests if "te-h1h1" in r[0]]
        self.assertEqual(len(again), 3, self.h1.requests)
        for fields in again[1:]:
            self.assertEqual(values(fields, "TE"), ["trailers"], fields)
            self.assertIn("TE", [t.strip() for v in values(fields, "Connection")
                                 for t in v.split(",")], fields)

    def test_te_trailers_h2_client_to_h2_origin(self):
        self.warm_h2()
        c = tunnel_h2(self.reel, self.h2.port)
        try:
            auth = "localhost:%d" % self.h2.port
            sid = c.request("POST", auth, "/t/echo", body=b"\x00\x00\x00\x00\x02hi", end=False,
                            extra=[("te", "trailers"), ("content-type", "application/grpc")])
            c.conn.send_headers(sid, [("x-req-trailer", "1")], end_stream=True)
            c.flush()
            c.wait(lambda: c.done(sid))
            self.assertIsNone(c.streams[sid]["reset"])
            self.assertEqual(json.loads(c.streams[sid]["data"])["trailers"],
                             [["x-req-trailer", "1"]])
        finally:
            c.close()
        req = [r for r in self.h2.requests if r["headers"].get(":path") == "/t/echo"][-1]
        self.assertIn(("te", "trailers"), req["fields"])
        self.assertNotIn("connection", req["headers"])

    def test_te_trailers_h1_client_to_h2_origin(self):
        out = raw(self.reel.port,
                  b"GET http://127.0.0.1:%d/t/plain?te-h1h2 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"TE: trailers\r\nConnection: TE, close\r\n\r\n" % (self.h2c.port, self.h2c.port))
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        req = [r for r in self.h2c.requests if r["headers"].get(":path") == "/t/plain?te-h1h2"][0]
        self.assertIn(("te", "trailers"), req["fields"])
        self.assertNotIn("connection", req["headers"])

    # ---- Content-Length where HTTP/2 allows none ----

    def test_204_with_content_length_from_h1_origin(self):
        st = self.h2c_get("GET", self.a1, "/nocl204")  # python-h2 checks the length
        self.assertIsNone(st["reset"])
        self.assertTrue(st["ended"])
        self.assertEqual(hdr(st["headers"], ":status"), "204")
        self.assertIsNone(hdr(st["headers"], "content-length"))
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge",
                            "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/nocl204" % self.reel.port,
                            "-H", "Host: " + self.a1], capture_output=True)
        self.assertEqual((r.returncode, r.stdout), (0, b"204"), r.stderr)
        # the record: the origin's head as it came, and nothing lost
        f = self.flow("~u /nocl204 ~h user-agent")
        self.assertIsNone(f.get("error"), f)
        self.assertEqual(f["response"]["status"], 204)
        self.assertIn(["Content-Length", "5"], f["response"]["headers"])

    def test_304_and_head_keep_their_content_length(self):
        # nghttp2 (curl) takes either: the length of the representation
        for args, path, want in (([], "/cl304", "5"), (["-I"], "/head", "1234")):
            r = subprocess.run(["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge",
                                "-D", "-", "-o", "/dev/null"] + args +
                               ["http://127.0.0.1:%d%s" % (self.reel.port, path),
                                "-H", "Host: " + self.a1], capture_output=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            head = r.stdout.decode().lower()
            self.assertIn("content-length: %s\r\n" % want, head)

    # ---- OPTIONS * ----

    def test_options_asterisk_h2_client_to_h1_origin(self):
        st = self.h2c_get("OPTIONS", self.a1, "*", [("x-ask", "asterisk-h1")])
        self.assertEqual(hdr(st["headers"], ":status"), "200")
        self.assertEqual(st["data"], b"ok")
        line, fields = [r for r in self.h1.requests
                        if ("x-ask", "asterisk-h1") in r[1]][0]
        self.assertEqual(line, "OPTIONS * HTTP/1.1")
        self.assertEqual(values(fields, "Host"), [self.a1])
        f = self.flow("~h asterisk-h1")
        self.assertIsNone(f.get("error"), f)
        self.assertEqual((f["request"]["method"], f["request"]["target"]), ("OPTIONS", "*"))
        # listed, filtered and exported as the origin's URL (curl's words)
        self.assertEqual(self.reel.flows("~h asterisk-h1")[0]["url"], "http://" + self.a1)
        self.assertEqual(len(self.reel.flows("~u '^http://%s$' ~h asterisk-h1" % self.a1)), 1)
        har = json.loads(self.reel.cli("export", self.reel.session, "--format", "har",
                                       "~h asterisk-h1").stdout)
        self.assertEqual(har["log"]["entries"][0]["request"]["url"], "http://" + self.a1)
        # and the HAR's URL without a path is OPTIONS * again when imported
        path = os.path.join(self.root, "asterisk.har")
        with open(path, "w") as f:
            json.dump(har, f)
        self.reel.cli("import", path, "--into", "asterisk-back")
        back = json.loads(self.reel.cli("flow", "asterisk-back", "1", "--json").stdout)
        self.assertEqual((back["request"]["method"], back["request"]["target"]), ("OPTIONS", "*"))
        # the curl export asks for * too (the URL alone would ask for /)
        cmd = self.reel.cli("export", self.reel.session, "--format", "curl",
                            "~h asterisk-h1").stdout.decode()
        subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, timeout=30)
        lines = [r[0] for r in self.h1.requests if ("x-ask", "asterisk-h1") in r[1]]
        self.assertEqual(lines, ["OPTIONS * HTTP/1.1"] * 2)

    def test_options_asterisk_h2_client_to_h2_origin(self):
        # h2c to reel as a proxy, and h2 inside an intercepted tunnel
        auth = "127.0.0.1:%d" % self.h2c.port
        st = self.h2c_get("OPTIONS", auth, "*", [("x-ask", "asterisk-h2c")])
        self.assertIsNone(st["reset"])
        self.warm_h2()
        c = tunnel_h2(self.reel, self.h2.port)
        try:
            sid = c.request("OPTIONS", "localhost:%d" % self.h2.port, "*",
                            extra=[("x-ask", "asterisk-h2")])
            c.wait(lambda: c.done(sid))
            self.assertIsNone(c.streams[sid]["reset"])
        finally:
            c.close()
        for origin, tag in ((self.h2c, "asterisk-h2c"), (self.h2, "asterisk-h2")):
            req = [r for r in origin.requests if ("x-ask", tag) in r["fields"]][0]
            self.assertEqual(req["headers"][":path"], "*")
            self.assertEqual(req["headers"][":method"], "OPTIONS")
            f = self.flow("~h %s$" % tag)
            self.assertEqual(f["request"]["target"], "*")

    def test_options_absolute_url_without_path_from_h1_client(self):
        out = raw(self.reel.port, b"OPTIONS http://%s HTTP/1.1\r\nHost: %s\r\nX-Ask: abs-h1\r\n"
                  b"Connection: close\r\n\r\n" % (self.a1.encode(), self.a1.encode()))
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        line, _ = [r for r in self.h1.requests if ("X-Ask", "abs-h1") in r[1]][0]
        self.assertEqual(line, "OPTIONS * HTTP/1.1")
        self.assertEqual(self.flow("~h abs-h1")["request"]["target"], "*")
        # a path, even "/", is a resource's: kept
        raw(self.reel.port, b"OPTIONS http://%s/ HTTP/1.1\r\nHost: %s\r\nX-Ask: slash-h1\r\n"
            b"Connection: close\r\n\r\n" % (self.a1.encode(), self.a1.encode()))
        line, _ = [r for r in self.h1.requests if ("X-Ask", "slash-h1") in r[1]][0]
        self.assertEqual(line, "OPTIONS / HTTP/1.1")


if __name__ == "__main__":
    main()
