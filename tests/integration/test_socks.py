#!/usr/bin/python3
"""SOCKS5 clients on the proxy's port (core/socks_front.c).

curl as the client (socks5h:// and socks5://, HTTP, HTTPS intercepted with
reel's CA, HTTP/2 inside), nginx as the origin, and raw sockets where curl
cannot go: a TCP server that speaks first, BIND, an unknown address type,
a malformed greeting, a client that stops or leaves in the middle. With
proxyauth the username and password (RFC 1929) are checked; a host in
ignore_hosts is answered only once its origin is connected, with the
SOCKS5 reply that says why when it cannot be.
"""
import base64
import json
import os
import socket
import struct
import tempfile
import threading
import time
import unittest

from proxyenv import TMPBASE, Origin, Reel, body, main, run, stop_class


def socks_curl(reel, *args, scheme="socks5h", auth=""):
    return run(["curl", "-sS", "--max-time", "20", "-x",
                "%s://%s127.0.0.1:%d" % (scheme, auth, reel.port), "--cacert", reel.ca] +
               list(args), check=False)


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            break
        b += d
    return b


class SocksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="socks.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        cls.reel = Reel(cls.root, "socks", "upstream_trusted_ca=" + cls.origin.ca,
                        "head_timeout=2")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def mark(self):
        """The newest flow's id so far (0: none)."""
        return max([f["id"] for f in self.reel.flows()] or [0])

    def since(self, mark, n=1, timeout=10):
        """The flows after mark, oldest first, once n of them have ended."""
        deadline = time.time() + timeout
        while True:
            fl = sorted((f for f in self.reel.flows() if f["id"] > mark), key=lambda f: f["id"])
            if (len(fl) >= n and all(f["state"] != "open" for f in fl)) or time.time() > deadline:
                return fl
            time.sleep(0.1)

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        s.settimeout(10)
        return s

    def test_curl_through_socks5(self):
        o, r = self.origin, self.reel
        for scheme, args, url, version in (
                ("socks5h", [], o.url("/100b?h"), "HTTP/1.1"),
                ("socks5", [], o.url("/100b?ip"), "HTTP/1.1"),  # curl resolves: an IPv4 address
                ("socks5h", ["--http1.1"], o.url("/text.txt?tls", https=True), "HTTP/1.1"),
                ("socks5h", ["--http2"], o.url("/text.txt?h2", https=True), "HTTP/2.0")):
            m = self.mark()
            out = socks_curl(r, *args, url, scheme=scheme)
            self.assertEqual(out.returncode, 0, (url, out.stderr))
            (f,) = self.since(m)
            self.assertEqual((f["url"], f["status"], f["state"]), (url, 200, "complete"), f)
            full = r.flow(f["id"])
            self.assertEqual(full["request"]["http_version"], version)
            self.assertEqual(body(full, "response"), out.stdout)
        # an origin that cannot be reached: reel's 502 inside, as through
        # CONNECT (SOCKS5 said success before reel knew)
        m = self.mark()
        out = socks_curl(r, "-o", "/dev/null", "-w", "%{http_code}", "http://localhost:1/x")
        self.assertEqual(out.stdout, b"502")
        (f,) = self.since(m)
        self.assertRegex(f["error"], r"^cannot connect to localhost:1 .*connection refused")

    def test_raw_tcp_tunnel(self):
        """A server that speaks first, reached by name: a TCP flow whose
        request is the SOCKS5 CONNECT and whose response is reel's success,
        with the messages each way."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def serve():
            c, _ = srv.accept()
            c.sendall(b"220 hello\r\n")
            c.sendall(b"echo: " + c.recv(100))
            c.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        m = self.mark()
        s = self.raw()
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        s.sendall(b"\x05\x01\x00\x03\x09localhost" + struct.pack("!H", port))
        self.assertEqual(recv_exact(s, 10), b"\x05\x00\x00\x01" + b"\x00" * 6)
        self.assertEqual(recv_exact(s, 11), b"220 hello\r\n")
        s.sendall(b"QUIT\r\n")
        self.assertEqual(recv_exact(s, 12), b"echo: QUIT\r\n")
        self.assertEqual(s.recv(10), b"")
        s.close()
        t.join(5)
        srv.close()
        (f,) = self.since(m)
        self.assertEqual((f["kind"], f["url"], f["state"]),
                         ("tunnel", "tcp://localhost:%d/" % port, "complete"), f)
        full = self.reel.flow(f["id"])
        self.assertEqual((full["request"]["method"], full["request"]["http_version"]),
                         ("CONNECT", "SOCKS5"))
        self.assertEqual((full["response"]["status"], full["response"]["reason"],
                          full["response"]["http_version"]), (200, "succeeded", "SOCKS5"))
        self.assertTrue(full["response"]["generated"])
        text = self.reel.cli("flow", self.reel.session, str(f["id"])).stdout.decode()
        self.assertIn("> CONNECT localhost:%d SOCKS5\n" % port, text)
        self.assertIn("< SOCKS5 200 succeeded   [sent by reel, not by the server]", text)
        self.assertEqual([(m["from_client"], base64.b64decode(m["data_b64"]))
                          for m in full["messages"]],
                         [(False, b"220 hello\r\n"), (True, b"QUIT\r\n"),
                          (False, b"echo: QUIT\r\n")])

    def refused(self, greeting, request, want_reply, error):
        """Sends greeting (answered 05 00) and request; want_reply is the
        reply, after which the connection ends; the flow's error."""
        m = self.mark()
        s = self.raw()
        s.sendall(greeting)
        if request is not None:
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            s.sendall(request)
        self.assertEqual(recv_exact(s, len(want_reply) + 1), want_reply)  # then the end
        s.close()
        (f,) = self.since(m)
        self.assertEqual((f["state"], f["status"]), ("error", None), f)
        self.assertEqual(f["error"], error)
        return f

    def test_refusals(self):
        f = self.refused(b"\x05\x01\x00", b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50",
                         b"\x05\x07\x00\x01" + b"\x00" * 6,
                         "SOCKS5 command 2 (BIND) is not supported: reel relays CONNECT only; it "
                         "answered command not supported (05 07)")
        self.assertEqual((f["method"], f["url"]), ("BIND", "tcp://127.0.0.1:80/"))
        # no HTTP request: HAR has no place for it (its URL would not
        # import back), NDJSON has it
        out = self.reel.cli("export", self.reel.session, "~m BIND")
        self.assertEqual(json.loads(out.stdout)["log"]["entries"], [])
        self.assertIn(b"skipped 1 flow: TCP tunnels, refused SOCKS5 requests", out.stderr)
        out = self.reel.cli("export", "--format", "ndjson", self.reel.session, "~m BIND")
        self.assertEqual(json.loads(out.stdout)["request"]["method"], "BIND")
        self.refused(b"\x05\x01\x00", b"\x05\x01\x00\x07\x00\x50",
                     b"\x05\x08\x00\x01" + b"\x00" * 6,
                     "a malformed SOCKS5 request (an unknown address type); reel answered "
                     "address type not supported (05 08)")
        self.refused(b"\x05\x01\x00", b"\x05\x01\x00\x03\x05a/b@c\x00\x50",
                     b"\x05\x08\x00\x01" + b"\x00" * 6,
                     "a malformed SOCKS5 request (a domain name with bytes a host name cannot "
                     "hold); reel answered address type not supported (05 08)")
        self.refused(b"\x05\x00", None, b"\x05\xff",
                     "a malformed SOCKS5 greeting (a greeting that offers no method); reel "
                     "answered that it takes none of its methods (05 FF)")
        self.refused(b"\x05\x01\x01", None, b"\x05\xff",  # GSSAPI only
                     "the SOCKS5 client offered neither no authentication nor a username and "
                     "password; reel answered that it takes none of its methods (05 FF)")

    def test_client_stops_or_leaves(self):
        # gone after its greeting
        m = self.mark()
        s = self.raw()
        s.sendall(b"\x05\x01\x00")
        self.assertEqual(recv_exact(s, 2), b"\x05\x00")
        s.sendall(b"\x05\x01\x00\x03")  # a request cut short
        time.sleep(0.2)
        s.close()
        (f,) = self.since(m)
        self.assertEqual(f["error"], "the client closed the connection during the SOCKS5 "
                                     "negotiation, before reel had its request whole")
        # silent in the middle of its greeting: head_timeout (2 s) ends it
        m = self.mark()
        s = self.raw()
        t0 = time.time()
        s.sendall(b"\x05\x02\x00")
        self.assertEqual(s.recv(10), b"")
        self.assertLess(time.time() - t0, 6)
        s.close()
        (f,) = self.since(m)
        self.assertEqual(f["error"], "the SOCKS5 negotiation did not end in time (head_timeout): "
                                     "it stopped during the SOCKS5 negotiation, before reel had "
                                     "its greeting whole")
        # an HTTP client on the same port is still an HTTP client
        m = self.mark()
        out = run(["curl", "-sS", "-x", self.reel.proxy, self.origin.url("/100b?http")])
        self.assertEqual(len(out.stdout), 100)
        (f,) = self.since(m)
        self.assertEqual((f["url"], f["status"]), (self.origin.url("/100b?http"), 200))


class SocksAuthTest(unittest.TestCase):
    """proxyauth: SOCKS5 clients must give the same user and password
    (RFC 1929); hosts in ignore_hosts are relayed unrecorded, answered once
    connected."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="socks-auth.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "sauth", "proxyauth=ann:s3cret", "ignore_hosts=^localhost:")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_password(self):
        r, o = self.reel, self.origin
        out = socks_curl(r, o.url("/100b?good"), auth="ann:s3cret@")
        self.assertEqual((out.returncode, len(out.stdout)), (0, 100), out.stderr)
        out = socks_curl(r, o.url("/100b?bad"), auth="ann:wrong@")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"User was rejected by the SOCKS5 server", out.stderr)
        out = socks_curl(r, o.url("/100b?none"))
        self.assertIn(b"No authentication method was acceptable", out.stderr)
        flows = sorted(r.wait_flows(3), key=lambda f: f["id"])
        self.assertEqual((flows[0]["url"], flows[0]["status"]), (o.url("/100b?good"), 200))
        self.assertEqual(flows[1]["error"],
                         "proxy authentication failed: the SOCKS5 client's username and password "
                         "are not proxyauth's; reel answered failure (01 01)")
        self.assertEqual(flows[2]["error"],
                         "proxy authentication required: the SOCKS5 client did not offer a "
                         "username and password (RFC 1929), which proxyauth asks for; reel "
                         "answered that it takes none of its methods (05 FF)")

    def test_ignored_host(self):
        """Answered after the connect: success and the bytes relayed, or
        the reply that names the failure; nothing recorded."""
        r = self.reel
        before = len(r.flows())
        out = socks_curl(r, "http://localhost:%d/100b" % self.origin.http_port,
                         auth="ann:s3cret@")
        self.assertEqual((out.returncode, len(out.stdout)), (0, 100), out.stderr)
        out = socks_curl(r, "http://localhost:1/", auth="ann:s3cret@")
        self.assertIn(b"(5)", out.stderr)  # connection refused
        self.assertIn(b"Can't complete SOCKS5 connection", out.stderr)
        time.sleep(0.5)
        self.assertEqual(len(r.flows()), before)


if __name__ == "__main__":
    main()
