#!/usr/bin/python3
"""reel import of a mitmproxy flow file written by Debian's mitmproxy (issue 12).

`mitmdump -w FILE` runs as a proxy on 127.0.0.1 in front of the nginx origin
(with a small addon that comments and marks one flow); curl drives plain
HTTP/1.1 (GET, POST with a body, a gzip response, a 404) and HTTPS over
HTTP/2 through it, a python3-websockets client talks to an echo server
through it, and a raw TCP client to a TCP echo server. The file is then imported and every flow is compared with what
mitmproxy's own reader finds in the file and with what nginx served:
method, URL, status, every header in order, and the raw bodies. A
truncated copy, a damaged one and one of an unknown version must fail with
an error naming the flow and what is wrong, and change nothing.
"""
import asyncio
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import websockets

from proxyenv import NGINX, REEL, TMPBASE, Origin, free_port, main, run

MITMDUMP = shutil.which("mitmdump")

ADDON = """
def response(flow):
    if "note=1" in flow.request.path:
        flow.comment = "checked by mitmproxy"
        flow.marked = ":default:"
"""


async def echo(ws, path=None):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass


def read_mitm(path):
    """The flows in path as mitmproxy's own reader sees them."""
    from mitmproxy import io as mio
    with open(path, "rb") as f:
        return list(mio.FlowReader(f).stream())


class ImportMitm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        assert MITMDUMP, "mitmdump is missing: scripts/bootstrap --test installs Debian's mitmproxy"
        cls.root = tempfile.mkdtemp(prefix="reel-mitm-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home", XDG_DATA_HOME=cls.root + "/data",
                       XDG_CONFIG_HOME=cls.root + "/config")
        cls.file = os.path.join(cls.root, "flows.mitm")
        addon = os.path.join(cls.root, "addon.py")
        with open(addon, "w") as f:
            f.write(ADDON)
        cls.start_h2_origin()

        # a WebSocket echo server
        cls.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(cls.loop)

            async def start():
                cls.ws_server = await websockets.serve(echo, "127.0.0.1", 0, compression=None)
                cls.ws_port = cls.ws_server.sockets[0].getsockname()[1]
            cls.loop.run_until_complete(start())
            ready.set()
            cls.loop.run_forever()
        cls.ws_thread = threading.Thread(target=serve, daemon=True)
        cls.ws_thread.start()
        ready.wait(10)

        # a TCP echo server for one connection
        cls.tcp = socket.socket()
        cls.tcp.bind(("127.0.0.1", 0))
        cls.tcp.listen(1)
        cls.tcp_port = cls.tcp.getsockname()[1]

        def tcp_echo():
            while True:  # one connection at a time, one per capture
                try:
                    c, _ = cls.tcp.accept()
                except OSError:
                    return
                with c:
                    while True:
                        d = c.recv(65536)
                        if not d:
                            break
                        c.sendall(d)
        cls.tcp_thread = threading.Thread(target=tcp_echo, daemon=True)
        cls.tcp_thread.start()

        cls.addon = addon
        cls.mitm = None
        try:
            # mitmdump's own capture, made again when its file lacks what the
            # drive did. Once, in a CI sanitizer run beside other tests, the
            # import of Debian's mitmdump 8.1 file had the first flow without
            # its response, comment and mark; most likely mitmdump wrote it so
            # (its save addon writes the flows whose response hook never ran
            # at exit, and the addon's comment is set in that hook). Only what
            # mitmproxy's own reader finds missing is made again, so an import
            # that loses a response still fails the tests below.
            for attempt in range(3):
                cls.capture()
                why = cls.capture_lacks()
                if why is None:
                    break
                sys.stderr.write("mitmdump's capture %d lacks %s\n" % (attempt + 1, why))
            assert why is None, "mitmdump's capture lacks %s: %s" % (why, cls.log())
        except BaseException:
            cls.stop_all()
            raise

    @classmethod
    def capture(cls):
        """Runs mitmdump -w on a fresh file through the drive, then stops it."""
        if os.path.exists(cls.file):
            os.unlink(cls.file)
        cls.port = free_port()
        confdir = os.path.join(cls.root, "mitmconf")
        if getattr(cls, "mitm_log", None) is not None:
            cls.mitm_log.close()
        cls.mitm_log = open(os.path.join(cls.root, "mitmdump.log"), "w+")
        cls.mitm = subprocess.Popen(
            [MITMDUMP, "--listen-host", "127.0.0.1", "-p", str(cls.port), "-w", cls.file,
             "-s", cls.addon, "--set", "confdir=" + confdir,
             "--set", "ssl_verify_upstream_trusted_ca=" + cls.origin.ca],
            stdout=cls.mitm_log, stderr=subprocess.STDOUT, env=dict(os.environ, HOME=cls.root))
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", cls.port), 0.2).close()
                break
            except OSError:
                assert cls.mitm.poll() is None, "mitmdump exited: " + cls.log()
                time.sleep(0.05)
        cls.mitm_ca = os.path.join(confdir, "mitmproxy-ca-cert.pem")
        cls.drive()

    @classmethod
    def capture_lacks(cls):
        """What of the drive mitmdump's file does not hold, or None."""
        if len(cls.flows_mitm) != 7:
            return "%d flows of 7" % len(cls.flows_mitm)
        for m in cls.flows_mitm:
            if m.type == "http" and m.websocket is None and m.response is None:
                return "the response of " + m.request.url
        noted = [m for m in cls.flows_mitm if m.type == "http" and "note=1" in m.request.path]
        if len(noted) != 1 or noted[0].comment != "checked by mitmproxy" or not noted[0].marked:
            return "the addon's comment and mark"
        return None

    @classmethod
    def start_h2_origin(cls):
        """A second nginx serving the origin's files over HTTPS with HTTP/2
        (the shared origin speaks HTTP/1.1 only, and mitmproxy offers the
        client what the server chose)."""
        r = cls.root
        cls.h2_port = free_port()
        conf = os.path.join(r, "nginx-h2.conf")
        os.makedirs(os.path.join(r, "tmp-h2"))
        with open(conf, "w") as f:
            f.write(("user root;\n" if os.geteuid() == 0 else "") + """
worker_processes 1;
daemon off;
pid {r}/nginx-h2.pid;
error_log {r}/error-h2.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {r}/tmp-h2/body; proxy_temp_path {r}/tmp-h2/proxy;
  fastcgi_temp_path {r}/tmp-h2/fcgi; uwsgi_temp_path {r}/tmp-h2/uwsgi; scgi_temp_path {r}/tmp-h2/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{p} ssl http2;
    ssl_certificate {r}/server.pem;
    ssl_certificate_key {r}/server.key;
    root {r}/www;
  }}
}}
""".format(r=r, p=cls.h2_port))
        cls.h2 = subprocess.Popen([NGINX, "-c", conf, "-e", os.path.join(r, "error-h2.log")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", cls.h2_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx (h2) did not start")

    @classmethod
    def h2_url(cls, path):
        return "https://localhost:%d%s" % (cls.h2_port, path)

    @classmethod
    def log(cls):
        cls.mitm_log.seek(0)
        return cls.mitm_log.read()

    @classmethod
    def curl(cls, *args):
        return run(["curl", "-sS", "--max-time", "30", "-x", "http://127.0.0.1:%d" % cls.port,
                    "--cacert", cls.mitm_ca] + list(args))

    @classmethod
    def drive(cls):
        o = cls.origin
        cls.curl(o.url("/100b?note=1"))
        cls.curl("--data-binary", "name=reel&payload=" + "p" * 3000, o.url("/echo"))
        cls.curl("-H", "Accept-Encoding: gzip", o.url("/text.txt"))
        cls.curl(o.url("/missing"))
        cls.curl("--http2", cls.h2_url("/100b"))

        async def ws_client():
            s = socket.create_connection(("127.0.0.1", cls.port), 10)
            s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % cls.ws_port)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 200"), head
            async with websockets.connect("ws://127.0.0.1:%d/chat" % cls.ws_port, sock=s,
                                          compression=None) as ws:
                await ws.send("hello mitm")
                assert await ws.recv() == "hello mitm"
                await ws.send(b"\x00\x01\xffbinary")
                assert await ws.recv() == b"\x00\x01\xffbinary"
                await ws.close(1000, "bye")
        asyncio.run(ws_client())

        # raw TCP in a CONNECT tunnel: bytes that are not HTTP make mitmproxy
        # record a TCP flow
        s = socket.create_connection(("127.0.0.1", cls.port), 10)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % cls.tcp_port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        for chunk in (b"\x00\x01raw tcp 1\n", b"\x02raw tcp 2\n"):
            s.sendall(chunk)
            got = b""
            while len(got) < len(chunk):
                got += s.recv(65536)
            assert got == chunk, got
        s.close()

        # mitmdump writes most flows as they end, the rest (the HTTP/2 one,
        # the WebSocket one) when it stops
        cls.wait_written(4)
        time.sleep(0.5)
        cls.stop_mitm()
        cls.flows_mitm = read_mitm(cls.file)

    @classmethod
    def wait_written(cls, n):
        deadline = time.time() + 15
        while True:
            try:
                last = len(read_mitm(cls.file))
                if last >= n:
                    return
            except Exception as e:
                last = repr(e)
            assert time.time() < deadline, "mitmdump did not write %d flows (%s): %s" % (
                n, last, cls.log())
            time.sleep(0.1)

    @classmethod
    def stop_mitm(cls):
        if cls.mitm is not None and cls.mitm.poll() is None:
            cls.mitm.send_signal(signal.SIGINT)
            try:
                cls.mitm.wait(15)
            except subprocess.TimeoutExpired:
                cls.mitm.kill()
                cls.mitm.wait(5)

    @classmethod
    def stop_all(cls):
        cls.stop_mitm()
        if getattr(cls, "ws_server", None) is not None:
            async def close():
                cls.ws_server.close()
                await cls.ws_server.wait_closed()
            asyncio.run_coroutine_threadsafe(close(), cls.loop).result(10)
            cls.loop.call_soon_threadsafe(cls.loop.stop)
            cls.ws_thread.join(10)
            cls.ws_server = None
        if cls.origin.proc.poll() is None:
            cls.origin.stop()
        cls.tcp.close()
        if cls.h2.poll() is None:
            cls.h2.terminate()
            cls.h2.wait(10)

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()
        cls.mitm_log.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    # ---- helpers ----

    def reel(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check)

    def flows(self, session):
        return json.loads(self.reel("flows", session, "--json").stdout)

    def flow(self, session, fid):
        return json.loads(self.reel("flow", session, str(fid), "--json").stdout)

    def imported(self, session):
        """Imports the file into session (once) and returns its flows."""
        if not os.path.isdir(os.path.join(self.root, "home", session)):
            r = self.reel("import", self.file, "--into", session, "--json")
            out = json.loads(r.stdout)
            self.assertEqual(out["imported"], 7, out)
            self.assertEqual(out["annotated"], 1, out)
            self.assertEqual(out["marked"], 1, out)
        return self.flows(session)

    def damaged_copy(self, name, data):
        path = os.path.join(self.root, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    # ---- tests ----

    def test_file_is_version_of_debian_mitmproxy(self):
        with open(self.file, "rb") as f:
            data = f.read()
        self.assertTrue(data[:1].isdigit())
        self.assertEqual([f.type for f in self.flows_mitm].count("http"), 6)
        self.assertEqual([f.type for f in self.flows_mitm].count("tcp"), 1)

    def test_every_flow_header_and_body(self):
        got = self.imported("all")
        self.assertEqual(len(got), 7)
        for summary, m in zip(got, self.flows_mitm):
            if m.type != "http":
                continue
            f = self.flow("all", summary["id"])
            self.assertEqual(f["source"], "mitm-import")
            req, resp = f["request"], f["response"]
            self.assertEqual(req["method"], m.request.method)
            self.assertEqual(req["url"], m.request.url)
            self.assertEqual(req["http_version"], m.request.http_version)
            self.assertEqual([tuple(h) for h in req["headers"]],
                             [(k.decode(), v.decode()) for k, v in m.request.headers.fields])
            self.assertEqual(body(req), m.request.raw_content or b"")
            self.assertEqual(resp["status"], m.response.status_code)
            self.assertEqual(resp["reason"], m.response.reason)
            self.assertEqual([tuple(h) for h in resp["headers"]],
                             [(k.decode(), v.decode()) for k, v in m.response.headers.fields])
            self.assertEqual(body(resp), m.response.raw_content or b"")
            self.assertAlmostEqual(f["start_us"], m.timestamp_created * 1e6, delta=1)
            self.assertAlmostEqual(f["response_start_us"], m.response.timestamp_start * 1e6,
                                   delta=1)
            self.assertEqual(f["client_addr"], "%s:%d" % tuple(m.client_conn.peername[:2]))

    def test_verify(self):
        # The file's HTTP flows without messages (`reel verify` does not
        # count WebSocket and TCP message bytes as stored yet), cut out of
        # it, are a whole file too.
        with open(self.file, "rb") as f:
            data = f.read()
        off, keep = 0, b""
        for m in self.flows_mitm:
            prefix = data[off:].split(b":", 1)[0]
            end = off + len(prefix) + 1 + int(prefix) + 1
            if m.type == "http" and m.websocket is None:
                keep += data[off:end]
            off = end
        self.assertEqual(off, len(data))
        path = self.damaged_copy("first5.mitm", keep)
        r = self.reel("import", path, "--into", "five")
        self.assertIn(b"imported 5 flows into five (ids 1-5)", r.stdout)
        self.reel("verify", "five")  # index, spool and journal agree

    def test_what_nginx_served(self):
        got = self.imported("all")
        o = self.origin
        by_url = {(g["method"], g["url"]): g for g in got}
        www = o.www

        f = self.flow("all", by_url[("GET", o.url("/100b?note=1"))]["id"])
        self.assertEqual(f["response"]["status"], 200)
        with open(www + "/100b", "rb") as fh:
            self.assertEqual(body(f["response"]), fh.read())
        self.assertEqual(header(f["response"], "Server")[:5], "nginx")

        f = self.flow("all", by_url[("POST", o.url("/echo"))]["id"])
        self.assertEqual(body(f["request"]), b"name=reel&payload=" + b"p" * 3000)
        self.assertEqual(body(f["response"]), b"posted\n")

        # the gzip body is imported as sent, still encoded
        f = self.flow("all", by_url[("GET", o.url("/text.txt"))]["id"])
        self.assertEqual(header(f["response"], "Content-Encoding"), "gzip")
        self.assertFalse(f["response"]["body_decoded"])
        with open(www + "/text.txt", "rb") as fh:
            self.assertEqual(gzip.decompress(body(f["response"])), fh.read())

        self.assertEqual(by_url[("GET", o.url("/missing"))]["status"], 404)

        f = self.flow("all", by_url[("GET", self.h2_url("/100b"))]["id"])
        self.assertEqual(f["request"]["http_version"], "HTTP/2.0")
        self.assertEqual(f["request"]["scheme"], "https")
        with open(www + "/100b", "rb") as fh:
            self.assertEqual(body(f["response"]), fh.read())
        self.assertEqual(f["server_conn"]["sni"], "localhost")
        self.assertTrue(f["server_conn"]["tls_version"].startswith("TLS"))
        # the client's TLS with mitmproxy, as reel records a client's own
        [m] = [m for m in self.flows_mitm if m.type == "http" and m.request.url == self.h2_url("/100b")]
        ct = f["client_tls"]
        self.assertEqual((ct["tls_version"], ct["sni"], ct["alpn"], ct["cipher"]),
                         (m.client_conn.tls_version, "localhost", "h2", m.client_conn.cipher), ct)
        self.assertTrue(ct["tls_version"].startswith("TLS"), ct)
        self.assertIsNone(self.flow("all", by_url[("GET", o.url("/missing"))]["id"])["client_tls"])

    def test_tcp(self):
        got = self.imported("all")
        [m] = [m for m in self.flows_mitm if m.type == "tcp"]
        [g] = [g for g, mm in zip(got, self.flows_mitm) if mm.type == "tcp"]
        f = self.flow("all", g["id"])
        self.assertEqual(f["kind"], "tunnel")
        self.assertEqual(f["request"]["method"], "CONNECT")
        self.assertEqual(f["request"]["port"], self.tcp_port)
        self.assertEqual([(x["from_client"], x["opcode"], message_bytes(x)) for x in f["messages"]],
                         [(x.from_client, 0, x.content) for x in m.messages])
        self.assertEqual(b"".join(message_bytes(x) for x in f["messages"] if x["from_client"]),
                         b"\x00\x01raw tcp 1\n\x02raw tcp 2\n")

    def test_comment_and_mark(self):
        got = self.imported("all")
        noted = [g for g in got if "note=1" in g["url"]]
        self.assertEqual(len(noted), 1)
        self.assertTrue(noted[0]["marked"])
        self.assertEqual([g["marked"] for g in got].count(True), 1)
        notes = json.loads(self.reel("annotate", "all", str(noted[0]["id"]), "--json").stdout)
        self.assertEqual([n["text"] for n in notes], ["checked by mitmproxy"])
        marked = json.loads(self.reel("flows", "all", "--json", "~marked").stdout)
        self.assertEqual([m["id"] for m in marked], [noted[0]["id"]])

    def test_websocket(self):
        got = self.imported("all")
        ws = [g for g in got if g["status"] == 101]
        self.assertEqual(len(ws), 1)
        f = self.flow("all", ws[0]["id"])
        msgs = [(m["from_client"], m["opcode"], m.get("text", m.get("data_b64")))
                for m in f["messages"]]
        self.assertEqual([(m["from_client"], m["opcode"]) for m in f["messages"]],
                         [(True, 1), (False, 1), (True, 2), (False, 2), (True, 8)], msgs)
        datas = [message_bytes(m) for m in f["messages"]]
        self.assertEqual(datas[:4], [b"hello mitm", b"hello mitm", b"\x00\x01\xffbinary",
                                     b"\x00\x01\xffbinary"])
        self.assertEqual(f["messages"][4]["close_code"], 1000)
        self.assertEqual(datas[4], b"\x03\xe8bye")

    def assert_refused(self, path, *want):
        before = self.flows("all") if os.path.isdir(os.path.join(self.root, "home", "all")) else None
        if before is None:
            before = self.imported("all")
        r = self.reel("import", path, "--into", "all", check=False)
        self.assertNotEqual(r.returncode, 0)
        err = r.stderr.decode()
        for w in want:
            self.assertIn(w, err)
        self.assertEqual(self.flows("all"), before)  # nothing imported half-way
        # and a session it would have created is not created
        r = self.reel("import", path, "--into", "never", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.root, "home", "never")))
        return err

    def test_truncated(self):
        with open(self.file, "rb") as f:
            data = f.read()
        cut = len(data) - 200  # inside the last flow
        path = self.damaged_copy("cut.mitm", data[:cut])
        self.assert_refused(path, "cut.mitm: flow 7 (byte ", "truncated: needs ")

    def test_damaged(self):
        with open(self.file, "rb") as f:
            data = f.read()
        # flow 2's "request" length prefix made wrong: a digit becomes 'x'
        prefix = data.split(b":", 1)[0]
        start2 = len(prefix) + 1 + int(prefix) + 1
        i = data.index(b"7:request;", start2) + len(b"7:request;")
        bad = data[:i] + b"x" + data[i + 1:]
        path = self.damaged_copy("bad.mitm", bad)
        self.assert_refused(path, "bad.mitm: flow 2 (byte %d): damaged: byte %d" % (start2, i),
                            "expected a length digit, found 'x'")

    def test_unknown_version(self):
        with open(self.file, "rb") as f:
            data = f.read()
        v = b"7:version;2:%d#" % self.version()
        self.assertIn(v, data)
        path = self.damaged_copy("v99.mitm", data.replace(v, b"7:version;2:99#"))
        self.assert_refused(path, "v99.mitm: flow 1 (byte 0): flow format version 99 is not "
                            "supported (reel reads 12 to 21)")

    def test_unknown_type_and_long_prefix(self):
        """A flow whose type is none of mitmproxy's was "skipped" as a
        UDP/DNS flow (exit 0); a length prefix of more digits than a
        tnetstring allows got a JSON parser's "too big integer"."""
        with open(self.file, "rb") as f:
            data = f.read()
        t = b"4:type;4:http;"
        self.assertIn(t, data)
        path = self.damaged_copy("weird.mitm", data.replace(t, b"4:type;4:wxyz;", 1))
        self.assert_refused(path, 'weird.mitm: flow 1 (byte 0): type: "wxyz", not a flow type '
                            "of mitmproxy's (http, tcp, udp, dns)")
        path = self.damaged_copy("long.mitm", b"99999999999999999999999:x")
        self.assert_refused(path, "long.mitm", "length prefix longer than 12 digits")

    def test_format_option(self):
        r = self.reel("import", "--format", "har", self.file, "--into", "h", check=False)
        self.assertNotEqual(r.returncode, 0)
        r = self.reel("import", "--format", "bogus", self.file, "--into", "h", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"--format must be har or mitm", r.stderr)
        r = self.reel("import", "--format", "mitm", self.file, "--into", "fmt")
        self.assertIn(b"imported 7 flows into fmt", r.stdout)
        # a pipe is read once: --format says what it is
        with open(self.file, "rb") as f:
            r = run(["sh", "-c", 'cat | "$0" import --format mitm /dev/stdin --into pipe', REEL],
                    env=self.env, input=f.read())
        self.assertIn(b"imported 7 flows into pipe", r.stdout)

    def version(self):
        from mitmproxy import version
        return version.FLOW_FORMAT_VERSION


def body(side):
    import base64
    b = side.get("body_b64")
    return base64.b64decode(b) if b else b""


def header(side, name):
    for k, v in side["headers"]:
        if k.lower() == name.lower():
            return v
    return None


def message_bytes(m):
    import base64
    if m.get("data_b64") is not None:
        return base64.b64decode(m["data_b64"])
    return (m.get("text") or "").encode()


if __name__ == "__main__":
    main()
