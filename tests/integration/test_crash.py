#!/usr/bin/python3
"""kill -9 trials: `reel record` (then `reel resume` on the same session)
under mixed load is killed at a random moment, again and again.

After every kill `reel verify` must pass, and
- every flow answered before the last flow on disk ended (50 ms of slack
  for the clocks) is on disk too and complete: what is lost is a tail,
  never a hole;
- every flow answered more than 1.5 s before the kill is on disk (blocks
  are written within 100 ms and synced within a batch; the rest is margin
  for a loaded machine and sanitizers), in every later trial too;
- for a sample, the recorded request and response bodies are byte for byte
  what the client sent and got.

The proxy runs with capture=lossless: with capture=on, a load faster than
the disk (four clients pulling 1 MiB of random bytes) makes the recorder
drop flows by design, and those would look like losses. And with
capture_buffer=32MiB: a flow reaches the disk after what is queued before
it, and the default 256 MiB of queued random bodies took 1.6 s to drain
on a loaded CI machine (docs/format.md, section 3); 32 MiB bounds that
tail well inside the margin below.

10 trials normally, 5 under sanitizers, 50 with REEL_TEST_LONG=1.
"""
import http.client
import os
import random
import shutil
import ssl
import sys
import tempfile
import threading
import time
import unittest

from proxyenv import SANITIZED, TMPBASE, Origin, Reel, body, main

LONG = os.environ.get("REEL_TEST_LONG") == "1"
TRIALS = 50 if LONG else (5 if SANITIZED else 10)
MARGIN = 1.5  # seconds between an answer and the kill for the answer to count
SESSION_TRIALS = 10


class Load:
    """Client threads with mixed requests; remembers every answered one."""

    def __init__(self, origin, reel, trial, threads=4):
        self.o, self.r, self.trial = origin, reel, trial
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = []  # (url, request body, response body, answered at)
        self.ctx = ssl.create_default_context(cafile=reel.ca)
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def run(self, k):
        rnd = random.Random("%d-%d" % (self.trial, k))
        plain = tls = None
        i = 0
        while not self.stop.is_set():
            i += 1
            tag = "t=%d-%d-%d" % (self.trial, k, i)
            https = rnd.random() < 0.3
            kind = rnd.choice(["small", "small", "small", "post", "post", "post_large",
                               "get_large"])
            try:
                if https:
                    if tls is None:
                        tls = http.client.HTTPSConnection("127.0.0.1", self.r.port,
                                                          context=self.ctx, timeout=5)
                        tls.set_tunnel("localhost", self.o.https_port)
                    conn, target = tls, None
                else:
                    if plain is None:
                        plain = http.client.HTTPConnection("127.0.0.1", self.r.port, timeout=5)
                    conn = plain
                if kind == "small":
                    path, method, req = "/100b?" + tag, "GET", b""
                elif kind == "get_large":
                    path, method, req = "/file1m?" + tag, "GET", b""
                else:
                    n = rnd.choice([10, 1000]) if kind == "post" else rnd.choice([65536, 300000])
                    path, method, req = "/echo?" + tag, "POST", rnd.randbytes(n)
                url = self.o.url(path, https=https)
                target = path if https else url
                conn.request(method, target, body=req or None)
                resp = conn.getresponse()
                got = resp.read()
                if resp.status == 200:
                    with self.lock:
                        self.done.append((url, req, got, time.time()))
            except (OSError, http.client.HTTPException):
                for c in (plain, tls):
                    if c is not None:
                        c.close()
                plain = tls = None
                if self.stop.is_set():
                    break
                time.sleep(0.05)
        for c in (plain, tls):
            if c is not None:
                c.close()


class CrashTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(TMPBASE, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="crash.", dir=TMPBASE)
        self.origin = Origin(os.path.join(self.root, "origin"))

    def tearDown(self):
        self.origin.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def test_kill_9_trials(self):
        o = self.origin
        rnd = random.Random(os.environ.get("REEL_TEST_SEED", "reel"))
        must_have = {}  # url -> trial, for every answer that had time to reach the disk
        checked = 0
        compared = answered = 0
        lag = []
        t_start = time.time()
        for trial in range(TRIALS):
            # `resume` on the same session, a new one every SESSION_TRIALS
            # trials (verify reads the whole session, every time)
            if trial % SESSION_TRIALS == 0:
                checked += len(must_have)
                must_have = {}
            name = "crash%d" % (trial // SESSION_TRIALS)
            r = Reel(self.root, name, "upstream_trusted_ca=" + o.ca, "capture=lossless",
                     "capture_buffer=32MiB",
                     resume=trial % SESSION_TRIALS > 0)
            load = Load(o, r, trial)
            time.sleep(rnd.uniform(1.2, 2.5))
            killed_at = time.time()
            r.proc.kill()
            r.proc.wait()
            load.join()
            answered += len(load.done)
            self.assertGreater(len(load.done), 5, "trial %d: the load did not get going" % trial)

            verify = r.cli("verify", name, check=False)
            self.assertEqual(verify.returncode, 0, "trial %d: %s %s" % (trial, verify.stdout,
                                                                          verify.stderr))
            flows = r.flows()
            ids = {f["url"]: f["id"] for f in flows}
            state = {f["url"]: f["state"] for f in flows}
            # No holes: the tail after the last flow on disk may be lost, nothing before it.
            mine = [f for f in flows if "t=%d-" % trial in f["url"]]
            last_end = max(f["end_us"] or 0 for f in mine) / 1e6 if mine else 0
            holes = [d[0] for d in load.done if d[3] < last_end - 0.05 and
                     state.get(d[0]) != "complete"]
            self.assertEqual(holes, [], "trial %d: flows answered before the last one on disk "
                             "are missing or incomplete" % trial)
            lag.append(killed_at - last_end)
            old = [d for d in load.done if d[3] < killed_at - MARGIN]
            for d in old:
                must_have[d[0]] = trial
            missing = [u for u in must_have if u not in ids]
            if missing:
                when = {d[0]: killed_at - d[3] for d in load.done}
                self.fail("trial %d: %d of %d answered flows missing: %s; reel's log: %s" %
                          (trial, len(missing), len(must_have),
                           ", ".join("%s (answered %.2f s before the kill)" % (u, when.get(u, -1))
                                     for u in missing[:10]), r.log()[-2000:]))
            # Byte for byte, for a sample: the largest old ones and a few others.
            sample = sorted(old, key=lambda d: -(len(d[1]) + len(d[2])))[:2] + \
                rnd.sample(old, min(2, len(old)))
            for url, req, got, _ in sample:
                f = r.flow(ids[url])
                self.assertEqual(f["state"], "complete", url)
                self.assertEqual(body(f, "request"), req, url)
                self.assertEqual(body(f, "response"), got, url)
                compared += 1
            r.errlog.close()
        print("\ncrash: %d kill -9 trials in %.0f s; %d requests answered, %d checked present "
              "after the kills, %d compared byte for byte; the last flow on disk ended %.2f s "
              "before the kill at most (median %.2f s)" %
              (TRIALS, time.time() - t_start, answered, checked + len(must_have), compared, max(lag),
               sorted(lag)[len(lag) // 2]), file=sys.stderr)
        self.assertGreater(checked + len(must_have), 10 * TRIALS)


if __name__ == "__main__":
    main()
