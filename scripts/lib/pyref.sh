# shellcheck shell=bash
# ensure_pyref: a cached Python venv with pandas and `ta`, the independent reference the test
# suite cross-checks the indicators against. Exports REF_PYTHON. Source it; do not run it.
ensure_pyref() {
  local venv="${MARKET_ENCODER_PYREF_VENV:-$HOME/.cache/market-encoder/pyref-venv}"
  local want="pandas==2.2.3 numpy==2.2.6 ta==0.11.0"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.market-encoder-spec" 2>/dev/null)" != "$want" ]; then
    printf 'creating the reference venv %s (%s)...\n' "$venv" "$want" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
    printf '%s' "$want" >"$venv/.market-encoder-spec"
  fi
  export REF_PYTHON="$venv/bin/python"
}
