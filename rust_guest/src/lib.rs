//! edgechain's llama2.c inference engine on candle: the checkpoint and tokenizer readers,
//! run.c's sampler and generation loop, exported as a wasm32 guest (`wasm_abi`, see ABI.md)
//! and as the `edgechain_native` Python module (`python`, feature "python").

// First: its macro serves the modules declared after it.
#[macro_use]
mod compiled_for_avx2;

pub mod bpe;
pub mod cache_line;
pub mod chat_template;
pub mod checkpoint;
pub mod error;
pub mod generation;
pub mod gguf;
pub mod gguf_model;
pub mod kquants;
pub mod loaded_model;
pub mod matvec;
pub mod model_parts;
pub mod parallel;
pub mod q4k_kernel;
pub mod q8;
pub mod sampler;
pub mod tokenizer;
pub mod transformer;
pub mod vector_exp;
pub mod verification;
pub mod weights;

#[cfg(all(target_arch = "wasm32", feature = "getrandom-custom"))]
pub mod random;
#[cfg(all(target_arch = "wasm32", feature = "wasm-abi"))]
pub mod wasm_abi;

#[cfg(feature = "python")]
pub mod python;

pub use error::{EngineError, Result};
pub use generation::{GenerationParams, Session, StopReason};
pub use loaded_model::LoadedModel;
pub use verification::{verify_claim, Verdict, Verifier};
