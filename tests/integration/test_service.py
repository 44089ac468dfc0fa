#!/usr/bin/python3
"""reel as a service: `reel --version`, `reel record --pidfile`, systemd's
readiness protocol (NOTIFY_SOCKET) and a clean stop on SIGTERM.

A Python origin (in this process) answers /slow after a delay, so a flow is
in flight when SIGTERM arrives; the service manager is played by a unix
datagram socket in $NOTIFY_SOCKET, as systemd does for Type=notify."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from proxyenv import REEL, TMPBASE, main, run

SLOW_BODY = b"slow body\n" * 1000


class Handler(BaseHTTPRequestHandler):
    started = threading.Event()

    def do_GET(self):
        if self.path == "/slow":
            Handler.started.set()
            time.sleep(1.0)
        body = SLOW_BODY if self.path == "/slow" else b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def has_libsystemd():
    return "readiness notification)" in run([REEL, "--version"]).stdout.decode() and \
        "not built in" not in run([REEL, "--version"]).stdout.decode()


class VersionTest(unittest.TestCase):
    def test_version_commit_and_libraries(self):
        out = run([REEL, "--version"]).stdout.decode()
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^reel \d+\.\d+\.\d+$")
        m = re.match(r"^commit (\S+)$", lines[1])
        self.assertTrue(m, out)
        commit = m.group(1)
        src = os.environ.get("REEL_SOURCE_DIR", "")
        if os.path.isdir(os.path.join(src, ".git")):
            # built from this checkout: a commit of it (maybe an older one:
            # others may have committed since the build), -dirty or not
            self.assertRegex(commit, r"^[0-9a-f]{7,40}(-dirty)?$")
            r = run(["git", "-C", src, "cat-file", "-e", commit.split("-")[0] + "^{commit}"],
                    check=False)
            self.assertEqual(r.returncode, 0, "no commit %s in %s" % (commit, src))
        libs = {}
        for ln in lines[3:]:
            name, _, ver = ln.strip().partition(" ")
            libs[name] = ver.strip()
        for name in ["libuv", "OpenSSL", "SQLite", "zstd", "protobuf-c", "jansson", "libyaml",
                     "zlib", "brotli", "PCRE2", "llhttp", "libsystemd"]:
            self.assertIn(name, libs, out)
        for name in ["libuv", "SQLite", "zstd", "protobuf-c", "jansson", "libyaml", "zlib",
                     "brotli", "PCRE2", "llhttp"]:
            self.assertRegex(libs[name], r"^\d+\.\d+", name)
        # asked of the libraries at run time: the same shared libraries as
        # Python's modules load
        self.assertEqual(libs["SQLite"], sqlite3.sqlite_version)
        self.assertEqual(libs["zlib"], zlib.ZLIB_RUNTIME_VERSION)
        self.assertEqual(libs["OpenSSL"], ssl.OPENSSL_VERSION)


class ServiceTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(TMPBASE, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="service.", dir=TMPBASE)
        self.env = dict(os.environ, REEL_HOME=self.root + "/home",
                        XDG_DATA_HOME=self.root + "/data", XDG_CONFIG_HOME=self.root + "/config")
        self.env.pop("NOTIFY_SOCKET", None)
        self.origin = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin_thread = threading.Thread(target=self.origin.serve_forever, daemon=True)
        self.origin_thread.start()
        self.procs, self.logs = [], []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.logs:
            f.close()
        self.origin.shutdown()
        self.origin.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self, *args, notify=None, nohup=False):
        env = dict(self.env)
        if notify:
            env["NOTIFY_SOCKET"] = notify
        log = open(os.path.join(self.root, "reel.log"), "w+")
        # SIGHUP ignored as nohup leaves it, else as a terminal's shell
        # leaves it, whatever this test inherited (a suite run under nohup
        # ignores it, and reel then keeps it ignored)
        hup = signal.SIG_IGN if nohup else signal.SIG_DFL
        p = subprocess.Popen([REEL, "record", "--listen", "127.0.0.1:0"] + list(args), env=env,
                             stdout=subprocess.DEVNULL, stderr=log,
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, hup))
        self.procs.append(p)
        self.logs.append(log)
        return p, log

    def wait_pidfile(self, proc, pidfile):
        deadline = time.time() + 15
        while not os.path.exists(pidfile):
            self.assertIsNone(proc.poll(), "reel exited")
            self.assertLess(time.time(), deadline, "no pid file")
            time.sleep(0.05)

    def listen_port(self, log):
        log.seek(0)
        return int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read()).group(1))

    def test_pidfile_notify_and_sigterm(self):
        sock_path = os.path.join(self.root, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(15)
        pidfile = os.path.join(self.root, "run", "reel.pid")
        os.makedirs(os.path.dirname(pidfile))
        proc, log = self.start("--pidfile", pidfile, "svc", notify=sock_path)
        notify = has_libsystemd()
        if notify:
            msg = sock.recv(4096).decode()
            self.assertIn("READY=1", msg.split("\n"))
            m = re.search(r"STATUS=recording into session 'svc', listening on 127\.0\.0\.1:(\d+)",
                          msg)
            self.assertTrue(m, msg)
            port = int(m.group(1))
            # ready means listening, and the pid file is there already
            with open(pidfile) as f:
                self.assertEqual(f.read(), "%d\n" % proc.pid)
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        else:
            self.wait_pidfile(proc, pidfile)
        port = self.listen_port(log)
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % proc.pid)
        self.assertEqual(os.listdir(os.path.dirname(pidfile)), ["reel.pid"])  # no temp left

        # a flow in flight when SIGTERM comes finishes and is recorded
        Handler.started.clear()
        url = "http://127.0.0.1:%d/slow" % self.origin.server_address[1]
        curl = subprocess.Popen(["curl", "-sS", "--max-time", "20", "-x",
                                 "http://127.0.0.1:%d" % port, url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(curl)
        self.assertTrue(Handler.started.wait(10), "request did not reach the origin")
        proc.send_signal(signal.SIGTERM)
        out, err = curl.communicate(timeout=20)
        self.assertEqual(curl.returncode, 0, err)
        self.assertEqual(out, SLOW_BODY)
        self.assertEqual(proc.wait(20), 0)
        if notify:
            self.assertIn("STOPPING=1", sock.recv(4096).decode().split("\n"))
        sock.close()
        self.assertFalse(os.path.exists(pidfile), "pid file left behind")
        flows = json.loads(run([REEL, "flows", "svc", "--json"], env=self.env).stdout)
        self.assertEqual(len(flows), 1, flows)
        self.assertEqual(flows[0]["state"], "complete")
        self.assertEqual(flows[0]["status"], 200)
        self.assertEqual(flows[0]["response_body_size"], len(SLOW_BODY))
        run([REEL, "verify", "svc"], env=self.env)

    def slow_request_in_flight(self, pidfile, session):
        """reel record SESSION with pidfile, and curl's /slow through it once
        the origin has it: (reel's process, its log, curl's process)."""
        proc, log = self.start("--pidfile", pidfile, session)
        self.wait_pidfile(proc, pidfile)
        port = self.listen_port(log)
        Handler.started.clear()
        url = "http://127.0.0.1:%d/slow" % self.origin.server_address[1]
        curl = subprocess.Popen(["curl", "-sS", "--max-time", "20", "-x",
                                 "http://127.0.0.1:%d" % port, url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(curl)
        self.assertTrue(Handler.started.wait(10), "request did not reach the origin")
        return proc, log, curl

    def test_sighup_stops_as_sigterm_does(self):
        # the terminal that ran it closed: SIGHUP killed it outright, the
        # flow in flight cut, nothing flushed and the pid file left
        pidfile = os.path.join(self.root, "reel3.pid")
        proc, log, curl = self.slow_request_in_flight(pidfile, "svc3")
        proc.send_signal(signal.SIGHUP)
        out, err = curl.communicate(timeout=20)
        self.assertEqual((curl.returncode, out), (0, SLOW_BODY), err)
        self.assertEqual(proc.wait(20), 0)
        self.assertFalse(os.path.exists(pidfile), "pid file left behind")
        log.seek(0)
        self.assertIn("reel: hung up: finishing in-flight flows", log.read())
        flows = json.loads(run([REEL, "flows", "svc3", "--json"], env=self.env).stdout)
        self.assertEqual([(f["state"], f["status"]) for f in flows], [("complete", 200)])

    def test_sighup_ignored_as_nohup_does_stays_ignored(self):
        # nohup reel record: the terminal's SIGHUP must not stop it (its
        # handler took the place of the ignored disposition)
        pidfile = os.path.join(self.root, "reel4.pid")
        proc, log = self.start("--pidfile", pidfile, "svc4", nohup=True)
        self.wait_pidfile(proc, pidfile)
        port = self.listen_port(log)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertIsNone(proc.poll(), "SIGHUP stopped it")
        url = "http://127.0.0.1:%d/" % self.origin.server_address[1]
        res = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x",
                              "http://127.0.0.1:%d" % port, url], capture_output=True, timeout=20)
        self.assertEqual(res.stdout, b"200", res.stderr)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(20), 0)

    def test_second_signal_removes_the_pidfile(self):
        # the second signal exits at once, without the orderly stop; the
        # pid file goes all the same (it was left with the dead pid in it)
        pidfile = os.path.join(self.root, "reel2.pid")
        proc, log, curl = self.slow_request_in_flight(pidfile, "svc2")
        proc.send_signal(signal.SIGINT)  # a flow in flight: it waits for it
        time.sleep(0.3)
        self.assertIsNone(proc.poll())
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(20), 130)
        log.seek(0)
        self.assertIn("second signal, exiting now", log.read())
        self.assertFalse(os.path.exists(pidfile), "pid file left behind")
        curl.wait(30)

    def test_pidfile_unwritable(self):
        proc, log = self.start("--pidfile", os.path.join(self.root, "no-such-dir", "reel.pid"),
                               "bad")
        self.assertEqual(proc.wait(20), 1)
        log.seek(0)
        text = log.read()
        self.assertIn("pid file", text)
        self.assertIn("No such file or directory", text)
        # the session it made for nothing is gone again
        r = run([REEL, "show", "bad"], env=self.env, check=False)
        self.assertNotEqual(r.returncode, 0)

    def test_no_notify_socket_no_pidfile(self):
        # without $NOTIFY_SOCKET or --pidfile, nothing of the sort happens
        proc, log = self.start("plain")
        deadline = time.time() + 15
        while "listening on" not in (log.seek(0) or log.read()):
            self.assertIsNone(proc.poll())
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(20), 0)
        left = [os.path.join(d, f) for d, _, fs in os.walk(self.root) for f in fs
                if f.endswith((".pid", ".tmp"))]
        self.assertEqual(left, [])


if __name__ == "__main__":
    main()
