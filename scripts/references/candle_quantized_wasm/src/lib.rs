//! A reference for benchmarks only (never in CI): candle's own quantized Llama
//! (`candle_transformers::models::quantized_llama`), the model candle's wasm examples run,
//! built for wasm32 + simd128 like the edgechain guest, so the same GGUF file can be timed on
//! both under the same wasmtime. Greedy decoding from token ids; no tokenizer.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::io::Cursor;

static mut MODEL: Option<ModelWeights> = None;

/// Memory for the host to write the GGUF file into.
#[no_mangle]
pub extern "C" fn ref_alloc(len: usize) -> *mut u8 {
    let mut buffer = Vec::<u8>::with_capacity(len);
    let pointer = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    pointer
}

/// Loads the model from the file at `ptr`; frees it. 0 on success, -1 on failure.
///
/// # Safety
/// `ptr` was returned by `ref_alloc(len)` and holds `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ref_load(ptr: *mut u8, len: usize) -> i32 {
    let bytes = Vec::from_raw_parts(ptr, len, len);
    let mut reader = Cursor::new(bytes);
    let loaded = gguf_file::Content::read(&mut reader)
        .and_then(|content| ModelWeights::from_gguf(content, &mut reader, &Device::Cpu));
    match loaded {
        Ok(model) => {
            MODEL = Some(model);
            0
        }
        Err(_) => -1,
    }
}

/// Feeds `token` at `position`; returns the argmax of the next-token logits (-1 on failure).
///
/// # Safety
/// Single-threaded guest: no other call runs at the same time.
#[no_mangle]
pub unsafe extern "C" fn ref_step(token: u32, position: usize) -> i64 {
    #[allow(static_mut_refs)]
    let Some(model) = MODEL.as_mut() else {
        return -1;
    };
    let next = Tensor::new(&[token], &Device::Cpu)
        .and_then(|t| t.unsqueeze(0))
        .and_then(|input| model.forward(&input, position))
        .and_then(|logits| logits.squeeze(0))
        .and_then(|logits| logits.argmax(0))
        .and_then(|id| id.to_scalar::<u32>());
    match next {
        Ok(id) => i64::from(id),
        Err(_) => -1,
    }
}

// candle's `rand` pulls getrandom 0.3 in; nothing here draws from it.
#[no_mangle]
unsafe extern "Rust" fn __getrandom_v03_custom(
    dest: *mut u8,
    len: usize,
) -> Result<(), getrandom::Error> {
    std::ptr::write_bytes(dest, 0, len);
    Ok(())
}
