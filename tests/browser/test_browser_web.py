#!/usr/bin/python3
"""The `reel web` UI in a real browser (issue 15).

`reel record --web` records into a session while Debian's chromium
(headless, driven by playwright-core installed into the build folder with
`npm ci`, as test_browser_websocket.py does; never a downloaded browser)
opens the printed URL and works the UI (web_ui.cjs): the list of flows,
filtering (a good filter and one with an error at its column), keyboard
navigation, the detail of an HTTP flow, a WebSocket flow (a python3-
websockets echo server reached through a CONNECT tunnel) and an error flow,
a diff against another flow, a note, a tag, a mark, a config change, the sessions page, and a flow made
by curl through the proxy appearing live. Afterwards the CLI must see the
note, tag, mark and config value, and the proxy must have applied the
change. Screenshots of the list and of a detail view go into the build
folder (web-list.png, web-detail.png, web-websocket.png); the test fails if a
view renders empty or the page logs an error.

test_replay: `reel web` over a recorded session; Replay in a flow's detail
shows a link to the new flow (a replay of it, as `reel flow` says) and
"Diff with it" diffs the two.

Prints "skipped: ..." and exits 0 when chromium or node/npm are missing.
"""
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from proxyenv import REEL, TMPBASE, Origin, Reel, curl, run  # noqa: E402
from test_browser_har import png  # noqa: E402
from test_browser_websocket import CHROMIUM, install_playwright  # noqa: E402

TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"


def missing_tools():
    for p, what in ((CHROMIUM, "chromium"), (shutil.which("node"), "node"),
                    (shutil.which("npm"), "npm")):
        if not p or not os.access(p, os.X_OK):
            return what
    return None


async def websocket_flow(proxy_port):
    """One WebSocket conversation through the proxy (CONNECT, then the
    handshake inside the tunnel) to a python3-websockets echo server."""
    import websockets

    async def echo(ws, path=None):
        async for m in ws:
            await ws.send(m)
    server = await websockets.serve(echo, "127.0.0.1", 0, compression=None)
    port = server.sockets[0].getsockname()[1]
    s = socket.create_connection(("127.0.0.1", proxy_port), 10)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    s.setblocking(False)
    ws = await websockets.connect("ws://127.0.0.1:%d/chat" % port, sock=s, compression=None)
    for m in ("hello from the client", "second message"):
        await ws.send(m)
        assert await ws.recv() == m
    await ws.close()
    server.close()
    await server.wait_closed()


def browser_modules():
    """playwright-core's node_modules (installed once), or None with
    "skipped: ..." printed when chromium, node or npm is missing."""
    why = missing_tools()
    if why:
        print("skipped: %s not installed" % why)
        return None
    return install_playwright()


def drive_web(test, root, env, modules, sessions, js, node_env=None):
    """`reel web` over sessions (every one when empty) on a free port, then
    the playwright script js (source) run by node with its URL; returns
    what the script printed last (JSON). The server is stopped after."""
    log = open(os.path.join(root, "web.log"), "w+")
    proc = subprocess.Popen([REEL, "web", "--listen", "127.0.0.1:0"] + sessions, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = None
        for _ in range(200):
            log.seek(0)
            m = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=\w+)", log.read())
            if m:
                url = m.group(1)
                break
            time.sleep(0.05)
        log.seek(0)
        test.assertIsNotNone(url, log.read())
        script = os.path.join(root, "drive.cjs")
        with open(script, "w") as f:
            f.write(js)
        res = subprocess.run(["node", script, url],
                             env=dict(env, NODE_PATH=modules, **(node_env or {})),
                             capture_output=True, timeout=120)
        test.assertEqual(res.returncode, 0, res.stderr.decode()[-3000:])
        return json.loads(res.stdout.decode().strip().split("\n")[-1])
    finally:
        proc.send_signal(2)
        proc.wait(15)
        log.close()


class BrowserWebTest(unittest.TestCase):
    def test_web_ui(self):
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-bweb-", dir=TMPBASE)
        out_dir = os.environ.get("REEL_TEST_TMP") or root
        origin = Origin(root)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        # a user config file's value, for the config page's Unset
        os.makedirs(root + "/config/reel")
        with open(root + "/config/reel/config.yaml", "w") as f:
            # and a header rule, whose change the POST's detail shows
            f.write("upstream_timeout: 61\nupstream_trusted_ca: %s\n"
                    "modify_headers: [\"|~m POST & ~q|X-Browser|yes\"]\n" % origin.ca)
        log = open(os.path.join(root, "reel.log"), "w+")
        proc = subprocess.Popen([REEL, "record", "--listen", "127.0.0.1:0", "--web=127.0.0.1:0",
                                 "b1"], env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            proxy = url = None
            for _ in range(200):
                log.seek(0)
                text = log.read()
                m1 = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
                m2 = re.search(r"web UI on (http://127\.0\.0\.1:\d+/\?token=\w+)", text)
                if m1 and m2:
                    proxy, url = int(m1.group(1)), m2.group(1)
                    break
                time.sleep(0.05)
            self.assertIsNotNone(url, text)

            class R:  # what proxyenv.curl needs
                pass
            r = R()
            r.proxy = "http://127.0.0.1:%d" % proxy
            r.ca = os.path.join(root, "data", "reel", "reel-ca.pem")
            curl(r, origin.url("/100b"))
            curl(r, "-d", '{"user": "ann", "roles": ["a", "b"]}', "-H",
                 "Content-Type: application/json", origin.url("/echo"))
            curl(r, "http://127.0.0.1:1/refused", check=False)
            asyncio.run(websocket_flow(proxy))
            with open(os.path.join(origin.www, "img.png"), "wb") as f:
                f.write(png(37, 11))
            curl(r, origin.url("/img.png"))
            curl(r, "--http1.1", origin.url("/100b?tls=1", https=True))
            flows = []
            for _ in range(100):
                flows = json.loads(run([REEL, "flows", "b1", "--json"], env=env).stdout)
                if len(flows) >= 6 and all(f["state"] != "open" for f in flows):
                    break
                time.sleep(0.1)
            post = [f["id"] for f in flows if f["method"] == "POST"][0]
            ws = [f["id"] for f in flows if f["kind"] == "websocket"][0]
            err = [f["id"] for f in flows if f["error"]][0]
            image = [f["id"] for f in flows if f["url"].endswith("/img.png")][0]
            https = [f["id"] for f in flows if f["url"].endswith("?tls=1")][0]
            cfg = {"url": url, "proxy": r.proxy, "live_url": origin.url("/100b?live=1"),
                   "out_dir": out_dir,
                   "ids": {"post": post, "ws": ws, "error": err, "image": image,
                           "https": https}}
            t0 = time.time()
            res = subprocess.run(["node", os.path.join(HERE, "web_ui.cjs"), json.dumps(cfg)],
                                 env=dict(env, NODE_PATH=modules), capture_output=True,
                                 timeout=120)
            took = time.time() - t0
            self.assertEqual(res.returncode, 0, res.stderr.decode()[-3000:])
            seen = json.loads(res.stdout.decode().strip().split("\n")[-1])
            self.assertEqual(seen["errors"], [])
            self.assertEqual(seen["empty"], [])
            # only the mistakes made on purpose: two bad filters, a bad config value
            for f in seen["failed"]:
                self.assertTrue(f.startswith("400 ") and ("%26%20(" in f or "caf%C3%A9" in f
                                                          or f.endswith("/config")), f)
            self.assertEqual(sum(f.endswith("/config") for f in seen["failed"]), 1, seen["failed"])
            self.assertEqual(seen["cookie_url"].split("#")[0], url.split("?")[0])  # token stripped
            self.assertEqual(len(seen["rows"]), 6)
            # the token: in the tab, never in a cookie
            self.assertEqual(seen["cookies"], [])
            self.assertEqual(seen["stored_token"], TOKEN)
            # ... and in no URL but the printed one: the event stream, the
            # image, the downloads carry tickets
            self.assertEqual([u for u in seen["urls"] if TOKEN in u], [url])
            for pat in (r"/api/sessions/b1/events\?ticket=[0-9a-f]{32}$",
                        r"/body/response/raw\?inline=1&ticket=[0-9a-f]{32}$",
                        r"/body/response/raw\?ticket=[0-9a-f]{32}$",
                        r"/export\?format=har&ids=\d+&redact=1&ticket=[0-9a-f]{32}$"):
                self.assertTrue(any(re.search(pat, u) for u in seen["urls"]), (pat, seen["urls"]))
            self.assertEqual(seen["image_size"], [37, 11])
            self.assertEqual(seen["download_len"], len(png(37, 11)))
            self.assertEqual(seen["har_entries"], 1)
            self.assertEqual(seen["reloaded_rows"], 6)
            # the client's TLS with reel, in a section of its own
            self.assertRegex(seen["client_tls"], r"^TLS\s*TLSv1\.[23]\s*cipher\s*\S+\s*SNI\s*localhost"
                             r"\s*ALPN\s*http/1\.1\s*resumed\s*no$")
            # the cookie older versions set opens nothing, and is expired
            self.assertIn("no access token", seen["cookie_status"])
            self.assertEqual((seen["cookie_rows"], seen["cookie_api"]), (0, []))
            self.assertEqual(seen["cookies_after"], [])
            self.assertIn("/100b", seen["rows"][0])
            # the origin's port is not http's: the Host column says it
            self.assertIn("\n127.0.0.1:%d\n/100b\n" % origin.http_port, seen["rows"][0])
            self.assertIn("\n127.0.0.1:1\n/refused\n", "\n".join(seen["rows"]))
            self.assertTrue(seen["filter_focused"])
            self.assertEqual(seen["filtered"], [str(post)])
            self.assertIn("column", seen["filter_error"])
            self.assertTrue(seen["filter_caret"] and seen["filter_caret"][0].endswith("^"))
            self.assertEqual(seen["filter_error_count"], "")
            # "~u café ~c x": column 13 (bytes) is the x, character 11
            self.assertEqual(seen["utf8_caret"], " " * 11 + "^")
            self.assertEqual(seen["utf8_selection"], [11, 12])
            self.assertEqual(seen["keyboard_detail"], "Flow 1")
            self.assertIn('"roles"', seen["http_detail"])  # the JSON body, pretty-printed
            self.assertIn("Content-Type", seen["http_detail"])
            # curl sent it to the proxy in absolute form, and the line says so
            self.assertIn("POST %s HTTP/1.1" % origin.url("/echo"), seen["http_detail"])
            self.assertIn("Timings", seen["http_detail"])
            # under the request's head, what modify_headers changed in it
            self.assertIn("Changed by modify_headers in the request reel sent on\nX-Browser\t"
                          "yes (rule |~m POST & ~q|X-Browser|yes)", seen["http_detail"])
            # the upstream connection says what its set-up took (plain HTTP:
            # no TLS phase)
            self.assertRegex(seen["http_detail"], r"set up\s+dns [^,]+, connect [^,]+, begun ")
            # ... and its timings say that no TLS phase happened (not "0 µs")
            self.assertRegex(seen["http_detail"], r"\btls\s+none\s+send\s")
            self.assertIn("-POST http://", seen["diff"])  # against flow 1, a GET
            self.assertIn("+GET http://", seen["diff"])
            self.assertTrue(any("client" in m and "hello from the client" in m
                                for m in seen["ws_messages"]), seen["ws_messages"])
            self.assertTrue(any("server" in m for m in seen["ws_messages"]))
            self.assertIn("Error", seen["error_text"])
            self.assertIn("body_limit", seen["config_error"])
            self.assertIn("3145728", seen["config_status"])
            self.assertEqual((seen["listen_layer"], seen["listen_value"]), ("cli", str(proxy)))
            self.assertIn("listen_port = 9999 in the overlay; the proxy keeps %d" % proxy,
                          seen["listen_status"])
            self.assertEqual(seen["listen_after"], str(proxy))
            self.assertEqual(seen["set_layer"], "session")
            self.assertEqual((seen["unset_value"], seen["unset_layer"]), ("61", "user"))
            self.assertIn("zstd_level applies at the next start", seen["zstd_status"])
            self.assertTrue(any("b1" in s and "recording" in s for s in seen["sessions"]))
            self.assertLess(seen["live_ms"], 5000)
            self.assertEqual(seen["live_rows"], seen["live_before"] + 1)
            # Replay in the session being recorded: a new flow of it, listed live
            self.assertIn("Replayed as flow %d" % seen["replay_id"], seen["replay_result"])
            self.assertIn("live=1", seen["replay_row"])
            rflow = json.loads(run([REEL, "flow", "b1", str(seen["replay_id"]), "--json"],
                                   env=env).stdout)
            self.assertEqual(rflow["replay_of"], seen["live_id"])
            self.assertEqual(rflow["response"]["status"], 200)
            # what the UI wrote, as the CLI sees it
            notes = run([REEL, "annotate", "b1", str(post)], env=env).stdout.decode()
            self.assertIn("browser note", notes)
            tagged = json.loads(run([REEL, "flows", "b1", "--json", "~tag btag"], env=env).stdout)
            self.assertEqual([f["id"] for f in tagged], [post])
            marked = json.loads(run([REEL, "flows", "b1", "--json", "~marked"], env=env).stdout)
            self.assertEqual([f["id"] for f in marked], [post])
            got = run([REEL, "config", "b1", "get", "body_limit"], env=env).stdout.decode()
            self.assertIn("3145728", got)
            deadline = time.time() + 5
            while "applied config change" not in open(log.name).read():
                self.assertLess(time.time(), deadline, "the recording proxy did not apply it")
                time.sleep(0.05)
            for shot in ("web-list.png", "web-detail.png", "web-websocket.png"):
                self.assertGreater(os.path.getsize(os.path.join(out_dir, shot)), 5000)
            print("browser part took %.1f s, live row after %d ms" % (took, seen["live_ms"]))
        finally:
            if proc.poll() is None:
                proc.send_signal(2)
            code = proc.wait(15)
            log.close()
            origin.stop()
        self.assertEqual(code, 0, open(log.name).read())
        shutil.rmtree(root, ignore_errors=True)

    def test_paging(self):
        """A list longer than the table's window (1000 rows): scrolling
        to the end and back loads pages by cursor, End and Home jump to
        either end, the window stays bounded, no request fails."""
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-bpage-", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        n = 1500
        entries = [{
            "startedDateTime": "2026-01-01T00:%02d:%02d.%03dZ" % (i // 60000 % 60, i // 1000 % 60,
                                                                  i % 1000),
            "time": 1,
            "request": {"method": "GET", "url": "http://h%d.test/p/%d" % (i % 7, i),
                        "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                        "cookies": [], "headersSize": -1, "bodySize": 0},
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [], "cookies": [], "redirectURL": "", "headersSize": -1,
                         "bodySize": 0, "content": {"size": 0, "mimeType": "text/plain"}},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}} for i in range(n)]
        har = os.path.join(root, "many.har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)
        run([REEL, "import", har, "--into", "many"], env=env)
        seen = drive_web(self, root, env, modules, ["many"], PAGING_JS)
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["failed"], [])
        self.assertEqual(seen["count"], "1,500 flows")
        self.assertTrue(seen["end"], seen)        # scrolled down to flow 1500
        self.assertLessEqual(seen["spacer"], 1000 * 24 + 2)  # the window stayed bounded
        self.assertTrue(seen["home"], seen)
        self.assertTrue(seen["end_key"], seen)
        self.assertTrue(seen["back"], seen)       # scrolled up from the end: rows before by cursor
        self.assertTrue(all("offset=" not in u for u in seen["urls"]), seen["urls"][:5])
        self.assertTrue(any("cursor=" in u for u in seen["urls"]))
        # the middle of 1500 ids is flow 750; a quarter of the times down
        # from the newest, flow 1125 (one flow per ms)
        self.assertLessEqual(abs(seen["slid_id"] - 750), 2, seen)
        self.assertLessEqual(abs(seen["slid_time"] - 1125), 2, seen)
        self.assertTrue(seen["goto_time"], seen)
        self.assertTrue(seen["goto_host"], seen)
        self.assertIn("flow 8 does not match the filter", seen["goto_filtered_status"])
        shutil.rmtree(root, ignore_errors=True)

    def test_replay(self):
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-breplay-", dir=TMPBASE)
        origin = Origin(root)
        reel = Reel(root, "rp")
        curl(reel, origin.url("/100b"))
        assert len(reel.wait_flows(1)) == 1
        self.assertEqual(reel.stop(), 0)
        env = dict(reel.env, REEL_WEB_TOKEN=TOKEN)
        try:
            seen = drive_web(self, root, env, modules, ["rp"], REPLAY_JS)
        finally:
            origin.stop()
        flow2 = json.loads(run([REEL, "flow", "rp", "2", "--json"], env=env).stdout)
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["failed"], [])
        self.assertIn("Replayed as flow 2", seen["result"])
        self.assertIn("status 200", seen["result"])
        self.assertTrue(seen["href"].endswith("#/s/rp/flow/2"), seen["href"])
        self.assertEqual(seen["diff_with"], "2")
        self.assertIsNotNone(seen["diff"])  # the same request and answer: few or no lines
        self.assertEqual(seen["opened"], "Flow 2")
        self.assertEqual(seen["session_actions"], ["Delete…"])
        self.assertEqual(flow2["replay_of"], 1)
        shutil.rmtree(root, ignore_errors=True)

    def test_request_not_sent_whole(self):
        """A flow whose final response came before its request body ended
        (nginx answers 404 to a chunked upload with Expect: 100-continue
        without reading it, and curl sends none) says so under its request
        body; a whole upload does not."""
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-bunfinished-", dir=TMPBASE)
        origin = Origin(root)
        self.addCleanup(origin.stop)
        reel = Reel(root, "uf")
        self.addCleanup(reel.stop)  # (when an assertion fails before its stop below)
        up = os.path.join(root, "up.bin")
        with open(up, "wb") as f:
            f.write(b"u" * 300000)
        curl(reel, "-o", "/dev/null", "-H", "Transfer-Encoding: chunked", "-H",
             "Expect: 100-continue", "--data-binary", "@" + up, origin.url("/nowhere"))
        curl(reel, "-o", "/dev/null", "--data-binary", "whole", origin.url("/echo"))
        flows = reel.wait_flows(2)
        self.assertEqual([(f["status"], f["request_end_us"] is None) for f in flows],
                         [(404, True), (200, False)])
        self.assertEqual(reel.stop(), 0)
        env = dict(reel.env, REEL_WEB_TOKEN=TOKEN)
        seen = drive_web(self, root, env, modules, ["uf"], NOTES_JS,
                         {"REEL_SESSION": "uf", "REEL_IDS": "1,2"})
        self.assertEqual(seen["errors"], [])
        self.assertIn("not sent whole: the final response came before the request body ended, "
                      "and the exchange ended with 0 B of it", seen["1"])
        self.assertFalse([n for n in seen["2"] if "not sent whole" in n], seen["2"])
        shutil.rmtree(root, ignore_errors=True)

    def test_body_edits_with_their_bodies(self):
        """What modify_body rules did to the request body is said in the
        request's section (the origin got it changed), what they did to the
        response body in the response's (the client got it)."""
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-bbodyedit-", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", REEL_WEB_TOKEN=TOKEN)
        entry = {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
                 "request": {"method": "POST", "url": "http://example.test/e",
                             "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                             "cookies": [], "headersSize": -1, "bodySize": 11,
                             "postData": {"mimeType": "text/plain", "text": "debug=false"}},
                 "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                              "headers": [], "cookies": [],
                              "content": {"size": 11, "mimeType": "text/plain",
                                          "text": "hello world"},
                              "redirectURL": "", "headersSize": -1, "bodySize": 11},
                 "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
                 "_reel": {"request_body_edit": {"rules": ["|false|true"], "replacements": 1,
                                                 "sent_size": 10, "decoded": False,
                                                 "not_applied": None,
                                                 "sent_body_b64": "ZGVidWc9dHJ1ZQ=="},
                           "response_body_edit": {"rules": ["|world|[world]"],
                                                  "replacements": 0, "sent_size": 0,
                                                  "decoded": False,
                                                  "not_applied": "the body is over 8 MiB"}}}
        har = os.path.join(root, "edits.har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry]}}, f)
        run([REEL, "import", har, "--into", "be"], env=env)
        seen = drive_web(self, root, env, modules, ["be"], NOTES_JS,
                         {"REEL_SESSION": "be", "REEL_IDS": "1"})
        self.assertEqual(seen["errors"], [])
        dirs = dict(seen["dirs1"])
        self.assertIn("modify_body: 1 replacement(s) by |false|true; the origin got 10 bytes "
                      "(the body below is the client's)", dirs["request"])
        self.assertIn("modify_body: |world|[world] not applied (the body is over 8 MiB): the "
                      "client got the body as it came", dirs["response"])
        self.assertFalse([n for n in dirs["request"] if "the client got" in n], dirs)
        self.assertFalse([n for n in dirs["response"] if "the origin got" in n], dirs)
        # the body the origin got, folded under the request's note; none
        # for the response, which went as it came
        self.assertEqual(dict(seen["sent1"]), {"request": ["The body the origin got|debug=true"],
                                               "response": []})
        shutil.rmtree(root, ignore_errors=True)

    def test_tunnel_request_lines(self):
        """A raw tunnel's request line names its authority, as `reel flow`
        does: opened with an HTTP CONNECT, and with SOCKS5 (it said
        "CONNECT HTTP/1.1", the target of a CONNECT being empty)."""
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-btunnel-", dir=TMPBASE)
        reel = Reel(root, "tn")
        self.addCleanup(reel.stop)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(2)
        port = srv.getsockname()[1]
        for opening in (b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port,
                        b"\x05\x01\x00"):
            s = socket.create_connection(("127.0.0.1", reel.port), 10)
            s.settimeout(10)
            s.sendall(opening)
            if opening.startswith(b"CONNECT"):
                self.assertIn(b" 200 ", s.recv(100))
            else:
                self.assertEqual(s.recv(2), b"\x05\x00")
                s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
                self.assertEqual(s.recv(10)[:2], b"\x05\x00")
            c, _ = srv.accept()
            s.sendall(b"\x00 not http")
            self.assertEqual(c.recv(100), b"\x00 not http")
            c.close()
            s.close()
            reel.wait_flows(1 if opening.startswith(b"CONNECT") else 2)
        srv.close()
        self.assertEqual(reel.stop(), 0)
        seen = drive_web(self, root, dict(reel.env, REEL_WEB_TOKEN=TOKEN), modules, ["tn"], NOTES_JS,
                         {"REEL_SESSION": "tn", "REEL_IDS": "1,2"})
        self.assertEqual(seen["errors"], [])
        self.assertEqual(seen["lines1"], ["CONNECT 127.0.0.1:%d HTTP/1.1" % port,
                                              "HTTP/1.1 200 Connection established (generated by reel)"])
        self.assertEqual(seen["lines2"], ["CONNECT 127.0.0.1:%d SOCKS5" % port,
                                              "SOCKS5 200 succeeded (generated by reel)"])
        shutil.rmtree(root, ignore_errors=True)

    def test_missing_session_parts_goto(self):
        """An unknown session in the address says it does not exist (the
        API's 404), with no flow count and no "retrying" of live updates
        that the browser does not retry; a body of three parts labels each
        part with its bytes (not "the first N bytes" for every part); Escape
        in the Go to box leaves it for the list, a second one closes the
        flow; a page of new flows that failed leaves its error in the status
        bar only until the next one comes (it stayed)."""
        modules = browser_modules()
        if modules is None:
            return
        root = tempfile.mkdtemp(prefix="reel-bmore-", dir=TMPBASE)
        env = dict(os.environ, REEL_HOME=root + "/home", XDG_DATA_HOME=root + "/data",
                   XDG_CONFIG_HOME=root + "/config", REEL_WEB_TOKEN=TOKEN)
        body = "".join("line %07d of a long text body\n" % i for i in range(80000))  # 2.5 MiB
        self.assertGreater(len(body), 2 * 1024 * 1024)
        har = os.path.join(root, "long.har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [{
                "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1,
                "request": {"method": "GET", "url": "http://long.test/text", "httpVersion": "HTTP/1.1",
                            "headers": [], "queryString": [], "cookies": [], "headersSize": -1,
                            "bodySize": 0},
                "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                             "headers": [{"name": "Content-Type", "value": "text/plain"}],
                             "cookies": [], "redirectURL": "", "headersSize": -1,
                             "bodySize": len(body),
                             "content": {"size": len(body), "mimeType": "text/plain", "text": body}},
                "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}]}}, f)
        run([REEL, "import", har, "--into", "long"], env=env)
        # one more flow each, imported while the page shows the list
        more = []
        for k in (2, 3):
            with open(har) as f:
                h = json.load(f)
            e = h["log"]["entries"][0]
            e["request"]["url"] = "http://long.test/more%d" % k
            e["response"]["content"] = {"size": 2, "mimeType": "text/plain", "text": "ok"}
            e["response"]["bodySize"] = 2
            more.append(os.path.join(root, "more%d.har" % k))
            with open(more[-1], "w") as f:
                json.dump(h, f)
        seen = drive_web(self, root, env, modules, [], MORE_JS,
                         {"REEL_BIN": REEL, "REEL_MORE_HARS": ":".join(more)})
        self.assertEqual(seen["errors"], [])
        # the only failures: the unknown session's
        self.assertTrue(seen["failed"], seen)
        for f in seen["failed"]:
            self.assertTrue(f.startswith("404 ") and "/api/sessions/nosuch/" in f, f)
        self.assertIn("session 'nosuch' does not exist", seen["missing_status"])
        self.assertNotIn("retrying", seen["missing_status"])
        self.assertEqual(seen["missing_count"], "")
        self.assertLessEqual(seen["missing_events"], 1)  # asked once, not again
        n = len(body)
        self.assertEqual(len(seen["parts"]), 3, seen["parts"])
        self.assertIn("part 1: bytes 0 to 1048575, more follows", seen["parts"][0])
        self.assertIn("part 2: bytes 1048576 to 2097151, more follows", seen["parts"][1])
        self.assertIn("part 3: bytes 2097152 to %d, the end of the body" % (n - 1), seen["parts"][2])
        for t in seen["part_tails"]:
            self.assertNotIn("the view shows the first", t)
        self.assertTrue(seen["part_tails"][2].endswith("line 0079999 of a long text body"),
                        seen["part_tails"][2])
        self.assertEqual(seen["goto_focus"], "goto")
        self.assertEqual(seen["after_escape_focus"], "table")  # left the box...
        self.assertTrue(seen["after_escape_open"])             # ...the flow still open
        self.assertFalse(seen["after_second_escape_open"])     # the second Escape closed it
        # a page that failed, then one that came: the failure's message went
        self.assertTrue(seen["fetch_failed_status"], seen)
        self.assertEqual(seen["after_retry_status"], "")
        shutil.rmtree(root, ignore_errors=True)


# The notes and the head lines (request line, status line) of the flows
# REEL_IDS names (comma-separated) in session REEL_SESSION.
NOTES_JS = r"""
"use strict";
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const res = { errors: [] };
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    page.setDefaultTimeout(15000);
    page.on("pageerror", (e) => res.errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") res.errors.push(m.text()); });
    await page.goto(process.argv[2]);
    const ids = process.env.REEL_IDS.split(",");
    await page.waitForSelector('.row[data-id="' + ids[ids.length - 1] + '"]');
    for (const id of ids) {
      await page.evaluate(([s, n]) => { location.hash = "#/s/" + s + "/flow/" + n; }, [process.env.REEL_SESSION, id]);
      await page.waitForFunction((n) => (document.getElementById("detail-h") || {}).textContent === "Flow " + n, id);
      // a body shown (its notes come with it), or a tunnel's messages
      await page.waitForSelector("#detail .body-out > *, #detail [aria-label=Messages]");
      res[id] = await page.$$eval("#detail .note", (ns) => ns.map((x) => x.innerText));
      res["lines" + id] = await page.$$eval("#detail section p.mono", (ps) => ps.map((x) => x.innerText));
      // each of request and response with its own notes
      res["dirs" + id] = await page.$$eval("#detail section.dir", (ss) => ss.map((x) =>
        [x.getAttribute("aria-label"), [...x.querySelectorAll(".note")].map((n) => n.innerText)]));
      // modify_body's body as it went, folded under its note
      res["sent" + id] = await page.$$eval("#detail section.dir", (ss) => ss.map((x) =>
        [x.getAttribute("aria-label"), [...x.querySelectorAll("details.sent-body")].map((d) =>
          d.querySelector("summary").textContent + "|" + d.querySelector("pre").textContent)]));
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(res));
})();
"""

# Replay from a flow's detail in chromium; prints what it saw as JSON.
REPLAY_JS = r"""
"use strict";
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const res = { errors: [], failed: [] };
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    page.setDefaultTimeout(15000);
    page.on("pageerror", (e) => res.errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") res.errors.push(m.text()); });
    page.on("response", (r) => { if (r.status() >= 400) res.failed.push(r.status() + " " + r.url()); });
    await page.goto(process.argv[2]);
    await page.waitForSelector('.row[data-id="1"]');
    await page.evaluate(() => { location.hash = "#/s/rp/flow/1"; });
    await page.waitForFunction(() => (document.getElementById("detail-h") || {}).textContent === "Flow 1");
    await page.click('#detail button:text-is("Replay")');
    await page.waitForSelector("#detail .replay-result a");
    res.result = await page.textContent("#detail .replay-result");
    res.href = await page.getAttribute("#detail .replay-result a", "href");
    res.diff_with = await page.inputValue("#diff-with");
    await page.click('#detail .replay-result button:text-is("Diff with it")');
    await page.waitForSelector("#detail pre.diff");
    res.diff = await page.textContent("#detail pre.diff");
    await page.click("#detail .replay-result a");
    await page.waitForFunction(() => (document.getElementById("detail-h") || {}).textContent === "Flow 2");
    res.opened = await page.textContent("#detail-h");
    // a server given SESSION names refuses a rename: the sessions page
    // offers none (it did, and the rename failed with 403); Delete it offers
    await page.evaluate(() => { location.hash = "#/"; });
    await page.waitForSelector("#sessions-table tbody tr");
    res.session_actions = await page.$$eval("#sessions-table tbody tr td.actions > button", (bs) => bs.map((b) => b.textContent));
  } catch (e) {
    res.errors.push("driver: " + e);
  } finally {
    process.stdout.write(JSON.stringify(res) + "\n");
    await browser.close();
  }
})();
"""

# An unknown session, a body in parts, Escape in Go to; prints what it saw.
MORE_JS = r"""
"use strict";
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const res = { errors: [], failed: [], missing_events: 0 };
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    page.setDefaultTimeout(10000);
    page.on("pageerror", (e) => res.errors.push(String(e)));
    page.on("response", (r) => { if (r.status() >= 400) res.failed.push(r.status() + " " + r.url()); });
    page.on("request", (r) => { if (r.url().includes("/api/sessions/nosuch/events")) res.missing_events++; });
    await page.goto(process.argv[2]);  // the token becomes a cookie
    await page.waitForSelector('.row[data-id="1"]');
    const base = page.url().split("#")[0];

    // a page opened on a session that does not exist (a fresh load)
    await page.goto("about:blank");
    await page.goto(base + "#/s/nosuch");
    await page.waitForFunction(() => /does not exist/.test(document.getElementById("status").textContent));
    await page.waitForTimeout(1500);  // time for a retry, were there one
    res.missing_status = await page.textContent("#status");
    res.missing_count = await page.textContent("#count");

    // a body of three parts
    await page.goto(base + "#/s/long/flow/1");
    const notes = 'section[aria-label="response"] .body-out p.note';
    await page.waitForSelector(notes);
    for (let k = 2; k <= 3; k++) {
      await page.click('section[aria-label="response"] button.more');
      await page.waitForFunction(([s, n]) => document.querySelectorAll(s).length === n, [notes, k]);
    }
    res.parts = await page.$$eval(notes, (ps) => ps.map((p) => p.textContent));
    res.part_tails = await page.$$eval('section[aria-label="response"] .body-out pre',
      (ps) => ps.map((p) => p.textContent.trimEnd().slice(-200)));

    // Escape in the Go to box
    await page.focus("#table");
    await page.keyboard.press("g");
    res.goto_focus = await page.evaluate(() => document.activeElement.id);
    await page.keyboard.type("1");
    await page.keyboard.press("Enter");
    await page.waitForSelector('.row.selected[data-id="1"]');
    await page.keyboard.press("Escape");
    res.after_escape_focus = await page.evaluate(() => document.activeElement.id);
    res.after_escape_open = await page.evaluate(() => /\/flow\/1$/.test(location.hash));
    await page.keyboard.press("Escape");
    await page.waitForTimeout(200);
    res.after_second_escape_open = await page.evaluate(() => /\/flow\/1$/.test(location.hash));

    // the page of new flows fails (the network), then the next one comes:
    // the status bar no longer says it failed
    const { execFileSync } = require("child_process");
    const [har2, har3] = process.env.REEL_MORE_HARS.split(":");
    const flows = (u) => u.href.includes("/api/sessions/long/flows?");
    await page.route(flows, (r) => r.abort("failed"));
    execFileSync(process.env.REEL_BIN, ["import", har2, "--into", "long"]);
    await page.waitForFunction(() => document.getElementById("status").classList.contains("error"));
    res.fetch_failed_status = await page.textContent("#status");
    await page.unroute(flows);
    execFileSync(process.env.REEL_BIN, ["import", har3, "--into", "long"]);
    await page.waitForSelector('.row[data-id="3"]');
    res.after_retry_status = await page.textContent("#status");
  } catch (e) {
    res.errors.push("driver: " + e);
  } finally {
    process.stdout.write(JSON.stringify(res) + "\n");
    await browser.close();
  }
})();
"""

# The paging walk in chromium (playwright-core); prints what it saw as JSON.
PAGING_JS = r"""
"use strict";
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.REEL_CHROMIUM || "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const res = { errors: [], failed: [], urls: [] };
  try {
    const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
    page.setDefaultTimeout(10000);
    page.on("pageerror", (e) => res.errors.push(String(e)));
    page.on("response", (r) => {
      if (r.status() >= 400) res.failed.push(r.status() + " " + r.url());
      if (r.url().includes("/flows?")) res.urls.push(r.url());
    });
    await page.goto(process.argv[2]);
    await page.waitForSelector('.row[data-id="1"]');
    await page.waitForFunction(() => /flows/.test(document.getElementById("count").textContent));
    res.count = await page.textContent("#count");
    const has = (id) => page.evaluate((i) => !!document.querySelector(`.row[data-id="${i}"]`), id);
    const scroll = async (down, id) => {
      for (let k = 0; k < 300; k++) {
        await page.evaluate((d) => { const vp = document.getElementById("viewport"); vp.scrollTop = d ? vp.scrollHeight : 0; }, down);
        await page.waitForTimeout(30);
        if (await has(id)) return true;
      }
      return false;
    };
    res.end = await scroll(true, 1500);
    res.spacer = await page.evaluate(() => parseFloat(document.getElementById("spacer").style.height));
    await page.focus("#table");
    await page.keyboard.press("Home");
    res.home = await page.waitForSelector('.row[data-id="1"]').then(() => true, () => false);
    await page.keyboard.press("End");
    res.end_key = await page.waitForSelector('.row[data-id="1500"]').then(() => true, () => false);
    res.back = await scroll(false, 501); // the first row of a page
    // jumping: the position slider let go at a fraction of the ids (then of
    // the times, sorted by Time descending), and "Go to" a flow by number
    // (sorted by Host too): rows fetched by a made-up cursor, not walked
    const firstRow = () => page.evaluate(() => {
      const vp = document.getElementById("viewport");
      const i = Math.floor(vp.scrollTop / 24);
      const r = document.querySelector(`.row[data-index="${i}"]`);
      return r ? Number(r.dataset.id) : null;
    });
    const slide = async (v) => {
      const before = await firstRow();
      await page.evaluate((x) => {
        const pos = document.getElementById("position");
        pos.value = x;
        pos.dispatchEvent(new Event("input"));
        pos.dispatchEvent(new Event("change"));
      }, v);
      // until the rows at the new place are drawn (a fixed wait read the
      // old place's first row on a loaded machine)
      await page.waitForFunction((b) => {
        const vp = document.getElementById("viewport");
        const r = document.querySelector(`.row[data-index="${Math.floor(vp.scrollTop / 24)}"][data-id]`);
        return r && Number(r.dataset.id) !== b &&
          document.querySelectorAll(".row[data-id]").length > 10;
      }, before);
      return firstRow();
    };
    res.slid_id = await slide(500);
    await page.click('button.sort[title="Sort by Time"]');
    await page.click('button.sort[title="Sort by Time"]');  // descending
    await page.waitForSelector('.row[data-id="1500"]');
    res.slid_time = await slide(250);
    const goTo = async (n) => {
      await page.fill("#goto", String(n));
      await page.press("#goto", "Enter");
      await page.waitForSelector(`.row.selected[data-id="${n}"]`);
      await page.waitForFunction((x) => location.hash.endsWith("/flow/" + x), n);
      return true;
    };
    res.goto_time = await goTo(1234);
    await page.keyboard.press("Escape");
    await page.click('button.sort[title="Sort by Host"]');
    await page.waitForSelector(".row[data-id]");
    res.goto_host = await goTo(777);
    res.host_rows = await page.$$eval(".row[data-id]", (rs) => rs.map((r) => r.innerText.split("\t").join(" ")).slice(0, 3));
    // Go to a flow the filter leaves out: the list shows where it would
    // be, and the flow opens (the hash and the detail stayed on 777)
    await page.fill("#filter", "~d h1");
    await page.press("#filter", "Enter");
    await page.waitForFunction(() => { const rs = [...document.querySelectorAll(".row[data-id]")]; return rs.length > 0 && rs.every((r) => r.innerText.includes("h1.test")); });
    await page.fill("#goto", "8");  // h0.test
    await page.press("#goto", "Enter");
    await page.waitForFunction(() => location.hash.endsWith("/flow/8") &&
      (document.getElementById("detail-h") || {}).textContent === "Flow 8");
    res.goto_filtered_status = await page.textContent("#status");
  } catch (e) {
    res.errors.push("driver: " + e);
  } finally {
    process.stdout.write(JSON.stringify(res) + "\n");
    await browser.close();
  }
})();
"""

if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=2)
    sys.exit(0 if prog.result.wasSuccessful() else 1)
