#!/usr/bin/python3
"""reel as a reverse proxy (reverse_to): clients talk to reel as to the
origin it names, in plain HTTP, TLS (a leaf from reel's CA for the name
they asked for) or HTTP/2, and every request goes to that origin, over
TLS or not as reverse_to says, with its Host; each flow records the
origin's URL. nginx is the origin, curl the client.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from proxyenv import (TMPBASE, REEL, Origin, Reel, body, free_port, main, only_flow, run,
                      stop_class, wait_listening, ws_echo_server)


def fetch(reel, url, *args, check=True):
    """curl to reel itself (no proxy), trusting reel's CA."""
    return run(["curl", "-sS", "--max-time", "30", "--cacert", reel.ca] + list(args) + [url],
               check=check)


class ReverseHttpsOrigin(unittest.TestCase):
    """reverse_to https://localhost:PORT: plain HTTP, TLS and HTTP/2 clients."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="reverse.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        cls.target = "https://localhost:%d" % cls.origin.https_port
        cls.reel = Reel(cls.root, "rv", "upstream_trusted_ca=" + cls.origin.ca,
                        "reverse_to=" + cls.target)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def last(self, path):
        return only_flow(self, self.reel, path)

    def test_banner(self):
        log = self.reel.log()
        self.assertIn("reverse proxy for %s listening on http://127.0.0.1:%d"
                      % (self.target, self.reel.port), log)

    def test_plain_client(self):
        r = self.reel
        out = fetch(r, "http://127.0.0.1:%d/100b?plain" % r.port)
        row, full = self.last("/100b?plain")
        self.assertEqual((row["status"], row["state"]), (200, "complete"), row)
        self.assertEqual(row["url"], self.target + "/100b?plain")
        self.assertEqual(body(full, "response"), out.stdout)
        # the flow records the client's Host; the origin got its own
        req = dict((k.lower(), v) for k, v in full["request"]["headers"])
        self.assertEqual(req["host"], "127.0.0.1:%d" % r.port)
        self.assertTrue(full["request"]["reverse"])
        text = r.cli("flow", "rv", str(row["id"])).stdout.decode()
        self.assertIn("> Host: 127.0.0.1:%d\n" % r.port, text)
        self.assertIn("\n~ reel as a reverse proxy (reverse_to): the origin got Host: localhost:%d\n"
                      % self.origin.https_port, text)
        # HAR says it, curl export sends the origin's Host (from the URL),
        # and reel replay does too
        har = json.loads(r.cli("export", "rv", "~u /100b\\?plain$", "-o", "-").stdout)
        (entry,) = har["log"]["entries"]
        self.assertTrue(entry["_reel"]["reverse"])
        cmd = r.cli("export", "rv", "~u /100b\\?plain$", "--format", "curl", "-o",
                    "-").stdout.decode()
        self.assertIn("/100b?plain", cmd)
        self.assertNotIn("127.0.0.1:%d" % r.port, cmd)
        out = r.cli("replay", "rv", str(row["id"]), "--into", "rv-replays", "--json", "--set",
                    "upstream_trusted_ca=" + self.origin.ca)
        (rep,) = json.loads(out.stdout)["replays"]
        self.assertEqual(rep["status"], 200, rep)
        self.assertEqual(full["server_conn"]["sni"], "localhost")
        # the origin got reverse_to's Host, over HTTP/1.1 and HTTP/2 alike
        for args in (["--http1.1"], ["--http2"]):
            out = fetch(r, "https://localhost:%d/host" % r.port, *args)
            self.assertEqual(out.stdout, b"localhost:%d\n" % self.origin.https_port)

    def test_tls_and_http2_clients(self):
        r = self.reel
        for args, path, version in ((["--http1.1"], "/text.txt?tls-h1", "HTTP/1.1"),
                                    (["--http2"], "/text.txt?tls-h2", "HTTP/2.0")):
            out = fetch(r, "https://localhost:%d%s" % (r.port, path), *args)
            row, full = self.last(path)
            self.assertEqual((row["status"], row["state"]), (200, "complete"), row)
            self.assertEqual(row["url"], self.target + path)
            self.assertEqual(body(full, "response"), out.stdout)
            self.assertEqual(full["request"]["http_version"], version)
            self.assertEqual(full["client_tls"]["sni"], "localhost")

    def test_h2c_client(self):
        """An HTTP/2 client in the clear (prior knowledge) of an HTTPS origin."""
        r = self.reel
        out = fetch(r, "http://127.0.0.1:%d/100b?h2c" % r.port, "--http2-prior-knowledge")
        self.assertEqual(len(out.stdout), 100)
        row, full = self.last("/100b?h2c")
        self.assertEqual((row["status"], row["url"]), (200, self.target + "/100b?h2c"))
        self.assertEqual(full["request"]["http_version"], "HTTP/2.0")

    def test_tls_client_by_address(self):
        """No SNI (an address): reel's leaf is for the address the client
        connected to."""
        r = self.reel
        out = fetch(r, "https://127.0.0.1:%d/100b?by-ip" % r.port)
        self.assertEqual(len(out.stdout), 100)
        self.assertEqual(self.last("/100b?by-ip")[0]["status"], 200)

    def test_absolute_form_goes_to_the_origin_too(self):
        """A request naming another host in absolute form goes to
        reverse_to all the same, its path kept."""
        r = self.reel
        s = socket.create_connection(("127.0.0.1", r.port), 10)
        s.sendall(b"GET http://elsewhere.test/100b?absolute HTTP/1.1\r\nHost: elsewhere.test\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        row, _ = self.last("/100b?absolute")
        self.assertEqual(row["url"], self.target + "/100b?absolute")

    def test_not_with_transparent(self):
        # both at once: refused when the proxy starts, saying why
        home = os.path.join(self.root, "both")
        env = dict(os.environ, REEL_HOME=home, XDG_DATA_HOME=home, XDG_CONFIG_HOME=home)
        out = subprocess.run([REEL, "record", "--listen", "127.0.0.1:0", "--set",
                              "reverse_to=" + self.target, "--set", "transparent=true", "both"],
                             env=env, capture_output=True, timeout=30)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn(b"reel record: transparent and reverse_to cannot both be set: a reverse "
                      b"proxy sends every connection to its one origin\n", out.stderr)

    def test_connect_refused(self):
        """A client set for a forward proxy, sending CONNECT: told what reel
        is here."""
        r = self.reel
        out = run(["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % r.port,
                   "--cacert", r.ca, "https://example.test/"], check=False)
        self.assertNotEqual(out.returncode, 0)
        fl = r.wait_flows(1, "~m CONNECT")
        self.assertEqual(fl[0]["error"], "CONNECT to reel as a reverse proxy (reverse_to): it takes "
                                         "requests for its origin only, not tunnels")


class ReversePlainOrigin(unittest.TestCase):
    """reverse_to http://127.0.0.1:PORT: a plain client, and a TLS one (offered
    HTTP/1.1 only: nothing to mirror), both to a plain origin."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="reverse-plain.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.target = "http://127.0.0.1:%d" % cls.origin.http_port
        cls.reel = Reel(cls.root, "rp", "reverse_to=" + cls.target + "/")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def test_plain_and_tls_clients(self):
        r = self.reel
        for url, path in (("http://127.0.0.1:%d/100b?p" % r.port, "/100b?p"),
                          ("https://localhost:%d/100b?t" % r.port, "/100b?t")):
            out = fetch(r, url, "--http2" if url.startswith("https") else "--http1.1")
            self.assertEqual(len(out.stdout), 100)
            fl = r.wait_flows(1, "~u %s$" % re.escape(path))
            self.assertEqual((fl[0]["status"], fl[0]["url"]), (200, self.target + path), fl)
            full = r.flow(fl[0]["id"])
            self.assertEqual(full["request"]["http_version"], "HTTP/1.1")
            self.assertIsNone(full["server_conn"]["tls_version"])


@unittest.skipUnless(shutil.which("microsocks"), "microsocks is not installed")
class ReverseBehindAProxy(unittest.TestCase):
    def test_reverse_to_through_upstream_proxy(self):
        """reverse_to and upstream_proxy together: the origin reached through
        the SOCKS5 proxy (microsocks), the flow saying both."""
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="reverse-via.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        port = free_port()
        ms = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reel = None
        try:
            wait_listening(port)
            via = "socks5://127.0.0.1:%d" % port
            reel = Reel(root, "rvia", "reverse_to=https://localhost:%d" % origin.https_port,
                        "upstream_trusted_ca=" + origin.ca, "upstream_proxy=" + via)
            out = fetch(reel, "http://127.0.0.1:%d/100b?via" % reel.port)
            self.assertEqual(len(out.stdout), 100)
            fl = reel.wait_flows(1, "~u via$")
            full = reel.flow(fl[0]["id"])
            self.assertEqual((fl[0]["status"], full["server_conn"]["via"]), (200, via))
            self.assertTrue(full["request"]["reverse"])
        finally:
            code = reel.stop() if reel else 0
            ms.terminate()
            ms.wait(10)
            origin.stop()
        self.assertEqual(code, 0, reel.log())


class ReverseWebSocket(unittest.TestCase):
    def test_websocket_through_the_reverse_proxy(self):
        """A WebSocket client of reel as a reverse proxy for a WebSocket
        server (python3-websockets both): the echo comes back, and the flow
        is a WebSocket one with its messages."""
        import asyncio
        import websockets
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="reverse-ws.", dir=TMPBASE)
        with ws_echo_server() as port:
            reel = Reel(root, "rw", "reverse_to=http://127.0.0.1:%d" % port)
            try:
                async def talk():
                    async with websockets.connect("ws://127.0.0.1:%d/chat" % reel.port,
                                                  compression=None) as ws:
                        await ws.send("hello")
                        return await ws.recv()
                self.assertEqual(asyncio.run(talk()), "hello")
                fl = reel.wait_flows(1, "~websocket")
                self.assertEqual(len(fl), 1, fl)
                self.assertEqual(fl[0]["url"], "http://127.0.0.1:%d/chat" % port)  # (its Upgrade request)
                self.assertGreaterEqual(fl[0]["messages"], 2, fl)
            finally:
                code = reel.stop()
        self.assertEqual(code, 0, reel.log())


class ReverseBadValues(unittest.TestCase):
    def test_refused(self):
        root = tempfile.mkdtemp(prefix="reverse-bad.", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config")
        for value, why in (("example.com", "expected http://host[:port] or https://host[:port]"),
                           ("https://example.com/api", "a path, user or query is not taken"),
                           ("http://example.com:0", "the port is not 1..65535"),
                           ("ftp://example.com", "expected http://host[:port]")):
            out = run([REEL, "record", "--listen", "127.0.0.1:0", "--set", "reverse_to=" + value,
                       "bad"], env=env, check=False)
            self.assertNotEqual(out.returncode, 0, value)
            self.assertIn(("invalid value '%s' for reverse_to: %s" % (value, why)).encode(),
                          out.stderr)


if __name__ == "__main__":
    main()
