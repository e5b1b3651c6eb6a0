#!/usr/bin/env bash
# Runs the daily job: `scripts/run.sh [market-encoder flags]`, e.g. `scripts/run.sh --categories indices`.
# With no database configured (DATABASE_URL, or DB_HOST & co.), it finds or starts a local
# PostgreSQL and uses its database `market_encoder`. Reaching Yahoo needs internet; see
# scripts/demo-offline.sh to watch it work against the local fake instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_job_database
cargo build --release --locked --quiet --bin market-encoder
exec target/release/market-encoder "$@"
