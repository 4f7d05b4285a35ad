//! The library API: one loaded engine shared by threads, independent sessions that generate
//! concurrently and give exactly the tokens each gives alone, streaming and cancellation through
//! the callback, and logits access.

use std::path::PathBuf;
use std::process::Command;

use bitnetc::runtime::{LogitsFor, SamplerConfig};
use bitnetc::{Engine, EngineOptions, GenerateRequest, TuningSource};

fn tiny(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("tiny.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_bitnetc"))
        .args(["gen-model", "--preset", "tiny", "--seed", "9", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn request(prompt: &[u32], seed: u32, n: usize) -> GenerateRequest {
    GenerateRequest {
        sampler: SamplerConfig {
            temperature: if seed == 0 { 0.0 } else { 0.9 },
            seed,
            ..SamplerConfig::default()
        },
        stop_at_eog: false,
        ..GenerateRequest::greedy(prompt.to_vec(), n)
    }
}

#[test]
fn four_sessions_on_four_threads_match_their_solo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(&dir);
    let opts = EngineOptions {
        threads: 2,
        tuning: TuningSource::Off,
        ..EngineOptions::default()
    };
    let engine = Engine::load(&path, &opts).unwrap();
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|i| (0..5 + i).map(|j| (j * 31 + i * 7 + 1) % 500).collect())
        .collect();
    let seeds = [0u32, 1, 2, 3];
    let solo: Vec<Vec<u32>> = prompts
        .iter()
        .zip(seeds)
        .map(|(p, seed)| {
            let mut s = engine.new_session(p.len() + 20);
            engine
                .generate(&mut s, &request(p, seed, 20), |_| true)
                .unwrap()
                .generated_ids
        })
        .collect();
    let together: Vec<Vec<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .zip(seeds)
            .map(|(p, seed)| {
                let engine = &engine;
                scope.spawn(move || {
                    let mut s = engine.new_session(p.len() + 20);
                    engine
                        .generate(&mut s, &request(p, seed, 20), |_| true)
                        .unwrap()
                        .generated_ids
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, solo);
    assert!(solo.iter().all(|ids| ids.len() == 20));
}

#[test]
fn streaming_cancellation_and_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(&dir);
    let engine = Engine::load(
        &path,
        &EngineOptions {
            tuning: TuningSource::Off,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let prompt = engine.tokenize("hello world", true);
    let mut s = engine.new_session(64);
    let mut streamed = Vec::new();
    let out = engine
        .generate(&mut s, &request(&prompt, 0, 30), |id| {
            streamed.push(id);
            streamed.len() < 7
        })
        .unwrap();
    assert_eq!(out.generated_ids, streamed);
    assert_eq!(streamed.len(), 7, "the callback's false stops generation");

    // The first generated token is the argmax of the prompt's last logits.
    let mut s2 = engine.new_session(64);
    let logits = engine.forward(&mut s2, &prompt, LogitsFor::Last).unwrap();
    assert_eq!(logits.len(), engine.model().config.n_vocab as usize);
    let argmax = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .unwrap()
        .0 as u32;
    assert_eq!(streamed[0], argmax);
}
