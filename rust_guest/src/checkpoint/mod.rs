//! Reader for llama2.c checkpoints: run.c's f32 layout ("version 0": a 28-byte header), including
//! grouped-query attention (`n_kv_heads < n_heads`) and a separate classifier (negative
//! `vocab_size`), and runq.c's int8 layout ("version 2": a 256-byte header starting with the
//! magic `ak42`, weights in Q8_0 groups; see ABI.md, "Checkpoint formats"). The magic number
//! tells them apart: no valid version-0 header starts with it (its `dim` would be 1.6e9).
//!
//! One job a module: `header` parses and validates the header (it names no weights, so
//! `weights` can name it), `layout` lists the weight section's runs in file order, `loader`
//! streams the file into the typed weights.

pub mod header;
mod layout;
pub mod loader;

pub use header::{
    is_q8, parse_header, parse_header_for_size, CheckpointConfig, HEADER_BYTES, HEADER_FIELDS,
    MAX_DIM, MAX_HEADER_BYTES, MAX_REGION_BYTES, Q8_HEADER_BYTES, Q8_MAGIC, Q8_VERSION,
};
pub use loader::{load_weights, load_weights_from_file, WeightLoader};
