//! A GGUF file of the `llama`, `qwen2` or `qwen3` architecture as the engine's model: config and
//! hyperparameters from the metadata, llama.cpp's tensor names mapped onto the typed weights
//! (F32 as is, F16 widened to f32 exactly, Q8_0/Q4_0/Q4_K/Q6_K blocks as int8 values + f32
//! scales, and offsets for Q4_K, on the int8 path, except Q4_K on x86_64, kept packed for
//! [`crate::q4k_kernel`] (the same products, bit for bit); qwen's biases and q/k norms as
//! [`LayerExtras`]), and the vocabulary of `tokenizer.ggml.*`: SentencePiece-style as llama2.c's
//! tokenizer, or byte-level BPE ([`crate::bpe`]). Everything unsupported (another architecture,
//! RoPE scaling, a tensor type, an unknown tensor, another tokenizer model or pre-tokenizer) is
//! refused from the header alone, naming it.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::bpe::PreTokenizer;
use crate::chat_template::ChatTemplate;
use crate::checkpoint::{CheckpointConfig, MAX_DIM};
use crate::error::{EngineError, Result};
use crate::gguf::{self, GgmlType, GgufHeader, TensorInfo, Value};
use crate::kquants::{
    decode_q4_k, decode_q6_k, f16_to_f32, Q4_K_BYTES, Q4_K_GROUP, Q6_K_BYTES, Q6_K_GROUP, QK_K,
};
use crate::model_parts::{ModelHyper, ModelParts};
use crate::q4k_kernel::PackedQ4K;
use crate::tokenizer::{Tokenizer, BOS, EOS};
use crate::weights::{LayerExtras, LayerMatrix, LayerWeights, Matrix, TransformerWeights};

/// The architectures the engine runs: llama, and Qwen's two (llama's layers plus q/k/v biases
/// for qwen2, per-head q/k RMSNorm for qwen3; NEOX-style RoPE for both).
pub const ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "qwen3"];
/// The tensor types the engine runs.
pub const TENSOR_TYPES: [GgmlType; 6] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];
/// Q8_0's block: the int8 path's group size.
const Q8_0_GROUP: usize = 32;
/// The metadata that sets each of the config's seven size fields, in header order (what
/// [`CheckpointConfig::sizes_with_limits`] lists), for the refusals.
const CONFIG_SOURCES: [&str; 7] = [
    "embedding_length",
    "feed_forward_length",
    "block_count",
    "attention.head_count",
    "attention.head_count_kv",
    "vocabulary (token_embd rows)",
    "context_length",
];

fn unsupported(msg: String) -> EngineError {
    EngineError::UnsupportedModel(msg)
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidCheckpoint(format!("GGUF: {msg}"))
}

/// llama.cpp's name of a layer matrix.
fn layer_name(layer: usize, m: LayerMatrix) -> String {
    let short = match m {
        LayerMatrix::Wq => "attn_q",
        LayerMatrix::Wk => "attn_k",
        LayerMatrix::Wv => "attn_v",
        LayerMatrix::Wo => "attn_output",
        LayerMatrix::W1 => "ffn_gate",
        LayerMatrix::W2 => "ffn_down",
        LayerMatrix::W3 => "ffn_up",
    };
    format!("blk.{layer}.{short}.weight")
}

/// The model a GGUF header describes, checked: what [`load`] builds.
#[derive(Debug, Clone)]
pub struct GgufSpec {
    pub header: GgufHeader,
    pub config: CheckpointConfig,
    pub hyper: ModelHyper,
}

/// The unsigned integer at `key` as a `T`, if the header has one; `what` names what it
/// should be (e.g. "a count") for the error when it is not an integer that fits.
fn meta_uint<T: TryFrom<u64>>(h: &GgufHeader, key: &str, what: &str) -> Result<Option<T>> {
    match h.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| T::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{key} is {v:?}, not {what}"))),
    }
}

fn meta_usize(h: &GgufHeader, key: &str) -> Result<Option<usize>> {
    meta_uint(h, key, "a count")
}

fn need_usize(h: &GgufHeader, key: &str) -> Result<usize> {
    meta_usize(h, key)?.ok_or_else(|| invalid(format!("metadata {key} is missing")))
}

fn meta_f32(h: &GgufHeader, key: &str, default: f32) -> Result<f32> {
    match h.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f32()
            .filter(|f| f.is_finite() && *f > 0.0)
            .ok_or_else(|| invalid(format!("{key} is {v:?}, not a positive number"))),
    }
}

/// Reads and checks the header of a GGUF file (`bytes`: the file, or at least its header;
/// `file_len`: its size): the architecture, the config, every tensor's name, type and shape.
pub fn inspect(bytes: &[u8], file_len: u64) -> Result<GgufSpec> {
    let h = gguf::parse_header(bytes, file_len)?;
    let arch = h
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("metadata general.architecture is missing".into()))?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(unsupported(format!(
            "GGUF architecture '{arch}' is not supported (supported: {})",
            ARCHITECTURES.join(", ")
        )));
    }
    let key = |k: &str| format!("{arch}.{k}");
    if let Some(v) = h.get(&key("rope.scaling.type")) {
        if v.as_str() != Some("none") {
            return Err(unsupported(format!(
                "{arch} RoPE scaling {v:?} is not supported"
            )));
        }
    }
    let embd = h
        .tensor("token_embd.weight")
        .ok_or_else(|| invalid("tensor token_embd.weight is missing".into()))?;
    let dim = need_usize(&h, &key("embedding_length"))?;
    let n_heads = need_usize(&h, &key("attention.head_count"))?;
    let head_dim = head_dim(&h, arch, dim, n_heads)?;
    let config = CheckpointConfig {
        dim,
        hidden_dim: need_usize(&h, &key("feed_forward_length"))?,
        n_layers: need_usize(&h, &key("block_count"))?,
        n_heads,
        n_kv_heads: meta_usize(&h, &key("attention.head_count_kv"))?.unwrap_or(n_heads),
        vocab_size: embd.dims.first().map_or(0, |v| *v as usize),
        seq_len: need_usize(&h, &key("context_length"))?,
        shared_classifier: h.tensor("output.weight").is_none(),
        group_size: group_size(&h),
        head_dim,
    };
    check_config(&config)?;
    // The int8 path quantizes dim-long inputs in blocks (the embedding and classifier rows).
    if let Some(gs) = config.group_size {
        if !config.dim.is_multiple_of(Q8_0_GROUP) {
            return Err(invalid(format!(
                "embedding_length {} is not a multiple of {Q8_0_GROUP}, as quantized tensors need (groups of {gs})",
                config.dim
            )));
        }
    }
    if let Some(rope_dims) = meta_usize(&h, &key("rope.dimension_count"))? {
        if rope_dims != config.head_size() {
            return Err(unsupported(format!(
                "partial RoPE ({rope_dims} of {} head dimensions) is not supported",
                config.head_size()
            )));
        }
    }
    let hyper = ModelHyper {
        rope_base: meta_f32(&h, &key("rope.freq_base"), 10000.0)?,
        norm_eps: meta_f32(&h, &key("attention.layer_norm_rms_epsilon"), 1e-5)?,
        // llama.cpp's rope type: NORM for llama (its converter permutes q/k for it), NEOX for
        // qwen2 and qwen3.
        rope_neox: arch != "llama",
    };
    let arch = arch.to_string();
    check_tensors(&h, &config, &arch)?;
    Ok(GgufSpec {
        header: h,
        config,
        hyper,
    })
}

/// The head size `attention.key_length` gives when it is not `dim / n_heads` (Qwen3-0.6B:
/// 128 for 1024 / 16), `None` when it is or is absent. Keys and values of different sizes
/// (`value_length` != `key_length`) are refused.
fn head_dim(h: &GgufHeader, arch: &str, dim: usize, n_heads: usize) -> Result<Option<usize>> {
    let key = |k: &str| format!("{arch}.attention.{k}");
    let k_len = meta_usize(h, &key("key_length"))?;
    let v_len = meta_usize(h, &key("value_length"))?;
    if let (Some(k), Some(v)) = (k_len, v_len) {
        if k != v {
            return Err(unsupported(format!(
                "{arch} attention.value_length {v} differs from attention.key_length {k} (not supported)"
            )));
        }
    }
    let Some(len) = k_len.or(v_len) else {
        return Ok(None);
    };
    if len == 0 || len > MAX_DIM {
        return Err(invalid(format!(
            "attention.key_length = {len} is not in 1..={MAX_DIM}"
        )));
    }
    Ok((n_heads == 0 || !dim.is_multiple_of(n_heads) || len != dim / n_heads).then_some(len))
}

fn check_config(cfg: &CheckpointConfig) -> Result<()> {
    for (name, (value, max)) in CONFIG_SOURCES.iter().zip(cfg.sizes_with_limits()) {
        if value == 0 || value > max {
            return Err(invalid(format!("{name} = {value} is not in 1..={max}")));
        }
    }
    // Without a key_length, the heads split dim.
    if (cfg.head_dim.is_none() && !cfg.dim.is_multiple_of(cfg.n_heads))
        || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads)
        || !cfg.head_size().is_multiple_of(2)
    {
        return Err(invalid(format!(
            "dim {}, {} heads of {} and {} kv heads do not make even, equal heads",
            cfg.dim,
            cfg.n_heads,
            cfg.head_size(),
            cfg.n_kv_heads
        )));
    }
    if cfg.q_dim() > 4 * MAX_DIM {
        return Err(invalid(format!(
            "{} heads of {} are more than {} query values",
            cfg.n_heads,
            cfg.head_size(),
            4 * MAX_DIM
        )));
    }
    Ok(())
}

/// The tensors the config implies, with their row-major shapes and whether they are matrices.
fn expected_tensors(cfg: &CheckpointConfig, arch: &str) -> Vec<(String, Vec<u64>, bool)> {
    let (dim, vocab) = (cfg.dim as u64, cfg.vocab_size as u64);
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![vocab, dim], true),
        ("output_norm.weight".to_string(), vec![dim], false),
    ];
    if !cfg.shared_classifier {
        out.push(("output.weight".to_string(), vec![vocab, dim], true));
    }
    for l in 0..cfg.n_layers {
        out.push((format!("blk.{l}.attn_norm.weight"), vec![dim], false));
        out.push((format!("blk.{l}.ffn_norm.weight"), vec![dim], false));
        for m in LayerMatrix::ALL {
            let shape = m.shape(cfg).map(|d| d as u64).to_vec();
            out.push((layer_name(l, m), shape, true));
        }
        let (kv, hd) = (cfg.kv_dim() as u64, cfg.head_size() as u64);
        let extras: &[(&str, u64)] = match arch {
            "qwen2" => &[
                ("attn_q.bias", cfg.q_dim() as u64),
                ("attn_k.bias", kv),
                ("attn_v.bias", kv),
            ],
            "qwen3" => &[("attn_q_norm.weight", hd), ("attn_k_norm.weight", hd)],
            _ => &[],
        };
        for (name, len) in extras {
            out.push((format!("blk.{l}.{name}"), vec![*len], false));
        }
    }
    out
}

fn check_tensors(h: &GgufHeader, cfg: &CheckpointConfig, arch: &str) -> Result<()> {
    let expected = expected_tensors(cfg, arch);
    for t in &h.tensors {
        let Some((_, shape, matrix)) = expected.iter().find(|(n, _, _)| *n == t.name) else {
            return Err(unsupported(format!(
                "GGUF tensor {} is not one the {arch} architecture uses here",
                t.name
            )));
        };
        if !TENSOR_TYPES.contains(&t.kind) || (!matrix && is_blocked(t.kind)) {
            let names: Vec<String> = TENSOR_TYPES.iter().map(|k| k.name()).collect();
            return Err(unsupported(format!(
                "GGUF tensor {} is {}; supported tensor types: {}",
                t.name,
                t.kind.name(),
                names.join(", ")
            )));
        }
        if t.dims != *shape {
            return Err(invalid(format!(
                "tensor {} has shape {:?}, the metadata implies {shape:?}",
                t.name, t.dims
            )));
        }
        if gguf::tensor_bytes(t).is_none() {
            return Err(invalid(format!(
                "tensor {} ({}) rows of {} are not whole blocks",
                t.name,
                t.kind.name(),
                shape.last().copied().unwrap_or(0)
            )));
        }
    }
    for (name, _, _) in &expected {
        if h.tensor(name).is_none() {
            return Err(invalid(format!("tensor {name} is missing")));
        }
    }
    Ok(())
}

/// Whether the type is stored in blocks with scales (run on the int8 path).
fn is_blocked(kind: GgmlType) -> bool {
    [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ]
    .contains(&kind)
}

/// The int8 path's group size for the file: 16 when a Q6_K tensor is present (its scales
/// cover 16 values; Q8_0, Q4_0 and Q4_K groups of 32 become two groups of 16 with the same
/// scale, exactly), 32 when only the other quantized types are, none for an f32/f16 file.
/// The activations are quantized in groups of that size for every int8 matrix.
fn group_size(h: &GgufHeader) -> Option<usize> {
    if h.tensors.iter().any(|t| t.kind == GgmlType::Q6_K) {
        Some(Q6_K_GROUP)
    } else {
        h.tensors
            .iter()
            .any(|t| is_blocked(t.kind))
            .then_some(Q8_0_GROUP)
    }
}

fn f32_tensor(t: &TensorInfo, data: &[u8], device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = match t.kind {
        GgmlType::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        other => {
            return Err(unsupported(format!(
                "tensor {} is {}",
                t.name,
                other.name()
            )))
        }
    };
    let shape: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// A matrix of F32/F16 as f32; of a quantized type as int8 values with one f32 scale per group
/// of `gs` (and, for Q4_K, one offset). A Q4_0 value is its nibble minus 8 (ggml's
/// `dequantize_row_q4_0`: the low nibbles of a block's 16 bytes are values 0..16, the high ones
/// 16..32), exactly representable in int8, so the int8 kernel computes Q4_0's products without
/// approximation (at one byte per weight in memory instead of half). Q6_K and Q4_K: see
/// [`crate::kquants`]. A block's scale covers a multiple of `gs` values; it is repeated per group.
fn matrix(t: &TensorInfo, data: &[u8], gs: usize, device: &Device) -> Result<Matrix> {
    let (block_bytes, block_values, block_group) = match t.kind {
        GgmlType::Q8_0 => (34, 32, 32),
        GgmlType::Q4_0 => (18, 32, 32),
        GgmlType::Q4_K => (Q4_K_BYTES, QK_K, Q4_K_GROUP),
        GgmlType::Q6_K => (Q6_K_BYTES, QK_K, Q6_K_GROUP),
        _ => return Ok(Matrix::F32(f32_tensor(t, data, device)?)),
    };
    if gs == 0 || !block_group.is_multiple_of(gs) {
        return Err(EngineError::Internal(format!(
            "tensor {} ({}) in groups of {gs}",
            t.name,
            t.kind.name()
        )));
    }
    if t.kind == GgmlType::Q4_K && crate::q4k_kernel::PACKED {
        // Kept packed, multiplied from its nibbles (`q4k_kernel`: the same bits as decoded).
        let (rows, cols) = match t.dims[..] {
            [rows, cols] => (rows as usize, cols as usize),
            _ => return Err(invalid(format!("tensor {} is not a matrix", t.name))),
        };
        return Ok(Matrix::Q4K(Arc::new(PackedQ4K::from_blocks(
            data, rows, cols,
        )?)));
    }
    let repeat = block_group / gs;
    let blocks = data.len() / block_bytes;
    let groups_per_block = block_values / block_group;
    let mut values: Vec<u8> = Vec::with_capacity(blocks * block_values);
    let mut scales = Vec::with_capacity(blocks * block_values / gs);
    let mut offsets = Vec::new();
    let (mut q, mut bs, mut bm) = ([0u8; QK_K], [0f32; 16], [0f32; 16]);
    for block in data.chunks_exact(block_bytes) {
        match t.kind {
            GgmlType::Q8_0 => {
                bs[0] = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
                q[..32].copy_from_slice(&block[2..]);
            }
            GgmlType::Q4_0 => {
                bs[0] = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
                let nibble = |q: u8| (q as i8 - 8) as u8;
                for (j, b) in block[2..].iter().enumerate() {
                    q[j] = nibble(b & 0x0f);
                    q[j + 16] = nibble(b >> 4);
                }
            }
            GgmlType::Q4_K => {
                decode_q4_k(block, &mut q, &mut bs[..8], &mut bm[..8]);
                for m in &bm[..8] {
                    offsets.extend(std::iter::repeat_n(*m, repeat));
                }
            }
            _ => {
                let mut signed = [0i8; QK_K];
                decode_q6_k(block, &mut signed, &mut bs);
                for (q, s) in q.iter_mut().zip(signed) {
                    *q = s as u8;
                }
            }
        }
        values.extend_from_slice(&q[..block_values]);
        for s in &bs[..groups_per_block] {
            scales.extend(std::iter::repeat_n(*s, repeat));
        }
    }
    let shape: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
    let groups = scales.len();
    Ok(Matrix::Q8 {
        values: Tensor::from_vec(values, shape, device)?,
        scales: Tensor::from_vec(scales, groups, device)?,
        offsets: if t.kind == GgmlType::Q4_K {
            Some(Tensor::from_vec(offsets, groups, device)?)
        } else {
            None
        },
    })
}

/// The `llama` tokenizer of `tokenizer.ggml.*` as llama2.c's tokenizer.bin (what
/// [`Tokenizer::from_bytes`] reads): SentencePiece's `▁` as a space, `<s>`/`</s>` as
/// llama2.c writes them, the scores as they are.
fn tokenizer(h: &GgufHeader) -> Result<Tokenizer> {
    let model = h
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("metadata tokenizer.ggml.model is missing".into()))?;
    if model == "gpt2" {
        return bpe_tokenizer(h);
    }
    if model != "llama" {
        return Err(unsupported(format!(
            "GGUF tokenizer model '{model}' is not supported (supported: llama, gpt2)"
        )));
    }
    let bad = |msg: String| EngineError::InvalidTokenizer(format!("GGUF: {msg}"));
    let tokens = h
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("tokenizer.ggml.tokens is missing".into()))?;
    let scores = h.get("tokenizer.ggml.scores").and_then(Value::as_array);
    for (key, want) in [
        ("tokenizer.ggml.bos_token_id", BOS),
        ("tokenizer.ggml.eos_token_id", EOS),
    ] {
        if let Some(id) = h.get(key).and_then(Value::as_u64) {
            if id != u64::from(want) {
                return Err(unsupported(format!(
                    "{key} = {id} (the engine's llama tokenizer has BOS 1 and EOS 2)"
                )));
            }
        }
    }
    let mut pieces = Vec::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let text = token
            .as_str()
            .ok_or_else(|| bad(format!("token {id} is not a string")))?;
        let piece = match id as u32 {
            BOS => "\n<s>\n".to_string(),
            EOS => "\n</s>\n".to_string(),
            _ => text.replace('\u{2581}', " "),
        };
        let score = match scores {
            None => 0.0,
            Some(s) => s
                .get(id)
                .and_then(Value::as_f32)
                .ok_or_else(|| bad(format!("token {id} has no f32 score")))?,
        };
        pieces.push((piece.into_bytes(), score));
    }
    for byte in 0..=255u32 {
        let want = format!("<0x{byte:02X}>");
        if pieces.get(3 + byte as usize).map(|p| p.0.as_slice()) != Some(want.as_bytes()) {
            return Err(unsupported(format!(
                "the vocabulary's byte tokens are not at ids 3..=258 ({want} expected at {})",
                3 + byte
            )));
        }
    }
    let max_len = pieces.iter().map(|p| p.0.len()).max().unwrap_or(1).max(1);
    let mut bin = Vec::new();
    bin.extend_from_slice(&(max_len as i32).to_le_bytes());
    for (piece, score) in &pieces {
        bin.extend_from_slice(&score.to_le_bytes());
        bin.extend_from_slice(&(piece.len() as i32).to_le_bytes());
        bin.extend_from_slice(piece);
    }
    // Unknown, control and user-defined tokens: what llama.cpp matches as special.
    let types = h.get("tokenizer.ggml.token_type").and_then(Value::as_array);
    let specials = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| {
            let kind = types.and_then(|t| t.get(*id)).and_then(Value::as_u64);
            matches!(kind, Some(2..=4))
        })
        .filter_map(|(id, t)| Some((t.as_str()?.to_string(), id as u32)))
        .collect();
    Ok(Tokenizer::from_bytes(&bin)?.with_specials(specials))
}

/// `tokenizer.chat_template` with the texts of the BOS and EOS tokens it may print (None when
/// the file has no template).
fn chat_template(h: &GgufHeader) -> Option<ChatTemplate> {
    let source = h.get("tokenizer.chat_template").and_then(Value::as_str)?;
    let tokens = h.get("tokenizer.ggml.tokens").and_then(Value::as_array);
    let text = |key: &str, default: u32| -> String {
        let id = h
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(default));
        tokens
            .and_then(|t| t.get(usize::try_from(id).ok()?))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let eos = text("tokenizer.ggml.eos_token_id", EOS);
    let bos_default = h
        .get("tokenizer.ggml.eos_token_id")
        .filter(|_| h.get("tokenizer.ggml.model").and_then(Value::as_str) == Some("gpt2"))
        .and_then(Value::as_u64)
        .map_or(BOS, |v| v as u32);
    let bos = text("tokenizer.ggml.bos_token_id", bos_default);
    Some(ChatTemplate::new(source.to_string(), bos, eos))
}

/// The strings of array `key` (InvalidTokenizer when missing or not strings).
fn strings(h: &GgufHeader, key: &str) -> Result<Vec<String>> {
    let bad = |msg: String| EngineError::InvalidTokenizer(format!("GGUF: {msg}"));
    h.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("{key} is missing")))?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{key}[{i}] is not a string")))
        })
        .collect()
}

/// A `gpt2` (byte-level BPE) vocabulary with its merges and the pre-tokenizer
/// `tokenizer.ggml.pre` names (qwen2, llama-bpe; others refused by name).
fn bpe_tokenizer(h: &GgufHeader) -> Result<Tokenizer> {
    let pre_name = h
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let pre = PreTokenizer::from_name(pre_name).ok_or_else(|| {
        unsupported(format!(
            "GGUF gpt2 pre-tokenizer '{pre_name}' is not supported (supported: qwen2, llama-bpe)"
        ))
    })?;
    let tokens = strings(h, "tokenizer.ggml.tokens")?;
    let merges = strings(h, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = h
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_u64().map_or(1, |v| v as i32))
                .collect()
        })
        .unwrap_or_default();
    let id = |key: &str| meta_uint::<u32>(h, key, "a token id");
    let eos = id("tokenizer.ggml.eos_token_id")?
        .ok_or_else(|| invalid("metadata tokenizer.ggml.eos_token_id is missing".into()))?;
    let bos = id("tokenizer.ggml.bos_token_id")?.unwrap_or(eos);
    let add_bos = matches!(
        h.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(true))
    );
    Tokenizer::from_bpe(pre, &tokens, &types, &merges, bos, eos, add_bos)
}

/// Builds the model of a whole GGUF file in memory.
pub fn load(file: &[u8], device: &Device) -> Result<ModelParts> {
    let spec = inspect(file, file.len() as u64)?;
    let h = &spec.header;
    let cfg = &spec.config;
    let tokenizer = tokenizer(h)?;
    let chat_template = chat_template(h);
    let tensor = |name: &str| -> Result<(&TensorInfo, &[u8])> {
        let t = h
            .tensor(name)
            .ok_or_else(|| invalid(format!("tensor {name} is missing")))?;
        Ok((t, gguf::tensor_data(h, t, file)?))
    };
    let norm = |name: &str| -> Result<Tensor> {
        let (t, data) = tensor(name)?;
        f32_tensor(t, data, device)
    };
    let gs = cfg.group_size.unwrap_or(Q8_0_GROUP);
    let mat = |name: &str| -> Result<Matrix> {
        let (t, data) = tensor(name)?;
        matrix(t, data, gs, device)
    };
    let embedding = mat("token_embd.weight")?;
    let classifier = if cfg.shared_classifier {
        embedding.clone()
    } else {
        mat("output.weight")?
    };
    // The architecture's extra attention tensors (`check_tensors` requires them for it).
    let optional = |name: String| -> Result<Option<Tensor>> {
        h.tensor(&name).map(|_| norm(&name)).transpose()
    };
    let extras = |l: usize| -> Result<LayerExtras> {
        Ok(LayerExtras {
            q_bias: optional(format!("blk.{l}.attn_q.bias"))?,
            k_bias: optional(format!("blk.{l}.attn_k.bias"))?,
            v_bias: optional(format!("blk.{l}.attn_v.bias"))?,
            q_norm: optional(format!("blk.{l}.attn_q_norm.weight"))?,
            k_norm: optional(format!("blk.{l}.attn_k_norm.weight"))?,
        })
    };
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for l in 0..cfg.n_layers {
        let m = |which| mat(&layer_name(l, which));
        layers.push(LayerWeights {
            rms_att: norm(&format!("blk.{l}.attn_norm.weight"))?,
            wq: m(LayerMatrix::Wq)?,
            wk: m(LayerMatrix::Wk)?,
            wv: m(LayerMatrix::Wv)?,
            wo: m(LayerMatrix::Wo)?,
            rms_ffn: norm(&format!("blk.{l}.ffn_norm.weight"))?,
            w1: m(LayerMatrix::W1)?,
            w2: m(LayerMatrix::W2)?,
            w3: m(LayerMatrix::W3)?,
            extras: extras(l)?,
        });
    }
    let weights = TransformerWeights {
        embedding,
        layers,
        norm: norm("output_norm.weight")?,
        classifier,
    };
    Ok(ModelParts {
        config: spec.config,
        weights,
        tokenizer,
        hyper: spec.hyper,
        chat_template,
    })
}

#[cfg(test)]
mod tests {
    use crate::kquants::f16_to_f32;

    #[test]
    fn f16_widening_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    }
}
