//! Q4_K matrices kept packed (4 bits a weight) and multiplied straight from their nibbles.
//!
//! A packed block is llama.cpp's Q4_K block with its header unpacked once at load: `d` and
//! `dmin` as f32 (exact widenings of the f16s), the eight 6-bit scales and mins as bytes, then
//! the 128 bytes of nibbles as the file has them (bytes 32k..32k+32 hold sub-block 2k in their
//! low nibbles and 2k+1 in their high ones): 152 bytes per 256 weights (0.59 byte a weight,
//! against 1.5 for the decoded int8 values with f32 scales and offsets).
//!
//! Why the output is bit for bit the decoded int8 path's (`q8::matmul_q8` then the offsets'
//! subtraction in `transformer`): each group's dot product `sum(q * xq)` is an exact integer
//! however it is summed, and `d * scale` and `dmin * min` are exact in f32 (11 by 6 significant
//! bits), so computing them per use gives the decoded path's very scales and offsets. The float
//! steps are then the same, in the same order, per row: `val += (dot as f32 * scale) * xs[g]`
//! and `c += offset * sums[g]` over the activation groups `g` in order, and `val - c`. The
//! SIMD paths run four rows side by side, one row per f32 lane, so each lane performs exactly
//! that sequence (and the four rows' additions overlap instead of waiting on each other).
//!
//! Only x86_64 (AVX2) loads Q4_K packed ([`PACKED`]). A simd128 version of the four-row
//! kernel (nibbles widened to i16, `i32x4.dot_i16x8_s`, the same lane-per-row float steps) ran
//! the 1.1B Q4_K_M file at 1.19 tok/s on the guest against 1.53 for the decoded int8 path, so
//! the guest keeps the decoded path (see the git history of this file for that kernel).

use std::fmt;

use crate::error::{EngineError, Result};
use crate::kquants::{f16_to_f32, scale_min_k4, Q4_K_BYTES, Q4_K_GROUP, QK_K};

/// Whether Q4_K matrices are loaded packed on this target (else decoded to the int8 path).
pub const PACKED: bool = cfg!(target_arch = "x86_64");

/// The header of a packed block: d, dmin (f32), 8 scales, 8 mins (bytes).
const HEAD: usize = 24;
/// Bytes per packed block.
pub const PACKED_BYTES: usize = HEAD + QK_K / 2;

/// A Q4_K matrix of `rows x cols` weights (`cols` a multiple of 256), packed row by row.
#[derive(Clone)]
pub struct PackedQ4K {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl fmt::Debug for PackedQ4K {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackedQ4K({} x {})", self.rows, self.cols)
    }
}

impl PackedQ4K {
    /// Packs `rows x cols` weights given as the file's Q4_K blocks.
    pub fn from_blocks(blocks: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(QK_K) || blocks.len() != rows * cols / QK_K * Q4_K_BYTES {
            return Err(EngineError::Internal(format!(
                "{} bytes of Q4_K blocks for a {rows} x {cols} matrix",
                blocks.len()
            )));
        }
        let mut data = Vec::with_capacity(rows * cols / QK_K * PACKED_BYTES);
        for block in blocks.chunks_exact(Q4_K_BYTES) {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let dmin = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            data.extend_from_slice(&d.to_le_bytes());
            data.extend_from_slice(&dmin.to_le_bytes());
            let pairs: Vec<(u8, u8)> = (0..8).map(|j| scale_min_k4(j, &block[4..16])).collect();
            data.extend(pairs.iter().map(|p| p.0));
            data.extend(pairs.iter().map(|p| p.1));
            data.extend_from_slice(&block[16..Q4_K_BYTES]);
        }
        Ok(Self { rows, cols, data })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the packed weights occupy.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    fn row_bytes(&self) -> usize {
        self.cols / QK_K * PACKED_BYTES
    }

    fn row(&self, r: usize) -> &[u8] {
        let b = self.row_bytes();
        &self.data[r * b..(r + 1) * b]
    }

    /// Row `r`'s values as the decoded path computes them: `q * scale`, then `- offset`.
    ///
    /// # Panics
    /// If `r` is out of range or `out` is not `cols` long.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.cols);
        for (blk, out) in self
            .row(r)
            .chunks_exact(PACKED_BYTES)
            .zip(out.chunks_exact_mut(QK_K))
        {
            let (d, dmin) = head(blk);
            for (j, out) in out.chunks_exact_mut(Q4_K_GROUP).enumerate() {
                let (s, m) = (d * f32::from(blk[8 + j]), dmin * f32::from(blk[16 + j]));
                let (bytes, shift) = (&blk[HEAD + 32 * (j / 2)..][..32], 4 * (j % 2));
                for (o, b) in out.iter_mut().zip(bytes) {
                    *o = f32::from((b >> shift) & 0xf) * s;
                    *o -= m;
                }
            }
        }
    }
}

/// A packed block's d and dmin.
#[inline(always)]
fn head(blk: &[u8]) -> (f32, f32) {
    let f = |i: usize| f32::from_le_bytes([blk[i], blk[i + 1], blk[i + 2], blk[i + 3]]);
    (f(0), f(4))
}

/// One row, scalar: the definition the SIMD paths reproduce. `gs` divides 32.
fn row_scalar(row: &[u8], xq: &[i16], xs: &[f32], sums: &[f32], gs: usize) -> f32 {
    let (mut val, mut c) = (0.0f32, 0.0f32);
    let mut g = 0;
    for (blk, x) in row.chunks_exact(PACKED_BYTES).zip(xq.chunks_exact(QK_K)) {
        let (d, dmin) = head(blk);
        for j in 0..QK_K / Q4_K_GROUP {
            let (s, m) = (d * f32::from(blk[8 + j]), dmin * f32::from(blk[16 + j]));
            let (bytes, shift) = (&blk[HEAD + 32 * (j / 2)..][..32], 4 * (j % 2));
            let x = &x[Q4_K_GROUP * j..][..Q4_K_GROUP];
            for (b, x) in bytes.chunks_exact(gs).zip(x.chunks_exact(gs)) {
                let dot: i32 = b
                    .iter()
                    .zip(x)
                    .map(|(b, x)| i32::from((b >> shift) & 0xf) * i32::from(*x))
                    .sum();
                val += dot as f32 * s * xs[g];
                c += m * sums[g];
                g += 1;
            }
        }
    }
    val - c
}

/// Four rows with AVX2 (one row per f32 lane; see the module's comment). Per 64 weights of a
/// row: 32 bytes of nibbles split into low and high halves, each multiplied with 32 int8
/// activations (`vpmaddubsw`: 15 * 127 * 2 fits i16) and widened into i32 sums of four; the
/// four rows' sums of each 16 then come out of two rounds of `vphaddd`, one row per lane.
///
/// # Safety
/// The CPU must support AVX2; `G` is 16 or 32; the rows are equally long and `x8`, `xs`,
/// `sums` are one input's activations, scales and group sums for that length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows4_avx2<const G: usize>(
    rows: [&[u8]; 4],
    x8: &[i8],
    xs: &[f32],
    sums: &[f32],
) -> [f32; 4] {
    use core::arch::x86_64::*;
    let blocks = rows[0].len() / PACKED_BYTES;
    assert!(rows.iter().all(|r| r.len() == blocks * PACKED_BYTES));
    assert!(x8.len() == blocks * QK_K && xs.len() * G == x8.len() && sums.len() == xs.len());
    let mask = _mm256_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let (mut val, mut c) = (_mm_setzero_ps(), _mm_setzero_ps());
    // Written without closures: they would not inherit AVX2 (nor be inlined).
    macro_rules! step {
        ($dot:expr, $s:expr, $m:expr, $g:expr) => {
            let p = _mm_mul_ps(_mm_mul_ps(_mm_cvtepi32_ps($dot), $s), _mm_set1_ps(xs[$g]));
            val = _mm_add_ps(val, p);
            c = _mm_add_ps(c, _mm_mul_ps($m, _mm_set1_ps(sums[$g])));
        };
    }
    let ptr = [
        rows[0].as_ptr(),
        rows[1].as_ptr(),
        rows[2].as_ptr(),
        rows[3].as_ptr(),
    ];
    for b in 0..blocks {
        // Each row's 8 scales (then mins) as f32, d * s exactly, transposed to 4 rows a j.
        let mut sc = [_mm256_setzero_ps(); 4];
        let mut mn = [_mm256_setzero_ps(); 4];
        for (r, row) in rows.iter().enumerate() {
            let blk = &row[b * PACKED_BYTES..][..PACKED_BYTES];
            let (d, dmin) = head(blk);
            // SAFETY: 8 bytes at 8 and at 16 inside the block.
            let (s8, m8) = unsafe {
                (
                    _mm_loadl_epi64(blk.as_ptr().add(8) as *const __m128i),
                    _mm_loadl_epi64(blk.as_ptr().add(16) as *const __m128i),
                )
            };
            let s8 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(s8));
            let m8 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m8));
            sc[r] = _mm256_mul_ps(_mm256_set1_ps(d), s8);
            mn[r] = _mm256_mul_ps(_mm256_set1_ps(dmin), m8);
        }
        let scales = transpose4x8(sc);
        let mins = transpose4x8(mn);
        for k in 0..4 {
            let at = b * QK_K + 64 * k;
            let nib = b * PACKED_BYTES + HEAD + 32 * k;
            // SAFETY: at + 64 <= x8.len() and nib + 32 <= each row's length (asserted lengths).
            let (xa, xb, v) = unsafe {
                (
                    _mm256_loadu_si256(x8.as_ptr().add(at) as *const __m256i),
                    _mm256_loadu_si256(x8.as_ptr().add(at + 32) as *const __m256i),
                    [
                        _mm256_loadu_si256(ptr[0].add(nib) as *const __m256i),
                        _mm256_loadu_si256(ptr[1].add(nib) as *const __m256i),
                        _mm256_loadu_si256(ptr[2].add(nib) as *const __m256i),
                        _mm256_loadu_si256(ptr[3].add(nib) as *const __m256i),
                    ],
                )
            };
            let mut pl = [_mm256_setzero_si256(); 4];
            let mut ph = [_mm256_setzero_si256(); 4];
            for (r, v) in v.iter().enumerate() {
                let lo = _mm256_and_si256(*v, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(*v), mask);
                pl[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xa), ones);
                ph[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xb), ones);
            }
            // Low nibbles: sub-block 2k; high: 2k + 1. Lanes 0..4: its first 16, 4..8: the rest.
            let dl = _mm256_hadd_epi32(
                _mm256_hadd_epi32(pl[0], pl[1]),
                _mm256_hadd_epi32(pl[2], pl[3]),
            );
            let dh = _mm256_hadd_epi32(
                _mm256_hadd_epi32(ph[0], ph[1]),
                _mm256_hadd_epi32(ph[2], ph[3]),
            );
            let (l0, l1) = (
                _mm256_castsi256_si128(dl),
                _mm256_extracti128_si256::<1>(dl),
            );
            let (h0, h1) = (
                _mm256_castsi256_si128(dh),
                _mm256_extracti128_si256::<1>(dh),
            );
            let (sl, sh, ml, mh) = (
                scales[2 * k],
                scales[2 * k + 1],
                mins[2 * k],
                mins[2 * k + 1],
            );
            if G == 16 {
                let g = at / 16;
                step!(l0, sl, ml, g);
                step!(l1, sl, ml, g + 1);
                step!(h0, sh, mh, g + 2);
                step!(h1, sh, mh, g + 3);
            } else {
                let g = at / 32;
                step!(_mm_add_epi32(l0, l1), sl, ml, g);
                step!(_mm_add_epi32(h0, h1), sh, mh, g + 1);
            }
        }
    }
    let mut out = [0.0f32; 4];
    // SAFETY: `out` holds 4 floats.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), _mm_sub_ps(val, c)) };
    out
}

/// Four rows' 8 values each -> per column j (0..8) the four rows' values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn transpose4x8(r: [core::arch::x86_64::__m256; 4]) -> [core::arch::x86_64::__m128; 8] {
    use core::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let u = [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xee>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xee>(t1, t3),
    ];
    [
        _mm256_castps256_ps128(u[0]),
        _mm256_castps256_ps128(u[1]),
        _mm256_castps256_ps128(u[2]),
        _mm256_castps256_ps128(u[3]),
        _mm256_extractf128_ps::<1>(u[0]),
        _mm256_extractf128_ps::<1>(u[1]),
        _mm256_extractf128_ps::<1>(u[2]),
        _mm256_extractf128_ps::<1>(u[3]),
    ]
}

/// Rows `r0..r0 + out.len()` of `m` times one input (`xq`, scales `xs`, group sums `sums`;
/// `x8` the same activations as int8 where the AVX2 path runs, else empty).
fn matvec(
    out: &mut [f32],
    m: &PackedQ4K,
    r0: usize,
    xq: &[i16],
    x8: &[i8],
    xs: &[f32],
    sums: &[f32],
) {
    let gs = xq.len() / xs.len();
    let simd = gs == 16 || gs == 32;
    let mut r = 0;
    while r < out.len() {
        let count = (out.len() - r).min(4);
        // A last partial four repeats its last row (each lane is its own row's computation).
        let rows: [&[u8]; 4] = std::array::from_fn(|i| m.row(r0 + r + i.min(count - 1)));
        let four: Option<[f32; 4]> = if !simd {
            None
        } else {
            #[cfg(target_arch = "x86_64")]
            {
                if x8.is_empty() {
                    None
                } else if gs == 16 {
                    // SAFETY: x8 is filled only when AVX2 is present; lengths as asserted.
                    Some(unsafe { rows4_avx2::<16>(rows, x8, xs, sums) })
                } else {
                    // SAFETY: as above.
                    Some(unsafe { rows4_avx2::<32>(rows, x8, xs, sums) })
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = x8;
                None
            }
        };
        for (i, (o, row)) in out[r..r + count].iter_mut().zip(rows).enumerate() {
            *o = match four {
                Some(v) => v[i],
                None => row_scalar(row, xq, xs, sums, gs),
            };
        }
        r += count;
    }
}

/// `out[b] = W x[b]` for rows `r0..r0 + out.len() / batch` of the packed Q4_K matrix `m` and
/// `batch` quantized inputs (`xq`: `batch x cols` activations, `xs` their scales, one per
/// group of `gs`; `sums`: per group `sum(xq) as f32 * xs`), bit for bit the decoded int8 path's
/// (see the module's comment). Rows are taken in tiles, each tile for every input in turn, so a
/// weight row is read from memory once for the whole batch.
///
/// # Panics
/// If the shapes do not match, or `gs` does not divide 32.
pub fn matmul_q4k(
    out: &mut [f32],
    m: &PackedQ4K,
    r0: usize,
    xq: &[i16],
    xs: &[f32],
    sums: &[f32],
    batch: usize,
) {
    let batch = batch.max(1);
    let n = m.cols;
    assert!(xq.len() == batch * n && sums.len() == xs.len() && out.len().is_multiple_of(batch));
    let rows = out.len() / batch;
    assert!(r0 + rows <= m.rows);
    if rows == 0 {
        return;
    }
    let groups = xs.len() / batch;
    assert!(groups > 0 && groups * batch == xs.len() && n.is_multiple_of(groups));
    assert!(Q4_K_GROUP.is_multiple_of(n / groups));
    #[cfg(target_arch = "x86_64")]
    let x8: Vec<i8> = if std::is_x86_feature_detected!("avx2") {
        // The activations are -127..=127 (runq.c's quantization): int8 exactly.
        xq.iter().map(|&v| v as i8).collect()
    } else {
        Vec::new()
    };
    #[cfg(not(target_arch = "x86_64"))]
    let x8: Vec<i8> = Vec::new();
    let tile = crate::matvec::tile_rows(m.row_bytes());
    for t0 in (0..rows).step_by(tile) {
        let t1 = (t0 + tile).min(rows);
        for b in 0..batch {
            let x8 = if x8.is_empty() {
                &x8[..]
            } else {
                &x8[b * n..][..n]
            };
            matvec(
                &mut out[b * rows + t0..b * rows + t1],
                m,
                r0 + t0,
                &xq[b * n..][..n],
                x8,
                &xs[b * groups..][..groups],
                &sums[b * groups..][..groups],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kquants::{quantize, KQuant};
    use crate::q8::quantize_activations;

    /// The SIMD path of this machine against the scalar definition, row by row.
    #[test]
    fn simd_rows_match_the_scalar_definition() {
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.4
        };
        for (rows, blocks, gs) in [(1, 1, 16), (6, 2, 32), (9, 3, 16), (4, 1, 8)] {
            let n = blocks * QK_K;
            let w: Vec<f32> = (0..rows * n).map(|_| next()).collect();
            let m = PackedQ4K::from_blocks(&quantize(KQuant::Q4K, &w), rows, n).unwrap();
            let x: Vec<f32> = (0..n).map(|_| next() * 5.0).collect();
            let (mut xq, mut xs) = (vec![0i16; n], vec![0f32; n / gs]);
            quantize_activations(&mut xq, &mut xs, &x, gs);
            let sums: Vec<f32> = xq
                .chunks_exact(gs)
                .zip(&xs)
                .map(|(q, s)| q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32 * s)
                .collect();
            let mut out = vec![f32::NAN; rows];
            matmul_q4k(&mut out, &m, 0, &xq, &xs, &sums, 1);
            for (r, o) in out.iter().enumerate() {
                let want = row_scalar(m.row(r), &xq, &xs, &sums, gs);
                assert_eq!(
                    o.to_bits(),
                    want.to_bits(),
                    "row {r} of {rows} x {n} / {gs}"
                );
            }
        }
    }
}
