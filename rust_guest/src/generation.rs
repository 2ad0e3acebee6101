//! Generation sessions over a [`LoadedModel`] with run.c's semantics: the prompt is forced token by token, the first sampled token comes out of the
//! forward pass at position `prompt_len - 1`, and `max_positions` is run.c's `-n`.

use std::sync::Arc;

use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::loaded_model::LoadedModel;
use crate::sampler::{Sampler, SamplerParams};
use crate::tokenizer::{Utf8Stream, BOS, EOS};
use crate::transformer::KvCache;

fn default_temperature() -> f64 {
    1.0
}
fn default_top_p() -> f64 {
    0.9
}
fn default_seed() -> u64 {
    42
}
fn default_max_positions() -> Option<usize> {
    Some(256)
}
fn default_repeat_penalty() -> f64 {
    1.0
}
fn default_repeat_window() -> usize {
    64
}

/// Generation parameters: ABI.md's JSON object; missing keys take its defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationParams {
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default = "default_max_positions")]
    pub max_positions: Option<usize>,
    #[serde(default = "default_repeat_penalty")]
    pub repeat_penalty: f64,
    #[serde(default = "default_repeat_window")]
    pub repeat_window: usize,
    #[serde(default)]
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            temperature: default_temperature(),
            top_p: default_top_p(),
            seed: default_seed(),
            max_tokens: None,
            max_positions: default_max_positions(),
            repeat_penalty: default_repeat_penalty(),
            repeat_window: default_repeat_window(),
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    /// Parses the JSON parameters (InvalidArgument on bad JSON, unknown keys or bad types).
    pub fn from_json(json: &str) -> Result<Self> {
        let params: Self = serde_json::from_str(json)
            .map_err(|e| EngineError::InvalidArgument(format!("bad parameters JSON: {e}")))?;
        if params.stop.iter().any(String::is_empty) {
            return Err(EngineError::InvalidArgument(
                "stop strings must not be empty".into(),
            ));
        }
        Ok(params)
    }

    fn sampler_params(&self) -> SamplerParams {
        SamplerParams {
            temperature: self.temperature as f32,
            top_p: self.top_p as f32,
            seed: self.seed,
            repeat_penalty: self.repeat_penalty as f32,
            repeat_window: self.repeat_window,
        }
    }
}

/// Why a session stopped (the numbers are ABI.md's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Running = 0,
    EndOfSequence = 1,
    MaxTokens = 2,
    StopString = 3,
    ContextFull = 4,
}

/// One generation: a KV cache, the sampler, and the tokens so far.
pub struct Session {
    model: Arc<LoadedModel>,
    cache: KvCache,
    sampler: Sampler,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// The next position to run the model on.
    pos: usize,
    prefilled: bool,
    /// Positions are used up when `pos` reaches this (min of max_positions and seq_len).
    position_limit: usize,
    /// Whether reaching `position_limit` means the context is full (no smaller user limit).
    limit_is_context: bool,
    max_tokens: Option<usize>,
    stop: Vec<Vec<u8>>,
    generated: usize,
    generated_text: Vec<u8>,
    utf8: Utf8Stream,
    stop_reason: StopReason,
    /// Whether `step` has already returned `None` for the current stop.
    stop_reported: bool,
    last_token: Option<u32>,
}

impl Session {
    /// Encodes the prompt (BOS first) and checks the parameters; does not run the model.
    pub fn start(model: Arc<LoadedModel>, prompt: &str, params: &GenerationParams) -> Result<Self> {
        let sampler = Sampler::new(params.sampler_params())?;
        let seq_len = model.config().seq_len;
        let tokens = model.tokenizer().encode(prompt, true, false);
        if tokens.len() > seq_len {
            return Err(EngineError::PromptTooLong(format!(
                "the prompt is {} tokens (BOS included) but the model's context is {seq_len} positions",
                tokens.len()
            )));
        }
        let vocab = model.config().vocab_size as u32;
        if let Some(bad) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(EngineError::InvalidArgument(format!(
                "the prompt needs byte-fallback token {bad}, outside the vocabulary of {vocab}"
            )));
        }
        // run.c: -n 0 (or more than seq_len) means seq_len.
        let (position_limit, limit_is_context) = match params.max_positions {
            Some(n) if n > 0 && n <= seq_len => (n, false),
            _ => (seq_len, true),
        };
        let cache = model.new_cache()?;
        Ok(Self {
            cache,
            sampler,
            prompt_len: tokens.len(),
            tokens,
            pos: 0,
            prefilled: false,
            position_limit,
            limit_is_context,
            max_tokens: params.max_tokens,
            stop: params.stop.iter().map(|s| s.as_bytes().to_vec()).collect(),
            generated: 0,
            generated_text: Vec::new(),
            utf8: Utf8Stream::default(),
            stop_reason: StopReason::Running,
            stop_reported: false,
            last_token: None,
            model,
        })
    }

    /// The prompt as run.c prints it: the pieces after BOS, the first one's leading space stripped.
    pub fn prompt_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for pair in self.tokens[..self.prompt_len].windows(2) {
            out.extend_from_slice(self.model.tokenizer().piece(pair[0], pair[1]));
        }
        out
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_len
    }

    pub fn generated_tokens(&self) -> usize {
        self.generated
    }

    pub fn stop_reason(&self) -> StopReason {
        self.stop_reason
    }

    pub fn last_token(&self) -> Option<u32> {
        self.last_token
    }

    /// All tokens so far: BOS, the prompt, the generated tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn position_stop(&self) -> StopReason {
        if self.limit_is_context {
            StopReason::ContextFull
        } else {
            StopReason::MaxTokens
        }
    }

    /// Generates one token: `Some((id, bytes))` (bytes may be empty while a UTF-8 character is
    /// incomplete), or `None` once stopped. After a stop on a full context has been reported
    /// (one `None`), stepping again is a ContextFull error.
    pub fn step(&mut self) -> Result<Option<(u32, Vec<u8>)>> {
        match self.stop_reason {
            StopReason::Running => {}
            _ if !self.stop_reported => {
                self.stop_reported = true;
                return Ok(None);
            }
            StopReason::ContextFull => {
                return Err(EngineError::ContextFull(format!(
                    "all {} positions of the context are used ({} prompt + {} generated tokens)",
                    self.pos, self.prompt_len, self.generated
                )))
            }
            _ => return Ok(None),
        }
        if !self.prefilled {
            // The first sampled token comes out at position prompt_len - 1.
            if self.max_tokens == Some(0) || self.prompt_len > self.position_limit {
                self.stop_reason = StopReason::MaxTokens;
                self.stop_reported = true;
                return Ok(None);
            }
            for pos in 0..self.prompt_len - 1 {
                self.model.forward(self.tokens[pos], pos, &mut self.cache)?;
            }
            self.pos = self.prompt_len - 1;
            self.prefilled = true;
        }
        let current = self.tokens[self.pos];
        let logits = self.model.forward(current, self.pos, &mut self.cache)?;
        let next = self.sampler.sample(logits, &self.tokens);
        self.pos += 1;
        if next == BOS || next == EOS {
            self.stop_reason = StopReason::EndOfSequence;
            self.stop_reported = true;
            return Ok(None);
        }
        let before = self.generated_text.len();
        let mut out = self.utf8.push(self.model.tokenizer().piece(current, next));
        self.tokens.push(next);
        self.generated += 1;
        self.last_token = Some(next);
        self.generated_text.extend_from_slice(&out);
        if self.matches_stop_string(before) {
            self.stop_reason = StopReason::StopString;
        } else if self.max_tokens.is_some_and(|m| self.generated >= m) {
            self.stop_reason = StopReason::MaxTokens;
        } else if self.pos >= self.position_limit {
            self.stop_reason = self.position_stop();
        }
        if self.stop_reason != StopReason::Running {
            let rest = self.utf8.flush();
            self.generated_text.extend_from_slice(&rest);
            out.extend_from_slice(&rest);
        }
        Ok(Some((next, out)))
    }

    /// Whether a stop string ends inside the bytes appended after `before`.
    fn matches_stop_string(&self, before: usize) -> bool {
        let text = &self.generated_text;
        self.stop.iter().any(|s| {
            let from = before.saturating_sub(s.len() - 1);
            text[from..].windows(s.len()).any(|w| w == s.as_slice())
        })
    }
}
