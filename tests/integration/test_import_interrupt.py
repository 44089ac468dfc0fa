#!/usr/bin/python3
"""An interrupted `reel import` leaves nothing behind (docs/export.md, "All
or nothing").

A real `reel import` of a generated HAR big enough to take a moment is
stopped while it records: SIGINT and SIGTERM (it undoes what it recorded
and dies of the signal) and SIGKILL (the next open of the session undoes
it). Each time the signal goes once the import has written some of the
file's flows to the spool; then the session must have none of them, the flows it
had before must be exactly as they were (heads, bodies, annotations, tags,
marks), `reel verify` must pass, and importing the file again must give
exactly one copy of every entry; a mitmproxy file too, whose comments and
marks come after its flows. An import killed at its last moment (all
recorded and indexed, its rollback point not yet removed) is made by hand;
and one that fills the disk (a small tmpfs, when this may mount one) is
undone as well.
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
import uuid

from proxyenv import REEL, TMPBASE, main, run

ENTRY_BODY = 4000  # bytes of text per response


def entry(i, body, host="big.test"):
    return {"startedDateTime": "2026-01-02T03:04:05.000Z", "time": 1,
            "request": {"method": "GET", "url": "http://%s/item/%d" % (host, i),
                        "httpVersion": "HTTP/1.1", "headers": [{"name": "Host", "value": host}],
                        "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [{"name": "Content-Type", "value": "text/plain"}],
                         "cookies": [],
                         "content": {"size": len(body), "mimeType": "text/plain", "text": body},
                         "redirectURL": "", "headersSize": -1, "bodySize": len(body)},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}


def write_har(path, entries):
    with open(path, "w") as f:
        json.dump({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"},
                           "entries": entries}}, f)


class ImportInterrupted(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-import-int-", dir=TMPBASE)
        cls.home = os.path.join(cls.root, "home")
        cls.env = dict(os.environ, REEL_HOME=cls.home, XDG_DATA_HOME=cls.root + "/data",
                       XDG_CONFIG_HOME=cls.root + "/config")
        cls.small = os.path.join(cls.root, "small.har")
        write_har(cls.small, [entry(i, "small body %d\n" % i, "small.test") for i in range(3)])
        cls.big = os.path.join(cls.root, "big.har")
        cls.make_big(12000)

    @classmethod
    def make_big(cls, n):
        """A HAR of n entries with 4 KB text bodies that compress poorly."""
        import random
        rnd = random.Random(7)
        pool = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 \n")
                       for _ in range(ENTRY_BODY * 4))
        write_har(cls.big, [entry(i, pool[(i * 7919) % (ENTRY_BODY * 3):][:ENTRY_BODY])
                            for i in range(n)])
        cls.n = n

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def cli(self, *args, check=True):
        return run([REEL] + list(args), env=self.env, check=check, timeout=120)

    def spool_bytes(self, session):
        spool = os.path.join(self.home, session, "spool")
        try:
            return sum(os.path.getsize(os.path.join(spool, f)) for f in os.listdir(spool)
                       if f != "journal.zst")
        except OSError:
            return 0

    def interrupt(self, session, sig, existing=False, grow=None):
        """Starts `reel import` of the big file into session (made first
        with 3 flows and user data if existing) and sends sig once it has
        written some of its flows to the spool; grow() (default: a HAR of
        twice the entries) makes the file bigger when the import was done
        before the signal. Returns (exit code, stderr, the flows the
        session had before, as full() gives them)."""
        for attempt in range(4):
            if existing:
                before = self.existing(session)
            elif os.path.exists(os.path.join(self.home, session)):
                before = self.full(session)  # as an earlier step left it
            else:
                before = {}
            base = self.spool_bytes(session)
            p = subprocess.Popen([REEL, "import", self.big, "--into", session], env=self.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                deadline = time.time() + 60
                sent = False
                while p.poll() is None and time.time() < deadline:
                    if self.spool_bytes(session) > base + 65536:
                        p.send_signal(sig)
                        sent = True
                        break
                    time.sleep(0.002)
                out, err = p.communicate(timeout=60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            marker = os.path.exists(os.path.join(self.home, session, "import"))
            whole = b"imported %d flows" % self.n in out or (sent and sig == signal.SIGKILL
                                                              and not marker)
            if sent and not whole:
                return p.returncode, err.decode(), before
            # The import was whole before the signal came (a fast machine):
            # all of it must be there, once. Then again, with a bigger file.
            self.assertIn(p.returncode, (0, -sig), err)
            self.assertEqual(len(self.flows(session)), len(before) + self.n)
            self.assertIn(b"is consistent", self.cli("verify", session).stdout)
            self.cli("rm", "--yes", session)
            if grow:
                grow()
            else:
                type(self).make_big(self.n * 2)
        self.fail("the import always ended before it could be interrupted")

    def flows(self, session):
        return json.loads(self.cli("flows", session, "--json").stdout)

    def full(self, session):
        """Every flow of session as `reel flow --json` gives it, with its
        annotations, tags and marks."""
        out = {}
        for f in self.flows(session):
            out[f["id"]] = (json.loads(self.cli("flow", session, str(f["id"]), "--json").stdout),
                            f)
        return out

    def existing(self, session):
        """A session with 3 flows and user data on them; their record."""
        self.cli("import", self.small, "--into", session)
        self.cli("annotate", session, "1", "kept through an import")
        self.cli("tag", session, "2", "keep")
        self.cli("mark", session, "3")
        return self.full(session)

    def check_reimport(self, session, before_ids):
        r = self.cli("import", self.big, "--into", session)
        self.assertIn(b"imported %d flows" % self.n, r.stdout)
        urls = [f["url"] for f in self.flows(session) if f["id"] not in before_ids]
        self.assertEqual(len(urls), self.n)
        self.assertEqual(sorted(urls), sorted("http://big.test/item/%d" % i
                                              for i in range(self.n)))
        r = self.cli("verify", session)
        self.assertIn(b"is consistent", r.stdout)

    def check_nothing_left(self, session, before):
        self.assertEqual(self.full(session), before)
        r = self.cli("verify", session)
        self.assertIn(b"is consistent", r.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.home, session, "import")))

    def test_sigint_into_a_new_session(self):
        code, err, _ = self.interrupt("new-int", signal.SIGINT)
        self.assertEqual(code, -signal.SIGINT, err)
        self.assertIn("interrupted", err)
        self.assertIn("by SIGINT; nothing was imported", err)
        # the session the import made is gone, as for a file it refused
        self.assertFalse(os.path.exists(os.path.join(self.home, "new-int")), err)
        self.check_reimport("new-int", set())

    def test_sigterm_into_a_session_with_flows(self):
        code, err, before = self.interrupt("old-term", signal.SIGTERM, existing=True)
        self.assertEqual(code, -signal.SIGTERM, err)
        self.assertIn("by SIGTERM; nothing was imported", err)
        self.check_nothing_left("old-term", before)
        self.check_reimport("old-term", set(before))

    def test_sigkill_into_a_session_with_flows(self):
        code, err, before = self.interrupt("old-kill", signal.SIGKILL, existing=True)
        self.assertEqual(code, -signal.SIGKILL, err)
        self.assertTrue(os.path.exists(os.path.join(self.home, "old-kill", "import")))
        # the first command that opens the session undoes the import, says so
        r = self.cli("verify", "old-kill")
        self.assertIn(b"is consistent", r.stdout)
        self.assertIn(b"did not finish: rolled back", r.stderr)
        self.check_nothing_left("old-kill", before)
        self.check_reimport("old-kill", set(before))

    def test_rollback_keeps_damage_known_before(self):
        # a segment cut short before the import: its 'segment cut short'
        # row lies at or after where the import began, and the rollback
        # used to delete it with the import's own rows
        self.cli("import", self.small, "--into", "cut")
        seg = os.path.join(self.home, "cut", "spool", "00000001.zst")
        os.truncate(seg, 0)
        self.cli("show", "cut")  # the open records the cut

        def cuts():
            db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.home, "cut", "session.db"),
                                 uri=True)
            try:
                return db.execute("SELECT segment, offset, reason FROM damage").fetchall()
            finally:
                db.close()
        known = cuts()
        self.assertEqual([(1, 0, "segment cut short")], [tuple(r) for r in known])
        code, err, _ = self.interrupt("cut", signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL, err)
        r = self.cli("verify", "cut")
        self.assertIn(b"did not finish: rolled back", r.stderr)
        self.assertIn(b"known cut short at offset 0", r.stdout)
        self.assertEqual(cuts(), known)

    def test_killed_before_its_commit(self):
        """The last moment an import can die: everything recorded and
        indexed, user data given to its flows, `import` not yet removed.
        Made by hand (docs/format.md says what the file holds): the import
        of a second file, then the rollback point it had written."""
        before = self.existing("late")
        seg = os.path.join(self.home, "late", "spool", "00000001.zst")
        offset = os.path.getsize(seg)
        second = os.path.join(self.root, "second.har")
        write_har(second, [entry(i, "second %d\n" % i, "second.test") for i in range(3)])
        self.cli("import", second, "--into", "late")
        self.cli("annotate", "late", "5", "on an imported flow")
        self.cli("tag", "late", "6", "imported")
        self.cli("mark", "late", "4")
        with open(os.path.join(self.home, "late", "import"), "w") as f:
            f.write("reel-import 1\nsegment 1\noffset %d\nfirst_id 4\nstarted_us %d\n"
                    "pid 1\ncreated 0\nfile second.har\n" % (offset, time.time() * 1e6))
        r = self.cli("verify", "late")
        self.assertIn(b"is consistent", r.stdout)
        self.assertIn(b"an import of 'second.har' (PID 1, started ", r.stderr)
        self.assertIn(b"did not finish: rolled back, its 3 flows (ids 4-6) removed with 3 of "
                      b"their annotations, tags and marks", r.stderr)
        self.assertEqual(os.path.getsize(seg), offset)
        self.check_nothing_left("late", before)
        # the journal says they went: a rebuild brings none of it back
        r = self.cli("repair", "late")
        self.check_nothing_left("late", before)
        self.cli("import", second, "--into", "late")
        self.assertEqual(len(self.flows("late")), 6)

    def test_sigkill_into_a_new_session_then_repair(self):
        code, err, _ = self.interrupt("new-kill", signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL, err)
        # repair (which skips recovery) undoes it too
        r = self.cli("repair", "new-kill")
        self.assertIn(b"did not finish: rolled back", r.stdout + r.stderr)
        self.check_nothing_left("new-kill", {})
        self.check_reimport("new-kill", set())


    def test_mitmproxy_file(self):
        """The same for a mitmproxy flow file, whose comments and marks
        are added after its flows: SIGINT, then SIGKILL."""
        try:
            from mitmproxy import io as mio
            from mitmproxy.test import tflow
        except ImportError:
            self.skipTest("mitmproxy is missing: scripts/bootstrap --test installs it")
        import random
        rnd = random.Random(7)
        pool = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 \n")
                     for _ in range(ENTRY_BODY * 4))

        def make_mitm(size):
            # One test flow written over and over, what tflow() would make
            # different (its three ids, each a uuid4) made anew for each: a
            # tflow() per flow was a third of this test's time
            with open(self.big, "wb") as f:
                w = mio.FlowWriter(f)
                fl = tflow.tflow(resp=True)
                fl.request.host = "big.test"
                for i in range(size):
                    fl.id, fl.client_conn.id, fl.server_conn.id = (str(uuid.uuid4())
                                                                   for _ in range(3))
                    fl.request.path = "/item/%d" % i
                    fl.response.content = pool[(i * 7919) % (ENTRY_BODY * 3):][:ENTRY_BODY]
                    fl.comment = "note %d" % i if i % 100 == 0 else ""
                    fl.marked = ":default:" if i % 100 == 0 else ""
                    w.add(fl)
            self.n = size
        self.big = os.path.join(self.root, "big.mitm")  # this test's own, not the class's
        make_mitm(20000)

        def grow():
            make_mitm(self.n * 2)
        code, err, before = self.interrupt("mitm", signal.SIGINT, existing=True, grow=grow)
        self.assertEqual(code, -signal.SIGINT, err)
        self.assertIn("by SIGINT; nothing was imported", err)
        self.check_nothing_left("mitm", before)
        code, err, before = self.interrupt("mitm", signal.SIGKILL, grow=grow)
        self.assertEqual(code, -signal.SIGKILL, err)
        r = self.cli("verify", "mitm")
        self.assertIn(b"did not finish: rolled back", r.stderr)
        self.check_nothing_left("mitm", before)
        r = self.cli("import", self.big, "--into", "mitm", "--json")
        self.assertEqual(json.loads(r.stdout)["annotated"], self.n // 100)
        self.assertEqual(len(self.flows("mitm")), len(before) + self.n)
        marked = json.loads(self.cli("flows", "mitm", "~marked", "--json").stdout)
        self.assertEqual(len(marked), self.n // 100 + len([1 for f in before.values()
                                                           if f[1]["marked"]]))

    def test_disk_full(self):
        """A disk that fills up stops the import: what it had written is
        removed, which gives the space back; the flows before stay."""
        mnt = os.path.join(self.root, "small-fs")
        os.makedirs(mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % (2 << 20),
                            "tmpfs", mnt], capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %s" % r.stderr)
        try:
            env = dict(self.env, REEL_HOME=os.path.join(mnt, "home"))
            run([REEL, "import", self.small, "--into", "full"], env=env)
            before = run([REEL, "flows", "full", "--json"], env=env).stdout
            r = run([REEL, "import", self.big, "--into", "full"], env=env, check=False,
                    timeout=120)
            self.assertEqual(r.returncode, 1, r.stderr)
            # Undone at once; or, when the index too found no room to
            # delete its rows (it depends on which of spool and index the
            # full disk stopped first), by the next open that can write.
            # Either way nothing of the import is left below.
            self.assertRegex(r.stderr, rb"No space left on device; (nothing was imported|"
                             rb"the flows it had recorded \(from id 4 on\) could not be "
                             rb"removed \(.*\): the next open of session 'full' that can write "
                             rb"removes them)")
            # and the flows it says it removed are those the index had:
            # not every entry handed to the recorder, most of which the
            # full disk kept from being written
            m = re.search(rb"the (\d+) flows it had recorded \(ids 4-(\d+)\) were removed",
                          r.stderr)
            if m:
                self.assertEqual(int(m.group(2)), int(m.group(1)) + 3, r.stderr)
                self.assertLess(int(m.group(1)), self.n, r.stderr)
            if b"could not be removed" in r.stderr:
                # The import's WAL can hold all the room there is: then no
                # open can undo it, and each says why and opens nothing
                # (readers would see the import's flows), until the user
                # makes room.
                nxt = run([REEL, "flows", "full", "--json"], env=env, check=False)
                if nxt.returncode != 0:
                    self.assertEqual(nxt.stdout, b"")
                    self.assertRegex(nxt.stderr, rb"session 'full': an import of '.*big\.har' "
                                     rb"\(PID \d+\) did not finish, and undoing it failed: "
                                     rb"session\.db: database or disk is full; the session opens "
                                     rb"once its undo can write \(is the disk full\?\)")
                    subprocess.run(["mount", "-o", "remount,size=%d" % (8 << 20), mnt],
                                   check=True)
            r = run([REEL, "verify", "full"], env=env)
            self.assertIn(b"is consistent", r.stdout)
            self.assertEqual(run([REEL, "flows", "full", "--json"], env=env).stdout, before)
            self.assertFalse(os.path.exists(os.path.join(mnt, "home", "full", "import")))
        finally:
            if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mnt], capture_output=True)


if __name__ == "__main__":
    main()
