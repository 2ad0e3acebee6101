//! Streams a checkpoint's weight section into the typed weights, each tensor's buffer written
//! once, from a reader, bytes in memory or a host writing regions (the wasm guest).

use std::io::Read;

use candle_core::{Device, Tensor};

use super::header::{
    invalid, parse_header_for_size, CheckpointConfig, MAX_HEADER_BYTES, MAX_REGION_BYTES,
};
use super::layout::{layout, Entry, Kind, Slot};
use crate::cache_line;
use crate::error::{EngineError, Result};
use crate::weights::{LayerWeights, Matrix, TransformerWeights};

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
                offsets: None,
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
                extras: Default::default(),
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

/// The buffer of the entry being filled: its elements start `skip` elements in, on a cache
/// line ([`zeroed_aligned`]).
enum Buffer {
    F32(Vec<f32>, usize),
    U8(Vec<u8>, usize),
}

impl Buffer {
    fn empty() -> Self {
        Buffer::F32(Vec::new(), 0)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::F32(v, skip) => bytemuck::cast_slice_mut(&mut v[*skip..]),
            Buffer::U8(v, skip) => &mut v[*skip..],
        }
    }

    fn byte_len(&self) -> usize {
        match self {
            Buffer::F32(v, skip) => 4 * (v.len() - skip),
            Buffer::U8(v, skip) => v.len() - skip,
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

/// [`zeroed`] with room for `count` elements starting on a cache line ([`crate::cache_line`]):
/// the buffer and how many leading elements to skip (the tensor is a view past them).
fn zeroed_aligned<T: Clone + Default>(count: usize) -> Result<(Vec<T>, usize)> {
    let mut buffer = zeroed::<T>(count + cache_line::padding::<T>())?;
    let skip = cache_line::skip(&buffer);
    buffer.truncate(skip + count);
    Ok((buffer, skip))
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
            current: Buffer::empty(),
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
            Some(entry) if entry.kind == Kind::I8 => {
                let (values, skip) = zeroed_aligned(entry.count)?;
                Buffer::U8(values, skip)
            }
            Some(entry) => {
                let (values, skip) = zeroed_aligned(entry.count)?;
                Buffer::F32(values, skip)
            }
            None => Buffer::empty(),
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
        let buffer = std::mem::replace(&mut self.current, Buffer::empty());
        let entry = &self.entries[self.index];
        if let Some(slot) = entry.slot {
            let shape = entry.shape.as_slice();
            // The whole buffer, viewed past its alignment padding (no copy).
            let view = |t: Tensor, skip: usize| t.narrow(0, skip, entry.count)?.reshape(shape);
            let tensor = match buffer {
                Buffer::F32(mut values, skip) => {
                    // The file is little-endian; the bytes went straight into the f32s.
                    if cfg!(target_endian = "big") {
                        for v in values.iter_mut() {
                            *v = f32::from_bits(u32::from_le(v.to_bits()));
                        }
                    }
                    let len = values.len();
                    view(Tensor::from_vec(values, len, &self.device)?, skip)?
                }
                Buffer::U8(values, skip) => {
                    let len = values.len();
                    view(Tensor::from_vec(values, len, &self.device)?, skip)?
                }
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
