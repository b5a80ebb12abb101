#!/usr/bin/env bash
# npm run release [-- OUT_DIR]: the release tarball. Builds the binaries of every platform that
# gets one (npm run prebuild: linux-x64, and linux-arm64 cross-compiled), builds the TypeScript,
# refuses to pack unless both binaries are there and built for the right machine, packs with
# npm pack into OUT_DIR (default release/), and checks the tarball holds them. Prints the
# tarball's path on its last line.
#
# A plain `npm pack` has no such step on purpose: it packs whatever prebuilds/ holds, and a
# tarball without a binary for the consumer's platform builds from source with node-gyp at
# install (as a git clone does). Publish only what this script made.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=$(mkdir -p "${1:-release}" && cd "${1:-release}" && pwd)

npm run --silent prebuild
npm run --silent build:ts
node scripts/check-prebuilds.mjs

tarball_name=$(npm pack --silent --pack-destination "$out_dir" | tail -n 1)
tarball="$out_dir/$tarball_name"
contents=$(tar tzf "$tarball")
for binary in package/prebuilds/linux-x64/tls-splice.node package/prebuilds/linux-arm64/tls-splice.node; do
  grep -qx "$binary" <<<"$contents" || { echo "release: $tarball lacks $binary" >&2; exit 1; }
done
echo "release: $tarball"
echo "$tarball"
