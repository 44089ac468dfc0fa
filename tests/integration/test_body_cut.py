"""A response body read until the origin closes (no Content-Length, not
chunked) is whole only if the close is a clean one (RFC 9112 9.8): over
TLS, the origin's close_notify; over TCP, its FIN. Any other end (a bare
TCP close under TLS, a reset) cuts it short: the flow ends as cut short,
and reel resets the client connection, since a clean close toward the
client would tell it that it has the whole body. Responses whose framing
says where they end stay whole without close_notify (many servers skip
it). Origins are raw Python sockets; clients, raw sockets and Python ssl."""
import os
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxyenv import TMPBASE, Reel, connect, main, read_all  # noqa: E402
from test_tls_tcp import certs, read_until  # noqa: E402

CUT_TLS = "the origin closed the TLS connection without close_notify"


class OneShot:
    """An origin on 127.0.0.1 for one connection, in a thread: it reads a
    request head, sends `answer`, then ends as `end` says: "notify"
    (close_notify, then close), "close" (a bare close: under TLS without
    close_notify) or "reset" (SO_LINGER 0: a TCP reset); or hands the
    connection to `handler`, which does all that itself."""

    def __init__(self, answer, end, cert=None, handler=None):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.srv.settimeout(15)
        self.port = self.srv.getsockname()[1]
        ctx = None
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            ctx.set_alpn_protocols(["http/1.1"])

        def run_once():
            raw, _ = self.srv.accept()
            raw.settimeout(15)
            c = ctx.wrap_socket(raw, server_side=True) if ctx else raw
            if handler:
                handler(c)
                return
            read_until(c, b"\r\n\r\n")
            c.sendall(answer)
            time.sleep(0.3)  # the answer is relayed before the end comes
            if end == "notify":
                c.unwrap().close()
                return
            if end == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:  # (SSLSocket.shutdown would not do: it drops the TLS first)
                socket.socket.shutdown(c, socket.SHUT_RDWR)
            c.close()

        self.thread = threading.Thread(target=run_once, daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(20)
        self.srv.close()


def read_tls(s):
    """Everything until the end; returns (bytes, how it ended): "notify"
    (close_notify), "no close_notify" (a bare TCP close) or "reset"."""
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return out, "notify"
            out += d
    except ConnectionResetError:
        return out, "reset"
    except ssl.SSLError as e:  # SSLEOFError, or UNEXPECTED_EOF_WHILE_READING
        if isinstance(e, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(e):
            return out, "no close_notify"
        raise


class BodyCutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="bodycut.", dir=TMPBASE)
        cls.ca, cls.leaf, _ = certs(cls.root)
        cls.reel = Reel(cls.root, "cut", "upstream_trusted_ca=" + cls.ca)

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def setUp(self):
        # an earlier test's origin may have had the same ephemeral port:
        # only flows recorded since this test began are its own
        self.before = max([f["id"] for f in self.reel.flows()] or [0])

    def flow(self, port):
        deadline = time.time() + 10
        while True:
            fl = [f for f in self.reel.flows("~u 127.0.0.1:%d" % port) if f["id"] > self.before]
            if (fl and fl[0]["state"] != "open") or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(len(fl), 1, fl)
        self.assertNotEqual(fl[0]["state"], "open", fl)
        return fl[0]

    def https_get(self, o):
        """GET over TLS through a CONNECT to reel (ragged EOFs raise):
        (bytes, how the connection ended)."""
        s = connect(self.reel.port)
        s.settimeout(15)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (o.port, o.port))
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        c = ctx.wrap_socket(s, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
        c.sendall(b"GET /cut HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % o.port)
        try:
            return read_tls(c)
        finally:
            c.close()
            o.join()

    def http_get(self, o):
        """GET http:// through reel: (bytes, how the connection ended)."""
        s = connect(self.reel.port, timeout=15)
        s.sendall(b"GET http://127.0.0.1:%d/cut HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                  % (o.port, o.port))
        try:
            return read_all(s)
        finally:
            s.close()
            o.join()

    def test_tls_close_delimited_without_close_notify(self):
        """The body ends at a bare TCP close under TLS: cut short, and
        the client sees no close_notify of reel's either (a reset)."""
        o = OneShot(b"HTTP/1.0 200 OK\r\n\r\nbody-until-close", "close", self.leaf)
        got, end = self.https_get(o)
        self.assertTrue(got.startswith(b"HTTP/1.0 200 OK\r\n"), got)
        self.assertNotEqual(end, "notify", got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "error", f)
        self.assertIn(CUT_TLS, f["error"], f)
        self.assertIn("RFC 9112 9.8", f["error"], f)

    def test_tls_close_delimited_with_close_notify(self):
        """The same body ended by close_notify is whole, and so is the
        client's (reel's close_notify)."""
        o = OneShot(b"HTTP/1.0 200 OK\r\n\r\nbody-until-close", "notify", self.leaf)
        got, end = self.https_get(o)
        self.assertTrue(got.endswith(b"\r\n\r\nbody-until-close"), got)
        self.assertEqual(end, "notify", got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "complete", f)

    def test_tls_content_length_without_close_notify(self):
        """A body its Content-Length delimits is whole without close_notify."""
        o = OneShot(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nwhole",
                    "close", self.leaf)
        got, end = self.https_get(o)
        self.assertTrue(got.endswith(b"\r\n\r\nwhole"), got)
        self.assertEqual(end, "notify", got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "complete", f)

    def test_tls_chunked_without_close_notify(self):
        """So is a chunked body with its last chunk."""
        o = OneShot(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    b"5\r\nwhole\r\n0\r\n\r\n", "close", self.leaf)
        got, end = self.https_get(o)
        self.assertTrue(got.endswith(b"5\r\nwhole\r\n0\r\n\r\n"), got)
        self.assertEqual(end, "notify", got)
        self.assertEqual(self.flow(o.port)["state"], "complete")

    def test_http_close_delimited_reset(self):
        """A reset in the middle of a body read until the close: the
        client gets the bytes that came, then a reset, not a clean end."""
        o = OneShot(b"HTTP/1.1 200 OK\r\n\r\npartial-close-delimited", "reset")
        got, end = self.http_get(o)
        self.assertTrue(got.endswith(b"\r\n\r\npartial-close-delimited"), got)
        self.assertEqual(end, "reset", got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "error", f)
        self.assertIn("response cut short", f["error"], f)

    def cut_with_bytes_unread(self, cert):
        """A body read until the close, as much of 2 MiB as the buffers
        take, then the origin's reset, while the client waits 1.5 s before
        it reads: (flow, how the client's connection ended)."""
        def fill_then_reset(c):
            read_until(c, b"\r\n\r\n")
            c.settimeout(0.05)
            out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y" * (2 << 20)
            n, t0 = 0, time.time()
            while n < len(out) and time.time() - t0 < 0.5:  # what fits in the buffers
                try:
                    n += c.send(out[n:n + 65536])
                except socket.timeout:
                    pass
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()  # (an SSLSocket too: no close_notify)
        o = OneShot(None, None, cert, handler=fill_then_reset)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(15)
        s.connect(("127.0.0.1", self.reel.port))
        req = b"GET /cut HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % o.port
        if cert:
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                      % (o.port, o.port))
            self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
            ctx = ssl.create_default_context(cafile=self.reel.ca)
            ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
        else:
            req = req.replace(b"/cut", b"http://127.0.0.1:%d/cut" % o.port)
        s.sendall(req)
        time.sleep(1.5)  # the reset comes, reel's socket still holds bytes
        try:
            got, end = read_tls(s) if cert else read_all(s)
        finally:
            s.close()
            o.join()
        self.assertTrue(got.startswith(b"HTTP/1.1 200 OK\r\n"), got[:100])
        return self.flow(o.port), end

    def test_http_close_delimited_reset_with_bytes_unread(self):
        """The reset comes while bytes wait unread in reel's socket: once
        reel has read them, the body is cut short all the same. (libuv
        said a clean end there, when epoll woke it with the reset's
        hang-up after its last short read, and the flow was complete.)"""
        f, end = self.cut_with_bytes_unread(None)
        self.assertEqual(f["state"], "error", f)
        self.assertIn("response cut short: connection reset by peer", f["error"], f)
        self.assertEqual(end, "reset")

    def test_tls_close_delimited_reset_with_bytes_unread(self):
        """The same under TLS: cut short by the reset (it was cut short
        before too, by the close without close_notify libuv's clean end
        seemed to be)."""
        f, end = self.cut_with_bytes_unread(self.leaf)
        self.assertEqual(f["state"], "error", f)
        self.assertIn("response cut short: connection reset by peer", f["error"], f)
        self.assertNotEqual(end, "notify")

    def test_http_close_delimited_reset_a_send_saw_first(self):
        """The kernel reports a reset once: here to reel's send of the
        upload, which comes first (reel stopped until both the upload's
        bytes and the reset wait). The read after it says a clean end,
        and the body is cut short all the same."""
        go = threading.Event()

        def answer_then_reset(c):
            read_until(c, b"\r\n\r\n")
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial")
            go.wait(10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        o = OneShot(None, None, handler=answer_then_reset)
        s = connect(self.reel.port, timeout=15)
        s.sendall(b"POST http://127.0.0.1:%d/cut HTTP/1.1\r\nHost: a\r\n"
                  b"Content-Length: 1000000\r\n\r\n" % o.port + b"u" * 1000)
        self.assertTrue(read_until(s, b"partial").endswith(b"partial"))
        pid = self.reel.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            s.sendall(b"u" * 1000)  # ready first: reel relays it first
            time.sleep(0.2)
            go.set()
            o.join()
            time.sleep(0.2)
        finally:
            os.kill(pid, signal.SIGCONT)
        try:
            got, end = read_all(s)
        finally:
            s.close()
        f = self.flow(o.port)
        self.assertEqual(f["state"], "error", f)
        self.assertIn("response cut short: connection reset by peer", f["error"], f)
        self.assertEqual(end, "reset", got)

    def test_http_close_delimited_fin(self):
        """The same body ended by a FIN is whole, and reel's end is a FIN."""
        o = OneShot(b"HTTP/1.1 200 OK\r\n\r\nwhole-close-delimited", "close")
        got, end = self.http_get(o)
        self.assertTrue(got.endswith(b"\r\n\r\nwhole-close-delimited"), got)
        self.assertEqual(end, "eof", got)
        self.assertEqual(self.flow(o.port)["state"], "complete")

    def test_http_chunked_reset(self):
        """A chunked body cut by a reset: the client's close (as before)
        comes without the last chunk, which tells it."""
        o = OneShot(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nparti\r\n", "reset")
        got, end = self.http_get(o)
        self.assertTrue(got.endswith(b"\r\n\r\n5\r\nparti\r\n"), got)
        self.assertIn(end, ("eof", "reset"), got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "error", f)
        # the origin's reset, said as for a body read until the close (a
        # bare "connection reset by peer" named no side)
        self.assertEqual(f["error"], "response cut short: connection reset by peer", f)

    def test_http_content_length_reset(self):
        """The same for a body whose Content-Length it does not reach."""
        o = OneShot(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 300, "reset")
        got, end = self.http_get(o)
        self.assertTrue(got.endswith(b"x" * 300), got)
        f = self.flow(o.port)
        self.assertEqual((f["state"], f["error"]),
                         ("error", "response cut short: connection reset by peer"), f)

    def test_tls_close_delimited_reset(self):
        """A reset under TLS: cut short, and the TLS client gets no
        close_notify."""
        o = OneShot(b"HTTP/1.0 200 OK\r\n\r\nbody-until-close", "reset", self.leaf)
        got, end = self.https_get(o)
        self.assertTrue(got.startswith(b"HTTP/1.0 200 OK\r\n"), got)
        self.assertNotEqual(end, "notify", got)
        f = self.flow(o.port)
        self.assertEqual(f["state"], "error", f)
        self.assertIn("response cut short", f["error"], f)


if __name__ == "__main__":
    main()
