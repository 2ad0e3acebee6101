//! llama.cpp's K-quants Q4_K and Q6_K: super-blocks of 256 values, their layout, their
//! decoding into the int8 path's form, and llama.cpp's reference quantizers
//! (`quantize_row_q4_K_ref`, `quantize_row_q6_K_ref`: the same search, in f32, one rounding
//! per operation, so the bytes are the same on every machine).
//!
//! Decoded, a Q6_K block is exactly int8 values (`q - 32`, -32..=31) with one f32 scale per 16
//! (`d * scale`, exact: 11 by 8 significant bits), the int8 path's own form. A Q4_K block is
//! values `q` (0..=15) with, per 32, a scale `d * sc` and an offset `dmin * m` (both exact):
//! `value = scale * q - offset`. The offset's share of a dot product, `offset * sum(x)` per
//! group, is what [`crate::weights::Matrix::Q8`]'s `offsets` carry.

/// Values per super-block.
pub const QK_K: usize = 256;
/// Bytes per Q4_K block: d, dmin (f16), 12 bytes of 6-bit scales and mins, 128 of nibbles.
pub const Q4_K_BYTES: usize = 144;
/// Bytes per Q6_K block: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, d (f16).
pub const Q6_K_BYTES: usize = 210;
/// Q4_K's sub-block (one scale and offset each).
pub const Q4_K_GROUP: usize = 32;
/// Q6_K's sub-block (one scale each).
pub const Q6_K_GROUP: usize = 16;

/// IEEE half to single precision (exact: every f16 is an f32).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let out = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m * 2^-24, exact in f32.
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(out)
}

/// Single to half precision, rounded to nearest even (ggml's `GGML_FP32_TO_FP16`).
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    // The significand with its implicit bit, and how many low bits the half drops.
    let (full, shift) = if e <= 0 {
        if e < -10 {
            return sign;
        }
        (mant | 0x80_0000, (14 - e) as u32)
    } else {
        (mant, 13)
    };
    let kept = full >> shift;
    let rest = full & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let round = u32::from(rest > half || (rest == half && kept & 1 == 1));
    if e <= 0 {
        sign | (kept + round) as u16
    } else {
        // A carry out of the mantissa correctly bumps the exponent (to infinity at the top).
        sign | ((((e as u32) << 10) | kept) + round) as u16
    }
}

/// ggml's `nearest_int`: round half to even (its float trick, for |v| < 2^22).
fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Q4_K's 6-bit scale and min of sub-block `j` (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// One Q4_K block as values 0..=15 (256, in order) and per 32 a scale and an offset:
/// `value[i] = scales[i / 32] * q[i] - offsets[i / 32]`.
pub fn decode_q4_k(block: &[u8], q: &mut [u8], scales: &mut [f32], offsets: &mut [f32]) {
    let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
    let dmin = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
    let (sc, qs) = (&block[4..16], &block[16..Q4_K_BYTES]);
    for j in 0..QK_K / Q4_K_GROUP {
        let (s, m) = scale_min_k4(j, sc);
        scales[j] = d * f32::from(s);
        offsets[j] = dmin * f32::from(m);
        // Sub-blocks 2k and 2k+1: the low and the high nibbles of bytes 32k..32k+32.
        let bytes = &qs[32 * (j / 2)..][..32];
        let shift = 4 * (j % 2);
        for (out, b) in q[32 * j..][..32].iter_mut().zip(bytes) {
            *out = (b >> shift) & 0xf;
        }
    }
}

/// One Q6_K block as int8 values (`q - 32`, 256 in order) and one scale per 16:
/// `value[i] = scales[i / 16] * q[i]`.
pub fn decode_q6_k(block: &[u8], q: &mut [i8], scales: &mut [f32]) {
    let (ql, qh, sc) = (&block[..128], &block[128..192], &block[192..208]);
    let d = f16_to_f32(u16::from_le_bytes([block[208], block[209]]));
    for (j, s) in scales.iter_mut().enumerate().take(16) {
        *s = d * f32::from(sc[j] as i8);
    }
    // Each half of 128 values: 64 bytes of ql, 32 of qh; value l + 32 * k of the half takes
    // nibble (k / 2) of ql[l + 32 * (k % 2)] and bits 2k..2k+2 of qh[l].
    for half in 0..2 {
        let (ql, qh) = (&ql[64 * half..][..64], &qh[32 * half..][..32]);
        for k in 0..4 {
            for l in 0..32 {
                let lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0xf;
                let hi = (qh[l] >> (2 * k)) & 3;
                q[128 * half + 32 * k + l] = ((lo | (hi << 4)) as i8) - 32;
            }
        }
    }
}

/// ggml's `make_qkx2_quants` for Q4_K (nmax 15, rmin -1, rdelta 0.1, 20 steps, squared
/// error): levels `l` 0..=15 into `levels`; returns (scale, min) with `x ~ scale * l - min`.
fn make_qkx2(x: &[f32], weights: &[f32], levels: &mut [u8]) -> (f32, f32) {
    const NMAX: i32 = 15;
    let (rmin, rdelta, nstep) = (-1.0f32, 0.1f32, 20);
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let mut iscale = NMAX as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, NMAX);
        levels[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_mad += weights[i] * (diff * diff);
    }
    let mut aux = [0u8; QK_K];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + NMAX as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, NMAX);
            aux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let big_d = sum_w * sum_l2 - sum_l * sum_l;
        if big_d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / big_d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / big_d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                mad += weights[i] * (diff * diff);
            }
            if mad < best_mad {
                levels[..n].copy_from_slice(&aux[..n]);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it quantizes to zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qx_quants` for Q6_K (nmax 32, weights `x^2`, the +-0.9 scale search): levels
/// `l + 32` (0..=63) into `levels`; returns the scale.
fn make_qx(x: &[f32], levels: &mut [i32]) -> f32 {
    const NMAX: i32 = 32;
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-NMAX, NMAX - 1);
    let mut iscale = -(NMAX as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (i, &v) in x.iter().enumerate() {
        let l = level(iscale, v);
        levels[i] = l + NMAX;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(NMAX as f32 + 0.1 * is as f32) / max;
        let (mut slx, mut sl2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            slx += w * v * l;
            sl2 += w * l * l;
        }
        if sl2 > 0.0 && slx * slx > best * sl2 {
            for (i, &v) in x.iter().enumerate() {
                levels[i] = level(iscale, v) + NMAX;
            }
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    scale
}

/// llama.cpp's `quantize_row_q4_K_ref` of one super-block of 256 values.
fn quantize_block_q4_k(x: &[f32], out: &mut [u8]) {
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..QK_K / Q4_K_GROUP {
        let xs = &x[32 * j..][..32];
        let sum_x2 = xs.iter().fold(0.0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        let (s, m) = make_qkx2(xs, &weights, &mut levels[32 * j..][..32]);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc = &mut [0u8; 12];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).min(63) as u8;
        let lm = nearest_int(inv_min * mins[j]).min(63) as u8;
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, sc);
        let dj = f16_to_f32(d) * f32::from(s);
        if dj == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin) * f32::from(m);
        for i in 32 * j..32 * (j + 1) {
            levels[i] = nearest_int((x[i] + dm) / dj).clamp(0, 15) as u8;
        }
    }
    out[0..2].copy_from_slice(&d.to_le_bytes());
    out[2..4].copy_from_slice(&dmin.to_le_bytes());
    out[4..16].copy_from_slice(sc);
    for k in 0..4 {
        for l in 0..32 {
            out[16 + 32 * k + l] = levels[64 * k + l] | (levels[64 * k + 32 + l] << 4);
        }
    }
}

/// llama.cpp's `quantize_row_q6_K_ref` of one super-block of 256 values.
fn quantize_block_q6_k(x: &[f32], out: &mut [u8]) {
    let mut levels = [0i32; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for j in 0..QK_K / Q6_K_GROUP {
        let s = make_qx(&x[16 * j..][..16], &mut levels[16 * j..][..16]);
        scales[j] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    out[..Q6_K_BYTES].fill(0);
    if max_abs < GROUP_MAX_EPS {
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f32_to_f16(1.0 / iscale);
    for j in 0..16 {
        let s = nearest_int(iscale * scales[j]).min(127) as i8;
        out[192 + j] = s as u8;
        let dj = f16_to_f32(d) * f32::from(s);
        if dj == 0.0 {
            continue;
        }
        for i in 16 * j..16 * (j + 1) {
            levels[i] = nearest_int(x[i] / dj).clamp(-32, 31) + 32;
        }
    }
    out[208..210].copy_from_slice(&d.to_le_bytes());
    for half in 0..2 {
        let l8 = |i: usize| levels[128 * half + i] as u8;
        for l in 0..32 {
            let (q1, q2, q3, q4) = (l8(l), l8(l + 32), l8(l + 64), l8(l + 96));
            out[64 * half + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
            out[64 * half + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
            out[128 + 32 * half + l] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
}

/// The K-quant types the quantizer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KQuant {
    Q4K,
    Q6K,
}

impl KQuant {
    pub fn block_bytes(self) -> usize {
        match self {
            KQuant::Q4K => Q4_K_BYTES,
            KQuant::Q6K => Q6_K_BYTES,
        }
    }
}

/// Quantizes `x` (a whole number of 256-value super-blocks) into the type's blocks.
///
/// # Panics
/// If `x.len()` is not a multiple of 256.
pub fn quantize(kind: KQuant, x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(QK_K));
    let bytes = kind.block_bytes();
    let mut out = vec![0u8; x.len() / QK_K * bytes];
    for (x, o) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(bytes)) {
        match kind {
            KQuant::Q4K => quantize_block_q4_k(x, o),
            KQuant::Q6K => quantize_block_q6_k(x, o),
        }
    }
    out
}

/// The values blocks of `kind` stand for, as the engine computes them (`scale * q - offset`
/// for Q4_K, `scale * q` for Q6_K, each in f32).
pub fn dequantize(kind: KQuant, data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / kind.block_bytes() * QK_K);
    for block in data.chunks_exact(kind.block_bytes()) {
        match kind {
            KQuant::Q4K => {
                let (mut q, mut s, mut m) = ([0u8; QK_K], [0f32; 8], [0f32; 8]);
                decode_q4_k(block, &mut q, &mut s, &mut m);
                out.extend(
                    q.iter()
                        .enumerate()
                        .map(|(i, &q)| s[i / 32] * f32::from(q) - m[i / 32]),
                );
            }
            KQuant::Q6K => {
                let (mut q, mut s) = ([0i8; QK_K], [0f32; 16]);
                decode_q6_k(block, &mut q, &mut s);
                out.extend(q.iter().enumerate().map(|(i, &q)| s[i / 16] * f32::from(q)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..4 * QK_K)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (s >> 8) as f32 / (1 << 24) as f32 - 0.5;
                // One block all zeros; one all positive (no negative min).
                match i / QK_K {
                    0 => 0.0,
                    1 => v + 0.5,
                    _ => v * (1 + i % 7) as f32,
                }
            })
            .collect()
    }

    #[test]
    fn f16_rounding_matches_half_precision() {
        for (v, bits) in [
            (1.0f32, 0x3c00u16),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (65520.0, 0x7c00),
            (2f32.powi(-24), 0x0001),
            (2f32.powi(-25), 0x0000),
            (3.0 * 2f32.powi(-25), 0x0002),
            (1.0 + 2f32.powi(-11), 0x3c00),
            (1.0 + 3.0 * 2f32.powi(-11), 0x3c02),
            (0.333_333_34, 0x3555),
        ] {
            assert_eq!(f32_to_f16(v), bits, "{v}");
        }
        for bits in (0u16..0x7c00).step_by(7) {
            assert_eq!(f32_to_f16(f16_to_f32(bits)), bits);
        }
    }

    #[test]
    fn quantizers_stay_close_and_zero_blocks_stay_zero() {
        for (kind, tolerance) in [(KQuant::Q4K, 0.12), (KQuant::Q6K, 0.03)] {
            let x = values(7);
            let data = quantize(kind, &x);
            assert_eq!(data.len(), 4 * kind.block_bytes());
            let y = dequantize(kind, &data);
            assert!(y[..QK_K].iter().all(|v| *v == 0.0));
            for (i, (a, b)) in x.iter().zip(&y).enumerate() {
                let scale = x[i / QK_K * QK_K..][..QK_K]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(
                    (a - b).abs() <= tolerance * scale,
                    "{kind:?} {i}: {a} vs {b}"
                );
            }
            assert_eq!(quantize(kind, &x), data, "deterministic");
        }
    }
}
