//! The steps the two x86 kernels (AVX2 in `q8.rs`, AVX-512 in `avx512.rs`) take after each
//! group's integer dot: a group's dot arrives as four exact i32 lanes (its "quarter"), and
//! runq.c's float step follows. SSE2 only (the x86_64 baseline), inlined into each kernel's
//! `target_feature` function, so both compile them with their own instruction set.

use core::arch::x86_64::*;

/// `val` plus four groups' products, runq.c's step: the four quarters' lane sums transposed
/// into four exact dots, `(dot as f32 * ws[j]) * xs[j]` lane-wise (the same roundings), then
/// the products added to `val` in group order.
///
/// # Safety
/// 4 floats are readable at `ws` and at `xs`.
#[inline(always)]
pub(super) unsafe fn add_four_groups(
    mut val: f32,
    quarters: [__m128i; 4],
    ws: *const f32,
    xs: *const f32,
) -> f32 {
    // SAFETY: SSE2 is part of the x86_64 baseline; the loads: the caller's contract.
    let products = unsafe {
        let t0 = _mm_unpacklo_epi32(quarters[0], quarters[1]);
        let t1 = _mm_unpackhi_epi32(quarters[0], quarters[1]);
        let t2 = _mm_unpacklo_epi32(quarters[2], quarters[3]);
        let t3 = _mm_unpackhi_epi32(quarters[2], quarters[3]);
        let (s01, s23) = (_mm_add_epi32(t0, t1), _mm_add_epi32(t2, t3));
        let dots = _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23));
        _mm_mul_ps(
            _mm_mul_ps(_mm_cvtepi32_ps(dots), _mm_loadu_ps(ws)),
            _mm_loadu_ps(xs),
        )
    };
    let mut lanes = [0.0f32; 4];
    // SAFETY: `lanes` holds 4 floats.
    unsafe { _mm_storeu_ps(lanes.as_mut_ptr(), products) };
    for l in lanes {
        val += l;
    }
    val
}

/// A group's exact dot: the sum of its quarter's four i32 lanes.
#[inline(always)]
pub(super) fn quarter_sum(quarter: __m128i) -> i32 {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    unsafe {
        let pairs = _mm_add_epi32(quarter, _mm_shuffle_epi32::<0b01_00_11_10>(quarter));
        _mm_cvtsi128_si32(_mm_add_epi32(
            pairs,
            _mm_shuffle_epi32::<0b10_11_00_01>(pairs),
        ))
    }
}
