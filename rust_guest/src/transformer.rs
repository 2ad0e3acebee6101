//! The llama2.c transformer, written as run.c's `forward` over a batch of positions
//! (`forward_batch`: a prompt's prefill, hint look-ahead, sessions stepped together; one token
//! is a batch of one).
//!
//! The weights stay candle tensors (loaded by `checkpoint`); decoding borrows their contiguous
//! f32 storage and runs our own kernels (`matvec`) on it, with the activations and the KV cache
//! in preallocated buffers (`KvCache`, run.c's `RunState`): no allocation, no tensor op and no
//! thread pool per step. Why not candle's ops: one token at a time every op is tiny, and candle's
//! per-op costs (allocating outputs, dispatch, gemm's setup, rayon) plus gemm's 4-wide simd128
//! kernels made the wasm guest 3x slower than native (see docs/toolchain.md, Performance).
//! Every reduction has a fixed order, so wasm and native produce bit-identical logits.
//!
//! An int8 (version 2) checkpoint runs runq.c's forward pass: the same steps, but every matrix
//! is Q8_0 (`q8`), each matrix-vector product's input is quantized first (runq.c's
//! `quantize`), and the embedding row is dequantized on the fly.

use candle_core::Tensor;

use crate::cache_line;
use crate::checkpoint::CheckpointConfig;
use crate::error::{EngineError, Result};
use crate::matvec::{dot, matmul};
use crate::model_parts::ModelHyper;
use crate::parallel::Threads;
use crate::q4k_kernel::{kernel_bytes, matmul_q4k, Inputs, PackedQ4K};
use crate::q8::{matmul_q8, quantize_activations};
use crate::sampler::softmax;
use crate::weights::{with_f32, with_i8, LayerExtras, LayerMatrix, Matrix, TransformerWeights};

/// The weights, ready for decoding.
pub struct Transformer {
    cfg: CheckpointConfig,
    weights: TransformerWeights,
    /// RoPE tables, `seq_len x head_size/2`, row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// The threads the matrix products' rows are split across (`parallel`).
    threads: Threads,
    /// rmsnorm's epsilon (run.c's 1e-5 unless the file says).
    norm_eps: f32,
    rope_neox: bool,
}

/// One session's KV cache (run.c's `RunState` keys and values): per layer `seq_len x kv_dim`.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) keys: Vec<f32>,
    pub(crate) values: Vec<f32>,
}

/// One token of a [`Transformer::forward_batch`]: which of the call's caches it extends, the
/// token and its position, and whether its logits are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchItem {
    pub cache: usize,
    pub token: u32,
    pub pos: usize,
    pub logits: bool,
}

/// A scratch buffer of floats starting on a cache line ([`crate::cache_line`]: the batched
/// products' 64-byte input loads), a view past up to [`cache_line::padding`] floats of its
/// allocation. Its contents do not survive growing.
#[derive(Default)]
struct Activations {
    buffer: Vec<f32>,
    skip: usize,
    len: usize,
}

impl Activations {
    /// `len` floats (zeroed when newly allocated).
    fn resize(&mut self, len: usize) {
        let padding = cache_line::padding::<f32>();
        if self.buffer.len() < len + padding {
            self.buffer = vec![0.0; len + padding];
            self.skip = cache_line::skip(&self.buffer);
        }
        self.len = len;
    }
}

impl Clone for Activations {
    /// A new allocation, aligned on its own (a copied `skip` would not be).
    fn clone(&self) -> Self {
        let mut copy = Self::default();
        copy.resize(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl std::ops::Deref for Activations {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buffer[self.skip..self.skip + self.len]
    }
}

impl std::ops::DerefMut for Activations {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[self.skip..self.skip + self.len]
    }
}

/// The activations of a batch (run.c's `RunState` buffers, one row per item), reused from call
/// to call: grown when a larger batch comes, never per layer or per item.
#[derive(Clone, Default)]
pub struct Scratch {
    /// Items the buffers hold rows for.
    rows: usize,
    x: Activations,
    xb: Activations,
    xb2: Activations,
    hb: Activations,
    hb2: Activations,
    q: Activations,
    k: Activations,
    v: Activations,
    /// The heads' attention outputs (wo's input), `q_dim` wide.
    heads: Activations,
    att: Vec<f32>,
    logits: Vec<f32>,
    /// The quantized input of the next int8 matrix product, one row per item (runq.c's
    /// `xq`/`hq`; unused for f32).
    xq: Vec<i16>,
    xs: Vec<f32>,
}

impl Scratch {
    /// Room for `rows` items of `cfg`'s sizes (and `wanted` rows of logits).
    fn ensure(&mut self, cfg: &CheckpointConfig, rows: usize, wanted: usize) {
        if rows > self.rows {
            let (dim, hidden, kv, qd) = (cfg.dim, cfg.hidden_dim, cfg.kv_dim(), cfg.q_dim());
            for (buf, width) in [
                (&mut self.x, dim),
                (&mut self.xb, dim),
                (&mut self.xb2, dim),
                (&mut self.q, qd),
                (&mut self.heads, qd),
                (&mut self.hb, hidden),
                (&mut self.hb2, hidden),
                (&mut self.k, kv),
                (&mut self.v, kv),
            ] {
                buf.resize(rows * width);
            }
            // One row of scores per query head (the heads may run on different threads).
            self.att.resize(cfg.n_heads * cfg.seq_len, 0.0);
            self.rows = rows;
        }
        if self.logits.len() < wanted * cfg.vocab_size {
            self.logits.resize(wanted * cfg.vocab_size, 0.0);
        }
    }
}

/// run.c's RoPE tables: `freq = 1 / base^(i / head_size)` for even `i` (run.c's base is
/// 10000), then cos/sin of `pos * freq`. Computed with the pure-Rust `libm` so every target
/// gets the same bits.
fn rope_tables(cfg: &CheckpointConfig, base: f32) -> (Vec<f32>, Vec<f32>) {
    let head = cfg.head_size();
    let half = head / 2;
    let mut cos = Vec::with_capacity(cfg.seq_len * half);
    let mut sin = Vec::with_capacity(cfg.seq_len * half);
    for pos in 0..cfg.seq_len {
        for pair in 0..half {
            let head_dim = (2 * pair) as f32;
            let freq = 1.0f32 / libm::powf(base, head_dim / head as f32);
            let val = pos as f32 * freq;
            cos.push(libm::cosf(val));
            sin.push(libm::sinf(val));
        }
    }
    (cos, sin)
}

/// run.c's `rmsnorm`: `out = weight * x / sqrt(mean(x^2) + eps)`, summed in order.
fn rmsnorm(out: &mut [f32], x: &[f32], weight: &Tensor, eps: f32) -> Result<()> {
    let ss = x.iter().fold(0.0f32, |s, v| s + v * v) / x.len() as f32 + eps;
    let inv = 1.0 / ss.sqrt();
    with_f32(weight, |w| {
        for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
            *o = w * (inv * x);
        }
    })
}

/// NEOX-style RoPE: pairs (i, i + half) of every head rotated by the table row's angles.
#[inline(never)]
fn rope_neox(values: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for head in values.chunks_exact_mut(2 * half) {
        let (a, b) = head.split_at_mut(half);
        for (i, (v0, v1)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            let (x0, x1) = (*v0, *v1);
            *v0 = x0 * cos[i] - x1 * sin[i];
            *v1 = x0 * sin[i] + x1 * cos[i];
        }
    }
}

/// [`rmsnorm`] with `out` = `x` (the same arithmetic).
fn rmsnorm_in_place(x: &mut [f32], weight: &Tensor, eps: f32) -> Result<()> {
    let ss = x.iter().fold(0.0f32, |s, v| s + v * v) / x.len() as f32 + eps;
    let inv = 1.0 / ss.sqrt();
    with_f32(weight, |w| {
        for (x, w) in x.iter_mut().zip(w) {
            *x = w * (inv * *x);
        }
    })
}

/// Prepares `x` (`batch` rows) as the input of the next matrix products: for an int8 model,
/// runq.c's quantization of each row into `xq`/`xs` (resized to `x`'s length); nothing for f32.
/// Groups never cross a row (the group size divides the row), so quantizing the rows as one
/// vector gives each row's own quantization. Rows (`row` long) the group size does not divide
/// are left alone: only f32 matrices take them (a GGUF file keeps such matrices unquantized;
/// `TransformerWeights::check` holds every int8 matrix's columns to the group size).
fn prepare(group_size: Option<usize>, row: usize, x: &[f32], xq: &mut Vec<i16>, xs: &mut Vec<f32>) {
    if let Some(gs) = group_size.filter(|gs| row.is_multiple_of(*gs)) {
        xq.resize(x.len(), 0);
        xs.resize(x.len() / gs, 0.0);
        quantize_activations(xq, xs, x, gs);
    }
}

/// A matrix's weights, borrowed from its tensors for one product.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(&'a [f32]),
    Q8 {
        values: &'a [i8],
        scales: &'a [f32],
        offsets: Option<&'a [f32]>,
    },
    Q4K(&'a PackedQ4K),
}

/// Runs `f` on `w`'s weights.
fn with_weights<R>(w: &Matrix, f: impl FnOnce(Weights) -> R) -> Result<R> {
    match w {
        Matrix::F32(w) => with_f32(w, |w| f(Weights::F32(w))),
        Matrix::Q8 {
            values,
            scales,
            offsets,
        } => Ok(with_i8(values, |values| {
            with_f32(scales, |scales| {
                with_optional_f32(offsets.as_ref(), |offsets| {
                    f(Weights::Q8 {
                        values,
                        scales,
                        offsets,
                    })
                })
            })
        })???),
        Matrix::Q4K(p) => Ok(f(Weights::Q4K(p))),
    }
}

/// What a product reads of its input besides the activations, derived once per input (before
/// a parallel region shares it): the group sums (weights with offsets: Q4_K) and the int8
/// bytes (the packed Q4_K kernel); empty where these weights do not read them.
#[derive(Clone, Copy, Default)]
struct Derived<'q> {
    sums: &'q [f32],
    bytes: &'q [i8],
}

impl Weights<'_> {
    /// What these weights read of `input` besides its activations.
    fn derived<'q>(&self, input: &'q Quantized) -> Derived<'q> {
        match self {
            Weights::Q8 {
                offsets: Some(_), ..
            } => Derived {
                sums: input.sums(),
                bytes: &[],
            },
            Weights::Q4K(_) => Derived {
                sums: input.sums(),
                bytes: input.bytes(),
            },
            _ => Derived::default(),
        }
    }

    /// Rows `r0..r0 + rows` of `W x[b]` into `o` (`batch x rows`); `n` is a row's length,
    /// `derived` [`Weights::derived`] of the input. The same kernel per row whatever the range.
    #[allow(clippy::too_many_arguments)]
    fn rows(
        &self,
        o: &mut [f32],
        r0: usize,
        rows: usize,
        n: usize,
        input: (&[f32], &[i16], &[f32]),
        batch: usize,
        derived: Derived,
    ) {
        let (x, xq, xs) = input;
        let Derived { sums, bytes } = derived;
        match *self {
            Weights::F32(w) => matmul(o, &w[r0 * n..(r0 + rows) * n], x, batch),
            Weights::Q8 {
                values,
                scales,
                offsets,
            } => {
                let groups = xs.len() / batch.max(1);
                let (w, s) = (
                    &values[r0 * n..(r0 + rows) * n],
                    &scales[r0 * groups..(r0 + rows) * groups],
                );
                matmul_q8(o, w, s, xq, xs, batch);
                if let Some(m) = offsets {
                    let m = &m[r0 * groups..(r0 + rows) * groups];
                    subtract_offsets(o, m, sums, rows, groups);
                }
            }
            Weights::Q4K(p) => {
                debug_assert_eq!(o.len(), rows * batch.max(1));
                let inputs = Inputs {
                    xq,
                    x8: bytes,
                    xs,
                    sums,
                };
                matmul_q4k(o, p, r0, inputs, batch)
            }
        }
    }
}

/// `out[b] = W x[b]` for `batch` rows; for an int8 `W`, `x` as [`prepare`] quantized it into
/// `xq`/`xs`. The rows of `W` are split across `threads` (each output is the same kernel's
/// for that row, whichever thread computes it).
fn linear(
    threads: &Threads,
    out: &mut [f32],
    w: &Matrix,
    x: &[f32],
    input: &Quantized,
    batch: usize,
) -> Result<()> {
    let (xq, xs) = (input.xq, input.xs);
    let n = x.len() / batch.max(1);
    with_weights(w, |w| {
        let derived = w.derived(input);
        threads.split_rows(out, batch, n, |r0, rows, o| {
            w.rows(o, r0, rows, n, (x, xq, xs), batch, derived)
        })
    })
}

/// [`linear`] of one input (`batch` 1) by three matrices (a layer's wq, wk, wv) in one
/// parallel region: the same kernels per row, so the same bits.
fn linear3(
    threads: &Threads,
    outs: [&mut [f32]; 3],
    ws: [&Matrix; 3],
    x: &[f32],
    input: &Quantized,
) -> Result<()> {
    let (n, xq, xs) = (x.len(), input.xq, input.xs);
    with_weights(ws[0], |a| {
        with_weights(ws[1], |b| {
            with_weights(ws[2], |c| {
                let ws = [a, b, c];
                let derived = ws.map(|w| w.derived(input));
                threads.split_rows_many(outs, n, |i, r0, rows, o| {
                    ws[i].rows(o, r0, rows, n, (x, xq, xs), 1, derived[i])
                })
            })
        })
    })???;
    Ok(())
}

/// SwiGLU's `hb = SiLU(w1 x) * (w3 x)` for one input (`batch` 1) in one parallel region: each
/// part computes its rows of both products, then their SiLU product (elementwise, as
/// [`silu_mul`] on the whole vectors).
#[allow(clippy::too_many_arguments)]
fn swiglu(
    threads: &Threads,
    hb: &mut [f32],
    hb2: &mut [f32],
    w1: &Matrix,
    w3: &Matrix,
    x: &[f32],
    input: &Quantized,
) -> Result<()> {
    let (n, xq, xs) = (x.len(), input.xq, input.xs);
    with_weights(w1, |a| {
        with_weights(w3, |b| {
            let (sa, sb) = (a.derived(input), b.derived(input));
            threads.split_rows_pair(hb, hb2, n, |r0, rows, g, u| {
                a.rows(g, r0, rows, n, (x, xq, xs), 1, sa);
                b.rows(u, r0, rows, n, (x, xq, xs), 1, sb);
                silu_mul(g, u);
            })
        })
    })??;
    Ok(())
}

/// `g = SiLU(g) * u`, as run.c; libm's expf gives the same bits on every target.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn silu_mul(g: &mut [f32], u: &[f32]) {
    for (g, u) in g.iter_mut().zip(u) {
        *g = *g * (1.0 / (1.0 + libm::expf(-*g))) * u;
    }
}

/// Elements [`silu_mul`] takes the exponentials of at a time (a stack buffer).
#[cfg(target_arch = "x86_64")]
const SILU_BLOCK: usize = 256;

/// `g = SiLU(g) * u`, as run.c, with libm's `expf(-g)` taken 8 lanes at a time by
/// [`crate::vector_exp::exp_shifted`] (shift 0: `-g - 0` is `-g`): checked equal to
/// `libm::expf` on every one of the 2^32 floats (the ignored test
/// `vector_exp::tests::every_float_is_libms_expf`), so the same bits as the scalar loop the
/// other targets keep. Scalar, the exponentials were ~2.5% of a native 15M verification.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn silu_mul(g: &mut [f32], u: &[f32]) {
    let mut e = [0.0f32; SILU_BLOCK];
    for (g, u) in g.chunks_mut(SILU_BLOCK).zip(u.chunks(SILU_BLOCK)) {
        let e = &mut e[..g.len()];
        for (e, g) in e.iter_mut().zip(g.iter()) {
            *e = -*g;
        }
        crate::vector_exp::exp_shifted(e, 0.0);
        for ((g, u), e) in g.iter_mut().zip(u).zip(e.iter()) {
            *g = *g * (1.0 / (1.0 + e)) * u;
        }
    }
}

/// [`with_f32`] on a tensor that may be absent.
fn with_optional_f32<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> R) -> Result<R> {
    match t {
        Some(t) => with_f32(t, |s| f(Some(s))),
        None => Ok(f(None)),
    }
}

/// A [`prepare`]d input of the matrix products: its quantized activations and scales, and
/// what some kernels derive from them (group sums, int8 bytes) once a matrix asks, computed
/// once for all the products sharing the input (wq/wk/wv, w1/w3).
struct Quantized<'a> {
    xq: &'a [i16],
    xs: &'a [f32],
    sums: std::cell::OnceCell<Vec<f32>>,
    bytes: std::cell::OnceCell<Vec<i8>>,
}

impl<'a> Quantized<'a> {
    fn new(xq: &'a [i16], xs: &'a [f32]) -> Self {
        Self {
            xq,
            xs,
            sums: std::cell::OnceCell::new(),
            bytes: std::cell::OnceCell::new(),
        }
    }

    fn sums(&self) -> &[f32] {
        self.sums.get_or_init(|| group_sums(self.xq, self.xs))
    }

    fn bytes(&self) -> &[i8] {
        self.bytes.get_or_init(|| kernel_bytes(self.xq))
    }
}

/// Per group of each quantized input: `sum(xq) as f32 * xs` (the integer sum is exact).
#[inline(never)]
fn group_sums(xq: &[i16], xs: &[f32]) -> Vec<f32> {
    let gs = xq.len() / xs.len().max(1);
    xq.chunks_exact(gs.max(1))
        .zip(xs)
        .map(|(q, s)| q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32 * s)
        .collect()
}

/// The offsets' share of `W x` for a matrix of `value = q * scale - offset` (Q4_K), after the
/// int8 products: `out[b][r] -= sum over g of offsets[r][g] * sums[b][g]`, summed in group
/// order by scalar code, so every build (and every thread split) computes the same bits.
/// `out` is `batch x rows`, `offsets` `rows x groups`, `sums` `batch x groups`.
#[inline(never)]
fn subtract_offsets(out: &mut [f32], offsets: &[f32], sums: &[f32], rows: usize, groups: usize) {
    if rows == 0 || groups == 0 {
        return;
    }
    for (o, sums) in out.chunks_exact_mut(rows).zip(sums.chunks_exact(groups)) {
        for (o, m) in o.iter_mut().zip(offsets.chunks_exact(groups)) {
            let mut c = 0.0f32;
            for (m, s) in m.iter().zip(sums) {
                c += m * s;
            }
            *o -= c;
        }
    }
}

impl Transformer {
    /// Builds the model from `checkpoint`'s weights.
    pub fn new(cfg: CheckpointConfig, weights: TransformerWeights) -> Result<Self> {
        Self::with_hyper(cfg, weights, ModelHyper::default())
    }

    /// Builds the model with a file's RoPE base and rmsnorm epsilon.
    pub fn with_hyper(
        cfg: CheckpointConfig,
        weights: TransformerWeights,
        hyper: ModelHyper,
    ) -> Result<Self> {
        let dim = cfg.dim;
        if cfg.n_kv_heads == 0 || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
            return Err(EngineError::Internal(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                cfg.n_heads, cfg.n_kv_heads
            )));
        }
        if let Some(gs) = cfg.group_size {
            // The embedding and classifier are int8 in such a model (hidden-long inputs may be
            // f32 products: `prepare`).
            if gs == 0 || !dim.is_multiple_of(gs) {
                return Err(EngineError::Internal(format!(
                    "group size {gs} does not divide dim {dim}"
                )));
            }
        }
        weights.check(&cfg)?;
        let (cos, sin) = rope_tables(&cfg, hyper.rope_base);
        Ok(Self {
            weights,
            cos,
            sin,
            cfg,
            threads: Threads::one(),
            norm_eps: hyper.norm_eps,
            rope_neox: hyper.rope_neox,
        })
    }

    /// Splits the matrix products' rows across `threads` from now on (same outputs, bit for
    /// bit, for any count).
    pub fn set_threads(&mut self, threads: Threads) {
        self.threads = threads;
    }

    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// Weights of the largest matrix product of a forward pass (rows x columns).
    fn largest_product(&self) -> usize {
        let c = &self.cfg;
        let layer = LayerMatrix::ALL
            .iter()
            .map(|m| m.shape(c).iter().product::<usize>())
            .max()
            .unwrap_or(0);
        layer.max(c.vocab_size * c.dim)
    }

    /// A fresh KV cache for one session (`n_layers x 2 x seq_len x kv_dim` floats).
    pub fn new_cache(&self) -> Result<KvCache> {
        let c = &self.cfg;
        let cache = c.n_layers * c.seq_len * c.kv_dim();
        Ok(KvCache {
            keys: vec![0.0; cache],
            values: vec![0.0; cache],
        })
    }

    /// run.c's RoPE on one position: pairs (2i, 2i+1) of every head rotated by the table row
    /// (pairs (i, i + head_size/2) for a NEOX-style model, the same angles).
    fn rope(&self, values: &mut [f32], pos: usize) {
        let half = self.cfg.head_size() / 2;
        let (cos, sin) = (
            &self.cos[pos * half..][..half],
            &self.sin[pos * half..][..half],
        );
        if self.rope_neox {
            return rope_neox(values, cos, sin);
        }
        for head in values.chunks_exact_mut(2 * half) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (v0, v1) = (pair[0], pair[1]);
                pair[0] = v0 * cos[i] - v1 * sin[i];
                pair[1] = v0 * sin[i] + v1 * cos[i];
            }
        }
    }

    /// qwen2's q/k/v biases and qwen3's per-head q/k RMSNorm, on one item's projections
    /// (nothing for llama). Out of line, as the other architectures' code below: inlined, it
    /// made the layer loop large enough that LLVM stopped inlining `expf` there (+1.5%
    /// instructions on the llama2.c budget run).
    #[inline(never)]
    fn attention_extras(
        &self,
        e: &LayerExtras,
        q: &mut [f32],
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        for (bias, x) in [(&e.q_bias, &mut *q), (&e.k_bias, &mut *k), (&e.v_bias, v)] {
            if let Some(b) = bias {
                with_f32(b, |b| x.iter_mut().zip(b).for_each(|(x, b)| *x += b))?;
            }
        }
        let hd = self.cfg.head_size();
        for (norm, x) in [(&e.q_norm, q), (&e.k_norm, k)] {
            if let Some(w) = norm {
                for head in x.chunks_exact_mut(hd) {
                    rmsnorm_in_place(head, w, self.norm_eps)?;
                }
            }
        }
        Ok(())
    }

    /// Logits for `token` at `pos` (`pos < seq_len`, `token < vocab_size`), updating `cache`:
    /// a batch of one. The logits live in the scratch buffer until its next use.
    pub fn forward<'s>(
        &self,
        token: u32,
        pos: usize,
        cache: &mut KvCache,
        s: &'s mut Scratch,
    ) -> Result<&'s mut [f32]> {
        let item = BatchItem {
            cache: 0,
            token,
            pos,
            logits: true,
        };
        self.forward_batch(&mut [cache], &[item], s)
    }

    /// One pass through the layers for every item: each item's token at its position goes
    /// into its cache (`caches[item.cache]`), and the logits of the items that want them are
    /// returned in item order (`vocab_size` floats each; in `s` until its next use).
    ///
    /// Every weight matrix is applied to all items at once ([`matmul`]: each weight read once),
    /// while every item's numbers are exactly those of a pass on it alone: the same kernels
    /// per row, and attention per item over its own cache's positions `0..=pos`. All items'
    /// keys and values are written before any attention reads, so a prompt's consecutive
    /// positions in one cache (prefill) see each other causally, as token by token.
    pub fn forward_batch<'s>(
        &self,
        caches: &mut [&mut KvCache],
        items: &[BatchItem],
        s: &'s mut Scratch,
    ) -> Result<&'s mut [f32]> {
        // On the pool only when some product is split: a model too small for that (stories260K)
        // pays nothing for threads.
        let parallel = self.threads.splits(self.largest_product());
        self.threads
            .run(parallel, || self.forward_layers(caches, items, s))
    }

    /// [`Self::forward_batch`]'s pass, on the thread it runs on.
    fn forward_layers<'s>(
        &self,
        caches: &mut [&mut KvCache],
        items: &[BatchItem],
        s: &'s mut Scratch,
    ) -> Result<&'s mut [f32]> {
        let c = &self.cfg;
        let threads = &self.threads;
        let (dim, hidden, hd) = (c.dim, c.hidden_dim, c.head_size());
        let (kv_dim, q_dim) = (c.kv_dim(), c.q_dim());
        let n_rep = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let b = items.len();
        for item in items {
            if item.pos >= c.seq_len
                || item.token as usize >= c.vocab_size
                || item.cache >= caches.len()
            {
                return Err(EngineError::Internal(format!(
                    "forward at position {} with token {} (cache {} of {}) is out of range",
                    item.pos,
                    item.token,
                    item.cache,
                    caches.len()
                )));
            }
        }
        let wanted = items.iter().filter(|i| i.logits).count();
        s.ensure(c, b, wanted);
        let gs = c.group_size;
        for (item, x) in items.iter().zip(s.x.chunks_exact_mut(dim)) {
            let row = item.token as usize * dim;
            match &self.weights.embedding {
                Matrix::F32(e) => with_f32(e, |e| x.copy_from_slice(&e[row..][..dim]))?,
                // runq.c's dequantize, for one row: q * scale.
                Matrix::Q8 { values, scales, .. } => with_i8(values, |q| {
                    with_f32(scales, |sc| {
                        let group = gs.unwrap_or(1);
                        for (i, x) in x.iter_mut().enumerate() {
                            *x = q[row + i] as f32 * sc[(row + i) / group];
                        }
                    })
                })??,
                Matrix::Q4K(p) => p.dequantize_row(item.token as usize, x),
            }
            if let Matrix::Q8 {
                offsets: Some(m), ..
            } = &self.weights.embedding
            {
                // Q4_K: value = q * scale - offset.
                let group = gs.unwrap_or(1);
                with_f32(m, |m| {
                    for (i, x) in x.iter_mut().enumerate() {
                        *x -= m[(row + i) / group];
                    }
                })?;
            }
        }
        let (x, xb, xb2) = (
            &mut s.x[..b * dim],
            &mut s.xb[..b * dim],
            &mut s.xb2[..b * dim],
        );
        let (hb, hb2) = (&mut s.hb[..b * hidden], &mut s.hb2[..b * hidden]);
        let (q, k, v) = (
            &mut s.q[..b * q_dim],
            &mut s.k[..b * kv_dim],
            &mut s.v[..b * kv_dim],
        );
        let heads = &mut s.heads[..b * q_dim];
        let (xq, xs) = (&mut s.xq, &mut s.xs);
        for (l, layer) in self.weights.layers.iter().enumerate() {
            for (o, x) in xb.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                rmsnorm(o, x, &layer.rms_att, self.norm_eps)?;
            }
            prepare(gs, dim, xb, xq, xs);
            let input = Quantized::new(xq, xs);
            if b == 1 {
                let ws = [&layer.wq, &layer.wk, &layer.wv];
                linear3(threads, [&mut *q, &mut *k, &mut *v], ws, xb, &input)?;
            } else {
                linear(threads, q, &layer.wq, xb, &input, b)?;
                linear(threads, k, &layer.wk, xb, &input, b)?;
                linear(threads, v, &layer.wv, xb, &input, b)?;
            }
            // Every item's key and value go into its cache before any attention reads.
            let layer_off = l * c.seq_len * kv_dim;
            for (i, item) in items.iter().enumerate() {
                let query = &mut q[i * q_dim..][..q_dim];
                let key = &mut k[i * kv_dim..][..kv_dim];
                let value = &mut v[i * kv_dim..][..kv_dim];
                self.attention_extras(&layer.extras, query, key, value)?;
                self.rope(query, item.pos);
                self.rope(key, item.pos);
                let at = layer_off + item.pos * kv_dim;
                let cache = &mut *caches[item.cache];
                cache.keys[at..at + kv_dim].copy_from_slice(key);
                cache.values[at..at + kv_dim].copy_from_slice(&v[i * kv_dim..][..kv_dim]);
            }
            for (i, item) in items.iter().enumerate() {
                let cache = &*caches[item.cache];
                let end = layer_off + (item.pos + 1) * kv_dim;
                let (q, out) = (&q[i * q_dim..][..q_dim], &mut heads[i * q_dim..][..q_dim]);
                let context = AttentionContext {
                    keys: &cache.keys[layer_off..end],
                    values: &cache.values[layer_off..end],
                    positions: item.pos + 1,
                    hd,
                    kv_dim,
                    n_rep,
                    scale,
                    int8: gs.is_some(),
                };
                attention(threads, q, out, &mut s.att, &context);
            }
            prepare(gs, q_dim, heads, xq, xs);
            linear(threads, xb2, &layer.wo, heads, &Quantized::new(xq, xs), b)?;
            for (x, d) in x.iter_mut().zip(xb2.iter()) {
                *x += d;
            }

            for (o, x) in xb.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
                rmsnorm(o, x, &layer.rms_ffn, self.norm_eps)?;
            }
            prepare(gs, dim, xb, xq, xs);
            let input = Quantized::new(xq, xs);
            if b == 1 {
                swiglu(threads, hb, hb2, &layer.w1, &layer.w3, xb, &input)?;
            } else {
                linear(threads, hb, &layer.w1, xb, &input, b)?;
                linear(threads, hb2, &layer.w3, xb, &input, b)?;
                silu_mul(hb, hb2);
            }
            prepare(gs, hidden, hb, xq, xs);
            linear(threads, xb2, &layer.w2, hb, &Quantized::new(xq, xs), b)?;
            for (x, d) in x.iter_mut().zip(xb2.iter()) {
                *x += d;
            }
        }
        // The classifier only for the items whose logits are wanted, gathered in order.
        let mut row = 0;
        for (item, x) in items.iter().zip(x.chunks_exact(dim)) {
            if item.logits {
                rmsnorm(
                    &mut xb[row * dim..][..dim],
                    x,
                    &self.weights.norm,
                    self.norm_eps,
                )?;
                row += 1;
            }
        }
        let xb = &xb[..wanted * dim];
        prepare(gs, dim, xb, xq, xs);
        let logits = &mut s.logits[..wanted * c.vocab_size];
        if wanted > 0 {
            linear(
                threads,
                logits,
                &self.weights.classifier,
                xb,
                &Quantized::new(xq, xs),
                wanted,
            )?;
        }
        Ok(logits)
    }
}

/// What every query head of one item's attention reads: the layer's cached keys and values
/// (`positions` rows of `kv_dim` each) and the sizes.
struct AttentionContext<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    /// Cached positions attended to (`0..=pos`).
    positions: usize,
    hd: usize,
    kv_dim: usize,
    /// Query heads per kv head.
    n_rep: usize,
    scale: f32,
    /// runq.c's score arithmetic (see [`attention_head`]).
    int8: bool,
}

/// How much an attention head's work weighs against a matrix product's weight, for
/// [`Threads::splits`]: per position and head dimension it reads a key and a value and does
/// two scalar multiply-adds, where a weight costs one vector lane.
const ATTENTION_WEIGHT: usize = 8;

/// One query head of [`attention`]: its index, query, output and row of scores.
type HeadTask<'a> = (usize, ((&'a [f32], &'a mut [f32]), &'a mut [f32]));

/// One item's multi-head attention (run.c's): `out` (q_dim) from its query `q` (q_dim) over the
/// cached keys and values of `context.positions` positions; `att` holds `seq_len` scores per
/// query head. The heads are independent (each its own scores and output), so they are split
/// across `threads` when there is enough work: the same arithmetic per head either way.
fn attention(
    threads: &Threads,
    q: &[f32],
    out: &mut [f32],
    att: &mut [f32],
    context: &AttentionContext,
) {
    let hd = context.hd;
    let seq_len = att.len() / (q.len() / hd).max(1);
    let heads = q
        .chunks_exact(hd)
        .zip(out.chunks_exact_mut(hd))
        .zip(att.chunks_exact_mut(seq_len))
        .enumerate();
    let head = |(h, ((q, out), att)): HeadTask| {
        let att = &mut att[..context.positions];
        attention_head(h, q, out, att, context)
    };
    if threads.splits(ATTENTION_WEIGHT * context.positions * q.len()) {
        threads.for_each(true, heads.collect(), head);
    } else {
        heads.for_each(head);
    }
}

compiled_for_avx2! {
    /// Query head `h` of [`attention`]: `out` (head_size) from `q` (head_size) over the cached
    /// keys and values (`att` has one score per position).
    ///
    /// Compiled for AVX2 where the CPU has it (src/compiled_for_avx2.rs): the same bits.
    fn attention_head(
        h: usize,
        q: &[f32],
        out: &mut [f32],
        att: &mut [f32],
        context: &AttentionContext,
    ) {
        let AttentionContext {
            keys,
            values,
            hd,
            kv_dim,
            n_rep,
            scale,
            int8,
            ..
        } = *context;
        // Query head h reads kv head h / n_rep (run.c).
        let kv = (h / n_rep) * hd;
        if !int8 {
            for (a, k) in att.iter_mut().zip(keys.chunks_exact(kv_dim)) {
                *a = dot(q, &k[kv..kv + hd]) * scale;
            }
        } else {
            // runq.c's score exactly: a sequential sum divided by sqrt(head_size). The
            // int8 path re-quantizes every activation, so a last-bit difference here
            // can flip a rounding and, later, a greedy token (seen on the 15M shape).
            // Four positions at a time: four independent sequential sums (same bits
            // as one at a time), so the additions' latency overlaps.
            let root = (hd as f32).sqrt();
            let mut scores = att.chunks_exact_mut(4);
            let mut rows = keys.chunks_exact(4 * kv_dim);
            for (a4, k4) in (&mut scores).zip(&mut rows) {
                let ks: [&[f32]; 4] = std::array::from_fn(|j| &k4[j * kv_dim + kv..][..hd]);
                for (a, sum) in a4.iter_mut().zip(score_sums4(q, ks)) {
                    *a = sum / root;
                }
            }
            let rest = scores.into_remainder();
            for (a, k) in rest.iter_mut().zip(rows.remainder().chunks_exact(kv_dim)) {
                let k = &k[kv..kv + hd];
                *a = q.iter().zip(k).fold(0.0f32, |s, (q, k)| s + q * k) / root;
            }
        }
        softmax(att);
        out.fill(0.0);
        for (a, v) in att.iter().zip(values.chunks_exact(kv_dim)) {
            add_scaled(out, *a, &v[kv..kv + hd]);
        }
    }
}

/// Four sequential dot products `sum_i q[i] * k[i]` (one per key), each in element order.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn score_sums4(q: &[f32], ks: [&[f32]; 4]) -> [f32; 4] {
    let mut sums = [0.0f32; 4];
    for (i, q) in q.iter().enumerate() {
        for (sum, k) in sums.iter_mut().zip(&ks) {
            *sum += q * k[i];
        }
    }
    sums
}

/// The guest's [`score_sums4`]: four elements per loop trip, each sum still in element order
/// (same bits). Every loop trip in the guest runs an epoch check, whose slow path (a call)
/// makes Cranelift keep the four sums in memory across the back-edge (docs/toolchain.md,
/// "Epoch interruption"), so one element per trip paid a reload and a store per product.
/// Natively (no such check) the plain loop is kept: LLVM schedules it well, and a different
/// body shifted inlining elsewhere (+0.45% instructions on the f32 budget run).
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn score_sums4(q: &[f32], ks: [&[f32]; 4]) -> [f32; 4] {
    let mut sums = [0.0f32; 4];
    let mut quads = q.chunks_exact(4);
    for (c, q4) in (&mut quads).enumerate() {
        for (j, q) in q4.iter().enumerate() {
            for (sum, k) in sums.iter_mut().zip(&ks) {
                *sum += q * k[4 * c + j];
            }
        }
    }
    let done = q.len() - quads.remainder().len();
    for (i, q) in quads.remainder().iter().enumerate() {
        for (sum, k) in sums.iter_mut().zip(&ks) {
            *sum += q * k[done + i];
        }
    }
    sums
}

/// `out[i] += a * v[i]`.
#[cfg(not(target_arch = "wasm32"))]
#[inline(always)]
fn add_scaled(out: &mut [f32], a: f32, v: &[f32]) {
    for (o, v) in out.iter_mut().zip(v) {
        *o += a * v;
    }
}

/// The guest's [`add_scaled`]: 16 elements (four f32x4) per loop trip instead of one f32x4,
/// for the epoch check as in [`score_sums4`] (elementwise: the same bits in any grouping).
/// Natively a chunked loop cost stories260K's short heads (size 8) 10% more instructions.
#[cfg(target_arch = "wasm32")]
#[inline(always)]
fn add_scaled(out: &mut [f32], a: f32, v: &[f32]) {
    let mut outs = out.chunks_exact_mut(16);
    let mut vs = v.chunks_exact(16);
    for (o, v) in (&mut outs).zip(&mut vs) {
        for (o, v) in o.iter_mut().zip(v) {
            *o += a * v;
        }
    }
    for (o, v) in outs.into_remainder().iter_mut().zip(vs.remainder()) {
        *o += a * v;
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::checkpoint::load_weights;
    use crate::q8::quantize_weights;
    use crate::weights::LayerWeights;

    fn read(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/models/stories260K/"
        );
        std::fs::read(format!("{dir}{name}")).expect("stories260K is in ../shared/models")
    }

    /// An f32 matrix as Q8_0 (export.py's quantization) in groups of `gs`.
    fn to_q8(m: &Matrix, gs: usize) -> Matrix {
        let Matrix::F32(t) = m else {
            panic!("already int8")
        };
        let w: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let (mut q, mut s) = (vec![0i8; w.len()], vec![0f32; w.len() / gs]);
        quantize_weights(&mut q, &mut s, &w, gs);
        let values: Vec<u8> = q.iter().map(|&v| v as u8).collect();
        Matrix::Q8 {
            values: Tensor::from_vec(values, t.dims(), &Device::Cpu).unwrap(),
            scales: Tensor::from_vec(s, w.len() / gs, &Device::Cpu).unwrap(),
            offsets: None,
        }
    }

    /// stories260K in f32 and quantized in groups of 4.
    fn models() -> Vec<(&'static str, CheckpointConfig, TransformerWeights)> {
        let (cfg, w) = load_weights(&read("stories260K.bin"), &Device::Cpu).unwrap();
        let gs = 4;
        let layers = w
            .layers
            .iter()
            .map(|l| LayerWeights {
                rms_att: l.rms_att.clone(),
                wq: to_q8(&l.wq, gs),
                wk: to_q8(&l.wk, gs),
                wv: to_q8(&l.wv, gs),
                wo: to_q8(&l.wo, gs),
                rms_ffn: l.rms_ffn.clone(),
                w1: to_q8(&l.w1, gs),
                w2: to_q8(&l.w2, gs),
                w3: to_q8(&l.w3, gs),
                extras: Default::default(),
            })
            .collect();
        let q8 = TransformerWeights {
            embedding: to_q8(&w.embedding, gs),
            classifier: to_q8(&w.classifier, gs),
            layers,
            norm: w.norm.clone(),
        };
        let q8_cfg = CheckpointConfig {
            group_size: Some(gs),
            ..cfg.clone()
        };
        vec![("f32", cfg, w), ("int8", q8_cfg, q8)]
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Every position's logits for a fixed token sequence: token by token, then in batches of
    /// 5 positions of two caches at once (the second cache a copy of the first's sequence).
    fn logits(model: &Transformer) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let vocab = model.cfg.vocab_size;
        let ids: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % vocab as u32).collect();
        let (mut cache, mut s) = (model.new_cache().unwrap(), Scratch::default());
        let single = ids
            .iter()
            .enumerate()
            .map(|(pos, &t)| bits(model.forward(t, pos, &mut cache, &mut s).unwrap()))
            .collect();
        let (mut a, mut b) = (model.new_cache().unwrap(), model.new_cache().unwrap());
        let mut batched = Vec::new();
        for (c, part) in ids.chunks(5).enumerate() {
            let items: Vec<BatchItem> = (0..2)
                .flat_map(|cache| {
                    part.iter().enumerate().map(move |(i, &token)| BatchItem {
                        cache,
                        token,
                        pos: c * 5 + i,
                        logits: true,
                    })
                })
                .collect();
            let l = model
                .forward_batch(&mut [&mut a, &mut b], &items, &mut s)
                .unwrap();
            batched.extend(l.chunks_exact(vocab).map(bits));
        }
        (single, batched)
    }

    #[test]
    fn logits_are_identical_for_one_two_and_three_threads() {
        for (kind, cfg, weights) in models() {
            let mut model = Transformer::new(cfg, weights).unwrap();
            let (single, batched) = logits(&model);
            // Each cache's rows of a batch are its token-by-token logits.
            for (c, chunk) in batched.chunks(10).enumerate() {
                assert!(chunk[..5] == single[c * 5..c * 5 + 5], "{kind} batch {c}");
                assert!(chunk[5..] == single[c * 5..c * 5 + 5], "{kind} batch {c}");
            }
            for count in [2, 3] {
                // Every product split (stories260K's are all below the usual threshold).
                model.set_threads(Threads::new(count).unwrap().with_min_weights(0));
                let got = logits(&model);
                assert!(got.0 == single, "{kind}, {count} threads, token by token");
                assert!(got.1 == batched, "{kind}, {count} threads, batched");
            }
        }
    }

    /// A Q4_K matrix (int8 values, scales and offsets, groups of 16 as beside Q6_K) through
    /// `linear`: close to the f32 product of its decoded values, and the same bits for every
    /// thread split and batch position.
    #[test]
    fn q4_k_linear_matches_its_decoded_values_and_every_split() {
        use crate::kquants::{decode_q4_k, dequantize, quantize, KQuant, QK_K};
        let (rows, n, gs) = (24, 2 * QK_K, 16);
        let mut seed = 11u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.3
        };
        let w: Vec<f32> = (0..rows * n).map(|_| next()).collect();
        let data = quantize(KQuant::Q4K, &w);
        let decoded = dequantize(KQuant::Q4K, &data);
        let (mut values, mut scales, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
        for block in data.chunks_exact(crate::kquants::Q4_K_BYTES) {
            let (mut q, mut s, mut m) = ([0u8; QK_K], [0f32; 8], [0f32; 8]);
            decode_q4_k(block, &mut q, &mut s, &mut m);
            values.extend_from_slice(&q);
            scales.extend(s.iter().flat_map(|v| [*v, *v]));
            offsets.extend(m.iter().flat_map(|v| [*v, *v]));
        }
        let groups = scales.len();
        let matrix = Matrix::Q8 {
            values: Tensor::from_vec(values, (rows, n), &Device::Cpu).unwrap(),
            scales: Tensor::from_vec(scales, groups, &Device::Cpu).unwrap(),
            offsets: Some(Tensor::from_vec(offsets, groups, &Device::Cpu).unwrap()),
        };
        let batch = 3;
        let x: Vec<f32> = (0..batch * n).map(|_| next() * 4.0).collect();
        let (mut xq, mut xs) = (Vec::new(), Vec::new());
        prepare(Some(gs), n, &x, &mut xq, &mut xs);
        let run = |threads: &Threads, x: &[f32], xq: &[i16], xs: &[f32], b: usize| {
            let mut out = vec![f32::NAN; b * rows];
            linear(threads, &mut out, &matrix, x, &Quantized::new(xq, xs), b).unwrap();
            out
        };
        let one = run(&Threads::one(), &x, &xq, &xs, batch);
        for (b, out) in one.chunks_exact(rows).enumerate() {
            let x = &x[b * n..][..n];
            for (r, o) in out.iter().enumerate() {
                let want: f64 = decoded[r * n..][..n]
                    .iter()
                    .zip(x)
                    .map(|(w, x)| f64::from(*w) * f64::from(*x))
                    .sum();
                // Only the activations' int8 rounding separates the two.
                assert!(
                    (f64::from(*o) - want).abs() < 0.02 * (1.0 + want.abs()),
                    "{b} {r}"
                );
            }
            let g = n / gs;
            let single = run(&Threads::one(), x, &xq[b * n..][..n], &xs[b * g..][..g], 1);
            assert_eq!(bits_of(&single), bits_of(out), "input {b} alone");
        }
        let three = Threads::new(3).unwrap().with_min_weights(0);
        assert_eq!(bits_of(&run(&three, &x, &xq, &xs, batch)), bits_of(&one));
    }

    /// The packed Q4_K kernel (`q4k_kernel`) against the decoded int8 path it replaces, through
    /// `linear`: the same bits for random blocks (quantized values, and raw bytes with every
    /// 6-bit scale and nibble possible), row counts around the kernel's four-row steps, groups
    /// of 16 and 32, batches of 1, 3 and CHUNK, one and three threads; and the same embedding
    /// rows.
    #[test]
    fn packed_q4_k_is_bit_for_bit_the_decoded_int8_path() {
        use crate::generation::CHUNK;
        use crate::kquants::{decode_q4_k, f32_to_f16, quantize, KQuant, Q4_K_BYTES, QK_K};
        use crate::q4k_kernel::PackedQ4K;
        let mut seed = 29u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        for (case, (rows, blocks, gs)) in [
            (1, 1, 16),
            (3, 2, 16),
            (4, 1, 32),
            (5, 3, 16),
            (7, 2, 32),
            (37, 2, 16),
            (13, 8, 32),
        ]
        .into_iter()
        .enumerate()
        {
            let n = blocks * QK_K;
            let data: Vec<u8> = if case % 2 == 0 {
                let w: Vec<f32> = (0..rows * n)
                    .map(|_| (next() >> 8) as f32 / (1 << 24) as f32 - 0.3)
                    .collect();
                quantize(KQuant::Q4K, &w)
            } else {
                let mut d = vec![0u8; rows * n / QK_K * Q4_K_BYTES];
                for block in d.chunks_exact_mut(Q4_K_BYTES) {
                    for b in block.iter_mut() {
                        *b = next() as u8;
                    }
                    let scale = |v: u32| f32_to_f16((v >> 8) as f32 / (1u32 << 24) as f32 * 0.01);
                    block[0..2].copy_from_slice(&scale(next()).to_le_bytes());
                    block[2..4].copy_from_slice(&scale(next()).to_le_bytes());
                }
                d
            };
            let (mut values, mut scales, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
            for block in data.chunks_exact(Q4_K_BYTES) {
                let (mut q, mut s, mut m) = ([0u8; QK_K], [0f32; 8], [0f32; 8]);
                decode_q4_k(block, &mut q, &mut s, &mut m);
                values.extend_from_slice(&q);
                scales.extend(s.iter().flat_map(|v| std::iter::repeat_n(*v, 32 / gs)));
                offsets.extend(m.iter().flat_map(|v| std::iter::repeat_n(*v, 32 / gs)));
            }
            let groups = scales.len();
            let decoded = Matrix::Q8 {
                values: Tensor::from_vec(values, (rows, n), &Device::Cpu).unwrap(),
                scales: Tensor::from_vec(scales, groups, &Device::Cpu).unwrap(),
                offsets: Some(Tensor::from_vec(offsets, groups, &Device::Cpu).unwrap()),
            };
            let packed = PackedQ4K::from_blocks(&data, rows, n).unwrap();
            for r in 0..rows {
                let mut row = vec![0f32; n];
                packed.dequantize_row(r, &mut row);
                let want: Vec<f32> = crate::kquants::dequantize(
                    KQuant::Q4K,
                    &data[r * blocks * Q4_K_BYTES..][..blocks * Q4_K_BYTES],
                );
                assert_eq!(bits_of(&row), bits_of(&want), "case {case} row {r}");
            }
            let packed = Matrix::Q4K(std::sync::Arc::new(packed));
            for batch in [1, 3, CHUNK] {
                let x: Vec<f32> = (0..batch * n)
                    .map(|_| ((next() >> 8) as f32 / (1 << 24) as f32 - 0.5) * 8.0)
                    .collect();
                let (mut xq, mut xs) = (Vec::new(), Vec::new());
                prepare(Some(gs), n, &x, &mut xq, &mut xs);
                for threads in [Threads::one(), Threads::new(3).unwrap().with_min_weights(0)] {
                    let run = |m: &Matrix| {
                        let mut out = vec![f32::NAN; batch * rows];
                        let input = Quantized::new(&xq, &xs);
                        linear(&threads, &mut out, m, &x, &input, batch).unwrap();
                        bits_of(&out)
                    };
                    assert_eq!(
                        run(&packed),
                        run(&decoded),
                        "case {case}: {rows} x {n} in groups of {gs}, batch {batch}, {} threads",
                        threads.count()
                    );
                }
            }
        }
    }

    fn bits_of(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }
}
