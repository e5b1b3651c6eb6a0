//! The BERT encoder of all-MiniLM-L6-v2: Hugging Face's `BertModel` in eval mode (absolute
//! positions, token type 0, no pooler), written out in plain Rust. The `safetensors` crate only
//! parses the weights file (`model.safetensors`, any float type; converted to f32 here).
//!
//! How it is fast on a CPU:
//! - No padding at all: a batch is the concatenation of its texts' tokens, a `(tokens, hidden)`
//!   matrix, so the four linear layers of each block are four large matrix products over real
//!   tokens only, whatever the mix of lengths. They are ~90% of the time.
//! - Those products are [`linear::Linear`]: weights packed once at load time, a cache-blocked
//!   kernel compiled for AVX-512, AVX2 + FMA or NEON and chosen at run time, and the bias, GELU,
//!   residual and LayerNorm applied while the output is still in registers or cache.
//! - Attention runs per text in [`attention`]: per head, Q Kᵀ, softmax and P V, written straight
//!   into the merged-heads layout, one text per rayon task. With heads of 32 on the AVX-512 and
//!   AVX2 paths the two products go through the linear layers' register blocks
//!   ([`attend_blocked`]); otherwise through the portable [`small_matmul`] ([`attend`]). A text's queries only ever see its own keys, which is exactly what
//!   the attention mask achieves in the padded formulation.

mod linear;
#[cfg(target_arch = "x86_64")]
mod x86;

use linear::{Linear, Norm, Then};
use multiversion::multiversion;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::sync::OnceLock;

/// Rows of [`small_matmul`]'s register block (attention).
const MR: usize = 6;
/// Columns of [`small_matmul`]'s register block; the attention head size must be a multiple.
const NR: usize = 16;

/// What loading or running the encoder can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The weights are not a safetensors file (cut short, or another format).
    #[error("not a safetensors file: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A tensor the model needs is not in the file.
    #[error("no tensor {0}")]
    MissingTensor(String),
    /// A tensor has another shape than the config says.
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    /// A tensor holds integers or another non-float type.
    #[error("tensor {name} holds {dtype:?} values, not F32, F64, F16 or BF16")]
    NotFloat { name: String, dtype: Dtype },
    /// A linear layer whose weights or biases do not match its sizes.
    #[error("a linear layer of {input} -> {output} with {weights} weights and {biases} biases")]
    Layer {
        input: usize,
        output: usize,
        weights: usize,
        biases: usize,
    },
    /// A kernel path this CPU cannot run.
    #[error("this CPU does not support the {0} kernel")]
    Unsupported(KernelPath),
    /// An input that is not whole rows of the layer's input size.
    #[error("{values} values are not rows of {input}")]
    Rows { values: usize, input: usize },
    /// Token lengths that do not add up to the token ids given.
    #[error("lengths do not add up to the {tokens} token ids")]
    Lengths { tokens: usize },
    /// A text longer than the model's position embeddings.
    #[error("a text of {len} tokens is longer than the model's {max}")]
    TooLong { len: usize, max: usize },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenId { id: u32, vocab: usize },
}

/// The matrix-product kernel a CPU runs: the instruction set its clone of the linear layers is
/// compiled for (see `linear.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// x86-64-v4 with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids
    /// and later): the linear layers' 12 x 32 register blocks take `vdpbf16ps`, two products of
    /// bfloat16 inputs added to each fp32 accumulator per instruction, twice the FMA's work.
    /// Activations and weights are rounded to bfloat16 (8 significant bits) on the way in; every
    /// sum, GELU, LayerNorm and all of attention stay fp32. The cosine to sentence-transformers
    /// stays above 0.9999 (`tests/vectors.rs`).
    Avx512Bf16,
    /// x86-64 with AVX-512F/BW/CD/DQ/VL (x86-64-v4): 12 x 32 register blocks of 16-lane FMAs.
    Avx512,
    /// x86-64 with AVX2 and FMA (x86-64-v3): 6 x 16 register blocks of 8-lane FMAs.
    Avx2Fma,
    /// AArch64 with NEON: the portable kernel, vectorised by LLVM with NEON FMAs.
    Neon,
    /// Anything else (x86-64 without AVX2 + FMA): the portable kernel, plain x86-64 (SSE2).
    Baseline,
}

impl KernelPath {
    /// Every path, fastest first.
    pub const ALL: [Self; 5] = [
        Self::Avx512Bf16,
        Self::Avx512,
        Self::Avx2Fma,
        Self::Neon,
        Self::Baseline,
    ];

    /// Whether this CPU can run the path. [`KernelPath::Baseline`] runs everywhere (on AArch64 it
    /// is the NEON kernel: NEON is part of the baseline there).
    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Bf16 => x86::Avx512Bf16::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => x86::V4::is_available(),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => x86::V3::is_available(),
            #[cfg(target_arch = "aarch64")]
            Self::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Self::Baseline => true,
            #[allow(unreachable_patterns)] // which arms are left depends on the architecture
            _ => false,
        }
    }

    /// What [`KernelPath::bf16_speedup`] must reach for [`KernelPath::best`] to take the BF16
    /// path: far from both figures measured (Zen 5 2.00x, the Intel Xeon of 2026-12-01 0.46x).
    pub const BF16_MIN_SPEEDUP: f64 = 1.3;

    /// The fastest path this CPU supports: the first supported one of [`KernelPath::ALL`],
    /// except that [`KernelPath::Avx512Bf16`] is taken only where its dot products do at least
    /// [`KernelPath::BF16_MIN_SPEEDUP`] times the fp32 FMA's flops ([`KernelPath::bf16_speedup`]).
    pub fn best() -> Self {
        let bf16_pays = || Self::bf16_speedup().is_some_and(|s| s >= Self::BF16_MIN_SPEEDUP);
        Self::ALL
            .into_iter()
            .filter(|&p| p != Self::Avx512Bf16 || bf16_pays())
            .find(|p| p.supported())
            .unwrap_or(Self::Baseline)
    }

    /// On a CPU with AVX512-BF16: how many times the fp32 FMA's flops per second its
    /// `vdpbf16ps` does, measured once per process (a few milliseconds, registers only).
    /// Not every such CPU runs it fast: AMD's Zen 5 ~2x, the Intel Xeon of 2026-12-01 0.46x.
    /// `None` elsewhere.
    pub fn bf16_speedup() -> Option<f64> {
        static SPEEDUP: OnceLock<Option<f64>> = OnceLock::new();
        *SPEEDUP.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                x86::Avx512Bf16::try_new().map(x86::Avx512Bf16::dot_speedup)
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                None
            }
        })
    }

    /// The path [`Bert::forward`] takes: [`KernelPath::best`], unless the environment variable
    /// `MINILM_KERNEL` names another supported one (`avx512-bf16`, `avx512`, `avx2`, `neon`,
    /// `baseline`), e.g. `avx512` for fp32 products on a CPU with AVX512-BF16, or to measure the
    /// AVX2 kernel on an AVX-512 machine. Read once per process.
    pub fn selected() -> Self {
        static SELECTED: OnceLock<KernelPath> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            std::env::var("MINILM_KERNEL")
                .ok()
                .and_then(|name| Self::from_name(&name))
                .filter(|p| p.supported())
                .unwrap_or_else(Self::best)
        })
    }

    /// The path named `name` as [`KernelPath::selected`] reads it (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "avx512-bf16" | "avx-512 bf16" | "avx512bf16" | "bf16" => Some(Self::Avx512Bf16),
            "avx512" | "avx-512" => Some(Self::Avx512),
            "avx2" | "avx2+fma" => Some(Self::Avx2Fma),
            "neon" => Some(Self::Neon),
            "baseline" => Some(Self::Baseline),
            _ => None,
        }
    }

    /// A short label: `AVX-512 BF16`, `AVX-512`, `AVX2+FMA`, `NEON`, `baseline`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Bf16 => "AVX-512 BF16",
            Self::Avx512 => "AVX-512",
            Self::Avx2Fma => "AVX2+FMA",
            Self::Neon => "NEON",
            Self::Baseline => "baseline",
        }
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One linear layer, `y = x · Wᵀ + b` (optionally followed by GELU), on its own: the encoder's
/// matrix product, public so that tests and benchmarks can run each kernel path on any shape.
pub struct Dense(Linear);

impl Dense {
    /// `weight` is `(output, input)` row-major, as `torch.nn.Linear` stores it.
    pub fn new(weight: &[f32], bias: Vec<f32>, input: usize, output: usize) -> Result<Self, Error> {
        Linear::new(weight, bias, input, output).map(Self)
    }

    /// `y = x · Wᵀ + b` (then GELU if `gelu`) with the kernel of `path`, for `x` of
    /// `(rows, input)` row-major; `y` becomes `(rows, output)`. An unsupported `path` is an
    /// error.
    pub fn forward(
        &self,
        path: KernelPath,
        x: &[f32],
        y: &mut Vec<f32>,
        gelu: bool,
    ) -> Result<(), Error> {
        if !path.supported() {
            return Err(Error::Unsupported(path));
        }
        if !x.len().is_multiple_of(self.0.input()) {
            return Err(Error::Rows {
                values: x.len(),
                input: self.0.input(),
            });
        }
        let then = if gelu { Then::Gelu } else { Then::Nothing };
        self.0.forward(path, x, y, &then);
        Ok(())
    }
}

/// The fields of a Hugging Face BERT `config.json` that the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Why this config cannot be run by [`Bert`], if it cannot.
    pub fn unsupported(&self) -> Option<String> {
        if let Some(t) = self.model_type.as_deref()
            && t != "bert"
        {
            return Some(format!("model_type is {t:?}, expected \"bert\""));
        }
        if self.hidden_act != "gelu" {
            return Some(format!(
                "hidden_act is {:?}, expected \"gelu\"",
                self.hidden_act
            ));
        }
        if let Some(p) = self.position_embedding_type.as_deref()
            && p != "absolute"
        {
            return Some(format!(
                "position_embedding_type is {p:?}, expected \"absolute\""
            ));
        }
        if self.num_attention_heads == 0
            || self.hidden_size == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.hidden_size / self.num_attention_heads).is_multiple_of(NR) {
            return Some(format!(
                "the attention head size {} is not a multiple of {NR}",
                self.hidden_size / self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return Some(
                "vocab_size, type_vocab_size and intermediate_size must be > 0".to_owned(),
            );
        }
        None
    }
}

struct Layer {
    /// Fused query/key/value projection, `hidden -> 3 * hidden`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

pub struct Bert {
    /// `(vocab, hidden)`, row-major.
    word_embeddings: Vec<f32>,
    /// Position embeddings plus the token-type-0 embedding, `(max_positions, hidden)`.
    position_type_embeddings: Vec<f32>,
    embeddings_norm: Norm,
    layers: Vec<Layer>,
    vocab: usize,
    max_positions: usize,
    heads: usize,
    hidden: usize,
    /// The layers' intermediate buffers of earlier calls, kept for the next ones: a batch of 32
    /// texts of 128 tokens needs ~60 MB of them, and fresh ones were fresh pages from the
    /// kernel, zeroed and faulted in on every call (up to 6% of the time). One set per
    /// concurrent call, at most [`SPARE_BUFFERS`].
    spare: std::sync::Mutex<Vec<Buffers>>,
}

/// How many sets of [`Buffers`] a [`Bert`] keeps between calls.
const SPARE_BUFFERS: usize = 4;

/// The intermediate results of [`Bert::forward_with`], reused by every layer.
#[derive(Default)]
struct Buffers {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attn: Vec<f32>,
    inter: Vec<f32>,
}

/// The tensors of a safetensors file, looked up with or without the `bert.` prefix
/// (sentence-transformers saves them without it, `BertForMaskedLM` checkpoints with it).
struct Weights<'a> {
    file: SafeTensors<'a>,
    prefix: &'static str,
}

impl Weights<'_> {
    /// The values of tensor `name`, which must have shape `dims`, as f32 in row-major order.
    fn vec(&self, name: &str, dims: &[usize]) -> Result<Vec<f32>, Error> {
        let name = format!("{}{name}", self.prefix);
        let Ok(t) = self.file.tensor(&name) else {
            return Err(Error::MissingTensor(name));
        };
        if t.shape() != dims {
            return Err(Error::Shape {
                found: t.shape().to_vec(),
                expected: dims.to_vec(),
                name,
            });
        }
        to_f32(t.dtype(), t.data()).ok_or(Error::NotFloat {
            dtype: t.dtype(),
            name,
        })
    }

    fn norm(&self, name: &str, size: usize, eps: f64) -> Result<Norm, Error> {
        Ok(Norm {
            gamma: self.vec(&format!("{name}.weight"), &[size])?,
            beta: self.vec(&format!("{name}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    /// A linear layer's weight, `(output, input)` row-major as torch stores it, and its bias.
    fn linear(
        &self,
        name: &str,
        input: usize,
        output: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), Error> {
        Ok((
            self.vec(&format!("{name}.weight"), &[output, input])?,
            self.vec(&format!("{name}.bias"), &[output])?,
        ))
    }
}

/// Little-endian values of a float `dtype` as f32 (F64 rounded to nearest); `None` for a
/// non-float dtype. The parser has checked that `bytes` holds exactly the tensor's values.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Some(match dtype {
        Dtype::F32 => each(bytes, f32::from_le_bytes),
        Dtype::F64 => each(bytes, |b| f64::from_le_bytes(b) as f32),
        Dtype::F16 => each(bytes, |b| half::f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => each(bytes, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        }),
        _ => return None,
    })
}

impl Bert {
    /// Builds the encoder from the bytes of `model.safetensors`.
    pub fn load(safetensors: &[u8], cfg: &BertConfig) -> Result<Self, Error> {
        let file = SafeTensors::deserialize(safetensors)?;
        let prefix = if file.tensor("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        };
        let w = Weights { file, prefix };
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let word_embeddings = w.vec("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
        // Position embeddings plus the token-type-0 embedding, added once here.
        let mut position_type_embeddings = w.vec(
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, h],
        )?;
        let token_types = w.vec(
            "embeddings.token_type_embeddings.weight",
            &[cfg.type_vocab_size, h],
        )?;
        for row in position_type_embeddings.chunks_exact_mut(h) {
            for (x, t) in row.iter_mut().zip(&token_types[..h]) {
                *x += t;
            }
        }
        let embeddings_norm = w.norm("embeddings.LayerNorm", h, eps)?;

        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = format!("encoder.layer.{i}");
            let (q_w, q_b) = w.linear(&format!("{l}.attention.self.query"), h, h)?;
            let (k_w, k_b) = w.linear(&format!("{l}.attention.self.key"), h, h)?;
            let (v_w, v_b) = w.linear(&format!("{l}.attention.self.value"), h, h)?;
            let linear = |name: &str, input: usize, output: usize| {
                let (weight, bias) = w.linear(&format!("{l}.{name}"), input, output)?;
                Linear::new(&weight, bias, input, output)
            };
            layers.push(Layer {
                // Q, K and V as one layer of 3 * hidden outputs: their weights' rows stacked.
                qkv: Linear::new(
                    &[q_w, k_w, v_w].concat(),
                    [q_b, k_b, v_b].concat(),
                    h,
                    3 * h,
                )?,
                attn_out: linear("attention.output.dense", h, h)?,
                attn_norm: w.norm(&format!("{l}.attention.output.LayerNorm"), h, eps)?,
                inter: linear("intermediate.dense", h, cfg.intermediate_size)?,
                out: linear("output.dense", cfg.intermediate_size, h)?,
                out_norm: w.norm(&format!("{l}.output.LayerNorm"), h, eps)?,
            });
        }
        // Where `forward` will take the BF16 path, its weight layout is made now, with the load,
        // rather than on the first call (a path given to `forward_with` makes it on first use).
        if KernelPath::selected() == KernelPath::Avx512Bf16 {
            for layer in &layers {
                for linear in [&layer.qkv, &layer.attn_out, &layer.inter, &layer.out] {
                    linear.pair_panels();
                }
            }
        }
        Ok(Self {
            word_embeddings,
            position_type_embeddings,
            embeddings_norm,
            layers,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
            heads: cfg.num_attention_heads,
            hidden: h,
            spare: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The last hidden state, `(tokens, hidden)` row-major, of a batch of texts given as their
    /// concatenated token ids and the number of tokens of each, with the kernel of
    /// [`KernelPath::selected`].
    pub fn forward(&self, ids: &[u32], lengths: &[usize]) -> Result<Vec<f32>, Error> {
        self.forward_with(KernelPath::selected(), ids, lengths)
    }

    /// [`Bert::forward`] with the kernel of `path`; an unsupported `path` is an error.
    pub fn forward_with(
        &self,
        path: KernelPath,
        ids: &[u32],
        lengths: &[usize],
    ) -> Result<Vec<f32>, Error> {
        if !path.supported() {
            return Err(Error::Unsupported(path));
        }
        let h = self.hidden;
        let tokens = ids.len();
        if lengths.iter().sum::<usize>() != tokens {
            return Err(Error::Lengths { tokens });
        }
        if let Some(&len) = lengths.iter().find(|&&l| l > self.max_positions) {
            return Err(Error::TooLong {
                len,
                max: self.max_positions,
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(Error::TokenId {
                id,
                vocab: self.vocab,
            });
        }
        let positions: Vec<usize> = lengths.iter().flat_map(|&len| 0..len).collect();
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0);
        for len in lengths {
            offsets.push(offsets.last().copied().unwrap_or(0) + len);
        }

        let mut x = vec![0f32; tokens * h];
        x.par_chunks_mut(h)
            .zip(ids.par_iter().zip(&positions))
            .for_each(|(row, (&id, &pos))| {
                let word = &self.word_embeddings[id as usize * h..][..h];
                let pos = &self.position_type_embeddings[pos * h..][..h];
                for ((x, w), p) in row.iter_mut().zip(word).zip(pos) {
                    *x = w + p;
                }
                self.embeddings_norm.apply(row);
            });
        let head_dim = h / self.heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        // Buffers reused by every layer, and by later calls. (A poisoned lock only means that
        // a call panicked: the buffers are overwritten before they are read anyway.)
        let mut buffers = match self.spare.lock() {
            Ok(mut spare) => spare.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
        .unwrap_or_default();
        let Buffers {
            qkv,
            context,
            attn,
            inter,
        } = &mut buffers;
        for layer in &self.layers {
            layer.qkv.forward(path, &x, qkv, &Then::Nothing);
            attention(path, qkv, &offsets, (h, self.heads, scale), context);
            layer.attn_out.forward(
                path,
                context,
                attn,
                &Then::ResidualNorm {
                    residual: &x,
                    norm: &layer.attn_norm,
                },
            );
            layer.inter.forward(path, attn, inter, &Then::Gelu);
            layer.out.forward(
                path,
                inter,
                &mut x,
                &Then::ResidualNorm {
                    residual: attn,
                    norm: &layer.out_norm,
                },
            );
        }
        let mut spare = match self.spare.lock() {
            Ok(spare) => spare,
            Err(poisoned) => poisoned.into_inner(),
        };
        if spare.len() < SPARE_BUFFERS {
            spare.push(buffers);
        }
        Ok(x)
    }
}

/// Self-attention of each text over its own tokens. `qkv` is the QKV projection with its bias,
/// `(tokens, 3 * hidden)`; `offsets` the start row of each text and the total at the end. Writes
/// the attention context with heads merged, `(tokens, hidden)`, into `output` (a buffer reused
/// from call to call, every element of which is written).
fn attention(
    path: KernelPath,
    qkv: &[f32],
    offsets: &[usize],
    (h, heads, scale): (usize, usize, f32),
    output: &mut Vec<f32>,
) {
    let width = 3 * h;
    output.resize(qkv.len() / 3, 0.0);
    // One disjoint slice of the output per text.
    let mut texts = Vec::with_capacity(offsets.len());
    let mut rest = output.as_mut_slice();
    for pair in offsets.windows(2) {
        let (text, tail) = rest.split_at_mut((pair[1] - pair[0]) * h);
        texts.push((pair[0], text));
        rest = tail;
    }
    texts.into_par_iter().for_each(|(start, out)| {
        let len = out.len() / h;
        let qkv = &qkv[start * width..(start + len) * width];
        #[cfg(target_arch = "x86_64")]
        if h == heads * HEAD {
            use crate::x86::{Avx2Attend, Avx512Attend, V3, V4};
            let args = AttendArgs {
                qkv,
                out,
                h,
                heads,
                scale,
            };
            // Attention is fp32 on the BF16 path too (its products are ~10% of the time).
            if matches!(path, KernelPath::Avx512Bf16 | KernelPath::Avx512)
                && let Some(simd) = V4::try_new()
            {
                return simd.vectorize(Avx512Attend { simd, args });
            }
            if matches!(
                path,
                KernelPath::Avx512Bf16 | KernelPath::Avx512 | KernelPath::Avx2Fma
            ) && let Some(simd) = V3::try_new()
            {
                return simd.vectorize(Avx2Attend { simd, args });
            }
            let AttendArgs { out, .. } = args;
            return attend(qkv, out, h, heads, scale);
        }
        let _ = path;
        attend(qkv, out, h, heads, scale);
    });
}

/// The head size of [`attend_blocked`]: all-MiniLM-L6-v2's (384 / 12), one register block wide.
#[cfg(target_arch = "x86_64")]
pub(crate) const HEAD: usize = 32;
/// Inputs per call of [`attend_blocked`]'s kernel.
#[cfg(target_arch = "x86_64")]
pub(crate) const KB: usize = 16;

/// The arguments of [`attend_blocked`], for the x86 kernels' `vectorize` calls: one text's
/// `(len, 3h)` rows of the QKV projection and its `(len, h)` rows of output.
#[cfg(target_arch = "x86_64")]
pub(crate) struct AttendArgs<'a> {
    pub(crate) qkv: &'a [f32],
    pub(crate) out: &'a mut [f32],
    pub(crate) h: usize,
    pub(crate) heads: usize,
    pub(crate) scale: f32,
}

#[cfg(target_arch = "x86_64")]
impl AttendArgs<'_> {
    /// [`attend_blocked`] with these arguments and `kernel`.
    #[inline(always)]
    pub(crate) fn run<const ROWS: usize>(self, kernel: impl AttendKernel<ROWS>) {
        attend_blocked::<ROWS>(self.qkv, self.out, self.h, self.heads, self.scale, kernel);
    }
}

/// The register-blocked `acc += a · b` of [`attend_blocked`]: `ROWS` rows of [`KB`] inputs
/// `a`, [`KB`] rows of [`HEAD`] columns `b`. A trait implemented with an `#[inline(always)]`
/// method rather than a closure: a closure was left out of line in the AVX2 instance, compiled
/// without AVX2 and FMA (`scripts/check-kernels.sh` found no FMA there).
#[cfg(target_arch = "x86_64")]
pub(crate) trait AttendKernel<const ROWS: usize>: Copy {
    fn step(self, a: [&[f32; KB]; ROWS], b: [&[f32; HEAD]; KB], acc: &mut [[f32; HEAD]; ROWS]);
}

/// One text's attention with heads of [`HEAD`] = 32, in blocks of `ROWS` queries, through the
/// register-blocked `kernel` ([`AttendKernel`]) of the linear layers' instruction set
/// (`x86.rs`). Per head: the keys are transposed once into panels of 32
/// (the only copy); per block of `ROWS` queries, the scores `Q Kᵀ` (queries straight from the
/// QKV rows) go to a `ROWS x len` buffer that stays in L1, the softmax runs on its rows (vector
/// loops, inlined into the caller's instruction set), and `P V` (values straight from the QKV
/// rows) accumulates in registers. Queries past the text's end repeat its last one (never
/// stored); keys past it are zero and get probability 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn attend_blocked<const ROWS: usize>(
    qkv: &[f32],
    out: &mut [f32],
    h: usize,
    heads: usize,
    scale: f32,
    kernel: impl AttendKernel<ROWS>,
) {
    const ZERO: [f32; HEAD] = [0.0; HEAD];
    let width = 3 * h;
    let len = out.len() / h;
    if len == 0 {
        return;
    }
    let cols = len.next_multiple_of(HEAD);
    let panels = cols / HEAD;
    // Panel p, row d: dimension d of keys 32p .. 32p + 32 (zero past the text's end).
    let mut kt = vec![[0f32; HEAD]; panels * HEAD];
    let mut scores = vec![0f32; ROWS * cols];
    // Row j's HEAD values at `offset`, or zeros past the text's end.
    let head_row = |j: usize, offset: usize| -> &[f32; HEAD] {
        qkv.get(j * width + offset..)
            .and_then(|s| s.first_chunk::<HEAD>())
            .unwrap_or(&ZERO)
    };
    fn split(row: &[f32; HEAD], half: usize) -> &[f32; KB] {
        row[half * KB..].first_chunk::<KB>().unwrap_or(&[0.0; KB])
    }
    for head in 0..heads {
        let (qo, ko, vo) = (head * HEAD, h + head * HEAD, 2 * h + head * HEAD);
        for (j, row) in qkv.chunks_exact(width).enumerate() {
            let panel = &mut kt[(j / HEAD) * HEAD..][..HEAD];
            for (dst, &x) in panel.iter_mut().zip(&row[ko..ko + HEAD]) {
                dst[j % HEAD] = x;
            }
        }
        for i0 in (0..len).step_by(ROWS) {
            let valid = ROWS.min(len - i0);
            let q: [&[f32; HEAD]; ROWS] =
                std::array::from_fn(|r| head_row(i0 + r.min(valid - 1), qo));
            for p in 0..panels {
                let mut acc = [[0f32; HEAD]; ROWS];
                for half in 0..HEAD / KB {
                    let a = std::array::from_fn(|r| split(q[r], half));
                    let b = std::array::from_fn(|d| &kt[p * HEAD + half * KB + d]);
                    kernel.step(a, b, &mut acc);
                }
                for (row, acc_row) in scores.chunks_exact_mut(cols).zip(&acc) {
                    if let Some(dst) = row[p * HEAD..].first_chunk_mut::<HEAD>() {
                        *dst = *acc_row;
                    }
                }
            }
            for row in scores.chunks_exact_mut(cols).take(valid) {
                let (real, padding) = row.split_at_mut(len);
                padding.fill(0.0);
                // Separate passes, each a vector loop (see `attend`).
                let max = lanes(real, f32::NEG_INFINITY, f32::max);
                for s in real.iter_mut() {
                    *s = exp((*s - max) * scale);
                }
                let inv = 1.0 / lanes(real, 0.0, |a, b| a + b);
                for s in real.iter_mut() {
                    *s *= inv;
                }
            }
            let mut acc = [[0f32; HEAD]; ROWS];
            for jb in 0..len.div_ceil(KB) {
                let a = std::array::from_fn(|r| {
                    scores[r * cols + jb * KB..]
                        .first_chunk::<KB>()
                        .unwrap_or(&[0.0; KB])
                });
                let b = std::array::from_fn(|kk| head_row(jb * KB + kk, vo));
                kernel.step(a, b, &mut acc);
            }
            for (r, acc_row) in acc.iter().enumerate().take(valid) {
                if let Some(dst) = out[(i0 + r) * h + head * HEAD..].first_chunk_mut::<HEAD>() {
                    *dst = *acc_row;
                }
            }
        }
    }
}

/// One text: `qkv` is its `(len, 3h)` rows, `out` its `(len, h)` rows. Per head, the two
/// products Q Kᵀ and P V go through [`small_matmul`], on buffers padded with zeros to multiples
/// of its block size; padded rows and columns are ignored.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn attend(qkv: &[f32], out: &mut [f32], h: usize, heads: usize, scale: f32) {
    let width = 3 * h;
    let len = out.len() / h;
    // AArch64 has no "fma" feature to test: its FMA (`fmla`) is part of NEON, so of the target.
    const FMA: bool = cfg!(target_arch = "aarch64")
        || multiversion::target::target_cfg_f!(target_feature = "fma");
    let d = h / heads;
    let (rows, cols) = (len.next_multiple_of(MR), len.next_multiple_of(NR));
    let mut q = vec![0f32; rows * d];
    let mut kt = vec![0f32; d * cols]; // keys transposed, so both products read rows
    let mut v = vec![0f32; cols * d];
    let mut p = vec![0f32; rows * cols];
    let mut ctx = vec![0f32; rows * d];
    for head in 0..heads {
        let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
        for (i, ((row, q_row), v_row)) in qkv
            .chunks_exact(width)
            .zip(q.chunks_exact_mut(d))
            .zip(v.chunks_exact_mut(d))
            .enumerate()
        {
            for (q, &x) in q_row.iter_mut().zip(&row[qo..qo + d]) {
                *q = x * scale;
            }
            v_row.copy_from_slice(&row[vo..vo + d]);
            for (kt_row, &x) in kt.chunks_exact_mut(cols).zip(&row[ko..ko + d]) {
                kt_row[i] = x;
            }
        }
        small_matmul::<FMA>(&q, d, &kt, &mut p, (rows, d, cols));
        for scores in p.chunks_exact_mut(cols).take(len) {
            let (real, padding) = scores.split_at_mut(len);
            padding.fill(0.0);
            // Separate passes, each a vector loop: a running sum next to the exponentials
            // would keep the loop scalar (float additions cannot be reordered).
            let max = lanes(real, f32::NEG_INFINITY, f32::max);
            for s in real.iter_mut() {
                *s = exp(*s - max);
            }
            let inv = 1.0 / lanes(real, 0.0, |a, b| a + b);
            for s in real.iter_mut() {
                *s *= inv;
            }
        }
        small_matmul::<FMA>(&p, cols, &v, &mut ctx, (rows, cols, d));
        for (out_row, ctx_row) in out.chunks_exact_mut(h).zip(ctx.chunks_exact(d)) {
            out_row[head * d..(head + 1) * d].copy_from_slice(ctx_row);
        }
    }
}

/// `c = a · b` for the small products of attention: `a` is `(m, k)` with row stride `lda`,
/// `b` is `(k, n)` and `c` `(m, n)`, both with row stride `n`; `m` and `n` are multiples of
/// [`MR`] and [`NR`]. Each `MR` x `NR` block of `c` is accumulated in registers over `k`, as in
/// [`linear`]'s kernel, without packing: these matrices are a few KiB.
#[inline(always)]
fn small_matmul<const FMA: bool>(
    a: &[f32],
    lda: usize,
    b: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
) {
    for (block, c_rows) in c.chunks_exact_mut(MR * n).take(m / MR).enumerate() {
        let i0 = block * MR;
        let a_rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * lda..][..k]);
        for j0 in (0..n).step_by(NR) {
            let mut acc = [[0f32; NR]; MR];
            for (kk, b_row) in b.chunks_exact(n).take(k).enumerate() {
                let b_block: &[f32; NR] = b_row[j0..].first_chunk().unwrap_or(&[0.0; NR]);
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = a_rows[r][kk];
                    for (acc, &y) in acc_row.iter_mut().zip(b_block) {
                        *acc = if FMA {
                            x.mul_add(y, *acc)
                        } else {
                            x * y + *acc
                        };
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                c_rows[r * n + j0..][..NR].copy_from_slice(acc_row);
            }
        }
    }
}

/// `values` folded with `op` (max, or +) in [`NR`] independent lanes, then across the lanes: a
/// vector loop, where a plain fold is a chain of scalar operations.
#[inline(always)]
fn lanes(values: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let (chunks, rest) = values.as_chunks::<NR>();
    let mut acc = [init; NR];
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = op(*a, v);
        }
    }
    acc.into_iter().chain(rest.iter().copied()).fold(init, op)
}

/// `e^x` for the softmax, whose arguments are `<= 0`: Cephes' `expf` (range reduction by
/// `ln 2`, a degree-5 polynomial, the exponent set in the bits), within 2 ulp of libm's above
/// the clamp at -87 (where both are under 1e-37, nothing next to a sum that is at least 1).
/// Branch-free, so the softmax loop vectorises instead of calling libm once per score.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the coefficients as published; do not round them
fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer (to nearest) in the low bits of the mantissa:
    // `n` as a float and, from the bits, as an integer, with plain vector adds (`round()` and
    // `as i32` are neither: a libm call and a saturating conversion per lane).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest `|a - b|`, NaN if any value of `a` is NaN (a value left unwritten), and
    /// infinite if the lengths differ.
    pub(crate) fn max_diff(a: &[f32], b: &[f64]) -> f64 {
        if a.len() != b.len() {
            return f64::INFINITY;
        }
        a.iter()
            .zip(b)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(
                0.0,
                |worst, d| if d.is_nan() || d > worst { d } else { worst },
            )
    }

    /// A safetensors file of the given tensors (name, dtype, shape, little-endian bytes).
    fn safetensors_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views = tensors.iter().map(|(name, dtype, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap();
            (*name, view)
        });
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn weights_of_every_float_type_are_read_as_f32() {
        let f16: Vec<u8> = [1.5f32, -2.0, 65504.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        // bfloat16 is the top half of an f32: 1.5, -2.0, 3.0 are exact.
        let bf16: Vec<u8> = [1.5f32, -2.0, 3.0]
            .iter()
            .flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let f64s: Vec<u8> = [0.1f64, -1e-3, 7.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f32s: Vec<u8> = [0.25f32, -8.0, 1e-7]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let ints: Vec<u8> = [1i32, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = safetensors_file(&[
            ("h", Dtype::F16, vec![3], f16),
            ("b", Dtype::BF16, vec![3], bf16),
            ("d", Dtype::F64, vec![3], f64s),
            ("s", Dtype::F32, vec![1, 3], f32s),
            ("i", Dtype::I32, vec![3], ints),
        ]);
        let w = Weights {
            file: SafeTensors::deserialize(&file).unwrap(),
            prefix: "",
        };
        assert_eq!(w.vec("h", &[3]).unwrap(), [1.5, -2.0, 65504.0]);
        assert_eq!(w.vec("b", &[3]).unwrap(), [1.5, -2.0, 3.0]);
        assert_eq!(
            w.vec("d", &[3]).unwrap(),
            [0.1f64 as f32, -1e-3f64 as f32, 7.0]
        );
        assert_eq!(w.vec("s", &[1, 3]).unwrap(), [0.25, -8.0, 1e-7]);
        let err = w.vec("i", &[3]).unwrap_err();
        assert!(matches!(err, Error::NotFloat { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "tensor i holds I32 values, not F32, F64, F16 or BF16"
        );
        let err = w.vec("s", &[3]).unwrap_err();
        assert_eq!(err.to_string(), "tensor s has shape [1, 3], expected [3]");
        let err = w.vec("missing", &[3]).unwrap_err();
        assert_eq!(err.to_string(), "no tensor missing");
    }

    #[test]
    fn a_file_that_is_not_safetensors_is_an_error() {
        let cfg: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 4, "hidden_size": 2, "num_hidden_layers": 1,
                "num_attention_heads": 1, "intermediate_size": 4,
                "max_position_embeddings": 8, "type_vocab_size": 1, "layer_norm_eps": 1e-12}"#,
        )
        .unwrap();
        let Err(err) = Bert::load(b"not a safetensors file", &cfg) else {
            panic!("garbage loaded as a model")
        };
        assert!(matches!(err, Error::Safetensors(_)), "{err}");
        let mut file = safetensors_file(&[("x", Dtype::F32, vec![1], vec![0; 4])]);
        file.truncate(file.len() - 1);
        let Err(err) = Bert::load(&file, &cfg) else {
            panic!("a file cut short loaded as a model")
        };
        assert!(matches!(err, Error::Safetensors(_)), "{err}");
    }

    /// Deterministic pseudo-random values in [-1, 1).
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
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

    #[test]
    fn exp_matches_libm_over_the_softmax_range() {
        let mut worst = 0f32;
        for i in 0..=87_000 {
            let x = -(i as f32) / 1000.0;
            let (ours, libm) = (exp(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    /// Textbook attention of one text alone, in f64: what the attention mask of the padded
    /// formulation achieves for each text of a batch. `qkv` is `(len, 3, heads, d)` row-major,
    /// the result `(len, heads * d)` with the heads merged.
    fn reference_attention(qkv: &[f32], len: usize, (heads, d): (usize, usize)) -> Vec<f64> {
        let h = heads * d;
        let at = |token: usize, part: usize, head: usize| {
            let start = token * 3 * h + part * h + head * d;
            qkv[start..start + d].iter().map(|&x| f64::from(x))
        };
        let mut context = vec![0f64; len * h];
        for head in 0..heads {
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| {
                        at(i, 0, head)
                            .zip(at(j, 1, head))
                            .map(|(q, k)| q * k)
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let out = &mut context[i * h + head * d..][..d];
                for (j, p) in e.iter().map(|e| e / sum).enumerate() {
                    for (o, v) in out.iter_mut().zip(at(j, 2, head)) {
                        *o += p * v;
                    }
                }
            }
        }
        context
    }

    #[test]
    fn fused_attention_matches_textbook_attention_on_every_path() {
        // Heads of 16 (the generic `attend`) and of 32 (`HEAD`: `attend_blocked` on x86 SIMD
        // paths); texts shorter than one block of queries, not a multiple of the AVX-512 (12) or
        // AVX2 (6) block height, over one panel of 32 keys and not a multiple of KB (16).
        for d in [16, 32] {
            let heads = 2;
            let h = heads * d;
            let lengths = [3usize, 5, 1, 13, 40, 77];
            let tokens: usize = lengths.iter().sum();
            let qkv = values(tokens * 3 * h, d as u32);
            let mut offsets = vec![0];
            for len in lengths {
                offsets.push(offsets.last().unwrap() + len);
            }
            let reference: Vec<f64> = offsets
                .windows(2)
                .flat_map(|w| {
                    let rows = &qkv[w[0] * 3 * h..w[1] * 3 * h];
                    reference_attention(rows, w[1] - w[0], (heads, d))
                })
                .collect();
            let scale = 1.0 / (d as f32).sqrt();
            for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
                let mut context = vec![f32::NAN; 3];
                attention(path, &qkv, &offsets, (h, heads, scale), &mut context);
                assert_eq!(context.len(), tokens * h, "{path}, heads of {d}");
                let diff = max_diff(&context, &reference);
                assert!(diff < 1e-5, "{path}, heads of {d}: max diff {diff}");
            }
        }
    }
}
