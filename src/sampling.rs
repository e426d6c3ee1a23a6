//! Token selection: greedy, temperature, top-k, top-p, min-p, repetition penalty, a seeded RNG;
//! and [`StopStrings`], which cuts generated text at stop strings.
//!
//! The order of operations is llama.cpp's default sampler chain: repetition penalty → top-k →
//! top-p → min-p → temperature → draw. Top-p and min-p therefore look at the untempered
//! distribution (HF applies temperature first; with top-p = 1 and min-p = 0 both agree).
//!
//! The RNG is our own xoshiro256** seeded through SplitMix64: the same seed, parameters and
//! logits give the same tokens on every platform and build.

use crate::error::{Error, Result};

/// How the next token is chosen. Every knob has an "off" value; [`Default`] is greedy with all
/// of them off.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; `0` = greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; `1` = off.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; `0` = off.
    pub min_p: f32,
    /// Divide positive logits and multiply negative ones of recently seen tokens by this
    /// (llama.cpp `repeat_penalty`, HF `repetition_penalty`); `1` = off.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens the penalty looks at (llama.cpp `repeat_last_n`).
    pub penalty_last_n: usize,
    /// RNG seed (used only when `temperature > 0`).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: [`SamplingParams::default`].
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Checks every field; an invalid one is an [`Error::InvalidArgument`] naming it.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(Error::invalid(
                "temperature",
                format!("{} is not a finite value >= 0", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid("top_p", format!("{} is outside (0, 1]", self.top_p)));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::invalid("min_p", format!("{} is outside [0, 1]", self.min_p)));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return Err(Error::invalid(
                "repetition_penalty",
                format!("{} is not a finite value > 0", self.repetition_penalty),
            ));
        }
        Ok(())
    }

    fn penalty_active(&self) -> bool {
        self.repetition_penalty.is_finite()
            && self.repetition_penalty > 0.0
            && self.repetition_penalty != 1.0
            && self.penalty_last_n > 0
    }
}

/// xoshiro256** (Blackman & Vigna), seeded with SplitMix64.
#[derive(Clone, Debug)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        // SplitMix64 never yields four zeros in a row, so the state is valid.
        Rng { s: [splitmix(), splitmix(), splitmix(), splitmix()] }
    }

    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A token id with its (penalized) logit.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Most likely first; ties broken by the lower id, so the order is total and deterministic.
fn by_likelihood(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Chooses tokens from logits. One per generated sequence; not shared between threads.
///
/// Scratch buffers are kept between calls: the greedy path without penalty touches no memory
/// but the logits, and the other paths reuse their buffers (no allocation once they have grown
/// to the vocabulary size).
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    penalized: Vec<f32>,
    candidates: Vec<Candidate>,
}

impl Sampler {
    /// A sampler for `params`, its RNG seeded with `params.seed`.
    ///
    /// Call [`SamplingParams::validate`] first: invalid values do not panic here but fall back
    /// to something sane (a temperature that is not > 0 means greedy, a `top_p` <= 0 keeps
    /// the most likely token, NaN `top_p`/`min_p` and a penalty <= 0 are off).
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = Rng::new(params.seed);
        Sampler { params, rng, penalized: Vec::new(), candidates: Vec::new() }
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token from `logits` (one per vocabulary id); `recent` are the tokens so
    /// far (prompt and generated), the last `penalty_last_n` of which are penalized.
    ///
    /// NaN logits are never chosen; if no logit is finite, returns 0. Ids in `recent` outside
    /// the logits are ignored. Panics only if `logits` is empty (a model always has a vocabulary).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        assert!(!logits.is_empty(), "Sampler::sample needs at least one logit");
        let Sampler { params, rng, penalized, candidates } = self;
        let logits: &[f32] = if params.penalty_active() {
            penalize(penalized, logits, recent, params);
            penalized
        } else {
            logits
        };
        if params.temperature.is_nan() || params.temperature <= 0.0 {
            return argmax(logits);
        }
        draw(params, rng, candidates, logits)
    }
}

/// The index of the largest logit, the lowest on ties; NaN never wins; 0 if none is > -inf.
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    // Two passes the compiler vectorizes: the maximum over 8 lanes (NaN never compares
    // greater), then its first position.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &l) in lanes.iter_mut().zip(chunk) {
            if l > *lane {
                *lane = l;
            }
        }
    }
    let max = lanes.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    if max == f32::NEG_INFINITY {
        return 0;
    }
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

/// Copies `logits` into `out` and applies the repetition penalty to the distinct ids among the
/// last `penalty_last_n` of `recent` (each once: the value is computed from the original logit).
fn penalize(out: &mut Vec<f32>, logits: &[f32], recent: &[u32], params: &SamplingParams) {
    out.clear();
    out.extend_from_slice(logits);
    let p = params.repetition_penalty;
    let window = &recent[recent.len().saturating_sub(params.penalty_last_n)..];
    for &id in window {
        if let Some(&l) = logits.get(id as usize) {
            out[id as usize] = if l > 0.0 { l / p } else { l * p };
        }
    }
}

/// Top-k → top-p → min-p → temperature → one draw.
fn draw(params: &SamplingParams, rng: &mut Rng, cand: &mut Vec<Candidate>, logits: &[f32]) -> u32 {
    cand.clear();
    cand.extend(
        logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &logit)| Candidate { id: i as u32, logit }),
    );
    if cand.is_empty() {
        return argmax(logits);
    }
    if params.top_k > 0 && params.top_k < cand.len() {
        cand.select_nth_unstable_by(params.top_k - 1, by_likelihood);
        cand.truncate(params.top_k);
    }
    if params.top_p > 0.0 && params.top_p < 1.0 {
        top_p(cand, params.top_p);
    } else if params.top_p <= 0.0 {
        // Not validated: an empty nucleus keeps the single most likely token.
        top_p(cand, f32::MIN_POSITIVE);
    }
    if params.min_p > 0.0 && params.min_p <= 1.0 {
        let max = cand.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
        let threshold = max + params.min_p.ln();
        cand.retain(|c| c.logit >= threshold);
    }
    let max = cand.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / params.temperature;
    // From here on `logit` holds the unnormalized probability exp((logit - max) / T).
    let mut total = 0.0f64;
    for c in cand.iter_mut() {
        c.logit = ((c.logit - max) * inv_t).exp();
        total += f64::from(c.logit);
    }
    let mut r = rng.next_f64() * total;
    for c in cand.iter() {
        r -= f64::from(c.logit);
        if r < 0.0 {
            return c.id;
        }
    }
    // Rounding left r >= 0 after the last weight: the last candidate.
    cand.last().map_or_else(|| argmax(logits), |c| c.id)
}

/// Keeps the smallest most-likely prefix whose probability (softmax over `cand`) reaches `p`.
/// Sorts only as much of `cand` as needed: the nucleus is usually small.
fn top_p(cand: &mut Vec<Candidate>, p: f32) {
    let max = cand.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let weight = |c: &Candidate| (f64::from(c.logit) - f64::from(max)).exp();
    let total: f64 = cand.iter().map(weight).sum();
    let target = f64::from(p) * total;
    let mut sorted = 0usize;
    let mut cum = 0.0f64;
    let mut prefix = 64usize.min(cand.len());
    loop {
        if prefix < cand.len() {
            // `cand[..sorted]` already holds the most likely `sorted`, in order.
            cand[sorted..].select_nth_unstable_by(prefix - sorted - 1, by_likelihood);
        }
        cand[sorted..prefix].sort_unstable_by(by_likelihood);
        for i in sorted..prefix {
            cum += weight(&cand[i]);
            if cum >= target {
                cand.truncate(i + 1);
                return;
            }
        }
        if prefix == cand.len() {
            return;
        }
        sorted = prefix;
        prefix = (prefix * 4).min(cand.len());
    }
}

/// What [`StopStrings::push`] lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// Text safe to show now (never part of a stop string).
    pub emit: String,
    /// A stop string was found: generation should end; nothing after it is emitted.
    pub stopped: bool,
}

/// Cuts streamed text at the first stop string.
///
/// Text that might be the start of a stop string is held back until it is known not to be;
/// the stop string itself and everything after it are never emitted. One per generated
/// sequence.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    pending: String,
    stopped: bool,
}

impl StopStrings {
    /// A matcher for `stops`; empty strings are ignored (they would match everywhere).
    pub fn new<I, S>(stops: I) -> StopStrings
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let stops = stops.into_iter().map(Into::into).filter(|s: &String| !s.is_empty()).collect();
        StopStrings { stops, pending: String::new(), stopped: false }
    }

    /// Whether a stop string has been seen.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the next piece of generated text; returns what can be shown and whether a stop
    /// string ended the text. After a stop, every push returns nothing and `stopped`.
    pub fn push(&mut self, piece: &str) -> StopOutcome {
        if self.stopped {
            return StopOutcome { emit: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return StopOutcome { emit: piece.to_string(), stopped: false };
        }
        self.pending.push_str(piece);
        let first = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(at) = first {
            self.pending.truncate(at);
            self.stopped = true;
            return StopOutcome { emit: std::mem::take(&mut self.pending), stopped: true };
        }
        let keep = self.held_back_len();
        let emit: String = self.pending.drain(..self.pending.len() - keep).collect();
        StopOutcome { emit, stopped: false }
    }

    /// Ends the text (no more pieces): returns what was held back, and resets the matcher.
    pub fn finish(&mut self) -> String {
        self.stopped = false;
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn held_back_len(&self) -> usize {
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let earliest = self.pending.len().saturating_sub(longest.saturating_sub(1));
        for (start, _) in self.pending.char_indices().filter(|(i, _)| *i >= earliest) {
            let suffix = &self.pending[start..];
            if self.stops.iter().any(|s| s.starts_with(suffix)) {
                return self.pending.len() - start;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams { temperature, seed: 7, ..SamplingParams::default() }
    }

    /// Deterministic pseudo-random logits for tests.
    fn logits(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| (rng.next_f64() * 10.0 - 5.0) as f32).collect()
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(SamplingParams::default().validate().is_ok());
        let cases: [(&str, SamplingParams); 8] = [
            ("temperature", SamplingParams { temperature: f32::NAN, ..Default::default() }),
            ("temperature", SamplingParams { temperature: -0.1, ..Default::default() }),
            ("temperature", SamplingParams { temperature: f32::INFINITY, ..Default::default() }),
            ("top_p", SamplingParams { top_p: 0.0, ..Default::default() }),
            ("top_p", SamplingParams { top_p: 1.5, ..Default::default() }),
            ("min_p", SamplingParams { min_p: -0.5, ..Default::default() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: 0.0, ..Default::default() }),
            ("repetition_penalty", SamplingParams { repetition_penalty: f32::NAN, ..Default::default() }),
        ];
        for (field, p) in cases {
            match p.validate() {
                Err(Error::InvalidArgument { name, .. }) => assert_eq!(name, field),
                other => panic!("{field}: expected InvalidArgument, got {other:?}"),
            }
        }
    }

    #[test]
    fn greedy_takes_the_lowest_index_among_ties_and_skips_nan() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, 0.5, f32::NAN, 0.5], &[]), 1);
        assert_eq!(s.sample(&[f32::NEG_INFINITY, f32::NAN], &[]), 0);
        assert_eq!(s.sample(&[-2.0, -1.0], &[]), 1);
    }

    #[test]
    fn argmax_is_exact_across_lanes_and_remainder() {
        let mut l = vec![f32::NAN; 37];
        l[3] = 1.0;
        l[17] = 5.0;
        l[9] = 5.0;
        assert_eq!(argmax(&l), 9);
        l[36] = 6.0;
        assert_eq!(argmax(&l), 36);
        let l: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
        let want = l.iter().enumerate().fold(0, |b, (i, &x)| if x > l[b] { i } else { b });
        assert_eq!(argmax(&l) as usize, want);
    }

    #[test]
    fn greedy_without_penalty_uses_no_scratch() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let l = logits(1000, 1);
        for _ in 0..10 {
            s.sample(&l, &[1, 2, 3]);
        }
        assert_eq!((s.penalized.capacity(), s.candidates.capacity()), (0, 0));
        // With a penalty the copy is made once and reused.
        let mut s = Sampler::new(SamplingParams { repetition_penalty: 1.3, ..SamplingParams::greedy() });
        s.sample(&l, &[1, 2, 3]);
        let buffer = s.penalized.as_ptr();
        for _ in 0..10 {
            s.sample(&l, &[1, 2, 3]);
        }
        assert_eq!(s.penalized.as_ptr(), buffer);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let l = logits(500, 2);
        let run = |seed: u64| {
            let mut s = Sampler::new(SamplingParams { temperature: 1.5, seed, ..SamplingParams::default() });
            (0..200).map(|_| s.sample(&l, &[])).collect::<Vec<u32>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn top_k_one_and_tiny_top_p_equal_greedy() {
        for seed in 0..20 {
            let l = logits(300, seed);
            let greedy = Sampler::new(SamplingParams::greedy()).sample(&l, &[]);
            let mut k1 = Sampler::new(SamplingParams { top_k: 1, ..params(1.0) });
            let mut p0 = Sampler::new(SamplingParams { top_p: 1e-6, ..params(1.0) });
            let mut m1 = Sampler::new(SamplingParams { min_p: 1.0, ..params(1.0) });
            for _ in 0..20 {
                assert_eq!(k1.sample(&l, &[]), greedy);
                assert_eq!(p0.sample(&l, &[]), greedy);
                assert_eq!(m1.sample(&l, &[]), greedy);
            }
        }
    }

    #[test]
    fn temperature_one_follows_softmax() {
        // p = 1/7, 2/7, 4/7.
        let l = [0.0f32, 2f32.ln(), 4f32.ln()];
        let mut s = Sampler::new(params(1.0));
        let n = 30_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[s.sample(&l, &[]) as usize] += 1;
        }
        for (i, want) in [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0].iter().enumerate() {
            let got = counts[i] as f64 / n as f64;
            // The standard error is below 0.003; 0.02 is a generous bound.
            assert!((got - want).abs() < 0.02, "token {i}: frequency {got}, softmax {want}");
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (logits are log2 multiples).
        let l = [3f32.mul_add(2f32.ln(), 0.0), 2.0 * 2f32.ln(), 2f32.ln(), 2f32.ln()];
        let mut k2 = Sampler::new(SamplingParams { top_k: 2, ..params(1.0) });
        let mut p = Sampler::new(SamplingParams { top_p: 0.7, ..params(1.0) });
        let mut seen_k = [false; 4];
        let mut seen_p = [false; 4];
        for _ in 0..2000 {
            seen_k[k2.sample(&l, &[]) as usize] = true;
            seen_p[p.sample(&l, &[]) as usize] = true;
        }
        assert_eq!(seen_k, [true, true, false, false]);
        // 0.5 < 0.7 <= 0.75: the nucleus is the two most likely.
        assert_eq!(seen_p, [true, true, false, false]);
    }

    #[test]
    fn top_p_grows_its_sorted_prefix_on_flat_distributions() {
        // 1000 equal logits: the nucleus for 0.9 has 900 tokens, beyond the first 64 sorted.
        let l = vec![0.0f32; 1000];
        let mut s = Sampler::new(SamplingParams { top_p: 0.9, ..params(1.0) });
        let mut max_id = 0;
        for _ in 0..5000 {
            max_id = max_id.max(s.sample(&l, &[]));
        }
        assert!((800..900).contains(&max_id), "largest id drawn {max_id}");
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let p = SamplingParams { repetition_penalty: 1.5, ..SamplingParams::greedy() };
        let mut s = Sampler::new(p.clone());
        // 2.0 / 1.5 = 1.33 < 1.9: token 1 wins once 0 was seen.
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[]), 0);
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0]), 1);
        // Repeats in the window penalize once; ids outside the logits are ignored.
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0, 0, 0, 99]), 1);
        // -1.0 * 1.5 = -1.5 < -1.2.
        assert_eq!(s.sample(&[-1.0, -1.2], &[0]), 1);
        // Only the last `penalty_last_n` tokens count.
        let mut s = Sampler::new(SamplingParams { penalty_last_n: 2, ..p });
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0, 2, 2]), 0);
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[2, 0]), 1);
    }

    #[test]
    fn invalid_params_fall_back_to_off_without_panicking() {
        let l = logits(50, 3);
        let greedy = Sampler::new(SamplingParams::greedy()).sample(&l, &[]);
        let bad = SamplingParams {
            temperature: f32::NAN,
            top_p: f32::NAN,
            min_p: f32::NAN,
            repetition_penalty: -1.0,
            ..SamplingParams::default()
        };
        assert_eq!(Sampler::new(bad).sample(&l, &[1, 2]), greedy);
        let zero_p = SamplingParams { top_p: 0.0, ..params(1.0) };
        assert_eq!(Sampler::new(zero_p).sample(&l, &[]), greedy);
    }

    #[test]
    fn rng_matches_reference_xoshiro256starstar() {
        // State {1, 2, 3, 4}: first outputs of the reference C implementation.
        let mut r = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(got, [11520, 0, 1509978240, 1215971899390074240]);
        let x = Rng::new(0).next_f64();
        assert!((0.0..1.0).contains(&x));
    }

    fn push_all(stops: &mut StopStrings, pieces: &[&str]) -> (String, bool) {
        let mut text = String::new();
        for p in pieces {
            let o = stops.push(p);
            text.push_str(&o.emit);
            if o.stopped {
                return (text, true);
            }
        }
        text.push_str(&stops.finish());
        (text, false)
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_emitted() {
        let mut s = StopStrings::new(vec!["</s>".to_string()]);
        assert_eq!(s.push("Hello <"), StopOutcome { emit: "Hello ".into(), stopped: false });
        assert_eq!(s.push("/"), StopOutcome { emit: "".into(), stopped: false });
        assert_eq!(s.push("s> world"), StopOutcome { emit: "".into(), stopped: true });
        assert!(s.is_stopped());
        assert_eq!(s.push("more"), StopOutcome { emit: "".into(), stopped: true });
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let mut s = StopStrings::new(["</s>"]);
        assert_eq!(push_all(&mut s, &["a <", "b", " </", "x>"]), ("a <b </x>".to_string(), false));
        let mut s = StopStrings::new(["</s>"]);
        assert_eq!(push_all(&mut s, &["ends with <"]), ("ends with <".to_string(), false));
    }

    #[test]
    fn earliest_stop_wins_and_text_before_it_is_kept() {
        let mut s = StopStrings::new(["STOP", "\n\n", ""]);
        assert_eq!(push_all(&mut s, &["one\n", "\ntwo STOP"]), ("one".to_string(), true));
        let mut s = StopStrings::new(["xyz", "yz!"]);
        assert_eq!(push_all(&mut s, &["axy", "z!"]), ("a".to_string(), true));
    }

    #[test]
    fn stop_matching_respects_char_boundaries() {
        let mut s = StopStrings::new(["é!"]);
        let o = s.push("café");
        assert_eq!(o.emit, "caf");
        assert_eq!(s.push("!"), StopOutcome { emit: "".into(), stopped: true });
        let mut s = StopStrings::new(["日本"]);
        assert_eq!(push_all(&mut s, &["日", "曜日", "本"]), ("日曜".to_string(), true));
    }

    #[test]
    fn no_stop_strings_pass_everything_through() {
        let mut s = StopStrings::new(Vec::<String>::new());
        assert_eq!(s.push("abc"), StopOutcome { emit: "abc".into(), stopped: false });
        assert_eq!(s.finish(), "");
    }
}
