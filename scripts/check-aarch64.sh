#!/usr/bin/env bash
# The encoder's AArch64 code (NEON), checked on an x86-64 machine: crates/minilm cross-built for
# aarch64-unknown-linux-gnu and its tests run under qemu-user, then the machine code of its
# kernels checked (scripts/check-kernels.sh reads AArch64 binaries too). On an AArch64 machine
# the same tests and check run natively.
#
# What it proves: the NEON build compiles without warnings, its kernels give the products and
# the vectors the x86 paths are held to (tests/kernels.rs, tests/vectors.rs: cosine >= 0.999 to
# sentence-transformers), and its hot loops are the register-blocked FMA code (24 `fmla` per
# step of the 6 x 16 block). What it cannot prove: speed. qemu emulates every floating-point
# operation in software, so `--throughput`'s texts/s is a count of work, not a figure of any
# real CPU; the README's Performance section says what it was used for.
#
# Usage: scripts/check-aarch64.sh [--throughput] [--mca]
#   --throughput: also the `throughput` example (1 thread, 4 texts of 128 word pieces, ~2 min) under qemu.
#   --mca: also the hot loops (the linear layers' 6 x 16 step, attention's) through llvm-mca 19
#     (Debian's llvm-19, installed once) on Arm's Neoverse N1, N2, V1 and V2 (Graviton 2,
#     Cobalt 100 / Yitian 710, Graviton 3, Graviton 4 / Axion / Grace), whose models Arm wrote
#     into LLVM: fails where a loop needs more than 1.15x the cycles its FMAs alone need there
#     (spills, shuffles, unfused products, loads that outrun the pipes). A schedule model, not
#     a measurement: on x86, where both can be compared, LLVM's models miss the measured speed
#     by up to 2x (crates/minilm/ARCHITECTURE.md, What is not tested here).
#
# The rustup toolchain here has the x86-64 standard library only and cannot fetch another, so on
# x86-64 this uses Debian's Rust (rustc-web / cargo-web, kept current by Debian's security
# updates, with its arm64 standard library libstd-rust-web-dev:arm64), Debian's cross gcc as the
# linker and qemu-user-static, installing them once (root: apt-get; ~400 MB). The first build
# takes ~10 min on 2 cores (candle and the other dependencies, for AArch64), then seconds; the
# tests ~4 min under qemu. Not part of scripts/test.sh for that reason: a cold CI run would
# pass its time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/lib/model.sh
source scripts/lib/apt.sh

throughput=0 mca=0
for arg in "$@"; do
  case "$arg" in
    --throughput) throughput=1 ;;
    --mca) mca=1 ;;
    *) echo "usage: scripts/check-aarch64.sh [--throughput] [--mca]" >&2; exit 2 ;;
  esac
done

# mca_check BINARY OBJDUMP: each hot loop's cycles per iteration under llvm-mca's Neoverse
# models, against the cycles of its FMAs alone (the pipes' bound in the same model).
mca_check() {
  local bin=$1 objdump=$2 dir kind marker need cpu loop_c fma_c fmas
  apt_install check-aarch64 --no-install-recommends llvm-19
  dir=$(mktemp -d)
  "$objdump" -d -l -C --no-show-raw-insn "$bin" > "$dir/dis"
  local failed=0
  while read -r kind marker need; do
    python3 scripts/lib/kernel_loop.py "$marker" '^fmla\s+v[0-9]+\.4s' "$need" < "$dir/dis" > "$dir/$kind.s"
    grep -E '^fmla' "$dir/$kind.s" > "$dir/$kind-fma.s"
    fmas=$(wc -l < "$dir/$kind-fma.s")
    for cpu in neoverse-n1 neoverse-n2 neoverse-v1 neoverse-v2; do
      loop_c=$(llvm-mca-19 -mtriple=aarch64 -mcpu="$cpu" -iterations=1000 "$dir/$kind.s" | awk '/^Total Cycles:/ { print $3 / 1000 }')
      fma_c=$(llvm-mca-19 -mtriple=aarch64 -mcpu="$cpu" -iterations=1000 "$dir/$kind-fma.s" | awk '/^Total Cycles:/ { print $3 / 1000 }')
      if awk -v l="$loop_c" -v f="$fma_c" -v n="$fmas" -v k="$kind" -v c="$cpu" 'BEGIN {
        printf "check-aarch64: mca %-9s %-11s %5.2f cycles an iteration, its %d fmla alone %5.2f (%.2fx; %.1f flops a cycle)\n", k, c, l, n, f, l / f, n * 8 / l
        exit !(l <= 1.15 * f) }'; then :; else
        echo "check-aarch64: $kind on $cpu needs more than 1.15x its FMAs' cycles: something other than the FMA pipes binds ($dir/$kind.s)" >&2
        failed=1
      fi
    done
  done <<'LOOPS'
stripe ^(minilm::)?(linear::)?portable_kernel<6,\strue>\(\):$ 24
attention ^(minilm::)?small_matmul<true>\(\):$ 8
LOOPS
  [ "$failed" = 0 ] || exit 1
  rm -rf "$dir"
}

ensure_model # EMBEDDING_MODEL_DIR, for tests/vectors.rs and the throughput example

if [ "$(uname -m)" = aarch64 ]; then
  RUSTFLAGS="${RUSTFLAGS:-} -D warnings" cargo test --locked --release -p minilm
  scripts/check-kernels.sh
  [ "$throughput" = 0 ] || RAYON_NUM_THREADS=1 cargo run --locked --release -q -p minilm \
    --example throughput -- "$EMBEDDING_MODEL_DIR" 4 128
  if [ "$mca" = 1 ]; then
    cargo build --locked --release -q -p minilm --example throughput
    mca_check "${CARGO_TARGET_DIR:-target}/release/examples/throughput" objdump
  fi
  exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "check-aarch64: cross-checks from x86-64 or runs on AArch64; this is $(uname -m)" >&2
  exit 2
fi

target=aarch64-unknown-linux-gnu
# The arm64 standard library is a package of the arm64 architecture (multiarch).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  if [ "$(id -u)" -ne 0 ]; then
    log "check-aarch64: not root: run dpkg --add-architecture arm64 && apt-get update, then rerun"
    exit 1
  fi
  dpkg --add-architecture arm64
fi
apt_install check-aarch64 --no-install-recommends rustc-web cargo-web libstd-rust-web-dev:arm64 \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user-static

# Debian's toolchain, not rustup's (whose rustc has no AArch64 standard library here).
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
cargo=/usr/bin/cargo
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$("$RUSTC" --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
  echo "check-aarch64: Debian's rustc is $have, the workspace needs $need (apt-get install --only-upgrade rustc-web cargo-web)" >&2
  exit 1
fi
export CARGO_TARGET_DIR="$HOME/.cache/market-encoder/target-aarch64"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# No `-L /usr/aarch64-linux-gnu`: the binaries load the arm64 multiarch glibc (libc6:arm64, which
# libstd-rust-web-dev:arm64 brings) through its own loader; mixing the cross package's loader
# with that libc hangs at the first thread.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"

log "check-aarch64: $("$RUSTC" --version), target $target, tests under $(qemu-aarch64-static --version | head -n 1)"
"$cargo" test --locked --release -p minilm --target "$target"
"$cargo" build --locked --release -q -p minilm --target "$target" --example throughput
scripts/check-kernels.sh "$CARGO_TARGET_DIR/$target/release/examples/throughput"
if [ "$throughput" = 1 ]; then
  log "check-aarch64: throughput under qemu (emulated: a count of work, not a speed)"
  RAYON_NUM_THREADS=1 qemu-aarch64-static "$CARGO_TARGET_DIR/$target/release/examples/throughput" \
    "$EMBEDDING_MODEL_DIR" 4 128
fi
[ "$mca" = 0 ] || mca_check "$CARGO_TARGET_DIR/$target/release/examples/throughput" aarch64-linux-gnu-objdump
echo "check-aarch64: ok"
