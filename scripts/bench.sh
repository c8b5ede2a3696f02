#!/usr/bin/env bash
# The whole benchmark in one command (docs/PERFORMANCE.md): builds the release binaries,
# installs the peer (better-auth) from the npm registry, runs every scenario against Keyward
# and the peer in one run, and writes bench/results/latest.{json,md} and the PNG charts.
#
#   scripts/bench.sh [--seconds N] [--no-peer]
#
# Distributed mode too when KEYWARD_BENCH_DATABASE_URL (PostgreSQL; the harness creates and
# drops a database of its own) and KEYWARD_BENCH_AMQP_URL are set, or under scripts/services.sh:
#   scripts/services.sh postgres rabbitmq -- scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}"
target="${CARGO_TARGET_DIR:-target}"

echo "== release build"
cargo build --release --locked -p keyward --bin keyward
cargo build --release --locked -p keyward-bench

if [[ " $* " != *" --no-peer "* ]]; then
  echo "== the peer (better-auth)"
  bench/peer/setup.sh
fi

if [ -n "${KEYWARD_TEST_DATABASE_URL:-}" ] && [ -n "${KEYWARD_TEST_AMQP_URL:-}" ]; then
  export KEYWARD_BENCH_DATABASE_URL="${KEYWARD_BENCH_DATABASE_URL:-$KEYWARD_TEST_DATABASE_URL}"
  export KEYWARD_BENCH_AMQP_URL="${KEYWARD_BENCH_AMQP_URL:-$KEYWARD_TEST_AMQP_URL}"
fi

echo "== run"
"$target/release/keyward-bench" --keyward "$target/release/keyward" "$@"

echo "== charts"
venv="$tools/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q matplotlib==3.10.7
fi
"$venv/bin/python" bench/plot.py bench/results/latest.json bench/results
