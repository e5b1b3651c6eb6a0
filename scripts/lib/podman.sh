# Podman and the stand-in base images for scripts/check-image.sh. Source it; do not run it.
#
# ensure_podman: makes `podman` usable here, installing Debian's podman, runc and debootstrap the
#   first time (apt-get). Its configuration and storage are ours, not the machine's: the files
#   under $ME_PODMAN_HOME (~/.cache/market-encoder/podman) are exported as CONTAINERS_CONF and
#   CONTAINERS_STORAGE_CONF, so /etc/containers is never edited and every layer (base images,
#   the cargo-chef dependency layer) is cached under ~/.cache. Why these settings
#   (../shared/reference/containers.md, found on these machines):
#     runtime runc      crun fails here: `cgroups in hybrid mode not supported`
#     default_ulimits   podman asks for nofile=1048576; root without CAP_SYS_RESOURCE cannot
#                       raise it past the machine's limit, and nproc above 32768 fails
#
# ensure_stand_in_images: the images the Dockerfile and docker-compose.test.yml name, which no
#   registry here serves, made locally and tagged with those exact names:
#     docker.io/library/debian:bookworm-slim      debootstrap --variant=minbase (no CA bundle, as
#                                                 the real slim image: the Dockerfile installs it)
#     docker.io/library/rust:1.95-slim-bookworm   that + gcc, libc6-dev and this machine's Rust
#                                                 1.95 toolchain where the official image has it
#     docker.io/library/python:3.11-slim-bookworm that + Debian's python3 and pip
#     docker.io/library/postgres:15               that + Debian's postgresql-15, an entrypoint
#                                                 honouring POSTGRES_USER/PASSWORD/DB
#     docker.io/chromadb/chroma:1.5.9             the python one + PyPI's chromadb==1.5.9
#   The builder stand-ins (rust, python, chroma) trust this machine's CA bundle: outbound HTTPS
#   here is re-signed by a proxy, so cargo and pip inside a build need it. The runtime base
#   (debian) does not: what the image trusts is what its Dockerfile installs. Each image carries
#   a label with the hash of its recipe (Containerfile, CA bundle, toolchain version); a changed
#   recipe remakes it, an unchanged one is reused (seconds).

ME_PODMAN_HOME="${MARKET_ENCODER_PODMAN_HOME:-${HOME:-/tmp}/.cache/market-encoder/podman}"
ME_DEBIAN_MIRROR="${MARKET_ENCODER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ME_STAND_IN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../image" && pwd)"
# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

podman_log() { printf 'podman: %s\n' "$*" >&2; }

ensure_podman() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install podman "${missing[@]}" || return 1
  fi
  mkdir -p "$ME_PODMAN_HOME/storage" || return 1
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  cat >"$ME_PODMAN_HOME/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
  cat >"$ME_PODMAN_HOME/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$ME_PODMAN_HOME/storage"
runroot = "/run/market-encoder-podman"
CONF
  export CONTAINERS_CONF="$ME_PODMAN_HOME/containers.conf"
  export CONTAINERS_STORAGE_CONF="$ME_PODMAN_HOME/storage.conf"
  podman info >/dev/null 2>&1 || {
    podman_log "podman does not work here: $(podman info 2>&1 | tail -n 1)"
    return 1
  }
}

# image_recipe_current NAME HASH: true if image NAME exists and was made from recipe HASH.
image_recipe_current() {
  [ "$(podman image inspect --format '{{index .Labels "market-encoder.recipe"}}' "$1" 2>/dev/null)" = "$2" ]
}

# recipe_hash [FILE...]: a short SHA-256 of the given files' contents and of the words on stdin.
recipe_hash() {
  { [ $# -eq 0 ] || cat "$@"; cat; } | sha256sum | cut -c1-16
}

host_ca_hash() {
  cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-16
}

# ensure_debian_base: docker.io/library/debian:bookworm-slim from debootstrap (~90 s, once).
ensure_debian_base() {
  local name=docker.io/library/debian:bookworm-slim hash dir previous
  hash=$(echo "debootstrap --variant=minbase bookworm $ME_DEBIAN_MIRROR; sources: bookworm bookworm-updates bookworm-security; v1" | recipe_hash)
  image_recipe_current "$name" "$hash" && return 0
  previous=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
  podman_log "making $name with debootstrap (once, ~90 s)..."
  dir=$(mktemp -d "$ME_PODMAN_HOME/rootfs.XXXXXX") || return 1
  local started=$SECONDS
  debootstrap --variant=minbase bookworm "$dir" "$ME_DEBIAN_MIRROR" >"$ME_PODMAN_HOME/debootstrap.log" 2>&1 || {
    podman_log "debootstrap failed; see $ME_PODMAN_HOME/debootstrap.log"
    rm -rf "$dir"
    return 1
  }
  # As the real slim image: bookworm, its updates and security; no package cache, no lists.
  cat >"$dir/etc/apt/sources.list" <<SRC
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar --numeric-owner -C "$dir" -c . \
    | podman import -q --change 'CMD ["bash"]' --change "LABEL market-encoder.recipe=$hash" - "$name" >/dev/null || {
    rm -rf "$dir"
    return 1
  }
  rm -rf "$dir"
  # The image this one replaced (not `podman image prune`: untagged images are the build cache).
  if [ -n "$previous" ]; then podman rmi "$previous" >/dev/null 2>&1 || true; fi
  podman_log "made $name in $((SECONDS - started)) s"
}

# build_stand_in NAME CONTAINERFILE HASH [podman build args...]: builds a stand-in from one of
# scripts/image/*.Containerfile (context: a directory holding this machine's CA certificates).
build_stand_in() {
  local name=$1 file=$2 hash=$3 ctx started=$SECONDS
  shift 3
  image_recipe_current "$name" "$hash" && return 0
  podman_log "making $name (once)..."
  ctx=$(mktemp -d) || return 1
  mkdir -p "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  cp "$ME_STAND_IN_DIR"/*.sh "$ctx/" 2>/dev/null || true
  if ! podman build --pull=never --format docker --quiet --label "market-encoder.recipe=$hash" \
    -t "$name" -f "$ME_STAND_IN_DIR/$file" "$@" "$ctx" >"$ME_PODMAN_HOME/build-${file%.Containerfile}.log" 2>&1; then
    podman_log "building $name failed; the end of $ME_PODMAN_HOME/build-${file%.Containerfile}.log:"
    tail -n 15 "$ME_PODMAN_HOME/build-${file%.Containerfile}.log" >&2
    rm -rf "$ctx"
    return 1
  fi
  rm -rf "$ctx"
  podman_log "made $name in $((SECONDS - started)) s"
}

# The Rust toolchain the official rust:1.95 image holds: this machine's 1.95.0.
host_toolchain_dir() {
  local dir
  dir=$(rustc +1.95.0 --print sysroot 2>/dev/null) || dir=$(rustc --print sysroot) || return 1
  case "$("$dir/bin/rustc" --version)" in
    "rustc 1.95."*) printf '%s\n' "$dir" ;;
    *) podman_log "the stand-in for rust:1.95 needs Rust 1.95 here; $dir has $("$dir/bin/rustc" --version)"; return 1 ;;
  esac
}

# The words every derived stand-in's recipe includes: the CA bundle it trusts and the base it is
# made from (a remade debian base remakes them all).
derived_recipe_words() {
  printf '%s %s\n' "$(host_ca_hash)" \
    "$(podman image inspect --format '{{.Id}}' docker.io/library/debian:bookworm-slim 2>/dev/null)"
}

ensure_stand_in_images() {
  local ca toolchain
  ensure_debian_base || return 1
  ca=$(derived_recipe_words)
  toolchain=$(host_toolchain_dir) || return 1
  build_stand_in docker.io/library/rust:1.95-slim-bookworm rust.Containerfile \
    "$(echo "$ca $("$toolchain/bin/rustc" --version)" | recipe_hash "$ME_STAND_IN_DIR/rust.Containerfile")" \
    --volume "$toolchain:/host-toolchain:ro" || return 1
  build_stand_in docker.io/library/python:3.11-slim-bookworm python.Containerfile \
    "$(echo "$ca" | recipe_hash "$ME_STAND_IN_DIR/python.Containerfile")" || return 1
}

ensure_compose_stand_ins() {
  local ca
  ca=$(derived_recipe_words)
  build_stand_in docker.io/library/postgres:15 postgres.Containerfile \
    "$(echo "$ca" | recipe_hash "$ME_STAND_IN_DIR/postgres.Containerfile" "$ME_STAND_IN_DIR/postgres-entrypoint.sh")" || return 1
  build_stand_in docker.io/chromadb/chroma:1.5.9 chroma.Containerfile \
    "$(echo "$ca" | recipe_hash "$ME_STAND_IN_DIR/chroma.Containerfile")" || return 1
}
