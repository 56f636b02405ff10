#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster for the search tests, the way a cluster user would run one:
# listening on localhost only, a password-protected role (scram-sha-256, never `trust`), and the password
# in a libpq password file (PGPASSFILE), not on any command line.
#
#   source scripts/ci/start_postgres.sh     # exports CONVRNN_TEST_PG_URL (no password) and PGPASSFILE
#
# Needs the PostgreSQL server binaries (apt-get install -y postgresql). Idempotent: a second call reuses the
# running cluster. Settings: CONVRNN_PG_DIR (default /tmp/convrnn-pg), CONVRNN_PG_PORT (default 55432).
set -euo pipefail

PG_DIR="${CONVRNN_PG_DIR:-/tmp/convrnn-pg}"
PG_PORT="${CONVRNN_PG_PORT:-55432}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [[ -z "$PG_BIN" && -x "$(command -v initdb || true)" ]]; then PG_BIN="$(dirname "$(command -v initdb)")"; fi
if [[ -z "$PG_BIN" ]]; then
    echo "start_postgres.sh: no PostgreSQL server binaries found (apt-get install -y postgresql)" >&2
    return 1 2>/dev/null || exit 1
fi

as_owner() {  # the server refuses to run as root: use the `postgres` account when we are root
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$PG_DIR"
[[ "$(id -u)" == 0 ]] && chown postgres "$PG_DIR"
chmod 700 "$PG_DIR"
PASSFILE="$PG_DIR/pgpass"
if [[ ! -s "$PASSFILE" ]]; then
    PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
    SUPER_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
    umask 077
    printf 'localhost:%s:*:convrnn:%s\n' "$PG_PORT" "$PASSWORD" > "$PASSFILE.tmp"
    printf '%s\n' "$SUPER_PASSWORD" > "$PG_DIR/superpw"
    [[ "$(id -u)" == 0 ]] && chown postgres "$PG_DIR/superpw"
    mv "$PASSFILE.tmp" "$PASSFILE"
fi
PASSWORD="$(cut -d: -f5- "$PASSFILE")"

if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
    rm -rf "$PG_DIR/data"
    as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=scram-sha-256 \
        --pwfile="$PG_DIR/superpw" -E UTF8 >/dev/null
    # localhost only; every connection (TCP and socket) needs a password
    cat >> "$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = 'localhost'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 200
CONF
fi

if ! as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
    as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start >/dev/null
fi

# role and database (as the superuser, whose password is in superpw; the role's password never hits argv)
export PGPASSWORD_SUPER_FILE="$PG_DIR/superpw"
psql_super() {
    PGPASSWORD="$(cat "$PG_DIR/superpw")" "$PG_BIN/psql" -h localhost -p "$PG_PORT" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -qtA "$@"
}
if [[ "$(psql_super -c "SELECT 1 FROM pg_roles WHERE rolname = 'convrnn'")" != 1 ]]; then
    printf "CREATE ROLE convrnn LOGIN PASSWORD '%s';\n" "$PASSWORD" | psql_super -f -
fi
if [[ "$(psql_super -c "SELECT 1 FROM pg_database WHERE datname = 'convrnn_test'")" != 1 ]]; then
    psql_super -c "CREATE DATABASE convrnn_test OWNER convrnn"
fi
unset PGPASSWORD_SUPER_FILE PASSWORD SUPER_PASSWORD

export CONVRNN_TEST_PG_URL="postgresql://convrnn@localhost:$PG_PORT/convrnn_test"
export PGPASSFILE="$PASSFILE"
echo "PostgreSQL for the tests: $CONVRNN_TEST_PG_URL (password in PGPASSFILE=$PGPASSFILE)"
