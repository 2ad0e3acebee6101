//! The wasm guest's int8 matrix-vector product (simd128): bit for bit [`super::matvec_q8`]'s
//! definition, for group sizes that are multiples of 16 up to [`MAX_GROUP`].
//!
//! Why this shape. wasm has no i8 x i8 multiply-add that is exact and the same on every host
//! (relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add_s` is neither for -128), and Cranelift
//! lowers `i16x8.extend_high_i8x16_s` to two x86 instructions and `i16x8.extmul_*_i8x16_s` to
//! three to five. So the weights are not sign-extended at all: a 16-byte load read as eight i16
//! lanes holds an even-indexed weight in each lane's low byte and an odd-indexed one in its
//! high byte. `i16x8.shr_s(v, 8)` is the odd weights, `i16x8.shl(v, 8)` the even ones times
//! 256; the activations are rearranged once per product ([`split_activations`]) into the odd
//! values times 256 and the even values, so both `i32x4.dot_i16x8_s` give products times 256.
//! Per 16 weights: one load, two shifts, two dots, two adds (was one load, three instructions
//! to widen, two dots, two adds), and each four groups' exact dots are shifted back once.
//!
//! Exactness: weights and activations lie in -128..=127, so a product times 256 is at most
//! 2^22 in magnitude and a group's sum of them at most `MAX_GROUP * 2^22 = 2^30`: every i32
//! sum is exact, in any order, and the arithmetic shift by 8 of a multiple of 256 is exact too.
//! No input needs checking (-128 included). The float steps are the definition's:
//! `(dot as f32 * w_scale) * x_scale` per group, added in group order.

use core::arch::wasm32::*;

/// Largest group size this kernel takes (see the module's exactness note).
pub(crate) const MAX_GROUP: usize = 256;

/// Whether this kernel takes a group size: a multiple of 16 up to [`MAX_GROUP`].
pub(crate) fn takes(gs: usize) -> bool {
    gs > 0 && gs.is_multiple_of(16) && gs <= MAX_GROUP
}

/// `xq` (a multiple of 16 values) as the kernel reads it: per 16 values, one vector of the 8
/// odd-indexed values times 256 (-128 * 256 = -32768 still fits an i16), then one of the 8
/// even-indexed values.
pub(crate) fn split_activations(xq: &[i16]) -> Vec<v128> {
    assert!(xq.len().is_multiple_of(16));
    let mut out = Vec::with_capacity(xq.len() / 8);
    for c in xq.chunks_exact(16) {
        // SAFETY: `c` holds 16 i16 (32 bytes); unaligned loads.
        let (a, b) = unsafe {
            (
                v128_load(c.as_ptr() as *const v128),
                v128_load(c.as_ptr().add(8) as *const v128),
            )
        };
        out.push(i16x8_shl(
            i16x8_shuffle::<1, 3, 5, 7, 9, 11, 13, 15>(a, b),
            8,
        ));
        out.push(i16x8_shuffle::<0, 2, 4, 6, 8, 10, 12, 14>(a, b));
    }
    out
}

/// One group's products times 256 summed into 4 i32 lanes (exact): `w` 16 weights per pair of
/// vectors of `x` (`w.len() == 8 * x.len()`).
#[inline(always)]
fn group_lanes(w: &[i8], x: &[v128]) -> v128 {
    assert!(w.len() == 8 * x.len());
    let mut acc = i32x4_splat(0);
    for (w, x) in w.chunks_exact(16).zip(x.chunks_exact(2)) {
        // SAFETY: `w` holds 16 bytes; unaligned load.
        let wv = unsafe { v128_load(w.as_ptr() as *const v128) };
        acc = i32x4_add(acc, i32x4_dot_i16x8(i16x8_shr(wv, 8), x[0]));
        acc = i32x4_add(acc, i32x4_dot_i16x8(i16x8_shl(wv, 8), x[1]));
    }
    acc
}

/// One group's exact integer dot product.
#[inline(always)]
fn group_dot(w: &[i8], x: &[v128]) -> i32 {
    let acc = group_lanes(w, x);
    (i32x4_extract_lane::<0>(acc)
        + i32x4_extract_lane::<1>(acc)
        + i32x4_extract_lane::<2>(acc)
        + i32x4_extract_lane::<3>(acc))
        >> 8
}

/// Four vectors of i32 lane sums -> one vector of their four (exact) totals, in input order.
#[inline(always)]
fn sum_lanes4(acc: [v128; 4]) -> v128 {
    let t0 = i32x4_shuffle::<0, 4, 1, 5>(acc[0], acc[1]);
    let t1 = i32x4_shuffle::<2, 6, 3, 7>(acc[0], acc[1]);
    let t2 = i32x4_shuffle::<0, 4, 1, 5>(acc[2], acc[3]);
    let t3 = i32x4_shuffle::<2, 6, 3, 7>(acc[2], acc[3]);
    let (s01, s23) = (i32x4_add(t0, t1), i32x4_add(t2, t3));
    i32x4_add(
        i32x4_shuffle::<0, 1, 4, 5>(s01, s23),
        i32x4_shuffle::<2, 3, 6, 7>(s01, s23),
    )
}

/// Four consecutive groups of one row (`w`: their weights, `x`: the activations' vectors
/// for them, `ws`/`xs`: their 4 scales): `(dot as f32 * w_scale) * x_scale` per group,
/// lane-wise (the definition's two roundings per group).
///
/// `G` > 0 is the group size as a constant (the common sizes get fully unrolled inner loops,
/// without a loop back-edge for wasmtime's epoch check); `G` = 0 reads it from `gs`. The
/// callers hand over each block's slices from chunk iterators, so every load's address is a
/// pointer plus a constant, which LLVM folds into the load's offset.
#[inline(always)]
fn group_products4<const G: usize>(
    w: &[i8],
    x: &[v128],
    ws: &[f32],
    xs: &[f32],
    gs: usize,
) -> v128 {
    let gs = if G > 0 { G } else { gs };
    let v = gs / 8; // vectors of `x` per group
                    // Written out, not `array::from_fn`: LLVM left that closure out of line for G = 64,
                    // where it lost the constant group size (and a call per group costs the guest).
                    // Each group's lane sums go through a volatile store and load: Cranelift places pure
                    // instructions just before the first side effect that needs them, and wasm loads are side
                    // effects (they may trap), so without a store per group all of a block's loads came first
                    // and most of them were spilled to the stack and reloaded.
    let mut slots = [core::mem::MaybeUninit::<v128>::uninit(); 4];
    for (j, slot) in slots.iter_mut().enumerate() {
        let lanes = group_lanes(&w[j * gs..(j + 1) * gs], &x[j * v..(j + 1) * v]);
        // SAFETY: a write to a local slot.
        unsafe { core::ptr::write_volatile(slot.as_mut_ptr(), lanes) };
    }
    // SAFETY: every slot was written just above.
    let acc = slots.map(|s| unsafe { core::ptr::read_volatile(s.as_ptr()) });
    let dots = i32x4_shr(sum_lanes4(acc), 8);
    assert!(ws.len() == 4 && xs.len() == 4);
    // SAFETY: both slices hold exactly 4 floats; unaligned loads.
    unsafe {
        f32x4_mul(
            f32x4_mul(
                f32x4_convert_i32x4(dots),
                v128_load(ws.as_ptr() as *const v128),
            ),
            v128_load(xs.as_ptr() as *const v128),
        )
    }
}

/// The four-group blocks of one row: `(w, x, ws, xs)` of each, as [`group_products4`] takes
/// them (`blocks` of them; the groups after the last block are left out).
#[inline(always)]
fn blocks4<'a>(
    w: &'a [i8],
    x: &'a [v128],
    ws: &'a [f32],
    xs: &'a [f32],
    gs: usize,
) -> impl Iterator<Item = (&'a [i8], &'a [v128], &'a [f32], &'a [f32])> {
    w.chunks_exact(4 * gs)
        .zip(x.chunks_exact(gs / 2))
        .zip(ws.chunks_exact(4).zip(xs.chunks_exact(4)))
        .map(|((w, x), (ws, xs))| (opaque(w), opaque(x), ws, xs))
}

/// `s` with its address read back through a volatile load: LLVM then knows nothing of where
/// it points, so its loop strength reduction leaves the loads at constant offsets from it alone
/// (it rewrites them as adds without the no-wrap flag, which the wasm backend needs to fold
/// the constant into the load's offset; an add costs Cranelift one more instruction per load).
#[inline(always)]
fn opaque<T>(s: &[T]) -> &[T] {
    let p = s.as_ptr();
    // SAFETY: a volatile read of a local; the slice rebuilt is `s` itself.
    unsafe { core::slice::from_raw_parts(core::ptr::read_volatile(&p), s.len()) }
}

/// One row: `sum over groups g of (dot_g as f32 * ws[g]) * xs[g]`, in group order, four
/// groups' products at a time.
#[inline(always)]
fn row<const G: usize>(w: &[i8], ws: &[f32], x: &[v128], xs: &[f32], gs: usize) -> f32 {
    let gs = if G > 0 { G } else { gs };
    let (groups, v) = (ws.len(), gs / 8);
    let mut val = 0.0f32;
    for (w, x, ws, xs) in blocks4(w, x, ws, xs, gs) {
        let p = group_products4::<G>(w, x, ws, xs, gs);
        val += f32x4_extract_lane::<0>(p);
        val += f32x4_extract_lane::<1>(p);
        val += f32x4_extract_lane::<2>(p);
        val += f32x4_extract_lane::<3>(p);
    }
    for g in groups / 4 * 4..groups {
        val += group_dot(&w[g * gs..(g + 1) * gs], &x[g * v..(g + 1) * v]) as f32 * ws[g] * xs[g];
    }
    val
}

/// Four-group blocks a row may have for [`rows4`] (its products are buffered on the stack);
/// longer rows go one at a time.
const MAX_BLOCKS: usize = 64;

/// [`row`] for four consecutive rows (`w`: 4 rows of `n` values, `ws`: their scales),
/// returning the four row sums as one vector. The rows are read one after the other (one
/// memory stream: reading four rows side by side was slower on DRAM-bound shapes), each row's
/// four-group products buffered; then each lane, one row's sum, receives that row's group
/// products in group order, one vector add per group: the same additions as the definition,
/// without extracting lanes.
#[inline(always)]
fn rows4<const G: usize>(w: &[i8], ws: &[f32], x: &[v128], xs: &[f32], gs: usize) -> v128 {
    let gs = if G > 0 { G } else { gs };
    let (groups, v) = (xs.len(), gs / 8);
    let n = groups * gs;
    let blocks = groups / 4;
    assert!(w.len() == 4 * n && ws.len() == 4 * groups && x.len() == groups * v);
    assert!(blocks <= MAX_BLOCKS);
    // Not zeroed (4 KiB per four rows would cost as much as reading them): every slot read
    // below is written first.
    let mut products = [[std::mem::MaybeUninit::<v128>::uninit(); MAX_BLOCKS]; 4];
    // The products of the last `groups % 4` groups, per row (scalar: the same roundings).
    let mut tails = [[0.0f32; 4]; 3];
    for (r, (buffer, (row, scales))) in products
        .iter_mut()
        .zip(w.chunks_exact(n).zip(ws.chunks_exact(groups)))
        .enumerate()
    {
        for (p, (w, x, ws, xs)) in buffer[..blocks]
            .iter_mut()
            .zip(blocks4(row, x, scales, xs, gs))
        {
            p.write(group_products4::<G>(w, x, ws, xs, gs));
        }
        for (t, g) in (4 * blocks..groups).enumerate() {
            let dot = group_dot(&row[g * gs..(g + 1) * gs], &x[g * v..(g + 1) * v]);
            tails[t][r] = dot as f32 * scales[g] * xs[g];
        }
    }
    let mut val = f32x4_splat(0.0);
    for b in 0..blocks {
        // SAFETY: slots 0..blocks of every row were written above.
        let p = unsafe {
            [
                products[0][b].assume_init(),
                products[1][b].assume_init(),
                products[2][b].assume_init(),
                products[3][b].assume_init(),
            ]
        };
        let t0 = i32x4_shuffle::<0, 4, 1, 5>(p[0], p[1]);
        let t1 = i32x4_shuffle::<2, 6, 3, 7>(p[0], p[1]);
        let t2 = i32x4_shuffle::<0, 4, 1, 5>(p[2], p[3]);
        let t3 = i32x4_shuffle::<2, 6, 3, 7>(p[2], p[3]);
        val = f32x4_add(val, i32x4_shuffle::<0, 1, 4, 5>(t0, t2));
        val = f32x4_add(val, i32x4_shuffle::<2, 3, 6, 7>(t0, t2));
        val = f32x4_add(val, i32x4_shuffle::<0, 1, 4, 5>(t1, t3));
        val = f32x4_add(val, i32x4_shuffle::<2, 3, 6, 7>(t1, t3));
    }
    for tail in &tails[..groups - 4 * blocks] {
        // SAFETY: `tail` holds exactly 4 floats; unaligned load.
        val = f32x4_add(val, unsafe { v128_load(tail.as_ptr() as *const v128) });
    }
    val
}

/// [`super::matvec_q8`] with the activations [`split_activations`]: four rows at a time,
/// then the remaining rows one by one. The caller checks the shapes and [`takes`]`(gs)`.
#[inline(always)]
fn matvec_rows<const G: usize>(
    out: &mut [f32],
    w: &[i8],
    ws: &[f32],
    x: &[v128],
    xs: &[f32],
    gs: usize,
) {
    let groups = xs.len();
    let n = groups * gs;
    let blocked = if groups / 4 <= MAX_BLOCKS {
        out.len() / 4 * 4
    } else {
        0
    };
    let (out4, out1) = out.split_at_mut(blocked);
    let (w4, w1) = w.split_at(blocked * n);
    let (s4, s1) = ws.split_at(blocked * groups);
    for ((o, w), s) in out4
        .chunks_exact_mut(4)
        .zip(w4.chunks_exact(4 * n))
        .zip(s4.chunks_exact(4 * groups))
    {
        let v = rows4::<G>(w, s, x, xs, gs);
        // SAFETY: `o` holds exactly 4 floats; unaligned store.
        unsafe { v128_store(o.as_mut_ptr() as *mut v128, v) };
    }
    for ((o, w), s) in out1
        .iter_mut()
        .zip(w1.chunks_exact(n))
        .zip(s1.chunks_exact(groups))
    {
        *o = row::<G>(w, s, x, xs, gs);
    }
}

/// `out = W x` as [`super::matvec_q8`] defines it, `x` [`split_activations`] of the
/// quantized activations, `xs` their scales. The caller checks the shapes and [`takes`]`(gs)`.
pub(crate) fn matvec(out: &mut [f32], w: &[i8], ws: &[f32], x: &[v128], xs: &[f32], gs: usize) {
    debug_assert!(takes(gs));
    with_group_size!(matvec_rows, gs, (out, w, ws, x, xs, gs));
}
