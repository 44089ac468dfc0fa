#!/usr/bin/python3
"""The progress line of long commands (base/progress.h): `reel import`
(HAR and mitmproxy files) and `reel export` draw "N/M flows, R/s" on
stderr when it is a terminal, clear it at the end, and print nothing of
it when stderr is a file or a pipe. REEL_PROGRESS_DELAY_MS=0 makes the
line appear at once (by default it waits 500 ms, so short runs are
silent)."""
import os
import pty
import select
import shutil
import subprocess
import tempfile
import unittest

REEL = os.environ["REEL"]
SRC = os.environ.get("REEL_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
TMPBASE = os.environ.get("REEL_TEST_TMP", tempfile.gettempdir())
HAR = os.path.join(SRC, "tests", "data", "har", "chromium.har")


def read_tty(master):
    out = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            d = os.read(master, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    return out


class ProgressTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="progress.", dir=TMPBASE)
        cls.env = dict(os.environ, REEL_HOME=cls.root + "/home", XDG_DATA_HOME=cls.root + "/data",
                       XDG_CONFIG_HOME=cls.root + "/config", REEL_PROGRESS_DELAY_MS="0")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def on_tty(self, *args):
        master, slave = pty.openpty()
        p = subprocess.Popen([REEL] + list(args), env=self.env, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        out = p.stdout.read()
        p.stdout.close()
        self.assertEqual(p.wait(60), 0)
        tty = read_tty(master)
        os.close(master)
        return out, tty

    def test_import_and_export(self):
        _, tty = self.on_tty("import", HAR, "--into", "h")
        self.assertRegex(tty, rb"\rreel import: \d+/\d+ flows, \d+/s")
        self.assertIn(b"\r\x1b[K", tty)  # cleared before the summary
        out, tty = self.on_tty("export", "h", "--format", "ndjson")
        self.assertTrue(out)
        self.assertRegex(tty, rb"\rreel export: \d+/\d+ flows, \d+/s")
        self.assertTrue(tty.endswith(b"\r\x1b[K"), tty[-40:])
        # not a terminal: no line at all
        r = subprocess.run([REEL, "import", HAR, "--into", "h2"], env=self.env,
                           capture_output=True, check=True)
        self.assertNotIn(b"\r", r.stderr)
        r = subprocess.run([REEL, "export", "h2", "--format", "har"], env=self.env,
                           capture_output=True, check=True)
        self.assertNotIn(b"\r", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
