//! run.c's sampler (argmax, multinomial, top-p) with its xorshift64* RNG, plus an optional
//! repeat penalty. Plain sequential f32 arithmetic and `libm`: identical on every target.

use crate::error::{EngineError, Result};

/// run.c replaces a zero seed by the time; a zero xorshift state would stay zero forever, so we
/// replace it by this fixed constant instead (deterministic).
const ZERO_SEED_REPLACEMENT: u64 = 0x2545_F491_4F6C_DD1D;

/// run.c's `random_u32` / `random_f32` (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                ZERO_SEED_REPLACEMENT
            } else {
                seed
            },
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// A float in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0f32
    }
}

/// Sampling parameters (validated by `SamplerParams::validate`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerParams {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub repeat_penalty: f32,
    pub repeat_window: usize,
}

impl SamplerParams {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(EngineError::InvalidArgument(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(EngineError::InvalidArgument(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty >= 1.0) {
            return Err(EngineError::InvalidArgument(format!(
                "repeat_penalty must be >= 1.0, got {}",
                self.repeat_penalty
            )));
        }
        Ok(())
    }
}

/// A sampler with its own RNG and reusable scratch buffers.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplerParams,
    rng: Rng,
    candidates: Vec<(usize, f32)>,
    seen: Vec<bool>,
}

/// run.c's argmax: the first index of the maximum (ties go to the lowest index).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// run.c's softmax, in place.
pub fn softmax(values: &mut [f32]) {
    let Some(&first) = values.first() else { return };
    let max = values
        .iter()
        .skip(1)
        .fold(first, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// run.c's `sample_mult`.
pub fn sample_mult(probs: &[f32], coin: f32) -> usize {
    let mut cdf = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i;
        }
    }
    probs.len() - 1
}

/// run.c's `sample_topp`, with `candidates` as its `probindex` scratch buffer.
pub fn sample_topp(
    probs: &[f32],
    top_p: f32,
    coin: f32,
    candidates: &mut Vec<(usize, f32)>,
) -> usize {
    let n = probs.len();
    if n == 1 {
        return 0;
    }
    let cutoff = (1.0f32 - top_p) / (n - 1) as f32;
    candidates.clear();
    candidates.extend(
        probs
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, p)| p >= cutoff),
    );
    // Stable, descending by probability (glibc's qsort is a merge sort here, hence stable too).
    candidates.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    if candidates.is_empty() {
        // Only possible with NaN probabilities (run.c would read out of bounds): stay deterministic.
        return argmax(probs);
    }
    let mut cumulative = 0.0f32;
    let mut last = candidates.len() - 1;
    for (i, &(_, p)) in candidates.iter().enumerate() {
        cumulative += p;
        if cumulative > top_p {
            last = i;
            break;
        }
    }
    let r = coin * cumulative;
    let mut cdf = 0.0f32;
    for &(index, p) in &candidates[..=last] {
        cdf += p;
        if r < cdf {
            return index;
        }
    }
    candidates.get(last).map_or(0, |c| c.0)
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Self {
            params,
            rng,
            candidates: Vec::new(),
            seen: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// llama.cpp/candle repeat penalty over the last `repeat_window` tokens of `history`:
    /// each distinct token's logit is divided by the penalty when >= 0, multiplied when < 0.
    fn apply_repeat_penalty(&mut self, logits: &mut [f32], history: &[u32]) {
        let penalty = self.params.repeat_penalty;
        if penalty == 1.0 || self.params.repeat_window == 0 {
            return;
        }
        self.seen.clear();
        self.seen.resize(logits.len(), false);
        let start = history.len().saturating_sub(self.params.repeat_window);
        for &token in &history[start..] {
            let t = token as usize;
            if t < logits.len() && !self.seen[t] {
                self.seen[t] = true;
                let l = &mut logits[t];
                *l = if *l >= 0.0 {
                    *l / penalty
                } else {
                    *l * penalty
                };
            }
        }
    }

    /// Samples the next token from `logits` (modified in place), given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_repeat_penalty(logits, history);
        if self.params.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let t = self.params.temperature;
        for l in logits.iter_mut() {
            *l /= t;
        }
        softmax(logits);
        let coin = self.rng.next_f32();
        let top_p = self.params.top_p;
        let index = if top_p <= 0.0 || top_p >= 1.0 {
            sample_mult(logits, coin)
        } else {
            sample_topp(logits, top_p, coin, &mut self.candidates)
        };
        index as u32
    }
}
