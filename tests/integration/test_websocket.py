#!/usr/bin/python3
"""WebSocket through reel, recorded message by message (issue 10).

A real WebSocket server and client (Debian's python3-websockets, which
negotiates permessage-deflate by default) talk through `reel record`:
plain ws:// inside a CONNECT tunnel, wss:// through intercepted TLS, and a
hand-written client sending absolute-form requests with frames it builds
itself (fragments, pings, a close code, a protocol error). Every message
must be in the session with its exact bytes, direction and opcode.
"""
import asyncio
import base64
import json
import os
import signal
import shutil
import socket
import sqlite3
import ssl
import struct
import tempfile
import threading
import time
import unittest

import websockets

from proxyenv import TMPBASE, Origin, Reel, main, stop_class

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]


async def echo(ws, path=None):
    try:
        async for m in ws:
            await ws.send(m)
            if ws.path == "/server-drops":  # gone after one echo, without a Close frame
                ws.transport.close()
                return
    except websockets.ConnectionClosed:
        pass


class Server:
    """An asyncio WebSocket echo server (ws and wss) in a thread."""

    def __init__(self, certfile, keyfile):
        self.loop = asyncio.new_event_loop()
        self.port = self.tls_port = None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certfile, keyfile)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)

            async def start():
                self.plain = await websockets.serve(echo, "127.0.0.1", 0, max_size=None)
                self.tls = await websockets.serve(echo, "127.0.0.1", 0, ssl=ctx, max_size=None)
                self.port = self.plain.sockets[0].getsockname()[1]
                self.tls_port = self.tls.sockets[0].getsockname()[1]
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self):
        async def close():
            self.plain.close()
            self.tls.close()
            await self.plain.wait_closed()
            await self.tls.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def connect_tunnel(reel, host, port):
    s = socket.create_connection(("127.0.0.1", reel.port), 10)
    s.sendall(b"CONNECT %s:%d HTTP/1.1\r\nHost: x\r\n\r\n" % (host.encode(), port))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def frame(op, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def read_frame(s):
    def need(n):
        b = b""
        while len(b) < n:
            d = s.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    return b0 & 0x0F, need(n)


class WebSocketTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="ws.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))  # its CA and server cert
        d = os.path.join(cls.root, "origin")
        cls.server = Server(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        cls.reel = Reel(cls.root, "ws", "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        stop_class(cls)

    def flow_of(self, filt):
        flows = self.reel.wait_flows(1, filt, timeout=10)
        self.assertEqual(len(flows), 1, (filt, flows))
        return self.reel.flow(flows[0]["id"]), flows[0]

    def check_messages(self, full, sent):
        """sent: [(from_client, opcode, payload)] in the order of each side."""
        got = [(m["from_client"], m["opcode"], base64.b64decode(m["data_b64"]), m["length"])
               for m in full["messages"]]
        for side in (True, False):
            want = [(o, p) for c, o, p in sent if c == side]
            have = [(o, p) for c, o, p, _ in got if c == side and o in (1, 2)]
            self.assertEqual(len(have), len(want), side)
            for (wo, wp), (ho, hp) in zip(want, have):
                self.assertEqual(wo, ho)
                self.assertEqual(len(wp), len(hp))
                self.assertEqual(wp, hp)

    async def exchange(self, ws):
        sent = []
        for n in SIZES:
            data = os.urandom(n)
            await ws.send(data)
            self.assertEqual(await ws.recv(), data)
            sent += [(True, 2, data), (False, 2, data)]
            text = ("héllo " * (n // 7 + 1))[:n]
            await ws.send(text)
            self.assertEqual(await ws.recv(), text)
            sent += [(True, 1, text.encode()), (False, 1, text.encode())]
        await ws.ping(b"are you there")
        await ws.close(code=4001, reason="bye now")
        return sent

    def test_ws_in_a_connect_tunnel_with_deflate(self):
        r, srv = self.reel, self.server
        sock = connect_tunnel(r, "127.0.0.1", srv.port)

        async def go():
            async with websockets.connect("ws://127.0.0.1:%d/plain" % srv.port, sock=sock,
                                          max_size=None) as ws:
                return await self.exchange(ws)
        sent = asyncio.run(go())
        full, row = self.flow_of("~websocket & ~u /plain")
        self.assertEqual(row["kind"], "websocket")
        self.assertEqual(full["kind"], "websocket")  # reel flow --json said "http"
        self.assertEqual(full["response"]["status"], 101)
        self.check_messages(full, sent)
        self.assertTrue(any(m["compressed"] for m in full["messages"]), "deflate not in use")
        closes = [m for m in full["messages"] if m["type"] == "close"]
        self.assertEqual([m["close_code"] for m in closes], [4001, 4001])
        self.assertTrue(any(m["type"] == "ping" for m in full["messages"]))
        self.assertEqual(full["state"], "complete", full["error"])

    def test_wss_through_intercepted_tls(self):
        r, srv = self.reel, self.server
        sock = connect_tunnel(r, "localhost", srv.tls_port)
        ctx = ssl.create_default_context(cafile=r.ca)

        async def go():
            async with websockets.connect("wss://localhost:%d/secure" % srv.tls_port, sock=sock,
                                          ssl=ctx, server_hostname="localhost",
                                          max_size=None) as ws:
                return await self.exchange(ws)
        sent = asyncio.run(go())
        full, row = self.flow_of("~websocket & ~u /secure")
        self.assertTrue(row["url"].startswith("https://localhost:"), row["url"])
        self.check_messages(full, sent)
        sc = full["server_conn"]
        self.assertTrue(sc["tls_version"].startswith("TLSv1"), sc)
        self.assertEqual(sc["sni"], "localhost")

    def handshake(self, path, extra=b"", reel=None):
        """A raw WebSocket upgrade through reel (the class's unless given)
        to the echo server, once its 101 is read."""
        s = socket.create_connection(("127.0.0.1", (reel or self.reel).port), 10)
        s.sendall(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n%s\r\n" % (self.server.port, path, extra))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return s

    def test_absolute_form_fragments_and_control_frames(self):
        s = self.handshake(b"/frames")
        # "Hello, world" in three fragments with a ping between them
        s.sendall(frame(1, b"Hello", fin=False) + frame(9, b"ping!") +
                  frame(0, b", wor", fin=False) + frame(0, b"ld"))
        got = [read_frame(s), read_frame(s)]
        self.assertIn((10, b"ping!"), got)
        self.assertIn((1, b"Hello, world"), got)
        s.sendall(frame(8, struct.pack("!H", 1000) + b"done"))
        self.assertEqual(read_frame(s)[0], 8)
        s.close()
        full, _ = self.flow_of("~websocket & ~u /frames")
        fromc = [(m["type"], base64.b64decode(m["data_b64"])) for m in full["messages"]
                 if m["from_client"]]
        self.assertEqual(fromc[0], ("ping", b"ping!"))  # control frames come when they pass
        self.assertEqual(fromc[1], ("text", b"Hello, world"))
        self.assertEqual(fromc[2][0], "close")
        shown = self.reel.cli("flow", "ws", str(full["id"])).stdout.decode()
        self.assertIn("text 12 B", shown)
        self.assertIn("Hello, world", shown)

    def test_invalid_frame_closes_with_1002_and_is_recorded(self):
        s = self.handshake(b"/bad")
        s.sendall(frame(1, b"fine"))
        self.assertEqual(read_frame(s), (1, b"fine"))
        s.sendall(frame(1, b"not masked", mask=False))  # clients must mask
        op, payload = read_frame(s)
        self.assertEqual(op, 8)
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1002)
        s.settimeout(5)
        self.assertEqual(s.recv(100), b"")  # and the connection is closed
        s.close()
        full, row = self.flow_of("~websocket & ~u /bad")
        self.assertEqual(row["state"], "error")
        self.assertIn("invalid WebSocket frame", row["error"])
        self.assertIn("1002", row["error"])
        self.assertEqual([base64.b64decode(m["data_b64"]) for m in full["messages"]
                          if m["from_client"]], [b"fine"])

    def test_server_dropping_without_close_is_an_abnormal_closure(self):
        # RFC 6455 7.1.5: a connection that ends without a Close frame is
        # closed abnormally (1006); the flow says so and which side did it
        # (it used to end complete, as after a closing handshake)
        r, srv = self.reel, self.server
        sock = connect_tunnel(r, "127.0.0.1", srv.port)

        async def go():
            async with websockets.connect("ws://127.0.0.1:%d/server-drops" % srv.port,
                                          sock=sock) as ws:
                await ws.send("one")
                self.assertEqual(await ws.recv(), "one")
                with self.assertRaises(websockets.ConnectionClosedError) as cm:
                    await ws.recv()
                return cm.exception.code
        self.assertEqual(asyncio.run(go()), 1006)  # what the client saw
        full, row = self.flow_of("~websocket & ~u /server-drops")
        self.assertEqual(row["state"], "error", row)
        self.assertEqual(full["error"], "the server closed the connection without a WebSocket "
                         "Close frame (1006, abnormal closure)")
        self.assertEqual([m["type"] for m in full["messages"]], ["text", "text"])

    def test_client_dropping_without_close_is_an_abnormal_closure(self):
        s = self.handshake(b"/client-drops")
        s.sendall(frame(1, b"one"))
        self.assertEqual(read_frame(s), (1, b"one"))
        s.close()  # no Close frame
        full, row = self.flow_of("~websocket & ~u /client-drops")
        self.assertEqual(row["state"], "error", row)
        self.assertEqual(full["error"], "the client closed the connection without a WebSocket "
                         "Close frame (1006, abnormal closure)")
        # a closing handshake from the client is no error
        s = self.handshake(b"/client-closes")
        s.sendall(frame(8, struct.pack("!H", 1000)))
        self.assertEqual(read_frame(s)[0], 8)
        s.close()
        full, row = self.flow_of("~websocket & ~u /client-closes")
        self.assertEqual(row["state"], "complete", row)

    def test_messages_visible_while_the_connection_is_open(self):
        s = self.handshake(b"/live")
        s.sendall(frame(1, b"first"))
        self.assertEqual(read_frame(s), (1, b"first"))
        deadline = time.time() + 5
        while True:  # recorded within a second or so of passing, flow still open
            flows = self.reel.flows("~u /live")
            if flows and flows[0]["state"] == "open":
                full = self.reel.flow(flows[0]["id"])
                if full["messages"] and len(full["messages"]) >= 2:
                    break
            self.assertLess(time.time(), deadline, flows)
            time.sleep(0.1)
        self.assertEqual(full["state"], "open")
        s.sendall(frame(8, struct.pack("!H", 1000)))
        read_frame(s)
        s.close()

    def test_upgrade_without_a_message_is_a_websocket(self):
        # the 101 passed, then the client went before any message: a
        # WebSocket flow all the same (its kind used to wait for a message,
        # so `~websocket` missed it and it was listed as http)
        s = self.handshake(b"/no-message")
        s.close()
        full, row = self.flow_of("~websocket & ~u /no-message")
        self.assertEqual(row["kind"], "websocket")
        self.assertEqual(full["response"]["status"], 101)
        self.assertFalse(full.get("messages"))
        # not replayed: replay cannot carry a WebSocket (it used to send
        # the handshake again when the flow had no message)
        out = self.reel.cli("replay", "--json", self.reel.session, "~u /no-message", "--into",
                            "ws-replayed", check=False)
        got = json.loads(out.stdout)
        self.assertEqual(got["replays"], [], got)
        self.assertEqual(got["skipped"], [{"of": full["id"], "why": "it is a WebSocket flow"}], got)

    def test_killed_after_the_101_still_a_websocket_after_repair(self):
        # reel dies with the WebSocket open and no message yet: the index
        # rebuilt from the spool (repair) still says websocket
        root = tempfile.mkdtemp(prefix="wscut.", dir=TMPBASE)
        r = Reel(root, "wscut")
        try:
            s = self.handshake(b"/cut-after-101", reel=r)
            deadline = time.time() + 10
            while not r.flows("~websocket & ~u /cut-after-101"):  # indexed while open
                self.assertLess(time.time(), deadline, r.flows())
                time.sleep(0.1)
            r.stop(signal.SIGKILL)
            s.close()
        finally:
            r.stop(signal.SIGKILL)
        r.cli("repair", "wscut")
        rows = r.flows("~websocket & ~u /cut-after-101")
        self.assertEqual(len(rows), 1, r.flows())
        self.assertEqual(rows[0]["state"], "interrupted")

    def test_message_whose_later_records_are_gone_is_incomplete(self):
        """A message longer than one record (16 KiB) whose later records
        are not in the spool (still being written while the flow is open,
        or lost) says so: `incomplete` in --json, a note in the text. Before,
        it read as a whole message of fewer bytes than its length, not cut."""
        root = tempfile.mkdtemp(prefix="wsinc.", dir=TMPBASE)
        # frames of 256 KiB: the message's records span several
        r = Reel(root, "wsinc", "spool_block_size=256KiB")
        try:
            s = self.handshake(b"/incomplete", reel=r)
            big = os.urandom(1 << 20)
            s.sendall(frame(2, big))
            self.assertEqual(read_frame(s), (2, big))
            s.sendall(frame(8, struct.pack("!H", 1000)))
            read_frame(s)
            s.close()
            r.wait_flows(1, "~websocket & ~u /incomplete")
        finally:
            r.stop()
        # keep the spool up to the flow's third frame: the message's first
        # records stay, the rest go (as if not written yet)
        home = os.path.join(root, "home", "wsinc")
        db = sqlite3.connect(os.path.join(home, "session.db"))
        frames = db.execute("SELECT segment, offset FROM flow_frames ORDER BY segment, offset")\
            .fetchall()
        db.close()
        self.assertGreater(len(frames), 4, frames)
        seg, off = frames[2]
        os.truncate(os.path.join(home, "spool", "%08d.zst" % seg), off)
        full = r.flow(r.flows("~u /incomplete")[0]["id"])
        first = full["messages"][0]
        kept = len(base64.b64decode(first["data_b64"]))
        self.assertEqual((first["length"], first["truncated"], first.get("incomplete")),
                         (1 << 20, False, True), first)
        self.assertLess(kept, 1 << 20)
        self.assertEqual(base64.b64decode(first["data_b64"]), big[:kept])
        shown = r.cli("flow", "wsinc", str(full["id"]), "--headers-only").stdout.decode()
        self.assertIn("(incomplete: %d of its %d bytes are in the spool" % (kept, 1 << 20), shown)
        shutil.rmtree(root, ignore_errors=True)

    def stalled_client(self, path):
        """A raw upgrade (no extension) from a client with a tiny receive
        buffer, set before its connect so that its window stays small."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.reel.port))
        s.sendall(b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n" % (self.server.port, path))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        return s

    def test_websocket_not_delivered_is_an_error(self):
        """A WebSocket over HTTP/1.1 ends complete only once the client was
        given the server's last frames: one whose client stopped reading,
        with the echo and the server's Close still queued in reel when the
        server closed, waits for them, and is an error saying how many
        bytes were left when the client goes instead. It used to end
        complete when the server closed. (Reel's queue holds what the
        kernel does not: the echo must be larger than the socket buffers,
        whose size the system decides, and small enough for reel to read
        the server's Close behind it (its queue stops reading the server
        near 1 MiB): sizes are tried in steps until one is both.)"""
        def zframe(op, n):  # an all-zero payload under an all-zero mask: fast
            return struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n) + bytes(4 + n)

        def server_closed(path):
            # the server's Close recorded: it has sent everything, reel read it
            deadline = time.time() + 3
            while time.time() < deadline:
                rows = self.reel.flows("~u %s" % path)
                if rows and rows[0]["state"] != "open":
                    return rows[0]
                if rows and rows[0]["messages"] >= 3:
                    full = self.reel.flow(rows[0]["id"])
                    if any(m["type"] == "close" and not m["from_client"]
                           for m in full["messages"]):
                        return full
                time.sleep(0.05)
            return None

        def echoed(path):
            # the server's echo recorded whole (reel read all of it): only
            # then the client's Close, which a server may read before it
            # echoes a message still coming in, and then answer alone
            deadline = time.time() + 3
            while time.time() < deadline:
                rows = self.reel.flows("~u %s" % path)
                if rows and rows[0]["messages"] >= 2:
                    full = self.reel.flow(rows[0]["id"])
                    if any(m["type"] == "binary" and not m["from_client"]
                           for m in full["messages"]):
                        return True
                time.sleep(0.05)
            return False

        found = None
        for step in range(2, 97):  # 512 KiB to 24 MiB: the window is about 1 MiB wide
            size = step * (256 << 10)
            path = "/undelivered-%d" % size
            s = self.stalled_client(path.encode())
            s.sendall(zframe(2, size))
            if not echoed(path):  # too big: reel's queue stopped it before its end
                s.close()
                break
            s.sendall(frame(8, struct.pack("!H", 1000)))
            got = server_closed(path)
            if got is None:  # too big: reel's queue stopped it before the Close
                s.close()
                break
            # complete with nothing left in reel (the kernel took it all)
            # is right; open is the flow waiting for its last bytes
            state = got["state"]
            self.assertIn(state, ("open", "complete"), got)
            if state == "complete":
                s.close()
                continue
            time.sleep(0.3)
            self.assertEqual(self.reel.flows("~u %s" % path)[0]["state"], "open")
            s.close()  # unread bytes: a reset
            full, row = self.flow_of("~websocket & ~u %s" % path)
            found = full
            break
        self.assertIsNotNone(found, "no echo size left bytes in reel's queue after the "
                             "server's Close (the flow always ended complete?)")
        self.assertEqual(found["state"], "error")
        self.assertRegex(found["error"], r"^client connection error: .* before the client "
                         r"received the whole WebSocket \(\d+ bytes of the connection's output "
                         r"were still queued in reel\)$")
        self.assertGreater(int(found["error"].split("(")[1].split()[0]), 0)
        # the same with a client that reads it all: complete
        path = "/delivered-%d" % size
        s = self.stalled_client(path.encode())
        s.sendall(zframe(2, size))
        ops = [read_frame(s)[0]]  # the echo, whole, before the Close goes
        s.sendall(frame(8, struct.pack("!H", 1000)))
        self.assertIsNotNone(server_closed(path))
        while ops[-1] != 8:
            ops.append(read_frame(s)[0])
        self.assertEqual(ops, [2, 8])
        s.close()
        full, row = self.flow_of("~websocket & ~u %s" % path)
        self.assertEqual(full["state"], "complete", full["error"])

    def test_zz_verify_counts_message_bytes(self):
        """After the other tests: `reel verify` finds every WebSocket flow
        whole (message payloads count as the flow's stored bytes; it used
        to report each one as a hole)."""
        self.reel.wait_flows(1, "~websocket", timeout=10)
        r = self.reel.cli("verify", self.reel.session, check=False)
        out = (r.stdout + r.stderr).decode(errors="replace")
        self.assertNotIn("hole", out)
        self.assertEqual(r.returncode, 0, out)


if __name__ == "__main__":
    main()
