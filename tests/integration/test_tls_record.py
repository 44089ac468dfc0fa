"""What a flow's record says about TLS on either leg when nothing else
would say it. With upstream_cert_verify off, reel still lets OpenSSL check
the origin's certificate (chain, dates, host name) and records what the
check found in the flow's ServerConn (verify_error, peer_cert, beside
unverified), as Burp and mitmproxy show it; before, the record said only
that nothing was checked. And a client that completes its TLS handshake
with reel inside a CONNECT tunnel, then closes without a request, is a
tls:// flow whose error says so; before, it was a tcp:// flow with no
error, or (ALPN http/1.1) no flow at all. Origins are Python ssl servers;
clients are curl, openssl s_client and Python ssl sockets."""
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
from proxyenv import REEL, TMPBASE, Reel, connect, curl, main, run  # noqa: E402

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(root, name):
    run(["openssl", "req", "-x509"] + EC + ["-keyout", "%s/%s.key" % (root, name), "-out",
        "%s/%s.pem" % (root, name), "-days", "2", "-subj", "/CN=reel %s" % name,
        "-addext", "basicConstraints=critical,CA:TRUE"])
    return "%s/%s.pem" % (root, name)


def make_leaf(root, name, ca, san, usage="serverAuth"):
    """A leaf for san ("DNS:localhost,...") signed by CA ca (a make_ca name),
    or self-signed when ca is None: (cert, key). usage: its extended key
    usage."""
    cert, key = "%s/%s.pem" % (root, name), "%s/%s.key" % (root, name)
    if ca is None:
        run(["openssl", "req", "-x509"] + EC + ["-keyout", key, "-out", cert, "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=" + san])
        return cert, key
    run(["openssl", "req"] + EC + ["-keyout", key, "-out", root + "/leaf.csr", "-subj", "/CN=x"])
    with open(root + "/ext.cnf", "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=%s\n" % (san, usage))
    run(["openssl", "x509", "-req", "-in", root + "/leaf.csr", "-CA", "%s/%s.pem" % (root, ca),
         "-CAkey", "%s/%s.key" % (root, ca), "-set_serial", str(len(os.listdir(root))),
         "-out", cert, "-days", "2", "-extfile", root + "/ext.cnf"])
    return cert, key


class Origin:
    """An HTTPS origin on 127.0.0.1 answering each request "ok" and closing
    (Connection: close), so that each request has a connection of its own
    (the second one resuming the first's TLS session); counts connections."""

    def __init__(self, cert, alpn=("http/1.1",), client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(*cert)
        if client_ca:  # mutual TLS: a client certificate from that CA, or no request answered
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.ctx.set_alpn_protocols(list(alpn))
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.connections = 0
        self.resumed = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                raw, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            try:
                raw.settimeout(10)
                with self.ctx.wrap_socket(raw, server_side=True) as c:
                    self.resumed.append(c.session_reused)
                    got = b""
                    while b"\r\n\r\n" not in got:
                        d = c.recv(65536)
                        if not d:
                            break
                        got += d
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.srv.close()


class TlsRecordTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="tlsrec.", dir=TMPBASE)
        r = cls.root
        cls.ca = make_ca(r, "trusted-ca")
        make_ca(r, "unknown-ca")
        cls.good = make_leaf(r, "good", "trusted-ca", "DNS:localhost,IP:127.0.0.1")
        cls.other_name = make_leaf(r, "other-name", "trusted-ca", "DNS:other.example")
        cls.unknown_ca = make_leaf(r, "unknown-ca-leaf", "unknown-ca", "DNS:localhost")
        cls.self_signed = make_leaf(r, "self", None, "DNS:localhost")
        # reel trusts the test CA (a good certificate passes the check)
        # but enforces nothing
        # one worker: its TLS session cache serves every connection
        cls.reel = Reel(r, "main", "upstream_trusted_ca=" + cls.ca, "upstream_cert_verify=false",
                        "workers=1")

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def flows(self, port, n):
        fl = self.reel.wait_flows(n, "~u localhost:%d" % port, timeout=10)
        self.assertEqual(len(fl), n, fl)
        return fl

    def get(self, port):
        """A request through reel to localhost:port, answered "ok"."""
        r = curl(self.reel, "https://localhost:%d/x" % port)
        self.assertEqual(r.stdout, b"ok")

    def test_unverified_connection_records_what_the_check_found(self):
        cases = [(self.self_signed, "self-signed certificate", "certificate for localhost, by "),
                 (self.other_name, "hostname mismatch", "certificate for other.example, by "),
                 (self.unknown_ca, "unable to get local issuer certificate",
                  "certificate for localhost, by reel unknown-ca, valid ")]
        for cert, error, facts in cases:
            o = Origin(cert)
            try:
                self.get(o.port)
                self.get(o.port)  # a connection of its own, its TLS session resumed
                fl = self.flows(o.port, 2)
            finally:
                o.close()
            self.assertEqual(o.connections, 2)
            for f in fl:
                self.assertIsNone(f["error"], f)
                sc = self.reel.flow(f["id"])["server_conn"]
                self.assertTrue(sc["unverified"], sc)
                self.assertEqual(sc["verify_error"], error, (error, sc))
                self.assertTrue((sc["peer_cert"] or "").startswith(facts), (facts, sc))
                text = self.reel.cli("flow", "main", str(f["id"]), "--headers-only").stdout
                self.assertIn(("~ certificate would have FAILED verification (reel went on): %s; %s"
                               % (error, facts)).encode(), text)
            # the second connection was a resumed session, whose result is
            # that of the handshake that made it; each flow says which
            self.assertEqual(o.resumed, [False, True], error)
            scs = [self.reel.flow(f["id"])["server_conn"] for f in fl]
            self.assertEqual([sc["resumed"] for sc in scs], [False, True], scs)
            lines = [self.reel.cli("flow", "main", str(f["id"]), "--headers-only").stdout
                     for f in fl]
            self.assertNotIn(b", resumed session", lines[0])
            self.assertIn(b", resumed session", lines[1])
            out = self.reel.cli("export", "main", "~u localhost:%d" % o.port, "--format",
                                "ndjson").stdout.decode().splitlines()
            self.assertEqual([json.loads(x).get("tls_resumed") for x in out], [None, True], out)
        # a certificate that passes the check: no error
        o = Origin(self.good)
        try:
            self.get(o.port)
            [f] = self.flows(o.port, 1)
        finally:
            o.close()
        sc = self.reel.flow(f["id"])["server_conn"]
        self.assertTrue(sc["unverified"], sc)
        self.assertIsNone(sc["verify_error"], sc)
        self.assertIsNone(sc["peer_cert"], sc)
        text = self.reel.cli("flow", "main", str(f["id"]), "--headers-only").stdout
        self.assertNotIn(b"FAILED", text)

    def test_insecure_hosts_only(self):
        """upstream_cert_verify on, upstream_insecure_hosts naming one host:
        its origin's self-signed certificate is let through (the flow says
        unverified, and what the check found), the same origin by another
        name is refused, and a change while reel runs applies to the next
        connection."""
        reel = Reel(self.root, "strict", "workers=1")
        o = Origin(self.self_signed)
        try:
            # (in the overlay: a --set value would stay in force)
            reel.set_config("set", "upstream_insecure_hosts", ".localhost, 192.0.2.0/24")
            r = curl(reel, "https://localhost:%d/x" % o.port)
            self.assertEqual(r.stdout, b"ok")
            [f] = reel.wait_flows(1, "~u localhost:%d" % o.port)
            sc = reel.flow(f["id"])["server_conn"]
            self.assertEqual((sc["unverified"], sc["verify_error"]),
                             (True, "self-signed certificate"), sc)
            r = curl(reel, "-o", "/dev/null", "-w", "%{http_code}",
                     "https://127.0.0.1:%d/x" % o.port, check=False)
            self.assertEqual(r.stdout, b"502")
            [f] = reel.wait_flows(1, "~u 127.0.0.1:%d" % o.port)
            self.assertIn("certificate verify failed", f["error"])
            reel.set_config("set", "upstream_insecure_hosts", "")
            r = curl(reel, "-o", "/dev/null", "-w", "%{http_code}",
                     "https://localhost:%d/y" % o.port, check=False)
            self.assertEqual(r.stdout, b"502")
        finally:
            o.close()
            code = reel.stop()
        self.assertEqual(code, 0, reel.log())

    def test_every_flow_says_the_clients_tls(self):
        """The TLS between the client and reel (version, cipher, SNI, ALPN,
        resumed) is in each flow's start record: before, only the error of
        a client that left before its request said it."""
        o = Origin(self.good)
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # (a session to resume at once)
        ctx.set_alpn_protocols(["http/1.1"])
        session = None
        try:
            for i in range(2):
                t = self.tls_in_tunnel(o.port, ctx, session)
                self.get_ok(t, "/tls%d" % i)
                self.assertEqual(t.session_reused, i == 1)
                session = t.session
                t.close()
            r = curl(self.reel, "--http1.1", "https://localhost:%d/tls-curl" % o.port)
            self.assertEqual(r.stdout, b"ok")
        finally:
            o.close()
        for path, version, resumed in (("/tls0", "TLSv1.2", False), ("/tls1", "TLSv1.2", True),
                                       ("/tls-curl", None, False)):
            [f] = self.reel.wait_flows(1, "~u %s$" % path)
            tls = self.reel.flow(f["id"])["client_tls"]
            self.assertEqual((tls["sni"], tls["alpn"], tls["resumed"]),
                             ("localhost", "http/1.1", resumed), tls)
            self.assertEqual(tls["tls_version"], version or tls["tls_version"], tls)
            self.assertTrue(tls["tls_version"].startswith("TLSv1."), tls)
            self.assertTrue(tls["cipher"], tls)
            text = self.reel.cli("flow", "main", str(f["id"]), "--headers-only").stdout.decode()
            self.assertIn("~ client TLS: %s %s, ALPN http/1.1, SNI localhost%s"
                          % (tls["tls_version"], tls["cipher"],
                             ", resumed session" if resumed else ""), text)
        # NDJSON (and HAR's _reel) carry it
        out = self.reel.cli("export", "main", "~u /tls0$", "--format", "ndjson").stdout
        self.assertEqual(json.loads(out)["client_tls"]["sni"], "localhost")

    def test_tls13_client_resumes_with_the_one_ticket_each_connection_gets(self):
        """reel sends one TLS 1.3 session ticket per connection (OpenSSL's
        default is two): a client that resumes each connection with the
        ticket of the one before resumes every time, and each flow says
        whether its connection was resumed."""
        o = Origin(self.good)
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        session = None
        try:
            for i in range(3):
                t = self.tls_in_tunnel(o.port, ctx, session)
                self.get_ok(t, "/tls13-%d" % i)
                self.assertEqual(t.version(), "TLSv1.3")
                self.assertEqual(t.session_reused, i > 0, i)
                # (read after the response: the ticket came before it)
                self.assertTrue(t.session.has_ticket, i)
                session = t.session
                t.close()
        finally:
            o.close()
        for i in range(3):
            [f] = self.reel.wait_flows(1, "~u /tls13-%d$" % i)
            tls = self.reel.flow(f["id"])["client_tls"]
            self.assertEqual((tls["tls_version"], tls["resumed"]), ("TLSv1.3", i > 0), tls)

    def left_after_handshake(self, port, alpn, reset_too=False):
        """The flow of a client that closed after its handshake with reel
        (reset_too: or reset the connection) offering alpn."""
        [f] = self.flows(port, 1)
        self.assertEqual(f["kind"], "tunnel", f)
        self.assertEqual(f["url"], "tls://localhost:%d/" % port, f)
        tls = "TLS handshake with reel (TLSv1.3, SNI localhost, ALPN %s)" % alpn
        if reset_too and f["error"].startswith("client connection error: "):
            self.assertTrue(f["error"].endswith(", after the client's %s, before it sent a request"
                                                % tls), f)
        else:
            self.assertEqual(f["error"], "the client closed the connection after its %s, before "
                             "sending a request (a connection opened ahead and not used, as "
                             "browsers do, or a client that refused reel's certificate after the "
                             "handshake, as certificate pinning does)" % tls, f)
        full = self.reel.flow(f["id"])
        self.assertEqual(full["request"]["method"], "CONNECT", full)
        self.assertEqual(full["response"]["status"], 200, full)

    def test_client_that_closes_after_its_handshake(self):
        """openssl s_client (which offers ALPN http/1.1, none, or h2) and a
        Python client (no ALPN, no close_notify) complete their handshakes
        with reel and close without a request."""
        # (h2: chosen for the client as the origin chose it for reel's probe)
        for alpn in (["-alpn", "http/1.1"], [], ["-alpn", "h2"]):
            o = Origin(self.good, alpn=["h2", "http/1.1"] if "h2" in alpn else ["http/1.1"])
            try:
                # (stdin an empty pipe: s_client then closes after its handshake)
                r = subprocess.run(
                    ["openssl", "s_client", "-proxy", "127.0.0.1:%d" % self.reel.port, "-connect",
                     "localhost:%d" % o.port, "-servername", "localhost", "-CAfile", self.reel.ca,
                     "-verify_return_error"] + alpn, input=b"", capture_output=True, timeout=10)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.left_after_handshake(o.port, alpn[1] if alpn else "none")
            finally:
                o.close()
        o = Origin(self.good)
        try:
            s = connect(self.reel.port)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % o.port)
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
            t = ssl.create_default_context(cafile=self.reel.ca).wrap_socket(
                s, server_hostname="localhost")
            # no close_notify (Python's close does not unwrap), and a reset
            # if reel's session tickets came unread
            t.close()
            self.left_after_handshake(o.port, "none", reset_too=True)
        finally:
            o.close()

    def test_client_that_stays_idle_after_its_handshake(self):
        """One that completes its handshake and sends nothing until reel's
        idle_timeout closes the connection (a browser's preconnection that
        is never used) left no flow at all."""
        reel = Reel(self.root, "idle", "upstream_trusted_ca=" + self.ca, "idle_timeout=1")
        o = Origin(self.good)
        try:
            s = connect(reel.port)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % o.port)
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
            t = ssl.create_default_context(cafile=reel.ca).wrap_socket(
                s, server_hostname="localhost")
            t.settimeout(10)
            try:
                while t.recv(1000):  # reel's session tickets, then its close
                    pass
            except (ssl.SSLError, OSError):
                pass
            t.close()
            fl = reel.wait_flows(1, "~u localhost:%d" % o.port, timeout=10)
            self.assertEqual(len(fl), 1, fl)
            self.assertEqual(fl[0]["url"], "tls://localhost:%d/" % o.port, fl)
            self.assertEqual(fl[0]["error"], "the client sent no request within idle_timeout: "
                             "reel closed the connection, after the client's TLS handshake with "
                             "reel (TLSv1.3, SNI localhost, ALPN none), before it sent a request",
                             fl)
        finally:
            o.close()
            self.assertEqual(reel.stop(), 0, reel.log())

    def test_client_that_ends_before_its_bytes_say_what_they_are(self):
        """Inside its TLS (no ALPN), a client sends "GE", then close_notify
        and its FIN: reel waited 3 s for more, took it for an HTTP head,
        waited head_timeout for the rest and recorded a 408 it answered to
        a client long gone. Now the end decides at once, as outside TLS: a
        TLS tunnel that relays the bytes and the end. Its timings have the
        origin's handshake (ssl), as its server_conn does."""
        o = Origin(self.good)
        try:
            s = connect(self.reel.port)
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % o.port)
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            t = ssl.create_default_context(cafile=self.reel.ca).wrap_bio(
                inc, out, server_hostname="localhost")
            while True:
                try:
                    t.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    s.sendall(out.read())
                    inc.write(s.recv(65536))
            t.write(b"GE")
            try:
                t.unwrap()
            except ssl.SSLWantReadError:
                pass
            s.sendall(out.read())
            s.shutdown(socket.SHUT_WR)
            t0 = time.time()
            s.settimeout(10)
            while s.recv(65536):
                pass
            self.assertLess(time.time() - t0, 2)
            s.close()
            [f] = self.flows(o.port, 1)
        finally:
            o.close()
        self.assertEqual((f["url"], f["state"], f["error"]),
                         ("tls://localhost:%d/" % o.port, "complete", None), f)
        full = self.reel.flow(f["id"])
        self.assertEqual([base64.b64decode(m["data_b64"]) for m in full["messages"]
                          if m["from_client"]], [b"GE"], full["messages"])
        self.assertGreaterEqual(full["timings"]["ssl_us"], 0, full["timings"])

    def test_client_certificate_presented(self):
        """upstream_client_certs: a file, then a directory with a file named
        for the host, gives an origin that wants a client certificate one;
        the flow says it was asked and what reel presented; a directory
        without one for the host gives none, and the error says how to."""
        r = self.root
        cert, key = make_leaf(r, "client", "trusted-ca", "DNS:client.test", usage="clientAuth")
        pem = os.path.join(r, "client-bundle.pem")
        with open(pem, "w") as out:
            for part in (cert, key):
                with open(part) as f:
                    out.write(f.read())
        certs = os.path.join(r, "client-certs")
        os.makedirs(certs)
        shutil.copy(pem, os.path.join(certs, "localhost.pem"))
        empty = os.path.join(r, "no-certs")
        os.makedirs(empty)
        o = Origin(self.good, client_ca=self.ca)
        try:
            for value in (pem, certs):
                self.reel.set_config("set", "upstream_client_certs", value)
                self.get(o.port)
                f = self.flows(o.port, 1 if value == pem else 2)[-1]
                sc = self.reel.flow(f["id"])["server_conn"]
                self.assertTrue(sc["client_cert_asked"], sc)
                self.assertRegex(sc["client_cert"], r"^certificate for client\.test, by reel "
                                                    r"trusted-ca, valid ")
            text = self.reel.cli("flow", "main", str(f["id"])).stdout.decode()
            self.assertIn("\n~ the origin asked for a client certificate: reel presented "
                          "certificate for client.test, by reel trusted-ca, valid ", text)
            self.reel.set_config("set", "upstream_client_certs", empty)
            out = curl(self.reel, "--http1.1", "https://localhost:%d/none" % o.port, check=False)
            self.assertIn(b"the origin asked for a client certificate, which reel does not have: "
                          b"give it one (upstream_client_certs)", out.stdout)
            # a file that is no certificate: refused by reel config, named
            bad = self.reel.cli("config", "main", "set", "upstream_client_certs",
                                os.path.join(r, "nope.pem"), check=False)
            self.assertNotEqual(bad.returncode, 0)
            self.assertIn(b"invalid value '%s' for upstream_client_certs: No such file or "
                          b"directory" % os.path.join(r, "nope.pem").encode(), bad.stderr)
        finally:
            self.reel.set_config("unset", "upstream_client_certs")
            o.close()

    def test_client_certificate_formats(self):
        """upstream_client_certs takes an encrypted PEM key, PKCS#12 files
        (without a passphrase, with one, and one made with the legacy
        algorithms Windows and OpenSSL 1.1 export), and a directory's
        NAME.p12, each passphrase the first line of the file's .pass file;
        without it, or with a wrong one, reel says which and how."""
        r = os.path.join(self.root, "formats")
        os.makedirs(r)
        cert, key = make_leaf(self.root, "client2", "trusted-ca", "DNS:client2.test",
                              usage="clientAuth")
        pw = os.path.join(r, "pw")
        with open(pw, "w") as f:
            f.write("s3cret phrase\n")
        enc_key = os.path.join(r, "enc.key")
        run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "file:" + pw, "-out", enc_key])
        enc = os.path.join(r, "enc.pem")
        with open(enc, "w") as out:
            for part in (cert, enc_key):
                with open(part) as f:
                    out.write(f.read())
        files = {"enc.pem": enc}
        for name, extra in (("nopw.p12", ["-passout", "pass:"]),
                            ("pw.p12", ["-passout", "file:" + pw]),
                            ("legacy.pfx", ["-legacy", "-passout", "file:" + pw])):
            files[name] = os.path.join(r, name)
            run(["openssl", "pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile",
                 self.ca, "-out", files[name]] + extra)
        certs = os.path.join(r, "dir")
        os.makedirs(certs)
        shutil.copy(files["pw.p12"], os.path.join(certs, "localhost.p12"))
        shutil.copy(pw, os.path.join(certs, "localhost.p12.pass"))

        def refused(path, why):
            """reel record with it: refused at start, saying why"""
            home = tempfile.mkdtemp(dir=r)
            out = subprocess.run([REEL, "record", "--listen", "127.0.0.1:0",
                                  "--set", "upstream_client_certs=" + path, "x"],
                                 env=dict(self.reel.env, REEL_HOME=home), capture_output=True,
                                 timeout=30)
            self.assertNotEqual(out.returncode, 0, out)
            self.assertIn(("upstream_client_certs: %s: %s" % (path, why)).encode(), out.stderr)

        refused(enc, "its private key is encrypted: put its passphrase in a file named as this "
                     "one with .pass added, on its first line")
        refused(files["pw.p12"], "a PKCS#12 file with a passphrase: put it in a file named as "
                                 "this one with .pass added, on its first line")
        with open(files["pw.p12"] + ".pass", "w") as f:
            f.write("wrong\n")
        refused(files["pw.p12"], "a PKCS#12 file whose passphrase is not the one in its .pass "
                                 "file")
        with open(enc + ".pass", "w") as f:
            f.write("wrong\n")
        refused(enc, "its private key is not read with the passphrase in its .pass file")
        for name in ("enc.pem", "pw.p12", "legacy.pfx"):
            shutil.copy(pw, files[name] + ".pass")
        try:
            for value in (files["enc.pem"], files["nopw.p12"], files["pw.p12"],
                          files["legacy.pfx"], certs):
                o = Origin(self.good, client_ca=self.ca)  # a new one: no session to resume
                try:
                    self.reel.set_config("set", "upstream_client_certs", value)
                    self.get(o.port)
                    f = self.flows(o.port, 1)[-1]
                    sc = self.reel.flow(f["id"])["server_conn"]
                    self.assertTrue(sc["client_cert_asked"], (value, sc))
                    self.assertFalse(sc["resumed"], (value, sc))
                    self.assertRegex(sc["client_cert"], r"^certificate for client2\.test, by reel "
                                                        r"trusted-ca, valid ", value)
                finally:
                    o.close()
        finally:
            self.reel.set_config("unset", "upstream_client_certs")

    def test_origin_that_wants_a_client_certificate(self):
        """A TLS 1.3 origin that wants a client certificate sends its alert
        and closes, reel's request unread: its kernel resets. When reel's
        write took the reset first, it stopped reading, the alert left
        unread, and the flow said only "connection reset by peer"
        (3 times in 10)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.good)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(self.ca)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        port = srv.getsockname()[1]

        def serve():
            while True:
                try:
                    raw, _ = srv.accept()
                except OSError:
                    return
                try:
                    raw.settimeout(5)
                    ctx.wrap_socket(raw, server_side=True).recv(100)
                except (OSError, ssl.SSLError):
                    pass
                raw.close()
        threading.Thread(target=serve, daemon=True).start()
        try:
            for i in range(8):
                r = curl(self.reel, "--http1.1", "https://localhost:%d/mtls%d" % (port, i),
                         check=False)
                self.assertIn(b"the origin asked for a client certificate", r.stdout,
                              (i, r.stdout))
        finally:
            srv.close()

    def test_reset_during_the_origins_handshake(self):
        """An origin that resets during the TLS handshake: OpenSSL says only
        "unexpected eof while reading", which reads as a close."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        port = srv.getsockname()[1]

        def reset():
            c, _ = srv.accept()
            c.recv(65536)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        t = threading.Thread(target=reset)
        t.start()
        r = curl(self.reel, "--http1.1", "https://localhost:%d/rst" % port, check=False)
        t.join(10)
        srv.close()
        self.assertEqual(r.stdout, b"reel: upstream TLS handshake failed: connection reset by "
                         b"peer\n")

    def tls_in_tunnel(self, port, ctx=None, session=None):
        """A TLS connection with reel inside a CONNECT to localhost:port:
        ctx's (default: no ALPN), resuming session if given."""
        s = connect(self.reel.port)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % port)
        self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
        ctx = ctx or ssl.create_default_context(cafile=self.reel.ca)
        return ctx.wrap_socket(s, server_hostname="localhost", session=session)

    def get_ok(self, t, path):
        """GET path on t, answered 200 "ok" (by Origin)."""
        t.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
        got = b""
        while not got.endswith(b"ok"):
            d = t.recv(1000)
            if not d:
                break
            got += d
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)

    def test_client_that_ends_without_close_notify_before_its_bytes_say(self):
        """The same without close_notify (its TCP close alone): the tunnel
        was begun, the bytes lost with it, and the flow complete and
        empty."""
        o = Origin(self.good)
        try:
            t = self.tls_in_tunnel(o.port)
            t.sendall(b"GE")
            t.close()
            [f] = self.flows(o.port, 1)
        finally:
            o.close()
        self.assertEqual((f["url"], f["state"]), ("tls://localhost:%d/" % o.port, "error"), f)
        # (its close a reset when reel's session tickets were left unread)
        self.assertTrue("without close_notify after 2 bytes" in f["error"] or
                        f["error"] == "client connection error: connection reset by peer", f)
        full = self.reel.flow(f["id"])
        self.assertEqual([base64.b64decode(m["data_b64"]) for m in full["messages"]], [b"GE"])

    def test_client_that_resets_inside_its_tls(self):
        """Inside its TLS (no ALPN) a client sends "GE" and resets: the
        flow was a tcp:// one, its decrypted bytes taken for raw TCP."""
        o = Origin(self.good)
        try:
            t = self.tls_in_tunnel(o.port)
            t.sendall(b"GE")
            time.sleep(0.2)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.close()
            [f] = self.flows(o.port, 1)
        finally:
            o.close()
        self.assertEqual(f["url"], "tls://localhost:%d/" % o.port, f)

    def test_trailing_dot_in_sni_is_checked_against_the_origin(self):
        """A client's SNI with a trailing dot ("evil.example."): the sniffer
        took it for no host name, so the origin was checked against the
        CONNECT host, while the CA minted a leaf for "evil.example", which
        the client then trusted: reel vouched for a name no origin had been
        checked for. Now the origin is checked against the name without
        its dot."""
        reel = Reel(self.root, "dot", "upstream_trusted_ca=" + self.ca)
        o = Origin(self.good)  # localhost, 127.0.0.1
        try:
            for sni, status in (("evil.example.", b"HTTP/1.1 502"), ("localhost.", b"HTTP/1.1 200")):
                r = subprocess.run(
                    ["openssl", "s_client", "-quiet", "-proxy", "127.0.0.1:%d" % reel.port,
                     "-connect", "127.0.0.1:%d" % o.port, "-servername", sni,
                     "-verify_hostname", sni.rstrip("."), "-verify_return_error", "-CAfile",
                     reel.ca, "-alpn", "http/1.1"],
                    input=b"GET /dot HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                    % sni.rstrip(".").encode(), capture_output=True, timeout=30)
                self.assertTrue(r.stdout.startswith(status), (sni, r.stdout, r.stderr))
            fl = reel.wait_flows(2, "~u /dot", timeout=10)
            self.assertEqual(len(fl), 2, fl)
            self.assertEqual(fl[0]["status"], 502, fl)
            self.assertIn("hostname mismatch", fl[0]["error"], fl)
            self.assertEqual(reel.flow(fl[0]["id"])["server_conn"]["sni"], "evil.example", fl)
            self.assertEqual((fl[1]["status"], fl[1]["error"]), (200, None), fl)
        finally:
            o.close()
            self.assertEqual(reel.stop(), 0, reel.log())


if __name__ == "__main__":
    main()
