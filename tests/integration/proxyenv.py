"""Shared set-up of the proxy integration tests: an nginx origin (HTTP and
HTTPS with a private CA, on ephemeral 127.0.0.1 ports, stopped by PID), a
`reel record` process and the CLI pointed at the same homes, and helpers.
Imported by tests/integration/test_*.py (not a test itself)."""
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import sys
import threading
import time
import unittest

REEL = os.environ.get("REEL")
TMPBASE = os.environ.get("REEL_TEST_TMP") or tempfile.gettempdir()
os.makedirs(TMPBASE, exist_ok=True)  # a fresh build has none; tests make theirs inside
SANITIZED = os.environ.get("REEL_SANITIZED") == "1"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, check=True, timeout=60, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d: %s %s" % (cmd, r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    return r


class Origin:
    """nginx on two ephemeral ports, with files to serve and a log that
    names the upstream connection of every request. h2: the TLS port also
    speaks HTTP/2 (ALPN h2)."""

    def __init__(self, root, h2=False):
        self.root = root
        self.www = os.path.join(root, "www")
        os.makedirs(self.www)
        os.makedirs(os.path.join(root, "tmp"))
        self.http_port, self.https_port = free_port(), free_port()
        self.ca = os.path.join(root, "origin-ca.pem")
        self._certs()
        with open(os.path.join(self.www, "100b"), "wb") as f:
            f.write(b"x" * 99 + b"\n")
        self.file1m = os.urandom(1 << 20)
        with open(os.path.join(self.www, "file1m"), "wb") as f:
            f.write(self.file1m)
        self.text = ("reel test line %d: the quick brown fox\n" * 1).encode()
        with open(os.path.join(self.www, "text.txt"), "wb") as f:
            for i in range(3000):
                f.write(b"reel test line %d: the quick brown fox jumps over the lazy dog\n" % i)
        with open(os.path.join(self.www, "big"), "wb") as f:
            f.truncate((256 if SANITIZED else 1024) << 20)
        self.log = os.path.join(root, "access.log")
        # Ports come from free_port(), which can race with another test's
        # outgoing connection taking the same ephemeral port before nginx
        # binds it (CI saw "nginx did not start" once): if nginx exits or
        # does not listen, it is tried again on new ports.
        why = ""
        for attempt in range(3):
            if attempt:
                self.http_port, self.https_port = free_port(), free_port()
            if self._start(h2):
                return
            try:
                with open(os.path.join(root, "error.log"), errors="replace") as f:
                    why = f.read()[-600:]
            except OSError:
                pass
        raise RuntimeError("nginx did not start: " + why)

    def _start(self, h2):
        """Starts nginx on the chosen ports; whether it listens on both."""
        root = self.root
        conf = os.path.join(root, "nginx.conf")
        with open(conf, "w") as f:
            f.write(("user root;\n" if os.geteuid() == 0 else "") + """
worker_processes 1;
daemon off;
pid {r}/nginx.pid;
error_log {r}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format conn '$connection $request_method $request_uri $status';
  access_log {r}/access.log conn;
  client_body_temp_path {r}/tmp/body; proxy_temp_path {r}/tmp/proxy;
  fastcgi_temp_path {r}/tmp/fcgi; uwsgi_temp_path {r}/tmp/uwsgi; scgi_temp_path {r}/tmp/scgi;
  types {{ text/plain txt; text/html html; text/css css; application/json json; image/png png;
           text/event-stream sse; application/x-yaml yml; }}
  default_type application/octet-stream;
  gzip on; gzip_types text/plain; gzip_min_length 100;
  keepalive_requests 10000;
  server {{
    listen 127.0.0.1:{hp};
    listen 127.0.0.1:{sp} ssl{h2};
    ssl_certificate {r}/server.pem;
    ssl_certificate_key {r}/server.key;
    root {r}/www;
    location = /echo {{ client_max_body_size 100m; return 200 "posted\\n"; }}
    # answers once it has read the whole body (nginx buffers a proxied
    # request's body first), where /echo answers before it
    location = /upload {{ client_max_body_size 100m; proxy_pass http://127.0.0.1:{hp}/echo; }}
    location = /nocontent {{ return 204; }}
    location = /host {{ default_type text/plain; return 200 "$http_host\n"; }}
    # some fields of the request as the origin got them, and one of its own
    location = /hdr {{ default_type text/plain; add_header X-Origin origin-says;
                       return 200 "debug=[$http_x_debug] ua=[$http_user_agent]\n"; }}
    # a body with a Content-Length, then trailers (sent over HTTP/2 only)
    location = /trailer {{ alias {r}/www/100b; default_type text/plain;
                           add_trailer x-trail yes always; }}
  }}
}}
""".format(r=root, hp=self.http_port, sp=self.https_port, h2=" http2" if h2 else ""))
        self.proc = subprocess.Popen([NGINX, "-c", conf, "-e", os.path.join(root, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), 0.2).close()
                socket.create_connection(("127.0.0.1", self.https_port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return False

    def _certs(self):
        r = self.root
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", r + "/origin-ca.key", "-out", self.ca, "-days", "2",
             "-subj", "/CN=reel test origin CA", "-addext", "basicConstraints=critical,CA:TRUE"])
        run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", r + "/server.key", "-out", r + "/server.csr", "-subj", "/CN=localhost"])
        with open(r + "/ext.cnf", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", r + "/server.csr", "-CA", self.ca, "-CAkey",
             r + "/origin-ca.key", "-CAcreateserial", "-out", r + "/server.pem", "-days", "2",
             "-extfile", r + "/ext.cnf"])

    def url(self, path, https=False):
        if https:
            return "https://localhost:%d%s" % (self.https_port, path)
        return "http://127.0.0.1:%d%s" % (self.http_port, path)

    def log_lines(self):
        with open(self.log) as f:
            return [l.split() for l in f.read().splitlines() if l.strip()]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Reel:
    """A `reel record` process and the CLI pointed at the same homes. The
    sessions root is root/home unless `home` names another directory."""

    def __init__(self, root, session, *sets, resume=False, home=None):
        self.env = dict(os.environ, REEL_HOME=home or root + "/home", XDG_DATA_HOME=root + "/data",
                        XDG_CONFIG_HOME=root + "/config")
        self.session = session
        self.errlog = open(os.path.join(root, session + ".log"), "w+")
        args = [REEL, "resume" if resume else "record", "--listen", "127.0.0.1:0"]
        for s in sets:
            args += ["--set", s]
        self.proc = subprocess.Popen(args + [session], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self.errlog)
        self.port = None
        for _ in range(200):
            self.errlog.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.errlog.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.errlog.seek(0)
            raise RuntimeError("reel did not start: " + self.errlog.read())
        self.ca = os.path.join(root, "data", "reel", "reel-ca.pem")
        self.proxy = "http://127.0.0.1:%d" % self.port

    def cli(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check)

    def flows(self, filt=None):
        args = ["flows", self.session, "--json"] + ([filt] if filt else [])
        return json.loads(self.cli(*args).stdout)

    def flow(self, fid):
        return json.loads(self.cli("flow", self.session, str(fid), "--json").stdout)

    def wait_flows(self, n, filt=None, timeout=5):
        """The flows matching filt once at least n of them have ended."""
        deadline = time.time() + timeout
        while True:
            f = self.flows(filt)
            if (len(f) >= n and all(x["state"] != "open" for x in f)) or time.time() > deadline:
                return f
            time.sleep(0.1)

    def set_config(self, *args):
        """Runs `reel config SESSION args...` and waits until the running
        proxy says it applied the change (it polls twice a second)."""
        self.cli("config", self.session, *args)
        wait_config_applied(self.log, lambda *a: self.cli(*a).stdout, self.session)

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.errlog.close()
        return code

    def log(self):
        with open(self.errlog.name) as f:  # also once stop() closed errlog
            return f.read()


def wait_config_applied(logtext, cli, session, timeout=10):
    """Waits until the proxy recording `session` logs that it applied the
    overlay's latest change. Its log names the change it applied: counting
    the log's lines would take a change made earlier, and not yet applied,
    for this one. cli(*args) runs the reel CLI and returns its stdout."""
    latest = max(c["id"] for c in json.loads(cli("config", "--json", session, "history")))
    deadline = time.time() + timeout
    while not any(int(n) >= latest for n in re.findall(r"config change (\d+)", logtext())):
        if time.time() > deadline:
            raise AssertionError("proxy did not apply config change %d: %s" % (latest, logtext()))
        time.sleep(0.05)


@contextlib.contextmanager
def ws_echo_server():
    """A WebSocket echo origin (python3-websockets, no compression) on
    127.0.0.1, in a thread of its own; yields its port. After the closing
    handshake the server closes the connection."""
    import asyncio
    import websockets

    async def echo(ws, path=None):
        try:
            async for m in ws:
                await ws.send(m)
        except websockets.ConnectionClosed:
            pass
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box = {}

    def serve():
        asyncio.set_event_loop(loop)

        async def start():
            box["srv"] = await websockets.serve(echo, "127.0.0.1", 0, compression=None,
                                                max_size=None)
            box["port"] = box["srv"].sockets[0].getsockname()[1]
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    started.wait(10)
    try:
        yield box["port"]
    finally:
        async def stop():
            box["srv"].close()
            await box["srv"].wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        if not t.is_alive():
            loop.close()


# Raw sockets to the proxy, for what real clients will not send.

def ws_echo_through(proxy_port, origin_port, text, close):
    """One masked text message through the proxy on proxy_port to the
    echo origin on origin_port (ws_echo_server), its echo read, then a
    Close with the payload close (bytes: a code and maybe a reason) and
    the server's Close read to the end of the connection."""
    def frame(op, payload):
        key = b"\x01\x02\x03\x04"
        return (bytes([0x80 | op, 0x80 | len(payload)]) + key +
                bytes(b ^ key[i % 4] for i, b in enumerate(payload)))
    s = socket.create_connection(("127.0.0.1", proxy_port), 10)
    try:
        s.sendall(b"GET http://127.0.0.1:%d/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n" % origin_port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(frame(1, text))
        echo = b""
        while len(echo) < 2 + len(text):  # the echo before the close
            echo += s.recv(2 + len(text) - len(echo))
        s.sendall(frame(8, close))
        while s.recv(65536):  # the server's Close, its end
            pass
    finally:
        s.close()


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(s, limit=1 << 24):
    """Everything until EOF (or a reset); returns (bytes, how it ended)."""
    out = b""
    try:
        while len(out) < limit:
            d = s.recv(65536)
            if not d:
                return out, "eof"
            out += d
    except ConnectionResetError:
        return out, "reset"
    except socket.timeout:
        return out, "timeout"
    return out, "limit"


def raw(port, data, timeout=10):
    s = connect(port, timeout)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out, _ = read_all(s)
    s.close()
    return out


def curl(reel, *args, check=True, input=None):
    return run(["curl", "-sS", "--max-time", "30", "-x", reel.proxy, "--cacert", reel.ca] + list(args),
               check=check, input=input)


def body(flow, side):
    b = flow[side]["body_b64"]
    return base64.b64decode(b) if b else b""


def wait_listening(port):
    """Returns once 127.0.0.1:port accepts a connection (5 s at most)."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)


def only_flow(test, reel, path):
    """(row, reel flow --json) of the one ended flow of reel's session whose
    URL ends with path; test fails if there is not exactly one."""
    fl = reel.wait_flows(1, "~u %s$" % re.escape(path))
    test.assertEqual(len(fl), 1, fl)
    return fl[0], reel.flow(fl[0]["id"])


def stop_class(cls):
    """tearDownClass of a test class with cls.reel, cls.origin and cls.root:
    reel must exit 0 on SIGINT (its log is printed if not)."""
    code = cls.reel.stop()
    cls.origin.stop()
    if code != 0:
        print(cls.reel.log(), file=sys.stderr)
    assert code == 0, "reel record exited %d on SIGINT" % code
    shutil.rmtree(cls.root, ignore_errors=True)


def main():
    """Runs the calling module's tests; prints a count and exits 1 on any
    failure, 2 if REEL is not set."""
    if not REEL:
        print("REEL is not set", file=sys.stderr)
        sys.exit(2)
    part = os.environ.get("REEL_TEST_PART")
    if part:
        # ctest runs a long file in parts ("k/n", tests/CMakeLists.txt):
        # every n-th test in id order, so a test added later lands in one
        # part, and a class's tests stay together within a part.
        k, n = (int(x) for x in part.split("/"))
        tests = []
        pending = [unittest.defaultTestLoader.loadTestsFromModule(sys.modules["__main__"])]
        while pending:
            t = pending.pop()
            if isinstance(t, unittest.TestSuite):
                pending.extend(t)
            else:
                tests.append(t)
        tests.sort(key=lambda t: t.id())
        suite = unittest.TestSuite(t for i, t in enumerate(tests) if i % n == k - 1)
        res = unittest.TextTestRunner(verbosity=2).run(suite)
    else:
        res = unittest.main(module="__main__", exit=False, verbosity=2).result
    failed = len(res.failures) + len(res.errors)
    print("%d passed, %d failed" % (res.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
