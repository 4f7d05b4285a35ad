//! Perplexity over a text, computed the way llama.cpp's `llama-perplexity` does.
//!
//! The whole text is tokenized once (BOS first when the model adds one) and cut into
//! non-overlapping windows of `n_ctx` tokens; a tail shorter than a window is dropped, and at
//! least two windows' worth of tokens are required. Each window is evaluated from an empty
//! context, in batches of `n_batch` tokens, with its first token replaced by BOS (when the model
//! adds one). Only the second half of each window is scored: for positions
//! `i = n_ctx/2 … n_ctx−2` the negative log-softmax of the next token, `−log p(t[i+1] | t[..=i])`.
//! PPL is `exp(mean NLL)` over every scored token so far, and its error is llama.cpp's
//! `ppl · sqrt((E[nll²] − E[nll]²) / (N − 1))`.

use std::time::Instant;

use anyhow::bail;
use bitnetc_runtime::LogitsFor;

use crate::Engine;

/// Window and batch sizes.
#[derive(Clone, Copy, Debug)]
pub struct PerplexityOptions {
    /// Tokens per window.
    pub n_ctx: usize,
    /// Tokens per forward pass (capped at `n_ctx`).
    pub n_batch: usize,
}

/// The outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityResult {
    /// Tokens in the text.
    pub n_tokens: usize,
    /// Window size.
    pub n_ctx: usize,
    /// Batch size actually used.
    pub n_batch: usize,
    /// Windows scored.
    pub n_chunks: usize,
    /// Running perplexity after each window.
    pub chunk_ppl: Vec<f64>,
    /// Final perplexity.
    pub ppl: f64,
    /// Its standard error.
    pub ppl_error: f64,
    /// Tokens scored.
    pub n_scored: usize,
    /// Seconds spent evaluating.
    pub seconds: f64,
}

/// `log p(tok)` from one row of logits: f32 max, f64 sum of `exp(l − max)` (as llama.cpp).
pub fn log_softmax_at(logits: &[f32], tok: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    f64::from(logits[tok] - max) - sum.ln()
}

/// Scores `tokens` (already tokenized, BOS included per the model) with `engine`, calling
/// `on_chunk(index, running_ppl)` after each window.
pub fn perplexity(
    engine: &Engine,
    tokens: &[u32],
    opts: PerplexityOptions,
    mut on_chunk: impl FnMut(usize, f64),
) -> anyhow::Result<PerplexityResult> {
    let n_ctx = opts.n_ctx;
    if n_ctx < 4 {
        bail!("--ctx must be at least 4 (got {n_ctx})");
    }
    let model_ctx = engine.model().config.n_ctx as usize;
    if n_ctx > model_ctx {
        bail!("--ctx {n_ctx} is larger than the model's context ({model_ctx})");
    }
    if tokens.len() < 2 * n_ctx {
        bail!(
            "you need at least {} tokens to evaluate perplexity with a context of {n_ctx} \
             (the text has {}); use a longer text or a smaller --ctx",
            2 * n_ctx,
            tokens.len()
        );
    }
    let n_batch = opts.n_batch.clamp(1, n_ctx);
    let n_vocab = engine.model().config.n_vocab as usize;
    let tok = &engine.model().tokenizer;
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    let n_chunks = tokens.len() / n_ctx;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    let mut chunk_ppl = Vec::with_capacity(n_chunks);
    let t0 = Instant::now();
    for chunk in 0..n_chunks {
        let start = chunk * n_ctx;
        let mut window = tokens[start..start + n_ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        let mut session = engine.new_session(n_ctx);
        let mut logits = Vec::with_capacity(n_ctx * n_vocab);
        for batch in window.chunks(n_batch) {
            logits.extend(engine.forward(&mut session, batch, LogitsFor::All)?);
        }
        crate::engine::check_finite_logits(
            &logits[first * n_vocab..],
            &format!("in window {chunk} of the perplexity text"),
        )?;
        // Position i predicts the original token at i + 1.
        for i in first..n_ctx - 1 {
            let next = tokens[start + i + 1] as usize;
            let v = -log_softmax_at(&logits[i * n_vocab..(i + 1) * n_vocab], next);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - 1 - first;
        let ppl = (nll / count as f64).exp();
        chunk_ppl.push(ppl);
        on_chunk(chunk, ppl);
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = nll2 / count as f64 - mean * mean;
    let ppl_error = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(PerplexityResult {
        n_tokens: tokens.len(),
        n_ctx,
        n_batch,
        n_chunks,
        chunk_ppl,
        ppl,
        ppl_error,
        n_scored: count,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_of_uniform_logits() {
        let l = [0.5f32; 8];
        assert!((log_softmax_at(&l, 3) + (8.0f64).ln()).abs() < 1e-9);
    }
}
