//! The x86-64 micro-kernels of [`crate::linear`], in `std::arch` intrinsics: `acc += a · b` for
//! a micro-panel `a` (`kc` rows of `ROWS` activations, k-major) and a weight panel `b` (`kc`
//! rows of [`NR`] = 32 output columns), the `ROWS × 32` block `acc` held in registers over all
//! `kc` steps.
//!
//! The intrinsics are called through `pulp`'s feature tokens ([`V4`]: AVX-512F/BW/CD/DQ/VL,
//! [`V3`]: AVX2 + FMA): a token exists only if the CPU has the features (`try_new` checks), its
//! methods are the intrinsics as safe functions, and `token.vectorize(f)` runs `f` inside a
//! `#[target_feature]` function of those features. The kernels, and everything of
//! `linear::stripe` around them, are `#[inline(always)]`, so the whole call tree of a stripe is
//! compiled for that instruction set (`scripts/check-kernels.sh` checks the machine code).
//! Memory goes through `bytemuck::cast` (a by-value copy between `[f32; 32]` and `[__m512; 2]`,
//! emitted as unaligned vector loads and stores): no pointers.
//!
//! The AVX512-BF16 stripe ([`Avx512Bf16`]) is the exception to the tokens: pulp has none with
//! its intrinsics, so it is a `#[target_feature]` function of ours, called in the crate's only
//! `unsafe` blocks after the same run-time check a pulp token makes.

use std::arch::x86_64::{
    __m256, __m512, __m512bh, _mm512_dpbf16_ps, _mm512_fmadd_ps, _mm512_set1_ps,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

pub(crate) use pulp::x86::{V3, V4};

use crate::linear::{Linear, MR, MR_AVX512, NR, StripeArgs, Then, stripe};
use crate::{AttendArgs, AttendKernel, HEAD, KB};

/// `linear::stripe` with the AVX-512 kernel, as the function `V4::vectorize` runs with the
/// features enabled. A struct with an `#[inline(always)]` `call`, not a closure: a closure's
/// `call_once` can land in another codegen unit of an incremental (test) build and stay a call
/// there, compiled without the features (the kernel tests caught it: 15x slower than the
/// baseline).
pub(crate) struct Avx512Stripe<'s, 'a> {
    pub(crate) simd: V4,
    pub(crate) args: StripeArgs<'s, 'a>,
}

impl pulp::NullaryFnOnce for Avx512Stripe<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let simd = self.simd;
        self.args
            .run::<MR_AVX512>(|a, b, c| kernel_avx512(simd, a, b, c));
    }
}

/// `linear::stripe` with the AVX2 + FMA kernel, as [`Avx512Stripe`].
pub(crate) struct Avx2Stripe<'s, 'a> {
    pub(crate) simd: V3,
    pub(crate) args: StripeArgs<'s, 'a>,
}

impl pulp::NullaryFnOnce for Avx2Stripe<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let simd = self.simd;
        self.args.run::<MR>(|a, b, c| kernel_avx2(simd, a, b, c));
    }
}

/// AVX-512: `ROWS` (12) rows × 32 columns, two zmm accumulators a row: 24 accumulators, two
/// weight loads and `ROWS` broadcasts per step for `2 × ROWS` FMAs (the register tile of BLIS's
/// and MLAS's AVX-512 SGEMM kernels; 24 independent chains hide the FMA latency on two ports).
#[inline(always)]
pub(crate) fn kernel_avx512<const ROWS: usize>(
    simd: V4,
    a: &[[f32; ROWS]],
    b: &[[f32; NR]],
    acc: &mut [[f32; NR]; ROWS],
) {
    let f = simd.avx512f;
    let mut c: [[__m512; 2]; ROWS] = bytemuck::cast(*acc);
    for (a, b) in a.iter().zip(b) {
        let [b0, b1]: [__m512; 2] = bytemuck::cast(*b);
        for (c, &x) in c.iter_mut().zip(a) {
            let x = f._mm512_set1_ps(x);
            c[0] = f._mm512_fmadd_ps(x, b0, c[0]);
            c[1] = f._mm512_fmadd_ps(x, b1, c[1]);
        }
    }
    *acc = bytemuck::cast(c);
}

/// AVX2 + FMA: a 32-column panel as two halves of `ROWS` (6) rows × 16 columns, two ymm
/// accumulators a row: 12 accumulators, two weight loads and 6 broadcasts per step for 12 FMAs
/// (BLIS's Haswell tile), within AVX2's 16 registers.
#[inline(always)]
pub(crate) fn kernel_avx2<const ROWS: usize>(
    simd: V3,
    a: &[[f32; ROWS]],
    b: &[[f32; NR]],
    acc: &mut [[f32; NR]; ROWS],
) {
    let mut out: [[[__m256; 2]; 2]; ROWS] = bytemuck::cast(*acc);
    for half in 0..2 {
        let mut c: [[__m256; 2]; ROWS] = std::array::from_fn(|r| out[r][half]);
        for (a, b) in a.iter().zip(b) {
            let b: [[__m256; 2]; 2] = bytemuck::cast(*b);
            let [b0, b1] = b[half];
            for (c, &x) in c.iter_mut().zip(a) {
                let x = simd.avx._mm256_set1_ps(x);
                c[0] = simd.fma._mm256_fmadd_ps(x, b0, c[0]);
                c[1] = simd.fma._mm256_fmadd_ps(x, b1, c[1]);
            }
        }
        for (o, c) in out.iter_mut().zip(c) {
            o[half] = c;
        }
    }
    *acc = bytemuck::cast(out);
}

/// Attention (`crate::attend_blocked`) with the AVX-512 attention kernel, as [`Avx512Stripe`].
pub(crate) struct Avx512Attend<'a> {
    pub(crate) simd: V4,
    pub(crate) args: AttendArgs<'a>,
}

impl pulp::NullaryFnOnce for Avx512Attend<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        self.args.run::<MR_AVX512>(self.simd);
    }
}

/// Attention with the AVX2 + FMA attention kernel, as [`Avx2Stripe`].
pub(crate) struct Avx2Attend<'a> {
    pub(crate) simd: V3,
    pub(crate) args: AttendArgs<'a>,
}

impl pulp::NullaryFnOnce for Avx2Attend<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        self.args.run::<MR>(self.simd);
    }
}

/// Attention's `acc += a · b` on AVX-512: [`kernel_avx512`]'s 12 x 32 register block, for
/// `ROWS` rows of [`KB`] inputs (queries, or probabilities) read in place and [`KB`] rows of
/// 32 (a panel of transposed keys, or the values' rows read in place).
impl AttendKernel<MR_AVX512> for V4 {
    #[inline(always)]
    fn step(
        self,
        a: [&[f32; KB]; MR_AVX512],
        b: [&[f32; HEAD]; KB],
        acc: &mut [[f32; HEAD]; MR_AVX512],
    ) {
        attend_kernel_avx512(self, a, b, acc);
    }
}

/// Attention's `acc += a · b` on AVX2 + FMA: [`kernel_avx2`]'s 6 x 16 block, twice.
impl AttendKernel<MR> for V3 {
    #[inline(always)]
    fn step(self, a: [&[f32; KB]; MR], b: [&[f32; HEAD]; KB], acc: &mut [[f32; HEAD]; MR]) {
        attend_kernel_avx2(self, a, b, acc);
    }
}

#[inline(always)]
fn attend_kernel_avx512<const ROWS: usize>(
    simd: V4,
    a: [&[f32; KB]; ROWS],
    b: [&[f32; HEAD]; KB],
    acc: &mut [[f32; HEAD]; ROWS],
) {
    let f = simd.avx512f;
    let mut c: [[__m512; 2]; ROWS] = bytemuck::cast(*acc);
    for (kk, b) in b.iter().enumerate() {
        let [b0, b1]: [__m512; 2] = bytemuck::cast(**b);
        for (c, a) in c.iter_mut().zip(&a) {
            let x = f._mm512_set1_ps(a[kk]);
            c[0] = f._mm512_fmadd_ps(x, b0, c[0]);
            c[1] = f._mm512_fmadd_ps(x, b1, c[1]);
        }
    }
    *acc = bytemuck::cast(c);
}

#[inline(always)]
fn attend_kernel_avx2<const ROWS: usize>(
    simd: V3,
    a: [&[f32; KB]; ROWS],
    b: [&[f32; HEAD]; KB],
    acc: &mut [[f32; HEAD]; ROWS],
) {
    let mut out: [[[__m256; 2]; 2]; ROWS] = bytemuck::cast(*acc);
    for half in 0..2 {
        let mut c: [[__m256; 2]; ROWS] = std::array::from_fn(|r| out[r][half]);
        for (kk, b) in b.iter().enumerate() {
            let b: [[__m256; 2]; 2] = bytemuck::cast(**b);
            let [b0, b1] = b[half];
            for (c, a) in c.iter_mut().zip(&a) {
                let x = simd.avx._mm256_set1_ps(a[kk]);
                c[0] = simd.fma._mm256_fmadd_ps(x, b0, c[0]);
                c[1] = simd.fma._mm256_fmadd_ps(x, b1, c[1]);
            }
        }
        for (o, c) in out.iter_mut().zip(c) {
            o[half] = c;
        }
    }
    *acc = bytemuck::cast(out);
}

/// Proof that this CPU has x86-64-v4 ([`V4`]) and AVX512-BF16: the only way to run
/// [`stripe_avx512_bf16`] and the probe's loops. pulp has no token with AVX512-BF16's
/// intrinsics, so this is the one place of the crate that calls `#[target_feature]` functions
/// by `unsafe`, after the same runtime check a pulp token makes.
#[derive(Clone, Copy)]
pub(crate) struct Avx512Bf16(());

impl Avx512Bf16 {
    pub(crate) fn try_new() -> Option<Self> {
        (V4::is_available() && std::arch::is_x86_feature_detected!("avx512bf16"))
            .then_some(Self(()))
    }

    /// How many times the fp32 FMA's flops per second `vdpbf16ps` does on this CPU: the same
    /// 24 independent accumulators in registers, interleaved, best of 5 each (~1.3 ms in all on
    /// Zen 5, ~10 ms where `vdpbf16ps` is slow).
    /// AMD's Zen 5 does two products per lane at the FMA's rate (~2x); the Intel Xeon of
    /// 2026-12-01 ran it at 0.23x the FMA's instruction rate (0.46x its flops), where the BF16
    /// path would be slower than the fp32 one.
    #[allow(unsafe_code)]
    pub(crate) fn dot_speedup(self) -> f64 {
        const STEPS: u32 = 50_000;
        let time = |f: &dyn Fn() -> f32| {
            let started = Instant::now();
            black_box(f());
            started.elapsed()
        };
        let (mut fma, mut dot) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            // SAFETY: `self` exists only if `try_new` found AVX-512F and AVX512-BF16.
            fma = fma.min(time(&|| unsafe { fma_loop(STEPS) }));
            // SAFETY: as above.
            dot = dot.min(time(&|| unsafe { dot_loop(STEPS) }));
        }
        // Two flops per lane and FMA, four per lane and `vdpbf16ps`.
        2.0 * fma.as_secs_f64() / dot.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// `linear::stripe` with bfloat16 pairs and [`kernel_avx512_bf16`].
    #[inline]
    #[allow(unsafe_code)]
    pub(crate) fn stripe(
        self,
        w: &Linear,
        x: &[f32],
        y: &mut [f32],
        then: &Then<'_>,
        residual: &[f32],
    ) {
        // SAFETY: `self` exists only if `try_new` found every feature `stripe_avx512_bf16`
        // enables on this CPU.
        unsafe { stripe_avx512_bf16(w, x, y, then, residual) }
    }
}

/// `linear::stripe` with bfloat16 pairs, compiled with x86-64-v4 and AVX512-BF16 (the whole call
/// tree: `stripe` and GELU/LayerNorm are inlined, the kernel closure inherits the features).
#[target_feature(
    enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx512bf16,avx2,fma,bmi1,bmi2,lzcnt,movbe,popcnt,f16c"
)]
fn stripe_avx512_bf16(w: &Linear, x: &[f32], y: &mut [f32], then: &Then<'_>, residual: &[f32]) {
    stripe::<MR_AVX512, true>(w, x, y, then, residual, |a, b, c| {
        kernel_avx512_bf16(a, b, c);
    });
}

/// AVX512-BF16: the AVX-512 kernel's 12 x 32 block with `vdpbf16ps`. Each step of `a` and `b`
/// is a pair of inputs (`linear::pair`): a broadcast pair times a weight panel row of 32 column
/// pairs adds two products to each of the 24 fp32 accumulators, twice an FMA's work.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
fn kernel_avx512_bf16<const ROWS: usize>(
    a: &[[f32; ROWS]],
    b: &[[f32; NR]],
    acc: &mut [[f32; NR]; ROWS],
) {
    let mut c: [[__m512; 2]; ROWS] = bytemuck::cast(*acc);
    for (a, b) in a.iter().zip(b) {
        let [b0, b1]: [__m512bh; 2] = bytemuck::cast(*b);
        for (c, &x) in c.iter_mut().zip(a) {
            let x: __m512bh = bytemuck::cast(_mm512_set1_ps(x));
            c[0] = _mm512_dpbf16_ps(c[0], x, b0);
            c[1] = _mm512_dpbf16_ps(c[1], x, b1);
        }
    }
    *acc = bytemuck::cast(c);
}

/// `steps` x 24 independent `vfmadd231ps zmm`, for [`Avx512Bf16::dot_speedup`].
#[target_feature(enable = "avx512f")]
fn fma_loop(steps: u32) -> f32 {
    let (x, y) = (
        black_box(_mm512_set1_ps(1.0)),
        black_box(_mm512_set1_ps(1e-6)),
    );
    let mut acc = [_mm512_set1_ps(0.0); 24];
    for _ in 0..steps {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(x, y, *a);
        }
    }
    let lanes: [[f32; 16]; 24] = bytemuck::cast(black_box(acc));
    lanes.iter().map(|l| l[0]).sum()
}

/// `steps` x 24 independent `vdpbf16ps zmm`, for [`Avx512Bf16::dot_speedup`].
#[target_feature(enable = "avx512f,avx512bf16")]
fn dot_loop(steps: u32) -> f32 {
    let pairs = |v: f32| -> __m512bh { bytemuck::cast(_mm512_set1_ps(crate::linear::pair(v, v))) };
    let (x, y) = (black_box(pairs(1.0)), black_box(pairs(1e-6)));
    let mut acc = [_mm512_set1_ps(0.0); 24];
    for _ in 0..steps {
        for a in &mut acc {
            *a = _mm512_dpbf16_ps(*a, x, y);
        }
    }
    let lanes: [[f32; 16]; 24] = bytemuck::cast(black_box(acc));
    lanes.iter().map(|l| l[0]).sum()
}
