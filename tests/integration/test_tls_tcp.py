"""TLS carrying something other than HTTP inside a CONNECT tunnel (MQTT over
TLS, IMAPS, a custom protocol) is relayed over TLS on both legs and recorded
as a tunnel flow (scheme tls) of TCP messages, as mitmproxy does; before,
reel intercepted it as HTTPS and answered its first bytes 400. Origins are
Python ssl servers with a certificate from a private CA that reel is told
to trust (upstream_trusted_ca); clients are Python ssl sockets trusting
reel's CA."""
import base64
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxyenv  # noqa: E402
from proxyenv import TMPBASE, Reel, connect, main, run  # noqa: E402

SRC = os.environ.get("REEL_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def wait_until(pred, timeout=5.0):
    """Polls pred until it holds or timeout passes (what a thread or reel's
    timer does under a loaded host may come late)."""
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)


def read_until(s, marker, limit=1 << 20):
    out = b""
    while marker not in out and len(out) < limit:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out


def messages(flow, from_client):
    """The bytes of a TCP flow's messages in one direction, joined."""
    return b"".join(base64.b64decode(m["data_b64"]) for m in flow["messages"] or []
                    if m["from_client"] == from_client)


def certs(root):
    """A CA and a leaf for localhost/127.0.0.1 signed by it, plus a
    self-signed leaf nobody trusts: (ca, (cert, key), (cert, key))."""
    ca = root + "/ca.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509"] + ec + ["-keyout", root + "/ca.key", "-out", ca, "-days", "2",
        "-subj", "/CN=reel tls-tcp test CA", "-addext", "basicConstraints=critical,CA:TRUE"])
    run(["openssl", "req"] + ec + ["-keyout", root + "/leaf.key", "-out", root + "/leaf.csr",
        "-subj", "/CN=localhost"])
    with open(root + "/ext.cnf", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "x509", "-req", "-in", root + "/leaf.csr", "-CA", ca, "-CAkey", root + "/ca.key",
         "-CAcreateserial", "-out", root + "/leaf.pem", "-days", "2", "-extfile", root + "/ext.cnf"])
    run(["openssl", "req", "-x509"] + ec + ["-keyout", root + "/self.key", "-out", root + "/self.pem",
        "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
    return ca, (root + "/leaf.pem", root + "/leaf.key"), (root + "/self.pem", root + "/self.key")


class Origin:
    """A TLS server on 127.0.0.1 for one connection (or conns, one after
    the other), in a thread: serve(conn) speaks the protocol; what the
    handshake chose is kept."""

    def __init__(self, cert, serve, alpn=None, conns=1):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(15)
        self.port = self.srv.getsockname()[1]
        self.alpn = self.error = None
        self.got = b""

        def run_once():
            for _ in range(conns):
                try:
                    raw, _ = self.srv.accept()
                    raw.settimeout(15)
                    with ctx.wrap_socket(raw, server_side=True) as c:
                        self.alpn = c.selected_alpn_protocol()
                        serve(self, c)
                except (OSError, ssl.SSLError) as e:
                    self.error = e

        self.thread = threading.Thread(target=run_once)
        self.thread.start()

    def join(self):
        self.thread.join(20)
        self.srv.close()


def echo(o, c):
    """Echoes what it reads, prefixed, until the client closes."""
    while True:
        d = c.recv(65536)
        if not d:
            return
        o.got += d
        c.sendall(b"echo:" + d)


def greeter(o, c):
    """Speaks first (as IMAP does), answers one line and closes."""
    c.sendall(b"* OK reel-test IMAP4rev1 ready\r\n")
    o.got = read_until(c, b"\r\n")
    c.sendall(b"* BYE logging out\r\n")
    c.unwrap()


class SelfSignedNginx(proxyenv.Origin):
    """proxyenv's nginx origin with a self-signed certificate for
    localhost (no CA): one no verifier trusts."""

    def _certs(self):
        r = self.root
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", r + "/server.key", "-out", r + "/server.pem", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        self.ca = r + "/server.pem"


def check_refused_conn(test, full, port):
    """The flow's ServerConn for a connection whose origin certificate (a
    self-signed one for localhost) failed the check."""
    sc = full["server_conn"]
    test.assertIsNotNone(sc, full)
    test.assertEqual(sc["address"], "127.0.0.1:%d" % port, sc)
    test.assertEqual(sc["sni"], "localhost", sc)
    test.assertTrue(sc["tls_version"] and sc["tls_version"].startswith("TLSv1."), sc)
    test.assertTrue(sc["cipher"], sc)
    test.assertFalse(sc["unverified"], sc)  # it was checked: it failed
    test.assertIn("self", sc["verify_error"] or "", sc)  # "self-signed certificate"
    test.assertTrue((sc["peer_cert"] or "").startswith("certificate for localhost"), sc)
    test.assertIn(", by localhost, valid ", sc["peer_cert"], sc)


class KeepAliveOrigin:
    """An HTTPS origin on 127.0.0.1 that answers every request on every
    connection with "ok" (Content-Length), counting the connections and
    noting the SNI each handshake carried."""

    def __init__(self, cert):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*cert)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.snis = []
        self.ctx.sni_callback = lambda sock, name, ctx: self.snis.append(name)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                raw, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw):
        try:
            raw.settimeout(15)
            with self.ctx.wrap_socket(raw, server_side=True) as c:
                while read_until(c, b"\r\n\r\n"):
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.srv.close()


class TlsTcpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="tlstcp.", dir=TMPBASE)
        cls.ca, cls.leaf, cls.selfsigned = certs(cls.root)
        cls.reel = Reel(cls.root, "main", "upstream_trusted_ca=" + cls.ca)

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def tunnel(self, port, alpn=None, version=b"HTTP/1.1", fields=b"", trusted=True,
               host=b"localhost", ragged=True):
        """CONNECT host:port through reel (more field lines: fields),
        then TLS to reel's certificate for host (no SNI to an address; offering alpn;
        trusting reel's CA unless not trusted; ragged False: a close
        without close_notify raises SSLEOFError)."""
        s = connect(self.reel.port)
        s.settimeout(15)
        s.sendall(b"CONNECT %s:%d %s\r\nHost: %s:%d\r\n%s\r\n" % (
            host, port, version, host, port, fields))
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        ctx = ssl.create_default_context(cafile=self.reel.ca if trusted else None)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if not ragged:  # (python3 sets it in its default context)
            ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        return ctx.wrap_socket(s, server_hostname=host.decode(), suppress_ragged_eofs=ragged)

    def flow(self, port):
        """The one flow to localhost:port, ended, in full."""
        fl = self.reel.wait_flows(1, "~u localhost:%d" % port, timeout=10)
        self.assertEqual(len(fl), 1, fl)
        self.assertNotEqual(fl[0]["state"], "open", fl)
        return fl[0], self.reel.flow(fl[0]["id"])

    def ended_tcp_flows(self, port):
        """The tcp:// flows to localhost:port once the first has ended (one
        expected)."""
        fl = self.reel.wait_flows(1, "~u tcp://localhost:%d" % port, timeout=10)
        deadline = time.time() + 10
        while fl and fl[0]["state"] == "open" and time.time() < deadline:
            time.sleep(0.1)
            fl = self.reel.wait_flows(1, "~u tcp://localhost:%d" % port, timeout=10)
        self.assertEqual(len(fl), 1, fl)
        return fl

    def check_tls_flow(self, port, row, full, alpn=None):
        self.assertEqual(row["kind"], "tunnel", row)
        self.assertEqual(row["url"], "tls://localhost:%d/" % port, row)
        self.assertIsNone(row.get("error"), row)
        sc = full["server_conn"]
        self.assertTrue(sc and sc["tls_version"], full)
        self.assertEqual(sc["sni"], "localhost")
        self.assertEqual(sc["alpn"], alpn)
        # the client's side of it, with reel, too (for a mirrored ALPN, in
        # the end record: its handshake came after the flow began)
        ct = full["client_tls"]
        self.assertTrue(ct and ct["tls_version"], full)
        self.assertEqual((ct["sni"], ct["alpn"]), ("localhost", alpn), ct)
        self.assertTrue(all(m["type"] == "tcp" for m in full["messages"]), full["messages"])

    def test_alpn_other_mirrored(self):
        """MQTT-like: the client offers only a protocol that is not HTTP; the
        origin is offered the same and its choice reaches the client."""
        o = Origin(self.leaf, echo, alpn=["x-echo", "other"])
        c = self.tunnel(o.port, alpn=["x-echo"])
        self.assertEqual(c.selected_alpn_protocol(), "x-echo")
        c.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")
        self.assertEqual(read_until(c, b"\x3c"), b"echo:\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c")
        c.sendall(b"second")
        self.assertEqual(read_until(c, b"second"), b"echo:second")
        c.close()
        o.join()
        self.assertIsNone(o.error)
        self.assertEqual(o.alpn, "x-echo")
        row, full = self.flow(o.port)
        self.check_tls_flow(o.port, row, full, alpn="x-echo")
        # the client's TLS came in the flow's end record: a reader of the
        # spool that follows docs/format.md finds it there too
        script = os.path.join(SRC, "docs", "examples", "read_spool.py")
        got = json.loads(subprocess.run(
            ["/usr/bin/python3", script, os.path.join(self.reel.env["REEL_HOME"], "main"),
             "--flow", str(row["id"]), "--json"], check=True, capture_output=True,
            timeout=60).stdout)
        self.assertEqual(got["client_tls"], full["client_tls"])
        text = self.reel.cli("flow", "main", str(row["id"])).stdout.decode()
        self.assertRegex(text, r"~ client TLS: TLSv1\.\d \S+, ALPN x-echo, SNI localhost")
        self.assertEqual(messages(full, True), b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3csecond")
        self.assertEqual(messages(full, False), b"echo:\x10\x0c\x00\x04MQTT\x04\x02\x00\x3cecho:second")

    def test_no_alpn_first_bytes(self):
        """No ALPN: the first bytes inside TLS are not HTTP, so the tunnel
        is relayed (the origin is offered no ALPN either)."""
        o = Origin(self.leaf, echo, alpn=["x-echo"])
        c = self.tunnel(o.port)
        self.assertIsNone(c.selected_alpn_protocol())
        c.sendall(b"\x00\x01hello over tls")
        self.assertEqual(read_until(c, b"tls"), b"echo:\x00\x01hello over tls")
        c.close()
        o.join()
        self.assertIsNone(o.error)
        self.assertIsNone(o.alpn)
        row, full = self.flow(o.port)
        self.check_tls_flow(o.port, row, full)
        self.assertEqual(messages(full, True), b"\x00\x01hello over tls")
        self.assertEqual(messages(full, False), b"echo:\x00\x01hello over tls")

    def test_connect_fields_are_the_flows(self):
        """The TLS tunnel's flow is the CONNECT as the client sent it: its
        version and fields (it had "HTTP/1.1" and none); so is the flow of
        a CONNECT whose client then refused reel's certificate."""
        fields = (b"User-Agent: tls-tcp-test/2\r\n"
                  b"Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n")
        for version in (b"HTTP/1.1", b"HTTP/1.0"):
            o = Origin(self.leaf, echo)
            c = self.tunnel(o.port, version=version, fields=fields)
            c.sendall(b"\x00\x01fields")
            self.assertEqual(read_until(c, b"fields"), b"echo:\x00\x01fields")
            c.close()
            o.join()
            row, full = self.flow(o.port)
            self.check_tls_flow(o.port, row, full)
            rq = full["request"]
            self.assertEqual(rq["method"], "CONNECT", rq)
            self.assertEqual(rq["http_version"], version.decode(), rq)
            self.assertEqual([tuple(h) for h in rq["headers"]],
                             [("Host", "localhost:%d" % o.port), ("User-Agent", "tls-tcp-test/2"),
                              ("Proxy-Authorization", "Basic dXNlcjpzZWNyZXQ=")], rq)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens: the client's handshake fails before reel connects
        with self.assertRaises(ssl.SSLError):
            self.tunnel(port, version=b"HTTP/1.0", fields=fields, trusted=False)
        row, full = self.flow(port)
        self.assertIn("client TLS handshake failed", row["error"] or "", row)
        # the client refused reel's certificate: the hint, once
        self.assertEqual(row["error"].count("does the client trust the reel CA?"), 1, row)
        self.assertEqual(full["request"]["http_version"], "HTTP/1.0", full["request"])
        self.assertIn(["User-Agent", "tls-tcp-test/2"], full["request"]["headers"], full)

    def test_server_speaks_first(self):
        """IMAPS-like: the client says nothing until it has the greeting,
        which the origin sends once reel has connected to it, 0.5 s after
        the client's handshake with reel (it used to wait 3 s for the
        client before it connected)."""
        o = Origin(self.leaf, greeter)
        t0 = int(time.time() * 1e6)
        c = self.tunnel(o.port)
        shaken = time.monotonic()
        self.assertEqual(read_until(c, b"\r\n"), b"* OK reel-test IMAP4rev1 ready\r\n")
        self.assertLess(time.monotonic() - shaken, 2.8)  # not the 3 s wait for a silent client
        c.sendall(b"a1 LOGOUT\r\n")
        self.assertEqual(read_until(c, b"out\r\n"), b"* BYE logging out\r\n")
        self.assertEqual(c.recv(100), b"")  # the origin's close_notify, passed on
        c.close()
        o.join()
        self.assertIsNone(o.error)
        self.assertEqual(o.got, b"a1 LOGOUT\r\n")
        row, full = self.flow(o.port)
        self.check_tls_flow(o.port, row, full)
        self.assertEqual(messages(full, True), b"a1 LOGOUT\r\n")
        self.assertEqual(messages(full, False),
                         b"* OK reel-test IMAP4rev1 ready\r\n* BYE logging out\r\n")
        self.check_started_at_connect(full, t0)

    def test_https_after_the_origin_was_connected_early(self):
        """A client offering no ALPN that waits 1 s after its handshake
        before its request: reel has connected to the origin meanwhile
        (TLS, to hear a server that speaks first), and the request goes on
        that connection, the origin seeing one."""
        full = self.https_after_silence(1.0, b"/late")
        sc = full["server_conn"]
        self.assertTrue(sc and sc["tls_version"] and sc["sni"] == "localhost", full)

    def test_https_after_a_long_silence(self):
        """The same after 3.3 s: the origin, connected to early, said
        nothing either, so no clock decides for the client; its request
        is HTTPS (it used to be relayed as a TLS tunnel after 3 s, the
        request unparsed)."""
        self.https_after_silence(3.3, b"/later")

    def https_after_silence(self, secs, path):
        """A client offering no ALPN, silent for secs after its handshake,
        then GET path: 200 over one connection to the origin (the early
        one), an https flow and no tls:// one; that flow in full."""
        o = KeepAliveOrigin(self.leaf)
        try:
            c = self.tunnel(o.port)
            time.sleep(secs)
            wait_until(lambda: o.connections == 1)  # the early connect (at 0.5 s)
            self.assertEqual(o.connections, 1)
            c.sendall(b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n"
                      % (path, o.port))
            resp = read_until(c, b"ok")
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            c.close()
        finally:
            o.close()
        self.assertEqual(o.connections, 1)
        fl = self.reel.wait_flows(1, "~u https://localhost:%d%s" % (o.port, path.decode()),
                                  timeout=10)
        self.assertEqual(len(fl), 1, self.reel.flows())
        self.assertEqual(fl[0]["status"], 200, fl)
        self.assertEqual(self.reel.flows("~u tls://localhost:%d" % o.port), [])
        return self.reel.flow(fl[0]["id"])

    def check_started_at_connect(self, full, t0, waited_us=450000):
        """The tunnel's flow, begun once reel heard the origin first (it
        connects to it once the client has said nothing for 0.5 s), starts
        when its CONNECT came (its 200 is recorded at the time reel sent
        it); its duration holds the wait (it used to start late)."""
        self.assertGreaterEqual(full["start_us"], t0, full)
        self.assertLess(full["start_us"] - t0, 1000000, full)
        self.assertGreaterEqual(full["end_us"] - full["start_us"], waited_us, full)
        self.assertTrue(full["response"]["generated"], full)

    def test_plain_server_speaks_first(self):
        """The same without TLS: a raw TCP tunnel whose server greets. reel
        connects to the origin once the client has said nothing for 0.5 s,
        and its greeting makes the tunnel a raw one at once; it used to
        wait 3 s for the client before it connected at all."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        t0 = int(time.time() * 1e6)
        s = connect(self.reel.port)
        s.settimeout(15)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        answered = time.monotonic()
        o, _ = srv.accept()  # once the client has been silent for 0.5 s
        accepted = time.monotonic() - answered
        o.sendall(b"220 greeting\r\n")
        self.assertEqual(read_until(s, b"\r\n"), b"220 greeting\r\n")
        greeted = time.monotonic() - answered
        self.assertGreater(accepted, 0.4)
        self.assertLess(greeted, 2.8)  # not the 3 s wait for a silent client
        s.close()
        o.close()
        srv.close()
        fl = self.ended_tcp_flows(port)
        full = self.reel.flow(fl[0]["id"])
        self.assertEqual(full["kind"], "tunnel", full)
        self.assertEqual(full["state"], "complete", full)
        self.assertEqual(messages(full, False), b"220 greeting\r\n")
        self.check_started_at_connect(full, t0)

    def test_messages_cut_by_body_limit_are_no_damage(self):
        """TCP messages body_limit cut: `reel verify` took the bytes not
        stored for a hole in the flow's record (exit 1), and `reel repair`
        changed nothing, so verify failed for ever."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        reel = Reel(self.root, "cut", "body_limit=10")
        try:
            s = connect(reel.port)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
            self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
            s.sendall(b"\x00" + b"a" * 99)
            o, _ = srv.accept()
            o.settimeout(15)
            got = b""
            while len(got) < 100:
                got += o.recv(1000)
            o.sendall(got)
            self.assertEqual(len(read_until(s, b"a" * 99)), 100)
            s.close()
            o.close()
            fl = reel.wait_flows(1, "~tcp", timeout=10)
            self.assertEqual([(f["state"], f["request_body_size"]) for f in fl],
                             [("complete", 100)], fl)
            msgs = reel.flow(fl[0]["id"])["messages"]
            self.assertTrue(all(m["truncated"] and m["length"] == 100 for m in msgs), msgs)
        finally:
            srv.close()
            self.assertEqual(reel.stop(), 0, reel.log())
        v = reel.cli("verify", "cut", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_origin_that_resets_after_its_end_is_named(self):
        """The origin answers, closes with the client's bytes unread (its
        kernel resets), and the client sends on: a write met the reset,
        and the flow said only "broken pipe", naming no side."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        s = connect(self.reel.port)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"\x00start")
        o, _ = srv.accept()
        o.settimeout(15)
        o.recv(100)
        o.sendall(b"bye")
        self.assertEqual(read_until(s, b"bye"), b"bye")
        o.close()
        srv.close()
        try:
            for i in range(10):
                time.sleep(0.1)
                s.sendall(b"more %d" % i)
        except OSError:
            pass
        s.close()
        fl = self.reel.wait_flows(1, "~u tcp://localhost:%d" % port, timeout=10)
        self.assertEqual(len(fl), 1, fl)
        self.assertEqual(fl[0]["state"], "error", fl)
        self.assertTrue(fl[0]["error"].startswith("the connection to the origin failed: "), fl)

    def test_plain_tunnel_origin_reset_is_the_flows_error(self):
        """A raw TCP tunnel whose origin resets its connection: the flow
        ends with that error (it used to end complete, as after a FIN) and
        the client is cut rather than half-closed."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        s = connect(self.reel.port)
        s.settimeout(15)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"\x00\x01not http")
        o, _ = srv.accept()
        self.assertEqual(o.recv(100), b"\x00\x01not http")
        o.sendall(b"\x00answer")
        self.assertEqual(read_until(s, b"answer"), b"\x00answer")
        o.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        o.close()  # RST
        try:
            self.assertEqual(s.recv(100), b"")  # cut, without waiting for the client
        except ConnectionResetError:
            pass
        s.close()
        srv.close()
        fl = self.reel.wait_flows(1, "~u tcp://localhost:%d" % port, timeout=10)
        self.assertEqual([f["state"] for f in fl], ["error"], fl)
        self.assertEqual(fl[0]["error"], "the connection to the origin failed: connection reset "
                         "by peer")

    def test_untrusted_origin(self):
        """The origin's certificate is verified as for HTTPS: one reel does
        not trust ends the tunnel, and the flow says why."""
        o = Origin(self.selfsigned, echo)
        c = self.tunnel(o.port)
        c.sendall(b"\x00\x01not for you")
        try:
            self.assertEqual(c.recv(100), b"")
        except (ConnectionResetError, ssl.SSLError):
            pass
        c.close()
        o.join()
        row, _ = self.flow(o.port)
        self.assertEqual(row["kind"], "tunnel", row)
        self.assertEqual(row["url"], "tls://localhost:%d/" % o.port, row)
        self.assertIn("certificate verify failed", row["error"] or "", row)
        self.assertEqual(o.got, b"")
        check_refused_conn(self, self.reel.flow(row["id"]), o.port)

    def test_untrusted_origin_while_the_client_is_silent(self):
        """The same when the client says nothing after its handshake: the
        early connect to the origin (0.5 s) fails its check and is closed,
        forgotten; the client's silence for 3 s makes a TLS tunnel, whose
        own connect meets the certificate again: the flow says why, with
        the connection."""
        o = Origin(self.selfsigned, echo, conns=2)  # the early connect, then its own
        c = self.tunnel(o.port)
        t0 = time.monotonic()
        try:
            self.assertEqual(c.recv(100), b"")
        except (ConnectionResetError, ssl.SSLError):
            pass
        # the 3 s wait for a silent client, not the early connect's failure
        self.assertGreater(time.monotonic() - t0, 2.5)
        c.close()
        o.join()
        row, _ = self.flow(o.port)
        self.assertEqual(row["url"], "tls://localhost:%d/" % o.port, row)
        self.assertIn("certificate verify failed", row["error"] or "", row)
        self.assertEqual(o.got, b"")
        check_refused_conn(self, self.reel.flow(row["id"]), o.port)

    def test_request_after_the_early_connect_was_refused_a_certificate(self):
        """A client offering no ALPN, silent for 1 s after its handshake,
        to an origin whose certificate reel does not trust: the early
        connect fails its check at 0.5 s, and that does not end the
        tunnel. The client's request then gets reel's 502 saying why, an
        https flow recording the refused connection (before, the client
        was cut at 0.5 s, with no answer)."""
        o = Origin(self.selfsigned, echo, conns=2)  # the early connect, then its own
        c = self.tunnel(o.port)
        time.sleep(1.0)
        c.sendall(b"GET /late HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n"
                  % o.port)
        resp = read_until(c, b"never")
        self.assertTrue(resp.startswith(b"HTTP/1.1 502"), resp)
        self.assertIn(b"certificate verify failed", resp)
        c.close()
        fl = self.reel.wait_flows(1, "~u https://localhost:%d/late" % o.port, timeout=10)
        self.assertEqual(len(fl), 1, self.reel.flows())
        self.assertEqual(fl[0]["status"], 502, fl)
        self.assertIn("certificate verify failed", fl[0]["error"] or "", fl)
        self.assertEqual(self.reel.flows("~u tls://localhost:%d" % o.port), [])
        check_refused_conn(self, self.reel.flow(fl[0]["id"]), o.port)
        self.assertEqual(o.got, b"")

    def test_untrusted_https_origin_connection_is_recorded(self):
        """An HTTPS request to an nginx origin whose self-signed certificate
        fails the check: a 502, and the flow's ServerConn tells what reel
        reached and saw, as reel flow shows it."""
        nginx = SelfSignedNginx(tempfile.mkdtemp(prefix="nginx.", dir=self.root))
        try:
            url = nginx.url("/100b", https=True)
            r = run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert",
                     self.reel.ca, "-o", "/dev/null", "-w", "%{http_code}", url])
            self.assertEqual(r.stdout, b"502")
            row, full = self.flow(nginx.https_port)
            self.assertEqual(row["status"], 502, row)
            self.assertIn("certificate verify failed", row["error"] or "", row)
            check_refused_conn(self, full, nginx.https_port)
            text = self.reel.cli("flow", "main", str(row["id"])).stdout.decode()
            self.assertIn("~ certificate verify FAILED: self", text)
            self.assertIn("certificate for localhost", text)
        finally:
            nginx.stop()

    def test_alpn_other_origin_down(self):
        """ALPN mirrored toward an origin that cannot be reached: the
        client's handshake is not answered (there is no protocol to give
        it), and the flow says why."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with self.assertRaises((ssl.SSLError, OSError)):
            self.tunnel(port, alpn=["mqtt"])
        row, full = self.flow(port)
        self.assertEqual(row["kind"], "tunnel", row)
        self.assertEqual(row["url"], "tls://localhost:%d/" % port, row)
        self.assertIn("refused", row["error"] or "", row)
        self.assertIsNone(full["server_conn"], full)

    def test_in_http2_connect_stream(self):
        """An HTTP/2 client's CONNECT stream (RFC 9113 8.5) carrying TLS
        that is not HTTP is a TLS tunnel too, recorded on its stream."""
        from test_http2 import H2C, StreamTLS, hdr  # python3-h2, as test_http2 uses
        o = Origin(self.leaf, echo, alpn=["x-echo"])
        c = H2C(self.reel.port, validate=False)
        try:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "localhost:%d" % o.port),
                                      ("user-agent", "h2-tunnel-test/1")])
            c.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                              "reset": None, "ended": False}
            c.flush()
            c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            st = StreamTLS(c, sid, self.reel.ca, ["x-echo"])
            st.run(st.tls.do_handshake)
            self.assertEqual(st.tls.selected_alpn_protocol(), "x-echo")
            st.tls.write(b"\x00lane bytes")
            got = b""
            while b"lane bytes" not in got:
                st.pump()
                got += st.run(lambda: st.tls.read(65536))
            self.assertEqual(got, b"echo:\x00lane bytes")
            c.conn.end_stream(sid)  # the client's end of the tunnel
            c.flush()
            c.wait(lambda: c.done(sid))
        finally:
            c.close()
        o.join()
        row, full = self.flow(o.port)
        self.check_tls_flow(o.port, row, full, alpn="x-echo")
        self.assertEqual(row["stream_id"], sid, row)
        # the CONNECT as the client sent it: HTTP/2.0, its fields
        self.assertEqual(full["request"]["http_version"], "HTTP/2.0", full["request"])
        self.assertEqual([tuple(h) for h in full["request"]["headers"]],
                         [("user-agent", "h2-tunnel-test/1")], full["request"])
        self.assertEqual(messages(full, True), b"\x00lane bytes")
        self.assertEqual(messages(full, False), b"echo:\x00lane bytes")

    def test_server_speaks_first_in_http2_connect_stream(self):
        """The early connect in an HTTP/2 client's CONNECT stream: a server
        that greets is heard about 0.5 s after the stream's 200 (not 3 s),
        and the tunnel is a tcp:// flow on that stream."""
        from test_http2 import H2C, hdr  # python3-h2, as test_http2 uses
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        greeted = threading.Event()

        def greet():
            try:
                o, _ = srv.accept()
            except OSError:
                return
            o.sendall(b"220 greeting\r\n")
            greeted.wait(15)
            o.close()
        threading.Thread(target=greet, daemon=True).start()
        c = H2C(self.reel.port, validate=False)
        try:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "localhost:%d" % port)])
            c.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                              "reset": None, "ended": False}
            c.flush()
            c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            t0 = time.monotonic()
            c.wait(lambda: b"\r\n" in c.streams[sid]["data"] or c.done(sid))
            took = time.monotonic() - t0
            self.assertEqual(c.streams[sid]["data"], b"220 greeting\r\n")
            self.assertLess(took, 2.8)  # not the 3 s wait for a silent client
            greeted.set()
            c.wait(lambda: c.done(sid))  # the origin's close ends the stream
        finally:
            greeted.set()
            c.close()
            srv.close()
        fl = self.ended_tcp_flows(port)
        self.assertEqual(fl[0]["stream_id"], sid, fl)
        full = self.reel.flow(fl[0]["id"])
        self.assertEqual(full["request"]["http_version"], "HTTP/2.0", full["request"])
        self.assertEqual(messages(full, False), b"220 greeting\r\n")

    def test_hello_after_silence_in_http2_connect_stream(self):
        """An HTTP/2 client's CONNECT stream whose ClientHello comes 1 s
        after the stream's 200: reel connected to the origin at 0.5 s, and
        its own TLS to the origin goes on that connection (one connection
        at the origin), the request an https flow."""
        from test_http2 import H2C, StreamTLS, hdr  # python3-h2, as test_http2 uses
        o = KeepAliveOrigin(self.leaf)
        c = H2C(self.reel.port, validate=False)
        try:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "localhost:%d" % o.port)])
            c.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                              "reset": None, "ended": False}
            c.flush()
            c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            time.sleep(1.0)
            wait_until(lambda: o.connections == 1)  # the early connect (at 0.5 s)
            self.assertEqual(o.connections, 1)
            st = StreamTLS(c, sid, self.reel.ca, ["http/1.1"])
            st.run(st.tls.do_handshake)
            st.tls.write(b"GET /lane-late HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % o.port)
            st.pump()
            got = b""
            while not got.endswith(b"ok"):
                got += st.run(lambda: st.tls.read(65536))
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
            c.conn.end_stream(sid)
            c.flush()
            c.wait(lambda: c.done(sid))
        finally:
            c.close()
            o.close()
        fl = self.reel.wait_flows(1, "~u https://localhost:%d/lane-late" % o.port, timeout=10)
        self.assertEqual([f["status"] for f in fl], [200], self.reel.flows())
        self.assertEqual(fl[0]["stream_id"], sid, fl)  # the CONNECT stream it came on
        self.assertEqual(self.reel.flows("~u tcp://localhost:%d" % o.port), [])
        self.assertEqual(o.connections, 1)

    def test_https_without_alpn_is_http(self):
        """What HTTPS does is unchanged: a client offering no ALPN whose
        first bytes are an HTTP request is served as HTTP, also when they
        start it and stall past the 3 s that tell silence from HTTP."""
        def http_origin(o, c):
            o.got = read_until(c, b"\r\n\r\n")
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            c.unwrap()

        o = Origin(self.leaf, http_origin, alpn=["http/1.1"])
        c = self.tunnel(o.port, fields=b"User-Agent: connect-only\r\n")
        c.sendall(b"GE")
        time.sleep(3.5)
        c.sendall(b"T /plain?noalpn HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n" % o.port)
        got = read_until(c, b"ok")
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        c.close()
        o.join()
        self.assertTrue(o.got.startswith(b"GET /plain?noalpn HTTP/1.1"), o.got)
        row, _ = self.flow(o.port)
        self.assertEqual(row["kind"], "http", row)
        self.assertEqual(row["url"], "https://localhost:%d/plain?noalpn" % o.port, row)
        self.assertEqual(row["status"], 200, row)
        # the CONNECT's fields are not the inner request's (README: an
        # intercepted CONNECT is recorded nowhere)
        full = self.reel.flow(row["id"])
        self.assertNotIn(["User-Agent", "connect-only"], full["request"]["headers"], full)

    # ---- HTTPS through a CONNECT as browsers and wget send it ----

    def test_client_end_of_an_intercepted_upgrade_reaches_the_origin(self):
        """A client that leaves an upgraded connection (Upgrade: foo, or a
        WebSocket) inside an intercepted CONNECT: its end goes on to the
        origin as a close_notify, and the flow ends. Before, reel kept the
        origin connection and the flow open until idle_timeout (for a
        WebSocket, until the origin next spoke)."""
        for clean in (False, True):
            def upgrade(o, c):
                o.got = read_until(c, b"\r\n\r\n")
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                          b"Upgrade: foo\r\n\r\n")
                while True:
                    d = c.recv(65536)
                    if not d:
                        o.eof_at = time.time()
                        return
                    c.sendall(b"echo:" + d)

            o = Origin(self.leaf, upgrade, alpn=["http/1.1"])
            o.eof_at = None
            c = self.tunnel(o.port, alpn=["http/1.1"])
            c.sendall(b"GET /upgrade-end?%d HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                      b"Upgrade: foo\r\n\r\n" % clean)
            self.assertTrue(read_until(c, b"\r\n\r\n").startswith(b"HTTP/1.1 101"))
            c.sendall(b"hi")
            self.assertEqual(read_until(c, b"echo:hi"), b"echo:hi")
            left = time.time()
            if clean:
                c.unwrap()  # its close_notify, then the close
            c.close()
            o.join()
            self.assertIsNotNone(o.eof_at, "the origin never saw the client's end")
            self.assertLess(o.eof_at - left, 5)
            fl = self.reel.wait_flows(1, "~u 'upgrade-end.%d'" % clean, timeout=10)
            deadline = time.time() + 5
            while fl[0]["state"] == "open" and time.time() < deadline:
                time.sleep(0.1)
                fl = self.reel.wait_flows(1, "~u 'upgrade-end.%d'" % clean, timeout=10)
            self.assertNotEqual(fl[0]["state"], "open", fl)

    def get(self, c, path, host=b"localhost"):
        c.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))
        got = read_until(c, b"ok")
        self.assertTrue(got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok"), got)

    def test_requests_of_a_tunnel_share_the_origin_connection(self):
        """Requests on one kept-alive tunnel to a host name go over one
        origin connection, as they do to an IP address: a tunnel's SNI
        that names its own host did not match the connection's, so each
        request paid a new TCP and TLS handshake."""
        o = KeepAliveOrigin(self.leaf)
        try:
            for host in (b"localhost", b"127.0.0.1"):
                before = o.connections
                c = self.tunnel(o.port, alpn=["http/1.1"], host=host)
                for i in range(3):
                    self.get(c, b"/keep?%s-%d" % (host, i), host)
                c.close()
                self.assertEqual(o.connections - before, 1, host)
                fl = self.reel.wait_flows(3, "~u 'keep.%s'" % host.decode(), timeout=10)
                scs = [self.reel.flow(f["id"])["server_conn"] for f in fl]
                self.assertEqual(len({sc["conn_id"] for sc in scs}), 1, scs)
                self.assertEqual([sc["reused"] for sc in scs], [False, True, True], scs)
                # the SNI recorded is the one sent: none to an IP address
                # (RFC 6066 3), where reel recorded the address as SNI
                self.assertEqual(scs[0]["sni"], "localhost" if host == b"localhost" else None, scs)
            self.assertEqual(o.snis, ["localhost", None])
        finally:
            o.close()

    def test_close_delimited_body_ends_with_close_notify(self):
        """A body delimited by the close, and a response with Connection:
        close, end with reel's close_notify before its close (RFC 8446
        6.1): without it wget reported "The TLS connection was
        non-properly terminated" and retried, as for a cut body."""
        for close_delimited in (True, False):
            def origin(o, c):
                read_until(c, b"\r\n\r\n")
                if close_delimited:
                    c.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 5000)
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close"
                              b"\r\n\r\nbody")
                c.unwrap()

            o = Origin(self.leaf, origin, alpn=["http/1.1"])
            c = self.tunnel(o.port, alpn=["http/1.1"], ragged=False)
            c.sendall(b"GET /notify HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            while True:
                d = c.recv(65536)  # SSLEOFError for a close without close_notify
                if not d:
                    break
                got += d
            c.close()
            o.join()
            self.assertTrue(got.endswith(b"x" * 5000 if close_delimited else b"body"), got[-50:])


class SilentOrigin:
    """A TCP listener on 127.0.0.1 that accepts and never says anything
    (holding what it accepted until closed): accepted counts them."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.held = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.held.append(c)

    def close(self):
        self.srv.close()
        for c in self.held:
            c.close()


class SlowClientTest(unittest.TestCase):
    """Clients slow to send their ClientHello, and an origin that says
    nothing to the ALPN probe, with short timeouts (head_timeout 5 s,
    upstream_timeout 2 s)."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="slowhello.", dir=TMPBASE)
        cls.ca, cls.leaf, _ = certs(cls.root)
        cls.reel = Reel(cls.root, "main", "upstream_trusted_ca=" + cls.ca, "head_timeout=5",
                        "upstream_timeout=2")

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def connect_tunnel(self, port):
        s = connect(self.reel.port)
        s.settimeout(15)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        return s

    def hello(self, alpn=("http/1.1",)):
        """A TLS client over memory buffers trusting reel's CA only, and
        its ClientHello: (sslobject, incoming, outgoing, hello bytes)."""
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        ctx.set_alpn_protocols(list(alpn))
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        o = ctx.wrap_bio(inc, out, server_hostname="localhost")
        with self.assertRaises(ssl.SSLWantReadError):
            o.do_handshake()
        return o, inc, out, out.read()

    def pump(self, s, o, inc, out, step):
        """Runs step() (a handshake, a read) on o until it is done,
        exchanging its records over s; returns what step returned."""
        while True:
            try:
                r = step()
                x = out.read()
                if x:
                    s.sendall(x)
                return r
            except ssl.SSLWantReadError:
                x = out.read()
                if x:
                    s.sendall(x)
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                inc.write(d)

    def get_intercepted(self, s, tls, inc, out, port, path):
        """Ends the client's handshake, which must get reel's certificate
        (intercepted, not relayed to the origin), then GETs path on it:
        the response."""
        self.pump(s, tls, inc, out, tls.do_handshake)  # verified against reel's CA
        issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
        self.assertNotEqual(issuer.get("commonName"), "reel tls-tcp test CA", issuer)
        tls.write(b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n"
                  % (path, port))
        return self.pump(s, tls, inc, out, lambda: tls.read(65536))

    def check_https_flow(self, port, path, status):
        """The one https flow of path has status, and no tunnel flow went to port."""
        fl = self.reel.wait_flows(1, "~u https://localhost:%d%s" % (port, path.decode()),
                                  timeout=10)
        self.assertEqual(len(fl), 1, self.reel.flows())
        self.assertEqual(fl[0]["status"], status, fl)
        self.assertEqual(self.reel.flows("~u tcp://localhost:%d" % port), [])

    def wait_tunnel_row(self, port):
        fl = []
        deadline = time.time() + 10
        while time.time() < deadline:
            fl = self.reel.wait_flows(1, "~u localhost:%d" % port, timeout=10)
            if fl and fl[0]["state"] != "open":
                break
            time.sleep(0.1)
        self.assertEqual(len(fl), 1, fl)
        return fl[0]

    def test_slow_hello_is_intercepted(self):
        """The first 5 bytes of the ClientHello, 3.5 s of nothing, then the
        rest: the client is not silent, so it is intercepted (reel's
        certificate, an https flow), not relayed raw after 3 s to finish
        its handshake with the origin unverified and unrecorded."""
        o = KeepAliveOrigin(self.leaf)
        try:
            s = self.connect_tunnel(o.port)
            tls, inc, out, hello = self.hello()
            s.sendall(hello[:5])
            time.sleep(3.5)
            s.sendall(hello[5:])
            resp = self.get_intercepted(s, tls, inc, out, o.port, b"/slow")
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            s.close()
        finally:
            o.close()
        self.check_https_flow(o.port, b"/slow", 200)

    def test_unfinished_hello_ends_the_tunnel(self):
        """A ClientHello that never ends: after head_timeout the tunnel
        ends, its flow saying why; nothing reached the origin."""
        o = SilentOrigin()
        try:
            s = self.connect_tunnel(o.port)
            _, _, _, hello = self.hello()
            t0 = time.time()
            s.sendall(hello[:5])
            self.assertEqual(read_until(s, b"never"), b"")  # reel closes
            took = time.time() - t0
            self.assertGreater(took, 4.5)
            self.assertLess(took, 8)
            s.close()
            row = self.wait_tunnel_row(o.port)
            self.assertEqual(row["kind"], "tunnel", row)
            self.assertIn("did not finish its TLS ClientHello within 5s", row["error"] or "", row)
            self.assertIn("5 bytes", row["error"], row)
            self.assertEqual(o.held, [])  # never connected
        finally:
            o.close()

    def test_close_during_hello_is_an_error(self):
        """A part of a ClientHello, then the client's close: an error
        flow, and those bytes are not sent on to the origin."""
        o = SilentOrigin()
        try:
            s = self.connect_tunnel(o.port)
            _, _, _, hello = self.hello()
            s.sendall(hello[:40])
            time.sleep(0.3)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_until(s, b"never"), b"")
            s.close()
            row = self.wait_tunnel_row(o.port)
            self.assertEqual(row["kind"], "tunnel", row)
            self.assertIn("closed the connection during its TLS ClientHello", row["error"] or "",
                          row)
            full = self.reel.flow(row["id"])
            self.assertEqual(messages(full, True), hello[:40])  # what came, recorded
            time.sleep(0.5)
            self.assertEqual(o.held, [])
        finally:
            o.close()

    def hello_after_silence(self, path, alpn=("http/1.1",)):
        """A ClientHello offering alpn 1 s after the 200, then GET path: 200
        (HTTP/1.1, the origin's choice), the origin having seen one
        connection (the early one, at 0.5 s), an https flow. The origin."""
        o = KeepAliveOrigin(self.leaf)
        try:
            s = self.connect_tunnel(o.port)
            tls, inc, out, hello = self.hello(alpn=alpn)
            time.sleep(1.0)
            wait_until(lambda: o.connections == 1)  # the early connect (at 0.5 s)
            self.assertEqual(o.connections, 1)
            s.sendall(hello)
            resp = self.get_intercepted(s, tls, inc, out, o.port, path)
            self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            s.close()
        finally:
            o.close()
        self.check_https_flow(o.port, path, 200)
        self.assertEqual(o.connections, 1)
        return o

    def test_hello_after_the_origin_was_connected_early(self):
        """1 s of silence, then a whole ClientHello: reel connected to the
        origin at 0.5 s (to hear a server that speaks first); this one says
        nothing, so the client's TLS is intercepted as ever, and reel's own
        TLS to the origin goes on that early connection: the origin sees one
        connection, not two (before, the early one was closed unused). The
        flow's timings count the handshake made for it, not the connect
        made before it."""
        o = self.hello_after_silence(b"/late")
        self.assertEqual(o.snis, ["localhost"])
        fl = self.reel.flows("~u https://localhost:%d/late" % o.port)
        full = self.reel.flow(fl[0]["id"])
        t = full["timings"]
        self.assertEqual((t["dns_us"], t["connect_us"]), (-1, -1), t)  # made before the flow
        self.assertGreaterEqual(t["ssl_us"], 0, t)  # made for it
        phases = sum(v for v in t.values() if v > 0)
        self.assertLessEqual(phases, full["end_us"] - full["start_us"] + 1000, full)
        sc = full["server_conn"]
        self.assertEqual(sc["address"], "127.0.0.1:%d" % o.port, sc)
        self.assertEqual(sc["sni"], "localhost", sc)
        self.assertTrue(sc["tls_version"].startswith("TLSv1."), sc)

    def test_h2_hello_after_the_origin_was_connected_early(self):
        """The same with a client offering h2 to an origin reel has not
        asked yet: reel asks it (ALPN) on the early connection, and the
        request goes there too: one connection."""
        self.hello_after_silence(b"/h2late", alpn=("h2", "http/1.1"))

    def test_hello_after_the_early_connection_was_closed(self):
        """The origin closes the early connection after the client's
        ClientHello came and before its request did: reel does not put its
        TLS on a connection that ended, and the request goes on a new one."""
        o = KeepAliveOrigin(self.leaf)
        first = threading.Event()
        serve = o.serve

        def serve_but_drop_the_first(raw):
            if not first.is_set():  # the early connection: ended once told to
                first.set()
                dropped.wait(10)
                raw.close()
                return
            serve(raw)
        dropped = threading.Event()
        o.serve = serve_but_drop_the_first
        try:
            s = self.connect_tunnel(o.port)
            tls, inc, out, hello = self.hello()
            time.sleep(1.0)
            self.assertTrue(first.wait(5))  # the early connect (at 0.5 s)
            s.sendall(hello)
            self.pump(s, tls, inc, out, tls.do_handshake)
            dropped.set()
            time.sleep(0.5)
            tls.write(b"GET /after HTTP/1.1\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n"
                      % o.port)
            resp = self.pump(s, tls, inc, out, lambda: tls.read(65536))
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            s.close()
        finally:
            dropped.set()
            o.close()
        self.check_https_flow(o.port, b"/after", 200)
        self.assertEqual(o.connections, 2)

    def test_plain_http_after_the_origin_was_connected_early(self):
        """Plain HTTP in the tunnel after 1 s of silence goes on the
        connection reel made early, and its flow says so truly: one
        connection to the origin, made before the request came."""
        full, accepted, sent = self.plain_http_after_silence(1.0, b"/plain")
        self.assertLess(accepted[0], sent)  # made before the request came
        sc = full["server_conn"]
        self.assertTrue(sc and sc["address"].startswith("127.0.0.1:"), full)
        self.assertTrue(all(v >= -1 for v in full["timings"].values()), full["timings"])

    def test_plain_http_after_the_early_connection_was_closed(self):
        """The origin closes the early connection at once, saying nothing
        (as one does at its idle timeout): that is forgotten, as an early
        connect that failed, and the client's request 1.5 s after the 200
        goes on a new connection (before, the close made the tunnel a raw
        one, which ended there, the client cut)."""
        self.plain_http_after_silence(1.5, b"/dropped", drop_first=True)

    def test_plain_http_long_after_the_early_connection_was_closed(self):
        """The same 3.5 s after the 200: an origin that closed the early
        connection having said nothing is no server that speaks first, so
        the client's silence does not make the tunnel a raw one (it did at
        3 s: the request was then relayed unparsed, as a TCP flow, and a
        slow ClientHello relayed, not intercepted)."""
        self.plain_http_after_silence(3.5, b"/dropped-long", drop_first=True)

    def test_plain_http_after_a_long_silence(self):
        """Plain HTTP after 3.3 s of silence on both sides: the origin,
        connected to early, said nothing, so the client's bytes decide, not
        a clock: HTTP, parsed and recorded (it used to be relayed as a raw
        TCP tunnel after 3 s)."""
        self.plain_http_after_silence(3.3, b"/quiet")

    def plain_http_after_silence(self, secs, path, drop_first=False):
        """A plain tunnel silent for secs, then GET path to an origin that
        answers it: 200 over one connection (the early one), an http flow
        and no tcp:// one. The flow in full, the accept's and the
        request's monotonic times. drop_first: the origin closes the first
        connection it accepts at once, having said nothing (as at its idle
        timeout), and the request goes on a second one."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        accepted = []

        def serve():
            try:
                while True:
                    c, _ = srv.accept()
                    accepted.append(time.monotonic())
                    c.settimeout(15)
                    if drop_first and len(accepted) == 1:
                        c.close()
                        continue
                    if read_until(c, b"\r\n\r\n"):
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nsaid")
                    c.close()
            except OSError:
                pass
        threading.Thread(target=serve, daemon=True).start()
        try:
            s = self.connect_tunnel(port)
            time.sleep(secs)
            sent = time.monotonic()
            s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (path, port))
            resp = read_until(s, b"said")
            self.assertTrue(resp.startswith(b"HTTP/1.1 200"), resp)
            s.close()
        finally:
            srv.close()
        self.assertEqual(len(accepted), 2 if drop_first else 1, accepted)
        fl = self.reel.wait_flows(1, "~u http://localhost:%d%s" % (port, path.decode()),
                                  timeout=10)
        self.assertEqual(len(fl), 1, self.reel.flows())
        self.assertEqual(fl[0]["status"], 200, fl)
        self.assertEqual(self.reel.flows("~u tcp://localhost:%d" % port), [])
        return self.reel.flow(fl[0]["id"]), accepted, sent

    def test_origin_greeting_during_a_hello_is_not_relayed(self):
        """The origin connected to early greets while the client has sent
        only the start of its ClientHello: that is no server-first tunnel,
        since a ClientHello is never relayed raw; the rest of it makes the
        tunnel HTTPS, intercepted (its request gets reel's 502, the origin
        not speaking TLS), and the greeting reaches no one."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(15)
        port = srv.getsockname()[1]
        try:
            s = self.connect_tunnel(port)
            tls, inc, out, hello = self.hello()
            time.sleep(0.8)
            s.sendall(hello[:5])
            o, _ = srv.accept()  # the early connect, at 0.5 s
            o.sendall(b"220 greeting\r\n")
            time.sleep(0.3)

            def refuse():  # reel's TLS connection for the request: no TLS here
                try:
                    srv.accept()[0].close()
                except OSError:
                    pass
            threading.Thread(target=refuse, daemon=True).start()
            s.sendall(hello[5:])
            resp = self.get_intercepted(s, tls, inc, out, port, b"/greeted")
            self.assertTrue(resp.startswith(b"HTTP/1.1 502"), resp)
            self.assertNotIn(b"220 greeting", resp)
            s.close()
            o.close()
        finally:
            srv.close()
        self.check_https_flow(port, b"/greeted", 502)

    def test_origin_refused_while_the_client_is_silent(self):
        """An origin that refuses the early connect (0.5 s): that is
        forgotten, and the client's silence for 3 s makes a raw tunnel,
        whose own connect is refused: it ends then, a raw one that failed,
        saying why."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        srv.close()  # nothing listens there
        s = self.connect_tunnel(port)
        t0 = time.monotonic()
        self.assertEqual(read_until(s, b"never"), b"")  # reel closes
        self.assertGreater(time.monotonic() - t0, 2.5)  # the 3 s wait for a silent client
        s.close()
        row = self.wait_tunnel_row(port)
        self.assertEqual((row["kind"], row["state"]), ("tunnel", "error"), row)
        self.assertIn("cannot connect to localhost:%d" % port, row["error"] or "", row)
        self.assertIn("refused", row["error"], row)

    def test_hello_after_the_early_connect_was_refused(self):
        """A whole ClientHello 1 s after the 200, to an origin that refused
        the early connect at 0.5 s: the client's TLS is intercepted as ever
        and its request gets reel's 502 with the reason inside it, an https
        flow (before, the tunnel ended at 0.5 s and the client was cut
        without an answer)."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        srv.close()  # nothing listens there
        s = self.connect_tunnel(port)
        tls, inc, out, hello = self.hello()
        time.sleep(1.0)
        s.sendall(hello)
        resp = self.get_intercepted(s, tls, inc, out, port, b"/refused")
        self.assertTrue(resp.startswith(b"HTTP/1.1 502"), resp)
        self.assertIn(b"refused", resp)
        s.close()
        fl = self.reel.wait_flows(1, "~u https://localhost:%d/refused" % port, timeout=10)
        self.assertEqual(len(fl), 1, self.reel.flows())
        self.assertEqual(fl[0]["status"], 502, fl)
        self.assertIn("cannot connect to localhost:%d" % port, fl[0]["error"] or "", fl)
        self.assertEqual(self.reel.flows("~u tcp://localhost:%d" % port), [])

    def test_silent_origin_to_alpn_probe_waits_once(self):
        """A client offering h2 to an origin that is silent during TLS:
        reel's probe of the origin's ALPN holds the client's handshake for
        upstream_timeout; its request is then answered 504 at once (it
        used to wait upstream_timeout again on a new connection), its flow
        starting when the probe did, that wait its blocked time."""
        o = SilentOrigin()
        try:
            t0 = time.time()
            s = self.connect_tunnel(o.port)
            tls, inc, out, hello = self.hello(alpn=("h2", "http/1.1"))
            s.sendall(hello)
            self.pump(s, tls, inc, out, tls.do_handshake)
            self.assertEqual(tls.selected_alpn_protocol(), "http/1.1")
            t1 = time.time()
            self.assertGreater(t1 - t0, 1.8)
            tls.write(b"GET /probe HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % o.port)
            resp = self.pump(s, tls, inc, out, lambda: tls.read(65536))
            self.assertTrue(resp.startswith(b"HTTP/1.1 504"), resp)
            self.assertIn(b"TLS handshake with localhost:%d not done within 2s" % o.port, resp)
            self.assertLess(time.time() - t1, 1.0)
            s.close()
            fl = self.reel.wait_flows(1, "~u https://localhost:%d/probe" % o.port, timeout=10)
            self.assertEqual(len(fl), 1, fl)
            full = self.reel.flow(fl[0]["id"])
            self.assertEqual(full["response"]["status"], 504, full)
            self.assertIn("not done within 2s", full["error"] or "", full)
            self.assertLess(full["start_us"], t0 * 1e6 + 500000, full)
            self.assertGreater(full["end_us"] - full["start_us"], 1800000, full)
            t = full["timings"]
            self.assertGreater(t["blocked_us"], 1800000, t)  # the probe's wait
            phases = sum(v for v in t.values() if v > 0)
            self.assertLessEqual(phases, full["end_us"] - full["start_us"] + 1000, full)
            self.assertEqual(len(o.held), 1)  # the probe's connection only
        finally:
            o.close()


class SilentTunnelIdleTest(unittest.TestCase):
    """A tunnel still undecided at idle_timeout (1 s here), its client and
    origin (connected to early) both silent, or the client's bytes saying
    nothing yet: reel closes it, and its flow says so. It left no flow at
    all when idle_timeout came first."""

    def test_both_silent_until_idle_timeout(self):
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="silentidle.", dir=TMPBASE)
        reel = Reel(root, "main", "idle_timeout=1")
        o = SilentOrigin()
        try:
            s = connect(reel.port)
            s.settimeout(15)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.port)
            self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
            self.assertEqual(read_until(s, b"never"), b"")  # reel closes it
            s.close()
            wait_until(lambda: len(o.held) == 1)  # the early connect (its accept, in a thread)
            self.assertEqual(len(o.held), 1)
            fl = reel.wait_flows(1, "~u tcp://localhost:%d" % o.port, timeout=10)
            self.assertEqual(len(fl), 1, fl)
            self.assertEqual(fl[0]["error"], "idle timeout: neither the client nor the origin "
                             "sent anything for 1 s (idle_timeout), and reel closed the tunnel", fl)
            # a byte that says nothing yet, then silence (idle_timeout below
            # head_timeout): it left no flow at all
            s = connect(reel.port)
            s.settimeout(15)
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.port)
            self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
            s.sendall(b"x")
            self.assertEqual(read_until(s, b"never"), b"")
            s.close()
            fl = reel.wait_flows(1, "~u tcp://127.0.0.1:%d" % o.port, timeout=10)
            self.assertEqual(len(fl), 1, fl)
            self.assertEqual(fl[0]["error"], "idle timeout: nothing came for 1 s (idle_timeout) "
                             "after the client's first 1 bytes, which did not say what the tunnel "
                             "carries (they were not passed on), and reel closed the tunnel", fl)
            self.assertEqual(messages(reel.flow(fl[0]["id"]), True), b"x")
        finally:
            o.close()
            code = reel.stop()
            shutil.rmtree(root, ignore_errors=True)
        self.assertEqual(code, 0)


class ClientGoneDuringTheOriginsHandshake(unittest.TestCase):
    """A client whose TLS handshake waits for the origin's (a non-HTTP
    ALPN mirrored, or reel asking the origin whether it speaks h2) and
    that gives up: its reading stopped, reel saw its end only at
    upstream_timeout, the socket held meanwhile and the flow saying only
    that the origin did not finish."""

    def test_client_end_is_seen_while_the_origin_is_silent(self):
        root = tempfile.mkdtemp(prefix="gone-hs.", dir=TMPBASE)
        silent = SilentOrigin()
        reel = Reel(root, "gone")
        try:
            for alpn in (["mqtt"], ["h2", "http/1.1"]):
                s = connect(reel.port)
                s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % silent.port)
                self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
                ctx = ssl.create_default_context(cafile=reel.ca)
                ctx.set_alpn_protocols(alpn)
                inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
                o = ctx.wrap_bio(inc, out, server_hostname="localhost")
                with self.assertRaises(ssl.SSLWantReadError):
                    o.do_handshake()
                s.sendall(out.read())
                time.sleep(0.5)
                s.close()  # it gives up
                t0 = time.time()
                fl = []
                while time.time() - t0 < 10:
                    fl = [f for f in reel.flows("~u localhost:%d" % silent.port)
                          if f["state"] != "open" and f["error"] and "client closed" in f["error"]]
                    if len(fl) == (1 if alpn == ["mqtt"] else 2):
                        break
                    time.sleep(0.2)
                self.assertLess(time.time() - t0, 10, (alpn, reel.flows()))
                self.assertEqual(fl[-1]["error"], "the client closed the connection while its TLS "
                                 "handshake waited for the origin's (reel asks the origin which "
                                 "protocol to offer it first)", fl)
                # (a TLS tunnel's flow; reel asking for h2: the tunnel's,
                # the ClientHello what came in it)
                self.assertTrue(fl[-1]["url"].startswith("tls://" if alpn == ["mqtt"] else "tcp://"),
                                fl)
        finally:
            silent.close()
            self.assertEqual(reel.stop(), 0, reel.log())
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
