#!/usr/bin/env bash
# Runs each native test program in out/<build>/ and adds up their "N passed, N failed" lines.
# Usage: run_tests.sh OUT_DIR TEST...
set -u
out="$1"; shift
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
total_pass=0; total_fail=0; broken=()
for t in "$@"; do
  log="$out/$t.log"
  start=$(date +%s)
  timeout "${TEST_TIMEOUT:-900}" "$out/$t" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  line=$(grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
  p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
    broken+=("$t"); [ "$f" -eq 0 ] && f=1
    echo "---- $t exited $rc; last lines of $log:"; tail -40 "$log"
  fi
  printf '  %-28s %5d passed, %d failed  (%ss)\n' "$t" "$p" "$f" "$secs"
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
done
[ ${#broken[@]} -gt 0 ] && echo "failing programs: ${broken[*]}"
echo "native: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ ${#broken[@]} -eq 0 ]
