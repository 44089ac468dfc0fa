#!/usr/bin/python3
"""Shutdown and close paths under valgrind.

Debian's libuv is not built with AddressSanitizer, so a use-after-free of
memory libuv still holds (a handle freed before its close callback ran) is
invisible to the sanitizer build. Definite leaks fail it too. Here `reel record` runs under memcheck
with connections in every state at Ctrl-C: idle keep-alive, half a request
head, a response being relayed from the origin, an intercepted TLS tunnel,
a raw tunnel; tunnels through upstream proxies (SOCKS5 and HTTP) open or
waiting on a silent one; reel as a reverse proxy. Two workers
(`workers`), so that the connections are on both loops and the second's
thread ends with them. Any invalid read or write fails the test. Skipped in the
sanitizer build (ASan and valgrind do not mix).
"""
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from proxyenv import (REEL, SANITIZED, TMPBASE, Origin, free_port, main, wait_config_applied,
                      wait_listening)


class ValgrindBase(unittest.TestCase):
    """An nginx origin, homes of their own, and `reel record` under memcheck
    (start, with the --set assignments each test needs)."""

    def setUp(self):
        os.makedirs(TMPBASE, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="valgrind.", dir=TMPBASE)
        self.origin = Origin(os.path.join(self.root, "origin"), h2=True)
        self.env = dict(os.environ, REEL_HOME=self.root + "/home",
                        XDG_DATA_HOME=self.root + "/data", XDG_CONFIG_HOME=self.root + "/config")
        self.log = open(os.path.join(self.root, "reel.log"), "w+")
        self.proc = None

    def start(self, *sets):
        args = []
        for s in ("upstream_trusted_ca=" + self.origin.ca,) + sets:
            args += ["--set", s]
        self.proc = subprocess.Popen(
            ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
             "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
             REEL, "record", "--listen", "127.0.0.1:0"] + args + ["vg"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None
        for _ in range(600):
            self.log.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.assertIsNotNone(self.port, self.output())

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.origin.stop()
        self.log.close()

    def assert_clean(self, code):
        """reel exited 0 and valgrind saw no invalid access and no definite leak."""
        out = self.output()
        self.assertNotIn("Invalid read", out)
        self.assertNotIn("Invalid write", out)
        self.assertNotIn("definitely lost", out)
        self.assertEqual(code, 0, out[-4000:])

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def conn(self, data=b""):
        s = socket.create_connection(("127.0.0.1", self.port), 10)
        if data:
            s.sendall(data)
        return s

    def client_tls(self):
        """A TLS client context trusting reel's CA."""
        return ssl.create_default_context(cafile=os.path.join(self.root, "data", "reel",
                                                              "reel-ca.pem"))

    def tls_tunnel(self):
        """An intercepted TLS tunnel to the origin with a request answered
        in it, left open."""
        t = self.conn(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n"
                      % self.origin.https_port)
        self.assertIn(b"200", t.recv(4096))
        tls = self.client_tls().wrap_socket(t, server_hostname="localhost")
        tls.sendall(b"GET /100b HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertIn(b"200 OK", tls.recv(4096))
        return tls


@unittest.skipIf(SANITIZED, "ASan binaries do not run under valgrind")
class ValgrindShutdown(ValgrindBase):
    def setUp(self):
        super().setUp()
        self.start("workers=2")

    def test_ctrl_c_with_connections_in_every_state(self):
        o = self.origin
        socks = []
        # a finished exchange, then idle on keep-alive
        s = self.conn(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % o.url("/100b").encode())
        self.assertIn(b"200 OK", s.recv(4096))
        socks.append(s)
        # a host that does not resolve: 502, and the upstream peer that never
        # got a socket is freed (it leaked, with its queued request)
        s = self.conn(b"GET http://nonexistent.invalid/x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertIn(b"502", s.recv(4096))
        socks.append(s)
        # half a request head
        socks.append(self.conn(b"GET http://127.0.0.1:1/ HT"))
        # a large response being relayed to a client that does not read
        socks.append(self.conn(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % o.url("/big").encode()))
        # an intercepted TLS tunnel with a request in it
        socks.append(self.tls_tunnel())
        # a raw tunnel (not TLS, not HTTP) to the origin's port
        r = self.conn(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.http_port)
        self.assertIn(b"200", r.recv(4096))
        r.sendall(b"\x00\x01\x02 not http")
        socks.append(r)
        # SOCKS5: a client in the middle of its greeting; one whose raw
        # tunnel to the origin is open; one refused (BIND), closed by reel
        socks.append(self.conn(b"\x05\x02\x00"))
        v = self.conn(b"\x05\x01\x00")
        self.assertEqual(v.recv(2), b"\x05\x00")
        v.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + o.http_port.to_bytes(2, "big"))
        self.assertEqual(v.recv(10)[:2], b"\x05\x00")
        v.sendall(b"\x00\x01\x02 not http either")
        socks.append(v)
        b = self.conn(b"\x05\x01\x00")
        self.assertEqual(b.recv(2), b"\x05\x00")
        b.sendall(b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50")
        self.assertEqual(b.recv(10)[:2], b"\x05\x07")
        socks.append(b)
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        for s in socks:
            s.close()
        self.assert_clean(code)
        # the SOCKS5 client that never finished its greeting: a flow, ended
        # by the shutdown
        flows = json.loads(subprocess.run([REEL, "flows", "vg", "--json"], env=self.env,
                                          capture_output=True, check=True).stdout)
        self.assertTrue(any(f["error"] == "the proxy shut down during the SOCKS5 negotiation, "
                            "before reel had its greeting whole" for f in flows),
                        [f["error"] for f in flows])

    def test_cut_response_delivered_then_reset_and_waiting_at_ctrl_c(self):
        # a body read until the close, then the origin's reset: reel
        # delivers what it still had queued for the client, then resets it
        # (SO_LINGER 0), its flow's end held meanwhile. One client reads it
        # all and sees the reset; the other reads nothing, so its
        # connection still waits at Ctrl-C, which ends it at once.
        import struct
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(60)

        def serve():
            for _ in range(2):
                try:
                    c, _ = srv.accept()
                except OSError:
                    return
                c.settimeout(60)
                data = b""
                while b"\r\n\r\n" not in data:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
                try:
                    # less than reel queues before it stops reading the
                    # origin: all read before the reset, which then comes
                    # as one (a reset that finds bytes unread can end the
                    # read as a clean end on loopback)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n" + b"y" * (512 << 10))
                    time.sleep(1)
                except OSError:
                    pass
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        port = srv.getsockname()[1]
        try:
            def client(path):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(60)
                s.connect(("127.0.0.1", self.port))
                s.sendall(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: a\r\n\r\n"
                          % (port, path))
                return s
            reader = client(b"/cut-read")
            time.sleep(2.5)  # the cut comes while the body waits for it
            got, how = 0, "eof"
            try:
                while True:
                    d = reader.recv(65536)
                    if not d:
                        break
                    got += len(d)
            except ConnectionResetError:
                how = "reset"
            reader.close()
            self.assertEqual(how, "reset")
            stuck = client(b"/cut-stuck")
            time.sleep(2.5)  # the origin's whole body and its reset reached reel
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
            stuck.close()
        finally:
            srv.close()
            t.join(10)
        self.assert_clean(code)

    def h2c(self):
        import h2.config
        import h2.connection
        s = self.conn()
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        return s, c

    def h2_get(self, s, c, path, end=True, scheme="http", auth=None):
        sid = c.get_next_available_stream_id()
        auth = auth or "127.0.0.1:%d" % self.origin.http_port
        c.send_headers(sid, [(":method", "GET"), (":scheme", scheme), (":authority", auth),
                             (":path", path)], end_stream=end)
        s.sendall(c.data_to_send())
        return sid

    @staticmethod
    def h2_wait_end(s, c, sid):
        import h2.events
        s.settimeout(30)
        while True:
            for ev in c.receive_data(s.recv(65536)):
                if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    s.sendall(c.data_to_send())
                    return
            s.sendall(c.data_to_send())

    def test_h2_lanes_at_close_and_ctrl_c(self):
        # a stream answered (its lane stays idle), a reset one, a large one
        # unread, then the client vanishes: the front and its lanes go
        s, c = self.h2c()
        self.h2_wait_end(s, c, self.h2_get(s, c, "/100b"))
        rst = self.h2_get(s, c, "/big")
        c.reset_stream(rst, 8)
        s.sendall(c.data_to_send())
        self.h2_get(s, c, "/big")
        time.sleep(1.0)
        s.close()
        # another h2 connection with a stream running at Ctrl-C
        s2, c2 = self.h2c()
        self.h2_get(s2, c2, "/big")
        time.sleep(1.5)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        s2.close()
        self.assert_clean(code)

    def test_h2_linger_after_goaway_and_tunnel_waiting_at_ctrl_c(self):
        # an h2 connection reel answered with GOAWAY PROTOCOL_ERROR (a
        # WINDOW_UPDATE of 0) lingers, reading on to record the streams the
        # client opens after it; one such stream later, then Ctrl-C while
        # it lingers. Beside it, a raw tunnel (neither TLS nor HTTP) whose
        # origin sent 3 MiB and closed: its flow waits for the bytes still
        # queued for a client that does not read.
        import struct
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def burst():
            a, _ = srv.accept()
            a.recv(100)
            a.sendall(b"\x01" * (3 << 20))
            a.close()
        th = threading.Thread(target=burst, daemon=True)
        th.start()
        s, c = self.h2c()
        self.h2_wait_end(s, c, self.h2_get(s, c, "/100b"))
        s.sendall(struct.pack(">I", 4)[1:] + b"\x08\x00" + struct.pack(">I", 0) +
                  struct.pack(">I", 0))
        time.sleep(0.5)
        self.h2_get(s, c, "/100b")
        t = socket.socket()
        t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        t.connect(("127.0.0.1", self.port))
        t.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % srv.getsockname()[1])
        self.assertIn(b"200", t.recv(100))
        t.sendall(b"\x00\x01\x02 not http")
        th.join(30)
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        s.close()
        t.close()
        srv.close()
        self.assert_clean(code)
        # the paths this test is for were taken
        out = subprocess.run([REEL, "flows", "vg"], env=self.env, capture_output=True,
                             text=True).stdout
        self.assertIn("after reel's GOAWAY", out)
        self.assertIn("before the client received the whole tunnel", out)

    def h2_tunnel(self, port=None):
        import h2.config
        import h2.connection
        t = self.conn(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" %
                      (port or self.origin.https_port))
        self.assertIn(b"200", t.recv(4096))
        ctx = ssl.create_default_context(
            cafile=os.path.join(self.root, "data", "reel", "reel-ca.pem"))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        s = ctx.wrap_socket(t, server_hostname="localhost")
        self.assertEqual(s.selected_alpn_protocol(), "h2")
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        return s, c

    def h2_tunnel_get(self, s, c, path):
        return self.h2_get(s, c, path, scheme="https",
                           auth="localhost:%d" % self.origin.https_port)

    def test_h2_websocket_streams_at_close_and_ctrl_c(self):
        # WebSockets as extended CONNECT streams of the shared session to an
        # h2-only origin (RFC 8441, core/h2up.c): one whose client vanishes
        # mid-conversation (its stream is reset toward the origin), one open
        # at Ctrl-C
        from test_http2_upstream import H2Origin
        o = H2Origin(os.path.join(self.root, "origin", "server.pem"),
                     os.path.join(self.root, "origin", "server.key"))
        auth = "localhost:%d" % o.port
        try:
            def ws(s, c):
                sid = c.get_next_available_stream_id()
                c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                     (":scheme", "https"), (":path", "/t/ws"),
                                     (":authority", auth), ("sec-websocket-version", "13")])
                key = b"\x01\x02\x03\x04"
                c.send_data(sid, b"\x81\x82" + key + bytes(b ^ key[i] for i, b in enumerate(b"hi")))
                s.sendall(c.data_to_send())
                return sid
            s, c = self.h2_tunnel(o.port)
            self.h2_wait_end(s, c, self.h2_get(s, c, "/t/plain?vg", scheme="https", auth=auth))
            ws(s, c)
            time.sleep(1.5)
            s.close()
            s2, c2 = self.h2_tunnel(o.port)
            ws(s2, c2)
            time.sleep(1.5)
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
            s2.close()
            self.assert_clean(code)
        finally:
            o.stop()
        self.assertTrue(any(r["headers"].get(":protocol") == "websocket" for r in o.requests))

    def test_websocket_linger_after_a_bad_frame_and_ctrl_c(self):
        # a server breaks the protocol (a reserved opcode): reel sends both
        # sides a Close, half-closes them and reads each to its end
        # (core/tunnel.c ws_fail): one pair that closes, so the connection
        # ends; one whose server keeps its socket open and sends on,
        # lingering at Ctrl-C
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        held = []

        def serve():
            while True:
                try:
                    t, _ = lsock.accept()
                except OSError:
                    return
                head = b""
                while b"\r\n\r\n" not in head:
                    head += t.recv(1)
                t.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                          b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x83\x00")
                if b"/stay" in head:
                    t.sendall(b"\x82\x05after")  # read and dropped
                    held.append(t)
                    continue
                while t.recv(4096):
                    pass
                t.close()
        import threading
        threading.Thread(target=serve, daemon=True).start()

        def ws(path):
            c = self.conn(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: x\r\n"
                          b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n" % (lsock.getsockname()[1], path))
            c.settimeout(20)
            got = b""
            while b"\x88" not in got.partition(b"\r\n\r\n")[2]:
                d = c.recv(4096)
                self.assertTrue(d, got)
                got += d
            return c, got
        try:
            c, got = ws(b"/close")
            self.assertIn(b" 101 ", got)
            while c.recv(4096):  # reel's end after its Close
                pass
            c.close()
            c2, _ = ws(b"/stay")
            time.sleep(1.5)
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
            c2.close()
        finally:
            lsock.close()
            for t in held:
                t.close()
        self.assert_clean(code)
        rows = json.loads(subprocess.run([REEL, "flows", "vg", "--json"], env=self.env,
                                         check=True, capture_output=True).stdout)
        self.assertEqual([r["error"] for r in rows if "/close" in r["url"] or "/stay" in r["url"]],
                         ["the server sent an invalid WebSocket frame: reserved opcode "
                          "(closed with 1002)"] * 2, rows)

    def test_h2_upstream_sessions_at_close_and_ctrl_c(self):
        # streams over the shared HTTP/2 session to the origin: one answered,
        # one large and unread when its client goes (its stream is reset
        # toward the origin), one running at Ctrl-C (the session closes
        # with it, after GOAWAY)
        s, c = self.h2_tunnel()
        self.h2_wait_end(s, c, self.h2_tunnel_get(s, c, "/100b"))
        self.h2_tunnel_get(s, c, "/big")
        time.sleep(1.0)
        s.close()
        s2, c2 = self.h2_tunnel()
        self.h2_tunnel_get(s2, c2, "/big")
        time.sleep(1.5)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        s2.close()
        self.assert_clean(code)

    def test_alpn_probe_at_close_and_ctrl_c(self):
        # a ClientHello offering h2 makes reel ask the origin first: one
        # origin that never answers the TLS handshake (the probe is still
        # running at Ctrl-C), one that refuses, one client gone mid-probe
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        socks = []
        try:
            for port in (silent.getsockname()[1], 1, silent.getsockname()[1]):
                t = self.conn(b"CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
                self.assertIn(b"200", t.recv(4096))
                ctx = ssl.create_default_context(
                    cafile=os.path.join(self.root, "data", "reel", "reel-ca.pem"))
                ctx.set_alpn_protocols(["h2", "http/1.1"])
                tls = ctx.wrap_socket(t, server_hostname="localhost",
                                      do_handshake_on_connect=False)
                tls.setblocking(False)
                try:
                    tls.do_handshake()  # sends the ClientHello
                except ssl.SSLWantReadError:
                    pass
                socks.append(tls)
            time.sleep(1.0)
            socks.pop().close()  # gone while its probe runs
            time.sleep(0.5)
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
        finally:
            for s in socks:
                s.close()
            silent.close()
        self.assert_clean(code)

    def test_ctrl_c_with_no_connection(self):
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        out = self.output()
        self.assertEqual(code, 0, out[-4000:])


@unittest.skipIf(SANITIZED, "ASan binaries do not run under valgrind")
class ValgrindProxyModes(ValgrindBase):
    """The tunnels reel asks an upstream proxy for (SOCKS5's handshake and
    HTTP's CONNECT, each waiting on a silent proxy, and open ones through
    microsocks), and reel as a reverse proxy, at Ctrl-C."""

    def silent(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        return s

    def test_upstream_tunnels_at_ctrl_c(self):
        o = self.origin
        ms_port = free_port()
        ms = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(ms_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        quiet = self.silent()
        socks = []
        try:
            wait_listening(ms_port)
            self.start("upstream_proxy=socks5://127.0.0.1:%d" % ms_port, "workers=1")
            # through microsocks: a request answered (its tunnel kept
            # alive), a TLS tunnel with one in it
            s = self.conn(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % o.url("/100b").encode())
            self.assertIn(b"200 OK", s.recv(4096))
            socks.append(s)
            socks.append(self.tls_tunnel())
            # a SOCKS5 proxy that never answers the greeting, then an HTTP
            # one that never answers CONNECT (or a forwarded request)
            for via in ("socks5://127.0.0.1:%d" % quiet.getsockname()[1],
                        "127.0.0.1:%d" % quiet.getsockname()[1]):
                subprocess.run([REEL, "config", "vg", "set", "upstream_proxy", via],
                               env=self.env, check=True, capture_output=True)
                wait_config_applied(self.output, lambda *a: subprocess.run(
                    [REEL] + list(a), env=self.env, capture_output=True).stdout, "vg")
                socks.append(self.conn(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
                                       % o.url("/100b?stuck").encode()))
                socks.append(self.conn(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n"
                                       % o.url("/100b?stuck-tls", https=True).encode()))
            time.sleep(1.0)
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
        finally:
            for s in socks:
                s.close()
            quiet.close()
            ms.terminate()
            ms.wait(10)
        self.assert_clean(code)

    def test_reverse_at_ctrl_c(self):
        self.start("reverse_to=https://localhost:%d" % self.origin.https_port, "workers=2")
        socks = []
        # a plain client answered and kept alive; a TLS one with a request
        # answered; one in the middle of its ClientHello; a raw one relayed;
        # one silent (sniffing)
        s = self.conn(b"GET /100b HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertIn(b"200 OK", s.recv(4096))
        socks.append(s)
        tls = self.client_tls().wrap_socket(self.conn(), server_hostname="localhost")
        tls.sendall(b"GET /100b HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertIn(b"200 OK", tls.recv(4096))
        socks.append(tls)
        socks.append(self.conn(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
        socks.append(self.conn(b"\x00\x01\x02 not http"))
        socks.append(self.conn())
        time.sleep(1.0)
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        for s in socks:
            s.close()
        self.assert_clean(code)


@unittest.skipIf(SANITIZED, "ASan binaries do not run under valgrind")
class ValgrindWebReplay(unittest.TestCase):
    """`reel record --web`: replays into the live session run on libuv's
    thread pool; at Ctrl-C one is running for a client that waits and one
    for a client that left, after one that ended unanswered (its client
    gone) and one answered. Their jobs outlive the connections and the
    server's stop: no invalid access, no leak."""

    TOKEN = "0123456789abcdef0123456789abcdef"

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="valgrind-web.", dir=TMPBASE)
        self.origin = Origin(os.path.join(self.root, "origin"))
        self.env = dict(os.environ, REEL_HOME=self.root + "/home",
                        XDG_DATA_HOME=self.root + "/data", XDG_CONFIG_HOME=self.root + "/config",
                        REEL_WEB_TOKEN=self.TOKEN, REEL_WEB_REPLAY_TIMEOUT="2")
        self.log = open(os.path.join(self.root, "reel.log"), "w+")
        self.proc = subprocess.Popen(
            ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
             "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
             REEL, "record", "--listen", "127.0.0.1:0", "--web=127.0.0.1:0", "vg"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = self.web = None
        for _ in range(600):
            self.log.seek(0)
            text = self.log.read()
            m1 = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            m2 = re.search(r"web UI on http://127\.0\.0\.1:(\d+)/", text)
            if m1 and m2:
                self.port, self.web = int(m1.group(1)), int(m2.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.assertIsNotNone(self.web, self.output())

    def tearDown(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.origin.stop()
        self.log.close()

    def output(self):
        self.log.seek(0)
        return self.log.read()

    def set_config(self, name, value):
        subprocess.run([REEL, "config", "vg", "set", name, value], env=self.env, check=True,
                       capture_output=True)
        wait_config_applied(self.output, lambda *a: subprocess.run(
            [REEL] + list(a), env=self.env, check=True, capture_output=True).stdout, "vg", timeout=60)

    def get(self, url):
        s = socket.create_connection(("127.0.0.1", self.port), 30)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % url.encode())
        while s.recv(65536):
            pass
        s.close()

    def replay(self, fid):
        s = socket.create_connection(("127.0.0.1", self.web), 60)
        s.sendall(b"POST /api/sessions/vg/flows/%d/replay HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Authorization: Bearer %s\r\nContent-Length: 0\r\n\r\n"
                  % (fid, self.web, self.TOKEN.encode()))
        return s

    def test_live_replays_at_ctrl_c(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        socks = []
        try:
            self.get(self.origin.url("/100b"))  # flow 1
            self.set_config("upstream_timeout", "1")
            self.get("http://127.0.0.1:%d/silent" % silent.getsockname()[1])  # flow 2
            self.set_config("upstream_timeout", "60")
            s = self.replay(1)
            self.assertIn(b"200 OK", s.recv(4096))
            s.close()
            self.replay(2).close()  # its client gone; it ends by REEL_WEB_REPLAY_TIMEOUT
            time.sleep(4)
            socks.append(self.replay(2))  # running at Ctrl-C, its client waiting
            self.replay(2).close()        # running at Ctrl-C, its client gone
            time.sleep(1.0)
            self.proc.send_signal(signal.SIGINT)
            code = self.proc.wait(120)
        finally:
            for s in socks:
                s.close()
            silent.close()
        out = self.output()
        self.assertNotIn("Invalid read", out)
        self.assertNotIn("Invalid write", out)
        self.assertNotIn("definitely lost", out)
        self.assertEqual(code, 0, out[-4000:])
        rows = json.loads(subprocess.run([REEL, "flows", "vg", "--json", "~replay"], env=self.env,
                                         check=True, capture_output=True).stdout)
        self.assertEqual(sorted(r["replay_of"] for r in rows), [1, 2, 2, 2], rows)


if __name__ == "__main__":
    main()
