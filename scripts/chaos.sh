#!/usr/bin/env bash
# The chaos suite (issue 19): a distributed Keyward under steady load loses nothing while its
# parts are killed and its services restarted.
#
#   scripts/services.sh postgres rabbitmq -- scripts/chaos.sh
#
# Starts two `keyward serve` nodes and two `keyward worker` processes on one fresh PostgreSQL
# database, one RabbitMQ vhost and one random master key, with no proxy in front: the load
# driver (scripts/chaos/driver.py) spreads its requests over both nodes. An independent
# consumer binds its own durable queue to `keyward.events` and records every delivery,
# acking after recording. Under steady load (registrations with distinct emails; login,
# refresh, GET /v1/users/me and GET /v1/auth/verify for a few verified users) it then, one
# blow at a time with steady load between:
#   1. kill -9 node 1, restart it;
#   2. kill -9 worker 1, restart it;
#   3. restart RabbitMQ (its server process: every connection drops); while it is down every
#      path must answer 2xx on both nodes (the non-event paths probed, and every load request
#      of the phase counted, registrations included);
#   4. restart PostgreSQL (pg_ctl stop -m fast, 12 s down, start) with email jobs queued: the
#      workers are paused (SIGSTOP) for 2 s before the stop so a backlog builds, and resumed
#      (SIGCONT) once PostgreSQL is down, so they meet the outage holding jobs.
# Then it stops the load, waits (bounded) for the outbox to drain and the consumer to empty
# its queue, and counts: acknowledged (2xx) registrations, how many are in the users table,
# how many have a user.registered at the consumer, every event in the outbox against what the
# consumer got, duplicates (allowed, counted), and the verification mails in the workers' mail
# drops and the dead-lettered email jobs. Exits non-zero on any loss (an acknowledged
# registration without its verification mail and a dead-lettered email job included), on a
# failure of any path during the broker outage, or when a bounded wait runs out. Prints each
# phase's time.
#
# Python deps (pika) go into a venv at ${KEYWARD_CHAOS_VENV:-/var/tmp/keyward-chaos-venv},
# reused while scripts/chaos/requirements.txt is unchanged. KEYWARD_CHAOS_STEADY_SECS (8) is
# the load time between two blows, KEYWARD_CHAOS_PG_DOWN_SECS (12) how long PostgreSQL is down
# (longer than the 6 deliveries and about 8 s of backoff an email job failing at once gets).
set -euo pipefail
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"
# shellcheck source=scripts/lib/steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/steps.sh"
cd "$(dirname "$0")/.."

usage="run me as: scripts/services.sh postgres rabbitmq -- scripts/chaos.sh"
db_admin_url="${KEYWARD_TEST_DATABASE_URL:?$usage}"
amqp_url="${KEYWARD_TEST_AMQP_URL:?$usage}"
rabbitmqctl="${KEYWARD_TEST_RABBITMQCTL:?$usage}"
rabbitmq_server="${KEYWARD_TEST_RABBITMQ_SERVER:?$usage (a services.sh that exports KEYWARD_TEST_RABBITMQ_SERVER)}"
pg_ctl="${KEYWARD_TEST_PG_CTL:?$usage (a services.sh that exports KEYWARD_TEST_PG_CTL)}"
venv="${KEYWARD_CHAOS_VENV:-/var/tmp/keyward-chaos-venv}"
steady="${KEYWARD_CHAOS_STEADY_SECS:-8}"
pg_down="${KEYWARD_CHAOS_PG_DOWN_SECS:-12}"
# The nodes get exactly the settings below: no KEYWARD_* of this environment (the services'
# KEYWARD_TEST_* would only be warned about as unknown).
for v in $(compgen -e); do
  case "$v" in KEYWARD_*) export -n "$v" ;; esac
done

work=$(mktemp -d /tmp/keyward-chaos.XXXXXX)
run_id=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
declare -A pid=()
phase_file="$work/phase"

# The load driver tags each answer with the phase it fell in.
# Renamed into place, so a reader never sees it half-written.
phase() { printf '%s\n' "$1" > "$phase_file.new" && mv -f "$phase_file.new" "$phase_file"; }
fail() { printf 'chaos: FAILED: %s\n' "$*" >&2; exit 1; }

stop_all() {
  local name
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  for name in "${!pid[@]}"; do wait "${pid[$name]}" 2>/dev/null || true; done
  pid=()
}

cleanup() {
  local rc=$? f
  if [ "$rc" != 0 ]; then
    # The nodes' and workers' JSON logs: their last warnings and errors.
    for f in "$work"/*/log "$work"/*.log; do
      [ -s "$f" ] || continue
      printf '\n--- last warnings of %s\n' "$f" >&2
      grep -v '"level":"\(INFO\|DEBUG\|TRACE\)"' "$f" | tail -n 15 | cut -c1-400 >&2 || true
    done
  fi
  stop_all
  timings "phase times"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'printf "chaos: FAILED: line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

apt_install() {
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits up to $2 seconds for URL $1 to answer 2xx with a body containing $3 (if given).
wait_for_url() {
  local url=$1 secs=$2 want=${3:-} i body
  for ((i = 0; i < secs * 5; i++)); do
    if body=$(curl -sf --max-time 2 "$url" 2>/dev/null) && [[ "$body" == *"$want"* ]]; then return 0; fi
    sleep 0.2
  done
  return 1
}

# Waits up to $2 seconds for process $1 to exit.
wait_exit() {
  local p=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

step "build keyward (cargo build --locked --bin keyward)"
cargo build --locked --bin keyward
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
keyward="$target_dir/debug/keyward"

step "python deps in $venv"
reqs=scripts/chaos/requirements.txt
python_venv "$venv" "$reqs"
driver=("$venv/bin/python" scripts/chaos/driver.py)

step "database, vhost, migrations, the independent consumer, users"
db="kw_chaos_$run_id"
vhost="kw-chaos-$run_id"
psql -q "$db_admin_url" -c "CREATE DATABASE $db" >/dev/null
db_url="${db_admin_url%/*}/$db"
"$rabbitmqctl" -q add_vhost "$vhost" >/dev/null
"$rabbitmqctl" -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
vhost_url="${amqp_url%/*}/$vhost"
declare -A port=() mport=() wport=()
for n in 1 2; do port[$n]=$(free_port); mport[$n]=$(free_port); wport[$n]=$(free_port); done
common_env=(
  KEYWARD_DATABASE_URL="$db_url"
  KEYWARD_AMQP_URL="$vhost_url"
  KEYWARD_MASTER_KEY="$(openssl rand -base64 32)"
  # One public URL for the cluster, as a load balancer's address would be.
  KEYWARD_PUBLIC_URL="http://127.0.0.1:${port[1]}"
  # Distinct emails, one client IP: the per-IP mail budget must not cut the load.
  KEYWARD_THROTTLE__MAIL_PER_IP_PER_HOUR=1000000
  # Delivery is under test, not hashing cost: cheap Argon2 keeps the load steady on 2 cores.
  KEYWARD_PASSWORDS__ARGON2_MEMORY_KIB=64
  KEYWARD_PASSWORDS__ARGON2_ITERATIONS=1
  KEYWARD_LOG=info
  KEYWARD_LOG_FORMAT=json
)
mkdir -p "$work/cli"
env "${common_env[@]}" KEYWARD_DATA_DIR="$work/cli" "$keyward" migrate >"$work/cli/out" 2>"$work/cli.log" \
  || fail "keyward migrate failed"

events="$work/events.jsonl"
consumer_ready="$work/consumer.ready"
consumer_stop="$work/consumer.stop"
"${driver[@]}" consume --amqp "$vhost_url" --queue "chaos.consumer.$run_id" --out "$events" \
  --ready "$consumer_ready" --stop "$consumer_stop" 2>"$work/consumer.log" &
pid[consumer]=$!
for ((i = 0; i < 100; i++)); do
  [ -f "$consumer_ready" ] && break
  kill -0 "${pid[consumer]}" 2>/dev/null || fail "the consumer exited"
  sleep 0.1
done
[ -f "$consumer_ready" ] || fail "the consumer did not bind its queue within 10 s"
echo "consumer bound chaos.consumer.$run_id to keyward.events (#) on vhost $vhost"

# Verified users (the CLI makes them so) for the session paths: two for the load, one probe.
python3 - "$work/users.json" "$run_id" <<'PY'
import json, secrets, sys
path, run = sys.argv[1:]
mk = lambda name: {"email": f"{name}-{run}@example.com", "password": "chaos " + secrets.token_urlsafe(12)}
json.dump({"load": [mk("session-a"), mk("session-b")], "probe": mk("probe")}, open(path, "w"))
PY
python3 -c 'import json, sys
u = json.load(open(sys.argv[1]))
for x in u["load"] + [u["probe"]]: print(x["email"], x["password"])' "$work/users.json" |
  while read -r addr password; do
    printf '%s\n' "$password" | env "${common_env[@]}" KEYWARD_DATA_DIR="$work/cli" KEYWARD_LOG=warn \
      "$keyward" admin create-user --email "$addr" --password-stdin >/dev/null 2>>"$work/cli.log" \
      || fail "keyward admin create-user $addr failed"
  done

start_node() { # n
  local n=$1 dir="$work/node$1"
  mkdir -p "$dir"
  env "${common_env[@]}" KEYWARD_DATA_DIR="$dir/data" KEYWARD_BIND="127.0.0.1:${port[$n]}" \
    KEYWARD_MANAGEMENT_BIND="127.0.0.1:${mport[$n]}" "$keyward" serve >>"$dir/out" 2>>"$dir/log" &
  pid[node$n]=$!
}
# Ready with nothing degraded: PostgreSQL and RabbitMQ both reachable.
node_ready() { # n secs
  wait_for_url "http://127.0.0.1:${mport[$1]}/readyz" "$2" '"degraded":[]'
}
start_worker() { # n
  local n=$1 dir="$work/worker$1"
  mkdir -p "$dir"
  env "${common_env[@]}" KEYWARD_DATA_DIR="$dir/data" KEYWARD_MANAGEMENT_BIND="127.0.0.1:${wport[$n]}" \
    "$keyward" worker >>"$dir/out" 2>>"$dir/log" &
  pid[worker$n]=$!
}
worker_ready() { # n secs
  wait_for_url "http://127.0.0.1:${wport[$1]}/readyz" "$2"
}
kill9() { # name
  local p=${pid[$1]}
  kill -KILL "$p"
  wait "$p" 2>/dev/null || true
  unset "pid[$1]"
  echo "kill -9 $1 (pid $p)"
}

step "two nodes and two workers"
for n in 1 2; do start_node "$n"; done
for n in 1 2; do node_ready "$n" 60 || fail "node $n is not ready (http://127.0.0.1:${mport[$n]}/readyz)"; done
for n in 1 2; do start_worker "$n"; done
for n in 1 2; do worker_ready "$n" 30 || fail "worker $n is not ready"; done
nodes="http://127.0.0.1:${port[1]},http://127.0.0.1:${port[2]}"
echo "nodes $nodes; workers consuming; database $db, vhost $vhost"

phase "steady"
"${driver[@]}" load --nodes "$nodes" --users "$work/users.json" --out "$work" --phase "$phase_file" \
  --stop "$work/load.stop" --run "$run_id" 2>"$work/load.log" &
pid[load]=$!

step "steady load (${steady}s)"
sleep "$steady"
kill -0 "${pid[load]}" 2>/dev/null || fail "the load driver exited"

step "kill -9 node 1, restart it"
phase "node1-killed"
kill9 node1
sleep 2
phase "node1-restarting"
start_node 1
node_ready 1 60 || fail "node 1 is not ready again within 60 s after its restart"
phase "steady-after-node"
sleep "$steady"

step "kill -9 worker 1, restart it"
phase "worker1-killed"
kill9 worker1
sleep 2
start_worker 1
worker_ready 1 30 || fail "worker 1 is not ready again within 30 s after its restart"
phase "steady-after-worker"
sleep "$steady"

step "restart RabbitMQ; the non-event paths answer on both nodes while it is down"
phase "rabbitmq-down"
"$rabbitmq_server" stop
echo "rabbitmq stopped"
probe_failures=0
for _ in 1 2 3; do
  sleep 1
  "${driver[@]}" probe --nodes "$nodes" --users "$work/users.json" || probe_failures=$((probe_failures + 1))
done
"$rabbitmq_server" start
echo "rabbitmq started again"
phase "rabbitmq-back"
for n in 1 2; do node_ready "$n" 60 || fail "node $n did not reconnect to RabbitMQ within 60 s"; done
for n in 1 2; do worker_ready "$n" 60 || fail "worker $n did not reconnect to RabbitMQ within 60 s"; done
phase "steady-after-rabbitmq"
sleep "$steady"

step "restart PostgreSQL (down for ${pg_down} s) with email jobs queued"
# A backlog of verification jobs for the workers to meet the outage with: they stop taking
# jobs for 2 s (the load goes on registering) and go on once PostgreSQL is down.
for n in 1 2; do kill -STOP "${pid[worker$n]}"; done
echo "workers paused (SIGSTOP)"
sleep 2
phase "postgres-down"
"$pg_ctl" stop -m fast >/dev/null
echo "postgres stopped"
for n in 1 2; do kill -CONT "${pid[worker$n]}"; done
echo "workers resumed (SIGCONT)"
queued=$("$rabbitmqctl" -q list_queues -p "$vhost" name messages 2>/dev/null |
  awk '$1 == "keyward.notify.email" { print $2 }' || true)
echo "email jobs queued as PostgreSQL went down: ${queued:-?}"
sleep "$pg_down"
"$pg_ctl" start >/dev/null
echo "postgres started again"
phase "postgres-back"
for n in 1 2; do node_ready "$n" 60 || fail "node $n is not ready within 60 s after PostgreSQL's restart"; done
# A worker is ready again once its database answers (it held its jobs meanwhile).
for n in 1 2; do worker_ready "$n" 60 || fail "worker $n is not ready within 60 s after PostgreSQL's restart"; done
phase "steady-after-postgres"
sleep "$steady"

step "stop the load; wait for the outbox to drain and the consumer to empty its queue"
touch "$work/load.stop"
wait_exit "${pid[load]}" 60 || fail "the load driver did not stop within 60 s"
wait "${pid[load]}" || fail "the load driver failed"
unset "pid[load]"
pending=""
for ((i = 0; i < 600; i++)); do
  pending=$(psql -At "$db_url" -c "SELECT count(*) FROM outbox WHERE published_at IS NULL" 2>/dev/null || echo "?")
  [ "$pending" = 0 ] && break
  sleep 0.1
done
[ "$pending" = 0 ] || fail "the outbox did not drain within 60 s: $pending rows unpublished (see the nodes' logs: relay warnings)"
echo "outbox drained after $i polls"
touch "$consumer_stop"
wait_exit "${pid[consumer]}" 60 || fail "the consumer did not empty its queue within 60 s of the outbox draining"
wait "${pid[consumer]}" || fail "the consumer failed"
unset "pid[consumer]"
# Give the workers a bounded while to send what is queued; the report counts what is missing.
for ((i = 0; i < 300; i++)); do
  left=$("$rabbitmqctl" -q list_queues -p "$vhost" name messages 2>/dev/null |
    awk '$1 == "keyward.notify.email" { print $2 }' || true)
  [ "$left" = 0 ] && break
  sleep 0.2
done
dead=$("$rabbitmqctl" -q list_queues -p "$vhost" name messages 2>/dev/null | awk '$1 == "keyward.dead" { print $2 }' || true)
[ -n "$dead" ] || fail "cannot read the depth of keyward.dead on vhost $vhost"
echo "email queue: ${left:-?} left; dead letters: ${dead:-?}"
# Informational: how often a worker held a job through the database outage instead of
# requeueing it (each job counts once per worker that held it).
held=$(cat "$work"/worker*/log 2>/dev/null | grep -c 'holding the job until it does' || true)
echo "email jobs a worker held for the database: ${held:-0}"

step "count"
psql -At "$db_url" -c "SELECT lower(email) FROM users" >"$work/db-users.txt"
psql -At "$db_url" -c "SELECT id::text || '|' || message_type FROM outbox
  WHERE message_type NOT LIKE 'email.%' AND message_type NOT LIKE 'push.%' AND message_type NOT LIKE 'sms.%'" \
  >"$work/outbox.txt"
echo "consumer: $(cat "$consumer_ready")"
"${driver[@]}" report --out "$work" --events "$events" --db-users "$work/db-users.txt" \
  --outbox "$work/outbox.txt" --mail-dir "$work/worker1/data/mail" --mail-dir "$work/worker2/data/mail" \
  --probe-failures "$probe_failures" --dead-letters "$dead"
stop_all
