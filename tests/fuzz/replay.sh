#!/usr/bin/env bash
# Runs every input of one harness once: tests/fuzz/corpus/<harness>/* and
# tests/fuzz/regress/<harness>-*. Fails (with the sanitizer report) if any
# input crashes, leaks or breaks a harness check.
#   replay.sh BINARY HARNESS
set -euo pipefail
bin="$1" h="$2"
here="$(cd "$(dirname "$0")" && pwd)"
shopt -s nullglob
inputs=("$here"/corpus/"$h"/* "$here"/regress/"$h"-*)
if [ ${#inputs[@]} -eq 0 ]; then
  echo "replay: no inputs for $h" >&2
  exit 1
fi
mkdir -p "${TMPDIR:-/tmp}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Given files (not directories), libFuzzer runs each once and writes nothing.
exec "$bin" -timeout=60 -rss_limit_mb=4096 "${inputs[@]}"
