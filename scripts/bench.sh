#!/usr/bin/env bash
# Benchmark: N securities x 10 years against the local fake Yahoo (100 ms per request) into a
# real PostgreSQL; prints wall time, rows/s, peak RSS, and the store stage versus COPY.
# Flags go to market-encoder-bench (see --help), e.g. `scripts/bench.sh --securities 1000`.
# With --memory it also measures market memory (phase C): the job with its embed and index
# stages, embedding throughput in-process versus sentence-transformers on the same texts, and
# Chroma's indexing rate and query latency. For that it starts a local Chroma
# (scripts/lib/chroma.sh, stopped on exit), uses the cached model (scripts/lib/model.sh) and a
# sentence-transformers venv created once (scripts/lib/st.sh; it pulls torch, several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_postgres
memory=false st_given=false
for arg in "$@"; do
  case "$arg" in
    --memory) memory=true ;;
    --st-python | --st-python=*) st_given=true ;;
  esac
done
cargo build --release --locked --quiet -p market-encoder -p market-encoder-bench
if [ "$memory" = false ]; then
  exec target/release/market-encoder-bench --binary target/release/market-encoder "$@"
fi
source scripts/lib/model.sh
source scripts/lib/chroma.sh
source scripts/lib/st.sh
ensure_model # exports EMBEDDING_MODEL_DIR
ensure_chroma # exports CHROMA_URL; our own server stops when this script exits
st=()
if [ "$st_given" = false ]; then
  ensure_st # exports ST_PYTHON
  st=(--st-python "$ST_PYTHON")
fi
# Not exec: the EXIT trap has to stop Chroma after the benchmark.
target/release/market-encoder-bench --binary target/release/market-encoder "${st[@]}" "$@"
