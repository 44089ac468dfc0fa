"""What the CLI writes on a terminal (a pseudo-terminal here) against a
pipe, with a running `reel record`: tunnel flows name their host, captured
escape sequences never reach the terminal raw, `reel flows` fits the
terminal's width, and `reel config` tells what a running proxy applies now
and where it listens (issue 9, items 5, 11, 13, 14)."""
import fcntl
import json
import os
import pty
import shutil
import socket
import struct
import sys
import tempfile
import termios
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxyenv import REEL, TMPBASE, Reel, main  # noqa: E402

# What the far end of a tunnel sends: retitle the window, clear the screen,
# and a C1 CSI (U+009B) that some terminals obey too.
HOSTILE = b"welcome \x1b]0;pwned\x07\x1b[2J and \xc2\x9b31m red\n"


def on_tty(args, env, cols=100):
    """Runs reel with stdout on a pseudo-terminal `cols` wide; returns what
    it wrote (CR LF turned back into LF) and its exit code."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
            os.execve(REEL, [REEL] + list(args), env)
        finally:
            os._exit(127)
    out = b""
    while True:
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return out.replace(b"\r\n", b"\n"), os.waitstatus_to_exitcode(status)


class FarEnd:
    """A TCP server that reads a line and answers HOSTILE, then closes."""

    def __init__(self, family, host):
        self.sock = socket.socket(family)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                try:
                    c.recv(4096)
                    c.sendall(HOSTILE)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def tunnel(reel, authority):
    """CONNECT authority through reel, send bytes that are neither TLS nor
    HTTP (so reel relays and records a tunnel flow), read to the end."""
    s = socket.create_connection(("127.0.0.1", reel.port), timeout=5)
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            break
        head += d
    assert head.startswith(b"HTTP/1.1 200"), head
    s.sendall(b"\x00\x01hello\n")
    got = head.split(b"\r\n\r\n", 1)[1]
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
    s.close()
    return got


class Terminal(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="cli-tty.", dir=TMPBASE)
        cls.far4 = FarEnd(socket.AF_INET, "127.0.0.1")
        try:
            cls.far6 = FarEnd(socket.AF_INET6, "::1")
        except OSError:
            cls.far6 = None
        cls.reel = Reel(cls.root, "tty")
        cls.env = cls.reel.env
        assert tunnel(cls.reel, b"127.0.0.1:%d" % cls.far4.port) == HOSTILE
        if cls.far6:
            assert tunnel(cls.reel, b"[::1]:%d" % cls.far6.port) == HOSTILE
        flows = cls.reel.wait_flows(2 if cls.far6 else 1)
        cls.tunnel4 = flows[0]["id"]
        cls.tunnel6 = flows[1]["id"] if cls.far6 else None

    @classmethod
    def tearDownClass(cls):
        code = cls.reel.stop()
        cls.far4.close()
        if cls.far6:
            cls.far6.close()
        if code != 0:
            print(cls.reel.log(), file=sys.stderr)
        shutil.rmtree(cls.root, ignore_errors=True)

    def cli(self, *args, check=True):
        return self.reel.cli(*args, check=check)

    def test_tunnel_head_names_its_host(self):
        out = self.cli("flow", "tty", str(self.tunnel4)).stdout
        self.assertIn(b"> CONNECT 127.0.0.1:%d HTTP/1.1\n" % self.far4.port, out)
        if self.far6 is None:
            self.skipTest("no IPv6 loopback")
        out = self.cli("flow", "tty", str(self.tunnel6)).stdout
        self.assertIn(b"> CONNECT [::1]:%d HTTP/1.1\n" % self.far6.port, out)

    def test_flow_body_escaped_on_a_terminal_only(self):
        out, code = on_tty(["flow", "tty", str(self.tunnel4)], self.env)
        self.assertEqual(code, 0, out)
        self.assertNotIn(b"\x1b", out)
        self.assertNotIn(b"\xc2\x9b", out)
        self.assertIn(b"welcome \\x1b]0;pwned\\x07\\x1b[2J and \\xc2\\x9b31m red\n", out)
        # asked for: --raw writes the body as recorded, also on a terminal
        out, code = on_tty(["flow", "tty", str(self.tunnel4), "--raw"], self.env)
        self.assertIn(HOSTILE, out)
        # into a pipe: the bytes as recorded
        self.assertIn(HOSTILE, self.cli("flow", "tty", str(self.tunnel4)).stdout)

    def test_raw_and_curl_exports_escaped_on_a_terminal(self):
        # a request header holding an escape sequence (the request is
        # recorded whatever the origin does: a closed port, reel's 502)
        s = socket.create_connection(("127.0.0.1", self.reel.port), timeout=10)
        s.sendall(b"GET http://127.0.0.1:1/evil HTTP/1.1\r\nHost: x\r\n"
                  b"X-Evil: a\x1b]0;pwned\x07b\r\n\r\n")
        while s.recv(4096):
            pass
        s.close()
        self.reel.wait_flows(1, "~u /evil")
        for fmt in ("raw", "curl"):
            out, code = on_tty(["export", "tty", "--format", fmt, "~u /evil"], self.env)
            self.assertEqual(code, 0, out)
            self.assertNotIn(b"\x1b", out, fmt)
            self.assertIn(b"a\\x1b]0;pwned\\x07b", out, fmt)
            # into a pipe: the bytes as recorded
            piped = self.cli("export", "tty", "--format", fmt, "~u /evil").stdout
            self.assertIn(b"a\x1b]0;pwned\x07b", piped, fmt)

    def test_notes_escaped_on_a_terminal(self):
        note = "seen \x1b]0;pwned\x07\x1b[2J here"
        self.cli("annotate", "tty", str(self.tunnel4), note)
        out, code = on_tty(["annotate", "tty", str(self.tunnel4)], self.env)
        self.assertEqual(code, 0, out)
        self.assertNotIn(b"\x1b", out)
        self.assertIn(b"seen \\x1b]0;pwned\\x07\\x1b[2J here", out)
        self.assertIn(note.encode(), self.cli("annotate", "tty", str(self.tunnel4)).stdout)

    def test_typed_filter_escaped_in_no_match(self):
        # a filter that matches nothing is quoted back: its control bytes
        # used to reach the terminal raw (retitling the window)
        filt = "~u \x1b]0;pwn\x07x"
        for cmd in (["flows", "tty", filt], ["export", "tty", filt],
                    ["replay", "tty", filt, "--into", "tty-again"]):
            with self.subTest(cmd=cmd[0]):
                out, code = on_tty(cmd, self.env)
                self.assertNotIn(b"\x1b", out)
                self.assertNotIn(b"\x07", out)
                self.assertIn(b"matches '~u \\x1b]0;pwn\\x07x'", out)

    def test_flows_fit_the_terminal(self):
        har = os.path.join(self.root, "urls.har")

        def entry(url):
            return {"startedDateTime": "2026-01-01T00:00:00Z", "time": 1,
                    "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1",
                                "headers": [], "queryString": [], "cookies": [],
                                "headersSize": -1, "bodySize": 0},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                                 "headers": [], "cookies": [],
                                 "content": {"size": 0, "mimeType": "text/plain", "text": ""},
                                 "redirectURL": "", "headersSize": -1, "bodySize": 0},
                    "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
        long_url = "http://long.test/" + "a" * 60000
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": [entry("http://evil.test/\u009b2J"), entry(long_url)]}},
                      f)
        self.cli("import", har, "--into", "urls")
        self.cli("tag", "urls", "2", "a-rather-long-tag-name", "another-tag")
        out, code = on_tty(["flows", "urls"], self.env, cols=104)
        self.assertEqual(code, 0, out)
        lines = out.decode().splitlines()
        # under 120 columns the date is a line of its own where the day
        # changes, and rows give the time of day: the URL has the room
        day = time.strftime("%Y-%m-%d", time.localtime(1767225600))  # the HAR's 2026-01-01Z
        self.assertEqual(len(lines), 3, out)
        self.assertEqual(lines[0], day)
        lines = lines[1:]
        for line in lines:
            self.assertLessEqual(len(line), 104, line)
            self.assertNotIn(day, line)
            self.assertRegex(line, r"^ +\d+  \d\d:\d\d:\d\d\.\d{3} ")
        self.assertIn("\u2026", lines[1])
        self.assertIn("http://long.test/" + "a" * 19, lines[1])  # 8 with the date in the row
        self.assertNotIn(b"\xc2\x9b", out)  # a C1 control in a URL is escaped
        self.assertIn("http://evil.test/\\xc2\\x9b", lines[0])
        # 120 columns and more: the date in every row, as before
        out, _ = on_tty(["flows", "urls"], self.env, cols=140)
        lines = out.decode().splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertTrue(all(day in line for line in lines), lines)
        # the terminal's own width wins over $COLUMNS, which is used when
        # the terminal does not say (0 columns)
        out, _ = on_tty(["flows", "urls"], dict(self.env, COLUMNS="200"), cols=60)
        self.assertEqual(max(len(l) for l in out.decode().splitlines()), 60)
        out, _ = on_tty(["flows", "urls"], dict(self.env, COLUMNS="110"), cols=0)
        self.assertEqual(max(len(l) for l in out.decode().splitlines()), 110)
        # whole values: --wide on a terminal, a pipe, --json
        out, _ = on_tty(["flows", "urls", "--wide"], self.env, cols=100)
        self.assertIn(long_url.encode(), out)
        self.assertIn(b"[a-rather-long-tag-name,another-tag]", out)
        self.assertIn(long_url.encode(), self.cli("flows", "urls").stdout)
        self.assertEqual(json.loads(self.cli("flows", "urls", "--json").stdout)[1]["url"],
                         long_url)

    def test_config_says_what_the_running_proxy_does(self):
        out = self.cli("config", "tty", "set", "fsync", "never").stdout.decode()
        self.assertIn("fsync applies at the next start", out)
        got = json.loads(self.cli("config", "tty", "--json", "set", "segment_size", "2m").stdout)
        self.assertEqual(got["applies"], "next start")
        # list shows the values set, and says which the proxy does not run
        # with yet (it showed segment_size 2097152 as if in force)
        out = self.cli("config", "tty", "list").stdout.decode()
        self.assertRegex(out, r"\nchanged since the proxy recording into 'tty' \(pid %d\) "
                         r"started, which keeps its values from before until it next starts "
                         r"\('reel resume tty' after stopping it\): fsync segment_size\n"
                         % self.reel.proc.pid)
        rows = {o["name"]: o for o in json.loads(self.cli("config", "tty", "list", "--json").stdout)}
        self.assertEqual([rows[k].get("applies") for k in ("segment_size", "fsync", "capture")],
                         ["next start", "next start", None])
        out = self.cli("config", "tty", "set", "capture", "on").stdout.decode()
        self.assertIn("applies it within a second", out)
        self.assertNotIn("next start", out)
        # set back to its value when the proxy started: no longer named
        out = self.cli("config", "tty", "unset", "fsync").stdout.decode()
        self.assertIn("fsync applies at the next start: the proxy recording into 'tty' (pid %d) "
                      "runs with this value already (its value when it started)"
                      % self.reel.proc.pid, out)
        out = self.cli("config", "tty", "list").stdout.decode()
        self.assertRegex(out, r"\(\'reel resume tty\' after stopping it\): segment_size\n")
        rows = {o["name"]: o for o in json.loads(self.cli("config", "tty", "list", "--json").stdout)}
        self.assertEqual([rows[k].get("applies") for k in ("segment_size", "fsync")],
                         ["next start", None])
        # set to the value it had unset (the default): no change either
        out = self.cli("config", "tty", "set", "zstd_level", "3").stdout.decode()
        self.assertIn("runs with this value already", out)
        self.assertNotIn("zstd_level", self.cli("config", "tty", "list").stdout.decode()
                         .rsplit("\n\n", 1)[-1])
        self.cli("config", "tty", "unset", "zstd_level")
        self.cli("config", "tty", "unset", "segment_size")
        self.cli("config", "tty", "unset", "capture")
        # the port the proxy was given with --listen 127.0.0.1:0, at layer cli
        rows = {o["name"]: o for o in json.loads(self.cli("config", "tty", "list", "--json").stdout)}
        self.assertEqual(rows["listen_port"]["value"], str(self.reel.port))
        self.assertEqual(rows["listen_port"]["layer"], "cli")
        self.assertEqual(rows["listen_host"]["value"], "127.0.0.1")
        out = self.cli("config", "tty", "list").stdout.decode()
        self.assertRegex(out, r"listen_port +%d +cli " % self.reel.port)
        self.assertEqual(self.cli("config", "tty", "get", "listen_port").stdout.decode().strip(),
                         str(self.reel.port))


class Stopped(unittest.TestCase):
    def test_set_options_of_the_running_proxy(self):
        """An option the proxy was started with --set for beats the overlay
        while it runs: config list and get show it at layer cli, and set
        says the proxy keeps it; once it stops the overlay applies."""
        root = tempfile.mkdtemp(prefix="cli-tty.", dir=TMPBASE)
        r = None
        try:
            r = Reel(root, "sets", "upstream_timeout=17", "retention_max_flows=5")

            def rows():
                return {o["name"]: o for o in json.loads(r.cli("config", "sets", "--json").stdout)}
            self.assertEqual((rows()["upstream_timeout"]["value"],
                              rows()["upstream_timeout"]["layer"]), ("17", "cli"))
            self.assertEqual(r.cli("config", "sets", "get", "upstream_timeout").stdout, b"17\n")
            out = r.cli("config", "sets", "set", "upstream_timeout", "5").stdout.decode()
            self.assertIn("was started with --set upstream_timeout=17, which takes precedence "
                          "over the overlay: it keeps that value until it stops", out)
            got = json.loads(r.cli("config", "sets", "--json", "set", "upstream_timeout",
                                   "6").stdout)
            self.assertEqual(got["applies"], "when the proxy stops")
            self.assertEqual(rows()["upstream_timeout"]["layer"], "cli")
            # reel show's retention line says what the proxy runs with
            show = json.loads(r.cli("show", "sets", "--json").stdout)
            self.assertEqual(show["retention"]["max_flows"], 5)
            self.assertIn("max_flows 5 ", r.cli("show", "sets").stdout.decode())
            # the listen address came from --listen 127.0.0.1:0, not from a
            # --set the user never typed
            out = r.cli("config", "sets", "set", "listen_port", "9999").stdout.decode()
            self.assertIn("runs with listen_port = %d from its command line (--listen or --set)"
                          % r.port, out)
            self.assertNotIn("--set listen_port", out)
            # an option without --set still applies now
            out = r.cli("config", "sets", "set", "idle_timeout", "100").stdout.decode()
            self.assertIn("applies it within a second", out)
            self.assertEqual(r.stop(), 0)
            self.assertEqual((rows()["upstream_timeout"]["value"],
                              rows()["upstream_timeout"]["layer"]), ("6", "session"))
        finally:
            if r is not None and r.proc.poll() is None:  # a failed check: stop it anyway
                r.stop()
            shutil.rmtree(root, ignore_errors=True)

    def test_listen_address_of_a_proxy_gone(self):
        """After the proxy exits, config list shows the configured port
        again, whatever meta still holds."""
        root = tempfile.mkdtemp(prefix="cli-tty.", dir=TMPBASE)
        try:
            r = Reel(root, "gone")
            port = r.port
            self.assertEqual(r.stop(), 0)
            rows = {o["name"]: o for o in json.loads(r.cli("config", "gone", "--json").stdout)}
            self.assertEqual(rows["listen_port"]["value"], "8080")
            self.assertEqual(rows["listen_port"]["layer"], "default")
            self.assertNotEqual(port, 8080)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
