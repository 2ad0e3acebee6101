//! What a model file yields, whatever its format: the header config, the typed weights, the
//! tokenizer and the few numbers llama2.c's format fixes but others carry (RoPE base, rmsnorm
//! epsilon). A llama2.c checkpoint + tokenizer.bin (`checkpoint`), a GGUF file (`gguf_model`)
//! and, next, safetensors + tokenizer.json each produce one; `LoadedModel` takes it.

use crate::checkpoint::CheckpointConfig;
use crate::tokenizer::Tokenizer;
use crate::weights::TransformerWeights;

/// The forward pass's constants that a file may set (run.c's values by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelHyper {
    /// RoPE's base: `freq = 1 / base^(i / head_size)`.
    pub rope_base: f32,
    /// rmsnorm's epsilon.
    pub norm_eps: f32,
}

impl Default for ModelHyper {
    fn default() -> Self {
        Self {
            rope_base: 10000.0,
            norm_eps: 1e-5,
        }
    }
}

/// A model file's contents, ready for [`crate::LoadedModel::from_parts`].
#[derive(Debug)]
pub struct ModelParts {
    pub config: CheckpointConfig,
    pub weights: TransformerWeights,
    pub tokenizer: Tokenizer,
    pub hyper: ModelHyper,
}
