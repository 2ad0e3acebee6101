//! Q8_0 arithmetic (llama2.c's runq.c and export.py): int8 values in groups of `gs`, one f32
//! scale per group, `value = q * scale`.
//!
//! The int8 matrix-vector product is runq.c's `matmul`: per row, each group's integer dot
//! product (exact in i32, so any SIMD order gives the same number), then
//! `val += (dot as f32 * w_scale) * x_scale` over the groups in order, in f32. That float
//! chain is sequential on every target, so the wasm guest and the native module produce the
//! same bits. The activations are stored as i16 (values -127..=127) so the SIMD loops widen only
//! the weights.

use crate::error::{EngineError, Result};

/// runq.c's `quantize` of an activation vector: per group, `scale = max|x| / 127` and
/// `q = round(x / scale)` (half away from zero, C's `round`). A group of zeros has scale 0; its
/// values (0/0) become 0.
///
/// # Panics
/// If the lengths do not match (`q.len() == x.len() == s.len() * gs`).
pub fn quantize_activations(q: &mut [i16], s: &mut [f32], x: &[f32], gs: usize) {
    // `as` saturates and maps NaN (a zero group) to 0.
    quantize_groups(q, s, x, gs, |v| libm::roundf(v) as i8 as i16);
}

/// export.py's `quantize_q80` of a weight tensor: per group, `scale = max|w| / 127` and
/// `q = round(w / scale)` with torch's rounding (half to even). A group of zeros has scale 0
/// and values 0.
///
/// # Panics
/// If the lengths do not match (`q.len() == w.len() == s.len() * gs`).
pub fn quantize_weights(q: &mut [i8], s: &mut [f32], w: &[f32], gs: usize) {
    quantize_groups(q, s, w, gs, |v| v.round_ties_even() as i8);
}

/// Q8_0 in groups of `gs`: per group `scale = max|x| / 127` into `s`, `round(x / scale)` into `q`.
fn quantize_groups<T>(q: &mut [T], s: &mut [f32], x: &[f32], gs: usize, round: impl Fn(f32) -> T) {
    assert!(q.len() == x.len() && s.len() * gs == x.len());
    for ((q, s), x) in q
        .chunks_exact_mut(gs)
        .zip(s.iter_mut())
        .zip(x.chunks_exact(gs))
    {
        let xmax = x
            .iter()
            .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
        let scale = xmax / 127.0;
        *s = scale;
        for (q, x) in q.iter_mut().zip(x) {
            *q = round(x / scale);
        }
    }
}

/// [`quantize_weights`] on a tensor given as f32 little-endian bytes; returns the int8 values
/// and the scales as little-endian bytes (the file's layout). InvalidArgument when the bytes are
/// not whole f32s or `gs` does not divide their count.
pub fn quantize_bytes(values: &[u8], gs: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    if !values.len().is_multiple_of(4) {
        return Err(EngineError::InvalidArgument(format!(
            "{} bytes are not a whole number of f32 values",
            values.len()
        )));
    }
    let count = values.len() / 4;
    if gs == 0 || !count.is_multiple_of(gs) {
        return Err(EngineError::InvalidArgument(format!(
            "group size {gs} does not divide the tensor's {count} values"
        )));
    }
    let w: Vec<f32> = values
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (mut q, mut s) = (vec![0i8; count], vec![0f32; count / gs]);
    quantize_weights(&mut q, &mut s, &w, gs);
    let q = q.into_iter().map(|v| v as u8).collect();
    let s = s.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok((q, s))
}

/// Calls `kernel::<G>(args)` with the group size `gs` as a constant where it is a common one
/// (16, 32, 64: each group's loop unrolled), else `kernel::<0>` (the size read at run time).
// Unused where no SIMD path exists. Defined everywhere: linera_app turns simd128 on for this
// crate alone (a per-package profile flag, which build scripts and target cfgs do not see).
#[allow(unused_macros)]
macro_rules! with_group_size {
    ($kernel:ident, $gs:expr, ($($arg:expr),*)) => {
        match $gs {
            16 => $kernel::<16>($($arg),*),
            32 => $kernel::<32>($($arg),*),
            64 => $kernel::<64>($($arg),*),
            _ => $kernel::<0>($($arg),*),
        }
    };
}

/// The guest's kernel (simd128).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;

/// The native kernel on AVX-512 hosts (F, BW, VNNI), chosen at run time before AVX2.
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
use avx512::matvec as matvec_q8_avx512;
/// The steps after a group's integer dot, shared by the two x86 kernels.
#[cfg(target_arch = "x86_64")]
mod x86_groups;
#[cfg(target_arch = "x86_64")]
use x86_groups::{add_four_groups, quarter_sum};

/// The exact integer dot product of one group (the definition the SIMD paths reproduce).
#[inline(always)]
fn group_dot_scalar(w: &[i8], x: &[i16]) -> i32 {
    w.iter().zip(x).map(|(&w, &x)| w as i32 * x as i32).sum()
}

/// One row: `sum over groups g of (dot_g as f32 * ws[g]) * xs[g]`, in group order.
#[inline(always)]
fn row_q8(
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xs: &[f32],
    gs: usize,
    group_dot: impl Fn(&[i8], &[i16]) -> i32,
) -> f32 {
    let mut val = 0.0f32;
    for (((w, x), ws), xs) in w.chunks_exact(gs).zip(xq.chunks_exact(gs)).zip(ws).zip(xs) {
        val += group_dot(w, x) as f32 * ws * xs;
    }
    val
}

/// [`matvec_q8`]'s loop with AVX2: per group, 16 weights at a time widened to i16 and
/// multiplied pairwise into i32 (`vpmaddwd`; exact for every int8 weight, -128 included), the
/// lanes summed (exact), then runq.c's float step. Written out in one function so it all
/// compiles with AVX2.
///
/// `G` > 0 is the group size as a constant (unrolled inner loops); 0 reads it from `gs`.
///
/// # Safety
/// The CPU must support AVX2; the lengths are checked by the caller.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn matvec_q8_avx2<const G: usize>(
    out: &mut [f32],
    w: &[i8],
    ws: &[f32],
    xq: &[i16],
    xs: &[f32],
    gs: usize,
) {
    use core::arch::x86_64::*;
    let gs = if G > 0 { G } else { gs };
    let n = xq.len();
    let simd = gs / 16 * 16;
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
        if gs.is_multiple_of(16) {
            // Four groups at a time (see `add_four_groups`).
            while g + 4 <= groups {
                let acc: [__m128i; 4] = std::array::from_fn(|j| {
                    let at = (g + j) * gs;
                    let (w, x) = (&row[at..at + gs], &xq[at..at + gs]);
                    let mut acc = _mm256_setzero_si256();
                    let mut k = 0;
                    while k < gs {
                        // SAFETY: k + 16 <= gs == w.len() == x.len().
                        unsafe {
                            let wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                w.as_ptr().add(k) as *const __m128i
                            ));
                            let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
                            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(wv, xv));
                        }
                        k += 16;
                    }
                    _mm_add_epi32(
                        _mm256_castsi256_si128(acc),
                        _mm256_extracti128_si256::<1>(acc),
                    )
                });
                // SAFETY: groups g..g + 4 have their scales in rs and xs.
                val = unsafe { add_four_groups(val, acc, rs.as_ptr().add(g), xs.as_ptr().add(g)) };
                g += 4;
            }
        }
        for g in g..groups {
            let at = g * gs;
            let (w, x) = (&row[at..at + gs], &xq[at..at + gs]);
            let mut acc = _mm256_setzero_si256();
            let mut k = 0;
            while k < simd {
                // SAFETY: k + 16 <= simd <= gs == w.len() == x.len().
                unsafe {
                    let wv =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(w.as_ptr().add(k) as *const __m128i));
                    let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(wv, xv));
                }
                k += 16;
            }
            let half = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let mut dot = quarter_sum(half);
            for (w, x) in w[simd..].iter().zip(&x[simd..]) {
                dot += *w as i32 * *x as i32;
            }
            val += dot as f32 * rs[g] * xs[g];
        }
        *o = val;
    }
}

/// `out = W x` for a Q8_0 matrix `W` (`out.len()` rows of `xq.len()` int8 values, scales `ws`,
/// one per group of `gs` along each row) and a quantized activation (`xq`, scales `xs`).
///
/// # Panics
/// If the shapes do not match.
pub fn matvec_q8(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) {
    if !has_values(out, w, ws, xq, xs, gs) {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: AVX-512 F/BW/VL/VNNI are present (checked just above); shapes checked above.
        unsafe { with_group_size!(matvec_q8_avx512, gs, (out, w, ws, xq, xs, gs)) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above); shapes checked above.
        unsafe { with_group_size!(matvec_q8_avx2, gs, (out, w, ws, xq, xs, gs)) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd128::takes(gs) {
        simd128::matvec(out, w, ws, &simd128::split_activations(xq), xs, gs);
        return;
    }
    matvec_q8_scalar(out, w, ws, xq, xs, gs);
}

/// [`matvec_q8`]'s shape check: panics on shapes that do not match; false (with `out` zeroed)
/// when rows are empty, so the kernels never see `n == 0`.
fn has_values(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) -> bool {
    let n = xq.len();
    assert!(gs > 0 && n.is_multiple_of(gs) && xs.len() * gs == n);
    assert!(w.len() == out.len() * n && ws.len() * gs == w.len());
    if n == 0 {
        out.fill(0.0);
    }
    n > 0
}

/// [`matvec_q8`] without SIMD: the definition, row by row.
fn matvec_q8_scalar(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) {
    let n = xq.len();
    for ((o, row), rs) in out
        .iter_mut()
        .zip(w.chunks_exact(n))
        .zip(ws.chunks_exact(n / gs))
    {
        *o = row_q8(row, rs, xq, xs, gs, group_dot_scalar);
    }
}

/// An int8 matrix-vector kernel, with [`matvec_q8`]'s arguments.
pub type MatvecQ8 = fn(&mut [f32], &[i8], &[f32], &[i16], &[f32], usize);

/// One of [`matvec_q8`]'s native kernel paths: its name, and the kernel when this CPU runs it.
pub struct MatvecQ8Path {
    pub name: &'static str,
    pub kernel: Option<MatvecQ8>,
}

/// Every native path [`matvec_q8`] may take, in the order it tries them (it runs the first this
/// CPU has): the tests compare them bit for bit, examples/q8_profile.rs times them. Each kernel
/// checks the shapes as [`matvec_q8`] does.
pub fn matvec_q8_paths() -> Vec<MatvecQ8Path> {
    let path = |name, kernel| MatvecQ8Path { name, kernel };
    #[allow(unused_mut)]
    let mut paths = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        fn on_avx512(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) {
            if has_values(out, w, ws, xq, xs, gs) {
                // SAFETY: listed only when AVX-512 F/BW/VL/VNNI are present; shapes checked.
                unsafe { with_group_size!(matvec_q8_avx512, gs, (out, w, ws, xq, xs, gs)) };
            }
        }
        fn on_avx2(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) {
            if has_values(out, w, ws, xq, xs, gs) {
                // SAFETY: listed only when AVX2 is present; shapes checked.
                unsafe { with_group_size!(matvec_q8_avx2, gs, (out, w, ws, xq, xs, gs)) };
            }
        }
        let avx2_ok = std::is_x86_feature_detected!("avx2");
        paths.push(path(
            "avx512",
            avx512::available().then_some(on_avx512 as MatvecQ8),
        ));
        paths.push(path("avx2", avx2_ok.then_some(on_avx2 as MatvecQ8)));
    }
    fn on_scalar(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) {
        if has_values(out, w, ws, xq, xs, gs) {
            matvec_q8_scalar(out, w, ws, xq, xs, gs);
        }
    }
    paths.push(path("scalar", Some(on_scalar as MatvecQ8)));
    paths
}

/// `out[b] = W xs[b]` for a batch of `batch` quantized inputs: `xq` is `batch x n` values
/// (each row quantized on its own, as [`quantize_activations`] does a vector), `xs` their
/// `batch x n / gs` scales (which give the group size `gs`), `out` is `batch x rows`. Each
/// output element is bit-for-bit [`matvec_q8`]'s for that input: `matvec_q8` runs on a tile of
/// rows for every input in turn, so a weight row is read from memory once for the whole batch.
///
/// # Panics
/// If the shapes do not match.
pub fn matmul_q8(out: &mut [f32], w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], batch: usize) {
    let batch = batch.max(1);
    assert!(xq.len().is_multiple_of(batch) && xs.len().is_multiple_of(batch));
    assert!(out.len().is_multiple_of(batch));
    let (n, d, groups) = (xq.len() / batch, out.len() / batch, xs.len() / batch);
    assert!(
        groups > 0 && n.is_multiple_of(groups),
        "matmul_q8: bad scales"
    );
    let gs = n / groups;
    if batch == 1 {
        return matvec_q8(out, w, ws, xq, xs, gs);
    }
    assert!(w.len() == d * n && ws.len() * gs == w.len());
    // The guest's kernel reads the inputs rearranged: once per input, not once per tile.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd128::takes(gs) {
        let split: Vec<_> = xq.chunks_exact(n).map(simd128::split_activations).collect();
        return for_each_tile(out, w, ws, xs, (n, d, groups), |o, rows, scales, b, s| {
            simd128::matvec(o, rows, scales, &split[b], s, gs)
        });
    }
    for_each_tile(out, w, ws, xs, (n, d, groups), |o, rows, scales, b, s| {
        matvec_q8(o, rows, scales, &xq[b * n..(b + 1) * n], s, gs)
    });
}

/// [`matmul_q8`]'s loop over `d` rows of `n` values (`groups` scales each): for each tile of
/// rows, `product(o, rows, scales, b, xs_b)` for every input `b` in turn (its scales `xs_b`, its
/// outputs `o` for those rows), so a weight row is read from memory once for the whole batch.
fn for_each_tile(
    out: &mut [f32],
    w: &[i8],
    ws: &[f32],
    xs: &[f32],
    (n, d, groups): (usize, usize, usize),
    mut product: impl FnMut(&mut [f32], &[i8], &[f32], usize, &[f32]),
) {
    let tile = crate::matvec::tile_rows(n);
    for r0 in (0..d).step_by(tile) {
        let r1 = (r0 + tile).min(d);
        let (rows, scales) = (&w[r0 * n..r1 * n], &ws[r0 * groups..r1 * groups]);
        for (b, (o, s)) in out
            .chunks_exact_mut(d)
            .zip(xs.chunks_exact(groups))
            .enumerate()
        {
            product(&mut o[r0..r1], rows, scales, b, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::matvec::tests::{assert_same_bits, lcg};

    /// A `rows x cols` int8 matrix and its `rows * cols / gs` group scales, from `seed`;
    /// `weight(i)` is weight i's value, `None` for a random one.
    fn random_matrix(
        (rows, cols, gs): (usize, usize, usize),
        seed: &mut u64,
        weight: impl Fn(usize) -> Option<i8>,
    ) -> (Vec<i8>, Vec<f32>) {
        let w = (0..rows * cols)
            .map(|i| weight(i).unwrap_or_else(|| (lcg(seed) * 254.0) as i8))
            .collect();
        let ws = (0..rows * cols / gs).map(|_| lcg(seed)).collect();
        (w, ws)
    }

    /// `inputs` random inputs of `cols` values each, quantized in groups of `gs`.
    fn random_inputs(
        inputs: usize,
        cols: usize,
        gs: usize,
        seed: &mut u64,
    ) -> (Vec<i16>, Vec<f32>) {
        let x: Vec<f32> = (0..inputs * cols).map(|_| lcg(seed) * 10.0).collect();
        let (mut xq, mut xs) = (vec![0i16; x.len()], vec![0f32; x.len() / gs]);
        for ((q, s), x) in xq
            .chunks_exact_mut(cols)
            .zip(xs.chunks_exact_mut(cols / gs))
            .zip(x.chunks_exact(cols))
        {
            quantize_activations(q, s, x, gs);
        }
        (xq, xs)
    }

    /// Each row's product with one quantized input, by the scalar definition.
    fn definition(w: &[i8], ws: &[f32], xq: &[i16], xs: &[f32], gs: usize) -> Vec<f32> {
        let cols = xq.len();
        w.chunks_exact(cols)
            .zip(ws.chunks_exact(cols / gs))
            .map(|(row, rs)| row_q8(row, rs, xq, xs, gs, group_dot_scalar))
            .collect()
    }

    /// The (rows, cols, gs) the kernels are checked on: every row count with every group size
    /// and count. Group sizes unrolled (16, 32, 64) and read at run time (the others); rows in
    /// full blocks of 16 and 4 and partial ones; one group per row and many.
    fn shapes() -> impl Iterator<Item = (usize, usize, usize)> {
        const ROWS: [usize; 9] = [1, 2, 3, 4, 5, 7, 16, 17, 35];
        const GROUP_SIZES: [usize; 8] = [4, 5, 8, 16, 32, 48, 64, 256];
        const GROUPS: [usize; 4] = [1, 3, 4, 9];
        ROWS.into_iter().flat_map(|rows| {
            GROUP_SIZES
                .into_iter()
                .flat_map(move |gs| GROUPS.map(|groups| (rows, groups * gs, gs)))
        })
    }

    #[test]
    fn matvec_q8_matches_the_scalar_definition() {
        let mut seed = 3;
        for (rows, cols, gs) in shapes() {
            let (w, ws) = random_matrix((rows, cols, gs), &mut seed, |i| {
                (i % 11 == 0).then_some(-128)
            });
            let (xq, xs) = random_inputs(1, cols, gs, &mut seed);
            let mut out = vec![f32::NAN; rows];
            matvec_q8(&mut out, &w, &ws, &xq, &xs, gs);
            let want = definition(&w, &ws, &xq, &xs, gs);
            assert_same_bits(&out, &want, format_args!("{rows}x{cols}/{gs}"));
        }
    }

    /// The native paths this CPU runs (at least two on x86-64, so a comparison between them
    /// never passes vacuously) and, printed, the ones it cannot run.
    fn runnable_paths() -> Vec<(&'static str, MatvecQ8)> {
        let paths = matvec_q8_paths();
        let missing = paths.iter().filter(|p| p.kernel.is_none());
        let missing: Vec<_> = missing.map(|p| p.name).collect();
        let ran: Vec<_> = paths
            .iter()
            .filter_map(|p| Some((p.name, p.kernel?)))
            .collect();
        eprintln!(
            "q8 kernel paths compared: {:?}; not on this CPU: {missing:?}",
            ran.iter().map(|(name, _)| *name).collect::<Vec<_>>()
        );
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(ran.first().map(|p| p.0), Some(expected_first_path()));
            assert!(ran.len() >= 2, "only {ran:?}");
        }
        ran
    }

    /// The path [`matvec_q8`] takes on this CPU, named from its features.
    #[cfg(target_arch = "x86_64")]
    fn expected_first_path() -> &'static str {
        if avx512::available() {
            "avx512"
        } else if std::is_x86_feature_detected!("avx2") {
            "avx2"
        } else {
            "scalar"
        }
    }

    #[test]
    fn every_kernel_path_gives_the_definitions_bits_on_awkward_shapes() {
        let paths = runnable_paths();
        let mut seed = 11;
        for (rows, cols, gs) in shapes() {
            // Both int8 extremes often, random values between.
            let (w, ws) = random_matrix((rows, cols, gs), &mut seed, |i| match i % 7 {
                0 => Some(-128),
                3 => Some(127),
                _ => None,
            });
            // The quantizer's extremes (+-127, every group has one) and the i16 range's.
            let (xq, xs) = random_inputs(1, cols, gs, &mut seed);
            assert!(xq.iter().any(|&q| q == 127 || q == -127));
            let edges = [i16::MIN, i16::MAX, -127, 127];
            let xq_edges = (0..cols).map(|i| edges[i % 4]).collect();
            let inputs = [(xq, xs.clone()), (xq_edges, xs)];
            for (xq, xs) in &inputs {
                let want = definition(&w, &ws, xq, xs, gs);
                for (name, kernel) in &paths {
                    let mut got = vec![f32::NAN; rows];
                    kernel(&mut got, &w, &ws, xq, xs, gs);
                    assert_same_bits(&got, &want, format_args!("{name} {rows}x{cols}/{gs}"));
                }
                let mut got = vec![f32::NAN; rows];
                matvec_q8(&mut got, &w, &ws, xq, xs, gs);
                assert_same_bits(&got, &want, format_args!("matvec_q8 {rows}x{cols}/{gs}"));
            }
        }
    }

    #[test]
    fn every_kernel_path_gives_a_row_the_same_bits_whatever_its_neighbours() {
        // A row's result from a slice of rows starting anywhere (the threads' split, the
        // batched product's tiles) equals its result in the whole matrix, on every path.
        let (rows, cols, gs) = (37, 128, 32);
        let mut seed = 13;
        let (w, ws) = random_matrix((rows, cols, gs), &mut seed, |_| None);
        let (xq, xs) = random_inputs(1, cols, gs, &mut seed);
        for (name, kernel) in runnable_paths() {
            let mut whole = vec![f32::NAN; rows];
            kernel(&mut whole, &w, &ws, &xq, &xs, gs);
            for (r0, r1) in [(0, 1), (3, 20), (5, 37), (16, 33), (36, 37)] {
                let mut part = vec![f32::NAN; r1 - r0];
                let (w, ws) = (
                    &w[r0 * cols..r1 * cols],
                    &ws[r0 * cols / gs..r1 * cols / gs],
                );
                kernel(&mut part, w, ws, &xq, &xs, gs);
                assert_same_bits(
                    &part,
                    &whole[r0..r1],
                    format_args!("{name} rows {r0}..{r1}"),
                );
            }
        }
    }

    #[test]
    fn activations_round_half_away_and_weights_half_even() {
        // max 127 -> scale 1: x / scale is x itself.
        let x = [127.0f32, 2.5, -2.5, 0.5, -0.5, 1.5, 3.49, -126.6];
        let (mut q, mut s) = ([0i16; 8], [0f32; 1]);
        quantize_activations(&mut q, &mut s, &x, 8);
        assert_eq!(s, [1.0]);
        assert_eq!(q, [127, 3, -3, 1, -1, 2, 3, -127]);
        let (mut q, mut s) = ([0i8; 8], [0f32; 1]);
        quantize_weights(&mut q, &mut s, &x, 8);
        assert_eq!(q, [127, 2, -2, 0, 0, 2, 3, -127]);
    }

    #[test]
    fn a_group_of_zeros_quantizes_to_zeros() {
        let x = [0.0f32; 4];
        let (mut q, mut s) = ([5i16; 4], [1f32; 1]);
        quantize_activations(&mut q, &mut s, &x, 4);
        assert_eq!((q, s), ([0; 4], [0.0]));
        let (mut q, mut s) = ([5i8; 4], [1f32; 1]);
        quantize_weights(&mut q, &mut s, &x, 4);
        assert_eq!((q, s), ([0; 4], [0.0]));
    }

    #[test]
    fn matmul_q8_rows_match_matvec_q8_bit_for_bit() {
        let mut seed = 5;
        // Batches over one tile of rows and over several (`tile_rows`: 14 rows of 2304 values).
        for (rows, cols, gs) in shapes() {
            let (w, ws) = random_matrix((rows, cols, gs), &mut seed, |_| None);
            for batch in [1, 2, 3, 7, 16] {
                let (xq, xs) = random_inputs(batch, cols, gs, &mut seed);
                let mut out = vec![f32::NAN; batch * rows];
                matmul_q8(&mut out, &w, &ws, &xq, &xs, batch);
                for b in 0..batch {
                    let mut single = vec![f32::NAN; rows];
                    let (q, s) = (&xq[b * cols..][..cols], &xs[b * cols / gs..][..cols / gs]);
                    matvec_q8(&mut single, &w, &ws, q, s, gs);
                    let got = &out[b * rows..][..rows];
                    assert_same_bits(
                        got,
                        &single,
                        format_args!("input {b} of {batch}, {rows}x{cols}/{gs}"),
                    );
                }
            }
        }
    }
}
