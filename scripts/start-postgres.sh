#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests on a free port in a fresh folder, using
# Debian's packages (installed if missing). Prints the connection URL on stdout; stop it with
#   scripts/start-postgres.sh stop <folder>
# The folder is printed on stderr. fsync is off: this server holds test data only.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ "${1:-}" = "stop" ]; then
  as_postgres "$pg_bin/pg_ctl" -D "$2/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/postgres" ]; then
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >&2
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
dir=$(mktemp -d /tmp/ironbridge-pg.XXXXXX)
chmod 755 "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
as_postgres "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
echo "$dir" >&2
echo "postgres://postgres@127.0.0.1:$port/postgres"
