//! `libm::expf` several lanes at a time, bit for bit.
//!
//! The sampler's softmax takes 32,000 exponentials per sampled token; called one by one, libm's
//! `expf` was a fifth of a native verification's time (issue 23). libm's `expf` (FreeBSD's
//! `e_expf.c`) is plain f32 arithmetic: an argument reduction `x = hi - lo` with
//! `hi = x - k * ln2_hi`, `lo = k * ln2_lo`, a rational approximation, then a scaling by `2^k`.
//! [`exp_shifted`] does exactly those operations lane by lane (mul, add, sub, div and
//! truncation are correctly rounded on every target, and nothing is fused or reordered), so
//! each lane is `libm::expf`'s bits: for `k` in the range a finite non-tiny input gives
//! (`|x| < 87.34`), libm's `scalbnf(y, k)` is the single product `y * 2^k` the lanes compute.
//! Lanes libm treats as special (`|x| >= 87.34`, NaN, infinities) send their group of lanes to
//! `libm::expf` itself; tiny ones (`|x| <= 2^-14`) take libm's `1 + x` by a blend.

/// `values[i] = libm::expf(values[i] - shift)`, bit for bit, for every element.
pub fn exp_shifted(values: &mut [f32], shift: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { exp_shifted_avx2::<false>(values, shift) };
        return;
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        exp_shifted_simd128(values, shift);
        return;
    }
    #[allow(unreachable_code)]
    exp_shifted_scalar(values, shift)
}

/// [`exp_shifted`], and the sum of the results in index order (`0 + v[0] + v[1] + ...`, f32,
/// run.c's softmax sum). With AVX2 each group of lanes is added as it is computed: the sum
/// is one chain of dependent additions, which then overlaps the next groups' exponentials
/// instead of running as a pass of its own after them.
pub fn exp_shifted_sum(values: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { exp_shifted_avx2::<true>(values, shift) };
    }
    exp_shifted(values, shift);
    values.iter().fold(0.0f32, |sum, v| sum + v)
}

/// The definition: libm's `expf` on each element.
fn exp_shifted_scalar(values: &mut [f32], shift: f32) {
    for v in values.iter_mut() {
        *v = libm::expf(*v - shift);
    }
}

// libm's constants (`e_expf.c`), written as libm writes them (the test checks their bits).
#[allow(clippy::excessive_precision)]
const LN2_HI: f32 = 6.9314575195e-01; /* 0x3f317200 */
#[allow(clippy::excessive_precision)]
const LN2_LO: f32 = 1.4286067653e-06; /* 0x35bfbe8e */
#[allow(clippy::excessive_precision)]
const INV_LN2: f32 = 1.4426950216e+00; /* 0x3fb8aa3b */
#[allow(clippy::excessive_precision)]
const P1: f32 = 1.6666625440e-1; /*  0xaaaa8f.0p-26 */
#[allow(clippy::excessive_precision)]
const P2: f32 = -2.7667332906e-3; /* -0xb55215.0p-32 */
/// `|x|` at or above which libm takes a special path (overflow, underflow, NaN).
const SPECIAL: i32 = 0x42ae_ac50;
/// `|x|` above which `k` is `trunc(x / ln2 +- 0.5)` (1.5 ln2).
const BIG: i32 = 0x3f85_1592;
/// `|x|` above which `k` is +-1 (0.5 ln2); at or below it `k` is 0.
const MID: i32 = 0x3eb1_7218;
/// `|x|` at or below which libm returns `1 + x` (2^-14).
const TINY: i32 = 0x3900_0000;

/// The f32 lane operations libm's reduction and polynomial take, on one vector type.
trait F32Lanes: Copy {
    /// Every lane `v`.
    ///
    /// # Safety
    /// The CPU has the vector type's instructions (so do the methods below).
    unsafe fn splat(v: f32) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
}

/// libm's `expf` between its choice of `k` and its scaling by `2^k`, lane by lane: `x = hi - lo`
/// with `hi = x - k * ln2_hi`, `lo = k * ln2_lo`, then the rational approximation `y` of
/// `e^(hi - lo)`, the same operations in the same order. `kf` holds each lane's `k` as a float.
/// With k = 0 these are hi = x, lo = 0 and x unchanged, libm's small-|x| branch.
///
/// # Safety
/// The CPU has `V`'s instructions.
#[inline(always)]
unsafe fn libm_polynomial<V: F32Lanes>(x: V, kf: V) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let hi = x.sub(kf.mul(V::splat(LN2_HI)));
        let lo = kf.mul(V::splat(LN2_LO));
        let r = hi.sub(lo);
        let rr = r.mul(r);
        let c = r.sub(rr.mul(V::splat(P1).add(rr.mul(V::splat(P2)))));
        let q = r.mul(c).div(V::splat(2.0).sub(c));
        V::splat(1.0).add(q.sub(lo).add(hi))
    }
}

/// Implements [`F32Lanes`] for the vector type `$v` with its intrinsics: `$splat`, then each
/// binary operation's.
macro_rules! impl_f32_lanes {
    ($v:ty, $splat:path, $($op:ident: $intrinsic:path),+) => {
        // The guest's intrinsics are safe functions (simd128 is on for the whole build).
        #[allow(unused_unsafe)]
        impl F32Lanes for $v {
            #[inline(always)]
            unsafe fn splat(v: f32) -> Self {
                // SAFETY: the trait's contract: the CPU has the type's instructions.
                unsafe { $splat(v) }
            }
            $(
                #[inline(always)]
                unsafe fn $op(self, b: Self) -> Self {
                    // SAFETY: as in `splat`.
                    unsafe { $intrinsic(self, b) }
                }
            )+
        }
    };
}

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_div_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_sub_ps,
};
// 8 AVX lanes: the AVX2 path's.
#[cfg(target_arch = "x86_64")]
impl_f32_lanes!(__m256, _mm256_set1_ps,
    add: _mm256_add_ps, sub: _mm256_sub_ps, mul: _mm256_mul_ps, div: _mm256_div_ps);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use core::arch::wasm32::{f32x4_add, f32x4_div, f32x4_mul, f32x4_splat, f32x4_sub, v128};
// 4 simd128 lanes: the guest's.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
impl_f32_lanes!(v128, f32x4_splat,
    add: f32x4_add, sub: f32x4_sub, mul: f32x4_mul, div: f32x4_div);

/// [`exp_shifted`] with 8 AVX2 lanes; with `SUM`, also [`exp_shifted_sum`]'s sum (else 0).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_shifted_avx2<const SUM: bool>(values: &mut [f32], shift: f32) -> f32 {
    use core::arch::x86_64::*;
    let mut sum = 0.0f32;
    let mut chunks = values.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds 8 floats; unaligned load and store.
        unsafe {
            let x = _mm256_sub_ps(_mm256_loadu_ps(chunk.as_ptr()), _mm256_set1_ps(shift));
            let bits = _mm256_castps_si256(x);
            let hx = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
            let special = _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(SPECIAL - 1));
            if _mm256_movemask_epi8(special) != 0 {
                for v in chunk.iter_mut() {
                    *v = libm::expf(*v - shift);
                    if SUM {
                        sum += *v;
                    }
                }
                continue;
            }
            // All ones where x < 0.
            let negative = _mm256_srai_epi32::<31>(bits);
            // HALF[sign]: 0.5 or -0.5 (the sign bit of x on 0.5).
            let half = _mm256_or_ps(
                _mm256_set1_ps(0.5),
                _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN))),
            );
            let k_big = _mm256_cvttps_epi32(_mm256_add_ps(
                _mm256_mul_ps(_mm256_set1_ps(INV_LN2), x),
                half,
            ));
            // 1 - sign - sign: 1 or -1 (`negative` is 0 or -1).
            let k_mid =
                _mm256_add_epi32(_mm256_set1_epi32(1), _mm256_add_epi32(negative, negative));
            let is_big = _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(BIG));
            let is_mid = _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(MID));
            let k = _mm256_blendv_epi8(_mm256_and_si256(k_mid, is_mid), k_big, is_big);
            let y = libm_polynomial(x, _mm256_cvtepi32_ps(k));
            // 2^k, a normal float for every k here (-126..=127); y * 1 is y when k = 0.
            let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
                k,
                _mm256_set1_epi32(127),
            )));
            let scaled = _mm256_mul_ps(y, scale);
            let tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(TINY + 1), hx);
            let out = _mm256_blendv_ps(
                scaled,
                _mm256_add_ps(_mm256_set1_ps(1.0), x),
                _mm256_castsi256_ps(tiny),
            );
            _mm256_storeu_ps(chunk.as_mut_ptr(), out);
            if SUM {
                let lanes: [f32; 8] = core::mem::transmute(out);
                for v in lanes {
                    sum += v;
                }
            }
        }
    }
    for v in chunks.into_remainder() {
        *v = libm::expf(*v - shift);
        if SUM {
            sum += *v;
        }
    }
    sum
}

/// [`exp_shifted`] with 4 simd128 lanes (the wasm guest).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn exp_shifted_simd128(values: &mut [f32], shift: f32) {
    use core::arch::wasm32::*;
    let mut chunks = values.chunks_exact_mut(4);
    for chunk in &mut chunks {
        // SAFETY: `chunk` holds 4 floats; unaligned load.
        let x = f32x4_sub(
            unsafe { v128_load(chunk.as_ptr() as *const v128) },
            f32x4_splat(shift),
        );
        let hx = v128_and(x, i32x4_splat(0x7fff_ffff));
        if v128_any_true(i32x4_gt(hx, i32x4_splat(SPECIAL - 1))) {
            for v in chunk.iter_mut() {
                *v = libm::expf(*v - shift);
            }
            continue;
        }
        let negative = i32x4_shr(x, 31);
        let half = v128_or(f32x4_splat(0.5), v128_and(x, i32x4_splat(i32::MIN)));
        let k_big = i32x4_trunc_sat_f32x4(f32x4_add(f32x4_mul(f32x4_splat(INV_LN2), x), half));
        let k_mid = i32x4_add(i32x4_splat(1), i32x4_add(negative, negative));
        let is_big = i32x4_gt(hx, i32x4_splat(BIG));
        let is_mid = i32x4_gt(hx, i32x4_splat(MID));
        let k = v128_bitselect(k_big, v128_and(k_mid, is_mid), is_big);
        // SAFETY: simd128 is on in the guest's build (this function's cfg).
        let y = unsafe { libm_polynomial(x, f32x4_convert_i32x4(k)) };
        let scale = i32x4_shl(i32x4_add(k, i32x4_splat(127)), 23);
        let scaled = f32x4_mul(y, scale);
        let tiny = i32x4_gt(i32x4_splat(TINY + 1), hx);
        let out = v128_bitselect(f32x4_add(f32x4_splat(1.0), x), scaled, tiny);
        // SAFETY: `chunk` holds 4 floats; unaligned store.
        unsafe { v128_store(chunk.as_mut_ptr() as *mut v128, out) };
    }
    exp_shifted_scalar(chunks.into_remainder(), shift);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[f32], shift: f32) {
        let mut got = values.to_vec();
        exp_shifted(&mut got, shift);
        for (v, g) in values.iter().zip(&got) {
            let want = libm::expf(*v - shift);
            assert_eq!(
                g.to_bits(),
                want.to_bits(),
                "expf({v} - {shift}): {g} vs {want}"
            );
        }
    }

    #[test]
    fn the_sum_is_the_in_order_sum_of_the_exponentials() {
        let mut x = 0x2545_f491u32;
        for n in [0usize, 1, 7, 8, 9, 100, 32_000] {
            let values: Vec<f32> = (0..n)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    // Mostly softmax inputs, with a special lane now and then.
                    if i % 997 == 3 {
                        -100.0
                    } else {
                        -((x >> 8) as f32) / 1_048_576.0
                    }
                })
                .collect();
            let mut want = values.clone();
            exp_shifted_scalar(&mut want, 0.5);
            let want_sum = want.iter().fold(0.0f32, |s, v| s + v);
            let mut got = values.clone();
            let sum = exp_shifted_sum(&mut got, 0.5);
            assert_eq!(sum.to_bits(), want_sum.to_bits(), "n {n}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(bits(&got), bits(&want), "n {n}");
        }
    }

    #[test]
    fn the_constants_are_libms() {
        let bits = [LN2_HI, LN2_LO, INV_LN2, P1, P2].map(f32::to_bits);
        assert_eq!(
            bits,
            [
                0x3f31_7200,
                0x35bf_be8e,
                0x3fb8_aa3b,
                0x3e2a_aa8f,
                0xbb35_5215
            ]
        );
    }

    #[test]
    fn every_lane_is_libms_expf_across_the_range() {
        // A stride through every float bit pattern (signs, exponents, mantissas), in vectors
        // of 8 with the specials mixed in.
        let values: Vec<f32> = (0..u32::MAX / 7919)
            .map(|i| f32::from_bits(i.wrapping_mul(7919)))
            .collect();
        check(&values, 0.0);
        check(&values[..values.len() / 8], 3.25);
    }

    /// Every float through [`exp_shifted`] with shift 0 against `libm::expf` (NaNs: NaN).
    /// Ignored in a plain `cargo test` (~40 s in release); scripts/test_rust.sh runs it (CI);
    /// SiLU's vector exponentials rest on it (transformer.rs, `silu_mul`).
    #[test]
    #[ignore]
    fn every_float_is_libms_expf() {
        const BLOCK: u32 = 1 << 16;
        let mut values = vec![0.0f32; BLOCK as usize];
        for block in 0..(1u64 << 32) / u64::from(BLOCK) {
            let first = block as u32 * BLOCK;
            for (i, v) in values.iter_mut().enumerate() {
                *v = f32::from_bits(first + i as u32);
            }
            let mut got = values.clone();
            exp_shifted(&mut got, 0.0);
            for (v, g) in values.iter().zip(&got) {
                let want = libm::expf(*v);
                assert!(
                    g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                    "expf({v:e}) = {want:e}, lanes {g:e}"
                );
            }
        }
    }

    #[test]
    fn every_lane_is_libms_expf_at_the_branch_boundaries() {
        let mut values = Vec::new();
        for edge in [
            SPECIAL,
            BIG,
            MID,
            TINY,
            0x42b1_7218,
            0x42cf_f1b5,
            0x7f80_0000,
            0,
        ] {
            for d in -40..=40 {
                let bits = (edge + d).max(0) as u32;
                values.push(f32::from_bits(bits));
                values.push(-f32::from_bits(bits));
            }
        }
        values.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -87.3,
            -87.4,
            -1e-30,
        ]);
        // Softmax's inputs: logits minus their maximum, all <= 0, over the usual span.
        values.extend((0..20_000).map(|i| -(i as f32) * 4.37e-3));
        for start in 0..8 {
            check(&values[start..], 0.0);
        }
        check(&values, -1.5);
    }
}
