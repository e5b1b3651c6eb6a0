#!/usr/bin/env bash
# The whole test suite: finds or starts PostgreSQL, provides the Python reference (pandas + ta,
# a cached venv) the indicators are cross-checked against, then runs every test of the
# workspace (unit, property and integration tests against that real PostgreSQL and the local
# fake Yahoo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/pyref.sh
ensure_postgres
ensure_pyref
export TEST_DATABASE_URL="$DATABASE_URL"
cargo test --workspace --locked "$@"
