#!/bin/bash
# Profiles tls-splice's native engine during one scenario's transfer (not its handover):
#   bench/profile.sh <scenario> [perf.data]      then: perf report -i perf.data --no-children
# Runs the scenario once with --tools native, waits for the case process to signal that the
# transfer has started (BENCH_MARK_FILE), and records that process for 0.8 s.
set -euo pipefail
scenario=${1:?usage: bench/profile.sh <scenario> [perf.data]}
out=${2:-perf.data}
command -v perf >/dev/null || { echo "profile.sh: needs perf (linux-perf)" >&2; exit 1; }
cd "$(dirname "$0")/.."
mark=$(mktemp -u /tmp/tls-splice-mark.XXXXXX)
BENCH_MARK_FILE=$mark node bench/run.mjs --only "$scenario" --tools native --runs 1 \
  --no-micro --no-save &
runner=$!
for _ in $(seq 1 1200); do [ -f "$mark" ] && break; sleep 0.05; done
[ -f "$mark" ] || { echo "profile.sh: the transfer never started" >&2; kill "$runner"; exit 1; }
pid=$(pgrep -n -f bench/case.mjs)
perf record -F 999 -g -o "$out" -p "$pid" -- sleep 0.8 >/dev/null 2>&1 || true
wait "$runner"
rm -f "$mark"
echo "profile.sh: $out (perf report -i $out --no-children --sort dso,sym)"
