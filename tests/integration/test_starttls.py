#!/usr/bin/python3
"""STARTTLS in a CONNECT tunnel (intercept_starttls).

curl speaks SMTP, IMAP and POP3 with --ssl-reqd through reel
(--proxytunnel: a CONNECT tunnel) to a small mail server of python3's
socketserver and ssl, with a certificate of the test origin's CA, which
reel trusts (upstream_trusted_ca). reel intercepts the TLS each session
starts mid-stream: curl trusts reel's CA; the tunnel's flow records the
plaintext before and after the switch (EHLO twice, the mail's body), a
ServerConn with the server's TLS and the client's TLS with reel. A server
that refuses STARTTLS leaves the session in the clear; with
intercept_starttls off the TLS is relayed as it comes (curl then needs to
trust the server's own CA), its bytes recorded encrypted. FTP's AUTH TLS
(python3's ftplib as the client) and PostgreSQL's SSLRequest (a python3
client speaking its bytes) are intercepted the same way.
"""
import base64
import ftplib
import os
import socket
import socketserver
import ssl
import tempfile
import threading
import time
import unittest

from proxyenv import TMPBASE, Origin, Reel, main, run, stop_class

MAIL = b"Subject: hello\r\n\r\nthe body of the mail\r\n"


class MailHandler(socketserver.StreamRequestHandler):
    """One session of the protocol the server was made for, STARTTLS
    included (unless the server refuses it), the rest answered OK."""

    def setup(self):
        super().setup()
        self.proto = self.server.proto
        self.tls = False

    def send(self, text):
        self.wfile.write(text.encode())
        self.wfile.flush()

    def starttls(self):
        sock = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.connection = self.request = sock
        self.rfile = sock.makefile("rb")
        self.wfile = sock.makefile("wb")
        self.tls = True

    def finish(self):
        super().finish()
        if self.tls:
            # TLS's own end both ways (the server accepted the socket, not
            # this one): closed with reel's close_notify unread, it would
            # reset the connection, which reel records as the server's reset
            try:
                self.connection.settimeout(5)
                self.connection.unwrap()
            except (OSError, ValueError):
                pass
            self.connection.close()

    def handle(self):
        self.tls = False
        if self.proto == "postgres":
            return self.handle_postgres()
        self.send({"smtp": "220 mail.test ESMTP\r\n", "imap": "* OK mail.test ready\r\n",
                   "pop3": "+OK mail.test ready\r\n", "ftp": "220 ftp.test ready\r\n"}
                  [self.proto])
        while True:
            line = self.rfile.readline()
            if not line:
                return
            words = line.decode().strip().split(" ")
            if not getattr(self, "handle_" + self.proto)(words):
                return

    def handle_smtp(self, w):
        cmd = w[0].upper()
        if cmd == "EHLO":
            caps = "" if self.tls or self.server.refuse else "250-STARTTLS\r\n"
            self.send("250-mail.test%s\r\n%s250 8BITMIME\r\n" % (" tls" if self.tls else "", caps))
        elif cmd == "STARTTLS":
            self.send("220 2.0.0 Ready to start TLS\r\n")
            self.starttls()
        elif cmd == "DATA":
            self.send("354 go on\r\n")
            while self.rfile.readline() not in (b".\r\n", b""):
                pass
            self.send("250 queued\r\n")
        elif cmd == "QUIT":
            self.send("221 bye\r\n")
            return False
        else:
            self.send("250 ok\r\n")
        return True

    def handle_imap(self, w):
        tag, cmd = w[0], w[1].upper() if len(w) > 1 else ""
        if cmd == "CAPABILITY":
            caps = "" if self.tls else " STARTTLS"
            self.send("* CAPABILITY IMAP4rev1%s\r\n%s OK done\r\n" % (caps, tag))
        elif cmd == "STARTTLS":
            self.send("%s OK begin TLS\r\n" % tag)
            self.starttls()
        elif cmd == "LIST":
            self.send('* LIST () "/" INBOX%s\r\n%s OK done\r\n'
                      % ("-over-tls" if self.tls else "", tag))
        elif cmd == "LOGOUT":
            self.send("* BYE\r\n%s OK bye\r\n" % tag)
            return False
        else:
            self.send("%s OK done\r\n" % tag)
        return True

    def handle_ftp(self, w):
        cmd = w[0].upper()
        if cmd == "AUTH":
            self.send("234 AUTH %s ok\r\n" % w[1])
            self.starttls()
        elif cmd == "SYST":
            self.send("215 UNIX Type: L8 %s\r\n" % ("(over tls)" if self.tls else ""))
        elif cmd == "QUIT":
            self.send("221 bye\r\n")
            return False
        else:
            self.send("200 ok\r\n")
        return True

    def handle_postgres(self):
        """PostgreSQL's SSLRequest, 'S', TLS; then the client's bytes
        echoed after a marker, once."""
        if self.rfile.read(8) != b"\0\0\0\x08\x04\xd2\x16\x2f":
            return
        self.wfile.write(b"S")
        self.wfile.flush()
        self.starttls()
        got = self.rfile.read1(100)
        self.wfile.write(b"server got: " + got)
        self.wfile.flush()

    def handle_pop3(self, w):
        cmd = w[0].upper()
        if cmd == "CAPA":
            self.send("+OK\r\nUSER\r\n%s.\r\n" % ("" if self.tls else "STLS\r\n"))
        elif cmd == "STLS":
            self.send("+OK begin TLS\r\n")
            self.starttls()
        elif cmd == "LIST":
            self.send("+OK\r\n1 %d\r\n.\r\n" % (4242 if self.tls else 1))
        elif cmd == "QUIT":
            self.send("+OK bye\r\n")
            return False
        else:
            self.send("+OK\r\n")
        return True


class MailServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proto, cert, key, refuse=False):
        super().__init__(("127.0.0.1", 0), MailHandler)
        self.proto, self.refuse = proto, refuse
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(cert, key)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass  # (a handshake reel refused: the test looks at what reel recorded)

    def stop(self):
        self.shutdown()
        self.server_close()


class StartTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="starttls.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        o = cls.origin
        cls.reel = Reel(cls.root, "st", "upstream_trusted_ca=" + o.ca)
        cert, key = os.path.join(o.root, "server.pem"), os.path.join(o.root, "server.key")
        cls.servers = {p: MailServer(p, cert, key)
                       for p in ("smtp", "imap", "pop3", "ftp", "postgres")}
        cls.refusing = MailServer("smtp", cert, key, refuse=True)
        cls.plain = MailServer("smtp", cert, key)  # for intercept_starttls off
        cls.quitter = MailServer("smtp", cert, key)  # for a client that ends after the yes
        # a certificate no CA reel trusts vouches for
        own = os.path.join(cls.root, "self")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", own + ".key", "-out",
             own + ".pem", "-days", "2", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost"])
        cls.untrusted = MailServer("smtp", own + ".pem", own + ".key")
        cls.mail = os.path.join(cls.root, "mail.txt")
        with open(cls.mail, "wb") as f:
            f.write(MAIL)

    @classmethod
    def tearDownClass(cls):
        for s in list(cls.servers.values()) + [cls.refusing, cls.plain, cls.untrusted,
                                               cls.quitter]:
            s.stop()
        stop_class(cls)

    def curl(self, url, *args, ca=None, check=True):
        return run(["curl", "-sS", "--max-time", "20", "--proxytunnel", "-x", self.reel.proxy,
                    "--ssl-reqd", "--cacert", ca or self.reel.ca] + list(args) + [url],
                   check=check)

    def tunnel(self, port):
        """The one ended tunnel flow to port, as reel flow --json has it."""
        fl = self.reel.wait_flows(1, "~u ^tcp://localhost:%d/$" % port)
        self.assertEqual(len(fl), 1, fl)
        return self.reel.flow(fl[0]["id"])

    def messages(self, full):
        return [(m["from_client"], base64.b64decode(m["data_b64"])) for m in full["messages"]]

    def sent(self, full, from_client):
        return b"".join(d for c, d in self.messages(full) if c == from_client)

    def intercepted(self, port):
        full = self.tunnel(port)
        self.assertEqual(full["state"], "complete", full)
        sc = full["server_conn"]
        self.assertEqual((sc["tls_version"] or "")[:4], "TLSv", full)
        self.assertEqual(sc["sni"], "localhost")
        self.assertIsNone(sc["verify_error"])
        self.assertIsNotNone(full["client_tls"], full)
        # no TLS record in the messages: the plaintext of both sides
        for _, d in self.messages(full):
            self.assertNotEqual(d[:1], b"\x16", full["messages"])
        return full

    def test_smtp(self):
        port = self.servers["smtp"].port
        self.curl("smtp://localhost:%d" % port, "--mail-from", "a@test", "--mail-rcpt", "b@test",
                  "-T", self.mail)
        full = self.intercepted(port)
        client, server = self.sent(full, True), self.sent(full, False)
        self.assertIn(b"STARTTLS\r\n", client)
        self.assertEqual(client.count(b"EHLO"), 2, client)  # before the switch and after
        self.assertIn(b"the body of the mail", client)
        self.assertIn(b"220 2.0.0 Ready to start TLS\r\n", server)
        self.assertIn(b"250-mail.test tls\r\n", server)  # said over TLS only
        # the flow's TLS times are the handshake's, not the session's before it
        self.assertLess(full["timings"]["ssl_us"], 2e6)
        self.assertLessEqual(full["server_conn"]["ssl_us"], full["timings"]["ssl_us"])

    def test_imap_and_pop3(self):
        out = self.curl("imap://localhost:%d/" % self.servers["imap"].port, "-u", "u:p")
        self.assertIn(b"INBOX-over-tls", out.stdout)
        full = self.intercepted(self.servers["imap"].port)
        self.assertRegex(self.sent(full, True), rb"\nA\d+ STARTTLS\r\n")
        self.assertIn(b"INBOX-over-tls", self.sent(full, False))
        out = self.curl("pop3://localhost:%d/" % self.servers["pop3"].port, "-u", "u:p")
        self.assertIn(b"1 4242", out.stdout)
        full = self.intercepted(self.servers["pop3"].port)
        self.assertIn(b"STLS\r\n", self.sent(full, True))
        self.assertIn(b"1 4242", self.sent(full, False))

    def tunnel_socket(self, port):
        """A socket through reel's CONNECT tunnel to localhost:port."""
        s = socket.create_connection(("127.0.0.1", self.reel.port))
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        self.assertIn(b" 200 ", head)
        return s

    def test_ftp_and_postgres(self):
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        # FTP's AUTH TLS (RFC 4217), python3's ftplib as the client
        port = self.servers["ftp"].port
        ftp = ftplib.FTP_TLS(context=ctx)
        ftp.host, ftp.port = "localhost", port
        ftp.sock = self.tunnel_socket(port)
        ftp.af = ftp.sock.family
        ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
        ftp.welcome = ftp.getresp()
        ftp.auth()
        self.assertEqual(ftp.sendcmd("SYST"), "215 UNIX Type: L8 (over tls)")
        ftp.quit()
        full = self.intercepted(port)
        self.assertIn(b"AUTH TLS\r\n", self.sent(full, True))
        self.assertIn(b"SYST\r\n", self.sent(full, True))
        self.assertIn(b"(over tls)", self.sent(full, False))
        # PostgreSQL's SSLRequest: 8 bytes, then 'S'
        port = self.servers["postgres"].port
        s = self.tunnel_socket(port)
        s.sendall(b"\0\0\0\x08\x04\xd2\x16\x2f")
        self.assertEqual(s.recv(1), b"S")
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.sendall(b"startup message")
        self.assertEqual(t.recv(100), b"server got: startup message")
        t.close()
        full = self.intercepted(port)
        self.assertEqual(self.messages(full), [(True, b"\0\0\0\x08\x04\xd2\x16\x2f"),
                                               (False, b"S"), (True, b"startup message"),
                                               (False, b"server got: startup message")])

    def test_server_not_trusted(self):
        # reel's TLS to the server fails its check: the tunnel ends saying so
        port = self.untrusted.port
        out = self.curl("smtp://localhost:%d" % port, "--mail-from", "a@test", "--mail-rcpt",
                        "b@test", "-T", self.mail, check=False)
        self.assertNotEqual(out.returncode, 0)
        full = self.tunnel(port)
        self.assertEqual(full["state"], "error", full)
        self.assertIn("certificate", full["error"])
        self.assertEqual(full["server_conn"]["verify_error"], "self-signed certificate")
        self.assertNotIn(b"the body of the mail", self.sent(full, True))

    def test_client_ends_before_its_tls(self):
        # the server said yes; the client sends the start of a ClientHello
        # and ends its side: reel stops holding it, the bytes go on
        port = self.quitter.port
        c = socket.create_connection(("127.0.0.1", self.reel.port))
        try:
            c.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
            self.assertIn(b" 200 ", c.recv(4096))
            f = c.makefile("rb")
            self.assertEqual(f.readline(), b"220 mail.test ESMTP\r\n")
            c.sendall(b"STARTTLS\r\n")
            self.assertEqual(f.readline(), b"220 2.0.0 Ready to start TLS\r\n")
            c.sendall(b"\x16\x03\x01\x02\x00\x01")
            time.sleep(0.3)
            c.shutdown(socket.SHUT_WR)
            f.read()  # until the server's end comes through
        finally:
            c.close()
        full = self.tunnel(port)
        self.assertEqual(self.sent(full, True), b"STARTTLS\r\n\x16\x03\x01\x02\x00\x01")
        self.assertIsNone(full["server_conn"])

    def test_refused_and_off(self):
        # a server without STARTTLS: curl gives up (--ssl-reqd), all in the clear
        port = self.refusing.port
        out = self.curl("smtp://localhost:%d" % port, "--mail-from", "a@test", "--mail-rcpt",
                        "b@test", "-T", self.mail, check=False)
        self.assertNotEqual(out.returncode, 0)
        full = self.tunnel(port)
        self.assertIsNone(full["server_conn"])
        self.assertNotIn(b"STARTTLS", self.sent(full, True))
        # off: relayed as it comes; curl must trust the server's own CA
        self.reel.set_config("set", "intercept_starttls", "false")
        try:
            port = self.plain.port
            self.curl("smtp://localhost:%d" % port, "--mail-from", "off@test", "--mail-rcpt",
                      "b@test", "-T", self.mail, ca=self.origin.ca)
            full = self.tunnel(port)
            self.assertIsNone(full["server_conn"])
            self.assertIsNone(full["client_tls"])
            client = self.sent(full, True)
            self.assertIn(b"STARTTLS\r\n", client)
            self.assertNotIn(b"the body of the mail", client)  # encrypted
            self.assertIn(b"\x16\x03", client)  # the ClientHello, as it came
        finally:
            self.reel.set_config("set", "intercept_starttls", "true")


if __name__ == "__main__":
    main()
