#!/usr/bin/python3
"""Chromium's WebSockets through reel, recorded byte for byte (issue 10).

Debian's chromium (headless, driven by playwright-core from the npm
registry, installed here into the build folder with `npm ci`, never a
downloaded browser) loads tests/browser/ws_page.html from a test server through
`reel record`. The page opens ws://127.0.0.1 (Chromium sends it as plain
HTTP in a CONNECT tunnel; the server declines permessage-deflate) and
wss://localhost (intercepted TLS; Chromium trusts reel's CA from an NSS
database in a HOME of its own; deflate accepted) to a python3-websockets
echo server and exchanges text and binary messages of 0 B, 125 B, 126 B,
64 KiB and 1 MiB. The server sends a fragmented text and a fragmented
binary message, a ping that Chromium answers, and closes the wss one with
4002; the page closes the ws one with 4321. Every message must be in the
session with its exact bytes, direction and opcode.

Prints "skipped: ..." and exits 0 when chromium, node/npm or certutil are
not installed (scripts/bootstrap --test installs them).
"""
import asyncio
import base64
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from proxyenv import TMPBASE, Origin, Reel, run, stop_class  # noqa: E402

CHROMIUM = os.environ.get("REEL_CHROMIUM", "/usr/bin/chromium")
SIZES = [0, 125, 126, 65536, 1 << 20]
CHARS = list("reel ✓ héllo wörld — 🎉 ")
FRAG_TEXT = ["frag-one|", "frag-two|", "frag-three"]
FRAG_BIN = [b"\x00\x01", b"", bytes(range(256)) * 2]
PING = b"reel-ping"


def make_text(n):
    """n bytes of UTF-8, as ws_page.html's makeText makes them."""
    out, size, i = [], 0, 0
    while True:
        ch = CHARS[i % len(CHARS)]
        i += 1
        size_ch = len(ch.encode())
        if size + size_ch > n:
            break
        out.append(ch)
        size += size_ch
    return ("".join(out) + "x" * (n - size)).encode()


def make_binary(n):
    return bytes((i * 167 + (i >> 9) * 13 + n) & 255 for i in range(n))


def expected(server_closes):
    """The data messages (opcode, bytes) each side sends, in order."""
    client, server = [], []
    for n in SIZES:
        t, b = make_text(n), make_binary(n)
        client += [(1, t), (2, b)]
        server += [(1, t), (2, b)]
    client += [(1, b"fragment-me"), (1, b"ping-me")]
    server += [(1, "".join(FRAG_TEXT).encode()), (2, b"".join(FRAG_BIN)), (1, b"pong-ok")]
    if server_closes:
        client.append((1, b"close-me"))
    return client, server


def missing_tools():
    for path, what in ((CHROMIUM, "chromium"), (shutil.which("node"), "node"),
                       (shutil.which("npm"), "npm"), (shutil.which("certutil"), "certutil")):
        if not path or not os.access(path, os.X_OK):
            return what
    return None


def install_playwright():
    """npm ci of tests/browser/package-lock.json into the build folder, once
    per lock file. Returns the node_modules directory."""
    deps = os.environ.get("REEL_BROWSER_DEPS") or os.path.join(TMPBASE, "browser-deps")
    os.makedirs(deps, exist_ok=True)
    with open(os.path.join(HERE, "package-lock.json"), "rb") as f:
        lock = f.read()
    stamp = os.path.join(deps, "installed.lock")
    if os.path.exists(stamp):
        with open(stamp, "rb") as f:
            if f.read() == lock:
                return os.path.join(deps, "node_modules")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, name), os.path.join(deps, name))
    run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=deps, timeout=300)
    with open(stamp, "wb") as f:
        f.write(lock)
    return os.path.join(deps, "node_modules")


class EchoServer:
    """python3-websockets echo servers (ws without deflate, wss with it) in
    a thread; each connection's received and sent messages are logged by
    path. Commands: fragment-me, ping-me, close-me."""

    def __init__(self, certfile, keyfile):
        import websockets
        self.ws = websockets
        self.loop = asyncio.new_event_loop()
        self.log = {}
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
        ready = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)

            async def start():
                self.plain = await websockets.serve(self.handle, "127.0.0.1", 0, max_size=None,
                                                    compression=None)
                self.tls = await websockets.serve(self.handle, "127.0.0.1", 0, ssl=ctx,
                                                  max_size=None)
                self.port = self.plain.sockets[0].getsockname()[1]
                self.tls_port = self.tls.sockets[0].getsockname()[1]
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        ready.wait(10)

    async def handle(self, ws, path=None):
        log = self.log.setdefault(path or ws.path, {"recv": [], "ext": None})
        log["ext"] = ws.response_headers.get("Sec-WebSocket-Extensions")

        async def binary_fragments():
            for part in FRAG_BIN:
                yield part
        try:
            async for m in ws:
                log["recv"].append(m)
                if m == "fragment-me":
                    await ws.send(iter(FRAG_TEXT))         # fragments from an iterable
                    await ws.send(binary_fragments())      # and from an async iterator
                elif m == "ping-me":
                    await (await ws.ping(PING))
                    await ws.send("pong-ok")
                elif m == "close-me":
                    await ws.close(4002, "server bye")
                else:
                    await ws.send(m)
        except self.ws.ConnectionClosed:
            pass

    def stop(self):
        async def close():
            for s in (self.plain, self.tls):
                s.close()
                await s.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class PageServer:
    """Serves ws_page.html as text/html (nginx's test config knows no html)."""

    def __init__(self):
        with open(os.path.join(HERE, "ws_page.html"), "rb") as f:
            page = f.read()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class BrowserWebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node_modules = install_playwright()
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="browser-ws.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.pages = PageServer()
        d = os.path.join(cls.root, "origin")
        cls.server = EchoServer(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        cls.reel = Reel(cls.root, "browser", "upstream_trusted_ca=" + cls.origin.ca)
        cls.home = trust_ca(os.path.join(cls.root, "chromium-home"), cls.reel.ca)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.pages.stop()
        stop_class(cls)

    def test_chromium_websockets_recorded_byte_for_byte(self):
        srv, r = self.server, self.reel
        url = ("http://127.0.0.1:%d/ws_page.html?ws=ws://127.0.0.1:%d/plain"
               "&wss=wss://localhost:%d/secure" % (self.pages.port, srv.port, srv.tls_port))
        env = dict(os.environ, HOME=self.home, NODE_PATH=self.node_modules)
        t0 = time.time()
        p = subprocess.run(["node", os.path.join(HERE, "drive.cjs"), url, r.proxy, "45000"],
                           env=env, capture_output=True, timeout=90)
        sys.stderr.write("chromium run: %.1f s\n" % (time.time() - t0))
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-3000:])
        plain, secure = json.loads(p.stdout)

        # What the page saw.
        for conv in (plain, secure):
            self.assertEqual(conv["errors"], [], conv)
            self.assertEqual(conv["echoed"], 2 * len(SIZES), conv)
            self.assertEqual(conv["fragmented"], ["".join(FRAG_TEXT), list(b"".join(FRAG_BIN))])
            self.assertEqual(conv["afterPing"], "pong-ok")
        self.assertEqual(plain["extensions"], "")
        self.assertIn("permessage-deflate", secure["extensions"])
        self.assertEqual((plain["close"]["code"], plain["close"]["reason"]), (4321, "client bye"))
        self.assertEqual((secure["close"]["code"], secure["close"]["reason"]), (4002, "server bye"))

        # What the server received is what the page sent.
        for path, closes in (("/plain", False), ("/secure", True)):
            got = [m.encode() if isinstance(m, str) else m for m in srv.log[path]["recv"]]
            self.assertEqual(got, [p for _, p in expected(closes)[0]], path)

        # What reel recorded.
        flows = r.wait_flows(2, "~websocket", timeout=15)
        self.assertEqual(len(flows), 2, flows)
        by_path = {}
        for f in flows:
            full = r.flow(f["id"])
            by_path[full["request"]["target"].split("?")[0].rsplit("/", 1)[-1]] = (f, full)
        self.assertEqual(sorted(by_path), ["plain", "secure"], flows)

        row, full = by_path["plain"]
        self.assertTrue(row["url"].startswith("http://127.0.0.1:%d/plain" % srv.port), row)
        self.check_session(full, server_closes=False, deflate=False)
        self.assertEqual(self.closes(full), [(True, 4321), (False, 4321)])

        row, full = by_path["secure"]
        self.assertTrue(row["url"].startswith("https://localhost:%d/secure" % srv.tls_port), row)
        self.check_session(full, server_closes=True, deflate=True)
        self.assertEqual(self.closes(full), [(False, 4002), (True, 4002)])
        self.assertEqual(full["server_conn"]["sni"], "localhost")

    @staticmethod
    def closes(full):
        return [(m["from_client"], m["close_code"]) for m in full["messages"] if m["opcode"] == 8]

    def check_session(self, full, server_closes, deflate):
        self.assertEqual(full["response"]["status"], 101)
        self.assertEqual(full["state"], "complete", full["error"])
        msgs = full["messages"]
        for m in msgs:
            self.assertFalse(m["truncated"], m)
            self.assertIsNotNone(m["data_b64"], m)
            self.assertEqual(len(base64.b64decode(m["data_b64"])), m["length"], m)
        want_client, want_server = expected(server_closes)
        for side, want in ((True, want_client), (False, want_server)):
            have = [(m["opcode"], base64.b64decode(m["data_b64"])) for m in msgs
                    if m["from_client"] == side and m["opcode"] in (1, 2)]
            self.assertEqual(len(have), len(want), "from_client=%s" % side)
            for i, (h, w) in enumerate(zip(have, want)):
                self.assertEqual(h[0], w[0], "message %d from_client=%s: opcode" % (i, side))
                self.assertTrue(h[1] == w[1], "message %d from_client=%s: %d bytes recorded, "
                                "%d sent" % (i, side, len(h[1]), len(w[1])))
        pings = [(m["from_client"], m["type"], base64.b64decode(m["data_b64"])) for m in msgs
                 if m["opcode"] in (9, 10)]
        self.assertEqual(pings, [(False, "ping", PING), (True, "pong", PING)])
        self.assertEqual(any(m["compressed"] for m in msgs), deflate)


def trust_ca(home, ca):
    """A HOME for Chromium whose NSS database trusts reel's CA, as a user's
    would. Returns home."""
    nssdb = "sql:" + os.path.join(home, ".pki", "nssdb")
    os.makedirs(os.path.join(home, ".pki", "nssdb"))
    run(["certutil", "-N", "-d", nssdb, "--empty-password"])
    run(["certutil", "-A", "-d", nssdb, "-n", "reel test CA", "-t", "C,,", "-i", ca])
    return home


def main():
    """Runs the calling test module (skipped when a tool is missing)."""
    what = missing_tools()
    if what:
        print("skipped: %s is not installed (scripts/bootstrap --test installs it)" % what)
        sys.exit(0)
    if not os.environ.get("REEL"):
        print("REEL is not set", file=sys.stderr)
        sys.exit(2)
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    res = prog.result
    failed = len(res.failures) + len(res.errors)
    print("%d passed, %d failed" % (res.testsRun - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
