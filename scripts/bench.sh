#!/usr/bin/env bash
# Benchmark: N securities x 10 years against the local fake Yahoo (100 ms per request) into a
# real PostgreSQL; prints wall time, rows/s, peak RSS, and the store stage versus COPY.
# Flags go to market-encoder-bench (see --help), e.g. `scripts/bench.sh --securities 1000`.
# With --memory it also measures market memory (phase C): the job with its embed and index
# stages, embedding throughput in-process versus sentence-transformers on the same texts, and
# Chroma's indexing rate and query latency. For that it starts a local Chroma
# (scripts/lib/chroma.sh, stopped on exit), uses the cached model (scripts/lib/model.sh) and a
# sentence-transformers venv created once (scripts/lib/st.sh; it pulls torch, several GB), and
# onnxruntime on the same texts (scripts/lib/ort.sh: a small venv, and the model exported to ONNX
# once with the sentence-transformers venv's torch, cached under ~/.cache/market-encoder/onnx).
# It first checks the release binary's kernels (scripts/check-kernels.sh) and names the kernel
# path (AVX-512 / AVX2+FMA / NEON / baseline) the encoder takes on this CPU.
# With --python-stack (phase E) it also runs the Python stack a user would pick instead
# (crates/bench/python_stack.py: yfinance, pandas, psycopg2, chromadb; a venv created once by
# scripts/lib/pystack.sh) on the first and the next daily run with embeddings and on phase A's
# backfill, back to back with the release binary; it needs what --memory needs.
# MARKET_ENCODER_BENCH_JOB_LOGS=DIR keeps phase E's job logs (at info, with each stage's
# timestamps) in DIR, one file a run: where the next daily run's time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_postgres
memory=false st_given=false ort_given=false pystack=false
args=()
for arg in "$@"; do
  case "$arg" in
    --memory) memory=true ;;
    --python-stack) pystack=true && continue ;;
    --st-python | --st-python=*) st_given=true ;;
    --ort-python | --ort-python=*) ort_given=true ;;
  esac
  args+=("$arg")
done
set -- "${args[@]}"
cargo build --release --locked --quiet -p market-encoder -p market-encoder-bench
release="${CARGO_TARGET_DIR:-target}/release"
if [ "$memory" = false ] && [ "$pystack" = false ]; then
  exec "$release/market-encoder-bench" --binary "$release/market-encoder" "$@"
fi
source scripts/lib/model.sh
source scripts/lib/chroma.sh
source scripts/lib/st.sh
source scripts/lib/ort.sh
source scripts/lib/pystack.sh
scripts/check-kernels.sh "$release/market-encoder"
ensure_model # exports EMBEDDING_MODEL_DIR
ensure_chroma # exports CHROMA_URL; our own server stops when this script exits
st=()
if [ "$st_given" = false ]; then
  ensure_st # exports ST_PYTHON
  st=(--st-python "$ST_PYTHON")
fi
ort=()
if [ "$ort_given" = false ]; then
  ensure_ort # exports ORT_PYTHON
  if [ -n "${ST_PYTHON:-}" ] && ensure_onnx_model; then # exports ONNX_MODEL
    ort=(--ort-python "$ORT_PYTHON" --onnx-model "$ONNX_MODEL")
  fi
fi
py=()
if [ "$pystack" = true ]; then
  ensure_pystack # exports PYSTACK_PYTHON
  [ -n "${ONNX_MODEL:-}" ] || { ensure_st && ensure_onnx_model; } || {
    log "--python-stack needs the model in ONNX (sentence-transformers' torch exports it)"
    exit 1
  }
  py=(--python-stack "$PYSTACK_PYTHON")
  [ ${#ort[@]} -gt 0 ] || py+=(--onnx-model "$ONNX_MODEL")
fi
# Not exec: the EXIT trap has to stop Chroma after the benchmark.
"$release/market-encoder-bench" --binary "$release/market-encoder" "${st[@]}" "${ort[@]}" "${py[@]}" "$@"
