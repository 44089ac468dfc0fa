#!/usr/bin/python3
"""A HAR round trip keeps what body_limit cut: `reel record` with a small
body_limit in front of the nginx origin, curl posting and fetching bodies
longer than the limit, `reel export --format har`, `reel import` of that
file into another session. The imported flows must say their bodies were
truncated, with the sizes the wire had, exactly as the captured ones do,
and `reel replay` must refuse to send the partial request body as if it
were whole, as it does for the captured flow.
"""
import base64
import gzip
import http.server
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import unittest

import brotli

from proxyenv import (REEL, TMPBASE, Origin, Reel, body, curl, free_port, main, raw, run,
                      stop_class, ws_echo_server, ws_echo_through)

LIMIT = 1024


class HarRoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "cut", "body_limit=%d" % LIMIT,
                        "upstream_trusted_ca=" + cls.origin.ca)
        cls.upload = bytes(range(256)) * 20  # 5120 bytes, not UTF-8: base64 in the HAR
        path = os.path.join(cls.root, "upload.bin")
        with open(path, "wb") as f:
            f.write(cls.upload)
        r = curl(cls.reel, cls.origin.url("/echo?cut"), "--data-binary", "@" + path)
        assert r.returncode == 0, r.stderr
        r = curl(cls.reel, cls.origin.url("/file1m?cut"))
        assert r.stdout == cls.origin.file1m
        cls.captured = cls.reel.wait_flows(2)
        assert len(cls.captured) == 2, cls.captured
        cls.har = os.path.join(cls.root, "cut.har")
        cls.reel.cli("export", "cut", "--format", "har", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def flow(self, session, fid):
        return json.loads(self.reel.cli("flow", session, str(fid), "--json").stdout)

    def pairs(self):
        """(captured flow, imported flow) by URL."""
        back = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual(len(back), 2, back)
        by_url = {f["url"]: f for f in back}
        return [(self.flow("cut", c["id"]), self.flow("back", by_url[c["url"]]["id"]))
                for c in self.captured]

    def test_the_har_says_what_was_cut(self):
        with open(self.har) as f:
            entries = json.load(f)["log"]["entries"]
        extras = sorted(sorted(k for k in e.get("_reel", {}) if k.endswith("_truncated"))
                        for e in entries)
        self.assertEqual(extras, [["request_truncated"], ["response_truncated"]])

    def test_imported_flows_are_truncated_as_captured(self):
        for cap, imp in self.pairs():
            for side in ("request", "response"):
                self.assertEqual(imp[side]["body_truncated"], cap[side]["body_truncated"],
                                 (side, cap["request"]["url"]))
                self.assertEqual(imp[side]["body_size"], cap[side]["body_size"],
                                 (side, cap["request"]["url"]))
                self.assertEqual(body(imp, side), body(cap, side))
        post = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "POST"][0]
        self.assertTrue(post["request"]["body_truncated"])
        self.assertEqual(post["request"]["body_size"], len(self.upload))
        self.assertEqual(body(post, "request"), self.upload[:LIMIT])
        get = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "GET"][0]
        self.assertTrue(get["response"]["body_truncated"])
        self.assertEqual(get["response"]["body_size"], len(self.origin.file1m))
        self.assertEqual(body(get, "response"), self.origin.file1m[:LIMIT])
        # 'reel flow' says so, as it does for the captured flow, with the
        # cause each record knows: body_limit for the capture; for the
        # import, that the HAR held no more (a HAR's cut may be a
        # browser's, and the record does not say which)
        cap = [c for c in self.captured if c["method"] == "POST"][0]
        line = b"(body truncated at %d of %d bytes" % (LIMIT, len(self.upload))
        self.assertIn(line + b" by body_limit)\n",
                      self.reel.cli("flow", "cut", str(cap["id"])).stdout)
        self.assertIn(line + b": the HAR it was imported from held no more)\n",
                      self.reel.cli("flow", "back", str(post["id"])).stdout)

    def test_replay_refuses_the_partial_body(self):
        post = [imp for cap, imp in self.pairs() if imp["request"]["method"] == "POST"][0]
        r = self.reel.cli("replay", "back", str(post["id"]), check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, b"#%d skipped: its request body was not stored whole "
                         b"(%d of %d bytes): the HAR it was imported from held no more\n" % (
                             post["id"], LIMIT, len(self.upload)))

    def test_cut_of_unknown_size(self):
        # _reel.request_truncated without a bodySize: cut, size unknown
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                 "request": {"method": "POST", "url": "http://example.test/p",
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": -1,
                             "postData": {"mimeType": "text/plain", "text": "hello"}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [],
                              "content": {"size": 0, "mimeType": "text/plain"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 0},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
                 "_reel": {"request_truncated": True}}
        path = os.path.join(self.root, "nosize.har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        self.reel.cli("import", path, "--into", "nosize")
        text = self.reel.cli("flow", "nosize", "1").stdout
        self.assertIn(b"\n(body truncated at 5 bytes: the HAR it was imported from held no more)\n",
                      text)
        r = self.reel.cli("replay", "nosize", "1", check=False)
        self.assertEqual(r.stdout, b"#1 skipped: its request body was not stored whole (its first "
                         b"5 bytes): the HAR it was imported from held no more\n")

    def test_help_says_a_cut_body_stays_cut(self):
        # 'reel import --help' said an import stores "whole bodies"
        out = self.reel.cli("import", "--help").stdout
        self.assertNotIn(b"whole bodies", out)
        text = b" ".join(out.split())
        self.assertIn(b"is recorded as truncated, with the size the wire had", text)
        self.assertIn(b"_reel.request_truncated", text)
        self.assertIn(b"but for the ':protocol' of a CONNECT", text)


class H2WebSocketRoundTrip(unittest.TestCase):
    """An HTTP/2 WebSocket (RFC 8441 extended CONNECT, python3-h2 speaking
    h2c to reel, a websockets echo origin behind it) captured, exported as
    HAR and imported: the imported flow is the CONNECT with ':protocol:
    websocket' that was captured, not a bare CONNECT."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-h2ws-", dir=TMPBASE)
        cls.reel = Reel(cls.root, "h2ws")
        with ws_echo_server() as port:
            cls.capture(port)
        cls.captured = cls.reel.wait_flows(1, "~websocket", timeout=10)
        assert len(cls.captured) == 1, cls.captured
        cls.har = os.path.join(cls.root, "h2ws.har")
        cls.reel.cli("export", "h2ws", "--format", "har", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")

    @classmethod
    def capture(cls, port):
        """One WebSocket over an h2c stream through reel to port."""
        import h2.config
        import h2.connection
        import h2.events
        s = socket.create_connection(("127.0.0.1", cls.reel.port), 10)
        try:
            c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            c.initiate_connection()
            s.sendall(c.data_to_send())
            got = {"headers": None, "data": b"", "ended": False}

            def pump_until(pred):
                deadline = time.time() + 10
                while not pred():
                    assert time.time() < deadline, got
                    d = s.recv(65536)
                    assert d, "reel closed the connection"
                    for ev in c.receive_data(d):
                        if isinstance(ev, h2.events.ResponseReceived):
                            got["headers"] = ev.headers
                        elif isinstance(ev, h2.events.DataReceived):
                            got["data"] += ev.data
                            c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                            got["ended"] = True
                    s.sendall(c.data_to_send())
            pump_until(lambda: c.remote_settings.enable_connect_protocol == 1)
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                 (":scheme", "http"), (":path", "/chat"),
                                 (":authority", "127.0.0.1:%d" % port),
                                 ("sec-websocket-version", "13")])
            key, msg = b"\x01\x02\x03\x04", b"hello over h2"
            c.send_data(sid, b"\x81" + bytes([0x80 | len(msg)]) + key +
                        bytes(b ^ key[i % 4] for i, b in enumerate(msg)))
            s.sendall(c.data_to_send())
            pump_until(lambda: len(got["data"]) >= 2 + len(msg))
            close = b"\x03\xe8"
            c.send_data(sid, b"\x88\x82" + key + bytes(b ^ key[i] for i, b in enumerate(close)))
            s.sendall(c.data_to_send())
            pump_until(lambda: got["ended"])
        finally:
            s.close()

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        assert code == 0, "reel record exited %d on SIGINT: %s" % (code, cls.reel.log())
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_imported_is_the_extended_connect_captured(self):
        cap = json.loads(self.reel.cli("flow", "h2ws", str(self.captured[0]["id"]),
                                       "--json").stdout)
        back = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual(len(back), 1, back)
        imp = json.loads(self.reel.cli("flow", "back", str(back[0]["id"]), "--json").stdout)
        self.assertEqual(cap["request"]["method"], "CONNECT")
        self.assertEqual(cap["request"]["headers"][0], [":protocol", "websocket"])
        for k in ("method", "headers", "url", "http_version"):
            self.assertEqual(imp["request"][k], cap["request"][k], k)
        self.assertEqual(back[0]["method"], "CONNECT")
        self.assertEqual(back[0]["kind"], self.captured[0]["kind"])
        self.assertEqual(back[0]["url"], self.captured[0]["url"])
        # found as a WebSocket, as the captured flow is
        self.assertEqual([f["id"] for f in json.loads(
            self.reel.cli("flows", "back", "--json", "~websocket").stdout)], [back[0]["id"]])


class WebSocketCloseCutRoundTrip(unittest.TestCase):
    """A WebSocket's close whose payload body_limit cut before its two
    bytes of code (body_limit 1: a close 4001 "bye" keeps one byte) still
    has its code in the record (reel's codec read the frame whole); the
    HAR says it ("closeCode") and reel import reads it back. It used to
    come back 0, unknown."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-wsclose-", dir=TMPBASE)
        cls.reel = Reel(cls.root, "wsclose", "body_limit=1")
        with ws_echo_server() as port:
            cls.capture(port)
        cls.captured = cls.reel.wait_flows(1, "~websocket", timeout=10)
        assert len(cls.captured) == 1, cls.captured
        cls.har = os.path.join(cls.root, "wsclose.har")
        cls.reel.cli("export", "wsclose", "--format", "har", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")

    @classmethod
    def capture(cls, port):
        """A text message and a close 4001 "bye" through reel, echoed."""
        ws_echo_through(cls.reel.port, port, b"hello", struct.pack("!H", 4001) + b"bye")

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        assert code == 0, "reel record exited %d on SIGINT: %s" % (code, cls.reel.log())
        shutil.rmtree(cls.root, ignore_errors=True)

    def closes(self, session, fid):
        full = json.loads(self.reel.cli("flow", session, str(fid), "--json").stdout)
        return [(m["from_client"], m["close_code"], m["length"], m["truncated"],
                 base64.b64decode(m["data_b64"])) for m in full["messages"]
                if m["type"] == "close"]

    def test_close_code_comes_back(self):
        cap = self.closes("wsclose", self.captured[0]["id"])
        self.assertEqual(cap, [(True, 4001, 5, True, b"\x0f"), (False, 4001, 5, True, b"\x0f")])
        with open(self.har, encoding="utf-8") as f:
            doc = json.load(f)
        wsm = doc["log"]["entries"][0]["_webSocketMessages"]
        self.assertEqual([(m["opcode"], m.get("closeCode")) for m in wsm],
                         [(1, None), (1, None), (8, 4001), (8, 4001)])
        (back,) = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual(self.closes("back", back["id"]), cap)

    def test_a_close_code_that_does_not_fit_is_refused(self):
        with open(self.har, encoding="utf-8") as f:
            doc = json.load(f)
        # the messages: 0 text, 1 its echo, 2 the client's close
        cases = [
            (0, 4001, b"_webSocketMessages[0].closeCode: on a message that is not a close"),
            (2, "4001", b"_webSocketMessages[2].closeCode: not an integer but a string"),
            (2, 999, b"_webSocketMessages[2].closeCode: 999, which no endpoint sends"),
            (2, "whole", b"_webSocketMessages[2].closeCode: on a close whose data is not cut "
             b"before its code"),
        ]
        for i, value, message in cases:
            with self.subTest(message=message):
                bad = json.loads(json.dumps(doc))
                m = bad["log"]["entries"][0]["_webSocketMessages"][i]
                if value == "whole":
                    m["data"] = base64.b64encode(struct.pack("!H", 4001) + b"bye").decode()
                    del m["truncated"], m["length"]
                    m["closeCode"] = 4001
                else:
                    m["closeCode"] = value
                p = os.path.join(self.root, "bad.har")
                with open(p, "w", encoding="utf-8") as f:
                    json.dump(bad, f)
                r = self.reel.cli("import", p, "--into", "bad", check=False)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(b"bad.har: entries[0]." + message, r.stderr)


class HarVersions(unittest.TestCase):
    """log.version of another major version and an httpVersion no HTTP has
    are refused, naming the file, the entry and the value; what browsers
    and mitmproxy write for HTTP/1, 2 and 3 is read."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-versions-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def har(self, name, versions, log_version="1.2"):
        entries = [{"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                    "request": {"method": "GET", "url": "https://example.test/%d" % i,
                                "httpVersion": v, "headers": [], "queryString": [],
                                "cookies": [], "headersSize": -1, "bodySize": 0},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": v,
                                 "headers": [], "cookies": [],
                                 "content": {"size": 0, "mimeType": "text/plain"},
                                 "redirectURL": "", "headersSize": -1, "bodySize": 0},
                    "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
                   for i, v in enumerate(versions)]
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            json.dump({"log": {"version": log_version, "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)
        return path

    def cli(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check)

    def test_unknown_har_version(self):
        p = self.har("future.har", ["HTTP/1.1"], log_version="9.9")
        r = self.cli("import", p, "--into", "future", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, b"reel import: %s: log.version: HAR version 9.9 is not "
                         b"supported (reel reads HAR 1.x: 1.1 and 1.2)\n" % p.encode())
        self.assertFalse(os.path.exists(os.path.join(self.root, "home", "future")))

    def test_a_flow_exported_while_open(self):
        """A flow reel exported while it was still open (a session being
        recorded): it came back complete, with half its body under the
        full Content-Length, and nothing said."""
        p = self.har("open.har", ["HTTP/1.1"])
        with open(p) as f:
            doc = json.load(f)
        doc["log"]["entries"][0]["_reel"] = {"state": "open"}
        with open(p, "w") as f:
            json.dump(doc, f)
        self.cli("import", p, "--into", "open")
        [f] = json.loads(self.cli("flows", "open", "--json").stdout)
        self.assertEqual((f["state"], f["error"]),
                         ("error", "the flow was still open when it was exported: it holds what "
                          "had come by then"), f)

    def test_ids_of_an_import_of_nothing_are_null(self):
        """--json of an import with no entries said first_id 0 and last_id
        0, ids no flow has; one of two entries says them."""
        out = json.loads(self.cli("import", self.har("none.har", []), "--into", "none",
                                  "--json").stdout)
        self.assertEqual((out["imported"], out["first_id"], out["last_id"]), (0, None, None), out)
        out = json.loads(self.cli("import", self.har("two.har", ["HTTP/1.1", "HTTP/1.1"]),
                                  "--into", "none", "--json").stdout)
        self.assertEqual((out["imported"], out["first_id"], out["last_id"]), (2, 1, 2), out)

    def test_times_below_a_millisecond_are_written_shortest(self):
        """Exported times were written with 16 digits: 86 us as
        0.08599999999999999 ms. Each real is now the shortest text that
        reads back as the same number; a WebSocket message's time since
        the epoch keeps its microseconds."""
        p = self.har("short.har", ["HTTP/1.1"])
        with open(p) as f:
            har = json.load(f)
        har["log"]["entries"][0]["timings"] = {"send": 0.086, "wait": 2.031, "receive": 0.608}
        har["log"]["entries"][0]["time"] = 2.725
        with open(p, "w") as f:
            json.dump(har, f)
        self.cli("import", p, "--into", "short")
        out = self.cli("export", "short", "--format", "har").stdout.decode()
        self.assertIn('"send":0.086,"wait":2.031,"receive":0.608', out)
        self.assertIn('"time":2.725', out)
        nd = self.cli("export", "short", "--format", "ndjson").stdout.decode()
        self.assertIn('"send_ms":0.086', nd)
        self.assertNotRegex(out + nd, r"\.\d{10}")

    def test_session_given_as_a_second_argument(self):
        """`reel import SESSION FILE`, the order other commands take: the
        error named the file as an unexpected argument and no more."""
        p = self.har("order.har", ["HTTP/1.1"])
        r = self.cli("import", "order", p, check=False)
        self.assertEqual(r.returncode, 2)
        self.assertIn(("unexpected argument '%s' (one FILE; the session it goes into is named "
                       "by --into: reel import FILE --into SESSION)" % p).encode(), r.stderr)

    def test_impossible_http_version(self):
        p = self.har("http9.har", ["HTTP/1.1", "HTTP/9"])
        r = self.cli("import", p, "--into", "http9", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, b"reel import: %s: entries[1].request.httpVersion: \"HTTP/9\" "
                         b"is not an HTTP version (there are HTTP/0.9, 1.0, 1.1, 2 and 3)\n"
                         % p.encode())
        self.assertFalse(os.path.exists(os.path.join(self.root, "home", "http9")))

    def test_what_browsers_write(self):
        given = ["h2", "HTTP/2", "http/2.0", "h3", "h3-29", "HTTP/3", "http/1.1", "HTTP/1.0",
                 "", "spdy/3.1"]
        want = ["HTTP/2.0", "HTTP/2.0", "HTTP/2.0", "HTTP/3.0", "HTTP/3.0", "HTTP/3.0",
                "HTTP/1.1", "HTTP/1.0", "HTTP/1.1", "SPDY/3.1"]
        self.cli("import", self.har("browsers.har", given, log_version="1.1"), "--into", "b")
        got = []
        for f in json.loads(self.cli("flows", "b", "--json").stdout):
            fl = json.loads(self.cli("flow", "b", str(f["id"]), "--json").stdout)
            got.append((fl["request"]["http_version"], fl["response"]["http_version"]))
        self.assertEqual(got, [(w, w) for w in want])
        # ~h2 finds every HTTP/2 spelling
        h2 = json.loads(self.cli("flows", "b", "~h2", "--json").stdout)
        self.assertEqual(len(h2), 3)


class BodyEditRoundTrip(unittest.TestCase):
    """What modify_body rules did to a request body (_reel.request_body_edit)
    is kept apart from what they did to the response body: reel import
    records it after the request body, before the response head, as the
    proxy does; reel flow --json has it as request_body_edit, the text view
    says it with the request (the origin got the body), and reel export
    writes it back, beside response_body_edit."""

    REQ = {"rules": ["|debug=false|debug=true"], "replacements": 2, "sent_size": 22,
           "decoded": False, "not_applied": None, "answered_continue": True,
           "sent_body_b64": "ZGVidWc9dHJ1ZSwgZGVidWc9dHJ1ZQ==",  # debug=true, debug=true
           "sent_body_truncated": False}
    REQ_NOT = {"rules": ["|debug=false|debug=true", "|x|y"], "replacements": 0, "sent_size": 0,
               "decoded": False, "not_applied": "the body is over 8 MiB",
               "answered_continue": False, "sent_body_b64": None, "sent_body_truncated": False}
    RESP = {"rules": ["|world|[world]"], "replacements": 1, "sent_size": 13, "decoded": False,
            "not_applied": None,
            "sent_body_b64": "aGVsbG8gW3dv", "sent_body_truncated": True}  # "hello [wo": cut
    # as reel export wrote it before the body sent was kept: none to show
    RESP_OLD = {"rules": ["|world|[world]"], "replacements": 1, "sent_size": 13,
                "decoded": False, "not_applied": None}
    RESP_OLD_READ = dict(RESP_OLD, sent_body_b64=None, sent_body_truncated=False)

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-body-edit-", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home")

        def entry(i, req=None, resp=None):
            e = {"startedDateTime": "2026-01-02T03:04:0%d.000Z" % i, "time": 1,
                 "request": {"method": "POST", "url": "http://example.test/%d" % i,
                             "httpVersion": "HTTP/1.1",
                             "headers": [{"name": "Content-Type", "value": "text/plain"}],
                             "queryString": [], "cookies": [], "headersSize": -1,
                             "bodySize": 24,
                             "postData": {"mimeType": "text/plain",
                                          "text": "debug=false, debug=false"}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [{"name": "Content-Type", "value": "text/plain"}],
                              "cookies": [],
                              "content": {"size": 11, "mimeType": "text/plain",
                                          "text": "hello world"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 11},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
            e["_reel"] = {k: v for k, v in (("request_body_edit", req),
                                             ("response_body_edit", resp)) if v}
            return e
        entries = [entry(1, req=cls.REQ), entry(2, req=cls.REQ_NOT, resp=cls.RESP),
                   entry(3, resp=cls.RESP), entry(4, resp=cls.RESP_OLD)]
        cls.har = os.path.join(cls.root, "edits.har")
        with open(cls.har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)
        run([REEL, "import", cls.har, "--into", "be"], env=cls.env)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def cli_(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check)

    def flow(self, fid, *args):
        return self.cli_("flow", "be", str(fid), *args).stdout.decode()

    def test_flow_json_keeps_them_apart(self):
        want = [(self.REQ, None), (self.REQ_NOT, self.RESP), (None, self.RESP),
                (None, self.RESP_OLD_READ)]
        for fid, (req, resp) in enumerate(want, 1):
            f = json.loads(self.flow(fid, "--json"))
            self.assertEqual((f["request_body_edit"], f["response_body_edit"]), (req, resp), fid)

    def test_the_text_says_it_with_the_request(self):
        req_line = ("~ modify_body: 2 replacements by '|debug=false|debug=true'; the origin got "
                    "22 bytes, with a Content-Length; reel answered its Expect: 100-continue "
                    "itself:\ndebug=true, debug=true\n")
        # (the body the client got, cut where the record's keeping of it was)
        resp_line = ("~ modify_body: 1 replacement by '|world|[world]'; the client got 13 bytes, "
                     "with a Content-Length:\nhello [wo\n  (the first 9 bytes: the record keeps "
                     "no more)\n")
        # after the request's body, before the response
        one = self.flow(1)
        self.assertIn("\ndebug=false, debug=false\n" + req_line + "\n< HTTP/1.1 200 OK\n", one)
        self.assertNotIn("the client got", one)
        two = self.flow(2)
        self.assertIn("\ndebug=false, debug=false\n~ modify_body: '|debug=false|debug=true', "
                      "'|x|y' not applied (the body is over 8 MiB): the origin got the body as "
                      "it came\n\n< HTTP/1.1 200 OK\n", two)
        self.assertIn("\nhello world\n" + resp_line, two)
        three = self.flow(3)
        self.assertIn("\nhello world\n" + resp_line, three)
        self.assertNotIn("the origin got", three)
        # a record without the body sent says only what it knows
        self.assertIn("\nhello world\n~ modify_body: 1 replacement by '|world|[world]'; the "
                      "client got 13 bytes, with a Content-Length\n\n~ timings", self.flow(4))
        # without the bodies, under the heads (the body sent is one)
        self.assertIn("> Content-Type: text/plain\n" + req_line.partition(":\n")[0] +
                      "\n\n< HTTP/1.1 200 OK\n", self.flow(1, "--headers-only"))

    def test_export_gives_them_back(self):
        out = os.path.join(self.root, "again.har")
        self.cli_("export", "be", "--format", "har", "-o", out)
        with open(out) as f:
            entries = json.load(f)["log"]["entries"]
        with open(self.har) as f:
            given = json.load(f)["log"]["entries"]
        self.assertEqual(len(entries), 4)
        given[3]["_reel"]["response_body_edit"] = self.RESP_OLD_READ  # (says it has none)
        for a, b in zip(given, entries):
            for k in ("request_body_edit", "response_body_edit"):
                self.assertEqual(b["_reel"].get(k), a["_reel"].get(k), (k, a["request"]["url"]))
        nd = [json.loads(x) for x in
              self.cli_("export", "be", "--format", "ndjson", "-o", "-").stdout.splitlines()]
        self.assertEqual([(x["request"]["body_edit"], x["response"]["body_edit"]) for x in nd],
                         [(self.REQ, None), (self.REQ_NOT, self.RESP), (None, self.RESP),
                          (None, self.RESP_OLD_READ)])
        # ... and reel import reads that back the same
        self.cli_("import", out, "--into", "be-again")
        for fid in (1, 2, 3, 4):
            a = json.loads(self.flow(fid, "--json"))
            b = json.loads(self.cli_("flow", "be-again", str(fid), "--json").stdout)
            self.assertEqual((b["request_body_edit"], b["response_body_edit"]),
                             (a["request_body_edit"], a["response_body_edit"]))


class InterimTrailersOrigin:
    """An origin that answers a 103 before its 200 and ends its chunked
    body with a trailer field, after reading the request (chunked, with a
    trailer field of its own), and sends 7 bytes more after it; one
    connection, one request, then stops."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        c, _ = self.sock.accept()
        c.settimeout(10)
        data = b""
        while b"\r\n0\r\n" not in data or not data.endswith(b"\r\n\r\n"):
            d = c.recv(65536)
            if not d:
                break
            data += d
        c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                  b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                  b"Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: abc123\r\n\r\n"
                  b"excess!")
        time.sleep(0.5)
        c.close()
        self.sock.close()


class ReelExtrasRoundTrip(unittest.TestCase):
    """What reel export writes under _reel comes back from reel import: a
    flow's error (a 502 reel sent when the origin could not be reached),
    its addresses, the TLS version and ALPN of its origin connection, the
    1xx answer and trailer fields it had, its annotations, tags and mark.
    The imported flows must match the captured ones in all of it, ~e must
    find the same flows, and exporting the imported session again must
    write the same _reel (but for id, uuid and source)."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-extras-", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "cap", "upstream_trusted_ca=" + cls.origin.ca)
        # HTTP/1.1 only: a client offering h2 makes reel set up the origin
        # connection before the request (the ALPN probe), and the request
        # then has no ssl phase of its own
        r = curl(cls.reel, "--http1.1", cls.origin.url("/100b", https=True))
        assert r.returncode == 0, r.stderr
        # nothing listens there: reel answers 502 itself and records the error
        curl(cls.reel, "http://127.0.0.1:%d/nowhere" % free_port(), check=False)
        o = InterimTrailersOrigin()
        s = socket.create_connection(("127.0.0.1", cls.reel.port), 10)
        s.sendall(b"POST http://127.0.0.1:%d/t HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Transfer-Encoding: chunked\r\nTrailer: X-Req\r\n\r\n"
                  b"3\r\nabc\r\n0\r\nX-Req: 1\r\n\r\n" % (o.port, o.port))
        got = b""
        s.settimeout(10)
        while not got.endswith(b"X-Checksum: abc123\r\n\r\n"):
            d = s.recv(65536)
            if not d:
                break
            got += d
        s.close()
        o.thread.join(10)
        cls.captured = cls.reel.wait_flows(3)
        assert len(cls.captured) == 3, cls.captured
        ids = [f["id"] for f in cls.captured]
        cls.reel.cli("annotate", "cap", str(ids[0]), "checked by hand")
        cls.reel.cli("tag", "cap", str(ids[0]), "keep", "tls")
        cls.reel.cli("mark", "cap", str(ids[2]))
        cls.captured = cls.reel.flows()  # with the tags and the mark
        cls.har = os.path.join(cls.root, "cap.har")
        cls.reel.cli("export", "cap", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")
        cls.har2 = os.path.join(cls.root, "back.har")
        cls.reel.cli("export", "back", "-o", cls.har2)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def flow(self, session, fid):
        return json.loads(self.reel.cli("flow", session, str(fid), "--json").stdout)

    def pairs(self):
        back = json.loads(self.reel.cli("flows", "back", "--json").stdout)
        self.assertEqual(len(back), 3, back)
        return list(zip(self.captured, back))

    def test_the_captures_have_what_is_tested(self):
        full = [self.flow("cap", c["id"]) for c in self.captured]
        self.assertEqual(full[0]["server_conn"]["alpn"], "http/1.1")
        self.assertTrue(full[0]["server_conn"]["tls_version"].startswith("TLS"))
        self.assertEqual(full[1]["state"], "error")
        self.assertIn("cannot connect", full[1]["error"])
        self.assertTrue(full[1]["response"]["generated"])
        self.assertEqual(full[2]["interim"][0]["status"], 103)
        self.assertEqual(full[2]["request_trailers"], [["X-Req", "1"]])
        self.assertEqual(full[2]["response_trailers"], [["X-Checksum", "abc123"]])
        self.assertEqual(full[2]["response"]["body_excess"], 7)
        self.assertEqual([f["request"]["absolute_form"] for f in full], [False, True, True])

    def test_imported_flows_are_as_captured(self):
        for cap, imp in self.pairs():
            c, i = self.flow("cap", cap["id"]), self.flow("back", imp["id"])
            for k in ("state", "error", "client_addr", "server_addr", "request_trailers",
                      "response_trailers"):
                self.assertEqual(i[k], c[k], (k, c["request"]["url"]))
            self.assertEqual(i["response"]["generated"], c["response"]["generated"])
            self.assertEqual(i["response"]["status"], c["response"]["status"])
            self.assertEqual(i["response"]["body_excess"], c["response"]["body_excess"])
            self.assertEqual(i["request"]["absolute_form"], c["request"]["absolute_form"])
            if c["server_conn"]:
                for k in ("tls_version", "alpn", "address", "conn_id"):
                    self.assertEqual(i["server_conn"][k], c["server_conn"][k], k)
            else:
                self.assertIsNone(i["server_conn"])
            if c["interim"]:
                self.assertEqual(len(i["interim"]), len(c["interim"]))
                for a, b in zip(c["interim"], i["interim"]):
                    for k in ("status", "reason", "http_version", "headers"):
                        self.assertEqual(b[k], a[k], k)
                    self.assertEqual(b["time_us"] // 1000, a["time_us"] // 1000)
            else:
                self.assertIsNone(i["interim"])
            for k in ("tags", "marked"):
                self.assertEqual(imp[k], cap[k], k)

    def test_error_filter_finds_the_same_flows(self):
        urls = {}
        for s in ("cap", "back"):
            urls[s] = [f["url"] for f in json.loads(
                self.reel.cli("flows", s, "--json", "~e").stdout)]
        self.assertEqual(len(urls["cap"]), 1)
        self.assertEqual(urls["back"], urls["cap"])

    def test_annotations_come_back(self):
        notes = []
        for s, fid in (("cap", self.captured[0]["id"]), ("back", self.pairs()[0][1]["id"])):
            notes.append(json.loads(self.reel.cli("annotate", s, str(fid), "--json").stdout))
            for n in notes[-1]:  # a HAR's times are in milliseconds
                n["created_us"] //= 1000
        self.assertEqual([n["text"] for n in notes[0]], ["checked by hand"])
        self.assertEqual(notes[1], notes[0])

    def test_reel_extras_of_the_wrong_shape_are_refused(self):
        with open(self.har) as f:
            doc = json.load(f)

        def edit(**fields):
            """A body_edit record as reel export writes it, with fields."""
            return dict({"rules": [], "replacements": 0, "sent_size": 0, "decoded": False},
                        **fields)
        cases = [
            (("interim", 0, "status"), 200,
             b"entries[2]._reel.interim[0].status: not an informational (1xx) status"),
            (("tags",), ["no spaces"], b"entries[0]._reel.tags[0]: "),
            (("error",), 5, b"entries[1]._reel.error: not a string but a number"),
            (("response_trailers",), [{"name": "X"}],
             b"entries[2]._reel.response_trailers[0].value: missing"),
            (("response_excess",), -1,
             b"entries[2]._reel.response_excess: not a count of bytes but a negative number"),
            (("duration_ms",), "5", b"entries[0]._reel.duration_ms: not a number but a string"),
            # the client's TLS and the server certificate's check (entry 0
            # is HTTPS through reel)
            (("client_tls",), 5, b"entries[0]._reel.client_tls: not an object but a number"),
            (("client_tls", "sni"), 5,
             b"entries[0]._reel.client_tls.sni: not a string but a number"),
            (("client_tls", "cipher"), "a\u0000b",
             b"entries[0]._reel.client_tls.cipher: contains a NUL byte"),
            (("client_tls", "resumed"), "yes",
             b"entries[0]._reel.client_tls.resumed: not a boolean but a string"),
            (("unverified",), 1, b"entries[0]._reel.unverified: not a boolean but a number"),
            (("tls_resumed",), "yes",
             b"entries[0]._reel.tls_resumed: not a boolean but a string"),
            (("verify_error",), 5, b"entries[0]._reel.verify_error: not a string but a number"),
            # modify_headers' and modify_body's records
            (("request_modified",), [{"name": "a b", "value": "1"}],
             b"entries[0]._reel.request_modified: change 0: its name is not a field name"),
            (("response_body_edit",), edit(replacements=-1),
             b"entries[0]._reel.response_body_edit: its replacements and sent_size are not "
             b"counts"),
            (("request_body_edit",), edit(rules=["a", 5]),
             b"entries[0]._reel.request_body_edit: rule 1 is not a string without NUL bytes"),
            (("request_body_edit",), edit(answered_continue="yes"),
             b"entries[0]._reel.request_body_edit: its answered_continue is not a boolean"),
            # ... the body as sent: base64, as long as sent_size says
            (("response_body_edit",), edit(sent_size=3, sent_body_b64="YW*i"),
             b"entries[0]._reel.response_body_edit: its sent_body_b64 has invalid base64 at "
             b"offset 2"),
            (("response_body_edit",), edit(sent_size=3, sent_body_b64=7),
             b"entries[0]._reel.response_body_edit: its sent_body_b64 is not a string of "
             b"base64 or null"),
            (("response_body_edit",), edit(sent_size=2, sent_body_b64="YWJj"),
             b"entries[0]._reel.response_body_edit: its sent_body_b64 holds 3 bytes, not its "
             b"sent_size of 2 (fewer only with sent_body_truncated)"),
            (("response_body_edit",), edit(sent_size=5, sent_body_b64="YWJj"),
             b"entries[0]._reel.response_body_edit: its sent_body_b64 holds 3 bytes, not its "
             b"sent_size of 5 (fewer only with sent_body_truncated)"),
            (("response_body_edit",), edit(sent_size=3, sent_body_b64="YWJj", not_applied="why"),
             b"entries[0]._reel.response_body_edit: it has a sent_body_b64 and a not_applied"),
            (("request_body_edit",), edit(sent_body_truncated=1),
             b"entries[0]._reel.request_body_edit: its sent_body_truncated is not a boolean"),
        ]
        for path, value, message in cases:
            bad = json.loads(json.dumps(doc))
            entry = bad["log"]["entries"][{"interim": 2, "tags": 0, "error": 1,
                                           "response_trailers": 2,
                                           "response_excess": 2, "duration_ms": 0,
                                           "client_tls": 0, "unverified": 0,
                                           "tls_resumed": 0, "verify_error": 0,
                                           "request_modified": 0,
                                           "response_body_edit": 0,
                                           "request_body_edit": 0}[path[0]]]
            obj = entry["_reel"]
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value
            p = os.path.join(self.root, "bad.har")
            with open(p, "w") as f:
                json.dump(bad, f)
            r = self.reel.cli("import", p, "--into", "bad", check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(message, r.stderr)
            self.assertFalse(os.path.exists(os.path.join(self.root, "home", "bad")))

    def test_times_come_back(self):
        # HAR 1.2: connect includes ssl, time is the sum of the timings;
        # the flow's own times (its phases leave gaps) are in _reel
        with open(self.har) as f:
            entries = json.load(f)["log"]["entries"]
        tls = entries[0]
        self.assertGreater(tls["timings"]["ssl"], 0)
        for e in entries:
            t = e["timings"]
            total = sum(t[k] for k in ("blocked", "dns", "connect", "send", "wait", "receive")
                        if t[k] >= 0)
            self.assertAlmostEqual(e["time"], total, places=6)
            if t["ssl"] >= 0:
                self.assertGreaterEqual(t["connect"], t["ssl"])
        # the imported flows have the captured ones' timings, duration,
        # request end and response start (the start is the HAR's, to the ms)
        for cap, imp in self.pairs():
            c, i = self.flow("cap", cap["id"]), self.flow("back", imp["id"])
            # (HAR wants send, wait and receive non-negative: unknown is 0)
            want = {k: 0 if k in ("send_us", "wait_us", "receive_us") and v < 0 else v
                    for k, v in c["timings"].items()}
            self.assertEqual(i["timings"], want, c["request"]["url"])
            self.assertEqual(i["start_us"], c["start_us"] // 1000 * 1000)
            for k in ("end_us", "request_end_us", "response_start_us"):
                want = c[k] - c["start_us"] if c[k] else 0
                self.assertEqual(i[k] - i["start_us"] if i[k] else 0, want, (k, c["request"]["url"]))

    def test_export_again_writes_the_same_reel_extras(self):
        with open(self.har) as f:
            first = json.load(f)["log"]["entries"]
        with open(self.har2) as f:
            second = json.load(f)["log"]["entries"]
        self.assertEqual(len(first), len(second))
        for a, b in zip(first, second):
            ra = {k: v for k, v in a["_reel"].items() if k not in ("id", "uuid", "source")}
            rb = {k: v for k, v in b["_reel"].items() if k not in ("id", "uuid", "source")}
            self.assertEqual(rb, ra, a["request"]["url"])
            self.assertEqual(b["_reel"]["source"], "har-import")
            for k in ("serverIPAddress", "connection", "comment"):
                self.assertEqual(b.get(k), a.get(k), k)


class BrOrigin:
    """An HTTP/1.1 origin on an ephemeral port answering every request with
    a brotli-compressed text (Content-Encoding: br; nginx has no brotli),
    its request body read and dropped."""

    TEXT = b"brotli text of the origin, said twice. " * 3

    def __init__(self):
        body = brotli.compress(self.TEXT)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Encoding", "br")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        self.wire = len(body)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class EncodedSizesRoundTrip(unittest.TestCase):
    """A content-encoded body keeps its size on the wire through export
    and import: HAR's bodySize is the bytes on the wire, content.size the
    decoded length and content.compression the difference (HAR 1.2). reel
    import stores the decoded text the HAR holds (body_decoded) but counts
    bodySize as the body's size, so `reel flows`, `reel flow --json` and
    `~size` give the captured flow's sizes, and exporting the imported
    flows again writes the same three numbers. Captured: nginx gzipping a
    large and a small text, a gzip request body, an origin answering in
    brotli to a brotli request body."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-sizes-", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.br = BrOrigin()
        with open(os.path.join(cls.origin.www, "small.txt"), "wb") as f:
            f.write(b"small text, gzipped\n" * 6)  # 120 bytes: over gzip_min_length
        cls.reel = Reel(cls.root, "cap")
        gz = ["-H", "Accept-Encoding: gzip", "-o", "/dev/null"]
        curl(cls.reel, *gz, cls.origin.url("/text.txt"))
        curl(cls.reel, *gz, cls.origin.url("/small.txt"))
        cls.sent = {}
        for name, data in (("gzip", gzip.compress(b'{"user": "alice"}')),
                           ("br", brotli.compress(b'{"user": "bob", "n": 2}'))):
            path = os.path.join(cls.root, name + ".body")
            with open(path, "wb") as f:
                f.write(data)
            url = (cls.origin.url("/echo") if name == "gzip" else
                   "http://127.0.0.1:%d/post" % cls.br.port)
            curl(cls.reel, "-o", "/dev/null", "-H", "Content-Encoding: " + name,
                 "-H", "Content-Type: application/json", "--data-binary", "@" + path, url)
            cls.sent[name] = len(data)
        cls.captured = cls.reel.wait_flows(4)
        assert len(cls.captured) == 4, cls.captured
        cls.har = os.path.join(cls.root, "full.har")
        cls.reel.cli("export", "cap", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "imp")
        cls.har2 = os.path.join(cls.root, "imp.har")
        cls.reel.cli("export", "imp", "-o", cls.har2)

    @classmethod
    def tearDownClass(cls):
        cls.br.stop()
        stop_class(cls)

    def entries(self, path):
        with open(path) as f:
            return json.load(f)["log"]["entries"]

    @staticmethod
    def sizes(e):
        c = e["response"]["content"]
        return (e["request"]["bodySize"], e["response"]["bodySize"], c["size"],
                c.get("compression"))

    def test_the_captures_are_encoded(self):
        got = {e["request"]["url"]: self.sizes(e) for e in self.entries(self.har)}
        text = got[self.origin.url("/text.txt")]
        self.assertLess(text[1], 10000)  # nginx gzipped 189 KiB of text
        self.assertEqual(text[2], os.path.getsize(os.path.join(self.origin.www, "text.txt")))
        self.assertEqual(text[3], text[2] - text[1])
        small = got[self.origin.url("/small.txt")]
        self.assertEqual(small[2], 120)
        self.assertLess(small[1], 120)
        self.assertEqual(small[3], 120 - small[1])
        self.assertEqual(got[self.origin.url("/echo")][0], self.sent["gzip"])
        br = got["http://127.0.0.1:%d/post" % self.br.port]
        self.assertEqual(br[0], self.sent["br"])
        self.assertEqual(br[1:], (self.br.wire, len(BrOrigin.TEXT),
                                  len(BrOrigin.TEXT) - self.br.wire))

    def test_export_again_writes_the_same_sizes(self):
        first, second = self.entries(self.har), self.entries(self.har2)
        self.assertEqual([e["request"]["url"] for e in second],
                         [e["request"]["url"] for e in first])
        for a, b in zip(first, second):
            self.assertEqual(self.sizes(b), self.sizes(a), a["request"]["url"])
            self.assertEqual(b["response"]["content"].get("text"),
                             a["response"]["content"].get("text"))
            self.assertEqual(b["request"].get("postData"), a["request"].get("postData"))

    def test_the_imported_flows_have_the_wire_sizes(self):
        imp = json.loads(self.reel.cli("flows", "imp", "--json").stdout)
        self.assertEqual(len(imp), 4)
        for c, i in zip(self.captured, imp):
            for k in ("request_body_size", "response_body_size"):
                self.assertEqual(i[k], c[k], (k, c["url"]))
            for side in ("request", "response"):
                cf = json.loads(self.reel.cli("flow", "cap", str(c["id"]), "--json").stdout)
                fi = json.loads(self.reel.cli("flow", "imp", str(i["id"]), "--json").stdout)
                self.assertEqual(fi[side]["body_size"], cf[side]["body_size"], (side, c["url"]))
                self.assertFalse(fi[side]["body_truncated"], (side, c["url"]))
        # the list shows the same sizes (not the decoded text's, 189 KiB as
        # `reel flows` writes it; a bare "189" also matched a time's
        # milliseconds or a port now and then), and ~size finds the same flows
        decoded = os.path.getsize(os.path.join(self.origin.www, "text.txt"))
        listed = self.reel.cli("flows", "imp").stdout
        def size(n):  # as reel_cli_size writes it
            return b" %d B " % n if n < 1024 else b" %.1f KiB " % (n / 1024)
        self.assertTrue(1024 <= decoded < 1024 * 1024, decoded)
        self.assertNotIn(size(decoded), listed)
        for c in self.captured:
            self.assertIn(size(c["response_body_size"]), listed, c["url"])
        for f in ("~size <10k", "~size >100"):
            want = [c["url"] for c in self.reel.flows(f)]
            got = [i["url"] for i in json.loads(self.reel.cli("flows", "imp", "--json",
                                                              f).stdout)]
            self.assertEqual(got, want, f)

    def test_replay_sends_the_decoded_request_body(self):
        # stored decoded and shorter or longer than the wire's: still whole
        imp = json.loads(self.reel.cli("flows", "imp", "--json", "~m POST").stdout)
        self.assertEqual(len(imp), 2)
        for i in imp:
            r = self.reel.cli("replay", "imp", str(i["id"]), "--into", "rep", check=False)
            self.assertNotIn(b"not stored whole", r.stdout + r.stderr)

    def test_diff_takes_the_decoded_request_body_as_whole(self):
        imp = json.loads(self.reel.cli("flows", "imp", "--json", "~m POST").stdout)
        r = self.reel.cli("diff", "imp:%d" % imp[0]["id"], "imp:%d" % imp[1]["id"], check=False)
        self.assertNotIn(b"not stored whole", r.stdout + r.stderr)
        self.assertIn(b"request", r.stdout)

    def test_the_web_detail_has_the_wire_sizes(self):
        from test_web_api import Client, start_web
        proc, port, _, token = start_web(self.reel.env)
        try:
            c = Client(port, token)
            imp = json.loads(self.reel.cli("flows", "imp", "--json").stdout)
            for cap, i in zip(self.captured, imp):
                d = c.json("GET", "/api/sessions/imp/flows/%d" % i["id"])
                self.assertEqual((d["request"]["body_size"], d["response"]["body_size"]),
                                 (cap["request_body_size"], cap["response_body_size"]),
                                 cap["url"])
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()

    def test_verify_takes_decoded_bodies_as_whole(self):
        # a body stored decoded can be fewer bytes than its size on the
        # wire (docs/format.md): verify counted the difference as a hole
        # ("2 of its 22 bytes in the spool") that repair could not clear
        self.import_entry("gzsmall", [{"name": "Content-Encoding", "value": "gzip"}],
                          {"size": 2, "mimeType": "text/plain", "text": "hi"}, 22,
                          req={"method": "POST", "bodySize": 30,
                               "headers": [{"name": "Content-Encoding", "value": "gzip, br"}],
                               "postData": {"mimeType": "text/plain", "text": "a=b"}})
        for name in ("imp", "gzsmall"):
            r = self.reel.cli("verify", name, check=False)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(b"0 problems", r.stdout + r.stderr)

    def import_entry(self, name, resp_headers, content, body_size, req=None):
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                 "request": {"method": "GET", "url": "https://example.test/" + name,
                             "httpVersion": "http/2.0", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": 0},
                 "response": {"status": 200, "statusText": "", "httpVersion": "http/2.0",
                              "headers": resp_headers, "cookies": [], "content": content,
                              "redirectURL": "", "headersSize": -1, "bodySize": body_size},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        if req:
            entry["request"].update(req)
        path = os.path.join(self.root, name + ".har")
        with open(path, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "WebInspector",
                                                             "version": "537.36"},
                               "entries": [entry]}}, f)
        self.reel.cli("import", path, "--into", name)
        flows = json.loads(self.reel.cli("flows", name, "--json").stdout)
        out = os.path.join(self.root, name + ".out.har")
        self.reel.cli("export", name, "-o", out)
        return flows[0], self.entries(out)[0]

    def test_a_browser_entry(self):
        # as Chromium writes a brotli response: bodySize the wire's, no
        # compression member
        text = "hello, world!!!"
        hs = [{"name": "content-encoding", "value": "br"},
              {"name": "content-type", "value": "text/plain"}]
        flow, again = self.import_entry(
            "chrome", hs, {"size": 15, "mimeType": "text/plain", "text": text}, 10,
            req={"method": "POST", "bodySize": 7,
                 "headers": [{"name": "content-encoding", "value": "gzip"}],
                 "postData": {"mimeType": "text/plain", "text": "a=b"}})
        self.assertEqual((flow["request_body_size"], flow["response_body_size"]), (7, 10))
        self.assertEqual(self.sizes(again), (7, 10, 15, 5))
        self.assertEqual(again["response"]["content"]["text"], text)
        # no bodySize: content.size less compression
        flow, again = self.import_entry(
            "nobodysize", hs, {"size": 15, "compression": 4, "mimeType": "text/plain",
                               "text": text}, -1)
        self.assertEqual(flow["response_body_size"], 11)
        self.assertEqual(self.sizes(again), (0, 11, 15, 4))
        # neither: the bytes stored, as before
        flow, again = self.import_entry(
            "nosizes", hs, {"size": 15, "mimeType": "text/plain", "text": text}, -1)
        self.assertEqual(flow["response_body_size"], 15)
        self.assertEqual(self.sizes(again), (0, 15, 15, None))


class NotUtf8RoundTrip(unittest.TestCase):
    """Bytes that are not UTF-8 survive a HAR round trip: a raw client
    sends, through `reel record`, a request whose target and X-Bin value
    hold such bytes (obs-text beside a UTF-8 word) to nginx, and one to an
    origin whose status text and header do. HAR holds strings, so reel
    export writes their Latin-1 reading and the bytes in _reel beside it;
    reel import must record the bytes: the imported flows' heads are the
    captured ones byte for byte, not the UTF-8 of a Latin-1 reading."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-har-bytes-", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "cap")
        port = cls.origin.http_port
        got = raw(cls.reel.port, b"GET http://127.0.0.1:%d/100b?q=\xff\xfe HTTP/1.1\r\n"
                  b"Host: 127.0.0.1:%d\r\nX-Bin: \xff\xfe caf\xc3\xa9\r\n"
                  b"Connection: close\r\n\r\n" % (port, port))
        assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        port = ls.getsockname()[1]

        def serve():
            c, _ = ls.accept()
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 O\xffK\r\nX-Resp: \xfe\xff\r\nContent-Length: 2\r\n\r\nhi")
            c.close()
            ls.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        got = raw(cls.reel.port, b"GET http://127.0.0.1:%d/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Connection: close\r\n\r\n" % (port, port))
        assert got.startswith(b"HTTP/1.1 200 O\xffK\r\n"), got
        t.join(10)
        cls.captured = [cls.wait_flow("cap", i) for i in (1, 2)]
        # a note is the user's bytes, UTF-8 or not
        cls.reel.cli("annotate", "cap", "1", b"caf\xe9 note")
        cls.reel.cli("annotate", "cap", "1", "caf\u00e9 in UTF-8")
        cls.har = os.path.join(cls.root, "cap.har")
        cls.reel.cli("export", "cap", "-o", cls.har)
        cls.reel.cli("import", cls.har, "--into", "back")

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    @classmethod
    def wait_flow(cls, session, fid):
        deadline = time.time() + 10
        while True:
            r = cls.reel.cli("flow", session, str(fid), "--json", check=time.time() > deadline)
            f = json.loads(r.stdout) if r.returncode == 0 else None
            if (f and f["state"] != "open") or time.time() > deadline:
                return f
            time.sleep(0.1)

    @staticmethod
    def as_bytes(v):
        """A string of `reel flow --json`, or its {"b64": ...} for bytes
        that are not UTF-8, as bytes."""
        return base64.b64decode(v["b64"]) if isinstance(v, dict) else v.encode()

    def test_the_captures_have_what_is_tested(self):
        req = self.captured[0]["request"]
        self.assertEqual([self.as_bytes(v) for n, v in req["headers"] if n == "X-Bin"],
                         [b"\xff\xfe caf\xc3\xa9"])
        self.assertEqual(self.as_bytes(req["target"]), b"/100b?q=\xff\xfe")
        self.assertEqual(self.as_bytes(self.captured[1]["response"]["reason"]), b"O\xffK")

    def test_the_list_has_them(self):
        # `reel flows --json` left out a flow whose URL is not UTF-8
        # (jansson refused the string, and the row with it)
        rows = json.loads(self.reel.cli("flows", "cap", "--json").stdout)
        self.assertEqual([r["id"] for r in rows], [1, 2])
        self.assertEqual(self.as_bytes(rows[0]["url"]),
                         b"http://127.0.0.1:%d/100b?q=\xff\xfe" % self.origin.http_port)
        self.assertIsInstance(rows[1]["url"], str)  # UTF-8: a string, as before

    def test_the_har_has_text_and_bytes(self):
        with open(self.har, encoding="utf-8") as f:
            entries = json.load(f)["log"]["entries"]
        x = [h for h in entries[0]["request"]["headers"] if h["name"] == "X-Bin"][0]
        # the Latin-1 reading, as browsers' Fetch API reads such bytes
        self.assertEqual(x["value"], "\xff\xfe caf\xc3\xa9")
        self.assertEqual(x["_reel"], {"value_b64": "//4gY2Fmw6k="})
        self.assertNotIn("_reel", [h for h in entries[0]["request"]["headers"]
                                   if h["name"] == "Host"][0])
        self.assertEqual(base64.b64decode(entries[0]["request"]["_reel"]["url_b64"]),
                         b"http://127.0.0.1:%d/100b?q=\xff\xfe" % self.origin.http_port)
        self.assertEqual(entries[1]["response"]["_reel"], {"statusText_b64": "T/9L"})

    def test_the_ndjson_has_text_and_bytes(self):
        # the URL, target and reason had their Latin-1 reading alone (a
        # header had its bytes too), not to be told from UTF-8 text
        lines = self.reel.cli("export", "cap", "--format", "ndjson").stdout.splitlines()
        req, resp = json.loads(lines[0])["request"], json.loads(lines[1])["response"]
        self.assertEqual(req["target"], "/100b?q=\xff\xfe")
        self.assertEqual(base64.b64decode(req["_reel"]["target_b64"]), b"/100b?q=\xff\xfe")
        self.assertEqual(base64.b64decode(req["_reel"]["url_b64"]),
                         b"http://127.0.0.1:%d/100b?q=\xff\xfe" % self.origin.http_port)
        self.assertEqual(list(req)[-1], "_reel")
        self.assertEqual(resp["_reel"], {"reason_b64": "T/9L"})
        self.assertNotIn("_reel", json.loads(lines[1])["request"])

    def test_imported_heads_are_the_captured_bytes(self):
        for fid, cap in zip((1, 2), self.captured):
            imp = self.wait_flow("back", fid)
            self.assertEqual(imp["source"], "har-import")
            for side in ("request", "response"):
                self.assertEqual(
                    [(n, self.as_bytes(v)) for n, v in imp[side]["headers"]],
                    [(n, self.as_bytes(v)) for n, v in cap[side]["headers"]], side)
                self.assertEqual(imp[side]["headers"], cap[side]["headers"])
            for k in ("target", "url", "host"):
                self.assertEqual(imp["request"][k], cap["request"][k], k)
            self.assertEqual(imp["response"]["reason"], cap["response"]["reason"])
            self.assertEqual(body(imp, "response"), body(cap, "response"))

    def test_annotations_come_back_byte_for_byte(self):
        with open(self.har, encoding="utf-8") as f:
            notes = json.load(f)["log"]["entries"][0]["_reel"]["annotations"]
        self.assertEqual([(n["text"], n.get("_reel")) for n in notes],
                         [("caf\xe9 note",
                           {"text_b64": base64.b64encode(b"caf\xe9 note").decode()}),
                          ("caf\u00e9 in UTF-8", None)])
        # the same filter finds the flow before and after the round trip
        for session in ("cap", "back"):
            got = self.reel.cli("flows", session, "--json", b'~comment "caf\xe9 "').stdout
            self.assertEqual([r["id"] for r in json.loads(got)], [1], session)
        again = json.loads(self.reel.cli("export", "back").stdout)["log"]["entries"][0]
        self.assertEqual(again["_reel"]["annotations"][0]["_reel"], notes[0]["_reel"])
        # a text_b64 that no note can hold is refused, as a header's is
        with open(self.har, encoding="utf-8") as f:
            doc = json.load(f)
        doc["log"]["entries"][0]["_reel"]["annotations"][0]["_reel"]["text_b64"] = (
            base64.b64encode(b"a\0b").decode())
        p = os.path.join(self.root, "nul.har")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        r = self.reel.cli("import", p, "--into", "nul", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"entries[0]._reel.annotations[0]._reel.text_b64: contains a NUL byte",
                      r.stderr)

    def test_bytes_a_header_cannot_hold_are_refused_even_when_edited(self):
        # the string edited (no longer the _b64's Latin-1 reading) wins
        # over the bytes, but a _b64 with a CR or LF was never reel
        # export's: the entry is refused either way (docs/export.md)
        with open(self.har, encoding="utf-8") as f:
            doc = json.load(f)
        hs = doc["log"]["entries"][0]["request"]["headers"]
        i = [k for k, h in enumerate(hs) if h["name"] == "X-Bin"][0]
        for value in ("a\r\nb", "edited"):
            with self.subTest(value=value):
                hs[i]["value"] = value
                hs[i]["_reel"] = {"value_b64": base64.b64encode(b"a\r\nb").decode()}
                p = os.path.join(self.root, "crlf.har")
                with open(p, "w", encoding="utf-8") as f:
                    json.dump(doc, f)
                r = self.reel.cli("import", p, "--into", "crlf", check=False)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(b"entries[0].request.headers[%d]._reel.value_b64: header value "
                              b"with a NUL, CR or LF byte" % i, r.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.root, "home", "crlf")))


if __name__ == "__main__":
    main()
