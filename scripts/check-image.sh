#!/usr/bin/env bash
# Builds the Dockerfile, unchanged, with podman and runs the image the way the CronJob does:
# `scripts/check-image.sh` (run by scripts/test.sh, so by CI). No registry, no Docker daemon.
#
#   1. podman, runc, debootstrap from Debian if absent; the stand-in base images the Dockerfile
#      names (scripts/lib/podman.sh: made once, cached under ~/.cache/market-encoder/podman).
#   2. `podman build --pull=never --format docker` of the Dockerfile (the OCI format would drop
#      its SHELL, and pipefail with it). Cold: the release build, 12-20 min on 2 cores; warm
#      (sources changed, Cargo.lock not): the workspace crates only, a few minutes.
#   3. The image as built: runs as 10001:10001, holds a CA bundle, tz data and the model.
#   4. The image run as the CronJob's securityContext asks: read-only root, UID 10001, every
#      capability dropped, no privilege escalation, /tmp a tmpfs, host network (the host's
#      PostgreSQL, a local Chroma, the local fake Yahoo): `migrate`, `--dry-run` of the baked-in
#      securities file, the job for the indices and VIX with embeddings from the baked-in model,
#      `similar`; exit codes, stored rows and Chroma records checked; the database password must
#      appear in no output.
#   5. The CronJob's own pod: a Pod derived from its jobTemplate (scripts/image/pod-from-cronjob.py)
#      played with `podman kube play`: its command, env, envFrom, mounts, volumes and
#      securityContext as shipped, the shipped securities ConfigMap, over every enabled
#      security. Exit 0 and rows for each of them.
#   6. docker-compose.test.yml with PyPI's podman-compose and stand-ins for postgres:15 and
#      chromadb/chroma:1.5.9: `market-encoder-test` (the dry run) exits 0, and `migrate` through
#      the same service reaches postgres-test with its password. Health checks do not run under
#      podman here (they need systemd), so the script waits for PostgreSQL and Chroma itself.
# Not done here, and said so at the end: pushing to a registry, running on a real cluster.
# Exits 0 if every check passes, else 1 after one "check-image: FAIL ..." line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/venv.sh
source scripts/lib/chroma.sh
source scripts/lib/podman.sh

PODMAN_COMPOSE_VERSION=1.6.0
IMAGE=localhost/market-encoder:check
COMPOSE_PROJECT=market-encoder-check
# Never a real password: the container outputs are searched for it.
DB_SECRET="image-check-$$-not-a-real-password"
started=$SECONDS

say() { printf 'check-image: %s\n' "$*" >&2; }
fail() {
  say "FAIL $*"
  exit 1
}

work=$(mktemp -d)
fake_pid=""
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
  podman pod rm -f -t 5 market-encoder-check >/dev/null 2>&1 || true
  podman secret rm market-encoder-secrets >/dev/null 2>&1 || true
  if [ -n "${compose[*]:-}" ]; then "${compose[@]}" down -v >/dev/null 2>&1 || true; fi
  stop_chroma
  rm -rf "$work"
}
trap cleanup EXIT

ensure_podman
ensure_stand_in_images

# --- 2. build ---------------------------------------------------------------------------------
say "building the Dockerfile with podman (log: $ME_PODMAN_HOME/build-image.log; cold, the release build takes 12-20 min on 2 cores)"
build_started=$SECONDS
previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if ! podman build --pull=never --format docker -t "$IMAGE" . >"$ME_PODMAN_HOME/build-image.log" 2>&1; then
  tail -n 30 "$ME_PODMAN_HOME/build-image.log" >&2
  fail "Dockerfile: podman build failed (above: the end of $ME_PODMAN_HOME/build-image.log)"
fi
say "ok built $IMAGE in $((SECONDS - build_started)) s"
# The previous build's image, now untagged (not `podman image prune`: the untagged intermediate
# images are the build cache, the cargo-chef dependency layer among them).
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi

# --- 3. what the image holds ------------------------------------------------------------------
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || fail "Dockerfile: the image runs as '$user', the manifests expect 10001:10001 (USER)"
# As the CronJob runs it: read-only root, UID 10001, no capabilities, /tmp a tmpfs.
as_cronjob=(podman run --rm --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=256m,mode=1777
  --user 10001:10001 --cap-drop=ALL --security-opt=no-new-privileges --network=host)
inside() { # DESCRIPTION SHELL-TEST: the test holds inside the image, run as the CronJob runs it
  "${as_cronjob[@]}" --entrypoint /bin/sh "$IMAGE" -c "$2" >/dev/null 2>&1 || fail "image: $1"
}
inside "no CA bundle at /etc/ssl/certs/ca-certificates.crt (TLS to Yahoo, Tiingo, Chroma)" \
  'test -s /etc/ssl/certs/ca-certificates.crt && [ "$(grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt)" -gt 100 ]'
inside "no tz data (exchange time zones: /usr/share/zoneinfo/America/New_York)" \
  'test -s /usr/share/zoneinfo/America/New_York'
inside "no model at \$EMBEDDING_MODEL_DIR (config.json, tokenizer.json, model.safetensors)" \
  'for f in config.json tokenizer.json model.safetensors; do test -s "$EMBEDDING_MODEL_DIR/$f" || exit 1; done'
inside "the root filesystem is writable as UID 10001 (readOnlyRootFilesystem)" \
  '! touch /opt/market-encoder/x && touch /tmp/x && [ "$(id -u)" = 10001 ]'
say "ok the image runs as 10001:10001 with a CA bundle, tz data and the model, read-only but /tmp"

# --- 4. the image as the CronJob runs it --------------------------------------------------------
ensure_postgres
db=market_encoder_image_check
PGOPTIONS="-c client_min_messages=warning" psql "$DATABASE_URL" -XAtqc "drop database if exists $db with (force)" >/dev/null
psql "$DATABASE_URL" -XAtqc "create database $db" >/dev/null
base=${DATABASE_URL%/*} # postgres://USER[:PASSWORD]@HOST:PORT
check_db_url="$base/$db"
userinfo=${base#*://}
userinfo=${userinfo%@*}
db_user=${userinfo%%:*}
if [ "$userinfo" != "$db_user" ]; then DB_SECRET=${userinfo#*:}; fi # a server that wants its password
pg_host_port=${base##*@}
db_host=${pg_host_port%:*}
db_port=${pg_host_port##*:}
ensure_chroma
collection="image_check_$$"

say "building the fake Yahoo for the container to fetch from"
cargo build --locked --quiet -p fake-yahoo
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/debug/fake-yahoo" --bind 127.0.0.1:0 >"$work/fake.out" 2>"$work/fake.err" &
fake_pid=$!
for _ in $(seq 100); do grep -q '^listening on ' "$work/fake.out" && break; sleep 0.1; done
yahoo=$(sed -n 's/^listening on //p' "$work/fake.out")
[ -n "$yahoo" ] || fail "the fake Yahoo did not start: $(cat "$work/fake.err")"

# The CronJob's environment, with this machine's services; DB_* as the Secret gives them (a
# local server trusting loopback ignores the password: it is only carried, and must never be
# shown).
job_env=(-e DB_HOST="$db_host" -e DB_PORT="$db_port" -e DB_NAME="$db" -e DB_USER="$db_user"
  -e DB_PASSWORD="$DB_SECRET" -e CHROMA_URL="$CHROMA_URL" -e CHROMA_COLLECTION="$collection"
  -e YAHOO_BASE_URL="$yahoo" -e TMPDIR=/tmp -e LOG_LEVEL=INFO)
step() { # NAME ARGS...: the image's entrypoint with ARGS, as the CronJob runs it; output in $work/NAME
  local name=$1 rc=0
  shift
  "${as_cronjob[@]}" "${job_env[@]}" "$IMAGE" "$@" >"$work/$name.out" 2>&1 || rc=$?
  if grep -qF "$DB_SECRET" "$work/$name.out"; then
    fail "image: \`market-encoder $*\` showed the database password"
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$work/$name.out" >&2
    fail "image: \`market-encoder $*\` exited $rc (above: its last lines)"
  fi
}
step migrate migrate
step dry-run --dry-run
grep -q '^fetch:' "$work/dry-run.out" || fail "image: --dry-run of the baked-in securities file printed no fetch plan"
step job --categories indices volatility
count() { psql "$check_db_url" -XAtqc "$1"; }
securities=$(count "select count(distinct symbol) from market_data")
[ "$securities" -eq 5 ] || fail "image: the job stored bars for $securities securities, expected 5 (indices + VIX)"
unindexed=$(count "select count(*) from documents where indexed_hash is distinct from content_hash")
documents=$(count "select count(*) from documents")
[ "$documents" -gt 0 ] && [ "$unindexed" -eq 0 ] \
  || fail "image: $documents documents, $unindexed of them not indexed in Chroma"
records=$("$CHROMA_PYTHON" - "$CHROMA_URL" "$collection" <<'PY'
import sys, urllib.parse, chromadb
url = urllib.parse.urlsplit(sys.argv[1])
print(chromadb.HttpClient(host=url.hostname, port=url.port).get_collection(sys.argv[2]).count())
PY
)
[ "$records" -eq "$documents" ] || fail "image: Chroma holds $records records of $collection, the database $documents documents"
last=$(count "select max(trade_date) from market_data where symbol = 'SPX'")
step similar similar --symbol SPX --date "$last" -k 3
[ "$(grep -c 'SPX\|IXIC\|DJI\|RUT\|VIX' "$work/similar.out")" -ge 3 ] \
  || fail "image: similar answered no neighbours: $(head -c 300 "$work/similar.out")"
say "ok as the CronJob runs it: migrate, --dry-run, the job (5 securities, $documents documents indexed with the baked-in model), similar"

# --- 5. the CronJob's pod ---------------------------------------------------------------------
compose_python=$(cached_venv image "${MARKET_ENCODER_IMAGE_VENV:-${HOME:-/tmp}/.cache/market-encoder/image-venv}" \
  "podman-compose-$PODMAN_COMPOSE_VERSION" "yaml" "podman-compose $PODMAN_COMPOSE_VERSION" \
  -- "podman-compose==$PODMAN_COMPOSE_VERSION")
CHECK_DB_HOST=$db_host CHECK_DB_PORT=$db_port CHECK_DB_NAME=$db CHECK_DB_USER=$db_user \
  CHECK_DB_PASSWORD=$DB_SECRET CHECK_CHROMA_URL=$CHROMA_URL CHECK_CHROMA_COLLECTION=$collection \
  CHECK_YAHOO_BASE_URL=$yahoo \
  "$compose_python" scripts/image/pod-from-cronjob.py k8s "$work/pod" "$IMAGE" \
  || fail "k8s/market-encoder-cronjob.yaml: no pod could be derived from its jobTemplate (above)"
podman secret rm market-encoder-secrets >/dev/null 2>&1 || true
podman secret create market-encoder-secrets "$work/pod/secret.json" >/dev/null
podman pod rm -f -t 5 market-encoder-check >/dev/null 2>&1 || true
say "playing the CronJob's pod (every enabled security of the shipped ConfigMap)"
configmaps=()
for f in "$work"/pod/configmap-*.yaml; do configmaps+=(--configmap "$f"); done
if ! podman kube play "${configmaps[@]}" "$work/pod/pod.yaml" >"$work/play.out" 2>&1; then
  cat "$work/play.out" >&2
  fail "k8s/market-encoder-cronjob.yaml: podman kube play of its pod failed (above)"
fi
container=market-encoder-check-market-encoder
rc=$(timeout 900 podman wait "$container") || fail "k8s: the CronJob's pod did not finish within 15 min"
podman logs "$container" >"$work/pod.out" 2>&1 || true
grep -qF "$DB_SECRET" "$work/pod.out" && fail "k8s: the CronJob's pod showed the database password"
if [ "$rc" -ne 0 ]; then
  tail -n 20 "$work/pod.out" >&2
  fail "k8s: the CronJob's pod exited $rc (above: its last lines)"
fi
stored=$(count "select count(distinct symbol) from market_data")
# The dry run of the same (baked-in = shipped) file said how many it enables: "config: ... (N securities, M enabled)".
expected=$(sed -n 's/^config: .* \([0-9][0-9]*\) enabled)$/\1/p' "$work/dry-run.out")
[ -n "$expected" ] || fail "image: --dry-run did not say how many securities the shipped file enables"
[ "$stored" -eq "$expected" ] || fail "k8s: after the CronJob's pod $stored securities are stored, the shipped file enables $expected"
podman pod rm -f -t 5 market-encoder-check >/dev/null 2>&1 || true
say "ok the CronJob's pod ran to exit 0 as shipped (read-only root, UID 10001, ConfigMap and Secret env): $stored securities stored"

# --- 6. docker-compose.test.yml ----------------------------------------------------------------
ensure_compose_stand_ins
podman tag "$IMAGE" localhost/market-encoder:test
chroma_port=$(chroma_free_port "$CHROMA_PYTHON")
export CHROMA_TEST_PORT=$chroma_port
compose=("${compose_python%/python}/podman-compose" -p "$COMPOSE_PROJECT" -f docker-compose.test.yml)
"${compose[@]}" down -v >/dev/null 2>&1 || true
"${compose[@]}" up -d --no-build postgres-test chroma >"$work/compose-up.out" 2>&1 || {
  cat "$work/compose-up.out" >&2
  fail "docker-compose.test.yml: podman-compose up postgres-test chroma failed (above)"
}
# Health checks do not run here: wait for what service_healthy would have waited for.
deadline=$((SECONDS + 90))
until "${compose[@]}" exec -T postgres-test pg_isready -q -U market_encoder -d market_encoder_test >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || fail "docker-compose.test.yml: postgres-test not ready within 90 s"
  sleep 1
done
until chroma_answers "http://127.0.0.1:$chroma_port"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "docker-compose.test.yml: chroma not answering on 127.0.0.1:$chroma_port within 90 s"
  sleep 1
done
"${compose[@]}" run --rm --no-deps market-encoder-test >"$work/compose-dry-run.out" 2>&1 || {
  tail -n 20 "$work/compose-dry-run.out" >&2
  fail "docker-compose.test.yml: market-encoder-test (--dry-run) did not exit 0 (above)"
}
"${compose[@]}" run --rm --no-deps market-encoder-test migrate >"$work/compose-migrate.out" 2>&1 || {
  tail -n 20 "$work/compose-migrate.out" >&2
  fail "docker-compose.test.yml: migrate through market-encoder-test did not reach postgres-test (above)"
}
"${compose[@]}" down -v >/dev/null 2>&1 || true
compose=()
say "ok docker-compose.test.yml under podman-compose $PODMAN_COMPOSE_VERSION: market-encoder-test exits 0, migrate reaches postgres-test"

say "not checked here: a push to a registry and a run on a real cluster (none is reachable from this machine)"
say "all passed in $((SECONDS - started)) s"
