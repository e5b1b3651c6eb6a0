//! The encoder's linear layers: `y = x · Wᵀ + b`, followed by what comes next in a BERT block
//! (GELU, or the residual and LayerNorm), as one cache-blocked matrix product.
//!
//! The layout is the classic one of GotoBLAS/BLIS:
//! - The weight is packed once, at load time, into panels of [`NR`] output columns, each
//!   `input × NR` and k-major, so the kernel reads it contiguously and no call repacks it.
//! - The tokens are split into stripes of [`MC`] rows, one rayon task each. A task packs its
//!   stripe's activations, [`KC`] inputs at a time, into micro-panels of [`MR`] rows.
//! - The kernel keeps a block of the output in registers over `KC` inputs: 12 × 32 (24 zmm
//!   accumulators) with AVX-512, 6 × 16 (12 ymm, BLIS's Haswell tile) with AVX2 + FMA, both in
//!   intrinsics (`x86.rs`); portable Rust on NEON (6 × 16) and for the baseline (6 × 32 on
//!   x86-64). A weight panel,
//!   `KC × NR` floats, streams from L2 while every micro-panel of the stripe (in L2) passes over
//!   it (see [`KC`] for why not from L1).
//! - The bias initialises the accumulators; GELU is applied to the block in registers after the
//!   last `KC`; the residual and LayerNorm to whole rows of the stripe while it is still in cache.
//!   No pass over the whole output follows the product.
//!
//! Which kernel runs is [`KernelPath`], chosen at run time; see [`stripe_forward`] for how each
//! path's whole call tree is compiled for its instruction set, and `ARCHITECTURE.md` for why.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::KernelPath;

/// Columns of a packed weight panel, and of every kernel's register block: two AVX-512
/// registers on x86-64 (where the AVX2 kernel takes a panel in two halves of 16 columns), four
/// NEON registers elsewhere.
#[cfg(target_arch = "x86_64")]
pub(crate) const NR: usize = 32;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const NR: usize = 16;
/// Rows of the register block of the AVX2 + FMA, NEON and baseline kernels.
pub(crate) const MR: usize = 6;
/// Rows of the AVX-512 kernel's register block: 12 x 32 = 24 accumulators of 16 lanes.
#[cfg(target_arch = "x86_64")]
pub(crate) const MR_AVX512: usize = 12;
/// Inputs per pass of the kernel. A weight panel of `KC × NR` floats (96 KiB on x86-64) no longer
/// fits in L1, it streams from L2: two vector loads per 24 FMAs, which L2 sustains; what a pass
/// costs is the round trip of the register block through `y` between passes. Measured on the Xeon
/// of ARCHITECTURE.md (one thread, `examples/kernels`): 256 (L1-resident panels) gave 103-107
/// GFLOP/s on 384 -> 1536 and 131-138 on 1536 -> 384; 768 (one pass for BERT's 384 inputs, two
/// for its 1536) 118-140 and 141-144, and the whole encoder 7% faster; 2048 (always one pass)
/// 115-118 and 118-126.
const KC: usize = 768;
/// Rows per rayon task; a multiple of every kernel's block height.
const MC: usize = 144;

/// LayerNorm parameters.
pub(crate) struct Norm {
    pub(crate) gamma: Vec<f32>,
    pub(crate) beta: Vec<f32>,
    pub(crate) eps: f32,
}

impl Norm {
    /// `row <- (row - mean) / sqrt(var + eps) * gamma + beta`, as `torch.nn.LayerNorm`.
    #[inline(always)]
    pub(crate) fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *x = (*x - mean) * inv * g + b;
        }
    }
}

/// What follows the product, applied to each output row.
pub(crate) enum Then<'a> {
    /// Nothing: `x · Wᵀ + b`.
    Nothing,
    /// `gelu(x · Wᵀ + b)`, the exact (erf) GELU of BERT's `hidden_act: gelu`.
    Gelu,
    /// `LayerNorm(x · Wᵀ + b + residual)`, the end of both halves of a BERT block.
    ResidualNorm { residual: &'a [f32], norm: &'a Norm },
}

/// A linear layer with its weight packed for [`Linear::forward`].
pub(crate) struct Linear {
    input: usize,
    output: usize,
    /// Panel `p` holds output columns `p * NR ..`, as `input` rows of `NR` (zero past `output`).
    panels: Vec<[f32; NR]>,
    /// The bias, in panels of `NR` like the weight (zero past `output`).
    bias_panels: Vec<[f32; NR]>,
    /// The weight for [`KernelPath::Avx512Bf16`], made from `panels` on its first use: panel
    /// `p` as `input.div_ceil(2)` rows of `NR` bfloat16 pairs (see [`pair`]).
    pair_panels: OnceLock<Vec<[f32; NR]>>,
}

impl Linear {
    /// `weight` is `(output, input)` row-major, as `torch.nn.Linear` stores it.
    pub(crate) fn new(
        weight: &[f32],
        bias: Vec<f32>,
        input: usize,
        output: usize,
    ) -> Result<Self, crate::Error> {
        if input == 0 || weight.len() != input * output || bias.len() != output {
            return Err(crate::Error::Layer {
                input,
                output,
                weights: weight.len(),
                biases: bias.len(),
            });
        }
        let mut panels = vec![[0f32; NR]; output.div_ceil(NR) * input];
        for (j, row) in weight.chunks_exact(input).enumerate() {
            let panel = &mut panels[(j / NR) * input..][..input];
            for (packed, &w) in panel.iter_mut().zip(row) {
                packed[j % NR] = w;
            }
        }
        let mut bias_panels = vec![[0f32; NR]; output.div_ceil(NR)];
        for (j, b) in bias.into_iter().enumerate() {
            bias_panels[j / NR][j % NR] = b;
        }
        Ok(Self {
            input,
            output,
            panels,
            bias_panels,
            pair_panels: OnceLock::new(),
        })
    }

    /// The weight as bfloat16 pairs: row `t` of panel `p` holds, per column, inputs `2t` and
    /// `2t + 1` (zero past `input`), the layout `vdpbf16ps` multiplies pairwise.
    pub(crate) fn pair_panels(&self) -> &[[f32; NR]] {
        self.pair_panels.get_or_init(|| {
            let k = self.input;
            self.panels
                .chunks_exact(k)
                .flat_map(|panel| {
                    (0..k.div_ceil(2)).map(move |t| {
                        let next = panel.get(2 * t + 1).copied().unwrap_or([0.0; NR]);
                        std::array::from_fn(|c| pair(panel[2 * t][c], next[c]))
                    })
                })
                .collect()
        })
    }

    pub(crate) fn input(&self) -> usize {
        self.input
    }

    /// `y = then(x · Wᵀ + b)` for `x` of `(rows, input)`, row-major; `y` becomes
    /// `(rows, output)`. `y` is a buffer reused from call to call: every element is written, so
    /// only its growth is ever zeroed. `path` must be supported by this CPU
    /// ([`KernelPath::supported`]); an unsupported one falls back to the best supported one.
    pub(crate) fn forward(&self, path: KernelPath, x: &[f32], y: &mut Vec<f32>, then: &Then<'_>) {
        debug_assert_eq!(x.len() % self.input, 0, "input rows of the wrong width");
        if let Then::ResidualNorm { residual, norm } = then {
            debug_assert_eq!(residual.len() / self.output, x.len() / self.input);
            debug_assert_eq!(norm.gamma.len(), self.output);
        }
        y.resize(x.len() / self.input * self.output, 0.0);
        y.par_chunks_mut(MC * self.output)
            .zip(x.par_chunks(MC * self.input))
            .enumerate()
            .for_each(|(stripe, (y, x))| {
                let residual = match then {
                    Then::ResidualNorm { residual, .. } => {
                        &residual[stripe * MC * self.output..][..y.len()]
                    }
                    _ => &[],
                };
                stripe_forward(path, self, x, y, then, residual);
            });
    }
}

/// One stripe of rows with the kernel of `path`: `x` is `(rows, input)`, `y` `(rows, output)`;
/// `residual` is this stripe's rows of the residual for [`Then::ResidualNorm`] (empty otherwise).
///
/// On x86-64 the AVX-512 and AVX2 paths run [`stripe`] inside `pulp`'s `vectorize` with that
/// instruction set's token (see `x86.rs`): [`stripe`], the kernel and GELU/LayerNorm are all
/// inlined there, so the whole call tree is compiled for that instruction set. A path the CPU
/// lacks falls back to the next one it has. The baseline is the exception on purpose:
/// [`stripe_baseline`] is never inlined, so it stays the plain x86-64 (SSE2) code it is meant to
/// be. On AArch64 NEON is part of the target: the portable kernel is compiled with it.
fn stripe_forward(
    path: KernelPath,
    w: &Linear,
    x: &[f32],
    y: &mut [f32],
    then: &Then<'_>,
    residual: &[f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::{Avx2Stripe, Avx512Bf16, Avx512Stripe, V3, V4};
        if path == KernelPath::Avx512Bf16
            && let Some(simd) = Avx512Bf16::try_new()
        {
            return simd.stripe(w, x, y, then, residual);
        }
        if matches!(path, KernelPath::Avx512Bf16 | KernelPath::Avx512)
            && let Some(simd) = V4::try_new()
        {
            let args = StripeArgs {
                w,
                x,
                y,
                then,
                residual,
            };
            return simd.vectorize(Avx512Stripe { simd, args });
        }
        if matches!(
            path,
            KernelPath::Avx512Bf16 | KernelPath::Avx512 | KernelPath::Avx2Fma
        ) && let Some(simd) = V3::try_new()
        {
            let args = StripeArgs {
                w,
                x,
                y,
                then,
                residual,
            };
            return simd.vectorize(Avx2Stripe { simd, args });
        }
        stripe_baseline(w, x, y, then, residual)
    }
    #[cfg(target_arch = "aarch64")]
    {
        let _ = path;
        stripe::<MR, false>(w, x, y, then, residual, portable_kernel::<MR, true>)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = path;
        stripe_baseline(w, x, y, then, residual)
    }
}

/// The arguments of [`stripe`], for the x86 kernels' `vectorize` calls.
#[cfg(target_arch = "x86_64")]
pub(crate) struct StripeArgs<'s, 'a> {
    pub(crate) w: &'s Linear,
    pub(crate) x: &'s [f32],
    pub(crate) y: &'s mut [f32],
    pub(crate) then: &'s Then<'a>,
    pub(crate) residual: &'s [f32],
}

#[cfg(target_arch = "x86_64")]
impl StripeArgs<'_, '_> {
    /// [`stripe`] with these arguments and `kernel`.
    #[inline(always)]
    pub(crate) fn run<const ROWS: usize>(
        self,
        kernel: impl Fn(&[[f32; ROWS]], &[[f32; NR]], &mut [[f32; NR]; ROWS]) + Copy,
    ) {
        stripe::<ROWS, false>(self.w, self.x, self.y, self.then, self.residual, kernel);
    }
}

/// The baseline: [`stripe`] with the portable kernel, without FMA, compiled for the crate's
/// target only (never inlined into a clone with more features).
#[cfg(any(test, not(target_arch = "aarch64")))]
#[inline(never)]
fn stripe_baseline(w: &Linear, x: &[f32], y: &mut [f32], then: &Then<'_>, residual: &[f32]) {
    stripe::<MR, false>(w, x, y, then, residual, portable_kernel::<MR, false>);
}

/// One stripe (see [`stripe_forward`]) with a register block of `ROWS` × [`NR`]: `kernel(a, b,
/// acc)` adds the product of a micro-panel `a` (`kc` rows of `ROWS`) and a weight panel `b` (`kc`
/// rows of `NR`) to `acc`. With `PAIRS` both are bfloat16 pairs ([`pair`]: `kc.div_ceil(2)`
/// rows, [`Linear::pair_panels`]) for the AVX512-BF16 kernel. Inlined into each clone, so it is
/// compiled for that clone's instruction set.
#[inline(always)]
pub(crate) fn stripe<const ROWS: usize, const PAIRS: bool>(
    w: &Linear,
    x: &[f32],
    y: &mut [f32],
    then: &Then<'_>,
    residual: &[f32],
    kernel: impl Fn(&[[f32; ROWS]], &[[f32; NR]], &mut [[f32; NR]; ROWS]) + Copy,
) {
    let (k, n) = (w.input, w.output);
    let rows = y.len() / n;
    let micro_panels = rows.div_ceil(ROWS);
    // Rows of a micro-panel and of a weight panel for `kc` inputs (KC is even: only the last
    // pass can end on half a pair).
    let steps = |kc: usize| if PAIRS { kc.div_ceil(2) } else { kc };
    let (panels, panel_rows) = if PAIRS {
        (w.pair_panels(), steps(k))
    } else {
        (&w.panels[..], k)
    };
    let mut packed = vec![[0f32; ROWS]; micro_panels * steps(KC.min(k))];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let last = k0 + kc == k;
        let packed = &mut packed[..micro_panels * steps(kc)];
        if PAIRS {
            pack_pairs(x, k, (k0, kc), rows, packed);
        } else {
            pack(x, k, k0, rows, packed);
        }
        for (p, j0) in (0..n).step_by(NR).enumerate() {
            let cols = NR.min(n - j0);
            let panel = &panels[p * panel_rows + steps(k0)..][..steps(kc)];
            for (i, micro_panel) in packed.chunks_exact(steps(kc)).enumerate() {
                let valid = ROWS.min(rows - i * ROWS);
                // The bias, or what the previous passes over k added up.
                let mut acc = [w.bias_panels[p]; ROWS];
                if k0 > 0 {
                    for (r, acc_row) in acc.iter_mut().enumerate().take(valid) {
                        load(acc_row, &y[(i * ROWS + r) * n + j0..], cols);
                    }
                }
                kernel(micro_panel, panel, &mut acc);
                if last && matches!(then, Then::Gelu) {
                    for acc_row in &mut acc {
                        for v in acc_row {
                            *v = gelu(*v);
                        }
                    }
                }
                for (r, acc_row) in acc.iter().enumerate().take(valid) {
                    store(&mut y[(i * ROWS + r) * n + j0..], acc_row, cols);
                }
            }
        }
    }
    if let Then::ResidualNorm { norm, .. } = then {
        for (row, res) in y.chunks_exact_mut(n).zip(residual.chunks_exact(n)) {
            for (v, r) in row.iter_mut().zip(res) {
                *v += r;
            }
            norm.apply(row);
        }
    }
}

/// `acc += a · b` in plain Rust, for NEON and the baseline: left to the autovectoriser (which
/// does well on NEON's 6 x 16 block; the baseline only needs to be right).
#[inline(always)]
fn portable_kernel<const ROWS: usize, const FMA: bool>(
    a: &[[f32; ROWS]],
    b: &[[f32; NR]],
    acc: &mut [[f32; NR]; ROWS],
) {
    let mut c = *acc;
    for (a, b) in a.iter().zip(b) {
        for (c_row, &x) in c.iter_mut().zip(a) {
            for (c, &y) in c_row.iter_mut().zip(b) {
                // One FMA instruction where the target has it; a multiply and an add elsewhere
                // (where `mul_add` would be a libm call).
                *c = if FMA { x.mul_add(y, *c) } else { x * y + *c };
            }
        }
    }
    *acc = c;
}

/// `acc += a · b` for bfloat16 pairs ([`pair`]) in plain Rust, in the order of `vdpbf16ps`
/// (the odd product, then the even one): the packing of the AVX512-BF16 path, tested on any CPU.
#[cfg(test)]
#[inline(always)]
fn portable_pairs_kernel<const ROWS: usize>(
    a: &[[f32; ROWS]],
    b: &[[f32; NR]],
    acc: &mut [[f32; NR]; ROWS],
) {
    let split = |p: f32| {
        let bits = p.to_bits();
        (
            f32::from_bits(bits << 16),
            f32::from_bits(bits & 0xFFFF_0000),
        )
    };
    for (a, b) in a.iter().zip(b) {
        for (c_row, &x) in acc.iter_mut().zip(a) {
            let (x0, x1) = split(x);
            for (c, &y) in c_row.iter_mut().zip(b) {
                let (y0, y1) = split(y);
                *c = (*c + x1 * y1) + x0 * y0;
            }
        }
    }
}

/// `x` rounded to bfloat16 (to nearest, ties to even), as its 16 bits.
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u32 {
    let bits = x.to_bits();
    bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16
}

/// Two floats as one bfloat16 pair in the bits of an `f32`: `even` in the low half, `odd` in
/// the high half, the order `vdpbf16ps` pairs them in (element `2i` and `2i + 1` of a lane).
#[inline(always)]
pub(crate) fn pair(even: f32, odd: f32) -> f32 {
    f32::from_bits(bf16_bits(even) | (bf16_bits(odd) << 16))
}

/// Packs `x[.., k0..k0 + kc]` as micro-panels of `ROWS` rows of bfloat16 pairs: row `t` of a
/// micro-panel holds inputs `k0 + 2t` and `k0 + 2t + 1` of each of its rows (zero past `kc`).
/// Rows past the stripe's end are left as they are, as in [`pack`]. Not inlined, as [`pack`].
#[inline(never)]
fn pack_pairs<const ROWS: usize>(
    x: &[f32],
    k: usize,
    (k0, kc): (usize, usize),
    rows: usize,
    packed: &mut [[f32; ROWS]],
) {
    let steps = kc.div_ceil(2);
    for (i, micro_panel) in packed.chunks_exact_mut(steps).enumerate() {
        let valid = ROWS.min(rows - i * ROWS);
        let src: [&[f32]; ROWS] = std::array::from_fn(|r| {
            if r < valid {
                &x[(i * ROWS + r) * k + k0..][..kc]
            } else {
                &[]
            }
        });
        // All rows of the micro-panel a pair at a time, so their loads are in flight together.
        for (t, dst) in micro_panel.iter_mut().enumerate() {
            for (d, src) in dst.iter_mut().zip(src).take(valid) {
                let odd = src.get(2 * t + 1).copied().unwrap_or(0.0);
                *d = pair(src[2 * t], odd);
            }
        }
    }
}

/// Packs `x[.., k0..k0 + kc]` (`kc` = the micro-panels' length) as micro-panels of `ROWS` rows,
/// k-major. Rows past the stripe's end hold zeros or an earlier pass's values: they only reach
/// rows never stored. Not inlined, so it is plain x86-64 code in every clone: the autovectoriser
/// turns this transposition into scatters where it can (AVX-512), which are slow on the CPUs with
/// the Gather Data Sampling mitigation, and it is a few percent of the time.
#[inline(never)]
fn pack<const ROWS: usize>(
    x: &[f32],
    k: usize,
    k0: usize,
    rows: usize,
    packed: &mut [[f32; ROWS]],
) {
    const STEP: usize = 16;
    let kc = packed.len() / rows.div_ceil(ROWS);
    for (i, micro_panel) in packed.chunks_exact_mut(kc).enumerate() {
        if rows - i * ROWS >= ROWS {
            // A whole micro-panel: all its rows at once, STEP inputs at a time, so that the
            // loads of its ROWS rows are in flight together (the rows come from L3 or memory:
            // read one row after the other, the loads waited on each other, ~60% of the time
            // here).
            let src: [&[f32]; ROWS] = std::array::from_fn(|r| &x[(i * ROWS + r) * k + k0..][..kc]);
            let (whole, tail) = micro_panel.as_chunks_mut::<STEP>();
            for (j, dst) in whole.iter_mut().enumerate() {
                let block: [&[f32; STEP]; ROWS] = std::array::from_fn(|r| {
                    src[r][j * STEP..]
                        .first_chunk::<STEP>()
                        .unwrap_or(&[0.0; STEP])
                });
                for (t, dst) in dst.iter_mut().enumerate() {
                    *dst = std::array::from_fn(|r| block[r][t]);
                }
            }
            let done = whole.len() * STEP;
            for (t, dst) in tail.iter_mut().enumerate() {
                *dst = std::array::from_fn(|r| src[r][done + t]);
            }
            continue;
        }
        for r in 0..ROWS.min(rows - i * ROWS) {
            let src = &x[(i * ROWS + r) * k + k0..][..kc];
            for (dst, &v) in micro_panel.iter_mut().zip(src) {
                dst[r] = v;
            }
        }
    }
}

/// `acc_row = src[..NR]`, or its first `len` values (a partial last panel). The whole-array copy
/// is inlined to vector moves; the partial one is a separate function so that LLVM cannot merge
/// both into one `memcpy` call of variable length (which it did, and which took 10% of the time).
#[inline(always)]
fn load(acc_row: &mut [f32; NR], src: &[f32], len: usize) {
    match src.first_chunk::<NR>() {
        Some(s) if len == NR => *acc_row = *s,
        _ => copy_partial(acc_row, src, len),
    }
}

/// `dst[..len] = acc_row[..len]`, the counterpart of [`load`].
#[inline(always)]
fn store(dst: &mut [f32], acc_row: &[f32; NR], len: usize) {
    match dst.first_chunk_mut::<NR>() {
        Some(d) if len == NR => *d = *acc_row,
        _ => copy_partial(dst, acc_row, len),
    }
}

#[inline(never)]
#[cold]
fn copy_partial(dst: &mut [f32], src: &[f32], len: usize) {
    dst[..len].copy_from_slice(&src[..len]);
}

/// The exact GELU, `x/2 · (1 + erf(x/√2))`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The error function, to within 1e-6 of libm's `erff` (see the test): the rational
/// approximation Eigen and XLA use for f32 `erf`. Plain multiply-adds, no branches, so loops over
/// it vectorise.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published; do not round them
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_599_8e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_473_9e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{max_diff, values};

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let diff = (erf(x) - libm::erff(x)).abs();
            worst = worst.max(diff);
        }
        assert!(worst < 1e-6, "max |erf - libm erff| = {worst}");
    }

    /// `then(x · Wᵀ + b)` computed the textbook way, in f64: `(rows, output)` row-major.
    fn reference(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        (rows, input, output): (usize, usize, usize),
        then: &Then<'_>,
    ) -> Vec<f64> {
        let mut y = vec![0f64; rows * output];
        for (r, row) in y.chunks_exact_mut(output).enumerate() {
            for (j, y) in row.iter_mut().enumerate() {
                let dot: f64 = (0..input)
                    .map(|k| f64::from(x[r * input + k]) * f64::from(weight[j * input + k]))
                    .sum();
                *y = dot + f64::from(bias[j]);
            }
            match then {
                Then::Nothing => {}
                Then::Gelu => {
                    for y in row.iter_mut() {
                        *y = 0.5 * *y * (1.0 + libm::erf(*y / std::f64::consts::SQRT_2));
                    }
                }
                Then::ResidualNorm { residual, norm } => {
                    for (j, y) in row.iter_mut().enumerate() {
                        *y += f64::from(residual[r * output + j]);
                    }
                    let mean = row.iter().sum::<f64>() / output as f64;
                    let var = row.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / output as f64;
                    let sd = (var + f64::from(norm.eps)).sqrt();
                    for (j, y) in row.iter_mut().enumerate() {
                        *y = (*y - mean) / sd * f64::from(norm.gamma[j]) + f64::from(norm.beta[j]);
                    }
                }
            }
        }
        y
    }

    /// `ours` (its first `rows * output` values) equals `theirs` up to rounding: sums of up to
    /// ~800 products of values in [-1, 1) differ in the last bits, a wrong term by far more.
    fn assert_close(
        mut ours: Vec<f32>,
        theirs: &[f64],
        (rows, input, output): (usize, usize, usize),
        what: &str,
    ) {
        ours.truncate(rows * output);
        let diff = max_diff(&ours, theirs);
        assert!(
            diff < 1e-4 * (input as f64).sqrt(),
            "{what}: {rows}x{input} -> {output}: max diff {diff}"
        );
    }

    /// `v` with every value rounded to bfloat16, as the BF16 path rounds its inputs: the
    /// reference for that path is the product of the rounded values (in f32), which it must
    /// match as closely as the f32 paths match the exact one.
    fn rounded_for(path: KernelPath, v: &[f32]) -> Vec<f32> {
        match path {
            KernelPath::Avx512Bf16 => v
                .iter()
                .map(|&x| f32::from_bits(bf16_bits(x) << 16))
                .collect(),
            _ => v.to_vec(),
        }
    }

    #[test]
    fn bfloat16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one, 1.
        assert_eq!(bf16_bits(1.0 + 2f32.powi(-8)), 0x3F80);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to the even one, 1 + 2^-6.
        assert_eq!(bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        // Just above halfway rounds up.
        assert_eq!(bf16_bits(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 0x3F81);
        assert_eq!(pair(1.0, -2.0).to_bits(), 0xC000_3F80);
    }

    /// Shapes that exercise every edge of the blocking: rows that are not a multiple of MR or
    /// of MC (the last stripe and its last micro-panel are partial), outputs that are not a
    /// multiple of NR (the last panel is partial), and inputs over KC (two passes of the
    /// kernel, the second accumulating onto the first).
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 8, 16),
        (5, 3, 7),
        (MC + MR + 1, 40, 3 * NR + 5),
        (2 * MC, KC + 17, 2 * NR),
        (97, 2 * KC + 3, 24),
        (MC + 2 * MR + 5, KC + 128, 4 * NR),
    ];

    #[test]
    fn linear_matches_the_textbook_product_for_every_shape() {
        for (i, &(rows, input, output)) in SHAPES.iter().enumerate() {
            let seed = 10 * i as u32;
            let x = values(rows * input, seed);
            let weight = values(output * input, seed + 1);
            let bias = values(output, seed + 2);
            let residual = values(rows * output, seed + 3);
            let norm = Norm {
                gamma: values(output, seed + 4),
                beta: values(output, seed + 5),
                eps: 1e-12,
            };
            let layer = Linear::new(&weight, bias.clone(), input, output).unwrap();
            for then in [
                Then::Nothing,
                Then::Gelu,
                Then::ResidualNorm {
                    residual: &residual,
                    norm: &norm,
                },
            ] {
                // A reused buffer, longer than needed and full of garbage.
                let mut y = vec![f32::NAN; rows * output + 7];
                let path = KernelPath::selected();
                layer.forward(path, &x, &mut y, &then);
                let (x, weight) = (rounded_for(path, &x), rounded_for(path, &weight));
                let theirs = reference(&x, &weight, &bias, (rows, input, output), &then);
                assert_close(y, &theirs, (rows, input, output), "forward");
            }
        }
    }

    /// Every kernel path this CPU supports, and the portable kernel at every block height with
    /// and without FMA, over all rows as one stripe.
    #[test]
    fn every_kernel_matches_the_reference() {
        type Body = fn(&Linear, &[f32], &mut [f32], &Then<'_>, &[f32]);
        let bodies: [(&str, Body); 5] = [
            ("portable 12 rows, bfloat16 pairs", |w, x, y, t, r| {
                stripe::<12, true>(w, x, y, t, r, portable_pairs_kernel::<12>)
            }),
            ("portable 12 rows, FMA", |w, x, y, t, r| {
                stripe::<12, false>(w, x, y, t, r, portable_kernel::<12, true>)
            }),
            ("portable 12 rows", |w, x, y, t, r| {
                stripe::<12, false>(w, x, y, t, r, portable_kernel::<12, false>)
            }),
            ("portable 6 rows, FMA", |w, x, y, t, r| {
                stripe::<MR, false>(w, x, y, t, r, portable_kernel::<MR, true>)
            }),
            ("baseline", stripe_baseline),
        ];
        for (i, &(rows, input, output)) in SHAPES.iter().enumerate() {
            let seed = 100 + 10 * i as u32;
            let x = values(rows * input, seed);
            let weight = values(output * input, seed + 1);
            let bias = values(output, seed + 2);
            let layer = Linear::new(&weight, bias.clone(), input, output).unwrap();
            let shape = (rows, input, output);
            let theirs = |path| {
                let (x, weight) = (rounded_for(path, &x), rounded_for(path, &weight));
                reference(&x, &weight, &bias, shape, &Then::Gelu)
            };
            let (exact, rounded) = (theirs(KernelPath::Avx512), theirs(KernelPath::Avx512Bf16));
            for (name, body) in bodies {
                let mut y = vec![f32::NAN; rows * output];
                body(&layer, &x, &mut y, &Then::Gelu, &[]);
                let theirs = if name.contains("bfloat16") {
                    &rounded
                } else {
                    &exact
                };
                assert_close(y, theirs, shape, name);
            }
            for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
                let mut y = vec![f32::NAN; rows * output];
                stripe_forward(path, &layer, &x, &mut y, &Then::Gelu, &[]);
                let theirs = if path == KernelPath::Avx512Bf16 {
                    &rounded
                } else {
                    &exact
                };
                assert_close(y, theirs, shape, path.name());
            }
        }
    }

    #[test]
    fn inconsistent_sizes_are_an_error_not_a_panic() {
        assert!(Linear::new(&[0.0; 6], vec![0.0; 2], 3, 2).is_ok());
        assert!(Linear::new(&[0.0; 5], vec![0.0; 2], 3, 2).is_err());
        assert!(Linear::new(&[0.0; 6], vec![0.0; 3], 3, 2).is_err());
        assert!(Linear::new(&[], vec![], 0, 0).is_err());
    }
}
