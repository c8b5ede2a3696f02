#!/usr/bin/env bash
# Smoke test for the benchmark peer: installs (setup.sh, idempotent), starts server.mjs on a
# free port with a temporary database, signs up, signs in, checks the session with the bearer
# token, times a few sign-ins and session checks, and stops the server.
# Only talks to 127.0.0.1. Usage: ./smoke.sh [SAMPLES]   (default 5)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
samples="${1:-5}"

./setup.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/bench-peer-smoke.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }

# JSON field extraction with node (always present here): json_get FILE 'expr on d'
json_get() { node -e 'const d=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const v=('"$2"'); process.stdout.write(v==null?"":String(v))' "$1"; }

: >"$work/stdout"; : >"$work/stderr"
BENCH_PEER_PORT=0 BENCH_PEER_DB="$work/peer.db" node server.mjs >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
url=""
for _ in $(seq 1 150); do
  url="$(awk '/^ready /{print $2; exit}' "$work/stdout")"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "server did not become ready; stdout:"; cat "$work/stdout"; echo "stderr:"; cat "$work/stderr"
  exit 1
fi
ok "server ready at $url (pid $server_pid); $(grep -m1 migrated "$work/stderr" || echo 'no migration message')"

email="smoke-$$@example.com"
password="correct horse battery staple"
post() { # post PATH JSON OUTFILE -> prints "http_code time_total"
  curl -sS -o "$3" -w '%{http_code} %{time_total}\n' -X POST "$url$1" \
    -H 'content-type: application/json' --data "$2"
}

# sign-up
read -r code t < <(post /api/auth/sign-up/email "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Smoke\"}" "$work/signup.json")
signup_token="$(json_get "$work/signup.json" 'd.token')"
if [ "$code" = 200 ] && [ -n "$signup_token" ] && [ "$(json_get "$work/signup.json" 'd.user.email')" = "$email" ]; then
  ok "sign-up 200 in ${t}s, token in body .token"
else
  bad "sign-up: HTTP $code $(cat "$work/signup.json")"
fi

# sign-in
read -r code t < <(post /api/auth/sign-in/email "{\"email\":\"$email\",\"password\":\"$password\"}" "$work/signin.json")
token="$(json_get "$work/signin.json" 'd.token')"
if [ "$code" = 200 ] && [ -n "$token" ] && [ "$token" != "$signup_token" ]; then
  ok "sign-in 200 in ${t}s, new session token"
else
  bad "sign-in: HTTP $code $(cat "$work/signin.json")"
fi

# session check with the bearer token
session() { # session TOKEN OUTFILE -> "http_code time_total"
  curl -sS -o "$2" -w '%{http_code} %{time_total}\n' "$url/api/auth/get-session" -H "authorization: Bearer $1"
}
read -r code t < <(session "$token" "$work/session.json")
if [ "$code" = 200 ] && [ "$(json_get "$work/session.json" 'd && d.user.email')" = "$email" ] \
   && [ "$(json_get "$work/session.json" 'd && d.session.token')" = "$token" ]; then
  ok "get-session 200 in ${t}s, session for $email"
else
  bad "get-session: HTTP $code $(cat "$work/session.json")"
fi

# negatives: a bad token is "200 null", a wrong password is 401
read -r code t < <(session "not-a-real-token" "$work/nosession.json")
if [ "$code" = 200 ] && [ "$(cat "$work/nosession.json")" = "null" ]; then
  ok "get-session with a bogus token: 200, body null"
else
  bad "get-session with a bogus token: HTTP $code $(cat "$work/nosession.json")"
fi
read -r code t < <(post /api/auth/sign-in/email "{\"email\":\"$email\",\"password\":\"wrong password\"}" "$work/wrong.json")
if [ "$code" = 401 ]; then
  ok "sign-in with a wrong password: 401 in ${t}s $(cat "$work/wrong.json")"
else
  bad "sign-in with a wrong password: HTTP $code $(cat "$work/wrong.json")"
fi

# timings, sequential, one request at a time
times_signin=()
for _ in $(seq 1 "$samples"); do
  read -r code t < <(post /api/auth/sign-in/email "{\"email\":\"$email\",\"password\":\"$password\"}" "$work/s.json")
  [ "$code" = 200 ] || bad "timed sign-in: HTTP $code"
  times_signin+=("$t")
done
times_session=()
for _ in $(seq 1 "$samples"); do
  read -r code t < <(session "$token" "$work/g.json")
  [ "$code" = 200 ] || bad "timed get-session: HTTP $code"
  times_session+=("$t")
done
summ() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1*1000} END{printf "min %.1f ms, median %.1f ms, max %.1f ms (n=%d)", a[1], a[int((NR+1)/2)], a[NR], NR}'; }
echo "sign-in     (curl time_total): $(summ "${times_signin[@]}")"
echo "get-session (curl time_total): $(summ "${times_session[@]}")"

# the hash alone, same parameters and code path as better-auth's default (node:crypto scrypt)
node --input-type=module -e '
import { scryptSync } from "node:crypto";
const o = { N: 16384, r: 16, p: 1, maxmem: 128 * 16384 * 16 * 2 };
scryptSync("warm", "salt", 64, o);
const ts = [];
for (let i = 0; i < Number(process.argv[1]); i++) {
  const t0 = process.hrtime.bigint(); scryptSync("correct horse battery staple", "0123456789abcdef0123456789abcdef", 64, o);
  ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
ts.sort((a, b) => a - b);
console.log(`scrypt N=16384 r=16 p=1 dkLen=64 alone: min ${ts[0].toFixed(1)} ms, median ${ts[Math.floor((ts.length - 1) / 2)].toFixed(1)} ms (n=${ts.length})`);
' "$samples"

if [ -s "$work/stderr" ] && grep -v '^migrated ' "$work/stderr" | grep -q .; then
  echo "server stderr:"; grep -v '^migrated ' "$work/stderr"
fi

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
