//! The pp and tg tests, llama-bench style.
//!
//! * `pp<p>`: one forward pass over a batch of `p` prompt tokens (BOS, then seeded
//!   pseudo-random ids) in a fresh context; throughput is `p / time`, and the time to first
//!   token is that time plus picking the token from the logits.
//! * `tg<n>`: a fresh context reads a short prompt (`tg_prompt` tokens), then decodes `n` tokens
//!   one at a time, each fed back after a greedy pick; throughput is `n / decode time`, each
//!   step's time is a per-token latency, and the time to first token covers the prompt.
//!
//! Each test runs once unmeasured (warm-up: caches, page faults, thread start-up) and then
//! `repetitions` times measured.

use std::time::Instant;

use anyhow::bail;
use bitnetc_runtime::LogitsFor;
use rand::{Rng, SeedableRng};

use super::host::peak_rss_bytes;
use super::receipt::TestResult;
use super::stats::{Figure, Latency};
use crate::Engine;

/// One test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Prompt processing of this many tokens.
    Pp(usize),
    /// Text generation of this many tokens.
    Tg(usize),
}

impl Test {
    /// llama-bench's name: `pp512`, `tg128`.
    pub fn name(self) -> String {
        match self {
            Test::Pp(n) => format!("pp{n}"),
            Test::Tg(n) => format!("tg{n}"),
        }
    }
}

/// How to run the tests.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Measured repetitions.
    pub repetitions: usize,
    /// Warm-up runs (0 or 1).
    pub warmup_runs: usize,
    /// Prompt tokens before a tg test decodes.
    pub tg_prompt: usize,
    /// Seed of the prompt tokens.
    pub token_seed: u64,
}

/// Timings of one repetition.
#[derive(Clone, Debug, Default)]
struct Rep {
    seconds: f64,
    tokens: usize,
    ttft_s: f64,
    token_latencies_s: Vec<f64>,
}

/// Prompt ids: BOS when the model has one, then ids drawn from the vocabulary.
pub fn prompt_tokens(engine: &Engine, n: usize, seed: u64) -> Vec<u32> {
    let tok = &engine.model().tokenizer;
    let n_vocab = engine.model().config.n_vocab;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids = Vec::with_capacity(n);
    if let Some(bos) = tok.bos_id() {
        ids.push(bos);
    }
    while ids.len() < n {
        ids.push(rng.gen_range(0..n_vocab));
    }
    ids.truncate(n);
    ids
}

/// Index of the largest logit (ties to the lowest index).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn run_once(
    engine: &Engine,
    test: Test,
    cfg: &RunnerConfig,
    n_override: Option<usize>,
) -> anyhow::Result<Rep> {
    match test {
        Test::Pp(p) => {
            let ids = prompt_tokens(engine, p, cfg.token_seed);
            let mut session = engine.new_session(p);
            let t0 = Instant::now();
            let logits = engine.forward(&mut session, &ids, LogitsFor::Last)?;
            let _first = argmax(&logits);
            let s = t0.elapsed().as_secs_f64();
            Ok(Rep {
                seconds: s,
                tokens: p,
                ttft_s: s,
                token_latencies_s: Vec::new(),
            })
        }
        Test::Tg(n) => {
            let n = n_override.unwrap_or(n);
            let ids = prompt_tokens(engine, cfg.tg_prompt.max(1), cfg.token_seed);
            let mut session = engine.new_session(ids.len() + n);
            let t0 = Instant::now();
            let logits = engine.forward(&mut session, &ids, LogitsFor::Last)?;
            let mut next = argmax(&logits);
            let ttft_s = t0.elapsed().as_secs_f64();
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let logits = engine.forward(&mut session, &[next], LogitsFor::Last)?;
                next = argmax(&logits);
                lat.push(t.elapsed().as_secs_f64());
            }
            Ok(Rep {
                seconds: lat.iter().sum(),
                tokens: n,
                ttft_s,
                token_latencies_s: lat,
            })
        }
    }
}

/// Checks that the engine's model can hold the test's context.
pub fn check_fits(engine: &Engine, test: Test, tg_prompt: usize) -> anyhow::Result<()> {
    let n_ctx = engine.model().config.n_ctx as usize;
    let need = match test {
        Test::Pp(p) => p,
        Test::Tg(n) => tg_prompt.max(1) + n,
    };
    if need > n_ctx {
        bail!(
            "test {} needs {need} positions but the model's context is {n_ctx}",
            test.name()
        );
    }
    if need == 0 {
        bail!("test {} evaluates no tokens", test.name());
    }
    Ok(())
}

/// Runs one test (warm-up, then the repetitions) on `engine`. `progress(what, done)` is called
/// before each run (`done` false) and after it (`done` true); `what` is `warm-up` or `rep i/n`.
pub fn run_test(
    engine: &Engine,
    test: Test,
    cfg: &RunnerConfig,
    mut progress: impl FnMut(&str, bool),
) -> anyhow::Result<TestResult> {
    check_fits(engine, test, cfg.tg_prompt)?;
    for _ in 0..cfg.warmup_runs {
        // A tg warm-up decodes a few tokens only: enough to touch every weight and buffer.
        let short = match test {
            Test::Tg(n) => Some(n.min(8)),
            Test::Pp(_) => None,
        };
        progress("warm-up", false);
        run_once(engine, test, cfg, short)?;
        progress("warm-up", true);
    }
    let mut reps = Vec::with_capacity(cfg.repetitions);
    for r in 0..cfg.repetitions {
        let what = format!("rep {}/{}", r + 1, cfg.repetitions);
        progress(&what, false);
        reps.push(run_once(engine, test, cfg, None)?);
        progress(&what, true);
    }
    Ok(summarize(engine, test, &reps))
}

fn summarize(engine: &Engine, test: Test, reps: &[Rep]) -> TestResult {
    let tps = reps
        .iter()
        .map(|r| {
            if r.seconds > 0.0 {
                r.tokens as f64 / r.seconds
            } else {
                0.0
            }
        })
        .collect();
    let (n_prompt, n_gen, kind) = match test {
        Test::Pp(p) => (p, 0, "pp"),
        Test::Tg(n) => (0, n, "tg"),
    };
    let latencies: Vec<f64> = reps
        .iter()
        .flat_map(|r| r.token_latencies_s.iter().map(|s| s * 1e3))
        .collect();
    TestResult {
        test: test.name(),
        kind: kind.into(),
        n_prompt,
        n_gen,
        backend: engine.backend_name().into(),
        threads: engine.threads(),
        load_s: engine.load_seconds(),
        compile_s: engine.compile_seconds(),
        tokens_per_s: Figure::new(tps),
        seconds: reps.iter().map(|r| r.seconds).collect(),
        ttft_ms: Figure::new(reps.iter().map(|r| r.ttft_s * 1e3).collect()),
        token_latency_ms: matches!(test, Test::Tg(_)).then(|| Latency::new(latencies)),
        peak_rss_bytes: peak_rss_bytes(),
        weight_bytes_per_token: matches!(test, Test::Tg(_))
            .then(|| engine.model().graph.decode_weight_bytes()),
        of_bandwidth_ceiling: None,
    }
}
