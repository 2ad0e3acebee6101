//! Buffers viewed from their first element on a cache line.
//!
//! The AVX-512 products load 64 bytes at a time, and a large allocation from glibc's malloc
//! starts 16 bytes past a page, so every such load of a row spanned two cache lines. Weights
//! (checkpoint/loader.rs) and activations (transformer.rs) are therefore allocated with
//! [`padding`] extra elements and viewed [`skip`] elements in. Measured on the batched f32
//! product, 15M shapes, ns per (row, input): weights aligned 4.8 -> 4.3 (288x288); inputs
//! aligned too 4.1 -> 3.55 (288x288) and 10.9 -> 9.9 (288x768).

/// Bytes in a cache line: where a buffer's view starts.
pub const CACHE_LINE: usize = 64;

/// Extra elements of `T` a buffer is allocated with so that a view of it can start on a
/// cache line.
pub const fn padding<T>() -> usize {
    CACHE_LINE / std::mem::size_of::<T>()
}

/// Leading elements of `buffer` (allocated with [`padding`] extra) to skip so that the view
/// starts on a cache line: at most [`padding`] (an unalignable pointer, never seen, would only
/// cost the alignment).
pub fn skip<T>(buffer: &[T]) -> usize {
    buffer.as_ptr().align_offset(CACHE_LINE).min(padding::<T>())
}
