#!/usr/bin/python3
"""bench/dashboard's page in headless Chromium (issue 14).

Builds the page from the runs kept in bench/results/ plus two runs made up
here from the latest one (so that every chart has several commits to
draw), opens it in Debian's chromium (playwright-core, installed into the
build folder as for test_browser_websocket.py) with every network request
refused, and fails when a ratio has no chart, a chart is empty (no size,
no points, a line that does not join them) or the page asks for anything
but itself. The screenshot is kept in the build folder
(bench-dashboard.png beside test-tmp/).

Prints "skipped: ..." and exits 0 when chromium or node/npm are missing.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("REEL_SOURCE_DIR") or os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from proxyenv import TMPBASE  # noqa: E402
from test_browser_websocket import CHROMIUM, install_playwright  # noqa: E402


def made_up_runs(latest):
    """Two earlier runs derived from the latest, at made-up commits."""
    out = []
    for i, scale in enumerate((0.8, 0.9)):
        r = copy.deepcopy(latest)
        r["commit"] = "0000000%d" % i
        r["commit_date"] = "2000-01-0%dT00:00:00+00:00" % (i + 1)
        r["date"] = "2000-01-0%dT00:00:00Z" % (i + 1)
        for f in r["figures"].values():
            for k in ("median", "min", "max"):
                f[k] = f[k] * scale
        out.append(r)
    return out


class DashboardTest(unittest.TestCase):
    def test_every_ratio_has_a_chart_that_is_drawn(self):
        node_modules = install_playwright()
        os.makedirs(TMPBASE, exist_ok=True)
        root = tempfile.mkdtemp(prefix="dashboard.", dir=TMPBASE)
        results = os.path.join(root, "results")
        shutil.copytree(os.path.join(SRC, "bench", "results"), results,
                        ignore=shutil.ignore_patterns("*.html"))
        kept = sorted(f for f in os.listdir(results) if f.endswith(".json"))
        self.assertTrue(kept, "bench/results/ holds no run")
        runs = []
        for name in kept:
            with open(os.path.join(results, name)) as f:
                runs.append(json.load(f))
        # what bench/dashboard draws: the full runs, or the quick ones if there is nothing else
        if any(not r.get("quick") for r in runs):
            runs = [r for r in runs if not r.get("quick")]
        latest = max(runs, key=lambda r: (r.get("commit_date", ""), r["date"]))
        for i, r in enumerate(made_up_runs(latest)):
            with open(os.path.join(results, "made-up-%d.json" % i), "w") as f:
                json.dump(r, f)
        page = os.path.join(root, "dashboard.html")
        subprocess.run([sys.executable, os.path.join(SRC, "bench", "dashboard"), "--results", results,
                        "--out", page], check=True, timeout=60)
        with open(page) as f:
            text = f.read()
        for external in ("http://", "https://", "src=", "@import"):
            self.assertNotIn(external, text.replace('xmlns="http://www.w3.org/2000/svg"', ""))

        shot = os.path.join(os.path.dirname(TMPBASE.rstrip("/")), "bench-dashboard.png")
        env = dict(os.environ, NODE_PATH=node_modules, REEL_CHROMIUM=CHROMIUM)
        p = subprocess.run(["node", os.path.join(HERE, "dashboard.cjs"), "file://" + page, shot],
                           env=env, capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-3000:])
        got = json.loads(p.stdout)
        sys.stderr.write("screenshot: %s\n" % shot)

        self.assertEqual(got["requests"], [])
        ratio_keys = set()
        for r in runs:
            ratio_keys |= {k for k, f in r["figures"].items() if f.get("unit") == "ratio"}
        self.assertTrue(ratio_keys)
        self.assertEqual(set(got["data"]["ratio_keys"]), ratio_keys)
        charts = {c["key"]: c for c in got["charts"]}
        self.assertEqual(set(charts), ratio_keys, "a ratio has no chart")
        for key, c in charts.items():
            self.assertGreater(c["width"], 100, key)
            self.assertGreater(c["height"], 50, key)
            self.assertGreaterEqual(c["points"], 1, key)
            self.assertEqual(len(c["circles"]), c["points"], key)
            self.assertEqual(c["line"], c["points"], key)
            for dot in c["circles"]:
                self.assertGreater(dot["w"], 0, key)
        # the latest run's ratios have three points each: two made up, one real
        for key, f in latest["figures"].items():
            if f.get("unit") == "ratio":
                self.assertGreaterEqual(charts[key]["points"], 3, key)
        self.assertEqual(got["rows"], len(latest["figures"]))
        self.assertTrue(os.path.getsize(shot) > 10000)


def main():
    for path, what in ((CHROMIUM, "chromium"), (shutil.which("node"), "node"),
                       (shutil.which("npm"), "npm")):
        if not path or not os.access(path, os.X_OK):
            print("skipped: %s is not installed (scripts/bootstrap --test installs it)" % what)
            return 0
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
