#!/usr/bin/python3
"""Burst benchmark: how large a burst of parallel downloads `reel record`
(capture=on) stores whole.

usage: bench/burst/run.py --reel PATH [--sizes 25,50,100,200,400] [--file-mb 2]
                          [--runs 1] [--set KEY=VALUE ...]

Starts an nginx origin serving one file of random bytes (--file-mb MiB) and
one `reel record` per burst (fresh session, capture=on, fsync=block unless
--set says otherwise), fires N downloads of the file through the proxy at
once (one `curl --parallel --parallel-max N`), stops reel with SIGINT and
counts the flows stored whole: state complete, no error, response body size
equal to the file, and the response body read back from the spool (with
docs/examples/read_spool.py, not through session.db) equal to the file,
byte for byte. Prints one markdown row per burst: N, MiB, time curl took,
flows stored whole, reel's peak RSS (VmHWM) and the capture warnings.

Everything listens on 127.0.0.1 on ephemeral ports and is stopped by PID.
Needs nginx, curl and openssl (bootstrap --test installs them)."""
import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def load_read_spool():
    spec = importlib.util.spec_from_file_location(
        "read_spool", os.path.join(REPO, "docs", "examples", "read_spool.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) if m else 0


def burst(proxyenv, rs, pb, root, origin, n, sets, file_hash, file_len, idx, verbose):
    session = "burst%d_%d" % (n, idx)
    reel = proxyenv.Reel(root, session, "capture=on", *sets)
    try:
        url = origin.url("/file")
        args = ["curl", "-s", "--parallel", "--parallel-immediate", "--parallel-max", str(n),
                "-x", reel.proxy]
        for _ in range(n):
            args += [url, "-o", "/dev/null"]
        t0 = time.monotonic()
        r = subprocess.run(args, capture_output=True, timeout=300)
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError("curl exited %d: %s" % (r.returncode, r.stderr[-500:]))
        hwm = vm_hwm_kib(reel.proc.pid)
        cpu = thread_cpu(reel.proc.pid) if verbose else ""
    finally:
        t1 = time.monotonic()
        reel.proc.send_signal(signal.SIGINT)
        code = reel.proc.wait(120)
        drain = time.monotonic() - t1
        log = reel.log()
        reel.stop()
    sdir = os.path.join(root, "home", session)
    db = sqlite3.connect(os.path.join(sdir, "session.db"))
    rows = db.execute("SELECT id, state, error, response_body_size FROM flows").fetchall()
    db.close()
    bodies = {}
    for rec in rs.records(sdir, pb):
        if rec.WhichOneof("event") == "response_body":
            h = bodies.setdefault(rec.flow_id, [hashlib.sha256(), 0])
            h[0].update(rec.response_body.data)
            h[1] += len(rec.response_body.data)
    whole = 0
    for fid, state, error, size in rows:
        h = bodies.get(fid)
        if (state == "complete" and error is None and size == file_len and h
                and h[1] == file_len and h[0].digest() == file_hash):
            whole += 1
    warnings = sorted(set(re.findall(r"reel: (capture [^:;(]*)", log)))
    if os.environ.get("BURST_DEBUG"):
        print(log, file=sys.stderr)
    return {"n": n, "flows": len(rows), "whole": whole, "took": took, "hwm": hwm,
            "exit": code, "warn": "; ".join(warnings), "drain": drain, "cpu": cpu}


def thread_cpu(pid):
    """CPU seconds of each thread of pid so far, in thread id order."""
    hz = os.sysconf("SC_CLK_TCK")
    out = []
    for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
        with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
            st = f.read().rsplit(")", 1)[1].split()
        out.append("%.2f" % ((int(st[11]) + int(st[12])) / hz))
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reel", default=os.environ.get("REEL"), required=not os.environ.get("REEL"))
    ap.add_argument("--sizes", default="25,50,100,200,400")
    ap.add_argument("--file-mb", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--threads", action="store_true",
                    help="also print the CPU seconds of each reel thread before it stops")
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    a = ap.parse_args()
    os.environ["REEL"] = os.path.abspath(a.reel)
    import proxyenv  # reads $REEL at import
    rs = load_read_spool()
    pb = rs.load_schema(os.path.join(REPO, "schema", "flow.proto"))
    root = tempfile.mkdtemp(prefix="reel-burst.", dir=a.tmp)
    origin = proxyenv.Origin(root)
    try:
        data = os.urandom(a.file_mb << 20)
        with open(os.path.join(origin.www, "file"), "wb") as f:
            f.write(data)
        file_hash = hashlib.sha256(data).digest()
        print("reel: %s; file %d MiB; sets: %s" % (a.reel, a.file_mb, " ".join(a.sets) or "-"))
        print()
        print("| burst | MiB | curl took | then reel exit took | flows | stored whole "
              "| reel VmHWM | warnings |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for n in [int(x) for x in a.sizes.split(",")]:
            for i in range(a.runs):
                r = burst(proxyenv, rs, pb, root, origin, n, a.sets, file_hash, len(data), i,
                          a.threads)
                print("| %d | %d | %.2f s | %.2f s | %d | **%d** | %.0f MiB | %s |" % (
                    n, n * a.file_mb, r["took"], r["drain"], r["flows"], r["whole"],
                    r["hwm"] / 1024, r["warn"] or "-"), flush=True)
                if a.threads:
                    print("thread CPU s (tid order):", r["cpu"], file=sys.stderr)
                shutil.rmtree(os.path.join(root, "home", "burst%d_%d" % (n, i)),
                              ignore_errors=True)
    finally:
        origin.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
