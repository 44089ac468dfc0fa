#!/usr/bin/python3
"""What a flow's record says must be what happened on the wire.

Issue 9, items 1-4 and 7: a refused Upgrade ends its flow; responses that
reel itself sent are recorded as responses (marked generated) beside the
error; a rejected request keeps its method, target and the headers read so
far; every proxied flow has its timings and server address; connections to
ignore_hosts are relayed but not recorded. Real clients (curl, sockets) and
a real origin (nginx).
"""
import base64
import os
import re
import socket
import tempfile
import threading
import time
import unittest

from proxyenv import (TMPBASE, Origin, Reel, body, connect, curl, free_port, main, raw, read_all,
                      run, stop_class)


class TruthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="truth.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "truth", "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def one(self, filt):
        flows = self.reel.wait_flows(1, filt)
        self.assertEqual(len(flows), 1, "%s: %s" % (filt, flows))
        return flows[0]

    @staticmethod
    def past_the_kernel():
        """A response size that fills the kernel's send buffer toward the
        client (autotuned up to about 3/4 of tcp_wmem's max on loopback)
        and leaves about 512 KB in reel's own queue, under the 1 MiB at
        which it stops reading the origin: reel reads it whole."""
        with open("/proc/sys/net/ipv4/tcp_wmem") as fh:
            return int(fh.read().split()[2]) * 3 // 4 + (512 << 10)

    def cancelled_download(self, name, size, half_close=False):
        """A client with a small receive buffer asks for `size` bytes, reads
        a little, waits until reel has surely read the whole response from
        nginx (queued toward the client), and closes: with unread bytes,
        close() resets the connection. half_close: shutdown(SHUT_WR) then
        (reel is waiting for its next request), as a client done sending
        does, and reads the rest."""
        with open(os.path.join(self.origin.www, name), "wb") as f:
            f.write(os.urandom(size))
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.reel.port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % self.origin.url("/" + name)).encode())
        got = s.recv(1000)
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got)
        time.sleep(0.5)  # reel has read it all from nginx by now
        if half_close:
            s.shutdown(socket.SHUT_WR)
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        s.close()
        return got

    def test_response_cancelled_by_the_client_is_not_complete(self):
        # reel read the whole response from nginx, the client took a few
        # KB and reset: not complete (it was, the end being recorded when
        # nginx's last byte was read)
        size = self.past_the_kernel()
        self.cancelled_download("cancelled", size)
        f = self.one("~u /cancelled$")
        self.assertEqual(f["response_body_size"], size)  # all of it came from nginx
        self.assertEqual(f["state"], "error", f)
        self.assertIn("before the client received the whole response", f["error"])
        full = self.reel.flow(f["id"])
        self.assertEqual(full["response"]["status"], 200)

    def test_half_closed_client_gets_the_rest_and_the_flow_completes(self):
        # the client's FIN after its request (keep-alive, no Connection:
        # close) with the answer still queued: reel sent the rest before it
        # closed (it used to close at once, dropping it)
        size = self.past_the_kernel()
        got = self.cancelled_download("halfclosed", size, half_close=True)
        self.assertTrue(got.endswith(open(os.path.join(self.origin.www, "halfclosed"), "rb").read()))
        f = self.one("~u /halfclosed$")
        self.assertEqual(f["state"], "complete", f)
        self.assertEqual(f["response_body_size"], size)

    def test_refused_upgrade_ends_the_flow(self):
        o, r = self.origin, self.reel
        # curl --http2 on http:// sends Upgrade: h2c; nginx answers a plain 200.
        t0 = time.time()
        out = curl(r, "--http2", o.url("/100b?h2c")).stdout
        self.assertEqual(out, b"x" * 99 + b"\n")
        f = self.one("~u h2c")
        self.assertEqual(f["state"], "complete", f)
        self.assertEqual(f["status"], 200)
        self.assertLess(time.time() - t0, 4)
        # The connection keeps working as HTTP after the refusal: two requests
        # on one connection, the first with an Upgrade.
        s = socket.create_connection(("127.0.0.1", r.port), 5)
        req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
               "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" %
               (o.url("/100b?upg1"), o.url("/100b?upg2"))).encode()
        s.sendall(req)
        s.settimeout(5)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        self.assertEqual(got.count(b"HTTP/1.1 200 OK"), 2, got)
        for q in ("upg1", "upg2"):
            self.assertEqual(self.one("~u " + q)["state"], "complete")

    def test_generated_responses_are_recorded(self):
        r = self.reel
        dead = free_port()
        res = curl(r, "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:%d/gone" % dead,
                   check=False)
        self.assertTrue(res.stdout.endswith(b"502"), res.stdout)
        f = self.one("~u :%d/gone" % dead)
        self.assertEqual(f["state"], "error")
        self.assertEqual(f["status"], 502)
        self.assertIn("connection refused", f["error"])
        full = r.flow(f["id"])
        self.assertTrue(full["response"]["generated"], full["response"])
        self.assertEqual(full["response"]["status"], 502)
        self.assertIn(b"connection refused", body(full, "response"))
        self.assertIn(["Connection", "close"], full["response"]["headers"])
        # ~c finds it
        self.assertIn(f["id"], [x["id"] for x in r.flows("~c 502")])

        # 400 for garbage: recorded with its status, what was read of it kept
        self.assertTrue(raw(r.port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        self.assertTrue([x for x in r.wait_flows(1, "~c 400") if x["state"] == "error"])

    def test_rejected_request_keeps_what_was_read(self):
        o, r = self.origin, self.reel
        out = raw(r.port, b"GET " + o.url("/100b?toolarge").encode() + b" HTTP/1.1\r\n"
                  b"Host: big.example\r\nX-First: one\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])
        f = self.one("~u toolarge")
        self.assertEqual(f["method"], "GET")
        self.assertEqual(f["status"], 431)
        self.assertEqual(f["state"], "error")
        full = r.flow(f["id"])
        names = [h[0] for h in full["request"]["headers"]]
        self.assertEqual(names[:2], ["Host", "X-First"], names)
        self.assertEqual(full["request"]["host"], "127.0.0.1")
        self.assertTrue(full["response"]["generated"])
        # A request line too long is kept too, cut short.
        out = raw(r.port, b"GET http://longline.example/" + b"p" * 70000 + b" HTTP/1.1\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:100])
        f = self.one("~u longline")
        self.assertEqual((f["method"], f["status"]), ("GET", 431))
        self.assertTrue(f["url"].startswith("http://longline.example/ppp"), f["url"][:80])

    def test_requests_behind_a_refused_head_are_recorded(self):
        # A request refused for what its head says (no Host, two Hosts, an
        # origin-form target at a proxy) still says where it ends: reel
        # answers 400 and closes, so the requests pipelined behind it were
        # read and never answered, and each is a flow saying so, as behind
        # a 502. The refused request's own body is its flow's. The first
        # case's head comes in two reads (the second read holds its end).
        o, r = self.origin, self.reel
        behind = (b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                  b"GET %s HTTP/1.1\r\nHost: a\r\n\r\nGET /partial HT")
        for name, first, why in (
                ("nohost", [b"POST /nohost HTTP/1.1\r\nContent-Len",
                            b"gth: 4\r\n\r\nbody"], "missing Host header"),
                ("twohosts", [b"GET %s HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
                              % o.url("/twohosts").encode()], "duplicate Host header"),
                ("originform", [b"GET /originform HTTP/1.1\r\nHost: a\r\n\r\n"],
                 "this is a proxy")):
            s = connect(r.port, 10)
            for part in first[:-1]:
                s.sendall(part)
                time.sleep(0.2)
            s.sendall(first[-1] + behind % (o.url("/echo?%s=2" % name).encode(),
                                            o.url("/100b?%s=3" % name).encode()))
            out, how = read_all(s)
            s.close()
            # on the wire: one 400, then the close
            self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
            self.assertEqual(len(re.findall(rb"HTTP/1.1 \d+", out)), 1, out)
            self.assertEqual(how, "eof")
            refused = self.one("~u /%s" % name)
            self.assertEqual((refused["status"], refused["state"]), (400, "error"), refused)
            self.assertIn(why, refused["error"])
            fs = r.wait_flows(2, "~u %s=" % name)
            self.assertEqual(len(fs), 2, fs)
            for f in fs:
                self.assertEqual(f["state"], "error", f)
                self.assertEqual(f["error"], "not answered: reel closed the connection after "
                                 "its 400 answer to the request before", f)
                self.assertIsNone(f["status"])
                self.assertEqual(f["client_conn"], refused["client_conn"])
            post = r.flow(fs[0]["id"])
            self.assertEqual((post["request"]["method"], body(post, "request")), ("POST", b"abc"))
            self.assertEqual(fs[1]["method"], "GET")
        self.assertEqual(body(r.flow(self.one("~u /nohost")["id"]), "request"), b"body")
        self.assertFalse(r.flows("~u partial"))
        # A refused request whose body is still coming: what follows it is
        # that body, not requests.
        s = connect(r.port, 10)
        s.sendall(b"POST /cut HTTP/1.1\r\nContent-Length: 100\r\n\r\n" +
                  b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % o.url("/100b?cut=1").encode())
        out, _ = read_all(s)
        s.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
        self.one("~u /cut")
        time.sleep(0.3)
        self.assertFalse(r.flows("~u cut="))

    def test_timings_and_server_address(self):
        o, r = self.origin, self.reel
        # a fresh client connection: the first request opens the upstream
        curl(r, o.url("/file1m?t1"), o.url("/100b?t2"))
        first, second = self.one("~u t1"), self.one("~u t2")
        for f in (first, second):
            self.assertEqual(f["server_addr"], "127.0.0.1:%d" % o.http_port, f)
            self.assertIsNotNone(f["response_start_us"], f)
            self.assertIsNotNone(f["request_end_us"], f)
            self.assertLessEqual(f["start_us"], f["request_end_us"])
            self.assertLessEqual(f["request_end_us"], f["response_start_us"])
            self.assertLessEqual(f["response_start_us"], f["end_us"])
        t1 = r.flow(first["id"])["timings"]
        t2 = r.flow(second["id"])["timings"]
        self.assertGreaterEqual(t1["connect_us"], 0, t1)
        self.assertGreaterEqual(t1["dns_us"], 0, t1)
        self.assertEqual(t1["ssl_us"], -1, t1)
        for k in ("send_us", "wait_us", "receive_us"):
            self.assertGreaterEqual(t1[k], 0, t1)
            self.assertGreaterEqual(t2[k], 0, t2)
        # the second request reused the connection: no connect of its own
        self.assertEqual(t2["connect_us"], -1, t2)
        # HTTPS: the TLS handshake with the origin is timed
        curl(r, "--http1.1", o.url("/100b?t3", https=True))
        f3 = self.one("~u t3")
        t3 = r.flow(f3["id"])["timings"]
        self.assertGreaterEqual(t3["ssl_us"], 0, t3)
        self.assertGreaterEqual(t3["connect_us"], 0, t3)
        # the phases fit in the flow (it starts when its head came, where
        # they start; it started later, after asking for the connection)
        self.assertLessEqual(sum(v for v in t3.values() if v > 0), f3["duration_us"], (t3, f3))
        # ... unless the connection was set up before the request came: a
        # client offering h2 makes reel ask the origin first (the ALPN
        # probe, during the client's own handshake), and the request that
        # then uses that connection did not wait for it; its phases, which
        # add up to the flow's duration, have no set-up
        curl(r, "--http2", o.url("/100b?t4", https=True))
        f4 = self.one("~u t4")
        t4 = r.flow(f4["id"])["timings"]
        self.assertEqual((t4["dns_us"], t4["connect_us"], t4["ssl_us"]), (-1, -1, -1), t4)
        self.assertLessEqual(sum(v for v in t4.values() if v > 0), f4["duration_us"] + 1, t4)
        # shown for people by `reel flow`
        shown = r.cli("flow", r.session, str(first["id"])).stdout.decode()
        self.assertIn("connect", shown)
        self.assertIn("wait", shown)

    def test_every_flow_says_how_its_connection_was_set_up(self):
        """A flow's server_conn says what setting up its upstream connection
        took (opened_us, dns_us, connect_us, ssl_us), also when the flow's
        own timings count none of it: on a reused connection, and on the
        one reel set up before the request came to learn the origin's ALPN.
        A reel of its own, which has not yet asked this origin its ALPN."""
        o = self.origin
        r = Reel(self.root, "setup", "upstream_trusted_ca=" + o.ca)
        self.addCleanup(r.stop)
        keys = ("opened_us", "dns_us", "connect_us", "ssl_us")

        def full(q):
            [f] = r.wait_flows(1, "~u " + q)
            d = r.flow(f["id"])
            return f, d["timings"], d["server_conn"]

        def setup(sc):
            return tuple(sc[k] for k in keys)

        def fresh(f, t, sc, tls):
            """set up for this flow: the flow's phases are those of its
            connection, all of them inside the flow"""
            self.assertFalse(sc["reused"], sc)
            self.assertGreater(sc["opened_us"] or 0, 0, sc)
            # opened once the flow had started (the flow starts before it
            # asks for its connection: started after, it began a moment
            # into the set-up, and its timings cut the phases there), and
            # set up before the flow ended
            self.assertGreaterEqual(sc["opened_us"], f["start_us"], (sc, f))
            self.assertLessEqual(sc["opened_us"] - f["start_us"], 1000000, (sc, f))
            self.assertGreaterEqual(sc["dns_us"], 0, sc)
            self.assertGreaterEqual(sc["connect_us"], 0, sc)
            if tls:
                self.assertGreaterEqual(sc["ssl_us"], 0, sc)
            else:
                self.assertEqual(sc["ssl_us"], -1, sc)
            self.assertLessEqual(sc["opened_us"] + sum(max(v, 0) for v in setup(sc)[1:]),
                                 f["end_us"], (sc, f))
            for k in keys[1:]:
                self.assertEqual(sc[k], t[k], (sc, t))
            # nothing shown as "begun before this flow"
            shown = r.cli("flow", r.session, str(f["id"]), "--headers-only").stdout.decode()
            self.assertIn("~ connection set up: ", shown)
            self.assertNotIn("before this flow", shown)

        # plain HTTP: a fresh connection, then reused by the next request
        curl(r, o.url("/100b?s1"), o.url("/100b?s2"))
        f1, t1, sc1 = full("s1")
        f2, t2, sc2 = full("s2")
        fresh(f1, t1, sc1, tls=False)
        self.assertTrue(sc2["reused"], sc2)
        self.assertEqual(t2["connect_us"], -1, t2)
        self.assertEqual((sc2["conn_id"], setup(sc2)), (sc1["conn_id"], setup(sc1)), (sc1, sc2))
        # HTTPS through CONNECT, the connection opened for the request
        curl(r, "--http1.1", o.url("/100b?s3", https=True))
        f3, t3, sc3 = full("s3")
        fresh(f3, t3, sc3, tls=True)
        # a client offering h2: reel set the connection up during the
        # client's handshake (the ALPN probe), before the request came; the
        # flow's timings have no set-up, its server_conn has it all
        curl(r, "--http2", o.url("/100b?s4", https=True), o.url("/100b?s5", https=True))
        f4, t4, sc4 = full("s4")
        f5, t5, sc5 = full("s5")
        self.assertEqual((t4["dns_us"], t4["connect_us"], t4["ssl_us"]), (-1, -1, -1), t4)
        self.assertNotEqual(sc4["conn_id"], sc3["conn_id"], (sc3, sc4))
        self.assertGreater(sc4["opened_us"] or 0, 0, sc4)
        for k in keys[1:]:
            self.assertGreaterEqual(sc4[k], 0, sc4)
        self.assertLessEqual(sc4["opened_us"] + sum(setup(sc4)[1:]), f4["start_us"], (sc4, f4))
        # ... and the next request on it says the same
        self.assertTrue(sc5["reused"], sc5)
        self.assertEqual((sc5["conn_id"], setup(sc5)), (sc4["conn_id"], setup(sc4)), (sc4, sc5))
        # shown for people by `reel flow`
        shown = r.cli("flow", r.session, str(f4["id"]), "--headers-only").stdout.decode()
        self.assertRegex(shown, r"~ connection set up: dns [^,]+, connect [^,]+, ssl [^,]+, "
                                r"begun [0-9.]+ [mu]?s before this flow", shown)
        shown = r.cli("flow", r.session, str(f1["id"]), "--headers-only").stdout.decode()
        self.assertRegex(shown, r"~ connection set up: dns [^,]+, connect [^,]+, begun ", shown)
        self.assertNotIn("ssl", shown.split("~ connection set up:")[1].split("\n")[0])

    def raw_origin(self, handler):
        """A one-connection origin on an ephemeral port running
        handler(conn, head) after reading the request head; returns (port,
        thread)."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)

        def serve():
            try:
                conn, _ = srv.accept()
                conn.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head:
                    d = conn.recv(1)
                    if not d:
                        return
                    head += d
                handler(conn, head)
                conn.close()
            finally:
                srv.close()
        t = threading.Thread(target=serve)
        t.start()
        return srv.getsockname()[1], t

    def test_timings_do_not_overlap_when_the_response_comes_first(self):
        # The response starts before the request ends: a 100 Continue at
        # once and the body 0.5 s later, or an early 401 before the body.
        # The phases follow one another: they add up to the flow's
        # duration, receive counted from the request's end (receive used
        # to start at the 100, overlapping send: 502 + 0 + 601 ms for a
        # 603 ms flow).
        def recv_n(conn, n):
            got = b""
            while len(got) < n:
                d = conn.recv(n - len(got))
                if not d:  # the client gone (a failed check): no spinning
                    break
                got += d
            return got

        def continue_then_ok(conn, head):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            recv_n(conn, 5)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.recv(100)

        def early_401(conn, head):
            conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nno!\n")
            recv_n(conn, 5)
            conn.recv(100)
        for name, handler, want in (("continue", continue_then_ok, b"HTTP/1.1 100"),
                                    ("early401", early_401, b"HTTP/1.1 401")):
            port, t = self.raw_origin(handler)
            s = connect(self.reel.port)
            s.sendall(b"POST http://127.0.0.1:%d/%s HTTP/1.1\r\nHost: a\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
                      % (port, name.encode()))
            self.assertTrue(s.recv(100).startswith(want))
            if name == "early401":
                # while the upload goes on, the index has the response's
                # start and no request end (it used to take the head's
                # time for one)
                deadline = time.time() + 5
                while time.time() < deadline:
                    fl = self.reel.flows("~u :%d/%s$" % (port, name))
                    if fl and fl[0]["response_start_us"]:
                        break
                    time.sleep(0.05)
                self.assertEqual((fl[0]["state"], fl[0]["request_end_us"]), ("open", None), fl)
            time.sleep(0.5)
            s.sendall(b"hello")
            time.sleep(0.1)
            s.close()
            t.join(10)
            f = self.one("~u :%d/%s$" % (port, name))
            tm = self.reel.flow(f["id"])["timings"]
            phases = [tm[k] for k in ("blocked_us", "dns_us", "connect_us", "ssl_us", "send_us",
                                      "wait_us", "receive_us")]
            total = sum(p for p in phases if p > 0)
            duration = f["end_us"] - f["start_us"]
            self.assertGreater(duration, 450000, f)
            self.assertLess(abs(total - duration), 20000, (name, tm, duration))
            self.assertGreater(tm["send_us"], 400000, tm)  # the body came 0.5 s later
            self.assertEqual(tm["wait_us"], 0, tm)
            self.assertIsNotNone(f["request_end_us"], f)

    def test_client_that_ends_its_side_while_waiting(self):
        # The client ends its side while the origin says nothing: a
        # half-close, or a client gone (curl --max-time), which reel cannot
        # tell apart; it waits on, as for a half-close. The flow said reel
        # answered 504 and no more, as if someone had read it.
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        reel = Reel(self.root, "ended", "upstream_timeout=1")
        try:
            s = connect(reel.port)
            s.sendall(b"GET http://127.0.0.1:%d/ended HTTP/1.1\r\nHost: a\r\n\r\n" % port)
            time.sleep(0.3)
            s.shutdown(socket.SHUT_WR)
            out, how = read_all(s)
            s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 504"), out)  # (a half-close reads it)
            fl = reel.wait_flows(1, "~u /ended", timeout=5)
            self.assertEqual(len(fl), 1, fl)
            self.assertRegex(fl[0]["error"], r"^127\.0\.0\.1:%d sent no response for 1s "
                             r"\(upstream_timeout\); the client had ended its side of the "
                             r"connection 0\.\d s before, while it waited for the response \(it "
                             r"may have left: reel's answer may have reached no one\)$" % port)
        finally:
            srv.close()
            self.assertEqual(reel.stop(), 0, reel.log())

    def test_timings_of_a_failed_tls_handshake_add_up(self):
        # The origin takes the ClientHello and closes 0.5 s later: the
        # handshake's time was left out of the phases (ssl -1), which then
        # added up to a millisecond of a 500 ms flow (HAR's time too)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        port = srv.getsockname()[1]

        def stall():
            try:
                c, _ = srv.accept()
                c.recv(65536)
                time.sleep(0.5)
                c.close()
            finally:
                srv.close()
        t = threading.Thread(target=stall)
        t.start()
        r = curl(self.reel, "--http1.1", "https://127.0.0.1:%d/tlsfail" % port, check=False)
        t.join(10)
        self.assertEqual(r.stdout, b"reel: upstream TLS handshake failed: unexpected eof while "
                         b"reading\n")
        f = self.one("~u :%d/tlsfail$" % port)
        self.assertEqual(f["status"], 502, f)
        tm = self.reel.flow(f["id"])["timings"]
        total = sum(tm[k] for k in ("blocked_us", "dns_us", "connect_us", "ssl_us", "send_us",
                                    "wait_us", "receive_us") if tm[k] > 0)
        duration = f["end_us"] - f["start_us"]
        self.assertGreater(duration, 450000, f)
        self.assertGreater(tm["ssl_us"], 450000, tm)
        self.assertLess(abs(total - duration), 20000, (tm, duration))

    def test_origin_gone_before_the_flow_ends_keeps_its_address(self):
        # The origin answers 413 with Connection: close at once and closes
        # while the client still sends its body: the flow ends after the
        # upstream connection is gone, and keeps its address and set-up
        # timings (they were read from the live connection only, and lost)
        def early_413(conn, head):
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n"
                         b"Connection: close\r\n\r\nbig\n")
        port, t = self.raw_origin(early_413)
        s = connect(self.reel.port)
        s.sendall(b"POST http://127.0.0.1:%d/early413 HTTP/1.1\r\nHost: a\r\n"
                  b"Content-Length: 100\r\n\r\n" % port)
        time.sleep(0.3)
        try:
            s.sendall(b"z" * 100)
        except OSError:
            pass
        out, _ = read_all(s)
        s.close()
        t.join(10)
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out)
        f = self.one("~u :%d/early413$" % port)
        self.assertEqual(f["status"], 413, f)
        self.assertEqual(f["server_addr"], "127.0.0.1:%d" % port, f)
        full = self.reel.flow(f["id"])
        self.assertEqual(full["server_conn"]["address"], "127.0.0.1:%d" % port, full)
        tm = full["timings"]
        self.assertGreaterEqual(tm["dns_us"], 0, tm)
        self.assertGreaterEqual(tm["connect_us"], 0, tm)
        self.assertGreaterEqual(tm["blocked_us"], 0, tm)
        shown = self.reel.cli("flow", self.reel.session, str(f["id"])).stdout.decode()
        self.assertIn("server: 127.0.0.1:%d" % port, shown)

    def test_final_answer_to_expect_100_continue_is_complete(self):
        # curl sends Expect: 100-continue with a 3 MB body; the origin
        # answers 413 at once (keeping the connection, or closing it).
        # curl reads the 413, sends no body and closes, as RFC 9110 10.1.1
        # allows: the exchange is complete, its request body 0 bytes (it
        # was recorded as the client closing during the request).
        big = os.path.join(self.root, "big3m")
        with open(big, "wb") as fh:
            fh.write(b"b" * 3000000)
        for close in (False, True):
            def answer_413(conn, head, close=close):
                conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n" +
                             (b"Connection: close\r\n" if close else b"") + b"\r\nbig\n")
                if not close:
                    while conn.recv(65536):
                        pass
            port, t = self.raw_origin(answer_413)
            name = "xc-413-" + ("close" if close else "keep")
            r = curl(self.reel, "-o", "/dev/null", "-w", "%{http_code}", "--data-binary",
                     "@" + big, "http://127.0.0.1:%d/%s" % (port, name))
            self.assertEqual(r.stdout, b"413", r)
            t.join(10)
            f = self.one("~u :%d/%s$" % (port, name))
            self.assertEqual((f["state"], f["status"]), ("complete", 413), f)
            full = self.reel.flow(f["id"])
            self.assertIn(b"100-continue", repr(full["request"]["headers"]).encode())
            self.assertEqual(full["request"]["body_size"], 0, full["request"])
            self.assertIsNone(full["request_end_us"], full)  # the request never ended

    def test_early_answer_with_close_ends_the_connection(self):
        # The client announces 3 MB, sends 100 KB and reads; the origin
        # answers 413 at once, with Connection: close or without, and
        # closes. The client gets the 413 and then the end of the
        # connection (it used to wait until it gave up, the flow an error
        # "client closed the connection during the request" whose receive
        # ran until then).
        for say_close in (True, False):
            def early_413(conn, head, say_close=say_close):
                conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n" +
                             (b"Connection: close\r\n" if say_close else b"") + b"\r\nbig\n")
                time.sleep(0.05)
            port, t = self.raw_origin(early_413)
            name = "earlyclose" if say_close else "earlygone"
            s = connect(self.reel.port, timeout=6)
            t0 = time.time()
            s.sendall(b"POST http://127.0.0.1:%d/%s HTTP/1.1\r\nHost: a\r\n"
                      b"Content-Length: 3000000\r\n\r\n" % (port, name.encode()) +
                      b"a" * 100000)
            out, how = read_all(s)
            took = time.time() - t0
            s.close()
            t.join(10)
            self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out)
            self.assertTrue(out.endswith(b"\r\n\r\nbig\n"), out)
            if say_close:
                self.assertIn(b"\r\nConnection: close\r\n", out)
            self.assertEqual(how, "eof", (name, how, took))
            self.assertLess(took, 3, name)
            f = self.one("~u :%d/%s$" % (port, name))
            self.assertEqual((f["state"], f["status"]), ("complete", 413), f)
            full = self.reel.flow(f["id"])
            self.assertLessEqual(full["request"]["body_size"], 100000, full["request"])
            self.assertIsNone(full["request_end_us"], full)
            # receive ends with the origin, not when the client went
            self.assertLess(full["timings"]["receive_us"], 1000000, full["timings"])

    def test_http10_client_gets_no_interim_responses(self):
        # RFC 9110 15.2: no 1xx to an HTTP/1.0 client. The origin's 103 and
        # 100 are recorded as it sent them; only an HTTP/1.1 client gets them.
        def hints(conn, head):
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        for ver in ("1.0", "1.1"):
            port, t = self.raw_origin(hints)
            name = "hints-http" + ver
            out = raw(self.reel.port, b"GET http://127.0.0.1:%d/%s HTTP/%s\r\nHost: a\r\n\r\n"
                      % (port, name.encode(), ver.encode()))
            t.join(10)
            if ver == "1.0":
                self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
            else:
                self.assertTrue(out.startswith(b"HTTP/1.1 103 Early Hints\r\n"), out)
            self.assertTrue(out.endswith(b"\r\n\r\nok"), out)
            f = self.one("~u :%d/%s$" % (port, name))
            self.assertEqual((f["state"], f["status"]), ("complete", 200), f)
            full = self.reel.flow(f["id"])
            self.assertEqual([i["status"] for i in full["interim"] or []], [103, 100], full)

    def test_http10_client_gets_no_chunked_coding(self):
        # RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client, which
        # would keep the chunk-size lines as body bytes. The origin answers
        # chunked with a trailer (as an HTTP/2 origin's answer is made
        # chunked by reel): the 1.0 client gets the body alone, ended by the
        # close; the record keeps what the origin sent.
        def chunked(conn, head):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
                         b"\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
        for ver in ("1.0", "1.1"):
            port, t = self.raw_origin(chunked)
            name = "chunked-http" + ver
            s = connect(self.reel.port)
            s.sendall(b"GET http://127.0.0.1:%d/%s HTTP/%s\r\nHost: a\r\n"
                      b"Connection: keep-alive\r\n\r\n" % (port, name.encode(), ver.encode()))
            out, how = b"", "eof"
            while not out.endswith(b"X-Sum: 42\r\n\r\n"):  # (the 1.1 one stays open)
                d = s.recv(65536)
                if not d:
                    break
                out += d
            else:
                how = "open"
            s.close()
            t.join(10)
            head, _, body = out.partition(b"\r\n\r\n")
            if ver == "1.0":
                self.assertEqual(how, "eof", out)
                self.assertNotIn(b"Transfer-Encoding", head)
                self.assertNotIn(b"Trailer", head)
                self.assertIn(b"\r\nConnection: close", head)
                self.assertEqual(body, b"hello world")
            else:
                self.assertIn(b"\r\nTransfer-Encoding: chunked", head)
                self.assertTrue(body.startswith(b"5;ext=1\r\nhello\r\n"), body)
            f = self.one("~u :%d/%s$" % (port, name))
            self.assertEqual((f["state"], f["status"]), ("complete", 200), f)
            full = self.reel.flow(f["id"])
            self.assertEqual(full["response_trailers"], [["X-Sum", "42"]], full)
            self.assertEqual(full["response"]["body_size"], 11, full["response"])
        # nor the fields of a chunked answer to HEAD, which has no body
        port, t = self.raw_origin(lambda conn, head: conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"))
        out = raw(self.reel.port, b"HEAD http://127.0.0.1:%d/head10 HTTP/1.0\r\nHost: a\r\n\r\n"
                  % port)
        t.join(10)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
        self.assertNotIn(b"Transfer-Encoding", out)
        self.assertNotIn(b"Trailer", out)

    def test_connect_inside_a_plain_tunnel(self):
        # refused (400) and recorded, its URL the tunnel's origin: it was
        # "https://HOST:PORTHOST:PORT", the authority form taken for a path
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        s = connect(self.reel.port)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        out, _ = read_all(s)
        s.close()
        srv.close()
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out)
        fl = [f for f in self.reel.wait_flows(1, "~u 127.0.0.1:%d" % port) if f["status"] == 400]
        self.assertEqual([f["url"] for f in fl], ["http://127.0.0.1:%d/" % port], fl)

    def test_tunnel_flow_shows_its_host(self):
        # a tunnel that is not TLS nor HTTP: recorded raw; shown with host:port
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        s = socket.create_connection(("127.0.0.1", self.reel.port), 5)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        s.settimeout(5)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
        s.sendall(b"\x00\x01binary hello")
        conn, _ = srv.accept()
        self.assertEqual(conn.recv(100), b"\x00\x01binary hello")
        conn.close()
        s.close()
        srv.close()
        f = [x for x in self.reel.wait_flows(1, "~u tcp://127.0.0.1:%d" % port)
             if x["kind"] == "tunnel"]
        self.assertTrue(f)
        shown = self.reel.cli("flow", self.reel.session, str(f[0]["id"])).stdout.decode()
        self.assertIn("CONNECT 127.0.0.1:%d" % port, shown)
        self.assertIsNotNone(f[0]["server_addr"], f[0])
        # the 200 reel answered the CONNECT with is the flow's response
        full = self.reel.flow(f[0]["id"])
        self.assertEqual(full["response"]["status"], 200, full)
        self.assertTrue(full["response"]["generated"])
        self.assertIn("200 Connection established", shown)

    def connect_echo(self, version, fields):
        """A CONNECT (version, fields) to a one-shot echo server, one
        message through it: the tunnel flow, in full."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        port = srv.getsockname()[1]

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(10)
            conn.sendall(b"echo:" + conn.recv(100))
            conn.recv(100)  # until the client closes
            conn.close()
        t = threading.Thread(target=serve)
        t.start()
        s = socket.create_connection(("127.0.0.1", self.reel.port), 5)
        s.settimeout(10)
        s.sendall(b"CONNECT 127.0.0.1:%d %s\r\n%s\r\n" % (
            port, version, b"".join(b"%s: %s\r\n" % f for f in fields)))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        s.sendall(b"\x00\x01hi")
        self.assertEqual(s.recv(100), b"echo:\x00\x01hi")
        s.close()
        t.join(10)
        srv.close()
        f = self.reel.wait_flows(1, "~u tcp://127.0.0.1:%d" % port)
        self.assertEqual(len(f), 1, f)
        self.assertEqual(f[0]["kind"], "tunnel", f)
        return self.reel.flow(f[0]["id"])

    def test_tunnel_flow_keeps_the_connects_fields(self):
        # the record is the CONNECT the client sent: its version and every
        # field (it had only the authority and "HTTP/1.1")
        fields = [(b"Host", b"127.0.0.1"), (b"User-Agent", b"truth-test/1.0"),
                  (b"Proxy-Authorization", b"Basic dXNlcjpzZWNyZXQ="),
                  (b"X-Empty", b"")]
        full = self.connect_echo(b"HTTP/1.1", fields)
        rq = full["request"]
        self.assertEqual(rq["method"], "CONNECT", rq)
        self.assertEqual(rq["http_version"], "HTTP/1.1", rq)
        self.assertEqual([tuple(h) for h in rq["headers"]],
                         [(n.decode(), v.decode()) for n, v in fields], rq)
        shown = self.reel.cli("flow", self.reel.session, str(full["id"])).stdout.decode()
        self.assertIn("User-Agent: truth-test/1.0", shown)
        # an HTTP/1.0 CONNECT is recorded as one; the answer stays reel's 1.1
        full = self.connect_echo(b"HTTP/1.0", [(b"User-Agent", b"old-client/0.9")])
        self.assertEqual(full["request"]["http_version"], "HTTP/1.0", full["request"])
        self.assertEqual([tuple(h) for h in full["request"]["headers"]],
                         [("User-Agent", "old-client/0.9")])
        self.assertEqual(full["response"]["http_version"], "HTTP/1.1", full["response"])

    def test_tunnel_passes_the_servers_half_close_on(self):
        # the server half-closes a plain TCP tunnel; the client reads its
        # EOF and still sends: relayed and recorded (reel used to close the
        # client at the server's EOF, and the client's send broke)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        got = []

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(10)
            got.append(conn.recv(100))
            conn.sendall(b"bye from server")
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                b = conn.recv(100)
                if not b:
                    break
                data += b
            got.append(data)
            conn.close()
        t = threading.Thread(target=serve)
        t.start()
        s = socket.create_connection(("127.0.0.1", self.reel.port), 5)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        s.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        s.sendall(b"\x00\x01hello")
        data = b""
        while True:
            b = s.recv(100)
            if not b:
                break
            data += b
        self.assertEqual(data, b"bye from server")
        s.sendall(b"\x00\x02after the server's EOF")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(s.recv(100), b"")
        s.close()
        t.join(10)
        srv.close()
        self.assertEqual(got, [b"\x00\x01hello", b"\x00\x02after the server's EOF"])
        f = self.reel.wait_flows(1, "~u tcp://127.0.0.1:%d" % port)
        deadline = time.time() + 10
        while True:
            full = self.reel.flow(f[0]["id"])
            sent = b"".join(base64.b64decode(m["data_b64"]) for m in full["messages"] or []
                            if m["from_client"])
            if full["state"] != "open" or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(sent, b"\x00\x01hello\x00\x02after the server's EOF")
        self.assertEqual(full["state"], "complete", full.get("error"))

    def test_unreachable_tunnel_says_it_was_answered_200(self):
        # the client of a raw tunnel is told 200 before reel knows what the
        # tunnel carries; the host is unreachable: the record says both
        port = free_port()
        s = socket.create_connection(("127.0.0.1", self.reel.port), 5)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        s.settimeout(10)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 200"))
        s.sendall(b"\x00\x01not tls nor http")
        self.assertEqual(s.recv(100), b"")  # closed: nothing to connect to
        s.close()
        f = self.reel.wait_flows(1, "~u tcp://127.0.0.1:%d" % port)
        full = self.reel.flow(f[0]["id"])
        self.assertEqual(full["response"]["status"], 200, full)
        self.assertTrue(full["response"]["generated"])
        self.assertIn("cannot connect to 127.0.0.1:%d" % port, full["error"])

    def test_ignored_hosts_are_not_recorded(self):
        o, r = self.origin, self.reel
        before = len(r.flows())
        r.set_config("set", "ignore_hosts", "localhost:%d" % o.https_port)
        try:
            out = run(["curl", "-sS", "--max-time", "20", "-x", r.proxy, "--cacert", o.ca,
                       o.url("/100b?ignored", https=True)]).stdout
            self.assertEqual(out, b"x" * 99 + b"\n")
            # an ignored host that cannot be reached: 502 to the CONNECT, not a 200
            dead = free_port()
            r.set_config("set", "ignore_hosts",
                         "localhost:%d,127.0.0.1:%d" % (o.https_port, dead))
            got = raw(r.port, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % dead)
            self.assertTrue(got.startswith(b"HTTP/1.1 502 "), got[:100])
        finally:
            r.set_config("unset", "ignore_hosts")
        time.sleep(0.3)
        self.assertEqual(len(r.flows()), before, r.flows()[before:])
        # counted: reel show says how many connections were ignored
        deadline = time.time() + 5
        while True:
            shown = r.cli("show", r.session).stdout.decode()
            if "2 connections to ignore_hosts" in shown or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertIn("2 connections to ignore_hosts", shown)


if __name__ == "__main__":
    main()
