#!/usr/bin/env bash
# The soak run (docs/PERFORMANCE.md, "Soak: 30 minutes of mixed traffic"): builds the release
# binaries, runs one embedded node under mixed traffic with its memory sampled every minute,
# and writes bench/results/soak-sqlite.{json,md} and the chart bench/results/soak-rss.png.
#
#   scripts/soak.sh                       # 30 minutes
#   scripts/soak.sh --minutes 2 --sample-secs 15 --out /tmp/soak-check   # a check of the harness
#   scripts/soak.sh --node-env KEYWARD_CACHE__TOKENS=8192 ...             # a setting for the node
#
# Every other flag goes to the harness (`keyward-bench`'s `soak` binary; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}"
target="${CARGO_TARGET_DIR:-target}"

echo "== release build"
# NOTE: one build of both packages: built apart, feature unification differs and each
# rebuilds the shared crates.
cargo build --release --locked -p keyward -p keyward-bench --bin keyward --bin soak

out="bench/results"
name="soak-sqlite"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --out) out="${args[$((i + 1))]}" ;;
    --out=*) out="${args[$i]#--out=}" ;;
    --name) name="${args[$((i + 1))]}" ;;
    --name=*) name="${args[$i]#--name=}" ;;
  esac
done

echo "== run"
"$target/release/soak" --keyward "$target/release/keyward" "$@"

echo "== chart"
venv="$tools/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib==3.10.7
fi
chart="$out/soak-rss.png"
[ "$name" = "soak-sqlite" ] || chart="$out/$name-rss.png"
"$venv/bin/python" bench/plot_soak.py "$out/$name.json" "$chart"
