//! Reader for llama2.c checkpoints: run.c's f32 layout ("version 0": a 28-byte header), including
//! grouped-query attention (`n_kv_heads < n_heads`) and a separate classifier (negative
//! `vocab_size`), and runq.c's int8 layout ("version 2": a 256-byte header starting with the
//! magic `ak42`, weights in Q8_0 groups; see ABI.md, "Checkpoint formats"). The magic number
//! tells them apart: no valid version-0 header starts with it (its `dim` would be 1.6e9).

use std::io::Read;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::weights::{LayerMatrix, LayerWeights, Matrix, TransformerWeights};

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
/// Upper bounds that keep every size computation far from overflow and reject garbage headers.
const MAX_DIM: usize = 1 << 16;
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
}

impl CheckpointConfig {
    /// The header as the JSON object of ABI.md's `ec_model_info`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a config always serialises")
    }

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

    /// The number of values of each matrix stored in Q8_0 by a version-2 file, in file order
    /// (embedding, wq, wk, wv, wo, w1, w2, w3 for every layer, then the classifier if separate).
    pub fn quantized_counts(&self) -> Vec<u64> {
        let vocab = self.vocab_size as u64;
        let mut counts = vec![vocab * self.dim as u64];
        for m in LayerMatrix::ALL {
            let [rows, cols] = m.shape(self);
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

fn invalid(msg: String) -> EngineError {
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

/// How one run of the weight section is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    F32,
    /// Int8 values, kept as a u8 tensor (candle has no i8) and read back as i8.
    I8,
}

/// Where a run of the weight section goes in [`TransformerWeights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Embedding,
    AttNorm(usize),
    FfnNorm(usize),
    Layer(usize, LayerMatrix),
    FinalNorm,
    Classifier,
}

/// One run of values of the weight section, in file order.
struct Entry {
    /// `None` for the file's freq_cis tables, which are read and dropped (the transformer
    /// recomputes them, as run.c does).
    slot: Option<Slot>,
    /// Whether this run is the f32 group scales of an int8 matrix (its values come just before).
    scales: bool,
    shape: Vec<usize>,
    count: usize,
    kind: Kind,
}

impl Entry {
    fn new(slot: Option<Slot>, shape: Vec<usize>, kind: Kind) -> Self {
        Self {
            count: shape.iter().product(),
            slot,
            scales: false,
            shape,
            kind,
        }
    }

    fn f32(slot: Slot, shape: Vec<usize>) -> Self {
        Self::new(Some(slot), shape, Kind::F32)
    }

    fn bytes(&self) -> u64 {
        match self.kind {
            Kind::F32 => 4 * self.count as u64,
            Kind::I8 => self.count as u64,
        }
    }
}

/// The shape of each layer matrix, in run.c's order.
fn layer_matrices(cfg: &CheckpointConfig) -> [(LayerMatrix, Vec<usize>); 7] {
    LayerMatrix::ALL.map(|m| (m, m.shape(cfg).to_vec()))
}

/// The weight section's layout for `cfg`, in file order.
fn layout(cfg: &CheckpointConfig) -> Vec<Entry> {
    match cfg.group_size {
        None => layout_f32(cfg),
        Some(gs) => layout_q8(cfg, gs),
    }
}

fn layout_f32(cfg: &CheckpointConfig) -> Vec<Entry> {
    let (dim, layers) = (cfg.dim, cfg.n_layers);
    let mut entries = vec![Entry::f32(Slot::Embedding, vec![cfg.vocab_size, dim])];
    let [wq, wk, wv, wo, w1, w2, w3] = layer_matrices(cfg);
    entries.extend((0..layers).map(|i| Entry::f32(Slot::AttNorm(i), vec![dim])));
    for (m, shape) in [wq, wk, wv, wo] {
        entries.extend((0..layers).map(|i| Entry::f32(Slot::Layer(i, m), shape.clone())));
    }
    entries.extend((0..layers).map(|i| Entry::f32(Slot::FfnNorm(i), vec![dim])));
    for (m, shape) in [w1, w2, w3] {
        entries.extend((0..layers).map(|i| Entry::f32(Slot::Layer(i, m), shape.clone())));
    }
    entries.push(Entry::f32(Slot::FinalNorm, vec![dim]));
    // freq_cis_real + freq_cis_imag (seq_len x head_size/2 each).
    entries.push(Entry::new(
        None,
        vec![cfg.seq_len * cfg.head_size()],
        Kind::F32,
    ));
    if !cfg.shared_classifier {
        entries.push(Entry::f32(Slot::Classifier, vec![cfg.vocab_size, dim]));
    }
    entries
}

/// export.py's `version2_export` order: the f32 norms first, then every matrix as its int8
/// values followed by its f32 group scales. No RoPE tables.
fn layout_q8(cfg: &CheckpointConfig, gs: usize) -> Vec<Entry> {
    let (dim, layers) = (cfg.dim, cfg.n_layers);
    let mut entries: Vec<Entry> = (0..layers)
        .map(|i| Entry::f32(Slot::AttNorm(i), vec![dim]))
        .chain((0..layers).map(|i| Entry::f32(Slot::FfnNorm(i), vec![dim])))
        .collect();
    entries.push(Entry::f32(Slot::FinalNorm, vec![dim]));
    let mut quantized = |slot: Slot, shape: Vec<usize>| {
        let groups = shape.iter().product::<usize>() / gs;
        entries.push(Entry::new(Some(slot), shape, Kind::I8));
        entries.push(Entry {
            scales: true,
            ..Entry::f32(slot, vec![groups])
        });
    };
    quantized(Slot::Embedding, vec![cfg.vocab_size, dim]);
    for (m, shape) in layer_matrices(cfg) {
        for i in 0..layers {
            quantized(Slot::Layer(i, m), shape.clone());
        }
    }
    if !cfg.shared_classifier {
        quantized(Slot::Classifier, vec![cfg.vocab_size, dim]);
    }
    entries
}

/// A matrix's tensors as they arrive: the values, then (int8) the scales.
#[derive(Default)]
struct MatrixParts {
    values: Option<Tensor>,
    scales: Option<Tensor>,
}

impl MatrixParts {
    fn set(&mut self, scales: bool, tensor: Tensor) {
        if scales {
            self.scales = Some(tensor);
        } else {
            self.values = Some(tensor);
        }
    }

    fn build(self, quantized: bool) -> Result<Matrix> {
        let missing = || EngineError::Internal("a checkpoint matrix is missing".into());
        let values = self.values.ok_or_else(missing)?;
        Ok(if quantized {
            Matrix::Q8 {
                values,
                scales: self.scales.ok_or_else(missing)?,
            }
        } else {
            Matrix::F32(values)
        })
    }
}

/// The tensors loaded so far, in their typed places.
#[derive(Default)]
struct Parts {
    embedding: MatrixParts,
    att_norms: Vec<Option<Tensor>>,
    ffn_norms: Vec<Option<Tensor>>,
    layers: Vec<[MatrixParts; 7]>,
    norm: Option<Tensor>,
    classifier: MatrixParts,
}

impl Parts {
    fn new(layers: usize) -> Self {
        Self {
            att_norms: vec![None; layers],
            ffn_norms: vec![None; layers],
            layers: (0..layers).map(|_| Default::default()).collect(),
            ..Default::default()
        }
    }

    fn set(&mut self, slot: Slot, scales: bool, tensor: Tensor) {
        match slot {
            Slot::Embedding => self.embedding.set(scales, tensor),
            Slot::AttNorm(i) => self.att_norms[i] = Some(tensor),
            Slot::FfnNorm(i) => self.ffn_norms[i] = Some(tensor),
            Slot::Layer(i, m) => self.layers[i][m as usize].set(scales, tensor),
            Slot::FinalNorm => self.norm = Some(tensor),
            Slot::Classifier => self.classifier.set(scales, tensor),
        }
    }

    fn build(self, cfg: &CheckpointConfig) -> Result<TransformerWeights> {
        let q8 = cfg.group_size.is_some();
        let missing = || EngineError::Internal("a checkpoint norm is missing".into());
        let embedding = self.embedding.build(q8)?;
        let classifier = if cfg.shared_classifier {
            embedding.clone()
        } else {
            self.classifier.build(q8)?
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        let norms = self.att_norms.into_iter().zip(self.ffn_norms);
        for ((rms_att, rms_ffn), matrices) in norms.zip(self.layers) {
            let [wq, wk, wv, wo, w1, w2, w3] = matrices.map(|m| m.build(q8));
            layers.push(LayerWeights {
                rms_att: rms_att.ok_or_else(missing)?,
                wq: wq?,
                wk: wk?,
                wv: wv?,
                wo: wo?,
                rms_ffn: rms_ffn.ok_or_else(missing)?,
                w1: w1?,
                w2: w2?,
                w3: w3?,
            });
        }
        Ok(TransformerWeights {
            embedding,
            layers,
            norm: self.norm.ok_or_else(missing)?,
            classifier,
        })
    }
}

/// The buffer of the entry being filled.
enum Buffer {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

impl Buffer {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::F32(v) => bytemuck::cast_slice_mut(v.as_mut_slice()),
            Buffer::U8(v) => v.as_mut_slice(),
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Buffer::F32(v) => 4 * v.len(),
            Buffer::U8(v) => v.len(),
        }
    }
}

/// A zeroed buffer of `count` elements, or an Internal error when memory runs out.
fn zeroed<T: Clone + Default>(count: usize) -> Result<Vec<T>> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(count).map_err(|_| {
        EngineError::Internal(format!(
            "cannot allocate {} bytes for the checkpoint's weights",
            std::mem::size_of::<T>() as u64 * count as u64
        ))
    })?;
    // Zeroed memory from a fresh allocation costs no page until written.
    buffer.resize(count, T::default());
    Ok(buffer)
}

/// Builds the model's tensors from a checkpoint written straight into their buffers, so the
/// weights exist once: the caller (a file reader, the wasm host, or `load_weights` for bytes in
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
    current: Buffer,
    /// Bytes of `current` written so far.
    filled: usize,
    parts: Parts,
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
    /// Validates the header against the file's size. `header` is the file's first bytes: at
    /// least the header (28 bytes for f32, 256 for int8; [`MAX_HEADER_BYTES`] suffices for
    /// both) unless the file is shorter. Bytes past the header are taken as the start of the
    /// weights, so the first [`region`](Self::region) continues right after `header`.
    pub fn new(header: &[u8], file_len: u64, device: &Device) -> Result<Self> {
        let cfg = parse_header_for_size(header, file_len)?;
        let entries = layout(&cfg);
        let start = cfg.header_bytes();
        let mut loader = Self {
            parts: Parts::new(cfg.n_layers),
            cfg,
            entries,
            index: 0,
            current: Buffer::F32(Vec::new()),
            filled: 0,
            device: device.clone(),
        };
        loader.start_entry()?;
        let mut rest = header.get(start..).unwrap_or(&[]);
        while !rest.is_empty() {
            let region = loader.region();
            let n = region.len().min(rest.len());
            if n == 0 {
                return Err(invalid(format!(
                    "file is longer than the {} bytes its header implies",
                    loader.cfg.expected_bytes()
                )));
            }
            region[..n].copy_from_slice(&rest[..n]);
            loader.advance(n)?;
            rest = &rest[n..];
        }
        Ok(loader)
    }

    pub fn config(&self) -> &CheckpointConfig {
        &self.cfg
    }

    fn start_entry(&mut self) -> Result<()> {
        self.filled = 0;
        self.current = match self.entries.get(self.index) {
            Some(entry) if entry.kind == Kind::I8 => Buffer::U8(zeroed(entry.count)?),
            Some(entry) => Buffer::F32(zeroed(entry.count)?),
            None => Buffer::F32(Vec::new()),
        };
        Ok(())
    }

    /// The next bytes of the file to write (at most [`MAX_REGION_BYTES`]); empty once every
    /// weight has been written.
    pub fn region(&mut self) -> &mut [u8] {
        let bytes = self.current.bytes_mut();
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
        if self.filled == self.current.byte_len() && self.index < self.entries.len() {
            self.complete_entry()?;
        }
        Ok(())
    }

    fn complete_entry(&mut self) -> Result<()> {
        let buffer = std::mem::replace(&mut self.current, Buffer::F32(Vec::new()));
        let entry = &self.entries[self.index];
        if let Some(slot) = entry.slot {
            let shape = entry.shape.as_slice();
            let tensor = match buffer {
                Buffer::F32(mut values) => {
                    // The file is little-endian; the bytes went straight into the f32s.
                    if cfg!(target_endian = "big") {
                        for v in values.iter_mut() {
                            *v = f32::from_bits(u32::from_le(v.to_bits()));
                        }
                    }
                    Tensor::from_vec(values, shape, &self.device)?
                }
                Buffer::U8(values) => Tensor::from_vec(values, shape, &self.device)?,
            };
            self.parts.set(slot, entry.scales, tensor);
        }
        self.index += 1;
        self.start_entry()
    }

    /// Whether every weight has been written.
    pub fn is_complete(&self) -> bool {
        self.index == self.entries.len()
    }

    /// The config and the typed weights (a shared classifier is the embedding's tensors).
    pub fn finish(self) -> Result<(CheckpointConfig, TransformerWeights)> {
        if !self.is_complete() {
            let written = self.cfg.header_bytes() as u64
                + self.entries[..self.index]
                    .iter()
                    .map(Entry::bytes)
                    .sum::<u64>()
                + self.filled as u64;
            return Err(invalid(format!(
                "checkpoint truncated: got {written} of {} bytes",
                self.cfg.expected_bytes()
            )));
        }
        let weights = self.parts.build(&self.cfg)?;
        Ok((self.cfg, weights))
    }

    /// Reads the rest of the file (after the header) from `reader` into the weights; a file
    /// that ends early or has bytes left over is an InvalidCheckpoint.
    pub fn read_from(
        mut self,
        reader: &mut impl Read,
    ) -> Result<(CheckpointConfig, TransformerWeights)> {
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

/// Parses a whole checkpoint in memory into its weights (see [`WeightLoader::finish`]).
pub fn load_weights(
    bytes: &[u8],
    device: &Device,
) -> Result<(CheckpointConfig, TransformerWeights)> {
    let split = bytes.len().min(MAX_HEADER_BYTES);
    let (header, mut rest) = bytes.split_at(split);
    let loader = WeightLoader::new(header, bytes.len() as u64, device)?;
    loader.read_from(&mut rest)
}

/// Reads a checkpoint file straight into the tensors' buffers (the weights exist once).
pub fn load_weights_from_file(
    path: &std::path::Path,
    device: &Device,
) -> Result<(CheckpointConfig, TransformerWeights)> {
    let cannot = |e: std::io::Error| invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let file_len = file.metadata().map_err(cannot)?.len();
    let mut header = [0u8; MAX_HEADER_BYTES];
    let mut got = 0;
    while got < MAX_HEADER_BYTES {
        let n = read_some(&mut file, &mut header[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    // A file shorter than the header buffer: report the bytes actually there.
    let size = if got < MAX_HEADER_BYTES {
        got as u64
    } else {
        file_len
    };
    let loader = WeightLoader::new(&header[..got], size, device)?;
    loader.read_from(&mut file)
}
