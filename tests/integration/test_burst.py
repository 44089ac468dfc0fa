#!/usr/bin/python3
"""A burst of parallel downloads through `reel record` with capture=on.

Issue 9: 50 parallel downloads of a 2 MiB file (100 MiB in a fraction of a
second, fsync per block, an idle local disk) left 33 of 50 flows without
bodies, shown as errors. The capture buffer (capture_buffer, 256 MiB by
default) must absorb such a burst: every flow complete, every body stored
whole. And when the buffer is too small for a burst, bodies are shed, not
heads or ends: every exchange still shows as the success it was, and says
how many body bytes were not stored.
"""
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import unittest

from proxyenv import TMPBASE, Origin, Reel, body, main

N = 50
SIZE = 2 << 20


class BurstTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="burst.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))
        cls.data = os.urandom(SIZE)
        with open(os.path.join(cls.origin.www, "file2m"), "wb") as f:
            f.write(cls.data)

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def burst(self, reel):
        """N downloads of the file through reel, all at once."""
        args = ["curl", "-sS", "--max-time", "60", "--parallel", "--parallel-immediate",
                "--parallel-max", str(N), "-x", reel.proxy]
        for i in range(N):
            args += [self.origin.url("/file2m?%d" % i), "-o", "/dev/null",
                     "-w", "%{http_code} %{size_download}\n"]
        r = subprocess.run(args, capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().split("\n")[:N], ["200 %d" % SIZE] * N)

    def rows(self, reel):
        db = sqlite3.connect(os.path.join(reel.env["REEL_HOME"], reel.session, "session.db"))
        try:
            return db.execute("SELECT id, state, status, error, response_body_size, "
                              "response_truncated, response_body_dropped FROM flows "
                              "ORDER BY id").fetchall()
        finally:
            db.close()

    def run_reel(self, session, *sets):
        reel = Reel(self.root, session, "capture=on", "fsync=block", *sets)
        try:
            self.burst(reel)
            flows = reel.wait_flows(N, timeout=30)
            self.assertEqual(len(flows), N)
            stored = {f["id"]: body(reel.flow(f["id"]), "response") for f in flows}
        finally:
            reel.proc.send_signal(signal.SIGINT)
            code = reel.proc.wait(60)
            log = reel.log()
            reel.stop()
        self.assertEqual(code, 0, log)
        return reel, stored, log

    def test_burst_recorded_whole(self):
        reel, stored, log = self.run_reel("whole")
        rows = self.rows(reel)
        self.assertEqual(len(rows), N)
        for fid, state, status, error, size, truncated, dropped in rows:
            self.assertEqual((state, status, error, size, truncated, dropped),
                             ("complete", 200, None, SIZE, 0, 0), "flow %d" % fid)
            self.assertEqual(hashlib.sha256(stored[fid]).digest(),
                             hashlib.sha256(self.data).digest(), "flow %d" % fid)
        self.assertNotIn("falling behind", log)

    def test_small_buffer_sheds_bodies_not_flows(self):
        reel, stored, log = self.run_reel("shed", "capture_buffer=1MiB")
        rows = self.rows(reel)
        self.assertEqual(len(rows), N)
        shed = 0
        for fid, state, status, error, size, truncated, dropped in rows:
            # heads and ends kept: a complete, successful exchange
            self.assertEqual((state, status, error, size), ("complete", 200, None, SIZE),
                             "flow %d" % fid)
            got = stored[fid]
            self.assertEqual(len(got) + dropped, SIZE, "flow %d" % fid)
            self.assertEqual(got, self.data[:len(got)], "flow %d: not a prefix" % fid)
            self.assertEqual(truncated, 1 if dropped else 0)
            shed += dropped > 0
        self.assertGreater(shed, 0)
        self.assertEqual(log.count("some bodies are not stored in full"), 1)


if __name__ == "__main__":
    main()
