#!/usr/bin/python3
"""HTTP/2 clients through reel (issue 11): curl --http2 over intercepted TLS
to nginx, and a python3-h2 client speaking prior-knowledge h2c to the
proxy port, against nginx and a small HTTP/1.1 origin written here (echo
with trailers, 103 Early Hints, slow and large bodies). Every stream must
be a flow marked HTTP/2.0 whose bodies are the bytes that passed; resets,
trailers and interim answers must reach the other side and the record.
"""
import base64
import hashlib
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events

from proxyenv import SANITIZED, TMPBASE, Origin, Reel, body, curl, main, stop_class, ws_echo_server


def pump_for(c, seconds):
    """Reads and answers what the client connection c gets for seconds
    (without opening any window beyond what its streams allow)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            c.pump(0.2)
        except socket.timeout:
            pass


class EchoOrigin:
    """A threaded HTTP/1.1 origin on 127.0.0.1:
    POST /echo     reads the body (chunked or not) and its trailers, answers
                   JSON {len, sha256, trailers, te} chunked with trailers
                   x-body-sha256 and x-count
    GET /hints     103 Early Hints (Link), then 200 "hinted"
    GET /bytes?N   N bytes of a known pattern (Content-Length)
    GET /slow...   200 after 1.5 s
    anything else  200 with the method and target."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.conns = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def pattern(n):
        block = bytes(range(256)) * 256
        return (block * (n // len(block) + 1))[:n]

    def _serve(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = []
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, v = h.decode().split(":", 1)
                    headers.append((k.strip().lower(), v.strip()))
                hd = dict(headers)
                self.requests.append((method, target, headers))
                data, trailers = b"", []
                if hd.get("transfer-encoding") == "chunked":
                    while True:
                        n = int(f.readline().split(b";")[0], 16)
                        if n == 0:
                            while True:
                                t = f.readline()
                                if t in (b"\r\n", b""):
                                    break
                                k, v = t.decode().split(":", 1)
                                trailers.append([k.strip().lower(), v.strip()])
                            break
                        data += f.read(n)
                        f.readline()
                elif "content-length" in hd:
                    data = f.read(int(hd["content-length"]))
                if target == "/echo":
                    out = json.dumps({"len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                      "trailers": trailers,
                                      "te": hd.get("transfer-encoding", "")}).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\nTrailer: x-body-sha256\r\n\r\n" +
                              b"%x\r\n%s\r\n0\r\nx-body-sha256: %s\r\nx-count: %d\r\n\r\n" %
                              (len(out), out, hashlib.sha256(out).hexdigest().encode(), len(data)))
                elif target == "/hints":
                    c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                              b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhinted")
                elif target == "/cut":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"c" * 5000)
                    time.sleep(0.2)
                    return
                elif target.startswith("/slow"):
                    time.sleep(1.5)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                elif target.startswith("/bytes?"):
                    n = int(target.split("?")[1])
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
                    c.sendall(self.pattern(n))
                else:
                    b = ("%s %s\n" % (method, target)).encode()
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b))
        except (OSError, ValueError):
            pass
        finally:
            c.close()

    def stop(self):
        self.sock.close()


class H2C:
    """A prior-knowledge h2c client (python3-h2) on a socket to the proxy."""

    def __init__(self, port, auto_ack=True, validate=True, sock=None):
        # sock: a connection made already (TLS through a CONNECT), else port's
        self.s = sock or socket.create_connection(("127.0.0.1", port), 10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=validate,
            normalize_outbound_headers=validate))
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.streams = {}  # id -> dict(headers, informational, data, trailers, reset, ended)
        self.flush()

    def flush(self):
        d = self.conn.data_to_send()
        if d:
            self.s.sendall(d)

    def track(self, sid):
        """Keeps what comes on stream sid in self.streams[sid]."""
        self.streams[sid] = {"headers": None, "info": [], "data": b"", "trailers": None,
                             "reset": None, "ended": False}

    def ext_connect(self, authority, path, protocol="websocket", flush=True):
        """An extended CONNECT stream (RFC 8441), once the server's SETTINGS
        allow it; its id."""
        self.wait(lambda: self.conn.remote_settings.enable_connect_protocol == 1)
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", protocol),
                                     (":scheme", "http"), (":path", path),
                                     (":authority", authority)] +
                               ([("sec-websocket-version", "13")] if protocol == "websocket"
                                else []))
        self.track(sid)
        if flush:
            self.flush()
        return sid

    def request(self, method, authority, path, body=None, end=True, extra=(), scheme="http"):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", scheme), (":authority", authority),
              (":path", path)] + list(extra)
        self.conn.send_headers(sid, hs, end_stream=end and body is None)
        self.track(sid)
        if body is not None:
            self.send_body(sid, body, end)
        self.flush()
        return sid

    def send_body(self, sid, data, end):
        while data:
            while self.conn.local_flow_control_window(sid) == 0:
                self.pump()
            n = min(len(data), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            self.conn.send_data(sid, data[:n])
            data = data[n:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, timeout=10):
        self.s.settimeout(timeout)
        d = self.s.recv(65536)
        if not d:
            raise EOFError("proxy closed the connection")
        for ev in self.conn.receive_data(d):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived):
                st["headers"] = ev.headers
            elif isinstance(ev, h2.events.InformationalResponseReceived):
                st["info"].append(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                st["data"] += ev.data
                if self.auto_ack or not st.get("stalled"):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    st["unacked"] = st.get("unacked", 0) + ev.flow_controlled_length
            elif isinstance(ev, h2.events.TrailersReceived):
                st["trailers"] = ev.headers
            elif isinstance(ev, h2.events.StreamEnded):
                st["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                if st is not None:
                    st["reset"] = ev.error_code
        self.flush()

    def wait(self, pred, timeout=20):
        deadline = time.time() + timeout
        while not pred():
            if time.time() > deadline:
                raise AssertionError("timed out; streams: %r" % {
                    k: {kk: (vv if kk != "data" else len(vv)) for kk, vv in v.items()}
                    for k, v in self.streams.items()})
            self.pump(max(0.1, deadline - time.time()))

    def done(self, sid):
        st = self.streams[sid]
        return st["ended"] or st["reset"] is not None

    def close(self):
        self.s.close()


class StreamTLS:
    """A TLS client (trusting ca, offering alpn) over HTTP/2 stream sid of
    H2C c, as in a CONNECT stream: run(step) runs tls.do_handshake, a
    read, ... on it until it no longer wants to read, exchanging records
    as DATA frames; what step returned."""

    def __init__(self, c, sid, ca, alpn, server_hostname="localhost"):
        self.c, self.sid = c, sid
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(list(alpn))
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self.seen = 0

    def pump(self):
        d = self.out.read()
        if d:
            self.c.conn.send_data(self.sid, d)
            self.c.flush()
        data = self.c.streams[self.sid]["data"]
        if len(data) > self.seen:
            self.inc.write(data[self.seen:])
            self.seen = len(data)

    def run(self, step):
        while True:
            try:
                return step()
            except ssl.SSLWantReadError:
                self.pump()
                if not self.out.pending:
                    self.c.pump()
                    self.pump()


def listener():
    """A socket listening on 127.0.0.1 (an origin of a test's own)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(10)
    return ls


def ws_masked(op, payload, key=b"\x01\x02\x03\x04"):
    """A client's WebSocket frame (RFC 6455 5.2), masked with key."""
    n = len(payload)
    head = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else
                                 b"\xfe" + struct.pack("!H", n) if n < 65536 else
                                 b"\xff" + struct.pack("!Q", n))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def hdr(headers, name):
    for k, v in headers or []:
        if k == name.encode() or k == name:
            return v.decode() if isinstance(v, bytes) else v
    return None


class Http2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(dir=TMPBASE)
        cls.origin = Origin(cls.root, h2=True)  # its TLS port offers h2: reel mirrors it
        cls.echo = EchoOrigin()
        cls.auth = "127.0.0.1:%d" % cls.echo.port
        cls.reel = Reel(cls.root, "h2", "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        cls.echo.stop()
        stop_class(cls)

    def flows_for(self, target_part, n=1):
        fs = self.reel.wait_flows(n, "~u '%s'" % target_part.replace("?", "."), timeout=10)
        self.assertEqual(len(fs), n, fs)
        return [self.reel.flow(f["id"]) for f in fs]

    def test_curl_http2_over_tls(self):
        # two URLs, one connection: two streams, two flows
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert", self.reel.ca,
             "--http2", "-o", "/dev/null", "-o", "-", "-w", "%{http_version} %{num_connects}\\n",
             self.origin.url("/file1m?a", https=True), self.origin.url("/100b?a", https=True)],
            capture_output=True, check=True)
        lines = out.stdout.split(b"\n")
        self.assertIn(b"2 1", out.stdout)  # HTTP/2, and the second reused the connection
        self.assertIn(b"x" * 99, out.stdout)
        del lines
        big = self.flows_for("/file1m?a")[0]
        small = self.flows_for("/100b?a")[0]
        for f in (big, small):
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0", f["request"])
            self.assertEqual(f["response"]["status"], 200)
            self.assertIsNone(f.get("error"))
            names = [h[0] if isinstance(h, list) else h["name"] for h in f["request"]["headers"]]
            self.assertNotIn("host", [n.lower() for n in names])  # :authority, not Host
            # each stream's flow has its connection's TLS with the client
            ct = f["client_tls"]
            self.assertEqual((ct["alpn"], ct["sni"]), ("h2", "localhost"), ct)
            self.assertTrue(ct["tls_version"].startswith("TLSv1."), ct)
        # one client connection, two streams on it
        self.assertEqual(big["client_conn"], small["client_conn"])
        self.assertGreater(big["client_conn"], 0)
        self.assertEqual(sorted([big["stream_id"], small["stream_id"]]), [1, 3])
        self.assertEqual(body(big, "response"), self.origin.file1m)
        self.assertEqual(body(small, "response"), b"x" * 99 + b"\n")
        # scheme and authority were pseudo-header fields, not a Host field:
        # the request line shows them in the absolute form, as mitmproxy does
        url = big["request"]["url"].encode()
        self.assertTrue(url.startswith(b"https://") and url.endswith(b"/file1m?a"), url)
        shown = self.reel.cli("flow", "h2", str(big["id"])).stdout
        self.assertIn(b"\n> GET %s HTTP/2.0\n" % url, shown)
        raw = self.reel.cli("export", "--format", "raw", "h2", "~id %d" % small["id"]).stdout
        self.assertTrue(raw.startswith(b"GET %s HTTP/2.0\r\n" % small["request"]["url"].encode()),
                        raw[:200])
        # the listing's version column, and the ~h2 filter
        # the index knows the connection: ~conn lists the flows that shared it
        same = json.loads(self.reel.cli("flows", "--json", "h2",
                                        "~conn %d" % big["client_conn"]).stdout)
        self.assertEqual(sorted(f["id"] for f in same), sorted([big["id"], small["id"]]))
        self.assertEqual(sorted(f["stream_id"] for f in same), [1, 3])
        listed = self.reel.cli("flows", "h2", "~h2 & ~u file1m.a").stdout.decode()
        self.assertRegex(listed, r"GET +2 +https://localhost:\d+/file1m\?a")
        self.assertNotIn("/100b?h1", self.reel.cli("flows", "h2", "~http2").stdout.decode())

    def test_alpn_mirrors_the_origin(self):
        # an origin without h2: the client offering h2 gets HTTP/1.1, as it
        # would have from the origin itself
        h1 = Origin(os.path.join(self.root, "h1-origin"))

        def get(tag):
            return subprocess.run(
                ["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert",
                 self.reel.ca, "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                 "https://localhost:%d/100b?%s" % (h1.https_port, tag)],
                capture_output=True, check=True).stdout
        try:
            # reel cannot ask an origin it does not trust (its CA is its
            # own): no h2, and the request gets the 502 saying why
            self.assertEqual(get("untrusted"), b"1.1 502")
            f = self.flows_for("/100b?untrusted")[0]
            self.assertIn("certificate verify failed", f["error"])
            self.reel.set_config("set", "upstream_cert_verify", "false")
            try:
                # asked once, then remembered
                self.assertEqual(get("mirror"), b"1.1 200")
                self.assertEqual(get("mirror"), b"1.1 200")
            finally:
                self.reel.set_config("set", "upstream_cert_verify", "true")
        finally:
            h1.stop()
        for f in self.flows_for("/100b?mirror", 2):
            self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
            self.assertIsNotNone(f["server_conn"], f)
            self.assertEqual(f["server_conn"]["alpn"], "http/1.1")
        # the origin with h2: the client gets h2
        out = curl(self.reel, "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                   self.origin.url("/100b?mirror2", https=True))
        self.assertEqual(out.stdout, b"2")

    def test_curl_http1_still_http1(self):
        out = curl(self.reel, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}",
                   self.origin.url("/100b?h1", https=True))
        self.assertEqual(out.stdout, b"1.1")
        f = self.flows_for("/100b?h1")[0]
        self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
        self.assertIsNone(f["stream_id"])  # HTTP/1.1: no stream
        self.assertGreater(f["client_conn"], 0)

    def test_curl_post_http2(self):
        data = os.urandom(300000)
        path = os.path.join(self.root, "post.bin")
        with open(path, "wb") as fh:
            fh.write(data)
        # to /upload, which answers once it has the whole body: /echo
        # answers at once, and reel then resets the stream with NO_ERROR
        # (RFC 9113 8.1, test_http2_early.py) so that curl stops sending
        out = curl(self.reel, "--http2", "--data-binary", "@" + path,
                   self.origin.url("/upload", https=True))
        self.assertEqual(out.stdout, b"posted\n")
        f = self.flows_for("/upload")[0]
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        self.assertEqual(body(f, "request"), data)

    def test_h2load_large_responses_on_every_connection(self):
        # 4 client connections x 2 streams of 1 MiB, from an HTTP/1.1
        # origin: a lane whose last bytes fill its stream's queue still
        # ends the stream once the client took them (the END the parser
        # held was once left behind, and h2load waited forever)
        out = subprocess.run(
            ["h2load", "-n", "16", "-c", "4", "-m", "2", "-H",
             ":authority: 127.0.0.1:%d" % self.origin.http_port,
             "http://127.0.0.1:%d/file1m" % self.reel.port],
            capture_output=True, text=True, timeout=60).stdout
        self.assertIn("16 succeeded", out, out)
        fs = self.reel.wait_flows(16, "~u '127.0.0.1:%d/file1m'" % self.origin.http_port,
                                  timeout=10)
        self.assertEqual(len(fs), 16)

    def test_h2c_many_streams_one_connection(self):
        c = H2C(self.reel.port)
        conns0 = self.echo.conns
        try:
            sids = [c.request("GET", self.auth, "/many/%d" % i) for i in range(30)]
            c.wait(lambda: all(c.done(s) for s in sids))
            for i, s in enumerate(sids):
                st = c.streams[s]
                self.assertIsNone(st["reset"])
                self.assertEqual(hdr(st["headers"], ":status"), "200")
                self.assertEqual(st["data"], b"GET /many/%d\n" % i)
        finally:
            c.close()
        fs = self.reel.wait_flows(30, "~u /many/", timeout=10)
        self.assertEqual(len(fs), 30)
        conns, sids = set(), set()
        for f in fs:
            fl = self.reel.flow(f["id"])
            self.assertEqual(fl["request"]["http_version"], "HTTP/2.0")
            self.assertEqual(fl["request"]["host"], "127.0.0.1")
            conns.add(fl["client_conn"])
            sids.add(fl["stream_id"])
        self.assertEqual(len(conns), 1)
        self.assertEqual(sids, set(range(1, 61, 2)))
        # flow ids and start times follow the order the client sent the
        # streams in (they were given in reverse, newest lane first)
        by_id = sorted(fs, key=lambda f: f["id"])
        self.assertEqual([f["url"].rsplit("/", 1)[1] for f in by_id], [str(i) for i in range(30)])
        starts = [f["start_us"] for f in by_id]
        self.assertEqual(starts, sorted(starts))
        # the origin saw HTTP/1.1 with Host from :authority
        reqs = [r for r in self.echo.requests if r[1].startswith("/many/")]
        self.assertEqual(len(reqs), 30)
        # 30 streams at once over at most 16 origin connections (lanes)
        self.assertLessEqual(self.echo.conns - conns0, 16)
        self.assertEqual(dict(reqs[0][2])["host"], self.auth)

    def test_h2c_body_trailers_both_ways(self):
        c = H2C(self.reel.port)
        try:
            data = os.urandom(200000)
            sid = c.request("POST", self.auth, "/echo", body=data, end=False,
                            extra=[("x-req", "1")])
            c.conn.send_headers(sid, [("x-req-trailer", "done")], end_stream=True)
            c.flush()
            c.wait(lambda: c.done(sid))
            st = c.streams[sid]
            got = json.loads(st["data"])
            self.assertEqual(got["len"], len(data))
            self.assertEqual(got["sha256"], hashlib.sha256(data).hexdigest())
            self.assertEqual(got["te"], "chunked")  # no content-length: sent chunked
            self.assertEqual(got["trailers"], [["x-req-trailer", "done"]])
            self.assertEqual(hdr(st["trailers"], "x-count"), str(len(data)))
            self.assertEqual(hdr(st["trailers"], "x-body-sha256"),
                             hashlib.sha256(st["data"]).hexdigest())
        finally:
            c.close()
        fs = [x for x in self.reel.wait_flows(1, "~m POST ~u /echo ~h x-req", timeout=10)]
        self.assertEqual(len(fs), 1)
        f = self.reel.flow(fs[0]["id"])
        self.assertEqual(body(f, "request"), data)
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        # both trailer sections are in the record, passed on
        self.assertEqual(f["request_trailers"], [["x-req-trailer", "done"]])
        self.assertFalse(f["request_trailers_not_passed_on"])
        names = [h[0].lower() for h in f["response_trailers"]]
        self.assertEqual(names, ["x-body-sha256", "x-count"])

    def test_request_trailers_after_a_content_length_body(self):
        # HTTP/2 allows a request's trailers after a body with a
        # content-length too. Its HTTP/1.1 form toward the origin is framed
        # by that length and has no place for them: they do not reach the
        # origin, but they were missing from the record as well (and then
        # recorded as though sent: Trailers.not_passed_on says so). Three
        # streams one after another on one connection (its lane serves
        # each in turn), bodies small and large.
        c = H2C(self.reel.port)
        sizes = [5, 70000, 0]
        try:
            for k, n in enumerate(sizes):
                data = os.urandom(n)
                sid = c.request("POST", self.auth, "/echo", body=data, end=False,
                                extra=[("content-length", str(n)), ("x-cltrail", str(k))])
                c.conn.send_headers(sid, [("x-req-trailer", "t%d" % k), ("x-more", "yes")],
                                    end_stream=True)
                c.flush()
                c.wait(lambda: c.done(sid))
                st = c.streams[sid]
                self.assertEqual(hdr(st["headers"], ":status"), "200", st)
                got = json.loads(st["data"])
                self.assertEqual((got["len"], got["te"], got["trailers"]), (n, "", []), got)
        finally:
            c.close()
        fs = [self.reel.flow(f["id"]) for f in
              self.reel.wait_flows(3, "~h x-cltrail", timeout=10)]
        self.assertEqual(len(fs), 3)
        for k, f in enumerate(sorted(fs, key=lambda f: f["id"])):
            self.assertEqual(f["request_trailers"], [["x-req-trailer", "t%d" % k], ["x-more", "yes"]],
                             f)
            # and the record says the origin never got them
            self.assertTrue(f["request_trailers_not_passed_on"], f)
            self.assertEqual([v for n, v in f["request"]["headers"] if n == "content-length"],
                             [str(sizes[k])])
            self.assertEqual(f["state"], "complete")
        text = self.reel.cli("flow", self.reel.session, str(fs[0]["id"])).stdout.decode()
        self.assertIn("~ request trailers, which reel could not pass on: the HTTP/1.1 request it "
                      "made of the client's HTTP/2 stream, framed by its content-length, has no "
                      "place for them:", text)

    def test_trailers_after_a_content_length_body(self):
        # HTTP/2 allows trailers after a body with a content-length (gRPC
        # servers and nginx's add_trailer send them): from an HTTP/2 origin
        # to an HTTP/2 client they were dropped, and the record had none.
        # (curl first: reel learns that the origin speaks h2)
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-x", self.reel.proxy, "--cacert", self.reel.ca,
             "--http2", "-o", "/dev/null", "-w", "%{http_version}",
             self.origin.url("/trailer?first", https=True)], capture_output=True, timeout=60)
        self.assertEqual(out.stdout, b"2", out.stderr)
        raw = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        authority = "localhost:%d" % self.origin.https_port
        raw.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % ((authority.encode(),) * 2))
        got = b""
        while b"\r\n\r\n" not in got:
            got += raw.recv(4096)
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        ctx.set_alpn_protocols(["h2"])
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        self.assertEqual(tls.selected_alpn_protocol(), "h2")
        c = H2C(None, sock=tls)
        try:
            sid = c.request("GET", authority, "/trailer", scheme="https")
            c.wait(lambda: c.done(sid))
        finally:
            c.close()
        st = c.streams[sid]
        self.assertEqual(hdr(st["headers"], ":status"), "200")
        self.assertEqual(hdr(st["headers"], "content-length"), "100", st["headers"])
        self.assertEqual([k for k, v in st["headers"] if b"reel" in k.lower()], [])
        self.assertEqual(st["data"], b"x" * 99 + b"\n")
        self.assertEqual(st["trailers"], [(b"x-trail", b"yes")])
        f = self.flows_for("/trailer$")[0]
        self.assertEqual(f["response"]["http_version"], "HTTP/2.0")
        self.assertEqual(body(f, "response"), b"x" * 99 + b"\n")
        self.assertEqual([v for n, v in f["response"]["headers"] if n == "content-length"],
                         ["100"])
        self.assertEqual([n for n, v in f["response"]["headers"]
                          if "transfer" in n.lower() or "reel" in n.lower()], [])
        self.assertEqual(f["response_trailers"], [["x-trail", "yes"]])

    def test_an_origins_own_x_reel_content_length_is_its_own(self):
        # the name reel gives an HTTP/2 origin's content-length on its way
        # to the client's stream: from an HTTP/1.1 origin it is that
        # origin's field, passed on as it is (it became a second
        # content-length, and the client refused the response)
        ls = listener()

        def origin():
            a, _ = ls.accept()
            a.recv(65536)
            a.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                      b"X-Reel-Content-Length: 999\r\n\r\nyes")
            time.sleep(0.5)
            a.close()
        t = threading.Thread(target=origin, daemon=True)
        t.start()
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", "127.0.0.1:%d" % ls.getsockname()[1], "/own-field")
            c.wait(lambda: c.done(sid))
            st = c.streams[sid]
            self.assertEqual([(k, v) for k, v in st["headers"] if b"length" in k],
                             [(b"content-length", b"3"), (b"x-reel-content-length", b"999")])
            self.assertEqual(st["data"], b"yes")
        finally:
            c.close()
            t.join(10)
            ls.close()

    def test_h2c_early_hints(self):
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", self.auth, "/hints")
            c.wait(lambda: c.done(sid))
            st = c.streams[sid]
            self.assertEqual(len(st["info"]), 1, st)
            self.assertEqual(hdr(st["info"][0], ":status"), "103")
            self.assertEqual(hdr(st["info"][0], "link"), "</style.css>; rel=preload")
            self.assertEqual(st["data"], b"hinted")
        finally:
            c.close()
        f = self.flows_for("/hints")[0]
        self.assertEqual([(i["status"], i["reason"]) for i in f["interim"]],
                         [(103, "Early Hints")])
        self.assertIn(["Link", "</style.css>; rel=preload"], f["interim"][0]["headers"])
        self.assertEqual(f["response"]["status"], 200)

    def test_h2c_reset_mid_body_is_recorded(self):
        c = H2C(self.reel.port)
        try:
            sid = c.request("POST", self.auth, "/echo?reset", body=b"a" * 1000, end=False,
                            extra=[("content-length", "100000")])
            time.sleep(0.3)
            c.conn.reset_stream(sid, error_code=8)  # CANCEL
            c.flush()
            # the connection goes on
            sid2 = c.request("GET", self.auth, "/after-reset")
            c.wait(lambda: c.done(sid2))
            self.assertEqual(c.streams[sid2]["data"], b"GET /after-reset\n")
        finally:
            c.close()
        f = self.flows_for("/echo?reset")[0]
        self.assertIn("reset the HTTP/2 stream", f["error"])
        self.assertIn("0x8", f["error"])

    def test_preface_inside_tls_without_alpn_is_http2(self):
        # a client that offers no ALPN and speaks HTTP/2 at once (prior
        # knowledge over TLS): its first bytes say what it speaks, as they
        # do in the clear; it used to get an HTTP/1.1 505
        port = self.origin.https_port
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        t = ssl.create_default_context(cafile=self.reel.ca).wrap_socket(
            s, server_hostname="localhost")
        self.assertIsNone(t.selected_alpn_protocol())
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        c.initiate_connection()
        c.send_headers(1, [(":method", "GET"), (":path", "/100b?noalpn"), (":scheme", "https"),
                           (":authority", "localhost:%d" % port)], end_stream=True)
        t.sendall(c.data_to_send())
        t.settimeout(10)
        status, data, ended = None, b"", False
        while not ended:
            d = t.recv(65536)
            self.assertTrue(d, "reel closed the connection")
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended = True
            t.sendall(c.data_to_send())
        t.close()
        self.assertEqual((status, data), (b"200", b"x" * 99 + b"\n"))
        [f] = self.flows_for("/100b?noalpn")
        self.assertEqual((f["request"]["http_version"], f["response"]["status"]), ("HTTP/2.0", 200))

    def test_h2c_websocket_to_an_origin_that_does_not_switch_is_a_502(self):
        # RFC 8441: an HTTP/2 client takes any 2xx as the switch; an origin
        # that serves the resource (200) instead of 101 did not open it
        c = H2C(self.reel.port)
        try:
            sid = c.ext_connect(self.auth, "/noswitch")
            c.wait(lambda: c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "502")
            self.assertIn(b"instead of 101", c.streams[sid]["data"])
        finally:
            c.close()
        [f] = self.flows_for("/noswitch")
        self.assertEqual((f["state"], f["response"]["status"]), ("error", 502))
        self.assertIn("answered 200 to the WebSocket request instead of 101", f["error"])

    def test_h2c_websocket_origin_reset_is_connect_error(self):
        # RFC 8441 5 / RFC 9113 8.5: the origin's TCP reset ends the stream
        # with RST_STREAM CONNECT_ERROR (it was a clean END_STREAM), and the
        # flow says the connection failed, not that it closed
        ls = listener()

        def origin():
            a, _ = ls.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                head += a.recv(4096)
            key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            a.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                      b"\r\n\r\n\x81\x02hi")
            time.sleep(0.3)
            a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            a.close()
        t = threading.Thread(target=origin, daemon=True)
        t.start()
        authority = "127.0.0.1:%d" % ls.getsockname()[1]
        c = H2C(self.reel.port)
        try:
            sid = c.ext_connect(authority, "/rst")
            c.wait(lambda: c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            self.assertEqual(c.streams[sid]["data"], b"\x81\x02hi")
            self.assertEqual(c.streams[sid]["reset"], 0xa)  # CONNECT_ERROR
            self.assertFalse(c.streams[sid]["ended"])
        finally:
            c.close()
            t.join(10)
            ls.close()
        [f] = self.reel.wait_flows(1, "~websocket & ~u /rst", timeout=10)
        f = self.reel.flow(f["id"])
        self.assertEqual(f["state"], "error")
        self.assertRegex(f["error"], r"^the connection to the origin failed: .*reset.*, without a "
                         r"WebSocket Close frame \(1006, abnormal closure\)$")

    def test_h2c_websocket_refused_then_data_is_no_request(self):
        # the origin answers the WebSocket with a 404, and the client had
        # sent a frame already: the frame went to the lane as its next
        # request, and a 400 reel never sent was recorded as a second flow
        # of the stream
        before = len(self.reel.flows())
        c = H2C(self.reel.port)
        try:
            sid = c.ext_connect("127.0.0.1:%d" % self.origin.http_port, "/nosuch-ws", flush=False)
            c.conn.send_data(sid, ws_masked(1, b"hello"))  # with the head: before the answer
            c.flush()
            # the stream is reset with NO_ERROR after the answer: stop sending
            c.wait(lambda: c.streams[sid]["reset"] is not None)
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "404")
            self.assertEqual(c.streams[sid]["reset"], 0)
            self.assertTrue(c.streams[sid]["ended"])
            # the connection goes on
            sid2 = c.request("GET", self.auth, "/100b")
            c.wait(lambda: c.done(sid2))
            self.assertEqual(hdr(c.streams[sid2]["headers"], ":status"), "200")
        finally:
            c.close()
        [f] = self.flows_for("/nosuch-ws")
        self.assertEqual((f["state"], f["response"]["status"]), ("complete", 404))
        time.sleep(0.5)
        flows = self.reel.flows()
        self.assertEqual(len(flows) - before, 2, flows[before:])

    def test_h2c_extended_connect_for_another_protocol_is_a_501(self):
        # :protocol connect-udp (RFC 9298) or any other but websocket: reel
        # carries none, and used to give the client a 200 and a TCP tunnel
        c = H2C(self.reel.port)
        try:
            sid = c.ext_connect(self.auth, "/udp-proto", protocol="connect-udp")
            c.wait(lambda: c.done(sid))
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "501")
            self.assertIn(b"connect-udp", c.streams[sid]["data"])
            # the connection goes on
            sid2 = c.request("GET", self.auth, "/after-udp-proto")
            c.wait(lambda: c.done(sid2))
            self.assertEqual(c.streams[sid2]["data"], b"GET /after-udp-proto\n")
        finally:
            c.close()
        [f] = self.flows_for("/udp-proto")
        self.assertEqual((f["state"], f["response"]["status"]), ("error", 501))
        self.assertEqual(f["request"]["method"], "CONNECT")
        self.assertEqual(f["request"]["headers"][0], [":protocol", "connect-udp"])
        self.assertIn("websocket only", f["error"])
        self.assertFalse([r for r in self.echo.requests if r[1] == "/udp-proto"])

    def test_h2c_requests_waiting_when_the_connection_ends_are_recorded(self):
        # 16 slow requests take every lane; 2 more wait, and the client
        # closes the connection: the waiting ones were reel's too
        c = H2C(self.reel.port)
        for i in range(16):
            c.request("GET", self.auth, "/slow?conn-end-%d" % i)
        time.sleep(0.3)
        c.request("GET", self.auth, "/100b?waited-conn-end")
        c.request("POST", self.auth, "/echo?waited-conn-end", body=b"w" * 10,
                  extra=[("content-length", "10")])
        time.sleep(0.3)
        c.close()
        fs = self.flows_for("waited-conn-end", 2)
        for f in fs:
            self.assertEqual(f["state"], "error", f)
            self.assertIn("closed the HTTP/2 connection", f["error"])
            self.assertIsNone(f["response"])
        [post] = [f for f in fs if f["request"]["method"] == "POST"]
        self.assertEqual(body(post, "request"), b"w" * 10)
        self.assertFalse([r for r in self.echo.requests if "waited-conn-end" in r[1]])

    def test_h2c_request_cancelled_while_it_waited_is_recorded(self):
        # 16 slow requests take every lane of the connection; 3 more wait
        # for one, and the client cancels them: reel had them, they never
        # went on, and each is a flow that says so
        c = H2C(self.reel.port)
        try:
            slow = [c.request("GET", self.auth, "/slow?%d" % i) for i in range(16)]
            time.sleep(0.3)
            queued = [c.request("GET", self.auth, "/queued?1"),
                      c.request("POST", self.auth, "/queued?2", body=b"q" * 100,
                                extra=[("content-length", "100")]),
                      c.request("GET", self.auth, "/queued?3")]
            time.sleep(0.3)
            for sid in queued:
                c.conn.reset_stream(sid, error_code=8)  # CANCEL
            c.flush()
            c.wait(lambda: all(c.done(s) for s in slow))
            self.assertTrue(all(c.streams[s]["data"] == b"slow" for s in slow))
        finally:
            c.close()
        fs = self.flows_for("/queued?", 3)
        self.assertEqual(sorted(f["request"]["url"].rsplit("?", 1)[1] for f in fs), ["1", "2", "3"])
        for f in fs:
            self.assertEqual(f["state"], "error", f)
            self.assertEqual(f["error"], "the client reset the HTTP/2 stream (error code 0x8 CANCEL)")
            self.assertIsNone(f["response"])
            self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        [post] = [f for f in fs if f["request"]["method"] == "POST"]
        self.assertEqual(body(post, "request"), b"q" * 100)
        self.assertFalse([r for r in self.echo.requests if r[1].startswith("/queued")])

    def test_h2c_request_waiting_for_a_lane_starts_at_its_headers(self):
        # 16 slow requests (1.5 s each) take every lane; 3 more, sent in
        # the same write, wait 1.5 s for one. Their flows start when their
        # HEADERS came, not when a lane read them, and the wait is in
        # their `blocked`, so that the phases add up to the exchange: the
        # lane wait used to be in no field (start late, blocked only the
        # origin connection's set-up)
        c = H2C(self.reel.port)
        try:
            sids = []
            for i in range(19):
                sid = c.conn.get_next_available_stream_id()
                c.conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                          (":authority", self.auth),
                                          (":path", "/slow?lanewait-%d" % i)], end_stream=True)
                c.track(sid)
                sids.append(sid)
            sent = time.time()
            c.flush()
            c.wait(lambda: all(c.done(s) for s in sids))
            self.assertTrue(all(c.streams[s]["data"] == b"slow" for s in sids))
        finally:
            c.close()
        fs = self.reel.wait_flows(19, "~u lanewait-", timeout=10)
        self.assertEqual(len(fs), 19)
        by_id = sorted(fs, key=lambda f: f["id"])
        # ids and start times follow the order of the streams
        self.assertEqual([f["url"].rsplit("-", 1)[1] for f in by_id], [str(i) for i in range(19)])
        starts = [f["start_us"] for f in by_id]
        self.assertEqual(starts, sorted(starts))
        slack = 1.0 if SANITIZED else 0.4
        for f in by_id:
            fl = self.reel.flow(f["id"])
            self.assertEqual(fl["state"], "complete", fl)
            t = fl["timings"]
            waited = int(f["url"].rsplit("-", 1)[1]) >= 16
            # every flow, the waiting ones too, started when its HEADERS came
            self.assertLess(abs(f["start_us"] / 1e6 - sent), slack, (f, sent))
            if waited:
                # it waited 1.5 s for a lane, then 1.5 s for the origin
                self.assertGreater(t["blocked_us"], 1.2e6, t)
                self.assertGreater(f["end_us"] - f["start_us"], 2.7e6, f)
            else:
                self.assertLess(max(t["blocked_us"], 0), 0.5e6, t)
            # HAR: the phases, none negative but the -1s, add up to the
            # exchange, which ends when the origin's response did (the
            # flow's end, when the client had it, comes a moment later)
            total = sum(v for v in t.values() if v != -1)
            self.assertTrue(all(v >= 0 or v == -1 for v in t.values()), t)
            self.assertLessEqual(total, f["end_us"] - f["start_us"], (t, f))
            self.assertGreater(total, f["end_us"] - f["start_us"] - slack * 1e6, (t, f))
        # and in the HAR export: blocked carries the wait, time their sum
        har = json.loads(self.reel.cli("export", self.reel.session, "~u lanewait-").stdout)
        entries = har["log"]["entries"]
        self.assertEqual(len(entries), 19)
        for e in entries:
            tm = e["timings"]
            self.assertTrue(all(v >= 0 or (k in ("blocked", "dns", "connect", "ssl") and v == -1)
                                for k, v in tm.items() if k != "comment"), tm)
            parts = sum(v for k, v in tm.items() if k not in ("ssl", "comment") and v != -1)
            self.assertAlmostEqual(e["time"], parts, delta=0.01)
            if e["request"]["url"].rsplit("-", 1)[1] in ("16", "17", "18"):
                self.assertGreater(tm["blocked"], 1200, tm)

    def test_h2c_stalled_reader_does_not_stall_others(self):
        n = 8 << 20
        c = H2C(self.reel.port, auto_ack=False)
        # a browser's connection window is megabytes, its stream windows
        # smaller: one stalled stream must not hold the others back
        c.conn.increment_flow_control_window(16 << 20)
        c.flush()
        try:
            big = c.request("GET", self.auth, "/bytes?%d" % n)
            c.streams[big]["stalled"] = True
            # the big stream fills its 64 KiB window and stops there
            c.wait(lambda: len(c.streams[big]["data"]) >= 65535)
            small = [c.request("GET", self.auth, "/small/%d" % i) for i in range(10)]
            c.wait(lambda: all(c.done(s) for s in small))
            for i, s in enumerate(small):
                self.assertEqual(c.streams[s]["data"], b"GET /small/%d\n" % i)
            self.assertLess(len(c.streams[big]["data"]), n)
            # the stalled reader reads again: the rest arrives, intact
            c.streams[big]["stalled"] = False
            c.conn.acknowledge_received_data(c.streams[big].get("unacked", 0), big)
            c.flush()
            try:
                c.wait(lambda: c.done(big), timeout=60)
            except Exception:
                raise AssertionError("stalled stream: %d of %d bytes, unacked %r, window %d" % (
                    len(c.streams[big]["data"]), n, c.streams[big].get("unacked"),
                    c.conn.remote_flow_control_window(big)))
            self.assertEqual(hashlib.sha256(c.streams[big]["data"]).hexdigest(),
                             hashlib.sha256(EchoOrigin.pattern(n)).hexdigest())
        finally:
            c.close()

    def test_h2c_client_goes_away_mid_stream(self):
        c = H2C(self.reel.port, auto_ack=False)
        sid = c.request("GET", self.auth, "/bytes?%d" % (4 << 20))
        c.streams[sid]["stalled"] = True
        c.wait(lambda: len(c.streams[sid]["data"]) > 0)
        c.close()
        f = self.flows_for("/bytes?%d" % (4 << 20))[0]
        self.assertIn("client", f["error"])

    def test_h2c_reset_after_the_whole_response_was_read(self):
        # reel read all 512 KB from the origin, the client's 64 KiB window
        # let a part go out, then it reset the stream: not complete (the end
        # was recorded when the origin's last byte was parsed), and the
        # record says how much was never sent
        n = 512 << 10
        c = H2C(self.reel.port, auto_ack=False)
        c.conn.increment_flow_control_window(16 << 20)  # stream windows hold it back
        c.flush()
        try:
            sid = c.request("GET", self.auth, "/bytes?%d" % n)
            c.streams[sid]["stalled"] = True
            c.wait(lambda: len(c.streams[sid]["data"]) >= 65535)
            time.sleep(0.5)  # the rest is read and queued in reel
            got = len(c.streams[sid]["data"])
            c.conn.reset_stream(sid, error_code=8)  # CANCEL
            c.flush()
            # a stream the same way, then the whole connection goes
            gone = c.request("GET", self.auth, "/bytes?%d" % (n + 1))
            c.streams[gone]["stalled"] = True
            c.wait(lambda: len(c.streams[gone]["data"]) > 0)
            time.sleep(0.5)
        finally:
            c.close()
        f = self.flows_for("/bytes.%d$" % n)[0]
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["response"]["body_size"], n)  # all of it came from the origin
        self.assertIn("reset the HTTP/2 stream (error code 0x8 CANCEL) before it received the whole "
                      "response: the last %d bytes of the body were not sent" % (n - got),
                      f["error"])
        g = self.flows_for("/bytes.%d$" % (n + 1))[0]
        self.assertEqual(g["state"], "error", g)
        self.assertEqual(g["response"]["body_size"], n + 1)
        self.assertIn("before the client received the whole response", g["error"])

    def test_h2c_origin_cuts_the_response(self):
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", self.auth, "/cut")
            c.wait(lambda: c.done(sid))
            st = c.streams[sid]
            self.assertEqual(hdr(st["headers"], ":status"), "200")
            self.assertEqual(st["reset"], 2)  # INTERNAL_ERROR: not a clean end
            self.assertFalse(st["ended"])
            self.assertEqual(st["data"], b"c" * 5000)
        finally:
            c.close()
        f = self.flows_for("/cut")[0]
        self.assertEqual(f["state"], "error")
        self.assertTrue(f["error"], f)
        self.assertEqual(body(f, "response"), b"c" * 5000)

    def test_h2c_header_smuggling_refused(self):
        # CR LF inside a value, and a content-length that DATA contradicts:
        # nghttp2 resets such streams; nothing reaches the origin
        c = H2C(self.reel.port, validate=False)
        try:
            before = len(self.echo.requests)
            bad = c.request("GET", self.auth, "/smuggle-crlf",
                            extra=[("x-a", "1\r\nx-injected: yes")])
            short = c.request("POST", self.auth, "/smuggle-length", body=b"12345",
                              extra=[("content-length", "10")])
            c.wait(lambda: c.done(bad) and c.done(short))
            self.assertEqual(c.streams[bad]["reset"], 1)  # PROTOCOL_ERROR
            self.assertIsNone(c.streams[bad]["headers"])
            self.assertIsNotNone(c.streams[short]["reset"])
            ok = c.request("GET", self.auth, "/after-smuggle")
            c.wait(lambda: c.done(ok))
            self.assertEqual(c.streams[ok]["data"], b"GET /after-smuggle\n")
        finally:
            c.close()
        targets = [r[1] for r in self.echo.requests[before:]]
        self.assertNotIn("/smuggle-crlf", targets)
        for method, target, headers in self.echo.requests[before:]:
            self.assertNotIn("x-injected", dict(headers))
        # the length lie reached the origin at most as a request cut short
        f = self.reel.wait_flows(1, "~u smuggle-length", timeout=5)
        for row in f:
            self.assertEqual(row["state"], "error", row)

    def test_h2c_malformed_request_is_recorded(self):
        # a request nghttp2 refuses (RFC 9113 8.2, 8.3.1) gets RST_STREAM
        # PROTOCOL_ERROR and reaches no origin; it is a flow all the same,
        # as an HTTP/1.1 request refused with 400 is: the request as far as
        # it came, and the reset reel answered with the rule it broke
        c = H2C(self.reel.port, validate=False)
        try:
            before = len(self.echo.requests)
            upper = c.request("GET", self.auth, "/h2-bad-upper", extra=[("X-Upper", "1")])
            nopath = c.conn.get_next_available_stream_id()
            c.conn.send_headers(nopath, [(":method", "GET"), (":scheme", "http"),
                                         (":authority", self.auth), ("x-case", "h2-bad-nopath")],
                                end_stream=True)
            c.track(nopath)
            c.flush()
            conn = c.request("GET", self.auth, "/h2-bad-conn", extra=[("connection", "close")])
            c.wait(lambda: all(c.done(s) for s in (upper, nopath, conn)))
            for sid in (upper, nopath, conn):
                self.assertEqual(c.streams[sid]["reset"], 1)  # PROTOCOL_ERROR
                self.assertIsNone(c.streams[sid]["headers"])
            ok = c.request("GET", self.auth, "/h2-bad-after")  # the connection goes on
            c.wait(lambda: c.done(ok))
            self.assertEqual(c.streams[ok]["data"], b"GET /h2-bad-after\n")
        finally:
            c.close()
        self.assertEqual([r[1] for r in self.echo.requests[before:]], ["/h2-bad-after"])
        reset = "reel reset the HTTP/2 stream with RST_STREAM PROTOCOL_ERROR (0x1): "
        f = self.flows_for("/h2-bad-upper")[0]
        self.assertEqual(f["state"], "error", f)
        self.assertEqual(f["stream_id"], upper)
        self.assertEqual((f["request"]["method"], f["request"]["http_version"]),
                         ("GET", "HTTP/2.0"))
        self.assertIsNone(f["response"])
        self.assertEqual(f["error"], reset + "malformed HTTP/2 request: an upper-case field name "
                         "(RFC 9113 8.2.1): \"X-Upper\": \"1\"")
        f = self.flows_for("/h2-bad-conn")[0]
        self.assertEqual(f["error"], reset + "malformed HTTP/2 request: a connection-specific "
                         "field (RFC 9113 8.2.2): \"connection\": \"close\"")
        rows = [r for r in self.reel.flows("~conn %d" % f["client_conn"])
                if r["stream_id"] == nopath]
        self.assertEqual(len(rows), 1, rows)
        f = self.reel.flow(rows[0]["id"])
        self.assertEqual(f["error"], reset + "malformed HTTP/2 request: the request has no :path "
                         "(RFC 9113 8.3.1)")
        self.assertEqual((f["request"]["host"], f["request"]["port"], f["request"]["target"]),
                         ("127.0.0.1", self.echo.port, ""))
        self.assertEqual(f["request"]["headers"], [["x-case", "h2-bad-nopath"]])

    def test_h2c_body_short_of_content_length(self):
        # content-length 10, then "abc" and END_STREAM, after the request
        # went to the origin: reel resets the stream at once, the flow ends
        # then with that reset and why, and the origin's request is cut
        ls = listener()
        got = {}

        def origin():
            s, _ = ls.accept()
            s.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            got["head"] = time.time()
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
            got["eof"] = time.time()
            got["data"] = data
            s.close()

        t = threading.Thread(target=origin, daemon=True)
        t.start()
        auth = "127.0.0.1:%d" % ls.getsockname()[1]
        c = H2C(self.reel.port)
        try:
            sid = c.request("POST", auth, "/h2-short-body", end=False,
                            extra=[("content-length", "10")])
            deadline = time.time() + 10
            while "head" not in got and time.time() < deadline:
                time.sleep(0.02)
            self.assertIn("head", got)  # the request went to the origin
            c.conn.send_data(sid, b"abc", end_stream=True)
            c.flush()
            sent = time.time()
            c.wait(lambda: c.done(sid), timeout=5)
            self.assertEqual(c.streams[sid]["reset"], 1)  # PROTOCOL_ERROR
            # the flow has ended while the client's connection is still open
            rows = self.reel.wait_flows(1, "~u h2-short-body", timeout=3)
            self.assertEqual([r["state"] for r in rows], ["error"], rows)
            f = self.reel.flow(rows[0]["id"])
            self.assertEqual(f["error"], "reel reset the HTTP/2 stream with RST_STREAM "
                             "PROTOCOL_ERROR (0x1): the request body ended after 3 bytes, short "
                             "of its content-length (10 bytes)")
            self.assertLess(f["end_us"] / 1e6 - sent, 1.0)
            self.assertEqual(body(f, "request"), b"abc")  # what the client sent
            t.join(5)
            self.assertLess(got["eof"] - sent, 2.0)  # the origin's request was cut
            self.assertTrue(got["data"].startswith(b"POST /h2-short-body HTTP/1.1\r\n"))
        finally:
            c.close()
            ls.close()

    def test_h2c_protocol_error_goaway(self):
        c = H2C(self.reel.port, auto_ack=False)
        try:
            sid = c.request("GET", self.auth, "/bytes?%d" % (3 << 20))
            c.streams[sid]["stalled"] = True
            c.wait(lambda: len(c.streams[sid]["data"]) > 0)
            # a DATA frame on stream 0: a connection error
            c.s.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
            got = b""
            c.s.settimeout(10)
            try:
                while True:
                    d = c.s.recv(65536)
                    if not d:
                        break
                    got += d
            except (ConnectionResetError, TimeoutError):
                pass
            # a GOAWAY (type 7) with PROTOCOL_ERROR came before the close
            self.assertIn(b"\x07\x00\x00\x00\x00\x00", got)
        finally:
            c.close()
        f = self.flows_for("/bytes?%d" % (3 << 20))[0]
        self.assertIn("the client broke HTTP/2: HTTP/2 protocol error (DATA: stream_id == 0)",
                      f["error"])

    def test_h2c_reels_own_answer_is_recorded_as_sent(self):
        # an origin that cannot be reached: reel answers the stream itself
        # (502), and the flow's response is what the client got on the
        # wire: no reason, lower-case names, no Connection (it used to
        # record the HTTP/1.1 head reel writes for its own answers)
        c = H2C(self.reel.port)
        try:
            sid = c.request("GET", "127.0.0.1:1", "/h2-nowhere")
            c.wait(lambda: c.done(sid))
            got = [(k.decode() if isinstance(k, bytes) else k,
                    v.decode() if isinstance(v, bytes) else v) for k, v in c.streams[sid]["headers"]]
            data = c.streams[sid]["data"]
        finally:
            c.close()
        self.assertEqual(hdr(got, ":status"), "502")
        f = self.flows_for("/h2-nowhere")[0]
        self.assertTrue(f["response"]["generated"], f)
        self.assertEqual(f["response"]["status"], 502)
        self.assertEqual(f["response"]["reason"], "")
        self.assertEqual(f["response"]["http_version"], "HTTP/2.0")
        self.assertEqual([list(h) for h in got if h[0] != ":status"], f["response"]["headers"])
        self.assertEqual(base64.b64decode(f["response"]["body_b64"]), data)

    def test_large_download_flat_rss(self):
        size = os.path.getsize(os.path.join(self.origin.www, "big"))
        out = subprocess.Popen(
            ["curl", "-sS", "--max-time", "120", "-x", self.reel.proxy, "--cacert", self.reel.ca,
             "--http2", "-o", "/dev/null", "-w", "%{http_version} %{size_download}",
             self.origin.url("/big", https=True)], stdout=subprocess.PIPE)
        peak = 0
        while out.poll() is None:
            with open("/proc/%d/status" % self.reel.proc.pid) as f:
                peak = max(peak, int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)))
            time.sleep(0.05)
        with out.stdout:
            self.assertEqual(out.stdout.read().decode(), "2 %d" % size)
        if not SANITIZED:
            self.assertLess(peak, 80 * 1024, "reel's RSS reached %d KiB" % peak)
        f = self.flows_for("/big")[0]
        self.assertEqual(f["response"]["body_size"], size)

    def test_nghttp_client(self):
        # nghttp (nghttp2-client) speaks prior-knowledge h2c; -H names the
        # origin as :authority; -d uploads a file
        path = os.path.join(self.root, "nghttp.bin")
        data = os.urandom(70000)
        with open(path, "wb") as fh:
            fh.write(data)
        out = subprocess.run(
            ["nghttp", "-H", ":authority: " + self.auth, "-d", path,
             "http://127.0.0.1:%d/echo" % self.reel.port], capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = json.loads(out.stdout)
        self.assertEqual(got["len"], len(data))
        self.assertEqual(got["sha256"], hashlib.sha256(data).hexdigest())
        fs = self.reel.wait_flows(1, "~m POST ~u /echo ~h nghttp", timeout=10)
        self.assertEqual(len(fs), 1)
        f = self.reel.flow(fs[0]["id"])
        self.assertEqual(body(f, "request"), data)
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")

    def test_h2c_websocket_extended_connect(self):
        box = {}
        with ws_echo_server() as port:
            box["port"] = port
            c = H2C(self.reel.port)
            # (the server's SETTINGS must allow extended CONNECT first)
            sid = c.ext_connect("127.0.0.1:%d" % box["port"], "/chat")
            c.wait(lambda: c.streams[sid]["headers"] is not None)
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            key = b"\x01\x02\x03\x04"
            msg = b"hello over h2"
            masked = bytes(b ^ key[i % 4] for i, b in enumerate(msg))
            c.conn.send_data(sid, b"\x81" + bytes([0x80 | len(msg)]) + key + masked)
            c.flush()
            c.wait(lambda: len(c.streams[sid]["data"]) >= 2 + len(msg))
            self.assertEqual(c.streams[sid]["data"][:2 + len(msg)], b"\x81" + bytes([len(msg)]) + msg)
            close = b"\x03\xe8"  # 1000
            c.conn.send_data(sid, b"\x88\x82" + key + bytes(b ^ key[i] for i, b in enumerate(close)))
            c.flush()
            c.wait(lambda: c.done(sid))
            self.assertTrue(c.streams[sid]["ended"])  # END_STREAM, not a reset
            c.close()
        fs = self.reel.wait_flows(1, "~websocket & ~u /chat", timeout=10)
        self.assertEqual(len(fs), 1, fs)
        f = self.reel.flow(fs[0]["id"])
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        # recorded as sent: an extended CONNECT with its :protocol, not the
        # GET Upgrade reel made of it for the HTTP/1.1 origin
        self.assertEqual(f["request"]["method"], "CONNECT")
        self.assertEqual(fs[0]["method"], "CONNECT")
        self.assertEqual(f["request"]["headers"][0], [":protocol", "websocket"])
        self.assertIn(["sec-websocket-version", "13"], f["request"]["headers"])
        self.assertEqual(fs[0]["url"], "http://127.0.0.1:%d/chat" % box["port"])
        self.assertEqual(f["response"]["status"], 101)
        self.assertEqual(f["state"], "complete", f.get("error"))
        texts = [(m["from_client"], m["opcode"]) for m in f["messages"]]
        self.assertIn((True, 1), texts)
        self.assertIn((False, 1), texts)
        self.assertIn((True, 8), texts)

    def ws_stream(self, c, port, path):
        sid = c.ext_connect("127.0.0.1:%d" % port, path)
        c.wait(lambda: c.streams[sid]["headers"] is not None)
        self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
        return sid

    def test_h2c_websocket_not_delivered_is_an_error(self):
        # The server echoes a 200,000-byte message and a Close, then closes;
        # a client that never opens its stream's window beyond 65,535 bytes
        # and then goes has not been given the rest, which waited in reel's
        # queue for the stream: the flow is an error saying how much was
        # not sent. It used to end complete as soon as the server closed,
        # its messages listed as if passed. A client that reads it all
        # gets a complete flow once the stream's last DATA has been sent.
        big = os.urandom(200000)
        echoed = 10 + len(big) + 4  # the server's frames: head, payload; Close
        with ws_echo_server() as port:
            for stall in (True, False):
                c = H2C(self.reel.port, auto_ack=not stall)
                path = "/ws-stall" if stall else "/ws-read"
                sid = self.ws_stream(c, port, path)
                c.streams[sid]["stalled"] = stall
                c.send_body(sid, ws_masked(2, big), False)
                # the Close once the echo is under way (a server that reads
                # the Close first sends nothing more)
                c.wait(lambda: len(c.streams[sid]["data"]) >= (65535 if stall else 10 + len(big)))
                time.sleep(0.5)  # the rest of it waits in reel by now
                c.send_body(sid, ws_masked(8, b"\x03\xe8"), False)
                if stall:
                    pump_for(c, 2)
                    got = len(c.streams[sid]["data"])
                    self.assertEqual(got, 65535)
                    # the server is done, the client has not had it all
                    fs = self.reel.flows("~websocket & ~u %s" % path)
                    self.assertEqual([f["state"] for f in fs], ["open"], fs)
                    c.close()
                else:
                    c.wait(lambda: c.done(sid))
                    self.assertTrue(c.streams[sid]["ended"])
                    self.assertEqual(len(c.streams[sid]["data"]), echoed)
                    c.close()
                fs = self.reel.wait_flows(1, "~websocket & ~u %s" % path, timeout=10)
                self.assertEqual(len(fs), 1, fs)
                f = self.reel.flow(fs[0]["id"])
                if stall:
                    self.assertEqual(f["state"], "error", f)
                    self.assertEqual(
                        f["error"], "the client closed the HTTP/2 connection before the client "
                        "received the whole WebSocket: the last %d bytes of the stream were not "
                        "sent" % (echoed - got))
                else:
                    self.assertEqual(f["state"], "complete", f.get("error"))
                msgs = [(m["from_client"], m["opcode"], m["length"]) for m in f["messages"]]
                self.assertEqual(sorted(msgs), [(False, 2, 200000), (False, 8, 2),
                                                (True, 2, 200000), (True, 8, 2)], msgs)

    def connect_stream(self, c, authority):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
        c.track(sid)
        c.flush()
        c.wait(lambda: c.streams[sid]["headers"] is not None or c.done(sid))
        return sid

    def test_h2c_connect_tunnel(self):
        # RFC 9113 8.5: a CONNECT stream is a tunnel; reel serves it as it
        # serves an HTTP/1.1 CONNECT (here plain HTTP inside: requests
        # recorded as flows of their own), and the connection goes on
        c = H2C(self.reel.port, validate=False)
        try:
            sid = self.connect_stream(c, self.auth)
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            time.sleep(0.5)
            sent = time.time()
            c.conn.send_data(sid, b"GET /in-h2-tunnel HTTP/1.1\r\nHost: %s\r\n\r\n" %
                             self.auth.encode())
            c.flush()
            c.wait(lambda: c.streams[sid]["data"].endswith(b"GET /in-h2-tunnel\n"))
            self.assertTrue(c.streams[sid]["data"].startswith(b"HTTP/1.1 200 OK\r\n"))
            c.conn.end_stream(sid)  # the client's end of the tunnel
            c.flush()
            c.wait(lambda: c.done(sid))
            # a tunnel to nowhere: as for HTTP/1.1, reel answers the CONNECT
            # at once (to see what the client speaks) and the request inside
            # gets the 502 with the reason
            bad = self.connect_stream(c, "127.0.0.1:1")
            self.assertEqual(hdr(c.streams[bad]["headers"], ":status"), "200")
            c.conn.send_data(bad, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
            c.flush()
            c.wait(lambda: c.done(bad) or b"\r\n\r\nreel: " in c.streams[bad]["data"])
            self.assertTrue(c.streams[bad]["data"].startswith(b"HTTP/1.1 502 "),
                            c.streams[bad]["data"])
            ok = c.request("GET", self.auth, "/after-connect")
            c.wait(lambda: c.done(ok))
            self.assertEqual(c.streams[ok]["data"], b"GET /after-connect\n")
        finally:
            c.close()
        f = self.flows_for("/in-h2-tunnel")[0]
        self.assertEqual(f["response"]["status"], 200)
        self.assertEqual(f["stream_id"], sid)
        self.assertIsNone(f.get("error"))
        # the request inside is the tunnel's, not the stream's HEADERS: its
        # own version, and it starts when it came (it was HTTP/2.0, and
        # started at the CONNECT)
        self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
        self.assertGreaterEqual(f["start_us"], int((sent - 0.05) * 1e6))

    def test_h2c_connect_left_before_its_bytes_said_anything(self):
        # a CONNECT stream whose first bytes do not say yet what they are
        # (nor TLS nor an HTTP request line), then the client leaves: the
        # tunnel is recorded with them, as over HTTP/1.1 (no flow at all)
        for leave in ("reset", "close"):
            with self.subTest(leave=leave):
                ls = socket.socket()
                ls.bind(("127.0.0.1", 0))
                authority = "127.0.0.1:%d" % ls.getsockname()[1]
                c = H2C(self.reel.port, validate=False)
                try:
                    sid = self.connect_stream(c, authority)
                    self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
                    c.conn.send_data(sid, b"hello raw")
                    c.flush()
                    time.sleep(0.3)
                    if leave == "reset":
                        c.conn.reset_stream(sid, 8)  # CANCEL
                        c.flush()
                        time.sleep(0.3)
                finally:
                    c.close()
                    ls.close()
                [f] = self.reel.wait_flows(1, "~u 'tcp://%s'" % authority, timeout=10)
                f = self.reel.flow(f["id"])
                self.assertEqual(f["state"], "error", f)
                self.assertEqual(f["stream_id"], sid)
                self.assertIn("CANCEL" if leave == "reset" else
                              "the client closed the HTTP/2 connection", f["error"])
                self.assertEqual([(m["from_client"], base64.b64decode(m["data_b64"]))
                                  for m in f["messages"]], [(True, b"hello raw")])

    def test_h2c_connect_origin_failure_is_connect_error(self):
        # RFC 9113 8.5: a TCP connection to the origin that fails (refused,
        # reset) ends the CONNECT stream with RST_STREAM CONNECT_ERROR, a
        # clean one (FIN) with END_STREAM. reel answers 200 before it
        # connects (it looks at the first bytes), so the 200 stays
        def origin(mode):
            ls = listener()

            def serve():
                s, _ = ls.accept()
                s.recv(100)
                s.sendall(b"\x00from-origin")
                time.sleep(0.3)
                if mode == "reset":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                ls.close()

            threading.Thread(target=serve, daemon=True).start()
            return "127.0.0.1:%d" % ls.getsockname()[1]

        c = H2C(self.reel.port, validate=False)
        try:
            sids = {}
            for case, auth in (("refused", "127.0.0.1:1"), ("reset", origin("reset")),
                               ("fin", origin("fin"))):
                sid = sids[case] = self.connect_stream(c, auth)
                self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
                c.conn.send_data(sid, b"\x00\x01not-http " + case.encode())
                c.flush()
                c.wait(lambda: c.done(sid))
            for case in ("refused", "reset"):
                st = c.streams[sids[case]]
                self.assertEqual(st["reset"], 10, case)  # CONNECT_ERROR
                self.assertFalse(st["ended"], case)
            self.assertEqual(c.streams[sids["reset"]]["data"], b"\x00from-origin")
            fin = c.streams[sids["fin"]]
            self.assertEqual((fin["reset"], fin["ended"], fin["data"]),
                             (None, True, b"\x00from-origin"))
            c.conn.end_stream(sids["fin"])  # the client's side of it ends too
            c.flush()
            ok = c.request("GET", self.auth, "/after-connect-errors")
            c.wait(lambda: c.done(ok))
        finally:
            c.close()
        rows = {r["stream_id"]: r for r in self.reel.wait_flows(
            4, "~conn %d" % self.flows_for("/after-connect-errors")[0]["client_conn"])}
        self.assertEqual(rows[sids["refused"]]["state"], "error")
        self.assertIn("connection refused", rows[sids["refused"]]["error"])
        self.assertEqual(rows[sids["refused"]]["status"], 200)
        self.assertEqual(rows[sids["reset"]]["state"], "error")
        self.assertEqual(rows[sids["reset"]]["error"],
                         "the connection to the origin failed: connection reset by peer")
        self.assertEqual(rows[sids["fin"]]["state"], "complete", rows[sids["fin"]])

    def test_h2c_connect_tunnel_not_delivered_is_an_error(self):
        # A plain CONNECT stream's tunnel whose origin sent 200,000 bytes
        # and closed, then the client ended its side too, without opening
        # its stream's window beyond 65,535 bytes: the rest waits in reel's
        # queue for the stream, and the tunnel flow waits with it; a client
        # that then goes leaves it an error saying how much was not sent.
        # It used to end complete once both sides had ended. A client that
        # reads it all gets a complete flow.
        big = b"\x00" + os.urandom(199999)

        def origin():
            ls = listener()

            def serve():
                s, _ = ls.accept()
                s.recv(100)
                s.sendall(big)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(10)
                try:
                    while s.recv(100):
                        pass
                except OSError:
                    pass
                s.close()
                ls.close()
            threading.Thread(target=serve, daemon=True).start()
            return "127.0.0.1:%d" % ls.getsockname()[1]

        for stall in (True, False):
            auth = origin()
            c = H2C(self.reel.port, auto_ack=not stall, validate=False)
            sid = self.connect_stream(c, auth)
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            c.streams[sid]["stalled"] = stall
            c.conn.send_data(sid, b"\x00\x01not-http")
            c.flush()
            c.wait(lambda: len(c.streams[sid]["data"]) >= (65535 if stall else len(big)))
            time.sleep(0.5)  # the origin's FIN has reached reel by now
            c.conn.end_stream(sid)  # the client's side of the tunnel ends too
            c.flush()

            def rows():
                return [r for r in self.reel.flows() if r["method"] == "CONNECT" and
                        r["stream_id"] == sid and r["url"] == "tcp://%s/" % auth]
            if stall:
                pump_for(c, 1.5)
                got = len(c.streams[sid]["data"])
                self.assertEqual(got, 65535)
                # both sides ended, the client has not had it all
                self.assertEqual([r["state"] for r in rows()], ["open"], rows())
                c.close()
            else:
                c.wait(lambda: c.done(sid))
                self.assertTrue(c.streams[sid]["ended"])
                self.assertEqual(c.streams[sid]["data"], big)
                # (a close at once can still come before reel has seen its
                # last write done: the flow then says the client closed)
                pump_for(c, 0.5)
                c.close()
            deadline = time.time() + 10
            while not rows() or rows()[0]["state"] == "open":
                self.assertLess(time.time(), deadline, rows())
                time.sleep(0.1)
            f = rows()[0]
            if stall:
                self.assertEqual(f["state"], "error", f)
                self.assertEqual(
                    f["error"], "the client closed the HTTP/2 connection before the client "
                    "received the whole tunnel: the last %d bytes of the stream were not sent"
                    % (len(big) - got))
            else:
                self.assertEqual(f["state"], "complete", f.get("error"))

    def test_h2c_connect_intercepted_tls(self):
        # TLS inside a CONNECT stream: intercepted with reel's CA, as for
        # an HTTP/1.1 CONNECT; the request inside is recorded
        c = H2C(self.reel.port, validate=False)
        try:
            sid = self.connect_stream(c, "localhost:%d" % self.origin.https_port)
            self.assertEqual(hdr(c.streams[sid]["headers"], ":status"), "200")
            st = StreamTLS(c, sid, self.reel.ca, ["http/1.1"])
            st.run(st.tls.do_handshake)
            st.tls.write(b"GET /100b?h2connect HTTP/1.1\r\nHost: localhost\r\n"
                         b"Connection: close\r\n\r\n")
            got = b""
            deadline = time.time() + 20
            while b"x" * 99 not in got and time.time() < deadline:
                st.pump()
                try:
                    got += st.run(lambda: st.tls.read(65536))
                except ssl.SSLZeroReturnError:
                    break
            self.assertIn(b"HTTP/1.1 200", got)
            self.assertIn(b"x" * 99, got)
        finally:
            c.close()
        f = self.flows_for("/100b?h2connect")[0]
        self.assertEqual(f["request"]["scheme"] if "scheme" in f["request"] else "https", "https")
        self.assertEqual(body(f, "response"), b"x" * 99 + b"\n")
        # the request inside is the tunnel's: HTTP/1.1 in the client's TLS
        # with reel (they were HTTP/2.0, with no client TLS)
        self.assertEqual(f["request"]["http_version"], "HTTP/1.1")
        self.assertEqual((f["client_tls"]["sni"], f["client_tls"]["alpn"]),
                         ("localhost", "http/1.1"))

    def test_http2_off(self):
        self.reel.set_config("set", "http2", "false")
        try:
            out = curl(self.reel, "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                       self.origin.url("/100b?off", https=True))
            self.assertEqual(out.stdout, b"1.1")
        finally:
            self.reel.set_config("set", "http2", "true")
        out = curl(self.reel, "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                   self.origin.url("/100b?on", https=True))
        self.assertEqual(out.stdout, b"2")


if __name__ == "__main__":
    main()
