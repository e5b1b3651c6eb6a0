#!/usr/bin/env bash
# Checks the machine code of the encoder's hot kernels in a release build (issue 12: the AVX-512
# clone had compiled to 32 gathers, 35 scatters and 16 FMAs, and ran at ~4 documents/s):
#   - the AVX-512 stripe (pulp's V4::vectorize instance that holds crates/minilm/src/x86.rs):
#     no gather/scatter, at least 24 zmm FMAs (the 12 x 32 register block);
#   - the AVX512-BF16 stripe (minilm::x86::stripe_avx512_bf16): no gather/scatter, at least 24
#     zmm `vdpbf16ps` (the same 12 x 32 block, two products per accumulator and instruction);
#   - the AVX2 + FMA stripe (the V3 instance): no gather/scatter, at least 12 ymm FMAs, no zmm;
#   - attention's AVX-512 and AVX2 kernels (the V4 / V3 instances that hold minilm's
#     attend_blocked): no gather/scatter, at least 24 zmm / 12 ymm FMAs (the register blocks of
#     Q K^T and P V), no zmm in the AVX2 one;
#   - attention's generic AVX-512 and AVX2 clones (minilm::attend, for head sizes other than
#     32): no gather/scatter, FMA present;
#   - the baseline stripe (minilm::linear::stripe_baseline): plain x86-64, no ymm/zmm.
# In an AArch64 binary (built natively or by scripts/check-aarch64.sh), NEON being part of that
# target:
#   - the linear layers' kernel (portable_kernel<6, true>, inlined into the stripe): at least 24
#     `fmla` on .4s registers (the 6 x 16 block);
#   - attention's kernel (small_matmul<true>): FMA (`fmla`) present, never small_matmul<false>
#     (its multiply-then-add form).
# Each function's disassembly is found by name and, for pulp's generic vectorize, by the source
# lines (the release profile's line tables) of crates/minilm/src/x86.rs inside it.
#
# Usage: scripts/check-kernels.sh [--dev | BINARY]
#   Without arguments: builds crates/minilm's `throughput` example in release (the minilm crate
#   and its dependencies only, ~2-4 min cold on 2 cores) and checks it.
#   --dev: the same example in the dev/test profile, which reuses what `cargo test --workspace`
#   builds (dependencies and minilm are optimized there too): ~10 s, for scripts/test.sh. The test
#   profile's code is what the throughput guard in crates/minilm/tests/kernels.rs times.
#   BINARY (e.g. target/release/market-encoder after a release build): that binary as it is.
# The binary's architecture is read from its ELF header: x86-64 and AArch64 are checked, anything
# else is said and passes. Needs objdump (binutils; for an AArch64 binary on x86-64,
# aarch64-linux-gnu-objdump from Debian's binutils-aarch64-linux-gnu).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --dev ]; then
  cargo build --locked --quiet -p minilm --example throughput
  bin="${CARGO_TARGET_DIR:-target}/debug/examples/throughput"
elif [ $# -ge 1 ]; then
  bin=$1
else
  cargo build --release --locked --quiet -p minilm --example throughput
  bin="${CARGO_TARGET_DIR:-target}/release/examples/throughput"
fi
[ -x "$bin" ] || { echo "check-kernels: no executable $bin" >&2; exit 1; }

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
failures=0
fail() { echo "check-kernels: FAIL: $*"; failures=$((failures + 1)); }
# finish WHAT: the verdict on WHAT, and the exit status.
finish() {
  if [ "$failures" -gt 0 ]; then
    echo "check-kernels: $failures failure(s) in $bin"
    exit 1
  fi
  echo "check-kernels: ok ($1)"
  exit 0
}

# e_machine, the 16-bit field at offset 18 of the ELF header: 0x3e x86-64, 0xb7 AArch64.
machine=$(od -An -tx2 -j18 -N2 "$bin" | tr -d ' ')
if [ "$machine" = 00b7 ]; then
  objdump=objdump
  [ "$(uname -m)" = aarch64 ] || objdump=aarch64-linux-gnu-objdump
  command -v "$objdump" >/dev/null || { echo "check-kernels: $objdump not found (Debian: apt-get install binutils-aarch64-linux-gnu)" >&2; exit 1; }
  # One line per function that holds an inlined kernel: kind fmla_4s name
  "$objdump" -d -l -C --no-show-raw-insn "$bin" | awk '
    function flush() {
      if (name != "" && neon) printf "neon-stripe %d %s\n", fmla, name
      if (name != "" && attend) printf "neon-attention %d %s\n", fmla, name
      if (name != "" && unfused) printf "neon-attention-unfused %d %s\n", fmla, name
    }
    /^[0-9a-f]+ <.*>:$/ {
      flush()
      name = $0; sub(/^[0-9a-f]+ </, "", name); sub(/>:$/, "", name)
      neon = 0; attend = 0; unfused = 0; fmla = 0
      next
    }
    /^(minilm::)?(linear::)?portable_kernel<6, true>\(\):$/ { neon = 1 }
    /^(minilm::)?small_matmul<true>\(\):$/ { attend = 1 }
    /^(minilm::)?small_matmul<false>\(\):$/ { unfused = 1 }
    /\tfmla\tv[0-9]+\.4s/ { fmla++ }
    END { flush() }
  ' > "$tmp"
  grep -q '^neon-stripe ' "$tmp" || fail "neon-stripe: no function holds portable_kernel<6, true> in $bin"
  grep -q '^neon-attention ' "$tmp" || fail "neon-attention: no function holds small_matmul<true> in $bin"
  while read -r kind fmla name; do
    printf 'check-kernels: %-22s fmla .4s %4d  (%s)\n' "$kind" "$fmla" "$name"
    case "$kind" in
      neon-stripe) [ "$fmla" -ge 24 ] || fail "$kind has $fmla fmla, expected >= 24 (the 6 x 16 block)" ;;
      neon-attention) [ "$fmla" -ge 1 ] || fail "$kind has no fmla" ;;
      neon-attention-unfused) fail "attention's multiply-then-add form (small_matmul<false>) is compiled in: NEON has FMA" ;;
    esac
  done < "$tmp"
  finish "$bin, AArch64"
elif [ "$machine" != 003e ]; then
  echo "check-kernels: $bin is neither x86-64 nor AArch64 (ELF machine 0x$machine): nothing to check"
  exit 0
fi
command -v objdump >/dev/null || { echo "check-kernels: objdump not found (Debian: apt-get install binutils)" >&2; exit 1; }
# One line per function of interest: kind gathers zmm_fma ymm_fma vector_regs name
objdump -d -l -C --no-show-raw-insn "$bin" | awk '
  function flush() {
    if (name == "") return
    kind = ""
    if (name ~ /^pulp::x86::v4::V4::vectorize::imp/ && ours && att) kind = "avx512-attention"
    else if (name ~ /^pulp::x86::v3::V3::vectorize::imp/ && ours && att) kind = "avx2-attention"
    else if (name ~ /^pulp::x86::v4::V4::vectorize::imp/ && ours) kind = "avx512-stripe"
    else if (name ~ /^pulp::x86::v3::V3::vectorize::imp/ && ours) kind = "avx2-stripe"
    else if (name ~ /^minilm::attend::attend_.*avx512f.*_version$/) kind = "avx512-attend"
    else if (name ~ /^minilm::attend::attend_avx_avx2_fma.*_version$/) kind = "avx2-attend"
    else if (name == "minilm::linear::stripe_baseline") kind = "baseline-stripe"
    else if (name == "minilm::x86::stripe_avx512_bf16") { kind = "avx512bf16-stripe"; zfma = zdot }
    if (kind != "") printf "%s %d %d %d %d %s\n", kind, gathers, zfma, yfma, vregs, name
  }
  /^[0-9a-f]+ <.*>:$/ {
    flush()
    name = $0; sub(/^[0-9a-f]+ </, "", name); sub(/>:$/, "", name)
    ours = 0; att = 0; gathers = 0; zfma = 0; yfma = 0; vregs = 0; zdot = 0
    next
  }
  /crates\/minilm\/src\/x86\.rs/ { ours = 1 }
  /^(minilm::)?attend_blocked[<:]/ { att = 1; ours = 1 }
  /\tv(p)?(gather|scatter)/ { gathers++ }
  /\tvfn?m(add|sub)[0-9]+ps/ { if ($0 ~ /zmm/) zfma++; else if ($0 ~ /ymm/) yfma++ }
  /\tvdpbf16ps.*zmm/ { zdot++ }
  /\t[a-z].*%[yz]mm/ { vregs++ }
  END { flush() }
' > "$tmp"

for kind in avx512bf16-stripe avx512-stripe avx2-stripe avx512-attention avx2-attention avx512-attend avx2-attend baseline-stripe; do
  if ! grep -q "^$kind " "$tmp"; then
    fail "$kind: function not found in $bin"
  fi
done
while read -r kind gathers zfma yfma vregs name; do
  printf 'check-kernels: %-17s gathers/scatters %3d  zmm FMAs %4d  ymm FMAs %4d  (%s)\n' \
    "$kind" "$gathers" "$zfma" "$yfma" "$name"
  case "$kind" in
    avx512bf16-stripe)
      [ "$gathers" -eq 0 ] || fail "$kind has $gathers gathers/scatters"
      [ "$zfma" -ge 24 ] || fail "$kind has $zfma zmm vdpbf16ps, expected >= 24 (the 12 x 32 block)" ;;
    avx512-stripe | avx512-attention)
      [ "$gathers" -eq 0 ] || fail "$kind has $gathers gathers/scatters"
      [ "$zfma" -ge 24 ] || fail "$kind has $zfma zmm FMAs, expected >= 24 (the 12 x 32 block)" ;;
    avx2-stripe | avx2-attention)
      [ "$gathers" -eq 0 ] || fail "$kind has $gathers gathers/scatters"
      [ "$yfma" -ge 12 ] || fail "$kind has $yfma ymm FMAs, expected >= 12 (the 6 x 16 block)"
      [ "$zfma" -eq 0 ] || fail "$kind has $zfma zmm FMAs: AVX-512 code in the AVX2 clone" ;;
    avx512-attend | avx2-attend)
      [ "$gathers" -eq 0 ] || fail "$kind has $gathers gathers/scatters"
      [ $((zfma + yfma)) -ge 1 ] || fail "$kind has no FMA" ;;
    baseline-stripe)
      [ "$vregs" -eq 0 ] || fail "$kind uses ymm/zmm registers ($vregs instructions): not the plain baseline" ;;
  esac
done < "$tmp"
finish "$bin"
