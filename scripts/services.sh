#!/usr/bin/env bash
# Start private instances of the services Keyward's distributed mode uses, on 127.0.0.1 and
# free ports, in a temp dir; run a command with their URLs exported; stop them on exit.
#
#   scripts/services.sh [postgres] -- COMMAND [ARGS...]
#
# Exports for COMMAND:
#   KEYWARD_TEST_DATABASE_URL  postgres://postgres:…@127.0.0.1:PORT/postgres (an admin URL:
#                              the test suite creates one database per test and drops it)
#
# Installs what is missing with apt-get (needs root, as on CI). No Docker engine is needed.
set -euo pipefail

want=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do want+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#want[@]} -gt 0 ] || want=(postgres)
[ $# -gt 0 ] || { echo "usage: $0 [postgres] -- COMMAND" >&2; exit 2; }

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
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -w -l "$dir/server.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  cleanup_steps+=("runuser -u postgres -- '$bin/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1")
  export KEYWARD_TEST_DATABASE_URL="postgres://postgres:${password}@127.0.0.1:${port}/postgres"
  log "postgres ready on 127.0.0.1:$port"
}

for s in "${want[@]}"; do
  case "$s" in
    postgres) start_postgres ;;
    *) echo "unknown service: $s" >&2; exit 2 ;;
  esac
done

"$@"
