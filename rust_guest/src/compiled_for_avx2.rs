//! Functions whose plain Rust body runs compiled for AVX2 where the CPU has it.
//!
//! The native crate's baseline is SSE2, so LLVM vectorises a loop over the vocabulary or a
//! head's positions 4 lanes wide; the same body compiled with `target_feature(enable = "avx2")`
//! runs 8 wide. Each element's operations stay the same, in the same order (Rust neither
//! contracts nor reorders float arithmetic, and AVX2 brings no FMA), so the results are the
//! same bits on every path; the guest and non-x86 targets run the body as built.

/// `fn $name(args) -> ret { body }`: on x86_64 the body runs through a copy compiled for AVX2
/// when the CPU has it, else as built (one signature, one body).
macro_rules! compiled_for_avx2 {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX2.
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
