//! Checking a claimed generation at prefill speed: [`Verifier`] answers whether `claimed` is
//! exactly what a generation of `prompt` with `params` produces, and if not, where it first
//! differs and what the generation has there.
//!
//! The claim is the session's hint: the prompt and the claimed tokens go through the batched
//! forward pass in chunks (`Session`'s look-ahead, bit-identical to token by token), and at
//! every position the session's own step decides the token (the sampler's rule on those
//! logits, with the same random draw, the repeat penalty over the claimed history, the stop
//! strings and limits), which is compared with the claimed one. So the verdict is a full
//! replay's by construction; what it saves is the replay's decoding one token per weight
//! pass, its per-token calls from the host, and with top-p any sorting: the sampler is told
//! the claimed token and checks that run.c's procedure picks it (`sampler::topp_picks`),
//! sampling in full only where it does not.

use std::sync::Arc;

use crate::chat_template::Message;
use crate::error::Result;
use crate::generation::{GenerationParams, Session, StopReason};
use crate::loaded_model::LoadedModel;

/// What a verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the claim is exactly the generation (every token, and it ends where it ends).
    pub valid: bool,
    /// How many claimed tokens the generation confirmed (the claim's length when valid; else
    /// the position of the first difference).
    pub matched: usize,
    /// When invalid: the token the generation produces at `matched` (None: it has stopped
    /// there, with `stop_reason`).
    pub expected: Option<u32>,
    /// The generation's stop reason after its step at `matched`: for a valid claim (or
    /// `expected` None) why it ends there; `Running` while it goes on after `expected`.
    pub stop_reason: StopReason,
    pub prompt_tokens: usize,
    /// The confirmed tokens' output bytes, as the generation produces them.
    pub text: Vec<u8>,
}

/// A verification in progress (a host may run it in slices, to stop it when its answer is no
/// longer needed or its deadline has passed).
pub struct Verifier {
    session: Session,
    claimed: Vec<u32>,
    text: Vec<u8>,
    verdict: Option<Verdict>,
}

impl Verifier {
    /// Encodes the prompt and checks the parameters (the errors of `Session::start`); runs
    /// nothing yet. `params.hint` is ignored: the claim is the hint.
    pub fn start(
        model: Arc<LoadedModel>,
        prompt: &str,
        params: &GenerationParams,
        claimed: &[u32],
    ) -> Result<Self> {
        let session = Session::start(model, prompt, &Self::hinted(params, claimed))?;
        Ok(Self::of(session, claimed))
    }

    /// [`Self::start`] for generate's chat form: the answer to `messages` rendered in the
    /// model's chat template (the errors of `Session::start_messages`).
    pub fn start_messages(
        model: Arc<LoadedModel>,
        messages: Vec<Message>,
        params: &GenerationParams,
        claimed: &[u32],
    ) -> Result<Self> {
        let session = Session::start_messages(model, messages, &Self::hinted(params, claimed))?;
        Ok(Self::of(session, claimed))
    }

    fn hinted(params: &GenerationParams, claimed: &[u32]) -> GenerationParams {
        GenerationParams {
            hint: claimed.to_vec(),
            ..params.clone()
        }
    }

    fn of(session: Session, claimed: &[u32]) -> Self {
        Self {
            session,
            claimed: claimed.to_vec(),
            text: Vec::new(),
            verdict: None,
        }
    }

    /// The model the verification runs on.
    pub fn model(&self) -> &Arc<LoadedModel> {
        self.session.model()
    }

    /// Checks up to `steps` more positions (at least one); the verdict once it is known.
    pub fn run(&mut self, steps: usize) -> Result<Option<&Verdict>> {
        for _ in 0..steps.max(1) {
            if self.verdict.is_some() {
                break;
            }
            let at = self.session.generated_tokens();
            let produced = self.session.step()?;
            let claimed = self.claimed.get(at).copied();
            let verdict = match produced {
                Some((id, bytes)) if claimed == Some(id) => {
                    self.text.extend_from_slice(&bytes);
                    continue;
                }
                Some((id, _)) => self.decide(at, Some(id)),
                None => self.decide(at, None),
            };
            self.verdict = Some(verdict);
        }
        Ok(self.verdict.as_ref())
    }

    /// The verdict when the generation's token at `at` is `produced` (None: it stopped).
    fn decide(&mut self, at: usize, produced: Option<u32>) -> Verdict {
        let valid = produced.is_none() && at == self.claimed.len();
        Verdict {
            valid,
            matched: at,
            expected: if valid { None } else { produced },
            stop_reason: self.session.stop_reason(),
            prompt_tokens: self.session.prompt_tokens(),
            text: std::mem::take(&mut self.text),
        }
    }
}

/// Verifies `claimed` against a generation of `prompt` with `params` in one call.
pub fn verify_claim(
    model: Arc<LoadedModel>,
    prompt: &str,
    params: &GenerationParams,
    claimed: &[u32],
) -> Result<Verdict> {
    let mut verifier = Verifier::start(model, prompt, params, claimed)?;
    loop {
        if let Some(verdict) = verifier.run(usize::MAX)? {
            return Ok(verdict.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::tests::{models, models_on};
    use crate::parallel::Threads;

    /// A full replay: every token the generation produces, and why it stops.
    fn replay(
        model: &Arc<LoadedModel>,
        prompt: &str,
        params: &GenerationParams,
    ) -> (Vec<u32>, Vec<u8>, StopReason) {
        let mut s = Session::start(model.clone(), prompt, params).unwrap();
        let (mut ids, mut text) = (Vec::new(), Vec::new());
        while let Some((id, bytes)) = s.step().unwrap() {
            ids.push(id);
            text.extend_from_slice(&bytes);
        }
        (ids, text, s.stop_reason())
    }

    /// The verdict a full replay gives `claimed`: the first position where the claim and the
    /// generation differ, and the generation's token there.
    fn replay_verdict(ids: &[u32], claimed: &[u32]) -> (bool, usize, Option<u32>) {
        let matched = ids.iter().zip(claimed).take_while(|(a, b)| a == b).count();
        (ids == claimed, matched, ids.get(matched).copied())
    }

    fn forgeries(ids: &[u32], vocab: u32) -> Vec<Vec<u32>> {
        let mut claims = vec![ids.to_vec()];
        if ids.is_empty() {
            claims.push(vec![7]);
            return claims;
        }
        for at in [0, ids.len() / 2, ids.len() - 1] {
            let mut forged = ids.to_vec();
            forged[at] = (forged[at] + 1 + at as u32 % 5) % vocab;
            claims.push(forged);
        }
        claims.push(ids[..ids.len() - 1].to_vec());
        claims.push([ids, &[5]].concat());
        claims.push([&ids[..ids.len() / 2], &[vocab + 3][..]].concat());
        claims
    }

    #[test]
    fn verdicts_equal_full_replays_on_valid_and_forged_claims() {
        let mut claims_checked = 0;
        for (kind, model) in models() {
            let vocab = model.config().vocab_size as u32;
            for temperature in [0.0, 0.8, 1.0] {
                for top_p in [0.5, 0.9, 1.0] {
                    for (case, (penalty, max_tokens, stop)) in [
                        (1.0, None, vec![]),
                        (1.3, Some(60), vec![]),
                        (1.1, None, vec!["Lily".to_string(), ".".to_string()]),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        let params = GenerationParams {
                            temperature,
                            top_p,
                            seed: 5 + case as u64,
                            max_tokens,
                            max_positions: Some(200),
                            repeat_penalty: penalty,
                            stop,
                            ..GenerationParams::default()
                        };
                        let prompt = ["Once upon a time", "The cat", ""][case];
                        let (ids, text, reason) = replay(&model, prompt, &params);
                        for claimed in forgeries(&ids, vocab) {
                            let v = verify_claim(model.clone(), prompt, &params, &claimed).unwrap();
                            let (valid, matched, expected) = replay_verdict(&ids, &claimed);
                            let what = format!(
                                "{kind} t={temperature} p={top_p} case {case}: {} of {}",
                                claimed.len(),
                                ids.len()
                            );
                            assert_eq!(
                                (v.valid, v.matched, v.expected),
                                (valid, matched, expected),
                                "{what}"
                            );
                            if valid {
                                assert_eq!((v.text.as_slice(), v.stop_reason), (&text[..], reason));
                            }
                            claims_checked += 1;
                        }
                    }
                }
            }
        }
        assert!(claims_checked > 300, "{claims_checked} claims");
    }

    #[test]
    fn verdicts_are_the_same_on_one_two_and_three_threads() {
        // Two and three threads decide a chunk's positions in parts (every chunk split: the
        // threshold is lowered for stories260K); one thread decides them in turn.
        let on = |count: usize| {
            let threads = Threads::new(count).unwrap().with_min_weights(0);
            models_on(&threads)
        };
        let (one, two, three) = (on(1), on(2), on(3));
        let mut claims_checked = 0;
        for (k, (kind, model)) in one.iter().enumerate() {
            let vocab = model.config().vocab_size as u32;
            for temperature in [0.0, 0.8, 1.0] {
                for top_p in [0.5, 0.9, 1.0] {
                    for (case, penalty) in [1.0, 1.3].into_iter().enumerate() {
                        let params = GenerationParams {
                            temperature,
                            top_p,
                            seed: 11 + case as u64,
                            max_positions: Some(150),
                            repeat_penalty: penalty,
                            repeat_window: 16,
                            ..GenerationParams::default()
                        };
                        let prompt = ["Once upon a time", "Lily"][case];
                        let (ids, _, _) = replay(model, prompt, &params);
                        for claimed in forgeries(&ids, vocab) {
                            let want = verify_claim(model.clone(), prompt, &params, &claimed);
                            let want = want.unwrap();
                            let (valid, matched, expected) = replay_verdict(&ids, &claimed);
                            assert_eq!(
                                (want.valid, want.matched, want.expected),
                                (valid, matched, expected)
                            );
                            for (count, models) in [(2, &two), (3, &three)] {
                                let threaded = models[k].1.clone();
                                let got = verify_claim(threaded, prompt, &params, &claimed);
                                assert_eq!(
                                    got.unwrap(),
                                    want,
                                    "{kind} t={temperature} p={top_p} penalty {penalty}, {count} threads: {} of {}",
                                    claimed.len(),
                                    ids.len()
                                );
                            }
                            claims_checked += 1;
                        }
                    }
                }
            }
        }
        assert!(claims_checked > 200, "{claims_checked} claims");
    }

    #[test]
    fn a_verification_in_slices_gives_the_one_call_verdict() {
        let (_, model) = models().remove(0);
        let params = GenerationParams {
            temperature: 0.8,
            max_positions: Some(120),
            ..GenerationParams::default()
        };
        let (ids, _, _) = replay(&model, "Lily", &params);
        let whole = verify_claim(model.clone(), "Lily", &params, &ids).unwrap();
        let mut v = Verifier::start(model, "Lily", &params, &ids).unwrap();
        let mut calls = 0;
        let sliced = loop {
            calls += 1;
            if let Some(verdict) = v.run(7).unwrap() {
                break verdict.clone();
            }
        };
        assert!(whole.valid && sliced == whole && calls > ids.len() / 7);
    }
}
