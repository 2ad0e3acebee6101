//! The llama2.c transformer for single-token decoding, on candle tensors and kernels.
//!
//! Same math as `candle_transformers::models::llama2_c::Llama` (and run.c), but built for one
//! token at a time: the KV cache is preallocated per layer and written in place, grouped-query
//! attention reshapes the queries instead of copying keys/values `n_heads / n_kv_heads` times, and
//! nothing is concatenated or made contiguous per step. The attention softmax is run.c's
//! (sequential, `libm::expf`): a few hundred values per head are not worth a thread pool. candle's model copies the whole cache
//! several times per layer per token (cat, repeat_kv, transposes): O(pos) extra traffic per step.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module, RmsNorm};

use crate::checkpoint::CheckpointConfig;
use crate::error::{EngineError, Result};
use crate::sampler::softmax;

/// run.c's rmsnorm epsilon.
const NORM_EPS: f64 = 1e-5;

struct Layer {
    rms_att: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    rms_ffn: RmsNorm,
    w1: Linear,
    w2: Linear,
    w3: Linear,
}

/// The weights, ready for decoding.
pub struct Transformer {
    cfg: CheckpointConfig,
    embedding: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    classifier: Linear,
    /// RoPE tables, `seq_len x head_size/2`, row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// A preallocated KV cache: per layer, keys and values of shape `(n_kv_heads, seq_len, head_size)`.
#[derive(Clone)]
pub struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

fn take(map: &mut HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    map.remove(name)
        .ok_or_else(|| EngineError::Internal(format!("checkpoint tensor {name} is missing")))
}

impl Transformer {
    /// Builds the model from `checkpoint::load_tensors`' named tensors.
    pub fn new(cfg: CheckpointConfig, mut tensors: HashMap<String, Tensor>) -> Result<Self> {
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let mut get =
                |name: &str| take(&mut tensors, &format!("model.layers.{i}.{name}.weight"));
            layers.push(Layer {
                rms_att: RmsNorm::new(get("input_layernorm")?, NORM_EPS),
                wq: Linear::new(get("self_attn.q_proj")?, None),
                wk: Linear::new(get("self_attn.k_proj")?, None),
                wv: Linear::new(get("self_attn.v_proj")?, None),
                wo: Linear::new(get("self_attn.o_proj")?, None),
                rms_ffn: RmsNorm::new(get("post_attention_layernorm")?, NORM_EPS),
                w1: Linear::new(get("mlp.gate_proj")?, None),
                w2: Linear::new(get("mlp.down_proj")?, None),
                w3: Linear::new(get("mlp.up_proj")?, None),
            });
        }
        let cos = take(&mut tensors, "freq_cis_real")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let sin = take(&mut tensors, "freq_cis_imag")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Self {
            embedding: take(&mut tensors, "model.embed_tokens.weight")?,
            norm: RmsNorm::new(take(&mut tensors, "model.norm.weight")?, NORM_EPS),
            classifier: Linear::new(take(&mut tensors, "lm_head.weight")?, None),
            layers,
            cos,
            sin,
            cfg,
        })
    }

    /// An empty cache for one session (`n_layers x 2 x seq_len x kv_dim` floats).
    pub fn new_cache(&self) -> Result<KvCache> {
        let c = &self.cfg;
        let shape = (c.n_kv_heads, c.seq_len, c.head_size());
        let zeros = || Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu);
        Ok(KvCache {
            keys: (0..c.n_layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
            values: (0..c.n_layers)
                .map(|_| zeros())
                .collect::<candle_core::Result<_>>()?,
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
    pub fn forward(&self, token: u32, pos: usize, cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (hd, n_kv) = (c.head_size(), c.n_kv_heads);
        let n_rep = c.n_heads / n_kv;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = self.embedding.narrow(0, token as usize, 1)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let h = layer.rms_att.forward(&x)?;
            let mut q = layer.wq.forward(&h)?.flatten_all()?.to_vec1::<f32>()?;
            let mut k = layer.wk.forward(&h)?.flatten_all()?.to_vec1::<f32>()?;
            self.rope(&mut q, pos);
            self.rope(&mut k, pos);
            let v = layer.wv.forward(&h)?.reshape((n_kv, 1, hd))?;
            let k = Tensor::from_vec(k, (n_kv, 1, hd), &Device::Cpu)?;
            cache.keys[l].slice_set(&k, 1, pos)?;
            cache.values[l].slice_set(&v, 1, pos)?;
            let keys = cache.keys[l].narrow(1, 0, pos + 1)?;
            let values = cache.values[l].narrow(1, 0, pos + 1)?;
            // Query head h uses kv head h / n_rep (run.c): group the queries by kv head.
            let q = Tensor::from_vec(q, (n_kv, n_rep, hd), &Device::Cpu)?;
            let att = (q.matmul(&keys.t()?)? * scale)?;
            let mut att = att.flatten_all()?.to_vec1::<f32>()?;
            for row in att.chunks_exact_mut(pos + 1) {
                softmax(row);
            }
            let att = Tensor::from_vec(att, (n_kv, n_rep, pos + 1), &Device::Cpu)?;
            let y = att.matmul(&values)?.reshape((1, c.dim))?;
            x = (x + layer.wo.forward(&y)?)?;
            let h = layer.rms_ffn.forward(&x)?;
            let gate = layer.w1.forward(&h)?;
            let gate = (&gate / (gate.neg()?.exp()? + 1.0)?)?; // SiLU, as run.c
            let ffn = layer.w2.forward(&(gate * layer.w3.forward(&h)?)?)?;
            x = (x + ffn)?;
        }
        let x = self.norm.forward(&x)?;
        Ok(self
            .classifier
            .forward(&x)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}
