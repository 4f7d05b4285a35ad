//! `bitnetc run`: generate text from a prompt.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use bitnetc::{Engine, GenerateRequest};
use bitnetc_models::tokenizer::StreamDecoder;
use bitnetc_runtime::SamplerConfig;
use clap::Args;

use super::{BackendChoice, DeviceChoice, IsaChoice, ModelArgs};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Prompt text (special tokens such as <|eot_id|> are recognized).
    #[arg(short = 'p', long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids (no BOS is added).
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    /// Context size (default: prompt + n-predict, capped at the model's).
    #[arg(short = 'c', long)]
    pub ctx: Option<usize>,
    /// Keep generating after an end-of-generation token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object (prompt_ids, generated_ids, text, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Write the logits of every evaluated position as little-endian f32 [positions × n_vocab].
    #[arg(long)]
    pub dump_logits: Option<PathBuf>,
}

/// Sampling flags (llama-cli's defaults).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock, printed to stderr).
    #[arg(short = 's', long)]
    pub seed: Option<u32>,
}

impl SamplingArgs {
    /// The sampler configuration, and the seed actually used.
    pub fn config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
            if self.temp > 0.0 {
                eprintln!("seed: {s}");
            }
            s
        });
        SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed,
            ..SamplerConfig::default()
        }
    }
}

impl RunArgs {
    /// The arguments `bitnetc demo` runs with.
    pub fn demo(model: PathBuf, prompt: String, n_predict: usize) -> RunArgs {
        RunArgs {
            model: ModelArgs {
                model,
                threads: 0,
                backend: BackendChoice::Jit,
                device: DeviceChoice::Cpu,
                isa: IsaChoice::Native,
                activation: None,
                pre_tokenizer: None,
                cache_dir: None,
            },
            sampling: SamplingArgs {
                temp: 0.0,
                top_k: 40,
                top_p: 0.95,
                min_p: 0.05,
                repeat_penalty: 1.0,
                repeat_last_n: 64,
                seed: Some(0),
            },
            prompt: Some(prompt),
            prompt_ids: None,
            n_predict,
            ctx: None,
            ignore_eos: false,
            json: false,
            dump_logits: None,
        }
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let engine = Engine::load(&a.model.model, &a.model.engine_options())?;
    for w in &engine.model().warnings {
        eprintln!("warning: {w}");
    }
    let tok = &engine.model().tokenizer;
    let prompt_ids = match (&a.prompt, &a.prompt_ids) {
        (_, Some(ids)) => ids.clone(),
        (Some(p), None) => engine.tokenize(p, true),
        (None, None) => bail!("give a prompt with -p TEXT or --prompt-ids 1,2,3"),
    };
    if prompt_ids.is_empty() {
        bail!("the prompt is empty (no tokens to start from)");
    }
    let n_ctx = a.ctx.unwrap_or(prompt_ids.len() + a.n_predict);
    let mut session = engine.new_session(n_ctx);
    let req = GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_tokens: a.n_predict,
        sampler: a.sampling.config(),
        stop_at_eog: !a.ignore_eos,
        keep_logits: a.dump_logits.is_some(),
        batch_size: 512,
    };

    let mut stdout = std::io::stdout().lock();
    let mut decoder = StreamDecoder::new();
    let streaming = !a.json;
    let mut write_err = None;
    let result = engine.generate(&mut session, &req, |id| {
        if streaming {
            let piece = decoder.push(tok, id);
            if let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|_| stdout.flush())
            {
                write_err = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    if streaming {
        let rest = decoder.flush();
        writeln!(stdout, "{rest}").ok();
    }
    drop(stdout);
    if let Some(path) = &a.dump_logits {
        let bytes: Vec<u8> = result.logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)
            .with_context(|| format!("writing logits to {}", path.display()))?;
        eprintln!(
            "logits: {} positions × {} written to {}",
            result.logits.len() / engine.model().config.n_vocab as usize,
            engine.model().config.n_vocab,
            path.display()
        );
    }
    let t = &result.timings;
    if a.json {
        let doc = serde_json::json!({
            "prompt_ids": prompt_ids,
            "generated_ids": result.generated_ids,
            "text": tok.decode(&result.generated_ids),
            "timings": t,
            "backend": engine.backend_name(),
            "threads": engine.threads(),
        });
        super::print_stdout(&format!("{doc}\n"))?;
    }
    if let Some(j) = engine.jit() {
        eprintln!(
            "jit: {} kernels ({}) compiled in {:.1} ms, weights repacked in {:.1} ms",
            j.compiled_kernels().len() + j.head_kernels(),
            j.isa(),
            j.compile_time().as_secs_f64() * 1e3,
            j.repack_time().as_secs_f64() * 1e3
        );
    }
    eprintln!(
        "load {:.1} ms | prompt {} tokens, {:.2} tokens/s | generation {} tokens, {:.2} tokens/s",
        t.load_s * 1e3,
        t.prompt_tokens,
        t.prompt_tokens_per_s,
        t.gen_tokens,
        t.gen_tokens_per_s
    );
    Ok(())
}
