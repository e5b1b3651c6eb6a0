#!/bin/bash
# Entrypoint of the postgres:15 stand-in (scripts/image/postgres.Containerfile): as the official
# image, a first start initialises $PGDATA with POSTGRES_USER (default postgres) as superuser,
# POSTGRES_PASSWORD as its password and POSTGRES_DB (default: the user's name) as a database;
# then the server runs in the foreground as the postgres user, listening on every address.
set -euo pipefail
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
[ -n "${POSTGRES_PASSWORD:-}" ] || { echo "postgres stand-in: POSTGRES_PASSWORD is required" >&2; exit 1; }
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    runuser -u postgres -- postgres --single -D "$PGDATA" -j postgres >/dev/null <<SQL
CREATE DATABASE "$db" OWNER "$user";
SQL
  fi
fi
exec runuser -u postgres -- "$@" -D "$PGDATA" -c listen_addresses='*'
