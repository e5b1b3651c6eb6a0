# shellcheck shell=bash
# The Python stack a user would pick instead of market-encoder (yfinance, pandas, psycopg2,
# chromadb with its onnxruntime embedding function), for the benchmark's phase E
# (crates/bench/python_stack.py). Source it; do not run it. Needs bash, python3 (with venv) and
# PyPI.
#
# ensure_pystack: makes sure a python that can `import yfinance, pandas, psycopg2, chromadb,
# yaml` exists and exports
#   PYSTACK_PYTHON  that python
#   1. PYSTACK_PYTHON already set: use it if it imports them; fail loudly if it does not.
#   2. Otherwise the venv ${MARKET_ENCODER_PYSTACK_VENV:-~/.cache/market-encoder/pystack-venv},
#      created once with the pinned versions below (~400 MB, no torch); later calls reuse it.

ME_PYSTACK_SPEC="yfinance==1.7.0 pandas==3.1.1 psycopg2-binary==2.9.13 chromadb==1.5.9 PyYAML==6.0.4"
ME_PYSTACK_VENV="${MARKET_ENCODER_PYSTACK_VENV:-${HOME:-/tmp}/.cache/market-encoder/pystack-venv}"
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

pystack_venv() {
  # shellcheck disable=SC2086 # the spec is a list of requirements
  cached_venv python-stack "$ME_PYSTACK_VENV" "$(printf '%s' "$ME_PYSTACK_SPEC" | tr ' =' '_-')" \
    'yfinance, pandas, psycopg2, chromadb, yaml' "the Python stack ($ME_PYSTACK_SPEC)" \
    -- $ME_PYSTACK_SPEC
}

ensure_pystack() {
  use_python PYSTACK_PYTHON 'yfinance, pandas, psycopg2, chromadb, yaml' python-stack pystack_venv
}
