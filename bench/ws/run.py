#!/usr/bin/python3
"""WebSocket echo benchmark: reel record against direct, in one run.

usage: bench/ws/run.py [--build DIR] [--duration 10] [--conns 50]
                       [--sizes 100,1048576] [--repeats 3] [--keep]

Builds reel (RelWithDebInfo, no sanitizers) in --build (default build/)
and bench/ws/wsbench.c (cc -O2) into a temporary directory, starts the
wsbench echo server (C, a thread per connection) and two `reel record`
processes with fresh sessions (capture on, and capture off), then for each
message size runs `wsbench client` (C, --conns connections, each sending a
binary message and waiting for its echo) straight to the server and
through each reel (CONNECT, then the WebSocket handshake inside the
tunnel, as browsers send ws:// through a proxy). Each configuration runs
--repeats times for --duration seconds, interleaved (direct, on, off,
direct, ...), and the median is reported, with the CPU time of the echo
server and of reel per message (from /proc/PID/stat, all threads). At the
end reel (capture on) is stopped and its session is read back: flows,
their states and errors, and the messages in the index against the
messages sent.

Prints the machine, the commands and a markdown table (docs/benchmarks.md,
"WebSocket"). Everything listens on 127.0.0.1 and is stopped by PID."""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_us(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--sizes", default="100,1048576")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]

    subprocess.run(["cmake", "-S", REPO, "-B", a.build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                    "-DREEL_SANITIZE=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", a.build, "-j%d" % os.cpu_count(), "--target", "reel"],
                   check=True, stdout=subprocess.DEVNULL)
    os.environ["REEL"] = os.path.join(a.build, "reel")
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    import proxyenv

    tmp = tempfile.mkdtemp(prefix="reel-wsbench.")
    wsbench = os.path.join(tmp, "wsbench")
    subprocess.run(["cc", "-O2", "-pthread", "-o", wsbench, os.path.join(HERE, "wsbench.c"),
                    "-lcrypto"], check=True)
    procs, reels = [], {}
    try:
        srv = subprocess.Popen([wsbench, "server"], stdout=subprocess.PIPE)
        procs.append(srv)
        port = int(srv.stdout.readline().decode().split("=")[1])
        reels["on"] = proxyenv.Reel(tmp, "on")
        reels["off"] = proxyenv.Reel(tmp, "off", "capture=off")
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        log("## reel WebSocket echo benchmark")
        log("machine: %s, %d cores, %s; commit %s; load %s" % (
            platform.node(), os.cpu_count(), platform.release(), commit,
            open("/proc/loadavg").read().split()[:3]))
        log("$ bench/ws/run.py " + " ".join(sys.argv[1:]))
        results = {}  # (size, mode) -> [dict]
        sent = 0
        for size in sizes:
            for rep in range(a.repeats):
                modes = ["direct", "on", "off"]
                modes = modes[rep % 3:] + modes[:rep % 3]
                for mode in modes:
                    args = [wsbench, "client", "--target", "127.0.0.1:%d" % port, "-c",
                            str(a.conns), "-d", str(a.duration), "-s", str(size), "--label",
                            "%s %d" % (mode, size)]
                    pids = {"server": srv.pid}
                    if mode != "direct":
                        args += ["--proxy", "127.0.0.1:%d" % reels[mode].port]
                        pids["reel"] = reels[mode].proc.pid
                    before = {k: cpu_us(p) for k, p in pids.items()}
                    p = subprocess.run(args, capture_output=True, text=True, check=True)
                    log("  " + p.stderr.strip())
                    r = {k: float(v) for k, v in (kv.split("=") for kv in p.stdout.split())}
                    for k, pid in pids.items():
                        r[k + "_cpu_us"] = (cpu_us(pid) - before[k]) / max(r["messages"], 1)
                    results.setdefault((size, mode), []).append(r)
                    if mode == "on":
                        sent += int(r["messages"])
        log("load at the end: %s" % open("/proc/loadavg").read().split()[:3])

        # the session of capture on
        r_on = reels["on"]
        hwm = int([l for l in open("/proc/%d/status" % r_on.proc.pid)
                   if l.startswith("VmHWM")][0].split()[1])
        for r in reels.values():
            r.stop()
        flows = json.loads(r_on.cli("flows", "on", "--json").stdout)
        states, errors = {}, {}
        for f in flows:
            states[f["state"]] = states.get(f["state"], 0) + 1
            if f["error"]:
                key = f["error"].split(":")[0]
                errors[key] = errors.get(key, 0) + 1
        in_index = sum(f["messages"] for f in flows)
        expected = 2 * sent + 2 * len(flows)  # each message and its echo, two closes

        def med(size, mode, key):
            return statistics.median(r[key] for r in results[(size, mode)])

        print("| measure | direct | through reel, capture on | capture off | on / direct |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for size in sizes:
            if size < 4096:
                unit, key, fmt = "messages/s", "msg_per_s", "{:,.0f}"
            else:
                unit, key, fmt = "MiB/s", "mib_per_s", "{:,.1f}"
            d, on, off = (med(size, m, key) for m in ("direct", "on", "off"))
            print("| %s B echo, %d conns: %s | %s | %s | %s | **%.3f** |" % (
                "{:,}".format(size), a.conns, unit, fmt.format(d), fmt.format(on),
                fmt.format(off), on / d))
            print("| same: round trip p50 / p99 (ms) | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f"
                  " | |" % tuple(med(size, m, k) / 1000 for m in ("direct", "on", "off")
                                 for k in ("p50_us", "p99_us")))
            print("| same: CPU us per message: echo server / reel | %.1f / | %.1f / %.1f | "
                  "%.1f / %.1f | |" % (med(size, "direct", "server_cpu_us"),
                                      med(size, "on", "server_cpu_us"),
                                      med(size, "on", "reel_cpu_us"),
                                      med(size, "off", "server_cpu_us"),
                                      med(size, "off", "reel_cpu_us")))
        print()
        print("capture on: %d flows (%s), errors %s; messages in the index %d of %d sent "
              "(%.1f%%); reel peak RSS %.1f MiB" % (
                  len(flows), ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())),
                  errors or "none", in_index, expected, 100.0 * in_index / max(expected, 1),
                  hwm / 1024))
    finally:
        for r in reels.values():
            if r.proc.poll() is None:
                r.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
        if a.keep:
            log("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
