//! The matrix-product kernels alone: `cargo run --release -p minilm --example kernels -- [ROWS]
//! [INPUT] [OUTPUT]` runs `Dense::forward` (GELU) with every kernel path this CPU supports on a
//! `(ROWS, INPUT) -> OUTPUT` product (default 1152 x 384 -> 1536: nine batches' worth of BERT's
//! intermediate layer) and prints GFLOP/s per path, best of 5, on rayon's threads.
//! `scripts/check-kernels.sh` also builds it to disassemble the kernels of a release build.

use std::time::Instant;

use minilm::{Dense, KernelPath};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| args.next().map_or(Ok(default), |s| s.parse::<usize>());
    let (rows, input, output) = (next(1152)?, next(384)?, next(1536)?);
    let values = |n: usize, seed: u32| -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let layer = Dense::new(&values(input * output, 1), values(output, 2), input, output)?;
    let x = values(rows * input, 3);
    let mut y = Vec::new();
    let flops = 2.0 * (rows * input * output) as f64;
    println!(
        "{rows} x {input} -> {output}, {} threads, selected path {}",
        rayon::current_num_threads(),
        KernelPath::selected()
    );
    for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
        layer.forward(path, &x, &mut y, true)?;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let started = Instant::now();
            layer.forward(path, &x, &mut y, true)?;
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!("{:<9} {:>8.1} GFLOP/s", path.name(), flops / best / 1e9);
    }
    Ok(())
}
