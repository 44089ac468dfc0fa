#!/usr/bin/python3
"""A file-size limit (ulimit -f, RLIMIT_FSIZE, systemd's LimitFSIZE=) under
the proxy and under the commands that write a session.

A write past the limit sends SIGXFSZ, which kills a process that does not
ignore it: the proxy stopped forwarding (curl got no answer) and left a
torn frame at the limit. reel ignores it, so the write fails with EFBIG.
A limit below segment_size then ends segments at the limit: the frame
goes into the next one, and capture goes on (it used to stop there, as on
a full disk). A frame holds at most a quarter of the limit (and at least
64 KiB) of records. Only a frame larger than the limit is handled as a
full disk is: capture stops, traffic goes on, the segment is cut back to its
last whole frame, and the message names the limit. The limit is set on
the running proxy with prlimit(2), as `prlimit --pid` does, and raised
again the same way. Needs no root.

Reading a session needs session.db-shm (and -wal) beside session.db. When
SQLite cannot make them, on a full file system or under a file-size limit,
the read commands said the index was "damaged or not an SQLite database"
and advised `reel repair`, though nothing was wrong with it. They must
name the cause instead. A limit of 0 bytes on the reader needs no root; a
full tmpfs needs root (CAP_SYS_ADMIN) to mount and is skipped without it.
"""
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, body, curl, main, run

LIMIT = 3000000  # below segment_size: segments end at it
# below a frame of random bytes: frames are kept to a quarter of the limit,
# but hold at least 64 KiB of records
SMALL = 50000


def wait_for(pred, timeout, what, reel=None):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for %s%s" % (
                what, "; reel said:\n" + reel.log() if reel else ""))
        time.sleep(0.1)


def fsize(limit):
    """A preexec_fn that lowers the soft file-size limit of the child."""
    def set_limit():
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    return set_limit


class FileSizeLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="filelimit.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        if os.environ.get("REEL_TEST_KEEP") != "1":
            shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.reels = []
        self.dir = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + ".", dir=self.root)

    def tearDown(self):
        for r in self.reels:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(10)
            if not r.errlog.closed:
                r.errlog.close()

    def start(self, session):
        r = Reel(self.dir, session, "upstream_trusted_ca=" + self.origin.ca)
        self.reels.append(r)
        return r

    def set_limit(self, r, soft):
        hard = resource.prlimit(r.proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(r.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))

    def segment(self, r, session):
        return os.path.join(r.env["REEL_HOME"], session, "spool", "00000001.zst")

    def test_limit_below_segment_size_ends_segments_there(self):
        r = self.start("roll")
        o = self.origin
        self.set_limit(r, LIMIT)
        # 1 MiB of random bytes each: a segment reaches the limit every
        # third download or so, and the next frame starts the next one
        for i in range(6):
            self.assertEqual(curl(r, o.url("/file1m?roll=%d" % i)).stdout, o.file1m)
        fs = r.wait_flows(6, "~u roll=")
        self.assertEqual(len(fs), 6)
        for f in fs:
            self.assertEqual(body(r.flow(f["id"]), "response"), o.file1m, f["url"])
        spool = os.path.dirname(self.segment(r, "roll"))
        segs = sorted(n for n in os.listdir(spool) if n.endswith(".zst") and n[0] == "0")
        self.assertGreaterEqual(len(segs), 2, segs)
        for n in segs:
            self.assertLessEqual(os.path.getsize(os.path.join(spool, n)), LIMIT, n)
        code = r.stop()
        log = r.log()
        self.assertEqual(code, 0, log)
        self.assertNotIn("capture stopped", log)
        self.assertEqual(log.count("the file-size limit (ulimit -f) of %d bytes is below "
                                   "segment_size: spool segments end at it from 00000001.zst on"
                                   % LIMIT), 1, log)
        v = run([REEL, "verify", "roll"], env=r.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_limit_below_a_frame_stops_capture_not_traffic(self):
        r = self.start("fsz")
        o = self.origin
        self.set_limit(r, SMALL)
        # 1 MiB of random bytes each: a frame of it does not fit under the
        # limit at all. Every one is answered, byte for byte.
        for i in range(5):
            got = curl(r, o.url("/file1m?n=%d" % i)).stdout
            self.assertEqual(got, o.file1m, "response %d through the proxy" % i)
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        time.sleep(1.5)  # the writer retries every second: it must not resume and stop again
        self.assertEqual(curl(r, o.url("/100b?during")).stdout, b"x" * 99 + b"\n")
        log = r.log()
        self.assertEqual(log.count("capture stopped"), 1, log)
        # (the segments end at the limit: the first frames, of starts and
        # heads, may fill one or two before the first frame of a body)
        self.assertRegex(log, r"capture stopped: writing spool segment 0000000\d\.zst: File too "
                         r"large \(the file-size limit, ulimit -f, is %d bytes\); traffic is "
                         r"still forwarded" % SMALL)
        self.assertNotIn("capture resumed", log)
        # Cut back to the last whole frame: nothing torn for the next open
        # to move aside, and the session checks out while the proxy runs.
        self.assertLessEqual(os.path.getsize(self.segment(r, "fsz")), SMALL)
        v = r.cli("verify", "fsz", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

        # The limit raised under it (prlimit --pid): capture resumes.
        self.set_limit(r, resource.RLIM_INFINITY)
        wait_for(lambda: "capture resumed" in r.log(), 10, "the capture-resumed message", r)
        self.assertEqual(curl(r, o.url("/file1m?after")).stdout, o.file1m)
        after = r.wait_flows(1, "~u after")
        self.assertEqual(len(after), 1)
        self.assertEqual(body(r.flow(after[0]["id"]), "response"), o.file1m)

        code = r.stop()
        log = r.log()
        self.assertEqual(code, 1, log)  # records were lost: an error status, but a clean exit
        self.assertIn("capture was stopped during this run", log)
        v = run([REEL, "verify", "fsz"], env=r.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertNotIn(b"torn", v.stderr)  # nothing was left half-written

    def test_commands_that_write_fail_cleanly(self):
        r = self.start("src")
        o = self.origin
        for i in range(3):
            curl(r, "-o", os.devnull, o.url("/file1m?n=%d" % i))
        r.wait_flows(3)
        self.assertEqual(r.stop(), 0, r.log())
        env = r.env
        before = run([REEL, "flows", "src", "--json"], env=env).stdout
        har = os.path.join(self.dir, "src.har")
        run([REEL, "export", "src", "--format", "har", "-o", har], env=env)

        # compact writes new segments: it stops at the limit, and the
        # session is as it was
        res = run([REEL, "compact", "src"], env=env, check=False, preexec_fn=fsize(500000))
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn(b"File too large (the file-size limit, ulimit -f, is 500000 bytes)",
                      res.stderr)
        self.assertEqual(run([REEL, "flows", "src", "--json"], env=env).stdout, before)
        v = run([REEL, "verify", "src"], env=env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

        # import writes through the recorder: a limit below segment_size
        # ends its segments there (it stopped the import, which undid what
        # it wrote; test_import_interrupt has that, on a full disk). The
        # limit holds session.db and its WAL too: 1.5 MB leaves them room.
        res = run([REEL, "import", har, "--into", "imp"], env=env, check=False,
                  preexec_fn=fsize(1500000))
        self.assertEqual(res.returncode, 0, res.stderr)
        spool = os.path.join(env["REEL_HOME"], "imp", "spool")
        segs = [n for n in os.listdir(spool) if n[0] == "0"]
        self.assertGreaterEqual(len(segs), 2, segs)
        self.assertTrue(all(os.path.getsize(os.path.join(spool, n)) <= 1500000 for n in segs),
                        segs)
        self.assertEqual(len(json.loads(run([REEL, "flows", "imp", "--json"],
                                            env=env).stdout)), 3)
        v = run([REEL, "verify", "imp"], env=env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        # a limit that session.db itself meets: SQLite kept no errno for
        # it, and the import said "session.db: disk I/O error" alone
        res = run([REEL, "import", har, "--into", "tight"], env=env, check=False,
                  preexec_fn=fsize(200000))
        self.assertEqual(res.returncode, 1, res.stderr)
        self.assertIn(b"session.db: disk I/O error: File too large (the file-size limit, "
                      b"ulimit -f, is 200000 bytes)", res.stderr)

    def test_a_session_that_cannot_be_made_is_not_left(self):
        """new, record and import --into a new session, with no room for
        its session.db, used to leave the session's directory with an
        empty session.db: reel ls then failed on it as damaged, and the
        name was taken."""
        env = dict(os.environ, REEL_HOME=os.path.join(self.dir, "home"),
                   XDG_CONFIG_HOME=os.path.join(self.dir, "config"))
        har = os.path.join(self.dir, "one.har")
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": []}}, f)
        for args in (["new", "n"], ["record", "--listen", "127.0.0.1:0", "r"],
                     ["import", har, "--into", "i"]):
            with self.subTest(args=args[0]):
                res = run([REEL] + args, env=env, check=False, preexec_fn=fsize(0))
                self.assertEqual(res.returncode, 1, res.stderr)
                self.assertIn(b"File too large (the file-size limit, ulimit -f, is 0 bytes)",
                              res.stderr)
                self.assertEqual(os.listdir(env["REEL_HOME"]), [])
        ls = run([REEL, "ls"], env=env)
        self.assertIn(b"no sessions", ls.stdout)
        run([REEL, "new", "n"], env=env)  # the name is free


READERS = [["flows", "s"], ["show", "s"], ["ls"], ["verify", "s"], ["tag", "s", "1", "t"],
           ["annotate", "s", "1", "note"]]


class ReadsOutOfSpaceTest(unittest.TestCase):
    """Commands on a session whose session.db-shm cannot be made."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="outofspace.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        if os.environ.get("REEL_TEST_KEEP") != "1":
            shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.mounts = []
        self.reels = []
        self.dir = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + ".", dir=self.root)

    def tearDown(self):
        for r in self.reels:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(10)
            if not r.errlog.closed:
                r.errlog.close()
        for m in reversed(self.mounts):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)

    def record(self, home):
        """Session s with three flows under home, the proxy stopped.
        Returns (env, its flows as JSON)."""
        r = Reel(self.dir, "s", "upstream_trusted_ca=" + self.origin.ca, home=home)
        self.reels.append(r)
        for i in range(3):
            curl(r, "-o", os.devnull, self.origin.url("/100b?n=%d" % i))
        r.wait_flows(3)
        self.assertEqual(r.stop(), 0, r.log())
        return r.env, run([REEL, "flows", "s", "--json"], env=r.env).stdout

    def check_readers(self, env, cause, todo, preexec_fn=None):
        for cmd in READERS:
            res = run([REEL] + cmd, env=env, check=False, preexec_fn=preexec_fn)
            what = "reel %s: %s %s" % (" ".join(cmd), res.stdout, res.stderr)
            self.assertEqual(res.returncode, 1, what)
            out = res.stdout + res.stderr
            self.assertIn(cause, out, what)
            self.assertIn(todo, out, what)
            self.assertIn(b"not damage to the index", out, what)
            self.assertNotIn(b"damaged", out, what)
            self.assertNotIn(b"reel repair", out, what)

    def check_reads_back(self, env, flows):
        self.assertEqual(run([REEL, "flows", "s", "--json"], env=env).stdout, flows)
        v = run([REEL, "verify", "s"], env=env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        run([REEL, "tag", "s", "1", "t"], env=env)

    def test_file_size_limit_on_the_reader(self):
        env, flows = self.record(os.path.join(self.dir, "home"))
        self.check_readers(env, b"(disk I/O error): File too large (the file-size limit, "
                           b"ulimit -f, is 0 bytes)", b"raise it and try again", fsize(0))
        self.check_reads_back(env, flows)

    def test_full_file_system(self):
        mnt = tempfile.mkdtemp(prefix="tmpfs.", dir=self.dir)
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % (8 << 20),
                              "tmpfs", mnt], capture_output=True, text=True)
        if res.returncode != 0:
            raise unittest.SkipTest("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                                    + res.stderr.strip())
        self.mounts.append(mnt)
        env, flows = self.record(os.path.join(mnt, "home"))
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
        self.check_readers(env, b"(disk I/O error): No space left on device",
                           b"free some space and try again")
        os.unlink(filler)
        self.check_reads_back(env, flows)


if __name__ == "__main__":
    main()
