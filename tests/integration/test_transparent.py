#!/usr/bin/python3
"""Transparent mode (transparent=true): connections the OS redirected to reel.

iptables (nat table, OUTPUT chain, REDIRECT) sends the connections that
user nobody (uid 65534) makes to the nginx origin's two ports to reel's
port instead; curl runs as nobody (setpriv) with no proxy set, and reel
(root, not redirected) reaches the origin at the address the client
connected to (SO_ORIGINAL_DST). Plain HTTP, HTTPS (intercepted: curl
trusts reel's CA) over HTTP/1.1 and HTTP/2 each become a flow under the
name the client gave, with the address in original_dst; a client set
for reel as its proxy is served as before on the same port; a
raw TCP connection is a tunnel flow whose request says no CONNECT came;
map_local's rules see the name, not the address; over IPv6 too
(ip6tables, a reel listening on [::1]).
The rules are removed again (tearDownClass). Skipped, saying why, where
the nat table cannot be changed (no iptables, no CAP_NET_ADMIN).
"""
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, main, only_flow, stop_class

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nat_usable():
    """Why the nat table cannot be used here, or None."""
    if shutil.which("iptables") is None or shutil.which("setpriv") is None:
        return "iptables or setpriv is not installed"
    r = subprocess.run(["iptables", "-t", "nat", "-L", "OUTPUT", "-n"], capture_output=True)
    if r.returncode != 0:
        return "iptables -t nat -L failed: " + r.stderr.decode(errors="replace").strip()
    return None


class TransparentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = nat_usable()
        if why:
            raise unittest.SkipTest(why)
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="transparent.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        o = cls.origin
        cls.reel = Reel(cls.root, "tp", "upstream_trusted_ca=" + o.ca, "transparent=true")
        # reel's CA where nobody can read it (the test's directories are 0700)
        fd, cls.ca = tempfile.mkstemp(prefix="reel-transparent-ca.", suffix=".pem")
        os.close(fd)
        shutil.copy(cls.reel.ca, cls.ca)
        os.chmod(cls.ca, 0o644)
        # a server that speaks first, for a raw TCP connection
        cls.raw = socket.socket()
        cls.raw.bind(("127.0.0.1", 0))
        cls.raw.listen(4)
        cls.rules = []
        for port in (o.http_port, o.https_port, cls.raw.getsockname()[1]):
            rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(port), "-m", "owner",
                    "--uid-owner", "65534", "-j", "REDIRECT", "--to-ports", str(cls.reel.port)]
            subprocess.run(["iptables", "-t", "nat", "-A"] + rule, check=True)
            cls.rules.append(rule)

    @classmethod
    def tearDownClass(cls):
        for rule in cls.rules:
            subprocess.run(["iptables", "-t", "nat", "-D"] + rule, check=False)
        cls.raw.close()
        os.unlink(cls.ca)
        stop_class(cls)

    def curl(self, *args):
        """curl as nobody, no proxy: what it gets, its code and version."""
        out = subprocess.run(NOBODY + ["curl", "-sS", "--max-time", "20", "--cacert", self.ca,
                                       "-w", "\n%{http_code} %{http_version}"] + list(args),
                             capture_output=True, check=True)
        body, _, code = out.stdout.rpartition(b"\n")
        return body, code.decode()

    def test_http_https_h2(self):
        o = self.origin
        cases = ((["http://localhost:%d/100b?plain" % o.http_port], "1.1", "http"),
                 (["--http1.1", "https://localhost:%d/100b?h1" % o.https_port], "1.1", "https"),
                 (["--http2", "https://localhost:%d/100b?h2" % o.https_port], "2", "https"))
        for args, version, scheme in cases:
            body, code = self.curl(*args)
            self.assertEqual((len(body), code), (100, "200 " + version), args)
            path = args[-1].split("/", 3)[3]
            row, full = only_flow(self, self.reel, "/" + path)
            port = o.http_port if scheme == "http" else o.https_port
            # the name the client gave, the address it went to
            self.assertEqual(row["url"], "%s://localhost:%d/%s" % (scheme, port, path))
            self.assertEqual(full["request"]["original_dst"], "127.0.0.1:%d" % port)
            self.assertEqual(full["server_conn"]["address"], "127.0.0.1:%d" % port)
            if scheme == "https":
                self.assertEqual(full["server_conn"]["sni"], "localhost")
                self.assertEqual(full["client_tls"]["sni"], "localhost")
        text = self.reel.cli("flow", "tp", str(row["id"])).stdout.decode()
        self.assertIn("\n~ came transparently (redirected to reel by the OS): it went to "
                      "127.0.0.1:%d, where the client had connected\n" % o.https_port, text)
        har = os.path.join(self.root, "tp.har")
        self.reel.cli("export", "tp", "~u 100b\\?h2$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["original_dst"], "127.0.0.1:%d" % o.https_port)
        # the origin saw the client's own Host
        body, _ = self.curl("http://127.0.0.1:%d/host" % o.http_port)
        self.assertEqual(body, b"127.0.0.1:%d\n" % o.http_port)

    def test_rules_see_the_name(self):
        # map_local's rule names the host the client gave, not the address
        o = self.origin
        local = os.path.join(self.root, "local.txt")
        with open(local, "w") as f:
            f.write("from a file\n")
        self.reel.set_config("set", "map_local",
                             json.dumps([r"|^https://localhost:%d/mapped$|%s" % (o.https_port, local)]))
        try:
            body, code = self.curl("https://localhost:%d/mapped" % o.https_port)
        finally:
            self.reel.set_config("unset", "map_local")
        self.assertEqual((body, code[:4]), (b"from a file\n", "200 "))
        _, full = only_flow(self, self.reel, "/mapped")
        self.assertEqual(full["response"]["local_file"], local)
        self.assertEqual(full["request"]["original_dst"], "127.0.0.1:%d" % o.https_port)

    def test_proxy_clients_as_before(self):
        o = self.origin
        out = subprocess.run(["curl", "-sS", "-x", self.reel.proxy,
                              "http://localhost:%d/100b?as-proxy" % o.http_port],
                             capture_output=True, check=True)
        self.assertEqual(len(out.stdout), 100)
        _, full = only_flow(self, self.reel, "/100b?as-proxy")
        self.assertIsNone(full["request"]["original_dst"])
        self.assertTrue(full["request"]["absolute_form"])

    def test_raw_tcp(self):
        port = self.raw.getsockname()[1]
        c = subprocess.Popen(NOBODY + ["/usr/bin/python3", "-c",
                                       "import socket,sys; s=socket.create_connection(('127.0.0.1',"
                                       " %d)); sys.stdout.buffer.write(s.recv(100))" % port],
                             stdout=subprocess.PIPE)
        srv, _ = self.raw.accept()  # reel's connection, as the client's went
        srv.sendall(b"HELLO from a server that speaks first\r\n")
        srv.close()
        self.assertEqual(c.communicate(timeout=20)[0], b"HELLO from a server that speaks first\r\n")
        fl = self.reel.wait_flows(1, "~tcp & ~u :%d/$" % port)
        self.assertEqual(len(fl), 1, fl)
        full = self.reel.flow(fl[0]["id"])
        self.assertEqual((full["request"]["method"], full["request"]["http_version"]),
                         ("CONNECT", "transparent"))
        self.assertIsNone(full["response"])  # nothing was answered: no CONNECT came

    def test_ipv6(self):
        r6 = subprocess.run(["ip6tables", "-t", "nat", "-L", "OUTPUT", "-n"], capture_output=True)
        if r6.returncode != 0:
            self.skipTest("ip6tables -t nat -L failed: " + r6.stderr.decode(errors="replace"))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "8")
                self.end_headers()
                self.wfile.write(b"over v6\n")

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        origin = Server(("::1", 0), Handler)
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        port = origin.server_address[1]
        err = open(os.path.join(self.root, "v6.log"), "w+")
        proc = subprocess.Popen([REEL, "record", "--listen", "[::1]:0", "--set", "transparent=true",
                                 "v6"], env=self.reel.env, stderr=err, stdout=subprocess.DEVNULL)
        rule = None
        try:
            rport = None
            for _ in range(200):
                err.seek(0)
                m = re.search(r"listening on http://\[::1\]:(\d+)", err.read())
                if m:
                    rport = int(m.group(1))
                    break
                time.sleep(0.05)
            self.assertIsNotNone(rport, "reel did not start on [::1]")
            rule = ["OUTPUT", "-p", "tcp", "-d", "::1", "--dport", str(port), "-m", "owner",
                    "--uid-owner", "65534", "-j", "REDIRECT", "--to-ports", str(rport)]
            subprocess.run(["ip6tables", "-t", "nat", "-A"] + rule, check=True)
            out = subprocess.run(NOBODY + ["curl", "-sS", "--max-time", "20", "-g",
                                           "http://[::1]:%d/v6" % port],
                                 capture_output=True, check=True)
            self.assertEqual(out.stdout, b"over v6\n")
        finally:
            if rule:
                subprocess.run(["ip6tables", "-t", "nat", "-D"] + rule, check=False)
            proc.send_signal(signal.SIGINT)
            self.assertEqual(proc.wait(30), 0)
            err.close()
            origin.shutdown()
            origin.server_close()
        (row,) = json.loads(self.reel.cli("flows", "v6", "--json").stdout)
        full = json.loads(self.reel.cli("flow", "v6", str(row["id"]), "--json").stdout)
        self.assertEqual(row["url"], "http://[::1]:%d/v6" % port)
        self.assertEqual(full["request"]["original_dst"], "[::1]:%d" % port)
        self.assertEqual(full["server_conn"]["address"], "[::1]:%d" % port)


if __name__ == "__main__":
    main()
