//! getrandom 0.3's custom backend for wasm32-unknown-unknown (selected by
//! `--cfg getrandom_backend="custom"` in .cargo/config.toml): the target has no OS randomness
//! without JavaScript or WASI, and candle's `rand` pulls getrandom in. Feature
//! "getrandom-custom" (on with "wasm-abi"; linera_app turns it on for its contract and service).

// Nothing in the engine draws OS randomness (the sampler has its own seeded RNG); if a
// dependency ever asks, it gets a fixed, deterministic stream, so every validator computes the
// same.
#[no_mangle]
unsafe extern "Rust" fn __getrandom_v03_custom(
    dest: *mut u8,
    len: usize,
) -> std::result::Result<(), getrandom::Error> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *dest.add(i) = state as u8;
    }
    Ok(())
}
