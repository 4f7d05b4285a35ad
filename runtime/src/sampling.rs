//! Token sampling with llama.cpp's defaults and order (`bitnet-gguf.md` §5).
//!
//! Chain for temperature > 0: repetition penalties → top-k → top-p → min-p → temperature →
//! softmax → draw. The draw reproduces llama-cli's `std::discrete_distribution` over a
//! `std::mt19937` seeded with the seed (libstdc++'s algorithm: one `generate_canonical<double>`
//! from two 32-bit outputs, then a lower-bound search in the cumulative probabilities), so a
//! seeded run is reproducible on every machine and thread count. Temperature ≤ 0 is greedy:
//! the highest logit after penalties, ties to the lowest id.

use std::collections::VecDeque;

use rand_mt::Mt19937GenRand32;

/// Sampling parameters; `Default` gives llama-cli's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; ≤ 0 means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; ≤ 0 keeps all.
    pub top_k: i32,
    /// Keep the smallest set whose probability reaches p; ≥ 1 disables.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely; ≤ 0 disables.
    pub min_p: f32,
    /// Repetition penalty; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted once per occurrence in the window.
    pub frequency_penalty: f32,
    /// Subtracted once if present in the window.
    pub presence_penalty: f32,
    /// Random seed.
    pub seed: u32,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        }
    }
}

/// A stateful sampler: remembers recent tokens for penalties and owns its random generator.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Mt19937GenRand32,
    history: VecDeque<u32>,
}

/// A candidate token and its (adjusted) logit.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Candidate {
    id: u32,
    logit: f32,
}

impl Sampler {
    /// A sampler with the given parameters.
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Mt19937GenRand32::new(cfg.seed);
        Sampler {
            cfg,
            rng,
            history: VecDeque::new(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records a token (prompt or generated) for the repetition penalties.
    pub fn accept(&mut self, id: u32) {
        if self.cfg.repeat_last_n == 0 {
            return;
        }
        if self.history.len() == self.cfg.repeat_last_n {
            self.history.pop_front();
        }
        self.history.push_back(id);
    }

    /// Picks the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut cands: Vec<Candidate> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            })
            .collect();
        self.apply_penalties(&mut cands);
        if self.cfg.temperature <= 0.0 {
            return greedy(&cands);
        }
        let k = self.cfg.top_k;
        if k > 0 && (k as usize) < cands.len() {
            // Partial selection first: sorting a 128K vocabulary every token is wasted work.
            cands.select_nth_unstable_by(k as usize - 1, order_desc);
            cands.truncate(k as usize);
        }
        sort_desc(&mut cands);
        top_p(&mut cands, self.cfg.top_p);
        min_p(&mut cands, self.cfg.min_p);
        for c in cands.iter_mut() {
            c.logit /= self.cfg.temperature;
        }
        let probs = softmax_sorted(&cands);
        let idx = discrete_draw(&mut self.rng, &probs);
        cands[idx].id
    }

    fn apply_penalties(&self, cands: &mut [Candidate]) {
        let c = &self.cfg;
        if self.history.is_empty()
            || (c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0)
        {
            return;
        }
        let mut counts = std::collections::HashMap::<u32, u32>::new();
        for &id in &self.history {
            *counts.entry(id).or_default() += 1;
        }
        for (&id, &n) in &counts {
            let Some(cand) = cands.get_mut(id as usize) else {
                continue;
            };
            if cand.logit > 0.0 {
                cand.logit /= c.repeat_penalty;
            } else {
                cand.logit *= c.repeat_penalty;
            }
            cand.logit -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }
}

/// Highest logit; ties go to the lowest id.
fn greedy(cands: &[Candidate]) -> u32 {
    let mut best = cands[0];
    for &c in &cands[1..] {
        if c.logit > best.logit {
            best = c;
        }
    }
    best.id
}

/// Descending by logit; equal logits in ascending id order (a total order).
fn order_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Sorts with [`order_desc`].
fn sort_desc(cands: &mut [Candidate]) {
    cands.sort_by(order_desc);
}

/// Softmax of sorted candidates (first is the maximum).
fn softmax_sorted(cands: &[Candidate]) -> Vec<f32> {
    let max = cands[0].logit;
    let exps: Vec<f32> = cands.iter().map(|c| (c.logit - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Keeps the shortest prefix whose cumulative probability reaches `p` (at least one).
fn top_p(cands: &mut Vec<Candidate>, p: f32) {
    if p >= 1.0 {
        return;
    }
    let probs = softmax_sorted(cands);
    let mut cum = 0.0f32;
    let mut keep = cands.len();
    for (i, pr) in probs.iter().enumerate() {
        cum += pr;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep.max(1));
}

/// Keeps candidates whose logit is at least `max + ln(min_p)`.
fn min_p(cands: &mut Vec<Candidate>, min_p: f32) {
    if min_p <= 0.0 || cands.is_empty() {
        return;
    }
    let threshold = cands[0].logit + min_p.ln();
    let keep = cands.iter().take_while(|c| c.logit >= threshold).count();
    cands.truncate(keep.max(1));
}

/// libstdc++'s `generate_canonical<double, 53>` over a 32-bit Mersenne Twister.
fn canonical(rng: &mut Mt19937GenRand32) -> f64 {
    let lo = f64::from(rng.next_u32());
    let hi = f64::from(rng.next_u32());
    let r = (lo + hi * 4294967296.0) / 18446744073709551616.0;
    if r >= 1.0 {
        1.0 - f64::EPSILON / 2.0
    } else {
        r
    }
}

/// libstdc++'s `discrete_distribution`: normalized cumulative sums (last forced to 1) and a
/// lower-bound search for one canonical draw.
fn discrete_draw(rng: &mut Mt19937GenRand32, probs: &[f32]) -> usize {
    let total: f64 = probs.iter().map(|&p| f64::from(p)).sum();
    let mut cum = Vec::with_capacity(probs.len());
    let mut acc = 0.0f64;
    for &p in probs {
        acc += f64::from(p) / total;
        cum.push(acc);
    }
    if let Some(last) = cum.last_mut() {
        *last = 1.0;
    }
    let u = canonical(rng);
    cum.partition_point(|&c| c < u).min(probs.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            seed: 42,
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn greedy_ties_go_to_lowest_id() {
        let mut s = Sampler::new(cfg(0.0));
        assert_eq!(s.sample(&[0.5, 2.0, 1.0, 2.0]), 1);
    }

    #[test]
    fn repetition_penalty_changes_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..cfg(0.0)
        });
        s.accept(1);
        // 3.0 / 2 = 1.5 < 2.0
        assert_eq!(s.sample(&[0.0, 3.0, 2.0]), 2);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37 % 100) as f32) / 10.0).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg(1.0) });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        let mut k1 = Sampler::new(SamplerConfig {
            top_k: 1,
            ..cfg(1.5)
        });
        let best = greedy(
            &logits
                .iter()
                .enumerate()
                .map(|(i, &l)| Candidate {
                    id: i as u32,
                    logit: l,
                })
                .collect::<Vec<_>>(),
        );
        assert!((0..10).all(|_| k1.sample(&logits) == best));
    }

    #[test]
    fn top_k_keeps_the_k_largest_with_ties_to_lower_ids() {
        let logits = [1.0, 5.0, 3.0, 5.0, 2.0, 3.0];
        let mut c: Vec<Candidate> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            })
            .collect();
        c.select_nth_unstable_by(2, order_desc);
        c.truncate(3);
        sort_desc(&mut c);
        assert_eq!(c.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 3, 2]);
    }

    #[test]
    fn filters_keep_what_they_should() {
        let mut c: Vec<Candidate> = [3.0f32, 2.0, 1.0, -5.0]
            .iter()
            .enumerate()
            .map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l,
            })
            .collect();
        min_p(&mut c, 0.05); // ln(0.05) ≈ −3.0 → threshold 0.0
        assert_eq!(c.len(), 3);
        top_p(&mut c, 0.5); // first candidate alone has p ≈ 0.665
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn draws_follow_the_distribution() {
        let mut rng = Mt19937GenRand32::new(1);
        let probs = [0.7f32, 0.2, 0.1];
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[discrete_draw(&mut rng, &probs)] += 1;
        }
        for (c, p) in counts.iter().zip(probs) {
            assert!((*c as f32 / 20000.0 - p).abs() < 0.02, "{counts:?}");
        }
    }

    #[test]
    fn mt19937_matches_the_standard_sequence() {
        // The C++ standard requires the 10000th output of a default-seeded mt19937 to be 4123659995.
        let mut rng = Mt19937GenRand32::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = rng.next_u32();
        }
        assert_eq!(v, 4123659995);
    }
}
