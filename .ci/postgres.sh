#!/usr/bin/env bash
# Starts a private PostgreSQL server for tests/stdin_pg.rs and prints the
# connection settings as `export` lines (eval them). Usage:
#   eval "$(bash .ci/postgres.sh start)"   ...   bash .ci/postgres.sh stop
# Each start makes a fresh cluster in its own directory /tmp/cairn-pg.XXXXXX
# (unix socket there, port 54329, no TCP, trust authentication for the
# postgres role), so concurrent runs do not disturb each other; `stop` stops
# the one named by $PGHOST and removes it.
set -euo pipefail
port=54329
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2
  exit 1
fi
as_pg() { runuser -u postgres -- "$@"; }
case "${1:-start}" in
  start)
    dir=$(mktemp -d /tmp/cairn-pg.XXXXXX)
    chmod 755 "$dir"
    chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -p $port -c listen_addresses=''" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export PGHOST=$dir PGPORT=$port PGUSER=postgres"
    ;;
  stop)
    dir=${PGHOST:-}
    case "$dir" in
      /tmp/cairn-pg.*)
        as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
        rm -rf "$dir"
        ;;
    esac
    ;;
esac
