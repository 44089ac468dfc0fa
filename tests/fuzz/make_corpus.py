#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/ from real traffic.

    tests/fuzz/make_corpus.py --reel build/reel [--out tests/fuzz/corpus]

What each seed is made of (see the harness headers for the control bytes):
  http1   curl's requests and nginx's responses, captured by a socket relay
          between them (GET, HEAD, POST, Expect: 100-continue, gzip/chunked,
          keep-alive reuse, 404, absolute-form and CONNECT through a proxy
          port); one hand-written 101 Switching Protocols exchange.
  sniff   ClientHellos sent by `openssl s_client`, curl and Python's ssl
          module to a socket that only listens (two of them offering ALPN
          names other than http/1.1 and h2: mqtt, http/1.0); one
          re-fragmented over two records; curl's plain and HTTP/2
          prior-knowledge openings; an SSH banner.
  spool   a segment written by `reel import tests/data/har/chromium.har`,
          whole and cut short, and its decompressed block.
  index   that session's session.db (VACUUMed to 512-byte pages to stay
          small), an empty file and one from a newer schema; its spool
          segment goes to tests/fuzz/data/index-segment.zst, which
          fuzz_index puts beside every session.db it tries.
  har     tests/data/har fixtures (chromium.har cut to two entries).
  filter  expressions as the docs and tests write them.
  config  option values, option names, a config.yaml, overlay rows.
  h2      frames written by python3-h2 (an implementation other than the
          nghttp2 under reel's codec): a client's requests with bodies,
          trailers, a reset, a CONTINUATION-split head and GOAWAY; a
          server's responses (103, 200 with trailers, RST_STREAM, GOAWAY).
Needs nginx, curl, openssl, zstd and sqlite3 (scripts/bootstrap --test).
Every run makes different ClientHello randoms; commit what changed on
purpose only.
"""
import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def write(out, harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- http1: curl <-> relay <-> nginx ----

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    types {{ text/html html; application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {tmp}/www;
        if_modified_since before;
        gzip on;
        gzip_min_length 0;
        gzip_types application/json;
        location = /post {{ client_max_body_size 1k; return 200 "posted\\n"; }}
        location = /redirect {{ return 302 /index.html; }}
    }}
}}
"""


class Relay:
    """Accepts connections on a port, forwards each to the origin and keeps
    the bytes of both directions."""

    def __init__(self, origin_port):
        self.origin = origin_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"up": bytearray(), "down": bytearray()}
            self.conns.append(rec)
            o = socket.create_connection(("127.0.0.1", self.origin))
            threading.Thread(target=self.pump, args=(c, o, rec["up"]), daemon=True).start()
            threading.Thread(target=self.pump, args=(o, c, rec["down"]), daemon=True).start()

    @staticmethod
    def pump(src, dst, buf):
        while True:
            try:
                b = src.recv(65536)
            except OSError:
                b = b""
            if not b:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            buf += b
            try:
                dst.sendall(b)
            except OSError:
                return

    def take(self):
        time.sleep(0.3)
        c = self.conns[:]
        self.conns.clear()
        return c


def http1(out):
    tmp = tempfile.mkdtemp(prefix="reel-corpus-")
    try:
        os.chmod(tmp, 0o755)  # nginx workers drop root
        os.makedirs(os.path.join(tmp, "www"))
        with open(os.path.join(tmp, "www", "index.html"), "w") as f:
            f.write("<!DOCTYPE html>\n<html><head><title>reel</title></head>"
                    "<body><p>It works.</p></body></html>\n")
        with open(os.path.join(tmp, "www", "data.json"), "w") as f:
            f.write(json.dumps({"items": [{"id": i, "name": "item %d" % i} for i in range(8)]}))
        port = free_port()
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(tmp=tmp, port=port))
        ng = subprocess.Popen(["nginx", "-p", tmp, "-c", os.path.join(tmp, "nginx.conf")])
        try:
            for _ in range(50):
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    time.sleep(0.1)
            relay = Relay(port)
            base = "http://127.0.0.1:%d" % relay.port
            # (name, curl args, expected request kinds for the response side)
            cases = [
                ("get", [base + "/index.html"], "G"),
                ("head", ["-I", base + "/index.html"], "H"),
                ("post", ["-d", "a=1&b=two", base + "/post"], "G"),
                ("expect-100", ["-H", "Expect: 100-continue", "--data-binary", "x" * 64,
                                base + "/post"], "G"),
                ("gzip-chunked", ["--compressed", base + "/data.json"], "G"),
                ("keepalive-404-302", [base + "/index.html", base + "/missing",
                                       base + "/redirect"], "GGG"),
                ("absolute-form", ["-x", base, "http://localhost/index.html"], "G"),
                ("connect", ["-p", "-x", base, "https://example.com/"], "C"),
                ("if-modified", ["-H", "If-Modified-Since: Sat, 01 Jan 2050 00:00:00 GMT",
                                 base + "/index.html"], "G"),
                ("range-conditional", ["-r", "10-19", "-H", 'If-Range: "abc"',
                                       "-H", 'If-None-Match: W/"x", "y"', "-H", "If-Match: *",
                                       "-H", "If-Unmodified-Since: Sunday, 06-Nov-94 08:49:37 GMT",
                                       "-H", "If-Modified-Since: Sun Nov  6 08:49:37 1994",
                                       base + "/index.html"], "G"),
            ]
            for i, (name, args, kinds) in enumerate(cases):
                subprocess.run(["curl", "-s", "--max-time", "5"] + args, check=False,
                               stdout=subprocess.DEVNULL)
                for k, c in enumerate(relay.take()):
                    up, down = bytes(c["up"]), bytes(c["down"])
                    suffix = "" if k == 0 else "-%d" % k
                    split = (i * 37) & 0xFF
                    # request side, EOF after the input
                    write(out, "http1", "req-%s%s" % (name, suffix), bytes([0x02, split, 0, 0]) + up)
                    # response side: announce the requests curl made
                    bits = 0
                    for j, kind in enumerate(kinds):
                        bits |= {"G": 0, "H": 1, "C": 2}[kind] << (2 * j)
                    ctl = bytes([0x03 | (len(kinds) << 4), split, bits & 0xFF, bits >> 8])
                    write(out, "http1", "resp-%s%s" % (name, suffix), ctl + down)
        finally:
            ng.terminate()
            ng.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # A WebSocket upgrade as a browser and a server send it (hand-written:
    # nginx serves no WebSocket endpoint here).
    up = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          b"Sec-WebSocket-Version: 13\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
    down = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05Hello")
    write(out, "http1", "req-websocket", bytes([0x06, 0x11, 0, 0]) + up)
    write(out, "http1", "resp-websocket", bytes([0x13, 0x22, 0, 0]) + down)


# ---- sniff: ClientHellos and other first bytes ----

def capture_first_bytes(run_client, want_tls=True):
    """Listens, runs the client, returns the first bytes it sent (the whole
    ClientHello for TLS)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = bytearray()

    def serve():
        c, _ = srv.accept()
        c.settimeout(3)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got.extend(b)
                if want_tls and len(got) >= 5 and len(got) >= 5 + (got[3] << 8 | got[4]):
                    break
                if not want_tls and len(got) >= 24:
                    break
        except OSError:
            pass
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    run_client(port)
    t.join(5)
    srv.close()
    return bytes(got)


def sniff(out):
    def s_client(args):
        return lambda port: subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=10, check=False)

    def curl(args):
        return lambda port: subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--max-time", "2"] + [a.replace("PORT", str(port)) for a in args],
            check=False)

    def py_ssl(port):
        ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with ctx.wrap_socket(s, server_hostname="www.example.org"):
                    pass
        except (OSError, ssl.SSLError):
            pass

    hellos = {
        "ch-openssl-sni-alpn": s_client(["-servername", "example.com", "-alpn", "h2,http/1.1"]),
        "ch-openssl-tls12-nosni": s_client(["-tls1_2", "-noservername"]),
        # ALPN that is not HTTP (a TLS tunnel) and HTTP of another version
        # (decided by the bytes inside): reel_clienthello_alpn's other kinds
        "ch-openssl-alpn-mqtt": s_client(["-servername", "broker.example.com",
                                          "-alpn", "mqtt,x-custom/1"]),
        "ch-openssl-alpn-http10": s_client(["-servername", "example.com", "-alpn", "http/1.0"]),
        "ch-curl": curl(["-k", "--resolve", "api.example.com:PORT:127.0.0.1",
                         "https://api.example.com:PORT/"]),
        "ch-python": py_ssl,
    }
    for name, client in hellos.items():
        write(out, "sniff", name, capture_first_bytes(client))
    # the curl hello again, its handshake message split over two records
    ch = capture_first_bytes(hellos["ch-curl"])
    msg = ch[5:]
    cut = len(msg) // 3
    two = (bytes([22, 3, 1, cut >> 8, cut & 0xFF]) + msg[:cut] +
           bytes([22, 3, 1, (len(msg) - cut) >> 8, (len(msg) - cut) & 0xFF]) + msg[cut:])
    write(out, "sniff", "ch-two-records", two)
    write(out, "sniff", "http-curl-get",
          capture_first_bytes(curl(["http://127.0.0.1:PORT/x?y=1"]), want_tls=False))
    write(out, "sniff", "http2-prior-knowledge",
          capture_first_bytes(curl(["--http2-prior-knowledge", "http://127.0.0.1:PORT/"]),
                              want_tls=False))
    write(out, "sniff", "ssh-banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    # upstream proxies' answers to CONNECT (core/connect_filter.h), as
    # squid and tinyproxy send them
    write(out, "sniff", "connect-answer-squid", b"HTTP/1.1 200 Connection established\r\n\r\n")
    write(out, "sniff", "connect-answer-407",
          b"HTTP/1.0 407 Proxy Authentication Required\r\nServer: tinyproxy/1.11.1\r\n"
          b"Content-Type: text/html\r\nProxy-Authenticate: Basic realm=\"Tinyproxy\"\r\n"
          b"Content-Length: 9\r\n\r\nno access")
    # a SOCKS5 proxy's answers to reel (core/socks.h's client side): the
    # method, then the reply to CONNECT; with a username and password
    write(out, "sniff", "socks5-answers", b"\x05\x00\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
    write(out, "sniff", "socks5-answers-auth",
          b"\x05\x02\x01\x00\x05\x00\x00\x03\x04host\x01\xbb")


# ---- spool and index: a session written by reel ----

def session(out, reel):
    home = tempfile.mkdtemp(prefix="reel-corpus-")
    try:
        subprocess.run([reel, "import", os.path.join(ROOT, "tests/data/har/chromium.har"),
                        "--into", "s", "--home", home], check=True, stdout=subprocess.DEVNULL)
        seg = open(os.path.join(home, "s/spool/00000001.zst"), "rb").read()
        write(out, "spool", "segment-chromium", b"\x00" + seg)
        write(out, "spool", "segment-torn", b"\x00" + seg[: len(seg) * 2 // 3])
        block = subprocess.run(["zstd", "-dc"], input=seg, stdout=subprocess.PIPE,
                               check=True).stdout
        # keep the first records only (a block is varint-length-delimited)
        pos, keep = 0, 0
        while pos < len(block) and keep < 2048:
            n, shift = 0, 0
            while True:
                b = block[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            pos += n
            keep = pos
        write(out, "spool", "block-records", b"\x01" + block[:keep])
        write(out, "spool", "block-torn-garbage", b"\x07" + block[:keep])

        db = os.path.join(home, "small.db")
        shutil.copy(os.path.join(home, "s/session.db"), db)
        subprocess.run(["sqlite3", db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=512; VACUUM;"],
                       check=True, stdout=subprocess.DEVNULL)
        write(out, "index", "session-chromium.db", open(db, "rb").read())
        # fuzz_index puts this segment beside every session.db it tries
        os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
        shutil.copy(os.path.join(home, "s/spool/00000001.zst"),
                    os.path.join(HERE, "data", "index-segment.zst"))
        write(out, "index", "empty.db", b"")
        newer = os.path.join(home, "newer.db")
        subprocess.run(["sqlite3", newer, "PRAGMA page_size=512; CREATE TABLE meta(key, value);"
                        "PRAGMA user_version=99;"], check=True)
        write(out, "index", "newer-schema.db", open(newer, "rb").read())
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---- har, filter, config ----

def har(out):
    src = os.path.join(ROOT, "tests/data/har")
    for name in ["other-schemes.har", "bad-base64.har", "bad-url.har", "entries-not-array.har",
                 "no-entries.har"]:
        shutil.copy(os.path.join(src, name), os.path.join(out, "har", name))
    doc = json.load(open(os.path.join(src, "chromium.har")))
    doc["log"]["entries"] = doc["log"]["entries"][:2]
    for e in doc["log"]["entries"]:
        c = e["response"]["content"]
        if len(c.get("text", "")) > 400:
            c["text"] = c["text"][:400]
    write(out, "har", "chromium-2.har", json.dumps(doc, indent=1).encode())
    # reel's own extensions: what modify_headers and modify_body rules did,
    # the body as it went among them
    one = json.loads(json.dumps(doc["log"]["entries"][0]))
    one["_reel"] = {
        "request_modified": [{"name": "X-Debug", "value": "1", "rule": "|X-Debug|1"}],
        "request_body_edit": {"rules": ["|a|b"], "replacements": 1, "sent_size": 3,
                              "decoded": False, "not_applied": None,
                              "answered_continue": True, "sent_body_b64": "YmJi",
                              "sent_body_truncated": False},
        "response_body_edit": {"rules": ["|x|y", "|~s|z|w"], "replacements": 2,
                               "sent_size": 9, "decoded": True, "not_applied": None,
                               "sent_body_b64": "eXl5", "sent_body_truncated": True}}
    doc["log"]["entries"] = [one]
    write(out, "har", "reel-extensions.har", json.dumps(doc, indent=1).encode())


FILTERS = {
    "doc-example": "~d example.com & !~c 200",
    "precedence": "~d a ~c 200 | ~c 500",
    "quoted": "~u 'a\\.b c' | ~m \"PO\\\"ST\"",
    "tags-marked": "(~tag auth | ~tag 'b u g') & !~marked",
    "bare-words": "login api.example.com/v1",
    "regex": "~d '^(api|cdn)\\.' & ~u '\\?id=[0-9]+$'",
    "nested": "!(!(~c 404 | (~m GET & ~d other)))",
    "empty": "",
    "spool-terms": "~d api & (~b 'needle' | !~hs set-cookie) ~bq x",
    "index-terms": "~t json ~src '^10\\.' ~dst :443$ ~e | ~s & !~q ~comment bug",
    "ranges": "~id 1-50 & ~size >=10k & ~since '2026-01-02 03:04' & ~until @1900000000 | ~all",
}

CONFIG = {
    "value-size": b"\x00" + b"64 MiB",
    "value-bool": b"\x00" + b"yes",
    "value-list-json": b"\x00" + b'["^api\\\\.example\\\\.com:443$", "internal"]',
    "value-list-csv": b"\x00" + b"a.example:443, b.example",
    "value-auth": b"\x00" + b"alice:s3cret",
    "value-host": b"\x00" + b"::1",
    "name-typo": b"\x01" + b"listen_prot",
    "name-set": b"\x01" + b"body_limit=1g",
    "yaml-full": b"\x02" + b"""# reel user configuration
listen_host: 0.0.0.0
listen_port: 8081
body_limit: 16mb
ignore_hosts:
  - '^.*\\.googleapis\\.com:443$'
  - bank.example
upstream_cert_verify: off
capture: lossless
fsync: interval
fsync_interval_ms: 250
segment_size: 64MiB
proxyauth: "user:pass"
idle_timeout: 60
head_timeout: 10
max_head_size: 32k
""",
    "yaml-bad": b"\x02" + b"listen_port: [1, 2]\ncapture: maybe\n",
    "rows": b"\x03" + b"capture\tlossless\nfsync\tsometimes\nnot_an_option\t1\nignore_hosts\t[\"a\"]\n",
}


# ---- h2: python3-h2 on both sides ----

def h2(out):
    import h2.config
    import h2.connection

    def pair():
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        c.initiate_connection()
        sv.initiate_connection()
        sv.receive_data(c.data_to_send())
        c.receive_data(sv.data_to_send())
        return c, sv

    req = [(":method", "POST"), (":scheme", "https"), (":authority", "a.test"),
           (":path", "/up?x=1"), ("content-type", "application/json"), ("user-agent", "h2")]
    get = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test:8443"),
           (":path", "/")]
    # what a client sends (server role; the harness adds nothing: bit 1 off)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, req)
    c.send_data(1, b'{"k": "v"}')
    c.send_headers(1, [("grpc-timeout", "1S")], end_stream=True)
    c.send_headers(3, get, end_stream=True)
    c.send_headers(5, get)
    c.reset_stream(5)
    c.close_connection()
    write(out, "h2", "client-flows", b"\x04\x00" + c.data_to_send())
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.max_outbound_frame_size = 16384
    c.send_headers(1, get + [("x-long-%d" % i, "v" * 200) for i in range(120)],
                   end_stream=True)
    write(out, "h2", "client-big-head", b"\x0c\x01" + c.data_to_send())
    # what a server sends (client role: the harness submits streams 1, 3, 5)
    c, sv = pair()
    for sid in (1, 3, 5):
        c.send_headers(sid, get, end_stream=sid != 3)
        if sid == 3:
            c.send_data(3, b"body", end_stream=True)
    sv.receive_data(c.data_to_send())
    sv.clear_outbound_data_buffer()
    sv.send_headers(1, [(":status", "103"), ("link", "</a.css>; rel=preload")])
    sv.send_headers(1, [(":status", "200"), ("content-type", "text/plain")])
    sv.send_data(1, b"hello")
    sv.send_headers(1, [("grpc-status", "0")], end_stream=True)
    sv.send_headers(3, [(":status", "404")], end_stream=True)
    sv.reset_stream(5)
    sv.close_connection()
    write(out, "h2", "server-flows", b"\x05\x07" + sv.data_to_send())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reel", required=True, help="a built reel binary")
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    a = ap.parse_args()
    for h in ["http1", "sniff", "spool", "index", "har", "filter", "config", "h2"]:
        shutil.rmtree(os.path.join(a.out, h), ignore_errors=True)
        os.makedirs(os.path.join(a.out, h))
    http1(a.out)
    sniff(a.out)
    session(a.out, os.path.abspath(a.reel))
    har(a.out)
    h2(a.out)
    for name, text in FILTERS.items():
        write(a.out, "filter", name, text.encode())
    for name, data in CONFIG.items():
        write(a.out, "config", name, data)
    total = 0
    for h in sorted(os.listdir(a.out)):
        files = os.listdir(os.path.join(a.out, h))
        size = sum(os.path.getsize(os.path.join(a.out, h, f)) for f in files)
        total += size
        print("%-8s %3d files %7d bytes" % (h, len(files), size))
    print("total %d bytes" % total)


if __name__ == "__main__":
    sys.exit(main())
