#!/usr/bin/env bash
# Passkeys in a real browser (tests/browser/passkeys.py): headless Chromium with its virtual
# authenticator registers a passkey on a live node, signs in with it (passwordless and as a
# second factor) and checks that a replayed assertion is refused.
#
#   scripts/browser-passkeys.sh
#
# Does not build: takes the binary from $KEYWARD_BIN (default $CARGO_TARGET_DIR/debug/keyward,
# else target/debug/keyward). Installs Debian's chromium when /usr/bin/chromium is missing, and
# Playwright from PyPI into ${KEYWARD_BROWSER_VENV:-/var/tmp/keyward-browser-venv} (reused while
# the pin is unchanged). Never `playwright install`: it downloads a browser, which fails here.
set -euo pipefail
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"
cd "$(dirname "$0")/.."

playwright_pin="playwright==1.65.2"
venv="${KEYWARD_BROWSER_VENV:-/var/tmp/keyward-browser-venv}"
keyward="${KEYWARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/keyward}"

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
fail() { printf 'browser-passkeys: FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$keyward" ] || fail "no keyward binary at $keyward (cargo build --bin keyward, or set KEYWARD_BIN)"

work=$(mktemp -d /tmp/keyward-browser.XXXXXX)
keyward_pid=
cleanup() {
  local rc=$?
  if [ -n "$keyward_pid" ]; then
    kill "$keyward_pid" 2>/dev/null || true
    wait "$keyward_pid" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -s "$work/keyward.log" ]; then
    printf '\n== keyward log (last 40 lines)\n' >&2
    tail -n 40 "$work/keyward.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step "chromium"
[ -x /usr/bin/chromium ] || apt_install chromium
/usr/bin/chromium --version

step "playwright in $venv"
echo "$playwright_pin" >"$work/requirements.txt"
python_venv "$venv" "$work/requirements.txt"

step "start keyward serve ($keyward)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://localhost:$port"
# The public URL is on localhost, not 127.0.0.1: WebAuthn refuses IP addresses as RP IDs.
node_env=(
  KEYWARD_DATA_DIR="$work/data"
  KEYWARD_BIND="127.0.0.1:$port"
  KEYWARD_MANAGEMENT_BIND=127.0.0.1:0
  KEYWARD_PUBLIC_URL="$base"
  KEYWARD_LOG=info
)
env "${node_env[@]}" "$keyward" serve >"$work/keyward.out" 2>"$work/keyward.log" &
keyward_pid=$!
for ((i = 0; ; i++)); do
  grep -q '^keyward listening on ' "$work/keyward.out" && break
  kill -0 "$keyward_pid" 2>/dev/null || fail "keyward serve exited before listening"
  [ "$i" -lt 600 ] || fail "keyward serve did not listen within 60 s"
  sleep 0.1
done
cat "$work/keyward.out"

step "create a verified user"
email=ada@example.com
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
printf '%s\n' "$password" |
  env "${node_env[@]}" "$keyward" admin create-user --email "$email" --password-stdin 2>>"$work/keyward.log"

step "passkeys in Chromium ($base)"
"$venv/bin/python" tests/browser/passkeys.py --base-url "$base" --email "$email" --password="$password" ||
  fail "tests/browser/passkeys.py"

step "done"
