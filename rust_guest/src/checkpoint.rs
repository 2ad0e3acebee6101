//! Reader for llama2.c checkpoints (`run.c`'s layout), including grouped-query attention
//! (`n_kv_heads < n_heads`) and a separate classifier (negative `vocab_size`).

use std::collections::HashMap;
use std::io::Read;

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};

/// The header's size: seven little-endian i32.
pub const HEADER_BYTES: usize = 7 * 4;
/// The largest region [`WeightLoader::region`] hands out, so a region's length fits an i32 and
/// a host's single read stays moderate.
pub const MAX_REGION_BYTES: usize = 1 << 24;
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
    parse_header_for_size(bytes, bytes.len() as u64)
}

/// Parses and validates the header (the file's first bytes, at least 28 unless the file is
/// shorter) against a file of `file_len` bytes.
pub fn parse_header_for_size(bytes: &[u8], file_len: u64) -> Result<CheckpointConfig> {
    if file_len < HEADER_BYTES as u64 {
        return Err(invalid(format!(
            "file is {file_len} bytes, shorter than the {HEADER_BYTES}-byte header"
        )));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(EngineError::InvalidArgument(format!(
            "the header buffer holds {} bytes, not {HEADER_BYTES}",
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
    if expected != file_len {
        let classifier = if cfg.shared_classifier {
            "shared classifier"
        } else {
            "separate classifier"
        };
        return Err(invalid(format!(
            "header implies {expected} bytes ({classifier}) but the file is {file_len} bytes"
        )));
    }
    Ok(cfg)
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

/// One run of f32 values of the weight section, in file order.
struct Entry {
    /// `None` for the file's freq_cis tables, which are read and dropped (see `rope_tables`).
    name: Option<String>,
    shape: Vec<usize>,
    count: usize,
}

/// The weight section's layout for `cfg`, in run.c's order, with Hugging Face llama names (as
/// `model::Transformer` takes them).
fn layout(cfg: &CheckpointConfig) -> Vec<Entry> {
    let (dim, hidden, kv_dim) = (cfg.dim, cfg.hidden_dim, cfg.kv_dim());
    let entry = |name: Option<String>, shape: Vec<usize>| Entry {
        count: shape.iter().product(),
        name,
        shape,
    };
    let mut entries = vec![entry(
        Some("model.embed_tokens.weight".into()),
        vec![cfg.vocab_size, dim],
    )];
    let per_layer: [(&str, Vec<usize>); 9] = [
        ("input_layernorm", vec![dim]),
        ("self_attn.q_proj", vec![dim, dim]),
        ("self_attn.k_proj", vec![kv_dim, dim]),
        ("self_attn.v_proj", vec![kv_dim, dim]),
        ("self_attn.o_proj", vec![dim, dim]),
        ("post_attention_layernorm", vec![dim]),
        ("mlp.gate_proj", vec![hidden, dim]),
        ("mlp.down_proj", vec![dim, hidden]),
        ("mlp.up_proj", vec![hidden, dim]),
    ];
    for (name, shape) in per_layer {
        for i in 0..cfg.n_layers {
            entries.push(entry(
                Some(format!("model.layers.{i}.{name}.weight")),
                shape.clone(),
            ));
        }
    }
    entries.push(entry(Some("model.norm.weight".into()), vec![dim]));
    // freq_cis_real + freq_cis_imag (seq_len x head_size/2 each).
    entries.push(entry(None, vec![cfg.seq_len * cfg.head_size()]));
    if !cfg.shared_classifier {
        entries.push(entry(
            Some("lm_head.weight".into()),
            vec![cfg.vocab_size, dim],
        ));
    }
    entries
}

/// Builds the model's tensors from a checkpoint written straight into their buffers, so the
/// weights exist once: the caller (a file reader, the wasm host, or `load_tensors` for bytes in
/// memory) asks for the next [`region`](Self::region), writes the file's next bytes into it and
/// reports them with [`advance`](Self::advance), until the region is empty; then
/// [`finish`](Self::finish). Each tensor owns its buffer (`Tensor::from_vec` takes the Vec
/// without copying).
pub struct WeightLoader {
    cfg: CheckpointConfig,
    entries: Vec<Entry>,
    /// Index of the entry being filled (`entries.len()` once complete).
    index: usize,
    /// Its buffer, allocated when the entry becomes current.
    current: Vec<f32>,
    /// Bytes of `current` written so far.
    filled: usize,
    tensors: HashMap<String, Tensor>,
    device: Device,
}

impl std::fmt::Debug for WeightLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightLoader")
            .field("cfg", &self.cfg)
            .field("index", &self.index)
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl WeightLoader {
    /// Validates the header (the file's first 28 bytes) against the file's size.
    pub fn new(header: &[u8], file_len: u64, device: &Device) -> Result<Self> {
        let cfg = parse_header_for_size(header, file_len)?;
        let entries = layout(&cfg);
        let mut loader = Self {
            cfg,
            entries,
            index: 0,
            current: Vec::new(),
            filled: 0,
            tensors: HashMap::new(),
            device: device.clone(),
        };
        loader.start_entry()?;
        Ok(loader)
    }

    pub fn config(&self) -> &CheckpointConfig {
        &self.cfg
    }

    fn start_entry(&mut self) -> Result<()> {
        self.filled = 0;
        self.current = match self.entries.get(self.index) {
            Some(entry) => {
                let mut buffer = Vec::new();
                buffer.try_reserve_exact(entry.count).map_err(|_| {
                    EngineError::Internal(format!(
                        "cannot allocate {} bytes for the checkpoint's weights",
                        4 * entry.count as u64
                    ))
                })?;
                // Zeroed memory from a fresh allocation costs no page until written.
                buffer.resize(entry.count, 0.0);
                buffer
            }
            None => Vec::new(),
        };
        Ok(())
    }

    /// The next bytes of the file to write (at most [`MAX_REGION_BYTES`]); empty once every
    /// weight has been written.
    pub fn region(&mut self) -> &mut [u8] {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(self.current.as_mut_slice());
        let rest = &mut bytes[self.filled..];
        let len = rest.len().min(MAX_REGION_BYTES);
        &mut rest[..len]
    }

    /// Records that the first `written` bytes of [`region`](Self::region) hold the file's next
    /// bytes.
    pub fn advance(&mut self, written: usize) -> Result<()> {
        let available = self.region().len();
        if written > available {
            return Err(EngineError::InvalidArgument(format!(
                "{written} bytes written into a region of {available}"
            )));
        }
        self.filled += written;
        if self.filled == 4 * self.current.len() && self.index < self.entries.len() {
            self.complete_entry()?;
        }
        Ok(())
    }

    fn complete_entry(&mut self) -> Result<()> {
        let mut values = std::mem::take(&mut self.current);
        // The file is little-endian; the bytes went straight into the f32s.
        if cfg!(target_endian = "big") {
            for v in values.iter_mut() {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
        let entry = &self.entries[self.index];
        if let Some(name) = &entry.name {
            let tensor = Tensor::from_vec(values, entry.shape.as_slice(), &self.device)?;
            self.tensors.insert(name.clone(), tensor);
        }
        self.index += 1;
        self.start_entry()
    }

    /// Whether every weight has been written.
    pub fn is_complete(&self) -> bool {
        self.index == self.entries.len()
    }

    /// The config and the named tensors `model::Transformer` takes (the shared classifier is
    /// the embedding tensor itself; the RoPE tables are computed, as run.c does).
    pub fn finish(mut self) -> Result<(CheckpointConfig, HashMap<String, Tensor>)> {
        if !self.is_complete() {
            let written = HEADER_BYTES as u64
                + 4 * self.entries[..self.index]
                    .iter()
                    .map(|e| e.count as u64)
                    .sum::<u64>()
                + self.filled as u64;
            return Err(invalid(format!(
                "checkpoint truncated: got {written} of {} bytes",
                self.cfg.expected_bytes()
            )));
        }
        if self.cfg.shared_classifier {
            let embedding = self
                .tensors
                .get("model.embed_tokens.weight")
                .ok_or_else(|| EngineError::Internal("embedding missing".into()))?
                .clone();
            self.tensors.insert("lm_head.weight".into(), embedding);
        }
        let (cos, sin) = rope_tables(&self.cfg, &self.device)?;
        self.tensors.insert("freq_cis_real".into(), cos);
        self.tensors.insert("freq_cis_imag".into(), sin);
        Ok((self.cfg, self.tensors))
    }

    /// Reads the rest of the file (after the header) from `reader` into the weights; a file
    /// that ends early or has bytes left over is an InvalidCheckpoint.
    pub fn read_from(
        mut self,
        reader: &mut impl Read,
    ) -> Result<(CheckpointConfig, HashMap<String, Tensor>)> {
        loop {
            let region = self.region();
            if region.is_empty() {
                break;
            }
            let n = read_some(reader, region)?;
            if n == 0 {
                return self.finish(); // reports how much is missing
            }
            self.advance(n)?;
        }
        let mut extra = [0u8; 1];
        if read_some(reader, &mut extra)? != 0 {
            return Err(invalid(format!(
                "file is longer than the {} bytes its header implies (did it change while loading?)",
                self.cfg.expected_bytes()
            )));
        }
        self.finish()
    }
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("cannot read the checkpoint: {e}"))),
        }
    }
}

/// Parses a whole checkpoint in memory into named tensors (see [`WeightLoader::finish`]).
pub fn load_tensors(
    bytes: &[u8],
    device: &Device,
) -> Result<(CheckpointConfig, HashMap<String, Tensor>)> {
    let header = &bytes[..bytes.len().min(HEADER_BYTES)];
    let loader = WeightLoader::new(header, bytes.len() as u64, device)?;
    let mut rest = bytes.get(HEADER_BYTES..).unwrap_or(&[]);
    loader.read_from(&mut rest)
}

/// Reads a checkpoint file straight into the tensors' buffers (the weights exist once).
pub fn load_tensors_from_file(
    path: &std::path::Path,
    device: &Device,
) -> Result<(CheckpointConfig, HashMap<String, Tensor>)> {
    let cannot = |e: std::io::Error| invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let file_len = file.metadata().map_err(cannot)?.len();
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = read_some(&mut file, &mut header[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    // A file shorter than its header: report the bytes actually there.
    let size = if got < HEADER_BYTES {
        got as u64
    } else {
        file_len
    };
    let loader = WeightLoader::new(&header[..got], size, device)?;
    loader.read_from(&mut file)
}
