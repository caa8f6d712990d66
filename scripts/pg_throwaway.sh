#!/usr/bin/env bash
# start: create and start a throwaway Postgres cluster on 127.0.0.1 and a free port, print its
#        URL (the server runs as the `postgres` user when we are root, as initdb requires);
#        exits 3 when no Postgres server binaries are installed.
# stop:  stop it and delete its files.
# The cluster lives in $PG_STATE_DIR (required; a fresh empty folder for start).
set -euo pipefail
state="${PG_STATE_DIR:?set PG_STATE_DIR to a folder for the throwaway cluster}"
bindir=""
for dir in /usr/lib/postgresql/*/bin; do
  [ -x "$dir/initdb" ] && bindir="$dir"  # the glob sorts, so the newest version wins
done
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
  start)
    [ -n "$bindir" ] || exit 3
    mkdir -p "$state"; chmod 755 "$state"
    if [ "$(id -u)" = 0 ]; then chown postgres "$state"; fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bindir/initdb" -D "$state/data" -U review --auth=trust -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1
    as_owner "$bindir/pg_ctl" -D "$state/data" -l "$state/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $state -c fsync=off -c full_page_writes=off" start >/dev/null
    echo "postgresql+psycopg://review@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -n "$bindir" ] && [ -d "$state/data" ]; then
      as_owner "$bindir/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$state"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
