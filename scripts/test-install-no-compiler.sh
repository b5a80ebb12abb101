#!/usr/bin/env bash
# A consumer with no compiler installs the release tarball and gets the native engine:
#
#   scripts/test-install-no-compiler.sh TARBALL
#
# The consumer project installs TARBALL with a PATH that holds only node, npm, npx and sh (no g++,
# cc, make or python3), with tls-splice's install script allowed to run (node-gyp-build: it
# would compile if no prebuild fitted), then runs scripts/splice-smoke.mjs: a native splice moving
# 4 MiB each way, checked by SHA-256, with the addon loaded from prebuilds/linux-x64/.
# Control: the same tarball without prebuilds/ must fail to install on that PATH, which shows the
# PATH really has no compiler and that the prebuild is what makes the difference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -f "$tarball" ] || { echo "usage: $0 TARBALL" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A PATH with Node and npm only.
mkdir -p "$work/bin"
for tool in node npm npx sh; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
bare_path="$work/bin"
for tool in g++ c++ cc gcc clang make python3 python; do
  if PATH="$bare_path" command -v "$tool" >/dev/null; then
    echo "no-compiler: $tool is still on the bare PATH" >&2
    exit 1
  fi
done

install_consumer() {   # DIR TARBALL: a fresh consumer project installs TARBALL on the bare PATH
  mkdir -p "$1"
  # allowScripts: npm 11 runs a dependency's install script only when the project allows it.
  echo '{ "name": "consumer", "version": "1.0.0", "private": true,
          "allowScripts": { "tls-splice": true } }' > "$1/package.json"
  (cd "$1" && PATH="$bare_path" npm install --no-audit --no-fund --foreground-scripts "$2")
}

echo "no-compiler: control, the tarball without prebuilds/ (must fail to install)"
mkdir -p "$work/unpacked"
tar xzf "$tarball" -C "$work/unpacked"
rm -rf "$work/unpacked/package/prebuilds"
tar czf "$work/no-prebuilds.tgz" -C "$work/unpacked" package
if install_consumer "$work/control" "$work/no-prebuilds.tgz" > "$work/control.log" 2>&1; then
  cat "$work/control.log" >&2
  echo "no-compiler: the tarball without prebuilds installed: the PATH is not bare, or the install script did not run" >&2
  exit 1
fi
grep -q 'node-gyp' "$work/control.log" || {
  cat "$work/control.log" >&2
  echo "no-compiler: the control failed, but not in node-gyp" >&2
  exit 1
}

echo "no-compiler: the release tarball"
install_consumer "$work/consumer" "$tarball" > "$work/install.log" 2>&1 || {
  cat "$work/install.log" >&2
  echo "no-compiler: npm install of $tarball failed without a compiler" >&2
  exit 1
}
grep -q '> node-gyp-build' "$work/install.log" || {
  cat "$work/install.log" >&2
  echo "no-compiler: tls-splice's install script (node-gyp-build) did not run" >&2
  exit 1
}
[ ! -e "$work/consumer/node_modules/tls-splice/build" ] || {
  echo "no-compiler: the install built the addon from source" >&2
  exit 1
}
PATH="$bare_path" node "$here/splice-smoke.mjs" "$work/consumer" "$repo/test/fixtures"
echo "no-compiler: ok"
