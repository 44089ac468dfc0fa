#!/usr/bin/python3
"""WebSocket through reel under stress and abuse (issue 10).

Raw-socket peers on both sides of `reel record`, so every byte on the wire
is the test's: a peer that vanishes in the middle of a frame (client and
server), a 2 GiB message with body_limit=1MiB (512 MiB in
sanitized builds), a 1 GiB stream of binary messages to a client that
reads slowly (RSS flat: the relay stops reading the server), and servers
that break the protocol (a masked frame, a
reserved opcode, a control frame over 125 bytes, invalid UTF-8 in a text
message). reel's resident set is sampled from /proc/PID/status during the
big transfers (not under sanitizers, which inflate it).
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import tempfile
import threading
import time
import unittest

from proxyenv import SANITIZED, TMPBASE, Origin, Reel, main, stop_class
from test_http2 import H2C

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MIB = 1 << 20
CHUNK = bytes(range(256)) * 4096  # 1 MiB
BIG = (512 << 20) + 7 if SANITIZED else (2 << 30) + 7  # one message, past 2^31
STREAM = (256 if SANITIZED else 1024) * MIB  # the stream test's total


def frame(op, payload, fin=True, mask=True, key=None, rsv=0, length=None):
    """One frame; masked with key (random when None) when mask. length
    overrides the length field (the payload then follows separately)."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    if key == b"\0\0\0\0":
        return head + key + payload
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise EOFError("%d of %d bytes" % (len(b), n))
        b += d
    return bytes(b)


def read_frame(s):
    """(fin, opcode, masked, payload) of the next frame."""
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    key = recv_exact(s, 4) if b1 & 0x80 else None
    p = recv_exact(s, n)
    if key:
        p = bytes(c ^ key[i % 4] for i, c in enumerate(p))
    return bool(b0 & 0x80), b0 & 0x0F, key is not None, p


def read_to_eof(s, timeout=10):
    """Everything until the peer closes; fails the test on a timeout."""
    s.settimeout(timeout)
    b = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(b)
        b += d


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_secs(pid):
    """User + system CPU seconds of a process, all threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS every 20 ms in a thread until stopped."""

    def __init__(self, pid):
        self.pid, self.peak, self.stopped = pid, 0, threading.Event()
        self.start = rss_kib(pid)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self):
        self.stopped.set()
        self.thread.join()
        return self.peak


class RawServer:
    """A WebSocket server that answers the handshake, then hands the socket
    to the behaviour registered for the request's path (a function of the
    socket, run in its own thread). With certfile it speaks TLS."""

    def __init__(self, certfile=None, keyfile=None):
        self.behaviours = {}
        self.ctx = None
        if certfile:
            self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ctx.load_cert_chain(certfile, keyfile)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.errors = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        try:
            if self.ctx:
                s = self.ctx.wrap_socket(s, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                d = s.recv(1)
                if not d:
                    return
                head += d
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split()[1]
            key = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.behaviours[path.encode()](s)
        except Exception as e:  # reported by the test that registered the path
            self.errors.append(repr(e))
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.sock.close()


class WebSocketStressTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="ws-stress.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))  # its CA and server cert
        d = os.path.join(cls.root, "origin")
        cls.server = RawServer()
        cls.tls_server = RawServer(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        # A capture buffer of 16 MiB (default 256 MiB) with capture=lossless:
        # the stream test's RSS bound is then the relay's back-pressure, not
        # the buffer that absorbs bursts the disk cannot take at once.
        cls.reel = Reel(cls.root, "stress", "upstream_trusted_ca=" + cls.origin.ca,
                        "body_limit=1MiB", "capture_buffer=16MiB", "capture=lossless")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.tls_server.stop()
        stop_class(cls)

    def setUp(self):
        self.server.errors.clear()
        self.tls_server.errors.clear()

    def connect(self, path, tls=False):
        """A client socket through reel, past the 101: absolute-form GET for
        ws, CONNECT + TLS (reel's CA) + GET for wss."""
        r = self.reel
        s = socket.create_connection(("127.0.0.1", r.port), 10)
        if tls:
            s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n" %
                      self.tls_server.port)
            head = b""
            while b"\r\n\r\n" not in head:
                head += recv_exact(s, 1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            s = ssl.create_default_context(cafile=r.ca).wrap_socket(s, server_hostname="localhost")
            target = path
        else:
            target = b"http://127.0.0.1:%d%s" % (self.server.port, path)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n" % target)
        head = b""
        while b"\r\n\r\n" not in head:
            head += recv_exact(s, 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return s

    def flow_of(self, path, timeout=15):
        flows = self.reel.wait_flows(1, "~websocket & ~u %s$" % path, timeout=timeout)
        self.assertEqual(len(flows), 1, (path, flows))
        self.assertNotEqual(flows[0]["state"], "open", flows)
        return self.reel.flow(flows[0]["id"]), flows[0]

    # ---- peers that vanish mid-frame ----

    def server_vanishes(self, tls):
        """The server sends a message and 10 bytes of a 1000-byte frame, then
        closes: the client gets those bytes and the end of the stream, the
        flow ends with the error."""
        path = "/vanish-server-%s" % ("wss" if tls else "ws")
        srv = self.tls_server if tls else self.server
        done = threading.Event()

        def behaviour(s):
            s.sendall(frame(1, b"whole", mask=False))
            # a 1000-byte binary frame of which 10 bytes arrive, then nothing
            s.sendall(frame(2, b"", mask=False, length=1000) + b"0123456789")
            done.wait(10)
            s.shutdown(socket.SHUT_RDWR)
        srv.behaviours[path.encode()] = behaviour
        c = self.connect(path.encode(), tls)
        self.assertEqual(read_frame(c), (True, 1, False, b"whole"))
        done.set()
        rest = read_to_eof(c)
        # the client got the bytes of the cut frame that passed, then the end
        self.assertTrue(rest.startswith(b"\x82\x7e\x03\xe8"), rest)
        c.close()
        full, row = self.flow_of(path)
        self.assertEqual(row["state"], "error", row)
        self.assertEqual(row["error"],
                         "the server closed the connection in the middle of a WebSocket frame")
        self.assertEqual([(m["from_client"], m["type"], base64.b64decode(m["data_b64"]))
                          for m in full["messages"]], [(False, "text", b"whole")])
        self.assertEqual(srv.errors, [])

    def test_server_vanishes_mid_frame_ws(self):
        self.server_vanishes(False)

    def test_client_vanishes_mid_frame(self):
        path = b"/vanish-client"
        got = []

        def behaviour(s):
            s.settimeout(10)
            got.append(read_frame(s))
            got.append(read_to_eof(s))
        self.server.behaviours[path] = behaviour
        c = self.connect(path)
        c.sendall(frame(1, b"hello"))
        # the first of three fragments, then half a frame header and gone
        part = frame(2, b"part one", fin=False)
        c.sendall(part + b"\x80")
        time.sleep(0.2)
        c.close()
        full, row = self.flow_of(path.decode())
        # (what the server got and any error it met, should this fail: it
        # failed once in CI with the server's close recorded as the first)
        self.assertEqual(row["error"],
                         "the client closed the connection in the middle of a WebSocket frame",
                         (got, self.server.errors, row))
        self.assertEqual([(m["from_client"], m["type"]) for m in full["messages"]],
                         [(True, "text")])
        deadline = time.time() + 5
        while len(got) < 2 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(got[0], (True, 1, True, b"hello"))
        # the whole fragment, then the end: the start of a header that never
        # became whole is not passed on (it once was, so a header refused
        # for a bad opcode could reach the other peer in part)
        self.assertEqual(got[1], part)
        self.assertEqual(self.server.errors, [])

    # ---- big ----

    def test_2gib_message_with_body_limit(self):
        path = b"/big"
        nframes, tail = divmod(BIG, MIB)
        received = []

        def behaviour(s):
            s.settimeout(60)
            buf = bytearray(MIB)
            total, n = 0, 0
            fin, op, masked, p = read_frame(s)  # the first fragment in full
            total += len(p)
            while total < BIG:
                # headers of 1 MiB masked frames are 14 bytes, the last one's
                # 14 or fewer: count payload bytes by reading frame by frame
                h = recv_exact(s, 2)
                n = h[1] & 0x7F
                ext = {126: 2, 127: 8}.get(n, 0)
                if ext:
                    n = int.from_bytes(recv_exact(s, ext), "big")
                recv_exact(s, 4)
                left = n
                while left:
                    k = s.recv_into(buf, min(left, MIB))
                    if k == 0:
                        raise EOFError
                    left -= k
                total += n
            received.append(total)
            s.sendall(frame(1, b"got %d" % total, mask=False))
            read_frame(s)  # the close
            s.sendall(frame(8, struct.pack("!H", 1000), mask=False))
        self.server.behaviours[path] = behaviour
        c = self.connect(path)
        sampler = None if SANITIZED else RssSampler(self.reel.proc.pid)
        t0, cpu0 = time.time(), cpu_secs(self.reel.proc.pid)
        zero = b"\0\0\0\0"  # a zero masking key leaves the payload as it is
        c.sendall(frame(2, CHUNK, fin=False, key=zero))
        for i in range(1, nframes):
            c.sendall(frame(0, b"", fin=False, key=zero, length=MIB))
            c.sendall(CHUNK)
        c.sendall(frame(0, CHUNK[:tail], key=zero))
        self.assertEqual(read_frame(c), (True, 1, False, b"got %d" % BIG))
        secs = time.time() - t0
        cpu = cpu_secs(self.reel.proc.pid) - cpu0
        peak = sampler.stop() if sampler else None
        c.sendall(frame(8, struct.pack("!H", 1000)))
        self.assertEqual(read_frame(c)[1], 8)
        c.close()
        print("\n  %d MiB message in %.1f s (%.0f MiB/s, reel CPU %.1f s); reel RSS %s" % (
            BIG >> 20, secs, (BIG >> 20) / secs, cpu,
            "%d -> peak %d KiB" % (sampler.start, peak) if sampler else "not checked (sanitized)"))
        full, row = self.flow_of(path.decode(), timeout=30)
        self.assertEqual(row["state"], "complete", row)
        big = [m for m in full["messages"] if m["from_client"] and m["opcode"] == 2]
        self.assertEqual(len(big), 1, full["messages"])
        m = big[0]
        self.assertEqual(m["length"], BIG)
        self.assertTrue(m["truncated"])
        self.assertEqual(base64.b64decode(m["data_b64"]), CHUNK)  # body_limit: the first 1 MiB
        if sampler:
            self.assertLess(peak - sampler.start, 48 * 1024, "reel's RSS grew by %d KiB" %
                            (peak - sampler.start))

    def test_1gib_stream_to_a_slow_reader_keeps_rss_flat(self):
        path = b"/stream"
        size = 64 * 1024
        count = STREAM // size
        payload = os.urandom(size)
        sent = []

        def behaviour(s):
            f = frame(2, payload, mask=False)
            for _ in range(count):
                s.sendall(f)
            sent.append(count)
            read_frame(s)  # the close
            s.sendall(frame(8, struct.pack("!H", 1000), mask=False))
        self.server.behaviours[path] = behaviour
        c = self.connect(path)
        sampler = None if SANITIZED else RssSampler(self.reel.proc.pid)
        t0 = time.time()
        time.sleep(1.0)  # not reading: reel must stop reading the server, not buffer
        stalled = rss_kib(self.reel.proc.pid)
        buf = bytearray(MIB)
        want = count * (size + 10)  # 2-byte header + 8 bytes of length each
        got = 0
        c.settimeout(60)
        while got < want:
            k = c.recv_into(buf, min(MIB, want - got))
            if k == 0:
                raise EOFError
            got += k
        secs = time.time() - t0
        peak = sampler.stop() if sampler else None
        c.sendall(frame(8, struct.pack("!H", 1000)))
        self.assertEqual(read_frame(c)[1], 8)
        c.close()
        print("\n  %d MiB in %d messages in %.1f s; reel RSS %s" % (
            STREAM >> 20, count, secs, "%d, stalled %d, peak %d KiB" % (sampler.start, stalled, peak)
            if sampler else "not checked (sanitized)"))
        flows = self.reel.wait_flows(1, "~websocket & ~u %s$" % path.decode(), timeout=30)
        self.assertEqual(len(flows), 1, flows)
        row = flows[0]
        self.assertEqual(row["state"], "complete", row)
        self.assertEqual(row["response_body_dropped"], 0, row)
        self.assertEqual(row["messages"], count + 2)  # and the two closes
        self.assertEqual(row["response_body_size"], count * size + 2)
        if sampler:
            self.assertLess(stalled - sampler.start, 16 * 1024, "RSS grew while the client stalled")
            self.assertLess(peak - sampler.start, 64 * 1024, "reel's RSS grew by %d KiB" %
                            (peak - sampler.start))

    # ---- servers that break the protocol ----

    def violation(self, name, bad, code, why, later=()):
        """The server sends a good text frame, then `bad`, then each of
        `later` 0.1 s apart: the client must get the good one, then a close
        with `code`, then the end; the server a masked close with `code`,
        then the end (not a reset, whatever it still sent); the flow ends
        with `why`."""
        path = b"/violation-" + name.encode()
        to_server = []

        def behaviour(s):
            s.settimeout(10)
            s.sendall(frame(1, b"fine", mask=False) + bad)
            for piece in later:
                time.sleep(0.1)
                s.sendall(piece)
            to_server.append(read_to_eof(s))
        self.server.behaviours[path] = behaviour
        c = self.connect(path)
        c.settimeout(10)
        t0 = time.monotonic()
        try:
            first = read_frame(c)
        except EOFError as e:
            # (seen once in CI, not since: what the server met and what
            # reel recorded say more than the end alone; a server that waited
            # 10 s for reel's Close gives up and closes first)
            waited = time.monotonic() - t0
            time.sleep(0.5)
            self.fail("%s after %.1f s; the server: %r; the flow: %r" % (
                e, waited, self.server.errors, self.reel.flows("~u %s" % path.decode())))
        self.assertEqual(first, (True, 1, False, b"fine"))
        fin, op, masked, p = read_frame(c)
        while op in (0, 1, 2) and not fin:  # whole valid fragments pass before the bad one
            fin, op, masked, p = read_frame(c)
        self.assertEqual((op, masked), (8, False))
        self.assertEqual(struct.unpack("!H", p[:2])[0], code, p)
        self.assertEqual(read_to_eof(c), b"")
        c.close()
        full, row = self.flow_of(path.decode())
        self.assertEqual(row["state"], "error")
        self.assertEqual(row["error"], "the server sent an invalid WebSocket frame: %s "
                         "(closed with %d)" % (why, code))
        self.assertEqual([(m["from_client"], base64.b64decode(m["data_b64"]))
                          for m in full["messages"]], [(False, b"fine")])
        p = self.close_to_server(to_server)
        self.assertEqual(struct.unpack("!H", p[:2])[0], code, p)

    def close_to_server(self, to_server):
        """The payload of reel's Close to the server, unmasked, once the
        server read to its end: what it read (to_server) must be that
        masked Close alone, without an error (a reset) on the way."""
        deadline = time.time() + 5
        while not to_server and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.server.errors, [])
        self.assertEqual(len(to_server), 1)
        head = to_server[0]
        self.assertEqual(head[0], 0x88, head)
        self.assertTrue(head[1] & 0x80, "reel's close to the server must be masked")
        key, n = head[2:6], head[1] & 0x7F
        self.assertEqual(len(head), 6 + n, head)
        return bytes(b ^ key[i % 4] for i, b in enumerate(head[6:]))

    def test_server_sends_a_bad_header_in_two_pieces(self):
        # the first byte of a header with a reserved opcode, then the rest:
        # reel passed the byte on when it came (the client got a frame cut
        # short and no Close) before it held headers back until whole
        bad = frame(3, b"what is 3", mask=False)
        self.violation("opcode-split", bad[:1], 1002, "reserved opcode", [bad[1:]])

    def test_server_sends_on_after_a_bad_header(self):
        # a refused frame's payload (and more) comes after reel closed its
        # side: read and dropped, so the server gets reel's Close and its end,
        # not a reset (the socket was closed with bytes unread)
        bad = frame(2, b"x" * 100000, mask=True)
        self.violation("masked-more", bad[:14], 1002, "masked frame from a server",
                       [bad[14:], frame(1, b"more", mask=False)])

    def test_server_sends_on_after_a_bad_header_to_an_http2_client(self):
        # as above, for a client whose WebSocket is an extended CONNECT
        # stream (RFC 8441) of its h2c connection: the server's socket is
        # read to its end all the same (reel once closed it at once, with
        # the server's bytes unread: a reset); the stream gets the good
        # frame, the Close and its end
        path = b"/violation-h2-more"
        bad = frame(2, b"x" * 100000, mask=True)
        to_server = []

        def behaviour(s):
            s.settimeout(10)
            s.sendall(frame(1, b"fine", mask=False) + bad[:14])
            for piece in (bad[14:], frame(1, b"more", mask=False)):
                time.sleep(0.1)
                s.sendall(piece)
            to_server.append(read_to_eof(s))
        self.server.behaviours[path] = behaviour
        c = H2C(self.reel.port)
        sid = c.ext_connect("127.0.0.1:%d" % self.server.port, path.decode())
        c.wait(lambda: c.done(sid))
        c.close()
        st = c.streams[sid]
        self.assertEqual(dict(st["headers"])[b":status"], b"200")
        reason = b"masked frame from a server"
        self.assertEqual(st["data"], frame(1, b"fine", mask=False) + frame(
            8, struct.pack("!H", 1002) + b"reel: the other side broke the protocol", mask=False))
        self.assertTrue(st["ended"], st)  # END_STREAM, not a reset
        full, row = self.flow_of(path.decode())
        self.assertEqual(row["error"], "the server sent an invalid WebSocket frame: %s "
                         "(closed with 1002)" % reason.decode())
        self.assertEqual(self.close_to_server(to_server), struct.pack("!H", 1002) + reason)

    def test_server_sends_a_masked_frame(self):
        self.violation("masked", frame(1, b"masked by a server"), 1002,
                       "masked frame from a server")

    def test_server_sends_a_reserved_opcode(self):
        self.violation("opcode", frame(3, b"what is 3", mask=False), 1002, "reserved opcode")

    def test_server_sends_a_control_frame_over_125_bytes(self):
        self.violation("bigping", frame(9, b"p" * 126, mask=False), 1002,
                       "control frame longer than 125 bytes")

    def test_server_sends_invalid_utf8(self):
        self.violation("utf8", frame(1, b"caf\xc3(", mask=False), 1007,
                       "invalid UTF-8 in a text message")

    def test_server_sends_invalid_utf8_across_fragments(self):
        self.violation("utf8-frag", frame(1, b"caf\xc3", fin=False, mask=False) +
                       frame(0, b"\xa9 ok", fin=False, mask=False) +
                       frame(0, b"\xff", mask=False), 1007, "invalid UTF-8 in a text message")



class TinyFramesBurstTest(unittest.TestCase):
    """A client that sends a burst of tiny frames (300,000 frames of 1
    byte, 2.1 MB in one go): reel passed each frame on with its own write
    and moved the rest of its input after each, about 7 us a frame, and
    the worker's loop was on the burst for 2 s, every other connection
    waiting (libuv reads a socket up to 32 times, 2 MiB, while it has
    bytes). A request from another client meanwhile waited as long; it is
    answered at once now. One worker, so that both clients are on the same
    loop."""

    N = 300000

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="ws-tiny.", dir=TMPBASE)
        cls.origin = RawServer()
        cls.reel = Reel(cls.root, "tiny", "workers=1")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_other_connections_go_on_during_a_burst(self):
        burst = frame(2, b"x", key=b"\x01\x02\x03\x04") * self.N
        got = {"bytes": 0, "last": None}

        def behaviour(s):
            s.settimeout(60)
            while got["bytes"] < len(burst):  # (reel sends them on as they came)
                d = s.recv(1 << 20)
                if not d:
                    return
                got["bytes"] += len(d)
                got["last"] = time.monotonic()
        self.origin.behaviours[b"/tiny"] = behaviour
        c = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        c.sendall(b"GET http://127.0.0.1:%d/tiny HTTP/1.1\r\nHost: localhost\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                  b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" %
                  self.origin.port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += recv_exact(c, 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        sender = threading.Thread(target=c.sendall, args=(burst,), daemon=True)
        t0 = time.monotonic()
        sender.start()
        time.sleep(0.05)  # the burst is in reel's socket
        o = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        asked = time.monotonic()
        o.sendall(b"GET http://127.0.0.1:1/other HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        answer = recv_exact(o, 12)
        answered = time.monotonic()
        o.close()
        self.assertEqual(answer, b"HTTP/1.1 502", answer)
        sender.join(60)
        deadline = time.monotonic() + 60
        while got["bytes"] < len(burst) and time.monotonic() < deadline:
            time.sleep(0.05)
        c.close()
        self.assertEqual(got["bytes"], len(burst), self.origin.errors)
        took = got["last"] - t0
        waited = answered - asked
        # It was 2.1 s of 2.2 (RelWithDebInfo). libuv may still take the
        # whole burst in one go (2 MiB): about 0.1 s now, 0.35 s under the
        # sanitizers, where the old relay would take several seconds.
        self.assertLess(waited, 3.0 if SANITIZED else 1.0, (waited, took))


if __name__ == "__main__":
    main()
