//! Both cores, bit for bit: the native engine splits each matrix product's output rows across
//! threads.
//!
//! Every output element is one row's dot product, computed by the same kernel in the same
//! order whichever thread runs it and whatever rows share its part (the kernels' tests check
//! that a row's result does not depend on its neighbours), so text and logits are identical for
//! any thread count. Only the work is divided, never a sum.
//!
//! The threads are a rayon pool shared by every model opened with the same count (rayon is
//! already linked through candle): a forward pass runs on the pool, so a product's parts are
//! handed to workers that are still spinning from the previous product instead of being woken
//! per product. Products smaller than [`MIN_PARALLEL_WEIGHTS`] stay on one thread (splitting
//! them costs more than it saves), and a model none of whose products reaches it never enters
//! the pool: stories260K decodes exactly as with one thread. The wasm32 guest has no threads:
//! there a [`Threads`] is always one.

use crate::error::{EngineError, Result};

/// The fewest weights (rows x columns) a product needs before its rows are split: below it,
/// dispatching the parts costs more than the second core saves (measured in
/// docs/toolchain.md, "Both cores").
pub const MIN_PARALLEL_WEIGHTS: usize = 1 << 16;

/// Parts per thread a split product is cut into: more than one, so a thread slowed by another
/// process on its core leaves parts to the others.
const PARTS_PER_THREAD: usize = 2;

/// The most threads a model may ask for.
pub const MAX_THREADS: usize = 256;

/// How many threads a model's products use, and the pool that runs them.
#[derive(Clone)]
pub struct Threads {
    count: usize,
    /// The least weights a product needs to be split (tests lower it to split every product).
    min_weights: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Default for Threads {
    fn default() -> Self {
        Self::one()
    }
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("count", &self.count)
            .field("min_weights", &self.min_weights)
            .finish()
    }
}

impl Threads {
    /// Everything on the calling thread.
    pub fn one() -> Self {
        Self {
            count: 1,
            min_weights: MIN_PARALLEL_WEIGHTS,
            #[cfg(not(target_arch = "wasm32"))]
            pool: None,
        }
    }

    /// `count` threads (1..=[`MAX_THREADS`]; InvalidArgument otherwise). The wasm32 guest
    /// accepts only 1.
    pub fn new(count: usize) -> Result<Self> {
        if count == 0 || count > MAX_THREADS {
            return Err(EngineError::InvalidArgument(format!(
                "threads must be between 1 and {MAX_THREADS}, got {count}"
            )));
        }
        if count == 1 {
            return Ok(Self::one());
        }
        #[cfg(target_arch = "wasm32")]
        return Err(EngineError::InvalidArgument(format!(
            "the wasm guest runs one thread, {count} were asked for"
        )));
        #[cfg(not(target_arch = "wasm32"))]
        Ok(Self {
            count,
            min_weights: MIN_PARALLEL_WEIGHTS,
            pool: Some(shared_pool(count)?),
        })
    }

    /// As many threads as the process may run on (at least one).
    pub fn available() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.min(MAX_THREADS))
    }

    /// The same threads, splitting every product of at least `min_weights` weights (the
    /// tests split even stories260K's).
    pub fn with_min_weights(mut self, min_weights: usize) -> Self {
        self.min_weights = min_weights;
        self
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether a product of `weights` weights is split (so whether a model whose largest
    /// product has that many uses the pool at all).
    pub fn splits(&self, weights: usize) -> bool {
        self.count > 1 && weights >= self.min_weights
    }

    /// Runs `f` (a forward pass) on the pool when `parallel`, else here.
    pub fn run<R: Send>(&self, parallel: bool, f: impl FnOnce() -> R + Send) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        if let (true, Some(pool)) = (parallel, &self.pool) {
            return pool.install(f);
        }
        let _ = parallel;
        f()
    }

    /// How many parts `rows` rows of `cols` weights each are cut into (1: not split); also
    /// how many parts a chunk's sampled positions are decided in (`Session`, `cols` the
    /// vocabulary).
    pub(crate) fn parts(&self, rows: usize, cols: usize) -> usize {
        if self.splits(rows * cols) {
            (self.count * PARTS_PER_THREAD).min(rows)
        } else {
            1
        }
    }

    /// `out` (`batch x rows`, row-major) computed by `part(first_row, rows_of_part, out_part)`
    /// over parts of the rows, in parallel: `out_part` is `batch x rows_of_part`, for weight
    /// rows `first_row..first_row + rows_of_part`; `cols` is a row's length (for the threshold).
    /// With one part, `part(0, rows, out)` on this thread.
    pub fn split_rows<F>(&self, out: &mut [f32], batch: usize, cols: usize, part: F)
    where
        F: Fn(usize, usize, &mut [f32]) + Sync,
    {
        let batch = batch.max(1);
        let rows = out.len() / batch;
        let parts = self.parts(rows, cols);
        if parts <= 1 {
            return part(0, rows, out);
        }
        #[cfg(not(target_arch = "wasm32"))]
        split_rows_parallel(out, batch, rows, parts, part);
    }
}

impl Threads {
    /// Runs `task` on every item of `tasks`: on the pool when this thread is one of its
    /// workers (a forward pass under [`Threads::run`]) and `parallel`, else in order here. The
    /// items are disjoint pieces of work (each owns its outputs), so the order they run in
    /// changes no bit.
    pub fn for_each<T: Send>(&self, parallel: bool, tasks: Vec<T>, task: impl Fn(T) + Sync + Send) {
        #[cfg(not(target_arch = "wasm32"))]
        if parallel && tasks.len() > 1 && self.in_pool() {
            use rayon::prelude::*;
            return tasks.into_par_iter().for_each(task);
        }
        let _ = parallel;
        tasks.into_iter().for_each(task)
    }

    /// Whether this thread is one of the pool's workers.
    #[cfg(not(target_arch = "wasm32"))]
    fn in_pool(&self) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| p.current_thread_index().is_some())
    }

    /// [`Threads::split_rows`] for one input (`batch` 1) and several products at once, in one
    /// parallel region (a worker that finishes its part of one product takes a part of the
    /// next instead of waiting at a barrier): `outs[i]` is computed by
    /// `part(i, first_row, rows_of_part, out_part)`; each product is cut as `split_rows` would.
    pub fn split_rows_many<const N: usize, F>(&self, outs: [&mut [f32]; N], cols: usize, part: F)
    where
        F: Fn(usize, usize, usize, &mut [f32]) + Sync + Send,
    {
        if outs.iter().all(|o| self.parts(o.len(), cols) <= 1) {
            for (i, out) in outs.into_iter().enumerate() {
                part(i, 0, out.len(), out);
            }
            return;
        }
        let mut tasks = Vec::new();
        let mut parallel = false;
        for (i, out) in outs.into_iter().enumerate() {
            let parts = self.parts(out.len(), cols);
            parallel |= parts > 1;
            let chunk = out.len().div_ceil(parts).max(1);
            tasks.extend(
                out.chunks_mut(chunk)
                    .enumerate()
                    .map(|(j, o)| (i, j * chunk, o)),
            );
        }
        self.for_each(parallel, tasks, |(i, r0, o)| part(i, r0, o.len(), o));
    }

    /// [`Threads::split_rows`] for one input (`batch` 1) and two products of the same rows
    /// (`a.len() == b.len()`), cut at the same rows: `part(first_row, rows_of_part, a_part,
    /// b_part)`, so a part can combine its rows of both (SwiGLU's gate and up).
    pub fn split_rows_pair<F>(&self, a: &mut [f32], b: &mut [f32], cols: usize, part: F)
    where
        F: Fn(usize, usize, &mut [f32], &mut [f32]) + Sync + Send,
    {
        assert_eq!(a.len(), b.len());
        let parts = self.parts(a.len(), cols);
        if parts <= 1 {
            return part(0, a.len(), a, b);
        }
        let chunk = a.len().div_ceil(parts).max(1);
        let tasks: Vec<_> = a
            .chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .enumerate()
            .collect();
        self.for_each(parts > 1, tasks, |(j, (a, b))| {
            part(j * chunk, a.len(), a, b)
        });
    }
}

/// [`Threads::split_rows`] over `parts` parts. One input: the parts are disjoint pieces of
/// `out`. A batch: each part computes its `batch x rows_of_part` block into a buffer of its
/// own (a part's rows are not contiguous in `out`), copied into place afterwards.
#[cfg(not(target_arch = "wasm32"))]
fn split_rows_parallel<F>(out: &mut [f32], batch: usize, rows: usize, parts: usize, part: F)
where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    use rayon::prelude::*;
    let chunk = rows.div_ceil(parts);
    if batch == 1 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| part(i * chunk, o.len(), o));
        return;
    }
    let blocks: Vec<(usize, Vec<f32>)> = (0..rows.div_ceil(chunk))
        .into_par_iter()
        .map(|i| {
            let (r0, r1) = (i * chunk, ((i + 1) * chunk).min(rows));
            let mut block = vec![0.0f32; batch * (r1 - r0)];
            part(r0, r1 - r0, &mut block);
            (r0, block)
        })
        .collect();
    for (r0, block) in blocks {
        let width = block.len() / batch;
        for (o, b) in out.chunks_exact_mut(rows).zip(block.chunks_exact(width)) {
            o[r0..r0 + width].copy_from_slice(b);
        }
    }
}

/// The pool of `count` threads, one per count for the whole process (models opened with the
/// same count share it, so several models never oversubscribe the cores more than one does).
#[cfg(not(target_arch = "wasm32"))]
fn shared_pool(count: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    use std::sync::{Arc, Mutex};
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == count) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(count)
        .thread_name(|i| format!("edgechain-{i}"))
        .build()
        .map_err(|e| EngineError::Internal(format!("cannot start {count} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push((count, pool.clone()));
    Ok(pool)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::matvec::{matmul, tests::lcg};
    use crate::q8::{matmul_q8, quantize_activations};

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    #[test]
    fn split_products_match_one_thread_bit_for_bit() {
        let mut seed = 17;
        for (rows, cols) in [(1, 32), (3, 64), (7, 96), (301, 288), (64, 1376)] {
            let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            let q: Vec<i8> = (0..rows * cols)
                .map(|_| (lcg(&mut seed) * 254.0) as i8)
                .collect();
            let gs = 32;
            let ws: Vec<f32> = (0..rows * cols / gs).map(|_| lcg(&mut seed)).collect();
            for batch in [1, 2, 5, 16] {
                let x: Vec<f32> = (0..batch * cols).map(|_| lcg(&mut seed)).collect();
                let (mut xq, mut xs) = (vec![0i16; x.len()], vec![0f32; x.len() / gs]);
                quantize_activations(&mut xq, &mut xs, &x, gs);
                let mut one = vec![f32::NAN; batch * rows];
                matmul(&mut one, &w, &x, batch);
                let mut one_q8 = vec![f32::NAN; batch * rows];
                matmul_q8(&mut one_q8, &q, &ws, &xq, &xs, batch);
                for count in [2, 3] {
                    let threads = Threads::new(count).unwrap().with_min_weights(0);
                    let mut got = vec![f32::NAN; batch * rows];
                    threads.run(true, || {
                        threads.split_rows(&mut got, batch, cols, |r0, n, o| {
                            matmul(o, &w[r0 * cols..(r0 + n) * cols], &x, batch)
                        })
                    });
                    assert_eq!(bits(&got), bits(&one), "f32 {rows}x{cols} batch {batch}");
                    let groups = cols / gs;
                    threads.split_rows(&mut got, batch, cols, |r0, n, o| {
                        let (w, s) = (
                            &q[r0 * cols..(r0 + n) * cols],
                            &ws[r0 * groups..(r0 + n) * groups],
                        );
                        matmul_q8(o, w, s, &xq, &xs, batch)
                    });
                    assert_eq!(bits(&got), bits(&one_q8), "q8 {rows}x{cols} batch {batch}");
                }
            }
        }
    }

    #[test]
    fn thread_counts_are_checked() {
        assert!(Threads::new(0).is_err());
        assert!(Threads::new(MAX_THREADS + 1).is_err());
        assert_eq!(Threads::new(1).unwrap().count(), 1);
        assert!(!Threads::new(1).unwrap().splits(usize::MAX));
        let two = Threads::new(2).unwrap();
        assert!(two.splits(MIN_PARALLEL_WEIGHTS) && !two.splits(MIN_PARALLEL_WEIGHTS - 1));
    }
}
