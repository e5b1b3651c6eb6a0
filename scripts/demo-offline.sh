#!/usr/bin/env bash
# The job end to end with no internet: starts the local fake Yahoo (synthetic bars of the real
# response shape), points YAHOO_BASE_URL at it and runs the job. Extra flags go to market-encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_job_database
cargo build --release --locked --quiet -p market-encoder -p fake-yahoo
out=$(mktemp)
target/release/fake-yahoo --bind 127.0.0.1:0 >"$out" &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
line=$(head -n 1 "$out")          # "listening on http://127.0.0.1:PORT"
[ -n "$line" ] || { log "the fake Yahoo did not start"; exit 1; }
export YAHOO_BASE_URL="${line##* }"
log "fake Yahoo at $YAHOO_BASE_URL"
set +e
target/release/market-encoder "$@"
status=$?
exit $status
