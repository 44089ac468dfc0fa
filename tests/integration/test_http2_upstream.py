#!/usr/bin/python3
"""HTTP/2 towards origins (core/h2up.c): the streams of HTTP/2 clients go
as streams of one shared h2 connection per origin, and the record says what
the origin sent (HTTP/2.0, its own fields, trailers, 1xx, RST_STREAM,
GOAWAY). The origin is a python3-h2 server over TLS (ALPN h2) with the
nginx origin's certificate, so that its behaviour at the frame level is
the test's to choose; clients are curl --http2 and python3-h2 through a
CONNECT tunnel."""
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
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
from proxyenv import TMPBASE, Origin, Reel, body, main, stop_class  # noqa: E402
from test_http2 import H2C, hdr  # noqa: E402


class H2Origin:
    """An HTTP/2-only TLS origin on 127.0.0.1 (python3-h2), one thread per
    connection, answering by path:
    /t/plain?..   200 with content-length, "plain <path>"
    /t/trailers   200 without length, "abc", trailers grpc-status: 0
    /t/cl-trailers 200 with content-length 3, "abc", trailers x-trail: yes
    /t/hints      103 (link), then 200 "hinted"
    /t/echo       reads body and trailers; JSON {len, sha256, trailers}
    /t/reset      200, 5000 bytes, then RST_STREAM INTERNAL_ERROR
    /t/goaway     200 "bye", then GOAWAY NO_ERROR and the connection closed
    /t/refuse-once  the first time: GOAWAY NO_ERROR that leaves the stream
                  unprocessed (last stream id below it), then the close;
                  after that 200 "second try"
    /t/refuse-always  GOAWAY NO_ERROR that leaves the stream unprocessed, every time
    /t/goaway-error 200, 3000 bytes, then GOAWAY INTERNAL_ERROR and the close
    /t/bad-window 200, 3000 bytes, then a WINDOW_UPDATE of 0 on the
                  connection (RFC 9113 6.9: a connection error, which reel
                  answers with GOAWAY PROTOCOL_ERROR)
    /t/wu0-stay   no answer: a WINDOW_UPDATE of 0 on the connection at once
    /t/badhpack-stay  a HEADERS block for the stream that does not decode
                  (HPACK: a connection error, COMPRESSION_ERROR); after
                  either the origin stops speaking HTTP/2 on that
                  connection and never closes it: it reads until reel
                  closes it (RFC 9113 5.4.1), noting what came and when
    /t/slow?ms    200 after ms milliseconds (other streams go on)
    /t/rst-head   HEADERS 200 (no length), then 0.2 s later RST_STREAM
                  INTERNAL_ERROR
    /t/rst-with-head  HEADERS 200 and RST_STREAM INTERNAL_ERROR in one write
    /t/cl-short   content-length 10, "12345" and END_STREAM (malformed:
                  RFC 9113 8.1.1, reel resets the stream)
    /t/cl-long    content-length 3, "1234567890" and END_STREAM (malformed)
    /t/upper      a 200 with an upper-case field name (malformed), END_STREAM
    /t/refuse     RST_STREAM REFUSED_STREAM: not processed (RFC 9113 8.7)
    /t/204-data   HEADERS 204, then 0.2 s later DATA "oops" with END_STREAM (content
                  where there is none by rule, RFC 9113 8.1.1)
    CONNECT :protocol websocket (RFC 8441; SETTINGS_ENABLE_CONNECT_PROTOCOL
                  is offered): /t/ws answers 200 and echoes every WebSocket
                  message, a close with a close and the stream's end;
                  /t/ws-refuse answers 403 "refused"
    It records connections, requests (with their :scheme/:authority and
    fields) and the most streams it saw open at once."""

    def __init__(self, cert=None, key=None, max_streams=100):
        self.ctx = None  # no certificate: prior-knowledge h2c
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
            self.ctx.set_alpn_protocols(["h2"])
        self.max_streams = max_streams
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = 0
        self.refused = 0
        self.requests = []
        self.open_now = 0
        self.open_max = 0
        self.stay = []  # per /t/*-stay connection: {"bytes", "closed" (time or None)}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, raw):
        try:
            s = self.ctx.wrap_socket(raw, server_side=True) if self.ctx else raw
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self.conns += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        conn.initiate_connection()
        streams = {}  # sid -> {headers, data, trailers}
        due = []  # (time, sid, body)
        s.settimeout(0.02)
        try:
            s.sendall(conn.data_to_send())
            while True:
                now = time.time()
                for item in [d for d in due if d[0] <= now]:
                    due.remove(item)
                    self._answer(conn, item[1], 200, item[2])
                    self._closed()
                out = conn.data_to_send()
                if out:
                    s.sendall(out)
                try:
                    data = s.recv(65536)
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = {"headers": dict(
                            (k.decode(), v.decode()) for k, v in ev.headers),
                            "fields": [(k.decode(), v.decode()) for k, v in ev.headers],
                            "data": b"", "trailers": []}
                        with self.lock:
                            self.open_now += 1
                            self.open_max = max(self.open_max, self.open_now)
                        st = streams[ev.stream_id]
                        if st["headers"].get(":protocol") == "websocket":
                            self.requests.append(st)
                            if st["headers"].get(":path") == "/t/ws":
                                st["ws"] = b""
                                conn.send_headers(ev.stream_id, [(":status", "200")])
                            else:
                                self._answer(conn, ev.stream_id, 403, b"refused")
                                self._closed()
                    elif isinstance(ev, h2.events.DataReceived):
                        streams[ev.stream_id]["data"] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        if "ws" in streams[ev.stream_id]:
                            self._ws_echo(conn, ev.stream_id, streams[ev.stream_id], ev.data)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        streams[ev.stream_id]["trailers"] = [
                            [k.decode(), v.decode()] for k, v in ev.headers]
                    elif isinstance(ev, h2.events.StreamEnded):
                        st = streams[ev.stream_id]
                        if st["headers"].get(":protocol") == "websocket":
                            continue  # answered when it came
                        self.requests.append(st)
                        r = self._handle(conn, s, ev.stream_id, st, due)
                        if r == "close":
                            return
                        if r == "stay":
                            self._stay(s)
                            return
                    elif isinstance(ev, h2.events.StreamReset):
                        if ev.stream_id in streams:
                            self._closed()
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return
        except (OSError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _ws_echo(self, conn, sid, st, data):
        """Echoes each whole WebSocket frame (masked, short) of the stream,
        unmasked; a close gets a close and the stream's end."""
        st["ws"] += data
        while len(st["ws"]) >= 6:
            b = st["ws"]
            op, n = b[0] & 0x0F, b[1] & 0x7F
            if len(b) < 6 + n:
                return
            payload = bytes(x ^ b[2 + i % 4] for i, x in enumerate(b[6:6 + n]))
            st["ws"] = b[6 + n:]
            st.setdefault("messages", []).append((op, payload))
            if op == 8:
                conn.send_data(sid, bytes([0x88, len(payload)]) + payload, end_stream=True)
                self._closed()
                return
            conn.send_data(sid, bytes([0x80 | op, len(payload)]) + payload)

    def _stay(self, s):
        """Reads whatever comes until the peer closes the connection, and
        never closes it first (nor answers: HTTP/2 is over on it)."""
        rec = {"bytes": b"", "closed": None}
        with self.lock:
            self.stay.append(rec)
        s.settimeout(0.2)
        end = time.time() + 120
        while time.time() < end:
            try:
                d = s.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                break
            if not d:
                break
            rec["bytes"] += d
        rec["closed"] = time.time()

    def _closed(self):
        with self.lock:
            self.open_now -= 1

    @staticmethod
    def _answer(conn, sid, status, data, extra=()):
        conn.send_headers(sid, [(":status", str(status)), ("content-length", str(len(data)))] +
                          list(extra))
        conn.send_data(sid, data, end_stream=True)

    def _handle(self, conn, s, sid, st, due):
        path = st["headers"][":path"]
        if path.startswith("/t/plain"):
            self._answer(conn, sid, 200, ("plain %s" % path).encode(),
                         [("x-origin", "h2"), ("set-cookie", "a=1"), ("set-cookie", "b=2")])
        elif path == "/t/trailers":
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            conn.send_data(sid, b"abc")
            conn.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "fine")],
                              end_stream=True)
        elif path.startswith("/t/cl-trailers"):
            conn.send_headers(sid, [(":status", "200"), ("content-length", "3")])
            conn.send_data(sid, b"abc")
            conn.send_headers(sid, [("x-trail", "yes")], end_stream=True)
        elif path == "/t/hints":
            conn.send_headers(sid, [(":status", "103"), ("link", "</style.css>; rel=preload")])
            self._answer(conn, sid, 200, b"hinted")
        elif path == "/t/echo":
            out = json.dumps({"len": len(st["data"]),
                              "sha256": hashlib.sha256(st["data"]).hexdigest(),
                              "trailers": st["trailers"]}).encode()
            self._answer(conn, sid, 200, out)
        elif path == "/t/reset":
            conn.send_headers(sid, [(":status", "200"), ("content-length", "100000")])
            conn.send_data(sid, b"r" * 5000)
            s.sendall(conn.data_to_send())
            time.sleep(0.1)
            conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == "/t/goaway":
            self._answer(conn, sid, 200, b"bye")
            conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=sid)
            s.sendall(conn.data_to_send())
            time.sleep(0.1)
            self._closed()
            return "close"
        elif path == "/t/refuse-once" and self.refused == 0:
            self.refused += 1
            conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=max(sid - 2, 0))
            s.sendall(conn.data_to_send())
            time.sleep(0.2)
            self._closed()
            return "close"
        elif path == "/t/refuse-once":
            self._answer(conn, sid, 200, b"second try")
        elif path == "/t/refuse-always":
            conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=max(sid - 2, 0))
            s.sendall(conn.data_to_send())
            time.sleep(0.2)
            self._closed()
            return "close"
        elif path == "/t/goaway-error":
            conn.send_headers(sid, [(":status", "200"), ("content-length", "100000")])
            conn.send_data(sid, b"g" * 3000)
            conn.close_connection(h2.errors.ErrorCodes.INTERNAL_ERROR, last_stream_id=sid)
            s.sendall(conn.data_to_send())
            time.sleep(0.1)
            self._closed()
            return "close"
        elif path == "/t/bad-window":
            conn.send_headers(sid, [(":status", "200"), ("content-length", "100000")])
            conn.send_data(sid, b"w" * 3000)
            s.sendall(conn.data_to_send())
            time.sleep(0.1)
            s.sendall(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
            return None  # until reel's GOAWAY (ConnectionTerminated) or its close
        elif path in ("/t/wu0-stay", "/t/badhpack-stay"):
            s.sendall(conn.data_to_send())
            if path == "/t/wu0-stay":
                s.sendall(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
            else:  # HEADERS, END_STREAM|END_HEADERS: an index far beyond any table
                block = b"\xff" * 8 + b"\x0f"
                s.sendall(len(block).to_bytes(3, "big") + b"\x01\x05" +
                          sid.to_bytes(4, "big") + block)
            self._closed()
            return "stay"
        elif path.split("?")[0] in ("/t/rst-head", "/t/rst-with-head", "/t/cl-short", "/t/cl-long",
                                    "/t/cl-long-padded", "/t/upper", "/t/no-status", "/t/interim-end",
                                    "/t/open-trailers", "/t/data-first", "/t/data-no-head",
                                    "/t/204-data"):
            # frames by hand: python3-h2 refuses to send what is malformed
            # (its encoder, shared, keeps HPACK in step)
            def frame(ftype, flags, payload):
                return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) +
                        sid.to_bytes(4, "big") + payload)
            rst = frame(3, 0, (2).to_bytes(4, "big"))  # INTERNAL_ERROR
            s.sendall(conn.data_to_send())
            if path == "/t/rst-head":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200")])))
                time.sleep(0.2)
                s.sendall(rst)
            elif path == "/t/rst-with-head":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200")])) + rst)
            elif path.startswith("/t/cl-short"):
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200"),
                                                           ("content-length", "10")])) +
                          frame(0, 1, b"12345"))
            elif path == "/t/cl-long":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200"),
                                                           ("content-length", "3")])) +
                          frame(0, 1, b"1234567890"))
            elif path == "/t/cl-long-padded":  # 5 bytes then 10, each padded (PADDED 0x8)
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200"),
                                                           ("content-length", "10")])) +
                          frame(0, 8, bytes([100]) + b"abcde" + bytes(100)) +
                          frame(0, 9, bytes([20]) + b"0123456789" + bytes(20)))
            elif path == "/t/no-status":
                s.sendall(frame(1, 5, conn.encoder.encode([("x-no", "status")])))
            elif path == "/t/interim-end":
                s.sendall(frame(1, 5, conn.encoder.encode([(":status", "103")])))
            elif path == "/t/open-trailers":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "200")])) +
                          frame(0, 0, b"abc") + frame(1, 4, conn.encoder.encode([("x-t", "1")])))
            elif path == "/t/data-no-head":
                s.sendall(frame(0, 0, b"hello"))
            elif path.split("?")[0] == "/t/204-data":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "204")])))
                time.sleep(0.2)
                s.sendall(frame(0, 1, b"oops"))
            elif path == "/t/data-first":
                s.sendall(frame(1, 4, conn.encoder.encode([(":status", "103")])) +
                          frame(0, 1, b"abc"))
            else:
                s.sendall(frame(1, 5, conn.encoder.encode([(":status", "200"), ("X-Upper", "1")])))
        elif path.startswith("/t/refuse?") or path == "/t/refuse":
            conn.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path.startswith("/t/slow?"):
            due.append((time.time() + int(path.split("?")[1]) / 1000.0, sid,
                        ("slow %s" % path).encode()))
            return None
        else:
            self._answer(conn, sid, 404, b"no such path\n")
        self._closed()
        return None

    def stop(self):
        self.sock.close()


def tunnel_h2(reel, port):
    """An HTTP/2 client (python3-h2) through a CONNECT tunnel to
    localhost:port, TLS verified against reel's CA, ALPN h2."""
    raw = socket.create_connection(("127.0.0.1", reel.port), 10)
    raw.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
    resp = b""
    while b"\r\n\r\n" not in resp:
        d = raw.recv(4096)
        if not d:
            raise AssertionError("proxy closed the tunnel: %r" % resp)
        resp += d
    assert resp.startswith(b"HTTP/1.1 200"), resp
    ctx = ssl.create_default_context(cafile=reel.ca)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    c = H2C.__new__(H2C)
    c.s = s
    c.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.conn.initiate_connection()
    c.auto_ack = True
    c.streams = {}
    c.flush()
    return c


class Http2UpstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2up-", dir=TMPBASE)
        # nginx: its CA and localhost certificate, and an h2 origin of its own
        cls.certs = Origin(cls.root, h2=True)
        with open(os.path.join(cls.certs.www, "64k"), "wb") as f:
            f.write(os.urandom(65536))
        cls.origin = H2Origin(os.path.join(cls.root, "server.pem"),
                              os.path.join(cls.root, "server.key"))
        cls.h2c = H2Origin()  # plain: h2c_upstreams names it
        # one worker: these tests count the origin connections one worker's
        # pool makes (each worker keeps its own: test_workers)
        cls.reel = Reel(cls.root, "h2up", "upstream_trusted_ca=" + cls.certs.ca,
                        "h2c_upstreams=localhost:%d" % cls.h2c.port, "workers=1")
        cls.auth = "localhost:%d" % cls.origin.port

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        cls.h2c.stop()
        cls.certs.stop()
        stop_class(cls)

    def url(self, path):
        return "https://localhost:%d%s" % (self.origin.port, path)

    def flows_for(self, target_part, n=1, timeout=10):
        fs = self.reel.wait_flows(n, "~u '%s'" % target_part.replace("?", "."), timeout=timeout)
        self.assertEqual(len(fs), n, fs)
        return [self.reel.flow(f["id"]) for f in sorted(fs, key=lambda f: f["id"])]

    def curl_h2(self, *urls):
        args = ["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert", self.reel.ca,
                "--http2", "-w", "%{http_version} %{http_code}\\n"]
        for u in urls:
            args += ["-o", "/dev/null", u]
        return subprocess.run(args, capture_output=True, check=True).stdout.decode()

    def test_a_streams_of_many_clients_share_one_origin_connection(self):
        # the first asks the origin's ALPN (a probe connection), then h2
        # both ways; two curl processes, three requests each
        conns0 = self.origin.conns
        for k in range(2):
            out = self.curl_h2(*[self.url("/t/plain?share%d-%d" % (k, i)) for i in range(3)])
            self.assertEqual(out, "2 200\n" * 3)
        flows = self.flows_for("/t/plain?share", 6)
        ids = set()
        for f in flows:
            self.assertIsNone(f.get("error"), f)
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            # what the origin sent: HTTP/2.0, its fields as they were, and
            # none of the HTTP/1.1 framing reel used inside
            self.assertEqual(f["response"]["http_version"], "HTTP/2.0", f["response"])
            names = [h[0].lower() for h in f["response"]["headers"]]
            self.assertNotIn("transfer-encoding", names)
            self.assertEqual(names.count("set-cookie"), 2)
            self.assertIn("x-origin", names)
            self.assertEqual(f["server_conn"]["alpn"], "h2", f["server_conn"])
            ids.add(f["server_conn"]["conn_id"])
            self.assertEqual(body(f, "response"),
                             ("plain %s" % f["request"]["target"]).encode())
        self.assertEqual(len(ids), 1, "one origin connection for every stream: %r" % ids)
        self.assertEqual(len({f["client_conn"] for f in flows}), 2)
        # one connection: the one reel opened to ask the origin's ALPN
        # became the shared session
        self.assertEqual(self.origin.conns - conns0, 1)
        reused = [f["server_conn"]["reused"] for f in flows]
        self.assertEqual(reused.count(False), 1, reused)
        # the origin got HTTP/2 requests with :authority and no Host
        req = [r for r in self.origin.requests if "share1-2" in r["headers"][":path"]][0]
        self.assertEqual(req["headers"][":authority"], self.auth)
        self.assertNotIn("host", req["headers"])
        self.assertEqual(req["headers"][":scheme"], "https")

    def test_b_trailers_and_early_hints_from_the_origin(self):
        self.curl_h2(self.url("/t/plain?warm"))  # the origin's ALPN is known
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            t = c.request("GET", self.auth, "/t/trailers")
            hsid = c.request("GET", self.auth, "/t/hints")
            c.wait(lambda: c.done(t) and c.done(hsid))
            st = c.streams[t]
            self.assertEqual(hdr(st["headers"], ":status"), "200")
            self.assertEqual(st["data"], b"abc")
            self.assertEqual(hdr(st["trailers"], "grpc-status"), "0")
            hs = c.streams[hsid]
            self.assertEqual([hdr(i, ":status") for i in hs["info"]], ["103"])
            self.assertEqual(hs["data"], b"hinted")
        finally:
            c.close()
        f = self.flows_for("/t/trailers")[0]
        self.assertEqual(f["response"]["http_version"], "HTTP/2.0")
        self.assertEqual([h[0] for h in f["response"]["headers"]], ["content-type"])
        self.assertEqual(f["response_trailers"], [["grpc-status", "0"], ["grpc-message", "fine"]])
        self.assertEqual(body(f, "response"), b"abc")
        f = self.flows_for("/t/hints")[0]
        self.assertEqual([i["status"] for i in f["interim"]], [103])
        self.assertEqual(f["interim"][0]["http_version"], "HTTP/2.0")

    def test_c_request_body_and_trailers_to_the_origin(self):
        self.curl_h2(self.url("/t/plain?warm"))
        data = os.urandom(300000)
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            sid = c.request("POST", self.auth, "/t/echo", body=data, end=False)
            c.conn.send_headers(sid, [("x-checksum", "42")], end_stream=True)
            c.flush()
            c.wait(lambda: c.done(sid))
            got = json.loads(c.streams[sid]["data"])
        finally:
            c.close()
        self.assertEqual(got["len"], len(data))
        self.assertEqual(got["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(got["trailers"], [["x-checksum", "42"]])
        f = self.flows_for("/t/echo")[0]
        self.assertEqual(body(f, "request"), data)
        self.assertEqual(f["request_trailers"], [["x-checksum", "42"]])

    def test_d_origin_reset_mid_body_is_the_flow_error(self):
        self.curl_h2(self.url("/t/plain?warm"))
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            sid = c.request("GET", self.auth, "/t/reset")
            ok = c.request("GET", self.auth, "/t/plain?after-reset")
            c.wait(lambda: c.done(sid) and c.done(ok))
            self.assertIsNotNone(c.streams[sid]["reset"])  # the client sees the stream cut
            self.assertEqual(len(c.streams[sid]["data"]), 5000)
            self.assertEqual(c.streams[ok]["data"], b"plain /t/plain?after-reset")
        finally:
            c.close()
        f = self.flows_for("/t/reset")[0]
        self.assertIn("the origin reset the HTTP/2 stream (error code 0x2 INTERNAL_ERROR)", f["error"])
        self.assertEqual(len(body(f, "response")), 5000)

    def test_d2_origin_reset_right_after_its_head_reaches_the_client(self):
        # the reset in a read of its own after the HEADERS, or in the same
        # one: the client's stream used to get the head and then nothing
        # (its flow ended 4-16 s later, when the client gave up, as "the
        # client closed the HTTP/2 connection"), since the end right after
        # a chunked head was taken for a clean one
        self.curl_h2(self.url("/t/plain?warm"))
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            t0 = time.time()
            late = c.request("GET", self.auth, "/t/rst-head")
            same = c.request("GET", self.auth, "/t/rst-with-head")
            c.wait(lambda: c.done(late) and c.done(same), timeout=5)
            self.assertLess(time.time() - t0, 2)
            for sid in (late, same):
                self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
                self.assertIsNotNone(c.streams[sid]["reset"], sid)
                self.assertFalse(c.streams[sid]["ended"], sid)
        finally:
            c.close()
        for path in ("/t/rst-head", "/t/rst-with-head"):
            f = self.flows_for(path, timeout=3)[0]
            self.assertIn("the origin reset the HTTP/2 stream (error code 0x2 INTERNAL_ERROR)", f["error"])

    def test_d3_body_short_of_its_length_is_cut_at_once(self):
        # nghttp2 resets the stream of its own (no callback): that RST_STREAM
        # is an event once it went out, and was read only at the origin's
        # next frame, the client waiting with the head and 5 bytes
        self.curl_h2(self.url("/t/plain?warm"))
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            t0 = time.time()
            sid = c.request("GET", self.auth, "/t/cl-short")
            c.wait(lambda: c.done(sid), timeout=5)
            self.assertLess(time.time() - t0, 2)
            self.assertIsNotNone(c.streams[sid]["reset"])
            self.assertEqual(c.streams[sid]["data"], b"12345")
        finally:
            c.close()
        f = self.flows_for("/t/cl-short$", timeout=3)[0]
        self.assertIn("reel reset the origin's HTTP/2 stream with RST_STREAM PROTOCOL_ERROR",
                      f["error"])
        self.assertEqual(body(f, "response"), b"12345")

    def test_d3_content_on_a_204_is_not_passed_on(self):
        # DATA on a response that has none by rule makes it malformed (RFC
        # 9113 8.1.1), which a proxy must not forward: nghttp2 resets the
        # stream, and the client gets reel's 502 saying why. It got the 204,
        # and the flow said complete, as if no DATA had come
        self.curl_h2(self.url("/t/plain?warm"))
        # an HTTP/1.1 client to the h2c origin, an HTTP/2 client to the TLS one
        for client, q, url in (("1.1", "h1", "http://localhost:%d" % self.h2c.port),
                               ("2", "h2", self.url(""))):
            out = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy,
                                  "--cacert", self.reel.ca, "--http" + client, "-w",
                                  "%{http_code} %{size_download}", "-o", "/dev/null",
                                  url + "/t/204-data?" + q], capture_output=True)
            self.assertTrue(out.stdout.startswith(b"502 "), out)
            f = self.flows_for("/t/204-data?" + q)[0]
            self.assertEqual(f["error"], "the origin's 204 response to the request came with "
                             "content, which it may not have (RFC 9113 8.1.1): reel reset the "
                             "HTTP/2 stream with RST_STREAM PROTOCOL_ERROR (0x1) and passed the "
                             "response on to no one", f)
            self.assertTrue(f["response"]["generated"], f["response"])

    def curl_h2_any(self, url):
        """curl_h2 for one URL, whatever curl's exit status."""
        return subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy,
                               "--cacert", self.reel.ca, "--http2", "-w",
                               "%{http_version} %{http_code}\\n", "-o", "/dev/null", url],
                              capture_output=True).stdout.decode()

    def test_d3b_body_not_its_length_is_named(self):
        # the reset named no reason: "the peer broke HTTP/2 on it"
        self.curl_h2(self.url("/t/plain?warm"))
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            short = c.request("GET", self.auth, "/t/cl-short?named")
            long_ = c.request("GET", self.auth, "/t/cl-long")
            c.wait(lambda: c.done(short) and c.done(long_), timeout=5)
        finally:
            c.close()
        f = self.flows_for("/t/cl-short?named", timeout=3)[0]
        # (said once: "reel reset the stream:" came twice)
        self.assertEqual(f["error"], "reel reset the origin's HTTP/2 stream with RST_STREAM "
                         "PROTOCOL_ERROR (0x1): the response body ended after 5 bytes, short of "
                         "its content-length (10 bytes)", f)
        f = self.flows_for("/t/cl-long", timeout=3)[0]
        self.assertIn("the response body is longer than its content-length (3 bytes",
                      f["error"])
        # a padded frame over it: nghttp2 resets the stream before its
        # bytes come, and the reason was "the peer broke HTTP/2 on it"
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            padded = c.request("GET", self.auth, "/t/cl-long-padded")
            c.wait(lambda: c.done(padded), timeout=5)
        finally:
            c.close()
        f = self.flows_for("/t/cl-long-padded", timeout=3)[0]
        self.assertEqual(f["error"], "reel reset the origin's HTTP/2 stream with RST_STREAM "
                         "PROTOCOL_ERROR (0x1): the response body is longer than its "
                         "content-length (10 bytes; 5 and then a padded DATA frame of 31 bytes, "
                         "its padding included)", f)

    def test_d4_malformed_answer_is_not_sent_again(self):
        # the origin answered (malformed: reel resets the stream): the GET
        # used to go to the origin a second time on the shared connection,
        # as if unanswered, with one flow saying nothing of it
        self.curl_h2(self.url("/t/plain?warm"))
        before = sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/upper")
        self.assertEqual(self.curl_h2(self.url("/t/upper")), "2 502\n")
        f = self.flows_for("/t/upper")[0]
        self.assertIn("reel reset the origin's HTTP/2 stream with RST_STREAM PROTOCOL_ERROR",
                      f["error"])
        self.assertIn("upper-case", f["error"])
        time.sleep(0.3)
        sent = sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/upper") - before
        self.assertEqual(sent, 1)

    def test_d4b_malformed_answer_is_named(self):
        # these used to say only nghttp2's "Violation in HTTP messaging rule"
        self.curl_h2(self.url("/t/plain?warm"))
        want = {"/t/no-status": "the response has no :status (RFC 9113 8.3.2)",
                "/t/interim-end": "an interim (1xx) response with END_STREAM",
                "/t/open-trailers": "malformed HTTP/2 response: trailers without END_STREAM",
                "/t/data-first": "DATA before its final head (RFC 9113 8.1)"}
        for path, words in want.items():
            with self.subTest(path=path):
                out = self.curl_h2_any(self.url(path))
                f = self.flows_for(path)[0]
                self.assertIn(words, f["error"])
                self.assertNotIn("Violation", f["error"])
                if path != "/t/open-trailers":  # its head went on: 200, then a reset
                    self.assertEqual(out, "2 502\n")

    def test_d4c_data_before_any_head_is_not_sent_again(self):
        # nghttp2 takes a response's DATA before any HEADERS for an error of
        # the whole connection: reel's GOAWAY ended the stream, and the GET
        # went to the origin again on a new connection, as if unanswered,
        # its error in nghttp2's words ("DATA: stream not opened")
        self.curl_h2(self.url("/t/plain?warm"))
        before = sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/data-no-head")
        self.assertEqual(self.curl_h2_any(self.url("/t/data-no-head")), "2 502\n")
        f = self.flows_for("/t/data-no-head")[0]
        self.assertIn("a response's DATA before its head (RFC 9113 8.1)", f["error"])
        self.assertNotIn("retried", f["error"])
        time.sleep(0.3)
        sent = sum(1 for r in self.origin.requests
                   if r["headers"][":path"] == "/t/data-no-head") - before
        self.assertEqual(sent, 1)

    def test_d5_refused_stream_says_so(self):
        # RST_STREAM REFUSED_STREAM: the 502 said "upstream closed the
        # connection without responding" (the connection was open) and
        # named no code. A GET on the kept-alive connection is sent once
        # more (RFC 9113 8.7), and the record says so; a POST is not.
        self.curl_h2(self.url("/t/plain?warm"))
        n0 = sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/refuse")
        self.assertEqual(self.curl_h2(self.url("/t/refuse")), "2 502\n")
        f = self.flows_for("/t/refuse$")[0]
        self.assertIn("the origin refused the HTTP/2 stream with RST_STREAM REFUSED_STREAM (0x7)",
                      f["error"])
        self.assertIn("retried once", f["error"])
        self.assertTrue(f["server_conn"]["retried"], f["server_conn"])
        self.assertIn(b"REFUSED_STREAM", body(f, "response"))
        time.sleep(0.3)
        n1 = sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/refuse")
        self.assertEqual(n1 - n0, 2)
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "--http2", "-d", "body", "-w", "%{http_code}",
                            self.url("/t/refuse?post")], capture_output=True, check=True)
        self.assertTrue(r.stdout.endswith(b"502"), r.stdout)
        self.assertIn(b"REFUSED_STREAM", r.stdout)
        f = self.flows_for("/t/refuse?post")[0]
        self.assertIn("REFUSED_STREAM (0x7)", f["error"])
        self.assertNotIn("retried", f["error"])
        time.sleep(0.3)
        self.assertEqual(
            sum(1 for r in self.origin.requests if r["headers"][":path"] == "/t/refuse?post"), 1)

    def test_e_goaway_moves_later_requests_to_a_new_connection(self):
        self.curl_h2(self.url("/t/plain?warm"))
        out = self.curl_h2(self.url("/t/goaway"), self.url("/t/plain?after-goaway"))
        self.assertEqual(out, "2 200\n2 200\n")
        bye = self.flows_for("/t/goaway$")[0]
        after = self.flows_for("/t/plain?after-goaway")[0]
        self.assertIsNone(bye.get("error"))
        self.assertIsNone(after.get("error"))
        self.assertNotEqual(bye["server_conn"]["conn_id"], after["server_conn"]["conn_id"])

    def test_e2_goaway_with_streams_in_flight(self):
        self.curl_h2(self.url("/t/plain?warm"))
        # a stream the origin did not process (above GOAWAY's last stream
        # id) is sent again on a new connection, and says so
        self.assertEqual(self.curl_h2(self.url("/t/refuse-once")), "2 200\n")
        f = self.flows_for(":%d/t/refuse-once" % self.origin.port)[0]
        self.assertIsNone(f.get("error"))
        self.assertEqual(body(f, "response"), b"second try")
        self.assertTrue(f["server_conn"]["retried"], f["server_conn"])
        # refused again on the new connection: the 502 and the flow name the
        # GOAWAY (they said "upstream closed the connection without responding")
        self.assertEqual(self.curl_h2(self.url("/t/refuse-always")), "2 502\n")
        f = self.flows_for("/t/refuse-always")[0]
        self.assertRegex(f["error"], r"^the origin sent GOAWAY NO_ERROR \(0x0\) with last stream "
                                     r"\d+, before it processed the request \(RFC 9113 6\.8\) "
                                     r"\(retried once: ")
        # a GOAWAY with an error cuts the stream it was answering: the
        # flow's error names it
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "--http2", "-o", "/dev/null",
                            self.url("/t/goaway-error")], capture_output=True)
        self.assertNotEqual(r.returncode, 0)  # the client saw its stream cut
        f = self.flows_for("/t/goaway-error")[0]
        self.assertIn("GOAWAY (error code 0x2 INTERNAL_ERROR)", f["error"])
        self.assertEqual(len(body(f, "response")), 3000)

    def test_e2_goaway_on_the_first_stream_of_a_new_connection(self):
        # the same on a connection made for the request: it was a 502
        # "before it processed the request", not sent again (a new
        # connection was taken for one that could not be)
        fresh = H2Origin(os.path.join(self.root, "server.pem"),
                         os.path.join(self.root, "server.key"))
        try:
            # the first asks the origin's ALPN, then its first h2 stream
            url = "https://localhost:%d/t/refuse-once" % fresh.port
            out = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy,
                                  "--cacert", self.reel.ca, "--http2", "-o", "-", url],
                                 capture_output=True)
            self.assertEqual(out.stdout, b"second try", out)
        finally:
            fresh.stop()
        f = self.flows_for(":%d/t/refuse-once" % fresh.port)[0]
        self.assertIsNone(f.get("error"))
        self.assertTrue(f["server_conn"]["retried"], f["server_conn"])

    def test_e3_goaway_reel_sends_the_origin_is_reels_in_the_record(self):
        # an origin that breaks HTTP/2 for the whole connection gets
        # reel's GOAWAY; the flow cut by it said "the origin sent GOAWAY"
        self.curl_h2(self.url("/t/plain?warm"))
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "--http2", "-o", "/dev/null",
                            self.url("/t/bad-window")], capture_output=True)
        self.assertNotEqual(r.returncode, 0)  # the client saw its stream cut
        f = self.flows_for("/t/bad-window")[0]
        self.assertEqual(f["state"], "error", f)
        # what follows is nghttp2's own words for the offence
        self.assertTrue(f["error"].startswith(
            "reel closed the HTTP/2 connection to the origin with GOAWAY PROTOCOL_ERROR (0x1): "
            "HTTP/2 protocol error ("), f["error"])
        self.assertEqual(len(body(f, "response")), 3000)
        self.assertEqual(f["response"]["status"], 200)

    def test_e4_reel_closes_the_connection_after_its_goaway(self):
        # an origin that broke HTTP/2 gets reel's GOAWAY, and then reel
        # closes the connection (RFC 9113 5.4.1) whether or not the origin
        # does: the flow cut by it ends at once with reel's GOAWAY as its
        # error, its client gets a 502 saying so, and the dead connection
        # never takes another request. It used to stay open: the flow
        # waited upstream_timeout for a 504, and the next request went out
        # on it and got a 504 too.
        for path, code in (("/t/wu0-stay", "PROTOCOL_ERROR (0x1)"),
                           ("/t/badhpack-stay", "COMPRESSION_ERROR (0x9)")):
            with self.subTest(path=path):
                self.curl_h2(self.url("/t/plain?warm-" + path[3:]))
                stay0 = len(self.origin.stay)
                t0 = time.time()
                r = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy,
                                    "--cacert", self.reel.ca, "--http2", "-w",
                                    "\n%{http_version} %{http_code}", self.url(path)],
                                   capture_output=True)
                took = time.time() - t0
                out = r.stdout.decode()
                self.assertTrue(out.endswith("\n2 502"), out)
                self.assertLess(took, 10, out)
                why = "reel closed the HTTP/2 connection to the origin with GOAWAY " + code + ": "
                self.assertIn("reel: " + why, out)
                f = self.flows_for(path + "$")[0]
                self.assertEqual(f["state"], "error", f)
                self.assertTrue(f["error"].startswith(why), f["error"])
                self.assertEqual(f["response"]["status"], 502)
                # every connection that got reel's GOAWAY (one, or two when
                # reel sent the request again on a fresh connection, the
                # first one having been reused) was closed by reel soon
                deadline = time.time() + 5
                while time.time() < deadline and (
                        len(self.origin.stay) == stay0 or
                        any(x["closed"] is None for x in self.origin.stay[stay0:])):
                    time.sleep(0.05)
                stays = self.origin.stay[stay0:]
                self.assertTrue(stays)
                for x in stays:
                    self.assertIsNotNone(x["closed"], "reel left the connection open")
                    self.assertIn(b"\x07\x00\x00\x00\x00\x00", x["bytes"])  # its GOAWAY
                # the next request: a new connection, answered
                after = "/t/plain?after-" + path[3:]
                self.assertEqual(self.curl_h2(self.url(after)), "2 200\n")
                a = self.flows_for(after)[0]
                self.assertIsNone(a.get("error"), a)
                self.assertNotEqual(a["server_conn"]["conn_id"], f["server_conn"]["conn_id"])

    def test_f_origin_max_concurrent_streams_is_respected(self):
        slow = H2Origin(os.path.join(self.root, "server.pem"),
                        os.path.join(self.root, "server.key"), max_streams=2)
        try:
            url = "https://localhost:%d" % slow.port
            self.curl_h2(url + "/t/plain?warm-slow")
            c = tunnel_h2(self.reel, slow.port)
            try:
                auth = "localhost:%d" % slow.port
                sids = [c.request("GET", auth, "/t/slow?%d" % (150 + i)) for i in range(8)]
                c.wait(lambda: all(c.done(s) for s in sids), timeout=30)
                for i, s in enumerate(sids):
                    self.assertEqual(c.streams[s]["data"], b"slow /t/slow?%d" % (150 + i))
            finally:
                c.close()
            self.assertLessEqual(slow.open_max, 2)
            self.assertEqual(slow.conns, 1)  # the probe, which became the session
            flows = self.flows_for("/t/slow", 8)
            self.assertEqual(len({f["server_conn"]["conn_id"] for f in flows}), 1)
        finally:
            slow.stop()

    def test_f2_connection_window_is_given_back(self):
        # every DATA byte is acknowledged to the origin once passed on, also
        # when its stream ended in the same read: 300 responses of 64 KiB
        # (19 MiB) over one session whose connection window is 16 MiB
        url = "https://localhost:%d/64k" % self.certs.https_port
        self.curl_h2(url + "?warm")
        args = ["curl", "-sS", "--max-time", "60", "-x", self.reel.proxy, "--cacert",
                self.reel.ca, "--http2", "-w", "%{http_code}\\n"]
        for i in range(300):
            args += ["-o", "/dev/null", url + "?win%d" % i]
        out = subprocess.run(args, capture_output=True, check=True).stdout.decode()
        self.assertEqual(out, "200\n" * 300)
        fs = self.flows_for("/64k?win", 300, timeout=30)
        self.assertEqual({f["response"]["http_version"] for f in fs}, {"HTTP/2.0"})
        self.assertEqual(len({f["server_conn"]["conn_id"] for f in fs}), 1)

    def test_g_http1_client_is_not_upgraded(self):
        # ALPN mirrored: a client that offers only HTTP/1.1 gets HTTP/1.1
        # from reel, and reel offers the origin no h2 for it either; this
        # origin speaks only h2, so the request fails, and says why
        self.curl_h2(self.url("/t/plain?warm"))
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "--http1.1", "-o", "/dev/null", "-w", "%{http_code}",
                            self.url("/t/plain?h1client")], capture_output=True)
        self.assertEqual(r.stdout, b"502")
        f = self.flows_for("/t/plain?h1client")[0]
        self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
        self.assertTrue(f["error"], f)

    def test_h_h2c_upstream_for_http1_and_h2c_clients(self):
        # an HTTP/1.1 client, its request translated: a chunked body with
        # trailers, and the origin's trailers back on the last chunk
        base = "http://localhost:%d" % self.h2c.port
        data = os.urandom(70000)
        path = os.path.join(self.root, "h2c-post.bin")
        with open(path, "wb") as fh:
            fh.write(data)
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--http1.1", "-H",
             "Transfer-Encoding: chunked", "--data-binary", "@" + path, base + "/t/echo"],
            capture_output=True, check=True).stdout
        got = json.loads(out)
        self.assertEqual(got["len"], len(data))
        self.assertEqual(got["sha256"], hashlib.sha256(data).hexdigest())
        raw = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        raw.sendall(b"GET %s/t/trailers HTTP/1.1\r\nHost: localhost:%d\r\n"
                    b"TE: trailers\r\n\r\n" % (base.encode(), self.h2c.port))
        resp = b""
        while not resp.endswith(b"0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"):
            d = raw.recv(65536)
            if not d:
                break
            resp += d
        raw.close()
        # HTTP/2 carries no reason phrase: reel writes the standard one
        self.assertTrue(resp.startswith(b"HTTP/1.1 200 OK\r\n"), resp)
        self.assertIn(b"\r\n3\r\nabc\r\n0\r\ngrpc-status: 0\r\n", resp)
        fs = [self.reel.flow(x["id"]) for x in self.reel.wait_flows(
            2, "~u 'localhost:%d/t/(echo|trailers)$'" % self.h2c.port, timeout=10)]
        echo = [x for x in fs if x["request"]["target"].endswith("/t/echo")][0]
        self.assertEqual(echo["request"]["http_version"], "HTTP/1.1")
        self.assertEqual(echo["response"]["http_version"], "HTTP/2.0")
        self.assertEqual(echo["server_conn"]["alpn"], None)
        self.assertEqual(body(echo, "request"), data)
        tr = [x for x in fs if x["request"]["target"].endswith("/t/trailers")][0]
        self.assertEqual(tr["response_trailers"], [["grpc-status", "0"], ["grpc-message", "fine"]])
        # a prior-knowledge h2c client: h2c on both sides, one origin
        # connection for everything
        c = H2C(self.reel.port)
        try:
            auth = "localhost:%d" % self.h2c.port
            sids = [c.request("GET", auth, "/t/plain?h2c%d" % i) for i in range(4)]
            c.wait(lambda: all(c.done(s) for s in sids))
            for i, s in enumerate(sids):
                self.assertEqual(c.streams[s]["data"], b"plain /t/plain?h2c%d" % i)
        finally:
            c.close()
        self.assertEqual(self.h2c.conns, 1)
        for f in self.flows_for("/t/plain?h2c", 4):
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
            self.assertEqual(f["response"]["http_version"], "HTTP/2.0")

    def test_h2_trailers_after_a_content_length_body_to_an_http1_client(self):
        # An HTTP/1.1 client of an h2c origin that sends trailers after a
        # body with a content-length (HTTP/2 allows them there): HTTP/1.1
        # has no place for them after a body framed by its length, so the
        # client gets the body as the origin framed it, without them; but
        # they were missing from the record as well. Twice on one
        # connection: the framing leaves it usable.
        base = "http://localhost:%d" % self.h2c.port
        c = http.client.HTTPConnection("127.0.0.1", self.reel.port, timeout=20)
        try:
            for i in range(2):
                c.request("GET", base + "/t/cl-trailers?%d" % i)
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(r.read(), b"abc")
                hs = [(k.lower(), v) for k, v in r.getheaders()]
                self.assertIn(("content-length", "3"), hs)
                self.assertEqual([k for k, v in hs if k in ("transfer-encoding", "trailer") or
                                  "reel" in k], [])
        finally:
            c.close()
        fs = self.flows_for("/t/cl-trailers?[01]$", 2)
        for f in fs:
            self.assertEqual(f["state"], "complete", f)
            self.assertEqual(f["response"]["http_version"], "HTTP/2.0")
            self.assertEqual([h for h in f["response"]["headers"]], [["content-length", "3"]])
            self.assertEqual(f["response_trailers"], [["x-trail", "yes"]])
            self.assertEqual(body(f, "response"), b"abc")

    def test_h2_trailers_after_a_content_length_body_in_an_http2_connect(self):
        # The same answer to an HTTP/1.1 client inside an HTTP/2 client's
        # CONNECT stream: its lane carries the tunnel's bytes, not the
        # stream's own request, so the body must come framed by its length
        # there too, without reel's X-Reel-Content-Length
        c = H2C(self.reel.port, validate=False)
        try:
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "CONNECT"),
                                      (":authority", "localhost:%d" % self.h2c.port)])
            c.track(sid)
            c.flush()
            c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            c.conn.send_data(sid, b"GET /t/cl-trailers?in-connect HTTP/1.1\r\nHost: localhost:%d"
                             b"\r\n\r\n" % self.h2c.port)
            c.flush()
            c.wait(lambda: c.streams[sid]["data"].endswith(b"\r\n\r\nabc") or c.done(sid))
            got = c.streams[sid]["data"]
        finally:
            c.close()
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        self.assertTrue(got.startswith(b"HTTP/1.1 200 OK\r\n"), got)
        self.assertIn(b"\r\ncontent-length: 3", head)
        self.assertNotIn(b"reel", head)
        self.assertNotIn(b"transfer-encoding", head)
        self.assertTrue(got.endswith(b"\r\n\r\nabc"), got)
        f = self.flows_for("/t/cl-trailers?in-connect")[0]
        self.assertEqual(f["response_trailers"], [["x-trail", "yes"]])
        self.assertEqual(body(f, "response"), b"abc")

    def test_k_raw_tunnel_to_an_h2c_origin(self):
        # a CONNECT tunnel reel relays raw (prior-knowledge h2c inside, not
        # parsed) to an origin listed in h2c_upstreams: the bytes go to the
        # origin as they are (they used to be put on an HTTP/2 session of
        # reel's, which took them for an HTTP/1.1 request and failed)
        base = "http://localhost:%d" % self.h2c.port
        out = subprocess.run(["curl", "-sS", "--max-time", "30", "--proxytunnel", "-x",
                              self.reel.proxy, "--http2-prior-knowledge", base + "/t/plain?raw"],
                             capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, b"plain /t/plain?raw")

    def test_hb_http1_clients_on_the_shared_h2c_connection(self):
        # HTTP/1.1 clients one after the other, each on a new connection to
        # reel, each request a stream of the one h2c connection already up:
        # their requests went out only with the next timer of the loop
        # (about 0.5 s late each) when the lane's deferred write waited for
        # a poll with nothing to wake it
        base = "http://localhost:%d" % self.h2c.port
        took = []
        for i in range(6):
            t0 = time.monotonic()
            out = subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy,
                                  "--http1.1", "-o", "/dev/null", "-w", "%{http_code}",
                                  base + "/t/plain?seq%d" % i], capture_output=True, check=True)
            took.append(time.monotonic() - t0)
            self.assertEqual(out.stdout, b"200")
        took.sort()
        self.assertLess(took[len(took) // 2], 0.25, took)
        for i, f in enumerate(self.flows_for("/t/plain?seq", 6)):
            t = f["timings"]
            # the stream's request went out and its answer came: send and
            # wait are known, also for the streams no connection was made for
            self.assertGreaterEqual(t["send_us"], 0, f)
            self.assertGreaterEqual(t["wait_us"], 0, f)
            if i:
                self.assertEqual(t["connect_us"], -1, f)
            self.assertEqual(f["response"]["reason"], "", f)

    def test_hc_http1_client_is_cut_when_an_h2c_origin_resets_after_its_head(self):
        # an HTTP/1.1 client to an h2c origin (after test_h, which counts the
        # h2c origin's flows): curl waited for its -m, the flow for
        # upstream_timeout
        for path in ("/t/rst-head", "/t/rst-with-head"):
            t0 = time.time()
            r = subprocess.run(["curl", "-sS", "-m", "6", "-x", self.reel.proxy, "-o", "/dev/null",
                                "http://localhost:%d%s" % (self.h2c.port, path)],
                               capture_output=True)
            self.assertLess(time.time() - t0, 3, path)
            self.assertNotIn(r.returncode, (0, 28), (path, r))  # cut, not whole, not timed out
            fs = self.reel.wait_flows(1, "~u 'localhost:%d%s$'" % (self.h2c.port, path), timeout=3)
            self.assertEqual(len(fs), 1, fs)
            f = self.reel.flow(fs[0]["id"])
            self.assertIn("the origin reset the HTTP/2 stream (error code 0x2 INTERNAL_ERROR)", f["error"])

    def ws_stream(self, c, path):
        """An extended CONNECT (RFC 8441) for a WebSocket at path, once
        reel's SETTINGS allow it; returns the stream id with its answer."""
        c.wait(lambda: c.conn.remote_settings.enable_connect_protocol == 1)
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":scheme", "https"), (":path", path),
                                  (":authority", self.auth), ("sec-websocket-version", "13")])
        c.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                          "reset": None, "ended": False}
        c.flush()
        c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
        return sid

    @staticmethod
    def ws_frame(op, payload, key=b"\x11\x22\x33\x44"):
        return (bytes([0x80 | op, 0x80 | len(payload)]) + key +
                bytes(b ^ key[i % 4] for i, b in enumerate(payload)))

    def test_i_websocket_as_a_stream_of_the_origin_session(self):
        # the origin speaks only HTTP/2 and allows extended CONNECT: the
        # WebSocket goes end to end as a stream of the shared session
        # (before, reel sent it an HTTP/1.1 Upgrade, which failed)
        self.curl_h2(self.url("/t/plain?ws-warm"))  # the session and its SETTINGS
        conns0 = self.origin.conns
        c = tunnel_h2(self.reel, self.origin.port)
        try:
            sid = self.ws_stream(c, "/t/ws")
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            c.conn.send_data(sid, self.ws_frame(1, b"hello h2 origin"))
            c.flush()
            c.wait(lambda: len(c.streams[sid]["data"]) >= 17)
            self.assertEqual(c.streams[sid]["data"], b"\x81\x0fhello h2 origin")
            c.conn.send_data(sid, self.ws_frame(8, b"\x03\xe8"))
            c.flush()
            c.wait(lambda: c.done(sid))
            self.assertTrue(c.streams[sid]["ended"])  # END_STREAM, not a reset
            self.assertEqual(c.streams[sid]["data"][17:], b"\x88\x02\x03\xe8")
            # refused by the origin: its answer, and the stream ends
            rid = self.ws_stream(c, "/t/ws-refuse")
            c.wait(lambda: c.done(rid))
            self.assertEqual(hdr(c.streams[rid]["headers"], ":status"), "403")
            self.assertEqual(c.streams[rid]["data"], b"refused")
        finally:
            c.close()
        self.assertEqual(self.origin.conns, conns0)  # on the shared session
        got = [r for r in self.origin.requests if r["headers"].get(":path") == "/t/ws"][-1]
        self.assertEqual(got["headers"][":method"], "CONNECT")
        self.assertEqual(got["headers"][":protocol"], "websocket")
        self.assertEqual(got["headers"][":authority"], self.auth)
        self.assertNotIn("sec-websocket-key", got["headers"])
        self.assertNotIn("upgrade", got["headers"])
        self.assertEqual(got["messages"], [(1, b"hello h2 origin"), (8, b"\x03\xe8")])
        (f,) = self.flows_for("/t/ws$")
        warm = self.flows_for("/t/plain?ws-warm")[0]
        self.assertEqual(f["state"], "complete", f.get("error"))
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        # what the origin answered: 200 over HTTP/2, none of the fields reel
        # added to make it the 101 of an HTTP/1.1 WebSocket inside
        self.assertEqual(f["response"]["status"], 200)
        self.assertEqual(f["response"]["http_version"], "HTTP/2.0")
        self.assertEqual(f["response"]["headers"], [])
        self.assertEqual(f["server_conn"]["alpn"], "h2")
        self.assertEqual(f["server_conn"]["conn_id"], warm["server_conn"]["conn_id"])
        msgs = [(m["from_client"], m["opcode"]) for m in f["messages"]]
        self.assertEqual(msgs, [(True, 1), (False, 1), (True, 8), (False, 8)], f["messages"])
        self.assertEqual(len(self.reel.flows("~websocket & ~u /t/ws$")), 1)
        (r,) = self.flows_for("/t/ws-refuse")
        self.assertEqual(r["response"]["status"], 403)
        self.assertEqual(body(r, "response"), b"refused")

    def test_j_http1_websocket_to_an_h2c_origin(self):
        # an HTTP/1.1 client's Upgrade to an origin reel speaks h2c to: the
        # origin gets an extended CONNECT, the client a 101 with the
        # Sec-WebSocket-Accept its key asks for (RFC 6455's example)
        base = "http://localhost:%d" % self.h2c.port
        subprocess.run(["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "-o",
                        "/dev/null", base + "/t/plain?ws-h1-warm"], check=True)
        raw = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        raw.sendall(b"GET %s/t/ws HTTP/1.1\r\nHost: localhost:%d\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n" % (base.encode(), self.h2c.port))
        resp = b""
        while b"\r\n\r\n" not in resp:
            d = raw.recv(4096)
            self.assertTrue(d, resp)
            resp += d
        head, rest = resp.split(b"\r\n\r\n", 1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertIn(b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        self.assertIn(b"\r\nUpgrade: websocket", head)
        raw.sendall(self.ws_frame(2, b"\x00\x01binary"))
        while len(rest) < 10:
            d = raw.recv(4096)
            self.assertTrue(d, rest)
            rest += d
        self.assertEqual(rest, b"\x82\x08\x00\x01binary")
        raw.sendall(self.ws_frame(8, b"\x03\xe8"))
        while len(rest) < 14:
            d = raw.recv(4096)
            if not d:
                break
            rest += d
        self.assertEqual(rest[10:], b"\x88\x02\x03\xe8")
        raw.close()
        fs = self.reel.wait_flows(1, "~websocket & ~u 'localhost:%d/t/ws'" % self.h2c.port,
                                  timeout=10)
        self.assertEqual(len(fs), 1, fs)
        f = self.reel.flow(fs[0]["id"])
        self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
        self.assertEqual((f["response"]["status"], f["response"]["http_version"]), (200, "HTTP/2.0"))
        self.assertEqual([(m["from_client"], m["opcode"]) for m in f["messages"]],
                         [(True, 2), (False, 2), (True, 8), (False, 8)])
        self.assertEqual(self.h2c.conns, 1)

    def test_z_exit_summary_reports_http2_memory(self):
        # last (the proxy stops): how many HTTP/2 connections, and the most
        # one of them held at once, which flow control keeps bounded. 40
        # MiB from nginx over HTTP/2 first: the figure counted every byte
        # a connection had delivered, as if it had held them all
        got = subprocess.run(["curl", "-sS", "--max-time", "60", "-x", self.reel.proxy,
                              "--cacert", self.reel.ca, "--http2", "-r", "0-41943039", "-o",
                              "/dev/null", "-w", "%{http_version} %{size_download}",
                              "https://localhost:%d/big" % self.certs.https_port],
                             capture_output=True, check=True).stdout.decode()
        self.assertEqual(got, "2 41943040")
        self.assertEqual(self.reel.stop(), 0)
        m = re.search(r"reel: HTTP/2: (\d+) connections \(clients and origins\); the most one "
                      r"held at once: (\d+) KiB", self.reel.log())
        self.assertIsNotNone(m, self.reel.log()[-2000:])
        self.assertGreater(int(m.group(1)), 5)
        self.assertLess(int(m.group(2)), 24 * 1024)


class VerifyTurnedBackOn(unittest.TestCase):
    """upstream_cert_verify turned off, then on again while the proxy runs:
    a connection to the origin made while it was off (an HTTP/2 session
    shared by every client, or one client's kept-alive HTTP/1.1 connection)
    has never had its certificate checked, and must not carry a request
    once verification is on; the request gets the 502 a new connection
    gets. reel does not trust this origin's CA here."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2verify-", dir=TMPBASE)
        cls.origin = Origin(cls.root, h2=True)
        cls.reel = Reel(cls.root, "verify", "workers=1")  # verify: the session's overlay

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def curl_h2(self, path):
        r = subprocess.run(["curl", "-sS", "--http2", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "-o", os.devnull, "-w", "%{http_code} %{http_version}",
                            self.origin.url(path, https=True)], capture_output=True, timeout=30)
        return r.stdout.decode()

    def test_unverified_connections_are_not_reused(self):
        self.reel.set_config("set", "upstream_cert_verify", "false")
        # one client keeps its tunnel and asks twice, around the change
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  % self.origin.https_port)
        self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
        t = ssl.create_default_context(cafile=self.reel.ca).wrap_socket(
            s, server_hostname="localhost")
        t.settimeout(10)

        def get(path):
            t.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path)
            out = b""
            while b"\r\n\r\n" not in out:
                out += t.recv(65536)
            head, rest = out.split(b"\r\n\r\n", 1)
            n = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
            while len(rest) < n:
                rest += t.recv(65536)
            return head.split(b" ")[1]

        self.assertEqual(get(b"/100b?h1=1"), b"200")
        self.assertEqual(self.curl_h2("/100b?h2=1"), "200 2")  # an HTTP/2 session, unverified
        # the record says nothing enforced the check of those origins'
        # certificate, and what the check found (reel does not trust it)
        for q in ("h1=1", "h2=1"):
            [f] = self.reel.wait_flows(1, "~u %s" % q)
            sc = self.reel.flow(f["id"])["server_conn"]
            self.assertTrue(sc["unverified"], sc)
            self.assertEqual(sc["verify_error"], "unable to get local issuer certificate", sc)
            self.assertTrue(sc["peer_cert"].startswith("certificate for localhost, 127.0.0.1, by "
                                                       "reel test origin CA, valid "), sc)
            text = self.reel.cli("flow", self.reel.session, str(f["id"]), "--headers-only").stdout
            self.assertIn(b"certificate NOT verified (upstream_cert_verify was off)", text)
            self.assertIn(b"~ certificate would have FAILED verification (reel went on): unable to "
                          b"get local issuer certificate; certificate for localhost", text)
        self.reel.set_config("set", "upstream_cert_verify", "true")
        self.assertEqual(get(b"/100b?h1=2"), b"502")
        t.close()
        self.assertEqual(self.curl_h2("/100b?h2=2").split()[0], "502")
        for q in ("h1=2", "h2=2"):
            [f] = self.reel.wait_flows(1, "~u %s" % q)
            self.assertIn("certificate verify failed", f["error"] or "", f)
        self.assertEqual([l for l in self.origin.log_lines() if "=2" in l[2]], [])


class RefusedCertificateOfAnH2Session(unittest.TestCase):
    """An HTTP/2 session to the origin (core/h2up.c) whose TLS refuses the
    origin's certificate records that connection as the flow's ServerConn,
    as an HTTP/1.1 connection does (core/peer.c, record_refused_conn): the
    address reel reached, SNI, the TLS the origin chose, why the check
    failed and what the origin's certificate says, beside the 502. reel
    does not trust this origin's CA; verification is off for a first
    request, so that reel learns the origin speaks h2 and the next request
    goes as a stream of a new (verified) session."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2refused-", dir=TMPBASE)
        cls.origin = Origin(cls.root, h2=True)
        cls.reel = Reel(cls.root, "refused", "workers=1")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def curl_h2(self, path):
        r = subprocess.run(["curl", "-sS", "--http2", "-x", self.reel.proxy, "--cacert",
                            self.reel.ca, "-o", os.devnull, "-w", "%{http_code} %{http_version}",
                            self.origin.url(path, https=True)], capture_output=True, timeout=30)
        return r.stdout.decode()

    def test_the_refused_connection_is_the_flows_server_conn(self):
        self.reel.set_config("set", "upstream_cert_verify", "false")
        self.assertEqual(self.curl_h2("/100b?first=1"), "200 2")
        [first] = self.reel.wait_flows(1, "~u first=1")
        first = self.reel.flow(first["id"])
        self.assertEqual(first["server_conn"]["alpn"], "h2", first["server_conn"])
        self.reel.set_config("set", "upstream_cert_verify", "true")
        self.assertEqual(self.curl_h2("/100b?refused=1"), "502 2")
        [f] = self.reel.wait_flows(1, "~u refused=1")
        full = self.reel.flow(f["id"])
        self.assertIn("certificate verify failed", full["error"] or "", full)
        self.assertEqual(full["request"]["http_version"], "HTTP/2.0")
        sc = full["server_conn"]
        self.assertIsNotNone(sc, full)
        # a new session, not the unverified one
        self.assertNotEqual(sc["conn_id"], first["server_conn"]["conn_id"], sc)
        self.assertEqual(sc["address"], "127.0.0.1:%d" % self.origin.https_port, sc)
        self.assertEqual(sc["sni"], "localhost", sc)
        self.assertEqual(sc["alpn"], "h2", sc)
        self.assertTrue(sc["tls_version"] and sc["tls_version"].startswith("TLSv1."), sc)
        self.assertTrue(sc["cipher"], sc)
        self.assertFalse(sc["unverified"], sc)  # it was checked: it failed
        self.assertIn("issuer", sc["verify_error"] or "", sc)  # unable to get local issuer ...
        self.assertTrue((sc["peer_cert"] or "").startswith("certificate for localhost"), sc)
        self.assertIn(", by reel test origin CA, valid ", sc["peer_cert"], sc)
        text = self.reel.cli("flow", self.reel.session, str(f["id"]), "--headers-only").stdout
        self.assertIn(b"certificate verify FAILED", text)
        self.assertEqual([l for l in self.origin.log_lines() if "refused" in l[2]], [])



class ConnectionSetUpOfAnH2Session(unittest.TestCase):
    """Every stream of a shared HTTP/2 session to the origin carries the
    session's set-up in its flow's server_conn (opened_us, dns_us,
    connect_us, ssl_us): the first one's session was set up before its
    request (the ALPN probe that learnt the origin speaks h2 became the
    session), and later ones, from another client connection too, did not
    open it; none of their flows' timings count that set-up."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="h2setup-", dir=TMPBASE)
        cls.origin = Origin(cls.root, h2=True)
        cls.reel = Reel(cls.root, "setup", "workers=1", "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_every_stream_has_the_sessions_set_up(self):
        r, o = self.reel, self.origin
        keys = ("conn_id", "opened_us", "dns_us", "connect_us", "ssl_us")
        for urls in (("/100b?a=1", "/100b?a=2"), ("/100b?b=1",)):
            p = subprocess.run(["curl", "-sS", "--http2", "-x", r.proxy, "--cacert", r.ca,
                                "-o", os.devnull, "-o", os.devnull, "-w", "%{http_version} "]
                               + [o.url(u, https=True) for u in urls],
                               capture_output=True, timeout=30)
            self.assertEqual(p.stdout.decode().split(), ["2"] * len(urls), p.stderr)
        facts = set()
        for q in ("a=1", "a=2", "b=1"):
            [f] = r.wait_flows(1, "~u " + q)
            d = r.flow(f["id"])
            sc, t = d["server_conn"], d["timings"]
            self.assertEqual(sc["alpn"], "h2", sc)
            self.assertEqual((t["dns_us"], t["connect_us"], t["ssl_us"]), (-1, -1, -1), t)
            self.assertGreater(sc["opened_us"] or 0, 0, sc)
            for k in ("dns_us", "connect_us", "ssl_us"):
                self.assertGreaterEqual(sc[k], 0, sc)
            # set up before any of its requests came
            self.assertLessEqual(sc["opened_us"] + sc["dns_us"] + sc["connect_us"] + sc["ssl_us"],
                                 f["start_us"], (sc, f))
            facts.add(tuple(sc[k] for k in keys))
        self.assertEqual(len(facts), 1, facts)  # one session, the same set-up

if __name__ == "__main__":
    main()
