"""`workers`: several event loops, each on its own thread, accepting on the
same address (SO_REUSEPORT) and recording into one session.

- Connections spread over the workers (each worker thread spends CPU), and
  every flow of many concurrent clients, plain and intercepted, is recorded
  whole; client connection numbers are unique, and flow ids follow start
  times.
- What the workers share: the per-client connection limit counts the
  connections of every worker; a hot config change reaches every worker.
- A second reel on the same port fails as one worker would ("address
  already in use"), instead of joining the port's group.
- SIGINT with requests in flight on every worker: each finishes, reel exits
  0 and the session verifies.
Real clients: curl and python3's http.client through the proxy, nginx as
the origin.
"""
import concurrent.futures
import http.client
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, curl, main, read_all, run, stop_class


def thread_names(pid):
    """The names of the reel process's threads, one per thread."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                out.append(f.read().strip())
        except FileNotFoundError:
            pass
    return out


def worker_threads(pid):
    """{thread name: CPU ticks (utime + stime)} of the reel process."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
        except FileNotFoundError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


class Workers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="workers.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.reel = Reel(cls.root, "wk", "workers=2", "max_client_conns=8",
                        "upstream_trusted_ca=" + cls.origin.ca)

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def get(self, path, conn=None):
        c = conn or http.client.HTTPConnection("127.0.0.1", self.reel.port, timeout=20)
        c.request("GET", self.origin.url(path))
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def test_a_connections_spread_and_every_flow_is_recorded(self):
        r = self.reel
        self.assertIn("2 workers", r.log())
        # the second worker names its thread when it starts, which may be
        # just after the main thread has said "2 workers"
        deadline = time.monotonic() + 10
        while "reel-worker1" not in worker_threads(r.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        names = worker_threads(r.proc.pid)
        self.assertIn("reel-worker1", names)
        self.assertNotIn("reel-worker2", names)
        before = worker_threads(r.proc.pid)

        def client(i):
            # a keep-alive connection per client, 100 requests each: enough
            # that each loop's share shows in its CPU time (10 ms ticks;
            # with 20 each, a loop's few milliseconds read 0 now and then)
            c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=20)
            got = [self.get("/100b?a%d-%d" % (i, k), c) for k in range(100)]
            c.close()
            return got
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            results = list(ex.map(client, range(40)))
        for got in results:
            for status, data in got:
                self.assertEqual((status, data), (200, b"x" * 99 + b"\n"))
        # intercepted TLS on several connections too
        for i in range(6):
            out = curl(r, "https://localhost:%d/100b?tls%d" % (self.origin.https_port, i)).stdout
            self.assertEqual(out, b"x" * 99 + b"\n")
        after = worker_threads(r.proc.pid)
        # one thread is the second worker: libuv's thread pool (which
        # resolves origins' names) is not named after it (it was when the
        # first name to resolve came to that worker, the kernel's choice)
        self.assertEqual(thread_names(r.proc.pid).count("reel-worker1"), 1,
                         thread_names(r.proc.pid))
        # both loops served connections: the first worker is the main
        # thread (named after the program), the other reel-worker1
        self.assertGreater(after["reel-worker1"] - before.get("reel-worker1", 0), 0, after)
        self.assertGreater(after["reel"] - before.get("reel", 0), 0, after)

        flows = r.wait_flows(4006, "~u '[?](a[0-9]|tls)'", timeout=30)
        self.assertEqual(len(flows), 4006)
        self.assertTrue(all(f["state"] == "complete" and f["status"] == 200 for f in flows))
        # 46 client connections, each its own number, none reused
        conns = {f["client_conn"] for f in flows}
        self.assertEqual(len(conns), 46, sorted(conns))
        per_conn = {}
        for f in flows:
            per_conn.setdefault(f["client_conn"], []).append(f)
        self.assertEqual(sorted(len(v) for v in per_conn.values()), [1] * 6 + [100] * 40)
        # flow ids follow start times whichever worker recorded them
        by_id = sorted(flows, key=lambda f: f["id"])
        starts = [f["start_us"] for f in by_id]
        self.assertEqual(starts, sorted(starts))

    def tls_through(self, ctx, session=None):
        """A GET on a new intercepted TLS connection (CONNECT through reel,
        python3's ssl trusting reel's CA); returns the TLS session and
        whether it was resumed."""
        port = self.origin.https_port
        s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
        s.sendall(b"CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n" % (port, port))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        t = ctx.wrap_socket(s, server_hostname="localhost", session=session)
        t.sendall(b"GET /100b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        out, _ = read_all(t)
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out[:80])
        reused, sess = t.session_reused, t.session  # TLS 1.3: the ticket came after the handshake
        t.close()
        return sess, reused

    def test_b2_tls_sessions_resume_on_any_worker(self):
        # the workers' TLS contexts share their ticket keys: a client's next
        # connection resumes wherever the kernel puts it (10 connections:
        # with keys of their own, half would land on the worker that did
        # not issue the ticket and need a full handshake)
        ctx = ssl.create_default_context(cafile=self.reel.ca)
        sess, reused = self.tls_through(ctx)
        self.assertFalse(reused)
        got = []
        for _ in range(10):
            sess, reused = self.tls_through(ctx, sess)
            got.append(reused)
        self.assertEqual(got, [True] * 10)

    def test_b_client_limit_counts_every_workers_connections(self):
        time.sleep(0.3)  # the other tests' connections are closed by now
        held = []
        for i in range(8):  # 8 allowed, wherever they land
            s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % self.origin.url("/100b?held%d" % i).encode())
            self.assertIn(b"200 OK", s.recv(4096))
            held.append(s)
        refused = 0
        for i in range(6):  # hashed over both workers: each must refuse
            s = socket.create_connection(("127.0.0.1", self.reel.port), 10)
            out, _ = read_all(s)
            s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 429 "), out[:80])
            refused += 1
        self.assertEqual(refused, 6)
        for s in held:
            s.close()
        time.sleep(0.3)
        self.assertEqual(self.get("/100b?after-limit")[0], 200)

    def test_c_config_change_reaches_every_worker(self):
        r = self.reel
        r.set_config("set", "proxyauth", "u:p")
        try:
            # new connections land on either worker: every one asks for auth
            for i in range(12):
                out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                           self.origin.url("/100b?auth%d" % i)).stdout
                self.assertEqual(out, b"407", i)
            for i in range(4):
                out = curl(r, "-U", "u:p", self.origin.url("/100b?authok%d" % i)).stdout
                self.assertEqual(out, b"x" * 99 + b"\n")
        finally:
            r.set_config("unset", "proxyauth")
        self.assertEqual(self.get("/100b?noauth")[0], 200)

    def test_d_second_reel_on_the_same_port_fails(self):
        env = dict(self.reel.env)
        p = run([REEL, "record", "--listen", "127.0.0.1:%d" % self.reel.port, "--set",
                 "workers=2", "other"], env=env, check=False, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"address already in use", p.stderr)


class WorkersShutdown(unittest.TestCase):
    def test_sigint_with_requests_in_flight_on_every_worker(self):
        root = tempfile.mkdtemp(prefix="workers-stop.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        reel = Reel(root, "stop", "workers=3")
        try:
            self.assertIn("3 workers", reel.log())
            # each worker names its thread once it runs, which may come
            # after that line (an ASan build beside two other tests)
            deadline = time.monotonic() + 10
            while ("reel-worker2" not in worker_threads(reel.proc.pid) and
                   time.monotonic() < deadline):
                time.sleep(0.05)
            names = worker_threads(reel.proc.pid)
            self.assertIn("reel-worker2", names)
            # 12 slow downloads (curl reads 1 MiB at 700 KiB/s), spread over
            # the workers by the kernel
            procs = [subprocess.Popen(["curl", "-sS", "-o", os.devnull, "-w",
                                       "%{http_code} %{size_download}", "-x", reel.proxy,
                                       "--limit-rate", "700k", "--max-time", "30",
                                       origin.url("/file1m?slow%d" % i)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for i in range(12)]
            deadline = time.time() + 10
            while len(reel.flows("~u slow")) < 12 and time.time() < deadline:
                time.sleep(0.05)
            code = reel.stop(signal.SIGINT)  # 3 s of grace: each download takes 1.5
            outs = [(p.communicate(timeout=30)[0], p.returncode) for p in procs]
            self.assertEqual(code, 0, reel.log())
            self.assertEqual(outs, [(b"200 1048576", 0)] * 12, reel.log())
            self.assertIn("12 flows recorded in this run", reel.log())
            v = reel.cli("verify", "stop", check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
            flows = reel.flows("~u slow")
            self.assertEqual(len(flows), 12)
            self.assertTrue(all(f["state"] == "complete" for f in flows), flows)
        finally:
            reel.stop(signal.SIGKILL) if reel.proc.poll() is None else None
            origin.stop()


if __name__ == "__main__":
    main()
