//! Names the targets whose kernels have SIMD paths, `cfg(simd_kernels)`: x86_64 (SSE, AVX2)
//! and wasm32 with simd128. There the portable definitions (`matvec::dot_scalar`,
//! `q8::group_dot_scalar`) serve only the tests.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(simd_kernels)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let simd128 = features.split(',').any(|feature| feature == "simd128");
    if arch == "x86_64" || (arch == "wasm32" && simd128) {
        println!("cargo:rustc-cfg=simd_kernels");
    }
}
