#!/usr/bin/env bash
# The search-quality evaluation (README, Search quality): a fresh database and a fresh Chroma
# collection, the local fake Yahoo serving several years of the securities in
# eval/securities.yaml, the job run as a backfill (prices, indicators, narratives of each
# security's last embedding_days, embedded in-process with all-MiniLM-L6-v2 and indexed), then
# examples/eval_search.rs on that collection: precision@10 of the queries in
# eval/search-queries.txt against their base rates, and the regime, sign and size band shared
# by the neighbours of random days. Extra arguments go to the evaluation (e.g. --title after
# --out eval/after.md). PostgreSQL, Chroma and the model are provided as scripts/test.sh does.
# A few minutes on 2 cores, most of it embedding ~3,400 documents. --explain-below 0.8 prints
# the neighbours of every weaker query on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/chroma.sh
source scripts/lib/model.sh
ensure_postgres
ensure_model
ensure_chroma # our own server, with its data in a temporary directory; stopped on exit

from="${EVAL_FROM:-2019-01-02}"
db="eval_search_$$"
admin_url="$DATABASE_URL"
psql "$admin_url" -XAtqc "create database \"$db\"" >/dev/null
export DATABASE_URL="${admin_url%/*}/$db"
out=$(mktemp)
fake=""
cleanup() {
  [ -n "$fake" ] && kill "$fake" 2>/dev/null || true
  rm -f "$out"
  psql "$admin_url" -XAtqc "drop database if exists \"$db\" with (force)" >/dev/null 2>&1 || true
}
trap 'stop_chroma; cleanup' EXIT

cargo build --locked --quiet -p market-encoder -p fake-yahoo --bins --example eval_search
bin="${CARGO_TARGET_DIR:-target}/debug"

"$bin/fake-yahoo" --bind 127.0.0.1:0 >"$out" &
fake=$!
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
line=$(head -n 1 "$out")
[ -n "$line" ] || { log "the fake Yahoo did not start"; exit 1; }
export YAHOO_BASE_URL="${line##* }"
export CHROMA_COLLECTION="eval_search"
log "backfill from $from into $db and Chroma collection $CHROMA_COLLECTION (fake Yahoo at $YAHOO_BASE_URL)"
summary="$(dirname "$out")/eval-search-summary.$$.json"
LOG_LEVEL="${LOG_LEVEL:-error}" "$bin/market-encoder" --config eval/securities.yaml --from "$from" >"$summary"
# The embed and index stage's rate, from the run's summary line.
python3 - "$summary" <<'PY' >&2
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('{"summary"')]
s = json.loads(lines[-1])["summary"]
n, ms = s["index"]["documents_indexed"], s["index"]["elapsed_ms"]
print(f"the job: {s['outcome']} in {s['elapsed_ms'] / 1000:.0f} s; embedded and indexed {n} documents in {ms / 1000:.0f} s ({n / max(ms, 1) * 1000:.1f} documents/s)")
PY
rm -f "$summary"
"$bin/examples/eval_search" "$@"
