# Shared shell helpers for scripts/*.sh. Source it; do not run it.
#
# ensure_postgres: makes sure a PostgreSQL answers and exports DATABASE_URL pointing at it.
#   1. DATABASE_URL already set: use it (fail loudly if it does not answer).
#   2. Something answers on 127.0.0.1:5432 with trust auth for user postgres: use it.
#   3. Otherwise start our own server (installing PostgreSQL from Debian's packages if there is
#      none) on 127.0.0.1:55432 with trust auth, its data under ~/.cache/market-encoder/pg (under
#      /var/lib/market-encoder/pg when run as root: the server runs as the postgres user, which
#      cannot enter /root).
# Nothing is done by hand; a second call finds the server the first one started.

if [ "$(id -u)" -eq 0 ]; then
  ME_PG_HOME="${MARKET_ENCODER_PG_HOME:-/var/lib/market-encoder/pg}"
else
  ME_PG_HOME="${MARKET_ENCODER_PG_HOME:-$HOME/.cache/market-encoder/pg}"
fi
ME_PG_PORT="${MARKET_ENCODER_PG_PORT:-55432}"

log() { printf '%s\n' "$*" >&2; }

pg_answers() { # URL
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
  else
    # No client yet: a TCP answer on the port is the best we can tell.
    local hostport="${1#*@}"; hostport="${hostport%%/*}"
    timeout 3 bash -c ">/dev/tcp/${hostport%%:*}/${hostport##*:}" 2>/dev/null
  fi
}

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s\n' "$dir"
}

install_postgres() {
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL is not installed and this is not root: install it (apt-get install postgresql) or set DATABASE_URL."
    return 1
  fi
  log "installing PostgreSQL from Debian's packages (once)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq postgresql postgresql-client >/dev/null
}

start_own_postgres() {
  local bindir data run_as=()
  bindir=$(pg_bindir) || { install_postgres && bindir=$(pg_bindir); } || return 1
  data="$ME_PG_HOME/data"
  mkdir -p "$ME_PG_HOME"
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: the server runs as the postgres system user.
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$ME_PG_HOME" postgres
    chown -R postgres "$ME_PG_HOME"
    run_as=(runuser -u postgres --)
  fi
  if [ ! -s "$data/PG_VERSION" ]; then
    log "creating a PostgreSQL cluster in $data"
    "${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$ME_PG_PORT (data in $data)"
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$ME_PG_HOME/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $ME_PG_PORT -k /tmp -c max_connections=200 -c fsync=off" start >/dev/null
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_answers "$DATABASE_URL" || { log "DATABASE_URL is set but PostgreSQL does not answer there; start it or unset DATABASE_URL."; return 1; }
    return 0
  fi
  local default="postgres://postgres@127.0.0.1:5432/postgres"
  local own="postgres://postgres@127.0.0.1:$ME_PG_PORT/postgres"
  if pg_answers "$default"; then
    export DATABASE_URL="$default"
  elif pg_answers "$own"; then
    export DATABASE_URL="$own"
  else
    start_own_postgres || { log "could not start PostgreSQL; set DATABASE_URL to one that runs."; return 1; }
    export DATABASE_URL="$own"
    pg_answers "$DATABASE_URL" || { log "PostgreSQL started but does not answer on $DATABASE_URL; see $ME_PG_HOME/server.log"; return 1; }
  fi
  log "PostgreSQL: ${DATABASE_URL}"
}

# ensure_database NAME: creates database NAME on the server of DATABASE_URL if missing and
# points DATABASE_URL at it.
ensure_database() {
  local name="$1" base="${DATABASE_URL%/*}"
  if ! psql "$DATABASE_URL" -XAtqc "select 1 from pg_database where datname = '$name'" | grep -q 1; then
    psql "$DATABASE_URL" -XAtqc "create database \"$name\"" >/dev/null
  fi
  export DATABASE_URL="$base/$name"
}

# ensure_job_database: the database the job runs against. A configured one (DATABASE_URL or
# DB_HOST & co.) is used as it is; with none, the local server of ensure_postgres and its
# database market_encoder.
ensure_job_database() {
  if [ -z "${DATABASE_URL:-}" ] && [ -z "${DB_HOST:-}" ]; then
    ensure_postgres
    ensure_database market_encoder
  fi
}
