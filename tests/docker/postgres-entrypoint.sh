#!/bin/bash
# TEST STAND-IN entrypoint for postgres:18-alpine (see build_standins.sh), after the
# official image's docker-entrypoint.sh: initialise PGDATA on first start as uid 70,
# with POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, on a temporary server that
# listens on the Unix socket only; then run postgres listening on every address.
set -Eeo pipefail

if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
    if [ "$(id -u)" = 0 ]; then
        mkdir -p "$PGDATA" /var/run/postgresql
        chown -R postgres:postgres "$PGDATA" /var/run/postgresql
        chmod 700 "$PGDATA"
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (this stand-in has no trust mode)}"
        POSTGRES_USER=${POSTGRES_USER:-postgres}
        POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
        initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
            --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
        {
            echo "host all all all scram-sha-256"
        } >>"$PGDATA/pg_hba.conf"
        {
            echo "listen_addresses = '*'"
            echo "unix_socket_directories = '/var/run/postgresql'"
        } >>"$PGDATA/postgresql.conf"
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
        if [ "$POSTGRES_DB" != postgres ]; then
            psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
                -c "CREATE DATABASE \"$POSTGRES_DB\""
        fi
        pg_ctl -D "$PGDATA" -m fast -w stop
        echo "PostgreSQL init process complete; ready for start up."
    fi
fi

exec "$@"
