#!/usr/bin/python3
"""reel behind an upstream HTTP proxy (upstream_proxy, upstream_proxyauth).

tinyproxy (Debian's) is the upstream proxy, nginx the origin, curl the
client: HTTPS (HTTP/1.1 and HTTP/2) goes through a CONNECT tunnel the
proxy opens, plain HTTP to the proxy in absolute form as the client sent
it (the proxy allows CONNECT only to the HTTPS port, as squid and
tinyproxy do as installed), and each flow's connection names the proxy
and which of the two it was; a proxy that asks for a password gets
upstream_proxyauth (407 without it, said in the flow's error); a proxy
that cannot be reached, or that cannot reach the origin, is named. The
options change while reel runs, and a value that is not an HTTP proxy's
address is refused.
"""
import json
import os
import re
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from proxyenv import (TMPBASE, Origin, Reel, body, curl, free_port, main, only_flow,
                      stop_class, wait_listening)

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
MICROSOCKS = shutil.which("microsocks") or "/usr/bin/microsocks"


class Microsocks:
    """microsocks (Debian's SOCKS5 server) on a free 127.0.0.1 port, stopped
    by PID, optionally asking for a username and password."""

    def __init__(self, auth=None):
        self.port = free_port()
        args = [MICROSOCKS, "-i", "127.0.0.1", "-p", str(self.port)]
        if auth:
            args += ["-u", auth[0], "-P", auth[1]]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Tinyproxy:
    """tinyproxy in the foreground on a free 127.0.0.1 port (stopped by
    PID), optionally asking for Basic credentials; every CONNECT it is
    asked for is in its log."""

    def __init__(self, root, name, auth=None, connect_ports=()):
        self.port = free_port()
        self.log = os.path.join(root, name + ".log")
        conf = os.path.join(root, name + ".conf")
        with open(conf, "w") as f:
            f.write("Port %d\nListen 127.0.0.1\nTimeout 60\nLogFile \"%s\"\nLogLevel Info\n"
                    "MaxClients 50\nAllow 127.0.0.1\n" % (self.port, self.log))
            if auth:
                f.write("BasicAuth %s %s\n" % auth)
            for port in connect_ports:  # CONNECT only to these (Debian's: 443, 563)
                f.write("ConnectPort %d\n" % port)
        self.proc = subprocess.Popen([TINYPROXY, "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_listening(self.port)

    def requests(self):
        """(method, target) of every request it was sent"""
        try:
            with open(self.log) as f:
                return re.findall(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/1\.1",
                                  f.read())
        except OSError:
            return []

    def connects(self):
        return [t for m, t in self.requests() if m == "CONNECT"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class TlsProxy:
    """An HTTP proxy spoken to over TLS (python3's socketserver and ssl, a
    certificate for 127.0.0.1 and localhost): CONNECT tunnels, and
    absolute-form requests relayed to their origin in origin form (the
    connection then carries whatever follows to that origin); each
    request line it was sent is in `lines`."""

    def __init__(self, cert, key):
        self.lines = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    s = ctx.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # (a client that refused its certificate)
                try:
                    self.relay(s)
                finally:
                    s.close()

            def relay(self, s):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    b = s.recv(1)
                    if not b:
                        return
                    head += b
                line, _, rest = head.partition(b"\r\n")
                method, target, _ = line.decode().split(" ", 2)
                proxy.lines.append((method, target))
                if method == "CONNECT":
                    host, port = target.rsplit(":", 1)
                    up = socket.create_connection((host.strip("[]"), int(port)))
                    s.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    u = urllib.parse.urlsplit(target)
                    up = socket.create_connection((u.hostname, u.port or 80))
                    fields = [f for f in rest.split(b"\r\n")
                              if f and not f.lower().startswith(b"proxy-")]
                    up.sendall(("%s %s%s HTTP/1.1\r\n" % (method, u.path or "/",
                                                           "?" + u.query if u.query else ""))
                               .encode() + b"".join(f + b"\r\n" for f in fields) + b"\r\n")
                try:
                    while True:  # one thread: an SSL socket is not to be shared
                        ready = [s] if s.pending() else select.select([s, up], [], [], 30)[0]
                        if not ready:
                            return
                        src, dst = (s, up) if s in ready else (up, s)
                        data = src.recv(65536)
                        if not data:
                            return
                        dst.sendall(data)
                except (OSError, ssl.SSLError):
                    return
                finally:
                    up.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class BehindAProxy(unittest.TestCase):
    """The set-up of the classes below: an nginx origin (HTTP/2 too), two
    upstream proxies of the class's kind (start_proxies: an open one, and
    one asking for "ann" and "s3cret"), and reel recording into session
    `session` with upstream_proxy naming the open one (in the session's
    overlay, not --set, so that the tests can change it)."""

    session = None  # set by each class below

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="upstream-%s." % cls.session, dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        cls.open_proxy, cls.auth_proxy, cls.via = cls.start_proxies()
        cls.reel = Reel(cls.root, cls.session, "upstream_trusted_ca=" + cls.origin.ca)
        cls.reel.set_config("set", "upstream_proxy", cls.via)

    @classmethod
    def tearDownClass(cls):
        cls.open_proxy.stop()
        cls.auth_proxy.stop()
        stop_class(cls)

    def last(self, path):
        return only_flow(self, self.reel, path)

    def error_of(self, url, path, *args, status=b"502"):
        """curl through reel (args before url) gets status for url; returns
        the error of the flow whose URL ends with path."""
        out = curl(self.reel, *args, "-o", "/dev/null", "-w", "%{http_code}", url, check=False)
        self.assertEqual(out.stdout, status)
        return self.last(path)[0]["error"]

    def each_way(self):
        """curl through reel to the origin over plain HTTP, then HTTPS with
        HTTP/1.1 and HTTP/2: each answered whole in the version asked for;
        yields (https, its flow as reel flow --json has it)."""
        for args, path, https, version in (([], "/100b?plain", False, "HTTP/1.1"),
                                           (["--http1.1"], "/text.txt?h1", True, "HTTP/1.1"),
                                           (["--http2"], "/text.txt?h2", True, "HTTP/2.0")):
            out = curl(self.reel, *args, self.origin.url(path, https=https))
            row, full = self.last(path)
            self.assertEqual((row["status"], row["state"]), (200, "complete"), row)
            self.assertEqual(body(full, "response"), out.stdout)
            self.assertEqual(full["response"]["http_version"], version)
            yield https, full


@unittest.skipUnless(os.access(TINYPROXY, os.X_OK), "tinyproxy is not installed")
class UpstreamProxyTest(BehindAProxy):
    session = "up"

    @classmethod
    def start_proxies(cls):
        tp = Tinyproxy(cls.root, "open", connect_ports=(cls.origin.https_port,))
        return tp, Tinyproxy(cls.root, "auth", auth=("ann", "s3cret")), "127.0.0.1:%d" % tp.port

    def set_config(self, key, value):
        """Sets a key of the session's overlay; returns once the proxy has
        applied it."""
        self.reel.set_config("set", key, value)

    def test_a_http_and_https_through_the_proxy(self):
        o, r, tp = self.origin, self.reel, self.open_proxy
        via = "127.0.0.1:%d" % tp.port
        for https, full in self.each_way():
            sc = full["server_conn"]
            self.assertEqual((sc["via"], sc["address"], sc["via_forward"]), (via, via, not https),
                             sc)
            if https:
                self.assertEqual(sc["sni"], "localhost", sc)
                self.assertTrue(sc["tls_version"].startswith("TLSv1."), sc)
        # the plain request went to the proxy as curl sent it to reel; the
        # HTTPS ones through a tunnel
        requests = tp.requests()
        self.assertIn(("GET", o.url("/100b?plain")), requests)
        self.assertEqual(tp.connects().count("localhost:%d" % o.https_port), 2, requests)
        self.assertNotIn("127.0.0.1:%d" % o.http_port, tp.connects())
        fid = self.last("/100b?plain")[0]["id"]
        text = r.cli("flow", "up", str(fid)).stdout.decode()
        self.assertRegex(text, r"~ connection #\d+ to the upstream proxy %s, which the request "
                               r"went to as it came \(absolute form, no CONNECT\)\n"
                               % re.escape(via))
        fid = self.last("/text.txt?h1")[0]["id"]
        text = r.cli("flow", "up", str(fid)).stdout.decode()
        self.assertRegex(text, r"~ connection #\d+ to the upstream proxy %s, a CONNECT tunnel to "
                               r"the origin, TLSv1" % re.escape(via))
        # HAR says it too (its serverIPAddress is the proxy's), and an
        # import of it keeps it
        har = os.path.join(self.root, "via.har")
        r.cli("export", "up", "~u /100b\\?plain$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual((entry["_reel"]["via"], entry["_reel"]["via_forward"]), (via, True))
        r.cli("import", har, "--into", "via-back")
        back = json.loads(r.cli("flow", "via-back", "1", "--json").stdout)
        self.assertEqual((back["server_conn"]["via"], back["server_conn"]["via_forward"]),
                         (via, True))

    def test_b_proxy_that_cannot_reach_the_origin(self):
        """A forwarded request's answer is the proxy's own (a chained
        proxy's error page, as the client would get it without reel); a
        CONNECT it refuses is reel's 502, naming what it said."""
        via = "127.0.0.1:%d" % self.open_proxy.port
        out = curl(self.reel, "-w", "%{http_code}", "http://127.0.0.1:1/gone", check=False)
        self.assertTrue(out.stdout.endswith(b"500"), out.stdout)  # tinyproxy's page
        row, full = self.last("/gone")
        self.assertEqual((row["status"], row["state"], row["response_generated"]),
                         (500, "complete", False), row)
        self.assertEqual(body(full, "response") + b"500", out.stdout)
        sc = full["server_conn"]
        self.assertEqual((sc["via"], sc["address"], sc["via_forward"]), (via, via, True), sc)
        # a CONNECT it refuses (to a port it does not allow)
        out = curl(self.reel, "-o", "/dev/null", "-w", "%{http_code}",
                   "https://127.0.0.1:1/gone-tls", check=False)
        self.assertEqual(out.stdout, b"502")
        row, full = self.last("/gone-tls")
        self.assertEqual((row["status"], row["response_generated"]), (502, True), row)
        self.assertEqual(row["error"], 'the upstream proxy %s answered "HTTP/1.1 403 Access '
                                       'violation" to CONNECT 127.0.0.1:1' % via)
        sc = full["server_conn"]  # (it said so: the address is the proxy's)
        self.assertEqual((sc["via"], sc["address"], sc["via_forward"]), (via, via, False), sc)

    def test_c_proxy_asking_for_a_password(self):
        o, r = self.origin, self.reel
        ap = self.auth_proxy
        try:
            self.set_config("upstream_proxy", "http://localhost:%d/" % ap.port)
            self.assertEqual(self.error_of(o.url("/100b?noauth"), "/100b?noauth"),
                             'the upstream proxy localhost:%d answered "HTTP/1.0 407 Proxy '
                             'Authentication Required" to the request forwarded to it' % ap.port)
            self.assertTrue(self.last("/100b?noauth")[0]["response_generated"])
            # and so to a CONNECT, for an HTTP/1.1 connection or an HTTP/2
            # session (test_a: the origin chose h2 before), whose stream
            # said it inside "could not be reached: ..."
            for v in ("1.1", "2"):
                path = "/100b?noauth-tls-" + v
                self.assertEqual(self.error_of(o.url(path, https=True), path, "--http" + v),
                                 'the upstream proxy localhost:%d answered "HTTP/1.0 407 Proxy '
                                 'Authentication Required" to CONNECT localhost:%d'
                                 % (ap.port, o.https_port))
            self.set_config("upstream_proxyauth", "ann:s3cret")
            out = curl(r, o.url("/100b?auth"))
            self.assertEqual(len(out.stdout), 100)
            row, full = self.last("/100b?auth")
            self.assertEqual(full["server_conn"]["via"], "localhost:%d" % ap.port)
            text = r.cli("flow", "up", str(row["id"])).stdout.decode()
            self.assertIn("to the upstream proxy 127.0.0.1:%d (localhost:%d), which the request "
                          "went to as it came" % (ap.port, ap.port), text)
            out = curl(r, o.url("/100b?auth-tls", https=True))
            self.assertEqual(len(out.stdout), 100)
            row, full = self.last("/100b?auth-tls")
            self.assertEqual((full["server_conn"]["via"], full["server_conn"]["via_forward"]),
                             ("localhost:%d" % ap.port, False))
            # the credentials are never echoed: not in the log of what was applied
            self.assertNotIn("s3cret", r.log())
            # a proxy that cannot be reached is named
            self.set_config("upstream_proxy", "127.0.0.1:1")
            self.assertRegex(self.error_of(o.url("/100b?noproxy"), "/100b?noproxy"),
                             r"^the upstream proxy \(upstream_proxy 127\.0\.0\.1:1\) could not be "
                             r"reached: cannot connect to 127\.0\.0\.1:1 .*connection refused$")
        finally:
            self.set_config("upstream_proxy", "127.0.0.1:%d" % self.open_proxy.port)
            self.set_config("upstream_proxyauth", "")

    def test_e_proxy_that_does_not_answer(self):
        """A proxy that takes the connection and never answers the CONNECT,
        or the request forwarded to it: 504 at upstream_timeout, naming it
        (it said "TLS handshake ... not done", of a plain HTTP request)."""
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        held = []
        try:
            self.set_config("upstream_timeout", "2")
            self.set_config("upstream_proxy", "127.0.0.1:%d" % silent.getsockname()[1])
            for path, https in (("/100b?silent", False), ("/100b?silent-tls", True)):
                t0 = time.time()
                out = curl(self.reel, "-o", "/dev/null", "-w", "%{http_code}",
                           self.origin.url(path, https=https), check=False)
                self.assertEqual(out.stdout, b"504")
                self.assertLess(time.time() - t0, 10)
                row, _ = self.last(path)
                port = silent.getsockname()[1]
                self.assertEqual(row["error"], "the upstream proxy 127.0.0.1:%d did not answer "
                                 "CONNECT localhost:%d within 2s (upstream_timeout)"
                                 % (port, self.origin.https_port) if https else
                                 "the upstream proxy 127.0.0.1:%d (forwarding to 127.0.0.1:%d) "
                                 "sent no response for 2s (upstream_timeout)"
                                 % (port, self.origin.http_port))
                silent.settimeout(0.5)
                try:
                    held.append(silent.accept()[0])
                except OSError:
                    pass
        finally:
            self.set_config("upstream_proxy", "127.0.0.1:%d" % self.open_proxy.port)
            self.reel.set_config("unset", "upstream_timeout")
            for c in held:
                c.close()
            silent.close()

    def test_f_replay_through_the_proxy(self):
        """reel replay takes the session's upstream_proxy as the proxy does:
        the plain request to it in absolute form, HTTPS in a tunnel;
        upstream_proxyauth's credentials; a proxy that refuses or cannot be
        reached is named in the replay's error."""
        o, r, tp = self.origin, self.reel, self.open_proxy
        via = "127.0.0.1:%d" % tp.port
        curl(r, o.url("/100b?to-replay"))
        curl(r, "--http1.1", o.url("/text.txt?to-replay", https=True))
        plain = self.last("/100b?to-replay")[0]["id"]
        tls = self.last("/text.txt?to-replay")[0]["id"]

        def replay(*args, into="up-replays"):
            out = r.cli("replay", "up", *args, "--into", into, "--json", "--set",
                        "upstream_trusted_ca=" + o.ca, check=False)
            self.assertTrue(out.stdout, out.stderr)
            return out.returncode, json.loads(out.stdout)

        before = len(tp.requests())
        code, out = replay("~u to-replay")
        self.assertEqual(code, 0, out)
        for rep in out["replays"]:
            self.assertEqual((rep["status"], rep["error"]), (200, None), rep)
            f = json.loads(r.cli("flow", "up-replays", str(rep["id"]), "--json").stdout)
            sc = f["server_conn"]
            self.assertEqual((sc["via"], sc["address"], sc["via_forward"]),
                             (via, via, rep["of"] == plain), sc)
            # the record has the request as replayed, not the proxy's form
            self.assertEqual(f["request"]["target"], "/100b?to-replay" if rep["of"] == plain
                             else "/text.txt?to-replay")
            self.assertNotIn("proxy-authorization",
                             [h[0].lower() for h in f["request"]["headers"]])
        new = tp.requests()[before:]
        self.assertIn(("GET", o.url("/100b?to-replay")), new)
        self.assertIn(("CONNECT", "localhost:%d" % o.https_port), new)
        # a proxy asking for credentials: without, its 407 named; with, served
        ap = "localhost:%d" % self.auth_proxy.port
        code, out = replay("~u to-replay", "--set", "upstream_proxy=" + ap)
        self.assertNotEqual(code, 0)
        got = {rep["of"]: (rep["status"], rep["error"]) for rep in out["replays"]}
        self.assertEqual(got[tls], (None, 'the upstream proxy %s answered "HTTP/1.0 407 Proxy '
                                          'Authentication Required" to CONNECT localhost:%d'
                                    % (ap, o.https_port)))
        # the plain one: the proxy's answer, recorded as it came (no client
        # here to be asked for credentials)
        self.assertEqual(got[plain], (407, None))
        code, out = replay("~u to-replay", "--set", "upstream_proxy=" + ap,
                           "--set", "upstream_proxyauth=ann:s3cret")
        self.assertEqual(code, 0, out)
        self.assertEqual([rep["status"] for rep in out["replays"]], [200, 200])
        # a proxy that cannot be reached
        code, out = replay(str(plain), "--set", "upstream_proxy=127.0.0.1:1")
        self.assertNotEqual(code, 0)
        self.assertRegex(out["replays"][0]["error"],
                         r"^the upstream proxy \(upstream_proxy 127\.0\.0\.1:1\) could not be "
                         r"reached: connecting to 127\.0\.0\.1:1: Connection refused$")

    def test_g_hosts_reached_directly(self):
        """upstream_no_proxy: the hosts it names are reached directly, the
        others through the proxy, changed while reel runs; reel replay
        takes it too; a list with a bad entry is refused."""
        o, r, tp = self.origin, self.reel, self.open_proxy
        via = "127.0.0.1:%d" % tp.port
        try:
            # 127.0.0.1 by its range, localhost by name: both direct
            self.set_config("upstream_no_proxy", "localhost, 127.0.0.0/8")
            before = len(tp.requests())
            curl(r, o.url("/100b?direct"))
            curl(r, "--http2", o.url("/text.txt?direct-h2", https=True))
            for path in ("/100b?direct", "/text.txt?direct-h2"):
                sc = self.last(path)[1]["server_conn"]
                self.assertEqual(sc["via"], None, sc)
                self.assertNotEqual(sc["address"], via, sc)
            self.assertEqual(tp.requests()[before:], [])
            fid = self.last("/100b?direct")[0]["id"]
            out = r.cli("replay", "up", str(fid), "--into", "up-direct", "--json")
            (rep,) = json.loads(out.stdout)["replays"]
            self.assertEqual(rep["status"], 200)
            sc = json.loads(r.cli("flow", "up-direct", str(rep["id"]), "--json").stdout)[
                "server_conn"]
            self.assertEqual(sc["via"], None, sc)
            self.assertEqual(tp.requests()[before:], [])
            # another name: through the proxy again
            self.set_config("upstream_no_proxy", ".example.test")
            curl(r, o.url("/100b?proxied-again"))
            self.assertEqual(self.last("/100b?proxied-again")[1]["server_conn"]["via"], via)
            out = r.cli("config", "up", "set", "upstream_no_proxy", "ok.test, bad..test",
                        check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn(b"invalid value for upstream_no_proxy: 'bad..test' is not a host name",
                          out.stderr)
        finally:
            self.set_config("upstream_no_proxy", "")

    def test_h_timings_of_a_tunnel(self):
        """Through a proxy slow to answer CONNECT (a relay here, 400 ms), the
        flow's and its connection's `connect` count to the tunnel's opening
        and `ssl` from it: the wait was counted as TLS."""
        o = self.origin
        lsn = socket.socket()
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(4)
        threads = []

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def serve():
            try:
                c, _ = lsn.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            time.sleep(0.4)
            up = socket.create_connection(("127.0.0.1", o.https_port))
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((c, up), (up, c)):
                t = threading.Thread(target=pipe, args=(a, b), daemon=True)
                t.start()
                threads.append(t)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            self.set_config("upstream_proxy", "127.0.0.1:%d" % lsn.getsockname()[1])
            curl(self.reel, "--http1.1", o.url("/100b?slow-tunnel", https=True))
            full = self.last("/100b?slow-tunnel")[1]
            for part in (full["timings"], full["server_conn"]):
                self.assertGreaterEqual(part["connect_us"], 400000, part)
                self.assertLess(part["ssl_us"], 400000, part)
                self.assertGreaterEqual(part["ssl_us"], 0, part)
        finally:
            self.set_config("upstream_proxy", self.via)
            lsn.close()
            for t in threads:
                t.join(5)

    def test_d_values_that_are_no_http_proxy(self):
        only = ("only an HTTP proxy (http://host:port, or https://host:port over TLS) or a "
                "SOCKS5 one (socks5://host:port) is supported, not ")
        for value, why in (("ftp://p:3128", only + "ftp://"),
                           ("socks4://p:1080", only + "socks4://"),
                           ("https://p", "expected host:port"),
                           ("socks5://p", "expected host:port"),
                           ("ann:pw@p:3128", "a user or path is not taken (upstream_proxyauth "
                                             "holds the credentials)"),
                           ("p", "expected host:port"),
                           ("p:99999", "the port is not 1..65535")):
            out = self.reel.cli("config", "up", "set", "upstream_proxy", value, check=False)
            self.assertNotEqual(out.returncode, 0, value)
            self.assertIn(("invalid value '%s' for upstream_proxy: %s" % (value, why)).encode(),
                          out.stderr)
        out = self.reel.cli("config", "up", "set", "upstream_proxyauth", "nocolon", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"invalid value for upstream_proxyauth: expected \"user:pass\" or empty",
                      out.stderr)
        self.assertNotIn(b"nocolon", out.stderr)


@unittest.skipUnless(os.access(MICROSOCKS, os.X_OK), "microsocks is not installed")
class SocksUpstreamTest(BehindAProxy):
    """upstream_proxy socks5://: every connection reel makes to an origin is
    a SOCKS5 tunnel (microsocks here), named so in the record; a proxy that
    asks for a username and password gets upstream_proxyauth's; its
    refusals are named in the flow's 502; reel replay goes the same way."""

    session = "sk"

    @classmethod
    def start_proxies(cls):
        ms = Microsocks()
        return ms, Microsocks(auth=("ann", "s3cret")), "socks5://127.0.0.1:%d" % ms.port

    def test_a_through_the_socks_proxy(self):
        o, r = self.origin, self.reel
        for _, full in self.each_way():
            sc = full["server_conn"]
            self.assertEqual((sc["via"], sc["address"], sc["via_forward"]),
                             (self.via, "127.0.0.1:%d" % self.open_proxy.port, False), sc)
        text = r.cli("flow", "sk", str(self.last("/100b?plain")[0]["id"])).stdout.decode()
        self.assertIn("to the upstream proxy 127.0.0.1:%d (%s), a SOCKS5 tunnel to the origin\n"
                      % (self.open_proxy.port, self.via), text)
        # an origin the proxy cannot reach: its reply code, named
        self.assertEqual(self.error_of("http://127.0.0.1:1/gone", "/gone"),
                         "the upstream proxy %s answered 05 (connection refused) to CONNECT "
                         "127.0.0.1:1" % self.via)
        # reel replay goes the same way
        out = r.cli("replay", "sk", "~u plain$ | ~u h1$", "--into", "sk-replays", "--json", "--set",
                    "upstream_trusted_ca=" + o.ca)
        reps = json.loads(out.stdout)["replays"]
        self.assertEqual([x["status"] for x in reps], [200, 200], reps)
        for rep in reps:
            f = json.loads(r.cli("flow", "sk-replays", str(rep["id"]), "--json").stdout)
            self.assertEqual((f["server_conn"]["via"], f["server_conn"]["via_forward"]),
                             (self.via, False))

    def test_b_username_and_password(self):
        o, r = self.origin, self.reel
        via = "socks5h://localhost:%d" % self.auth_proxy.port
        try:
            r.set_config("set", "upstream_proxy", via)
            for path, https in (("/100b?noauth", False), ("/100b?noauth-tls", True)):
                self.assertEqual(self.error_of(o.url(path, https=https), path, "--http1.1"),
                                 "the upstream proxy %s asks for a username and password "
                                 "(upstream_proxyauth) before CONNECT %s:%d"
                                 % (via, "localhost" if https else "127.0.0.1",
                                    o.https_port if https else o.http_port))
            r.set_config("set", "upstream_proxyauth", "ann:wrong")
            self.assertEqual(self.error_of(o.url("/100b?wrong"), "/100b?wrong"),
                             "the upstream proxy %s refused upstream_proxyauth's username and "
                             "password before CONNECT 127.0.0.1:%d"
                             % (via, o.http_port))
            r.set_config("set", "upstream_proxyauth", "ann:s3cret")
            for path, https in (("/100b?auth", False), ("/100b?auth-tls", True)):
                out = curl(r, o.url(path, https=https))
                self.assertEqual(len(out.stdout), 100)
                self.assertEqual(self.last(path)[1]["server_conn"]["via"], via)
        finally:
            r.set_config("set", "upstream_proxy", self.via)
            r.set_config("set", "upstream_proxyauth", "")


class HttpsUpstreamTest(BehindAProxy):
    """upstream_proxy https://: reel speaks TLS to the proxy itself (a small
    python3 one, its certificate from the origin's CA, which reel trusts),
    and through that its CONNECT tunnels and forwarded requests, HTTP/2
    sessions and replays; a proxy whose certificate reel does not trust
    is named in the 502."""

    session = "hs"

    @classmethod
    def start_proxies(cls):
        o = cls.origin
        tp = TlsProxy(os.path.join(o.root, "server.pem"), os.path.join(o.root, "server.key"))
        own = os.path.join(cls.root, "self")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", own + ".key",
                        "-out", own + ".pem", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        # (in auth_proxy's place: the set-up stops it)
        return tp, TlsProxy(own + ".pem", own + ".key"), "https://127.0.0.1:%d" % tp.port

    def test_a_through_the_https_proxy(self):
        o, r = self.origin, self.reel
        for https, full in self.each_way():
            sc = full["server_conn"]
            self.assertEqual((sc["via"], sc["address"], sc["via_forward"]),
                             (self.via, "127.0.0.1:%d" % self.open_proxy.port, not https), sc)
            if https:  # the origin's TLS, not the proxy's
                self.assertEqual(sc["sni"], "localhost")
            else:
                self.assertIsNone(sc["tls_version"])
        lines = self.open_proxy.lines
        self.assertIn(("GET", o.url("/100b?plain")), lines)
        self.assertIn(("CONNECT", "localhost:%d" % o.https_port), lines)
        # reel replay goes the same way
        out = r.cli("replay", "hs", "~u plain$ | ~u h1$", "--into", "hs-replays", "--json", "--set",
                    "upstream_trusted_ca=" + o.ca)
        reps = json.loads(out.stdout)["replays"]
        self.assertEqual([x["status"] for x in reps], [200, 200], reps)
        for rep in reps:
            f = json.loads(r.cli("flow", "hs-replays", str(rep["id"]), "--json").stdout)
            self.assertEqual(f["server_conn"]["via"], self.via)

    def test_b_proxy_not_trusted(self):
        o, r = self.origin, self.reel
        via = "https://127.0.0.1:%d" % self.auth_proxy.port
        try:
            r.set_config("set", "upstream_proxy", via)
            for path, https in (("/100b?untrusted", False), ("/100b?untrusted-tls", True)):
                err = self.error_of(o.url(path, https=https), path, "--http1.1")
                self.assertIn("the upstream proxy (upstream_proxy %s) could not be reached: the TLS "
                              "with it failed: upstream certificate verify failed: self-signed "
                              "certificate" % via, err)
            self.assertEqual(self.auth_proxy.lines, [])  # nothing was sent to it
        finally:
            r.set_config("set", "upstream_proxy", self.via)


if __name__ == "__main__":
    main()
