#!/usr/bin/python3
"""Retention through `reel record` (issue 13): with 1 MiB segments and
retention_max_bytes=3m, 12 MiB of downloads leave a bounded spool; a
tagged flow and a marked flow keep their segments; on_segment_closed copies
every closed segment (and a failing hook is only logged); `reel show` says
what was dropped; verify is clean; `reel compact` keeps every flow.
Retention also keeps the spool bounded while traffic goes on, not only
once it stops (test_retention_load.py, which runs alone). Its drops are in the journal: with session.db lost, `reel
repair` lists them again (not missing, no flow damaged), finishes a drop
whose segment file was left, and so for compact's.
"""
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, body, curl, main


def spool_bytes(root, newest=None):
    """The size of the spool's segments; newest (a list): the number of
    the newest segment is appended to it."""
    total, last = 0, 0
    for p in glob.glob(root + "/home/ret/spool/[0-9]*.zst"):
        last = max(last, int(os.path.basename(p)[:8]))
        try:
            total += os.path.getsize(p)
        except FileNotFoundError:  # dropped since the listing
            pass
    if newest is not None:
        newest.append(last)
    return total


class RetentionTest(unittest.TestCase):
    def test_bounded_kept_hook_compact(self):
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="retention.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        ship = os.path.join(root, "ship")
        os.makedirs(ship)
        hook = os.path.join(root, "hook.sh")
        with open(hook, "w") as f:
            f.write("#!/bin/sh\ncp \"$1\" %s/ || exit 1\ncase \"$1\" in *00000002.zst) exit 7;; esac\n"
                    % ship)
        os.chmod(hook, 0o700)
        reel = Reel(root, "ret", "segment_size=1m", "retention_max_bytes=3m",
                    "on_segment_closed=" + hook)
        try:
            url = origin.url("/file1m")
            curl(reel, "-o", "/dev/null", url + "?keep-tag")
            curl(reel, "-o", "/dev/null", url + "?keep-mark")
            fl = reel.wait_flows(2)
            ids = {f["url"].split("?")[1]: f["id"] for f in fl}
            reel.cli("tag", "ret", str(ids["keep-tag"]), "keep")
            reel.cli("mark", "ret", str(ids["keep-mark"]))
            for i in range(12):
                curl(reel, "-o", "/dev/null", url + "?n=%d" % i)
            # every flow written first: before that the spool is small
            # because the bytes are still in the capture buffer, not
            # because retention ran (a fast machine passed the wait below
            # at once and found nothing dropped yet)
            reel.wait_flows(14, timeout=10)
            deadline = time.time() + 10
            while time.time() < deadline:
                ret = json.loads(reel.cli("show", "ret", "--json").stdout)["retention"]
                if spool_bytes(root) <= (6 << 20) and ret["dropped_segments"] >= 3:
                    break
                time.sleep(0.1)
            # the limit, the segment being written, and the kept ones
            self.assertLessEqual(spool_bytes(root), 6 << 20)
            show = json.loads(reel.cli("show", "ret", "--json").stdout)
            ret = show["retention"]
            self.assertGreaterEqual(ret["dropped_segments"], 3)
            self.assertGreater(ret["dropped_flows"], 0)
            self.assertEqual(ret["last"]["reason"], "max_bytes")
            self.assertIn(b"dropped", reel.cli("show", "ret").stdout)
            left = {f["id"] for f in reel.flows()}
            self.assertIn(ids["keep-tag"], left)
            self.assertIn(ids["keep-mark"], left)
            self.assertEqual(len(body(reel.flow(ids["keep-tag"]), "response")), 1 << 20)
            # every closed segment was shipped; the hook's failure is logged
            self.assertTrue(os.path.exists(os.path.join(ship, "00000001.zst")))
            self.assertTrue(os.path.exists(os.path.join(ship, "00000003.zst")))
            deadline = time.time() + 5
            while "exit status 7" not in reel.log() and time.time() < deadline:
                time.sleep(0.1)
            self.assertIn("on_segment_closed", reel.log())
            self.assertIn("exit status 7", reel.log())
        finally:
            code = reel.stop()
            origin.stop()
        with open(os.path.join(root, "ret.log")) as f:
            self.assertEqual(code, 0, f.read())
        v = reel.cli("verify", "ret", check=False)
        self.assertEqual(v.returncode, 0, (v.stdout + v.stderr).decode())
        before = {f["id"] for f in reel.flows()}
        c = reel.cli("compact", "ret")
        self.assertIn(b"compacted session 'ret'", c.stdout)
        self.assertEqual({f["id"] for f in reel.flows()}, before)
        v = reel.cli("verify", "ret", check=False)
        self.assertEqual(v.returncode, 0, (v.stdout + v.stderr).decode())
        # A compact killed while it wrote its new segments left them under
        # their temporary names, taking room and named by nothing: the next
        # open that can write removes them, and says so.
        spool = os.path.join(root, "home", "ret", "spool")
        with open(os.path.join(spool, ".compact-00000099"), "wb") as f:
            f.write(os.urandom(5000))
        shown = reel.cli("show", "ret")
        self.assertIn(b"removed 1 new segment (5000 bytes) a compact left when it stopped before "
                      b"finishing", shown.stderr)
        self.assertEqual([n for n in os.listdir(spool) if n.startswith(".")], [])
        self.assertEqual({f["id"] for f in reel.flows()}, before)
        shutil.rmtree(root, ignore_errors=True)

    def test_age_past_a_segment_dated_in_the_future(self):
        # A segment whose file is dated ahead of the clock (set back while
        # it was written) held age retention back from every older one
        # behind it, and nothing said so: now they go, and the log says why.
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="retention-future.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        try:
            reel = Reel(root, "ret", "segment_size=1m")
            try:
                for i in range(5):
                    curl(reel, "-o", "/dev/null", origin.url("/file1m") + "?n=%d" % i)
                reel.wait_flows(5, timeout=10)
            finally:
                self.assertEqual(reel.stop(), 0, reel.log())
            segs = sorted(glob.glob(root + "/home/ret/spool/[0-9]*.zst"))
            self.assertGreaterEqual(len(segs), 4, segs)
            old, ahead = time.time() - 10 * 86400, time.time() + 5 * 365 * 86400
            os.utime(segs[0], (ahead, ahead))
            for p in segs[1:-1]:
                os.utime(p, (old, old))
            reel = Reel(root, "ret", "retention_max_age=60", resume=True)
            try:
                deadline = time.time() + 10
                while "retention dropped" not in reel.log() and time.time() < deadline:
                    time.sleep(0.1)
            finally:
                self.assertEqual(reel.stop(), 0, reel.log())
            log = reel.log()
            self.assertRegex(log, r"retention: 1 spool segment is dated in the future "
                                  r"\(00000001\.zst the oldest, up to \d+ s ahead")
            self.assertEqual(log.count("dated in the future"), 1, log)  # once, not every run
            self.assertFalse(os.path.exists(segs[0]))
            self.assertFalse(os.path.exists(segs[1]))
        finally:
            origin.stop()
            shutil.rmtree(root, ignore_errors=True)

    def test_drops_survive_lost_index(self):
        # Retention's drops lived in session.db only: without it, repair
        # reported the dropped segments missing, marked the flows that had
        # records there and in a kept segment damaged ("records lost"), and
        # `reel show` forgot what retention dropped.
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="retention-journal.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        ship = os.path.join(root, "ship")
        os.makedirs(ship)
        hook = os.path.join(root, "hook.sh")
        with open(hook, "w") as f:
            f.write("#!/bin/sh\ncp \"$1\" %s/\n" % ship)
        os.chmod(hook, 0o700)
        reel = Reel(root, "ret", "segment_size=1m", "retention_max_bytes=3m",
                    "on_segment_closed=" + hook)
        try:
            for i in range(10):
                curl(reel, "-o", "/dev/null", origin.url("/file1m") + "?n=%d" % i)
            reel.wait_flows(4, timeout=10)
            deadline = time.time() + 10
            while time.time() < deadline:
                ret = json.loads(reel.cli("show", "ret", "--json").stdout)["retention"]
                if ret["dropped_segments"] >= 4:
                    break
                time.sleep(0.1)
        finally:
            code = reel.stop()
            origin.stop()
        self.assertEqual(code, 0, reel.log())
        sdir = os.path.join(root, "home", "ret")
        spool = os.path.join(sdir, "spool")

        def tables():
            db = sqlite3.connect(os.path.join(sdir, "session.db"))
            try:
                return (db.execute("SELECT segment, time_us, flows, bytes, reason FROM retention "
                                   "ORDER BY segment").fetchall(),
                        db.execute("SELECT flow_id FROM retired_flows ORDER BY 1").fetchall())
            finally:
                db.close()

        def state():
            flows = [(f["id"], f["state"], f["damaged"], f["error"]) for f in reel.flows()]
            show = json.loads(reel.cli("show", "ret", "--json").stdout)
            text = [ln for ln in reel.cli("show", "ret").stdout.decode().splitlines()
                    if "dropped" in ln]
            return flows, show["retention"], text, tables()

        def lose_index():
            for f in glob.glob(os.path.join(sdir, "session.db*")):
                os.unlink(f)
            return reel.cli("repair", "ret").stdout.decode()

        def clean(out):
            self.assertNotRegex(out, r"\.zst (is|are) missing")
            self.assertNotIn("records lost", out)
            self.assertNotIn("damaged", out)
            self.assertEqual(state(), before)
            v = reel.cli("verify", "ret", check=False)
            self.assertEqual(v.returncode, 0, (v.stdout + v.stderr).decode())
            self.assertNotIn(b"known damage", v.stdout + v.stderr)

        before = state()
        rows, retired = before[3]
        self.assertGreaterEqual(len(rows), 4)
        self.assertTrue(retired, "no flow straddled a dropped segment: the test checks less")
        self.assertTrue(before[2], "reel show says nothing about retention")
        self.assertTrue(all(not damaged for _, _, damaged, _ in before[0]), before[0])
        out = lose_index()
        self.assertIn("dropped on purpose (%d by retention, 0 replaced by compact)" % len(rows),
                      out)
        clean(out)
        # A drop whose file was not deleted yet (killed after the drop's
        # journal record and before the unlink), with session.db lost
        # meanwhile: repair finishes it.
        last = rows[-1][0]
        shutil.copy(os.path.join(ship, "%08d.zst" % last), spool)
        out = lose_index()
        self.assertIn("finished 1 drop by retention", out)
        self.assertFalse(os.path.exists(os.path.join(spool, "%08d.zst" % last)))
        clean(out)
        # compact lists the segments it replaced: the same from the journal
        ids = [f[0] for f in before[0]]
        reel.cli("compact", "ret")
        before = state()
        self.assertEqual([f[0] for f in before[0]], ids)
        self.assertIn("compact", [r[4] for r in before[3][0]])
        out = lose_index()
        clean(out)
        # A compact killed after it listed the old segments and before it
        # deleted them, session.db lost since: the old one goes before the
        # rebuild (its records are in the new segments too).
        old = [r[0] for r in before[3][0] if r[4] == "compact"
               and os.path.exists(os.path.join(ship, "%08d.zst" % r[0]))][0]
        shutil.copy(os.path.join(ship, "%08d.zst" % old), spool)
        out = lose_index()
        self.assertIn("removed 1 old segment", out)
        self.assertFalse(os.path.exists(os.path.join(spool, "%08d.zst" % old)))
        clean(out)
        shutil.rmtree(root, ignore_errors=True)

    @unittest.skipUnless(shutil.which("gdb"), "needs gdb to stop compact at one point")
    def test_compact_killed_before_rebuild(self):
        # compact killed after it listed and deleted the old segments and
        # before its rebuild: the next open finished the drops first, by
        # flow rows, and put every flow with records in two old segments
        # into retired_flows, so the rebuild then dropped them from the new
        # segments (here all five flows of 1 MiB with 1 MiB segments).
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="retention-compact.", dir=TMPBASE)
        origin = Origin(os.path.join(root, "origin"))
        reel = Reel(root, "c", "segment_size=1m")
        try:
            for i in range(5):
                curl(reel, "-o", "/dev/null", origin.url("/file1m") + "?n=%d" % i)
            reel.wait_flows(5)
        finally:
            code = reel.stop()
            origin.stop()
        self.assertEqual(code, 0, reel.log())
        before = [f["id"] for f in reel.flows()]
        self.assertEqual(len(before), 5)
        g = subprocess.run(["gdb", "-batch", "-ex", "break reel_session_repair", "-ex", "run",
                            "-ex", "kill", "--args", REEL, "compact", "c"],
                           env=reel.env, capture_output=True)
        if b"Breakpoint 1, reel_session_repair" not in g.stdout:
            self.skipTest("gdb did not stop compact: %s" % (g.stdout + g.stderr).decode()[-300:])
        r = reel.cli("flows", "c", "--json")
        self.assertIn(b"stopped before it had rebuilt the index", r.stderr)
        self.assertEqual([f["id"] for f in json.loads(r.stdout)], before)
        v = reel.cli("verify", "c", check=False)
        self.assertEqual(v.returncode, 0, (v.stdout + v.stderr).decode())
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
