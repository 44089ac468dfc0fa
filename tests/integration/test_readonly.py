#!/usr/bin/python3
"""Read-only and foreign sessions (issue 13), with the real binary.

Every read command (ls, show, flows, flow, verify) works on a session the
user cannot write, and never creates or changes a file in it:

- a copy with no write bits, read as the unprivileged user `nobody`;
- the same with an index that has not seen the spool's last frame: recovery
  is skipped, and the note says what it would have done (as root, on a
  writable copy, recovery does it);
- a session.db-wal holding changes, read through its -shm file; without
  the -shm file, the note says the changes are not shown;
- an index of an older schema (3), upgraded in memory only;
- a read-only bind mount, read as root;
- a session another user's recorder is writing, read while it records;
- a copy from "another machine" (other path, owned by nobody) opens as it
  is, as root and as nobody.

A write command on such a session fails with a message naming the fix.
Needs root (setpriv, chown, mount); skipped otherwise.
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

from proxyenv import REEL, Origin, Reel, curl, main

HERE = os.path.dirname(os.path.abspath(__file__))
HAR = os.path.join(HERE, "..", "data", "har", "chromium.har")
SCHEMA = os.path.join(HERE, "..", "..", "schema")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def snapshot(path):
    """Every file and directory under path with its size, mtime and mode."""
    out = {}
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid)
    return out


def chmod_ro(path):
    subprocess.run(["chmod", "-R", "a+rX,a-w", path], check=True)


@unittest.skipUnless(os.geteuid() == 0, "needs root to run commands as another user")
class ReadOnly(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Not under TMPBASE: the build's test-tmp may be 0700 (whichever test
        # makes it first decides), and nobody must be able to get in.
        cls.root = tempfile.mkdtemp(prefix="reel-ro-", dir=tempfile.gettempdir())
        os.chmod(cls.root, 0o755)
        # The base session: 7 imported flows, one annotated and tagged.
        cls.base = os.path.join(cls.root, "base")
        cls.reel("root", cls.base, "import", "--into", "s", HAR)
        cls.reel("root", cls.base, "annotate", "s", "1", "hello from the other machine")
        cls.reel("root", cls.base, "tag", "s", "1", "seen")

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["chmod", "-R", "u+w", cls.root])
        shutil.rmtree(cls.root, ignore_errors=True)

    @staticmethod
    def reel(who, home, *args, check=True):
        cmd = ([] if who == "root" else NOBODY) + [REEL, "--home", home] + list(args)
        env = dict(os.environ, HOME="/nonexistent", XDG_DATA_HOME="/nonexistent")
        r = subprocess.run(cmd, capture_output=True, timeout=60, env=env)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d: %s %s" % (args, r.returncode, r.stdout[-2000:],
                                                          r.stderr[-2000:]))
        return r

    def copy(self, name):
        home = os.path.join(self.root, name)
        shutil.copytree(os.path.join(self.base, "s"), os.path.join(home, "s"))
        return home

    def read_all(self, who, home, nflows=7):
        """Runs every read command; returns show --json and the stderr of flows."""
        ls = json.loads(self.reel(who, home, "ls", "--json").stdout)
        self.assertEqual([(x["session"], x["flows"]) for x in ls], [("s", nflows)])
        show = json.loads(self.reel(who, home, "show", "s", "--json").stdout)
        self.assertEqual(show["flows"], nflows)
        r = self.reel(who, home, "flows", "s", "--json")
        self.assertEqual(len(json.loads(r.stdout)), nflows)
        self.assertEqual(len(json.loads(self.reel(who, home, "flows", "s", "--json", "~tag seen").stdout)), 1)
        f = json.loads(self.reel(who, home, "flow", "s", "1", "--json").stdout)
        self.assertEqual(f["id"], 1)
        # its gzip body: 127 bytes on the wire (the HAR's bodySize), stored decoded
        self.assertEqual(f["response"]["body_size"], 127)
        # the notes of a flow, the config overlay and its history only read
        notes = self.reel(who, home, "annotate", "s", "1").stdout
        self.assertIn(b"hello from the other machine", notes)
        self.reel(who, home, "config", "s", "list")
        self.reel(who, home, "config", "s", "history")
        return show, r.stderr.decode()

    def test_unwritable_copy_as_nobody(self):
        home = self.copy("plain")
        chmod_ro(home)
        before = snapshot(home)
        show, err = self.read_all("nobody", home)
        self.assertIsNotNone(show["read_only"])
        self.assertIn("Permission denied", show["read_only"])
        self.assertNotIn("recovery skipped", err)
        v = self.reel("nobody", home, "verify", "s")
        self.assertIn(b"full-text indexes not checked", v.stdout)
        self.assertIn(b"is consistent", v.stdout)
        # A write command says what is wrong and what to do.
        w = self.reel("nobody", home, "annotate", "s", "1", "x", check=False)
        self.assertNotEqual(w.returncode, 0)
        self.assertIn(b"cannot be written by this user", w.stderr)
        self.assertIn(b"copy it to a writable directory", w.stderr)
        self.assertEqual(snapshot(home), before)

    def test_half_rebuilt_copy_is_damaged_not_busy(self):
        """A read-only copy of a session whose rebuild stopped half way
        (meta `rebuilding` set, no process at it) cannot be finished by
        this user: `reel ls` lists it as damaged and exits 1 (a rebuild a
        live process is at is 'busy', exit 0: test_repair_interrupted)."""
        home = self.copy("halfrebuilt")
        db = sqlite3.connect(os.path.join(home, "s", "session.db"))
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('rebuilding', '999999')")
        db.commit()
        db.close()
        chmod_ro(home)
        ls = self.reel("nobody", home, "ls", "--json", check=False)
        self.assertEqual(ls.returncode, 1, ls.stderr)
        entry = json.loads(ls.stdout)[0]
        self.assertTrue(entry["damaged"], entry)
        self.assertFalse(entry["busy"], entry)
        self.assertIn("left half rebuilt", entry["error"])
        show = self.reel("nobody", home, "show", "s", check=False)
        self.assertEqual(show.returncode, 1)
        self.assertIn(b"'reel repair s' by a user who can write the session", show.stderr)

    def test_rm_of_a_session_whose_files_are_read_only(self):
        """Removing needs the session's directory writable, not its files:
        nobody's own session with a session.db at 0400 is removed. rm used
        to refuse, saying to copy the session elsewhere first."""
        home = self.copy("rm")
        subprocess.run(["chown", "-R", "nobody:nogroup", home], check=True)
        os.chmod(os.path.join(home, "s", "session.db"), 0o400)
        w = self.reel("nobody", home, "annotate", "s", "1", "x", check=False)
        self.assertIn(b"cannot be written by this user", w.stderr)
        self.reel("nobody", home, "rm", "--yes", "s")
        self.assertEqual(os.listdir(home), [])
        # a directory this user cannot write still refuses, naming why
        home = self.copy("rm2")
        chmod_ro(home)
        r = self.reel("nobody", home, "rm", "--yes", "s", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"Permission denied", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(home, "s", "session.db")))
        # and so does a spool/ it cannot empty, before it removes anything
        # (session.db and lock went, the segments stayed under a hidden name
        # that nothing lists)
        home = self.copy("rm3")
        subprocess.run(["chown", "-R", "nobody:nogroup", home], check=True)
        spool = os.path.join(home, "s", "spool")
        os.chmod(spool, 0o500)
        before = snapshot(home)
        try:
            r = self.reel("nobody", home, "rm", "--yes", "s", check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(("session 's' cannot be removed by this user: %s is not writable "
                           "(Permission denied), and nothing was removed" % spool).encode(),
                          r.stderr)
            self.assertEqual(snapshot(home), before)
        finally:
            os.chmod(spool, 0o700)

    def test_recovery_skipped_with_note(self):
        home = os.path.join(self.root, "stale")
        self.reel("root", home, "import", "--into", "s", HAR)
        old = os.path.join(self.root, "stale-db")
        shutil.copy(os.path.join(home, "s", "session.db"), old)
        self.reel("root", home, "import", "--into", "s", HAR)
        # The index from before the second import: the spool has a frame
        # it has not seen, as after a crash.
        shutil.copy(old, os.path.join(home, "s", "session.db"))
        for p in ("-wal", "-shm"):
            self.assertFalse(os.path.exists(os.path.join(home, "s", "session.db" + p)))
        chmod_ro(home)
        before = snapshot(home)
        r = self.reel("nobody", home, "flows", "s", "--json")
        self.assertEqual(len(json.loads(r.stdout)), 7)
        self.assertIn(b"recovery skipped (the session is read-only for this user); it would index "
                      b"the last", r.stderr)
        self.assertEqual(snapshot(home), before)
        # Writable again (root), opening recovers the frame.
        subprocess.run(["chmod", "-R", "u+w", home], check=True)
        r = self.reel("root", home, "flows", "s", "--json")
        self.assertEqual(len(json.loads(r.stdout)), 14)
        self.assertIn(b"indexed 1 frame", r.stderr)

    def wal_copy(self, name):
        """A copy whose session.db-wal holds a change session.db has not:
        created_us set to 123456789 by a process that died before closing."""
        home = self.copy(name)
        db = os.path.join(home, "s", "session.db")
        code = ("import os, sqlite3\n"
                "c = sqlite3.connect(%r)\n"
                "c.execute('PRAGMA wal_autocheckpoint=0')\n"
                "c.execute(\"UPDATE meta SET value = '123456789' WHERE key = 'created_us'\")\n"
                "c.commit()\n"
                "os._exit(0)\n" % db)
        subprocess.run(["/usr/bin/python3", "-c", code], check=True)
        self.assertGreater(os.path.getsize(db + "-wal"), 0)
        return home

    def test_wal_read_through_shm(self):
        home = self.wal_copy("wal")
        chmod_ro(home)
        before = snapshot(home)
        show, _ = self.read_all("nobody", home)
        self.assertEqual(show["created_us"], 123456789)
        self.assertEqual(snapshot(home), before)

    def test_wal_without_shm_is_said(self):
        home = self.wal_copy("walnoshm")
        os.unlink(os.path.join(home, "s", "session.db-shm"))
        chmod_ro(home)
        before = snapshot(home)
        r = self.reel("nobody", home, "show", "s", "--json")
        self.assertNotEqual(json.loads(r.stdout)["created_us"], 123456789)
        self.assertIn(b"changes in", r.stderr)
        self.assertIn(b"they are not shown", r.stderr)
        self.read_all("nobody", home)
        self.assertEqual(snapshot(home), before)

    def test_older_schema_upgraded_in_memory(self):
        home = self.copy("old")
        db = os.path.join(home, "s", "session.db")
        # The index as schema 3 had it (migrations 1-3), with the rows of
        # the current one.
        os.rename(db, db + ".new")
        c = sqlite3.connect(db)
        for f in sorted(glob.glob(os.path.join(SCHEMA, "00[123]_*.sql"))):
            with open(f) as fh:
                c.executescript(fh.read())
        c.execute("PRAGMA user_version = 3")
        c.execute("ATTACH ? AS b", (db + ".new",))
        virtual = [r[0] for r in c.execute(
            "SELECT name FROM main.sqlite_master WHERE sql LIKE 'CREATE VIRTUAL%'")]
        for (t,) in c.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'").fetchall():
            if any(t == v or t.startswith(v + "_") for v in virtual):
                continue
            have = {r[1] for r in c.execute("PRAGMA b.table_info(%s)" % t)}
            cols = ", ".join(r[1] for r in c.execute("PRAGMA main.table_info(%s)" % t) if r[1] in have)
            c.execute("INSERT OR REPLACE INTO main.%s(%s) SELECT %s FROM b.%s" % (t, cols, cols, t))
        for v in virtual:
            c.execute("INSERT INTO %s(%s) VALUES('rebuild')" % (v, v))
        c.commit()
        c.execute("DETACH b")
        c.close()
        os.unlink(db + ".new")
        self.assertEqual(sqlite3.connect(db).execute("SELECT count(*) FROM flows").fetchone()[0], 7)
        chmod_ro(home)
        before = snapshot(home)
        r = self.reel("nobody", home, "flows", "s", "--json")
        self.assertEqual(len(json.loads(r.stdout)), 7)
        self.assertIn(b"schema version 3 (an older reel): upgraded in memory", r.stderr)
        self.read_all("nobody", home)
        self.assertEqual(self.reel("nobody", home, "verify", "s").returncode, 0)
        self.assertEqual(snapshot(home), before)
        c = sqlite3.connect("file:%s?immutable=1" % db, uri=True)
        self.assertEqual(c.execute("PRAGMA user_version").fetchone()[0], 3)
        c.close()

    def test_readonly_mount_as_root(self):
        src = self.copy("mountsrc")
        home = os.path.join(self.root, "mnt")
        os.mkdir(home)
        if subprocess.run(["mount", "--bind", src, home]).returncode != 0:
            self.skipTest("cannot bind-mount here")
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", home], check=True)
            before = snapshot(home)
            show, _ = self.read_all("root", home)
            self.assertIn("Read-only file system", show["read_only"])
            self.assertEqual(self.reel("root", home, "verify", "s").returncode, 0)
            w = self.reel("root", home, "tag", "s", "1", "x", check=False)
            self.assertNotEqual(w.returncode, 0)
            self.assertIn(b"Read-only file system", w.stderr)
            self.assertEqual(snapshot(home), before)
        finally:
            subprocess.run(["umount", home])

    def test_foreign_copy_opens_as_it_is(self):
        home = os.path.join(self.root, "elsewhere", "deeper")
        os.makedirs(home)
        subprocess.run(["cp", "-a", os.path.join(self.base, "s"), os.path.join(home, "s")],
                       check=True)
        subprocess.run(["chown", "-R", "nobody:nogroup", os.path.join(self.root, "elsewhere")],
                       check=True)
        # Copied without its lock file: root's opening makes one.
        os.unlink(os.path.join(home, "s", "lock"))
        show, _ = self.read_all("root", home)
        self.assertIsNone(show["read_only"])
        # Root left nothing of its own behind for the owner to trip on.
        nobody = os.lstat(home).st_uid
        self.assertNotEqual(nobody, 0)
        self.assertTrue(os.path.exists(os.path.join(home, "s", "lock")))
        for rel, st in snapshot(os.path.join(home, "s")).items():
            self.assertEqual(st[3], nobody, rel)
        show, _ = self.read_all("nobody", home)
        self.assertIsNone(show["read_only"])
        self.reel("nobody", home, "annotate", "s", "2", "mine now")

    def test_root_writes_leave_the_owner_in(self):
        """Root changing a session a service user owns (docs/packaging.md
        has the admin run `reel config` as root): every file and directory
        it makes there is the owner's, so the owner's next config change,
        and its recovery of a torn tail, are not refused."""
        home = os.path.join(self.root, "owned")
        os.makedirs(home)
        subprocess.run(["cp", "-a", os.path.join(self.base, "s"), os.path.join(home, "s")],
                       check=True)
        sdir = os.path.join(home, "s")
        os.unlink(os.path.join(sdir, "spool", "journal.zst"))  # root's change makes it
        subprocess.run(["chown", "-R", "nobody:nogroup", home], check=True)
        nobody = os.lstat(home).st_uid

        def tear():
            seg = sorted(glob.glob(os.path.join(sdir, "spool", "0*.zst")))[-1]
            with open(seg, "ab") as f:  # a torn frame: moved aside to recovered/
                f.write(b"\x28\xb5\x2f\xfd" + b"\x00" * 40)

        def owned(what):
            for rel, st in snapshot(sdir).items():
                self.assertEqual(st[3], nobody, "%s left %s root's" % (what, rel))

        self.reel("root", home, "config", "s", "set", "body_limit", "2MiB")
        self.assertTrue(os.path.exists(os.path.join(sdir, "spool", "journal.zst")))
        owned("config set")
        tear()
        self.reel("root", home, "repair", "s")
        self.assertTrue(os.listdir(os.path.join(sdir, "recovered")))
        owned("repair")
        self.reel("root", home, "compact", "s")
        owned("compact")
        self.reel("nobody", home, "config", "s", "set", "body_limit", "3MiB")
        tear()
        r = self.reel("nobody", home, "flows", "s", "--json")
        self.assertIn(b"aside", r.stderr)
        self.assertEqual(len(json.loads(r.stdout)), 7)
        self.reel("nobody", home, "annotate", "s", "2", "mine still")
        self.reel("nobody", home, "verify", "s")

    def test_root_recording_killed_leaves_the_owner_in(self):
        """Root recording into a session a service user owns, killed
        (kill -9) before it could give back what it made: the spool
        segments it had begun were root's, 0600, and the owner's next
        command could not read them. Each is the owner's from the start."""
        origin = Origin(os.path.join(self.root, "origin-killed"))
        home = os.path.join(self.root, "killed")
        reel = None
        try:
            self.reel("root", home, "new", "s")
            subprocess.run(["chown", "-R", "nobody:nogroup", home], check=True)
            nobody = os.lstat(home).st_uid
            reel = Reel(self.root, "s", "segment_size=1MiB", resume=True, home=home)
            for i in range(3):  # a segment rolled over or two
                curl(reel, "-o", "/dev/null", origin.url("/file1m?%d" % i))
            # the owner watches the flows end (no command as root meanwhile:
            # its open gives back what it finds root's, and hid this)
            deadline = time.time() + 30
            while time.time() < deadline:
                r = self.reel("nobody", home, "flows", "s", "--json", check=False)
                if r.returncode == 0 and [f["state"] for f in json.loads(r.stdout)] == \
                        ["complete"] * 3:
                    break
                time.sleep(0.2)
            segs = glob.glob(os.path.join(home, "s", "spool", "0*.zst"))
            self.assertGreaterEqual(len(segs), 3)
            reel.proc.kill()
            reel.proc.wait(30)
            for seg in segs:
                self.assertEqual(os.stat(seg).st_uid, nobody, seg)
            r = self.reel("nobody", home, "flows", "s", "--json")
            self.assertEqual(len(json.loads(r.stdout)), 3)
            self.reel("nobody", home, "flow", "s", "3", "--headers-only")
        finally:
            if reel and reel.proc.poll() is None:
                reel.stop()
            if reel:
                reel.errlog.close()
            origin.stop()

    def test_read_while_another_user_records(self):
        origin = Origin(os.path.join(self.root, "origin"))
        home = os.path.join(self.root, "live")
        reel = None
        try:
            self.reel("root", home, "new", "s")
            # Given read access: the directory and files readable by all,
            # which the -wal and -shm files take from session.db.
            subprocess.run(["chmod", "-R", "a+rX", home], check=True)
            reel = Reel(self.root, "s", resume=True, home=home)
            curl(reel, "-o", "/dev/null", origin.url("/100b"))
            reel.wait_flows(1)
            before = {k for k, v in snapshot(home).items() if v[3] != 0}
            r = self.reel("nobody", home, "flows", "s", "--json")
            self.assertEqual(len(json.loads(r.stdout)), 1)
            self.assertNotIn(b"recovery skipped", r.stderr)
            show = json.loads(self.reel("nobody", home, "show", "s", "--json").stdout)
            self.assertEqual(show["recording_pid"], reel.proc.pid)
            self.assertIsNotNone(show["read_only"])
            self.assertEqual({k for k, v in snapshot(home).items() if v[3] != 0}, before)
        finally:
            if reel:
                self.assertEqual(reel.stop(), 0)
            origin.stop()


if __name__ == "__main__":
    main()
