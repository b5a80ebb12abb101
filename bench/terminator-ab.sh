#!/bin/bash
# Interleaved A/B of TLS terminators under one-handshake-per-request load: CPU per new connection
# of the whole terminator process (all threads, /proc/<pid>/stat), side by side in one run.
#
#   bench/terminator-ab.sh [rounds] [seconds] KIND...
#
# KIND is `native` (tls-splice from this checkout), `native:/path/to/other/checkout` (another
# built tls-splice, e.g. a worktree of an older commit: A/B), or `js-pump` (plain Node).
# Backend: HAProxy answering 200 (mode http); load: wrk -t1 -c50 -H 'Connection: close'.
# Prints, per run, the CPU per new connection of the whole process and of its threads: the main
# thread, tls-splice's I/O threads (named tls-splice-io) and the rest (V8's GC workers, libuv's
# pool). With PERF=1, each terminator runs with --perf-basic-prof under `perf record -g`
# (perf.<n>.data in $TMPDIR), and bench/perf-phases.mjs splits its main thread by phase.
# Needs haproxy and wrk (Debian packages of the same names).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}; seconds=${2:-8}; shift 2 || true
kinds=("$@"); [ ${#kinds[@]} -gt 0 ] || kinds=(native js-pump)
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
backend_port=19101; port=19102
cat > "$work/backend.cfg" <<CFG
global
  maxconn 4000
  nbthread 1
defaults
  mode http
  timeout client 60s
  timeout connect 5s
  timeout server 60s
frontend backend
  bind 127.0.0.1:$backend_port
  http-request return status 200 content-type text/plain string ok
CFG
haproxy -db -f "$work/backend.cfg" > "$work/haproxy.log" 2>&1 &
sleep 0.5
# "tid comm ticks" for every thread of a process (utime + stime, in clock ticks).
threads() {
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(tr -d ' ' < "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done
}
n=0
for round in $(seq "$rounds"); do
  for kind in "${kinds[@]}"; do
    n=$((n + 1))
    tool=${kind%%:*}; pkg=""; [ "$kind" != "$tool" ] && pkg=${kind#*:}
    spec="{\"tool\":\"$tool\",\"port\":$port,\"backendPort\":$backend_port,\"certPath\":\"$ROOT/test/fixtures/server.pem\",\"keyPath\":\"$ROOT/test/fixtures/server-key.pem\"}"
    mkfifo "$work/in.$n"
    node_args=(); [ "${PERF:-}" = 1 ] && node_args=(--perf-basic-prof)
    TLS_SPLICE_BENCH_PKG=$pkg node "${node_args[@]}" "$ROOT/bench/terminator.mjs" "$spec" < "$work/in.$n" > "$work/term.$n.log" 2>&1 &
    pid=$!
    exec 3> "$work/in.$n"
    for _ in $(seq 50); do grep -q listening "$work/term.$n.log" && break; sleep 0.1; done
    wrk -t1 -c50 -d2s -H 'Connection: close' "https://127.0.0.1:$port/" > /dev/null  # warm-up
    perf_pid=""
    if [ "${PERF:-}" = 1 ]; then
      perf record -g -p "$pid" -o "${TMPDIR:-/tmp}/perf.$n.data" -- sleep "$seconds" > /dev/null 2>&1 &
      perf_pid=$!
    fi
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    threads "$pid" > "$work/threads0"
    rps=$(wrk -t1 -c50 -d"${seconds}s" -H 'Connection: close' "https://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    threads "$pid" > "$work/threads1"
    if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
    hz=$(getconf CLK_TCK)
    per() { awk -v t="$1" -v hz="$hz" -v r="$rps" -v s="$seconds" 'BEGIN { printf "%.2f", t * 1000 / hz / (r * s) }'; }
    split=$(join <(sort "$work/threads0") <(sort "$work/threads1") | awk -v main="$pid" '
      { d = $5 - $3; if ($1 == main) m += d; else if ($2 == "tls-splice-io") io += d; else o += d }
      END { print m + 0, io + 0, o + 0 }')
    read -r main_t io_t other_t <<< "$split"
    echo "round $round  $kind  new conn/s $rps  CPU ms per connection $(per $((t1 - t0)))" \
      "(main $(per "$main_t"), I/O threads $(per "$io_t"), other threads $(per "$other_t"))"
    if [ -n "$perf_pid" ]; then
      # Shares only: perf slows the process, so its ms per connection are not the unperturbed ones
      # (multiply the shares by a run's main-thread figure without PERF=1).
      node "$ROOT/bench/perf-phases.mjs" "${TMPDIR:-/tmp}/perf.$n.data" "$pid" | sed 's/^/    /'
    fi
    exec 3>&-
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
