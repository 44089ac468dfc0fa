"""reel flow --view: contentviews on flows of a real session (made by
reel import from a HAR), into a pipe and on a terminal (a pty): views
picked by Content-Type, malformed content shown as hex with the reason,
hostile control bytes escaped on a terminal, colour only there."""
import base64
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import tempfile
import unittest

REEL = os.environ.get("REEL", "build/reel")
TMPBASE = os.environ.get("REEL_TEST_TMP", tempfile.gettempdir())

PB = bytes([0x08, 0x96, 0x01, 0x12, 0x05]) + b"hello" + bytes([0x1a, 0x04, 0x08, 0x01, 0x10, 0x02])
PNG = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 640, 480)
       + bytes([8, 6, 0, 0, 0]))
MP = ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue1\r\n--XyZ\r\n"
      "Content-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n\x01\x02\x03\r\n--XyZ--\r\n")


def entry(url, ct, body, method="GET", req_ct=None, req_body=None):
    b64 = isinstance(body, bytes)
    req = {"method": method, "url": url, "httpVersion": "HTTP/1.1",
           "headers": [{"name": "Content-Type", "value": req_ct}] if req_ct else [],
           "queryString": [], "cookies": [], "headersSize": -1, "bodySize": -1}
    if req_body is not None:
        req["postData"] = {"mimeType": req_ct, "text": req_body}
    content = {"size": len(body), "mimeType": ct,
               "text": base64.b64encode(body).decode() if b64 else body}
    if b64:
        content["encoding"] = "base64"
    return {"startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1, "request": req,
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [{"name": "Content-Type", "value": ct}], "cookies": [],
                         "content": content, "redirectURL": "", "headersSize": -1,
                         "bodySize": -1},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}


class Views(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-views-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=os.path.join(cls.root, "home"))
        cls.env.pop("NO_COLOR", None)
        entries = [
            entry("http://a.test/j?x=1&y=%41", "application/json",
                  '{"a":[1,2.5,{"b":"x\\u001b"}],"t":true}', "POST",
                  "application/x-www-form-urlencoded", "a=1&bb=hello+world"),
            entry("http://a.test/m", "text/html", "<p>hi", "POST",
                  "multipart/form-data; boundary=XyZ", MP),
            entry("http://a.test/pb", "application/x-protobuf", PB),
            entry("http://a.test/png", "image/png", PNG),
            entry("http://a.test/bad", "application/json", '{"a":1,'),
            entry("http://a.test/esc", "text/plain", "red \x1b[31m alert\x07"),
            entry("http://a.test/demo.v1.Svc/Get", "application/grpc",
                  b"\0" + struct.pack(">I", len(PB)) + PB, "POST"),
        ]
        har = os.path.join(cls.root, "t.har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)
        subprocess.run([REEL, "import", har, "--into", "v"], env=cls.env, check=True,
                       stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def flow(self, *args):
        r = subprocess.run([REEL, "flow", "v", *args], env=self.env, capture_output=True)
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode()

    def tty(self, *args):
        """reel flow with stdout on a pty: what a terminal gets."""
        master, slave = pty.openpty()
        p = subprocess.Popen([REEL, "flow", "v", *args], env=self.env, stdout=slave,
                             stderr=subprocess.DEVNULL)
        os.close(slave)
        out = b""
        while True:
            r, _, _ = select.select([master], [], [], 10)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        p.wait(timeout=10)
        return out

    def test_json_form_query(self):
        rc, out, _ = self.flow("1", "--view", "auto")
        self.assertEqual(rc, 0)
        self.assertIn("> (query)\nx  1\ny  A\n", out)
        self.assertIn("a   1\nbb  hello world\n", out)
        self.assertIn('{\n  "a": [\n    1,\n    2.5,\n    {\n      "b": "x\\u001b"\n'
                      '    }\n  ],\n  "t": true\n}\n', out)
        self.assertNotIn("\x1b", out)  # piped: no colour

    def test_multipart_html(self):
        rc, out, _ = self.flow("2", "--view", "auto")
        self.assertEqual(rc, 0)
        self.assertIn("part 1: 6 bytes\n  Content-Disposition: form-data; name=\"a\"\n"
                      "  = value1\npart 2: 3 bytes\n", out)
        self.assertIn("<p>hi</p>", out)

    def test_protobuf_image(self):
        _, out, _ = self.flow("3", "--view", "auto")
        self.assertIn('1: 150\n2: "hello"\n3 {\n  1: 1  (sint -1)\n  2: 2\n}\n', out)
        _, out, _ = self.flow("4", "--view", "auto")
        self.assertIn("PNG image: 640 x 480 pixels, 8-bit RGBA", out)

    def test_malformed_falls_back(self):
        _, out, _ = self.flow("5", "--view", "json")
        self.assertIn("(not JSON: ", out)
        self.assertIn("; shown as hex)\n00000000  7b 22 61 22 3a 31 2c", out)
        _, out, _ = self.flow("4", "--view", "protobuf")
        self.assertIn("(not protobuf: ", out)

    def test_terminal_escapes_and_colour(self):
        out = self.tty("6", "--view", "raw")
        self.assertIn(b"red \\x1b[31m alert\\x07", out)
        self.assertNotIn(b"\x1b[31m alert", out)
        out = self.tty("1", "--view", "json")
        self.assertIn(b"\x1b[34m\"a\"\x1b[0m", out)  # keys in colour on a terminal

    def test_proto_schema(self):
        proto = os.path.join(self.root, "demo.proto")
        with open(proto, "w") as f:
            f.write('syntax = "proto3";\npackage demo.v1;\n'
                    "message Req { int32 id = 1; string name = 2; Sub sub = 3; }\n"
                    "message Sub { sint32 a = 1; Kind kind = 2; }\n"
                    "enum Kind { K0 = 0; K1 = 1; K2 = 2; }\n"
                    "service Svc { rpc Get (Req) returns (Req); }\n")
        # gRPC: the rpc the path names; --proto implies --view auto
        rc, out, _ = self.flow("7", "--proto", proto)
        self.assertEqual(rc, 0)
        self.assertIn('message 1 (demo.v1.Req): 16 bytes\n  id: 150\n  name: "hello"\n'
                      "  sub {\n    a: -1\n    kind: K2 (2)\n  }\n", out)
        # a plain protobuf body, the message named
        rc, out, _ = self.flow("3", "--proto", proto + ":Req", "--view", "protobuf")
        self.assertIn('demo.v1.Req\nid: 150\nname: "hello"\nsub {\n', out)
        rc, _, err = self.flow("3", "--proto", proto + ":Nope")
        self.assertNotEqual(rc, 0)
        self.assertIn("no message 'Nope'", err)
        with open(proto, "w") as f:
            f.write("message A {\n  int32 x = 0;\n}\n")
        rc, _, err = self.flow("3", "--proto", proto)
        self.assertNotEqual(rc, 0)
        self.assertIn("line 2: field number '0'", err)

    def test_bad_view_name(self):
        rc, _, err = self.flow("1", "--view", "nope")
        self.assertNotEqual(rc, 0)
        self.assertIn("unknown view 'nope'", err)

    def test_help(self):
        r = subprocess.run([REEL, "flow", "--help"], env=self.env, capture_output=True, text=True)
        self.assertIn("--view VIEW", r.stdout + r.stderr)


class WebSocketViews(unittest.TestCase):
    """--view on a WebSocket flow recorded through reel: each message through
    its view (websocket: auto per message)."""

    def test_messages_through_views(self):
        import asyncio

        import websockets
        from proxyenv import Origin, Reel, stop_class
        from test_websocket import Server, connect_tunnel

        root = tempfile.mkdtemp(prefix="reel-views-ws-", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        d = os.path.join(root, "origin")
        server = Server(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
        self.root, self.origin, self.server = root, origin, server
        self.reel = Reel(root, "ws", "upstream_trusted_ca=" + origin.ca)
        try:
            sock = connect_tunnel(self.reel, "127.0.0.1", server.port)

            async def go():
                async with websockets.connect("ws://127.0.0.1:%d/v" % server.port, sock=sock) as ws:
                    await ws.send('{"op":"hi","n":[1,2]}')
                    await ws.recv()
                    await ws.send(PB)
                    await ws.recv()
            asyncio.run(go())
            fid = self.reel.wait_flows(1, "~websocket", timeout=10)[0]["id"]
            out = self.reel.cli("flow", "ws", str(fid), "--view", "websocket").stdout.decode()
            self.assertEqual(out.count('{\n  "op": "hi",\n  "n": [\n    1,\n    2\n  ]\n}\n'), 2,
                             out)
            self.assertEqual(out.count("00000000  08 96 01 12 05 68 65 6c"), 2, out)  # auto: hex
            out = self.reel.cli("flow", "ws", str(fid), "--view", "protobuf").stdout.decode()
            self.assertEqual(out.count('1: 150\n2: "hello"\n'), 2, out)
            self.assertIn("(not protobuf: ", out)  # the JSON messages
        finally:
            server.stop()
            stop_class(self)


if __name__ == "__main__":
    unittest.main(verbosity=2)
