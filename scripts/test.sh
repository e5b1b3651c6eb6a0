#!/usr/bin/env bash
# The whole test suite: finds or starts PostgreSQL, then runs every test of the workspace
# (unit, property and integration tests against that real PostgreSQL and the local fake Yahoo).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_postgres
export TEST_DATABASE_URL="$DATABASE_URL"
cargo test --workspace --locked "$@"
