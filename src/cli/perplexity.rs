//! `bitnetc perplexity`: perplexity of a text, the llama.cpp way.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bitnetc::bench::perplexity::{perplexity as score, PerplexityOptions};
use bitnetc::Engine;
use clap::Args;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per window (windows do not overlap; the second half of each is scored).
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    pub ctx: usize,
    /// Tokens per forward pass.
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    pub batch: usize,
}

pub fn perplexity(a: PerplexityArgs) -> anyhow::Result<()> {
    let engine = Engine::load(&a.model.model, &a.model.engine_options())?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    eprintln!("perplexity: tokenizing the input ..");
    let t0 = Instant::now();
    let tokens = engine.tokenize(&text, true);
    eprintln!(
        "perplexity: tokenization took {:.3} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let n_chunks = tokens.len() / a.ctx.max(1);
    eprintln!(
        "perplexity: calculating perplexity over {n_chunks} chunks, n_ctx={}, batch_size={}, \
         threads={}",
        a.ctx,
        a.batch.min(a.ctx),
        engine.threads()
    );
    let start = Instant::now();
    let res = score(
        &engine,
        &tokens,
        PerplexityOptions {
            n_ctx: a.ctx,
            n_batch: a.batch,
        },
        |i, ppl| {
            if i == 0 {
                let per = start.elapsed().as_secs_f64();
                eprintln!(
                    "perplexity: {per:.2} seconds per pass - ETA {:.2} minutes",
                    per * n_chunks as f64 / 60.0
                );
            }
            // Streamed as llama.cpp does; a closed pipe only stops the printing.
            let _ = super::print_stdout(&format!("[{}]{ppl:.4},", i + 1));
        },
    )?;
    super::print_stdout(&format!(
        "\nFinal estimate: PPL = {:.4} +/- {:.5}\n",
        res.ppl, res.ppl_error
    ))?;
    eprintln!(
        "perplexity: {} tokens, {} scored, {:.2} s",
        res.n_tokens, res.n_scored, res.seconds
    );
    Ok(())
}
