#!/usr/bin/env bash
# Run every integration example under examples/ (docs/integrating.md) against a live node:
#
#   scripts/services.sh rabbitmq -- scripts/examples.sh
#
# Starts `keyward serve` on RabbitMQ (KEYWARD_TEST_AMQP_URL, from services.sh) in a temp data
# dir, creates a verified user, starts the event consumers (Python, Rust) expecting
# user.logged_in, logs in, and checks that each verifier (Python, Node, Rust) accepts the
# access token and refuses a tampered one and one for another audience, and publishes a
# notification request with pika that must reach the user's inbox. Non-zero on any failure.
#
# Python deps go into a venv at ${KEYWARD_EXAMPLES_VENV:-/var/tmp/keyward-examples-venv}
# (reused while requirements.txt is unchanged); Node deps into examples/node/node_modules.
set -euo pipefail
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"
cd "$(dirname "$0")/.."

amqp_url="${KEYWARD_TEST_AMQP_URL:?run me as: scripts/services.sh rabbitmq -- scripts/examples.sh}"
venv="${KEYWARD_EXAMPLES_VENV:-/var/tmp/keyward-examples-venv}"

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
fail() { printf 'examples: FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d /tmp/keyward-examples.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

apt_install() {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Waits up to $3 seconds for file $1 to contain a line matching $2; fails early when process
# $4 has exited.
wait_for_line() {
  local file=$1 pattern=$2 secs=$3 pid=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

step "build keyward and the Rust examples"
cargo build --locked --bin keyward --examples
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
keyward="$target_dir/debug/keyward"
rust_examples="$target_dir/debug/examples"

step "python deps in $venv"
python_venv "$venv" examples/python/requirements.txt
py="$venv/bin/python"

step "node deps (npm ci in examples/node)"
command -v npm >/dev/null || { echo "installing nodejs"; apt_install nodejs npm; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "jose needs Node.js 20 or newer; found $(node --version)"
(cd examples/node && npm ci --no-audit --no-fund --loglevel=error)

step "start keyward serve on RabbitMQ"
# Not exported: the examples get their settings as arguments, as a service would.
node_env=(
  KEYWARD_DATA_DIR="$work/data"
  KEYWARD_BIND=127.0.0.1:0
  KEYWARD_MANAGEMENT_BIND=127.0.0.1:0
  KEYWARD_AMQP_URL="$amqp_url"
  KEYWARD_MASTER_KEY="$(openssl rand -base64 32)"
  KEYWARD_LOG=info
  KEYWARD_LOG_FORMAT=json
)
env "${node_env[@]}" "$keyward" serve >"$work/keyward.out" 2>"$work/keyward.log" &
keyward_pid=$!
pids+=("$keyward_pid")
if ! wait_for_line "$work/keyward.out" '^keyward listening on ' 60 "$keyward_pid"; then
  tail -n 20 "$work/keyward.log" >&2
  fail "keyward serve did not start"
fi
cat "$work/keyward.out"
# "keyward listening on http://A (management http://B, public URL C)"
read -r base management issuer < <(sed -n \
  's/^keyward listening on \(http:[^ ]*\) (management \(http:[^,]*\), public URL \([^)]*\)).*/\1 \2 \3/p' \
  "$work/keyward.out")
[ -n "${issuer:-}" ] || fail "cannot parse the listening line"
# Ready with nothing degraded: connected to RabbitMQ, so its exchanges exist for the consumers.
for i in $(seq 1 100); do
  curl -sf "$management/readyz" | grep -q '"degraded":\[\]' && break
  [ "$i" = 100 ] && { curl -s "$management/readyz" >&2 || true; fail "/readyz did not answer 200"; }
  sleep 0.2
done
echo "ready: $management/readyz"

step "create a verified user (keyward admin create-user)"
email=ada@example.com
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
printf '%s\n' "$password" |
  env "${node_env[@]}" "$keyward" admin create-user --email "$email" --password-stdin 2>>"$work/keyward.log"

step "start the event consumers (Python, Rust), expecting user.logged_in"
consumers=(python rust)
declare -A consumer_pid
start_consumer() {
  local name=$1; shift
  "$@" --amqp-url "$amqp_url" --pattern 'user.*' --expect user.logged_in --timeout 60 \
    >"$work/consumer-$name.out" 2>"$work/consumer-$name.err" &
  local pid=$!
  pids+=("$pid")
  consumer_pid[$name]=$pid
  wait_for_line "$work/consumer-$name.err" '^bound ' 30 "$pid" || {
    cat "$work/consumer-$name.err" >&2
    fail "the $name consumer did not bind its queue"
  }
  echo "$name: $(grep '^bound ' "$work/consumer-$name.err")"
}
start_consumer python "$py" examples/python/consume_events.py
start_consumer rust "$rust_examples/consume_events"

step "log in (POST /v1/auth/login)"
login_body=$(python3 -c 'import json, sys; print(json.dumps({"login": sys.argv[1], "password": sys.argv[2]}))' \
  "$email" "$password")
curl -sS --fail-with-body "$base/v1/auth/login" -H 'content-type: application/json' \
  -d "$login_body" >"$work/pair.json" || { cat "$work/pair.json" >&2; echo >&2; fail "login failed"; }
token=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["access_token"])' "$work/pair.json")
# Flip one character in the middle of the payload: the signature no longer matches.
tampered=$(python3 -c '
import sys
h, p, s = sys.argv[1].split(".")
i = len(p) // 2
p = p[:i] + ("B" if p[i] == "A" else "A") + p[i + 1:]
print(".".join((h, p, s)))' "$token")
echo "got an access token for $email"

verifiers=(python node rust)
run_verifier() { # name, args...
  case "$1" in
    python) shift; "$py" examples/python/verify_token.py "$@" ;;
    node) shift; node examples/node/verify-token.mjs "$@" ;;
    rust) shift; "$rust_examples/verify_token" "$@" ;;
  esac
}

step "verifiers accept the access token"
for v in "${verifiers[@]}"; do
  sub=$(run_verifier "$v" --jwks-url "$base/.well-known/jwks.json" --issuer "$issuer" \
    --audience keyward "$token" 2>"$work/verify.err") || {
    cat "$work/verify.err" >&2
    fail "$v refused a valid token"
  }
  [ -n "$sub" ] || fail "$v printed no subject"
  printf '%-6s ok: sub %s\n' "$v" "$sub"
done

# Each must exit 1 and say "refused:", not crash (a crash is no proof of a check).
expect_refusal() { # what, token, args...
  local what=$1 tok=$2 v rc; shift 2
  for v in "${verifiers[@]}"; do
    rc=0
    run_verifier "$v" --issuer "$issuer" "$@" "$tok" >/dev/null 2>"$work/verify.err" || rc=$?
    if [ "$rc" != 1 ] || ! grep -q '^refused: ' "$work/verify.err"; then
      cat "$work/verify.err" >&2
      fail "$v: $what: expected exit 1 with 'refused: …', got exit $rc"
    fi
    printf '%-6s refused: %s\n' "$v" "$(sed -n 's/^refused: //p' "$work/verify.err" | head -n 1)"
  done
}

step "verifiers refuse a tampered token"
expect_refusal "tampered token" "$tampered"

step "verifiers refuse a token for another audience"
expect_refusal "wrong audience" "$token" --audience billing

step "consumers receive user.logged_in"
for name in "${consumers[@]}"; do
  if ! wait "${consumer_pid[$name]}"; then
    cat "$work/consumer-$name.err" >&2
    fail "the $name consumer did not see user.logged_in"
  fi
  python3 -c '
import json, sys
for line in open(sys.argv[2]):
    e = json.loads(line)
    print("%-6s got %s id=%s user_id=%s" % (sys.argv[1], e["type"], e["id"], e["data"].get("user_id")))' \
    "$name" "$work/consumer-$name.out"
done

step "a notification published with pika (examples/python/send_notification.py) reaches the inbox"
user_id=$(curl -sS --fail-with-body "$base/v1/users/me" -H "authorization: Bearer $token" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
"$py" examples/python/send_notification.py --amqp-url "$amqp_url" --to "$user_id" \
  --idempotency-key "examples-$(date +%s%N)" --var "title=Hello from pika" --var "body=It works" ||
  fail "send_notification.py could not publish"
for i in $(seq 1 100); do
  curl -sS "$base/v1/users/me/notifications" -H "authorization: Bearer $token" >"$work/inbox.json"
  grep -q 'Hello from pika' "$work/inbox.json" && break
  [ "$i" = 100 ] && { cat "$work/inbox.json" >&2; fail "the published notification never reached the inbox"; }
  sleep 0.1
done
echo "inbox: $(cat "$work/inbox.json")"

step "done: every example passed"
