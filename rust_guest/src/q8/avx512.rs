//! The native int8 matrix-vector product with AVX-512 (F, BW, VNNI): bit for bit
//! [`super::matvec_q8`]'s definition, for any group size.
//!
//! Why this shape. The AVX2 kernel computes one row at a time, so each row's float chain
//! (`val += (dot as f32 * w_scale) * x_scale`, one add per group, in group order) is a serial
//! dependency of 3-cycle adds that 16-lane integer work would leave waiting. Here sixteen rows
//! go together, one row per float lane: for each group, every row's exact integer dot (32
//! weights per `vpdpwssd`, the last partial chunk masked), the sixteen dots reduced into one
//! vector whose lane `r` is row `r`'s dot, then the float step lane-wise: lane `r` computes
//! exactly row `r`'s `(dot as f32 * w_scale) * x_scale` and adds it to row `r`'s running sum,
//! group after group. Each output keeps its own summation order; no lane reads another's.
//!
//! Exactness: `vpdpwssd` adds two i16 x i16 products to an i32 lane, as `vpmaddwd` + `vpaddd`
//! do; weights lie in -128..=127 and activations are i16, so every partial sum of a group of up
//! to 256 values fits an i32 (256 * 128 * 32768 = 2^30) and the integer order does not matter.

use core::arch::x86_64::*;

/// Rows computed together: one per f32 lane of a 512-bit register.
const ROWS: usize = 16;

/// Whether this CPU runs [`matvec`].
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// `acc + ` the products of 32 weights (at `w`) and 32 activations (at `x`), pairwise into 16
/// i32 lanes; `mask` keeps the first bits' values (the rest count as 0 and are not read).
///
/// # Safety
/// AVX-512 F/BW/VNNI; the first `mask.count_ones()` values at `w` and `x` are readable.
#[inline(always)]
unsafe fn dot_chunk(acc: __m512i, w: *const i8, x: *const i16, mask: __mmask32) -> __m512i {
    // SAFETY: the caller's contract; masked lanes are not accessed.
    unsafe {
        let wv = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(mask, w));
        let xv = _mm512_maskz_loadu_epi16(mask, x);
        _mm512_dpwssd_epi32(acc, wv, xv)
    }
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

/// One group's integer lanes for one row: `gs` weights at `w` against `gs` activations at `x`.
///
/// # Safety
/// AVX-512 F/BW/VNNI; `gs` values at `w` and `x` are readable.
#[inline(always)]
unsafe fn group_lanes(w: *const i8, x: *const i16, gs: usize) -> __m512i {
    let mut acc = _mm512_setzero_si512();
    let mut k = 0;
    // SAFETY: k + 32 <= gs in the loop; the tail reads gs - k < 32 values (masked).
    unsafe {
        while k + 32 <= gs {
            acc = dot_chunk_full(acc, w.add(k), x.add(k));
            k += 32;
        }
        if k < gs {
            let mask = (1u32 << (gs - k)) - 1;
            acc = dot_chunk(acc, w.add(k), x.add(k), mask);
        }
    }
    acc
}

/// Sixteen vectors of i32 lanes summed each: lane `r` of the result is the sum of `v[r]`'s
/// lanes (exact; pairs of vectors interleaved and added, four times).
#[target_feature(enable = "avx512f")]
#[inline]
fn sum_lanes(v: [__m512i; ROWS]) -> __m512i {
    // Pairs of rows: per 128-bit quarter, [a0+a2, b0+b2, a1+a3, b1+b3].
    let pairs: [__m512i; 8] = core::array::from_fn(|i| {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
    });
    // Fours: per quarter, rows 4j..4j+3's sums over that quarter.
    let quads: [__m512i; 4] = core::array::from_fn(|j| {
        let (a, b) = (pairs[2 * j], pairs[2 * j + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
    });
    // Quarters added pairwise, twice: quarter q of the result is rows 4q..4q+3's sums.
    let halves = |a: __m512i, b: __m512i| {
        _mm512_add_epi32(
            _mm512_shuffle_i32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_i32x4::<0b11_01_11_01>(a, b),
        )
    };
    halves(halves(quads[0], quads[1]), halves(quads[2], quads[3]))
}

/// `out = W x` as [`super::matvec_q8`] defines it, sixteen rows at a time (the last rows of a
/// partial block repeat its last row, their lanes not stored).
///
/// `G` > 0 is the group size as a constant (unrolled loops); 0 reads it from `gs`.
///
/// # Safety
/// [`available`] is true; the shapes are checked by the caller (`w.len() == out.len() * n`,
/// `ws.len() * gs == w.len()`, `xs.len() * gs == n`, `n == xq.len() > 0`).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
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
    let groups = n / gs;
    let rows = out.len();
    // Row r's scale for a group sits `r * groups` floats after row 0's.
    let scale_at = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(groups as i32),
    );
    for r0 in (0..rows).step_by(ROWS) {
        let live = (rows - r0).min(ROWS);
        // Lanes past the last row compute that row again (never stored, never out of bounds).
        let row_at: [usize; ROWS] = core::array::from_fn(|r| (r0 + r.min(live - 1)) * n);
        let scale_rows = if live == ROWS {
            scale_at
        } else {
            _mm512_min_epi32(scale_at, _mm512_set1_epi32(((live - 1) * groups) as i32))
        };
        let mut val = _mm512_setzero_ps();
        for (g, &x_scale) in xs.iter().enumerate() {
            let at = g * gs;
            // SAFETY: every row_at[r] + at + gs <= w.len() and at + gs <= n == xq.len().
            let dots = sum_lanes(core::array::from_fn(|r| unsafe {
                group_lanes(w.as_ptr().add(row_at[r] + at), xq.as_ptr().add(at), gs)
            }));
            // SAFETY: (r0 + r) * groups + g < ws.len() for every gathered lane (clamped above).
            let wsv =
                unsafe { _mm512_i32gather_ps::<4>(scale_rows, ws.as_ptr().add(r0 * groups + g)) };
            // Lane r: row r's product as the definition rounds it, added to row r's sum.
            let p = _mm512_mul_ps(
                _mm512_mul_ps(_mm512_cvtepi32_ps(dots), wsv),
                _mm512_set1_ps(x_scale),
            );
            val = _mm512_add_ps(val, p);
        }
        let keep = ((1u32 << live) - 1) as __mmask16;
        // SAFETY: the first `live` lanes land in out[r0..r0 + live].
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(r0), keep, val) };
    }
}
