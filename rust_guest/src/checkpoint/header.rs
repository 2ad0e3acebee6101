//! A checkpoint's header: its fields declared once ([`CheckpointConfig`]), parsed from either
//! format and validated against the file's size.

use serde::Serialize;

use crate::error::{EngineError, Result};

/// The f32 (version 0) header's size: seven little-endian i32.
pub const HEADER_BYTES: usize = 7 * 4;
/// The int8 (version 2) header's size: magic, version, the seven i32, a shared-classifier byte,
/// the group size, zero padding.
pub const Q8_HEADER_BYTES: usize = 256;
/// Enough of a file's start for either header: what a host passes to [`WeightLoader::new`].
pub const MAX_HEADER_BYTES: usize = Q8_HEADER_BYTES;
/// The version-2 magic number, "ak42" read as a little-endian u32 (bytes `32 34 6b 61`, "24ka").
pub const Q8_MAGIC: u32 = 0x616b_3432;
/// The only version of the magic-numbered format we read.
pub const Q8_VERSION: i32 = 2;
/// The bytes of a version-2 header that carry data (magic .. group size); the rest is padding.
const Q8_HEADER_USED: usize = 4 + 4 + HEADER_BYTES + 1 + 4;
/// The largest region [`WeightLoader::region`] hands out, so a region's length fits an i32 and
/// a host's single read stays moderate.
pub const MAX_REGION_BYTES: usize = 1 << 24;
/// Upper bounds that keep every size computation far from overflow and reject garbage headers
/// (llama2.c checkpoints' and GGUF files' alike: [`CheckpointConfig::sizes_with_limits`]).
pub const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1 << 10;
const MAX_VOCAB: usize = 1 << 20;
const MAX_SEQ_LEN: usize = 1 << 20;

/// The names of the header's seven i32 fields, in file order (the first seven fields of
/// [`CheckpointConfig`]).
pub const HEADER_FIELDS: [&str; 7] = [
    "dim",
    "hidden_dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "seq_len",
];

/// The checkpoint's header, validated: the one declaration of its fields. Serialised as is for
/// the wasm ABI's `ec_model_info` JSON and the native module's `Model.info()` dict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointConfig {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// `true` when the classifier reuses the token embedding (positive `vocab_size` in a
    /// version-0 file, the flag byte in a version-2 file).
    pub shared_classifier: bool,
    /// `Some(group size)` for an int8 (version 2) checkpoint, `None` for f32.
    pub group_size: Option<usize>,
    /// A head size other than `dim / n_heads` (a GGUF file's `attention.key_length`, as
    /// Qwen3-0.6B's 128 for 1024 / 16); `None` for every llama2.c checkpoint. Not in the info
    /// JSON when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
}

impl CheckpointConfig {
    /// The header as the JSON object of ABI.md's `ec_model_info`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serialises")
    }

    /// The seven size fields in header order (as [`HEADER_FIELDS`] names them), each with the
    /// largest value it may take; any format's reader refuses a config above one of them.
    pub fn sizes_with_limits(&self) -> [(usize, usize); 7] {
        [
            (self.dim, MAX_DIM),
            (self.hidden_dim, 4 * MAX_DIM),
            (self.n_layers, MAX_LAYERS),
            (self.n_heads, self.dim),
            (self.n_kv_heads, self.n_heads),
            (self.vocab_size, MAX_VOCAB),
            (self.seq_len, MAX_SEQ_LEN),
        ]
    }

    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.dim / self.n_heads)
    }

    /// The queries' width, `n_heads x head_size` (`dim` unless `head_dim` says otherwise):
    /// wq's rows and wo's columns.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_size()
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
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

    /// The shapes (rows x columns) of a layer's seven matrices, in run.c's file order: wq, wk,
    /// wv, wo, w1, w2, w3 (`weights::LayerMatrix` names them in that order).
    pub fn layer_matrix_shapes(&self) -> [[usize; 2]; 7] {
        let (dim, hidden, kv_dim, q_dim) = (self.dim, self.hidden_dim, self.kv_dim(), self.q_dim());
        [
            [q_dim, dim],
            [kv_dim, dim],
            [kv_dim, dim],
            [dim, q_dim],
            [hidden, dim],
            [dim, hidden],
            [hidden, dim],
        ]
    }

    /// The number of values of each matrix stored in Q8_0 by a version-2 file, in file order
    /// (embedding, wq, wk, wv, wo, w1, w2, w3 for every layer, then the classifier if separate).
    pub fn quantized_counts(&self) -> Vec<u64> {
        let vocab = self.vocab_size as u64;
        let mut counts = vec![vocab * self.dim as u64];
        for [rows, cols] in self.layer_matrix_shapes() {
            counts.extend(std::iter::repeat_n((rows * cols) as u64, self.n_layers));
        }
        if !self.shared_classifier {
            counts.push(vocab * self.dim as u64);
        }
        counts
    }

    /// The exact file size this header implies.
    pub fn expected_bytes(&self) -> u64 {
        match self.group_size {
            None => HEADER_BYTES as u64 + 4 * self.weight_count(),
            Some(gs) => {
                let norms = (2 * self.n_layers as u64 + 1) * self.dim as u64;
                let quantized: u64 = self
                    .quantized_counts()
                    .iter()
                    .map(|n| n + 4 * (n / gs as u64))
                    .sum();
                Q8_HEADER_BYTES as u64 + 4 * norms + quantized
            }
        }
    }

    /// The header's size in the file: 28 (f32) or 256 (int8).
    pub fn header_bytes(&self) -> usize {
        match self.group_size {
            None => HEADER_BYTES,
            Some(_) => Q8_HEADER_BYTES,
        }
    }
}

fn read_i32(bytes: &[u8], index: usize) -> i32 {
    let at = index * 4;
    i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn read_u32(bytes: &[u8], index: usize) -> u32 {
    read_i32(bytes, index) as u32
}

pub(super) fn invalid(msg: String) -> EngineError {
    EngineError::InvalidCheckpoint(msg)
}

/// Parses and validates the 28-byte header against the total file size.
pub fn parse_header(bytes: &[u8]) -> Result<CheckpointConfig> {
    parse_header_for_size(bytes, bytes.len() as u64)
}

/// Whether `bytes` (a file's start) begins with the version-2 magic number.
pub fn is_q8(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && read_u32(bytes, 0) == Q8_MAGIC
}

/// Parses and validates the header (the file's first bytes: at least 28 for an f32 checkpoint,
/// 256 for an int8 one, unless the file is shorter) against a file of `file_len` bytes.
pub fn parse_header_for_size(bytes: &[u8], file_len: u64) -> Result<CheckpointConfig> {
    let cfg = if is_q8(bytes) {
        parse_q8_header(bytes, file_len)?
    } else {
        parse_f32_header(bytes, file_len)?
    };
    let expected = cfg.expected_bytes();
    if expected != file_len {
        let classifier = if cfg.shared_classifier {
            "shared classifier"
        } else {
            "separate classifier"
        };
        let format = match cfg.group_size {
            None => String::new(),
            Some(gs) => format!(", int8 groups of {gs}"),
        };
        return Err(invalid(format!(
            "header implies {expected} bytes ({classifier}{format}) but the file is {file_len} bytes"
        )));
    }
    Ok(cfg)
}

/// Whether the file (`file_len`) and the host's buffer (`bytes`) both hold a `need`-byte header
/// (`kind` names it in the message, e.g. "int8 (version 2) ").
fn check_header_len(bytes: &[u8], file_len: u64, need: usize, kind: &str) -> Result<()> {
    if file_len < need as u64 {
        return Err(invalid(format!(
            "file is {file_len} bytes, shorter than the {need}-byte {kind}header"
        )));
    }
    if bytes.len() < need {
        return Err(EngineError::InvalidArgument(format!(
            "the header buffer holds {} bytes, not {need}",
            bytes.len()
        )));
    }
    Ok(())
}

fn parse_f32_header(bytes: &[u8], file_len: u64) -> Result<CheckpointConfig> {
    check_header_len(bytes, file_len, HEADER_BYTES, "")?;
    let raw: [i32; 7] = std::array::from_fn(|i| read_i32(bytes, i));
    if raw[5] == 0 || raw[5] == i32::MIN {
        return Err(invalid(format!(
            "header field vocab_size = {} is not positive",
            raw[5]
        )));
    }
    let mut fields = raw;
    fields[5] = raw[5].saturating_abs();
    config_from_fields(fields, raw[5] > 0, None)
}

fn parse_q8_header(bytes: &[u8], file_len: u64) -> Result<CheckpointConfig> {
    check_header_len(bytes, file_len, Q8_HEADER_BYTES, "int8 (version 2) ")?;
    let version = read_i32(bytes, 1);
    if version != Q8_VERSION {
        return Err(invalid(format!(
            "checkpoint version {version} is not supported (the ak42 format is read in version {Q8_VERSION}, int8)"
        )));
    }
    let fields: [i32; 7] = std::array::from_fn(|i| read_i32(bytes, 2 + i));
    let shared = match bytes[HEADER_BYTES + 8] {
        0 => false,
        1 => true,
        other => {
            return Err(invalid(format!(
                "header flag shared_classifier = {other} is neither 0 nor 1"
            )))
        }
    };
    let at = HEADER_BYTES + 9;
    let group_size = i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    debug_assert_eq!(at + 4, Q8_HEADER_USED);
    config_from_fields(fields, shared, Some(group_size))
}

/// Validates the seven header fields (vocab_size already made positive) and the group size.
fn config_from_fields(
    raw: [i32; 7],
    shared_classifier: bool,
    group_size: Option<i32>,
) -> Result<CheckpointConfig> {
    for (name, value) in HEADER_FIELDS.iter().zip(&raw) {
        if *value <= 0 {
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
        vocab_size: raw[5] as usize,
        seq_len: raw[6] as usize,
        shared_classifier,
        group_size: None,
        head_dim: None,
    };
    for (name, (value, max)) in HEADER_FIELDS.iter().zip(cfg.sizes_with_limits()) {
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
    let Some(gs) = group_size else {
        return Ok(cfg);
    };
    // runq.c quantizes the activations (dim and hidden_dim long) in the same groups, so the
    // group size must divide both; then it divides every matrix's size too.
    if gs <= 0
        || !cfg.dim.is_multiple_of(gs as usize)
        || !cfg.hidden_dim.is_multiple_of(gs as usize)
    {
        return Err(invalid(format!(
            "group size {gs} does not divide dim {} and hidden_dim {}",
            cfg.dim, cfg.hidden_dim
        )));
    }
    Ok(CheckpointConfig {
        group_size: Some(gs as usize),
        ..cfg
    })
}
