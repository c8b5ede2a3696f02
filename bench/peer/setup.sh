#!/usr/bin/env bash
# Installs the benchmark peer (better-auth + better-sqlite3) from package-lock.json.
# Idempotent: does nothing when node_modules already matches the lockfile and this node.
#
# better-sqlite3 is a native addon. Its install script is
#   prebuild-install || node-gyp rebuild --release
# and both halves normally download from outside the npm registry (a prebuilt binary from
# GitHub; node headers from nodejs.org). Neither host is reachable on the project machines,
# so this script:
#   * sets npm_config_build_from_source=true, which makes prebuild-install skip the download
#     and fall through to node-gyp (compiles the bundled SQLite amalgamation; ~1 min on 2 cores);
#   * points node-gyp at the headers that ship with the installed node
#     (npm_config_nodedir=<node prefix>, i.e. /usr for Debian's/NodeSource's nodejs package,
#     which installs /usr/include/node/{node.h,common.gypi,...}), so nothing is downloaded.
# Needs: node >= 20, npm, python3, make, g++.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
log="${TMPDIR:-/tmp}/keyward-bench-peer-setup.log"

say() { printf 'bench/peer setup: %s\n' "$*"; }

for tool in node npm; do
  command -v "$tool" >/dev/null || { say "$tool not found on PATH"; exit 1; }
done
node_version="$(node -p 'process.versions.node')"
node_major="${node_version%%.*}"
if [ "$node_major" -lt 20 ]; then
  say "node $node_version is too old (better-auth and better-sqlite3 12 need >= 20)"
  exit 1
fi

stamp_file="node_modules/.bench-peer-stamp"
stamp="$(cat package-lock.json | sha256sum | cut -d' ' -f1) node=$node_version abi=$(node -p 'process.versions.modules')"

binding_loads() {
  node -e 'const D = require("better-sqlite3"); const db = new D(":memory:"); db.prepare("select 1").get(); db.close();' 2>/dev/null
}

if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && binding_loads; then
  say "node_modules already matches package-lock.json for node $node_version; nothing to do"
  exit 0
fi

# Local node headers, so node-gyp never downloads them.
node_prefix="$(node -p 'process.config.variables.node_prefix || ""')"
candidates=("$node_prefix" "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")" /usr /usr/local)
nodedir=""
for prefix in "${candidates[@]}"; do
  h="$prefix/include/node/node_version.h"
  [ -n "$prefix" ] && [ -f "$h" ] && [ -f "$prefix/include/node/common.gypi" ] || continue
  hv="$(awk '/#define NODE_MAJOR_VERSION/{a=$3} /#define NODE_MINOR_VERSION/{b=$3} /#define NODE_PATCH_VERSION/{c=$3} END{print a"."b"."c}' "$h")"
  if [ "$hv" = "$node_version" ]; then nodedir="$prefix"; break; fi
done

export npm_config_build_from_source=true
if [ -n "$nodedir" ]; then
  export npm_config_nodedir="$nodedir"
  say "building native modules against local node headers in $nodedir/include/node (no download)"
else
  unset npm_config_nodedir || true
  say "WARNING: no node headers for node $node_version found under: ${candidates[*]}"
  say "WARNING: node-gyp will try to download them from nodejs.org, which only works with internet access"
fi

say "running npm ci (log: $log)"
start=$(date +%s)
if ! npm ci --no-audit --no-fund >"$log" 2>&1; then
  say "npm ci FAILED; last lines of $log:"
  tail -n 60 "$log" >&2
  exit 1
fi

if ! binding_loads; then
  say "npm ci succeeded but better-sqlite3 does not load; last lines of $log:"
  tail -n 30 "$log" >&2
  node -e 'require("better-sqlite3")' || true
  exit 1
fi
printf '%s' "$stamp" > "$stamp_file"

ver() { node -p "JSON.parse(require('fs').readFileSync('node_modules/$1/package.json','utf8')).version"; }
ba="$(ver better-auth)"
bs="$(ver better-sqlite3)"
sqlite="$(node -e 'const D=require("better-sqlite3"); const db=new D(":memory:"); console.log(db.prepare("select sqlite_version() v").get().v)')"
say "installed better-auth $ba, better-sqlite3 $bs (SQLite $sqlite) in $(( $(date +%s) - start ))s"
