# A Python venv created once under ~/.cache and reused: source it; do not run it.
#
# cached_venv LABEL DIR VERSION_MARKER IMPORTS WHAT -- PIP_ARGS...
#   Creates DIR as a venv and pip-installs PIP_ARGS into it, once: the marker file
#   DIR/.market-encoder-VERSION_MARKER says the install finished and `import IMPORTS` worked.
#   Concurrent callers wait on DIR.lock (flock) instead of installing twice. Messages go to
#   stderr prefixed with LABEL; WHAT names the install in them. Prints the venv's python.
#   Python is ${MARKET_ENCODER_PYTHON:-python3}.
cached_venv() {
  local label=$1 venv=$2 marker="$2/.market-encoder-$3" imports=$4 what=$5
  shift 5
  [ "${1:-}" = -- ] && shift
  if [ ! -f "$marker" ]; then
    mkdir -p "$(dirname "$venv")" || return 1
    (
      log() { printf '%s: %s\n' "$label" "$*" >&2; }
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock" && flock 9
      fi
      [ -f "$marker" ] && exit 0 # another process finished it while we waited
      started=$SECONDS
      log "installing $what into $venv (once)..."
      rm -rf "$venv"
      "${MARKET_ENCODER_PYTHON:-python3}" -m venv "$venv" >&2 || {
        log "cannot create a venv with ${MARKET_ENCODER_PYTHON:-python3} (Debian: apt-get install python3-venv; or set MARKET_ENCODER_PYTHON)"
        exit 1
      }
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >&2 || {
        log "pip install $what failed (is PyPI reachable? enough disk?)"
        exit 1
      }
      "$venv/bin/python" -c "import $imports" >&2 || {
        log "$what installed but does not import"
        exit 1
      }
      touch "$marker"
      log "installed $what in $((SECONDS - started)) s"
    ) || return 1
  fi
  printf '%s\n' "$venv/bin/python"
}

# use_python VAR IMPORTS LABEL VENV_FN: exports VAR as a python that can `import IMPORTS`: VAR's
# own value when set (an error if it cannot import them, rather than a silent fallback), else
# what VENV_FN (a cached_venv caller) prints.
use_python() {
  local var=$1 imports=$2 label=$3 venv_fn=$4 given python
  given=${!var:-}
  if [ -n "$given" ]; then
    if "$given" -c "import $imports" 2>/dev/null; then
      export "${var?}"
      return 0
    fi
    printf '%s: %s\n' "$label" "$var=$given cannot import $imports; unset it to use the cached venv" >&2
    return 1
  fi
  python=$("$venv_fn") || return 1
  export "$var=$python"
}
