#!/usr/bin/env bash
# Benchmark: N securities x 10 years against the local fake Yahoo (100 ms per request) into a
# real PostgreSQL; prints wall time, rows/s, peak RSS, and the store stage versus COPY.
# Flags go to market-encoder-bench (see --help), e.g. `scripts/bench.sh --securities 1000`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_postgres
cargo build --release --locked --quiet -p market-encoder -p market-encoder-bench
exec target/release/market-encoder-bench --binary target/release/market-encoder "$@"
