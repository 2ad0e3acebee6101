//! A loaded model: the llama2.c transformer with its weights, its header config and its
//! tokenizer, checked against each other (what a generation session runs on).

use std::path::Path;

use candle_core::Device;

use crate::chat_template::{no_chat_template, ChatTemplate, Message};
use crate::checkpoint::{load_weights, load_weights_from_file, CheckpointConfig};
use crate::error::{EngineError, Result};
use crate::gguf::is_gguf;
use crate::model_parts::ModelParts;
use crate::parallel::Threads;
use crate::tokenizer::Tokenizer;
use crate::transformer::{BatchItem, KvCache, Scratch, Transformer};
use crate::weights::TransformerWeights;

/// A loaded checkpoint and its tokenizer.
pub struct LoadedModel {
    transformer: Transformer,
    config: CheckpointConfig,
    tokenizer: Tokenizer,
    /// A GGUF file's chat template (llama2.c checkpoints have none: run.c's `[INST]`).
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Parses a llama2.c checkpoint and tokenizer.bin, or a GGUF file (which carries its
    /// tokenizer: `tokenizer` must then be empty).
    pub fn load(checkpoint: &[u8], tokenizer: &[u8]) -> Result<Self> {
        if is_gguf(checkpoint) {
            if !tokenizer.is_empty() {
                return Err(EngineError::InvalidArgument(
                    "a GGUF file carries its own tokenizer: pass none".into(),
                ));
            }
            return Self::from_parts(crate::gguf_model::load(checkpoint, &Device::Cpu)?);
        }
        let (config, weights) = load_weights(checkpoint, &Device::Cpu)?;
        Self::from_weights(config, weights, tokenizer)
    }

    /// Reads a checkpoint file straight into the weights (no copy of the file in memory) and
    /// a tokenizer.bin file.
    pub fn from_files(checkpoint: &Path, tokenizer: &Path) -> Result<Self> {
        // Read the small tokenizer file first: a missing one fails before the weights are read.
        let tokenizer = std::fs::read(tokenizer).map_err(|e| {
            EngineError::InvalidTokenizer(format!("cannot read {}: {e}", tokenizer.display()))
        })?;
        let (config, weights) = load_weights_from_file(checkpoint, &Device::Cpu)?;
        Self::from_weights(config, weights, &tokenizer)
    }

    /// Builds the model from a file's parts (see `model_parts`).
    pub fn from_parts(parts: ModelParts) -> Result<Self> {
        let ModelParts {
            config,
            weights,
            tokenizer,
            hyper,
            chat_template,
        } = parts;
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(EngineError::VocabMismatch(format!(
                "tokenizer has {} tokens, the model's vocab_size is {}",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let transformer = Transformer::with_hyper(config.clone(), weights, hyper)?;
        Ok(Self {
            transformer,
            config,
            tokenizer,
            chat_template,
        })
    }

    /// Reads a whole GGUF file (weights and tokenizer).
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            EngineError::InvalidCheckpoint(format!("cannot read {}: {e}", path.display()))
        })?;
        Self::load(&bytes, &[])
    }

    /// Builds the model from a checkpoint's weights and a tokenizer.bin.
    pub fn from_weights(
        config: CheckpointConfig,
        weights: TransformerWeights,
        tokenizer: &[u8],
    ) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(tokenizer)?;
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(EngineError::VocabMismatch(format!(
                "tokenizer has {} tokens, the model's vocab_size is {}",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let transformer = Transformer::new(config.clone(), weights)?;
        Ok(Self {
            transformer,
            config,
            tokenizer,
            chat_template: None,
        })
    }

    /// The same model, its matrix products split across `threads` (identical outputs for any
    /// count; one thread unless asked).
    pub fn with_threads(mut self, threads: Threads) -> Self {
        self.transformer.set_threads(threads);
        self
    }

    /// The threads the products use.
    pub fn threads(&self) -> &Threads {
        self.transformer.threads()
    }

    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The file's chat template (None for llama2.c checkpoints and GGUF files without one).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// `messages` in the model's chat template (ChatTemplate when it has none or it fails).
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.chat_template
            .as_ref()
            .ok_or_else(no_chat_template)?
            .render(messages, add_generation_prompt)
    }

    /// The config as the JSON object of ABI.md's `ec_model_info`.
    pub fn info_json(&self) -> String {
        self.config.to_json()
    }

    /// One pass of a batch of tokens through the layers (see [`Transformer::forward_batch`]);
    /// returns the wanted logits (in the scratch buffer).
    pub(crate) fn forward_batch<'s>(
        &self,
        caches: &mut [&mut KvCache],
        items: &[BatchItem],
        scratch: &'s mut Scratch,
    ) -> Result<&'s mut [f32]> {
        self.transformer.forward_batch(caches, items, scratch)
    }

    /// The logits after feeding `tokens` one at a time from position 0 (a fresh cache): what
    /// tests compare with a reference forward pass. InvalidArgument for an empty, too long or
    /// out-of-vocabulary sequence.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut all = self.position_logits(tokens)?;
        let last = all.len() - self.config.vocab_size;
        Ok(all.split_off(last))
    }

    /// The logits at every position of `tokens` fed one at a time from position 0 (a fresh
    /// cache), `tokens.len()` rows of `vocab_size`: what the llama.cpp comparison reads
    /// (`edgechain.bench.llamacpp_logits`). Errors as [`Self::logits`].
    pub fn position_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let c = &self.config;
        if tokens.is_empty()
            || tokens.len() > c.seq_len
            || tokens.iter().any(|t| *t as usize >= c.vocab_size)
        {
            return Err(EngineError::InvalidArgument(format!(
                "logits need 1..={} token ids below {}",
                c.seq_len, c.vocab_size
            )));
        }
        let mut cache = self.new_cache()?;
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(tokens.len() * c.vocab_size);
        for (pos, &token) in tokens.iter().enumerate() {
            let logits = self
                .transformer
                .forward(token, pos, &mut cache, &mut scratch)?;
            out.extend_from_slice(logits);
        }
        Ok(out)
    }

    /// A fresh KV cache for one session.
    pub(crate) fn new_cache(&self) -> Result<KvCache> {
        self.transformer.new_cache()
    }
}
