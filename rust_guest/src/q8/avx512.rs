//! The native int8 matrix-vector product with AVX-512 (F, BW, VNNI): bit for bit
//! [`super::matvec_q8`]'s definition, for any group size.
//!
//! Why this shape. It is the AVX2 kernel's order of work (one row at a time, read in order:
//! one stream for the hardware prefetcher; four groups' dots transposed into one register, their
//! scale steps lane-wise, the products added in group order), with each group's integer dot
//! taken 32 weights per `vpdpwssd` instead of 16 per `vpmovsxbw` + `vpmaddwd` + `vpaddd`. The
//! decode reads its weights from memory, so wider kernels that read several rows side by side
//! lost (docs/toolchain.md, "This host"). No masked loads: slow on Zen 5 from memory not in
//! cache (measured).
//!
//! Exactness: `vpdpwssd` adds two i16 x i16 products to an i32 lane, as `vpmaddwd` + `vpaddd`
//! do; weights lie in -128..=127 and activations are i16, so every partial sum of a group of up
//! to 256 values fits an i32 (256 * 128 * 32768 = 2^30) and the integer order does not matter.

use super::{add_four_groups, quarter_sum};
use core::arch::x86_64::*;

/// Whether this CPU runs [`matvec`]: every feature its `target_feature` list enables.
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// `acc + ` the products of 32 weights and 32 activations (unmasked [`dot_chunk`]).
///
/// # Safety
/// AVX-512 F/BW/VNNI; 32 values at `w` and `x` are readable.
#[inline(always)]
unsafe fn dot_chunk_full(acc: __m512i, w: *const i8, x: *const i16) -> __m512i {
    // SAFETY: the caller's contract; unaligned loads.
    unsafe {
        let wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(w as *const __m256i));
        let xv = _mm512_loadu_si512(x as *const __m512i);
        _mm512_dpwssd_epi32(acc, wv, xv)
    }
}

/// One group's exact dot for one row, in four i32 lanes: `gs` weights at `w` against `gs`
/// activations at `x`, 32 at a time, then 16, then one by one (no masked loads: slow on Zen 5
/// from memory not in cache, measured).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; `gs` values at `w` and `x` are readable.
#[inline(always)]
unsafe fn group_quarter(w: *const i8, x: *const i16, gs: usize) -> __m128i {
    let mut acc = _mm512_setzero_si512();
    let mut k = 0;
    // SAFETY: every read lies below gs.
    unsafe {
        while k + 32 <= gs {
            acc = dot_chunk_full(acc, w.add(k), x.add(k));
            k += 32;
        }
        let half = _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64::<1>(acc),
        );
        let mut half = half;
        if k + 16 <= gs {
            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(k) as *const __m128i));
            let xv = _mm256_loadu_si256(x.add(k) as *const __m256i);
            half = _mm256_dpwssd_epi32(half, wv, xv);
            k += 16;
        }
        let mut quarter = _mm_add_epi32(
            _mm256_castsi256_si128(half),
            _mm256_extracti128_si256::<1>(half),
        );
        if k < gs {
            let mut rest = 0i32;
            while k < gs {
                rest += *w.add(k) as i32 * *x.add(k) as i32;
                k += 1;
            }
            quarter = _mm_add_epi32(quarter, _mm_cvtsi32_si128(rest));
        }
        quarter
    }
}

/// `out = W x` as [`super::matvec_q8`] defines it: the AVX2 kernel's order of work (row by
/// row, four groups at a time), each group's integer dot 32 values per `vpdpwssd`.
///
/// `G` > 0 is the group size as a constant (unrolled loops); 0 reads it from `gs`.
///
/// # Safety
/// [`available`] is true; the shapes are checked by the caller (`w.len() == out.len() * n`,
/// `ws.len() * gs == w.len()`, `xs.len() * gs == n`, `n == xq.len() > 0`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn matvec<const G: usize>(
    out: &mut [f32],
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xs: &[f32],
    gs: usize,
) {
    let gs = if G > 0 { G } else { gs };
    let n = xq.len();
    for ((o, row), rs) in out
        .iter_mut()
        .zip(w.chunks_exact(n))
        .zip(ws.chunks_exact(n / gs))
    {
        // A hint only: a little of the next row (rows are read in order).
        _mm_prefetch::<_MM_HINT_T0>(row.as_ptr().wrapping_add(n + 512));
        let mut val = 0.0f32;
        let groups = rs.len();
        let mut g = 0;
        while g + 4 <= groups {
            // SAFETY: groups g..g + 4 lie within the row and xq.
            let acc: [__m128i; 4] = core::array::from_fn(|j| unsafe {
                let at = (g + j) * gs;
                group_quarter(row.as_ptr().add(at), xq.as_ptr().add(at), gs)
            });
            // SAFETY: groups g..g + 4 have their scales in rs and xs.
            val = unsafe { add_four_groups(val, acc, rs.as_ptr().add(g), xs.as_ptr().add(g)) };
            g += 4;
        }
        for g in g..groups {
            let at = g * gs;
            // SAFETY: group g lies within the row and xq.
            let q = unsafe { group_quarter(row.as_ptr().add(at), xq.as_ptr().add(at), gs) };
            val += quarter_sum(q) as f32 * rs[g] * xs[g];
        }
        *o = val;
    }
}
