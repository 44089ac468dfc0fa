#!/usr/bin/python3
"""An HTTP/1.1 client's WebSocket to an origin reel speaks h2c to
(h2c_upstreams): it goes as an RFC 8441 extended CONNECT stream of the
shared session (core/h2up.c), the client gets its 101. These tests cover
the ends of such a WebSocket and its start before the session is up:

- before the origin's SETTINGS came, reel sent it an HTTP/1.1 Upgrade (the
  origin, which speaks only HTTP/2, refused the preface: a 502 "invalid
  HTTP version"); now the request waits for them, and an origin whose
  SETTINGS do not allow extended CONNECT gets nothing (502 saying so);
- a client that went without its Close frame (or inside a frame) was never
  noticed: the flow stayed open and the stream too; now the flow ends at
  once with the error and the stream is reset (CANCEL), and a client's
  end after its Close is passed on as END_STREAM;
- a WebSocket that recorded no message was indexed as an http flow (its
  record keeps the origin's 200); it is a websocket flow now.

The origin is a python3-h2 h2c server that answers every extended CONNECT
with 200 and echoes each message; ws-bye answers the first message with a
Close of its own (1001) and ws-noend echoes a Close without ending its
side, which it ends when reel ends its own."""
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxyenv import TMPBASE, Reel, main  # noqa: E402


class H2cWsOrigin:
    """A prior-knowledge h2c origin on 127.0.0.1; `connect_protocol`: its
    SETTINGS allow extended CONNECT. Notes every request, every stream's
    end and reset (with its code) by path, and any connection that did not
    start with the HTTP/2 preface."""

    def __init__(self, connect_protocol=True):
        self.connect_protocol = connect_protocol
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (method, :protocol, path)
        self.ended = []  # paths whose stream reel ended (END_STREAM)
        self.resets = []  # (path, error code) of the streams reel reset
        self.not_h2 = 0  # connections that did not speak HTTP/2
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, s):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        init = {h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1} if self.connect_protocol else {}
        conn.local_settings = h2.settings.Settings(client=False, initial_values=init)
        conn.initiate_connection()
        paths, bufs = {}, {}
        try:
            s.sendall(conn.data_to_send())
            while True:
                data = s.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        hd = dict((k.decode(), v.decode()) for k, v in ev.headers)
                        paths[ev.stream_id] = hd.get(":path")
                        bufs[ev.stream_id] = b""
                        with self.lock:
                            self.requests.append((hd.get(":method"), hd.get(":protocol"),
                                                  hd.get(":path")))
                        if hd.get(":protocol") == "websocket":
                            conn.send_headers(ev.stream_id, [(":status", "200")])
                        else:
                            conn.send_headers(ev.stream_id, [(":status", "404")],
                                              end_stream=True)
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        bufs[ev.stream_id] += ev.data
                        bufs[ev.stream_id] = self._frames(conn, ev.stream_id, paths[ev.stream_id],
                                                          bufs[ev.stream_id])
                    elif isinstance(ev, h2.events.StreamEnded):
                        with self.lock:
                            self.ended.append(paths.get(ev.stream_id))
                        if paths.get(ev.stream_id) == "/ws-noend":
                            conn.end_stream(ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        with self.lock:
                            self.resets.append((paths.get(ev.stream_id), ev.error_code))
                out = conn.data_to_send()
                if out:
                    s.sendall(out)
        except h2.exceptions.ProtocolError:
            with self.lock:
                self.not_h2 += 1
        except OSError:
            pass
        finally:
            s.close()

    @staticmethod
    def _frames(conn, sid, path, buf):
        """Answers each whole (masked, short) frame in buf; returns the rest."""
        while len(buf) >= 6 and len(buf) >= 6 + (buf[1] & 0x7F):
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            payload = bytes(x ^ buf[2 + i % 4] for i, x in enumerate(buf[6:6 + n]))
            buf = buf[6 + n:]
            if op == 8:  # a Close gets a Close; the stream's end with it but for ws-noend
                conn.send_data(sid, bytes([0x88, n]) + payload, end_stream=path != "/ws-noend")
            elif path == "/ws-bye":
                conn.send_data(sid, b"\x88\x02" + struct.pack(">H", 1001))
            else:
                conn.send_data(sid, bytes([0x80 | op, n]) + payload)
        return buf

    def stop(self):
        self.sock.close()


def frame(op, payload, fin=True):
    key = b"\x11\x22\x33\x44"
    return (bytes([(0x80 if fin else 0) | op, 0x80 | len(payload)]) + key +
            bytes(b ^ key[i % 4] for i, b in enumerate(payload)))


class H2cWebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2cws-", dir=TMPBASE)
        cls.origin = H2cWsOrigin()
        cls.plain = H2cWsOrigin(connect_protocol=False)
        # two workers, each with its own sessions: with one session up in
        # one worker, WebSockets in the other went out as HTTP/1.1
        cls.reel = Reel(cls.root, "h2cws", "workers=2",
                        "h2c_upstreams=127.0.0.1:%d,127.0.0.1:%d" %
                        (cls.origin.port, cls.plain.port))

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.origin.stop()
        cls.plain.stop()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def handshake(self, origin, path):
        """An HTTP/1.1 WebSocket handshake for origin's path through reel:
        (socket, status line, rest after the head)."""
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        s.settimeout(10)
        auth = b"127.0.0.1:%d" % origin.port
        s.sendall(b"GET http://%s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n" % (auth, path.encode(), auth))
        resp = b""
        while b"\r\n\r\n" not in resp:
            d = s.recv(4096)
            self.assertTrue(d, resp)
            resp += d
        head, rest = resp.split(b"\r\n\r\n", 1)
        return s, head.split(b"\r\n")[0], rest

    @staticmethod
    def read_n(s, have, n):
        while len(have) < n:
            d = s.recv(4096)
            if not d:
                break
            have += d
        return have

    def flow(self, path, n=1, timeout=5):
        fs = self.reel.wait_flows(n, "~u '/%s$'" % path.strip("/"), timeout=timeout)
        self.assertEqual(len(fs), n, fs)
        self.assertTrue(all(f["state"] != "open" for f in fs), fs)
        return [self.reel.flow(f["id"]) for f in sorted(fs, key=lambda f: f["id"])]

    def test_a_websockets_before_the_session_is_up(self):
        # no request went to the origin before: each WebSocket (in either
        # worker) waits for its session's SETTINGS and goes as a stream
        for i in range(4):
            s, status, rest = self.handshake(self.origin, "/ws-first")
            self.assertTrue(status.startswith(b"HTTP/1.1 101 "), status)
            s.sendall(frame(1, b"hi %d" % i) + frame(8, b"\x03\xe8"))
            rest = self.read_n(s, rest, 6 + 4)
            self.assertEqual(rest[:6], b"\x81\x04hi %d" % i)
            self.assertEqual(rest[6:10], b"\x88\x02\x03\xe8")
            s.close()
        fs = self.flow("/ws-first", 4)
        self.assertEqual([f["state"] for f in fs], ["complete"] * 4, [f.get("error") for f in fs])
        self.assertEqual(self.origin.not_h2, 0)
        self.assertEqual([r for r in self.origin.requests if r[2] == "/ws-first"],
                         [("CONNECT", "websocket", "/ws-first")] * 4)

    def test_b_origin_that_does_not_allow_websockets(self):
        # an h2c origin whose SETTINGS have no ENABLE_CONNECT_PROTOCOL: a
        # 502 saying so, and nothing of it reaches the origin (it would
        # refuse an HTTP/1.1 Upgrade all the same)
        for _ in range(2):
            s, status, rest = self.handshake(self.plain, "/ws-refused")
            self.assertTrue(status.startswith(b"HTTP/1.1 502 "), status)
            s.close()
        for f in self.flow("/ws-refused", 2):
            self.assertEqual(f["response"]["status"], 502)
            self.assertIn("SETTINGS_ENABLE_CONNECT_PROTOCOL", f["error"])
        self.assertEqual(self.plain.not_h2, 0)
        self.assertEqual(self.plain.requests, [])

    def client_leaves(self, path, send, why):
        s, status, rest = self.handshake(self.origin, path)
        self.assertTrue(status.startswith(b"HTTP/1.1 101 "), status)
        s.sendall(frame(1, b"one"))
        rest = self.read_n(s, rest, 4)
        s.sendall(send)
        s.shutdown(socket.SHUT_WR)  # the client's FIN; reel's close comes back
        t0 = time.time()
        s.settimeout(5)
        self.read_n(s, b"", 1 << 20)
        self.assertLess(time.time() - t0, 3)
        s.close()
        (f,) = self.flow(path)
        self.assertEqual(f["state"], "error")
        self.assertEqual(f["error"], why)
        deadline = time.time() + 5
        while time.time() < deadline and (path, 8) not in self.origin.resets:
            time.sleep(0.05)
        self.assertIn((path, 8), self.origin.resets)  # RST_STREAM CANCEL
        return rest

    def test_c_client_gone_without_its_close(self):
        self.client_leaves("/ws-gone", b"", "the client closed the connection without a "
                           "WebSocket Close frame (1006, abnormal closure)")

    def test_d_client_gone_inside_a_frame(self):
        self.client_leaves("/ws-cut", frame(1, b"x" * 100)[:40],
                           "the client closed the connection in the middle of a WebSocket frame")

    def test_e_client_gone_without_answering_the_servers_close(self):
        rest = self.client_leaves("/ws-bye", b"", "the client closed the connection without a "
                                  "WebSocket Close frame (1006, abnormal closure)")
        self.assertEqual(rest, b"\x88\x02\x03\xe9")

    def test_f_client_end_after_its_close_is_the_streams_end(self):
        # the origin answers the Close but waits for the stream's end
        # (RFC 8441 6: END_STREAM is the TCP FIN), which reel now sends for
        # the client's FIN: the flow ends complete, nothing reset
        s, status, rest = self.handshake(self.origin, "/ws-noend")
        self.assertTrue(status.startswith(b"HTTP/1.1 101 "), status)
        s.sendall(frame(8, b"\x03\xe8"))
        rest = self.read_n(s, rest, 4)
        self.assertEqual(rest, b"\x88\x02\x03\xe8")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        self.assertEqual(self.read_n(s, b"", 1 << 20), b"")
        s.close()
        (f,) = self.flow("/ws-noend")
        self.assertEqual(f["state"], "complete", f.get("error"))
        self.assertIn("/ws-noend", self.origin.ended)
        self.assertNotIn("/ws-noend", [p for p, _ in self.origin.resets])

    def test_g_websocket_without_a_message_is_a_websocket_flow(self):
        # the first frame is invalid (unmasked): reel closes it with 1002
        # and no message is recorded; the record keeps the origin's 200 over
        # HTTP/2 (the client got a 101), and the flow is a WebSocket's
        s, status, rest = self.handshake(self.origin, "/ws-bad")
        self.assertTrue(status.startswith(b"HTTP/1.1 101 "), status)
        s.sendall(b"\x81\x03abc")
        self.assertEqual(self.read_n(s, rest, 4)[:4], b"\x88\x1e\x03\xea")
        s.close()
        (f,) = self.flow("/ws-bad")
        self.assertEqual((f["response"]["status"], f["response"]["http_version"]),
                         (200, "HTTP/2.0"))
        self.assertFalse(f.get("messages"))
        self.assertEqual(f["kind"], "websocket")
        self.assertEqual(len(self.reel.flows("~websocket & ~u /ws-bad$")), 1)

    def test_h_client_sends_on_after_an_invalid_frame(self):
        # an unmasked frame's head (a client's frames are masked), then,
        # after reel's Close, the frame's payload and one more frame: reel
        # reads them and drops them until the client ends its side, so the
        # client gets the Close and then the end, not a reset (a socket
        # closed with bytes unread resets), and the origin gets reel's Close
        # and the stream's end, to which it answers with its own
        path = "/ws-bad-more"
        s, status, rest = self.handshake(self.origin, path)
        self.assertTrue(status.startswith(b"HTTP/1.1 101 "), status)
        s.sendall(b"\x82\x7f" + struct.pack(">Q", 100000))
        close = self.read_n(s, rest, 32)
        self.assertEqual(close[:4], b"\x88\x1e\x03\xea", close)
        self.assertEqual(close[4:], b"unmasked frame from a client")
        for piece in (b"x" * 100000, frame(1, b"more")):
            time.sleep(0.1)
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(self.read_n(s, b"", 1 << 20), b"")
        s.close()
        (f,) = self.flow(path)
        self.assertEqual(f["state"], "error")
        self.assertEqual(f["error"], "the client sent an invalid WebSocket frame: unmasked frame "
                         "from a client (closed with 1002)")
        deadline = time.time() + 5
        while time.time() < deadline and path not in self.origin.ended:
            time.sleep(0.05)
        self.assertIn(path, self.origin.ended)  # END_STREAM after reel's Close
        self.assertNotIn(path, [p for p, _ in self.origin.resets])


if __name__ == "__main__":
    main()
