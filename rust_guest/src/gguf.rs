//! A GGUF (version 3) reader: the header's metadata, the tensor infos and the aligned data
//! section's offset, read from a file's bytes with every length checked against them (a corrupt
//! length is an error, never an allocation or a panic). Which models and tensor types the
//! engine runs is `gguf_model`'s business; this module only reads the container.
//!
//! Why not candle's `quantized::gguf_file`: it allocates every string and array at the length
//! the file claims before reading it (a corrupt 8-byte length aborts the wasm guest instead of
//! returning an error), divides by `general.alignment` unchecked (0 panics), and keeps tensors
//! and metadata in hash maps (their file order is lost). See docs/toolchain.md.

use crate::error::{EngineError, Result};

/// "GGUF" as the file's first four bytes.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The only container version read (llama.cpp writes 3 since 2023).
pub const VERSION: u32 = 3;
/// The data section's alignment unless `general.alignment` says otherwise.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Caps that reject garbage counts before anything is sized by them.
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_DEPTH: usize = 2;

/// Whether `bytes` (a file's start) is a GGUF file.
pub fn is_gguf(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && &bytes[..4] == MAGIC
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// The ggml tensor types, by their GGUF ids (names as llama.cpp prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q6_K: GgmlType = GgmlType(14);

    /// llama.cpp's name for the type ("Q4_K"), or "type N" for an id it does not know.
    pub fn name(self) -> String {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "type 4", "type 5", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
            "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
            "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
            "IQ1_M", "BF16",
        ];
        match NAMES.get(self.0 as usize) {
            Some(name) => (*name).to_string(),
            None => format!("type {}", self.0),
        }
    }

    /// (values per block, bytes per block) of the types the engine reads.
    pub fn block(self) -> Option<(u64, u64)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q8_0 => Some((32, 34)),
            GgmlType::Q4_K => Some((256, 144)),
            GgmlType::Q6_K => Some((256, 210)),
            _ => None,
        }
    }
}

/// One tensor's header entry. `dims` is row-major (outermost first): GGUF stores ggml's `ne`
/// (innermost first), reversed here, so a `[rows, columns]` matrix reads as such.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub kind: GgmlType,
    /// Offset from the data section's start.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the data section starts in the file (aligned).
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidCheckpoint(format!("GGUF: {msg}"))
}

/// A bounds-checked little-endian cursor over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                invalid(format!(
                    "truncated at byte {} reading {what} ({n} bytes)",
                    self.at
                ))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each at least `min_bytes` long: refused when the rest of the file
    /// cannot hold them, so nothing is sized by a garbage count.
    fn count(&mut self, min_bytes: u64, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_bytes.max(1)) > left {
            return Err(invalid(format!(
                "{what} = {n} does not fit in the {left} bytes left"
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<Value> {
        Ok(match kind {
            0 => Value::U8(u8::from_le_bytes(self.array(key)?)),
            1 => Value::I8(i8::from_le_bytes(self.array(key)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(invalid(format!("{key}: bool byte {other}"))),
            },
            8 => Value::String(self.string(key)?),
            9 if depth < MAX_ARRAY_DEPTH => {
                let item = self.u32(key)?;
                let n = self.count(1, key)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(invalid(format!("{key}: unknown value type {other}"))),
        })
    }
}

/// Parses the header of a GGUF file whose first bytes are `bytes` (the whole file, or at
/// least its header); `file_len` is the whole file's size, against which every tensor's
/// extent is checked.
pub fn parse_header(bytes: &[u8], file_len: u64) -> Result<GgufHeader> {
    let mut c = Cursor { bytes, at: 0 };
    if &c.array::<4>("the magic")? != MAGIC {
        return Err(invalid("not a GGUF file (no GGUF magic)".into()));
    }
    let version = c.u32("the version")?;
    if version != VERSION {
        return Err(invalid(format!(
            "version {version} is not supported (only version {VERSION})"
        )));
    }
    let n_tensors = c.u64("the tensor count")?;
    let n_kv = c.count(12, "the metadata count")?;
    let mut metadata = Vec::with_capacity(n_kv);
    for _ in 0..n_kv {
        let key = c.string("a metadata key")?;
        let kind = c.u32(&key)?;
        let value = c.value(kind, &key, 0)?;
        metadata.push((key, value));
    }
    let left = (bytes.len() - c.at) as u64;
    if n_tensors.saturating_mul(24) > left {
        return Err(invalid(format!(
            "tensor count {n_tensors} does not fit in the header"
        )));
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("a tensor name")?;
        let n_dims = c.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(invalid(format!("tensor {name} has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(c.u64(&name)?);
        }
        dims.reverse();
        let kind = GgmlType(c.u32(&name)?);
        let offset = c.u64(&name)?;
        tensors.push(TensorInfo {
            name,
            dims,
            kind,
            offset,
        });
    }
    let header = GgufHeader {
        alignment: DEFAULT_ALIGNMENT,
        data_offset: 0,
        metadata,
        tensors,
    };
    let alignment = match header.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => {
                return Err(invalid(format!(
                    "general.alignment {v:?} is not a power of two"
                )))
            }
        },
    };
    let data_offset = (c.at as u64).div_ceil(alignment) * alignment;
    Ok(GgufHeader {
        alignment,
        data_offset,
        ..header
    })
    .and_then(|h| check_extents(h, file_len))
}

/// Every tensor of a type the engine reads lies inside the file at an aligned offset.
fn check_extents(h: GgufHeader, file_len: u64) -> Result<GgufHeader> {
    for t in &h.tensors {
        if t.offset % h.alignment != 0 {
            return Err(invalid(format!(
                "tensor {} is at offset {}, not a multiple of the alignment {}",
                t.name, t.offset, h.alignment
            )));
        }
        let Some(bytes) = tensor_bytes(t) else {
            continue; // an unsupported type: `gguf_model` names it
        };
        let end = h
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(invalid(format!(
                "tensor {} ({bytes} bytes at offset {}) runs past the end of the {file_len}-byte file",
                t.name, t.offset
            )));
        }
    }
    Ok(h)
}

/// The tensor's size in bytes, for a type the engine reads whose innermost dimension is a
/// whole number of blocks (None otherwise).
pub fn tensor_bytes(t: &TensorInfo) -> Option<u64> {
    let (per_block, block_bytes) = t.kind.block()?;
    let inner = *t.dims.last()?;
    if inner % per_block != 0 {
        return None;
    }
    let mut n: u64 = 1;
    for d in &t.dims {
        n = n.checked_mul(*d)?;
    }
    (n / per_block).checked_mul(block_bytes)
}

/// The tensor's bytes in `file` (the whole file).
pub fn tensor_data<'a>(h: &GgufHeader, t: &TensorInfo, file: &'a [u8]) -> Result<&'a [u8]> {
    let bytes = tensor_bytes(t).ok_or_else(|| {
        invalid(format!(
            "tensor {} ({}, {:?}) cannot be read",
            t.name,
            t.kind.name(),
            t.dims
        ))
    })?;
    let start = h.data_offset + t.offset;
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(start + bytes).ok())
        .and_then(|(s, e)| file.get(s..e))
        .ok_or_else(|| invalid(format!("tensor {} runs past the end of the file", t.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with `kvs` metadata entries (key, type id, value bytes) and no tensors.
    fn header(n_tensors: u64, kvs: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&n_tensors.to_le_bytes());
        b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for (key, kind, value) in kvs {
            b.extend_from_slice(&(key.len() as u64).to_le_bytes());
            b.extend_from_slice(key.as_bytes());
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(value);
        }
        b
    }

    fn error(bytes: &[u8]) -> String {
        match parse_header(bytes, bytes.len() as u64) {
            Ok(h) => panic!("parsed {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn garbage_counts_and_lengths_are_errors_not_allocations() {
        assert!(error(&header(u64::MAX, &[])).contains("tensor count"));
        let mut huge_kv = header(0, &[]);
        huge_kv[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(error(&huge_kv).contains("metadata count"));
        let long_string = (u64::MAX - 3).to_le_bytes().to_vec();
        assert!(error(&header(0, &[("k", 8, long_string)])).contains("truncated"));
        let mut huge_array = 4u32.to_le_bytes().to_vec();
        huge_array.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(error(&header(0, &[("a", 9, huge_array)])).contains("does not fit"));
        let zero = 0u32.to_le_bytes().to_vec();
        assert!(error(&header(0, &[("general.alignment", 4, zero)])).contains("power of two"));
        assert!(error(b"GGUF\x02\0\0\0").contains("version 2"));
        assert!(error(b"GGML").contains("no GGUF magic"));
    }

    #[test]
    fn metadata_and_alignment_are_read_in_order() {
        let align = 64u32.to_le_bytes().to_vec();
        let mut name = 4u64.to_le_bytes().to_vec();
        name.extend_from_slice(b"tiny");
        let bytes = header(
            0,
            &[("general.alignment", 4, align), ("general.name", 8, name)],
        );
        let h = parse_header(&bytes, bytes.len() as u64).expect("a valid header");
        assert_eq!(h.alignment, 64);
        assert_eq!(h.data_offset, bytes.len().div_ceil(64) as u64 * 64);
        assert_eq!(h.metadata[1].0, "general.name");
        assert_eq!(h.get("general.name").and_then(Value::as_str), Some("tiny"));
    }

    #[test]
    fn type_names_are_llama_cpp_s() {
        assert_eq!(GgmlType(12).name(), "Q4_K");
        assert_eq!(GgmlType(14).name(), "Q6_K");
        assert_eq!(GgmlType(30).name(), "BF16");
        assert_eq!(GgmlType(99).name(), "type 99");
    }
}
