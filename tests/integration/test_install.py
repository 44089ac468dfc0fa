#!/usr/bin/python3
"""What `cmake --install` ships, checked against the built binary:
- the man pages (generated at build time from --help) exist for reel and
  every command `reel --help` lists, render without groff warnings, and
  contain every word of the command's --help in order (they cannot drift);
- the completions for bash, zsh and fish complete commands, options,
  session names, flow ids and config keys from the real binary;
- a DESTDIR install puts every file where docs/packaging.md says, with the
  unit files pointed at the installed binary."""
import glob
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from proxyenv import REEL, TMPBASE, main, run

BUILD = os.path.dirname(os.path.realpath(REEL or "."))
SRC = os.environ.get("REEL_SOURCE_DIR", "")
COMPLETION = os.path.join(SRC, "contrib", "completion")
NEUTRAL = {"HOME": "~", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}  # as gen_man.py runs it


def commands():
    out = run([REEL, "--help"]).stdout.decode()
    block = out.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return [ln.split()[0] for ln in block.splitlines()]


def words(text):
    return re.findall(r"[A-Za-z0-9_]+", text)


class ManTest(unittest.TestCase):
    def render(self, name):
        with gzip.open(os.path.join(BUILD, "man", name + ".1.gz")) as f:
            roff = f.read()
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-rLL=200n", "-P-cbou"],
                           input=roff, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stderr.decode(), "", "groff warns about %s" % name)
        return r.stdout.decode()

    def test_a_page_per_command(self):
        pages = sorted(os.path.basename(p)[:-5] for p in
                       glob.glob(os.path.join(BUILD, "man", "*.1.gz")))
        self.assertEqual(pages, sorted(["reel"] + ["reel-" + c for c in commands()]))

    def test_pages_say_what_help_says(self):
        for cmd in [None] + commands():
            name = "reel-" + cmd if cmd else "reel"
            args = [cmd, "--help"] if cmd else ["--help"]
            helptext = run([REEL] + args, env=NEUTRAL).stdout.decode()
            page = self.render(name)
            hw, pw = words(helptext.replace("usage:", "", 1)), words(page)
            # every word of --help, in order, in the page
            i = 0
            for w in pw:
                if i < len(hw) and w == hw[i]:
                    i += 1
            self.assertEqual(i, len(hw), "%s: the page lacks '--help' text from '%s'" %
                             (name, " ".join(hw[i:i + 8])))
            self.assertIn("SYNOPSIS", page)
            self.assertIn("DESCRIPTION", page)


class CompletionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="install.", dir=TMPBASE)
        cls.bin = os.path.join(cls.root, "bin")
        os.makedirs(cls.bin)
        os.symlink(os.path.realpath(REEL), os.path.join(cls.bin, "reel"))
        cls.home = os.path.join(cls.root, "home")
        cls.env = dict(os.environ, PATH=cls.bin + ":" + os.environ["PATH"],
                       REEL_HOME=os.path.join(cls.root, "unused"), HOME=cls.root,
                       XDG_DATA_HOME=cls.root + "/data", XDG_CONFIG_HOME=cls.root + "/config")
        har = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [{
            "startedDateTime": "2024-01-01T00:00:00Z", "time": 1,
            "request": {"method": "GET", "url": "http://a.example/x", "httpVersion": "HTTP/1.1",
                        "headers": [], "queryString": [], "cookies": [], "headersSize": -1,
                        "bodySize": 0},
            "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                         "headers": [], "cookies": [], "content": {"size": 0, "mimeType": "x/y"},
                         "redirectURL": "", "headersSize": -1, "bodySize": 0},
            "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0}}] * 3}}
        with open(os.path.join(cls.root, "t.har"), "w") as f:
            json.dump(har, f)
        run([REEL, "--home", cls.home, "import", os.path.join(cls.root, "t.har"), "--into",
             "alpha"])
        run([REEL, "--home", cls.home, "new", "beta"])
        # (line, expected completions): the session root is given by --home
        h = ["reel", "--home", cls.home]
        cls.cases = [
            (["reel", "fl"], ["flow", "flows"]),
            (h + ["sh"], ["show"]),
            (h + ["show", ""], ["alpha", "beta"]),
            (h + ["flow", "alpha", ""], ["1", "2", "3"]),
            (h + ["mark", "alpha", "1", ""], ["1", "2", "3"]),
            (h + ["config", "alpha", ""], ["get", "history", "list", "set", "unset"]),
            (h + ["config", "alpha", "get", "listen_"], ["listen_host", "listen_port"]),
            (h + ["flows", "--li"], ["--limit"]),
            (h + ["flows", "--limit", "5", "a"], ["alpha"]),
            (h + ["record", "--set", "body_"], ["body_index_max=", "body_limit="]),
            (h + ["import", "--into", "b"], ["beta"]),
            (h + ["rm", "alpha", ""], ["alpha", "beta"]),
        ]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def check(self, shell, results):
        for (line, want), got in zip(self.cases, results):
            self.assertEqual(sorted(got), sorted(want), "%s: %r" % (shell, line))

    def test_bash(self):
        script = ["source %s/reel.bash" % COMPLETION,
                  'c() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); '
                  '_reel; echo "${COMPREPLY[*]}"; }']
        for line, _ in self.cases:
            script.append("c " + " ".join("'%s'" % w for w in line))
        out = run(["bash", "-c", "\n".join(script)], env=self.env).stdout.decode()
        self.check("bash", [ln.split() for ln in out.split("\n")[:len(self.cases)]])

    def test_zsh(self):
        if not shutil.which("zsh"):
            self.skipTest("zsh is not installed")
        # compadd and friends stand in for zsh's completion system
        script = ["compadd() { local a; [[ $1 == -S ]] && shift 2; if [[ $1 == -a ]]; then "
                  'print -r -- "${(P@)2}"; else [[ $1 == -- ]] && shift; print -r -- "$@"; fi }',
                  '_describe() { print -r -- "${(P@)2%%:*}" }',
                  "_files() { print FILES }; _directories() { print DIRS }",
                  "source %s/_reel >/dev/null 2>&1" % COMPLETION,
                  'c() { words=("$@"); CURRENT=$#words; _reel | tr "\\n" " "; print }']
        for line, _ in self.cases:
            script.append("c " + " ".join("'%s'" % w for w in line))
        out = run(["zsh", "-f", "-c", "\n".join(script)], env=self.env).stdout.decode()
        # zsh's compadd filters by the prefix itself: do it here
        got = [[w for w in ln.split() if w.startswith(line[-1])]
               for (line, _), ln in zip(self.cases, out.split("\n"))]
        self.check("zsh", got)

    def test_fish(self):
        if not shutil.which("fish"):
            self.skipTest("fish is not installed")
        script = ["source %s/reel.fish" % COMPLETION]
        for line, _ in self.cases:
            script.append("complete -C%s | string replace -r '\\t.*' '' | string join ' '" %
                          "'%s'" % " ".join(line).replace("'", "\\'"))
        out = run(["fish", "--no-config", "-c", "\n".join(script)], env=self.env).stdout.decode()
        self.check("fish", [ln.split() for ln in out.split("\n")[:len(self.cases)]])


class InstallTest(unittest.TestCase):
    def test_destdir_install(self):
        os.makedirs(TMPBASE, exist_ok=True)
        dest = tempfile.mkdtemp(prefix="destdir.", dir=TMPBASE)
        try:
            run(["cmake", "--install", BUILD, "--prefix", "/opt/reel"],
                env=dict(os.environ, DESTDIR=dest))
            root = dest + "/opt/reel"
            for path in ["bin/reel", "share/man/man1/reel.1.gz", "share/man/man1/reel-flows.1.gz",
                         "share/bash-completion/completions/reel",
                         "share/zsh/vendor-completions/_reel",
                         "share/fish/vendor_completions.d/reel.fish",
                         "lib/systemd/system/reel@.service", "lib/systemd/user/reel@.service",
                         "share/doc/reel/README.md", "share/doc/reel/packaging.md",
                         "share/doc/reel/systemd/system/reel@.service"]:
                self.assertTrue(os.path.isfile(os.path.join(root, path)), path)
            self.assertTrue(os.access(root + "/bin/reel", os.X_OK))
            for kind in ["system", "user"]:
                with open("%s/lib/systemd/%s/reel@.service" % (root, kind)) as f:
                    unit = f.read()
                self.assertIn("ExecStart=/opt/reel/bin/reel resume %i\n", unit)
                self.assertNotIn("/usr/bin/reel", unit)
                self.assertIn("Restart=on-failure", unit)
        finally:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
