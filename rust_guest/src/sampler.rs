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
    scratch: DecisionScratch,
}

/// A position's token decided by [`decide`]: the sampler's pick, or `Undecided` when the
/// expected token is not top-p's pick and only run.c's full procedure says which token is (the
/// logits are then the probabilities it runs on: [`Sampler::take_decided`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Token(u32),
    Undecided,
}

/// The reusable buffers of [`decide`] (one per thread deciding positions).
#[derive(Debug, Clone, Default)]
pub struct DecisionScratch {
    candidates: Candidates,
    /// The distinct tokens of the repeat penalty's window.
    window: Vec<u32>,
}

/// run.c's argmax: the first index of the maximum (ties go to the lowest index; a NaN never
/// wins, except at index 0, where run.c's loop keeps it).
///
/// Found as the largest value, then the first index holding a value equal to it: the same
/// index as run.c's loop, whose best moves only on a strictly greater value and so stops at
/// the first element equal to the maximum (`==` counts -0.0 and 0.0 equal, as `>` does). Both
/// passes run [`ARGMAX_LANES`] elements at a time (vectorized); the loop as written reloads
/// `values[best]` per element, a dependency chain through memory that took the guest 4% of
/// a 15M decode (32000 logits per token).
pub fn argmax(values: &[f32]) -> usize {
    let Some(&first) = values.first() else {
        return 0;
    };
    if first.is_nan() {
        return 0;
    }
    let max = running_max(values);
    let chunk = values
        .chunks(ARGMAX_LANES)
        .position(|c| c.iter().fold(false, |found, &v| found | (v == max)))
        .unwrap_or(0);
    let start = chunk * ARGMAX_LANES;
    start + values[start..].iter().position(|&v| v == max).unwrap_or(0)
}

/// The value of run.c's running maximum (`if v > max { max = v }` from the first element; 0
/// for no elements), [`ARGMAX_LANES`] elements at a time: a NaN first element stays (nothing
/// compares greater), later NaNs never enter, so the lanes' maximum is the loop's value.
/// Only the sign of a zero maximum may differ (-0.0 and 0.0 compare equal and the lanes meet
/// them in another order), which changes no bit of `v - max` but `-0.0 - max`'s, and
/// `expf` gives 1 for both zeros.
fn running_max(values: &[f32]) -> f32 {
    let Some(&first) = values.first() else {
        return 0.0;
    };
    let chunks = values.chunks_exact(ARGMAX_LANES);
    let rest = chunks.remainder();
    let mut lanes = [first; ARGMAX_LANES];
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            if v > *lane {
                *lane = v;
            }
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(first, |m, &v| if v > m { v } else { m })
}

/// Elements [`argmax`] compares at a time.
const ARGMAX_LANES: usize = 8;

/// run.c's softmax, in place.
pub fn softmax(values: &mut [f32]) {
    if values.is_empty() {
        return;
    }
    // Lanes at a time, where run.c's loop is one chain of comparisons (`running_max`).
    let max = running_max(values);
    // libm's expf on each element, several lanes at a time (the same bits); the sum in order.
    let sum = crate::vector_exp::exp_shifted_sum(values, max);
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

/// How many candidates [`sample_topp`] selects and sorts first (enough for a peaked
/// distribution's nucleus); when their sum has not exceeded top_p, the rest is radix-sorted.
const FIRST_ROUND: usize = 64;

/// A top-p candidate as one sortable key: ascending keys are run.c's order after its qsort,
/// probability descending and, for equal probabilities, index ascending (glibc's qsort is a
/// merge sort, stable, and run.c fills the candidates in index order). Keys are unique.
///
/// Only probabilities that passed `p >= cutoff` (with `cutoff > 0`) become keys: positive,
/// never NaN, so their bits are the same on every target and order as their values do.
fn candidate_key(index: usize, p: f32) -> u64 {
    (u64::from(u32::MAX - p.to_bits()) << 32) | index as u64
}

fn key_index(key: u64) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

fn key_prob(key: u64) -> f32 {
    f32::from_bits(u32::MAX - (key >> 32) as u32)
}

/// The scratch buffers of [`sample_topp`] (run.c's `probindex`, and room for a radix sort).
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    keys: Vec<u64>,
    spare: Vec<u64>,
    /// `sums[j]`: the cumulative probability through `keys[j]`, in run.c's order and floats.
    sums: Vec<f32>,
}

/// Sorts `keys` by their bits from `first_bit` up, ascending and stable: a least-significant-
/// digit radix sort over the span of bits some keys differ in (the bits every key shares, the
/// index's high bits and a probability's high exponent bits, are left out), cut in as few
/// digits of at most [`MAX_DIGIT_BITS`] as cover it. With `first_bit` 0 it sorts the keys;
/// with 32, keys already in index order end in key order without passes over the index.
/// Linear in the keys, where a comparison sort of a flat distribution's ~30,000 candidates
/// costs more than the rest of the sampler.
fn radix_sort(keys: &mut [u64], spare: &mut Vec<u64>, first_bit: u32) {
    let n = keys.len();
    let (all, any) = keys
        .iter()
        .fold((u64::MAX, 0u64), |(all, any), &k| (all & k, any | k));
    let varying = (all ^ any) & (u64::MAX << first_bit);
    if varying == 0 {
        return;
    }
    // A flat distribution's probabilities differ in ~27 bits: three passes of 9 bits where
    // bytes took four.
    let (low, high) = (varying.trailing_zeros(), 63 - varying.leading_zeros());
    let span = high + 1 - low;
    let passes = span.div_ceil(MAX_DIGIT_BITS);
    let width = span.div_ceil(passes);
    let buckets = 1usize << width;
    let mask = (buckets - 1) as u64;
    let digit_of = |key: u64, pass: u32| ((key >> (low + pass * width)) & mask) as usize;
    // Each pass counts the next pass's digit as it places the keys (measured faster than
    // counting every digit in a pass of its own, and than four interleaved runs of keys with
    // their own counters, which had paid off against byte digits' chains of increments).
    let mut counts = [0u32; 1 << MAX_DIGIT_BITS];
    for &key in keys.iter() {
        counts[digit_of(key, 0)] += 1;
    }
    if spare.len() < n {
        spare.resize(n, 0);
    }
    let (mut from, mut to): (&mut [u64], &mut [u64]) = (keys, &mut spare[..n]);
    let mut in_spare = false;
    for pass in 0..passes {
        let mut next = [0u32; 1 << MAX_DIGIT_BITS];
        let mut total = 0u32;
        for (cursor, count) in next[..buckets].iter_mut().zip(&mut counts[..buckets]) {
            *cursor = total;
            total += std::mem::take(count);
        }
        if pass + 1 < passes {
            for &key in from.iter() {
                let cursor = &mut next[digit_of(key, pass)];
                to[*cursor as usize] = key;
                *cursor += 1;
                counts[digit_of(key, pass + 1)] += 1;
            }
        } else {
            for &key in from.iter() {
                let cursor = &mut next[digit_of(key, pass)];
                to[*cursor as usize] = key;
                *cursor += 1;
            }
        }
        std::mem::swap(&mut from, &mut to);
        in_spare = !in_spare;
    }
    if in_spare {
        to.copy_from_slice(from);
    }
}

/// The widest digit [`radix_sort`] takes (its tables stay in the first-level cache).
const MAX_DIGIT_BITS: u32 = 11;

/// run.c's `sample_topp`, exactly (the same token for the same coin), without sorting the
/// whole vocabulary by comparisons: only the prefix of run.c's sorted order that its
/// cumulative sums read is put in order. The first [`FIRST_ROUND`] candidates are found by
/// selection and sorted; a peaked distribution's nucleus ends there. Otherwise the rest is put
/// in order by a radix sort. The keys' order is total, so the prefix read is run.c's element
/// for element, and the sums are taken in the same order with the same floats.
pub fn sample_topp(probs: &[f32], top_p: f32, coin: f32, scratch: &mut Candidates) -> usize {
    let n = probs.len();
    if n == 1 {
        return 0;
    }
    let cutoff = (1.0f32 - top_p) / (n - 1) as f32;
    let candidates = &mut scratch.keys;
    candidates.clear();
    if cutoff > 0.0 {
        candidates.extend(
            probs
                .iter()
                .enumerate()
                .filter(|&(_, &p)| p >= cutoff)
                .map(|(i, &p)| candidate_key(i, p)),
        );
    }
    if candidates.is_empty() {
        // Only possible with NaN probabilities (run.c would read out of bounds): stay deterministic.
        return argmax(probs);
    }
    let n0 = candidates.len();
    // run.c's truncation: the first position where the cumulative sum exceeds top_p, else all.
    let mut cumulative = 0.0f32;
    let mut last = n0 - 1;
    let mut ordered = 0;
    while ordered < n0 {
        let rest = &mut candidates[ordered..];
        let end = if ordered == 0 && rest.len() > 2 * FIRST_ROUND {
            rest.select_nth_unstable(FIRST_ROUND - 1);
            rest[..FIRST_ROUND].sort_unstable();
            FIRST_ROUND
        } else {
            if rest.len() > 2 * FIRST_ROUND && ordered > 0 {
                // The rest again in index order (the selection shuffled it): every candidate
                // whose key comes after the first round's last (keys are unique). In index
                // order, a stable sort of the probability digits alone (the keys' high half)
                // puts them in key order: two to three passes instead of five.
                let after = candidates[ordered - 1];
                let mut at = ordered;
                for (i, &p) in probs.iter().enumerate() {
                    if p >= cutoff {
                        let key = candidate_key(i, p);
                        if key > after {
                            candidates[at] = key;
                            at += 1;
                        }
                    }
                }
                debug_assert_eq!(at, n0);
                radix_sort(&mut candidates[ordered..], &mut scratch.spare, 32);
            } else if rest.len() > 2 * FIRST_ROUND {
                radix_sort(rest, &mut scratch.spare, 0);
            } else {
                rest.sort_unstable();
            }
            n0
        };
        let sums = &mut scratch.sums;
        sums.truncate(ordered);
        let crossed = candidates[ordered..end].iter().position(|&key| {
            cumulative += key_prob(key);
            sums.push(cumulative);
            cumulative > top_p
        });
        if let Some(at) = crossed {
            last = ordered + at;
            break;
        }
        ordered = end;
    }
    // run.c's second walk, `r < cdf` at the first candidate whose cumulative sum exceeds r:
    // its sums are the first walk's (same order, same floats), and never decrease (each adds
    // a probability >= 0), so the first one above r is found by bisection.
    let r = coin * cumulative;
    let sums = &scratch.sums[..=last];
    let first_above = sums.partition_point(|&cdf| cdf <= r); // sums are never NaN
    key_index(candidates[first_above.min(last)])
}

/// Buckets [`topp_picks`] spreads the candidates over (by their keys' highest varying bits).
const BUCKET_BITS: u32 = 10;

/// Interleaved streams of keys [`topp_picks`] counts and places (see there).
const STREAMS: usize = 4;

/// Probabilities [`topp_picks`]' candidate pass takes per loop trip. In the guest every loop
/// back-edge takes wasmtime's epoch check, and Cranelift kept the pass's state (the cursor,
/// the key masks, the slice pointers) in stack slots around it: one element per trip cost
/// ~40 instructions, most of them reloads and stores (8 per trip: the guest's topp_picks
/// -22% of its samples). The same everywhere, so the native tests cover the remainder.
const CANDIDATE_UNROLL: usize = 8;

/// The running sum `s` (positive, normal) after adding every probability of `keys`, when that
/// needs no order: `None` when their order could matter (or the sum would pass `top_p`).
///
/// While an f32 running sum stays in one power-of-two range `[2^E, 2^(E+1))`, its spacing is
/// `u = 2^(E-23)` and each addition `s + p` lands on the multiple of `u` nearest the exact
/// sum, which is `s + u * round(p / u)`: the step depends on `p` alone, so the steps add up the
/// same in any order. Two things break that, and answer `None`: a tie (`p / u` exactly half
/// way, rounded to even, so the step depends on `s`'s last bit), and a sum that leaves the
/// range (past it the spacing doubles). The steps are integers, summed exactly.
fn sum_without_order(keys: &[u64], s: f32, top_p: f32) -> Option<f32> {
    let s_exp = s.to_bits() >> 23;
    // A bucket's probabilities share their exponent (its keys differ below it): so does the
    // shift from p's spacing to the sum's.
    let p_exp = (u32::MAX - (keys.first()? >> 32) as u32) >> 23;
    // p <= s (the sum already holds a larger probability): p's exponent is at most s's.
    if p_exp == 0 || p_exp > s_exp {
        return None;
    }
    let shift = s_exp - p_exp;
    if shift > 24 {
        return Some(s); // every p < u / 2: s + p rounds back to s
    }
    let (low_bits, half) = ((1u32 << shift) - 1, (1u32 << shift) >> 1);
    let (mut steps, mut ties) = (0u64, 0u32);
    // Without branches (a flat distribution's keys would mispredict them), one shift for all.
    for &key in keys {
        let bits = u32::MAX - (key >> 32) as u32;
        let m = (bits & 0x7f_ffff) | 0x80_0000;
        let rest = m & low_bits;
        ties |= u32::from(rest == half);
        steps += u64::from((m >> shift) + u32::from(rest > half));
    }
    if shift > 0 && ties != 0 {
        return None;
    }
    let low = f64::from(f32::from_bits(s_exp << 23));
    let sum = f64::from(s) + steps as f64 * (low / 8_388_608.0);
    // Exact in f64 (steps < 2^24 while it stays in range), and then an f32 of that range.
    (sum < 2.0 * low && sum <= f64::from(top_p)).then_some(sum as f32)
}

/// Whether run.c's `sample_topp` picks `claimed` from `probs` with `coin`: the same answer as
/// `sample_topp(..) == claimed` (the verification's check), without putting the candidates in
/// order. The decision needs three of run.c's f32 running sums (in its sorted order): the sum
/// before the claimed token and through it (its slice of the draw), and the sum where the
/// truncation stops (`cumulative`, which scales the draw). The candidates are spread over
/// buckets by their keys' high bits (one counting pass), taken in key order, and a bucket's
/// sum is taken without order ([`sum_without_order`]) unless its order matters: then (a range
/// crossing, a tie, the top-p crossing, the claimed token's bucket) it alone is sorted and
/// summed element by element, as run.c does. The sums are run.c's bit for bit. Inlined on
/// x86_64, so that [`decide`]'s AVX2 build compiles its passes for AVX2 (the guest's code
/// stays as it was).
#[cfg_attr(target_arch = "x86_64", inline(always))]
pub fn topp_picks(
    probs: &[f32],
    top_p: f32,
    coin: f32,
    claimed: usize,
    scratch: &mut Candidates,
) -> bool {
    let n = probs.len();
    let cutoff = if n > 1 {
        (1.0f32 - top_p) / (n - 1) as f32
    } else {
        0.0
    };
    let pc = probs.get(claimed).copied().unwrap_or(f32::NAN);
    if !(cutoff > 0.0 && pc >= cutoff && cutoff.is_normal()) {
        // One token, NaN or no candidate at all (run.c's degenerate cases), or a claimed token
        // that is no candidate: the full procedure decides (rare: a forged claim, once).
        return claimed < n && sample_topp(probs, top_p, coin, scratch) == claimed;
    }
    let keys = &mut scratch.keys;
    keys.resize(n, 0);
    // Every key written, the cursor moved past candidates only (no branch to mispredict).
    // No running maximum key here (a compare-and-move chain per element): the last
    // candidate is found in its bucket when the truncation takes them all.
    let (mut all, mut any) = (u64::MAX, 0u64);
    let mut n0 = 0;
    let mut candidate = |i: usize, p: f32| {
        let key = candidate_key(i, p);
        keys[n0] = key;
        let take = u64::from(p >= cutoff).wrapping_neg(); // all ones for a candidate
        (all, any) = (all & (key | !take), any | (key & take));
        n0 += (take & 1) as usize;
    };
    let (groups, rest) = probs.as_chunks::<CANDIDATE_UNROLL>();
    for (g, group) in groups.iter().enumerate() {
        for (j, &p) in group.iter().enumerate() {
            candidate(g * CANDIDATE_UNROLL + j, p);
        }
    }
    let done = groups.len() * CANDIDATE_UNROLL;
    for (j, &p) in rest.iter().enumerate() {
        candidate(done + j, p);
    }
    keys.truncate(n0);
    let target = candidate_key(claimed, pc);
    let varying = ((all ^ any) >> 32) as u32;
    let top = 32 - varying.leading_zeros();
    let shift = 32 + top.saturating_sub(BUCKET_BITS);
    let buckets = 1usize << (top + 32 - shift);
    let mask = (buckets - 1) as u64;
    let bucket_of = |key: u64| ((key >> shift) & mask) as usize;
    // Four streams of keys (by position mod 4), each with its own counters and cursors: a
    // flat distribution puts runs of keys in one bucket, and one counter's increments would
    // form a chain. Within a bucket the order is free (it is summed without order or sorted).
    let mut counts = [[0u32; 1 << BUCKET_BITS]; STREAMS];
    let mut quads = keys.chunks_exact(STREAMS);
    for quad in &mut quads {
        for (count, &key) in counts.iter_mut().zip(quad) {
            count[bucket_of(key)] += 1;
        }
    }
    for (count, &key) in counts.iter_mut().zip(quads.remainder()) {
        count[bucket_of(key)] += 1;
    }
    let mut starts = [0u32; (1 << BUCKET_BITS) + 1];
    let mut total = 0u32;
    for b in 0..buckets {
        starts[b] = total;
        for count in counts.iter_mut() {
            let c = count[b];
            count[b] = total; // now the stream's cursor in the bucket
            total += c;
        }
    }
    starts[buckets] = total;
    if scratch.spare.len() < n0 {
        scratch.spare.resize(n0, 0);
    }
    let placed = &mut scratch.spare[..n0];
    let mut quads = keys.chunks_exact(STREAMS);
    for quad in &mut quads {
        for (cursor, &key) in counts.iter_mut().zip(quad) {
            let c = &mut cursor[bucket_of(key)];
            placed[*c as usize] = key;
            *c += 1;
        }
    }
    for (cursor, &key) in counts.iter_mut().zip(quads.remainder()) {
        let c = &mut cursor[bucket_of(key)];
        placed[*c as usize] = key;
        *c += 1;
    }
    let claimed_bucket = bucket_of(target);
    let mut s = 0.0f32;
    // run.c's sums before and through the claimed token, once it is reached.
    let mut around_claimed = None;
    let mut last = None;
    'buckets: for b in 0..buckets {
        let bucket = &mut placed[starts[b] as usize..starts[b + 1] as usize];
        if bucket.is_empty() {
            continue;
        }
        if s > 0.0 && b != claimed_bucket {
            if let Some(sum) = sum_without_order(bucket, s, top_p) {
                s = sum;
                continue;
            }
        }
        bucket.sort_unstable();
        for &key in bucket.iter() {
            let before = s;
            s += key_prob(key);
            if key == target {
                around_claimed = Some((before, s));
            }
            if s > top_p {
                last = Some(key);
                break 'buckets;
            }
        }
    }
    let Some((before, through)) = around_claimed else {
        return false; // past the truncation
    };
    // run.c's second walk returns the first candidate whose sum exceeds r, or the last one.
    let r = coin * s;
    // Without a crossing, run.c's last candidate is the greatest key, in the last bucket.
    let last = last.unwrap_or_else(|| {
        let b = (0..buckets).rev().find(|&b| starts[b] < starts[b + 1]);
        b.and_then(|b| {
            placed[starts[b] as usize..starts[b + 1] as usize]
                .iter()
                .max()
                .copied()
        })
        .unwrap_or(0)
    });
    before <= r && (r < through || target == last)
}

impl SamplerParams {
    /// Whether a sampled position consumes a random draw (all but greedy's: run.c draws its
    /// coin for multinomial and top-p alike, one per position).
    pub fn draws(&self) -> bool {
        self.temperature != 0.0
    }
}

/// llama.cpp/candle repeat penalty over the last `repeat_window` tokens of `history`: each
/// distinct token's logit is divided by the penalty when >= 0, multiplied when < 0.
fn apply_repeat_penalty(
    params: &SamplerParams,
    logits: &mut [f32],
    history: &[u32],
    window: &mut Vec<u32>,
) {
    let penalty = params.repeat_penalty;
    if penalty == 1.0 || params.repeat_window == 0 {
        return;
    }
    let start = history.len().saturating_sub(params.repeat_window);
    window.clear();
    window.extend(
        history[start..]
            .iter()
            .filter(|&&t| (t as usize) < logits.len()),
    );
    window.sort_unstable();
    window.dedup();
    for &t in window.iter() {
        let l = &mut logits[t as usize];
        *l = if *l >= 0.0 {
            *l / penalty
        } else {
            *l * penalty
        };
    }
}

compiled_for_avx2! {
    /// The sampler's rule at one position with its draw `coin` (unused when greedy): the repeat
    /// penalty over `history`, then argmax, or temperature, softmax and multinomial or top-p.
    /// With `expected` (a claim), top-p checks that token first ([`topp_picks`], no sorting) and
    /// answers `Undecided` when it is not the pick. A pure function of its arguments, so the
    /// positions of a chunk can be decided in any order, on any thread. `logits` are left as
    /// the rule's input (penalised logits when greedy, else the probabilities).
    ///
    /// Compiled for AVX2 where the CPU has it (src/compiled_for_avx2.rs): the same bits.
    pub fn decide(
        params: &SamplerParams,
        logits: &mut [f32],
        history: &[u32],
        coin: f32,
        expected: Option<u32>,
        scratch: &mut DecisionScratch,
    ) -> Decision {
        apply_repeat_penalty(params, logits, history, &mut scratch.window);
        if !params.draws() {
            return Decision::Token(argmax(logits) as u32);
        }
        let t = params.temperature;
        for l in logits.iter_mut() {
            *l /= t;
        }
        softmax(logits);
        let top_p = params.top_p;
        if top_p <= 0.0 || top_p >= 1.0 {
            return Decision::Token(sample_mult(logits, coin) as u32);
        }
        let candidates = &mut scratch.candidates;
        match expected {
            Some(t) if topp_picks(logits, top_p, coin, t as usize, candidates) => Decision::Token(t),
            Some(_) => Decision::Undecided,
            None => Decision::Token(sample_topp(logits, top_p, coin, candidates) as u32),
        }
    }
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Result<Self> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Self {
            params,
            rng,
            scratch: DecisionScratch::default(),
        })
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// Consumes the random draws of `n` samples without sampling: run.c's chat samples (and
    /// discards) at every forced position, and greedy sampling draws nothing.
    pub fn skip_draws(&mut self, n: usize) {
        if self.params.draws() {
            for _ in 0..n {
                self.rng.next_u32();
            }
        }
    }

    /// The next position's draw, taken (0 when greedy, which draws nothing).
    fn draw(&mut self) -> f32 {
        if self.params.draws() {
            self.rng.next_f32()
        } else {
            0.0
        }
    }

    /// The draws of the next `n` positions, without taking them (none when greedy).
    pub fn next_draws(&self, n: usize) -> Vec<f32> {
        if !self.params.draws() {
            return Vec::new();
        }
        let mut rng = self.rng.clone();
        (0..n).map(|_| rng.next_f32()).collect()
    }

    /// Samples the next token from `logits` (modified in place), given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.sample_expecting(logits, history, None)
    }

    /// [`Self::sample`] when the token is expected to be `expected` (a claim being verified):
    /// the same token and the same draws, but with top-p the expectation is checked first
    /// ([`topp_picks`], no sorting) and the full procedure runs only when it fails.
    pub fn sample_expecting(
        &mut self,
        logits: &mut [f32],
        history: &[u32],
        expected: Option<u32>,
    ) -> u32 {
        let coin = self.draw();
        let decision = decide(
            &self.params,
            logits,
            history,
            coin,
            expected,
            &mut self.scratch,
        );
        self.finish(logits, decision, coin)
    }

    /// The next token when its position was decided ahead ([`decide`] on these `logits` with
    /// the draw [`Self::next_draws`] gave it): the same token and the same draws as
    /// [`Self::sample_expecting`], without deciding again.
    pub fn take_decided(&mut self, logits: &[f32], decision: Decision) -> u32 {
        let coin = self.draw();
        self.finish(logits, decision, coin)
    }

    /// The token of a decision; `Undecided` runs run.c's top-p on the probabilities `decide`
    /// left in `probs`.
    fn finish(&mut self, probs: &[f32], decision: Decision, coin: f32) -> u32 {
        match decision {
            Decision::Token(t) => t,
            Decision::Undecided => {
                let candidates = &mut self.scratch.candidates;
                sample_topp(probs, self.params.top_p, coin, candidates) as u32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sampler before selection: run.c's `sample_topp` as written, with a full stable sort.
    fn sample_topp_by_full_sort(probs: &[f32], top_p: f32, coin: f32) -> usize {
        let n = probs.len();
        if n == 1 {
            return 0;
        }
        let cutoff = (1.0f32 - top_p) / (n - 1) as f32;
        let mut candidates: Vec<(usize, f32)> = probs
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, p)| p >= cutoff)
            .collect();
        candidates.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        if candidates.is_empty() {
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
        candidates[last].0
    }

    /// Logits of many shapes: flat, peaked, heavy-tailed, and coarse (many exact ties).
    fn logits(rng: &mut Rng, n: usize, shape: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let u = rng.next_f32();
                match shape {
                    0 => u * 0.01,
                    1 => u * 4.0,
                    2 => u * 30.0,
                    3 => (u * 8.0).floor(),
                    4 => -(i as f32) * 0.01 + u * 0.001,
                    _ => (u * 3.0).floor() * 5.0,
                }
            })
            .collect()
    }

    /// run.c's argmax loop as written (the definition [`argmax`] keeps).
    fn argmax_sequential(values: &[f32]) -> usize {
        let mut best = 0;
        for (i, &v) in values.iter().enumerate().skip(1) {
            if v > values[best] {
                best = i;
            }
        }
        best
    }

    #[test]
    fn argmax_picks_the_sequential_loops_index() {
        let mut rng = Rng::new(99);
        let special = [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::INFINITY, 1.0];
        let mut checked = 0;
        for case in 0..4000u32 {
            let n = match case % 4 {
                0 => (case / 4 % 40) as usize,
                1 => 1 + (rng.next_u32() % 100) as usize,
                2 => 32000,
                _ => 7 + (rng.next_u32() % 20) as usize,
            };
            if n == 32000 && case % 20 != 2 {
                continue;
            }
            let mut values = logits(&mut rng, n, case % 6);
            // Sprinkle NaNs, signed zeros, infinities and ties (also at index 0).
            for _ in 0..(case % 5) {
                if n > 0 {
                    let at = (rng.next_u32() as usize) % n;
                    values[at] = special[(rng.next_u32() % special.len() as u32) as usize];
                }
            }
            assert_eq!(
                argmax(&values),
                argmax_sequential(&values),
                "case {case}: {values:?}"
            );
            checked += 1;
        }
        assert!(checked > 3000, "{checked} cases");
        for values in [
            vec![f32::NAN, 1.0, 2.0],
            vec![-0.0, 0.0, -0.0],
            vec![0.0, 1.0, f32::NAN, 1.0, -0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            vec![f32::NEG_INFINITY; 19],
            vec![
                1.0,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                f32::NAN,
                3.0,
            ],
        ] {
            assert_eq!(argmax(&values), argmax_sequential(&values), "{values:?}");
        }
    }

    /// run.c's softmax as written: a running maximum, libm's `expf`, the sum in order.
    fn softmax_sequential(values: &mut [f32]) {
        let mut max = values[0];
        for &v in values.iter().skip(1) {
            if v > max {
                max = v;
            }
        }
        let mut sum = 0.0f32;
        for v in values.iter_mut() {
            *v = libm::expf(*v - max);
            sum += *v;
        }
        for v in values.iter_mut() {
            *v /= sum;
        }
    }

    #[test]
    fn softmax_is_run_cs_bit_for_bit() {
        let mut rng = Rng::new(41);
        let special = [f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, -120.0, -95.0];
        for case in 0..600u32 {
            let n = [1, 7, 8, 9, 100, 512, 32000][(case % 7) as usize];
            let mut values = logits(&mut rng, n, case % 6);
            for v in values.iter_mut() {
                *v *= [1.0f32, 10.0, 40.0][(case / 7 % 3) as usize];
            }
            for _ in 0..(case % 4) {
                let at = (rng.next_u32() as usize) % n;
                values[at] = special[(rng.next_u32() % special.len() as u32) as usize];
            }
            let mut want = values.clone();
            softmax_sequential(&mut want);
            softmax(&mut values);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            let nan_free = |v: &[f32]| v.iter().all(|x| !x.is_nan());
            if nan_free(&want) {
                assert_eq!(bits(&values), bits(&want), "case {case}");
            } else {
                // NaNs' bits are not compared (docs/determinism.md); where they are is.
                let nans = |v: &[f32]| v.iter().map(|x| x.is_nan()).collect::<Vec<bool>>();
                assert_eq!(nans(&values), nans(&want), "case {case}");
            }
        }
    }

    /// Runs `case` on cases `0..cases`, with one random generator (seeded `seed`) and one
    /// candidate buffer reused across them; returns the draws they checked (each case returns
    /// its count).
    fn draws_checked(
        seed: u64,
        cases: u32,
        mut case: impl FnMut(u32, &mut Rng, &mut Candidates) -> usize,
    ) -> usize {
        let mut rng = Rng::new(seed);
        let mut scratch = Candidates::default();
        (0..cases).map(|c| case(c, &mut rng, &mut scratch)).sum()
    }

    #[test]
    fn selection_picks_the_full_sorts_token_on_random_distributions() {
        let checked = draws_checked(2024, 3000, |case, rng, scratch| {
            let n = match case % 6 {
                0 => 2,
                1 => 1 + (rng.next_u32() % 600) as usize,
                2 => 512,
                3 => 4096,
                4 => 32000,
                _ => 2 + (rng.next_u32() % 50) as usize,
            };
            if n >= 4096 && case % 5 != 0 {
                return 0;
            }
            let probs = probabilities(rng, n, case);
            let mut checked = 0;
            for top_p in [0.05f32, 0.5, 0.9, 0.95, 0.999_999] {
                let coin = rng.next_f32();
                let want = sample_topp_by_full_sort(&probs, top_p, coin);
                let got = sample_topp(&probs, top_p, coin, scratch);
                assert_eq!(got, want, "case {case}: n {n}, top_p {top_p}, coin {coin}");
                checked += 1;
            }
            checked
        });
        assert!(checked > 10_000, "{checked} draws");
    }

    /// A distribution of `n` tokens for test case `case`: its logits' kind (`case % 6`) and
    /// temperature (`case / 6 % 4`) vary with the case.
    fn probabilities(rng: &mut Rng, n: usize, case: u32) -> Vec<f32> {
        let mut probs = logits(rng, n, case % 6);
        let t = [0.3f32, 0.8, 1.0, 1.7][(case / 6 % 4) as usize];
        for p in probs.iter_mut() {
            *p /= t;
        }
        softmax(&mut probs);
        probs
    }

    /// Tokens worth claiming against a draw: the sampled one, its neighbours in run.c's order,
    /// the first and last candidates, and a few others.
    fn claims(probs: &[f32], sampled: usize, rng: &mut Rng) -> Vec<usize> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].partial_cmp(&probs[a]).unwrap().then(a.cmp(&b)));
        let at = order.iter().position(|&i| i == sampled).unwrap();
        let mut out: Vec<usize> = (at.saturating_sub(3)..(at + 4).min(order.len()))
            .map(|k| order[k])
            .collect();
        out.extend([order[0], order[order.len() - 1], probs.len()]);
        out.extend((0..4).map(|_| rng.next_u32() as usize % probs.len()));
        out
    }

    #[test]
    fn the_claim_check_agrees_with_sampling_on_every_claim() {
        let mut picked = 0;
        let checked = draws_checked(77, 1500, |case, rng, scratch| {
            let n = match case % 5 {
                0 => 2 + (rng.next_u32() % 60) as usize,
                1 => 1 + (rng.next_u32() % 700) as usize,
                2 => 4096,
                _ => 32000,
            };
            if n >= 4096 && case % 4 != 0 {
                return 0;
            }
            let probs = probabilities(rng, n, case);
            let mut checked = 0;
            for top_p in [0.05f32, 0.5, 0.9, 0.95, 0.999_999] {
                // Draws at the ends of the range as well as random ones.
                let coin = match rng.next_u32() % 8 {
                    0 => 0.0,
                    1 => 1.0 - f32::EPSILON / 2.0,
                    _ => rng.next_f32(),
                };
                let sampled = sample_topp(&probs, top_p, coin, scratch);
                for claimed in claims(&probs, sampled, rng) {
                    let got = topp_picks(&probs, top_p, coin, claimed, scratch);
                    assert_eq!(
                        got,
                        claimed == sampled,
                        "case {case}: n {n}, top_p {top_p}, coin {coin}, claimed {claimed}, sampled {sampled}"
                    );
                    checked += 1;
                    picked += usize::from(got);
                }
            }
            checked
        });
        assert!(
            checked > 20_000 && picked > 1000,
            "{checked} claims, {picked} picked"
        );
    }

    /// run.c's running sums in its order, through the truncation (the last is `cumulative`).
    fn running_sums(probs: &[f32], top_p: f32) -> Vec<f32> {
        let cutoff = (1.0f32 - top_p) / (probs.len() - 1) as f32;
        let mut ps: Vec<f32> = probs.iter().copied().filter(|&p| p >= cutoff).collect();
        ps.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let mut sums = Vec::new();
        let mut s = 0.0f32;
        for p in ps {
            s += p;
            sums.push(s);
            if s > top_p {
                break;
            }
        }
        sums
    }

    #[test]
    fn the_claim_check_is_exact_on_draws_at_the_sums_boundaries() {
        // Coins that put r = coin * cumulative on (or a few floats either side of) a running
        // sum: a claimed token's slice of the draw is half-open, [before, through).
        let checked = draws_checked(5, 60, |case, rng, scratch| {
            let n = [50usize, 700, 32000][case as usize % 3];
            let mut probs = logits(rng, n, case % 6);
            softmax(&mut probs);
            let top_p = [0.5f32, 0.9, 0.95][(case / 3) as usize % 3];
            let sums = running_sums(&probs, top_p);
            let cumulative = sums[sums.len() - 1];
            let picks: Vec<usize> = (0..6)
                .map(|_| rng.next_u32() as usize % sums.len())
                .collect();
            let mut checked = 0;
            for k in picks.into_iter().chain([0, sums.len() - 1]) {
                let at = (sums[k] / cumulative).min(1.0 - f32::EPSILON / 2.0);
                for step in -2i32..=2 {
                    let coin = f32::from_bits(at.to_bits().saturating_add_signed(step));
                    if !(0.0..1.0).contains(&coin) {
                        continue;
                    }
                    let sampled = sample_topp(&probs, top_p, coin, scratch);
                    for claimed in claims(&probs, sampled, rng) {
                        assert_eq!(
                            topp_picks(&probs, top_p, coin, claimed, scratch),
                            claimed == sampled,
                            "case {case}, coin {coin}, claimed {claimed}"
                        );
                        checked += 1;
                    }
                }
            }
            checked
        });
        assert!(checked > 5000, "{checked}");
    }

    #[test]
    fn sums_without_order_are_the_ordered_sums_or_none() {
        // Descending probabilities added in order, against the order-free sum of the tail.
        let mut rng = Rng::new(31);
        let (mut agreed, mut refused) = (0, 0);
        for _ in 0..3000 {
            // A head of larger probabilities, then a tail in one power-of-two range (a bucket).
            let len = 2 + (rng.next_u32() % 200) as usize;
            let scale = [1.0f32 / 1024.0, 1.0 / 131_072.0, 1.0 / 4_194_304.0]
                [(rng.next_u32() % 3) as usize];
            let head = 1 + (rng.next_u32() as usize % (len - 1));
            let mut ps: Vec<f32> = (0..len)
                .map(|i| {
                    let u = 1.0 + rng.next_f32();
                    if i < head {
                        u * 2.0 * scale
                    } else {
                        u * scale
                    }
                })
                .collect();
            ps.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let tail_exp = ps[head].to_bits() >> 23;
            if ps[head..].iter().any(|p| p.to_bits() >> 23 != tail_exp) {
                continue;
            }
            let s: f32 = ps[..head].iter().fold(0.0, |s, p| s + p);
            let mut ordered = s;
            for p in &ps[head..] {
                ordered += p;
            }
            let mut keys: Vec<u64> = ps[head..]
                .iter()
                .enumerate()
                .map(|(i, &p)| candidate_key(i, p))
                .collect();
            keys.reverse(); // any order
            match sum_without_order(&keys, s, 1.0) {
                Some(sum) => {
                    assert_eq!(sum.to_bits(), ordered.to_bits(), "{len} from {head}");
                    agreed += 1;
                }
                None => refused += 1,
            }
        }
        assert!(
            agreed > 1000 && refused > 100,
            "{agreed} agreed, {refused} refused"
        );
    }

    #[test]
    fn the_radix_sort_orders_keys_as_a_comparison_sort() {
        let mut rng = Rng::new(9);
        let mut spare = Vec::new();
        for n in [0, 1, 2, 3, 200, 5000] {
            for spread in [1u32, 7, u32::MAX] {
                let mut keys: Vec<u64> = (0..n)
                    .map(|i| {
                        let high = u64::from(rng.next_u32() % spread.max(1));
                        (high << 32) | i as u64
                    })
                    .collect();
                let mut want = keys.clone();
                want.sort_unstable();
                // Keys made in index order: sorting the high half alone (stable) is enough.
                let mut high_only = keys.clone();
                radix_sort(&mut keys, &mut spare, 0);
                assert_eq!(keys, want, "n {n}, spread {spread}");
                radix_sort(&mut high_only, &mut spare, 32);
                assert_eq!(high_only, want, "n {n}, spread {spread}, high digits");
            }
        }
    }

    #[test]
    fn selection_handles_nan_and_degenerate_distributions_as_before() {
        let mut scratch = Candidates::default();
        for probs in [
            vec![f32::NAN; 5],
            vec![0.0, 0.0, 1.0],
            vec![0.25; 4],
            vec![1.0],
            vec![0.5, f32::NAN, 0.5],
        ] {
            for coin in [0.0f32, 0.3, 0.999] {
                assert_eq!(
                    sample_topp(&probs, 0.9, coin, &mut scratch),
                    sample_topp_by_full_sort(&probs, 0.9, coin),
                    "{probs:?}"
                );
            }
        }
    }
}
