#!/usr/bin/env bash
# Validates every Kubernetes manifest in k8s/ against the API schemas of one Kubernetes version,
# with kubernetes-validate (PyPI) in a cached venv. Exits non-zero, naming the file, on any error.
#
#   scripts/check-k8s.sh            # all of k8s/*.yaml
#   scripts/check-k8s.sh FILE...    # only these
#
# Environment:
#   MARKET_ENCODER_K8S_VERSION           Kubernetes version of the schemas (default 1.30.0)
#   MARKET_ENCODER_K8S_VALIDATE_VERSION  kubernetes-validate from PyPI (default 1.37.0)
#   MARKET_ENCODER_K8S_VENV              the venv (default ~/.cache/market-encoder/k8s-venv)
#   MARKET_ENCODER_PYTHON                python used to create it (default python3)
# The venv is created once (a marker file says the install finished; concurrent callers wait
# on a flock). kustomization.yaml is not an API object: it is checked with `kubectl kustomize`
# when kubectl is installed. Called by scripts/check-deploy.sh.
set -euo pipefail

cd "$(dirname "$0")/.."

K8S_VERSION="${MARKET_ENCODER_K8S_VERSION:-1.30.0}"
KV_VERSION="${MARKET_ENCODER_K8S_VALIDATE_VERSION:-1.37.0}"
VENV="${MARKET_ENCODER_K8S_VENV:-${HOME:-/tmp}/.cache/market-encoder/k8s-venv}"

log() { printf 'check-k8s: %s\n' "$*" >&2; }

# k8s_venv: creates the venv with kubernetes-validate (once) and prints its executable.
k8s_venv() {
  local marker="$VENV/.market-encoder-kubernetes-validate-$KV_VERSION"
  if [ ! -f "$marker" ]; then
    mkdir -p "$(dirname "$VENV")" || return 1
    (
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$VENV.lock" && flock 9
      fi
      [ -f "$marker" ] && exit 0 # another process finished it while we waited
      log "installing kubernetes-validate==$KV_VERSION into $VENV (once)..."
      rm -rf "$VENV"
      "${MARKET_ENCODER_PYTHON:-python3}" -m venv "$VENV" >&2 || {
        log "cannot create a venv with ${MARKET_ENCODER_PYTHON:-python3} (Debian: apt-get install python3-venv; or set MARKET_ENCODER_PYTHON)"
        exit 1
      }
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "kubernetes-validate==$KV_VERSION" >&2 || {
        log "pip install kubernetes-validate==$KV_VERSION failed (is PyPI reachable?)"
        exit 1
      }
      touch "$marker"
    ) || return 1
  fi
  printf '%s\n' "$VENV/bin/kubernetes-validate"
}

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  shopt -s nullglob
  files=(k8s/*.yaml k8s/*.yml)
fi
[ "${#files[@]}" -gt 0 ] || { log "no manifests found in k8s/"; exit 1; }

validate="$(k8s_venv)"
failed=()
for f in "${files[@]}"; do
  case "$(basename "$f")" in
    kustomization.yaml | kustomization.yml)
      if command -v kubectl >/dev/null 2>&1; then
        if ! out="$(kubectl kustomize "$(dirname "$f")" 2>&1 >/dev/null)"; then
          log "FAIL $f: kubectl kustomize: $out"
          failed+=("$f")
          continue
        fi
        log "ok   $f (kubectl kustomize)"
      else
        log "skip $f (not an API object; kubectl not installed to build it)"
      fi
      continue
      ;;
  esac
  if out="$("$validate" --strict --kubernetes-version "$K8S_VERSION" "$f" 2>&1)"; then
    log "ok   $f (Kubernetes $K8S_VERSION, strict)"
  else
    printf '%s\n' "$out" >&2
    log "FAIL $f"
    failed+=("$f")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  log "${#failed[@]} manifest(s) failed: ${failed[*]}"
  exit 1
fi
log "all ${#files[@]} manifest(s) valid"
