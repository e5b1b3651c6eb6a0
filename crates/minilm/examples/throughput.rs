//! Encoder throughput on synthetic token ids: `cargo run --release -p minilm --example
//! throughput -- MODEL_DIR [TEXTS] [TOKENS]`. Batches of 32 texts of TOKENS word pieces (default
//! 100, about the job's narratives), TEXTS texts in all (default 256), two batches at a time as
//! `market_encoder::embed` runs them; prints the kernel path and texts/s (best of 3).

use std::time::Instant;

use minilm::{Bert, BertConfig};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: throughput MODEL_DIR [TEXTS] [TOKENS]")?,
    );
    let texts: usize = args.next().map_or(Ok(256), |s| s.parse())?;
    let tokens: usize = args.next().map_or(Ok(100), |s| s.parse())?;
    let config: BertConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let model = Bert::load(&std::fs::read(dir.join("model.safetensors"))?, &config)?;
    let mut seed = 12345u32;
    let batch: Vec<(Vec<u32>, Vec<usize>)> = (0..texts.div_ceil(32))
        .map(|b| {
            let n = 32.min(texts - b * 32);
            let ids = (0..n * tokens)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    1000 + seed % 20000
                })
                .collect();
            (ids, vec![tokens; n])
        })
        .collect();
    let run = || -> Result<f64, candle_core::Error> {
        let started = Instant::now();
        for pair in batch.chunks(2) {
            pair.par_iter()
                .map(|(ids, lengths)| model.forward(ids, lengths).map(|_| ()))
                .collect::<Result<Vec<()>, _>>()?;
        }
        Ok(texts as f64 / started.elapsed().as_secs_f64())
    };
    run()?;
    let mut best = 0f64;
    for _ in 0..3 {
        best = best.max(run()?);
    }
    println!(
        "{texts} texts of {tokens} tokens: {best:.1} texts/s ({} threads)",
        rayon::current_num_threads()
    );
    Ok(())
}
