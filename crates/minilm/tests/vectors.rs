//! The whole encoder against sentence-transformers, with every kernel path this CPU supports:
//! the token ids and vectors of tests/fixtures/vectors.json (made by make_vectors.py beside it:
//! narratives, edge cases, a text truncated at 256 word pieces, four texts of exactly 128), mean
//! pooled and normalised as sentence-transformers does. Each path must reach cosine >= 0.999 to
//! sentence-transformers (the target), and agree with the baseline path to 1e-5 (the
//! f32 SIMD kernels compute the same sums in another order: any larger difference is a bug), or
//! to 1e-4 on the BF16 path (its products round their inputs to bfloat16).
//!
//! Needs the model: EMBEDDING_MODEL_DIR (scripts/test.sh sets it with `ensure_model` from
//! scripts/lib/model.sh).

use minilm::{Bert, BertConfig, KernelPath};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    texts: Vec<Text>,
}

#[derive(Deserialize)]
struct Text {
    ids: Vec<u32>,
    vector: Vec<f32>,
}

/// Mean pooling over each text's tokens, then L2 normalisation.
fn pooled(hidden: &[f32], lengths: &[usize], dim: usize) -> Vec<Vec<f32>> {
    let mut rows = hidden.chunks_exact(dim);
    lengths
        .iter()
        .map(|&len| {
            let mut sum = vec![0f64; dim];
            for row in rows.by_ref().take(len) {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += f64::from(x);
                }
            }
            let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            sum.iter().map(|x| (x / norm) as f32).collect()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot = |x: &[f32], y: &[f32]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

#[test]
fn every_kernel_path_matches_sentence_transformers_and_the_baseline() {
    let fixture: Fixture = serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap();
    let Some(dir) = std::env::var_os("EMBEDDING_MODEL_DIR") else {
        panic!(
            "EMBEDDING_MODEL_DIR is not set: this test needs the model (scripts/test.sh sets it; or `source scripts/lib/model.sh && ensure_model`)"
        )
    };
    let dir = std::path::PathBuf::from(dir);
    let config: BertConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let model = Bert::load(
        &std::fs::read(dir.join("model.safetensors")).unwrap(),
        &config,
    )
    .unwrap();
    let ids: Vec<u32> = fixture.texts.iter().flat_map(|t| t.ids.clone()).collect();
    let lengths: Vec<usize> = fixture.texts.iter().map(|t| t.ids.len()).collect();
    let dim = fixture.texts[0].vector.len();
    let run = |path| {
        pooled(
            &model.forward_with(path, &ids, &lengths).unwrap(),
            &lengths,
            dim,
        )
    };
    let baseline = run(KernelPath::Baseline);
    for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
        let ours = run(path);
        // The f32 paths differ from each other only in the order of their sums; the BF16 path
        // rounds the linear layers' inputs to 8 significant bits (measured on Zen 5: 1 - 3.2e-5
        // to the baseline and to sentence-transformers).
        let to_baseline = if path == KernelPath::Avx512Bf16 {
            1e-4
        } else {
            1e-5
        };
        let (mut worst_st, mut worst_baseline) = (f64::INFINITY, f64::INFINITY);
        for ((v, base), text) in ours.iter().zip(&baseline).zip(&fixture.texts) {
            let (st, b) = (cosine(v, &text.vector), cosine(v, base));
            worst_st = worst_st.min(st);
            worst_baseline = worst_baseline.min(b);
            assert!(
                st >= 0.999,
                "{path}: cosine {st} < 0.999 to sentence-transformers for a text of {} tokens",
                text.ids.len()
            );
            assert!(
                b >= 1.0 - to_baseline,
                "{path}: cosine {b} to the baseline path for a text of {} tokens",
                text.ids.len()
            );
        }
        eprintln!(
            "{path}: worst cosine 1 - {:.1e} to sentence-transformers, 1 - {:.1e} to the baseline ({} texts)",
            1.0 - worst_st,
            1.0 - worst_baseline,
            fixture.texts.len()
        );
    }
}
