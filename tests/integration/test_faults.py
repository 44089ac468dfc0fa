#!/usr/bin/python3
"""Faults under a running proxy and in a session at rest.

- Disk full: the sessions root is a small tmpfs mounted here; a filler file
  takes the rest of it while the proxy records. Traffic must still be
  answered, `reel record` must say once that capture stopped and why, what
  was recorded before must stay intact (`reel verify`, exact bytes), and
  capture must resume once the filler is gone, and with `reel resume`.
- Read-only file system: a loop-mounted ext4 whose error handling is
  errors=remount-ro, made read-only under the proxy with ext4's
  trigger_fs_error (Linux refuses `mount -o remount,ro` while files are
  open for writing, so that cannot be used on a live proxy).
- Session directory deleted under the proxy.
- session.db damaged at rest: garbage, truncated, zero-length, a damaged
  table page. The CLI must say so and exit 1; `reel repair` must rebuild.
- A spool segment deleted at rest.

Mounts need root (CAP_SYS_ADMIN); without it those tests are skipped with
the reason. Every mount is undone in tearDown, every process stopped by PID.
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, body, curl, main, run


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


class FaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="faults.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"))

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        if os.environ.get("REEL_TEST_KEEP") != "1":  # keep the logs to look at
            shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.mounts = []
        self.reels = []
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix=self.id().split(".")[-1] + ".", dir=self.root)

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        for r in self.reels:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(10)
            if not r.errlog.closed:
                r.errlog.close()
        for m in reversed(self.mounts):
            if subprocess.run(["umount", m], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True)

    # ---- helpers ----

    def mount_tmpfs(self, size):
        d = tempfile.mkdtemp(prefix="tmpfs.", dir=self.dir)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % size, "tmpfs", d],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise unittest.SkipTest("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                                    + r.stderr.strip())
        self.mounts.append(d)
        return d

    def start(self, session, *sets, home, resume=False):
        log = os.path.join(self.dir, session + ".log")
        if os.path.exists(log):  # keep an earlier run's log (REEL_TEST_KEEP=1)
            os.rename(log, "%s.%d" % (log, len(self.reels)))
        r = Reel(self.dir, session, "upstream_trusted_ca=" + self.origin.ca, *sets, resume=resume,
                 home=home)
        self.reels.append(r)
        return r

    def fill(self, mnt, leave=0):
        """Fills the file system at mnt with a filler file, leaving about
        `leave` bytes free. Returns the filler's path."""
        path = os.path.join(mnt, "filler")
        with open(path, "wb") as f:
            chunk = b"\0" * (1 << 16)
            try:
                while True:
                    st = os.statvfs(mnt)
                    free = st.f_bavail * st.f_frsize
                    if free <= leave:
                        break
                    f.write(chunk[:max(4096, min(len(chunk), free - leave))])
                    f.flush()
            except OSError:
                pass
        return path

    def split_session(self, name, spool_size, path):
        """A session on a tmpfs of 8 MiB whose spool/ is a tmpfs of its own
        (spool_size), with one flow (path) recorded: each file system can
        then be filled apart. Returns (mount, home, env, spool)."""
        mnt = self.mount_tmpfs(8 << 20)
        home = os.path.join(mnt, "home")
        env = dict(os.environ, REEL_HOME=home, XDG_DATA_HOME=self.dir + "/data",
                   XDG_CONFIG_HOME=self.dir + "/config")
        run([REEL, "new", name], env=env)
        spool = os.path.join(home, name, "spool")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % spool_size,
                            "tmpfs", spool], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.mounts.append(spool)
        r = self.start(name, home=home, resume=True)
        self.get(r, path, b"x" * 99 + b"\n")
        self.assertEqual(len(r.wait_flows(1)), 1)
        code, log = self.stop(r)
        self.assertEqual(code, 0, log)
        return mnt, home, env, spool

    def get(self, r, path, expect):
        """Fetches path through the proxy and checks the bytes."""
        got = curl(r, self.origin.url(path)).stdout
        self.assertEqual(got, expect, "proxy answered %s wrongly" % path)

    def flows_json(self, env, session, filt=None, check=True):
        args = [REEL, "flows", session, "--json"] + ([filt] if filt else [])
        res = run(args, env=env, check=check)
        return json.loads(res.stdout) if res.returncode == 0 else None

    def flow_json(self, env, session, fid, check=True):
        res = run([REEL, "flow", session, str(fid), "--json"], env=env, check=check)
        return res

    def stop(self, r, sig=signal.SIGINT):
        """Stops reel; returns its exit code and everything it said."""
        code = r.stop(sig)
        with open(r.errlog.name) as f:
            return code, f.read()

    def assert_not_crashed(self, res, what):
        self.assertGreaterEqual(res.returncode, 0, "%s died of signal %d: %s" % (
            what, -res.returncode, res.stderr[-2000:]))
        self.assertNotIn(b"AddressSanitizer", res.stderr, what)
        self.assertNotIn(b"runtime error", res.stderr, what)

    # ---- disk full ----

    def test_disk_full_capture_stops_and_resumes(self):
        mnt = self.mount_tmpfs(16 << 20)
        home = os.path.join(mnt, "home")
        r = self.start("full", home=home)
        o = self.origin
        self.get(r, "/file1m?before", o.file1m)
        self.get(r, "/100b?before", b"x" * 99 + b"\n")
        before = r.wait_flows(2)
        self.assertEqual(len(before), 2)
        before_json = {f["id"]: r.flow(f["id"]) for f in before}
        self.assertEqual(body(before_json[before[0]["id"]], "response"), o.file1m)

        # A slow upload runs across the outage (the proxy reads a request
        # body as the client sends it; a response it would buffer at once).
        slow_out = os.path.join(self.dir, "slow.out")
        # 100 KB/s: about 10 s, longer than the outage takes even in the
        # sanitizer build on a busy machine (at 200 KB/s it once ended first)
        slow = subprocess.Popen(["curl", "-sS", "--max-time", "90", "-x", r.proxy, "--limit-rate",
                                 "100k", "-o", slow_out, "--data-binary",
                                 "@" + os.path.join(o.www, "file1m"), o.url("/echo?slow")])
        self.procs.append(slow)
        wait_for(lambda: r.flows("~u slow"), 10, "the slow flow to start", r)
        time.sleep(0.5)  # some of its body is recorded
        filler = self.fill(mnt)
        # Traffic is still answered; the spool cannot take it.
        for i in range(3):
            self.get(r, "/file1m?during%d" % i, o.file1m)
            self.get(r, "/100b?during%d" % i, b"x" * 99 + b"\n")
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        time.sleep(1.5)  # the writer retries every second: it must not repeat itself
        self.get(r, "/100b?during-late", b"x" * 99 + b"\n")
        log = r.log()
        self.assertEqual(log.count("capture stopped"), 1, log)
        self.assertIn("No space left on device", log)
        self.assertIn("traffic is still forwarded", log)
        self.assertNotIn("capture resumed", log)

        # What was recorded before is intact, and the session checks out.
        v = r.cli("verify", "full", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        for f in before:
            self.assertEqual(r.flow(f["id"]), before_json[f["id"]])
        self.assertEqual(len(r.flows("~u during")), 0, "flows of the outage should not be there")

        # Space comes back: capture resumes on its own, and says so once.
        os.unlink(filler)
        wait_for(lambda: "capture resumed" in r.log(), 10, "the capture-resumed message", r)
        self.assertIsNone(slow.poll(), "the slow upload ended before capture resumed")
        log = r.log()
        m = re.search(r"capture resumed after [0-9.]+ s: [1-9][0-9]* records were not "
                      r"recorded; ([0-9]+) flows that started meanwhile are not in the session, "
                      r"1 flows in progress are marked with an error", log)
        self.assertIsNotNone(m, log)
        # 3 + 3 + during-late; the writer looks at its queue at most every
        # 100 ms, so during-late's records may still be queued when space
        # is back, and are then recorded whole (nothing of it was dropped).
        late_recorded = int(m.group(1)) == 6
        self.assertIn(int(m.group(1)), (6, 7), log)
        self.assertEqual(slow.wait(90), 0)
        with open(slow_out, "rb") as f:
            self.assertEqual(f.read(), b"posted\n")
        sf = r.wait_flows(1, "~u slow")[0]
        self.assertEqual(sf["state"], "error")
        self.assertIn("capture was stopped while this flow was running", sf["error"])
        self.assertEqual(sf["request_body_size"], len(o.file1m))
        sf_json = r.flow(sf["id"])
        stored = body(sf_json, "request")
        self.assertTrue(0 < len(stored) < len(o.file1m), len(stored))
        self.assertEqual(stored, o.file1m[:len(stored)], "the stored part must be a clean prefix")
        # The wire had the whole body (its size says so), the spool has a
        # prefix: the flow is damaged, and says which bytes are missing.
        self.assertTrue(sf["damaged"], sf)
        why = "capture was stopped by a disk error while the flow ran"
        self.assertIn({"direction": "request", "offset": len(stored),
                       "length": len(o.file1m) - len(stored), "reason": why}, sf_json["damage"])
        # (one of each: the CaptureGap's rows, written as capture resumed,
        # gave way to those of the error record that ended the flow)
        self.assertEqual(sorted(d["direction"] for d in sf_json["damage"]), ["flow", "request"],
                         sf_json["damage"])
        self.assertEqual([f["id"] for f in r.flows("~damaged")], [sf["id"]])
        self.get(r, "/file1m?after", o.file1m)
        self.get(r, "/100b?after", b"x" * 99 + b"\n")
        after = r.wait_flows(2, "~u after")
        self.assertEqual([f["status"] for f in after], [200, 200])
        f1m = [f for f in after if "file1m" in f["url"]][0]
        self.assertEqual(body(r.flow(f1m["id"]), "response"), o.file1m)
        self.assertEqual(r.log().count("capture stopped"), 1)
        self.assertEqual(r.log().count("capture resumed"), 1)

        # The run ends with an error status (records were lost) but cleanly.
        code, log = self.stop(r)
        self.assertEqual(code, 1, log)
        self.assertIn("capture was stopped during this run", log)
        v = run([REEL, "verify", "full"], env=r.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn(("flow %d: known damage: request body bytes %d-%d missing (%s)" % (
            sf["id"], len(stored), len(o.file1m) - 1, why)).encode(), v.stdout)
        text = run([REEL, "flow", "full", str(sf["id"]), "--headers"], env=r.env).stdout
        self.assertIn(b"! damaged: request body bytes %d-" % len(stored), text)
        for f in before:
            self.assertEqual(json.loads(run([REEL, "flow", "full", str(f["id"]), "--json"],
                                            env=r.env).stdout), before_json[f["id"]])
        flows = self.flows_json(r.env, "full")
        late = [f for f in flows if "during-late" in f["url"]]
        self.assertEqual(len(late), 1 if late_recorded else 0, flows)
        self.assertTrue(all(f["state"] == "complete" for f in late), late)
        self.assertEqual(len(flows), 5 + len(late))
        # The damage is in the spool's record of the flow: a rebuilt index
        # has it too.
        run([REEL, "repair", "full"], env=r.env)
        self.assertEqual([f["id"] for f in self.flows_json(r.env, "full", "~damaged")], [sf["id"]])
        self.assertEqual(json.loads(run([REEL, "flow", "full", str(sf["id"]), "--json"],
                                        env=r.env).stdout)["damage"], sf_json["damage"])

    def test_outage_then_kill_leaves_the_flow_damaged(self):
        """A flow runs across a disk outage, capture resumes, and the process
        is killed (-9) before the flow ends: the flow, whose records after
        the first one lost were all left out, read as merely cut off by the
        end of the recording (interrupted, not damaged, the request body a
        clean-looking prefix). Its CaptureGap record says, as capture
        resumes, what it lost: after the kill it is interrupted and damaged,
        its error says both, and a repair finds the same in the spool."""
        mnt = self.mount_tmpfs(16 << 20)
        home = os.path.join(mnt, "home")
        r = self.start("gap", home=home)
        o = self.origin
        slow = subprocess.Popen(["curl", "-sS", "--max-time", "90", "-x", r.proxy, "--limit-rate",
                                 "50k", "-o", os.devnull, "--data-binary",
                                 "@" + os.path.join(o.www, "file1m"), o.url("/echo?slow")])
        self.procs.append(slow)
        wait_for(lambda: r.flows("~u slow"), 10, "the slow flow to start", r)
        time.sleep(0.5)  # some of its body is recorded
        filler = self.fill(mnt)
        self.get(r, "/file1m?during", o.file1m)  # a write that fails
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        time.sleep(1.5)  # records of the slow flow are dropped meanwhile
        os.unlink(filler)
        wait_for(lambda: "capture resumed" in r.log(), 10, "the capture-resumed message", r)
        self.assertIn("1 flows in progress are marked with an error", r.log())
        time.sleep(0.5)  # the CaptureGap's frame is written and indexed
        self.assertIsNone(slow.poll(), "the slow upload ended before the kill")
        r.proc.kill()
        r.proc.wait(10)
        sf = self.flows_json(r.env, "gap", "~u slow")[0]  # (recovery on open)
        self.assertEqual(sf["state"], "interrupted", sf)
        self.assertTrue(sf["damaged"], sf)
        self.assertRegex(sf["error"], r"^capture was stopped while this flow was running \(.*No "
                         r"space left on device.*\): [1-9][0-9]* of its records were not "
                         r"recorded, nor any after them; then the recording stopped before the "
                         r"flow ended$")
        detail = json.loads(self.flow_json(r.env, "gap", sf["id"]).stdout)
        stored = len(body(detail, "request"))
        holes = [d for d in detail["damage"] if d["direction"] == "request"]
        self.assertEqual(len(holes), 1, detail["damage"])
        self.assertEqual(holes[0]["offset"], stored, detail["damage"])
        self.assertGreater(holes[0]["length"], 0, detail["damage"])
        run([REEL, "repair", "gap"], env=r.env)
        again = self.flows_json(r.env, "gap", "~u slow")[0]
        self.assertEqual({k: again[k] for k in ("state", "damaged", "error")},
                         {k: sf[k] for k in ("state", "damaged", "error")})
        self.assertEqual(json.loads(self.flow_json(r.env, "gap", sf["id"]).stdout)["damage"],
                         detail["damage"])
        v = run([REEL, "verify", "gap"], env=r.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_resume_after_stop_with_full_disk(self):
        mnt = self.mount_tmpfs(12 << 20)
        home = os.path.join(mnt, "home")
        r = self.start("full2", home=home)
        o = self.origin
        self.get(r, "/file1m?first", o.file1m)
        first = r.wait_flows(1)
        first_json = r.flow(first[0]["id"])
        filler = self.fill(mnt)
        self.get(r, "/file1m?lost", o.file1m)
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        code, log = self.stop(r)
        self.assertEqual(code, 1, log)

        # Resuming on a disk that is still full: it must either refuse with
        # the reason or run with capture stopped, never crash or hang.
        r2 = None
        try:
            r2 = self.start("full2", home=home, resume=True)
        except RuntimeError as e:
            self.assertIn("No space left on device", str(e))
        if r2 is not None:
            self.get(r2, "/file1m?still-full", o.file1m)
            wait_for(lambda: "capture stopped" in r2.log(), 10, "capture stopped on resume", r2)
            self.assertIn("No space left on device", r2.log())
            code, log = self.stop(r2)
            self.assertEqual(code, 1, log)

        os.unlink(filler)
        r3 = self.start("full2", home=home, resume=True)
        self.get(r3, "/file1m?resumed", o.file1m)
        f = r3.wait_flows(1, "~u resumed")
        self.assertEqual(len(f), 1)
        self.assertEqual(body(r3.flow(f[0]["id"]), "response"), o.file1m)
        self.assertEqual(r3.flow(first[0]["id"]), first_json)
        code, log = self.stop(r3)
        self.assertEqual(code, 0, log)
        v = run([REEL, "verify", "full2"], env=r3.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_index_full_catches_up(self):
        """session.db's file system is full, the spool's is not: commits
        fail with SQLITE_FULL, the spool goes on, and the index catches up
        from the spool once there is room."""
        mnt = self.mount_tmpfs(8 << 20)
        home = os.path.join(mnt, "home")
        env = dict(os.environ, REEL_HOME=home, XDG_DATA_HOME=self.dir + "/data",
                   XDG_CONFIG_HOME=self.dir + "/config")
        run([REEL, "new", "ix"], env=env)
        spool = os.path.join(home, "ix", "spool")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % (32 << 20), "tmpfs",
                            spool], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.mounts.append(spool)
        r = self.start("ix", home=home, resume=True)
        o = self.origin
        self.get(r, "/100b?before", b"x" * 99 + b"\n")
        self.assertEqual(len(r.wait_flows(1)), 1)
        filler = self.fill(mnt)
        for i in range(4):
            self.get(r, "/file1m?during%d" % i, o.file1m)
        wait_for(lambda: "indexing paused" in r.log(), 10, "the indexing-paused warning", r)
        self.assertIn("database or disk is full", r.log())
        self.assertNotIn("capture stopped", r.log())
        time.sleep(1.5)
        self.assertEqual(r.log().count("indexing paused"), 1, r.log())
        os.unlink(filler)
        wait_for(lambda: "indexing resumed" in r.log(), 10, "the indexing-resumed message", r)
        during = r.wait_flows(4, "~u during")
        self.assertEqual(len(during), 4, during)
        for f in during:
            self.assertEqual(f["state"], "complete")
            self.assertEqual(body(r.flow(f["id"]), "response"), o.file1m)
        code, log = self.stop(r)
        self.assertEqual(code, 0, log)
        v = run([REEL, "verify", "ix"], env=env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_spool_full_user_data_names_the_cause(self):
        """The spool's file system is full, session.db's is not: a note or
        a config change cannot be journaled, and the commit is refused.
        The error must say why (no space writing journal.zst), once, not
        SQLite's "constraint failed" that the refused commit reads as."""
        _, _, env, spool = self.split_session("ud", 1 << 20, "/100b?note")
        run([REEL, "annotate", "ud", "1", "a note that fits"], env=env)
        self.fill(spool)
        # The journal's last page may still hold a change or two: the next
        # ones need a new page, which there is no room for.
        made = {}
        for what, args in (("annotate", ["annotate", "ud", "1", "a note " * 200]),
                           ("config", ["config", "ud", "set", "body_limit", "%dMiB"])):
            for i in range(200):
                made[what] = i
                a = [x % (i + 2) if "%d" in x else x for x in args]
                res = run([REEL] + a, env=env, check=False)
                self.assert_not_crashed(res, what)
                if res.returncode != 0:
                    break
            err = res.stderr.decode()
            self.assertEqual(res.returncode, 1, "%s never failed on a full spool" % what)
            self.assertIn("journal.zst: No space left on device", err, what)
            self.assertNotIn("constraint failed", err, what)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
        notes = json.loads(run([REEL, "annotate", "ud", "1", "--json"], env=env).stdout)
        self.assertEqual(len(notes), 1 + made["annotate"], "a refused note was kept")

    def test_index_full_user_data_not_made_is_not_made(self):
        """session.db's file system is full, the spool's is not: the
        journal took the change (it is written as the commit begins), then
        the index's commit failed and the command said the change was not
        made. The next open found it in the journal and applied it, and a
        retry made it twice."""
        mnt, _, env, _ = self.split_session("uf", 4 << 20, "/100b?full")
        filler = self.fill(mnt, leave=64 << 10)
        failed = 0
        for i in range(200):  # until the index's file system refuses one
            res = run([REEL, "annotate", "uf", "1", "note %d " % i + "x" * 3000], env=env,
                      check=False)
            self.assert_not_crashed(res, "annotate")
            if res.returncode != 0:
                self.assertIn("database or disk is full", res.stderr.decode())
                failed = i
                break
        self.assertTrue(failed, "no annotate failed on a full index")
        os.unlink(filler)
        notes = json.loads(run([REEL, "annotate", "uf", "1", "--json"], env=env).stdout)
        self.assertEqual([n["text"] for n in notes],
                         ["note %d " % k + "x" * 3000 for k in range(failed)])
        v = run([REEL, "verify", "uf"], env=env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    # ---- read-only file system, deleted session ----

    def mount_ext4(self, size):
        """A loop-mounted ext4 that turns read-only on errors. Returns
        (mount point, image, its ext4 sysfs directory)."""
        for tool in ("mkfs.ext4", "losetup", "e2fsck"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(tool + " is not installed")
        img = os.path.join(self.dir, "ext4.img")
        with open(img, "wb") as f:
            f.truncate(size)
        run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", img])
        mnt = tempfile.mkdtemp(prefix="ext4.", dir=self.dir)
        r = subprocess.run(["mount", "-o", "loop,errors=remount-ro", img, mnt], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise unittest.SkipTest("cannot loop-mount an ext4 image (needs root and loop "
                                    "devices): " + r.stderr.strip())
        self.mounts.append(mnt)
        dev = os.path.basename(subprocess.run(["findmnt", "-n", "-o", "SOURCE", mnt],
                                              capture_output=True, text=True).stdout.strip())
        sysfs = "/sys/fs/ext4/" + dev
        if not os.path.exists(sysfs + "/trigger_fs_error"):
            raise unittest.SkipTest("this kernel's ext4 has no trigger_fs_error to make a file "
                                    "system read-only under a running process")
        return mnt, img, sysfs

    def test_read_only_file_system(self):
        mnt, img, sysfs = self.mount_ext4(48 << 20)
        home = os.path.join(mnt, "home")
        r = self.start("ro", home=home)
        o = self.origin
        self.get(r, "/file1m?before", o.file1m)
        before = r.wait_flows(1)
        before_json = r.flow(before[0]["id"])
        with open(sysfs + "/trigger_fs_error", "w") as f:
            f.write("reel test: make the file system read-only\n")
        probe = os.path.join(mnt, "probe")
        self.assertRaises(OSError, open, probe, "w")  # it really is read-only now
        for i in range(3):
            self.get(r, "/file1m?during%d" % i, o.file1m)
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        time.sleep(1.5)
        self.get(r, "/100b?during-late", b"x" * 99 + b"\n")
        log = r.log()
        self.assertEqual(log.count("capture stopped"), 1, log)
        self.assertIn("Read-only file system", log)
        code, log = self.stop(r)
        self.assertEqual(code, 1, log)  # not a crash: a clean exit that says records were lost
        self.assertNotIn("capture resumed", log)

        # Writable again (after a file system check): the session reads,
        # the flows from before are intact, and recording goes on.
        run(["umount", mnt])
        self.mounts.remove(mnt)
        fsck = subprocess.run(["e2fsck", "-fy", img], capture_output=True)
        self.assertLess(fsck.returncode, 4, fsck.stdout + fsck.stderr)
        run(["mount", "-o", "loop,errors=remount-ro", img, mnt])
        self.mounts.append(mnt)
        v = run([REEL, "verify", "ro"], env=r.env, check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertEqual(json.loads(run([REEL, "flow", "ro", str(before[0]["id"]), "--json"],
                                        env=r.env).stdout), before_json)
        self.assertEqual(self.flows_json(r.env, "ro", "~u during"), [])
        r2 = self.start("ro", home=home, resume=True)
        self.get(r2, "/100b?after", b"x" * 99 + b"\n")
        self.assertEqual(len(r2.wait_flows(1, "~u after")), 1)
        code, log = self.stop(r2)
        self.assertEqual(code, 0, log)

    def test_session_deleted_under_the_proxy(self):
        home = os.path.join(self.dir, "home")
        r = self.start("gone", home=home)
        o = self.origin
        self.get(r, "/100b?before", b"x" * 99 + b"\n")
        r.wait_flows(1)
        shutil.rmtree(os.path.join(home, "gone"))
        for i in range(3):
            self.get(r, "/file1m?during%d" % i, o.file1m)
        wait_for(lambda: "capture stopped" in r.log(), 10, "the capture-stopped warning", r)
        time.sleep(1.5)
        self.get(r, "/100b?late", b"x" * 99 + b"\n")
        log = r.log()
        self.assertEqual(log.count("capture stopped"), 1, log)
        self.assertIn("was deleted", log)
        self.assertNotIn("indexing paused", log)
        self.assertFalse(os.path.exists(os.path.join(home, "gone")), "reel re-created the session")
        # The CLI says the session is gone, while the proxy runs and after.
        res = run([REEL, "flows", "gone"], env=r.env, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn(b"no session 'gone'", res.stderr)
        code, log = self.stop(r)
        self.assertEqual(code, 1, log)
        # The "during" flows started while capture still ran for some of
        # them: what the summary says holds for both kinds.
        self.assertRegex(log, r"more not recorded \(capture had stopped before their records "
                              r"reached the disk\)")
        self.assertNotIn("capture resumed", log)
        res = run([REEL, "ls"], env=r.env, check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertNotIn(b"gone", res.stdout)
        res = run([REEL, "verify", "gone"], env=r.env, check=False)
        self.assertEqual(res.returncode, 1)
        self.assertIn(b"no session 'gone'", res.stderr)
        # The name can be used again.
        r2 = self.start("gone", home=home)
        self.get(r2, "/100b?again", b"x" * 99 + b"\n")
        self.assertEqual([f["id"] for f in r2.wait_flows(1)], [1])
        self.assertEqual(self.stop(r2)[0], 0)

    # ---- damaged files at rest ----

    def make_session(self, home, name, *sets, n1m=2):
        """Records a few flows (n1m of 1 MiB, some small ones) and stops.
        Returns {flow id: flow JSON}."""
        r = self.start(name, *sets, home=home)
        o = self.origin
        for i in range(n1m):
            self.get(r, "/file1m?n=%d" % i, o.file1m)
            self.get(r, "/100b?n=%d" % i, b"x" * 99 + b"\n")
        flows = r.wait_flows(2 * n1m)
        self.assertEqual(len(flows), 2 * n1m)
        r.cli("annotate", name, str(flows[0]["id"]), "first note")
        r.cli("tag", name, str(flows[1]["id"]), "keep")
        saved = {f["id"]: r.flow(f["id"]) for f in flows}
        self.assertEqual(self.stop(r)[0], 0)
        return r.env, saved

    def test_damaged_session_db(self):
        home = os.path.join(self.dir, "home")
        env, saved = self.make_session(home, "base")
        src = os.path.join(home, "base")
        db = sqlite3.connect("file:%s/session.db?mode=ro" % src, uri=True)
        flows_root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'flows'").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        db.close()

        def garbage(p):
            size = os.path.getsize(p)
            with open(p, "wb") as f:
                f.write(os.urandom(size))

        def truncated(p):
            os.truncate(p, os.path.getsize(p) // 2)

        def zero(p):
            os.truncate(p, 0)

        def flows_page(p):
            with open(p, "r+b") as f:
                f.seek((flows_root - 1) * page)
                f.write(os.urandom(page))

        cases = [("garbage", garbage, False), ("truncated", truncated, False),
                 ("zero-length", zero, False), ("flows-page", flows_page, True)]
        for name, damage, keeps_user_data in cases:
            with self.subTest(name):
                dst = os.path.join(home, name)
                shutil.copytree(src, dst)
                damage(os.path.join(dst, "session.db"))
                for args in (["ls"], ["show", name], ["flows", name], ["verify", name],
                             ["flow", name, "1"]):
                    res = run([REEL] + args, env=env, check=False)
                    self.assert_not_crashed(res, " ".join(args))
                    if keeps_user_data and args[0] in ("ls", "show"):
                        # They read counts from indexes and the meta table,
                        # not the damaged page: they may not notice.
                        continue
                    self.assertEqual(res.returncode, 1, "%s: %s %s" % (args, res.stdout, res.stderr))
                    out = res.stdout + res.stderr
                    self.assertIn(b"session.db", out, args)
                    self.assertRegex(out, rb"damaged|empty", args)
                    self.assertIn(b"reel repair " + name.encode(), out, args)
                res = run([REEL, "repair", name], env=env, check=False)
                self.assert_not_crashed(res, "repair")
                self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
                report = res.stdout.decode()
                self.assertIn("recovered/session.db.", report)
                if keeps_user_data:
                    self.assertIn("user data kept: 1 annotation, 1 tag", report)
                else:
                    self.assertRegex(report, "could be read|no user data")
                # What the old file lost, the journal of user data gives back.
                self.assertIn("user data replayed from spool/journal.zst", report)
                self.assertTrue(any(f.endswith(".damaged") for f in os.listdir(dst + "/recovered")))
                got = self.flows_json(env, name)
                self.assertEqual(sorted(f["id"] for f in got), sorted(saved))
                for fid, want in saved.items():
                    have = json.loads(run([REEL, "flow", name, str(fid), "--json"], env=env).stdout)
                    self.assertEqual(have, want, "flow %d after repair" % fid)
                notes = run([REEL, "annotate", name, "1"], env=env).stdout
                self.assertIn(b"first note", notes)
                v = run([REEL, "verify", name], env=env, check=False)
                self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
                self.assertEqual(run([REEL, "ls"], env=env, check=False).returncode, 0)

    def test_index_without_tables_is_rebuilt(self):
        """An index whose writes never reached the disk (WAL commits are
        not synced; a power cut soon after creation) is an SQLite file
        without tables: the next open rebuilds it from the spool and says
        so, where a zero-length file is refused as damage."""
        home = os.path.join(self.dir, "home")
        env, saved = self.make_session(home, "lost", n1m=1)
        dbp = os.path.join(home, "lost", "session.db")
        for sfx in ("", "-wal", "-shm"):
            if os.path.exists(dbp + sfx):
                os.unlink(dbp + sfx)
        db = sqlite3.connect(dbp)
        db.execute("PRAGMA journal_mode=WAL")
        db.close()
        self.assertGreater(os.path.getsize(dbp), 0)
        res = run([REEL, "flows", "lost", "--json"], env=env, check=False)
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(b"session.db held no index", res.stderr)
        self.assertEqual(sorted(f["id"] for f in json.loads(res.stdout)), sorted(saved))
        for fid, want in saved.items():
            self.assertEqual(json.loads(run([REEL, "flow", "lost", str(fid), "--json"],
                                            env=env).stdout), want)
        res = run([REEL, "verify", "lost"], env=env, check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertNotIn(b"held no index", res.stderr)  # said once, then it is an index again

    def test_missing_segment(self):
        home = os.path.join(self.dir, "home")
        env, saved = self.make_session(home, "seg", "segment_size=1048576", n1m=6)
        spool = os.path.join(home, "seg", "spool")
        segs = sorted(os.listdir(spool))
        self.assertGreaterEqual(len(segs), 5, segs)
        gone = segs[len(segs) // 2]
        gone_n = int(gone.split(".")[0])
        db = sqlite3.connect("file:%s/seg/session.db?mode=ro" % home, uri=True)
        segs_of = {}
        for fid, seg in db.execute("SELECT flow_id, segment FROM flow_frames"):
            segs_of.setdefault(fid, set()).add(seg)
        db.close()
        hit = {f for f, s in segs_of.items() if gone_n in s}
        only = {f for f, s in segs_of.items() if s == {gone_n}}
        self.assertTrue(hit - only, "no flow has records in %s and elsewhere: %s" % (gone, segs_of))
        os.unlink(os.path.join(spool, gone))

        res = run([REEL, "verify", "seg"], env=env, check=False)
        self.assert_not_crashed(res, "verify")
        self.assertEqual(res.returncode, 1)
        self.assertIn(("segment %s is missing" % gone).encode(), res.stdout + res.stderr)
        for fid in saved:
            res = run([REEL, "flow", "seg", str(fid), "--json"], env=env, check=False)
            self.assert_not_crashed(res, "flow")
            if fid in hit:
                self.assertEqual(res.returncode, 1)
                self.assertIn(gone.encode() + b", which is missing", res.stderr)
            else:
                self.assertEqual(res.returncode, 0, res.stderr)
                self.assertEqual(json.loads(res.stdout), saved[fid])
        res = run([REEL, "flows", "seg"], env=env, check=False)
        self.assertEqual(res.returncode, 0)
        self.assertIn(b"spool segment " + gone.encode() + b" is missing", res.stderr)

        res = run([REEL, "repair", "seg"], env=env, check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn(gone.encode(), res.stdout)
        res = run([REEL, "verify", "seg"], env=env, check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn(("segment %s: known missing" % gone).encode(), res.stdout)
        after = {f["id"]: f for f in self.flows_json(env, "seg")}
        self.assertEqual(set(after), set(saved) - only)
        for fid in saved:
            if fid in only:
                continue
            if fid in hit:
                self.assertEqual(after[fid]["state"], "error")
                self.assertIn("records lost: spool segment %s is missing" % gone, after[fid]["error"])
            else:
                self.assertEqual(after[fid]["state"], "complete")
                have = json.loads(run([REEL, "flow", "seg", str(fid), "--json"], env=env).stdout)
                self.assertEqual(have, saved[fid])
        # A second repair keeps all that; new flows get new ids.
        self.assertEqual(run([REEL, "repair", "seg"], env=env, check=False).returncode, 0)
        again = {f["id"]: f for f in self.flows_json(env, "seg")}
        self.assertEqual({k: (v["state"], v["error"]) for k, v in again.items()},
                         {k: (v["state"], v["error"]) for k, v in after.items()})
        r = self.start("seg", home=home, resume=True)
        self.get(r, "/100b?new", b"x" * 99 + b"\n")
        new = r.wait_flows(1, "~u new")
        self.assertEqual([f["id"] for f in new], [max(saved) + 1])
        self.assertEqual(self.stop(r)[0], 0)
        res = run([REEL, "verify", "seg"], env=env, check=False)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


if __name__ == "__main__":
    main()
