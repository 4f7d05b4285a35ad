//! Embedding bitnetc in a program: load a model once, share it between threads, give each
//! thread its own session (KV cache and sampler), stream tokens through a callback, and stop
//! a generation early from that callback.
//!
//! ```sh
//! bitnetc gen-model --preset tiny -o tiny.gguf
//! cargo run --example embed -- tiny.gguf
//! ```

use bitnetc::runtime::SamplerConfig;
use bitnetc::{Engine, EngineOptions, GenerateRequest};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: embed MODEL.gguf"))?;
    // One engine: the file is mapped and the kernels compiled once.
    let engine = Engine::load(&path, &EngineOptions::default())?;
    let prompt = engine.tokenize("The quick brown fox", true);

    // Two conversations at once over the same engine, each with its own session and seed.
    std::thread::scope(|s| {
        for seed in [1u32, 2] {
            let (engine, prompt) = (&engine, prompt.clone());
            s.spawn(move || -> anyhow::Result<()> {
                let mut session = engine.new_session(prompt.len() + 16);
                let req = GenerateRequest {
                    sampler: SamplerConfig {
                        temperature: 0.8,
                        seed,
                        ..SamplerConfig::default()
                    },
                    ..GenerateRequest::greedy(prompt, 16)
                };
                let mut streamed = Vec::new();
                // The callback sees each token as it is sampled; returning false cancels.
                let out = engine.generate(&mut session, &req, |id| {
                    streamed.push(id);
                    streamed.len() < 12
                })?;
                println!(
                    "seed {seed}: {} tokens streamed, text {:?}",
                    out.generated_ids.len(),
                    engine.model().tokenizer.decode(&out.generated_ids)
                );
                Ok(())
            });
        }
    });

    // Logits access: the next-token distribution after the prompt.
    let mut session = engine.new_session(prompt.len());
    let logits = engine.forward(&mut session, &prompt, bitnetc::runtime::LogitsFor::Last)?;
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0);
    println!("most likely next token after the prompt: {best}");
    Ok(())
}
