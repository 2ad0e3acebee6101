//! The transformer's weights as a typed struct: one field per tensor, one [`LayerWeights`] per
//! layer, in place of tensors looked up by name. `checkpoint::loader` fills it; `transformer` reads it.

use std::sync::Arc;

use candle_core::{DType, Storage, Tensor};

use crate::checkpoint::header::CheckpointConfig;
use crate::error::{EngineError, Result};
use crate::q4k_kernel::PackedQ4K;

/// A weight matrix: f32, or int8 values (a u8 tensor read as i8) with one f32 scale per
/// group of `group_size` values (Q8_0, Q4_0, Q6_K) and, for Q4_K, one f32 offset per group
/// too: `value = q * scale - offset`; or Q4_K kept packed ([`PackedQ4K`], the same products).
#[derive(Debug, Clone)]
pub enum Matrix {
    F32(Tensor),
    Q8 {
        values: Tensor,
        scales: Tensor,
        offsets: Option<Tensor>,
    },
    Q4K(Arc<PackedQ4K>),
}

/// The seven matrices of a layer, in run.c's file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerMatrix {
    Wq,
    Wk,
    Wv,
    Wo,
    W1,
    W2,
    W3,
}

impl LayerMatrix {
    pub const ALL: [LayerMatrix; 7] = [
        LayerMatrix::Wq,
        LayerMatrix::Wk,
        LayerMatrix::Wv,
        LayerMatrix::Wo,
        LayerMatrix::W1,
        LayerMatrix::W2,
        LayerMatrix::W3,
    ];

    /// The matrix's shape (rows x columns) for `cfg`.
    pub fn shape(self, cfg: &CheckpointConfig) -> [usize; 2] {
        cfg.layer_matrix_shapes()[self as usize]
    }
}

/// The attention tensors some architectures add to llama's (all f32): qwen2's q/k/v biases
/// (added after the projections) and qwen3's per-head q/k RMSNorm weights (`head_size` each,
/// applied to every head before RoPE).
#[derive(Debug, Clone, Default)]
pub struct LayerExtras {
    pub q_bias: Option<Tensor>,
    pub k_bias: Option<Tensor>,
    pub v_bias: Option<Tensor>,
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

/// One layer: the attention and feed-forward matrices and their rmsnorm weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub rms_att: Tensor,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    pub wo: Matrix,
    pub rms_ffn: Tensor,
    /// The FFN's gate (w1), down (w2) and up (w3) projections.
    pub w1: Matrix,
    pub w2: Matrix,
    pub w3: Matrix,
    pub extras: LayerExtras,
}

impl LayerWeights {
    pub fn matrix(&self, which: LayerMatrix) -> &Matrix {
        match which {
            LayerMatrix::Wq => &self.wq,
            LayerMatrix::Wk => &self.wk,
            LayerMatrix::Wv => &self.wv,
            LayerMatrix::Wo => &self.wo,
            LayerMatrix::W1 => &self.w1,
            LayerMatrix::W2 => &self.w2,
            LayerMatrix::W3 => &self.w3,
        }
    }
}

/// Every weight of a llama2.c checkpoint (the RoPE tables are computed, as run.c does). A shared
/// classifier is the embedding's tensors again (a candle tensor clone shares its storage).
#[derive(Debug, Clone)]
pub struct TransformerWeights {
    pub embedding: Matrix,
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,
    pub classifier: Matrix,
}

impl TransformerWeights {
    /// An Internal error unless every tensor has the shape and type `cfg` implies (the
    /// forward pass indexes the weights' storage by those sizes).
    pub fn check(&self, cfg: &CheckpointConfig) -> Result<()> {
        if self.layers.len() != cfg.n_layers {
            return Err(EngineError::Internal(format!(
                "{} layers of weights for a config of {}",
                self.layers.len(),
                cfg.n_layers
            )));
        }
        let vocab = [cfg.vocab_size, cfg.dim];
        check_matrix(&self.embedding, &vocab, cfg.group_size, "embedding")?;
        check_matrix(&self.classifier, &vocab, cfg.group_size, "classifier")?;
        check_tensor(&self.norm, &[cfg.dim], DType::F32, "final norm")?;
        for layer in &self.layers {
            check_tensor(&layer.rms_att, &[cfg.dim], DType::F32, "attention norm")?;
            check_tensor(&layer.rms_ffn, &[cfg.dim], DType::F32, "ffn norm")?;
            let e = &layer.extras;
            let kv = cfg.kv_dim();
            for (t, len, what) in [
                (&e.q_bias, cfg.q_dim(), "q bias"),
                (&e.k_bias, kv, "k bias"),
                (&e.v_bias, kv, "v bias"),
                (&e.q_norm, cfg.head_size(), "q norm"),
                (&e.k_norm, cfg.head_size(), "k norm"),
            ] {
                if let Some(t) = t {
                    check_tensor(t, &[len], DType::F32, what)?;
                }
            }
            for m in LayerMatrix::ALL {
                check_matrix(
                    layer.matrix(m),
                    &m.shape(cfg),
                    cfg.group_size,
                    "layer matrix",
                )?;
            }
        }
        Ok(())
    }
}

fn check_tensor(t: &Tensor, shape: &[usize], dtype: DType, what: &str) -> Result<()> {
    if t.dims() != shape || t.dtype() != dtype || !t.is_contiguous() {
        return Err(EngineError::Internal(format!(
            "{what} tensor is {:?} {:?}, expected contiguous {dtype:?} {shape:?}",
            t.dtype(),
            t.dims()
        )));
    }
    Ok(())
}

fn check_matrix(m: &Matrix, shape: &[usize], group_size: Option<usize>, what: &str) -> Result<()> {
    match (m, group_size) {
        // An f32 matrix in an int8 model: a GGUF file keeps matrices whose rows are not
        // whole Q8_0 blocks unquantized.
        (Matrix::F32(t), _) => check_tensor(t, shape, DType::F32, what),
        (
            Matrix::Q8 {
                values,
                scales,
                offsets,
            },
            Some(gs),
        ) => {
            if !shape.last().is_some_and(|cols| cols.is_multiple_of(gs)) {
                return Err(EngineError::Internal(format!(
                    "{what} rows of {shape:?} are not whole groups of {gs}"
                )));
            }
            check_tensor(values, shape, DType::U8, what)?;
            let groups = shape.iter().product::<usize>() / gs;
            if let Some(offsets) = offsets {
                check_tensor(offsets, &[groups], DType::F32, what)?;
            }
            check_tensor(scales, &[groups], DType::F32, what)
        }
        (Matrix::Q4K(p), Some(gs)) => {
            if [p.rows(), p.cols()] != shape || !32usize.is_multiple_of(gs) {
                return Err(EngineError::Internal(format!(
                    "{what} is a {} x {} Q4_K matrix in groups of {gs}, expected {shape:?}",
                    p.rows(),
                    p.cols()
                )));
            }
            Ok(())
        }
        _ => Err(EngineError::Internal(format!(
            "{what} is not stored as the config's group size says"
        ))),
    }
}

/// The tensor's contiguous CPU storage as a slice of `T` (f32 weights, or u8 read as i8).
fn with_slice<T: candle_core::WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| EngineError::Internal("weight tensor is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<T>()?[start..end])),
        _ => Err(EngineError::Internal(
            "weight tensor is not on the CPU".into(),
        )),
    }
}

/// Runs `f` on the tensor's contiguous f32 storage.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_slice::<f32, R>(t, f)
}

/// Runs `f` on the tensor's contiguous u8 storage read as i8 (int8 weights).
pub fn with_i8<R>(t: &Tensor, f: impl FnOnce(&[i8]) -> R) -> Result<R> {
    with_slice::<u8, R>(t, |bytes| f(bytemuck::cast_slice(bytes)))
}
