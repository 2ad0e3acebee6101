//! What a model file yields, whatever its format: the header config, the typed weights, the
//! tokenizer and the few numbers llama2.c's format fixes but others carry (RoPE base, rmsnorm
//! epsilon). A llama2.c checkpoint + tokenizer.bin (`checkpoint`), a GGUF file (`gguf_model`)
//! and, next, safetensors + tokenizer.json each produce one; `LoadedModel` takes it.

use crate::chat_template::ChatTemplate;
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
    /// RoPE's pairing: `false` rotates pairs (2i, 2i+1) of a head (run.c, llama.cpp's
    /// `LLAMA_ROPE_TYPE_NORM` for `llama`), `true` pairs (i, i + head_size/2) (llama.cpp's
    /// `LLAMA_ROPE_TYPE_NEOX`, which `qwen2` and `qwen3` use).
    pub rope_neox: bool,
}

impl Default for ModelHyper {
    fn default() -> Self {
        Self {
            rope_base: 10000.0,
            norm_eps: 1e-5,
            rope_neox: false,
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
    /// The file's chat template (GGUF's `tokenizer.chat_template`), if it has one.
    pub chat_template: Option<ChatTemplate>,
}
