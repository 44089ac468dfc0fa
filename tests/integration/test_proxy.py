#!/usr/bin/python3
"""The proxy against real clients and a real origin.

nginx (HTTP and HTTPS with a private CA, started here on 127.0.0.1 and
stopped by PID) is the origin; curl and Python's http.client/ssl are the
clients; `reel record` runs as a separate process. Every request must show
up in `reel flows` with the right method, URL, status and sizes, and
`reel flow --json` must return the exact bytes.
"""
import base64
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import stat
import struct
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from proxyenv import (REEL as REEL_BIN, SANITIZED, TMPBASE, Origin, Reel, body, curl, free_port,
                      main, read_all, run, stop_class)


def messages(flow, from_client):
    """The bytes of a TCP flow's messages in one direction, joined."""
    return b"".join(base64.b64decode(m["data_b64"]) for m in flow["messages"] or []
                    if m["from_client"] == from_client)


class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="proxy.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "main", "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def last_flow(self, filt):
        flows = self.reel.wait_flows(1, filt)
        self.assertTrue(flows, "no flow matches %s; all: %s" % (filt, self.reel.flows()[-5:]))
        return flows[-1]

    def test_http_methods_and_exact_bytes(self):
        o, r = self.origin, self.reel
        self.assertEqual(curl(r, o.url("/file1m?get")).stdout, o.file1m)
        head = curl(r, "-I", o.url("/100b?head")).stdout
        self.assertIn(b"200 OK", head)
        self.assertEqual(curl(r, "--data-binary", "a=1&b=2", o.url("/echo?cl")).stdout, b"posted\n")
        chunked = b"chunked upload body " * 100
        self.assertEqual(curl(r, "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                              o.url("/echo?chunked"), input=chunked).stdout, b"posted\n")
        upload = os.urandom(300000)
        self.assertEqual(curl(r, "-H", "Expect: 100-continue", "--data-binary", "@-",
                              o.url("/echo?continue"), input=upload).stdout, b"posted\n")
        self.assertEqual(curl(r, "-o", "/dev/null", "-w", "%{http_code}", o.url("/nocontent")).stdout, b"204")
        etag = re.search(rb"ETag: (\S+)", run(["curl", "-sI", o.url("/100b")]).stdout).group(1).decode()
        self.assertEqual(curl(r, "-o", "/dev/null", "-w", "%{http_code}", "-H", "If-None-Match: " + etag,
                              o.url("/100b?cond")).stdout, b"304")
        gz = curl(r, "--compressed", o.url("/text.txt?gz")).stdout
        self.assertTrue(gz.startswith(b"reel test line 0"))
        # methods llhttp does not know are methods all the same (RFC 9110
        # 9.1): forwarded, and the origin answers (they used to get reel's
        # 400 "invalid method")
        self.assertEqual(curl(r, "-X", "QUERY", "--data-binary", "q=1", o.url("/echo?query")).stdout,
                         b"posted\n")
        lower = curl(r, "-X", "get", "-o", "/dev/null", "-w", "%{http_code}", o.url("/100b?lower"))
        self.assertEqual(lower.stdout, b"400")  # nginx's answer: methods are case-sensitive

        f = self.last_flow("~u file1m\\?get")
        self.assertEqual((f["method"], f["status"], f["response_body_size"]), ("GET", 200, 1 << 20))
        self.assertEqual(f["url"], o.url("/file1m?get"))
        self.assertEqual(body(r.flow(f["id"]), "response"), o.file1m)
        f = self.last_flow("~u 100b\\?head")
        self.assertEqual((f["method"], f["status"], f["response_body_size"]), ("HEAD", 200, 0))
        f = self.last_flow("~u echo\\?cl")
        self.assertEqual((f["method"], f["status"], f["request_body_size"]), ("POST", 200, 7))
        self.assertEqual(body(r.flow(f["id"]), "request"), b"a=1&b=2")
        f = self.last_flow("~u echo\\?chunked")
        self.assertEqual(f["request_body_size"], len(chunked))
        self.assertEqual(body(r.flow(f["id"]), "request"), chunked)
        f = self.last_flow("~u echo\\?continue")
        self.assertEqual((f["status"], f["request_body_size"]), (200, len(upload)))
        self.assertEqual(body(r.flow(f["id"]), "request"), upload)
        self.assertEqual(self.last_flow("~u nocontent")["status"], 204)
        f = r.flow(self.last_flow("~u echo\\?query")["id"])
        self.assertEqual((f["request"]["method"], f["response"]["status"]), ("QUERY", 200))
        self.assertEqual(body(f, "request"), b"q=1")
        f = r.flow(self.last_flow("~u 100b\\?lower")["id"])
        self.assertEqual((f["request"]["method"], f["response"]["generated"]), ("get", False))
        self.assertEqual(self.last_flow("~u 100b\\?cond")["status"], 304)
        f = r.flow(self.last_flow("~u text.txt\\?gz")["id"])
        hdrs = {k.lower(): v for k, v in f["response"]["headers"]}
        self.assertEqual(hdrs.get("content-encoding"), "gzip")
        human = r.cli("flow", r.session, str(f["id"])).stdout
        self.assertIn(b"reel test line 2999: the quick brown fox", human)  # decoded for display

    def test_keepalive_reuses_one_upstream_connection(self):
        o, r = self.origin, self.reel
        urls = [o.url("/100b?ka=%d" % i) for i in range(5)]
        out = curl(r, "-w", "%{num_connects}\n", *urls).stdout
        self.assertEqual(out.count(b"x" * 99), 5)
        conns = {l[0] for l in o.log_lines() if "?ka=" in l[2]}
        self.assertEqual(len(conns), 1, "requests used upstream connections %s" % conns)
        self.assertEqual(len(r.wait_flows(5, "~u \\?ka=")), 5)

    def test_https_through_connect(self):
        o, r = self.origin, self.reel
        self.assertEqual(curl(r, o.url("/file1m?tls", https=True)).stdout, o.file1m)
        f = self.last_flow("~u file1m\\?tls")
        self.assertEqual(f["url"], o.url("/file1m?tls", https=True))
        self.assertEqual(body(r.flow(f["id"]), "response"), o.file1m)
        # A second client: Python's http.client + ssl through a CONNECT tunnel.
        ctx = ssl.create_default_context(cafile=r.ca)
        c = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=20)
        c.set_tunnel("localhost", o.https_port)
        for i in range(3):
            c.request("POST", "/echo?py=%d" % i, body=b"python body %d" % i)
            resp = c.getresponse()
            self.assertEqual((resp.status, resp.read()), (200, b"posted\n"))
        c.close()
        flows = r.wait_flows(3, "~u echo\\?py=")
        self.assertEqual([f["method"] for f in flows], ["POST"] * 3)
        self.assertEqual(body(r.flow(flows[2]["id"]), "request"), b"python body 2")
        # Plain HTTP from Python, absolute-form.
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
        c.request("GET", o.url("/100b?pyplain"))
        self.assertEqual(c.getresponse().read(), b"x" * 99 + b"\n")
        c.close()
        self.assertEqual(self.last_flow("~u pyplain")["status"], 200)

    def test_error_cases_are_answered_and_recorded(self):
        o, r = self.origin, self.reel
        dead = free_port()
        res = curl(r, "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:%d/x" % dead, check=False)
        self.assertTrue(res.stdout.endswith(b"502"), res.stdout)
        self.assertIn(b"connection refused", res.stdout)
        f = self.last_flow("~u :%d/x" % dead)
        self.assertEqual(f["state"], "error")
        self.assertIn("connection refused", f["error"])
        # An IPv6 literal is named in brackets, as in the URL ("::1:N"
        # would not say which colon starts the port).
        res = curl(r, "-o", "-", "-w", "\n%{http_code}", "http://[::1]:%d/v6" % dead, check=False)
        self.assertTrue(res.stdout.endswith(b"502"), res.stdout)
        self.assertIn(b"cannot connect to [::1]:%d " % dead, res.stdout)
        self.assertIn("cannot connect to [::1]:%d " % dead, self.last_flow("~u /v6")["error"])

        # An upstream that answers garbage.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        gport = srv.getsockname()[1]

        def garbage():
            conn, _ = srv.accept()
            conn.recv(65536)
            conn.sendall(b"THIS IS NOT HTTP\r\n\r\n")
            conn.close()
        t = threading.Thread(target=garbage)
        t.start()
        res = curl(r, "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:%d/g" % gport, check=False)
        t.join(10)
        srv.close()
        self.assertTrue(res.stdout.endswith(b"502"), res.stdout)
        f = self.last_flow("~u :%d/g" % gport)
        # with the origin's head as it came, which nothing else records
        self.assertRegex(f["error"], r'^invalid response from 127\.0\.0\.1:%d: .* \(the '
                         r'origin\'s response head as it came: "THIS IS NOT HTTP\\r\\n\\r\\n"\)$'
                         % gport)

        def raw(data, close_early=False):
            s = socket.create_connection(("127.0.0.1", r.port), 5)
            s.sendall(data)
            if close_early:
                time.sleep(0.3)
                s.close()
                return b""
            s.settimeout(5)
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
            s.close()
            return out
        self.assertTrue(raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        big = raw(b"GET " + o.url("/100b").encode() + b" HTTP/1.1\r\nHost: a\r\nX-Big: " +
                  b"a" * 70000 + b"\r\n\r\n")
        self.assertTrue(big.startswith(b"HTTP/1.1 431 "), big[:100])
        smuggle = raw(b"POST " + o.url("/echo").encode() + b" HTTP/1.1\r\nHost: a\r\n"
                      b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assertTrue(smuggle.startswith(b"HTTP/1.1 400 "), smuggle[:100])
        self.assertIn(b"Transfer-Encoding and Content-Length", smuggle)
        raw(b"POST " + o.url("/echo?abort").encode() + b" HTTP/1.1\r\nHost: a\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"y" * 1000, close_early=True)
        f = self.last_flow("~u echo\\?abort")
        self.assertEqual(f["state"], "error")
        # A close with unsent body bytes may arrive as a FIN or as a reset.
        self.assertRegex(f["error"], r"client (closed the connection|connection error)")
        errors = [x for x in r.flows() if x["state"] == "error"]
        self.assertTrue(any("header section too large" in (x["error"] or "") for x in errors))
        self.assertTrue(any("invalid method" in (x["error"] or "") for x in errors))
        # no method parsed: null in the list and in the flow alike (the
        # flow said "")
        self.assertTrue(raw(b"\x01\x02 /nomethod HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        time.sleep(0.3)
        f = max(r.flows(), key=lambda x: x["id"])
        self.assertIn("invalid method", f["error"])
        self.assertEqual((f["method"], r.flow(f["id"])["request"]["method"]), (None, None))
        # a URL reel could not parse is recorded as the client sent it, not
        # with a scheme and host made up around it ("http://http://...")
        bad = raw(b"GET http://127.0.0.1:99999/badport HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(bad.startswith(b"HTTP/1.1 400 "), bad[:100])
        f = self.last_flow("~u badport")
        self.assertEqual(f["url"], "http://127.0.0.1:99999/badport")
        self.assertEqual(r.flow(f["id"])["request"]["url"], "http://127.0.0.1:99999/badport")
        # HAR has no place for a URL that is not one (its import would
        # refuse the file): such a flow is left out and counted; raw has it
        out = r.cli("export", "--format", "har", r.session, "~u badport")
        self.assertEqual(json.loads(out.stdout)["log"]["entries"], [])
        self.assertIn(b"skipped 1 flow", out.stderr)
        raw_out = r.cli("export", "--format", "raw", r.session, "~u badport").stdout
        self.assertTrue(raw_out.startswith(b"GET http://127.0.0.1:99999/badport HTTP/1.1\r\n"),
                        raw_out[:80])

    def test_clients_set_for_another_kind_of_proxy(self):
        """A client set to an https:// or a SOCKS4 proxy (SOCKS5 is served:
        test_socks.py): its own protocol gets its own refusal where it has
        one (SOCKS4), and the flow says what the client spoke and what reel
        answered, not "invalid method" with the bytes."""
        o, r = self.origin, self.reel
        port = "127.0.0.1:%d" % r.port
        advice = ("reel takes HTTP proxy requests (http://HOST:PORT, HTTPS through it with "
                  "CONNECT) and SOCKS5 (socks5://HOST:PORT) on this port")
        cases = [  # the proxy, the URL, what curl says, the flow's error (a regex)
            ("socks4a://" + port, "http://localhost:%d/100b?socks4a" % o.http_port,
             "request rejected or failed",
             re.escape("the client spoke SOCKS4 (was it set to a SOCKS4 proxy?); " + advice +
                       ' (it sent "\\x04\\x01') + r'.*' + re.escape(
                 '\\x00localhost\\x00"; reel answered that the request is rejected (00 5B) '
                 'and closed the connection)')),
            ("https://" + port, o.url("/100b?https-proxy"), "wrong version number",
             re.escape("the client began a TLS handshake with the proxy itself (was it set to an "
                       "https:// proxy?); " + advice + " (a ClientHello)")),
        ]
        for proxy, url, says, why in cases:
            before = max([f["id"] for f in r.flows()] or [0])
            out = run(["curl", "-sS", "--max-time", "10", "--proxy-insecure", "-x", proxy, url],
                      check=False)
            self.assertNotEqual(out.returncode, 0, proxy)
            self.assertIn(says.encode(), out.stderr, proxy)
            new = [f for f in r.wait_flows(before + 1) if f["id"] > before]
            self.assertEqual(len(new), 1, (proxy, new))
            f = new[0]
            self.assertEqual(f["state"], "error", f)
            # only the TLS client got the 400 (it cannot read it: curl says
            # "wrong version number"); the SOCKS4 one got its refusal
            self.assertEqual(f["status"], 400 if proxy.startswith("https") else None, f)
            self.assertRegex(f["error"], "^" + why + "$")
        # a second request on a connection that spoke HTTP is judged as a
        # request (the parser's 400), whatever its first bytes
        s = socket.create_connection(("127.0.0.1", r.port), 5)
        s.sendall(b"GET " + o.url("/100b?then-socks").encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        s.settimeout(5)
        got = b""
        while b"\n\n" not in got.replace(b"\r", b""):
            got += s.recv(4096)
        s.sendall(b"\x05\x01\x00")
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        self.assertIn(b"HTTP/1.1 400 ", got)
        time.sleep(0.3)
        f = max(r.flows(), key=lambda x: x["id"])
        self.assertIn("invalid method", f["error"])

    def test_pipelining_upgrade_and_tunnels(self):
        o, r = self.origin, self.reel

        def connect(data=b""):
            s = socket.create_connection(("127.0.0.1", r.port), 10)
            s.settimeout(10)
            if data:
                s.sendall(data)
            return s

        def read_until(s, marker, limit=1 << 20):
            out = b""
            while marker not in out and len(out) < limit:
                d = s.recv(65536)
                if not d:
                    break
                out += d
            return out

        # Pipelined requests are answered in order.
        s = connect(b"".join(b"GET " + o.url(p).encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n"
                             for p in ("/100b?pipe=1", "/nocontent", "/100b?pipe=3")) +
                    b"GET " + o.url("/text.txt?pipe=4").encode() +
                    b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        out = read_until(s, b"line 2999")
        s.close()
        self.assertEqual(re.findall(rb"HTTP/1.1 (\d+)", out), [b"200", b"204", b"200", b"200"])

        # An echo server for the tunnels below.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        eport = srv.getsockname()[1]

        heads = []

        def serve(upgrade):
            c, _ = srv.accept()
            c.settimeout(10)
            if upgrade:
                heads.append(read_until(c, b"\r\n\r\n"))
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-echo\r\n"
                          b"Connection: Upgrade\r\n\r\n")
            d = c.recv(65536)
            c.sendall(b"echo:" + d)
            c.close()

        # Upgrade to a protocol other than WebSocket: the 101 is forwarded and
        # the rest is TCP messages of the upgrade's own flow, as a
        # WebSocket's messages are (test_websocket). It used to be a
        # second flow shown as a CONNECT the client never sent.
        t = threading.Thread(target=serve, args=(True,))
        t.start()
        # The fields its Connection names go with it, as h2c's
        # HTTP2-Settings must (RFC 7540 3.2); those hop-by-hop
        # whatever Connection says do not
        s = connect(b"GET http://127.0.0.1:%d/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Upgrade: x-echo\r\nConnection: Upgrade, X-Echo-Settings, "
                    b"Proxy-Authorization, Keep-Alive\r\nX-Echo-Settings: AAMA\r\n"
                    b"Proxy-Authorization: Basic YTpi\r\nKeep-Alive: 5\r\n\r\n" % eport)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 101"))
        self.assertEqual(heads[0].split(b"\r\n")[1:],
                         [b"Host: 127.0.0.1:%d" % eport, b"Upgrade: x-echo",
                          b"Connection: Upgrade, X-Echo-Settings, Proxy-Authorization, Keep-Alive",
                          b"X-Echo-Settings: AAMA", b"", b""])
        s.sendall(b"\x81\x04ping")
        self.assertEqual(read_until(s, b"ping"), b"echo:\x81\x04ping")
        s.close()
        t.join(10)
        f = r.wait_flows(1, "~u :%d/ws" % eport)[-1]
        self.assertEqual((f["method"], f["status"], f["kind"], f["state"]),
                         ("GET", 101, "http", "complete"), f)
        full = r.flow(f["id"])
        self.assertEqual(messages(full, True), b"\x81\x04ping")
        self.assertEqual(messages(full, False), b"echo:\x81\x04ping")
        self.assertTrue(all(m["type"] == "tcp" for m in full["messages"]), full["messages"])
        self.assertEqual([x for x in r.flows("~m CONNECT") if ":%d" % eport in x["url"]], [])
        shown = r.cli("flow", r.session, str(f["id"])).stdout.decode()
        self.assertNotIn("CONNECT", shown)

        # CONNECT carrying plain HTTP is parsed as HTTP.
        s = connect(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.http_port)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"GET /100b?inner HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertIn(b"x" * 99, read_until(s, b"x" * 99))
        s.close()
        self.assertEqual(self.last_flow("~u 100b\\?inner")["url"], o.url("/100b?inner"))

        # An absolute URL inside the tunnel goes where the tunnel goes: one
        # naming the tunnel's origin is sent there, one naming another
        # host is refused (it used to be sent to that host, in the clear
        # also when the tunnel was TLS)
        s = connect(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.http_port)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"GET http://127.0.0.1:%d/100b?abs-same HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  % o.http_port)
        self.assertIn(b"x" * 99, read_until(s, b"x" * 99))
        s.sendall(b"GET http://127.0.0.1:%d/100b?abs-other HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Authorization: Bearer secret\r\n\r\n" % o.https_port)
        got = read_all(s)[0]
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got)
        self.assertIn(b"names another origin (127.0.0.1:%d)" % o.https_port, got)
        self.assertEqual(self.last_flow("~u abs-same")["status"], 200)
        other = self.last_flow("~u abs-other")
        self.assertEqual(other["status"], 400)
        self.assertIn("names another origin", other["error"])
        # recorded as the client sent it: the URL it named
        self.assertEqual(other["url"], "http://127.0.0.1:%d/100b?abs-other" % o.https_port)
        self.assertFalse(any("abs-other" in " ".join(line) for line in o.log_lines()))
        # OPTIONS * (asterisk form) inside a tunnel: the flow's URL is the
        # origin's, not "http://host:port*"
        s = connect(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % o.http_port)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        read_all(s)
        s.close()
        f = self.last_flow("~m OPTIONS")
        self.assertEqual(f["url"], "http://127.0.0.1:%d" % o.http_port)

        # CONNECT carrying neither TLS nor HTTP is relayed raw.
        t = threading.Thread(target=serve, args=(False,))
        t.start()
        s = connect(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % eport)
        self.assertTrue(read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 200"))
        s.sendall(b"\x00\x01binary hello")
        self.assertEqual(read_until(s, b"hello"), b"echo:\x00\x01binary hello")
        s.close()
        t.join(10)
        srv.close()
        tun = [x for x in r.wait_flows(1, "~u tcp://127.0.0.1:%d" % eport) if x["kind"] == "tunnel"]
        self.assertEqual(len(tun), 1)
        full = r.flow(tun[0]["id"])
        self.assertEqual(messages(full, True), b"\x00\x01binary hello")
        self.assertEqual(messages(full, False), b"echo:\x00\x01binary hello")
        self.assertTrue(all(m["type"] == "tcp" for m in full["messages"]), full["messages"])

    def raw_tunnel(self, port, rcvbuf=None, first=b"\x00\x01not-http"):
        """A client of a raw CONNECT tunnel (its first bytes neither TLS
        nor HTTP) to 127.0.0.1:port, its receive buffer set before its
        connect (its window stays small) when rcvbuf is given."""
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.reel.port))
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        if first:
            s.sendall(first)
        return s

    def tunnel_rows(self, port):
        """The tunnel flows to the origin tcp_origin made on port: not those
        of an earlier origin that had the same port (the system gives a
        port again; the first row then was an earlier test's flow, and the
        test read its sizes, once in CI)."""
        floor = self.floors.get(port, 0)
        return [x for x in self.reel.flows(r"~u ^tcp://127\.0\.0\.1:%d/$" % port)
                if x["kind"] == "tunnel" and x["id"] > floor]

    def tunnel_end(self, port, timeout=10):
        """The tunnel flow to port once it has ended, None if it has not
        within timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = self.tunnel_rows(port)
            if rows and rows[0]["state"] != "open":
                return rows[0]
            time.sleep(0.05)
        return None

    floors = {}  # port: the newest flow when tcp_origin made an origin on it

    def tcp_origin(self, serve, rcvbuf=None):
        """A raw TCP origin on 127.0.0.1 running serve(sock) for one
        connection in a thread; returns its port."""
        ls = socket.socket()
        if rcvbuf:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)

        def run_it():
            try:
                s, _ = ls.accept()
                s.settimeout(10)
                serve(s)
                s.close()
            except OSError:
                pass
            ls.close()
        threading.Thread(target=run_it, daemon=True).start()
        port = ls.getsockname()[1]
        rows = self.reel.flows()
        self.floors[port] = rows[-1]["id"] if rows else 0
        return port

    def test_raw_tunnel_not_delivered_is_an_error(self):
        """A raw CONNECT tunnel ends complete only once the client was
        given the origin's last bytes: one whose origin sent a burst and
        closed while the client stopped reading is an error saying how
        many bytes were still queued in reel when the client goes. It used
        to end complete. (As in test_websocket's undelivered test, the
        burst must be larger than the socket buffers, whose size the
        system decides, and small enough for reel to read the origin's end
        behind it (its queue stops reading near 1 MiB): sizes are tried in
        steps until one is both.)"""
        def burst_and_close(size):
            def serve(s):
                s.recv(100)
                s.sendall(bytes(size))
            return serve

        def all_read(port, size):
            # reel has read (and recorded) the whole burst: the origin's
            # end is right behind it
            deadline = time.time() + 3
            while time.time() < deadline:
                rows = self.tunnel_rows(port)
                if rows and rows[0]["response_body_size"] == size:
                    return True
                time.sleep(0.05)
            return False

        found = None
        for step in range(1, 25):
            size = step * (256 << 10)
            port = self.tcp_origin(burst_and_close(size))
            s = self.raw_tunnel(port, rcvbuf=4096)
            s.recv(1000)  # a little
            if not all_read(port, size):  # too big: reel's queue stopped it first
                s.close()
                break
            time.sleep(0.3)
            # the origin's end was passed on; the client has not closed
            self.assertEqual(self.tunnel_rows(port)[0]["state"], "open")
            s.close()  # unread bytes: a reset
            row = self.tunnel_end(port)
            self.assertIsNotNone(row)
            # complete with nothing left in reel (the kernel took it all)
            # is right: a bigger burst is tried
            if row["state"] == "complete":
                continue
            found = row
            break
        self.assertIsNotNone(found, "no burst size left bytes in reel's queue after the "
                             "origin's end (the flow always ended complete?)")
        self.assertEqual(found["state"], "error")
        self.assertRegex(found["error"], r"^client connection error: .* before the client "
                         r"received the whole tunnel \(\d+ bytes of the connection's output "
                         r"were still queued in reel\)$")
        unsent = int(found["error"].split("(")[1].split()[0])
        self.assertGreater(unsent, 0)
        self.assertLessEqual(unsent, size)
        # the same with a client that reads it all: complete
        port = self.tcp_origin(burst_and_close(size))
        s = self.raw_tunnel(port, rcvbuf=4096)
        got, how = read_all(s)
        self.assertEqual((len(got), how), (size, "eof"))
        s.close()
        row = self.tunnel_end(port)
        self.assertEqual(row["state"], "complete", row["error"])

    def test_raw_tunnel_not_delivered_to_the_server_is_an_error(self):
        """The other way: an origin that ended its side at once and does
        not read, a client that sends a burst and ends its side. The
        tunnel is over once reel has read the client's end; what is still
        queued for the origin then is not sent (its connection closes),
        and the flow is an error saying how much. It used to end
        complete. Burst sizes are tried in steps as above."""
        release = []

        def half_closed(s):
            s.shutdown(socket.SHUT_WR)
            ev = threading.Event()
            release.append(ev)
            ev.wait(10)

        found = None
        for step in range(1, 25):
            size = step * (256 << 10)
            port = self.tcp_origin(half_closed, rcvbuf=4096)
            s = self.raw_tunnel(port, first=None)
            burst = b"\x00\x01" + bytes(size - 2)

            def send(s=s, burst=burst):
                try:
                    s.sendall(burst)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            t = threading.Thread(target=send, daemon=True)
            t.start()
            row = self.tunnel_end(port, timeout=3)
            for ev in release:
                ev.set()
            s.close()
            t.join(10)
            if row is None:  # too big: reel's queue stopped it before the client's end
                break
            self.assertEqual(self.tunnel_rows(port)[0]["request_body_size"], size)
            if row["state"] == "complete":  # the kernel took it all
                continue
            found = row
            break
        self.assertIsNotNone(found, "no burst size left bytes in reel's queue for the origin "
                             "(the flow always ended complete?)")
        self.assertEqual(found["state"], "error")
        self.assertRegex(found["error"], r"^the server closed the connection before it received "
                         r"the whole tunnel \(\d+ bytes of the connection's output "
                         r"were still queued in reel\)$")
        unsent = int(found["error"].split("(")[1].split()[0])
        self.assertGreater(unsent, 0)
        self.assertLessEqual(unsent, size)

    def test_raw_tunnel_origin_reset_says_what_it_never_got(self):
        """An origin that accepts a raw tunnel, never reads (a small
        receive buffer) and resets its connection (SO_LINGER 0) once the
        client has sent a few MB: the flow's error says how many of the
        client's bytes were not delivered, those still queued in reel and
        those in the socket that the origin never acknowledged. It used
        to say only that the connection to the origin failed."""
        go = threading.Event()

        def never_read_then_reset(s):
            go.wait(10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        port = self.tcp_origin(never_read_then_reset, rcvbuf=4096)
        s = self.raw_tunnel(port, first=None)
        burst = b"\x00\x01" + bytes((4 << 20) - 2)

        def send():
            try:
                s.sendall(burst)
            except OSError:
                pass
        t = threading.Thread(target=send, daemon=True)
        t.start()
        # reel has read, relayed and recorded what it could: its queue for
        # the origin is full and it stopped reading the client
        last, deadline = -1, time.time() + 10
        while time.time() < deadline:
            time.sleep(0.3)
            rows = self.tunnel_rows(port)
            got = rows[0]["request_body_size"] if rows else 0
            if got > (1 << 20) and got == last:
                break
            last = got
        go.set()  # the origin closes with SO_LINGER 0: a reset
        row = self.tunnel_end(port)
        s.close()
        t.join(10)
        self.assertIsNotNone(row)
        self.assertEqual(row["state"], "error")
        m = re.match(r"^the connection to the origin failed: connection reset by peer \((\d+) "
                     r"of the bytes relayed from the client were not delivered: (\d+) still "
                     r"queued in reel, (\d+) in the socket not acknowledged by the origin\)$",
                     row["error"])
        self.assertIsNotNone(m, row["error"])
        total, queued, unsent = (int(x) for x in m.groups())
        self.assertEqual(total, queued + unsent)
        self.assertGreater(queued, 0)
        self.assertGreater(unsent, 0)
        # of what reel relayed (and recorded), the origin's kernel took
        # no more than its small window: the rest is counted
        self.assertLessEqual(total, row["request_body_size"])
        self.assertGreater(total, row["request_body_size"] - (512 << 10), (total, row))

    def test_hot_config(self):
        o, r = self.origin, self.reel
        r.set_config("set", "body_limit", "100")
        self.assertEqual(curl(r, o.url("/file1m?limited")).stdout, o.file1m)
        f = self.last_flow("~u limited")
        self.assertEqual(f["response_body_size"], 1 << 20)
        full = r.flow(f["id"])
        self.assertTrue(full["response"]["body_truncated"])
        self.assertEqual(body(full, "response"), o.file1m[:100])
        r.set_config("unset", "body_limit")

        before = len(r.flows())
        r.set_config("set", "capture", "off")
        self.assertEqual(curl(r, o.url("/100b?uncaptured")).stdout, b"x" * 99 + b"\n")
        r.set_config("set", "capture", "on")
        curl(r, o.url("/100b?captured"))
        self.last_flow("~u \\?captured")
        self.assertEqual(r.flows("~u uncaptured"), [])
        self.assertEqual(len(r.flows()), before + 1)

        r.set_config("set", "ignore_hosts", "localhost:%d" % o.https_port)
        try:
            # Passed through untouched: the client sees the origin's own certificate.
            out = run(["curl", "-sS", "--max-time", "20", "-x", r.proxy, "--cacert", o.ca,
                       o.url("/100b?ignored", https=True)]).stdout
            self.assertEqual(out, b"x" * 99 + b"\n")
        finally:
            r.set_config("unset", "ignore_hosts")
        # relayed, not recorded (test_truth checks the count in `reel show`)
        time.sleep(0.3)
        self.assertEqual([x for x in r.flows("~u localhost") if x["kind"] == "tunnel"], [])
        # the log names what changed: a hot option with the value in force,
        # one read at start as such, credentials never
        self.assertRegex(r.log(), r"applied config change \d+: capture=on\n")
        r.set_config("set", "segment_size", "8MiB")
        r.set_config("set", "proxyauth", "u:secret-pw")
        r.set_config("unset", "proxyauth")
        r.set_config("unset", "segment_size")
        log = r.log()
        self.assertRegex(log, r"config change \d+ to segment_size applies at the next start\n")
        self.assertRegex(log, r"applied config change \d+: proxyauth set\n")
        self.assertRegex(log, r"applied config change \d+: proxyauth off\n")
        self.assertNotIn("secret-pw", log)
        # read by reel export, not the proxy; a command (which may hold a
        # credential) not shown; the command line's value stays
        r.set_config("set", "redact_keys", "zzz")
        r.set_config("set", "on_segment_closed", "/bin/true --pw=hook-secret")
        r.set_config("unset", "on_segment_closed")
        r.set_config("set", "upstream_trusted_ca", self.origin.ca)
        r.set_config("unset", "redact_keys")
        r.set_config("unset", "upstream_trusted_ca")
        log = r.log()
        self.assertRegex(log, r"config change \d+: nothing the proxy reads\n")
        self.assertNotIn("redact_keys", log)
        self.assertRegex(log, r"applied config change \d+: on_segment_closed set\n")
        self.assertNotIn("hook-secret", log)
        self.assertRegex(log, r"config change \d+ to upstream_trusted_ca: the command line's "
                              r"value \(--set, --listen\) stays in force until the proxy stops")

    def test_body_limit_mark_kept_when_the_client_gives_up(self):
        """A client that gives up mid-body ends the flow in an error: the
        body body_limit cut is still marked cut (in --json, and by the text
        view's note), as it is for a flow that ends well; a gzip body cut so
        is not blamed on a broken stream."""
        o, r = self.origin, self.reel
        with open(os.path.join(o.www, "noise.txt"), "wb") as f:
            f.write(os.urandom(40 << 20))  # gzip cannot shrink it: the proxy is still reading
        r.set_config("set", "body_limit", "4k")
        try:
            for path, extra in (("/big?gaveup", []),
                                ("/noise.txt?gaveup", ["-H", "Accept-Encoding: gzip"])):
                curl(r, "--limit-rate", "1M", "--max-time", "0.5", "-o", os.devnull, *extra,
                     o.url(path), check=False)
        finally:
            r.set_config("unset", "body_limit")
        for path, gz in (("/big", False), ("/noise.txt", True)):
            # the flow ends when reel next writes to the gone client
            [f] = r.wait_flows(1, "~u %s\\?gaveup" % re.escape(path), timeout=30)
            self.assertEqual(f["state"], "error", f)
            full = r.flow(f["id"])["response"]
            size = full["body_size"]
            self.assertGreater(size, 4096)
            self.assertEqual((len(base64.b64decode(full["body_b64"])), full["body_truncated"]),
                             (4096, True))
            self.assertEqual(full["headers"].count(["Content-Encoding", "gzip"]), int(gz))
            text = r.cli("flow", r.session, str(f["id"])).stdout
            self.assertIn(b"(body truncated at 4096 of %d bytes by body_limit)\n" % size, text)
            self.assertNotIn(b"could not decode", text)
            har = json.loads(r.cli("export", r.session, "~id %d" % f["id"]).stdout)
            self.assertTrue(har["log"]["entries"][0]["_reel"]["response_truncated"])
        os.unlink(os.path.join(o.www, "noise.txt"))

    def test_flows_follow(self):
        """reel flows --follow lists each flow once, when it has ended: those
        before it started, one open then (listed when it ends), new ones;
        --json a line each, the filter applied."""
        o, r = self.origin, self.reel
        curl(r, o.url("/100b?follow-before"))
        self.reel.wait_flows(1, "~u follow-before$")
        # a request whose body is not all sent: its flow stays open
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345"
                  % o.url("/echo?follow-open").encode())
        self.reel.wait_flows(1, "~u follow-open$", timeout=0.5)
        proc = subprocess.Popen([REEL_BIN, "flows", "--follow", "--json", "main",
                                 "~u follow & !~u skip"], env=r.env, stdout=subprocess.PIPE)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            def urls(n):
                deadline = time.time() + 10
                while len(lines) < n and time.time() < deadline:
                    time.sleep(0.05)
                return [json.loads(l)["url"].rsplit("?", 1)[1] for l in lines]
            self.assertEqual(urls(1), ["follow-before"])
            for q in ("follow-1", "follow-skip", "follow-2"):
                curl(r, o.url("/100b?" + q))
            self.assertEqual(urls(3), ["follow-before", "follow-1", "follow-2"])
            s.sendall(b"67890")  # the open flow ends now
            self.assertIn(b"posted", s.recv(4096))
            curl(r, o.url("/100b?follow-3"))
            got = urls(5)
            self.assertEqual(sorted(got[3:]), ["follow-3", "follow-open"])
            time.sleep(0.6)  # nothing more, nothing twice
            self.assertEqual(len(lines), 5, lines)
        finally:
            s.close()
            proc.terminate()
            proc.wait(10)
            reader.join(10)
            proc.stdout.close()

    def test_session_files_private_from_the_first_run(self):
        """Every file of a new session is 0600 while its first run records,
        whatever the umask: SQLite made the index's -wal and -shm with the
        mode session.db had when it opened it, and reel set 0600 only after."""
        old = os.umask(0o022)
        try:
            r = Reel(self.root, "private", "upstream_trusted_ca=" + self.origin.ca)
        finally:
            os.umask(old)
        self.addCleanup(r.stop)
        curl(r, self.origin.url("/100b?private"))
        r.wait_flows(1)
        top = os.path.join(self.root, "home", "private")
        seen = {}
        for d, dirs, files in os.walk(top):
            for n in dirs + files:
                p = os.path.join(d, n)
                seen[os.path.relpath(p, top)] = stat.S_IMODE(os.lstat(p).st_mode)
        self.assertIn("session.db-wal", seen)
        self.assertIn("session.db-shm", seen)
        self.assertEqual({k: oct(v) for k, v in seen.items() if v & 0o077}, {})

    def test_annotate_tag_mark_while_recording(self):
        o, r = self.origin, self.reel
        curl(r, o.url("/100b?note"))
        f = self.last_flow("~u \\?note")
        r.cli("annotate", r.session, str(f["id"]), "seen live")
        r.cli("tag", r.session, str(f["id"]), "live")
        r.cli("mark", r.session, str(f["id"]))
        self.assertEqual([x["id"] for x in r.flows("~tag live & ~marked")], [f["id"]])
        self.assertIn(b"seen live", r.cli("annotate", r.session, str(f["id"])).stdout)
        # an option only reel export reads: nothing said of the running proxy
        out = r.cli("config", r.session, "set", "redact_keys", "pin").stdout
        self.assertNotIn(b"proxy", out)
        r.cli("config", r.session, "unset", "redact_keys")

    def test_large_download_keeps_rss_flat(self):
        # a proxy of its own with capture_buffer 16 MiB: records wait for
        # the disk in memory up to capture_buffer (256 MiB by default), so
        # on a loaded machine whose writer fell behind the peak was the
        # queue's (75 MiB once), not the proxy's
        o = self.origin
        r = Reel(self.root, "flat", "capture_buffer=16m")
        try:
            size = os.path.getsize(os.path.join(o.www, "big"))
            out = curl(r, "-o", "/dev/null", "-w", "%{size_download}", o.url("/big")).stdout
            self.assertEqual(int(out), size)
            with open("/proc/%d/status" % r.proc.pid) as f:
                hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) // 1024
            print("peak RSS of reel after a %d MiB download: %d MiB" % (size >> 20, hwm),
                  file=sys.stderr)
            if not SANITIZED:
                self.assertLess(hwm, 64)
            f = r.wait_flows(1, "~u /big$")[-1]
            self.assertEqual(f["response_body_size"], size)
        finally:
            self.assertEqual(r.stop(), 0, r.log())


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(TMPBASE, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="proxy-life.", dir=TMPBASE)
        self.origin = Origin(os.path.join(self.root, "origin"))

    def tearDown(self):
        self.origin.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def test_verify_failure_then_overlay_turns_it_off(self):
        o = self.origin
        r = Reel(self.root, "verify")  # the origin's CA is not trusted
        try:
            res = curl(r, "-o", "-", "-w", "\n%{http_code}", o.url("/100b", https=True), check=False)
            self.assertTrue(res.stdout.endswith(b"502"), res.stdout)
            self.assertIn(b"certificate verify failed", res.stdout)
            f = r.wait_flows(1)[-1]
            self.assertIn("upstream certificate verify failed", f["error"])
            r.set_config("set", "upstream_cert_verify", "false")
            self.assertEqual(curl(r, o.url("/100b", https=True)).stdout, b"x" * 99 + b"\n")
        finally:
            self.assertEqual(r.stop(), 0)
        # resume brings the overlay back
        r = Reel(self.root, "verify", resume=True)
        try:
            self.assertEqual(curl(r, o.url("/100b?resumed", https=True)).stdout, b"x" * 99 + b"\n")
            self.assertEqual(len(r.wait_flows(3)), 3)
            # verify beside the running recorder passes, and recording goes on
            live = r.cli("verify", "verify")
            self.assertEqual(live.returncode, 0, live.stderr)
            self.assertEqual(curl(r, o.url("/100b?after-verify", https=True)).returncode, 0)
            fs = r.wait_flows(4)
            self.assertEqual(len(fs), 4)
            # client connections are numbered on from the first run's, so
            # that ~conn N names one connection of the session
            conns = [f["client_conn"] for f in sorted(fs, key=lambda f: f["id"])]
            self.assertEqual(len(set(conns)), 4, conns)
            self.assertEqual(conns, sorted(conns), conns)
            ids = sorted(f["id"] for f in fs)
            one = json.loads(r.cli("flows", "verify", "--json", "~conn %d" % conns[1]).stdout)
            self.assertEqual([f["id"] for f in one], [ids[1]])
        finally:
            self.assertEqual(r.stop(signal.SIGTERM), 0)
        self.assertEqual(r.cli("verify", "verify").returncode, 0)
        # the index keeps each connection's range of flows (schema 11's
        # client_conns, what ~conn reads), and a repair makes it again
        want = [(c, i, i) for c, i in zip(conns, ids)]
        db = os.path.join(r.env["REEL_HOME"], "verify", "session.db")

        def ranges():
            with contextlib.closing(sqlite3.connect(db)) as con:
                return con.execute("SELECT conn, first_flow, last_flow FROM client_conns "
                                   "ORDER BY conn").fetchall()
        self.assertEqual(ranges(), want)
        # verify tells a range that misses flows, and a repair makes it again
        with contextlib.closing(sqlite3.connect(db)) as con:
            con.execute("UPDATE client_conns SET last_flow = last_flow - 1 WHERE conn = ?",
                        (conns[2],))
            con.commit()
        bad = r.cli("verify", "verify", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn(b"client_conns does not cover client connection %d's flows %d..%d"
                      % (conns[2], ids[2], ids[2]), bad.stdout + bad.stderr)
        self.assertEqual(r.cli("repair", "verify").returncode, 0)
        self.assertEqual(ranges(), want)
        self.assertEqual(r.cli("verify", "verify").returncode, 0)
        for conn, fid in zip(conns, ids):
            got = json.loads(r.cli("flows", "verify", "--json", "~conn %d" % conn).stdout)
            self.assertEqual([f["id"] for f in got], [fid], conn)

    def test_proxyauth_and_slow_heads(self):
        o = self.origin
        r = Reel(self.root, "auth", "proxyauth=alice:s3cret", "head_timeout=1")
        try:
            res = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", r.proxy,
                       o.url("/100b")], check=False)
            self.assertEqual(res.stdout, b"407")
            res = run(["curl", "-sS", "-x", r.proxy, "-U", "alice:wrong", o.url("/100b")], check=False)
            self.assertIn(b"proxy authentication required", res.stdout)
            res = run(["curl", "-sS", "-x", r.proxy, "-U", "alice:s3cret", o.url("/100b")])
            self.assertEqual(res.stdout, b"x" * 99 + b"\n")
            # HTTPS: the CONNECT carries the credentials.
            res = run(["curl", "-sS", "-x", r.proxy, "-U", "alice:s3cret", "--cacert", r.ca,
                       o.url("/100b", https=True)], check=False)
            self.assertEqual(res.returncode, 0)  # reaches the origin (verify failure is a 502 body)
            # A head dribbled too slowly is answered 408 and recorded.
            s = socket.create_connection(("127.0.0.1", r.port), 5)
            s.sendall(b"GET " + o.url("/100b").encode() + b" HTTP/1.1\r\nHost: a\r\n")
            s.settimeout(10)
            t0 = time.time()
            out = s.recv(65536)
            s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 408 "), out[:80])
            self.assertLess(time.time() - t0, 5)
            flows = r.wait_flows(5)
            self.assertTrue(any("head_timeout" in (f["error"] or "") for f in flows), flows)
            self.assertTrue(any("proxy authentication required" in (f["error"] or "") for f in flows))
            self.assertNotIn("s3cret", r.log())
        finally:
            self.assertEqual(r.stop(), 0)


if __name__ == "__main__":
    main()
