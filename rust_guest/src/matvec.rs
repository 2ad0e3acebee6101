//! The decode kernels: matrix-vector product and dot product with a fixed summation order.
//!
//! One token at a time, every weight matrix is read once per step, so decoding is a sequence of
//! matrix-vector products bound by memory bandwidth. Each row is summed in [`LANES`] independent
//! lane accumulators (`acc[j] += w[k + j] * x[k + j]` over chunks of `LANES`), then the lanes are
//! added in a fixed tree, then the scalar tail in order. [`dot_scalar`] is that definition in
//! plain Rust; the SIMD paths (SSE, AVX or AVX-512F natively, simd128 in the wasm32 guest)
//! compute exactly the same operations in the same order. No FMA and no reassociation (Rust never contracts or
//! reorders float operations), so the result is the same bits on every target: wasm and native
//! logits are identical.
//!
//! Measured choices (docs/toolchain.md, Performance): 32 lanes (8 simd128 or 4 AVX accumulators
//! per row) beat 8 and 16 in the guest; [`ROWS`] = 1, because walking 4 rows at once (sharing
//! the loads of `x`) halved the native streaming bandwidth and did not help the guest.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod batched_v4;

/// Accumulator lanes per row: 8 f32x4 (SSE, simd128) or 4 f32x8 (AVX) registers.
pub const LANES: usize = 32;
/// How far ahead (in floats) the AVX path prefetches weights.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 1024;
/// Rows processed together by [`matvec`] (any value gives the same bits).
pub const ROWS: usize = 1;

/// Adds the lanes in a fixed tree: halves added lane-wise (`l[i] + l[i + half]`) until four
/// lanes `h` remain, then `(h0 + h2) + (h1 + h3)`: the order a vector-register reduction takes.
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 4 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// The portable definition: `sum(a[i] * b[i])` in the kernels' fixed order (the SIMD paths
/// compute exactly this; used directly where no SIMD path exists, and by the tests).
#[allow(dead_code)] // only the tests call it where a SIMD path exists
#[inline(always)]
fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (a, b) in ac.zip(bc) {
        for j in 0..LANES {
            acc[j] += a[j] * b[j];
        }
    }
    let mut sum = reduce(acc);
    for (a, b) in at.iter().zip(bt) {
        sum += a * b;
    }
    sum
}

/// 4-wide vector operations: SSE on x86_64 (always present), simd128 on wasm32.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
mod v4 {
    #[cfg(target_arch = "wasm32")]
    use core::arch::wasm32::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    #[cfg(target_arch = "x86_64")]
    pub type V = __m128;
    #[cfg(target_arch = "wasm32")]
    pub type V = v128;

    /// # Safety
    /// `p` must point to 4 readable floats.
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> V {
        #[cfg(target_arch = "x86_64")]
        return _mm_loadu_ps(p);
        #[cfg(target_arch = "wasm32")]
        return v128_load(p as *const v128);
    }

    #[inline(always)]
    pub fn zero() -> V {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of the x86_64 baseline.
        return unsafe { _mm_setzero_ps() };
        #[cfg(target_arch = "wasm32")]
        return f32x4_splat(0.0);
    }

    /// `acc + a * b` lane-wise, two roundings (no FMA).
    #[inline(always)]
    pub fn mul_add(acc: V, a: V, b: V) -> V {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of the x86_64 baseline.
        return unsafe { _mm_add_ps(acc, _mm_mul_ps(a, b)) };
        #[cfg(target_arch = "wasm32")]
        return f32x4_add(acc, f32x4_mul(a, b));
    }

    /// [`super::reduce`] of the lanes of `acc` (lane `4v + i` is lane `i` of `acc[v]`), on
    /// vectors: its halving steps are lane-wise vector adds with the same operands in the same
    /// order (`acc[v] + acc[v + half]`), then `(h0 + h2) + (h1 + h3)` on the last vector.
    /// The guest's batched product used to store the lanes and add them one by one (the
    /// scalar tree, ~7% of a 288-wide (row, input) pair's time under wasmtime).
    #[cfg(target_arch = "wasm32")]
    #[inline(always)]
    pub fn reduce(acc: &[V; super::LANES / 4]) -> f32 {
        const { assert!(super::LANES == 32, "the tree below has three halving steps") };
        let s: [V; 4] = core::array::from_fn(|v| f32x4_add(acc[v], acc[v + 4]));
        let t = [f32x4_add(s[0], s[2]), f32x4_add(s[1], s[3])];
        let h = f32x4_add(t[0], t[1]);
        (f32x4_extract_lane::<0>(h) + f32x4_extract_lane::<2>(h))
            + (f32x4_extract_lane::<1>(h) + f32x4_extract_lane::<3>(h))
    }

    /// The accumulators' lanes in order, as an array.
    #[inline(always)]
    pub fn lanes(acc: &[V; super::LANES / 4]) -> [f32; super::LANES] {
        let mut out = [0.0f32; super::LANES];
        for (v, chunk) in acc.iter().zip(out.chunks_exact_mut(4)) {
            // SAFETY: `chunk` has room for one 4-float vector; unaligned store.
            unsafe {
                #[cfg(target_arch = "x86_64")]
                _mm_storeu_ps(chunk.as_mut_ptr(), *v);
                #[cfg(target_arch = "wasm32")]
                v128_store(chunk.as_mut_ptr() as *mut v128, *v);
            }
        }
        out
    }
}

/// `ROWS` dot products against the same `x`, each bit-identical to [`dot_scalar`]: per row,
/// `LANES / 4` 4-lane accumulators hold lanes `4v..4v+4` of the scalar definition.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_block<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    const NV: usize = LANES / 4;
    let n = x.len() / LANES * LANES;
    for row in &rows {
        assert_eq!(row.len(), x.len());
    }
    let mut acc = [[v4::zero(); NV]; R];
    // One chunk of LANES values: every accumulator takes its next product.
    let chunk = |acc: &mut [[v4::V; NV]; R], k: usize| {
        // SAFETY: k + LANES <= n <= x.len() == row.len() for every row (callers below).
        unsafe {
            let xs: [v4::V; NV] = std::array::from_fn(|v| v4::load(x.as_ptr().add(k + 4 * v)));
            for r in 0..R {
                let p = rows[r].as_ptr().add(k);
                for v in 0..NV {
                    acc[r][v] = v4::mul_add(acc[r][v], v4::load(p.add(4 * v)), xs[v]);
                }
            }
        }
    };
    // Two chunks per iteration (the same products in the same order): half the loop
    // back-edges, each of which costs the guest an epoch check under wasmtime.
    let mut k = 0;
    while k + 2 * LANES <= n {
        chunk(&mut acc, k);
        chunk(&mut acc, k + LANES);
        k += 2 * LANES;
    }
    if k < n {
        chunk(&mut acc, k);
    }
    finish_rows(&acc, rows, x, n)
}

/// Each row's result from its accumulators (lanes `4v..4v+4` in `acc[r][v]`, after the first
/// `n` values): [`reduce`], then the scalar tail `n..` in order.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
#[inline(always)]
fn finish_rows<const R: usize>(
    acc: &[[v4::V; LANES / 4]; R],
    rows: [&[f32]; R],
    x: &[f32],
    n: usize,
) -> [f32; R] {
    let mut out = [0.0f32; R];
    for r in 0..R {
        let mut sum = reduce(v4::lanes(&acc[r]));
        for (w, x) in rows[r][n..].iter().zip(&x[n..]) {
            sum += w * x;
        }
        out[r] = sum;
    }
    out
}

/// Chunks of [`LANES`] per loop trip in the guest's [`dot_block`]: two chunks halve the
/// back-edges (each one an epoch check under wasmtime) and keep a lane group's loads at four
/// vectors (see [`guest_chunks`]).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const GUEST_CHUNKS: usize = 2;

/// The guest's `ROWS` dot products (simd128), bit-identical to [`dot_scalar`]: the same
/// `LANES / 4` 4-lane accumulators per row as the x86_64 [`dot_block`], each taking its
/// products in chunk order ([`guest_chunks`] walks a trip's chunks lane group by lane group).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot_block<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    let n = x.len() / LANES * LANES;
    for row in &rows {
        assert_eq!(row.len(), x.len());
    }
    let mut acc = [[v4::zero(); LANES / 4]; R];
    let mut k = 0;
    while k + GUEST_CHUNKS * LANES <= n {
        // SAFETY: k + GUEST_CHUNKS * LANES <= n <= x.len() == row.len() for every row.
        unsafe { guest_chunks::<R, GUEST_CHUNKS>(&mut acc, rows, x, k) };
        k += GUEST_CHUNKS * LANES;
    }
    while k < n {
        // SAFETY: k + LANES <= n, as above.
        unsafe { guest_chunks::<R, 1>(&mut acc, rows, x, k) };
        k += LANES;
    }
    finish_rows(&acc, rows, x, n)
}

/// `U` chunks of [`LANES`] values from `k` into the accumulators, one lane group (4 lanes,
/// accumulator `v`) at a time: the group's `U` products in chunk order (so each accumulator
/// sees the same sequence as chunk by chunk), then a volatile store of it.
///
/// Why the store: Cranelift keeps wasm loads (side effects: they may trap) in program order
/// and places pure arithmetic just before the first side effect that needs it, which for
/// loop-carried accumulators is the back-edge. Without a store, all of a trip's loads came
/// first and stayed live (32 vectors with 8 accumulators, 16 registers): ~16 spill stores and
/// 24 reloads per trip. The store makes each group's arithmetic follow its own `2 * U` loads.
/// The base pointers go through [`opaque_ptr`] so every load's offset is a constant that
/// folds into the instruction (as in q8/simd128.rs).
///
/// # Safety
/// `k + U * LANES <= x.len()`, and every row is as long as `x`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn guest_chunks<const R: usize, const U: usize>(
    acc: &mut [[v4::V; LANES / 4]; R],
    rows: [&[f32]; R],
    x: &[f32],
    k: usize,
) {
    let mut slot = core::mem::MaybeUninit::<v4::V>::uninit();
    // SAFETY: the caller's contract; `slot` is a local.
    unsafe {
        let xp = opaque_ptr(x.as_ptr().add(k));
        let wp = rows.map(|row| opaque_ptr(row.as_ptr().add(k)));
        for v in 0..LANES / 4 {
            for u in 0..U {
                let xv = v4::load(xp.add(u * LANES + 4 * v));
                for r in 0..R {
                    let w = v4::load(wp[r].add(u * LANES + 4 * v));
                    acc[r][v] = v4::mul_add(acc[r][v], w, xv);
                }
            }
            for row_acc in acc.iter() {
                core::ptr::write_volatile(slot.as_mut_ptr(), row_acc[v]);
            }
        }
    }
}

/// `p` read back through a volatile load: LLVM then knows nothing of where it points, so its
/// loop strength reduction leaves the loads at constant offsets from it (see `opaque` in
/// q8/simd128.rs; without it Cranelift emitted a 32-bit `lea` per load).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn opaque_ptr(p: *const f32) -> *const f32 {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&p) }
}

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
)))]
#[inline(always)]
fn dot_block<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    rows.map(|row| dot_scalar(row, x))
}

/// `sum(a[i] * b[i])` in the kernels' fixed order. `a` and `b` have the same length.
///
/// # Panics
/// If the lengths differ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_block([a], b)[0]
}

/// [`dot_block`] with `LANES / 8` 8-lane AVX accumulators per row (lanes `8v..8v+8` of the
/// scalar definition): same bits, half the instructions.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn dot_block_avx<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    use core::arch::x86_64::*;
    const NV: usize = LANES / 8;
    let n = x.len() / LANES * LANES;
    for row in &rows {
        assert_eq!(row.len(), x.len());
    }
    let mut acc = [[_mm256_setzero_ps(); NV]; R];
    let mut k = 0;
    while k < n {
        // SAFETY: k + LANES <= n <= x.len() == row.len() for every row.
        unsafe {
            let xs: [__m256; NV] =
                std::array::from_fn(|v| _mm256_loadu_ps(x.as_ptr().add(k + 8 * v)));
            for r in 0..R {
                let p = rows[r].as_ptr().add(k);
                // A hint only (no effect on results): fetch PREFETCH floats ahead. Past the
                // row's end it touches the next row or nothing; prefetches never fault.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 16) as *const i8);
                for v in 0..NV {
                    let w = _mm256_loadu_ps(p.add(8 * v));
                    acc[r][v] = _mm256_add_ps(acc[r][v], _mm256_mul_ps(w, xs[v]));
                }
            }
        }
        k += LANES;
    }
    let mut out = [0.0f32; R];
    for r in 0..R {
        let mut lanes = [0.0f32; LANES];
        for (v, chunk) in acc[r].iter().zip(lanes.chunks_exact_mut(8)) {
            // SAFETY: `chunk` holds 8 floats; unaligned store.
            unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), *v) };
        }
        let mut sum = reduce(lanes);
        for (w, x) in rows[r][n..].iter().zip(&x[n..]) {
            sum += w * x;
        }
        out[r] = sum;
    }
    out
}

/// `matvec`'s loop compiled for AVX.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
// One copy, with dot_block_avx inlined in it: inlined into matmul_avx as well, LLVM left
// dot_block_avx out of line and the decode took 2% more instructions (instruction budget).
#[inline(never)]
unsafe fn matvec_avx(out: &mut [f32], w: &[f32], x: &[f32]) {
    let d = x.len();
    let mut blocks = w.chunks_exact(ROWS * d);
    let mut outs = out.chunks_exact_mut(ROWS);
    for (o, block) in (&mut outs).zip(&mut blocks) {
        let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &block[r * d..(r + 1) * d]);
        // SAFETY: the caller checked AVX.
        o.copy_from_slice(&unsafe { dot_block_avx(rows, x) });
    }
    for (o, row) in outs
        .into_remainder()
        .iter_mut()
        .zip(blocks.remainder().chunks_exact(d))
    {
        // SAFETY: the caller checked AVX.
        *o = unsafe { dot_block_avx([row], x) }[0];
    }
}

/// `out = W x` for a row-major `W` of `out.len() x x.len()` floats.
///
/// # Panics
/// If `w.len() != out.len() * x.len()`.
pub fn matvec(out: &mut [f32], w: &[f32], x: &[f32]) {
    let d = x.len();
    assert_eq!(w.len(), out.len() * d, "matvec: weight shape mismatch");
    if d == 0 {
        out.fill(0.0);
        return;
    }
    // AVX even where AVX-512F exists: a decode streams each matrix from memory once, and the
    // 16-lane path (`avx512::matvec_avx512`) decoded 4-12% slower in CPU time (its 64-byte
    // loads split cache lines on the loader's 16-byte-aligned buffers; docs/toolchain.md).
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is present (checked just above).
        unsafe { matvec_avx(out, w, x) };
        return;
    }
    matvec_portable(out, w, x);
}

/// [`matvec`] without AVX: [`dot_block`] (SSE natively, simd128 in the guest) over blocks of
/// [`ROWS`] rows. `x` is not empty and `w` holds `out.len()` rows of `x.len()` floats.
fn matvec_portable(out: &mut [f32], w: &[f32], x: &[f32]) {
    let d = x.len();
    let mut blocks = w.chunks_exact(ROWS * d);
    let mut outs = out.chunks_exact_mut(ROWS);
    for (o, block) in (&mut outs).zip(&mut blocks) {
        let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &block[r * d..(r + 1) * d]);
        o.copy_from_slice(&dot_block(rows, x));
    }
    for (o, row) in outs
        .into_remainder()
        .iter_mut()
        .zip(blocks.remainder().chunks_exact(d))
    {
        *o = dot(row, x);
    }
}

/// Bytes of weights a batched product keeps hot while it applies them to every input: the
/// row tile stays in L1/L2 across the batch, so each weight is read from memory once per call.
pub const TILE_BYTES: usize = 32 * 1024;

/// Rows per tile for rows of `row_bytes` bytes (at least one).
pub(crate) fn tile_rows(row_bytes: usize) -> usize {
    (TILE_BYTES / row_bytes.max(1)).max(1)
}

/// Weight rows and inputs the AVX batched product's register tile covers (see
/// [`dot_tile_avx`]): each weight vector loaded once is multiplied into `TILE_B` inputs'
/// accumulators, each input vector into `TILE_R` rows'. `TILE_R * TILE_B` accumulators plus
/// the loads fit the 16 AVX registers (measured: 2 x 4 beat 1 x 4 and 4 x 2).
#[cfg(target_arch = "x86_64")]
const TILE_R: usize = 2;
#[cfg(target_arch = "x86_64")]
const TILE_B: usize = 4;

/// `R x B` dot products (`R` rows against `B` inputs), each bit-identical to [`dot`]: the loop
/// runs lane block by lane block (8 lanes at a time, [`lane_block_avx`]), and within a block
/// over the chunks in index order, so lane `j` of every (row, input) pair still sums
/// `w[i] * x[i]` for `i = j (mod LANES)` in index order; then [`reduce`]'s tree on vectors
/// ([`reduce_avx`]) and the scalar tail. Walking one lane block at a time keeps only `R * B`
/// accumulators live (all 4 blocks would need 4 times as many registers); the rows and inputs
/// stay in L1 across the 4 passes.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn dot_tile_avx<const R: usize, const B: usize>(
    rows: [&[f32]; R],
    xs: [&[f32]; B],
) -> [[f32; B]; R] {
    use core::arch::x86_64::*;
    let n = tile_chunks_len(&rows, &xs);
    // SAFETY (all four): the lengths were checked just above; the caller checked AVX.
    let blocks: [[[__m256; B]; R]; LANES / 8] = [
        unsafe { lane_block_avx::<R, B, true>(rows, xs, 0, n) },
        unsafe { lane_block_avx::<R, B, false>(rows, xs, 8, n) },
        unsafe { lane_block_avx::<R, B, false>(rows, xs, 16, n) },
        unsafe { lane_block_avx::<R, B, false>(rows, xs, 24, n) },
    ];
    // Plain loops, not `array::from_fn` (its closure was not inlined: a call per tile, and a
    // store-forwarding stall on its result).
    let mut out = [[0.0f32; B]; R];
    for r in 0..R {
        for b in 0..B {
            let lanes = [
                blocks[0][r][b],
                blocks[1][r][b],
                blocks[2][r][b],
                blocks[3][r][b],
            ];
            // SAFETY: the caller checked AVX.
            let mut sum = unsafe { reduce_avx(lanes) };
            for (w, x) in rows[r][n..].iter().zip(&xs[b][n..]) {
                sum += w * x;
            }
            out[r][b] = sum;
        }
    }
    out
}

/// The length of a register tile's rows and inputs, rounded down to whole [`LANES`] chunks:
/// the values the lanes sum (the rest is the scalar tail).
///
/// # Panics
/// If the rows' and inputs' lengths differ.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tile_chunks_len<const R: usize, const B: usize>(rows: &[&[f32]; R], xs: &[&[f32]; B]) -> usize {
    let len = xs[0].len();
    for s in rows.iter().chain(xs) {
        assert_eq!(s.len(), len);
    }
    len / LANES * LANES
}

/// Lanes `v..v + 8` of every (row, input) pair of [`dot_tile_avx`], returned by value: its
/// accumulators stay in registers (an array written through references was kept in stack
/// slots, one store per accumulator per chunk, the loop's bottleneck).
///
/// # Safety
/// The CPU must support AVX; every row and input holds at least `n` floats, `n` a multiple
/// of [`LANES`], and `v + 8 <= LANES`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn lane_block_avx<const R: usize, const B: usize, const PREFETCH_ROWS: bool>(
    rows: [&[f32]; R],
    xs: [&[f32]; B],
    v: usize,
    n: usize,
) -> [[core::arch::x86_64::__m256; B]; R] {
    use core::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); B]; R];
    let mut k = v;
    while k < n {
        // SAFETY: k + 8 <= n, the length of every row and input at least.
        unsafe {
            let x: [__m256; B] = std::array::from_fn(|b| _mm256_loadu_ps(xs[b].as_ptr().add(k)));
            for r in 0..R {
                let p = rows[r].as_ptr().add(k);
                if PREFETCH_ROWS {
                    // A hint only, as in dot_block_avx: the next rows' weights.
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 16) as *const i8);
                }
                let w = _mm256_loadu_ps(p);
                for b in 0..B {
                    acc[r][b] = _mm256_add_ps(acc[r][b], _mm256_mul_ps(w, x[b]));
                }
            }
        }
        k += LANES;
    }
    acc
}

/// [`reduce`] of the 32 lanes held as 4 vectors of 8 (lanes `8v..8v + 8` in `a[v]`): the same
/// additions with the same operands, lane-wise. Halving 32 -> 16 adds lane `i + 16` to lane
/// `i`, i.e. `a[0] + a[2]`, `a[1] + a[3]`; 16 -> 8 adds those two; 8 -> 4 the upper half of
/// the vector to its lower half; then `(h0 + h2) + (h1 + h3)`.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn reduce_avx(a: [core::arch::x86_64::__m256; 4]) -> f32 {
    use core::arch::x86_64::*;
    let eight = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
    let h = _mm_add_ps(
        _mm256_castps256_ps128(eight),
        _mm256_extractf128_ps::<1>(eight),
    );
    let pairs = _mm_add_ps(h, _mm_movehl_ps(h, h)); // (h0 + h2, h1 + h3, ..)
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)))
}

/// [`matmul`] with AVX: [`for_each_register_tile`] with [`dot_tile_avx`] and [`matvec_avx`].
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn matmul_avx(out: &mut [f32], w: &[f32], xs: &[f32], n: usize, d: usize) {
    // SAFETY (all three): the caller checked AVX.
    for_each_register_tile::<TILE_R, TILE_B>(
        (out, w, xs, n, d),
        |rows, x| unsafe { dot_tile_avx(rows, x) },
        |row, x| unsafe { dot_tile_avx(row, x) },
        |out, rows, x| unsafe { matvec_avx(out, rows, x) },
    );
}

/// The batched product's loop on x86 (`out`, `w`, `xs`, `n`, `d` as in [`matmul`]'s paths):
/// per tile of rows ([`tile_rows`]), groups of `TB` inputs and `TR` rows through `tile`, a
/// leftover row through `row` (a 1-row tile), leftover inputs through `matvec` on the tile's
/// rows. Inlined into each instruction set's function (`matmul_avx`,
/// `avx512::matmul_avx512`), so the kernels it calls compile with that set.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn for_each_register_tile<const TR: usize, const TB: usize>(
    (out, w, xs, n, d): (&mut [f32], &[f32], &[f32], usize, usize),
    tile: impl Fn([&[f32]; TR], [&[f32]; TB]) -> [[f32; TB]; TR],
    row: impl Fn([&[f32]; 1], [&[f32]; TB]) -> [[f32; TB]; 1],
    matvec: impl Fn(&mut [f32], &[f32], &[f32]),
) {
    let batch = xs.len() / n;
    let tile_len = tile_rows(n * 4);
    for r0 in (0..d).step_by(tile_len) {
        let r1 = (r0 + tile_len).min(d);
        let mut b0 = 0;
        while b0 + TB <= batch {
            // Plain loops, not `array::from_fn` (its closure stayed a call per tile).
            let mut x: [&[f32]; TB] = [&[]; TB];
            for (b, x) in x.iter_mut().enumerate() {
                *x = &xs[(b0 + b) * n..][..n];
            }
            let mut r = r0;
            while r + TR <= r1 {
                let mut rows: [&[f32]; TR] = [&[]; TR];
                for (i, row) in rows.iter_mut().enumerate() {
                    *row = &w[(r + i) * n..][..n];
                }
                scatter(out, tile(rows, x), d, b0, r);
                r += TR;
            }
            while r < r1 {
                scatter(out, row([&w[r * n..][..n]], x), d, b0, r);
                r += 1;
            }
            b0 += TB;
        }
        for b in b0..batch {
            matvec(
                &mut out[b * d + r0..b * d + r1],
                &w[r0 * n..r1 * n],
                &xs[b * n..][..n],
            );
        }
    }
}

/// Stores a tile's results `got[i][b]` (row `r + i`, input `b0 + b`) into `out` (`batch x d`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn scatter<const R: usize, const B: usize>(
    out: &mut [f32],
    got: [[f32; B]; R],
    d: usize,
    b0: usize,
    r: usize,
) {
    for (i, g) in got.iter().enumerate() {
        for (b, v) in g.iter().enumerate() {
            out[(b0 + b) * d + r + i] = *v;
        }
    }
}

/// `out[b] = W xs[b]` for a batch of `batch` inputs: `xs` is `batch x n` and `out` is
/// `batch x d` (row-major), for a row-major `W` of `d x n` floats. Each output element is
/// bit-for-bit [`matvec`]'s for that input. The rows are walked in tiles of [`TILE_BYTES`]
/// that stay cached across the batch, so each weight is read from memory once per call. With
/// AVX-512F (`avx512::matmul_avx512`, checked first) or AVX (`dot_tile_avx`), a register tile
/// also multiplies each loaded weight vector into several inputs' accumulators (keeping every
/// lane's order); elsewhere (the guest) [`batched_v4::matmul_v4`] does the
/// same with 4-lane vectors, one lane group at a time (Cranelift's register budget).
///
/// # Panics
/// If the shapes do not match.
pub fn matmul(out: &mut [f32], w: &[f32], xs: &[f32], batch: usize) {
    if batch <= 1 {
        return matvec(out, w, xs);
    }
    assert!(xs.len().is_multiple_of(batch) && out.len().is_multiple_of(batch));
    let (n, d) = (xs.len() / batch, out.len() / batch);
    assert_eq!(w.len(), d * n, "matmul: weight shape mismatch");
    if n == 0 {
        out.fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F is present (checked just above); the shapes were checked above.
        unsafe { avx512::matmul_avx512(out, w, xs, n, d) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is present (checked just above).
        unsafe { matmul_avx(out, w, xs, n, d) };
        return;
    }
    matmul_portable(out, w, xs, n, d);
}

/// [`matmul`] without AVX: the 4-lane register tile ([`batched_v4::matmul_v4`]) where SSE or simd128
/// exists (the guest), else `matvec` on each tile of rows for every input in turn.
fn matmul_portable(out: &mut [f32], w: &[f32], xs: &[f32], n: usize, d: usize) {
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    batched_v4::matmul_v4(out, w, xs, n, d);
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    {
        let tile = tile_rows(n * 4);
        for r0 in (0..d).step_by(tile) {
            let r1 = (r0 + tile).min(d);
            let rows = &w[r0 * n..r1 * n];
            for (o, x) in out.chunks_exact_mut(d).zip(xs.chunks_exact(n)) {
                matvec(&mut o[r0..r1], rows, x);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reproducible value in [-0.5, 0.5) (also used by the q8 tests).
    pub(crate) fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// Asserts `got` and `want` hold the same bits, value for value (also used by the q8
    /// tests: a batched kernel must give each input exactly what the one-input kernel gives).
    pub(crate) fn assert_same_bits(got: &[f32], want: &[f32], what: std::fmt::Arguments) {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(got), bits(want), "{what}");
    }

    /// The (rows, cols) the f32 kernels are checked on: one lane, partial lanes (below 32,
    /// and tails after whole 32-lane chunks), whole 8- and 16-lane blocks, long rows, row
    /// counts that are not a multiple of any tile, and more rows than one tile.
    const SHAPES: [(usize, usize); 15] = [
        (1, 1),
        (3, 5),
        (4, 8),
        (7, 13),
        (2, 16),
        (9, 64),
        (17, 288),
        (6, 1376),
        (300, 37),
        (5, 31),
        (9, 95),
        (3, 33),
        (11, 47),
        (2, 2047),
        (301, 288),
    ];

    /// The x86 instruction sets the f32 kernels have a path for, and whether this CPU has
    /// each (the portable path needs none).
    fn x86_features() -> Vec<(&'static str, bool)> {
        #[cfg(target_arch = "x86_64")]
        return vec![
            ("avx", std::is_x86_feature_detected!("avx")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
        ];
        #[cfg(not(target_arch = "x86_64"))]
        return Vec::new();
    }

    /// A named kernel path and whether this CPU can run it.
    type Paths<K> = Vec<(&'static str, bool, K)>;

    /// Runs `check` with every path of `paths` this CPU has, then asserts that exactly those
    /// ran (the portable one always, each x86 one where the CPU has its instructions) and
    /// prints the ones it could not run: a missing AVX-512 is a property of the CPU, not a
    /// skip, so the other paths are still compared and the report says what was not.
    fn run_paths<K: Copy>(what: &str, paths: &Paths<K>, mut check: impl FnMut(&str, K)) {
        let mut ran = Vec::new();
        for &(name, present, kernel) in paths {
            if present {
                check(name, kernel);
                ran.push(name);
            }
        }
        let mut expected = vec!["portable"];
        expected.extend(x86_features().into_iter().filter(|f| f.1).map(|f| f.0));
        assert_eq!(ran, expected, "{what}: the paths this CPU has");
        let absent: Vec<&str> = paths.iter().filter(|p| !p.1).map(|p| p.0).collect();
        eprintln!("{what}: compared {ran:?}; not on this CPU: {absent:?}");
    }

    /// A kernel's paths: the portable one, then `x86`'s kernels, one per instruction set of
    /// [`x86_features`] in its order, each with whether this CPU has it.
    fn with_x86_paths<K: Copy>(portable: K, x86: &[K]) -> Paths<K> {
        let features = x86_features();
        assert_eq!(
            features.len(),
            x86.len(),
            "one kernel per x86 instruction set"
        );
        let mut paths = vec![("portable", true, portable)];
        for ((name, present), &kernel) in features.into_iter().zip(x86) {
            paths.push((name, present, kernel));
        }
        paths
    }

    type MatvecKernel = fn(&mut [f32], &[f32], &[f32]);

    /// Every decode path.
    fn matvec_paths() -> Paths<MatvecKernel> {
        // SAFETY (both): run_paths calls a kernel only where this CPU has its instructions.
        let x86: &[MatvecKernel] = &[
            #[cfg(target_arch = "x86_64")]
            |o, w, x| unsafe { matvec_avx(o, w, x) },
            #[cfg(target_arch = "x86_64")]
            |o, w, x| unsafe { avx512::matvec_avx512(o, w, x) },
        ];
        with_x86_paths(matvec_portable, x86)
    }

    /// Runs `check(rows, cols, w, seed)` on every shape of [`SHAPES`] with a random
    /// `rows x cols` matrix `w`, drawing from one generator seeded `seed`.
    fn for_each_shape(seed: u64, mut check: impl FnMut(usize, usize, &[f32], &mut u64)) {
        let mut seed = seed;
        for (rows, cols) in SHAPES {
            let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
            check(rows, cols, &w, &mut seed);
        }
    }

    #[test]
    fn every_matvec_path_matches_the_definition_bit_for_bit() {
        for_each_shape(7, |rows, cols, w, seed| {
            let x: Vec<f32> = (0..cols).map(|_| lcg(seed)).collect();
            let want: Vec<f32> = w.chunks_exact(cols).map(|r| dot_scalar(r, &x)).collect();
            for (r, o) in want.iter().enumerate() {
                let row = &w[r * cols..][..cols];
                assert_eq!(o.to_bits(), dot(row, &x).to_bits(), "dot, {rows}x{cols}");
                let naive: f64 = row.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                assert!((*o as f64 - naive).abs() < 1e-4, "{o} vs {naive}");
            }
            let mut out = vec![f32::NAN; rows];
            matvec(&mut out, w, &x);
            assert_same_bits(&out, &want, format_args!("matvec, {rows}x{cols}"));
            run_paths("matvec", &matvec_paths(), |name, kernel| {
                let mut out = vec![f32::NAN; rows];
                kernel(&mut out, w, &x);
                assert_same_bits(&out, &want, format_args!("{name}, {rows}x{cols}"));
            });
        });
    }

    #[test]
    fn dot_follows_the_documented_order() {
        let n = 2 * LANES + 3;
        let a: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let b: Vec<f32> = (0..n).map(|i| 3.0 - i as f32 * 7e-4).collect();
        // Lane j accumulates a[j] * b[j] + a[j + LANES] * b[j + LANES], in that order.
        let mut l: Vec<f32> = (0..LANES).map(|j| 0.0 + a[j] * b[j]).collect();
        for j in 0..LANES {
            l[j] += a[j + LANES] * b[j + LANES];
        }
        let mut width = LANES;
        while width > 4 {
            width /= 2;
            for i in 0..width {
                l[i] += l[i + width];
            }
        }
        let mut expected = (l[0] + l[2]) + (l[1] + l[3]);
        for k in 2 * LANES..n {
            expected += a[k] * b[k];
        }
        assert_eq!(dot(&a, &b).to_bits(), expected.to_bits());
        assert_eq!(dot_scalar(&a, &b).to_bits(), expected.to_bits());
    }

    type MatmulKernel = fn(&mut [f32], &[f32], &[f32], usize, usize);

    /// Every batched path (`out, w, xs, n, d`).
    fn matmul_paths() -> Paths<MatmulKernel> {
        // SAFETY (both): as in `matvec_paths`.
        let x86: &[MatmulKernel] = &[
            #[cfg(target_arch = "x86_64")]
            |o, w, xs, n, d| unsafe { matmul_avx(o, w, xs, n, d) },
            #[cfg(target_arch = "x86_64")]
            |o, w, xs, n, d| unsafe { avx512::matmul_avx512(o, w, xs, n, d) },
        ];
        with_x86_paths(matmul_portable, x86)
    }

    #[test]
    fn every_matmul_path_matches_the_definition_bit_for_bit() {
        for_each_shape(11, |rows, cols, w, seed| {
            for batch in 1..=33 {
                let xs: Vec<f32> = (0..batch * cols).map(|_| lcg(seed)).collect();
                // Input b's outputs are the definition's dot products of every row with it.
                let want: Vec<f32> = xs
                    .chunks_exact(cols)
                    .flat_map(|x| w.chunks_exact(cols).map(|r| dot_scalar(r, x)))
                    .collect();
                let mut out = vec![f32::NAN; batch * rows];
                matmul(&mut out, w, &xs, batch);
                let shape = format!("batch {batch}, {rows}x{cols}");
                assert_same_bits(&out, &want, format_args!("matmul, {shape}"));
                run_paths("matmul", &matmul_paths(), |name, kernel| {
                    let mut out = vec![f32::NAN; batch * rows];
                    kernel(&mut out, w, &xs, cols, rows);
                    assert_same_bits(&out, &want, format_args!("{name}, {shape}"));
                });
            }
        });
    }
}
