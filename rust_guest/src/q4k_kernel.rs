//! Q4_K matrices kept packed (4 bits a weight) and multiplied straight from their nibbles.
//!
//! A packed block is llama.cpp's Q4_K block with its header unpacked once at load: `d` and
//! `dmin` as f32 (exact widenings of the f16s), the eight 6-bit scales and mins as bytes, then
//! the 128 bytes of nibbles as the file has them (bytes 32k..32k+32 hold sub-block 2k in their
//! low nibbles and 2k+1 in their high ones): 152 bytes per 256 weights (0.59 byte a weight,
//! against 1.5 for the decoded int8 values with f32 scales and offsets). Blocks are stored in
//! tiles of 8 rows ([`PackedQ4K`]): the 8 rows' block `b` together, header fields side by side.
//!
//! Why the output is bit for bit the decoded int8 path's (`q8::matmul_q8` then the offsets'
//! subtraction in `transformer`): each group's dot product `sum(q * xq)` is an exact integer
//! however it is summed, and `d * scale` and `dmin * min` are exact in f32 (11 by 6 significant
//! bits), so computing them per use gives the decoded path's very scales and offsets. The float
//! steps are then the same, in the same order, per row: `val += (dot as f32 * scale) * xs[g]`
//! and `c += offset * sums[g]` over the activation groups `g` in order, and `val - c`. The
//! SIMD path runs a tile's eight rows side by side, one row per f32 lane, so each lane performs
//! exactly that sequence (and the rows' additions overlap instead of waiting on each other).
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

/// Rows interleaved in one tile (one f32 lane each in the AVX2 kernel).
const TILE: usize = 8;
/// Where a tile-block's parts start: d (8 x f32), dmin (8 x f32), the scales (per sub-block j,
/// the 8 rows' bytes), the mins (likewise), then the nibbles: per 32 bytes of a row's 128
/// (chunk k), the 8 rows' chunks in order, so the kernel reads the tile-block front to back.
const D_AT: usize = 0;
const DMIN_AT: usize = 4 * TILE;
const SC_AT: usize = 8 * TILE;
const MN_AT: usize = SC_AT + 8 * TILE;
const NIB_AT: usize = MN_AT + 8 * TILE;
/// Bytes per tile-block (8 rows' block `b`).
const TILE_BLOCK: usize = NIB_AT + TILE * QK_K / 2;
/// Bytes per packed block (a tile-block's share of one row).
pub const PACKED_BYTES: usize = TILE_BLOCK / TILE;

/// A Q4_K matrix of `rows x cols` weights (`cols` a multiple of 256), packed in tiles of 8
/// rows: block `b` of the 8 rows is one 1216-byte tile-block (header fields side by side, so
/// the kernel loads each as one vector; then the nibbles), and a tile's blocks follow each
/// other, so a pass over 8 rows reads one sequential stream. The last tile is padded with
/// zero rows (never output).
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
        let per_row = cols / QK_K;
        let tiles = rows.div_ceil(TILE);
        let mut data = vec![0u8; tiles * per_row * TILE_BLOCK];
        for (i, block) in blocks.chunks_exact(Q4_K_BYTES).enumerate() {
            let (r, b) = (i / per_row, i % per_row);
            let at = (r / TILE * per_row + b) * TILE_BLOCK;
            let (t, lane) = (&mut data[at..at + TILE_BLOCK], r % TILE);
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let dmin = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            t[D_AT + 4 * lane..][..4].copy_from_slice(&d.to_le_bytes());
            t[DMIN_AT + 4 * lane..][..4].copy_from_slice(&dmin.to_le_bytes());
            for j in 0..8 {
                let (sc, mn) = scale_min_k4(j, &block[4..16]);
                t[SC_AT + TILE * j + lane] = sc;
                t[MN_AT + TILE * j + lane] = mn;
            }
            for (k, chunk) in block[16..Q4_K_BYTES].chunks_exact(32).enumerate() {
                t[NIB_AT + 32 * (TILE * k + lane)..][..32].copy_from_slice(chunk);
            }
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

    /// Bytes of one row's blocks (its share of the tiles).
    fn row_bytes(&self) -> usize {
        self.cols / QK_K * PACKED_BYTES
    }

    /// Tile `t`'s bytes (8 rows' blocks, block after block).
    fn tile(&self, t: usize) -> &[u8] {
        let b = TILE * self.row_bytes();
        &self.data[t * b..(t + 1) * b]
    }

    /// Block `b` of row `r`.
    fn block(&self, r: usize, b: usize) -> Block<'_> {
        let at = b * TILE_BLOCK;
        Block {
            tile: &self.tile(r / TILE)[at..at + TILE_BLOCK],
            lane: r % TILE,
        }
    }

    /// Row `r`'s values as the decoded path computes them: `q * scale`, then `- offset`.
    ///
    /// # Panics
    /// If `r` is out of range or `out` is not `cols` long.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows);
        assert_eq!(out.len(), self.cols);
        for (b, out) in out.chunks_exact_mut(QK_K).enumerate() {
            let blk = self.block(r, b);
            let (d, dmin) = blk.head();
            for (j, out) in out.chunks_exact_mut(Q4_K_GROUP).enumerate() {
                let (s, m) = (d * f32::from(blk.scale(j)), dmin * f32::from(blk.min(j)));
                let (bytes, shift) = (blk.nibbles(j / 2), 4 * (j % 2));
                for (o, b) in out.iter_mut().zip(bytes) {
                    *o = f32::from((b >> shift) & 0xf) * s;
                    *o -= m;
                }
            }
        }
    }
}

/// One row's block inside its tile-block.
struct Block<'a> {
    tile: &'a [u8],
    lane: usize,
}

impl Block<'_> {
    /// d and dmin.
    fn head(&self) -> (f32, f32) {
        let f = |i: usize| {
            let b = &self.tile[i + 4 * self.lane..][..4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        (f(D_AT), f(DMIN_AT))
    }

    fn scale(&self, j: usize) -> u8 {
        self.tile[SC_AT + TILE * j + self.lane]
    }

    fn min(&self, j: usize) -> u8 {
        self.tile[MN_AT + TILE * j + self.lane]
    }

    /// The file's bytes 32k..32k+32 of nibbles (sub-block 2k low, 2k + 1 high).
    fn nibbles(&self, k: usize) -> &[u8] {
        &self.tile[NIB_AT + 32 * (TILE * k + self.lane)..][..32]
    }
}

/// One row, scalar: the definition the SIMD path reproduces. `gs` divides 32.
fn row_scalar(m: &PackedQ4K, r: usize, xq: &[i16], xs: &[f32], sums: &[f32], gs: usize) -> f32 {
    let (mut val, mut c) = (0.0f32, 0.0f32);
    let mut g = 0;
    for (b, x) in xq.chunks_exact(QK_K).enumerate() {
        let blk = m.block(r, b);
        let (d, dmin) = blk.head();
        for j in 0..QK_K / Q4_K_GROUP {
            let (s, m) = (d * f32::from(blk.scale(j)), dmin * f32::from(blk.min(j)));
            let (bytes, shift) = (blk.nibbles(j / 2), 4 * (j % 2));
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

/// One tile's 8 rows with AVX2, one row per f32 lane (see the module's comment). Per 64
/// weights of a row: 32 bytes of nibbles split into low and high halves, each multiplied with
/// 32 int8 activations (`vpmaddubsw`: pairs, 15 * 127 * 2 fits i16); the 8 rows' pair sums
/// are then added across by three rounds of `vphaddw` into one vector of the 8 rows' sums of
/// each 16 (a sum of 16 products is at most 30480: exact in i16), widened to i32.
///
/// # Safety
/// The CPU must support AVX2; `G` is 16 or 32; `tile` is a whole tile and `x8`, `xs`, `sums`
/// are one input's activations, scales and group sums for its length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const G: usize>(tile: &[u8], x8: &[i8], xs: &[f32], sums: &[f32]) -> [f32; 8] {
    use core::arch::x86_64::*;
    let blocks = tile.len() / TILE_BLOCK;
    assert!(tile.len() == blocks * TILE_BLOCK);
    assert!(x8.len() == blocks * QK_K && xs.len() * G == x8.len() && sums.len() == xs.len());
    let mask = _mm256_set1_epi8(0x0f);
    let (mut val, mut c) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    // Written without closures: they would not inherit AVX2 (nor be inlined).
    macro_rules! step {
        ($dot:expr, $s:expr, $m:expr, $g:expr) => {
            let p = _mm256_mul_ps(
                _mm256_mul_ps(_mm256_cvtepi32_ps($dot), $s),
                _mm256_set1_ps(xs[$g]),
            );
            val = _mm256_add_ps(val, p);
            c = _mm256_add_ps(c, _mm256_mul_ps($m, _mm256_set1_ps(sums[$g])));
        };
    }
    // The 8 rows' pair sums (16 i16 each) -> lanes 0..8: the rows' sums of their first 16
    // bytes, lanes 8..16: of their last 16.
    macro_rules! across {
        ($p:expr) => {
            _mm256_hadd_epi16(
                _mm256_hadd_epi16(
                    _mm256_hadd_epi16($p[0], $p[1]),
                    _mm256_hadd_epi16($p[2], $p[3]),
                ),
                _mm256_hadd_epi16(
                    _mm256_hadd_epi16($p[4], $p[5]),
                    _mm256_hadd_epi16($p[6], $p[7]),
                ),
            )
        };
    }
    let base = tile.as_ptr();
    for b in 0..blocks {
        let t = base.add(b * TILE_BLOCK);
        let d = _mm256_loadu_ps(t.add(D_AT) as *const f32);
        let dmin = _mm256_loadu_ps(t.add(DMIN_AT) as *const f32);
        for k in 0..4 {
            let at = b * QK_K + 64 * k;
            // SAFETY: at + 64 <= x8.len(); the tile-block holds 8 x 128 bytes of nibbles.
            let xa = _mm256_loadu_si256(x8.as_ptr().add(at) as *const __m256i);
            let xb = _mm256_loadu_si256(x8.as_ptr().add(at + 32) as *const __m256i);
            let mut pl = [_mm256_setzero_si256(); TILE];
            let mut ph = [_mm256_setzero_si256(); TILE];
            for r in 0..TILE {
                let v = _mm256_loadu_si256(t.add(NIB_AT + 32 * (TILE * k + r)) as *const __m256i);
                let lo = _mm256_and_si256(v, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask);
                pl[r] = _mm256_maddubs_epi16(lo, xa);
                ph[r] = _mm256_maddubs_epi16(hi, xb);
            }
            // Low nibbles: sub-block 2k; high: 2k + 1. Each 128-bit half: rows 0..8 in order.
            let (dl, dh) = (across!(pl), across!(ph));
            let l0 = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(dl));
            let l1 = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(dl));
            let h0 = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(dh));
            let h1 = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(dh));
            // Sub-blocks 2k (low nibbles) and 2k + 1 (high): the 8 rows' d * scale and
            // dmin * min (exact products, as the decoded path's).
            macro_rules! header {
                ($at:expr, $v:expr) => {
                    _mm256_mul_ps(
                        $v,
                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                            t.add($at) as *const __m128i
                        ))),
                    )
                };
            }
            let (j0, j1) = (2 * k, 2 * k + 1);
            let (sl, sh) = (header!(SC_AT + TILE * j0, d), header!(SC_AT + TILE * j1, d));
            let (ml, mh) = (
                header!(MN_AT + TILE * j0, dmin),
                header!(MN_AT + TILE * j1, dmin),
            );
            if G == 16 {
                let g = at / 16;
                step!(l0, sl, ml, g);
                step!(l1, sl, ml, g + 1);
                step!(h0, sh, mh, g + 2);
                step!(h1, sh, mh, g + 3);
            } else {
                let g = at / 32;
                step!(_mm256_add_epi32(l0, l1), sl, ml, g);
                step!(_mm256_add_epi32(h0, h1), sh, mh, g + 1);
            }
        }
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), _mm256_sub_ps(val, c));
    out
}
/// Quantized inputs as the kernels read them: `xq` the activations (`batch x cols`), `xs` their
/// scales (one per group), `sums` per group `sum(xq) as f32 * xs`, and `x8` the activations as
/// [`kernel_bytes`] gives them (empty where the AVX2 kernel does not run).
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub xq: &'a [i16],
    pub x8: &'a [i8],
    pub xs: &'a [f32],
    pub sums: &'a [f32],
}

impl<'a> Inputs<'a> {
    /// Input `b` of inputs of `n` activations in `groups` groups each.
    fn one(&self, b: usize, n: usize, groups: usize) -> Inputs<'a> {
        Inputs {
            xq: &self.xq[b * n..][..n],
            x8: if self.x8.is_empty() {
                self.x8
            } else {
                &self.x8[b * n..][..n]
            },
            xs: &self.xs[b * groups..][..groups],
            sums: &self.sums[b * groups..][..groups],
        }
    }
}

/// The activations `xq` as int8, the form the AVX2 kernel reads (runq.c's quantization keeps
/// them in -127..=127, so the conversion is exact), or empty where that kernel does not run.
/// Computed once per input and shared by every product that reads it.
pub fn kernel_bytes(xq: &[i16]) -> Vec<i8> {
    if avx2() {
        xq.iter().map(|&v| v as i8).collect()
    } else {
        Vec::new()
    }
}

/// Whether the AVX2 kernel runs here.
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Rows `r0..r0 + out.len()` of `m` times one input.
fn matvec(out: &mut [f32], m: &PackedQ4K, r0: usize, input: Inputs) {
    let Inputs { xq, x8, xs, sums } = input;
    let gs = xq.len() / xs.len();
    if x8.is_empty() || !(gs == 16 || gs == 32) || !avx2() {
        for (i, o) in out.iter_mut().enumerate() {
            *o = row_scalar(m, r0 + i, xq, xs, sums, gs);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Whole tiles: a range starting or ending inside one computes it all and keeps its
        // rows (each lane is its own row's computation).
        let r1 = r0 + out.len();
        for t in r0 / TILE..r1.div_ceil(TILE) {
            let tile = m.tile(t);
            let eight = if gs == 16 {
                // SAFETY: AVX2 is present (checked above); lengths as asserted there.
                unsafe { tile_avx2::<16>(tile, x8, xs, sums) }
            } else {
                // SAFETY: as above.
                unsafe { tile_avx2::<32>(tile, x8, xs, sums) }
            };
            let (from, to) = ((t * TILE).max(r0), (t * TILE + TILE).min(r1));
            out[from - r0..to - r0].copy_from_slice(&eight[from - t * TILE..to - t * TILE]);
        }
    }
}

/// `out[b] = W x[b]` for rows `r0..r0 + out.len() / batch` of the packed Q4_K matrix `m` and
/// `batch` quantized `inputs`, bit for bit the decoded int8 path's
/// (see the module's comment). Rows are taken in tiles, each tile for every input in turn, so a
/// weight row is read from memory once for the whole batch.
///
/// # Panics
/// If the shapes do not match, or `gs` does not divide 32.
pub fn matmul_q4k(out: &mut [f32], m: &PackedQ4K, r0: usize, inputs: Inputs, batch: usize) {
    let batch = batch.max(1);
    let n = m.cols;
    let Inputs { xq, x8, xs, sums } = inputs;
    assert!(xq.len() == batch * n && sums.len() == xs.len() && out.len().is_multiple_of(batch));
    assert!(x8.is_empty() || x8.len() == xq.len());
    let rows = out.len() / batch;
    assert!(r0 + rows <= m.rows);
    if rows == 0 {
        return;
    }
    let groups = xs.len() / batch;
    assert!(groups > 0 && groups * batch == xs.len() && n.is_multiple_of(groups));
    assert!(Q4_K_GROUP.is_multiple_of(n / groups));
    // Tiles of whole 8-row tiles, each for every input in turn.
    let tile = crate::matvec::tile_rows(m.row_bytes()).next_multiple_of(TILE);
    let mut t0 = 0;
    while t0 < rows {
        // Tile boundaries on the matrix's 8-row tiles (absolute rows).
        let t1 = ((r0 + t0) / TILE * TILE + tile - r0).min(rows);
        for b in 0..batch {
            let input = inputs.one(b, n, groups);
            matvec(&mut out[b * rows + t0..b * rows + t1], m, r0 + t0, input);
        }
        t0 = t1;
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
        // Rows in whole 8-row tiles and partial ones, one super-block per row and several, each
        // activation group size that divides 32.
        let shapes = [1, 4, 6, 9, 16, 17].into_iter().flat_map(|rows| {
            [1, 2, 3]
                .into_iter()
                .flat_map(move |blocks| [8, 16, 32].map(|gs| (rows, blocks, gs)))
        });
        for (rows, blocks, gs) in shapes {
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
            let x8 = kernel_bytes(&xq);
            let inputs = Inputs {
                xq: &xq,
                x8: &x8,
                xs: &xs,
                sums: &sums,
            };
            matmul_q4k(&mut out, &m, 0, inputs, 1);
            for (r, o) in out.iter().enumerate() {
                let want = row_scalar(&m, r, &xq, &xs, &sums, gs);
                assert_eq!(
                    o.to_bits(),
                    want.to_bits(),
                    "row {r} of {rows} x {n} / {gs}"
                );
            }
        }
    }
}
