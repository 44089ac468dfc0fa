#!/usr/bin/python3
"""Readers of a session while retention drops segments from it.

A drop is several transactions (docs/format.md, section 6a): the segment is
listed in `retention`, its flows' rows go, then its frame rows, then the
file. `reel verify` while a recorder held a drop between them
(REEL_TEST_RETENTION_HOLD) failed on a healthy session ("frame ... holds
records of flow N that the index does not link to it", "frame ... is not
in the index"); `reel export`, which lists the flows in one read
transaction and then reads them, failed with "flow N has records in spool
segment S, which is missing" when retention dropped S meanwhile, and said
the same when `reel rm` deleted the session under it.
"""
import fcntl
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, curl, main


def wait_file(path, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                got = f.read().strip()
            if got.endswith(want):
                return got
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise AssertionError("%s never said %r" % (path, want))


def post(reel, url, n, size=64 << 10):
    """n POSTs of size random bytes through the proxy: many flows a segment,
    most of them wholly inside one (dropped with it, not retired)."""
    for _ in range(n):
        c = http.client.HTTPConnection("127.0.0.1", reel.port, timeout=10)
        c.request("POST", url, body=os.urandom(size))
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        c.close()


def hold(path, stage):
    with open(path + ".tmp", "w") as f:
        f.write(stage + "\n")
    os.rename(path + ".tmp", path)


class RetentionReadersTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(TMPBASE, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="retreaders.", dir=TMPBASE)
        self.origin = Origin(os.path.join(self.root, "origin"))
        self.reel = None

    def tearDown(self):
        try:
            try:  # a drop still held would keep the recorder from stopping
                os.unlink(os.path.join(self.root, "hold"))
            except FileNotFoundError:
                pass
            if self.reel is not None:
                self.reel.stop()
        finally:
            self.origin.stop()

    def verify_ok(self, name, what):
        v = self.reel.cli("verify", name, check=False)
        self.assertEqual(v.returncode, 0, "%s:\n%s" % (what, (v.stdout + v.stderr).decode()))
        return v.stdout.decode()

    def held_drops(self, stage, name):
        """reel record NAME dropping segments of 30 flows, held at stage
        (REEL_TEST_RETENTION_HOLD), and 60 flows through it; the hold
        file's path."""
        hp = os.path.join(self.root, "hold")
        hold(hp, stage)
        os.environ["REEL_TEST_RETENTION_HOLD"] = hp
        try:
            self.reel = Reel(self.root, name, "segment_size=1m", "retention_max_flows=30")
        finally:
            del os.environ["REEL_TEST_RETENTION_HOLD"]
        post(self.reel, self.origin.url("/echo"), 60)
        return hp

    def test_verify_during_a_drop(self):
        hp = self.held_drops("rows", "vr")
        # Held after the flows' rows went, before the frames' rows.
        seg = wait_file(hp + ".held", "rows").split()[0]
        out = self.verify_ok("vr", "verify with segment %s's flow rows gone" % seg)
        self.assertIn("1 segment not checked: dropped by retention", out)
        # Held after every row went, before the file.
        hold(hp, "file")
        wait_file(hp + ".held", seg + " file")
        self.verify_ok("vr", "verify with segment %s's rows gone, its file not" % seg)
        os.unlink(hp)
        deadline = time.time() + 10
        while time.time() < deadline:
            show = json.loads(self.reel.cli("show", "vr", "--json").stdout)
            if show["retention"]["dropped_flows"] >= 30:
                break
            time.sleep(0.1)
        out = self.verify_ok("vr", "verify after the drops")
        # dropped before verify began: nothing to say (it said "N segments
        # not checked: dropped by retention (while this ran)")
        self.assertNotIn("not checked", out)
        self.assertEqual(self.reel.stop(), 0)
        self.reel = None
        v = subprocess.run([REEL, "verify", "vr"], capture_output=True,
                           env=dict(os.environ, REEL_HOME=self.root + "/home"))
        self.assertEqual(v.returncode, 0, (v.stdout + v.stderr).decode())

    def test_user_data_for_a_flow_being_dropped(self):
        # Retention has listed a segment as dropped, and its flows' rows are
        # still there: a tag, note or mark for one of them is refused, as
        # for a flow gone. `reel tag` said it had tagged it, and the tag
        # outlived the flow (retention had checked for user data first).
        hp = self.held_drops("listed", "ud")
        wait_file(hp + ".held", "listed")
        first = min(f["id"] for f in json.loads(self.reel.cli("flows", "ud", "--json").stdout))
        for args in (["tag", "ud", str(first), "keep"], ["annotate", "ud", str(first), "a note"],
                     ["mark", "ud", str(first)]):
            r = self.reel.cli(*args, check=False)
            self.assertEqual((r.returncode, r.stderr.decode()),
                             (1, "reel %s: no flow %d in session 'ud'\n" % (args[0], first)))
        r = self.reel.cli("tag", "ud", "--json", "--filter", "~id %d" % first, "keep")
        self.assertEqual(json.loads(r.stdout), {"matched": 0, "added": 0})
        os.unlink(hp)
        deadline = time.time() + 10
        while time.time() < deadline:
            show = json.loads(self.reel.cli("show", "ud", "--json").stdout)
            if show["retention"]["dropped_flows"] > 0:
                break
            time.sleep(0.1)
        self.assertEqual(self.reel.cli("flows", "ud", "~tag keep | ~marked").stdout, b"")
        show = json.loads(self.reel.cli("show", "ud", "--json").stdout)
        self.assertGreater(show["retention"]["dropped_flows"], 0, show)
        out = self.reel.cli("show", "ud").stdout.decode()
        self.assertIn("0 annotations, 0 tagged flows, 0 marked", out)

    def start_blocked_export(self, name, fmt):
        """An export whose output nobody reads yet: it lists the flows, then
        blocks writing the first ones (a 1 MiB body is more than a pipe
        holds)."""
        p = subprocess.Popen([REEL, "export", name, "--format", fmt], env=self.reel.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(len(p.stdout.read(4096)), 4096)
        time.sleep(0.3)
        return p

    def test_export_while_retention_drops(self):
        self.reel = Reel(self.root, "ex", "segment_size=1m")
        url = self.origin.url("/file1m")
        for i in range(8):
            curl(self.reel, "-o", "/dev/null", url + "?n=%d" % i)
        self.reel.wait_flows(8, timeout=10)
        exports = [self.start_blocked_export("ex", fmt) for fmt in ("ndjson", "har", "raw")]
        self.reel.set_config("set", "retention_max_flows", "3")
        deadline = time.time() + 10
        while time.time() < deadline:
            show = json.loads(self.reel.cli("show", "ex", "--json").stdout)
            if show["retention"]["dropped_flows"] >= 5:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(show["retention"]["dropped_flows"], 5)
        for p in exports:
            out, err = p.communicate(timeout=60)
            err = err.decode()
            self.assertEqual(p.returncode, 0, err)
            self.assertNotIn("missing", err)
            self.assertRegex(err, r"reel export: \d+ flows? (was|were) dropped by retention "
                                  r"while the export ran")
            self.assertTrue(out)

    def test_export_of_a_removed_session(self):
        self.reel = Reel(self.root, "gone", "segment_size=1m")
        url = self.origin.url("/file1m")
        for i in range(4):
            curl(self.reel, "-o", "/dev/null", url + "?n=%d" % i)
        self.reel.wait_flows(4, timeout=10)
        self.assertEqual(self.reel.stop(), 0)
        p = self.start_blocked_export("gone", "ndjson")
        r = self.reel.cli("rm", "--yes", "gone")
        self.assertIn(b"deleted session 'gone'", r.stdout)
        self.assertEqual(os.listdir(self.root + "/home"), [])
        out, err = p.communicate(timeout=60)
        err = err.decode()
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("session 'gone' was removed ('reel rm') while this read it", err)
        self.assertNotIn("missing", err)
        self.reel = None

    def test_a_removal_cut_short_is_finished(self):
        # a reel rm killed after it moved the session aside: the hidden
        # directory (not listed) is deleted by the next rm, of it or any
        self.reel = Reel(self.root, "cut", "segment_size=1m")
        curl(self.reel, "-o", "/dev/null", self.origin.url("/file1m"))
        self.reel.wait_flows(1, timeout=10)
        self.assertEqual(self.reel.stop(), 0)
        self.reel.cli("new", "other")
        home = self.root + "/home"
        dead = subprocess.Popen(["true"])
        dead.wait()  # a pid nobody has now
        os.rename(home + "/cut", home + "/.cut.removing-%d" % dead.pid)
        shutil.copytree(home + "/other", home + "/.x.removing-%d" % dead.pid)
        os.unlink(home + "/.x.removing-%d/lock" % dead.pid)  # deleted already
        self.assertNotIn("cut", self.reel.cli("ls").stdout.decode())
        r = self.reel.cli("rm", "--yes", "cut")
        self.assertIn(b"deleted session 'cut'", r.stdout)
        self.assertEqual(sorted(os.listdir(home)), ["other"])
        # a removal still at work (its lock held) is left to it
        busy = home + "/.y.removing-1"
        shutil.copytree(home + "/other", busy)
        with open(busy + "/lock", "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            r = self.reel.cli("rm", "--yes", "nosuch", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertTrue(os.path.isdir(busy))
        self.reel = None


if __name__ == "__main__":
    main()
