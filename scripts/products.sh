#!/usr/bin/env bash
# The seed products on Keyward, end to end (docs/products/):
#
#   scripts/services.sh postgres rabbitmq maildev nginx -- scripts/products.sh
#
# For each of three products it starts a live distributed Keyward (`keyward serve` on
# PostgreSQL and RabbitMQ with the product's preset, deploy/presets/<product>.toml, and a
# `keyward worker` sending mail to MailDev), checks that the preset put the product's templates
# (deploy/presets/<product>.templates.json) in place, creates its staff and service client with the CLI,
# starts the product's own service from examples/products/ and lives the product's story
# through it (scripts/products/stories.py), asserting HTTP answers, mails (MailDev's API) and
# inbox items:
#   clinic       booking.py (Python): offline JWKS verification, the check API with client
#                credentials, user rows from user.registered, confirmation + scheduled reminder,
#                the reminder of a cancelled booking cancelled
#   events       registration.mjs (Node) behind NGINX forward-auth with ?permission=,
#                notification requests published to keyward.notify, the attendee's profile
#   marketplace  the marketplace_orders example (Rust): role-checked orders and responses,
#                in-app notifications to the other party, support blocking an account through
#                the management API, user.blocked consumed
# Before that, every preset file must pass `keyward config check` and `keyward migrate` (which
# checks the default role exists), and every template file must be accepted by a node.
#
# Each product gets a database and a RabbitMQ vhost of its own, so their events never mix.
# Prints `== step (Ns)` lines and a table of step times; exits non-zero on the first failure,
# with the tail of the logs of the product being run. Cleans up every process it started.
#
# Python deps go into a venv at ${KEYWARD_PRODUCTS_VENV:-/var/tmp/keyward-products-venv}
# (reused while examples/products/clinic/requirements.txt is unchanged); Node deps into
# examples/products/events/node_modules (npm ci).
set -euo pipefail
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"
# shellcheck source=scripts/lib/steps.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/steps.sh"
cd "$(dirname "$0")/.."

usage="run me as: scripts/services.sh postgres rabbitmq maildev nginx -- scripts/products.sh"
db_admin_url="${KEYWARD_TEST_DATABASE_URL:?$usage}"
amqp_url="${KEYWARD_TEST_AMQP_URL:?$usage}"
rabbitmqctl="${KEYWARD_TEST_RABBITMQCTL:?$usage}"
smtp_url="${KEYWARD_TEST_SMTP_URL:?$usage}"
maildev_url="${KEYWARD_TEST_MAILDEV_URL:?$usage}"
nginx_bin="${KEYWARD_TEST_NGINX:?$usage}"
venv="${KEYWARD_PRODUCTS_VENV:-/var/tmp/keyward-products-venv}"

work=$(mktemp -d /tmp/keyward-products.XXXXXX)
run_id=$(python3 -c 'import secrets; print(secrets.token_hex(4))')
pids=()
current=""

fail() { printf 'products: FAILED: %s\n' "$*" >&2; exit 1; }

stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

cleanup() {
  local rc=$? f
  if [ "$rc" != 0 ] && [ -n "$current" ] && [ -d "$work/$current" ]; then
    for f in "$work/$current"/*.log; do
      [ -s "$f" ] || continue
      printf '\n--- last lines of %s\n' "$f" >&2
      tail -n 25 "$f" >&2
    done
  fi
  stop_all
  timings "step times"
  rm -rf "$work"
  exit "$rc"
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

# Waits up to $2 seconds for URL $1 to answer 2xx with a body containing $3 (if given).
wait_for_url() {
  local url=$1 secs=$2 want=${3:-} i body
  for ((i = 0; i < secs * 5; i++)); do
    if body=$(curl -sf "$url" 2>/dev/null) && [[ "$body" == *"$want"* ]]; then return 0; fi
    sleep 0.2
  done
  return 1
}

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(18))'; }
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

step "build keyward and the marketplace's Orders service (cargo build --locked)"
cargo build --locked --bin keyward --example marketplace_orders
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
keyward="$target_dir/debug/keyward"
orders_bin="$target_dir/debug/examples/marketplace_orders"

step "python deps of the clinic in $venv"
reqs=examples/products/clinic/requirements.txt
python_venv "$venv" "$reqs"
py="$venv/bin/python"

step "node deps of the event site (npm ci in examples/products/events)"
command -v npm >/dev/null || { echo "installing nodejs"; apt_install nodejs npm; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "the event site needs Node.js 20 or newer; found $(node --version)"
(cd examples/products/events && npm ci --no-audit --no-fund --loglevel=error)

# --- A product's Keyward: database, vhost, node, worker, admin, templates -------------------

# Sets node_env, base, management, issuer, admin_email, admin_password, admin_token.
start_keyward() { # product
  local product=$1 dir="$work/$1" db vhost
  mkdir -p "$dir"
  db="kw_${product}_${run_id}"
  vhost="kw-${product}-${run_id}"
  psql -q "$db_admin_url" -c "CREATE DATABASE $db" >/dev/null
  "$rabbitmqctl" -q add_vhost "$vhost" >/dev/null
  "$rabbitmqctl" -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
  product_amqp_url="${amqp_url%/*}/$vhost"
  node_env=(
    KEYWARD_CONFIG="$PWD/deploy/presets/$product.toml"
    KEYWARD_DATA_DIR="$dir/data"
    KEYWARD_DATABASE_URL="${db_admin_url%/*}/$db"
    KEYWARD_AMQP_URL="$product_amqp_url"
    KEYWARD_MASTER_KEY="$(openssl rand -base64 32)"
    KEYWARD_BIND=127.0.0.1:0
    KEYWARD_MANAGEMENT_BIND=127.0.0.1:0
    KEYWARD_MAIL_FROM="${product^} <no-reply@$product.example>"
    KEYWARD_LOG=info
    KEYWARD_LOG_FORMAT=json
  )
  env "${node_env[@]}" "$keyward" serve >"$dir/keyward.out" 2>"$dir/keyward.log" &
  local pid=$!
  pids+=("$pid")
  wait_for_line "$dir/keyward.out" '^keyward listening on ' 60 "$pid" || fail "keyward serve did not start"
  read -r base management issuer < <(sed -n \
    's/^keyward listening on \(http:[^ ]*\) (management \(http:[^,]*\), public URL \([^)]*\)).*/\1 \2 \3/p' \
    "$dir/keyward.out")
  [ -n "${issuer:-}" ] || fail "cannot parse the listening line"
  # Ready with nothing degraded: PostgreSQL and RabbitMQ both up.
  wait_for_url "$management/readyz" 30 '"degraded":[]' || fail "$management/readyz is not ready"

  env "${node_env[@]}" KEYWARD_DATA_DIR="$dir/worker" KEYWARD_SMTP_URL="$smtp_url" \
    "$keyward" worker >"$dir/worker.out" 2>"$dir/worker.log" &
  pid=$!
  pids+=("$pid")
  wait_for_line "$dir/worker.out" '^keyward worker consuming' 30 "$pid" || fail "keyward worker did not start"
  local worker_management
  worker_management=$(sed -n 's/.*(management \(http:[^)]*\)).*/\1/p' "$dir/worker.out")
  wait_for_url "$worker_management/readyz" 30 || fail "the worker's /readyz is not ready"
  echo "node $base (public URL $issuer), worker consuming; database $db, vhost $vhost"

  admin_email="admin@$product.example"
  admin_password=$(secret)
  create_user "$admin_email" "$admin_password" admin >/dev/null
  admin_token=$(curl -sS --fail-with-body "$base/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"login\": \"$admin_email\", \"password\": \"$admin_password\"}" | json_field access_token)
  templates_from_the_preset "$product" "$admin_token"
}

# The node put deploy/presets/<product>.templates.json in place at its start (the preset's
# [notify] templates_file): its first template is stored with source "config".
templates_from_the_preset() { # product token
  local file="deploy/presets/$1.templates.json" first
  first=$(python3 -c 'import json, sys
t = json.load(open(sys.argv[1]))["templates"][0]
ch = next(iter(t["channels"]))
print(t["key"] + "/" + ch + "/" + next(iter(t["channels"][ch])))' "$file")
  curl -sS --fail-with-body "$base/v1/admin/templates/$first" -H "authorization: Bearer $2" \
    | json_field source | grep -qx config || fail "$first is not the one from $file"
  echo "templates: $file in place ($first from config)"
}

create_user() { # email password role → prints the user id
  printf '%s\n' "$2" | env "${node_env[@]}" KEYWARD_LOG=warn "$keyward" admin create-user \
    --email "$1" --password-stdin --role "$3" 2>>"$work/$current/cli.log"
}

create_client() { # name scopes… → sets client_id, client_secret
  local name=$1 out; shift
  local args=()
  for s in "$@"; do args+=(--scope "$s"); done
  out=$(env "${node_env[@]}" KEYWARD_LOG=warn "$keyward" admin create-client --name "$name" \
    "${args[@]}" 2>>"$work/$current/cli.log")
  client_id=$(sed -n 's/^client_id: //p' <<<"$out")
  client_secret=$(sed -n 's/^client_secret: //p' <<<"$out")
  [ -n "$client_id" ] && [ -n "$client_secret" ] || fail "create-client printed no credentials"
}

# fixtures FILE service-url reminder-lead role=email:password:id …
fixtures() {
  local file=$1 service=$2 lead=$3; shift 3
  python3 - "$file" "$base" "$maildev_url" "$service" "$current-$run_id.example" "$lead" "$@" <<'PY'
import json, sys
file, keyward, maildev, service, domain, lead, *users = sys.argv[1:]
fx = {"keyward": keyward, "maildev": maildev, "service": service, "domain": domain,
      "reminder_lead_secs": int(lead), "users": {}}
for u in users:
    role, rest = u.split("=", 1)
    email, password, uid = rest.split(":", 2)
    fx["users"][role] = {"email": email, "password": password, "id": uid}
with open(file, "w") as f:
    json.dump(fx, f)
PY
}

staff() { # role-name email role → "name=email:password:id"
  local password
  password=$(secret)
  printf '%s=%s:%s:%s' "$1" "$2" "$password" "$(create_user "$2" "$password" "$3")"
}

start_service() { # name log-prefix line-pattern command…  → sets service_url
  local name=$1 pattern=$2; shift 2
  "$@" >"$work/$current/$name.out" 2>"$work/$current/$name.log" &
  local pid=$!
  pids+=("$pid")
  wait_for_line "$work/$current/$name.out" "$pattern" 60 "$pid" || fail "$name did not start"
  service_url=$(sed -n "s/^$pattern \(http:.*\)$/\1/p" "$work/$current/$name.out")
  echo "$name: $service_url"
}

# --- The presets load ---------------------------------------------------------------------------

step "every preset loads: keyward config check and keyward migrate (default roles) on each"
for preset in deploy/presets/*.toml; do
  name=$(basename "$preset" .toml)
  dir="$work/presets/$name"
  mkdir -p "$dir"
  KEYWARD_DATA_DIR="$dir" KEYWARD_LOG=warn "$keyward" --config "$preset" config check \
    >"$dir/check.out" 2>"$dir/check.err" || { cat "$dir/check.err" >&2; fail "$preset: config check"; }
  grep -qx "preset = \"$name\"" "$dir/check.out" || fail "$preset: config check shows no preset = \"$name\""
  KEYWARD_DATA_DIR="$dir" KEYWARD_LOG=warn "$keyward" --config "$preset" migrate \
    >"$dir/migrate.out" 2>"$dir/migrate.err" || { cat "$dir/migrate.err" >&2; fail "$preset: migrate"; }
  echo "$preset: $(grep -c . "$dir/check.out") lines of effective config, migrate ok"
done

step "social: its templates are accepted (an embedded node; no product service of its own here)"
current=social
mkdir -p "$work/social"
node_env=(KEYWARD_CONFIG="$PWD/deploy/presets/social.toml" KEYWARD_DATA_DIR="$work/social/data"
  KEYWARD_BIND=127.0.0.1:0 KEYWARD_MANAGEMENT_BIND=127.0.0.1:0 KEYWARD_LOG=warn)
env "${node_env[@]}" "$keyward" serve >"$work/social/keyward.out" 2>"$work/social/keyward.log" &
pids+=("$!")
wait_for_line "$work/social/keyward.out" '^keyward listening on ' 60 "$!" || fail "keyward serve did not start"
base=$(sed -n 's/^keyward listening on \(http:[^ ]*\) .*/\1/p' "$work/social/keyward.out")
social_password=$(secret)
create_user admin@social.example "$social_password" admin >/dev/null
token=$(curl -sS --fail-with-body "$base/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"login\": \"admin@social.example\", \"password\": \"$social_password\"}" | json_field access_token)
templates_from_the_preset social "$token"
stop_all

# --- The clinic ------------------------------------------------------------------------------------

current=clinic
step "clinic: Keyward on PostgreSQL + RabbitMQ with deploy/presets/clinic.toml, a worker, templates"
start_keyward clinic
create_client booking access:check notifications:send
echo "service client $client_id (access:check notifications:send)"

step "clinic: start the booking service (examples/products/clinic/booking.py), then invite a doctor"
reminder_lead=86400
start_service booking 'clinic booking listening on' \
  env BOOKING_CLIENT_SECRET="$client_secret" "$py" examples/products/clinic/booking.py \
  --keyward-url "$base" --issuer "$issuer" --amqp-url "$product_amqp_url" --client-id "$client_id" \
  --listen 127.0.0.1:0 --db "$work/clinic/clinic.db" --reminder-lead-secs "$reminder_lead"
# After the service bound its queue: an event no queue is bound to reaches nobody.
doctor=$(staff doctor "dr.ivanova@clinic-$run_id.example" doctor)

step "clinic: the story (scripts/products/stories.py clinic)"
fixtures "$work/clinic/fixtures.json" "$service_url" "$reminder_lead" \
  "admin=$admin_email:$admin_password:-" "$doctor"
python3 scripts/products/stories.py clinic "$work/clinic/fixtures.json" || fail "the clinic's story"
stop_all

# --- The event site ------------------------------------------------------------------------------

current=events
step "events: Keyward with deploy/presets/events.toml, a worker, templates"
start_keyward events
organizer=$(staff organizer "organizer@events-$run_id.example" organizer)

step "events: start the Registration service (examples/products/events/registration.mjs) and NGINX"
start_service registration 'event registration listening on' \
  node examples/products/events/registration.mjs --keyward-url "$base" \
  --amqp-url "$product_amqp_url" --listen 127.0.0.1:0
nginx_dir="$work/events/nginx"
mkdir -p "$nginx_dir"
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# examples/products/events/nginx.conf as committed, but for its LISTEN, KEYWARD and APP addresses.
sed -e "s|listen 8000; # LISTEN|listen 127.0.0.1:$nginx_port; # LISTEN|" \
  -e "s|server 127.0.0.1:8080; # KEYWARD|server ${base#http://}; # KEYWARD|" \
  -e "s|server 127.0.0.1:3000; # APP|server ${service_url#http://}; # APP|" \
  examples/products/events/nginx.conf >"$nginx_dir/site.conf"
for marker in LISTEN KEYWARD APP; do
  grep -q "127.0.0.1:[0-9]*; # $marker" "$nginx_dir/site.conf" || fail "nginx.conf: no $marker address to replace"
done
# Everything NGINX writes stays in the temp dir; one process (master_process off) that runs as
# the current user.
cat >"$nginx_dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $nginx_dir/nginx.pid;
lock_file $nginx_dir/nginx.lock;
error_log $nginx_dir/error.log info;
events { worker_connections 256; }
http {
  access_log $work/events/nginx-access.log;
  client_body_temp_path $nginx_dir/body;
  proxy_temp_path $nginx_dir/proxy;
  fastcgi_temp_path $nginx_dir/fastcgi;
  uwsgi_temp_path $nginx_dir/uwsgi;
  scgi_temp_path $nginx_dir/scgi;
  include $nginx_dir/site.conf;
}
CONF
"$nginx_bin" -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$work/events/nginx-error.log" \
  >"$work/events/nginx.log" 2>&1 &
pids+=("$!")
for i in $(seq 1 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $nginx_port), timeout=1).close()" 2>/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null || fail "nginx exited"
  [ "$i" = 50 ] && fail "nginx never listened"
  sleep 0.1
done
echo "nginx: http://127.0.0.1:$nginx_port -> $service_url, asking $base/v1/auth/verify?permission="

step "events: the story (scripts/products/stories.py events)"
fixtures "$work/events/fixtures.json" "http://127.0.0.1:$nginx_port" 0 "$organizer"
python3 scripts/products/stories.py events "$work/events/fixtures.json" || fail "the event site's story"
stop_all

# --- The marketplace -------------------------------------------------------------------------------

current=marketplace
step "marketplace: Keyward with deploy/presets/marketplace.toml, a worker, templates"
start_keyward marketplace
support=$(staff support "support@marketplace-$run_id.example" support)
mallory=$(staff mallory "mallory@marketplace-$run_id.example" freelancer)
create_client orders access:check notifications:send
echo "service client $client_id (access:check notifications:send)"

step "marketplace: start the Orders service (cargo example marketplace_orders)"
start_service orders 'marketplace orders listening on' \
  env MARKETPLACE_CLIENT_SECRET="$client_secret" "$orders_bin" --keyward-url "$base" \
  --issuer "$issuer" --amqp-url "$product_amqp_url" --client-id "$client_id" --listen 127.0.0.1:0

step "marketplace: the story (scripts/products/stories.py marketplace)"
fixtures "$work/marketplace/fixtures.json" "$service_url" 0 \
  "admin=$admin_email:$admin_password:-" "$support" "$mallory"
python3 scripts/products/stories.py marketplace "$work/marketplace/fixtures.json" || fail "the marketplace's story"
stop_all
current=""

step "done: every product's story passed"
