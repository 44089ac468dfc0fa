#!/usr/bin/python3
"""HTTP/2 clients that break the rules in ways that used to leave the
record wrong or empty, each driven by a python3-h2 client over a socket
to `reel record` (prior-knowledge h2c):

- an extended CONNECT for a WebSocket whose HEADERS carry END_STREAM (the
  client could never send a frame) is reset with PROTOCOL_ERROR and ends
  its flow saying so; it used to stay open for good;
- a frame on a stream that nghttp2 answers with GOAWAY (a WINDOW_UPDATE
  with increment 0) is recorded as the connection closed with GOAWAY, not
  as a RST_STREAM reel never sent;
- a stream above reel's SETTINGS_MAX_CONCURRENT_STREAMS is a flow too,
  whether refused with REFUSED_STREAM (before the client acknowledged the
  SETTINGS) or with GOAWAY (after), with the request the client sent
  (nghttp2 refused it before reel saw its head: no method, no URL);
- a stream the client opens after reel's GOAWAY (reel shutting down),
  which reel ignores unanswered, is a flow saying so; it left none. So is
  each stream sent in the same write after the one over the acknowledged
  limit (nghttp2 drops the rest of that read unread), each stream after a
  header block that does not decode (COMPRESSION_ERROR; that block's
  stream too), and each stream the client opens in a later write, after
  reel's GOAWAY for a protocol error (reel closed the connection at once,
  its bytes unread).
"""
import base64
import hashlib
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import unittest

import h2.events
import h2.settings

from proxyenv import TMPBASE, Reel, main
from test_body_cut import OneShot
from test_http2 import H2C, EchoOrigin

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class SwitchingOrigin:
    """An HTTP/1.1 origin that switches every request to WebSocket (101
    with the right Sec-WebSocket-Accept) and then holds the connection
    open, saying nothing; it counts the requests it got."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    return
                data += d
            head = data.split(b"\r\n\r\n", 1)[0].decode()
            self.requests.append(head)
            key = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
                   if ln.lower().startswith("sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            while c.recv(65536):
                pass
        except OSError:
            pass

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def new_stream(c, sid):
    c.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                      "reset": None, "ended": False}


def read_until_closed(s, timeout=10):
    got = b""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except (ConnectionResetError, TimeoutError, socket.timeout):
        pass
    return got


def goaway_of(data):
    """(last stream id, error code, debug data) of the first GOAWAY frame
    in data, a sequence of HTTP/2 frames; None if there is none."""
    at = 0
    while at + 9 <= len(data):
        n = int.from_bytes(data[at:at + 3], "big")
        if data[at + 3] == 7:
            p = data[at + 9:at + 9 + n]
            return (struct.unpack(">I", p[:4])[0] & 0x7fffffff, struct.unpack(">I", p[4:8])[0],
                    p[8:])
        at += 9 + n
    return None


class Http2GapsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(dir=TMPBASE)
        cls.echo = EchoOrigin()
        cls.ws = SwitchingOrigin()
        cls.auth = "127.0.0.1:%d" % cls.echo.port
        cls.reel = Reel(cls.root, "h2gaps")

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.echo.stop()
        cls.ws.stop()
        if code != 0:
            print(cls.reel.log())
        assert code == 0, "reel record exited %d on SIGINT" % code
        shutil.rmtree(cls.root, ignore_errors=True)

    def stream_flow(self, conn, sid, timeout=10):
        """The flow of stream sid on client connection conn, once ended."""
        deadline = time.time() + timeout
        while True:
            rows = [r for r in self.reel.flows("~conn %d" % conn) if r["stream_id"] == sid]
            if (rows and rows[0]["state"] != "open") or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(len(rows), 1, rows)
        return self.reel.flow(rows[0]["id"])

    def test_padded_data_over_content_length_ends_at_once(self):
        # nghttp2 resets a stream whose padded DATA frame goes past its
        # content-length before the frame's bytes come, with no callback:
        # the flow ended only at the client's next frame (its duration the
        # client's silence), its error saying "the peer broke HTTP/2"
        c = H2C(self.reel.port)
        try:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                      (":authority", self.auth), (":path", "/padded-over"),
                                      ("content-length", "10")])
            new_stream(c, sid)
            c.conn.send_data(sid, b"abcde", pad_length=100)
            c.conn.send_data(sid, b"0123456789", end_stream=True, pad_length=20)
            c.flush()
            t0 = time.time()
            rows = []  # the client reads and sends nothing meanwhile
            while time.time() - t0 < 3 and not rows:
                rows = [r for r in self.reel.flows("~u /padded-over") if r["state"] != "open"]
                time.sleep(0.05)
            self.assertLess(time.time() - t0, 3)
            c.wait(lambda: c.done(sid), timeout=5)
            self.assertEqual(c.streams[sid]["reset"], 1)  # PROTOCOL_ERROR
        finally:
            c.close()
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["error"], "reel reset the HTTP/2 stream with RST_STREAM "
                         "PROTOCOL_ERROR (0x1): the request body is longer than its "
                         "content-length (10 bytes; 5 and then a padded DATA frame of 31 bytes, "
                         "its padding included)", rows)
        self.assertLess(rows[0]["duration_us"], 1000000, rows)

    def test_continuation_flood_is_recorded_and_goes_away(self):
        # a header block split over more CONTINUATION frames than reel
        # takes (8): nghttp2 stopped with no GOAWAY and no callback, and
        # the request left no flow at all
        import hpack
        s = socket.create_connection(("127.0.0.1", self.reel.port), timeout=10)
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

        def frame(t, flags, sid, payload=b""):
            return (len(payload).to_bytes(3, "big") + bytes([t, flags]) + sid.to_bytes(4, "big") +
                    payload)
        block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                        (":authority", self.auth), (":path", "/cont-flood"),
                                        ("x-pad", "p" * 600)])
        k = (len(block) + 12) // 13
        parts = [block[i:i + k] for i in range(0, len(block), k)]
        data = preface + frame(4, 0, 0) + frame(1, 0, 1, parts[0])  # SETTINGS, HEADERS
        for j, p in enumerate(parts[1:]):
            data += frame(9, 4 if j == len(parts) - 2 else 0, 1, p)  # CONTINUATION
        s.sendall(data)
        got = read_until_closed(s)
        s.close()
        types, pos = [], 0
        while pos + 9 <= len(got):
            n = int.from_bytes(got[pos:pos + 3], "big")
            types.append(got[pos + 3])
            pos += 9 + n
        self.assertIn(7, types, got)  # GOAWAY
        fs = self.reel.wait_flows(1, "~u /cont-flood", timeout=5)
        self.assertEqual(len(fs), 1, fs)
        self.assertIn("max_continuations CONTINUATION frames", fs[0]["error"], fs)

    def test_websocket_connect_with_end_stream_is_reset(self):
        # RFC 8441 5: the stream of an extended CONNECT carries the
        # WebSocket's frames both ways; with END_STREAM on its HEADERS the
        # client can never send one. reel used to open it to the origin,
        # answer 200 and keep the stream and its flow open for good.
        c = H2C(self.reel.port)
        try:
            c.wait(lambda: c.conn.remote_settings.enable_connect_protocol == 1)
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                      (":scheme", "http"), (":path", "/ws-end-stream"),
                                      (":authority", "127.0.0.1:%d" % self.ws.port),
                                      ("sec-websocket-version", "13")], end_stream=True)
            new_stream(c, sid)
            c.flush()
            try:
                c.wait(lambda: c.done(sid), timeout=5)
            except (AssertionError, socket.timeout):
                pass  # said below
            self.assertEqual(c.streams[sid]["reset"], 1)  # PROTOCOL_ERROR
            self.assertIsNone(c.streams[sid]["headers"])
            ok = c.request("GET", self.auth, "/after-ws-end-stream")  # the connection goes on
            c.wait(lambda: c.done(ok))
            self.assertEqual(c.streams[ok]["data"], b"GET /after-ws-end-stream\n")
        finally:
            c.close()
        fs = self.reel.wait_flows(1, "~u /ws-end-stream", timeout=5)
        self.assertEqual(len(fs), 1, fs)
        f = self.reel.flow(fs[0]["id"])
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["error"], "reel reset the HTTP/2 stream with RST_STREAM PROTOCOL_ERROR "
                         "(0x1): malformed HTTP/2 request: an extended CONNECT for a WebSocket "
                         "with END_STREAM on its HEADERS: the client could never send a frame "
                         "(RFC 8441 5)")
        self.assertEqual((f["request"]["method"], f["request"]["http_version"]),
                         ("CONNECT", "HTTP/2.0"))
        self.assertEqual(f["request"]["headers"][0], [":protocol", "websocket"])
        self.assertEqual(fs[0]["url"], "http://127.0.0.1:%d/ws-end-stream" % self.ws.port)
        self.assertIsNone(f["response"])
        self.assertFalse([r for r in self.ws.requests if "/ws-end-stream" in r])

    def test_window_update_zero_on_a_stream_is_goaway(self):
        # RFC 9113 6.9 makes an increment of 0 on a stream a stream error;
        # nghttp2 makes it a connection error and sends GOAWAY. The flow of
        # the stream it came on said reel had reset that stream.
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", self.auth, "/slow?wu0-culprit")
            c.request("GET", self.auth, "/slow?wu0-other")  # open when the connection goes
            time.sleep(0.3)  # both reached reel
            c.s.sendall(b"\x00\x00\x04\x08\x00" + struct.pack(">I", sid) + b"\x00\x00\x00\x00")
            got = read_until_closed(c.s)
        finally:
            c.close()
        g = goaway_of(got)
        self.assertIsNotNone(g, got)
        self.assertEqual(g[1], 1)  # PROTOCOL_ERROR
        self.assertNotIn(b"\x00\x00\x04\x03\x00" + struct.pack(">I", sid), got)  # no RST_STREAM
        [f] = [self.reel.flow(r["id"]) for r in self.reel.wait_flows(1, "~u wu0-culprit")]
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["error"], "reel closed the HTTP/2 connection with GOAWAY PROTOCOL_ERROR "
                         "(0x1) for a frame on this stream: a WINDOW_UPDATE with an increment of "
                         "0 (RFC 9113 6.9)")
        [f] = [self.reel.flow(r["id"]) for r in self.reel.wait_flows(1, "~u wu0-other")]
        self.assertEqual(f["state"], "error", f)
        self.assertIn("GOAWAY", f["error"])
        self.assertNotIn("RST_STREAM", f["error"])

    def open_streams(self, c, n, tag):
        """n GET /slow streams on c, sent without reading; their ids."""
        sids = []
        for i in range(n):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", self.auth), (":path", "/slow?%s-%d" % (tag, i))],
                                end_stream=True)
            new_stream(c, sid)
            sids.append(sid)
        c.flush()
        return sids

    def assert_request(self, f, path, row):
        """Flow f (its row: row) has the GET of path open_streams sent."""
        self.assertEqual((f["request"]["method"], f["request"]["http_version"]),
                         ("GET", "HTTP/2.0"))
        self.assertEqual(row["url"], "http://%s%s" % (self.auth, path))

    def test_stream_over_the_limit_before_settings_ack_is_refused_and_recorded(self):
        # 101 streams sent before the client read reel's SETTINGS (its
        # MAX_CONCURRENT_STREAMS 100 not acknowledged): the last is refused
        # with RST_STREAM REFUSED_STREAM. It reached reel and left no flow,
        # then a flow without method or URL (nghttp2 refused it unread).
        c = H2C(self.reel.port)
        try:
            sids = self.open_streams(c, 101, "refused")
            last = sids[-1]
            c.wait(lambda: c.done(last), timeout=10)
            self.assertEqual(c.streams[last]["reset"], 7)  # REFUSED_STREAM
            self.assertFalse(any(c.done(s) for s in sids[:-1]))  # the others still run
        finally:
            c.close()
        conn = self.reel.wait_flows(1, "~u refused-0", timeout=10)[0]["client_conn"]
        f = self.stream_flow(conn, last)
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["error"], "reel reset the HTTP/2 stream with RST_STREAM REFUSED_STREAM "
                         "(0x7): refused: the client opened more than 100 concurrent streams "
                         "(SETTINGS_MAX_CONCURRENT_STREAMS) before it had acknowledged the limit "
                         "(the client may send it again)")
        [row] = [r for r in self.reel.flows("~conn %d" % conn) if r["stream_id"] == last]
        self.assert_request(f, "/slow?refused-100", row)
        self.assertIsNone(f["response"])
        self.assertFalse([r for r in self.echo.requests if r[1] == "/slow?refused-100"])

    def test_stream_over_the_limit_after_settings_ack_is_goaway_and_recorded(self):
        # the same once the client acknowledged the limit: nghttp2 takes it
        # for a connection error (RFC 9113 5.1.2 allows a stream error)
        c = H2C(self.reel.port)
        try:
            # reel's SETTINGS came and were acknowledged (H2C's flush)
            c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
            # this client ignores the limit it was given
            c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
            c.conn.remote_settings.acknowledge()
            sids = self.open_streams(c, 101, "over-acked")
            got = read_until_closed(c.s)
        finally:
            c.close()
        last = sids[-1]
        g = goaway_of(got)
        self.assertIsNotNone(g, got)
        self.assertEqual(g[:2], (last - 2, 1))  # PROTOCOL_ERROR, the 100 before it processed
        conn = self.reel.wait_flows(1, "~u over-acked-0", timeout=10)[0]["client_conn"]
        f = self.stream_flow(conn, last)
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["error"], "reel closed the HTTP/2 connection with GOAWAY PROTOCOL_ERROR "
                         "(0x1) for a frame on this stream: refused: the client opened more than "
                         "100 concurrent streams (SETTINGS_MAX_CONCURRENT_STREAMS)")
        [row] = [r for r in self.reel.flows("~conn %d" % conn) if r["stream_id"] == last]
        self.assert_request(f, "/slow?over-acked-100", row)
        self.assertIsNone(f["response"])
        self.assertFalse([r for r in self.echo.requests if r[1] == "/slow?over-acked-100"])

    def test_streams_after_the_goaway_in_the_same_write_are_flows(self):
        # 104 streams in one write once the limit was acknowledged: the
        # 101st makes reel send GOAWAY, and nghttp2 reads nothing of the
        # write after it (not even the frame starts on_begin_frame reports
        # after a GOAWAY at shutdown). The last 3 requests reached reel and
        # left no flow at all.
        c = H2C(self.reel.port)
        try:
            c.wait(lambda: c.conn.remote_settings.max_concurrent_streams == 100)
            c.conn.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = 1000
            c.conn.remote_settings.acknowledge()
            sids = self.open_streams(c, 104, "same-write")  # one sendall
            got = read_until_closed(c.s)
        finally:
            c.close()
        g = goaway_of(got)
        self.assertIsNotNone(g, got)
        self.assertEqual(g[:2], (sids[99], 1))  # PROTOCOL_ERROR
        conn = self.reel.wait_flows(1, "~u same-write-0", timeout=10)[0]["client_conn"]
        deadline = time.time() + 10
        while True:
            rows = self.reel.flows("~conn %d" % conn)
            if len(rows) >= 104 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(sorted(r["stream_id"] for r in rows), sids)
        f = self.stream_flow(conn, sids[100])
        self.assertTrue(f["error"].startswith("reel closed the HTTP/2 connection with GOAWAY "
                                              "PROTOCOL_ERROR (0x1)"), f)
        for sid in sids[101:]:
            f = self.stream_flow(conn, sid)
            self.assertEqual(f["state"], "error", f)
            self.assertEqual(f["error"], "reel refused the HTTP/2 stream: the client opened it "
                             "after reel's GOAWAY (last_stream_id %d), and reel ignored it and "
                             "never answered (RFC 9113 6.8; the client may send it again on a new "
                             "connection); reel's GOAWAY was PROTOCOL_ERROR (0x1): the client "
                             "opened more streams than SETTINGS_MAX_CONCURRENT_STREAMS allows; "
                             "the stream came after the frame that made reel send that GOAWAY, "
                             "and nghttp2 reads nothing after that frame: none of its head was "
                             "decoded" % sids[99])
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            self.assertIsNone(f["response"])

    def late_flows(self, conn, sids, culprit):
        """The flows of streams sids on conn, each refused as opened after
        reel's GOAWAY, once the flow of stream culprit is there."""
        self.stream_flow(conn, culprit)
        fs = [self.stream_flow(conn, sid) for sid in sids]
        for f in fs:
            self.assertEqual(f["state"], "error", f)
            self.assertTrue(f["error"].startswith(
                "reel refused the HTTP/2 stream: the client opened it after reel's GOAWAY "
                "(last_stream_id %d), and reel ignored it and never answered" % culprit), f)
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            self.assertIsNone(f["response"])
        return fs

    def test_streams_in_a_later_write_after_a_protocol_error_goaway_are_flows(self):
        # reel answers a WINDOW_UPDATE of 0 with GOAWAY PROTOCOL_ERROR; a
        # client that has not read it yet opens more streams. reel used to
        # close the connection once the GOAWAY was out, their bytes unread
        # (nothing recorded; the close reset the connection); now it reads
        # on for a while (as after an HTTP/1 error answer) and records them.
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", self.auth, "/slow?later-write-culprit")
            time.sleep(0.3)  # reached reel
            c.s.sendall(b"\x00\x00\x04\x08\x00" + struct.pack(">I", sid) + b"\x00\x00\x00\x00")
            got = b""
            c.s.settimeout(10)
            while goaway_of(got) is None:
                d = c.s.recv(65536)
                self.assertTrue(d, "reel closed before its GOAWAY")
                got += d
            self.assertEqual(goaway_of(got)[:2], (sid, 1))
            # python-h2 sends nothing after a GOAWAY: HEADERS by hand, from
            # its HPACK encoder, in a write of their own
            late = [sid + 2, sid + 4]
            data = b""
            for n, s in enumerate(late):
                block = c.conn.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                               (":authority", self.auth),
                                               (":path", "/later-write-%d" % n)])
                data += len(block).to_bytes(3, "big") + b"\x01\x05" + struct.pack(">I", s) + block
            c.s.sendall(data)
            read_until_closed(c.s)
        finally:
            c.close()
        conn = self.reel.wait_flows(1, "~u later-write-culprit", timeout=10)[0]["client_conn"]
        for f in self.late_flows(conn, late, sid):
            self.assertIn("reel's GOAWAY was PROTOCOL_ERROR (0x1): a WINDOW_UPDATE with an "
                          "increment of 0 (RFC 9113 6.9); the stream came after reel had sent "
                          "that GOAWAY", f["error"])
        self.assertFalse([r for r in self.echo.requests if r[1].startswith("/later-write-")])

    def test_streams_after_a_header_block_that_does_not_decode_are_flows(self):
        # a header block that does not decode (HPACK) makes nghttp2 send
        # GOAWAY COMPRESSION_ERROR and read nothing more: the stream of
        # that block and the two sent after it in the same write left no
        # flow.
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", self.auth, "/slow?bad-hpack-first")
            time.sleep(0.3)  # reached reel
            bad = b"\xff" * 7  # an index past any table
            data = len(bad).to_bytes(3, "big") + b"\x01\x05" + struct.pack(">I", sid + 2) + bad
            for n, s in enumerate((sid + 4, sid + 6)):
                block = c.conn.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                               (":authority", self.auth),
                                               (":path", "/bad-hpack-after-%d" % n)])
                data += len(block).to_bytes(3, "big") + b"\x01\x05" + struct.pack(">I", s) + block
            c.s.sendall(data)
            got = read_until_closed(c.s)
        finally:
            c.close()
        self.assertEqual(goaway_of(got)[:2], (sid + 2, 9))  # COMPRESSION_ERROR
        conn = self.reel.wait_flows(1, "~u bad-hpack-first", timeout=10)[0]["client_conn"]
        f = self.stream_flow(conn, sid + 2)
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["error"], "reel closed the HTTP/2 connection with GOAWAY "
                         "COMPRESSION_ERROR (0x9) for a frame on this stream: its header block "
                         "did not decode (HPACK); the request is as far as its header block had "
                         "decoded")
        for f in self.late_flows(conn, (sid + 4, sid + 6), sid + 2):
            self.assertIn("reel's GOAWAY was COMPRESSION_ERROR (0x9): a header block did not "
                          "decode (HPACK); the stream came after the frame that made reel send "
                          "that GOAWAY", f["error"])
        self.assertFalse([r for r in self.echo.requests if r[1].startswith("/bad-hpack-after")])


class StreamAfterGoawayTest(unittest.TestCase):
    """reel record of its own, stopped in the test: at SIGINT reel sends
    its HTTP/2 clients GOAWAY and lets their streams finish."""

    def test_stream_after_reels_goaway_is_a_flow(self):
        # RFC 9113 6.8: reel ignores a stream opened after its GOAWAY, and
        # nghttp2 hands over nothing of it (no head, no callback but the
        # frame's start). The client sent a request reel never answered,
        # and the record had no trace of it.
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(dir=TMPBASE)
        echo = EchoOrigin()
        auth = "127.0.0.1:%d" % echo.port
        reel = Reel(root, "h2late")
        try:
            c = H2C(reel.port)
            try:
                first = c.request("GET", auth, "/slow?before-goaway")  # 1.5 s
                time.sleep(0.3)  # reached reel
                reel.proc.send_signal(signal.SIGINT)
                last = None
                c.s.settimeout(10)
                while last is None:
                    d = c.s.recv(65536)
                    self.assertTrue(d, "reel closed before its GOAWAY")
                    for ev in c.conn.receive_data(d):
                        if isinstance(ev, h2.events.ConnectionTerminated):
                            last = ev.last_stream_id
                self.assertEqual(last, first)
                # python-h2 sends nothing after a GOAWAY: the HEADERS by hand,
                # from its HPACK encoder (the decoder's state is the one the
                # connection shares)
                block = c.conn.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                               (":authority", auth),
                                               (":path", "/after-goaway")])
                late = first + 2
                c.s.sendall(len(block).to_bytes(3, "big") + b"\x01\x05" +
                            struct.pack(">I", late) + block)
                read_until_closed(c.s)
            finally:
                c.close()
            reel.proc.wait(30)  # it exits once the connection ended: no second signal
            self.assertEqual(reel.stop(), 0, reel.log())
            rows = reel.flows("~u before-goaway")
            self.assertEqual(len(rows), 1, rows)
            self.assertIsNone(rows[0]["error"], rows)  # it finished
            conn = rows[0]["client_conn"]
            rows = [r for r in reel.flows("~conn %d" % conn) if r["stream_id"] == late]
            self.assertEqual(len(rows), 1, reel.flows())
            f = reel.flow(rows[0]["id"])
            self.assertEqual(f["state"], "error", f)
            self.assertEqual(f["error"], "reel refused the HTTP/2 stream: the client opened it "
                             "after reel's GOAWAY (last_stream_id %d), and reel ignored it and "
                             "never answered (RFC 9113 6.8; the client may send it again on a new "
                             "connection); reel's GOAWAY was NO_ERROR (0x0); nghttp2 ignores such "
                             "a stream's HEADERS and hands over none of its head" % first)
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            self.assertIsNone(f["response"])
            self.assertFalse([r for r in echo.requests if r[1] == "/after-goaway"])
        finally:
            if reel.proc.poll() is None:
                reel.stop()
            echo.stop()
            shutil.rmtree(root, ignore_errors=True)


class CloseDelimitedTest(unittest.TestCase):
    """An HTTP/1 origin's body without Content-Length or chunked framing
    ends at its close (RFC 9112 6.3). To an HTTP/2 client the end is
    END_STREAM when that close is clean (a FIN), RST_STREAM when it is a
    reset: the stream used to be reset either way, its flow an error."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(dir=TMPBASE)
        cls.reel = Reel(cls.root, "h2eof")

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        if code != 0:
            print(cls.reel.log())
        shutil.rmtree(cls.root, ignore_errors=True)
        assert code == 0, "reel record exited %d on SIGINT" % code

    def get(self, answer, end, path):
        o = OneShot(answer, end)
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", "127.0.0.1:%d" % o.port, path)
            c.wait(lambda: c.done(sid))
            st = c.streams[sid]
        finally:
            c.close()
            o.join()
        fs = self.reel.wait_flows(1, "~u %s" % path, timeout=5)
        self.assertEqual(len(fs), 1, fs)
        deadline = time.time() + 5
        while fs[0]["state"] == "open" and time.time() < deadline:
            time.sleep(0.1)
            fs = self.reel.flows("~u %s" % path)
        return st, self.reel.flow(fs[0]["id"])

    def test_clean_close_ends_the_stream(self):
        # (the last: more than the client's window, still queued at the close)
        for head, path, n in ((b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n", "/eof-11", 5000),
                              (b"HTTP/1.0 200 OK\r\n\r\n", "/eof-10", 5000),
                              (b"HTTP/1.1 200 OK\r\n\r\n", "/eof-big", 300000)):
            st, f = self.get(head + b"x" * n, "close", path)
            self.assertEqual(st["data"], b"x" * n, path)
            self.assertTrue(st["ended"], (path, st["reset"]))
            self.assertIsNone(st["reset"], path)
            self.assertEqual(f["state"], "complete", f)

    def test_reset_resets_the_stream(self):
        st, f = self.get(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n" + b"x" * 5000, "reset",
                         "/eof-reset")
        self.assertEqual(st["data"], b"x" * 5000)
        self.assertFalse(st["ended"])
        self.assertEqual(st["reset"], 2)  # INTERNAL_ERROR
        self.assertEqual(f["state"], "error", f)


if __name__ == "__main__":
    main()
