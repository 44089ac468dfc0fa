#!/usr/bin/python3
"""The Debian package: cpack -G DEB from this build tree, with its library
dependencies computed by dpkg-shlibdeps; installed on this machine with
dpkg -i (as root), then /usr/bin/reel --version, man pages, unit files,
bash completion and a short recording through it; then removed (dpkg
--purge), also when something fails.

The package is made from the tree as built (the project's install script
with prefix /usr, through the project's CPackConfig.cmake) without cpack's
usual "preinstall" build step, which would rebuild the binary under the
other tests running from this build tree. A lock file serialises the
install among test runs of several build trees on one machine."""
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REEL = os.environ.get("REEL")
TMPBASE = os.environ.get("REEL_TEST_TMP") or tempfile.gettempdir()
MAINTAINER = "reel maintainers <reel@localhost>"  # cmake/install.cmake
LOCK = "/tmp/reel-package-test.lock"


def run(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (" ".join(cmd), r.returncode,
                                                       r.stdout.decode(errors="replace")[-3000:],
                                                       r.stderr.decode(errors="replace")[-3000:]))
    return r


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def installed():
    r = run(["dpkg-query", "-W", "-f", "${Status}\t${Maintainer}", "reel"], check=False)
    if r.returncode != 0:
        return None
    status, _, maint = r.stdout.decode().partition("\t")
    return None if status.endswith("not-installed") else maint


def dpkg(*args):
    """dpkg, waiting up to a minute for its lock (apt may be running)."""
    deadline = time.time() + 60
    while True:
        r = run(["dpkg"] + list(args), check=False)
        err = r.stderr.decode(errors="replace")
        if r.returncode == 0 or "lock" not in err or time.time() > deadline:
            check(r.returncode == 0, "dpkg %s exited %d: %s" % (" ".join(args), r.returncode, err))
            return r
        time.sleep(2)


class Origin(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the origin\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def build_deb(build, work):
    """The .deb of build tree `build`, made in `work`."""
    script = os.path.join(work, "install.cmake")
    with open(script, "w") as f:
        f.write("set(CMAKE_INSTALL_PREFIX /usr)\ninclude(%s/cmake_install.cmake)\n" % build)
    cfg = os.path.join(work, "CPackConfig.cmake")
    with open(cfg, "w") as f:
        f.write('include("%s/CPackConfig.cmake")\nset(CPACK_INSTALL_CMAKE_PROJECTS "")\n'
                'set(CPACK_INSTALL_SCRIPTS "%s")\n' % (build, script))
    run(["cpack", "-G", "DEB", "-B", work, "--config", cfg], timeout=300)
    debs = glob.glob(os.path.join(work, "reel_*.deb"))
    check(len(debs) == 1, "cpack made %s" % debs)
    return debs[0]


def check_deb(deb):
    info = run(["dpkg-deb", "-f", deb, "Package", "Depends", "Maintainer"]).stdout.decode()
    print(info)
    depends = re.search(r"^Depends: (.*)$", info, re.M)
    check(depends is not None, "no Depends in the package")
    # computed by dpkg-shlibdeps from the binary, with versions
    for lib in ["libc6 (>=", "libsqlite3-0", "libuv1", "libssl3", "libzstd1", "libjansson4",
                "libprotobuf-c1", "libyaml-0-2", "zlib1g", "libbrotli1", "libpcre2-8-0"]:
        check(lib in depends.group(1), "Depends lacks %s: %s" % (lib, depends.group(1)))
    files = run(["dpkg-deb", "-c", deb]).stdout.decode()
    for path in ["./usr/bin/reel", "./usr/share/man/man1/reel.1.gz",
                 "./usr/share/man/man1/reel-record.1.gz",
                 "./usr/share/bash-completion/completions/reel",
                 "./usr/share/zsh/vendor-completions/_reel",
                 "./usr/share/fish/vendor_completions.d/reel.fish",
                 "./usr/lib/systemd/system/reel@.service", "./usr/lib/systemd/user/reel@.service",
                 "./usr/share/doc/reel/README.md", "./usr/share/doc/reel/packaging.md"]:
        check(re.search(r" %s$" % re.escape(path), files, re.M), "package lacks %s" % path)


def check_installed(work):
    out = run(["/usr/bin/reel", "--version"]).stdout.decode()
    print(out)
    check(re.match(r"reel \d+\.\d+\.\d+\ncommit \S+\nlibraries:\n", out), out)
    check(run(["man", "-w", "reel-record"]).stdout.decode().strip() ==
          "/usr/share/man/man1/reel-record.1.gz", "man -w reel-record")
    page = run(["man", "reel-flows"], env=dict(os.environ, MANPAGER="cat", MANWIDTH="80"))
    check(b"reel flows" in page.stdout, "man reel-flows renders")
    for unit in ["/usr/lib/systemd/system/reel@.service", "/usr/lib/systemd/user/reel@.service"]:
        with open(unit) as f:
            text = f.read()
        check("ExecStart=/usr/bin/reel resume %i\n" in text, unit + ": ExecStart")
        check("Type=notify" in text or "Type=exec" in text, unit + ": Type")
        if shutil.which("systemd-analyze"):
            r = run(["systemd-analyze", "verify", unit], check=False)
            check(r.returncode == 0 and not r.stderr.strip(),
                  "systemd-analyze verify %s: %s" % (unit, r.stderr.decode()))
    comp = run(["bash", "-c", "source /usr/share/bash-completion/completions/reel; "
                "COMP_WORDS=(reel fl); COMP_CWORD=1; _reel; echo ${COMPREPLY[*]}"])
    check(comp.stdout.decode().split() == ["flows", "flow"], comp.stdout)

    # a short recording through the installed binary
    origin = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    env = dict(os.environ, REEL_HOME=work + "/home", XDG_DATA_HOME=work + "/data",
               XDG_CONFIG_HOME=work + "/config")
    pidfile = os.path.join(work, "reel.pid")
    log = open(os.path.join(work, "record.log"), "w+")
    proc = subprocess.Popen(["/usr/bin/reel", "record", "--listen", "127.0.0.1:0", "--pidfile",
                             pidfile, "pkg"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 20
        while not os.path.exists(pidfile):
            check(proc.poll() is None, "reel record exited %s" % proc.returncode)
            check(time.time() < deadline, "no pid file")
            time.sleep(0.05)
        log.seek(0)
        port = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read()).group(1)
        got = run(["curl", "-sS", "--max-time", "20", "-x", "http://127.0.0.1:" + port,
                   "http://127.0.0.1:%d/hello" % origin.server_address[1]])
        check(got.stdout == b"hello from the origin\n", got.stdout)
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(30) == 0, "reel record exited %s on SIGTERM" % proc.returncode)
        check(not os.path.exists(pidfile), "pid file left")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        origin.shutdown()
        origin.server_close()
        log.seek(0)
        print(log.read())
        log.close()
    flows = json.loads(run(["/usr/bin/reel", "flows", "pkg", "--json"], env=env).stdout)
    check(len(flows) == 1 and flows[0]["status"] == 200 and
          flows[0]["url"].endswith("/hello"), flows)


def main():
    if not REEL:
        print("REEL is not set", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("SKIP: installing a .deb needs root")
        return 0
    for tool in ["cpack", "dpkg-deb", "dpkg-shlibdeps"]:
        if not shutil.which(tool):
            print("%s is missing: install the Debian package %s (scripts/bootstrap --test does)"
                  % (tool, "dpkg-dev" if tool.startswith("dpkg") else "cmake"), file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))  # still remove the package
    build = os.path.dirname(os.path.realpath(REEL))
    os.makedirs(TMPBASE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="package.", dir=TMPBASE)
    lock = open(LOCK, "w")
    t0 = time.time()
    fcntl.flock(lock, fcntl.LOCK_EX)
    print("lock after %.1f s" % (time.time() - t0))
    ours = False
    try:
        deb = build_deb(build, work)
        check_deb(deb)
        # never replace anything that is not a leftover of this test
        maint = installed()
        if maint is not None:
            check(maint == MAINTAINER, "a package 'reel' (%s) is installed: not touching it" % maint)
            print("removing a leftover reel package")
            dpkg("--purge", "reel")
        check(not os.path.exists("/usr/bin/reel"), "/usr/bin/reel exists, not from a package")
        ours = True
        dpkg("-i", deb)
        check(installed() == MAINTAINER, "reel not installed")
        check_installed(work)
        dpkg("--purge", "reel")
        ours = False
        check(installed() is None, "reel still installed")
        for path in ["/usr/bin/reel", "/usr/lib/systemd/system/reel@.service",
                     "/usr/share/man/man1/reel.1.gz"]:
            check(not os.path.exists(path), path + " left after dpkg --purge")
        print("ok: built, installed, ran, removed in %.1f s" % (time.time() - t0))
        return 0
    finally:
        if ours and installed() is not None:
            run(["dpkg", "--purge", "reel"], check=False)
        lock.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print("FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
