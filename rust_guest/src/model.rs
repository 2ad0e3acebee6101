//! The llama2.c transformer for single-token decoding, written as run.c's `forward`.
//!
//! The weights stay candle tensors (loaded by `checkpoint`); decoding borrows their contiguous
//! f32 storage and runs our own kernels (`matvec`) on it, with the activations and the KV cache
//! in preallocated buffers (`KvCache`, run.c's `RunState`): no allocation, no tensor op and no
//! thread pool per step. Why not candle's ops: one token at a time every op is tiny, and candle's
//! per-op costs (allocating outputs, dispatch, gemm's setup, rayon) plus gemm's 4-wide simd128
//! kernels made the wasm guest 3x slower than native (see docs/toolchain.md, Performance).
//! Every reduction has a fixed order, so wasm and native produce bit-identical logits.

use std::collections::HashMap;

use candle_core::{DType, Storage, Tensor};

use crate::checkpoint::CheckpointConfig;
use crate::error::{EngineError, Result};
use crate::matvec::{dot, matvec};
use crate::sampler::softmax;

/// run.c's rmsnorm epsilon.
const NORM_EPS: f32 = 1e-5;

struct Layer {
    rms_att: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    rms_ffn: Tensor,
    w1: Tensor,
    w2: Tensor,
    w3: Tensor,
}

/// The weights, ready for decoding.
pub struct Transformer {
    cfg: CheckpointConfig,
    embedding: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    classifier: Tensor,
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
}

fn take(map: &mut HashMap<String, Tensor>, name: &str, shape: &[usize]) -> Result<Tensor> {
    let t = map
        .remove(name)
        .ok_or_else(|| EngineError::Internal(format!("checkpoint tensor {name} is missing")))?;
    if t.dims() != shape || t.dtype() != DType::F32 || !t.is_contiguous() {
        return Err(EngineError::Internal(format!(
            "checkpoint tensor {name} is {:?} {:?}, expected contiguous f32 {shape:?}",
            t.dtype(),
            t.dims()
        )));
    }
    Ok(t)
}

/// Runs `f` on the tensor's contiguous f32 storage (checked in `Transformer::new`).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| EngineError::Internal("weight tensor is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[start..end])),
        _ => Err(EngineError::Internal(
            "weight tensor is not on the CPU".into(),
        )),
    }
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

/// `out = W x` with `W` a candle tensor.
fn linear(out: &mut [f32], w: &Tensor, x: &[f32]) -> Result<()> {
    with_f32(w, |w| matvec(out, w, x))
}

impl Transformer {
    /// Builds the model from `checkpoint::load_tensors`' named tensors.
    pub fn new(cfg: CheckpointConfig, mut tensors: HashMap<String, Tensor>) -> Result<Self> {
        let (dim, hidden, kv_dim) = (cfg.dim, cfg.hidden_dim, cfg.n_kv_heads * cfg.head_size());
        if cfg.n_kv_heads == 0 || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
            return Err(EngineError::Internal(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                cfg.n_heads, cfg.n_kv_heads
            )));
        }
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let mut get = |name: &str, shape: &[usize]| {
                take(
                    &mut tensors,
                    &format!("model.layers.{i}.{name}.weight"),
                    shape,
                )
            };
            layers.push(Layer {
                rms_att: get("input_layernorm", &[dim])?,
                wq: get("self_attn.q_proj", &[dim, dim])?,
                wk: get("self_attn.k_proj", &[kv_dim, dim])?,
                wv: get("self_attn.v_proj", &[kv_dim, dim])?,
                wo: get("self_attn.o_proj", &[dim, dim])?,
                rms_ffn: get("post_attention_layernorm", &[dim])?,
                w1: get("mlp.gate_proj", &[hidden, dim])?,
                w2: get("mlp.down_proj", &[dim, hidden])?,
                w3: get("mlp.up_proj", &[hidden, dim])?,
            });
        }
        let half = cfg.head_size() / 2;
        let table = |t: Tensor| t.flatten_all()?.to_vec1::<f32>();
        let cos = table(take(&mut tensors, "freq_cis_real", &[cfg.seq_len, half])?)?;
        let sin = table(take(&mut tensors, "freq_cis_imag", &[cfg.seq_len, half])?)?;
        let vocab = cfg.vocab_size;
        Ok(Self {
            embedding: take(&mut tensors, "model.embed_tokens.weight", &[vocab, dim])?,
            norm: take(&mut tensors, "model.norm.weight", &[dim])?,
            classifier: take(&mut tensors, "lm_head.weight", &[vocab, dim])?,
            layers,
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
        with_f32(&self.embedding, |e| {
            s.x.copy_from_slice(&e[token as usize * dim..][..dim])
        })?;
        for (l, layer) in self.layers.iter().enumerate() {
            rmsnorm(&mut s.xb, &s.x, &layer.rms_att)?;
            // This position's key and value go straight into the cache.
            let layer_off = l * c.seq_len * kv_dim;
            let at = layer_off + pos * kv_dim;
            linear(&mut s.q, &layer.wq, &s.xb)?;
            linear(&mut s.keys[at..at + kv_dim], &layer.wk, &s.xb)?;
            linear(&mut s.values[at..at + kv_dim], &layer.wv, &s.xb)?;
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
                for (a, k) in att.iter_mut().zip(keys.chunks_exact(kv_dim)) {
                    *a = dot(q, &k[kv..kv + hd]) * scale;
                }
                softmax(att);
                out.fill(0.0);
                for (a, v) in att.iter().zip(values.chunks_exact(kv_dim)) {
                    for (o, v) in out.iter_mut().zip(&v[kv..kv + hd]) {
                        *o += a * v;
                    }
                }
            }
            linear(&mut s.xb2, &layer.wo, &s.xb)?;
            for (x, d) in s.x.iter_mut().zip(&s.xb2) {
                *x += d;
            }

            rmsnorm(&mut s.xb, &s.x, &layer.rms_ffn)?;
            linear(&mut s.hb, &layer.w1, &s.xb)?;
            linear(&mut s.hb2, &layer.w3, &s.xb)?;
            for (g, u) in s.hb.iter_mut().zip(&s.hb2) {
                // SiLU(gate) * up, as run.c; libm's expf gives the same bits on every target.
                *g = *g * (1.0 / (1.0 + libm::expf(-*g))) * u;
            }
            linear(&mut s.xb2, &layer.w2, &s.hb)?;
            for (x, d) in s.x.iter_mut().zip(&s.xb2) {
                *x += d;
            }
        }
        rmsnorm(&mut s.xb, &s.x, &self.norm)?;
        linear(&mut s.logits, &self.classifier, &s.xb)?;
        Ok(&mut s.logits)
    }
}
