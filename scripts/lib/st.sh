# shellcheck shell=bash
# sentence-transformers for scripts/*.sh: the reference implementation the benchmark's market
# memory phase compares our in-process embedder with. Source it; do not run it. Needs bash,
# python3 (with venv) and PyPI.
#
# ensure_st: makes sure a python that can `import sentence_transformers` exists and exports
#   ST_PYTHON  that python
#   1. ST_PYTHON already set: use it if it imports sentence_transformers; fail loudly if it does
#      not (a typo must not silently measure another install).
#   2. Otherwise the venv ${MARKET_ENCODER_ST_VENV:-~/.cache/market-encoder/st-venv}, created once
#      with sentence-transformers==$ME_ST_VERSION from PyPI. It pulls torch (PyPI's Linux build,
#      with its CUDA libraries: several GB, minutes); later calls reuse it. A marker file says the
#      install finished, so a half-finished venv is never used; concurrent callers wait on a lock
#      instead of installing twice.
#
# Usage (scripts/bench.sh --memory):
#   source scripts/lib/st.sh
#   ensure_st                # exports ST_PYTHON
#   ... --st-python "$ST_PYTHON"

ME_ST_VERSION="${MARKET_ENCODER_ST_VERSION:-6.2.0}"
ME_ST_VENV="${MARKET_ENCODER_ST_VENV:-${HOME:-/tmp}/.cache/market-encoder/st-venv}"
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"


# st_venv: creates the venv (once; a marker file says the install finished) and prints its
# python. Concurrent callers wait on a lock instead of installing twice.
st_venv() {
  cached_venv sentence-transformers "$ME_ST_VENV" "sentence-transformers-$ME_ST_VERSION" \
    'sentence_transformers, torch' "sentence-transformers==$ME_ST_VERSION (and torch; several GB, minutes)" \
    -- "sentence-transformers==$ME_ST_VERSION"
}

ensure_st() {
  use_python ST_PYTHON 'sentence_transformers' sentence-transformers st_venv
}
