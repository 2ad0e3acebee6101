//! Generation sessions over a [`LoadedModel`] with run.c's semantics: the prompt is forced (its
//! tokens are fed, not sampled), the first sampled token comes out of the forward pass at
//! position `prompt_len - 1`, and `max_positions` is run.c's `-n`.
//!
//! The prompt goes through the model in batches of [`CHUNK`] positions (prefill), with the
//! same bits as token by token (`Transformer::forward_batch`). Hint tokens extend the batches
//! past the prompt: while the sampled tokens equal the hints, their logits are already there.
//! Sessions of one model can also advance together, one weight pass per step ([`step_batch`]).

use std::sync::Arc;

use serde::Deserialize;

use crate::chat_template::{no_chat_template, rendered_tokens, Continuation, Dialogue, Message};
use crate::error::{EngineError, Result};
use crate::loaded_model::LoadedModel;
use crate::sampler::{decide, Decision, DecisionScratch, Sampler, SamplerParams};
use crate::tokenizer::Utf8Stream;
use crate::transformer::{BatchItem, KvCache, Scratch};

/// Positions per prefill or look-ahead batch: bounds the activations and the look-ahead's
/// logits (`CHUNK x vocab_size` floats) and keeps a batch's activations in cache.
pub const CHUNK: usize = 32;

/// One step's outcome: the token produced and its bytes, or None once stopped.
pub type Produced = Option<(u32, Vec<u8>)>;

// The sampling defaults are the generation request's (contract/generation_request.py;
// tests/test_generation_request_fronts.py holds them to it).
fn default_temperature() -> f64 {
    0.8
}
fn default_top_p() -> f64 {
    0.9
}
fn default_seed() -> u64 {
    0
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
    /// Hint tokens: the tokens the generation is claimed to produce after the prompt. They
    /// never change the output, only its speed: positions the hints cover are computed ahead in
    /// batches, and the look-ahead is dropped at the first sampled token that differs.
    #[serde(default)]
    pub hint: Vec<u32>,
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
            hint: Vec::new(),
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
    scratch: Scratch,
    sampler: Sampler,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// The next position to run the model on.
    pos: usize,
    prefilled: bool,
    /// Positions `0..kv_len` of the cache hold the keys and values of `tokens` (or, past `pos`,
    /// of hints not yet contradicted).
    kv_len: usize,
    /// Hint tokens still believed: `hint[i]` is claimed for position `prompt_len + i`.
    hint: Vec<u32>,
    /// Logits computed ahead: `ahead_len` rows of `vocab_size`, for positions from
    /// `ahead_start` on.
    ahead: Vec<f32>,
    ahead_start: usize,
    ahead_len: usize,
    /// The hinted rows of `ahead` decided before their turn, on the model's threads
    /// ([`Self::decide_ahead`]): `decided[j]` for position `ahead_start + j`. Empty when
    /// the rows are decided in turn (one thread).
    decided: Vec<Decision>,
    /// One scratch per part the rows are decided in.
    deciders: Vec<DecisionScratch>,
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
    /// The end token that stopped the last answer (fed first when a turn is appended).
    end_token: Option<u32>,
    /// A chat (run.c's `chat`): every forced position consumes a random draw, as run.c
    /// samples and discards there, so sampled answers match run.c's.
    chat: bool,
    /// A chat of messages in the model's template (`start_messages`): what was rendered.
    dialogue: Option<Dialogue>,
}

impl Session {
    /// Encodes the prompt (BOS first) and checks the parameters; does not run the model.
    pub fn start(model: Arc<LoadedModel>, prompt: &str, params: &GenerationParams) -> Result<Self> {
        let tokens = model.tokenizer().encode(prompt, true, false);
        Self::from_tokens(model, tokens, params, false)
    }

    /// A session whose prompt is `tokens` (encoded, BOS included when wanted); a `chat` takes
    /// further turns after its answers.
    fn from_tokens(
        model: Arc<LoadedModel>,
        tokens: Vec<u32>,
        params: &GenerationParams,
        chat: bool,
    ) -> Result<Self> {
        // Hints cover the first answer only (`next_answer` drops them): what a verifier of
        // generate's chat form claims.
        if chat && params.max_tokens == Some(0) {
            return Err(EngineError::InvalidArgument(
                "a chat's answers need max_tokens of at least 1".into(),
            ));
        }
        let mut sampler = Sampler::new(params.sampler_params())?;
        let seq_len = model.config().seq_len;
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
        // A hint outside the vocabulary can never be sampled: the hints end there.
        let hint_len = params.hint.iter().take_while(|&&t| t < vocab).count();
        let cache = model.new_cache()?;
        if chat {
            // run.c samples and discards a draw at every forced position (all but the last).
            sampler.skip_draws(tokens.len() - 1);
        }
        Ok(Self {
            cache,
            scratch: Scratch::default(),
            sampler,
            prompt_len: tokens.len(),
            tokens,
            pos: 0,
            prefilled: false,
            kv_len: 0,
            hint: params.hint[..hint_len].to_vec(),
            ahead: Vec::new(),
            ahead_start: 0,
            ahead_len: 0,
            decided: Vec::new(),
            deciders: Vec::new(),
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
            end_token: None,
            chat,
            dialogue: None,
            model,
        })
    }

    /// Starts a chat (run.c's `chat` mode) with the first user turn, already rendered in the
    /// model's template: the session can take further turns with [`Self::append`].
    pub fn start_chat(
        model: Arc<LoadedModel>,
        turn: &str,
        params: &GenerationParams,
    ) -> Result<Self> {
        let tokens = model.tokenizer().encode(turn, true, false);
        Self::from_tokens(model, tokens, params, true)
    }

    /// Starts a chat of `messages` rendered in the model's own chat template (GGUF's
    /// `tokenizer.chat_template`) with the assistant's header after them; further messages
    /// come with [`Self::append_messages`]. ChatTemplate when the model has no template or
    /// the template fails (a syntax error, its `raise_exception`).
    pub fn start_messages(
        model: Arc<LoadedModel>,
        messages: Vec<Message>,
        params: &GenerationParams,
    ) -> Result<Self> {
        let template = model.chat_template().ok_or_else(no_chat_template)?;
        let dialogue = Dialogue::start(template, messages)?;
        let tokens = rendered_tokens(model.tokenizer(), dialogue.rendered());
        if tokens.is_empty() {
            return Err(EngineError::ChatTemplate(
                "the template rendered the messages as no text".into(),
            ));
        }
        let mut session = Self::from_tokens(model, tokens, params, true)?;
        session.dialogue = Some(dialogue);
        Ok(session)
    }

    /// The next messages of a chat started by [`Self::start_messages`], after the answer
    /// stopped: the whole dialogue (the answer as the assistant's message) is rendered again,
    /// and when the text already fed (the last rendering, the answer, its end token) is a
    /// prefix of it, only the rest is encoded and fed, keeping the KV cache. A template that
    /// rewrites earlier text instead has its whole rendering encoded, and the cache is kept
    /// as far as the tokens agree with those fed. Errors leave the chat as it was.
    pub fn append_messages(&mut self, messages: &[Message]) -> Result<()> {
        self.check_turn_end()?;
        let (Some(dialogue), Some(template)) = (&self.dialogue, self.model.chat_template()) else {
            return Err(EngineError::InvalidArgument(
                "only a chat started from messages takes more messages".into(),
            ));
        };
        let tokenizer = self.model.tokenizer();
        let answer = String::from_utf8_lossy(&self.generated_text).into_owned();
        let end_text = self
            .end_token
            .and_then(|t| tokenizer.special_text(t))
            .unwrap_or_default();
        let (next, continuation) = dialogue.next(template, &answer, end_text, messages)?;
        let mut fed = self.tokens.clone();
        fed.extend(self.end_token);
        let tokens = match continuation {
            Continuation::Suffix(suffix) => {
                fed.extend(tokenizer.encode_special(&suffix));
                fed
            }
            Continuation::Whole(rendered) => rendered_tokens(tokenizer, &rendered),
        };
        self.check_vocab(&tokens, "the messages")?;
        // What the cache holds and stays valid: the fed tokens the new ones start with (one
        // position at least is fed again, for its logits).
        let cached = self.pos.min(self.kv_len);
        let same = self.tokens[..cached]
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        if tokens.len() > self.position_limit {
            return Err(EngineError::ContextFull(format!(
                "the dialogue needs {} positions but the chat has {}",
                tokens.len(),
                self.position_limit
            )));
        }
        self.dialogue = Some(next);
        self.sampler.skip_draws(tokens.len() - same - 1);
        self.tokens = tokens;
        self.kv_len = self.kv_len.min(same);
        self.next_answer();
        Ok(())
    }

    /// The text a chat of messages has rendered so far (None for other sessions).
    pub fn rendered_dialogue(&self) -> Option<&str> {
        self.dialogue.as_ref().map(Dialogue::rendered)
    }

    fn check_vocab(&self, tokens: &[u32], what: &str) -> Result<()> {
        let vocab = self.model.config().vocab_size as u32;
        match tokens.iter().find(|&&t| t >= vocab) {
            Some(bad) => Err(EngineError::InvalidArgument(format!(
                "{what} need byte-fallback token {bad}, outside the vocabulary of {vocab}"
            ))),
            None => Ok(()),
        }
    }

    /// Ok when the answer has stopped in a way that lets a chat take another turn.
    fn check_turn_end(&self) -> Result<()> {
        if !self.chat {
            return Err(EngineError::InvalidArgument(
                "only a chat session takes another turn".into(),
            ));
        }
        match self.stop_reason {
            StopReason::EndOfSequence | StopReason::MaxTokens | StopReason::StopString
                if self.prefilled =>
            {
                Ok(())
            }
            StopReason::Running => Err(EngineError::InvalidArgument(
                "the answer is still running: step it to its stop first".into(),
            )),
            _ => Err(EngineError::ContextFull(format!(
                "all {} positions of the chat are used",
                self.position_limit
            ))),
        }
    }

    /// Counts and the stop reason start afresh for the next answer, after `tokens` (all of
    /// them the prompt now).
    fn next_answer(&mut self) {
        self.prompt_len = self.tokens.len();
        self.hint.clear();
        self.ahead_len = 0;
        self.decided.clear();
        self.prefilled = false;
        self.generated = 0;
        self.generated_text.clear();
        self.utf8 = Utf8Stream::default();
        self.stop_reason = StopReason::Running;
        self.stop_reported = false;
        self.end_token = None;
    }

    /// Appends the next user turn (rendered, encoded with BOS) after the answer stopped,
    /// keeping the KV cache, as run.c's chat does: the answer's last token is fed (its end
    /// token, or the last token it generated when it stopped at `max_tokens` or a stop
    /// string), then the turn; only the new positions go through the model. Counts and the
    /// stop reason start afresh for the new answer; `max_positions` bounds the whole dialogue.
    pub fn append(&mut self, turn: &str) -> Result<()> {
        self.check_turn_end()?;
        if self.dialogue.is_some() {
            return Err(EngineError::InvalidArgument(
                "a chat started from messages takes messages, not rendered turns".into(),
            ));
        }
        let turn_tokens = self.model.tokenizer().encode(turn, true, false);
        self.check_vocab(&turn_tokens, "the turn")?;
        // After an end token, `tokens` stops at `pos` (the end token was not kept); after
        // another stop its last token is the one not fed yet.
        let unfed: Vec<u32> = self.end_token.into_iter().collect();
        let needed = self.tokens.len() + unfed.len() + turn_tokens.len();
        if needed > self.position_limit {
            return Err(EngineError::ContextFull(format!(
                "the turn needs {} more positions but {} of the chat's {} are left",
                turn_tokens.len(),
                self.position_limit
                    .saturating_sub(self.tokens.len() + unfed.len()),
                self.position_limit
            )));
        }
        self.tokens.extend_from_slice(&unfed);
        self.tokens.extend_from_slice(&turn_tokens);
        // run.c samples (and discards) at every forced position but the last.
        self.sampler.skip_draws(self.tokens.len() - self.pos - 1);
        self.kv_len = self.kv_len.min(self.pos);
        self.next_answer();
        Ok(())
    }

    /// The prompt as run.c prints it: the pieces after BOS, the first one's leading space stripped.
    pub fn prompt_text(&self) -> Vec<u8> {
        let tokenizer = self.model.tokenizer();
        let prompt = &self.tokens[..self.prompt_len];
        // The pieces after a leading BOS (all of them when the tokenizer adds none).
        let (mut prev, rest) = match prompt.split_first() {
            Some((&first, rest)) if first == tokenizer.bos() => (first, rest),
            _ => (tokenizer.bos(), prompt),
        };
        let mut out = Vec::new();
        for &t in rest {
            out.extend_from_slice(tokenizer.piece(prev, t));
            prev = t;
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

    /// The model the session runs on.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
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
    pub fn step(&mut self) -> Result<Produced> {
        match self.begin()? {
            Some(outcome) => Ok(outcome),
            None => self.advance(),
        }
    }

    /// The part of a step that needs no model: a stop to report (`Some(outcome)`), else
    /// `None` with the position of the next forward pass set (`pos`).
    fn begin(&mut self) -> Result<Option<Produced>> {
        match self.stop_reason {
            StopReason::Running => {}
            _ if !self.stop_reported => {
                self.stop_reported = true;
                return Ok(Some(None));
            }
            StopReason::ContextFull => {
                return Err(EngineError::ContextFull(format!(
                    "all {} positions of the context are used ({} prompt + {} generated tokens)",
                    self.pos, self.prompt_len, self.generated
                )))
            }
            _ => return Ok(Some(None)),
        }
        if !self.prefilled {
            // The first sampled token comes out at position prompt_len - 1.
            if self.max_tokens == Some(0) || self.prompt_len > self.position_limit {
                self.stop_reason = StopReason::MaxTokens;
                self.stop_reported = true;
                return Ok(Some(None));
            }
            self.pos = self.prompt_len - 1;
            self.prefilled = true;
        }
        Ok(None)
    }

    /// Whether the logits at `pos` were computed ahead.
    fn ready(&self) -> bool {
        (self.ahead_start..self.ahead_start + self.ahead_len).contains(&self.pos)
    }

    /// How many hinted positions after `pos` to compute with it: as many believed hints as
    /// fit the chunk, the positions and the token budget.
    fn look_ahead(&self) -> usize {
        let first = self.pos + 1 - self.prompt_len;
        let hints = self.hint.len().saturating_sub(first);
        let positions = self.position_limit - 1 - self.pos;
        // The logits at pos + j give generated token number generated + 1 + j.
        let budget = self
            .max_tokens
            .map_or(usize::MAX, |m| m.saturating_sub(self.generated + 1));
        hints.min(positions).min(budget).min(CHUNK - 1)
    }

    /// The token at position `q` (a fed token up to `pos`, a hint after it).
    fn token_at(&self, q: usize) -> u32 {
        if q < self.tokens.len() {
            self.tokens[q]
        } else {
            self.hint[q - self.prompt_len]
        }
    }

    /// When the next forward pass is one plain decoding step (no prefill, no look-ahead), its
    /// batch item for cache `cache`.
    fn plain_item(&self, cache: usize) -> Option<BatchItem> {
        (!self.ready() && self.kv_len == self.pos && self.look_ahead() == 0).then(|| BatchItem {
            cache,
            token: self.tokens[self.pos],
            pos: self.pos,
            logits: true,
        })
    }

    /// The rest of a step after [`Self::begin`]: the forward passes it needs, then sampling.
    fn advance(&mut self) -> Result<Produced> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.advance_with(&mut scratch);
        self.scratch = scratch;
        result
    }

    fn advance_with(&mut self, scratch: &mut Scratch) -> Result<Produced> {
        if let Some(item) = self.plain_item(0) {
            let logits = self
                .model
                .forward_batch(&mut [&mut self.cache], &[item], scratch)?;
            return self.accept(logits);
        }
        if !self.ready() {
            self.compute_ahead(scratch)?;
            self.decide_ahead();
        }
        let vocab = self.model.config().vocab_size;
        let mut ahead = std::mem::take(&mut self.ahead);
        let j = self.pos - self.ahead_start;
        let decided = self.decided.get(j).copied();
        let result = self.accept_decided(&mut ahead[j * vocab..(j + 1) * vocab], decided);
        self.ahead = ahead;
        result
    }

    /// Decides the hinted rows just computed ahead before their turn, in parts on the model's
    /// threads (when it has more than one and the rows are work enough): each row's decision
    /// is a pure function of its logits, the history before it (the fed tokens, then the
    /// hints before it: the tokens it is taken after, while the hints hold) and its draw
    /// (one per sampled position, known in advance), so the rows are independent. `accept`
    /// then takes each row's decision in turn, drawing as it would have; a row after a
    /// contradicted hint is dropped undecided-upon. With one part, nothing is decided ahead.
    fn decide_ahead(&mut self) {
        self.decided.clear();
        let vocab = self.model.config().vocab_size;
        let first = self.pos + 1 - self.prompt_len;
        let rows = self.ahead_len.min(self.hint.len().saturating_sub(first));
        let threads = self.model.threads().clone();
        let parts = threads.parts(rows, vocab);
        if parts <= 1 {
            return;
        }
        let hints = &self.hint[first..first + rows];
        let history = [&self.tokens[..], hints].concat();
        let coins = self.sampler.next_draws(rows);
        let params = self.sampler.params();
        self.decided.resize(rows, Decision::Undecided);
        if self.deciders.len() < parts {
            self.deciders.resize_with(parts, DecisionScratch::default);
        }
        let per = rows.div_ceil(parts);
        let tasks: Vec<_> = self.ahead[..rows * vocab]
            .chunks_mut(per * vocab)
            .zip(self.decided.chunks_mut(per))
            .zip(self.deciders.iter_mut())
            .enumerate()
            .collect();
        let fed = self.tokens.len();
        threads.run(true, || {
            threads.for_each(true, tasks, |(k, ((logits, decided), scratch))| {
                let rows = logits.chunks_exact_mut(vocab).zip(decided.iter_mut());
                for (i, (row, decision)) in rows.enumerate() {
                    let j = k * per + i;
                    let (coin, history) = (coins.get(j).copied(), &history[..fed + j]);
                    let expected = Some(hints[j]);
                    *decision =
                        decide(params, row, history, coin.unwrap_or(0.0), expected, scratch);
                }
            })
        });
    }

    /// Runs the positions from `kv_len` through `pos` and the look-ahead in batches of
    /// [`CHUNK`], keeping the logits of `pos` and after in `ahead`.
    fn compute_ahead(&mut self, scratch: &mut Scratch) -> Result<()> {
        let (p, vocab) = (self.pos, self.model.config().vocab_size);
        if self.kv_len > p {
            return Err(EngineError::Internal(format!(
                "cache holds {} positions before position {p}",
                self.kv_len
            )));
        }
        let last = p + self.look_ahead();
        self.ahead.resize((last + 1 - p) * vocab, 0.0);
        self.ahead_start = p;
        self.ahead_len = 0;
        self.decided.clear();
        let mut items = Vec::with_capacity(CHUNK);
        let mut from = self.kv_len;
        while from <= last {
            let to = (from + CHUNK).min(last + 1);
            items.clear();
            items.extend((from..to).map(|q| BatchItem {
                cache: 0,
                token: self.token_at(q),
                pos: q,
                logits: q >= p,
            }));
            let logits = self
                .model
                .forward_batch(&mut [&mut self.cache], &items, scratch)?;
            let at = from.max(p) - p;
            self.ahead[at * vocab..at * vocab + logits.len()].copy_from_slice(logits);
            self.kv_len = to;
            from = to;
        }
        self.ahead_len = last + 1 - p;
        Ok(())
    }

    /// Samples from the logits at `pos` and takes the token: run.c's step after its forward.
    fn accept(&mut self, logits: &mut [f32]) -> Result<Produced> {
        self.accept_decided(logits, None)
    }

    /// [`Self::accept`], the position decided ahead when `decided` ([`Self::decide_ahead`]).
    fn accept_decided(
        &mut self,
        logits: &mut [f32],
        decided: Option<Decision>,
    ) -> Result<Produced> {
        let current = self.tokens[self.pos];
        let next = match decided {
            Some(decision) => self.sampler.take_decided(logits, decision),
            None => {
                // The believed hint for this token, if any: the sampler checks it first.
                let hinted = (self.pos + 1)
                    .checked_sub(self.prompt_len)
                    .and_then(|i| self.hint.get(i).copied());
                self.sampler.sample_expecting(logits, &self.tokens, hinted)
            }
        };
        self.kv_len = self.kv_len.max(self.pos + 1);
        self.pos += 1;
        // A hint contradicted: it and everything computed from it are dropped (the cache
        // entries past pos are overwritten before anything reads them).
        if let Some(i) = self.pos.checked_sub(self.prompt_len) {
            if i < self.hint.len() && self.hint[i] != next {
                self.hint.truncate(i);
                self.kv_len = self.kv_len.min(self.pos);
                self.ahead_len = self.ahead_len.min(self.pos - self.ahead_start);
                self.decided.truncate(self.ahead_len);
            }
        }
        if self.model.tokenizer().is_end(next) {
            self.end_token = Some(next);
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

/// Advances every session by one step, as [`Session::step`] would, with one weight pass for all
/// of them that are plainly decoding (sessions still prefilling, or with hints computed ahead,
/// step on their own). Each session's outcome is its own: identical to stepping it alone.
/// `scratch` holds the batch's activations (reused across calls). All sessions must run on
/// the same model (else InvalidArgument).
pub fn step_batch(
    sessions: &mut [&mut Session],
    scratch: &mut Scratch,
) -> Result<Vec<Result<Produced>>> {
    let Some(model) = sessions.first().map(|s| s.model.clone()) else {
        return Ok(Vec::new());
    };
    if sessions.iter().any(|s| !Arc::ptr_eq(&s.model, &model)) {
        return Err(EngineError::InvalidArgument(
            "sessions of one batch step must run on the same model".into(),
        ));
    }
    let mut outcomes: Vec<Option<Result<Produced>>> = Vec::with_capacity(sessions.len());
    let mut items = Vec::new();
    let mut batched = Vec::new();
    for (i, s) in sessions.iter_mut().enumerate() {
        let outcome = match s.begin() {
            Err(e) => Some(Err(e)),
            Ok(Some(produced)) => Some(Ok(produced)),
            Ok(None) => match s.plain_item(items.len()) {
                Some(item) => {
                    items.push(item);
                    batched.push(i);
                    None
                }
                None => Some(s.advance()),
            },
        };
        outcomes.push(outcome);
    }
    if !items.is_empty() {
        let vocab = model.config().vocab_size;
        let logits = {
            let mut caches: Vec<&mut KvCache> = Vec::with_capacity(batched.len());
            let mut next = batched.iter().peekable();
            for (i, s) in sessions.iter_mut().enumerate() {
                if next.peek() == Some(&&i) {
                    next.next();
                    caches.push(&mut s.cache);
                }
            }
            model.forward_batch(&mut caches, &items, scratch)?
        };
        for (row, &i) in logits.chunks_exact_mut(vocab).zip(&batched) {
            outcomes[i] = Some(sessions[i].accept(row));
        }
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.ok_or_else(|| EngineError::Internal("a session of the batch did not step".into()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::transformer::BatchItem;

    fn read(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/models/stories260K/"
        );
        std::fs::read(format!("{dir}{name}")).expect("stories260K is in ../shared/models")
    }

    /// stories260K's f32 checkpoint written as a version-2 int8 one (export.py's order).
    fn int8_checkpoint(f32_file: &[u8], gs: usize) -> Vec<u8> {
        let field =
            |i: usize| i32::from_le_bytes(f32_file[4 * i..4 * i + 4].try_into().unwrap()) as usize;
        let (d, hid, n, heads, kv_heads, vocab, seq) = (
            field(0),
            field(1),
            field(2),
            field(3),
            field(4),
            field(5),
            field(6),
        );
        let kv = d * kv_heads / heads;
        let mut at = 28;
        let mut spans = std::collections::HashMap::new();
        let mut take = |kind: &'static str, count: usize, times: usize| {
            for _ in 0..times {
                spans
                    .entry(kind)
                    .or_insert_with(Vec::new)
                    .push(at..at + 4 * count);
                at += 4 * count;
            }
        };
        take("embedding", vocab * d, 1);
        take("rms_att", d, n);
        take("wq", d * d, n);
        take("wk", d * kv, n);
        take("wv", d * kv, n);
        take("wo", d * d, n);
        take("rms_ffn", d, n);
        take("w1", d * hid, n);
        take("w2", hid * d, n);
        take("w3", d * hid, n);
        take("rms_final", d, 1);
        let mut out = Vec::new();
        out.extend_from_slice(&0x616b_3432u32.to_le_bytes());
        out.extend_from_slice(&2i32.to_le_bytes());
        out.extend_from_slice(&f32_file[..28]);
        out.push(1);
        out.extend_from_slice(&(gs as i32).to_le_bytes());
        out.resize(256, 0);
        for kind in ["rms_att", "rms_ffn", "rms_final"] {
            for span in &spans[kind] {
                out.extend_from_slice(&f32_file[span.clone()]);
            }
        }
        for kind in ["embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"] {
            for span in &spans[kind] {
                let (q, s) = crate::q8::quantize_bytes(&f32_file[span.clone()], gs).unwrap();
                out.extend_from_slice(&q);
                out.extend_from_slice(&s);
            }
        }
        let _ = seq;
        out
    }

    pub(crate) fn models() -> Vec<(&'static str, Arc<LoadedModel>)> {
        models_on(&crate::parallel::Threads::one())
    }

    /// stories260K, f32 and int8, on `threads`.
    pub(crate) fn models_on(
        threads: &crate::parallel::Threads,
    ) -> Vec<(&'static str, Arc<LoadedModel>)> {
        let (ckpt, tok) = (read("stories260K.bin"), read("tok512.bin"));
        let int8 = int8_checkpoint(&ckpt, 4);
        let load = |c: &[u8]| {
            Arc::new(
                LoadedModel::load(c, &tok)
                    .unwrap()
                    .with_threads(threads.clone()),
            )
        };
        vec![("f32", load(&ckpt)), ("int8", load(&int8))]
    }

    fn tokens(n: usize, vocab: usize) -> Vec<u32> {
        let mut seed = 99u64;
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((seed >> 33) as usize % vocab) as u32
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn batched_forward_equals_token_by_token_bit_for_bit() {
        for (kind, model) in models() {
            let vocab = model.config().vocab_size;
            for n in [1, 2, 63, 64, 65, 200] {
                let ids = tokens(n, vocab);
                let (mut one, mut s1) = (model.new_cache().unwrap(), Scratch::default());
                let mut expected = Vec::new();
                for (pos, &t) in ids.iter().enumerate() {
                    let item = BatchItem {
                        cache: 0,
                        token: t,
                        pos,
                        logits: true,
                    };
                    let l = model
                        .forward_batch(&mut [&mut one], &[item], &mut s1)
                        .unwrap();
                    expected.push(bits(l));
                }
                for chunk in [7, CHUNK, 64] {
                    let (mut many, mut s2) = (model.new_cache().unwrap(), Scratch::default());
                    let mut got = Vec::new();
                    for (c, part) in ids.chunks(chunk).enumerate() {
                        let items: Vec<BatchItem> = part
                            .iter()
                            .enumerate()
                            .map(|(i, &t)| BatchItem {
                                cache: 0,
                                token: t,
                                pos: c * chunk + i,
                                // Every other position, so the gathering of wanted rows is tested.
                                logits: (c * chunk + i) % 2 == 0 || c * chunk + i == n - 1,
                            })
                            .collect();
                        let l = model
                            .forward_batch(&mut [&mut many], &items, &mut s2)
                            .unwrap();
                        got.extend(l.chunks_exact(vocab).map(bits));
                    }
                    let want: Vec<Vec<u32>> = expected
                        .iter()
                        .enumerate()
                        .filter(|(p, _)| p % 2 == 0 || *p == n - 1)
                        .map(|(_, l)| l.clone())
                        .collect();
                    assert!(got == want, "{kind}: {n} tokens in chunks of {chunk}");
                    assert!(
                        bits(&many.keys) == bits(&one.keys),
                        "{kind} keys, {n}/{chunk}"
                    );
                    assert!(bits(&many.values) == bits(&one.values), "{kind} values");
                }
            }
        }
    }

    fn run(
        model: &Arc<LoadedModel>,
        prompt: &str,
        params: &GenerationParams,
    ) -> (Vec<Produced>, StopReason) {
        let mut s = Session::start(model.clone(), prompt, params).unwrap();
        let mut out = Vec::new();
        loop {
            let step = s.step().unwrap();
            out.push(step.clone());
            if step.is_none() {
                return (out, s.stop_reason());
            }
        }
    }

    fn produced_ids(steps: &[Produced]) -> Vec<u32> {
        steps.iter().flatten().map(|(id, _)| *id).collect()
    }

    /// The defaults, sampling at `temperature` (greedy at 0) from seed 7.
    fn sampled_at(temperature: f64) -> GenerationParams {
        GenerationParams {
            temperature,
            seed: 7,
            ..GenerationParams::default()
        }
    }

    #[test]
    fn hints_never_change_the_output() {
        for (kind, model) in models() {
            for temperature in [0.0, 1.0] {
                let base = GenerationParams {
                    max_positions: Some(300),
                    ..sampled_at(temperature)
                };
                let prompt = "Once upon a time, there was a little girl named Lily.";
                let (plain, reason) = run(&model, prompt, &base);
                let ids = produced_ids(&plain);
                assert!(ids.len() > 100, "{kind}: a long generation");
                let mut cases: Vec<Vec<u32>> = vec![
                    ids.clone(),
                    ids[..10].to_vec(),
                    [ids.clone(), tokens(50, 512)].concat(),
                    Vec::new(),
                    vec![600, 1, 2],
                ];
                for wrong in [0, ids.len() / 2, ids.len() - 1] {
                    let mut h = ids.clone();
                    h[wrong] = (h[wrong] + 1) % 512;
                    cases.push(h);
                }
                for (i, hint) in cases.into_iter().enumerate() {
                    let params = GenerationParams {
                        hint,
                        ..base.clone()
                    };
                    let (hinted, r) = run(&model, prompt, &params);
                    assert!(
                        hinted == plain && r == reason,
                        "{kind} t={temperature} case {i}"
                    );
                }
                for (max_tokens, stop) in [(Some(5), vec![]), (None, vec!["Lily".to_string()])] {
                    let limited = GenerationParams {
                        max_tokens,
                        stop,
                        ..base.clone()
                    };
                    let (plain, reason) = run(&model, prompt, &limited);
                    let params = GenerationParams {
                        hint: ids.clone(),
                        ..limited.clone()
                    };
                    let (hinted, r) = run(&model, prompt, &params);
                    assert!(hinted == plain && r == reason, "{kind}: limits with hints");
                }
            }
        }
    }

    /// run.c's `chat` loop, token by token: every position runs the model and samples, the
    /// samples at forced positions are discarded, and an answer's last token (its end token,
    /// or its `max_tokens`-th) is fed before the next turn.
    fn reference_chat(
        model: &LoadedModel,
        params: &GenerationParams,
        turns: &[&str],
    ) -> Vec<Vec<u32>> {
        let mut sampler = Sampler::new(params.sampler_params()).unwrap();
        let (mut cache, mut scratch) = (model.new_cache().unwrap(), Scratch::default());
        let (mut fed, mut pending, mut answers) = (Vec::new(), None, Vec::new());
        for turn in turns {
            let mut forced: Vec<u32> = pending.take().into_iter().collect();
            forced.extend(model.tokenizer().encode(turn, true, false));
            let mut answer: Vec<u32> = Vec::new();
            for i in 0.. {
                let token = forced
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| answer[answer.len() - 1]);
                let item = BatchItem {
                    cache: 0,
                    token,
                    pos: fed.len(),
                    logits: true,
                };
                fed.push(token);
                let mut logits = model
                    .forward_batch(&mut [&mut cache], &[item], &mut scratch)
                    .unwrap()
                    .to_vec();
                let next = sampler.sample(&mut logits, &fed);
                if i + 1 < forced.len() {
                    continue;
                }
                let end = model.tokenizer().is_end(next);
                if !end {
                    answer.push(next);
                }
                if end || Some(answer.len()) == params.max_tokens {
                    pending = Some(next);
                    break;
                }
            }
            answers.push(answer);
        }
        answers
    }

    /// Each answer's tokens of a chat (`Session::start_chat`, then `append`) of `turns`.
    fn chat_answers(
        model: &Arc<LoadedModel>,
        params: &GenerationParams,
        turns: &[&str],
    ) -> Vec<Vec<u32>> {
        let mut session = Session::start_chat(model.clone(), turns[0], params).unwrap();
        let mut answers = Vec::new();
        for (k, turn) in turns.iter().enumerate() {
            if k > 0 {
                session.append(turn).unwrap();
            }
            let mut answer = Vec::new();
            while let Some((token, _)) = session.step().unwrap() {
                answer.push(token);
            }
            answers.push(answer);
        }
        answers
    }

    #[test]
    fn a_chat_appending_turns_is_run_c_chat_token_for_token() {
        let turns = [
            "[INST] Hello [/INST]",
            "[INST] Tell me more [/INST]",
            "[INST] Why? [/INST]",
        ];
        for (kind, model) in models() {
            for (temperature, top_p, repeat_penalty) in
                [(0.0, 0.9, 1.0), (0.9, 0.9, 1.0), (1.0, 1.0, 1.3)]
            {
                let params = GenerationParams {
                    top_p,
                    max_tokens: Some(20),
                    repeat_penalty,
                    ..sampled_at(temperature)
                };
                let answers = chat_answers(&model, &params, &turns);
                let expected = reference_chat(&model, &params, &turns);
                assert_eq!(answers, expected, "{kind} t={temperature}");
                assert!(expected.iter().all(|a| !a.is_empty()));
            }
        }
    }

    #[test]
    fn hints_cover_a_chats_first_answer_and_change_nothing() {
        let turns = ["[INST] Hello [/INST]", "[INST] Tell me more [/INST]"];
        for (kind, model) in models() {
            for temperature in [0.0, 0.9] {
                let params = GenerationParams {
                    max_tokens: Some(20),
                    ..sampled_at(temperature)
                };
                let expected = reference_chat(&model, &params, &turns);
                let first = expected[0].clone();
                let mut wrong = first.clone();
                wrong[first.len() / 2] = (wrong[first.len() / 2] + 1) % 512;
                let hints = [first.clone(), wrong, [first, tokens(8, 512)].concat()];
                for (i, hint) in hints.into_iter().enumerate() {
                    let hinted = GenerationParams {
                        hint,
                        ..params.clone()
                    };
                    let answers = chat_answers(&model, &hinted, &turns);
                    assert_eq!(answers, expected, "{kind} t={temperature} hint {i}");
                }
            }
        }
    }

    #[test]
    fn a_turn_is_refused_while_running_outside_a_chat_and_past_the_positions() {
        let (_, model) = models().remove(0);
        let params = GenerationParams {
            max_tokens: Some(4),
            max_positions: Some(24),
            ..GenerationParams::default()
        };
        let mut plain = Session::start(model.clone(), "Hello", &params).unwrap();
        while plain.step().unwrap().is_some() {}
        assert!(matches!(
            plain.append("more"),
            Err(EngineError::InvalidArgument(_))
        ));
        let mut chat = Session::start_chat(model.clone(), "Hello", &params).unwrap();
        assert!(matches!(
            chat.append("more"),
            Err(EngineError::InvalidArgument(_))
        ));
        while chat.step().unwrap().is_some() {}
        let before = chat.tokens().to_vec();
        let long = "and then they went on and on and on and on and on and on";
        assert!(matches!(
            chat.append(long),
            Err(EngineError::ContextFull(_))
        ));
        assert_eq!(
            chat.tokens(),
            before.as_slice(),
            "a refused turn changes nothing"
        );
        chat.append("more").unwrap();
        assert!(chat.step().unwrap().is_some());
    }

    #[test]
    fn sessions_stepped_together_produce_their_solo_outputs() {
        for (kind, model) in models() {
            let prompts = ["Once upon a time", "Lily", "The cat sat on the mat and", ""];
            let params: Vec<GenerationParams> = (0..4)
                .map(|i| GenerationParams {
                    temperature: [0.0, 1.0, 0.8, 1.0][i],
                    seed: 11 + i as u64,
                    max_tokens: [Some(40), None, Some(3), Some(25)][i],
                    max_positions: [Some(256), Some(60), None, Some(512)][i],
                    hint: if i == 3 { tokens(10, 512) } else { Vec::new() },
                    ..GenerationParams::default()
                })
                .collect();
            let solo: Vec<Vec<Produced>> = (0..4)
                .map(|i| run(&model, prompts[i], &params[i]).0)
                .collect();
            // Session 2 joins at step 5; session 0 leaves (is dropped) after 12 steps.
            let mut live: Vec<(usize, Session)> = vec![
                (
                    0,
                    Session::start(model.clone(), prompts[0], &params[0]).unwrap(),
                ),
                (
                    1,
                    Session::start(model.clone(), prompts[1], &params[1]).unwrap(),
                ),
                (
                    3,
                    Session::start(model.clone(), prompts[3], &params[3]).unwrap(),
                ),
            ];
            let mut got: Vec<Vec<Produced>> = vec![Vec::new(); 4];
            let mut scratch = Scratch::default();
            for step in 0..80 {
                if step == 5 {
                    live.push((
                        2,
                        Session::start(model.clone(), prompts[2], &params[2]).unwrap(),
                    ));
                }
                if step == 12 {
                    live.retain(|(i, _)| *i != 0);
                }
                let mut refs: Vec<&mut Session> = live.iter_mut().map(|(_, s)| s).collect();
                let outcomes = step_batch(&mut refs, &mut scratch).unwrap();
                for ((i, _), o) in live.iter().zip(outcomes) {
                    if got[*i].last().is_some_and(|p| p.is_none()) {
                        continue;
                    }
                    got[*i].push(o.unwrap());
                }
            }
            assert_eq!(got[0][..], solo[0][..12], "{kind}: session 0 until it left");
            for i in 1..4 {
                assert!(got[i] == solo[i], "{kind}: session {i}");
            }
        }
    }
}
