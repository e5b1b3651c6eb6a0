# ChromaDB for scripts/*.sh. Source it; do not run it. Needs bash, python3 (with venv) and PyPI.
#
# ensure_chroma: makes sure a Chroma server answers and exports
#   CHROMA_URL     where it is (http://127.0.0.1:PORT for our own server)
#   CHROMA_PYTHON  a python that can `import chromadb` (the official client, for interop tests)
#   1. CHROMA_URL already set: use it if GET $CHROMA_URL/api/v2/heartbeat answers; fail loudly
#      if it does not (a typo must not silently test against another server).
#   2. Otherwise start our own: `chroma run` from a venv at
#      ${MARKET_ENCODER_CHROMA_VENV:-~/.cache/market-encoder/chroma-venv} (created once with
#      chromadb==$ME_CHROMA_VERSION from PyPI, ~30-60 s; later calls reuse it), on 127.0.0.1 and a
#      free port, with its data in a fresh temporary directory and its request log in
#      $ME_CHROMA_LOG (not on the terminal). Ready in a few seconds.
#   A second call in the same shell finds the server the first one started.
#
# Stopping: our own server stops when the calling script exits, whatever way it exits:
#   - ensure_chroma adds `stop_chroma` to the EXIT trap. If the caller already has an EXIT trap,
#     stop_chroma is run before the caller's command (the caller's trap is kept, not clobbered).
#   - A caller that sets its EXIT trap AFTER ensure_chroma replaces ours: it must call
#     `stop_chroma` from its own trap, e.g. `trap 'stop_chroma; stop_my_thing' EXIT`.
#   - A watchdog also stops the server if the calling shell dies without running traps (SIGKILL).
#   stop_chroma is idempotent and does nothing for a CHROMA_URL we did not start.
#
# Usage (scripts/test.sh):
#   source scripts/lib/chroma.sh
#   ensure_chroma            # exports CHROMA_URL, CHROMA_PYTHON
#   cargo test ...

ME_CHROMA_VERSION="${MARKET_ENCODER_CHROMA_VERSION:-1.5.9}"
ME_CHROMA_VENV="${MARKET_ENCODER_CHROMA_VENV:-${HOME:-/tmp}/.cache/market-encoder/chroma-venv}"
ME_CHROMA_START_TIMEOUT="${MARKET_ENCODER_CHROMA_START_TIMEOUT:-60}"
# State of the server this shell started (kept if the file is sourced again).
ME_CHROMA_PID="${ME_CHROMA_PID:-}"
ME_CHROMA_WATCHDOG_PID="${ME_CHROMA_WATCHDOG_PID:-}"
ME_CHROMA_DATA="${ME_CHROMA_DATA:-}"
ME_CHROMA_LOG="${ME_CHROMA_LOG:-}"

chroma_log() { printf 'chroma: %s\n' "$*" >&2; }

# chroma_answers URL: true if the Chroma v2 heartbeat at URL answers 200 within 3 s.
chroma_answers() {
  local url="${1%/}/api/v2/heartbeat"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 3 "$url" 2>/dev/null
  else
    python3 - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=3).read()
PY
  fi
}

# chroma_venv: creates the venv with chromadb (once; a marker file says the install finished)
# and prints its python. Concurrent callers wait on a lock instead of installing twice.
chroma_venv() {
  local venv="$ME_CHROMA_VENV" marker="$ME_CHROMA_VENV/.market-encoder-chromadb-$ME_CHROMA_VERSION"
  if [ ! -f "$marker" ]; then
    mkdir -p "$(dirname "$venv")" || return 1
    (
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock" && flock 9
      fi
      [ -f "$marker" ] && exit 0 # another process finished it while we waited
      local started=$SECONDS
      chroma_log "installing chromadb==$ME_CHROMA_VERSION into $venv (once, about a minute)..."
      rm -rf "$venv"
      "${MARKET_ENCODER_PYTHON:-python3}" -m venv "$venv" >&2 || {
        chroma_log "cannot create a venv with ${MARKET_ENCODER_PYTHON:-python3} (Debian: apt-get install python3-venv; or set MARKET_ENCODER_PYTHON)"
        exit 1
      }
      "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "chromadb==$ME_CHROMA_VERSION" >&2 || {
        chroma_log "pip install chromadb==$ME_CHROMA_VERSION failed (is PyPI reachable?)"
        exit 1
      }
      touch "$marker"
      chroma_log "installed chromadb==$ME_CHROMA_VERSION in $((SECONDS - started)) s"
    ) || return 1
  fi
  printf '%s\n' "$venv/bin/python"
}

# chroma_free_port PYTHON: a TCP port on 127.0.0.1 that nothing listens on right now.
chroma_free_port() {
  "$1" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# chroma_add_exit_trap: runs stop_chroma on exit, before any EXIT trap the caller already has.
chroma_add_exit_trap() {
  local existing
  existing=$(trap -p EXIT)
  case "$existing" in
    *stop_chroma*) return 0 ;;
    "") trap 'stop_chroma' EXIT ;;
    *)
      # `trap -p` prints `trap -- 'COMMAND' EXIT`, quoted for the shell: let the shell unquote it.
      local -a parts
      eval "parts=($existing)"
      # shellcheck disable=SC2064 # the caller's command is expanded now, on purpose
      trap "stop_chroma; ${parts[2]}" EXIT
      ;;
  esac
}

start_own_chroma() {
  local python="$1" port bin="${1%/python}/chroma"
  port=$(chroma_free_port "$python") || return 1
  ME_CHROMA_DATA=$(mktemp -d "${TMPDIR:-/tmp}/market-encoder-chroma.XXXXXX") || return 1
  ME_CHROMA_LOG="$ME_CHROMA_DATA/server.log"
  chroma_log "starting Chroma $ME_CHROMA_VERSION on 127.0.0.1:$port (data and log in $ME_CHROMA_DATA)"
  # No telemetry, no terminal output, no stdin; our fds are not held open (pipes into tee end).
  ANONYMIZED_TELEMETRY=False "$bin" run --path "$ME_CHROMA_DATA/data" --host 127.0.0.1 \
    --port "$port" </dev/null >"$ME_CHROMA_LOG" 2>&1 &
  ME_CHROMA_PID=$!
  chroma_add_exit_trap
  # Watchdog: stops the server if this shell goes away without running its EXIT trap.
  local shell_pid=$$ server_pid=$ME_CHROMA_PID data=$ME_CHROMA_DATA
  (
    trap - EXIT
    while kill -0 "$shell_pid" 2>/dev/null && kill -0 "$server_pid" 2>/dev/null; do sleep 2; done
    kill "$server_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$server_pid" 2>/dev/null || true
    rm -rf "$data"
  ) </dev/null >/dev/null 2>&1 &
  ME_CHROMA_WATCHDOG_PID=$!
  local url="http://127.0.0.1:$port" deadline=$((SECONDS + ME_CHROMA_START_TIMEOUT))
  until chroma_answers "$url"; do
    if ! kill -0 "$ME_CHROMA_PID" 2>/dev/null; then
      chroma_log "Chroma exited during startup; last lines of $ME_CHROMA_LOG:"
      tail -n 20 "$ME_CHROMA_LOG" >&2
      ME_CHROMA_PID=""
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      chroma_log "Chroma did not answer $url/api/v2/heartbeat within ${ME_CHROMA_START_TIMEOUT} s; see $ME_CHROMA_LOG"
      stop_chroma
      return 1
    fi
    sleep 0.2
  done
  export CHROMA_URL="$url"
}

# stop_chroma: stops the server ensure_chroma started (if any) and removes its data directory.
stop_chroma() {
  # Every command tolerates failure: this runs from EXIT traps of `set -e` scripts, where a
  # failing `kill` would end the trap before the caller's own clean-up.
  if [ -n "$ME_CHROMA_PID" ]; then
    kill "$ME_CHROMA_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$ME_CHROMA_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$ME_CHROMA_PID" 2>/dev/null || true
    wait "$ME_CHROMA_PID" 2>/dev/null || true
    ME_CHROMA_PID=""
  fi
  if [ -n "$ME_CHROMA_WATCHDOG_PID" ]; then
    kill "$ME_CHROMA_WATCHDOG_PID" 2>/dev/null || true
    wait "$ME_CHROMA_WATCHDOG_PID" 2>/dev/null || true
    ME_CHROMA_WATCHDOG_PID=""
  fi
  if [ -n "$ME_CHROMA_DATA" ]; then
    rm -rf "$ME_CHROMA_DATA" || true
    ME_CHROMA_DATA=""
  fi
  return 0
}

ensure_chroma() {
  local python
  if [ -n "${CHROMA_PYTHON:-}" ] && "$CHROMA_PYTHON" -c 'import chromadb' 2>/dev/null; then
    python="$CHROMA_PYTHON"
  else
    python=$(chroma_venv) || return 1
  fi
  export CHROMA_PYTHON="$python"
  if [ -n "${CHROMA_URL:-}" ]; then
    if chroma_answers "$CHROMA_URL"; then
      chroma_log "Chroma: $CHROMA_URL"
      return 0
    fi
    if [ -n "$ME_CHROMA_PID" ]; then
      chroma_log "the Chroma this shell started at $CHROMA_URL stopped answering; see $ME_CHROMA_LOG"
    else
      chroma_log "CHROMA_URL is set ($CHROMA_URL) but Chroma does not answer its heartbeat; start it or unset CHROMA_URL to start a local one"
    fi
    return 1
  fi
  start_own_chroma "$python" || { chroma_log "could not start Chroma; set CHROMA_URL to one that runs"; return 1; }
  chroma_log "Chroma: $CHROMA_URL"
}

# ensure_job_chroma: the Chroma the daily job (scripts/run.sh, scripts/demo-offline.sh) indexes
# into, persistent like the local PostgreSQL.
#   1. CHROMA_URL or CHROMA_HOST set: used as it is (the job itself says if it does not answer).
#   2. A Chroma answering on 127.0.0.1:${MARKET_ENCODER_CHROMA_PORT:-8000} (the job's default
#      CHROMA_URL): used.
#   3. Otherwise one is started there from the cached venv, with its data in
#      ${MARKET_ENCODER_CHROMA_HOME:-~/.cache/market-encoder/chroma}/data (kept across runs) and
#      its log and pid file beside it. It keeps running after the script, as the local
#      PostgreSQL does; stop it with `kill $(cat ~/.cache/market-encoder/chroma/chroma.pid)`.
ensure_job_chroma() {
  if [ -n "${CHROMA_URL:-}" ] || [ -n "${CHROMA_HOST:-}" ]; then
    return 0
  fi
  local port="${MARKET_ENCODER_CHROMA_PORT:-8000}"
  local url="http://127.0.0.1:$port"
  local home="${MARKET_ENCODER_CHROMA_HOME:-${HOME:-/tmp}/.cache/market-encoder/chroma}"
  if chroma_answers "$url"; then
    export CHROMA_URL="$url"
    chroma_log "Chroma: $url"
    return 0
  fi
  local python
  python=$(chroma_venv) || return 1
  mkdir -p "$home/data"
  chroma_log "starting Chroma $ME_CHROMA_VERSION on $url (data in $home/data, log $home/server.log)"
  ANONYMIZED_TELEMETRY=False nohup "${python%/python}/chroma" run --path "$home/data" \
    --host 127.0.0.1 --port "$port" </dev/null >"$home/server.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$home/chroma.pid"
  local deadline=$((SECONDS + ME_CHROMA_START_TIMEOUT))
  until chroma_answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      chroma_log "Chroma exited during startup (is port $port taken? set MARKET_ENCODER_CHROMA_PORT); last lines of $home/server.log:"
      tail -n 20 "$home/server.log" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      chroma_log "Chroma did not answer $url within ${ME_CHROMA_START_TIMEOUT} s; see $home/server.log"
      return 1
    fi
    sleep 0.2
  done
  export CHROMA_URL="$url"
}
