//! The llama2.c transformer for single-token decoding, written as run.c's `forward`.
//!
//! The weights stay candle tensors (loaded by `checkpoint`); decoding borrows their contiguous
//! f32 storage and runs our own kernels (`matvec`) on it, with the activations and the KV cache
//! in preallocated buffers (`KvCache`, run.c's `RunState`): no allocation, no tensor op and no
//! thread pool per step. Why not candle's ops: one token at a time every op is tiny, and candle's
//! per-op costs (allocating outputs, dispatch, gemm's setup, rayon) plus gemm's 4-wide simd128
//! kernels made the wasm guest 3x slower than native (see docs/toolchain.md, Performance).
//! Every reduction has a fixed order, so wasm and native produce bit-identical logits.
//!
//! An int8 (version 2) checkpoint runs runq.c's forward pass: the same steps, but every matrix
//! is Q8_0 (`q8`), each matrix-vector product's input is quantized first (runq.c's
//! `quantize`), and the embedding row is dequantized on the fly.

use candle_core::Tensor;

use crate::checkpoint::CheckpointConfig;
use crate::error::{EngineError, Result};
use crate::matvec::{dot, matvec};
use crate::q8::{matvec_q8, quantize_activations};
use crate::sampler::softmax;
use crate::weights::{with_f32, with_i8, Matrix, TransformerWeights};

/// run.c's rmsnorm epsilon.
const NORM_EPS: f32 = 1e-5;

/// The weights, ready for decoding.
pub struct Transformer {
    cfg: CheckpointConfig,
    weights: TransformerWeights,
    /// RoPE tables, `seq_len x head_size/2`, row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// One session's state (run.c's `RunState`): the KV cache, per layer `seq_len x kv_dim` keys and
/// values, and the activation buffers reused by every step.
#[derive(Clone)]
pub struct KvCache {
    keys: Vec<f32>,
    values: Vec<f32>,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    att: Vec<f32>,
    logits: Vec<f32>,
    /// The quantized input of the next int8 matrix product (runq.c's `xq`/`hq`; empty for f32).
    xq: Vec<i16>,
    xs: Vec<f32>,
}

/// run.c's RoPE tables: `freq = 1 / 10000^(i / head_size)` for even `i`, then cos/sin of
/// `pos * freq`. Computed with the pure-Rust `libm` so every target gets the same bits.
fn rope_tables(cfg: &CheckpointConfig) -> (Vec<f32>, Vec<f32>) {
    let head = cfg.head_size();
    let half = head / 2;
    let mut cos = Vec::with_capacity(cfg.seq_len * half);
    let mut sin = Vec::with_capacity(cfg.seq_len * half);
    for pos in 0..cfg.seq_len {
        for pair in 0..half {
            let head_dim = (2 * pair) as f32;
            let freq = 1.0f32 / libm::powf(10000.0f32, head_dim / head as f32);
            let val = pos as f32 * freq;
            cos.push(libm::cosf(val));
            sin.push(libm::sinf(val));
        }
    }
    (cos, sin)
}

/// run.c's `rmsnorm`: `out = weight * x / sqrt(mean(x^2) + eps)`, summed in order.
fn rmsnorm(out: &mut [f32], x: &[f32], weight: &Tensor) -> Result<()> {
    let ss = x.iter().fold(0.0f32, |s, v| s + v * v) / x.len() as f32 + NORM_EPS;
    let inv = 1.0 / ss.sqrt();
    with_f32(weight, |w| {
        for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
            *o = w * (inv * x);
        }
    })
}

/// Prepares `x` as the input of the next matrix products: for an int8 model, runq.c's
/// quantization into `xq`/`xs` (resized to `x`'s length); nothing for f32.
fn prepare(group_size: Option<usize>, x: &[f32], xq: &mut Vec<i16>, xs: &mut Vec<f32>) {
    if let Some(gs) = group_size {
        xq.resize(x.len(), 0);
        xs.resize(x.len() / gs, 0.0);
        quantize_activations(xq, xs, x, gs);
    }
}

/// `out = W x`; for an int8 `W`, `x` as [`prepare`] quantized it into `xq`/`xs`.
fn linear(out: &mut [f32], w: &Matrix, x: &[f32], xq: &[i16], xs: &[f32]) -> Result<()> {
    match w {
        Matrix::F32(w) => with_f32(w, |w| matvec(out, w, x)),
        Matrix::Q8 { values, scales } => with_i8(values, |q| {
            with_f32(scales, |s| {
                let gs = xq.len() / xs.len().max(1);
                matvec_q8(out, q, s, xq, xs, gs)
            })
        })?,
    }
}

impl Transformer {
    /// Builds the model from `checkpoint`'s weights.
    pub fn new(cfg: CheckpointConfig, weights: TransformerWeights) -> Result<Self> {
        let (dim, hidden) = (cfg.dim, cfg.hidden_dim);
        if cfg.n_kv_heads == 0 || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
            return Err(EngineError::Internal(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                cfg.n_heads, cfg.n_kv_heads
            )));
        }
        if let Some(gs) = cfg.group_size {
            if gs == 0 || !dim.is_multiple_of(gs) || !hidden.is_multiple_of(gs) {
                return Err(EngineError::Internal(format!(
                    "group size {gs} does not divide dim {dim} and hidden_dim {hidden}"
                )));
            }
        }
        weights.check(&cfg)?;
        let (cos, sin) = rope_tables(&cfg);
        Ok(Self {
            weights,
            cos,
            sin,
            cfg,
        })
    }

    /// A fresh state for one session (`n_layers x 2 x seq_len x kv_dim` floats of cache).
    pub fn new_cache(&self) -> Result<KvCache> {
        let c = &self.cfg;
        let cache = c.n_layers * c.seq_len * c.n_kv_heads * c.head_size();
        Ok(KvCache {
            keys: vec![0.0; cache],
            values: vec![0.0; cache],
            x: vec![0.0; c.dim],
            xb: vec![0.0; c.dim],
            xb2: vec![0.0; c.dim],
            hb: vec![0.0; c.hidden_dim],
            hb2: vec![0.0; c.hidden_dim],
            q: vec![0.0; c.dim],
            att: vec![0.0; c.seq_len],
            logits: vec![0.0; c.vocab_size],
            xq: Vec::new(),
            xs: Vec::new(),
        })
    }

    /// run.c's RoPE on one position: pairs (2i, 2i+1) of every head rotated by the table row.
    fn rope(&self, values: &mut [f32], pos: usize) {
        let half = self.cfg.head_size() / 2;
        let (cos, sin) = (
            &self.cos[pos * half..][..half],
            &self.sin[pos * half..][..half],
        );
        for head in values.chunks_exact_mut(2 * half) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (v0, v1) = (pair[0], pair[1]);
                pair[0] = v0 * cos[i] - v1 * sin[i];
                pair[1] = v0 * sin[i] + v1 * cos[i];
            }
        }
    }

    /// Logits for `token` at `pos` (`pos < seq_len`, `token < vocab_size`), updating the cache.
    /// The logits live in the cache's buffer until the next step.
    pub fn forward<'s>(&self, token: u32, pos: usize, s: &'s mut KvCache) -> Result<&'s mut [f32]> {
        let c = &self.cfg;
        let (dim, hd) = (c.dim, c.head_size());
        let kv_dim = c.n_kv_heads * hd;
        let n_rep = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        if pos >= c.seq_len || token as usize >= c.vocab_size {
            return Err(EngineError::Internal(format!(
                "forward at position {pos} with token {token} is out of range"
            )));
        }
        let gs = c.group_size;
        let row = token as usize * dim;
        match &self.weights.embedding {
            Matrix::F32(e) => with_f32(e, |e| s.x.copy_from_slice(&e[row..][..dim]))?,
            // runq.c's dequantize, for one row: q * scale.
            Matrix::Q8 { values, scales } => with_i8(values, |q| {
                with_f32(scales, |sc| {
                    let group = gs.unwrap_or(1);
                    for (i, x) in s.x.iter_mut().enumerate() {
                        *x = q[row + i] as f32 * sc[(row + i) / group];
                    }
                })
            })??,
        }
        for (l, layer) in self.weights.layers.iter().enumerate() {
            rmsnorm(&mut s.xb, &s.x, &layer.rms_att)?;
            // This position's key and value go straight into the cache.
            let layer_off = l * c.seq_len * kv_dim;
            let at = layer_off + pos * kv_dim;
            prepare(gs, &s.xb, &mut s.xq, &mut s.xs);
            linear(&mut s.q, &layer.wq, &s.xb, &s.xq, &s.xs)?;
            linear(&mut s.keys[at..at + kv_dim], &layer.wk, &s.xb, &s.xq, &s.xs)?;
            linear(
                &mut s.values[at..at + kv_dim],
                &layer.wv,
                &s.xb,
                &s.xq,
                &s.xs,
            )?;
            self.rope(&mut s.q, pos);
            self.rope(&mut s.keys[at..at + kv_dim], pos);

            let keys = &s.keys[layer_off..at + kv_dim];
            let values = &s.values[layer_off..at + kv_dim];
            let att = &mut s.att[..=pos];
            for (h, (q, out)) in
                s.q.chunks_exact(hd)
                    .zip(s.xb.chunks_exact_mut(hd))
                    .enumerate()
            {
                // Query head h reads kv head h / n_rep (run.c).
                let kv = (h / n_rep) * hd;
                if gs.is_none() {
                    for (a, k) in att.iter_mut().zip(keys.chunks_exact(kv_dim)) {
                        *a = dot(q, &k[kv..kv + hd]) * scale;
                    }
                } else {
                    // runq.c's score exactly: a sequential sum divided by sqrt(head_size). The
                    // int8 path re-quantizes every activation, so a last-bit difference here
                    // can flip a rounding and, later, a greedy token (seen on the 15M shape).
                    // Four positions at a time: four independent sequential sums (same bits
                    // as one at a time), so the additions' latency overlaps.
                    let root = (hd as f32).sqrt();
                    let mut scores = att.chunks_exact_mut(4);
                    let mut rows = keys.chunks_exact(4 * kv_dim);
                    for (a4, k4) in (&mut scores).zip(&mut rows) {
                        let ks: [&[f32]; 4] = std::array::from_fn(|j| &k4[j * kv_dim + kv..][..hd]);
                        let mut sums = [0.0f32; 4];
                        for (i, q) in q.iter().enumerate() {
                            for (sum, k) in sums.iter_mut().zip(&ks) {
                                *sum += q * k[i];
                            }
                        }
                        for (a, sum) in a4.iter_mut().zip(sums) {
                            *a = sum / root;
                        }
                    }
                    let rest = scores.into_remainder();
                    for (a, k) in rest.iter_mut().zip(rows.remainder().chunks_exact(kv_dim)) {
                        let k = &k[kv..kv + hd];
                        *a = q.iter().zip(k).fold(0.0f32, |s, (q, k)| s + q * k) / root;
                    }
                }
                softmax(att);
                out.fill(0.0);
                for (a, v) in att.iter().zip(values.chunks_exact(kv_dim)) {
                    for (o, v) in out.iter_mut().zip(&v[kv..kv + hd]) {
                        *o += a * v;
                    }
                }
            }
            prepare(gs, &s.xb, &mut s.xq, &mut s.xs);
            linear(&mut s.xb2, &layer.wo, &s.xb, &s.xq, &s.xs)?;
            for (x, d) in s.x.iter_mut().zip(&s.xb2) {
                *x += d;
            }

            rmsnorm(&mut s.xb, &s.x, &layer.rms_ffn)?;
            prepare(gs, &s.xb, &mut s.xq, &mut s.xs);
            linear(&mut s.hb, &layer.w1, &s.xb, &s.xq, &s.xs)?;
            linear(&mut s.hb2, &layer.w3, &s.xb, &s.xq, &s.xs)?;
            for (g, u) in s.hb.iter_mut().zip(&s.hb2) {
                // SiLU(gate) * up, as run.c; libm's expf gives the same bits on every target.
                *g = *g * (1.0 / (1.0 + libm::expf(-*g))) * u;
            }
            prepare(gs, &s.hb, &mut s.xq, &mut s.xs);
            linear(&mut s.xb2, &layer.w2, &s.hb, &s.xq, &s.xs)?;
            for (x, d) in s.x.iter_mut().zip(&s.xb2) {
                *x += d;
            }
        }
        rmsnorm(&mut s.xb, &s.x, &self.weights.norm)?;
        prepare(gs, &s.xb, &mut s.xq, &mut s.xs);
        linear(&mut s.logits, &self.weights.classifier, &s.xb, &s.xq, &s.xs)?;
        Ok(&mut s.logits)
    }
}
