//! [`matmul`](super::matmul) with 4-lane vectors (SSE natively without AVX, simd128 in the
//! wasm32 guest, where it is the verification's and batched steps' product): a register tile of
//! rows and inputs over interleaved inputs, each (row, input) summed in [`LANES`] lanes in the
//! order of [`dot`](super::dot), so the same bits as every other path.

#[cfg(target_arch = "x86_64")]
use super::reduce;
use super::{matvec, v4, LANES};

/// Weight rows and inputs [`dot_tile_v4`] covers: each weight vector loaded is multiplied into
/// `V4_TILE_B` inputs' accumulators, each input vector into `V4_TILE_R` rows'. 2 x 4 is the
/// largest tile whose 8 accumulators, one chunk's 6 loads and a product fit the 16 vector
/// registers, so a trip of [`V4_TILE_U`] chunks keeps them all in registers. (Session 12,
/// with two chunks per loop trip and the accumulators in stack slots, ns per (row, input)
/// pair on 288-wide rows: 2 x 2 28, 3 x 3 23, 2 x 4 23, 4 x 3 21, 3 x 4 20; session 14, with
/// the guarded trip: 3 x 4 spills and a 15M verification took 0.43-0.44 CPU s against
/// 0.37-0.38 with 2 x 4.)
const V4_TILE_R: usize = 2;
const V4_TILE_B: usize = 4;
/// Chunks of [`LANES`] per loop trip in [`lane_group_v4`], each step guarded (`u < left`), so
/// rows of up to `V4_TILE_U` chunks take one trip. Under wasmtime's epoch checks Cranelift keeps
/// loop-carried vectors in stack slots across each back-edge (a reload and a store per
/// accumulator per trip); inside a trip the guards' branches make each step its own block, so
/// its 6 loads are followed by its own arithmetic (no loads hoisted above it) and the
/// accumulators stay in registers. 9: the 15M model's 288-wide rows in one trip. Measured (15M
/// verification, CPU s): 3 x 4 with 2 chunks per unguarded trip 0.42-0.43; 2 x 4 guarded, 4
/// chunks 0.38-0.40, 8 0.37-0.39, 9 and 12 0.35-0.37.
const V4_TILE_U: usize = 9;
/// The smallest rest of inputs (after whole groups of [`V4_TILE_B`]) that [`matmul_v4`] fills
/// up with zero inputs for the tile rather than run through `matvec` one by one. Measured in
/// the guest (15M, `step_batch` of k sessions, CPU ms per step): 3 sessions 8.4 -> 6.4-6.6,
/// 2 sessions 5.8 -> 5.65-5.8; one input alone stays with `matvec` (the tile would do 4).
const V4_PAD_FROM: usize = 2;
/// Bytes of weight rows [`matmul_v4`] keeps hot across the batch (L2: the classifier's rows
/// come from memory once; 128 KiB measured 28-32 ns per pair on the 15M classifier, 32 KiB 38).
const V4_TILE_BYTES: usize = 128 * 1024;

/// [`matmul`] with 4-lane vectors (simd128 in the guest, SSE natively without AVX): the inputs
/// interleaved once ([`interleave_inputs`]), then per tile of [`V4_TILE_BYTES`] of rows, groups
/// of [`V4_TILE_B`] inputs and [`V4_TILE_R`] rows through [`dot_tile_v4`], leftover rows through
/// a 1-row tile; a last group of at least [`V4_PAD_FROM`] inputs is filled up with zero inputs,
/// a single leftover input goes through [`matvec`].
pub(super) fn matmul_v4(out: &mut [f32], w: &[f32], xs: &[f32], n: usize, d: usize) {
    const TR: usize = V4_TILE_R;
    const TB: usize = V4_TILE_B;
    let batch = xs.len() / n;
    let tile = (V4_TILE_BYTES / (n * 4)).max(1);
    // A last group of at least [`V4_PAD_FROM`] inputs is filled up with zero inputs (their
    // products computed and dropped); a smaller rest goes through `matvec`.
    let groups = batch / TB + usize::from(batch % TB >= V4_PAD_FROM);
    let packed = interleave_inputs::<TB>(xs, n, groups);
    let zero = vec![0.0f32; if groups * TB > batch { n } else { 0 }];
    let group_len = n / LANES * LANES * TB;
    for r0 in (0..d).step_by(tile) {
        let r1 = (r0 + tile).min(d);
        for g in 0..groups {
            let b0 = g * TB;
            let real = (batch - b0).min(TB);
            let x: [&[f32]; TB] = std::array::from_fn(|b| {
                if b < real {
                    &xs[(b0 + b) * n..][..n]
                } else {
                    &zero
                }
            });
            let xg = &packed[g * group_len..][..group_len];
            let mut r = r0;
            while r + TR <= r1 {
                let rows: [&[f32]; TR] = std::array::from_fn(|i| &w[(r + i) * n..][..n]);
                let got = dot_tile_v4::<TR, TB>(rows, xg, x);
                for (i, g) in got.iter().enumerate() {
                    for (b, v) in g.iter().enumerate().take(real) {
                        out[(b0 + b) * d + r + i] = *v;
                    }
                }
                r += TR;
            }
            while r < r1 {
                let got = dot_tile_v4::<1, TB>([&w[r * n..][..n]], xg, x);
                for (b, v) in got[0].iter().enumerate().take(real) {
                    out[(b0 + b) * d + r] = *v;
                }
                r += 1;
            }
        }
        for b in (groups * TB).min(batch)..batch {
            matvec(
                &mut out[b * d + r0..b * d + r1],
                &w[r0 * n..r1 * n],
                &xs[b * n..][..n],
            );
        }
    }
}

/// The whole [`LANES`]-chunks of `groups` groups of `B` inputs (`xs` holds rows of `n`; inputs
/// past its end are zeros), interleaved so that one step of [`lane_group_v4`] finds its `B` input vectors side by
/// side: per group, chunk `c`, lane group `v` (lanes `4v..4v + 4`) and input `b`, the 4 floats
/// `x_b[32c + 4v..][..4]`. Why: with one pointer for all `B` inputs (constant offsets that fold
/// into the loads) the guest's tile loop no longer keeps `B` base addresses in registers, nor
/// recomputes each load's 32-bit address (Cranelift reloaded the bases from the stack and
/// emitted a `lea` per load). Only where values are read from changes: every lane keeps its
/// products and their order.
fn interleave_inputs<const B: usize>(xs: &[f32], n: usize, groups: usize) -> Vec<f32> {
    let chunks = n / LANES;
    let mut packed = Vec::with_capacity(groups * B * chunks * LANES);
    for g in 0..groups {
        for c in 0..chunks {
            for v in 0..LANES / 4 {
                for b in g * B..(g + 1) * B {
                    match xs.get(b * n..(b + 1) * n) {
                        Some(x) => packed.extend_from_slice(&x[c * LANES + 4 * v..][..4]),
                        None => packed.extend_from_slice(&[0.0; 4]),
                    }
                }
            }
        }
    }
    packed
}

/// `R x B` dot products (`R` rows against `B` inputs), each bit-identical to [`dot`]: the
/// lanes are taken one 4-lane group at a time ([`lane_group_v4`]: lanes `4v..4v + 4` of every
/// pair, over the chunks in index order, so lane `j` still sums `w[i] * x[i]` for
/// `i = j (mod LANES)` in index order), then [`reduce`]'s tree over the 32 lanes and the
/// scalar tail. One group at a time keeps `R * B` accumulators live instead of `8 * R * B`;
/// the rows and inputs stay in L1 across the 8 passes. `packed` is the inputs' whole chunks
/// from [`interleave_inputs`], `xs` the inputs themselves (for the tail).
#[inline(always)]
fn dot_tile_v4<const R: usize, const B: usize>(
    rows: [&[f32]; R],
    packed: &[f32],
    xs: [&[f32]; B],
) -> [[f32; B]; R] {
    const NV: usize = LANES / 4;
    let len = xs[0].len();
    for s in rows.iter().chain(&xs) {
        assert_eq!(s.len(), len);
    }
    let n = len / LANES * LANES;
    assert_eq!(packed.len(), n * B);
    let mut groups = [[[v4::zero(); NV]; B]; R];
    // `v` is both the lane offset and the innermost index of `groups[r][b]`.
    #[allow(clippy::needless_range_loop)]
    for v in 0..NV {
        // SAFETY: every row holds `len >= n` floats and `packed` `n * B` (checked above),
        // `v < NV`.
        let acc = unsafe { lane_group_v4::<R, B>(rows, packed, v, n / LANES) };
        for r in 0..R {
            for b in 0..B {
                groups[r][b][v] = acc[r][b];
            }
        }
    }
    let mut out = [[0.0f32; B]; R];
    for r in 0..R {
        for b in 0..B {
            #[cfg(target_arch = "x86_64")]
            let mut sum = reduce(v4::lanes(&groups[r][b]));
            #[cfg(target_arch = "wasm32")]
            let mut sum = v4::reduce(&groups[r][b]);
            for (w, x) in rows[r][n..].iter().zip(&xs[b][n..]) {
                sum += w * x;
            }
            out[r][b] = sum;
        }
    }
    out
}

/// Lanes `4v..4v + 4` of every (row, input) pair of [`dot_tile_v4`] over `chunks` chunks,
/// returned by value. Each trip advances one pointer per row and one for the interleaved
/// inputs, and every load is at a constant offset from one of them.
///
/// # Safety
/// Every row holds at least `chunks * LANES` floats, `packed` holds `chunks * LANES * B`
/// (the layout of [`interleave_inputs`]), and `v < LANES / 4`.
#[inline(always)]
unsafe fn lane_group_v4<const R: usize, const B: usize>(
    rows: [&[f32]; R],
    packed: &[f32],
    v: usize,
    chunks: usize,
) -> [[v4::V; B]; R] {
    let mut acc = [[v4::zero(); B]; R];
    // One chunk's step: `wp` at lanes `4v..` of each row's chunk, `xp` at the chunk's lane
    // group `v` of the interleaved inputs.
    let step = |acc: &mut [[v4::V; B]; R], wp: [*const f32; R], xp: *const f32| {
        // SAFETY: the pointers stay inside the rows and `packed` (the caller's contract).
        unsafe {
            let x: [v4::V; B] = std::array::from_fn(|b| v4::load(xp.add(4 * b)));
            for r in 0..R {
                let w = v4::load(wp[r]);
                for b in 0..B {
                    acc[r][b] = v4::mul_add(acc[r][b], w, x[b]);
                }
            }
        }
    };
    // Wrapping: with no whole chunk (`chunks == 0`) they point past the slices and are never
    // read.
    let mut wp = rows.map(|row| row.as_ptr().wrapping_add(4 * v));
    let mut xp = packed.as_ptr().wrapping_add(4 * B * v);
    let mut left = chunks;
    // The trip's steps written out, each guarded (not a loop LLVM may or may not unroll: at
    // 11 or more chunks `for u in 0..V4_TILE_U` stayed a loop, twice as slow).
    macro_rules! guarded_steps {
        ($($u:literal)*) => {
            const { assert!([$($u),*].len() == V4_TILE_U) };
            $(
                if $u < left {
                    // SAFETY: `$u < left`: chunk `$u` from here is within the rows and `packed`.
                    unsafe {
                        step(&mut acc, wp.map(|p| p.add($u * LANES)), xp.add($u * LANES * B))
                    };
                }
            )*
        };
    }
    while left > 0 {
        guarded_steps!(0 1 2 3 4 5 6 7 8);
        let done = left.min(V4_TILE_U);
        // Wrapping: after the last chunk they may point past the slices' ends (by `4v`).
        wp = wp.map(|p| p.wrapping_add(done * LANES));
        xp = xp.wrapping_add(done * LANES * B);
        left -= done;
    }
    acc
}
