#!/usr/bin/env bash
# The job end to end with no internet: starts the local fake Yahoo (synthetic bars of the real
# response shape), points YAHOO_BASE_URL at it, provides PostgreSQL, Chroma and the model as
# scripts/run.sh does, runs the job (extra flags go to market-encoder), then shows the market
# memory and the stored prices at work: a `similar` answer for the last stored day of the first
# stored security, and a `pnl` of 10 units of it over its last 30 days.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/chroma.sh
source scripts/lib/model.sh
ensure_job_database
embeddings=yes
if [[ " $* " == *" --no-embeddings "* ]]; then embeddings=no; fi
if [ "$embeddings" = yes ]; then
  ensure_job_chroma
  ensure_job_model
fi
cargo build --release --locked --quiet -p market-encoder -p fake-yahoo
bin="${CARGO_TARGET_DIR:-target}/release"
out=$(mktemp)
"$bin/fake-yahoo" --bind 127.0.0.1:0 >"$out" &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
line=$(head -n 1 "$out")          # "listening on http://127.0.0.1:PORT"
[ -n "$line" ] || { log "the fake Yahoo did not start"; exit 1; }
export YAHOO_BASE_URL="${line##* }"
log "fake Yahoo at $YAHOO_BASE_URL"
"$bin/market-encoder" "$@"

# What the run stored, read back: the first stored security and its last day.
url="${DATABASE_URL:-}"
if [ -z "$url" ]; then
  log "DATABASE_URL is not set (DB_HOST & co.): skipping the similar and pnl demo"
  exit 0
fi
read -r symbol last first < <(psql "$url" -XAtq -F ' ' -c \
  "SELECT symbol, max(trade_date), (max(trade_date) - 30) FROM market_data GROUP BY symbol ORDER BY symbol LIMIT 1")
[ -n "${symbol:-}" ] || { log "no stored prices to show"; exit 1; }
if [ "$embeddings" = yes ]; then
  log "the 5 market days nearest to $symbol on $last:"
  "$bin/market-encoder" similar --symbol "$symbol" --date "$last" -k 5
fi
log "10 units of $symbol held from $first to $last:"
"$bin/market-encoder" pnl --symbol "$symbol" --entry "$first" --exit "$last" --quantity 10
