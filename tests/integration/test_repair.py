#!/usr/bin/python3
"""What repair must not hide, and what it must bring back (issue 9, items
8 and 9), with the real binary:

- a 20,000,000-byte download whose segment gets a zstd block header
  broken in the middle: `reel verify` fails, `reel repair` marks the flow
  damaged with the byte range that is missing, `reel flow` says so, `reel
  verify` passes again (known damage) and `~damaged` finds the flow; with
  8 bytes overwritten instead (only the frame's checksum fails), every
  byte is kept and the flow marked damaged as unverified;
- spool/journal.zst deleted: `reel verify` fails, `reel repair` writes it
  anew from the index, and an index rebuilt later gets all the user data
  back;
- session.db deleted after annotating, tagging, marking and configuring:
  `reel ls` lists the session as damaged, `reel repair` rebuilds it from
  the spool and its journal with everything back, and `reel rm` removes a
  session without session.db.
"""
import glob
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from proxyenv import REEL, TMPBASE, Origin, Reel, body, curl, main

SIZE = 20_000_000


def block_holding(fr, at):
    """The offset in zstd frame fr of the header of the block that holds
    byte `at` (or of its last block), walking the frame header and the
    block headers (RFC 8878 3.1.1, 3.1.1.2)."""
    fhd = fr[4]
    single = fhd >> 5 & 1
    pos = (5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] +
           ((1 if single else 0), 2, 4, 8)[fhd >> 6])
    while True:
        h = int.from_bytes(fr[pos:pos + 3], "little")
        size = 1 if h >> 1 & 3 == 1 else h >> 3
        if pos + 3 + size > at or h & 1:
            return pos
        pos += 3 + size


class Repair(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="reel-repair-", dir=TMPBASE)
        cls.origin = Origin(cls.root)
        cls.data = os.urandom(SIZE)
        with open(os.path.join(cls.origin.www, "file20m"), "wb") as f:
            f.write(cls.data)

    @classmethod
    def tearDownClass(cls):
        cls.origin.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def record(self, session, paths):
        reel = Reel(self.root, session)
        try:
            for p in paths:
                curl(reel, "-o", "/dev/null", self.origin.url(p))
            reel.wait_flows(len(paths))
        finally:
            code = reel.stop()
        self.assertEqual(code, 0)
        return reel

    def cli(self, reel, *args, check=True):
        return subprocess.run([REEL] + list(args), env=reel.env, capture_output=True,
                              timeout=120, check=check)

    def damage_middle_frame(self, home, session, header):
        """Damages the zstd block in the middle of the segment's middle
        frame: `header` makes its block header one that does not decode
        (the blocks before it still do), else 8 bytes of its content are
        overwritten (random bytes are stored as they are: the frame
        decodes, to other bytes, and only its checksum fails)."""
        db = sqlite3.connect(os.path.join(home, session, "session.db"))
        frames = db.execute("SELECT offset, clen FROM frames WHERE segment = 1 "
                            "ORDER BY offset").fetchall()
        db.close()
        off, clen = frames[len(frames) // 2]
        seg = os.path.join(home, session, "spool", "00000001.zst")
        with open(seg, "r+b") as f:
            f.seek(off)
            pos = block_holding(f.read(clen), clen // 2)
            f.seek(off + pos + (0 if header else 100))
            f.write(b"\xff\xff\xff" if header else b"\xa5" * 8)

    def killed_run(self, session, resume):
        """A run of `reel record`/`resume` killed with SIGKILL during a slow
        upload, which stays open. Returns the Reel."""
        up = os.path.join(self.root, "upload")
        if not os.path.exists(up):
            with open(up, "wb") as f:
                f.write(os.urandom(2 << 20))
        reel = Reel(self.root, session, resume=resume)
        client = subprocess.Popen(["curl", "-sS", "-x", reel.proxy, "--limit-rate", "100k",
                                   "--data-binary", "@" + up, self.origin.url("/echo")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            n = len(reel.flows())
            deadline = time.time() + 10
            while len(reel.flows()) == n and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(1)  # some of its body in the spool
        finally:
            reel.proc.kill()
            reel.stop()
            client.kill()
            client.wait()
        return reel

    def test_rebuild_gives_back_the_old_rows_pages(self):
        # a rebuild keeps the old rows of flows beside the new ones until
        # it ends: their pages were left free in session.db, which a repair
        # or a compact (the command to take less room) made nearly twice
        # as large
        import http.client
        reel = Reel(self.root, "pages")
        try:
            c = http.client.HTTPConnection("127.0.0.1", reel.port, timeout=30)
            for i in range(1500):
                c.request("GET", self.origin.url("/100b?n=%d&pad=%s" % (i, "p" * 200)))
                c.getresponse().read()
            c.close()
            reel.wait_flows(1500)
        finally:
            self.assertEqual(reel.stop(), 0)
        db = os.path.join(reel.env["REEL_HOME"], "pages", "session.db")

        def pages():
            con = sqlite3.connect(db)
            try:
                return con.execute("SELECT * FROM pragma_page_count, "
                                   "pragma_freelist_count").fetchone()
            finally:
                con.close()
        total0, free0 = pages()
        for cmd in ("repair", "compact"):
            self.cli(reel, cmd, "pages")
            total, free = pages()
            self.assertLessEqual(free * 4, total, (cmd, total, free))
            self.assertLess(total, total0 * 1.25, (cmd, total0, total))
            self.assertEqual(len(json.loads(self.cli(reel, "flows", "pages", "--json").stdout)),
                             1500)
        v = self.cli(reel, "verify", "pages", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_damage_after_a_killed_run(self):
        """Flows a killed run left open (interrupted) were blamed by
        `reel repair` on damage in a later run's frames: marked damaged,
        "its end record may have been lost ... with a damaged frame", and
        counted as lost records, though all their records lay before the
        damage and their run had ended before it was written. A plain
        repair marked more flows damaged than the recovery had (an earlier
        run's flows blamed on a later run's torn tail). Now recovery writes
        their interrupted end into the spool where their run ended."""
        reel = self.killed_run("killed", resume=False)  # flow 1
        home = reel.env["REEL_HOME"]
        spool = os.path.join(home, "killed", "spool")
        self.killed_run("killed", resume=True)  # flow 2
        # and a torn tail: its last frame cut short, as by a power cut
        seg = sorted(glob.glob(os.path.join(spool, "0*.zst")))[-1]
        os.truncate(seg, os.path.getsize(seg) - 50)
        reel = Reel(self.root, "killed", resume=True)
        try:
            for i in range(3):
                curl(reel, "-o", "/dev/null", self.origin.url("/100b?%d" % i))
            reel.wait_flows(5)
        finally:
            self.assertEqual(reel.stop(), 0, reel.log())
        self.assertIn("torn frame at offset", reel.log())
        flows = {f["id"]: f for f in reel.flows()}
        self.assertEqual(flows[1]["state"], "interrupted", flows[1])
        self.assertEqual(flows[1]["error"], "recording stopped before the flow ended")
        damaged = [f["id"] for f in reel.flows("~damaged")]
        self.assertNotIn(1, damaged)
        # A plain repair finds what recovery found, no more.
        r = self.cli(reel, "repair", "killed")
        self.assertEqual([f["id"] for f in reel.flows("~damaged")], damaged, r.stdout)
        self.assertEqual(reel.flow(1)["state"], "interrupted")
        # A byte flipped in the last frame (the third run's): flows 1 and 2
        # had ended (their run had) before it was written.
        with open(seg, "r+b") as f:
            f.seek(-20, 2)
            b = f.read(1)
            f.seek(-20, 2)
            f.write(bytes([b[0] ^ 0x01]))
        r = self.cli(reel, "repair", "killed")
        out = r.stdout.decode()
        self.assertIn("damaged", out)
        now = [f["id"] for f in reel.flows("~damaged")]
        self.assertNotIn(1, now, out)
        self.assertEqual(set(damaged) & {2}, set(now) & {2}, out)
        for fid in (1, 2):
            self.assertEqual(reel.flow(fid)["state"], "interrupted", fid)
        # A flow that lost its end to the damage is not one cut off by
        # the end of a recording.
        self.assertNotIn("cut off by the end of an earlier recording", out)
        v = self.cli(reel, "verify", "killed", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_hole_in_body(self):
        reel = self.record("hole", ["/file20m", "/100b"])
        home = reel.env["REEL_HOME"]
        self.assertEqual(self.cli(reel, "verify", "hole").returncode, 0)
        shutil.copytree(os.path.join(home, "hole"), os.path.join(home, "flip"))
        self.damage_middle_frame(home, "hole", True)
        # The damaged frame is a problem until repair records it.
        self.assertEqual(self.cli(reel, "verify", "hole", check=False).returncode, 1)
        self.cli(reel, "repair", "hole")
        fl = json.loads(self.cli(reel, "flow", "hole", "1", "--json").stdout)
        self.assertEqual(fl["state"], "complete")
        self.assertEqual(fl["response"]["body_size"], SIZE)
        got = body(fl, "response")
        self.assertLess(len(got), SIZE)
        holes = [d for d in fl["damage"] if d["direction"] == "response"]
        self.assertEqual(len(holes), 1, fl["damage"])
        off, length = holes[0]["offset"], holes[0]["length"]
        self.assertEqual(len(got) + length, SIZE)
        # The range is where the bytes are missing: before and after match.
        self.assertEqual(got[:off], self.data[:off])
        self.assertEqual(got[off:], self.data[off + length:])
        # The blocks of the frame before the one that does not decode are
        # kept, and said to be unverified (nothing checks them).
        self.assertTrue([d for d in fl["damage"] if d["direction"] == "flow" and
                         "unverified" in d["reason"]], fl["damage"])
        human = self.cli(reel, "flow", "hole", "1", "--headers-only").stdout.decode()
        self.assertIn("! damaged: response body bytes %d-%d are missing" %
                      (off, off + length - 1), human)
        # The other flow lost nothing.
        self.assertEqual(json.loads(self.cli(reel, "flow", "hole", "2", "--json").stdout)["damage"],
                         [])
        v = self.cli(reel, "verify", "hole")
        self.assertIn(b"flow 1: known damage: response body bytes", v.stdout)
        # compact still refuses: the damage stays on record after a repair
        # (its message told the user to repair first, which changed nothing)
        c = self.cli(reel, "compact", "hole", check=False)
        self.assertEqual(c.returncode, 1)
        self.assertIn(b"refuses to run on a damaged spool; a repair does not clear that record, "
                      b"but retention dropping the segments that hold the damage does", c.stderr)
        ids = [f["id"] for f in json.loads(self.cli(reel, "flows", "hole", "--json",
                                                    "~damaged").stdout)]
        self.assertEqual(ids, [1])
        # A frame whose checksum alone fails is kept whole: its bytes are
        # there, 8 of them not the ones that came, and the flow says so.
        # Random bytes do not compress again: to leave room for the mark
        # in place, the last record's body is cut short by a few dozen
        # bytes (it was a whole 16 KiB record dropped), a hole it names.
        self.damage_middle_frame(home, "flip", False)
        v = self.cli(reel, "verify", "flip", check=False)
        self.assertEqual(v.returncode, 1)
        self.assertIn(b"checksum", v.stderr)
        out = self.cli(reel, "repair", "flip").stdout.decode()
        self.assertIn("checksum failed", out)
        self.assertNotIn("dropped", out)
        fl = json.loads(self.cli(reel, "flow", "flip", "1", "--json").stdout)
        got = body(fl, "response")
        unverified = [d for d in fl["damage"] if d["direction"] == "flow"]
        self.assertEqual(len(unverified), 1, fl["damage"])
        self.assertIn("checksum failed are unverified", unverified[0]["reason"])
        holes = [d for d in fl["damage"] if d["direction"] == "response"]
        missing = holes[0]["length"] if holes else 0
        self.assertLessEqual(len(holes), 1, fl["damage"])
        self.assertLess(missing, 200)
        self.assertEqual(len(got) + missing, SIZE)
        off = holes[0]["offset"] if holes else SIZE
        fixed = got[:off] + self.data[off:off + missing] + got[off:]
        self.assertTrue(0 < sum(a != b for a, b in zip(fixed, self.data)) <= 8)
        ids = [f["id"] for f in json.loads(self.cli(reel, "flows", "flip", "--json",
                                                    "~damaged").stdout)]
        self.assertEqual(ids, [1])
        self.assertEqual(self.cli(reel, "verify", "flip").returncode, 0)

    def test_deleted_journal(self):
        """spool/journal.zst deleted: verify said nothing, and a later
        rebuild (session.db lost) brought back only the user data written
        after that. Now verify fails naming it, repair writes it anew from
        the index, and the rebuild gets everything back."""
        reel = self.record("nojournal", ["/100b", "/100b", "/100b"])
        home = reel.env["REEL_HOME"]
        journal = os.path.join(home, "nojournal", "spool", "journal.zst")
        self.cli(reel, "annotate", "nojournal", "1", "first note")
        self.cli(reel, "tag", "nojournal", "2", "alpha")
        self.cli(reel, "mark", "nojournal", "3")
        self.cli(reel, "config", "nojournal", "set", "body_limit", "1m")
        self.assertEqual(self.cli(reel, "verify", "nojournal").returncode, 0)
        os.unlink(journal)
        v = self.cli(reel, "verify", "nojournal", check=False)
        self.assertEqual(v.returncode, 1)
        self.assertIn(b"spool/journal.zst is missing", v.stderr)
        # a later change begins it again, with that change alone
        self.cli(reel, "annotate", "nojournal", "2", "later note")
        v = self.cli(reel, "verify", "nojournal", check=False)
        self.assertEqual(v.returncode, 1)
        self.assertRegex(v.stderr.decode(), r"journal.zst lacks 1 annotation, 1 tag, 1 mark")

        def user_data():
            notes = [json.loads(self.cli(reel, "annotate", "nojournal", str(i), "--json").stdout)
                     for i in (1, 2)]
            cfg = self.cli(reel, "config", "nojournal", "list").stdout
            tagged = json.loads(self.cli(reel, "flows", "nojournal", "--json",
                                         "~tag alpha").stdout)
            marked = json.loads(self.cli(reel, "flows", "nojournal", "--json", "~marked").stdout)
            return notes, cfg, [f["id"] for f in tagged], [f["id"] for f in marked]

        before = user_data()
        out = self.cli(reel, "repair", "nojournal").stdout.decode()
        self.assertIn("journal.zst lacked 1 annotation, 1 tag, 1 mark", out)
        self.assertIn("written anew from the index's user data", out)
        self.assertEqual(self.cli(reel, "verify", "nojournal").returncode, 0)
        self.assertEqual(user_data(), before)
        # The index is lost: the rebuild gets all of it back from the journal.
        for f in glob.glob(os.path.join(home, "nojournal", "session.db*")):
            os.unlink(f)
        self.cli(reel, "repair", "nojournal")
        self.assertEqual(user_data(), before)
        self.assertEqual(self.cli(reel, "verify", "nojournal").returncode, 0)
        # Both gone: repair says what it could not restore.
        os.unlink(journal)
        for f in glob.glob(os.path.join(home, "nojournal", "session.db*")):
            os.unlink(f)
        out = self.cli(reel, "repair", "nojournal").stdout.decode()
        self.assertIn("journal.zst is missing and there is no old index: annotations, tags, "
                      "marks and config changes the session had could not be restored", out)

    def test_lost_start_record(self):
        # a deleted first segment takes the start record of the 20 MB flow
        # whose body and end are in later ones: its start is unknown, not
        # 1970, and the session's span and the flow's duration say so
        reel = Reel(self.root, "nostart", "segment_size=1MiB")
        try:
            curl(reel, "-o", "/dev/null", self.origin.url("/file20m"))
            curl(reel, "-o", "/dev/null", self.origin.url("/100b"))
            reel.wait_flows(2)
        finally:
            self.assertEqual(reel.stop(), 0)
        before = json.loads(self.cli(reel, "flows", "nostart", "--json", "~id 1").stdout)[0]
        uuid_before = json.loads(self.cli(reel, "flow", "nostart", "1", "--json").stdout)["uuid"]
        self.assertTrue(uuid_before)
        spool = os.path.join(reel.env["REEL_HOME"], "nostart", "spool")
        os.unlink(os.path.join(spool, "00000001.zst"))
        self.cli(reel, "repair", "nostart")
        # the old index knew its start and URL: the row keeps them
        row = json.loads(self.cli(reel, "flows", "nostart", "--json", "~id 1").stdout)[0]
        self.assertEqual((row["start_us"], row["url"]), (before["start_us"], before["url"]))
        self.assertIn("records lost", row["error"])
        # and reel flow, which reads the spool, says what the index knows
        # of the start record's fields instead of null (the uuid was null)
        fl = json.loads(self.cli(reel, "flow", "nostart", "1", "--json").stdout)
        self.assertEqual(fl["uuid"], uuid_before)
        self.assertEqual((fl["client_addr"], fl["client_conn"], fl["start_us"]),
                         (row["client_addr"], row["client_conn"], row["start_us"]))
        # without it, the spool alone does not know the start
        for name in glob.glob(os.path.join(reel.env["REEL_HOME"], "nostart", "session.db*")):
            os.unlink(name)
        self.cli(reel, "repair", "nostart")
        fl = json.loads(self.cli(reel, "flow", "nostart", "1", "--json").stdout)
        self.assertTrue(fl["damage"], fl)
        row = json.loads(self.cli(reel, "flows", "nostart", "--json", "~id 1").stdout)[0]
        self.assertEqual(row["start_us"], 0)
        self.assertIsNone(row["duration_us"])  # was the time since 1970
        listed = self.cli(reel, "flows", "nostart", "~id 1").stdout.decode()
        self.assertNotIn("1970", listed)
        self.assertRegex(listed, r"(?m)^ +1 +- ")
        shown = self.cli(reel, "flow", "nostart", "1", "--headers-only").stdout.decode()
        self.assertIn("start unknown (its start record was lost)", shown)
        self.assertNotIn("1970", shown)
        show = json.loads(self.cli(reel, "show", "nostart", "--json").stdout)
        self.assertGreater(show["first_us"], 0)
        self.assertNotIn("1970", self.cli(reel, "show", "nostart").stdout.decode())

    def test_rebuild_without_session_db(self):
        reel = self.record("lost", ["/100b", "/100b", "/100b"])
        home = reel.env["REEL_HOME"]
        self.cli(reel, "annotate", "lost", "1", "first note")
        self.cli(reel, "annotate", "lost", "2", "second note")
        self.cli(reel, "annotate", "lost", "2", "deleted note")
        self.cli(reel, "annotate", "lost", "2", "--delete", "3")
        self.cli(reel, "tag", "lost", "1", "alpha", "beta")
        self.cli(reel, "untag", "lost", "1", "beta")
        self.cli(reel, "mark", "lost", "3")
        self.cli(reel, "config", "lost", "set", "body_limit", "1m")
        self.cli(reel, "config", "lost", "set", "idle_timeout", "30")
        self.cli(reel, "config", "lost", "unset", "idle_timeout")

        def user_data():
            notes = [json.loads(self.cli(reel, "annotate", "lost", str(i), "--json").stdout)
                     for i in (1, 2)]
            flows = json.loads(self.cli(reel, "flows", "lost", "--json").stdout)
            cfg = self.cli(reel, "config", "lost", "list").stdout
            hist = self.cli(reel, "config", "lost", "history").stdout
            tagged = json.loads(self.cli(reel, "flows", "lost", "--json", "~tag alpha").stdout)
            marked = json.loads(self.cli(reel, "flows", "lost", "--json", "~marked").stdout)
            return (notes, [f["id"] for f in flows], cfg, hist, [f["id"] for f in tagged],
                    [f["id"] for f in marked])

        before = user_data()
        self.assertEqual(before[4], [1])
        self.assertEqual(before[5], [3])
        for f in glob.glob(os.path.join(home, "lost", "session.db*")):
            os.unlink(f)
        ls = self.cli(reel, "ls", check=False)
        self.assertEqual(ls.returncode, 1)
        self.assertRegex(ls.stdout.decode(), r"lost +\(damaged: .*reel repair lost")
        out = self.cli(reel, "repair", "lost").stdout.decode()
        self.assertIn("journal", out)
        self.assertEqual(user_data(), before)
        self.assertEqual(self.cli(reel, "verify", "lost").returncode, 0)
        # A session without session.db can be removed.
        for f in glob.glob(os.path.join(home, "lost", "session.db*")):
            os.unlink(f)
        self.cli(reel, "rm", "--yes", "lost")
        self.assertFalse(os.path.exists(os.path.join(home, "lost")))

    def test_created_when_the_old_index_does_not_read(self):
        """An old session.db that is empty, cut short or not SQLite gives
        no creation time, as a missing one does: repair takes the first
        flow's start, not the time of the repair (docs/format.md)."""
        env = dict(os.environ, REEL_HOME=os.path.join(self.root, "created-home"))
        home = env["REEL_HOME"]
        har = os.path.join(os.environ["REEL_SOURCE_DIR"], "tests", "data", "har", "chromium.har")

        def reel(*args):
            return subprocess.run([REEL] + list(args), env=env, capture_output=True, timeout=60,
                                  check=True)

        def created(name):
            return [x["created_us"] for x in json.loads(reel("ls", "--json").stdout)
                    if x["session"] == name][0]

        reel("import", har, "--into", "orig")
        first = min(f["start_us"] for f in json.loads(reel("flows", "orig", "--json").stdout))
        made = created("orig")
        self.assertGreater(made - first, 60_000_000)  # imported long after it was captured
        for how in ("missing", "empty", "cut", "garbage"):
            with self.subTest(how=how):
                name = "c-" + how
                shutil.copytree(os.path.join(home, "orig"), os.path.join(home, name))
                db = os.path.join(home, name, "session.db")
                for f in glob.glob(db + "-*"):
                    os.unlink(f)
                if how == "missing":
                    os.unlink(db)
                elif how == "empty":
                    open(db, "wb").close()
                elif how == "cut":
                    os.truncate(db, 100)  # the header only
                else:
                    with open(db, "wb") as f:
                        f.write(b"not a database\n" * 100)
                reel("repair", name)
                self.assertEqual(created(name), first)
        # an old index that reads keeps its own
        shutil.copytree(os.path.join(home, "orig"), os.path.join(home, "c-sound"))
        reel("repair", "c-sound")
        self.assertEqual(created("c-sound"), made)

    def test_har_import_cut_short(self):
        """Issue 13: a 30-entry HAR import is one frame; cutting its last 7
        bytes kept 0 flows. Now the whole records before the cut stay, the
        flows that lost their end are marked damaged, and no tag is lost."""
        env = dict(os.environ, REEL_HOME=os.path.join(self.root, "harcut"))
        har = os.path.join(self.root, "cut.har")
        entries = [{
            "startedDateTime": "2024-01-01T00:00:%02d.000Z" % i, "time": 1,
            "request": {"method": "GET", "url": "http://example.com/p%d" % i,
                        "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                        "cookies": [], "headersSize": -1, "bodySize": 0},
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [], "cookies": [], "redirectURL": "", "headersSize": -1,
                         "bodySize": 40, "content": {"size": 40, "mimeType": "text/plain",
                                                     "text": ("body %d " % i) * 5}},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}} for i in range(30)]
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)

        def run(*args, check=True):
            return subprocess.run([REEL] + list(args), env=env, capture_output=True,
                                  timeout=60, check=check)
        run("import", har, "--into", "h")
        for i in range(1, 31):
            run("tag", "h", str(i), "t%d" % i)
        seg = os.path.join(env["REEL_HOME"], "h", "spool", "00000001.zst")
        os.truncate(seg, os.path.getsize(seg) - 7)
        # `reel ls` is the first to open it: it recovers the torn tail and
        # says so, as every other command does (it said nothing)
        ls = run("ls")
        self.assertRegex(ls.stdout.decode(), r"\bh +30 ")
        self.assertRegex(ls.stderr.decode(), r"^reel: session 'h': .*torn")
        flows = json.loads(run("flows", "--json", "h").stdout)
        self.assertEqual(len(flows), 30, "every tagged flow keeps its row")
        tags = {t for f in flows for t in f.get("tags", [])}
        self.assertEqual(tags, {"t%d" % i for i in range(1, 31)})
        with_records = json.loads(run("flows", "--json", "h", "!~damaged").stdout)
        self.assertGreaterEqual(len(with_records), 20, "the records before the cut are kept")
        damaged = json.loads(run("flows", "--json", "h", "~damaged").stdout)
        self.assertGreaterEqual(len(damaged), 1)
        self.assertEqual(len(with_records) + len(damaged), 30)
        self.assertEqual(run("verify", "h", check=False).returncode, 0)
        self.assertTrue(glob.glob(os.path.join(env["REEL_HOME"], "h", "recovered", "*.torn")))
        # The segment is a valid zstd stream again (the mark is skipped).
        self.assertEqual(subprocess.run(["zstd", "-tq", seg]).returncode, 0)

    def imported(self, home, sessions, n):
        """Sessions of n GETs answered by an empty 200, imported from a HAR,
        in a REEL_HOME of their own: its environment, and a run(*args) of
        reel there."""
        env = dict(os.environ, REEL_HOME=os.path.join(self.root, home))
        har = os.path.join(self.root, home + ".har")
        entries = [{"startedDateTime": "2024-01-01T00:00:0%d.000Z" % i, "time": 1,
                    "request": {"method": "GET", "url": "http://example.com/%d" % i,
                                "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
                                "cookies": [], "headersSize": -1, "bodySize": 0},
                    "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                                 "headers": [], "cookies": [], "redirectURL": "",
                                 "headersSize": -1, "bodySize": 0,
                                 "content": {"size": 0, "mimeType": "text/plain"}},
                    "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}
                   for i in range(n)]
        with open(har, "w") as f:
            json.dump({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                               "entries": entries}}, f)

        def run(*args):
            return subprocess.run([REEL] + list(args), env=env, capture_output=True, timeout=60)
        for name in sessions:
            r = run("import", har, "--into", name)
            self.assertEqual(r.returncode, 0, r.stderr)
        return env, run

    def test_sparse_tail_and_directories_for_files(self):
        """A segment extended by a hole (truncate -s): recovery read and
        scanned it a byte at a time (20 GB took minutes), and copied it aside
        as as many zeros on the disk. Now it skips the hole, and the copy
        in recovered/ is sparse too."""
        env, _ = self.imported("sparse", ("s", "dir", "dbdir"), 1)
        # a directory with a segment's name holds no segment: the segment
        # is missing, and every command says what has its name (each
        # stopped at "reading .../00000001.zst at offset 0: Is a
        # directory", repair too)
        seg = os.path.join(env["REEL_HOME"], "dir", "spool", "00000001.zst")
        os.unlink(seg)
        os.mkdir(seg)
        missing = "spool segment 00000001.zst is missing (a directory has its name)"
        show = subprocess.run([REEL, "show", "dir"], env=env, capture_output=True, timeout=60)
        self.assertEqual(show.returncode, 0, show.stderr)
        self.assertIn(missing, show.stderr.decode())
        verify = subprocess.run([REEL, "verify", "dir"], env=env, capture_output=True, timeout=60)
        self.assertEqual(verify.returncode, 1)
        self.assertIn("segment 00000001.zst is missing (a directory has its name)",
                      (verify.stdout + verify.stderr).decode())
        repair = subprocess.run([REEL, "repair", "dir"], env=env, capture_output=True, timeout=60)
        self.assertEqual(repair.returncode, 0, repair.stderr)
        self.assertEqual(subprocess.run([REEL, "verify", "dir"], env=env, capture_output=True,
                                        timeout=60).returncode, 0)
        self.assertTrue(os.path.isdir(seg))  # left as it is: not reel's to remove
        # and a session.db that is one: not "an error of the file system"
        db = os.path.join(env["REEL_HOME"], "dbdir", "session.db")
        for p in glob.glob(db + "*"):
            os.unlink(p)
        os.mkdir(db)
        show = subprocess.run([REEL, "show", "dbdir"], env=env, capture_output=True, timeout=60)
        self.assertEqual(show.returncode, 1)
        self.assertIn("Is a directory; that is a directory where the index should be, no file "
                      "system error", show.stderr.decode())
        seg = os.path.join(env["REEL_HOME"], "s", "spool", "00000001.zst")
        size = os.path.getsize(seg)
        os.truncate(seg, size + (1 << 30))  # 1 GiB of hole
        t0 = time.time()
        ls = subprocess.run([REEL, "ls"], env=env, capture_output=True, timeout=120)
        self.assertLess(time.time() - t0, 30)
        self.assertRegex(ls.stdout.decode(), r"\bs +1 ")
        self.assertEqual(os.path.getsize(seg), size)
        torn = glob.glob(os.path.join(env["REEL_HOME"], "s", "recovered", "*.torn"))
        self.assertEqual(len(torn), 1, ls.stderr)
        st = os.stat(torn[0])
        self.assertEqual(st.st_size, 1 << 30)
        self.assertLess(st.st_blocks * 512, 1 << 20, "the hole was written out")

    def test_export_says_user_data_it_could_not_read(self):
        """A bad page in the annotations table: export wrote every flow
        without its notes, exit 0 and no word; repair could not make the
        index again."""
        env, run = self.imported("udbad", ("u",), 2)
        self.assertEqual(run("annotate", "u", "1", "a note").returncode, 0)
        db = os.path.join(env["REEL_HOME"], "u", "session.db")
        c = sqlite3.connect(db)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = c.execute("PRAGMA page_size").fetchone()[0]
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE name = 'annotations'"
                         ).fetchone()[0]
        c.close()
        with open(db, "r+b") as f:
            f.seek(page * (root - 1))
            f.write(b"\xff" * page)
        out = run("export", "u", "--format", "ndjson")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(out.stdout.splitlines()), 2)  # every flow, without them
        self.assertIn("reel export: the tags and notes of 1 flow could not be read (the first: "
                      "flow 1: database disk image is malformed): written without them; "
                      "session.db is damaged ('reel verify u' says where)\n",
                      out.stderr.decode())
        # and repair makes it whole again, the note from the journal: it
        # stopped at "database disk image is malformed", session.db.new left
        rep = run("repair", "u")
        self.assertEqual(rep.returncode, 0, rep.stderr)
        self.assertIn("could not read from the old index (the journal has them, if it is "
                      "whole): annotations", rep.stdout.decode())
        self.assertFalse(os.path.exists(db + ".new"))
        nd = json.loads(run("export", "u", "--format", "ndjson").stdout.splitlines()[0])
        self.assertEqual([a["text"] for a in nd["annotations"]], ["a note"])
        self.assertEqual(run("verify", "u").returncode, 0)

    def test_user_data_only_the_journal_has(self):
        """An index older than its journal (restored from a copy, or the
        end of its WAL lost to a power cut): the notes, tags and marks made
        since, acknowledged, were only in the journal. verify said
        consistent, and repair wrote the journal anew from the index,
        throwing them away; then only repair applied them, and the session
        ran without them until one."""
        env, run = self.imported("jonly", ("j",), 3)
        db = os.path.join(env["REEL_HOME"], "j", "session.db")
        c = sqlite3.connect(db)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        shutil.copy(db, db + ".old")
        for args in (("annotate", "j", "1", "late note"), ("tag", "j", "2", "keep"),
                     ("mark", "j", "3")):
            self.assertEqual(run(*args).returncode, 0)
        def restore():
            for p in glob.glob(db + "*"):
                if not p.endswith(".old"):
                    os.unlink(p)
            shutil.copy(db + ".old", db)
        restore()
        rep = run("repair", "j")
        self.assertEqual(rep.returncode, 0, rep.stderr)
        self.assertIn("spool/journal.zst held 1 annotation, 1 tag, 1 mark that the index did not "
                      "have (changes whose commit to the index did not reach the disk, or an "
                      "index older than its journal): applied to the index", rep.stdout.decode())
        self.assertIn("user data   1 annotation, 1 tagged flow, 1 marked",
                      run("show", "j").stdout.decode())
        self.assertEqual(run("verify", "j").returncode, 0)
        # And without a repair: the next open applies them (the session
        # ran without them until a repair), once.
        restore()
        fl = run("flows", "j", "~marked")
        self.assertEqual(fl.returncode, 0, fl.stderr)
        self.assertRegex(fl.stdout.decode(), r"^ +3\* .*\n$")
        self.assertEqual(fl.stderr.decode(),
                         "reel: session 'j': spool/journal.zst held 1 annotation, 1 tag, 1 mark "
                         "that the index did not have (changes whose commit to the index did not "
                         "reach the disk, or an index older than its journal): applied to the "
                         "index\n")
        for cmd in (("show", "j"), ("verify", "j")):
            r = run(*cmd)
            self.assertEqual((r.returncode, r.stderr), (0, b""), cmd)
        self.assertIn("user data   1 annotation, 1 tagged flow, 1 marked",
                      run("show", "j").stdout.decode())

    def test_session_db_of_another_session(self):
        """A session.db copied over from another session: the first command
        took it for this spool's index, "salvaged" the spool where the
        other index's frames ended (rewriting this session's bytes), and
        its flows showed the other session's rows and notes; repair kept
        the other session's notes and tags on this one's flows."""
        env, run = self.imported("foreign", ("a", "b"), 3)
        self.assertEqual(run("import", os.path.join(self.root, "foreign.har"), "--into",
                             "a").returncode, 0)  # a's spool goes on past b's frames
        self.assertEqual(run("annotate", "a", "1", "a's note").returncode, 0)
        self.assertEqual(run("annotate", "b", "2", "b's note").returncode, 0)
        self.assertEqual(run("tag", "b", "3", "btag").returncode, 0)
        home = env["REEL_HOME"]
        seg = os.path.join(home, "a", "spool", "00000001.zst")
        with open(seg, "rb") as f:
            before = f.read()
        db = os.path.join(home, "a", "session.db")
        for p in glob.glob(db + "*"):
            os.unlink(p)
        c = sqlite3.connect(os.path.join(home, "b", "session.db"))
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        shutil.copy(os.path.join(home, "b", "session.db"), db)
        for args in (("flows", "a"), ("verify", "a")):
            r = run(*args)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertRegex(r.stderr.decode(),
                             r"^reel %s: session 'a': session\.db is not this session's index: "
                             r"flow 1's UUID there is [0-9a-f-]{36}, and its start record in "
                             r"spool/00000001\.zst says [0-9a-f-]{36} \(a session\.db copied "
                             r"from another session\?\); 'reel repair a' makes a new index from "
                             r"the spool \(and the annotations, tags, marks and config from its "
                             r"journal\), keeping this one in recovered/\n$" % args[0])
        with open(seg, "rb") as f:
            self.assertEqual(f.read(), before, "the spool was rewritten")
        rep = run("repair", "a")
        self.assertEqual(rep.returncode, 0, rep.stderr)
        self.assertRegex(rep.stdout.decode(), r"moved the other session's index aside to "
                         r"recovered/session\.db\.\d+\.foreign and made a new one")
        with open(seg, "rb") as f:
            self.assertEqual(f.read(), before, "the spool was rewritten")
        nd = [json.loads(x) for x in run("export", "a", "--format", "ndjson").stdout.splitlines()]
        self.assertEqual(len(nd), 6)
        self.assertEqual([[a["text"] for a in f["annotations"]] for f in nd],
                         [["a's note"], [], [], [], [], []])
        self.assertEqual([f["tags"] for f in nd], [[]] * 6)
        self.assertEqual(run("verify", "a").returncode, 0)

    def record_segments(self, session):
        """A session of 40 flows in 9 or so segments of 1 MiB: a 1 MiB
        download every 5th request, 100 bytes otherwise."""
        reel = Reel(self.root, session, "segment_size=1MiB")
        try:
            urls = [self.origin.url("/file1m?%d" % i if i % 5 == 0 else "/100b?%d" % i)
                    for i in range(40)]
            curl(reel, "-o", "/dev/null", *urls)
            reel.wait_flows(40)
        finally:
            self.assertEqual(reel.stop(), 0)
        return reel

    def frames_of(self, home, session):
        """{flow id: [(segment, offset), ...]} and {segment: [offsets]}."""
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(home, session, "session.db"),
                             uri=True)
        of, segs = {}, {}
        for fid, seg, off in db.execute("SELECT flow_id, segment, offset FROM flow_frames"):
            of.setdefault(fid, []).append((seg, off))
        for seg, off in db.execute("SELECT segment, offset FROM frames ORDER BY 1, 2"):
            segs.setdefault(seg, []).append(off)
        db.close()
        return of, segs

    def check_cut(self, reel, session, seg, cut, of):
        """After segment seg was cut at byte cut (a frame boundary): the
        flows that had records past it are marked damaged, with what they
        lost, the ones that had nothing else are counted as gone, and
        verify and repair agree, also after a second repair."""
        lost = {f for f, fr in of.items() if any(s == seg and o >= cut for s, o in fr)}
        only = {f for f in lost if all(s == seg and o >= cut for s, o in of[f])}
        hit = lost - only
        self.assertTrue(hit, "no flow has records on both sides of the cut")
        # the first command to open it recovers, and says what was lost
        v = self.cli(reel, "verify", session, check=False)

        def state():
            flows = json.loads(self.cli(reel, "flows", session, "--json").stdout)
            damaged = json.loads(self.cli(reel, "flows", session, "--json", "~damaged").stdout)
            return {f["id"] for f in flows}, {f["id"] for f in damaged}

        ids, damaged = state()
        self.assertEqual(ids, set(of) - only)
        self.assertEqual(damaged, hit)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        err = v.stderr.decode()
        self.assertIn("spool segment %08d.zst was cut short at offset %d" % (seg, cut), err)
        self.assertRegex(err, r"%d flows? that had records there lost them \(marked damaged, "
                              r"with an error\), %d flows? that (?:was|were) only there (?:is|are) gone"
                         % (len(hit), len(only)))
        self.assertIn(b"segment %08d.zst: known cut short at offset %d" % (seg, cut), v.stdout)
        for fid in hit:
            fl = json.loads(self.cli(reel, "flow", session, str(fid), "--json").stdout)
            self.assertEqual(fl["state"], "error")
            self.assertIn("records lost: spool segment %08d.zst was cut short at offset %d"
                          % (seg, cut), fl["error"])
            self.assertTrue(fl["damage"])
            shown = self.cli(reel, "flow", session, str(fid), "--headers-only").stdout
            self.assertIn(b"! damaged", shown)
        self.assertIn(b"damage ", self.cli(reel, "show", session).stdout)
        for _ in range(2):
            out = self.cli(reel, "repair", session).stdout.decode()
            self.assertIn("was cut short at offset %d" % cut, out)
            v = self.cli(reel, "verify", session, check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
            self.assertEqual(state(), (ids, damaged))
        return ids

    def test_segment_cut_short(self):
        """A segment cut short at a frame boundary lost flows silently:
        `verify` rebuilt the index and passed, the flows only in the lost
        bytes were gone without a word, a flow that lost its end became
        "interrupted", and when a middle segment was cut, verify failed
        for good, even after repair. Now the lost range is recorded as
        damage, the flows that had records there are marked, the ones gone
        are counted, and verify and repair agree."""
        reel = self.record_segments("cut")
        home = reel.env["REEL_HOME"]
        of, segs = self.frames_of(home, "cut")
        self.assertGreaterEqual(len(segs), 5, segs)
        for name in ("cutlast", "cutmid"):
            shutil.copytree(os.path.join(home, "cut"), os.path.join(home, name))
        # the newest segment emptied
        last = max(segs)
        os.truncate(os.path.join(home, "cutlast", "spool", "%08d.zst" % last), 0)
        ids = self.check_cut(reel, "cutlast", last, 0, of)
        # recording goes on into it; the cut stays known, new flows are whole
        r = Reel(self.root, "cutlast", resume=True)
        try:
            curl(r, "-o", "/dev/null", self.origin.url("/100b?new"))
            new = r.wait_flows(1, "~u new")
        finally:
            self.assertEqual(r.stop(), 0)
        self.assertEqual([f["id"] for f in new], [max(of) + 1])
        for _ in range(2):
            v = self.cli(reel, "verify", "cutlast", check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
            self.cli(reel, "repair", "cutlast")
        fl = json.loads(self.cli(reel, "flow", "cutlast", str(max(of) + 1), "--json").stdout)
        self.assertEqual((fl["state"], fl["damage"]), ("complete", []))
        self.assertEqual(len(json.loads(self.cli(reel, "flows", "cutlast", "--json").stdout)),
                         len(ids) + 1)
        # a middle segment cut after its first frame
        mid = sorted(segs)[len(segs) // 2]
        self.assertGreaterEqual(len(segs[mid]), 3, segs[mid])
        cut = segs[mid][1]
        os.truncate(os.path.join(home, "cutmid", "spool", "%08d.zst" % mid), cut)
        self.check_cut(reel, "cutmid", mid, cut, of)

    def record_many(self, session):
        """A session of 1,000 flows in 1 MiB segments, bodies of 10 bytes
        to 200 KB (random, so they do not compress): small flows lie whole
        inside one frame, large ones span frames and segments."""
        rnd = random.Random(7)
        sizes = [10, 500, 3000, 20000, 60000, 120000, 150000, 200000]
        for i, n in enumerate(sizes):
            path = os.path.join(self.origin.www, "many%d" % i)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(os.urandom(n))
        cfg = os.path.join(self.root, session + ".curl")
        with open(cfg, "w") as f:
            for k in range(1000):
                f.write('url = "%s"\noutput = "/dev/null"\n' %
                        self.origin.url("/many%d?%d" % (rnd.randrange(len(sizes)), k)))
        reel = Reel(self.root, session, "segment_size=1MiB")
        try:
            curl(reel, "-K", cfg)
            reel.wait_flows(1000, timeout=60)
        finally:
            self.assertEqual(reel.stop(), 0)
        return reel

    @staticmethod
    def id_runs(text):
        """{85, ..., 98, 120} from "85-98, 120"."""
        ids = set()
        for run in text.split(", "):
            a, _, b = run.partition("-")
            ids.update(range(int(a), int(b or a) + 1))
        return ids

    def test_missing_segment_without_index(self):
        """Segment 3 and session.db deleted: repair exited 0, but verify
        failed for good ("flow N lost records that the index does not
        record: ... a hole"): with no old index to compare with, a flow
        that began in the missing segment and went on after it, or began
        before it and ended in it, was not marked; the report said 0
        flows were gone; and `created` became 1970 (the start of a flow
        whose start record was lost). Now the spool alone tells: every
        flow open at the gap or without its start after it is marked,
        the ids the gap took are named, and created is the first real
        start."""
        reel = self.record_many("gap")
        home = reel.env["REEL_HOME"]
        of, segs = self.frames_of(home, "gap")
        self.assertGreater(len(segs), 5)
        only = {f for f, fr in of.items() if all(s == 3 for s, _ in fr)}
        hit = {f for f, fr in of.items() if any(s == 3 for s, _ in fr)} - only
        self.assertTrue(only and hit, (only, hit))
        first = min(f["start_us"] for f in reel.flows())
        os.unlink(os.path.join(home, "gap", "spool", "00000003.zst"))
        for f in glob.glob(os.path.join(home, "gap", "session.db*")):
            os.unlink(f)
        for _ in range(2):  # a second repair finds the same
            out = self.cli(reel, "repair", "gap").stdout.decode()
            v = self.cli(reel, "verify", "gap", check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
            m = re.search(r"spool segment 00000003\.zst is missing: (\d+) flows? that had "
                          r"records there lost them \(marked with an error\), (\d+) flows? "
                          r"that (?:was|were) only there (?:is|are) gone: ids? ([0-9, -]+)", out)
            self.assertTrue(m, out)
            self.assertEqual(self.id_runs(m.group(3)), only, out)
            self.assertEqual(int(m.group(2)), len(only))
            damaged = {f["id"] for f in reel.flows("~damaged")}
            self.assertEqual(damaged, hit, out)
            self.assertEqual(int(m.group(1)), len(hit))
            self.assertEqual({f["id"] for f in reel.flows()}, set(of) - only)
            for fid in hit:
                self.assertIn("records lost: spool segment 00000003.zst is missing",
                              reel.flow(fid)["error"])
            show = json.loads(self.cli(reel, "show", "gap", "--json").stdout)
            self.assertEqual(show["created_us"], first)
            self.assertNotIn("1970", self.cli(reel, "show", "gap").stdout.decode())


    def test_flows_only_in_a_damaged_frame(self):
        """A zstd block header broken a third of the way into a frame: the
        records after it are lost, and the flows that had no others
        vanished from the index without a word (no row, not counted, and
        verify passed). Now each keeps the old index's row, marked
        damaged with what it lost, and the report names them."""
        reel = self.record_many("frame")
        home = reel.env["REEL_HOME"]
        of, segs = self.frames_of(home, "frame")
        # the frame holding the most flows that have no record elsewhere
        whole = {}
        for fid, fr in of.items():
            if len(set(fr)) == 1:
                whole.setdefault(fr[0], []).append(fid)
        (seg, off), inside = max(whole.items(), key=lambda kv: len(kv[1]))
        self.assertGreaterEqual(len(inside), 5, whole)
        db = sqlite3.connect(os.path.join(home, "frame", "session.db"))
        clen = db.execute("SELECT clen FROM frames WHERE segment = ? AND offset = ?",
                          (seg, off)).fetchone()[0]
        db.close()
        before = {f["id"]: f for f in reel.flows()}
        path = os.path.join(home, "frame", "spool", "%08d.zst" % seg)
        with open(path, "r+b") as f:
            f.seek(off)
            pos = block_holding(f.read(clen), clen // 3)  # a third of the frame
            f.seek(off + pos)
            f.write(b"\xff\xff\xff")
        for _ in range(2):
            out = self.cli(reel, "repair", "frame").stdout.decode()
            after = {f["id"]: f for f in reel.flows()}
            self.assertEqual(set(after), set(before), out)
            m = re.search(r"(\d+) flows? that (?:was|were) only in damaged spool bytes lost all "
                          r"(?:its|their) records: kept in the index as the old index had "
                          r"(?:it|them), marked damaged: ids? ([0-9, -]+)", out)
            self.assertTrue(m, out)
            gone = self.id_runs(m.group(2))
            self.assertTrue(gone, out)
            self.assertLessEqual(gone, set(inside))
            damaged = {f["id"] for f in reel.flows("~damaged")}
            self.assertLessEqual(gone, damaged)
            for fid in gone:
                fl = after[fid]
                self.assertEqual(fl["url"], before[fid]["url"])  # what the index knew
                self.assertIn("none of its records are left in the spool", fl["error"])
                r = self.cli(reel, "flow", "frame", str(fid), "--headers-only", check=False)
                shown = r.stdout.decode()
                self.assertIn("damaged bytes set aside at offset", shown)
                self.assertIn("%08d.zst" % seg, shown)
                # not "no flow N": the flow is listed; its records are gone
                self.assertEqual(r.returncode, 1)
                self.assertIn(b"flow %d: none of its records are left in the spool; the index "
                              b"keeps what it knew of it" % fid, r.stderr)
                j = self.cli(reel, "flow", "frame", str(fid), "--json", check=False)
                self.assertIn("none of its records are left in the spool",
                              json.loads(j.stdout)["read_error"])
            v = self.cli(reel, "verify", "frame", check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def break_response_head(self, home, session, fid, level, dry=False):
        """Gives flow fid's response head a field protobuf-c refuses
        (time_us, a varint, as 0 bytes) in the frame that holds it, which
        is compressed again (zstd `level`, checksum good) and written in its
        place. Returns (segment, offset of the frame, index of the record in
        it, whether later frames follow it in the segment). dry: nothing
        written, None if fid's last frame has no response head of it."""
        import zstandard
        of, segs = self.frames_of(home, session)
        db = sqlite3.connect(os.path.join(home, session, "session.db"))
        seg, off = max(fr for fr in of[fid]
                       if db.execute("SELECT count(*) FROM flow_frames WHERE flow_id = ? AND "
                                     "segment = ? AND offset = ?", (fid,) + fr).fetchone()[0])
        clen = db.execute("SELECT clen FROM frames WHERE segment = ? AND offset = ?",
                          (seg, off)).fetchone()[0]
        db.close()

        def varint(n):
            out = b""
            while n >= 0x80:
                out += bytes([n & 0x7F | 0x80])
                n >>= 7
            return out + bytes([n])

        path = os.path.join(home, session, "spool", "%08d.zst" % seg)
        with open(path, "rb") as f:
            whole = f.read()
        raw = zstandard.ZstdDecompressor().decompress(whole[off:off + clen])
        recs, pos = [], 0
        while pos < len(raw):
            n = shift = 0
            while True:
                b = raw[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            recs.append(raw[pos:pos + n])
            pos += n
        # field 1 (flow_id) first, then the event (13: response_head)
        target = [i for i, r in enumerate(recs)
                  if r.startswith(b"\x08" + varint(fid)) and b"\x6a" in r[:12]]
        if dry:
            return (seg, off, target[0], off + clen < len(whole)) if len(target) == 1 else None
        self.assertEqual(len(target), 1, recs)
        recs[target[0]] += b"\x12\x00"
        block = b"".join(varint(len(r)) + r for r in recs)
        frame = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                         write_content_size=True).compress(block)
        with open(path, "wb") as f:
            f.write(whole[:off] + frame + whole[off + clen:])
        # no old index to compare the segment with (the frame's length
        # changed, which it would take for a cut)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(os.path.join(home, session, "session.db" + suffix)):
                os.unlink(os.path.join(home, session, "session.db" + suffix))
        return seg, off, target[0], off + clen < len(whole)

    def check_broken_head(self, reel, session, fid, nflows, k, off):
        """After break_response_head (record k of its frame, at offset off
        of segment 1): two repairs,
        the first naming the record, each leaving every flow listed, fid
        damaged with its response head named as lost, the others whole,
        and verify passing."""
        for rnd in range(2):
            out = self.cli(reel, "repair", session).stdout.decode()
            if rnd == 0:
                self.assertIn("segment 00000001.zst: damaged frame at offset %d (record %d does "
                              "not unpack as a Record (the checksum held)): kept %d whole "
                              "records before the damage" % (off, k, k), out)
            flows = {f["id"]: f for f in reel.flows()}
            self.assertEqual(len(flows), nflows, out)
            self.assertIsNone(flows[fid]["status"], (out, flows[fid]))
            self.assertTrue(flows[fid]["damaged"], flows[fid])
            self.assertEqual(flows[fid]["state"], "error", (out, flows[fid]))
            self.assertIn("records lost: its response head", flows[fid]["error"])
            for f in flows.values():
                if f["id"] != fid:
                    self.assertEqual((f["state"], f["status"], f["damaged"]),
                                     ("complete", 200, False), (out, f))
            v = self.cli(reel, "verify", session, check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
            self.assertIn(b"known damage", v.stdout)
        self.assertTrue(glob.glob(os.path.join(reel.env["REEL_HOME"], session, "recovered",
                                               "*")))
        return out

    def test_invalid_head_in_a_sound_frame(self):
        """A response head that protobuf-c refuses (its time_us given as
        bytes) inside a frame whose checksum holds. The rebuild indexed the
        frame up to that record and said nothing: the flow was listed as
        cut off by the end of the recording, the flow after it vanished
        without a word, and verify failed after every repair. Now such a
        frame is a damaged one (the check runs on the threads that decode
        frames): the records before the bad one are kept in a new frame,
        those after it in another after the mark, the report names the
        record, the flow is marked damaged with what it lost (its other
        records are on both sides of the mark), and verify passes. Here
        the frame is the segment's last."""
        reel = self.record("badhead", ["/100b?a", "/100b?b", "/100b?c"])
        home = reel.env["REEL_HOME"]
        # the middle flow, whose head usually shares the last frame with the
        # third's; on a slow machine the recorder may have written each
        # flow's own frame, and then the last flow's is the one
        ids = {f["url"][-1]: f["id"] for f in reel.flows()}
        fid = next(ids[u] for u in "bc"
                   if (self.break_response_head(home, "badhead", ids[u], 3, dry=True) or
                       (0, 0, 0, True))[3] is False)
        # (not always the segment's first frame: a loaded machine's recorder
        # may have written the first flow's records in a frame of their own)
        _, off, k, later = self.break_response_head(home, "badhead", fid, 3)
        self.assertFalse(later)
        out = self.check_broken_head(reel, "badhead", fid, 3, k, off)
        self.assertIn("bad record: %d records kept in the frame before, " % k, out)

    def test_invalid_head_in_a_frame_before_others(self):
        """The same in a frame that other frames follow: the two frames and
        the mark are written where the old frame was (compressed harder
        than the old one, they leave room), and the frames after it are
        read as before. The frame is written at zstd level 2: one of this
        short text at level 3 (the default) left no room for two frames
        and a mark even at level 19, and then the records after the bad
        one stay in the bytes set aside, as the report says."""
        rnd = random.Random(5)
        words = ["%s%d" % (w, n) for w in ("alpha", "bravo", "delta", "kilo", "lima", "tango")
                 for n in range(40)]
        for i in range(12):  # text, each its own
            with open(os.path.join(self.origin.www, "words-%d" % i), "w") as f:
                f.write(" ".join(rnd.choice(words) for _ in range(400)))
        paths = ["/words-%d" % i for i in range(12)]
        reel = Reel(self.root, "badmid", "zstd_level=2")
        try:
            for i, p in enumerate(paths):
                curl(reel, "-o", "/dev/null", self.origin.url(p))
                if i == 5:
                    reel.wait_flows(6)
                    time.sleep(0.5)  # the frame written: the rest in later ones
            reel.wait_flows(len(paths))
        finally:
            self.assertEqual(reel.stop(), 0)
        home = reel.env["REEL_HOME"]
        of, segs = self.frames_of(home, "badmid")
        first = (1, segs[1][0])
        # the last flow whole in the first frame: what follows its response
        # head there (its body and end) is short
        fid = max(f for f, fr in of.items() if set(fr) == {first})
        _, off, k, later = self.break_response_head(home, "badmid", fid, 1)
        self.assertTrue(later)
        out = self.check_broken_head(reel, "badmid", fid, len(paths), k, off)
        self.assertIn("bad record: %d records kept in the frame before, " % k, out)
        # A second salvage at the same offset (another record of the new
        # frame there broken) sets its bytes aside under a name of its own:
        # the first copy, the original bytes, is not overwritten.
        rec = os.path.join(home, "badmid", "recovered")
        before = {n: open(os.path.join(rec, n), "rb").read() for n in os.listdir(rec)}
        self.assertEqual(set(before), {"00000001.zst.0.damaged"})
        other = min(f for f, fr in self.frames_of(home, "badmid")[0].items()
                    if set(fr) == {first})
        self.break_response_head(home, "badmid", other, 1)
        out = self.cli(reel, "repair", "badmid").stdout.decode()
        self.assertIn("00000001.zst.0.1.damaged", out)
        for n, data in before.items():
            with open(os.path.join(rec, n), "rb") as f:
                self.assertEqual(f.read(), data, n)
        self.assertEqual(set(os.listdir(rec)), set(before) | {"00000001.zst.0.1.damaged"})
        self.assertEqual(len(reel.flows()), len(paths))
        self.assertEqual(self.cli(reel, "verify", "badmid", check=False).returncode, 0)

    def test_start_lost_in_a_damaged_frame(self):
        """The frame holding a 1 MiB flow's start record and heads damaged,
        the later frames with the rest of its body whole: repair left the
        flow `complete`, without an error, `!` or URL (start 0, no method
        or status), though the old index knew them; its flow_damage rows
        alone said what it had lost. Now it is marked damaged with an
        error naming what it lost, and it keeps what the old index knew
        where the spool says nothing."""
        reel = Reel(self.root, "start", "segment_size=1MiB")
        try:
            curl(reel, "-o", "/dev/null",
                 *[self.origin.url("/file1m?%d" % i if i % 2 else "/100b?%d" % i)
                   for i in range(9)])
            reel.wait_flows(9)
        finally:
            self.assertEqual(reel.stop(), 0)
        home = reel.env["REEL_HOME"]
        of, _ = self.frames_of(home, "start")
        before = {f["id"]: f for f in reel.flows()}
        # a 1 MiB flow in the middle: its first frame holds its start and
        # heads, later ones the rest of its body
        big = sorted(fid for fid, fr in of.items() if len(set(fr)) > 2)
        fid = big[len(big) // 2]
        seg, off = min(of[fid])
        db = os.path.join(home, "start", "session.db")

        def uuid():
            c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
            u = c.execute("SELECT uuid FROM flows WHERE id = ?", (fid,)).fetchone()[0]
            c.close()
            return u
        known = uuid()
        with open(os.path.join(home, "start", "spool", "%08d.zst" % seg), "r+b") as f:
            f.seek(off + 20)
            f.write(b"\xff" * 16)
        for _ in range(2):  # a second repair, without the start again, keeps it
            out = self.cli(reel, "repair", "start").stdout.decode()
            fl = {f["id"]: f for f in reel.flows()}[fid]
            self.assertIn(fid, {f["id"] for f in reel.flows("~damaged")}, out)
            self.assertEqual(fl["state"], "error", out)
            self.assertIsNotNone(fl["error"], out)
            self.assertIn("records lost: its start record", fl["error"])
            self.assertIn("%08d.zst" % seg, fl["error"])
            # what the old index knew, where the spool says nothing
            for k in ("url", "method", "status", "start_us", "client_addr", "kind"):
                self.assertEqual(fl[k], before[fid][k], k)
            self.assertIn("1 flow whose start record was lost keeps what the old index knew of "
                          "it (URL, start, status) where the spool says nothing: id %d" % fid, out)
            self.assertEqual(uuid(), known)  # in the index; `reel flow` reads the spool
            j = reel.flow(fid)
            self.assertTrue(any("its start record was lost" in d["reason"]
                                for d in j["damage"]), j["damage"])
            v = self.cli(reel, "verify", "start", check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)


if __name__ == "__main__":
    main()
