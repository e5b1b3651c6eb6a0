//! Encoder throughput on synthetic token ids: `cargo run --release -p minilm --example
//! throughput -- MODEL_DIR [TEXTS] [TOKENS]`. Batches of 32 texts of TOKENS word pieces (default
//! 100, about the job's narratives), TEXTS texts in all (default 256), two batches at a time as
//! `market_encoder::embed` runs them; prints the kernel path and texts/s (best of 3 after a first
//! pass, which is shown apart), per second of wall time and per second of the process's CPU time.

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
    // Texts per second of wall time and per second of the process's CPU time (all threads;
    // Linux only, else 0): the second is steadier when other processes share the cores.
    let run = || -> Result<(f64, f64), minilm::Error> {
        let (started, cpu_started) = (Instant::now(), cpu_seconds());
        for pair in batch.chunks(2) {
            pair.par_iter()
                .map(|(ids, lengths)| model.forward(ids, lengths).map(|_| ()))
                .collect::<Result<Vec<()>, _>>()?;
        }
        let cpu = cpu_seconds() - cpu_started;
        let per_cpu = if cpu > 0.0 { texts as f64 / cpu } else { 0.0 };
        Ok((texts as f64 / started.elapsed().as_secs_f64(), per_cpu))
    };
    // The first pass apart: what a job's first call pays (fresh buffers, threads, caches).
    let (first, first_cpu) = run()?;
    let (mut best, mut best_cpu) = (0f64, 0f64);
    for _ in 0..3 {
        let (wall, cpu) = run()?;
        best = best.max(wall);
        best_cpu = best_cpu.max(cpu);
    }
    let bf16 = minilm::KernelPath::bf16_speedup()
        .map(|s| format!("; bf16 dot products {s:.2}x the FMA's flops here"))
        .unwrap_or_default();
    println!(
        "{texts} texts of {tokens} tokens: {best:.1} texts/s ({} threads, {} path{bf16}; {best_cpu:.1} texts per CPU-second; first pass {first:.1} texts/s, {first_cpu:.1} per CPU-second)",
        rayon::current_num_threads(),
        minilm::KernelPath::selected()
    );
    Ok(())
}

/// The CPU time of this process so far (user + system, all threads), from `/proc/self/stat`
/// (in clock ticks, taken as the usual 100 per second); 0 where that file does not exist.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 14th and 15th fields of the line, the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}
