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
# shellcheck source=scripts/lib/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

ort_log() { printf 'onnxruntime: %s\n' "$*" >&2; }

ort_venv() {
  cached_venv onnxruntime "$ME_ORT_VENV" "onnxruntime-$ME_ORT_VERSION" \
    'onnxruntime, tokenizers, numpy' "onnxruntime==$ME_ORT_VERSION, tokenizers and numpy" \
    -- "onnxruntime==$ME_ORT_VERSION" tokenizers numpy
}

ensure_ort() {
  use_python ORT_PYTHON 'onnxruntime, tokenizers, numpy' onnxruntime ort_venv
}

# ensure_onnx_model: exports the model of EMBEDDING_MODEL_DIR to ONNX once and exports
#   ONNX_MODEL  the exported file, ${MARKET_ENCODER_ONNX_CACHE:-~/.cache/market-encoder/onnx}/
#               all-MiniLM-L6-v2-<first 16 hex of model.safetensors' SHA-256>/model.onnx
# Needs EMBEDDING_MODEL_DIR (scripts/lib/model.sh) and ST_PYTHON (scripts/lib/st.sh: its torch
# and transformers do the export, as transformers' and optimum's exporters do). torch's exporter
# also needs the `onnx` package: installed into that venv once if it lacks it (~20 MB). The file
# is written atomically; later calls return at once.
ensure_onnx_model() {
  [ -n "${EMBEDDING_MODEL_DIR:-}" ] || { ort_log "ensure_onnx_model needs EMBEDDING_MODEL_DIR (ensure_model)"; return 1; }
  [ -n "${ST_PYTHON:-}" ] || { ort_log "ensure_onnx_model needs ST_PYTHON (ensure_st)"; return 1; }
  local sha dir
  sha=$(sha256sum "$EMBEDDING_MODEL_DIR/model.safetensors" | cut -c1-16) || return 1
  dir="${MARKET_ENCODER_ONNX_CACHE:-${HOME:-/tmp}/.cache/market-encoder/onnx}/all-MiniLM-L6-v2-$sha"
  if [ ! -s "$dir/model.onnx" ]; then
    mkdir -p "$dir" || return 1
    (
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$dir.lock" && flock 9
      fi
      [ -s "$dir/model.onnx" ] && exit 0
      if ! "$ST_PYTHON" -c 'import onnx' 2>/dev/null; then
        ort_log "installing onnx into $(dirname "$(dirname "$ST_PYTHON")") for torch's ONNX exporter (once)..."
        "$ST_PYTHON" -m pip install -q --disable-pip-version-check onnx >&2 || {
          ort_log "pip install onnx failed (is PyPI reachable?)"
          exit 1
        }
      fi
      ort_log "exporting $EMBEDDING_MODEL_DIR to $dir/model.onnx (once)..."
      HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$ST_PYTHON" crates/bench/ort_throughput.py \
        export "$EMBEDDING_MODEL_DIR" "$dir/model.onnx" >&2 || {
        ort_log "the ONNX export failed"
        exit 1
      }
    ) || return 1
  fi
  export ONNX_MODEL="$dir/model.onnx"
}
