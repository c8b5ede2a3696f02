#!/usr/bin/env bash
# Fuzz every cargo-fuzz target in fuzz/ for a while each (docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 30
#
# Works on stable Rust: targets are built with `--sanitizer none`. Installs cargo-fuzz when
# missing into ${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}. Builds into
# ${KEYWARD_FUZZ_TARGET_DIR:-/var/tmp/keyward-fuzz-target}, so reruns are incremental.
# Each target starts from its committed seeds (fuzz/seeds/<target>/) plus whatever earlier
# runs kept in ${KEYWARD_FUZZ_CORPUS_DIR:-fuzz/corpus}/<target>/ (git-ignored).
# Exits non-zero on any crash, timeout or out-of-memory, naming the saved input and the
# command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-30}"
case "$secs" in
  '' | *[!0-9]* | 0) echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer)" >&2; exit 2 ;;
esac

tools="${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}"
export PATH="$tools/bin:$PATH"
export CARGO_TARGET_DIR="${KEYWARD_FUZZ_TARGET_DIR:-/var/tmp/keyward-fuzz-target}"
export CARGO_TERM_COLOR=never

# Pinned so every machine fuzzes with the same tool; --locked uses its tested dependencies.
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  echo "== installing cargo-fuzz $cargo_fuzz_version into $tools"
  cargo install --locked --root "$tools" --version "$cargo_fuzz_version" cargo-fuzz
fi

targets=$(cargo fuzz list)
echo "== targets: $(echo $targets)"

# The committed fuzz/Cargo.lock must be up to date (as `--locked` checks); cargo fuzz then
# builds with exactly those versions.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

# Build every target once up front, so no target's fuzzing time goes to compiling.
start=$SECONDS
cargo fuzz build --sanitizer none
echo "== built in $((SECONDS - start))s"

# Working corpora: git-ignored, kept between local runs so they keep growing.
corpora="${KEYWARD_FUZZ_CORPUS_DIR:-fuzz/corpus}"
failed=()
for t in $targets; do
  corpus="$corpora/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  if [ -d "fuzz/seeds/$t" ]; then cp -R "fuzz/seeds/$t/." "$corpus/"; fi
  log=$(mktemp "${TMPDIR:-/tmp}/keyward-fuzz-$t.XXXXXX")
  since=$(mktemp) # artifacts newer than this one are this run's
  echo
  echo "== $t: ${secs}s from $(find "$corpus" -type f | wc -l) inputs"
  # Flags after `--` go to libFuzzer: -timeout is per input (seconds), -rss_limit_mb per process.
  set +e
  cargo fuzz run --sanitizer none "$t" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  status=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "!! $t failed (exit $status); full log: $log"
    # The broken invariant (panic message) and libFuzzer's verdict, without the backtraces.
    sed -n '/panicked at/,/^stack backtrace:/p' "$log" | grep -v '^stack backtrace:' | head -n 40 || true
    grep -E 'ERROR: libFuzzer|^SUMMARY|Test unit written|^Base64' "$log" || true
    # Every input libFuzzer saved during this run (crash-*, timeout-*, oom-*, slow-unit-*).
    find "fuzz/artifacts/$t" -type f -newer "$since" | while read -r a; do
      echo "!! artifact: $a"
      echo "!!   reproduce: cargo fuzz run --sanitizer none $t $a"
    done
  else
    rm -f "$log"
  fi
  rm -f "$since"
done

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzzing FAILED: ${failed[*]} (docs/fuzzing.md: turning a crash into a regression test)"
  exit 1
fi
echo "== fuzzing passed: $(echo $targets | wc -w) targets, ${secs}s each, ${SECONDS}s in all"
