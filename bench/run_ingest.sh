#!/bin/sh
# Builds reel (RelWithDebInfo, no sanitizers) and runs bench/ingest at the
# given flow count for each fsync policy, printing the machine, the exact
# commands and one markdown table per policy. See bench/README.md.
#
#   bench/run_ingest.sh [FLOWS] [POLICY...]      defaults: 1000000 block never
#
# Environment: BUILD_DIR (default build), BENCH_TMP (parent of the temporary
# sessions home, default /tmp), RUNS (query repetitions, default 7),
# CORPUS_LIST (file of text files to draw bodies from; default: scan
# /usr/include and /usr/share/doc).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
flows=${1:-1000000}
[ $# -gt 0 ] && shift
policies=${*:-block never}
build=${BUILD_DIR:-$repo/build}
runs=${RUNS:-7}

cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREEL_SANITIZE=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target reel ingest >/dev/null

home=$(mktemp -d "${BENCH_TMP:-/tmp}/reel-bench.XXXXXX")
trap 'rm -rf "$home"' EXIT INT TERM

echo "## reel ingest benchmark"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)"
echo "- machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
echo "- sessions on: $(df -T "$home" | awk 'NR == 2 {print $1 " (" $2 ")"}')"
echo "- build: $(cc --version | head -n1), CMAKE_BUILD_TYPE=RelWithDebInfo; libzstd $(pkg-config --modversion libzstd), SQLite $(pkg-config --modversion sqlite3)"
echo

for policy in $policies; do
    corpus=""
    [ -n "${CORPUS_LIST:-}" ] && corpus="--corpus-list $CORPUS_LIST"
    cmd="$build/bench/ingest --flows $flows --home $home/$policy --reel $build/reel --fsync $policy --runs $runs${corpus:+ $corpus}"
    echo "command: \`$cmd\`"
    # shellcheck disable=SC2086 # $corpus is meant to split
    "$build/bench/ingest" --flows "$flows" --home "$home/$policy" --reel "$build/reel" \
        --fsync "$policy" --runs "$runs" $corpus
    rm -rf "${home:?}/$policy"
    echo
done
