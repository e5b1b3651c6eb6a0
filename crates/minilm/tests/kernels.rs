//! Guards for the matrix-product kernels, on whatever CPU runs the tests: each kernel path the
//! CPU supports computes the same product as a plain f64 reference, and each SIMD path is many
//! times faster than the baseline on the same shape. A regression like the AVX-512 clone that
//! compiled to gathers and scatters (issue 12: ~4 documents/s) fails here, on the CPU that has
//! it, even if the developer's own CPU takes another path.
//!
//! The ratios are far below what the kernels reach (on a Xeon with AVX-512, 2026-12-01: AVX-512
//! ~5x, AVX2 ~3x the baseline on this shape), and each path's time is the best of several runs
//! interleaved with the baseline's, so that another process on the machine cannot flip them.

use std::time::{Duration, Instant};

use minilm::{Dense, KernelPath};

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `x · Wᵀ + b` in f64, the textbook triple loop.
fn reference(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (rows, input, output): (usize, usize, usize),
) -> Vec<f64> {
    let mut y = vec![0f64; rows * output];
    for r in 0..rows {
        for j in 0..output {
            let dot: f64 = (0..input)
                .map(|k| f64::from(x[r * input + k]) * f64::from(w[j * input + k]))
                .sum();
            y[r * output + j] = dot + f64::from(b[j]);
        }
    }
    y
}

/// `v` rounded to bfloat16 (to nearest, ties to even) and back, as the BF16 path reads its
/// activations and weights; written out here apart from the crate's own rounding.
fn to_bf16(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| {
            let bits = x.to_bits();
            let rounded = bits + 0x7FFF + ((bits >> 16) & 1);
            f32::from_bits(rounded & 0xFFFF_0000)
        })
        .collect()
}

/// Whether this CPU's startup probe finds the BF16 path worth taking.
fn bf16_pays() -> bool {
    KernelPath::bf16_speedup().is_some_and(|s| s >= KernelPath::BF16_MIN_SPEEDUP)
}

fn supported() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|p| p.supported())
        .collect()
}

#[test]
fn the_selected_path_is_the_best_supported_one_and_baseline_runs_everywhere() {
    assert!(KernelPath::Baseline.supported());
    let best = KernelPath::best();
    assert!(best.supported());
    // No supported path comes before the best one, except a BF16 path that does not pay here.
    let pays = bf16_pays();
    assert_eq!(
        KernelPath::bf16_speedup().is_some(),
        KernelPath::Avx512Bf16.supported()
    );
    let first = KernelPath::ALL.iter().position(|&p| p == best);
    let wanted = KernelPath::ALL
        .iter()
        .position(|&p| p.supported() && (p != KernelPath::Avx512Bf16 || pays));
    assert_eq!(first, wanted);
    if std::env::var_os("MINILM_KERNEL").is_none() {
        assert_eq!(KernelPath::selected(), best);
    }
    for path in KernelPath::ALL {
        assert_eq!(KernelPath::from_name(path.name()), Some(path));
    }
    assert_eq!(KernelPath::from_name("sse9"), None);
}

#[test]
fn an_unsupported_path_is_an_error_not_a_crash() {
    let layer = Dense::new(&[1.0; 6], vec![0.0; 2], 3, 2).unwrap();
    let mut y = Vec::new();
    for path in KernelPath::ALL.into_iter().filter(|p| !p.supported()) {
        let err = layer.forward(path, &[1.0; 3], &mut y, false).unwrap_err();
        assert!(err.to_string().contains("does not support"), "{err}");
    }
    assert!(
        layer
            .forward(KernelPath::Baseline, &[1.0; 4], &mut y, false)
            .is_err()
    );
}

#[test]
fn every_supported_path_computes_the_product() {
    // Rows over one stripe and not a multiple of any block height, inputs over one pass of the
    // kernel and not a multiple of it, a partial last panel.
    for (rows, input, output) in [(1, 1, 1), (13, 70, 33), (150, 300, 64), (7, 600, 96)] {
        let x = values(rows * input, 1);
        let w = values(output * input, 2);
        let b = values(output, 3);
        let exact = reference(&x, &w, &b, (rows, input, output));
        // What the BF16 path must compute: the product of the rounded values.
        let rounded = reference(&to_bf16(&x), &to_bf16(&w), &b, (rows, input, output));
        let layer = Dense::new(&w, b.clone(), input, output).unwrap();
        let max_diff = |y: &[f32], want: &[f64]| {
            y.iter()
                .zip(want)
                .map(|(&a, &b)| (f64::from(a) - b).abs())
                .fold(0.0, f64::max)
        };
        for path in supported() {
            let mut y = vec![f32::NAN; 3];
            layer.forward(path, &x, &mut y, false).unwrap();
            assert_eq!(y.len(), rows * output, "{path}");
            let want = if path == KernelPath::Avx512Bf16 {
                &rounded
            } else {
                &exact
            };
            let worst = max_diff(&y, want);
            // Sums of `input` products of values in [-1, 1): f32 rounding is ~1e-6 * sqrt(input).
            assert!(
                worst < 1e-4 * (input as f64).sqrt(),
                "{path}: {rows}x{input} -> {output}: max diff {worst}"
            );
            // And the rounding to bfloat16 (8 significant bits) stays what it is: ~2^-9 of
            // each product, ~0.01 * sqrt(input) in all.
            let off = max_diff(&y, &exact);
            assert!(
                off < 0.02 * (input as f64).sqrt(),
                "{path}: {rows}x{input} -> {output}: max diff {off} to the exact product"
            );
        }
    }
}

/// The best of `runs` timings of `f`.
fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn every_simd_path_is_many_times_faster_than_the_baseline() {
    // One stripe's worth of rows (one thread) of BERT's intermediate layer, 384 -> 1536:
    // ~85 MFLOP, ~2 ms on the baseline.
    let (rows, input, output) = (144, 384, 768);
    let layer = Dense::new(&values(input * output, 4), values(output, 5), input, output).unwrap();
    let x = values(rows * input, 6);
    let mut y = Vec::new();
    let mut time = |path: KernelPath| best_of(3, || layer.forward(path, &x, &mut y, true).unwrap());
    // On AArch64 the baseline is the NEON kernel itself (NEON is part of the target): nothing to
    // compare there.
    // The BF16 path's floor depends on the CPU's `vdpbf16ps`. Where it pays (the probe's
    // >= BF16_MIN_SPEEDUP) the path is the fastest one: 10.9-11.6x the baseline on Zen 5. Where
    // it does not, the path is not selected and runs below the fp32 one, but a register-blocked
    // clone is still several times the baseline: 3.1x on the Intel Xeon of 2026-12-02 (dot
    // products ~0.5x the FMA's flops), under load; a clone that lost its register block falls
    // toward the baseline.
    let paths = [
        (KernelPath::Avx512Bf16, if bf16_pays() { 4.0 } else { 2.0 }),
        (KernelPath::Avx512, 3.0),
        (KernelPath::Avx2Fma, 2.0),
    ];
    for (path, at_least) in paths {
        if !path.supported() {
            continue;
        }
        let (mut simd, mut baseline) = (Duration::MAX, Duration::MAX);
        for _ in 0..4 {
            simd = simd.min(time(path));
            baseline = baseline.min(time(KernelPath::Baseline));
        }
        let ratio = baseline.as_secs_f64() / simd.as_secs_f64();
        eprintln!("{path}: {ratio:.1}x the baseline ({simd:?} vs {baseline:?})");
        assert!(
            ratio >= at_least,
            "the {path} kernel is only {ratio:.2}x the baseline ({simd:?} vs {baseline:?}); expected >= {at_least}x: is its clone still register-blocked FMA code? (scripts/check-kernels.sh)"
        );
    }
    // Where the selection takes the BF16 path (its dot products measured >= BF16_MIN_SPEEDUP
    // times the FMA's flops), it must also beat the fp32 AVX-512 path on the layer itself (Zen 5: ~1.6x).
    if KernelPath::best() == KernelPath::Avx512Bf16 {
        let (mut bf16, mut fp32) = (Duration::MAX, Duration::MAX);
        for _ in 0..4 {
            bf16 = bf16.min(time(KernelPath::Avx512Bf16));
            fp32 = fp32.min(time(KernelPath::Avx512));
        }
        let ratio = fp32.as_secs_f64() / bf16.as_secs_f64();
        let probe = KernelPath::bf16_speedup().unwrap_or_default();
        eprintln!(
            "AVX-512 BF16: {ratio:.2}x AVX-512 (its dot products {probe:.2}x the FMA's flops)"
        );
        assert!(
            ratio >= 1.2,
            "the BF16 path is taken (dot products {probe:.2}x the FMA's flops) but runs only {ratio:.2}x the AVX-512 one ({bf16:?} vs {fp32:?}); expected >= 1.2x"
        );
    }
}
