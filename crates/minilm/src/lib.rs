//! The BERT encoder of all-MiniLM-L6-v2: Hugging Face's `BertModel` in eval mode (absolute
//! positions, token type 0, no pooler), written out on candle-core rather than taken from
//! `candle-transformers`, whose ~100 models cost minutes of build for the few hundred lines
//! used here.
//!
//! How it is fast on a CPU:
//! - No padding at all: a batch is the concatenation of its texts' tokens, a `(tokens, hidden)`
//!   matrix, so the four linear layers of each block are four large GEMMs (candle's `matmul`,
//!   i.e. the `gemm` crate, AVX2/FMA, multi-threaded) over real tokens only, whatever the mix
//!   of lengths. They are ~70% of the time.
//! - Attention runs per text in [`Attention`], a fused op over the QKV projection: bias, scale,
//!   Q Kᵀ, softmax and P V for each head (the two products by the register-blocked
//!   [`small_matmul`]), written straight into the merged-heads layout, one text per rayon task.
//!   A text's queries only ever see its own keys, which is exactly what the attention mask
//!   achieves in the padded formulation.
//! - The elementwise work is fused into two row-parallel passes ([`BiasResidualNorm`],
//!   [`BiasGelu`]) instead of candle's separate ops; nothing is allocated per token.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Shape, Tensor, bail};
use rayon::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;

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

/// LayerNorm parameters.
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// `row <- (row - mean) / sqrt(var + eps) * gamma + beta`, as `torch.nn.LayerNorm`.
    #[inline]
    fn apply(&self, row: &mut [f32]) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
            *x = (*x - mean) * inv * g + b;
        }
    }
}

struct Layer {
    /// Fused query/key/value projection, `(hidden, 3 * hidden)` (a transposed view).
    qkv_w: Tensor,
    qkv_b: Vec<f32>,
    attn_out_w: Tensor,
    attn_out_b: Vec<f32>,
    attn_norm: Norm,
    inter_w: Tensor,
    inter_b: Vec<f32>,
    out_w: Tensor,
    out_b: Vec<f32>,
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
    device: Device,
}

/// The tensors of a safetensors file, looked up with or without the `bert.` prefix
/// (sentence-transformers saves them without it, `BertForMaskedLM` checkpoints with it).
struct Weights {
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str, dims: &[usize]) -> candle_core::Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let Some(t) = self.tensors.get(&full) else {
            bail!("no tensor {full}")
        };
        if t.dims() != dims {
            bail!("tensor {full} has shape {:?}, expected {dims:?}", t.dims())
        }
        t.to_dtype(DType::F32)
    }

    fn vec(&self, name: &str, dims: &[usize]) -> candle_core::Result<Vec<f32>> {
        self.get(name, dims)?.flatten_all()?.to_vec1()
    }

    fn norm(&self, name: &str, size: usize, eps: f64) -> candle_core::Result<Norm> {
        Ok(Norm {
            gamma: self.vec(&format!("{name}.weight"), &[size])?,
            beta: self.vec(&format!("{name}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    /// A linear layer's weight as an `(input, output)` view, and its bias.
    fn linear(
        &self,
        name: &str,
        input: usize,
        output: usize,
    ) -> candle_core::Result<(Tensor, Vec<f32>)> {
        let w = self.get(&format!("{name}.weight"), &[output, input])?;
        Ok((w.t()?, self.vec(&format!("{name}.bias"), &[output])?))
    }
}

impl Bert {
    /// Builds the encoder from the bytes of `model.safetensors`.
    pub fn load(safetensors: &[u8], cfg: &BertConfig) -> candle_core::Result<Self> {
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(safetensors, &device)?;
        let prefix = if tensors.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let w = Weights { tensors, prefix };
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
            let (attn_out_w, attn_out_b) =
                w.linear(&format!("{l}.attention.output.dense"), h, h)?;
            let (inter_w, inter_b) =
                w.linear(&format!("{l}.intermediate.dense"), h, cfg.intermediate_size)?;
            let (out_w, out_b) =
                w.linear(&format!("{l}.output.dense"), cfg.intermediate_size, h)?;
            layers.push(Layer {
                qkv_w: Tensor::cat(&[&q_w, &k_w, &v_w], 1)?,
                qkv_b: [q_b, k_b, v_b].concat(),
                attn_out_w,
                attn_out_b,
                attn_norm: w.norm(&format!("{l}.attention.output.LayerNorm"), h, eps)?,
                inter_w,
                inter_b,
                out_w,
                out_b,
                out_norm: w.norm(&format!("{l}.output.LayerNorm"), h, eps)?,
            });
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
            device,
        })
    }

    /// The last hidden state, `(tokens, hidden)` row-major, of a batch of texts given as their
    /// concatenated token ids and the number of tokens of each.
    pub fn forward(&self, ids: &[u32], lengths: &[usize]) -> candle_core::Result<Vec<f32>> {
        let h = self.hidden;
        let tokens = ids.len();
        if lengths.iter().sum::<usize>() != tokens {
            bail!("lengths do not add up to the {tokens} token ids")
        }
        if let Some(&len) = lengths.iter().find(|&&l| l > self.max_positions) {
            bail!(
                "a text of {len} tokens is longer than the model's {}",
                self.max_positions
            )
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            bail!("token id {id} is outside the vocabulary of {}", self.vocab)
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
        let mut x = Tensor::from_vec(x, (tokens, h), &self.device)?;

        let head_dim = h / self.heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        for layer in &self.layers {
            let context = x.matmul(&layer.qkv_w)?.apply_op1_no_bwd(&Attention {
                bias: &layer.qkv_b,
                offsets: &offsets,
                heads: self.heads,
                scale,
            })?;
            let attn = context.matmul(&layer.attn_out_w)?.apply_op2_no_bwd(
                &x,
                &BiasResidualNorm {
                    bias: &layer.attn_out_b,
                    norm: &layer.attn_norm,
                },
            )?;
            let inter = attn.matmul(&layer.inter_w)?.apply_op1_no_bwd(&BiasGelu {
                bias: &layer.inter_b,
            })?;
            x = inter.matmul(&layer.out_w)?.apply_op2_no_bwd(
                &attn,
                &BiasResidualNorm {
                    bias: &layer.out_b,
                    norm: &layer.out_norm,
                },
            )?;
        }
        x.flatten_all()?.to_vec1()
    }
}

/// The f32 data of a contiguous CPU tensor.
fn contiguous_f32<'s>(
    storage: &'s CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'s [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op} needs a contiguous input")
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// Rows handed to one rayon task by the row-parallel passes.
const ROWS_PER_TASK: usize = 16;

/// Self-attention of each text over its own tokens. Input: the QKV projection without bias,
/// `(tokens, 3 * hidden)`; output: the attention context with heads merged, `(tokens, hidden)`.
struct Attention<'a> {
    bias: &'a [f32],
    /// Start row of each text, and the total at the end.
    offsets: &'a [usize],
    heads: usize,
    scale: f32,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "bert-attention"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let (tokens, width) = layout.shape().dims2()?;
        let h = width / 3;
        if width != 3 * h || self.bias.len() != width || h % self.heads != 0 {
            bail!("bert-attention: unexpected input width {width}")
        }
        if self.offsets.last() != Some(&tokens) {
            bail!("bert-attention: offsets do not cover the {tokens} tokens")
        }
        let mut output = vec![0f32; tokens * h];
        // One disjoint slice of the output per text.
        let mut texts = Vec::with_capacity(self.offsets.len());
        let mut rest = output.as_mut_slice();
        for pair in self.offsets.windows(2) {
            let (text, tail) = rest.split_at_mut((pair[1] - pair[0]) * h);
            texts.push((pair[0], text));
            rest = tail;
        }
        texts.into_par_iter().for_each(|(start, out)| {
            let len = out.len() / h;
            self.text(&input[start * width..(start + len) * width], out, len, h);
        });
        Ok((CpuStorage::F32(output), Shape::from((tokens, h))))
    }
}

impl Attention<'_> {
    /// One text: `qkv` is its `(len, 3h)` rows, `out` its `(len, h)` rows. Per head, the two
    /// products Q Kᵀ and P V go through [`small_matmul`], on buffers padded with zeros to
    /// multiples of its block size; padded rows and columns are ignored.
    fn text(&self, qkv: &[f32], out: &mut [f32], len: usize, h: usize) {
        let d = h / self.heads;
        let width = 3 * h;
        let (rows, cols) = (len.next_multiple_of(MR), len.next_multiple_of(NR));
        let mut q = vec![0f32; rows * d];
        let mut kt = vec![0f32; d * cols]; // keys transposed, so both products read rows
        let mut v = vec![0f32; cols * d];
        let mut p = vec![0f32; rows * cols];
        let mut ctx = vec![0f32; rows * d];
        for head in 0..self.heads {
            let (qo, ko, vo) = (head * d, h + head * d, 2 * h + head * d);
            let (q_bias, k_bias, v_bias) = (
                &self.bias[qo..qo + d],
                &self.bias[ko..ko + d],
                &self.bias[vo..vo + d],
            );
            for (i, ((row, q_row), v_row)) in qkv
                .chunks_exact(width)
                .zip(q.chunks_exact_mut(d))
                .zip(v.chunks_exact_mut(d))
                .enumerate()
            {
                for ((q, &x), &b) in q_row.iter_mut().zip(&row[qo..qo + d]).zip(q_bias) {
                    *q = (x + b) * self.scale;
                }
                for ((v, &x), &b) in v_row.iter_mut().zip(&row[vo..vo + d]).zip(v_bias) {
                    *v = x + b;
                }
                for ((kt_row, &x), &b) in
                    kt.chunks_exact_mut(cols).zip(&row[ko..ko + d]).zip(k_bias)
                {
                    kt_row[i] = x + b;
                }
            }
            small_matmul(&q, d, &kt, &mut p, rows, d, cols);
            for scores in p.chunks_exact_mut(cols).take(len) {
                let (real, padding) = scores.split_at_mut(len);
                padding.fill(0.0);
                let max = real.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in real.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                for s in real.iter_mut() {
                    *s *= inv;
                }
            }
            small_matmul(&p, cols, &v, &mut ctx, rows, cols, d);
            for (out_row, ctx_row) in out.chunks_exact_mut(h).zip(ctx.chunks_exact(d)) {
                out_row[head * d..(head + 1) * d].copy_from_slice(ctx_row);
            }
        }
    }
}

/// Rows and columns of the register block of [`small_matmul`].
const MR: usize = 4;
const NR: usize = 8;

/// `c = a · b` for the small products of attention: `a` is `(m, k)` with row stride `lda`,
/// `b` is `(k, n)` and `c` `(m, n)`, both with row stride `n`; `m` and `n` are multiples of
/// [`MR`] and [`NR`]. Each `MR` x `NR` block of `c` is accumulated in registers over `k` (the
/// loop vectorises on the baseline x86-64 target): much faster than row-at-a-time loops, and
/// without a GEMM call's setup for such tiny matrices.
fn small_matmul(a: &[f32], lda: usize, b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    for (block, c_rows) in c.chunks_exact_mut(MR * n).take(m / MR).enumerate() {
        let i0 = block * MR;
        let a_rows: [&[f32]; MR] = std::array::from_fn(|r| &a[(i0 + r) * lda..][..k]);
        for j0 in (0..n).step_by(NR) {
            let mut acc = [[0f32; NR]; MR];
            for (kk, b_row) in b.chunks_exact(n).take(k).enumerate() {
                let b_block = &b_row[j0..j0 + NR];
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = a_rows[r][kk];
                    for (acc, &y) in acc_row.iter_mut().zip(b_block) {
                        *acc += x * y;
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                c_rows[r * n + j0..r * n + j0 + NR].copy_from_slice(acc_row);
            }
        }
    }
}

/// `LayerNorm(input + bias + residual)`: the end of both halves of a BERT block.
struct BiasResidualNorm<'a> {
    bias: &'a [f32],
    norm: &'a Norm,
}

impl CustomOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "bias-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(s1, l1, self.name())?;
        let residual = contiguous_f32(s2, l2, self.name())?;
        let width = self.bias.len();
        if l1.shape() != l2.shape() || l1.dims().last() != Some(&width) {
            bail!(
                "{}: shapes {:?} and {:?}",
                self.name(),
                l1.dims(),
                l2.dims()
            )
        }
        let mut output = vec![0f32; input.len()];
        let chunk = width * ROWS_PER_TASK;
        output
            .par_chunks_mut(chunk)
            .zip(input.par_chunks(chunk).zip(residual.par_chunks(chunk)))
            .for_each(|(out, (inp, res))| {
                for ((o, i), r) in out
                    .chunks_exact_mut(width)
                    .zip(inp.chunks_exact(width))
                    .zip(res.chunks_exact(width))
                {
                    for (((o, &i), &r), &b) in o.iter_mut().zip(i).zip(r).zip(self.bias) {
                        *o = i + b + r;
                    }
                    self.norm.apply(o);
                }
            });
        Ok((CpuStorage::F32(output), l1.shape().clone()))
    }
}

/// `gelu(input + bias)` with the exact (erf) GELU of BERT's `hidden_act: gelu`.
struct BiasGelu<'a> {
    bias: &'a [f32],
}

impl CustomOp1 for BiasGelu<'_> {
    fn name(&self) -> &'static str {
        "bias-gelu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, self.name())?;
        let width = self.bias.len();
        if layout.dims().last() != Some(&width) {
            bail!(
                "bias-gelu: input {:?} does not end in {width}",
                layout.dims()
            )
        }
        let mut output = vec![0f32; input.len()];
        let chunk = width * ROWS_PER_TASK;
        output
            .par_chunks_mut(chunk)
            .zip(input.par_chunks(chunk))
            .for_each(|(out, inp)| {
                for (out_row, in_row) in out.chunks_exact_mut(width).zip(inp.chunks_exact(width)) {
                    for ((o, &x), &b) in out_row.iter_mut().zip(in_row).zip(self.bias) {
                        let x = x + b;
                        *o = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                    }
                }
            });
        Ok((CpuStorage::F32(output), layout.shape().clone()))
    }
}

/// The error function, to within 1e-6 of libm's `erff` (see the test): the rational
/// approximation Eigen and XLA use for f32 `erf`. Plain multiply-adds, no branches, so the loop
/// above vectorises; `f32::mul_add` would become a libm call on the baseline x86-64 target.
#[inline]
#[allow(clippy::excessive_precision)] // the coefficients as published; do not round them
fn erf(x: f32) -> f32 {
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

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let diff = (erf(x) - candle_core::cpu::erf::erf_f32(x)).abs();
            worst = worst.max(diff);
        }
        assert!(worst < 1e-6, "max |erf - libm erff| = {worst}");
    }

    #[test]
    fn bias_gelu_matches_candle_gelu_erf() {
        let device = Device::Cpu;
        let x = Tensor::arange(-40f32, 40f32, &device)
            .and_then(|t| t.affine(0.1, 0.0))
            .and_then(|t| t.reshape((10, 8)))
            .unwrap();
        let bias = [0.5f32, -0.5, 0.0, 1.0, -1.0, 0.25, -0.25, 2.0];
        let ours = x.apply_op1_no_bwd(&BiasGelu { bias: &bias }).unwrap();
        let theirs = Tensor::new(&bias, &device)
            .and_then(|b| x.broadcast_add(&b))
            .and_then(|t| t.gelu_erf())
            .unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-6);
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .unwrap()
    }

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

    #[test]
    fn fused_attention_matches_padded_masked_attention() {
        // Two texts of 3 and 5 tokens, 2 heads of 8: compare with the textbook computation on
        // a padded batch with an additive mask, done with plain candle ops.
        let device = Device::Cpu;
        let (heads, d) = (2, 8);
        let h = heads * d;
        let lengths = [3usize, 5];
        let tokens: usize = lengths.iter().sum();
        let qkv = values(tokens * 3 * h, 1);
        let bias = values(3 * h, 2);
        let scale = 1.0 / (d as f32).sqrt();
        let ours = Tensor::from_vec(qkv.clone(), (tokens, 3 * h), &device)
            .and_then(|t| {
                t.apply_op1_no_bwd(&Attention {
                    bias: &bias,
                    offsets: &[0, 3, 8],
                    heads,
                    scale,
                })
            })
            .unwrap();

        let seq = 5;
        let mut padded = vec![0f32; 2 * seq * 3 * h];
        padded[..3 * 3 * h].copy_from_slice(&qkv[..3 * 3 * h]);
        padded[seq * 3 * h..].copy_from_slice(&qkv[3 * 3 * h..]);
        let mut mask = vec![0f32; 2 * seq];
        mask[3..seq].fill(f32::MIN);
        let reference = (|| -> candle_core::Result<Tensor> {
            let x = Tensor::from_vec(padded, (2, seq, 3 * h), &device)?
                .broadcast_add(&Tensor::from_vec(bias.clone(), 3 * h, &device)?)?
                .reshape((2, seq, 3, heads, d))?;
            let part = |i: usize| x.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let scores = (q.matmul(&k.t()?)? * f64::from(scale))?
                .broadcast_add(&Tensor::from_vec(mask, (2, 1, 1, seq), &device)?)?;
            let max = scores.max_keepdim(3)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(3)?)?;
            let ctx = p.matmul(&v)?.transpose(1, 2)?.reshape((2 * seq, h))?;
            // drop the padding rows of text 0
            Tensor::cat(&[ctx.narrow(0, 0, 3)?, ctx.narrow(0, seq, 5)?], 0)
        })()
        .unwrap();
        assert!(max_diff(&ours, &reference) < 1e-5);
    }

    #[test]
    fn bias_residual_norm_matches_candle() {
        let device = Device::Cpu;
        let (rows, width) = (20, 6);
        let x = Tensor::from_vec(values(rows * width, 3), (rows, width), &device).unwrap();
        let r = Tensor::from_vec(values(rows * width, 4), (rows, width), &device).unwrap();
        let norm = Norm {
            gamma: values(width, 5),
            beta: values(width, 6),
            eps: 1e-12,
        };
        let bias = values(width, 7);
        let ours = x
            .apply_op2_no_bwd(
                &r,
                &BiasResidualNorm {
                    bias: &bias,
                    norm: &norm,
                },
            )
            .unwrap();
        let reference = (|| -> candle_core::Result<Tensor> {
            let t = ((&x + &r)?.broadcast_add(&Tensor::new(bias.as_slice(), &device)?))?;
            let mean = t.mean_keepdim(1)?;
            let c = t.broadcast_sub(&mean)?;
            let var = c.sqr()?.mean_keepdim(1)?;
            c.broadcast_div(&(var + 1e-12)?.sqrt()?)?
                .broadcast_mul(&Tensor::new(norm.gamma.as_slice(), &device)?)?
                .broadcast_add(&Tensor::new(norm.beta.as_slice(), &device)?)
        })()
        .unwrap();
        assert!(max_diff(&ours, &reference) < 1e-5);
    }
}
