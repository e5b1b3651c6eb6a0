# shellcheck shell=bash
# onnxruntime for scripts/*.sh: the fastest CPU runtime the benchmark's market memory phase
# compares our in-process embedder with. Source it; do not run it. Needs bash, python3 (with
# venv) and PyPI.
#
# ensure_ort: makes sure a python that can `import onnxruntime, tokenizers, numpy` exists and
# exports
#   ORT_PYTHON  that python
#   1. ORT_PYTHON already set: use it if it imports them; fail loudly if it does not.
#   2. Otherwise the venv ${MARKET_ENCODER_ORT_VENV:-~/.cache/market-encoder/ort-venv}, created
#      once with onnxruntime==$ME_ORT_VERSION, tokenizers and numpy from PyPI (~60 MB, no torch);
#      later calls reuse it. A marker file says the install finished; concurrent callers wait on
#      a lock.
#
# The ONNX model itself is exported from the safetensors weights by
# crates/bench/ort_throughput.py's `export` command with the sentence-transformers venv's torch
# (scripts/lib/st.sh), and cached next to the model directory by market-encoder-bench.
#
# Usage (scripts/bench.sh --memory):
#   source scripts/lib/ort.sh
#   ensure_ort               # exports ORT_PYTHON
#   ... --ort-python "$ORT_PYTHON"

ME_ORT_VERSION="${MARKET_ENCODER_ORT_VERSION:-1.32.0}"
ME_ORT_VENV="${MARKET_ENCODER_ORT_VENV:-${HOME:-/tmp}/.cache/market-encoder/ort-venv}"

ort_log() { printf 'onnxruntime: %s\n' "$*" >&2; }

ort_venv() {
  local venv="$ME_ORT_VENV" marker="$ME_ORT_VENV/.market-encoder-onnxruntime-$ME_ORT_VERSION"
  if [ ! -f "$marker" ]; then
    mkdir -p "$(dirname "$venv")" || return 1
    (
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock" && flock 9
      fi
      [ -f "$marker" ] && exit 0 # another process finished it while we waited
      started=$SECONDS
      ort_log "installing onnxruntime==$ME_ORT_VERSION, tokenizers and numpy into $venv (once)..."
      rm -rf "$venv"
      "${MARKET_ENCODER_PYTHON:-python3}" -m venv "$venv" >&2 || {
        ort_log "cannot create a venv with ${MARKET_ENCODER_PYTHON:-python3} (Debian: apt-get install python3-venv; or set MARKET_ENCODER_PYTHON)"
        exit 1
      }
      "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        "onnxruntime==$ME_ORT_VERSION" tokenizers numpy >&2 || {
        ort_log "pip install onnxruntime==$ME_ORT_VERSION failed (is PyPI reachable? enough disk?)"
        exit 1
      }
      "$venv/bin/python" -c 'import onnxruntime, tokenizers, numpy' >&2 || {
        ort_log "onnxruntime==$ME_ORT_VERSION installed but does not import"
        exit 1
      }
      touch "$marker"
      ort_log "installed onnxruntime==$ME_ORT_VERSION in $((SECONDS - started)) s"
    ) || return 1
  fi
  printf '%s\n' "$venv/bin/python"
}

ensure_ort() {
  if [ -n "${ORT_PYTHON:-}" ]; then
    if "$ORT_PYTHON" -c 'import onnxruntime, tokenizers, numpy' 2>/dev/null; then
      export ORT_PYTHON
      return 0
    fi
    ort_log "ORT_PYTHON=$ORT_PYTHON cannot import onnxruntime, tokenizers and numpy; unset it to use the cached venv"
    return 1
  fi
  local python
  python=$(ort_venv) || return 1
  export ORT_PYTHON="$python"
}
