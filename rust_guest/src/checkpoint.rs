//! Reader for llama2.c checkpoints (`run.c`'s layout), including grouped-query attention
//! (`n_kv_heads < n_heads`) and a separate classifier (negative `vocab_size`).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};

const HEADER_BYTES: usize = 7 * 4;
/// Upper bounds that keep every size computation far from overflow and reject garbage headers.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 20;
const MAX_SEQ_LEN: usize = 1 << 20;

/// The checkpoint's header, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// `true` when the classifier reuses the token embedding (positive `vocab_size` in the file).
    pub shared_classifier: bool,
}

impl CheckpointConfig {
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.dim * self.n_kv_heads / self.n_heads
    }

    /// Number of f32 values after the header, in run.c's order.
    pub fn weight_count(&self) -> u64 {
        let (dim, hidden, layers) = (
            self.dim as u64,
            self.hidden_dim as u64,
            self.n_layers as u64,
        );
        let (vocab, seq, kv_dim) = (
            self.vocab_size as u64,
            self.seq_len as u64,
            self.kv_dim() as u64,
        );
        let head = self.head_size() as u64;
        let per_layer = dim // rms_att
            + dim * dim // wq
            + 2 * dim * kv_dim // wk, wv
            + dim * dim // wo
            + dim // rms_ffn
            + 3 * dim * hidden; // w1, w2, w3
        let classifier = if self.shared_classifier {
            0
        } else {
            vocab * dim
        };
        vocab * dim + layers * per_layer + dim + seq * head + classifier
    }

    /// The exact file size this header implies.
    pub fn expected_bytes(&self) -> u64 {
        HEADER_BYTES as u64 + 4 * self.weight_count()
    }
}

fn read_i32(bytes: &[u8], index: usize) -> i32 {
    let at = index * 4;
    i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidCheckpoint(msg)
}

/// Parses and validates the 28-byte header against the total file size.
pub fn parse_header(bytes: &[u8]) -> Result<CheckpointConfig> {
    if bytes.len() < HEADER_BYTES {
        return Err(invalid(format!(
            "file is {} bytes, shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    let raw: Vec<i32> = (0..7).map(|i| read_i32(bytes, i)).collect();
    let names = [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ];
    for (name, value) in names.iter().zip(&raw) {
        let ok = if *name == "vocab_size" {
            *value != 0 && *value != i32::MIN
        } else {
            *value > 0
        };
        if !ok {
            return Err(invalid(format!(
                "header field {name} = {value} is not positive"
            )));
        }
    }
    let cfg = CheckpointConfig {
        dim: raw[0] as usize,
        hidden_dim: raw[1] as usize,
        n_layers: raw[2] as usize,
        n_heads: raw[3] as usize,
        n_kv_heads: raw[4] as usize,
        vocab_size: raw[5].unsigned_abs() as usize,
        seq_len: raw[6] as usize,
        shared_classifier: raw[5] > 0,
    };
    let limits = [
        ("dim", cfg.dim, MAX_DIM),
        ("hidden_dim", cfg.hidden_dim, 4 * MAX_DIM),
        ("n_layers", cfg.n_layers, MAX_LAYERS),
        ("n_heads", cfg.n_heads, cfg.dim),
        ("n_kv_heads", cfg.n_kv_heads, cfg.n_heads),
        ("vocab_size", cfg.vocab_size, MAX_VOCAB),
        ("seq_len", cfg.seq_len, MAX_SEQ_LEN),
    ];
    for (name, value, max) in limits {
        if value > max {
            return Err(invalid(format!(
                "header field {name} = {value} exceeds {max}"
            )));
        }
    }
    if !cfg.dim.is_multiple_of(cfg.n_heads) {
        return Err(invalid(format!(
            "dim {} is not a multiple of n_heads {}",
            cfg.dim, cfg.n_heads
        )));
    }
    if !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
        return Err(invalid(format!(
            "n_heads {} is not a multiple of n_kv_heads {}",
            cfg.n_heads, cfg.n_kv_heads
        )));
    }
    if !cfg.head_size().is_multiple_of(2) {
        return Err(invalid(format!(
            "head size {} is odd (RoPE needs pairs)",
            cfg.head_size()
        )));
    }
    let expected = cfg.expected_bytes();
    if expected != bytes.len() as u64 {
        let classifier = if cfg.shared_classifier {
            "shared classifier"
        } else {
            "separate classifier"
        };
        return Err(invalid(format!(
            "header implies {expected} bytes ({classifier}) but the file is {} bytes",
            bytes.len()
        )));
    }
    Ok(cfg)
}

/// Reads f32 values sequentially from the weight section.
struct WeightCursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl WeightCursor<'_> {
    fn take(&mut self, count: usize) -> Vec<f32> {
        // The header check guarantees the exact size, so slicing cannot go out of range.
        let end = self.offset + 4 * count;
        let values = self.bytes[self.offset..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.offset = end;
        values
    }

    fn tensor(&mut self, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.take(rows * cols),
            (rows, cols),
            device,
        )?)
    }

    fn vector(&mut self, len: usize, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(self.take(len), len, device)?)
    }

    fn skip(&mut self, count: usize) {
        self.offset += 4 * count;
    }
}

/// run.c's RoPE tables: `freq = 1 / 10000^(i / head_size)` for even `i`, then cos/sin of
/// `pos * freq`. Computed with the pure-Rust `libm` so every target gets the same bits.
pub fn rope_tables(cfg: &CheckpointConfig, device: &Device) -> Result<(Tensor, Tensor)> {
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
    Ok((
        Tensor::from_vec(cos, (cfg.seq_len, half), device)?,
        Tensor::from_vec(sin, (cfg.seq_len, half), device)?,
    ))
}

/// Parses a whole checkpoint into named tensors (Hugging Face llama names, as `model::Transformer` takes them).
/// The file's freq_cis tables are skipped (run.c recomputes them; so do we, see `rope_tables`).
pub fn load_tensors(
    bytes: &[u8],
    device: &Device,
) -> Result<(CheckpointConfig, HashMap<String, Tensor>)> {
    let cfg = parse_header(bytes)?;
    let (dim, hidden, kv_dim) = (cfg.dim, cfg.hidden_dim, cfg.kv_dim());
    let mut cur = WeightCursor {
        bytes,
        offset: HEADER_BYTES,
    };
    let mut map = HashMap::new();
    let embedding = cur.tensor(cfg.vocab_size, dim, device)?;
    map.insert("model.embed_tokens.weight".to_string(), embedding.clone());

    let layer = |i: usize, name: &str| format!("model.layers.{i}.{name}.weight");
    let n = cfg.n_layers;
    let mut per_layer = |map: &mut HashMap<String, Tensor>, name: &str, shape: (usize, usize)| {
        for i in 0..n {
            let t = if shape.0 == 1 {
                cur.vector(shape.1, device)
            } else {
                cur.tensor(shape.0, shape.1, device)
            }?;
            map.insert(layer(i, name), t);
        }
        Ok::<(), EngineError>(())
    };
    per_layer(&mut map, "input_layernorm", (1, dim))?;
    per_layer(&mut map, "self_attn.q_proj", (dim, dim))?;
    per_layer(&mut map, "self_attn.k_proj", (kv_dim, dim))?;
    per_layer(&mut map, "self_attn.v_proj", (kv_dim, dim))?;
    per_layer(&mut map, "self_attn.o_proj", (dim, dim))?;
    per_layer(&mut map, "post_attention_layernorm", (1, dim))?;
    per_layer(&mut map, "mlp.gate_proj", (hidden, dim))?;
    per_layer(&mut map, "mlp.down_proj", (dim, hidden))?;
    per_layer(&mut map, "mlp.up_proj", (hidden, dim))?;
    map.insert("model.norm.weight".to_string(), cur.vector(dim, device)?);
    cur.skip(cfg.seq_len * cfg.head_size()); // freq_cis_real + freq_cis_imag (half each)
    let classifier = if cfg.shared_classifier {
        embedding
    } else {
        cur.tensor(cfg.vocab_size, dim, device)?
    };
    map.insert("lm_head.weight".to_string(), classifier);
    let (cos, sin) = rope_tables(&cfg, device)?;
    map.insert("freq_cis_real".to_string(), cos);
    map.insert("freq_cis_imag".to_string(), sin);
    Ok((cfg, map))
}
