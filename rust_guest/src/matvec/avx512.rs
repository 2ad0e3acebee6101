//! The batched f32 product with AVX-512F (x86_64, chosen at run time before the AVX path):
//! the same operations in the same order as [`super::dot_scalar`], 16 lanes per instruction.
//!
//! A row's [`LANES`] = 32 lane accumulators are two 16-lane registers: lane `j` of the scalar
//! definition is lane `j` of the first (`j < 16`) or lane `j - 16` of the second, each summing
//! `w[i] * x[i]` for `i = j (mod LANES)` in index order, multiply then add (no FMA). Then
//! [`reduce_avx512`] (the same additions as [`super::reduce`]) and the scalar tail.
//!
//! The batched product's loop is the AVX path's (`super::for_each_register_tile`, inlined into
//! each path's function). valgrind has no AVX-512, so the instruction budget measures the AVX
//! path: an earlier shared driver (a trait per instruction set) changed how LLVM inlined the
//! AVX decode (+2.5% instructions); this one leaves the decode's code as it was
//! (docs/toolchain.md, "This host").

use super::{for_each_register_tile, reduce_avx, tile_chunks_len, LANES, PREFETCH};
use core::arch::x86_64::*;

/// [`super::reduce`] of the 32 lanes held as two 16-lane vectors (lanes `0..16` in `low`,
/// `16..32` in `high`): [`reduce_avx`] on their four 8-lane quarters (lanes `8v..8v + 8` in
/// quarter `v`), the layout it takes, so the additions and their operands are the same.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce_avx512(low: __m512, high: __m512) -> f32 {
    let halves = |v: __m512| {
        (
            _mm512_castps512_ps256(v),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
        )
    };
    let ((a0, a1), (a2, a3)) = (halves(low), halves(high));
    // SAFETY: AVX-512F implies AVX.
    unsafe { reduce_avx([a0, a1, a2, a3]) }
}

/// [`reduce_avx512`] of eight (row, input) pairs at once (a 2 x 4 tile's accumulators, in
/// `pairs[r * 4 + b]`): each step of [`super::reduce_avx`] runs on several pairs' lanes in
/// one 512-bit instruction, the pairs moved into one register's 128- or 256-bit blocks by
/// block shuffles first. Lane for lane the same additions with the same operands, so the
/// same bits; about half the instructions of eight single reductions, a share that counts
/// on 288-wide rows (nine 32-lane steps per pair).
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn reduce8_avx512(pairs: [[__m512; 2]; 8]) -> [f32; 8] {
    // 32 -> 16: lane i + lane i + 16, [a0 + a2, a1 + a3] in reduce_avx's quarters.
    let s: [__m512; 8] = std::array::from_fn(|p| _mm512_add_ps(pairs[p][0], pairs[p][1]));
    // 16 -> 8, two pairs per register: [p's lanes 0..8, q's 0..8] + [p's 8..16, q's 8..16].
    let eights = |p: __m512, q: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(p, q),
            _mm512_shuffle_f32x4::<0xee>(p, q),
        )
    };
    let e = [
        eights(s[0], s[1]),
        eights(s[2], s[3]),
        eights(s[4], s[5]),
        eights(s[6], s[7]),
    ];
    // 8 -> 4, four pairs per register: each eight's low four lanes + its high four.
    let fours = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xdd>(a, b),
        )
    };
    let mut out = [0.0f32; 8];
    for (half, (a, b)) in [(e[0], e[1]), (e[2], e[3])].into_iter().enumerate() {
        let h = fours(a, b);
        // (h0 + h2, h1 + h3) in each block, then their sum in its lane 0.
        let pairs = _mm512_add_ps(h, _mm512_permute_ps::<0xee>(h));
        let sums = _mm512_add_ps(pairs, _mm512_movehdup_ps(pairs));
        let lanes: [f32; 16] = core::mem::transmute(sums);
        for k in 0..4 {
            out[4 * half + k] = lanes[4 * k];
        }
    }
    out
}

/// One row's dot product with `x`, bit-identical to [`super::dot`].
///
/// # Safety
/// The CPU must support AVX-512F.
///
/// # Panics
/// If the lengths differ.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_row(row: &[f32], x: &[f32]) -> f32 {
    assert_eq!(row.len(), x.len());
    let n = x.len() / LANES * LANES;
    let (mut low, mut high) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut k = 0;
    while k < n {
        // SAFETY: k + LANES <= n <= x.len() == row.len().
        unsafe {
            let (p, q) = (row.as_ptr().add(k), x.as_ptr().add(k));
            // A hint only (no effect on results), as in dot_block_avx: the weights
            // PREFETCH floats ahead, the two cache lines this chunk's successor will need.
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 16) as *const i8);
            let w0 = _mm512_loadu_ps(p);
            let w1 = _mm512_loadu_ps(p.add(16));
            low = _mm512_add_ps(low, _mm512_mul_ps(w0, _mm512_loadu_ps(q)));
            high = _mm512_add_ps(high, _mm512_mul_ps(w1, _mm512_loadu_ps(q.add(16))));
        }
        k += LANES;
    }
    // SAFETY: the caller checked AVX-512F.
    let mut sum = unsafe { reduce_avx512(low, high) };
    for (w, x) in row[n..].iter().zip(&x[n..]) {
        sum += w * x;
    }
    sum
}

/// `out = W x` with AVX-512F, one row at a time (see [`super::ROWS`]): the batched product's
/// leftover inputs, on a row tile still in cache. Not the decode's: streaming from memory it
/// was slower than the AVX path (see [`super::matvec`]).
///
/// # Safety
/// The CPU must support AVX-512F; `w.len() == out.len() * x.len()` and `x` is not empty.
#[target_feature(enable = "avx512f")]
#[inline(never)]
pub(super) unsafe fn matvec_avx512(out: &mut [f32], w: &[f32], x: &[f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
        // SAFETY: the caller checked AVX-512F.
        *o = unsafe { dot_row(row, x) };
    }
}

/// Weight rows and inputs [`dot_tile`] covers: `2 TILE_R TILE_B` accumulators plus
/// `2 TILE_B` input vectors and a row's two weight vectors fit AVX-512's 32 registers
/// (measured in session 12: 288x288 batch 32, 5.7 ns per (row, input) pair with AVX -> 4.9).
const TILE_R: usize = 2;
const TILE_B: usize = 4;

/// `R x B` dot products (`R` rows against `B` inputs), each bit-identical to [`super::dot`]:
/// every (row, input) pair has its two 16-lane accumulators (the module's layout), so the
/// rows are walked once, each loaded weight vector multiplied into `B` inputs' accumulators
/// and each input vector into `R` rows'.
///
/// # Safety
/// The CPU must support AVX-512F.
///
/// # Panics
/// If the rows' and inputs' lengths differ.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_tile<const R: usize, const B: usize>(
    rows: [&[f32]; R],
    xs: [&[f32]; B],
) -> [[f32; B]; R] {
    let n = tile_chunks_len(&rows, &xs);
    let mut acc = [[[_mm512_setzero_ps(); 2]; B]; R];
    let mut k = 0;
    while k < n {
        // SAFETY: k + LANES <= n, the length of every row and input at least.
        unsafe {
            let x: [[__m512; 2]; B] = std::array::from_fn(|b| {
                let p = xs[b].as_ptr().add(k);
                [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
            });
            for r in 0..R {
                let p = rows[r].as_ptr().add(k);
                // A hint only, as in dot_row.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + 16) as *const i8);
                let w = [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))];
                for b in 0..B {
                    for h in 0..2 {
                        acc[r][b][h] = _mm512_add_ps(acc[r][b][h], _mm512_mul_ps(w[h], x[b][h]));
                    }
                }
            }
        }
        k += LANES;
    }
    let mut out = [[0.0f32; B]; R];
    if R * B == 8 {
        let pairs = std::array::from_fn(|p| acc[p / B][p % B]);
        // SAFETY: the caller checked AVX-512F.
        let sums = unsafe { reduce8_avx512(pairs) };
        for (p, sum) in sums.into_iter().enumerate() {
            out[p / B][p % B] = sum;
        }
    }
    for r in 0..R {
        for b in 0..B {
            let [low, high] = acc[r][b];
            let mut sum = if R * B == 8 {
                out[r][b]
            } else {
                // SAFETY: the caller checked AVX-512F.
                unsafe { reduce_avx512(low, high) }
            };
            for (w, x) in rows[r][n..].iter().zip(&xs[b][n..]) {
                sum += w * x;
            }
            out[r][b] = sum;
        }
    }
    out
}

/// [`super::matmul`] with AVX-512F: [`super::for_each_register_tile`] with [`dot_tile`] and
/// [`matvec_avx512`].
///
/// # Safety
/// The CPU must support AVX-512F; `xs` is `batch x n`, `out` is `batch x d` and `w` is
/// `d x n` floats, `n > 0`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn matmul_avx512(out: &mut [f32], w: &[f32], xs: &[f32], n: usize, d: usize) {
    // SAFETY (all three): the caller checked AVX-512F.
    for_each_register_tile::<TILE_R, TILE_B>(
        (out, w, xs, n, d),
        |rows, x| unsafe { dot_tile(rows, x) },
        |row, x| unsafe { dot_tile(row, x) },
        |out, rows, x| unsafe { matvec_avx512(out, rows, x) },
    );
}
