"""`reel web` and `reel record --web`: the JSON API over real HTTP, its
security checks (token, Host, Origin, read-only), errors, and live updates
by Server-Sent Events while curl goes through the recording proxy to nginx."""
import http.client
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxyenv  # noqa: E402
from proxyenv import REEL, TMPBASE, Origin, Reel, curl, read_all, run  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef"


def start_web(env, *args):
    """A `reel web` process; returns (proc, port, url)."""
    p = subprocess.Popen([REEL, "web", "--listen", "127.0.0.1:0"] + list(args), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ""
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]+))", line)
        if m:
            return p, int(m.group(2)), m.group(1), m.group(3)
        if p.poll() is not None:
            break
    raise AssertionError("reel web did not start: %s %s" % (line, p.stderr.read()))


def stop_web(cls):
    """Stops a test class's reel web (cls.proc) and origin, and removes its
    folder."""
    cls.proc.send_signal(signal.SIGINT)
    code = cls.proc.wait(10)
    cls.proc.stdout.close()
    cls.proc.stderr.close()
    cls.origin.stop()
    assert code == 0, "reel web exited %d" % code
    proxyenv.shutil.rmtree(cls.root, ignore_errors=True)


class Client:
    def __init__(self, port, token):
        self.port, self.token = port, token

    def req(self, method, path, body=None, headers=None, token=True, host=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": host or "127.0.0.1:%d" % self.port}
        if token:
            h["Authorization"] = "Bearer " + (self.token if token is True else token)
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def json(self, method, path, body=None, status=200, **kw):
        st, h, data = self.req(method, path, body, **kw)
        if st != status:
            raise AssertionError("%s %s: %d %s (wanted %d)" % (method, path, st, data, status))
        return json.loads(data) if data else None


class WebApi(unittest.TestCase):
    REQ_EDIT = {"rules": ["|b|B"], "replacements": 1, "sent_size": 3, "decoded": False,
                "not_applied": None, "answered_continue": False,
                "sent_body_b64": "YUJj", "sent_body_truncated": False}  # (aBc)

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-web-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "s1")
        curl(cls.reel, cls.origin.url("/100b"))
        curl(cls.reel, cls.origin.url("/text.txt"))
        curl(cls.reel, "-d", '{"a": [1, 2]}', "-H", "Content-Type: application/json",
             cls.origin.url("/echo"))
        curl(cls.reel, "http://127.0.0.1:1/refused", check=False)  # an error flow
        cls.reel.wait_flows(4)
        cls.reel.stop()
        cls.env = cls.reel.env
        # two tunnels Debian's mitmproxy 8.1.1 wrote, one over TLS (the
        # tnetstring fuzz seed less the harness's two leading bytes)
        seed = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz",
                            "corpus", "tnetstring", "mitm-8.1-tcp-tls-and-plain")
        with open(seed, "rb") as f:
            data = f.read()[2:]
        tunnels = os.path.join(cls.root, "tunnels.mitm")
        with open(tunnels, "wb") as f:
            f.write(data)
        run([REEL, "import", "--format", "mitm", tunnels, "--into", "tunnels"], env=cls.env)
        # a flow whose request body modify_body rules changed
        edits = os.path.join(cls.root, "edits.har")
        with open(edits, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [{
                                   "startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                                   "request": {"method": "POST", "url": "http://example.test/",
                                               "httpVersion": "HTTP/1.1", "headers": [],
                                               "queryString": [], "cookies": [],
                                               "headersSize": -1, "bodySize": 3,
                                               "postData": {"mimeType": "text/plain",
                                                            "text": "abc"}},
                                   "response": {"status": 204, "statusText": "No Content",
                                                "httpVersion": "HTTP/1.1", "headers": [],
                                                "cookies": [], "content": {"size": 0,
                                                                           "mimeType": ""},
                                                "redirectURL": "", "headersSize": -1,
                                                "bodySize": 0},
                                   "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
                                   "_reel": {"request_body_edit": cls.REQ_EDIT}}]}}, f)
        run([REEL, "import", edits, "--into", "edits"], env=cls.env)
        cls.proc, cls.port, cls.url, cls.token = start_web(cls.env)
        cls.c = Client(cls.port, cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGINT)
        code = cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.proc.stderr.close()
        cls.origin.stop()
        assert code == 0, "reel web exited %d: %s" % (code, cls.proc.stderr.read())
        proxyenv.shutil.rmtree(cls.root, ignore_errors=True)

    def test_token_page_sets_no_cookie(self):
        """The printed URL serves the page: no redirect, no Set-Cookie (a
        cookie goes to every server on the host, whatever its port); the
        page keeps the token in the tab itself and sends it as a header."""
        st, h, data = self.c.req("GET", "/?token=" + self.token, token=False)
        self.assertEqual(st, 200)
        self.assertIn(b"<html", data.lower())
        self.assertNotIn("set-cookie", h)
        self.assertIn("default-src 'self'", h["content-security-policy"])
        self.assertIn("frame-ancestors 'none'", h["content-security-policy"])
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertNotIn("access-control-allow-origin", h)
        # the front end's files are the same for everyone: served without
        # the token (a reload has no ?token= any more)
        for path in ("/", "/app.js", "/style.css"):
            st, h, _ = self.c.req("GET", path, token=False)
            self.assertEqual(st, 200, path)
            self.assertNotIn("set-cookie", h)
        # every answer tells the browser to send no Referer, so no URL that
        # carries the token (an image, a download) leaks that way
        for path, tok in (("/", False), ("/api/sessions", True), ("/api/nothing", True),
                          ("/api/sessions/s1/flows/1/body/response/raw?ticket=" + "f" * 32,
                           False)):
            st, h, _ = self.c.req("GET", path, token=tok)
            self.assertEqual(h["referrer-policy"], "no-referrer", path)

    def test_cookie_no_longer_authorizes(self):
        """The cookie older versions set no longer authorizes anything, and a
        page load that carries it is answered with its expiry."""
        cookie = {"Cookie": "reel_token=" + self.token}
        for path in ("/api/sessions", "/api/sessions/s1/flows/1/body/response/raw",
                     "/api/sessions/s1/events"):
            st, _, _ = self.c.req("GET", path, token=False, headers=cookie)
            self.assertEqual(st, 401, path)
        st, _, _ = self.c.req("POST", "/api/sessions/s1/marks", {"ids": [1]}, token=False,
                              headers=cookie)
        self.assertEqual(st, 401)
        self.assertEqual(self.flows_where("~marked"), [])
        st, h, _ = self.c.req("GET", "/", token=False, headers={"Cookie": "a=1; reel_token=x"})
        self.assertEqual(st, 200)
        self.assertRegex(h["set-cookie"], r"^reel_token=; Path=/; Max-Age=0")
        self.assertNotIn(self.token, h["set-cookie"])

    def test_token_never_in_the_query(self):
        """The token is taken from no URL (a browser keeps them: history, the
        downloads list): ?token= is refused everywhere, even where a browser
        cannot send the header (the event stream, a body's bytes, an
        export: they take a ticket) and even beside a good header."""
        t = "token=" + self.token
        for method, path, body in (("GET", "/api/sessions?" + t, None),
                                   ("GET", "/api/sessions/s1/flows?" + t, None),
                                   ("GET", "/api/sessions/s1/flows/1?" + t, None),
                                   ("GET", "/api/sessions/s1/flows/1/body/response?" + t, None),
                                   ("GET", "/api/sessions/s1/flows/1/body/response/raw?" + t,
                                    None),
                                   ("GET", "/api/sessions/s1/flows/1/body/response/raw?"
                                    "inline=1&" + t, None),
                                   ("GET", "/api/sessions/s1/export?format=ndjson&ids=1&" + t,
                                    None),
                                   ("GET", "/api/sessions/s1/events?" + t, None),
                                   ("POST", "/api/tickets?" + t,
                                    {"path": "/api/sessions/s1/export"}),
                                   ("POST", "/api/sessions/s1/marks?" + t, {"ids": [1]}),
                                   ("POST", "/api/sessions/s1/flows/1/body/response/raw?" + t,
                                    None)):
            for header in (False, True):
                st, _, data = self.c.req(method, path, body, token=header)
                self.assertEqual(st, 400, (path, header))
                self.assertIn("not taken from the query", json.loads(data)["error"])
        self.assertEqual(self.flows_where("~marked"), [])

    def ticket(self, path, client=None):
        t = (client or self.c).json("POST", "/api/tickets", {"path": path})
        self.assertRegex(t["ticket"], r"^[0-9a-f]{32}$")
        return t

    def test_ticket_serves_its_path_once(self):
        """A ticket (POST /api/tickets, with the token) opens the one path
        it was made for, once, whatever the query; another path, a second
        use, a made-up ticket are 401, and a ticket on an API request that
        takes none is a 400."""
        raw = "/api/sessions/s1/flows/1/body/response/raw"
        t = self.ticket(raw)
        self.assertEqual(t["expires_in"], 60)
        want = self.c.req("GET", raw)[2]
        self.assertTrue(want)
        for other in ("/api/sessions/s1/flows/2/body/response/raw",
                      "/api/sessions/s1/flows/1/body/request/raw",
                      "/api/sessions/tunnels/flows/1/body/response/raw",
                      "/api/sessions/s1/export"):
            st, _, data = self.c.req("GET", other + "?ticket=" + t["ticket"], token=False)
            self.assertEqual(st, 401, other)
            self.assertIn("ticket", json.loads(data)["error"])
        # ... which left it good for its own path
        st, _, data = self.c.req("GET", raw + "?inline=1&ticket=" + t["ticket"], token=False)
        self.assertEqual((st, data), (200, want))
        st, _, _ = self.c.req("GET", raw + "?ticket=" + t["ticket"], token=False)
        self.assertEqual(st, 401)  # used up
        st, _, _ = self.c.req("GET", raw + "?ticket=" + "f" * 32, token=False)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("GET", raw + "?ticket=", token=False)
        self.assertEqual(st, 401)
        # the path is compared decoded, as it is routed
        t = self.ticket("/api/sessions/%731/export")
        st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids=2&ticket=" +
                                 t["ticket"], token=False)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(data.splitlines()[0])["id"], 2)
        # only the requests that cannot send a header take one
        t = self.ticket(raw)
        for method, path in (("GET", "/api/sessions/s1/flows/1/body/response"),
                             ("GET", "/api/sessions/s1/flows"),
                             ("POST", raw)):
            for header in (False, True):
                st, _, data = self.c.req(method, path + "?ticket=" + t["ticket"], token=header)
                self.assertEqual(st, 400, (path, header))
                self.assertIn("ticket is only taken", json.loads(data)["error"])

    def test_ticket_requests(self):
        """Making a ticket takes the token, a POST, and one of the paths
        that take tickets, given without a query."""
        st, _, _ = self.c.req("POST", "/api/tickets", {"path": "/api/sessions/s1/export"},
                              token=False)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("POST", "/api/tickets", {"path": "/api/sessions/s1/export"},
                              token="f" * 32)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("GET", "/api/tickets")
        self.assertEqual(st, 405)
        for body in ({"path": "/api/sessions/s1/flows/1"}, {"path": "/api/sessions"},
                     {"path": "/api/tickets"}, {"path": "/api/sessions/s1/export?format=har"},
                     {"path": "api/sessions/s1/export"}, {"path": "/api/sessions/s1/export/x"},
                     {"path": 1}, {}, b"not json"):
            st, _, data = self.c.req("POST", "/api/tickets", body)
            self.assertEqual(st, 400, body)
            self.assertIn("error", json.loads(data))

    def open_events(self, query):
        s = socket.create_connection(("127.0.0.1", self.port), 10)
        s.sendall(("GET /api/sessions/s1/events?%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                   % (query, self.port)).encode())
        head = s.recv(4096)
        return s, head

    def test_event_stream_ticket_serves_its_reconnects(self):
        """The event stream's ticket is held by the stream while it is open
        (no other connection may use it meanwhile) and serves the browser's
        reconnects of it after: the browser reconnects to the same URL by
        itself."""
        t = self.ticket("/api/sessions/s1/events")["ticket"]
        s, head = self.open_events("ticket=" + t)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"text/event-stream", head)
        s2, head2 = self.open_events("ticket=" + t)
        s2.close()
        self.assertTrue(head2.startswith(b"HTTP/1.1 401"), head2)
        s.close()
        deadline = time.time() + 5
        while True:  # the server sees the close at its next read
            s, head = self.open_events("after=2&ticket=" + t)
            s.close()
            if head.startswith(b"HTTP/1.1 200") or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        # a stream that was not opened (no such session) gives it back too
        t = self.ticket("/api/sessions/nosuch/events")["ticket"]
        st, _, _ = self.c.req("GET", "/api/sessions/nosuch/events?ticket=" + t, token=False)
        self.assertEqual(st, 404)
        st, _, _ = self.c.req("GET", "/api/sessions/nosuch/events?ticket=" + t, token=False)
        self.assertEqual(st, 404)

    def test_event_stream_with_connection_close(self):
        """An event stream asked for with Connection: close (or over
        HTTP/1.0): the connection was closed once the head was written,
        no event sent, the head saying keep-alive."""
        for version, extra in (("1.1", "Connection: close\r\n"), ("1.0", "")):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(("GET /api/sessions/s1/events?after=0 HTTP/%s\r\nHost: 127.0.0.1:%d\r\n"
                       "Authorization: Bearer %s\r\n%s\r\n"
                       % (version, self.port, self.token, extra)).encode())
            got = b""
            deadline = time.time() + 5
            while b"\ndata: " not in got and time.time() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            s.close()
            self.assertIn(b"\r\nConnection: close\r\n", got, version)
            self.assertIn(b"\ndata: ", got, version)

    def test_head_and_405(self):
        """HEAD: the head its GET would have, no content (RFC 9110 9.3.2);
        it got a 405 with a JSON body, which a client reusing the
        connection read as the start of the next answer. A 405 names the
        methods in Allow (RFC 9110 15.5.6)."""
        for path, token in (("/", False), ("/api/sessions", True)):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            auth = "Authorization: Bearer %s\r\n" % self.token if token else ""
            s.sendall(("HEAD %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n"
                       % (path, self.port, auth)).encode())
            got, how = read_all(s)
            s.close()
            self.assertEqual(how, "eof", got)
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:300])
            self.assertTrue(got.endswith(b"\r\n\r\n"), got[-100:])  # no content
            self.assertGreater(int(re.search(rb"Content-Length: (\d+)", got).group(1)), 0)
        # a HEAD reads, as its GET does (config took it for a write)
        st, h, _ = self.c.req("HEAD", "/api/sessions/s1/config")
        self.assertEqual(st, 200, h)
        # an event stream has no length
        st, h, _ = self.c.req("HEAD", "/api/sessions/s1/events")
        self.assertEqual(st, 200, h)
        self.assertNotIn("content-length", h)
        for method, path, allow in (("PUT", "/api/sessions/s1/config", "GET, HEAD, POST"),
                                    ("PUT", "/api/sessions", "GET, HEAD"),
                                    ("DELETE", "/", "GET, HEAD"),
                                    ("GET", "/api/tickets", "POST")):
            st, h, data = self.c.req(method, path)
            self.assertEqual(st, 405, (method, path, data))
            self.assertEqual(h.get("allow"), allow, (method, path, h))

    def test_bad_tokens(self):
        st, _, data = self.c.req("GET", "/api/sessions", token=False)
        self.assertEqual(st, 401)
        self.assertIn("error", json.loads(data))
        st, _, _ = self.c.req("GET", "/api/sessions", token="f" * 32)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("GET", "/api/sessions", token=False,
                              headers={"Cookie": "reel_token=" + self.token[:-1]})
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("GET", "/?token=" + "0" * 32, token=False)
        self.assertEqual(st, 401)

    def test_upgrade_is_one_400_that_does_nothing(self):
        """A request asking to leave HTTP (Upgrade, CONNECT) gets exactly one
        answer, a 400, and is not carried out (it was answered, the write
        done, and a 400 followed)."""
        body = b'{"ids": [2], "mark": true}'
        for extra in ("Connection: Upgrade\r\nUpgrade: websocket\r\n",
                      "Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"):
            s = socket.create_connection(("127.0.0.1", self.port), 10)
            s.sendall(("POST /api/sessions/s1/marks HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                       "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n%s\r\n"
                       % (self.port, self.token, len(body), extra)).encode() + body)
            resp = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                resp += d
            s.close()
            self.assertTrue(resp.startswith(b"HTTP/1.1 400 "), resp)
            self.assertEqual(resp.count(b"HTTP/1.1 "), 1, resp)
            self.assertIn(b"no upgrades or CONNECT here", resp)
            self.assertEqual(self.flows_where("~marked"), [], extra)
        s = socket.create_connection(("127.0.0.1", self.port), 10)
        s.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Authorization: Bearer %s\r\n\r\n"
                   % (self.port, self.port, self.token)).encode())
        resp = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
        s.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 400 "), resp)
        self.assertEqual(resp.count(b"HTTP/1.1 "), 1, resp)

    def test_host_and_origin(self):
        st, _, data = self.c.req("GET", "/api/sessions", host="evil.example:%d" % self.port)
        self.assertEqual(st, 403)
        self.assertIn("rebinding", json.loads(data)["error"])
        st, _, _ = self.c.req("GET", "/api/sessions", host="127.0.0.1:1")
        self.assertEqual(st, 403)
        for ok in ("localhost:%d", "[::1]:%d"):
            st, _, _ = self.c.req("GET", "/api/sessions", host=ok % self.port)
            self.assertEqual(st, 200)
        st, _, _ = self.c.req("POST", "/api/sessions/s1/marks", {"ids": [1]},
                              headers={"Origin": "http://evil.example"})
        self.assertEqual(st, 403)
        st, _, _ = self.c.req("GET", "/api/sessions", headers={"Sec-Fetch-Site": "cross-site"})
        self.assertEqual(st, 403)
        own = "http://127.0.0.1:%d" % self.port
        st, h, _ = self.c.req("GET", "/api/sessions", headers={"Origin": own})
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", h)

    def test_listen_beyond_loopback_warns(self):
        p = subprocess.Popen([REEL, "web", "--listen", "0.0.0.0:0"], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertIn("token=", line + p.stdout.readline())
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        self.assertIn("WARNING", err)
        self.assertIn("beyond loopback", err)
        st, h, _ = self.c.req("OPTIONS", "/api/sessions", headers={
            "Origin": "http://127.0.0.1:%d" % self.port,
            "Access-Control-Request-Method": "POST"})
        self.assertEqual(st, 405)
        self.assertFalse([k for k in h if k.startswith("access-control")])
        r = run([REEL, "web", "--listen", "nonsense"], env=self.env, check=False)
        self.assertEqual(r.returncode, 2)

    def test_tunnel_protocols(self):
        # TLS that is not HTTP, relayed over both legs, is TLS; raw bytes TCP
        rows = self.c.json("GET", "/api/sessions/tunnels/flows")["rows"]
        self.assertEqual([(r["id"], r["protocol"], r["scheme"]) for r in rows],
                         [(1, "TLS", "tls"), (2, "TCP", "tcp")])

    def test_sessions_and_flows(self):
        s = self.c.json("GET", "/api/sessions")
        (s1,) = [x for x in s["sessions"] if x["name"] == "s1"]
        self.assertEqual(s1["flows"], 4)
        self.assertFalse(s1["recording"])
        self.assertGreater(s1["size"], 0)
        page = self.c.json("GET", "/api/sessions/s1/flows?limit=2")
        self.assertEqual([r["id"] for r in page["rows"]], [1, 2])
        self.assertTrue(page["more"])
        self.assertEqual(page["rows"][0]["path"], "/100b")
        self.assertEqual(page["rows"][0]["protocol"], "HTTP/1.1")
        nxt = self.c.json("GET", "/api/sessions/s1/flows?limit=2&cursor=" + page["next"])
        self.assertEqual([r["id"] for r in nxt["rows"]], [3, 4])
        self.assertFalse(nxt["more"])
        old = self.c.json("GET", "/api/sessions/s1/flows?limit=2&after=%d" % page["next_after"])
        self.assertEqual([r["id"] for r in old["rows"]], [3, 4])
        # the page before, by the first row's cursor with the order flipped
        back = self.c.json("GET", "/api/sessions/s1/flows?order=desc&cursor=" + nxt["prev"])
        self.assertEqual([r["id"] for r in back["rows"]], [2, 1])
        # sorted on host, the cursor carries the host: the next page follows it
        byhost = self.c.json("GET", "/api/sessions/s1/flows?sort=host&limit=3")
        rest = self.c.json("GET", "/api/sessions/s1/flows?sort=host&cursor=" + byhost["next"])
        self.assertEqual(sorted(r["id"] for r in byhost["rows"] + rest["rows"]), [1, 2, 3, 4])
        st, _, _ = self.c.req("GET", "/api/sessions/s1/flows?sort=id&cursor=" + byhost["next"])
        self.assertEqual(st, 400)
        st, _, _ = self.c.req("GET", "/api/sessions/s1/flows?offset=2")
        self.assertEqual(st, 400)
        # cursors made up by the UI to jump: (flow 3's key, id 2) starts at
        # flow 3 in any sort; (T, 0) by time starts at the first flow at T
        rows = {r["id"]: r for r in self.c.json("GET", "/api/sessions/s1/flows")["rows"]}
        at3 = self.c.json("GET", "/api/sessions/s1/flows?limit=1&cursor=i2")
        self.assertEqual(at3["rows"][0]["id"], 3)
        at3 = self.c.json("GET", "/api/sessions/s1/flows?sort=start&limit=1&cursor=s0.%d"
                          % rows[3]["start_us"])
        self.assertEqual(at3["rows"][0]["id"], 3)
        back3 = self.c.json("GET", "/api/sessions/s1/flows?sort=start&order=desc&limit=1&"
                            "cursor=s9007199254740991.%d" % rows[3]["start_us"])
        self.assertEqual(back3["rows"][0]["id"], 3)
        first = self.c.json("GET", "/api/sessions/s1/flows?limit=1&cursor=i0")
        self.assertEqual(first["rows"][0]["id"], 1)
        hx = rows[3]["host"].encode().hex()
        at3 = self.c.json("GET", "/api/sessions/s1/flows?sort=host&limit=1&cursor=h2." + hx)
        self.assertEqual(at3["rows"][0]["id"], 3)
        for bad in ("i-1", "s0", "s0.x", "h1.zz", "t1."):
            st, _, _ = self.c.req("GET", "/api/sessions/s1/flows?sort=%s&cursor=%s" % (
                {"i": "id", "s": "start", "h": "host", "t": "status"}[bad[0]], bad))
            self.assertEqual(st, 400, bad)
        brief = self.c.json("GET", "/api/sessions?brief=1")
        self.assertIn({"name": "s1", "live": False}, brief["sessions"])
        desc = self.c.json("GET", "/api/sessions/s1/flows?sort=id&order=desc&limit=1")
        self.assertEqual(desc["rows"][0]["id"], 4)
        f = self.c.json("GET", "/api/sessions/s1/flows?filter=" + "~m%20POST")
        self.assertEqual([r["id"] for r in f["rows"]], [3])
        cnt = self.c.json("GET", "/api/sessions/s1/count?filter=~c%20200")
        self.assertEqual(cnt["count"], 3)
        self.assertEqual(cnt["max_id"], 4)
        self.assertFalse(cnt["capped"])
        cnt = self.c.json("GET", "/api/sessions/s1/count?max=2")
        self.assertEqual((cnt["count"], cnt["capped"]), (2, True))
        # the same rows `reel flows --json` prints
        cli = json.loads(run([REEL, "flows", "s1", "--json"], env=self.env).stdout)
        for a, b in zip(cli, self.c.json("GET", "/api/sessions/s1/flows")["rows"]):
            for k, v in a.items():
                self.assertEqual(b[k], v, k)

    def test_idle_session_size_is_reel_ls_size(self):
        """An idle session's size is what `reel ls` shows: the web measured
        it with the session open, counting the 32 KiB -shm its own SQLite
        connection had just made."""
        ls = {x["session"]: x["bytes"] for x in json.loads(
            run([REEL, "ls", "--json"], env=self.env).stdout)}
        web = {x["name"]: x["size"] for x in self.c.json("GET", "/api/sessions")["sessions"]}
        self.assertEqual(web, ls)
        self.assertEqual(self.c.json("GET", "/api/sessions/s1")["size"], ls["s1"])

    def test_unknown_filter_lists_every_operator(self):
        """The unknown-operator error's "known:" list names every operator
        `reel flows --help` does (it left out ~conn)."""
        st, _, data = self.c.req("GET", "/api/sessions/s1/flows?filter=~zz")
        self.assertEqual(st, 400)
        err = json.loads(data)["error"]
        known = set(re.search(r"\(known: ([^)]*)\)", err).group(1).split())
        helptext = run([REEL, "flows", "--help"], env=self.env).stdout.decode()
        ops = set(re.findall(r"~[a-z0-9]+", helptext.split("FILTER", 1)[1]))
        self.assertIn("~conn", ops)
        self.assertEqual(ops - known, set(), err)

    def events(self, path, headers=None, want=1):
        """The first `want` events of an event stream: [(id, flow id)],
        flow id None for an event of only an id: line."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": "127.0.0.1:%d" % self.port, "Authorization": "Bearer " + self.token}
        h.update(headers or {})
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        got, ev = [], {}
        while len(got) < want:
            line = r.fp.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                ev["id"] = int(line[4:])
            elif line.startswith("data: "):
                ev["flow"] = json.loads(line[6:])["id"]
            elif line == "" and ev:
                got.append((ev.get("id"), ev.get("flow")))
                ev = {}
        conn.close()
        return got

    def test_events_ids_and_last_event_id(self):
        """Events carry id: lines (the highest new flow's id sent), and a
        reconnect's Last-Event-ID goes on from there, as after= does: the
        flows recorded while the browser was away come first (they showed
        only when another flow arrived)."""
        base = "/api/sessions/s1/events"
        # from now on: the stream says where it starts
        self.assertEqual(self.events(base), [(4, None)])
        self.assertEqual(self.events(base + "?after=2", want=3),
                         [(2, None), (3, 3), (4, 4)])
        self.assertEqual(self.events(base, {"Last-Event-ID": "2"}, want=3),
                         [(2, None), (3, 3), (4, 4)])
        # the reconnect's id beats the address's after=
        self.assertEqual(self.events(base + "?after=1", {"Last-Event-ID": "3"}, want=2),
                         [(3, None), (4, 4)])
        # not one of ours: as if there were none
        self.assertEqual(self.events(base + "?after=3", {"Last-Event-ID": "x"}, want=2),
                         [(3, None), (4, 4)])

    def test_errors(self):
        st, _, data = self.c.req("GET", "/api/sessions/s1/flows?filter=~c%20200%20%26%20(")
        self.assertEqual(st, 400)
        err = json.loads(data)
        self.assertIn("column", err)
        self.assertGreater(err["column"], 1)
        st, _, _ = self.c.req("GET", "/api/sessions/nope/flows")
        self.assertEqual(st, 404)
        st, _, _ = self.c.req("GET", "/api/sessions/s1/flows/999")
        self.assertEqual(st, 404)
        # a flow id is digits only, 1 and up, as in every CLI command: " 1"
        # (%20), "+1" or "1 " is not flow 1 but a malformed id (400)
        for bad in ("%201", "+1", "1%20", "abc", "0", "-1", "01x", "99999999999999999999"):
            for tail in ("", "/curl", "/body/response/raw", "/diff?with=1"):
                st, _, data = self.c.req("GET", "/api/sessions/s1/flows/" + bad + tail)
                self.assertEqual(st, 400, bad + tail)
                self.assertIn("invalid flow id", json.loads(data)["error"], bad + tail)
        # a '+' in a path is a '+' (a space only in a query's form encoding)
        st, _, data = self.c.req("GET", "/api/sessions/s1/flows/+1")
        self.assertEqual(json.loads(data)["error"],
                         "invalid flow id '+1': a flow id is digits only, 1 and up")
        for bad in ("%201", "+1", "0"):
            st, _, data = self.c.req("GET", "/api/sessions/s1/flows/1/diff?with=" + bad)
            self.assertEqual(st, 400, bad)
            self.assertIn("invalid flow id", json.loads(data)["error"], bad)
        self.assertEqual(self.c.req("GET", "/api/sessions/s1/flows/1/diff")[0], 400)
        self.assertEqual(self.c.req("GET", "/api/sessions/s1/flows/1/curl")[0], 200)
        st, _, _ = self.c.req("GET", "/api/sessions/..%2F..%2Fetc/flows")
        self.assertEqual(st, 404)
        st, _, data = self.c.req("GET", "/api/sessions/s1/flows?limit=100000000")
        self.assertEqual(st, 400)
        self.assertIn("limit", json.loads(data)["error"])
        st, _, _ = self.c.req("GET", "/api/sessions/s1/flows?sort=bogus")
        self.assertEqual(st, 400)
        st, _, _ = self.c.req("GET", "/api/nothing")
        self.assertEqual(st, 404)
        st, _, _ = self.c.req("POST", "/api/sessions/s1/marks", b"x" * 10)
        self.assertEqual(st, 400)
        # a body past the limit
        s = socket.create_connection(("127.0.0.1", self.port), 10)
        s.sendall(("POST /api/sessions/s1/marks HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Authorization: Bearer %s\r\nContent-Length: 5000000\r\n\r\n"
                   % (self.port, self.token)).encode())
        resp = s.recv(4096)
        s.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 413"), resp)
        # not HTTP at all
        s = socket.create_connection(("127.0.0.1", self.port), 10)
        s.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        resp = s.recv(4096)
        s.close()
        self.assertTrue(resp.startswith(b"HTTP/1.1 4"), resp)

    def test_flow_detail_and_bodies(self):
        d = self.c.json("GET", "/api/sessions/s1/flows/3")
        self.assertEqual(d["request"]["method"], "POST")
        self.assertEqual(d["response"]["status"], 200)
        self.assertIsNotNone(d["timings"])
        self.assertIn("address", d["server_conn"])
        b = self.c.json("GET", "/api/sessions/s1/flows/3/body/request")
        self.assertEqual(b["shown"], "json")
        self.assertIn('"a"', b["text"])
        b = self.c.json("GET", "/api/sessions/s1/flows/2/body/response?offset=10&length=20")
        self.assertEqual(b["length"], 20)
        self.assertTrue(b["more"])
        st, h, raw = self.c.req("GET", "/api/sessions/s1/flows/1/body/response/raw")
        self.assertEqual(st, 200)
        self.assertEqual(raw, b"x" * 99 + b"\n")
        self.assertIn("attachment", h["content-disposition"])
        st, _, text = self.c.req("GET", "/api/sessions/s1/flows/3/curl")
        self.assertEqual(st, 200)
        self.assertIn(b"curl", text)
        self.assertIn(b"/echo", text)
        e = self.c.json("GET", "/api/sessions/s1/flows/4")
        self.assertTrue(e["error"] or e["row"]["error"])
        d = self.c.json("GET", "/api/sessions/s1/flows/1/diff?with=2")
        self.assertIn("-GET http://", d["text"])
        self.assertIn("/100b", d["text"])
        self.assertIn("+GET http://", d["text"])
        self.assertIn("/text.txt", d["text"])
        self.assertGreater(d["changes"], 2)
        self.assertEqual(self.c.json("GET", "/api/sessions/s1/flows/1/diff?with=1")["text"], "")
        self.c.json("GET", "/api/sessions/s1/flows/1/diff?with=999", status=404)
        self.c.json("GET", "/api/sessions/s1/flows/1/diff", status=400)
        st, _, _ = self.c.req("GET", "/api/sessions/s1/flows/1/body/sideways")
        self.assertEqual(st, 404)
        # a whole body: stored, on the wire and not cut, as `reel flow --json` says
        d = self.c.json("GET", "/api/sessions/s1/flows/1")
        self.assertEqual((d["response"]["body_stored"], d["response"]["body_size"],
                          d["response"]["body_truncated"], d["response"]["body_dropped"]),
                         (100, 100, False, 0))
        self.assertEqual(d["replayed_as"], [])
        self.assertFalse(self.c.json("GET", "/api/sessions/s1/flows/1/body/response")["truncated"])

    def test_body_edits_of_each_side(self):
        # what modify_body rules did to the request body is the request's
        d = self.c.json("GET", "/api/sessions/edits/flows/1")
        self.assertEqual((d["request_body_edit"], d["response_body_edit"]), (self.REQ_EDIT, None))
        d = self.c.json("GET", "/api/sessions/s1/flows/1")
        self.assertEqual((d["request_body_edit"], d["response_body_edit"]), (None, None))

    def test_notes_tags_marks(self):
        n = self.c.json("POST", "/api/sessions/s1/flows/1/notes", {"text": "web note"})["note"]
        out = run([REEL, "annotate", "s1", "1"], env=self.env).stdout.decode()
        self.assertIn("web note", out)
        self.c.json("PUT", "/api/sessions/s1/flows/1/notes/%d" % n, {"text": "edited"})
        self.assertIn("edited", run([REEL, "annotate", "s1", "1"], env=self.env).stdout.decode())
        self.c.json("DELETE", "/api/sessions/s1/flows/1/notes/%d" % n)
        self.assertNotIn("edited", run([REEL, "annotate", "s1", "1"], env=self.env).stdout.decode())
        self.c.json("DELETE", "/api/sessions/s1/flows/1/notes/%d" % n, status=404)
        self.c.json("POST", "/api/sessions/s1/flows/1/notes", {"text": ""}, status=400)
        r = self.c.json("POST", "/api/sessions/s1/tags", {"ids": [1, 2], "tags": ["webtag"]})
        self.assertEqual(r["changed"], 2)
        # "changed" counts flows, not (flow, tag) pairs (it said 4 here)
        r = self.c.json("POST", "/api/sessions/s1/tags",
                        {"ids": [1, 2, 2], "tags": ["webtag", "webtag2", "webtag3"]})
        self.assertEqual((r["matched"], r["changed"]), (2, 2))
        r = self.c.json("POST", "/api/sessions/s1/tags",
                        {"ids": [1, 2], "tags": ["webtag2", "webtag3"], "remove": True})
        self.assertEqual((r["matched"], r["changed"]), (2, 2))
        self.c.json("POST", "/api/sessions/s1/tags", {"ids": [1], "tags": ["bad tag!"]}, status=400)
        self.c.json("POST", "/api/sessions/s1/tags", {"ids": [999], "tags": ["x"]}, status=404)
        f = json.loads(run([REEL, "flows", "s1", "--json", "~tag webtag"], env=self.env).stdout)
        self.assertEqual([x["id"] for x in f], [1, 2])
        self.c.json("POST", "/api/sessions/s1/tags", {"filter": "", "tags": ["webtag"],
                                                       "remove": True})
        r = self.c.json("POST", "/api/sessions/s1/marks", {"filter": "~m POST", "mark": True})
        self.assertEqual(r["matched"], 1)
        f = json.loads(run([REEL, "flows", "s1", "--json", "~marked"], env=self.env).stdout)
        self.assertEqual([x["id"] for x in f], [3])
        self.c.json("POST", "/api/sessions/s1/marks", {"ids": [3], "mark": False})

    def test_repeated_ids_count_once(self):
        """"matched" counts flows: an id given three times is one flow (it
        said 3), for tags and marks alike."""
        try:
            r = self.c.json("POST", "/api/sessions/s1/tags", {"ids": [1, 1, 1], "tags": ["dup", "dup"]})
            self.assertEqual((r["matched"], r["changed"]), (1, 1))
            r = self.c.json("POST", "/api/sessions/s1/marks", {"ids": [2, 1, 2, 1], "mark": True})
            self.assertEqual((r["matched"], r["changed"]), (2, 2))
            self.assertEqual(self.flows_where("~tag dup"), [1])
        finally:
            self.c.json("POST", "/api/sessions/s1/tags", {"ids": [1], "tags": ["dup"], "remove": True})
            self.c.json("POST", "/api/sessions/s1/marks", {"ids": [1, 2], "mark": False})

    def flows_where(self, flt):
        return [x["id"] for x in json.loads(
            run([REEL, "flows", "s1", "--json", flt], env=self.env).stdout)]

    def test_mark_remove_booleans(self):
        """"mark" and "remove" are booleans or absent: anything else is a 400
        that changes nothing ("false" unmarked, "yes" added the tag)."""
        self.c.json("POST", "/api/sessions/s1/marks", {"ids": [4], "mark": True})
        try:
            for bad in ("false", "true", 1, 0, None, [], {}):
                st, _, data = self.c.req("POST", "/api/sessions/s1/marks",
                                         {"ids": [4], "mark": bad})
                self.assertEqual(st, 400, bad)
                self.assertIn('"mark"', json.loads(data)["error"])
            self.assertEqual(self.flows_where("~marked"), [4])
        finally:
            self.c.json("POST", "/api/sessions/s1/marks", {"ids": [4], "mark": False})
        self.assertEqual(self.flows_where("~marked"), [])
        for bad in ("yes", "false", 1, None):
            st, _, data = self.c.req("POST", "/api/sessions/s1/tags",
                                     {"ids": [1], "tags": ["strictbool"], "remove": bad})
            self.assertEqual(st, 400, bad)
            self.assertIn('"remove"', json.loads(data)["error"])
        self.assertEqual(self.flows_where("~tag strictbool"), [])

    def test_ids_or_filter(self):
        """A write given both "ids" and "filter" is a 400 that changes nothing
        (it used the ids and dropped the filter)."""
        for path, body in (("tags", {"tags": ["bothtag"]}), ("marks", {"mark": True})):
            body = dict(body, ids=[1], filter="~id 2")
            st, _, data = self.c.req("POST", "/api/sessions/s1/" + path, body)
            self.assertEqual(st, 400, path)
            self.assertIn("give ids or filter, not both", json.loads(data)["error"])
        self.assertEqual(self.flows_where("~tag bothtag"), [])
        self.assertEqual(self.flows_where("~marked"), [])

    def test_nul_in_query(self):
        """A parameter that decodes to a NUL byte is a 400, never absent: a
        count with no filter counts every flow, an export without ids
        exports every flow."""
        for path, name in (("/api/sessions/s1/count?filter=~c%20404%00garbage", "filter"),
                           ("/api/sessions/s1/flows?filter=~m%20POST%00", "filter"),
                           ("/api/sessions/s1/flows?limit=1%00", "limit"),
                           ("/api/sessions/s1/flows?sort=host&order=desc%00", "order"),
                           ("/api/sessions/s1/count?max=1%00", "max"),
                           ("/api/sessions/s1/export?format=ndjson&ids=1%00", "ids"),
                           ("/api/sessions/s1/export?format=ndjson&filter=%00", "filter"),
                           ("/api/sessions/s1/export?format=har%00&ids=1", "format"),
                           ("/api/sessions/s1/flows/2/body/response?offset=1%00", "offset"),
                           ("/api/sessions?brief=1%00", "brief")):
            st, _, data = self.c.req("GET", path)
            self.assertEqual(st, 400, path)
            self.assertEqual(json.loads(data)["error"],
                             "parameter '%s' holds a NUL byte" % name, path)
        st, _, data = self.c.req("GET", "/?token=%s%%00" % self.token, token=False)
        self.assertEqual(st, 400)
        self.assertIn("'token'", json.loads(data)["error"])
        # the same without the NUL still works
        self.assertEqual(self.c.json("GET", "/api/sessions/s1/count?filter=~c%20404")["count"], 0)
        # a parameter's bytes that are not UTF-8 are named as \xNN (the
        # message was the word "error" alone)
        for path, st, want in (("/api/sessions/%ff%fe", 404, "\\xff\\xfe"),
                               ("/api/sessions/s1/flows/%ff", 400, "\\xff"),
                               ("/api/sessions/s1/flows?limit=%ff", 400, "\\xff")):
            got, _, data = self.c.req("GET", path)
            self.assertEqual(got, st, path)
            self.assertIn(want, json.loads(data)["error"], path)

    def test_status_reasons(self):
        for line, extra, want in (
                ("GET /api/sessions HTTP/2.0", "", b"HTTP/1.1 505 HTTP Version Not Supported\r\n"),
                ("POST /api/sessions/s1/marks HTTP/1.1",
                 "Transfer-Encoding: gzip, chunked\r\n",
                 b"HTTP/1.1 501 Not Implemented\r\n")):
            s = socket.create_connection(("127.0.0.1", self.port), 10)
            s.sendall(("%s\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n%s\r\n"
                       % (line, self.port, self.token, extra)).encode())
            resp = s.recv(4096)
            s.close()
            self.assertTrue(resp.startswith(want), resp)

    def test_config(self):
        cfg = self.c.json("GET", "/api/sessions/s1/config")
        (bl,) = [o for o in cfg["options"] if o["name"] == "body_limit"]
        self.assertEqual(bl["layer"], "default")
        st, _, data = self.c.req("POST", "/api/sessions/s1/config",
                                 {"name": "body_limit", "value": "lots"})
        self.assertEqual(st, 400)
        self.assertIn("body_limit", json.loads(data)["error"])
        self.c.json("POST", "/api/sessions/s1/config", {"name": "nope", "value": "1"}, status=404)
        r = self.c.json("POST", "/api/sessions/s1/config", {"name": "body_limit", "value": "2m"})
        self.assertEqual(r["value"], "2097152")
        out = run([REEL, "config", "s1", "get", "body_limit"], env=self.env).stdout.decode()
        self.assertIn("2097152", out)
        self.c.json("POST", "/api/sessions/s1/config", {"name": "body_limit", "value": None})
        # a JSON number or boolean is its text; arrays and a missing value are
        # refused (they were refused with the same words as a bad shape, and a
        # missing value unset the option)
        r = self.c.json("POST", "/api/sessions/s1/config", {"name": "zstd_level", "value": 4})
        self.assertEqual(r["value"], "4")
        r = self.c.json("POST", "/api/sessions/s1/config", {"name": "http2", "value": False})
        self.assertEqual(r["value"], "false")
        for bad in ({"name": "ignore_hosts", "value": ["a.example"]},
                    {"name": "zstd_level", "value": 2.5}):
            st, _, data = self.c.req("POST", "/api/sessions/s1/config", bad)
            self.assertEqual(st, 400)
            self.assertIn("must be a string, a whole number, true, false or null",
                          json.loads(data)["error"])
        st, _, data = self.c.req("POST", "/api/sessions/s1/config", {"name": "zstd_level"})
        self.assertEqual(st, 400)
        out = run([REEL, "config", "s1", "get", "zstd_level"], env=self.env).stdout.decode()
        self.assertIn("4", out)
        for name in ("zstd_level", "http2"):
            self.c.json("POST", "/api/sessions/s1/config", {"name": name, "value": None})

    def test_config_refuses_commands(self):
        """on_segment_closed runs a shell command: the web API neither sets
        nor unsets it (a token that leaked would run programs); `reel config`
        on the command line does."""
        marker = os.path.join(self.root, "pwned")
        for path in ("/api/sessions/s1/config", "/api/sessions/s1/%63onfig"):
            for value in ("touch " + marker, None, ""):
                st, _, data = self.c.req("POST", path,
                                         {"name": "on_segment_closed", "value": value})
                self.assertEqual(st, 403, (path, value))
                err = json.loads(data)["error"]
                self.assertIn("on_segment_closed runs a command", err)
                self.assertIn("reel config s1 set on_segment_closed", err)
        cfg = self.c.json("GET", "/api/sessions/s1/config")
        (o,) = [o for o in cfg["options"] if o["name"] == "on_segment_closed"]
        self.assertEqual((o["value"], o["layer"]), ("", "default"))
        run([REEL, "config", "s1", "set", "on_segment_closed", "true"], env=self.env)
        try:
            st, _, _ = self.c.req("POST", "/api/sessions/s1/config",
                                  {"name": "on_segment_closed", "value": None})
            self.assertEqual(st, 403)
            out = run([REEL, "config", "s1", "get", "on_segment_closed"], env=self.env)
            self.assertIn("true", out.stdout.decode())
        finally:
            run([REEL, "config", "s1", "unset", "on_segment_closed"], env=self.env)
        self.assertFalse(os.path.exists(marker))
        # the other options are still the web UI's to change
        self.c.json("POST", "/api/sessions/s1/config", {"name": "idle_timeout", "value": 301})
        self.c.json("POST", "/api/sessions/s1/config", {"name": "idle_timeout", "value": None})

    def test_config_checks_the_ca_file(self):
        """upstream_trusted_ca is checked as `reel config set` checks it: a
        readable file of PEM certificates, stored as an absolute path (it
        was stored as given, and the next `reel resume` exited 1)."""
        path = "/api/sessions/s1/config"
        for value, why in (("/etc/passwd", "no PEM certificate (-----BEGIN CERTIFICATE-----) "
                                           "in it"),
                           ("no-such-ca.pem", "No such file or directory"),
                           ("/", "not a file")):
            st, _, data = self.c.req("POST", path, {"name": "upstream_trusted_ca", "value": value})
            self.assertEqual(st, 400, data)
            self.assertEqual(json.loads(data)["error"],
                             "invalid value '%s' for upstream_trusted_ca: %s" % (value, why))
            # the same words as the CLI's
            r = run([REEL, "config", "s1", "set", "upstream_trusted_ca", value], env=self.env,
                    check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn(json.loads(data)["error"], r.stderr.decode())
        out = run([REEL, "config", "s1", "get", "upstream_trusted_ca"], env=self.env).stdout
        self.assertEqual(out.decode().strip(), '""')  # nothing refused was stored
        # a PEM file, named relative to the server's directory, is stored absolute
        rel = os.path.relpath(self.origin.ca)
        r = self.c.json("POST", path, {"name": "upstream_trusted_ca", "value": rel})
        self.assertEqual(r["value"], os.path.realpath(self.origin.ca))
        out = run([REEL, "config", "s1", "get", "upstream_trusted_ca"], env=self.env).stdout
        self.assertEqual(out.decode().strip(), os.path.realpath(self.origin.ca))
        self.c.json("POST", path, {"name": "upstream_trusted_ca", "value": None})

    def test_export(self):
        st, h, data = self.c.req("GET", "/api/sessions/s1/export?format=har&ids=1,3")
        self.assertEqual(st, 200)
        har = json.loads(data)
        self.assertEqual(len(har["log"]["entries"]), 2)
        self.assertIn("attachment", h["content-disposition"])
        st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&filter=~m%20POST")
        self.assertEqual(st, 200)
        self.assertEqual(len(data.strip().split(b"\n")), 1)
        st, _, _ = self.c.req("GET", "/api/sessions/s1/export?format=zip")
        self.assertEqual(st, 400)
        # the HAR names reel's version, as `reel export` writes it (it said "reel web")
        cli = json.loads(run([REEL, "export", "--format", "har", "s1", "~id 1"], env=self.env).stdout)
        self.assertEqual(har["log"]["creator"], cli["log"]["creator"])
        self.assertRegex(har["log"]["creator"]["version"], r"^\d+\.\d+\.\d+")
        # an empty or broken selection is a 400, never the whole session
        # (ids= exported every flow)
        for ids in ("", "1,", ",1", "1,,2", "0", "a", "3-1", "1-", "-1", "1-10001"):
            st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids=" + ids)
            self.assertEqual(st, 400, ids)
            self.assertIn("comma-separated flow ids or ranges N-M", json.loads(data)["error"])
        # more than 256 of them, ranges too (they went into a filter of 256
        # terms at most: "filter: too many terms", a filter nobody wrote)
        many = ",".join(str(i) for i in range(1, 600, 2)) + ",2-3,1-9000"
        st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids=" + many)
        self.assertEqual(st, 200, data)
        every = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&filter=")[2]
        self.assertEqual([json.loads(l)["id"] for l in data.splitlines()],
                         [json.loads(l)["id"] for l in every.splitlines()])
        st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids=2-3")
        self.assertEqual([json.loads(l)["id"] for l in data.splitlines()], [2, 3])
        # the largest id: the loop over a range never ended there (v <= hi
        # holds for every v), growing the list until the process died; and
        # an id past it, which strtoll clamps to it
        for ids in ("9223372036854775807", "9223372036854775806-9223372036854775807"):
            st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids=" + ids)
            self.assertEqual((st, data), (200, b""), ids)
        st, _, data = self.c.req("GET", "/api/sessions/s1/export?format=ndjson&ids="
                                 "99999999999999999999")
        self.assertEqual(st, 400, data)

    def test_export_redacted(self):
        """redact=1 redacts as reel export --redact does, with the rules of
        the session's overlay too (the UI's "Redact secrets" box)."""
        path = "/api/sessions/s1/export?format=ndjson&ids=3"
        self.assertEqual(self.c.req("GET", path + "&redact=1")[0], 200)
        st, _, data = self.c.req("POST", "/api/sessions/s1/config",
                                 {"name": "redact_keys", "value": "a"})
        self.assertEqual(st, 200, data)
        try:
            for q, want in (("", '{"a": [1, 2]}'), ("&redact=0", '{"a": [1, 2]}'),
                            ("&redact=1", '{"a": "REDACTED"}')):
                st, _, data = self.c.req("GET", path + q)
                self.assertEqual(st, 200, data)
                self.assertEqual(json.loads(data)["request"]["body"], want, q)
            cli = run([REEL, "export", "--format", "ndjson", "--redact", "s1", "~id 3"],
                      env=self.env).stdout
            self.assertEqual(self.c.req("GET", path + "&redact=1")[2], cli)
        finally:
            self.c.req("POST", "/api/sessions/s1/config", {"name": "redact_keys", "value": None})
        for bad in ("2", "yes", ""):
            st, _, data = self.c.req("GET", path + "&redact=" + bad)
            self.assertEqual(st, 400, bad)
            self.assertEqual(json.loads(data)["error"], "redact must be 0 or 1")

    def test_tickets_expire_and_are_bounded(self):
        """A ticket lapses after REEL_WEB_TICKET_TTL (60 s by default) unused,
        the event stream's that long after its stream closed; at most 128
        are kept (a full table loses the one nearest its expiry). Made on a
        --read-only server too: a ticket only reads."""
        p, port, _, tok = start_web(dict(self.env, REEL_WEB_TICKET_TTL="1"), "--read-only")
        try:
            c = Client(port, tok)
            raw = "/api/sessions/s1/flows/1/body/response/raw"
            t = self.ticket(raw, c)
            self.assertEqual(t["expires_in"], 1)
            ev = self.ticket("/api/sessions/s1/events", c)["ticket"]
            s = socket.create_connection(("127.0.0.1", port), 10)
            s.sendall(("GET /api/sessions/s1/events?ticket=%s HTTP/1.1\r\n"
                       "Host: 127.0.0.1:%d\r\n\r\n" % (ev, port)).encode())
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            time.sleep(1.5)
            st, _, _ = c.req("GET", raw + "?ticket=" + t["ticket"], token=False)
            self.assertEqual(st, 401)  # expired
            # ... while the open stream's held on
            t2 = self.ticket("/api/sessions/s1/events", c)["ticket"]
            s.close()
            time.sleep(1.5)
            for x in (ev, t2):
                st, _, _ = c.req("GET", "/api/sessions/s1/events?ticket=" + x, token=False)
                self.assertEqual(st, 401)
            # the 129th ticket pushes out the first, the nearest its end
            ts = [self.ticket(raw, c)["ticket"] for _ in range(129)]
            st, _, _ = c.req("GET", raw + "?ticket=" + ts[0], token=False)
            self.assertEqual(st, 401)
            for x in (ts[1], ts[-1]):
                st, _, _ = c.req("GET", raw + "?ticket=" + x, token=False)
                self.assertEqual(st, 200)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()
            p.stderr.close()

    def test_read_only_and_rename_delete(self):
        run([REEL, "new", "tmpsess"], env=self.env)
        p, port, _, tok = start_web(self.env, "--read-only", "s1")
        try:
            ro = Client(port, tok)
            ro.json("GET", "/api/sessions/s1/flows")
            # only the sessions named on the command line
            self.assertEqual([x["name"] for x in ro.json("GET", "/api/sessions")["sessions"]],
                             ["s1"])
            self.assertTrue(ro.json("GET", "/api/sessions")["read_only"])
            ro.json("GET", "/api/sessions/tmpsess/flows", status=404)
            for path, body in (("/api/sessions/s1/marks", {"ids": [1]}),
                               ("/api/sessions/s1/flows/1/notes", {"text": "x"}),
                               ("/api/sessions/s1/config", {"name": "body_limit", "value": "1"}),
                               ("/api/sessions/s1/delete?confirm=s1", None)):
                st, _, data = ro.req("POST", path, body)
                self.assertEqual(st, 403, path)
                self.assertIn("read-only", json.loads(data)["error"])
            st, _, _ = ro.req("DELETE", "/api/sessions/s1/flows/1/notes/1")
            self.assertEqual(st, 403)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()
            p.stderr.close()
        # a server given SESSION names refuses a rename (the session would
        # vanish from it), and says so up front: the page offers no Rename
        self.assertTrue(self.c.json("GET", "/api/sessions")["can_rename"])
        p, port, _, tok = start_web(self.env, "s1", "tmpsess")
        try:
            given = Client(port, tok)
            self.assertFalse(given.json("GET", "/api/sessions")["can_rename"])
            st, _, data = given.req("POST", "/api/sessions/tmpsess/rename", {"name": "tmp3"})
            self.assertEqual(st, 403)
            self.assertIn("only the sessions it was given", json.loads(data)["error"])
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()
            p.stderr.close()
        self.c.json("POST", "/api/sessions/tmpsess/rename", {"name": "s1"}, status=409)
        self.c.json("POST", "/api/sessions/tmpsess/rename", {"name": "../x"}, status=400)
        self.c.json("POST", "/api/sessions/tmpsess/rename", {"name": "tmp2"})
        self.c.json("POST", "/api/sessions/tmp2/delete", status=400)
        self.c.json("POST", "/api/sessions/tmp2/delete?confirm=tmpsess", status=400)
        self.c.json("POST", "/api/sessions/tmp2/delete?confirm=tmp2")
        names = [x["name"] for x in self.c.json("GET", "/api/sessions")["sessions"]]
        self.assertNotIn("tmp2", names)
        self.assertNotIn("tmpsess", names)

    def test_record_web_sse(self):
        """reel record --web: an event stream delivers a flow curl makes
        through the proxy."""
        env = dict(self.env, REEL_WEB_TOKEN=TOKEN)
        log = open(os.path.join(self.root, "live.log"), "w+")
        p = subprocess.Popen([REEL, "record", "--listen", "127.0.0.1:0", "--web=127.0.0.1:0",
                              "live"], env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            proxy = web = None
            for _ in range(200):
                log.seek(0)
                text = log.read()
                m1 = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
                m2 = re.search(r"web UI on http://127\.0\.0\.1:(\d+)/\?token=" + TOKEN, text)
                if m1 and m2:
                    proxy, web = int(m1.group(1)), int(m2.group(1))
                    break
                time.sleep(0.05)
            self.assertIsNotNone(web, text)
            c = Client(web, TOKEN)
            s = c.json("GET", "/api/sessions")
            self.assertEqual(s["live"], "live")
            (live,) = [x for x in s["sessions"] if x["name"] == "live"]
            self.assertTrue(live["recording"])
            conn = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
            conn.request("GET", "/api/sessions/live/events", headers={
                "Host": "127.0.0.1:%d" % web, "Authorization": "Bearer " + TOKEN})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
            run(["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % proxy,
                 self.origin.url("/100b")])
            deadline = time.time() + 5
            got = None
            while time.time() < deadline and got is None:
                line = r.fp.readline().decode()
                if line.startswith("data: ") and "/100b" in line:
                    ev = json.loads(line[6:])
                    # a flow comes first as open, again once it ends;
                    # replay (below) refuses one still open
                    if ev["state"] != "open":
                        got = ev
            conn.close()
            self.assertIsNotNone(got)
            self.assertEqual(got["path"], "/100b")
            # replay records into the session this process records
            # (WebLiveReplay tests it in full)
            rp = c.json("POST", "/api/sessions/live/flows/%d/replay" % got["id"])
            self.assertEqual((rp["of"], rp["status"], rp["error"]), (got["id"], 200, None))
            # writes through the web apply to the recording session
            c.json("POST", "/api/sessions/live/config", {"name": "body_limit", "value": "1k"})
            deadline = time.time() + 5
            while "applied config change" not in open(log.name).read():
                self.assertLess(time.time(), deadline, open(log.name).read())
                time.sleep(0.05)
        finally:
            p.send_signal(signal.SIGINT)
            code = p.wait(15)
            log.close()
        self.assertEqual(code, 0, open(log.name).read())


class WebDiffNotWhole(unittest.TestCase):
    """The web diff compares bodies as `reel diff` does: two bodies body_limit
    cut that agree in what was stored are not known to be the same (not "no
    differences"), differing sizes are a change, a difference in the prefix
    is shown."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-webdiff-", dir=TMPBASE)
        cls.origin = o = Origin(cls.root)
        reel = Reel(cls.root, "d1", "body_limit=10")
        try:
            # chunked, so that the heads are the same and only the bodies differ
            for body in ('{"name": "alpha", "n": 12345}', '{"name": "alpha", "n": 12345678}',
                         '{"name": "alpha", "n": 54321}', '{"nome": "alpha", "n": 12345}'):
                curl(reel, "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: text/plain",
                     "--data-binary", body, o.url("/echo"))
            reel.wait_flows(4)
        finally:
            code = reel.stop()
        assert code == 0, reel.log()
        cls.proc, cls.port, _, cls.token = start_web(reel.env)
        cls.c = Client(cls.port, cls.token)

    @classmethod
    def tearDownClass(cls):
        stop_web(cls)

    def diff(self, a, b):
        return self.c.json("GET", "/api/sessions/d1/flows/%d/diff?with=%d" % (a, b))

    def test_same_prefix_same_size_is_not_known(self):
        # 29 bytes each, the same 10 stored, different past them
        d = self.diff(1, 3)
        self.assertNotEqual(d["text"], "")  # the UI's "no differences"
        self.assertEqual(d["unknown"], ["request.body"])
        # (the origin's Date moves on when the two requests straddle a
        # second: then that is the one change; test_a_flow_with_itself
        # shows the rest without it)
        changed = [ln for ln in d["text"].splitlines()
                   if ln[:1] in "-+" and ln[:3] not in ("---", "+++")]
        date = [ln[1:6] for ln in changed] == ["Date:", "Date:"]
        self.assertEqual((d["same"], d["changes"]), (False, 2) if date else (None, 0), d["text"])
        self.assertIn("request body (raw, 29 bytes -> raw, 29 bytes): not stored whole; the same "
                      "in the 10 bytes both hold, past them not known", d["text"])
        self.assertIn("a: request body cut by body_limit at 10 of 29 bytes", d["notes"])
        self.assertIn("b: request body cut by body_limit at 10 of 29 bytes", d["notes"])

    def test_sizes_differ_past_the_limit(self):
        d = self.diff(1, 2)
        self.assertIs(d["same"], False)
        self.assertEqual(d["unknown"], [])
        self.assertIn("(raw, 29 bytes -> raw, 32 bytes): not stored whole; the same in the 10 "
                      "bytes both hold, but the sizes differ", d["text"])

    def test_differs_in_the_prefix(self):
        d = self.diff(1, 4)
        self.assertIs(d["same"], False)
        self.assertIn('\n-{"name": "\n+{"nome": "\n', d["text"])
        self.assertGreater(d["changes"], 0)

    def test_a_flow_with_itself(self):
        # its own bodies are still not known whole: the same stored bytes
        # say nothing of the rest, but nothing differs either
        d = self.diff(1, 1)
        self.assertIsNone(d["same"])
        self.assertEqual(d["changes"], 0)


class WebBodyNotDecodable(unittest.TestCase):
    """A body whose Content-Encoding fails at its first byte ("gzip" over
    bytes that are not) is shown and downloaded as stored, with why, as
    reel flow shows it; the body endpoint gave an empty text and raw an
    empty 200."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-webdec-", dir=TMPBASE)
        cls.origin = o = Origin(cls.root)
        reel = Reel(cls.root, "dec")
        cls.env = reel.env
        try:
            curl(reel, "-H", "Content-Encoding: gzip", "-H", "Content-Type: text/plain",
                 "--data-binary", "not gzip at all", o.url("/echo"))
            gz = gzip.compress(b"half of it " * 200)
            half = os.path.join(cls.root, "half.gz")
            with open(half, "wb") as f:
                f.write(gz[:len(gz) // 2])
            curl(reel, "-H", "Content-Encoding: gzip", "-H", "Content-Type: text/plain",
                 "--data-binary", "@" + half, o.url("/echo"))
            reel.wait_flows(2)
        finally:
            code = reel.stop()
        assert code == 0, reel.log()
        cls.proc, cls.port, _, cls.token = start_web(reel.env)
        cls.c = Client(cls.port, cls.token)

    @classmethod
    def tearDownClass(cls):
        stop_web(cls)

    def test_as_stored_with_why(self):
        b = self.c.json("GET", "/api/sessions/dec/flows/1/body/request")
        self.assertEqual((b["text"], b["length"], b["decoded"]), ("not gzip at all\n", 15, False))
        self.assertIn("gzip", b["decode_error"])
        st, _, data = self.c.req("GET", "/api/sessions/dec/flows/1/body/request/raw")
        self.assertEqual((st, data), (200, b"not gzip at all"))
        # a stream cut short still gives what it decoded
        b = self.c.json("GET", "/api/sessions/dec/flows/2/body/request")
        self.assertTrue(b["text"].startswith("half of it"), b["text"][:40])
        self.assertTrue(b["decode_error"])

    def test_diff_says_what_was_not_decoded(self):
        # as reel diff says it: the web diff left the notes out
        d = self.c.json("GET", "/api/sessions/dec/flows/1/diff?with=2")
        notes = [n for n in d["notes"] if " body not decoded: " in n]
        self.assertEqual([n[:29] for n in notes], ["a: request body not decoded: ",
                                                   "b: request body not decoded: "], d["notes"])
        cli = subprocess.run([REEL, "diff", "dec", "1", "2"], env=self.env,
                             capture_output=True).stdout.decode()
        for side, n in zip(("---", "+++"), notes):
            self.assertIn("(%s: not decoded: %s)" % (side, n[29:]), cli)


class WebReplay(unittest.TestCase):
    """POST .../flows/ID/replay: a child `reel replay` sends the request
    again while the server keeps answering; the new flow links back."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-webrp-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        # an origin that accepts and never answers
        cls.silent = socket.socket()
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(8)
        # body_limit=4: a 10-byte request body is not stored whole (not replayable)
        reel = Reel(cls.root, "rp", "body_limit=4", "upstream_timeout=1")
        curl(reel, cls.origin.url("/100b"))
        curl(reel, "--data-binary", "0123456789", cls.origin.url("/echo"))
        curl(reel, "http://127.0.0.1:%d/silent" % cls.silent.getsockname()[1], check=False)
        curl(reel, "http://127.0.0.1:1/refused", check=False)
        # a client that gives up mid-body: an error flow with a body cut
        curl(reel, "--limit-rate", "1M", "--max-time", "0.5", "-o", os.devnull,
             cls.origin.url("/big"), check=False)
        # a Content-Type that is not UTF-8 (Latin-1)
        curl(reel, "--data-binary", "hello", "-H", b"Content-Type: text/plain; name=caf\xe9",
             "-H", b"Content-Encoding: g\xffzip", cls.origin.url("/echo"))
        assert len(reel.wait_flows(6)) == 6
        assert reel.stop() == 0, reel.log()
        cls.env = reel.env
        cls.proc, cls.port, _, cls.token = start_web(cls.env)
        cls.c = Client(cls.port, cls.token)

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGINT)
        code = cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.proc.stderr.close()
        cls.silent.close()
        cls.origin.stop()
        assert code == 0, "reel web exited %d" % code
        proxyenv.shutil.rmtree(cls.root, ignore_errors=True)

    def flow(self, fid):
        return json.loads(run([REEL, "flow", "rp", str(fid), "--json"], env=self.env).stdout)

    def test_replay_makes_a_linked_flow(self):
        r = self.c.json("POST", "/api/sessions/rp/flows/1/replay",
                        headers={"Origin": "http://127.0.0.1:%d" % self.port})
        self.assertEqual((r["of"], r["status"], r["error"]), (1, 200, None))
        self.assertGreater(r["id"], 4)
        f = self.flow(r["id"])
        self.assertEqual(f["replay_of"], 1)
        self.assertEqual(f["response"]["status"], 200)
        self.assertIn(r["id"], self.flow(1)["replayed_as"])
        # the detail names it too, as `reel flow --json` does
        d = self.c.json("GET", "/api/sessions/rp/flows/1")
        self.assertIn(r["id"], d["replayed_as"])
        self.assertEqual(d["replayed_as"], self.flow(1)["replayed_as"])
        # the web shows it, and diffs it against the original
        d = self.c.json("GET", "/api/sessions/rp/flows/1/diff?with=%d" % r["id"])
        self.assertIn("text", d)

    def test_bodies_cut_by_body_limit(self):
        """body_limit=4 cut flow 1's 100-byte response and flow 2's 10-byte
        request: the detail says so per direction, with the same size, cut
        and dropped bytes as `reel flow --json`, and the bytes stored."""
        for fid, dirn, size in ((1, "response", 100), (2, "request", 10)):
            d = self.c.json("GET", "/api/sessions/rp/flows/%d" % fid)[dirn]
            cli = self.flow(fid)[dirn]
            self.assertEqual((d["body_stored"], d["body_size"], d["body_truncated"]),
                             (4, size, True))
            for k in ("body_size", "body_truncated", "body_dropped"):
                self.assertEqual(d[k], cli[k], k)
            b = self.c.json("GET", "/api/sessions/rp/flows/%d/body/%s" % (fid, dirn))
            self.assertEqual((b["length"], b["more"], b["truncated"]), (4, False, True))
            self.assertTrue(b["text"].endswith("(cut: the view shows the first 4 bytes of the "
                                               "body)\n"), b["text"])
            # the last part of a cut body is not "to its end"
            b = self.c.json("GET", "/api/sessions/rp/flows/%d/body/%s?offset=2" % (fid, dirn))
            self.assertTrue(b["text"].endswith("(cut: the view shows bytes 2 to 3 of the body)\n"),
                            b["text"])
            # past what is stored: not "the first 0 bytes"
            b = self.c.json("GET", "/api/sessions/rp/flows/%d/body/%s?offset=6" % (fid, dirn))
            self.assertTrue(b["text"].endswith("(cut: no byte of the body is stored from byte 6 "
                                               "on)\n"), b["text"])
        # the request of flow 1 (no body) is not cut
        d = self.c.json("GET", "/api/sessions/rp/flows/1")["request"]
        self.assertEqual((d["body_stored"], d["body_size"], d["body_truncated"]), (0, 0, False))
        # flow 5 ended in an error (its client gave up) after body_limit cut it
        d = self.c.json("GET", "/api/sessions/rp/flows/5")
        self.assertTrue(d["error"])
        self.assertEqual((d["response"]["body_stored"], d["response"]["body_truncated"]), (4, True))
        self.assertGreater(d["response"]["body_size"], 4)
        self.assertEqual(d["response"]["body_size"], self.flow(5)["response"]["body_size"])

    def test_body_of_a_content_type_not_utf8(self):
        """A Content-Type with a Latin-1 byte: the body's answer was 200
        "null" (json_pack failed on the string), the UI showed no body."""
        st, _, data = self.c.req("GET", "/api/sessions/rp/flows/6/body/request")
        self.assertEqual(st, 200, data)
        b = json.loads(data)
        self.assertTrue(b["text"].startswith("hell"), b)
        self.assertIsNotNone(b["content_type"], b)
        # the detail's content_encoding too (the key was left out)
        d = self.c.json("GET", "/api/sessions/rp/flows/6")["request"]
        self.assertEqual(d["content_encoding"], {"b64": "Z/96aXA="}, d)

    def test_session_another_proxy_records(self):
        """A session another process records: 409, saying what can be done
        from the web UI (it said "replay into another session with --into",
        an option of the command line)."""
        reel = Reel(self.root, "busy")
        try:
            curl(reel, self.origin.url("/100b"))
            reel.wait_flows(1)
            e = self.c.json("POST", "/api/sessions/busy/flows/1/replay", status=409)
            self.assertIn("is being recorded by PID %d" % reel.proc.pid, e["error"])
            self.assertIn("stop it and replay again here", e["error"])
            self.assertIn("web UI", e["error"])
            self.assertNotIn("--into", e["error"])
        finally:
            self.assertEqual(reel.stop(), 0, reel.log())

    def test_replay_failing_upstream(self):
        """The replay ran but the origin refused: 502, and the new flow
        holding the error exists (the UI links to it)."""
        e = self.c.json("POST", "/api/sessions/rp/flows/4/replay", status=502)
        self.assertIn("refused", e["error"])
        f = self.flow(e["id"])
        self.assertEqual(f["replay_of"], 4)
        self.assertIn("refused", json.dumps(f["error"]))

    def test_refused(self):
        path = "/api/sessions/rp/flows/1/replay"
        st, _, _ = self.c.req("POST", path, token=False)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("POST", path, token="f" * 32)
        self.assertEqual(st, 401)
        st, _, _ = self.c.req("POST", path, headers={"Origin": "http://evil.example"})
        self.assertEqual(st, 403)
        st, _, _ = self.c.req("POST", path, host="evil.example:%d" % self.port)
        self.assertEqual(st, 403)
        st, _, _ = self.c.req("GET", path)
        self.assertEqual(st, 405)
        self.c.json("POST", "/api/sessions/rp/flows/999/replay", status=404)
        self.c.json("POST", "/api/sessions/nope/flows/1/replay", status=404)
        e = self.c.json("POST", "/api/sessions/rp/flows/2/replay", status=422)
        self.assertIn("cannot be replayed", e["error"])
        self.assertIn("not stored whole", e["error"])
        p, port, _, tok = start_web(self.env, "--read-only")
        try:
            st, _, data = Client(port, tok).req("POST", path)
            self.assertEqual(st, 403)
            self.assertIn("read-only", json.loads(data)["error"])
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()
            p.stderr.close()
        # nothing above replayed the flow that cannot be replayed
        self.assertFalse([f for f in json.loads(run(
            [REEL, "flows", "rp", "--json", "~replay & ~u /echo"], env=self.env).stdout)])

    def test_timeout_does_not_block_the_server(self):
        """A hung origin: the child is stopped after REEL_WEB_REPLAY_TIMEOUT
        (504) and the server answers other requests meanwhile."""
        p, port, _, tok = start_web(dict(self.env, REEL_WEB_REPLAY_TIMEOUT="2"))
        try:
            c = Client(port, tok)
            done = []
            t = threading.Thread(target=lambda: done.append(
                c.req("POST", "/api/sessions/rp/flows/3/replay")))
            t0 = time.time()
            t.start()
            time.sleep(0.3)
            self.assertEqual(c.json("GET", "/api/sessions/rp/flows/1")["row"]["id"], 1)
            self.assertFalse(done)  # still replaying, yet the GET was answered
            t.join(15)
            st, _, data = done[0]
            self.assertEqual(st, 504, data)
            self.assertIn("timed out", json.loads(data)["error"])
            self.assertLess(time.time() - t0, 10)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()
            p.stderr.close()


def start_record_web(root, env, session, *sets):
    """`reel record --web` on ephemeral ports; returns (proc, log, proxy
    port, web port). The log is the process's stderr, open for reading."""
    log = open(os.path.join(root, session + "-web.log"), "w+")
    args = [REEL, "record", "--listen", "127.0.0.1:0", "--web=127.0.0.1:0"]
    for kv in sets:
        args += ["--set", kv]
    p = subprocess.Popen(args + [session], env=env, stdout=subprocess.DEVNULL, stderr=log)
    text = ""
    for _ in range(200):
        log.seek(0)
        text = log.read()
        m1 = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        m2 = re.search(r"web UI on http://127\.0\.0\.1:(\d+)/", text)
        if m1 and m2:
            return p, log, int(m1.group(1)), int(m2.group(1))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise AssertionError("reel record --web did not start: " + text)


class WebLiveReplay(unittest.TestCase):
    """POST .../flows/ID/replay into the session `reel record --web` is
    recording: sent by that process on its thread pool and recorded by its
    recorder (a child `reel replay` could not open the session), with the
    answers of the child path; the server keeps answering meanwhile."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-weblive-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.silent = socket.socket()  # accepts and never answers
        cls.silent.bind(("127.0.0.1", 0))
        cls.silent.listen(16)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home", XDG_DATA_HOME=cls.root + "/data",
                       XDG_CONFIG_HOME=cls.root + "/config", REEL_WEB_TOKEN=TOKEN,
                       REEL_WEB_REPLAY_TIMEOUT="2")
        cls.proc, cls.log, proxy, web = start_record_web(
            cls.root, cls.env, "live", "upstream_trusted_ca=" + cls.origin.ca)
        cls.c = Client(web, TOKEN)
        cls.set_config("upstream_timeout", "1")  # the silent origin's flow ends soon
        px = ["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % proxy,
              "--cacert", os.path.join(cls.root, "data", "reel", "reel-ca.pem")]
        run(px + [cls.origin.url("/100b")])
        run(px + [cls.origin.url("/text.txt", https=True)])
        run(px + ["http://127.0.0.1:1/refused"], check=False)
        run(px + ["http://127.0.0.1:%d/silent" % cls.silent.getsockname()[1]], check=False)
        # a raw tunnel (neither TLS nor HTTP inside): a flow that cannot be replayed
        t = socket.create_connection(("127.0.0.1", proxy), 10)
        t.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % cls.origin.http_port)
        assert b" 200" in t.recv(4096)
        t.sendall(b"\x00\x01\x02 not http")
        time.sleep(0.3)
        t.close()
        cls.ids = {}
        deadline = time.time() + 10
        while time.time() < deadline:
            rows = json.loads(run([REEL, "flows", "live", "--json"], env=cls.env).stdout)
            if len(rows) >= 5 and all(r["state"] != "open" for r in rows):
                break
            time.sleep(0.1)
        for r in rows:
            key = "tunnel" if r["kind"] == "tunnel" else r["url"].rsplit("/", 1)[1]
            cls.ids[key] = r["id"]
        assert set(cls.ids) == {"100b", "text.txt", "refused", "silent", "tunnel"}, rows
        # replays wait longer for the silent origin than REEL_WEB_REPLAY_TIMEOUT:
        # the running daemon hands the change to its web server
        cls.set_config("upstream_timeout", "30")

    @classmethod
    def logtext(cls):
        cls.log.seek(0)
        return cls.log.read()

    @classmethod
    def set_config(cls, name, value):
        """`reel config live set`, once the daemon has applied it."""
        run([REEL, "config", "live", "set", name, value], env=cls.env)
        proxyenv.wait_config_applied(cls.logtext, lambda *a: run([REEL] + list(a), env=cls.env).stdout,
                                     "live")

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGINT)
        code = cls.proc.wait(15)
        text = cls.logtext()
        cls.log.close()
        cls.silent.close()
        cls.origin.stop()
        assert code == 0, "reel record --web exited %d: %s" % (code, text)
        proxyenv.shutil.rmtree(cls.root, ignore_errors=True)

    def flow(self, fid):
        return json.loads(run([REEL, "flow", "live", str(fid), "--json"], env=self.env).stdout)

    def replay(self, key, status=200):
        return self.c.json("POST", "/api/sessions/live/flows/%d/replay" % self.ids[key],
                           status=status)

    def test_session_size_is_reel_ls_size(self):
        """The Sessions list's size is what `reel ls` sums on disk: with the
        index open for recording, its session.db-wal (and -shm) count too
        (the web counted spool + index bytes only)."""
        wal = os.path.join(self.env["REEL_HOME"], "live", "session.db-wal")
        self.assertGreater(os.path.getsize(wal), 0)
        for _ in range(50):  # sizes read while nothing is being written
            ls = lambda: [x["bytes"] for x in json.loads(  # noqa: E731
                run([REEL, "ls", "--json"], env=self.env).stdout) if x["session"] == "live"]
            before = ls()
            (web,) = [x["size"] for x in self.c.json("GET", "/api/sessions")["sessions"]
                      if x["name"] == "live"]
            if before == ls():
                break
            time.sleep(0.1)
        self.assertEqual([web], before)

    def test_replay_through_the_upstream_proxy(self):
        """upstream_proxy and upstream_proxyauth, changed while the process
        runs, apply to its replays as to its proxy: a plain request goes to
        that proxy in absolute form with the credentials (a socket here
        standing in for it, which answers itself)."""
        fake = socket.socket()
        fake.bind(("127.0.0.1", 0))
        fake.listen(4)
        got = []

        def serve():
            s, _ = fake.accept()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            s.sendall(b"HTTP/1.1 203 From The Proxy\r\nContent-Length: 2\r\n\r\nok")
            s.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            self.set_config("upstream_proxy", "127.0.0.1:%d" % fake.getsockname()[1])
            self.set_config("upstream_proxyauth", "ann:pw")
            r = self.replay("100b")
            self.assertEqual((r["status"], r["error"]), (203, None), r)
            t.join(10)
            head = got[0].decode()
            self.assertTrue(head.startswith("GET %s HTTP/1.1\r\n" % self.origin.url("/100b")), head)
            self.assertIn("\r\nProxy-Authorization: Basic YW5uOnB3\r\n", head)
            sc = self.flow(r["id"])["server_conn"]
            via = "127.0.0.1:%d" % fake.getsockname()[1]
            self.assertEqual((sc["via"], sc["address"], sc["via_forward"]), (via, via, True), sc)
        finally:
            self.set_config("upstream_proxy", "")
            self.set_config("upstream_proxyauth", "")
            fake.close()

    def test_replay_records_into_the_live_session(self):
        of = self.ids["100b"]
        ev = http.client.HTTPConnection("127.0.0.1", self.c.port, timeout=10)
        ev.request("GET", "/api/sessions/live/events", headers={
            "Host": "127.0.0.1:%d" % self.c.port, "Authorization": "Bearer " + TOKEN})
        events = ev.getresponse()
        self.assertEqual(events.status, 200)
        seen = [l for l in self.origin.log_lines() if l[2] == "/100b"]
        r = self.replay("100b")
        self.assertEqual((r["of"], r["status"], r["error"]), (of, 200, None))
        self.assertGreater(r["id"], max(self.ids.values()))
        # indexed before the answer: the API shows it at once, linked
        row = self.c.json("GET", "/api/sessions/live/flows/%d" % r["id"])["row"]
        self.assertEqual((row["replay_of"], row["status"], row["url"]),
                         (of, 200, self.origin.url("/100b")))
        # the live list's event stream delivers it
        got = None
        deadline = time.time() + 5
        while time.time() < deadline and got is None:
            line = events.fp.readline().decode()
            if line.startswith("data: ") and json.loads(line[6:]).get("id") == r["id"]:
                got = json.loads(line[6:])
        ev.close()
        self.assertIsNotNone(got)
        # the origin saw the request again
        self.assertEqual(len([l for l in self.origin.log_lines() if l[2] == "/100b"]),
                         len(seen) + 1)
        f = self.flow(r["id"])
        self.assertEqual(f["replay_of"], of)
        self.assertEqual(f["source"], "replay")
        self.assertEqual(f["response"]["status"], 200)
        self.assertEqual(proxyenv.body(f, "response"), b"x" * 99 + b"\n")
        self.assertIsNotNone(f["server_conn"])
        self.assertIn(r["id"], self.flow(of)["replayed_as"])

    def test_https_replay_honours_upstream_trusted_ca(self):
        r = self.replay("text.txt")
        self.assertEqual((r["status"], r["error"]), (200, None))
        f = self.flow(r["id"])
        self.assertEqual(f["replay_of"], self.ids["text.txt"])
        self.assertTrue(f["server_conn"]["tls_version"].startswith("TLS"))

    def test_failing_upstream_and_not_replayable(self):
        e = self.replay("refused", status=502)
        self.assertIn("refused", e["error"])
        self.assertEqual(e["of"], self.ids["refused"])
        f = self.flow(e["id"])
        self.assertEqual(f["replay_of"], self.ids["refused"])
        self.assertIn("refused", json.dumps(f["error"]))
        e = self.replay("tunnel", status=422)
        self.assertIn("cannot be replayed", e["error"])
        self.c.json("POST", "/api/sessions/live/flows/99999/replay", status=404)

    def test_timeout_busy_and_disconnect(self):
        """A hung origin: 504 after REEL_WEB_REPLAY_TIMEOUT with the new
        flow's id; two replays run at once (a third is 503); a client that
        leaves while its replay runs does not stop it; the server answers
        other requests meanwhile."""
        path = "/api/sessions/live/flows/%d/replay" % self.ids["silent"]
        gone = []
        for _ in range(2):  # these two leave before the answer
            s = socket.create_connection(("127.0.0.1", self.c.port), 10)
            s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                      b"Content-Length: 0\r\n\r\n" % (path.encode(), self.c.port, TOKEN.encode()))
            gone.append(s)
        time.sleep(0.3)
        e = self.c.json("POST", path, status=503)
        self.assertIn("already running", e["error"])
        self.assertEqual(self.c.json("GET", "/api/sessions/live/flows/1")["row"]["id"], 1)
        for s in gone:
            s.close()
        time.sleep(2.5)  # both ran out of time, unanswered
        t0 = time.time()
        e = self.c.json("POST", path, status=504)
        self.assertGreater(time.time() - t0, 1.5)
        self.assertIn("timed out", e["error"])
        f = self.flow(e["id"])
        self.assertEqual(f["replay_of"], self.ids["silent"])
        self.assertIn("timed out", json.dumps(f["error"]))
        replays = json.loads(run([REEL, "flows", "live", "--json", "~replay"], env=self.env).stdout)
        self.assertEqual(len([x for x in replays if x["replay_of"] == self.ids["silent"]]), 3)


class WebLiveReplayStop(unittest.TestCase):
    """Ctrl-C while a replay into the live session runs: the replay is told
    to stop, the process exits 0 at once, and the new flow holds why."""

    def test_ctrl_c_during_a_replay(self):
        root = tempfile.mkdtemp(prefix="reel-weblivestop-", dir=TMPBASE)
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        p, log, proxy, web = start_record_web(root, env, "stop")

        def logtext():
            log.seek(0)
            return log.read()

        def set_config(name, value):
            run([REEL, "config", "stop", "set", name, value], env=env)
            proxyenv.wait_config_applied(logtext, lambda *a: run([REEL] + list(a), env=env).stdout,
                                         "stop")

        try:
            set_config("upstream_timeout", "1")
            run(["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % proxy,
                 "http://127.0.0.1:%d/silent" % silent.getsockname()[1]], check=False)
            run(["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % proxy,
                 "http://127.0.0.1:%d/silent2" % silent.getsockname()[1]], check=False)
            set_config("upstream_timeout", "60")
            socks = []
            for fid in (1, 2):  # one answered to a client that waits, one to a client gone
                s = socket.create_connection(("127.0.0.1", web), 10)
                s.sendall(b"POST /api/sessions/stop/flows/%d/replay HTTP/1.1\r\n"
                          b"Host: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                          b"Content-Length: 0\r\n\r\n" % (fid, web, TOKEN.encode()))
                socks.append(s)
            time.sleep(0.5)
            socks[1].close()
            t0 = time.time()
            p.send_signal(signal.SIGINT)
            code = p.wait(15)
            self.assertLess(time.time() - t0, 5)
            self.assertEqual(code, 0, logtext())
            try:  # the waiting client's connection was closed, unanswered
                self.assertEqual(socks[0].recv(4096), b"")
            except ConnectionResetError:
                pass
            socks[0].close()
            rows = json.loads(run([REEL, "flows", "stop", "--json", "~replay"], env=env).stdout)
            self.assertEqual(len(rows), 2, rows)
            for r in rows:
                self.assertIn("cancelled", r["error"])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
            silent.close()
            proxyenv.shutil.rmtree(root, ignore_errors=True)


class WebLongRequestsOffTheLoop(unittest.TestCase):
    """`reel record --web` serves the UI on the proxy's event loop: an
    export (and a filtered count, a filtered page ...) of the session walks
    every flow, and ran on that loop, so requests through the proxy waited
    for the whole of it (3 s for 210 MB). Now they are answered meanwhile."""

    # Longest wait for a GET through the proxy while an export runs (a
    # shared 2-core machine, ASan: everything ~3x slower), and how long the
    # export must take for a stall to show beyond it.
    LIMIT = 1.0 if proxyenv.SANITIZED else 0.5

    def test_proxy_answers_during_an_export(self):
        root = tempfile.mkdtemp(prefix="reel-weblong-", dir=TMPBASE)
        origin = Origin(root)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        p, log, proxy, web = start_record_web(root, env, "big")
        try:
            # 200 flows of 1 MiB (random bytes: HAR carries them as base64),
            # one curl on one connection: 200 MB in a second or two
            n = 200
            args = ["curl", "-sS", "--max-time", "120", "-x", "http://127.0.0.1:%d" % proxy]
            for i in range(n):
                args += ["-o", "/dev/null", origin.url("/file1m?%d" % i)]
            run(args, timeout=180)
            c = Client(web, TOKEN)
            deadline = time.time() + 30
            while True:
                rows = c.json("GET", "/api/sessions/big/flows?limit=1000")["rows"]
                if len(rows) >= n and all(r["state"] != "open" for r in rows):
                    break
                self.assertLess(time.time(), deadline, "flows not indexed: %d" % len(rows))
                time.sleep(0.2)
            for what in ("export?format=har", "export?format=ndjson&filter=~u%20file1m"):
                took, status, data, lat = self.probe_during(proxy, web, origin,
                                                            "/api/sessions/big/" + what)
                self.assertEqual(status, 200, data[:300])
                lines = data.count(b"\n") if "ndjson" in what else len(
                    json.loads(data)["log"]["entries"])
                self.assertGreaterEqual(lines, n)
                # the export must be long enough to have shown the stall
                self.assertGreater(took, 2 * self.LIMIT, "export too quick to tell: %.2f s" % took)
                self.assertGreaterEqual(len(lat), 3)
                self.assertLess(max(lat), self.LIMIT,
                                "a GET through the proxy waited %.2f s while an export of "
                                "%.2f s ran (%d probes)" % (max(lat), took, len(lat)))
            # answered as on the loop: a filtered count and page, a bad filter
            self.assertEqual(c.json("GET", "/api/sessions/big/count?filter=~u%20file1m")["count"],
                             n)
            page = c.json("GET", "/api/sessions/big/flows?filter=~u%20file1m&limit=5&order=desc")
            self.assertEqual(len(page["rows"]), 5)
            e = c.json("GET", "/api/sessions/big/count?filter=~u%20(", status=400)
            self.assertIn("column", e)
            # Ctrl-C during an export: it stops at its next flow, and the
            # process exits (it waited for the walk threads)
            h = http.client.HTTPConnection("127.0.0.1", web, timeout=60)
            h.request("GET", "/api/sessions/big/export?format=har",
                      headers={"Host": "127.0.0.1:%d" % web, "Authorization": "Bearer " + TOKEN})
            time.sleep(0.3)
            t0 = time.time()
            p.send_signal(signal.SIGINT)
            code = p.wait(30)
            log.seek(0)
            self.assertEqual(code, 0, log.read())
            self.assertLess(time.time() - t0, 15)
            h.close()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
            origin.stop()
            proxyenv.shutil.rmtree(root, ignore_errors=True)

    @staticmethod
    def probe_during(proxy, web, origin, path):
        """GETs path from the web server in a thread and, until it has the
        answer, a small file through the proxy every 50 ms. Returns (seconds
        the request took, its status, its body, each probe's seconds)."""
        res = {}

        def fetch():
            h = http.client.HTTPConnection("127.0.0.1", web, timeout=300)
            t0 = time.time()
            h.request("GET", path, headers={"Host": "127.0.0.1:%d" % web,
                                            "Authorization": "Bearer " + TOKEN})
            r = h.getresponse()
            res["data"] = r.read()
            res["status"] = r.status
            res["took"] = time.time() - t0
            h.close()

        t = threading.Thread(target=fetch)
        t.start()
        lat = []
        while t.is_alive():
            t0 = time.time()
            h = http.client.HTTPConnection("127.0.0.1", proxy, timeout=60)
            h.request("GET", origin.url("/100b"))
            body = h.getresponse().read()
            lat.append(time.time() - t0)
            h.close()
            assert len(body) == 100, body
            time.sleep(0.05)
        t.join()
        return res["took"], res["status"], res["data"], lat


class WebConfigOfARunningProxy(unittest.TestCase):
    def test_its_command_line_at_layer_cli(self):
        """The config view shows what the proxy recording into the session
        was started with (--set, the port it got for --listen ...:0), as
        `reel config list` does: those beat the overlay while it runs."""
        root = tempfile.mkdtemp(prefix="reel-webcfg-", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        p, log, proxy, web = start_record_web(root, env, "cfg", "upstream_timeout=17")
        try:
            cfg = Client(web, TOKEN).json("GET", "/api/sessions/cfg/config")
            opts = {o["name"]: o for o in cfg["options"]}
            self.assertEqual((opts["upstream_timeout"]["value"], opts["upstream_timeout"]["layer"]),
                             ("17", "cli"))
            self.assertEqual((opts["listen_port"]["value"], opts["listen_port"]["layer"]),
                             (str(proxy), "cli"))
            self.assertEqual(opts["body_limit"]["layer"], "default")
            # a change is stored in the overlay, and the answer says what GET
            # now shows: the proxy keeps its --set value (it said "session")
            c = Client(web, TOKEN)
            r = c.json("POST", "/api/sessions/cfg/config",
                       {"name": "upstream_timeout", "value": "5"})
            self.assertEqual((r["value"], r["layer"], r["effective"]), ("5", "cli", "17"))
            self.assertIn("keeps that value until it stops", r["note"])
            self.assertIn("upstream_timeout = 17", r["note"])
            opts = {o["name"]: o for o in c.json("GET", "/api/sessions/cfg/config")["options"]}
            self.assertEqual((opts["upstream_timeout"]["value"], opts["upstream_timeout"]["layer"]),
                             ("17", "cli"))
            r = c.json("POST", "/api/sessions/cfg/config", {"name": "upstream_timeout", "value": None})
            self.assertEqual((r["value"], r["layer"], r["effective"]), (None, "cli", "17"))
            # an option the command line did not set: the overlay's, no note
            r = c.json("POST", "/api/sessions/cfg/config", {"name": "body_limit", "value": "1k"})
            self.assertEqual((r["value"], r["layer"], r["effective"]), ("1024", "session", "1024"))
            self.assertNotIn("note", r)
            r = c.json("POST", "/api/sessions/cfg/config", {"name": "body_limit", "value": None})
            self.assertEqual((r["value"], r["layer"]), (None, "default"))
            # an option the proxy reads only when it starts: the answer says
            # so, as `reel config S set` does (it said nothing), set or unset
            for v in ("3", None):
                r = c.json("POST", "/api/sessions/cfg/config", {"name": "zstd_level", "value": v})
                self.assertIn("zstd_level applies at the next start: the proxy recording into "
                              "'cfg' (pid %d) keeps its current value" % r["recording_pid"], r["note"])
            # ... and redact_* (read by reel export) has nothing to wait for
            r = c.json("POST", "/api/sessions/cfg/config",
                       {"name": "redact_headers", "value": "x-secret"})
            self.assertNotIn("note", r)
        finally:
            p.send_signal(signal.SIGINT)
            self.assertEqual(p.wait(15), 0)
            log.close()
            proxyenv.shutil.rmtree(root, ignore_errors=True)


class WebLiveManyOpen(unittest.TestCase):
    """docs/web.md: an event stream sends a flow again when a flow it sent
    open changes. It watched at most 256 open flows by id and dropped the
    rest, so with 300 requests open at once 44 stayed open in the UI."""

    N = 300

    def test_every_open_flow_gets_its_final_event(self):
        import http.server
        import socketserver
        root = tempfile.mkdtemp(prefix="reel-webmany-", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        release = threading.Event()

        class Held(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        origin = Server(("127.0.0.1", 0), Held)
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        p, log, proxy, web = start_record_web(root, env, "many")
        socks = []
        try:
            ev = http.client.HTTPConnection("127.0.0.1", web, timeout=30)
            ev.request("GET", "/api/sessions/many/events", headers={
                "Host": "127.0.0.1:%d" % web, "Authorization": "Bearer " + TOKEN})
            evsock = ev.sock  # http.client lets go of it for a response without a length
            events = ev.getresponse()
            self.assertEqual(events.status, 200)
            for i in range(self.N):
                s = socket.create_connection(("127.0.0.1", proxy), 10)
                s.sendall(b"GET http://127.0.0.1:%d/held/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n" % (origin.server_address[1], i))
                socks.append(s)
            state, ended = {}, {}

            def read_until(done, what):
                deadline = time.time() + 60
                while not done():
                    self.assertLess(time.time(), deadline, "%s: %d flows, %s" % (
                        what, len(state), sorted(set(state.values()))))
                    line = events.fp.readline().decode()
                    if line.startswith("data: "):
                        row = json.loads(line[6:])
                        state[row["id"]] = row["state"]
                        if row["state"] != "open":
                            ended[row["id"]] = ended.get(row["id"], 0) + 1

            read_until(lambda: len(state) == self.N and set(state.values()) == {"open"},
                       "all open")
            release.set()
            for s in socks:
                s.settimeout(30)
                while s.recv(4096):
                    pass
            read_until(lambda: len(state) == self.N and "open" not in state.values(),
                       "all complete")
            self.assertEqual(set(state.values()), {"complete"})
            # the ones not watched by id may come again, but not on and on
            evsock.settimeout(1)
            deadline = time.time() + 5
            try:
                while time.time() < deadline:
                    line = events.fp.readline().decode()
                    if line.startswith("data: "):
                        row = json.loads(line[6:])
                        ended[row["id"]] = ended.get(row["id"], 0) + 1
            except (socket.timeout, TimeoutError):
                pass
            self.assertLessEqual(max(ended.values()), 3, ended)
            ev.close()
        finally:
            release.set()
            for s in socks:
                s.close()
            p.send_signal(signal.SIGINT)
            code = p.wait(15)
            log.close()
            origin.shutdown()
            origin.server_close()
            proxyenv.shutil.rmtree(root, ignore_errors=True)
        self.assertEqual(code, 0)


class WebBodyParts(unittest.TestCase):
    """A body of 1.8 MB of UTF-8 text in parts of 1 MiB: each part ends and
    starts on a character (a split one made the part after the first look
    binary, shown as hex), the hex view numbers its lines from where the
    part starts in the body, and a part's closing note names its bytes (it
    said "the first N bytes" for every part)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-webparts-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.reel = Reel(cls.root, "parts")
        # 298 bytes a line: byte 1048576 is the third of a 3-byte character
        cls.body = ("\u20ac" * 99 + "\n").encode() * 6100
        path = os.path.join(cls.root, "euro.txt")
        with open(path, "wb") as f:
            f.write(cls.body)
        curl(cls.reel, "--data-binary", "@" + path, "-H", "Content-Type: text/plain; charset=utf-8",
             cls.origin.url("/echo"))
        curl(cls.reel, "--data-binary", '<svg xmlns="http://www.w3.org/2000/svg"/>', "-H",
             "Content-Type: image/svg+xml", cls.origin.url("/echo"))
        curl(cls.reel, "--data-binary", "\x89PNG\r\n\x1a\n", "-H", "Content-Type: image/png",
             cls.origin.url("/echo"))
        cls.reel.wait_flows(3)
        cls.reel.stop()
        cls.proc, port, _, token = start_web(cls.reel.env)
        cls.c = Client(port, token)
        cls.base = "/api/sessions/parts/flows/1/body/request"

    @classmethod
    def tearDownClass(cls):
        stop_web(cls)

    def test_text_parts_end_on_characters(self):
        first = self.c.json("GET", self.base)
        self.assertEqual((first["shown"], first["offset"], first["more"]), ("raw", 0, True))
        self.assertEqual(first["length"], 1048574)  # before the character byte 1048576 splits
        self.assertTrue(first["text"].endswith(
            "(cut: the view shows the first 1048574 bytes of the body)\n"), first["text"][-80:])
        # the next part, as the UI asks for it, and one asked for mid-character
        for asked in (first["offset"] + first["length"], 1048576):
            p = self.c.json("GET", self.base + "?offset=%d" % asked)
            self.assertEqual((p["shown"], p["offset"], p["more"]), ("raw", 1048574, False), asked)
            self.assertEqual(p["length"], len(self.body) - 1048574)
            self.assertTrue(p["text"].startswith("\u20ac\u20ac"), p["text"][:20])
            self.assertTrue(p["text"].endswith(
                "(the view shows bytes 1048574 to %d of the body, to its end)\n"
                % (len(self.body) - 1)), p["text"][-80:])
            self.assertNotIn("\\x", p["text"])
        mid = self.c.json("GET", self.base + "?offset=1048574&length=1001")
        self.assertEqual((mid["shown"], mid["more"]), ("raw", True))
        self.assertEqual(mid["length"], 1000)  # 1001 would split the character at 1049574
        self.assertTrue(mid["text"].endswith(
            "(cut: the view shows bytes 1048574 to 1049573 of the body)\n"), mid["text"][-80:])

    def test_part_shorter_than_a_character_holds_it_whole(self):
        """A length shorter than the character at the offset gets that whole
        character (it cut inside it, and the next part, from offset + length,
        was the same part again: paging never got on), and paging by the
        answer's offset + length walks the text character by character."""
        chars = self.body[:596].decode()  # two lines: "\u20ac" * 99 + "\n"
        for length in (1, 2):
            off = 0
            for ch in chars:
                p = self.c.json("GET", self.base + "?offset=%d&length=%d" % (off, length))
                n = len(ch.encode())
                self.assertEqual((p["offset"], p["length"], p["more"], p["shown"]),
                                 (off, n, True, "raw"), (off, length))
                self.assertTrue(p["text"].startswith(ch), (off, length, p["text"]))
                self.assertIn("(cut: the view shows ", p["text"])
                off = p["offset"] + p["length"]
            self.assertEqual(off, len(chars.encode()))
        # asked for inside a character: that character, from its start
        for at in (1, 2):
            p = self.c.json("GET", self.base + "?offset=%d&length=1" % at)
            self.assertEqual((p["offset"], p["length"]), (0, 3), at)
        # the last character of the body, asked for in its middle
        end = len(self.body)
        p = self.c.json("GET", self.base + "?offset=%d&length=1" % (end - 2))
        self.assertEqual((p["offset"], p["length"], p["more"]), (end - 4, 3, True))
        p = self.c.json("GET", self.base + "?offset=%d&length=1" % (end - 1))
        self.assertEqual((p["offset"], p["length"], p["more"]), (end - 1, 1, False))
        # the hex view shows exactly the bytes asked for
        h = self.c.json("GET", self.base + "?offset=1&length=1&view=hex")
        self.assertEqual((h["shown"], h["offset"], h["length"]), ("hex", 1, 1))

    def test_image_only_when_served_inline(self):
        """"image" says the UI may show the body as an image from
        raw?inline=1: an SVG body said true, but is served as an attachment
        (never inline: it may run script)."""
        for fid, image in ((2, False), (3, True)):
            b = self.c.json("GET", "/api/sessions/parts/flows/%d/body/request" % fid)
            self.assertEqual(b["image"], image, b)
            st, h, _ = self.c.req("GET", "/api/sessions/parts/flows/%d/body/request/raw?inline=1"
                                  % fid)
            self.assertEqual(st, 200)
            self.assertEqual("content-disposition" not in h, image, h)

    def test_hex_addresses_are_offsets_in_the_body(self):
        h = self.c.json("GET", self.base + "?offset=1048560&length=32&view=hex")
        self.assertEqual((h["shown"], h["offset"], h["length"]), ("hex", 1048560, 32))
        lines = h["text"].splitlines()
        self.assertTrue(lines[0].startswith("000ffff0  "), lines)
        self.assertTrue(lines[1].startswith("00100000  "), lines)
        self.assertEqual(lines[2], "(cut: the view shows bytes 1048560 to 1048591 of the body)")


if __name__ == "__main__":
    proxyenv.main()
