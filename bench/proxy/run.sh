#!/bin/bash
# Proxy benchmark: reel record vs direct-to-origin vs mitmdump -w, all in one
# run against the same nginx origin. See bench/README.md ("proxy") and
# docs/benchmarks.md ("Proxy") for what each line measures.
#
#   bench/proxy/run.sh
#
# Environment (defaults in brackets):
#   BUILD_DIR     reel build directory, configured RelWithDebInfo without
#                 sanitizers and built here [build]
#   BENCH_TMP     parent of the temporary directory [/tmp]
#   DURATION      seconds per throughput run [10]
#   CONNS         keep-alive connections for 100 B responses [50]
#   CONNS_1M      keep-alive connections for 1 MiB responses [10]
#   CONNS_TLS     concurrent clients for new HTTPS connections [8]
#   LAT_RATE      request rate of the paced latency run [5000]
#   RSS_REQUESTS  requests proxied for the RSS line [1000000]
#   SECTIONS      which parts to run [A B C D E]; the table needs all five,
#                 a partial run only logs its figures (stderr)
#   KEEP_TMP=1    keep the temporary directory (sessions, logs)
#   BENCH_NICE    niceness for this script and everything it starts [-10 when
#                 root, else unchanged]: on a shared machine it keeps other
#                 work from taking the CPU from the baseline and the proxies
#                 alike; set it to 0 to leave priorities alone
#
# Installs wrk, nginx-light, mitmproxy and openssl with apt-get when missing.
# Everything it starts (nginx, reel, mitmdump) listens on 127.0.0.1 on
# ephemeral ports and is stopped by PID on exit. Output: the machine, the
# commands, a log of every run and a markdown table of the figures.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
dur=${DURATION:-10}
conns=${CONNS:-50}
conns_1m=${CONNS_1M:-10}
conns_tls=${CONNS_TLS:-8}
lat_rate=${LAT_RATE:-5000}
sections=${SECTIONS:-A B C D E}
want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
rss_requests=${RSS_REQUESTS:-1000000}
nginx_workers=1
wrk_threads=2

log() { printf '%s\n' "$*" >&2; }

bench_nice=${BENCH_NICE:-}
[ -z "$bench_nice" ] && [ "$(id -u)" -eq 0 ] && bench_nice=-10
if [ -n "$bench_nice" ] && [ "$bench_nice" != 0 ]; then
    renice -n "$bench_nice" -p $$ >/dev/null
fi

# ---- tools ----
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v mitmdump >/dev/null || need+=(mitmproxy)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "run.sh: missing ${need[*]} and not root: install them first"
        exit 1
    fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREEL_SANITIZE=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target reel >/dev/null
reel=$build/reel

# ---- temporary directory and cleanup ----
tmp=$(mktemp -d "${BENCH_TMP:-/tmp}/reel-pbench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT: waits until something accepts on 127.0.0.1:PORT
    for _ in $(seq 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    log "nothing listens on port $1"
    return 1
}

# ---- helpers built for this run ----
cc -O2 -pthread -o "$tmp/loadgen" "$repo/bench/proxy/loadgen.c" $(pkg-config --libs openssl)
# shellcheck disable=SC2046 # pkg-config output is meant to split
cc -O2 -pthread -I"$repo/src" -I"$build/gen" -o "$tmp/store_rate" "$repo/bench/proxy/store_rate.c" \
    "$build/libreel_session.a" "$build/libreel_base.a" \
    $(pkg-config --libs libzstd sqlite3 libprotobuf-c jansson yaml-0.1 zlib libbrotlidec libpcre2-8)

# ---- origin: private CA, certificate for 127.0.0.1, files, nginx ----
mkdir -p "$tmp/www" "$tmp/nginx/tmp" "$tmp/pki"
(
    cd "$tmp/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout ca.key -out ca.pem -subj "/CN=reel bench origin CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout origin.key -out origin.csr -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in origin.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out origin.pem 2>/dev/null
)
origin_ca=$tmp/pki/ca.pem
printf '%099d\n' 0 | tr 0 x >"$tmp/www/100b"
# 1 MiB of text (C headers: sorted, concatenated, cut at 1 MiB), so that
# the store has real compression work to do.
find /usr/include -type f -name '*.h' -print0 | LC_ALL=C sort -z | xargs -0 cat 2>/dev/null |
    head -c 1048576 >"$tmp/www/1m" || true
[ "$(wc -c <"$tmp/www/1m")" -eq 1048576 ] || { log "could not build the 1 MiB body"; exit 1; }
chmod -R a+rX "$tmp/www"
chmod a+x "$tmp"

http_port=$(free_port)
https_port=$(free_port)
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
cat >"$tmp/nginx/nginx.conf" <<EOF
$user_line
worker_processes $nginx_workers;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/tmp;
    proxy_temp_path $tmp/nginx/tmp;
    fastcgi_temp_path $tmp/nginx/tmp;
    uwsgi_temp_path $tmp/nginx/tmp;
    scgi_temp_path $tmp/nginx/tmp;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    sendfile on;
    server { listen 127.0.0.1:$http_port; root $tmp/www; }
    server {
        listen 127.0.0.1:$https_port ssl;
        ssl_certificate $tmp/pki/origin.pem;
        ssl_certificate_key $tmp/pki/origin.key;
        root $tmp/www;
    }
}
EOF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>>"$tmp/nginx/error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port "$http_port"
wait_port "$https_port"
origin=http://127.0.0.1:$http_port
origin_tls=https://127.0.0.1:$https_port

# ---- reel and mitmdump ----
export REEL_HOME=$tmp/reel-home XDG_DATA_HOME=$tmp/xdg-data XDG_CONFIG_HOME=$tmp/xdg-config
reel_pid=""
reel_port=""
start_reel() { # SESSION [--set K=V]...
    local session=$1
    shift
    "$reel" record "$session" --listen 127.0.0.1:0 --set "upstream_trusted_ca=$origin_ca" "$@" \
        2>"$tmp/reel-$session.err" &
    reel_pid=$!
    pids+=("$reel_pid")
    reel_port=""
    for _ in $(seq 200); do
        reel_port=$(sed -n 's/.*proxy listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/reel-$session.err")
        [ -n "$reel_port" ] && break
        kill -0 "$reel_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$reel_port" ] || { log "reel did not start:"; cat "$tmp/reel-$session.err" >&2; exit 1; }
}
stop_reel() { # SIGINT, then wait for the exit (flushes the session)
    kill -INT "$reel_pid"
    local rc=0
    wait "$reel_pid" || rc=$?
    forget_pid "$reel_pid"
    reel_pid=""
    [ "$rc" -eq 0 ] || log "reel exited with status $rc"
}
reel_hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$reel_pid/status"; }
reel_rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$reel_pid/status"; }
session_counts() { # SESSION -> "flows complete error"
    "$reel" show "$1" --json | python3 -c 'import json, sys
d = json.load(sys.stdin); s = d["states"]
print(d["flows"], s["complete"], s["error"] + s["interrupted"] + s["open"])'
}
session_errors() { # SESSION -> counts of error messages (to stderr log)
    "$reel" flows "$1" --json | python3 -c 'import json, sys, collections
c = collections.Counter(f["error"] for f in json.load(sys.stdin) if f["state"] != "complete")
for m, n in c.most_common(5): print("    %7d x %s" % (n, m))'
}

# CPU accounting (utime + stime from /proc, in clock ticks)
clk_tck=$(getconf CLK_TCK)
ticks() { # PID [main|others|all]: ticks of the process's threads
    local pid=$1 which=${2:-all} t sum=0 v
    for t in /proc/"$pid"/task/*; do
        v=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)
        case $which in
        main) [ "${t##*/}" = "$pid" ] && sum=$((sum + v)) ;;
        others) [ "${t##*/}" != "$pid" ] && sum=$((sum + v)) ;;
        *) sum=$((sum + v)) ;;
        esac
    done
    echo "$sum"
}
nginx_ticks() {
    local sum=0 c
    for c in $(pgrep -P "$nginx_pid"); do sum=$((sum + $(ticks "$c"))); done
    echo "$sum"
}
# cpu_begin / cpu_end KEY REQUESTS: CPU microseconds per request of nginx's
# workers, reel's loop thread and other threads (store), and mitmdump, for
# whichever of them is running: R[KEY.cpu_nginx], R[KEY.cpu_loop],
# R[KEY.cpu_store], R[KEY.cpu_mitm].
declare -A C0
cpu_begin() {
    C0[nginx]=$(nginx_ticks)
    C0[loop]=0 C0[store]=0 C0[mitm]=0
    if [ -n "$reel_pid" ] && kill -0 "$reel_pid" 2>/dev/null; then
        C0[loop]=$(ticks "$reel_pid" main)
        C0[store]=$(ticks "$reel_pid" others)
    fi
    if [ -n "$mitm_pid" ] && kill -0 "$mitm_pid" 2>/dev/null; then C0[mitm]=$(ticks "$mitm_pid"); fi
}
per_req() { awk -v t="$1" -v n="$2" -v hz="$clk_tck" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "n/a" }'; }
cpu_end() {
    local key=$1 n=$2
    R[$key.cpu_nginx]=$(per_req $(($(nginx_ticks) - C0[nginx])) "$n")
    if [ -n "$reel_pid" ] && kill -0 "$reel_pid" 2>/dev/null; then
        R[$key.cpu_loop]=$(per_req $(($(ticks "$reel_pid" main) - C0[loop])) "$n")
        R[$key.cpu_store]=$(per_req $(($(ticks "$reel_pid" others) - C0[store])) "$n")
    fi
    if [ -n "$mitm_pid" ] && kill -0 "$mitm_pid" 2>/dev/null; then
        R[$key.cpu_mitm]=$(per_req $(($(ticks "$mitm_pid") - C0[mitm])) "$n")
    fi
}

mitm_pid=""
mitm_port=""
start_mitm() { # NAME
    mitm_port=$(free_port)
    mitmdump -q --listen-host 127.0.0.1 -p "$mitm_port" -w "$tmp/mitm-$1.flows" \
        --set confdir="$tmp/mitm-conf" --set ssl_verify_upstream_trusted_ca="$origin_ca" \
        >"$tmp/mitm-$1.log" 2>&1 &
    mitm_pid=$!
    pids+=("$mitm_pid")
    wait_port "$mitm_port"
}
stop_mitm() {
    kill -INT "$mitm_pid" 2>/dev/null || true
    wait "$mitm_pid" 2>/dev/null || true
    forget_pid "$mitm_pid"
    mitm_pid=""
}

# ---- load ----
declare -A R # results
lua=$repo/bench/proxy/absolute.lua
to_us() { # "811.00us" / "2.01ms" / "1.20s" -> microseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000;
        else if (v ~ /m$/) m = 60e6; else m = 1e6; printf "%.0f", n * m }'
}
# run_wrk KEY CONNS URL_PATH [PROXY_PORT]: plain HTTP through wrk (absolute
# form through a proxy); sets R[KEY.rps], R[KEY.n], R[KEY.p50], R[KEY.p99].
run_wrk() {
    local key=$1 c=$2 path=$3 port=${4:-} out
    out=$tmp/wrk-$key.txt
    cpu_begin
    if [ -n "$port" ]; then
        log "\$ TARGET=$origin$path wrk -t$wrk_threads -c$c -d${dur}s --latency -s bench/proxy/absolute.lua http://127.0.0.1:$port/"
        TARGET=$origin$path wrk -t"$wrk_threads" -c"$c" -d"${dur}s" --latency -s "$lua" \
            "http://127.0.0.1:$port/" >"$out"
    else
        log "\$ wrk -t$wrk_threads -c$c -d${dur}s --latency $origin$path"
        wrk -t"$wrk_threads" -c"$c" -d"${dur}s" --latency "$origin$path" >"$out"
    fi
    sed 's/^/    /' "$out" >&2
    R[$key.rps]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    R[$key.n]=$(awk '/requests in/ {print $1}' "$out")
    R[$key.p50]=$(to_us "$(awk '$1 == "50%" {print $2}' "$out")")
    R[$key.p99]=$(to_us "$(awk '$1 == "99%" {print $2}' "$out")")
    R[$key.bad]=$(awk '/Non-2xx|Socket errors/ {print}' "$out" | tr '\n' ' ')
    cpu_end "$key" "${R[$key.n]}"
}
# run_loadgen KEY ARGS...: sets R[KEY.<field>] from loadgen's key=value line
run_loadgen() {
    local key=$1 line kv
    shift
    log "\$ loadgen $*"
    cpu_begin
    line=$("$tmp/loadgen" --label "$key" "$@" 2> >(sed 's/^/    /' >&2))
    for kv in $line; do R[$key.${kv%%=*}]=${kv#*=}; done
    cpu_end "$key" "${R[$key.requests]}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (a + b) / 2 }'; }
mib() { awk -v r="$1" 'BEGIN { printf "%.1f", r }'; } # 1 MiB responses: req/s = MiB/s
verdict() { awk -v v="$1" -v g="$2" -v dir="${3:-ge}" 'BEGIN {
    if (v == "n/a") print "n/a"; else if ((dir == "ge" && v >= g) || (dir == "lt" && v < g)) print "met"; else print "**not met**" }'; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "## reel proxy benchmark"
log "origin: nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'), worker_processes $nginx_workers, $origin and $origin_tls"
log "tmp: $tmp"

# ---- A. 100 B over keep-alive ----
if want A; then
    log ""
    log "### A. 100 B responses, keep-alive, $conns connections"
    run_wrk direct1 "$conns" /100b
    start_reel ka-on
    run_wrk reel_on "$conns" /100b "$reel_port"
    stop_reel
    read -r "R[reel_on.flows]" "R[reel_on.complete]" "R[reel_on.errors]" < <(session_counts ka-on)
    log "    session ka-on: ${R[reel_on.flows]} flows, ${R[reel_on.complete]} complete, ${R[reel_on.errors]} not complete; wrk counted ${R[reel_on.n]}"
    [ "${R[reel_on.errors]}" -eq 0 ] || session_errors ka-on >&2
    start_reel ka-off --set capture=off
    run_wrk reel_off "$conns" /100b "$reel_port"
    stop_reel
    start_mitm ka
    run_wrk mitm "$conns" /100b "$mitm_port"
    stop_mitm
    R[mitm.flows_bytes]=$(stat -c %s "$tmp/mitm-ka.flows")
    run_wrk direct2 "$conns" /100b
    R[direct.rps]=$(mean "${R[direct1.rps]}" "${R[direct2.rps]}")

fi

# ---- B. latency at a fixed rate ----
if want B; then
    log ""
    log "### B. latency at $lat_rate req/s over $conns keep-alive connections (paced, from the scheduled send time)"
    run_loadgen lat_direct --url "$origin/100b" -c "$conns" -d "$dur" --rate "$lat_rate"
    start_reel lat
    run_loadgen lat_reel --url "$origin/100b" --proxy "127.0.0.1:$reel_port" -c "$conns" -d "$dur" --rate "$lat_rate"
    stop_reel
    start_reel lat-off --set capture=off
    run_loadgen lat_reel_off --url "$origin/100b" --proxy "127.0.0.1:$reel_port" -c "$conns" -d "$dur" --rate "$lat_rate"
    stop_reel

fi

# ---- C. 1 MiB responses ----
if want C; then
    log ""
    log "### C. 1 MiB responses, keep-alive, $conns_1m connections"
    run_wrk big_direct "$conns_1m" /1m
    start_reel big-off --set capture=off
    run_wrk big_off "$conns_1m" /1m "$reel_port"
    stop_reel
    start_reel big-on
    run_wrk big_on "$conns_1m" /1m "$reel_port"
    stop_reel
    read -r "R[big_on.flows]" "R[big_on.complete]" "R[big_on.errors]" < <(session_counts big-on)
    log "    session big-on: ${R[big_on.flows]} flows, ${R[big_on.complete]} complete, ${R[big_on.errors]} not complete; wrk counted ${R[big_on.n]}"
    [ "${R[big_on.errors]}" -eq 0 ] || session_errors big-on >&2
    start_reel big-lossless --set capture=lossless
    run_wrk big_lossless "$conns_1m" /1m "$reel_port"
    stop_reel
    read -r "R[big_lossless.flows]" "R[big_lossless.complete]" "R[big_lossless.errors]" < <(session_counts big-lossless)
    log "    session big-lossless: ${R[big_lossless.flows]} flows, ${R[big_lossless.complete]} complete, ${R[big_lossless.errors]} not complete; wrk counted ${R[big_lossless.n]}"
    log "\$ store_rate --home ... --body 1m --seconds $dur --fsync block"
    mkdir -p "$tmp/store-home"
    line=$("$tmp/store_rate" --home "$tmp/store-home" --body "$tmp/www/1m" --seconds "$dur" --fsync block 2> >(sed 's/^/    /' >&2))
    for kv in $line; do R[store.${kv%%=*}]=${kv#*=}; done
    start_mitm big
    run_wrk big_mitm "$conns_1m" /1m "$mitm_port"
    stop_mitm

fi

# ---- D. new HTTPS connections through CONNECT ----
if want D; then
    log ""
    log "### D. new HTTPS connections: CONNECT + TLS handshake + GET 100 B + close, $conns_tls clients"
    run_loadgen tls_direct --url "$origin_tls/100b" --cafile "$origin_ca" --new -c "$conns_tls" -d "$dur"
    start_reel tls
    reel_ca=$("$reel" ca --path)
    run_loadgen tls_reel_warm --url "$origin_tls/100b" --proxy "127.0.0.1:$reel_port" --cafile "$reel_ca" --new -c 1 -n 1
    run_loadgen tls_reel --url "$origin_tls/100b" --proxy "127.0.0.1:$reel_port" --cafile "$reel_ca" --new -c "$conns_tls" -d "$dur"
    stop_reel
    read -r "R[tls_reel.flows]" "R[tls_reel.complete]" "R[tls_reel.errors]" < <(session_counts tls)
    log "    session tls: ${R[tls_reel.flows]} flows, ${R[tls_reel.complete]} complete, ${R[tls_reel.errors]} not complete; loadgen counted ${R[tls_reel.requests]} + 1 warm-up"
    [ "${R[tls_reel.errors]}" -eq 0 ] || session_errors tls >&2
    start_mitm tls
    run_loadgen tls_mitm_warm --url "$origin_tls/100b" --proxy "127.0.0.1:$mitm_port" --cafile "$tmp/mitm-conf/mitmproxy-ca-cert.pem" --new -c 1 -n 1
    run_loadgen tls_mitm --url "$origin_tls/100b" --proxy "127.0.0.1:$mitm_port" --cafile "$tmp/mitm-conf/mitmproxy-ca-cert.pem" --new -c "$conns_tls" -d "$dur"
    stop_mitm

fi

# ---- E. RSS over RSS_REQUESTS proxied requests ----
if want E; then
    log ""
    log "### E. reel RSS over $rss_requests requests (100 B, keep-alive, $conns connections, capture on)"
    start_reel rss
    run_loadgen rss_warm --url "$origin/100b" --proxy "127.0.0.1:$reel_port" -c 1 -n 1
    R[rss.hwm0]=$(reel_hwm_kib)
    rss_total=0
    rss_curve=""
    rss_table=""
    rss_start=$(date +%s)
    while [ "$rss_total" -lt "$rss_requests" ]; do
        run_wrk rss_chunk "$conns" /100b "$reel_port"
        rss_total=$((rss_total + ${R[rss_chunk.n]}))
        rss_curve="$rss_curve $rss_total:$(reel_rss_kib)/$(reel_hwm_kib)"
        read -r sf sc se < <(session_counts rss)
        rss_table="$rss_table
| $rss_total | ${R[rss_chunk.rps]} | $(reel_rss_kib) | $(reel_hwm_kib) | $sf | $se | ${R[rss_chunk.cpu_loop]} | ${R[rss_chunk.cpu_store]} |"
        log "    after $rss_total requests: VmRSS $(reel_rss_kib) KiB, VmHWM $(reel_hwm_kib) KiB; session so far: $sf flows indexed, $se not complete; CPU us/request loop ${R[rss_chunk.cpu_loop]}, store ${R[rss_chunk.cpu_store]}"
    done
    R[rss.secs]=$(($(date +%s) - rss_start))
    R[rss.hwm1]=$(reel_hwm_kib)
    R[rss.rss1]=$(reel_rss_kib)
    stop_reel
    read -r "R[rss.flows]" "R[rss.complete]" "R[rss.errors]" < <(session_counts rss)
    log "    session rss: ${R[rss.flows]} flows, ${R[rss.complete]} complete, ${R[rss.errors]} not complete; wrk counted $rss_total + 1 warm-up"
    [ "${R[rss.errors]}" -eq 0 ] || session_errors rss >&2

fi

if [ "$sections" != "A B C D E" ]; then
    log "partial run (SECTIONS=$sections): no table"
    exit 0
fi

# ---- table ----
r_on=$(ratio "${R[reel_on.rps]}" "${R[direct.rps]}")
r_off=$(ratio "${R[reel_off.rps]}" "${R[direct.rps]}")
r_mitm=$(ratio "${R[mitm.rps]}" "${R[direct.rps]}")
x_mitm=$(ratio "${R[reel_on.rps]}" "${R[mitm.rps]}")
big_intact=$(awk -v c="${R[big_on.complete]}" -v d="$dur" 'BEGIN { printf "%.1f", c / d }')
r_big_off=$(ratio "${R[big_off.rps]}" "${R[big_direct.rps]}")
r_big_on=$(ratio "${R[big_on.rps]}" "${R[store.mib_per_s]}")
r_big_intact=$(ratio "$big_intact" "${R[store.mib_per_s]}")
r_big_lossless=$(ratio "${R[big_lossless.rps]}" "${R[store.mib_per_s]}")
r_big_mitm=$(ratio "${R[big_mitm.rps]}" "${R[big_direct.rps]}")
x_tls=$(ratio "${R[tls_reel.rate]}" "${R[tls_mitm.rate]}")
added_p99=$(awk -v a="${R[lat_reel.p99_us]}" -v b="${R[lat_direct.p99_us]}" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
added_p99_off=$(awk -v a="${R[lat_reel_off.p99_us]}" -v b="${R[lat_direct.p99_us]}" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
added_p99_sat=$(awk -v a="${R[reel_on.p99]}" -v b="${R[direct1.p99]}" 'BEGIN { printf "%.2f", (a - b) / 1000 }')
hwm_mib=$(awk -v k="${R[rss.hwm1]}" 'BEGIN { printf "%.1f", k / 1024 }')
hwm0_mib=$(awk -v k="${R[rss.hwm0]}" 'BEGIN { printf "%.1f", k / 1024 }')
rss_ok=$(verdict "$hwm_mib" 64 lt)
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }

cat <<EOF

## reel proxy benchmark

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- command: \`DURATION=$dur CONNS=$conns CONNS_1M=$conns_1m CONNS_TLS=$conns_tls LAT_RATE=$lat_rate RSS_REQUESTS=$rss_requests bench/proxy/run.sh\`
- commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" status --porcelain -- src 2>/dev/null | grep -q . && echo ' (src/ has uncommitted changes)' || true)
- machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r); sessions on $(df -T "$tmp" | awk 'NR == 2 {print $2}')
- origin: nginx $("$nginx_bin" -v 2>&1 | sed 's/.*\///'), worker_processes $nginx_workers, access_log off, TLS with a P-256 certificate from a private CA
- clients: $(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}') (-t$wrk_threads, ${dur}s runs), bench/proxy/loadgen.c; mitmproxy $(mitmdump --version 2>/dev/null | awk '/^Mitmproxy/ {print $2}') as \`mitmdump -q -w FILE\` verifying the origin against its CA
- priority: niceness $(ps -o ni= -p $$ | tr -d ' ') for the script and everything it starts (nginx, reel, mitmdump, wrk, loadgen, store_rate)
- load average (1/5/15 min) when the run started: $load_start; when it ended: $(cut -d' ' -f1-3 /proc/loadavg) (this script alone keeps about 2 busy)
- reel: \`reel record\` with defaults (capture on, fsync block) and \`upstream_trusted_ca\`, one fresh session per line

| figure | direct | reel | ratio | goal | |
| --- | ---: | ---: | ---: | --- | --- |
| 100 B keep-alive, $conns conns, capture on: req/s | ${R[direct.rps]} (runs: ${R[direct1.rps]}, ${R[direct2.rps]}) | ${R[reel_on.rps]} | $r_on of direct | >= 0.40 | $(verdict "$r_on" 0.40) |
| same, mitmdump -w: req/s | | ${R[mitm.rps]} (mitmdump) | $r_mitm of direct; reel = ${x_mitm}x mitmdump | (~25x) | |
| same, reel capture off: req/s | | ${R[reel_off.rps]} | $r_off of direct | | |
| every request recorded (100 B run) | ${R[reel_on.n]} by wrk | ${R[reel_on.flows]} flows, ${R[reel_on.complete]} complete | | all | $( [ "${R[reel_on.complete]}" -ge "${R[reel_on.n]}" ] && echo met || echo '**not met**') |
| 1 MiB, $conns_1m conns, capture off: MiB/s | $(mib "${R[big_direct.rps]}") | $(mib "${R[big_off.rps]}") | $r_big_off of direct | >= 0.5 | $(verdict "$r_big_off" 0.5) |
| 1 MiB, capture on: MiB/s through reel | store alone: ${R[store.mib_per_s]} | $(mib "${R[big_on.rps]}") | $r_big_on of store | >= 0.8 | |
| 1 MiB, capture on: MiB/s recorded intact | store alone: ${R[store.mib_per_s]} | $big_intact (${R[big_on.complete]} of ${R[big_on.flows]} flows) | $r_big_intact of store | >= 0.8 | $(verdict "$r_big_intact" 0.8) |
| 1 MiB, capture lossless: MiB/s | store alone: ${R[store.mib_per_s]} | $(mib "${R[big_lossless.rps]}") (${R[big_lossless.complete]} of ${R[big_lossless.flows]} complete) | $r_big_lossless of store | (>= 0.8) | $(verdict "$r_big_lossless" 0.8) |
| 1 MiB, mitmdump -w: MiB/s | $(mib "${R[big_direct.rps]}") | $(mib "${R[big_mitm.rps]}") (mitmdump) | $r_big_mitm of direct | | |
| new HTTPS conns/s (CONNECT+TLS+GET+close), $conns_tls clients | ${R[tls_direct.rate]} (TLS direct to nginx) | ${R[tls_reel.rate]}; mitmdump ${R[tls_mitm.rate]} | ${x_tls}x mitmdump | >= 10x | $(verdict "$x_tls" 10) |
| latency at $lat_rate req/s, $conns conns: p50 / p99 | $(ms "${R[lat_direct.p50_us]}") / $(ms "${R[lat_direct.p99_us]}") | $(ms "${R[lat_reel.p50_us]}") / $(ms "${R[lat_reel.p99_us]}") | p99 +$added_p99 ms | < 1 ms added | $(verdict "$added_p99" 1 lt) |
| same, reel capture off: p50 / p99 | | $(ms "${R[lat_reel_off.p50_us]}") / $(ms "${R[lat_reel_off.p99_us]}") | p99 +$added_p99_off ms | | |
| latency saturated (wrk, 100 B run): p50 / p99 | $(ms "${R[direct1.p50]}") / $(ms "${R[direct1.p99]}") | $(ms "${R[reel_on.p50]}") / $(ms "${R[reel_on.p99]}") | p99 +$added_p99_sat ms | | |
| reel peak RSS (VmHWM) after 1 request / after $rss_total | | $hwm0_mib MiB / $hwm_mib MiB | | < 64 MiB, flat | $rss_ok |

CPU time per request (microseconds, from /proc/PID/task/*/stat; "store" = reel's threads other than the loop):

| run | requests | nginx | reel loop | reel store | mitmdump | client (loadgen) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
$(for k in direct1 reel_on reel_off mitm lat_direct lat_reel lat_reel_off big_direct big_off big_on big_lossless big_mitm tls_direct tls_reel tls_mitm; do
    n=${R[$k.n]:-${R[$k.requests]:-}}
    echo "| $k | $n | ${R[$k.cpu_nginx]:--} | ${R[$k.cpu_loop]:--} | ${R[$k.cpu_store]:--} | ${R[$k.cpu_mitm]:--} | ${R[$k.client_cpu_us]:--} |"
done)

RSS run, after each ${dur} s wrk run (one reel process; "indexed" and "not complete" from \`reel show --json\` while it records; CPU in microseconds per request):

| requests | req/s | VmRSS KiB | VmHWM KiB | flows indexed | not complete | CPU loop | CPU store |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |$rss_table

RSS run: $rss_total requests by wrk + 1 warm-up in ${R[rss.secs]} s; session: ${R[rss.flows]} flows, ${R[rss.complete]} complete, ${R[rss.errors]} not complete.
100 B capture-on session: ${R[reel_on.flows]} flows (${R[reel_on.complete]} complete, ${R[reel_on.errors]} not) for ${R[reel_on.n]} requests counted by wrk.
HTTPS session: ${R[tls_reel.flows]} flows (${R[tls_reel.complete]} complete) for ${R[tls_reel.requests]} + 1 requests counted by loadgen.
wrk errors: direct ${R[direct1.bad]:-none} / reel ${R[reel_on.bad]:-none} / mitmdump ${R[mitm.bad]:-none} / 1 MiB reel on ${R[big_on.bad]:-none}
EOF
