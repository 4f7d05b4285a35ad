//! `bitnetc gen-model`: write a synthetic model with a real architecture.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bitnetc_ir::DType;
use bitnetc_models::synth::{synthesize, Preset, SynthOptions};
use bitnetc_models::tokenizer::{builtin, hf};
use clap::Args;

#[derive(Args, Debug)]
pub struct GenModelArgs {
    /// Architecture: bitnet-b1.58 (2B4T graph) or bitnet (1bitLLM graph).
    #[arg(long, default_value = "bitnet-b1.58")]
    pub arch: String,
    /// Shapes: tiny, large (1bitLLM 700M) or 2b4t (BitNet b1.58 2B4T).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Ternary weight format: i2_s, tq1_0 or tq2_0.
    #[arg(long = "type", default_value = "i2_s")]
    pub ternary_type: String,
    /// Embedding format: f16, f32, bf16, q8_0 or q6_k.
    #[arg(long, default_value = "f16")]
    pub embedding_type: String,
    /// A Hugging Face tokenizer.json to embed instead of the built-in vocabulary.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

impl GenModelArgs {
    /// The tiny model `bitnetc demo` uses.
    pub fn tiny_demo(output: PathBuf) -> GenModelArgs {
        GenModelArgs {
            arch: "bitnet-b1.58".into(),
            preset: "tiny".into(),
            ternary_type: "i2_s".into(),
            embedding_type: "f16".into(),
            tokenizer: None,
            seed: 1,
            output,
        }
    }
}

pub fn gen_model(a: GenModelArgs) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    write_model(&a)?;
    let len = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({} bytes) in {:.1} s",
        a.output.display(),
        len,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds and writes the file described by `a` (atomically: temp file then rename).
pub fn write_model(a: &GenModelArgs) -> anyhow::Result<()> {
    let preset = Preset::from_name(&a.preset)
        .with_context(|| format!("unknown preset '{}' (tiny, large, 2b4t)", a.preset))?;
    let parse = |s: &str| DType::from_name(s).with_context(|| format!("unknown type '{s}'"));
    let ternary_type = parse(&a.ternary_type)?;
    let embedding_type = parse(&a.embedding_type)?;
    let tokenizer = match &a.tokenizer {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            hf::spec_from_hf_tokenizer_json(&json)?
        }
        None if a.arch == "bitnet" => builtin::sentencepiece_spec(preset.n_vocab(), 300)?,
        None => builtin::byte_level_bpe_spec(preset.n_vocab(), 600)?,
    };
    if tokenizer.tokens.is_empty() {
        bail!("the tokenizer has no tokens");
    }
    let opts = SynthOptions {
        arch: a.arch.clone(),
        preset,
        ternary_type,
        embedding_type,
        tokenizer,
        seed: a.seed,
    };
    let writer = synthesize(&opts)?;
    // A temporary name of this process's own, so two writers of the same output never touch
    // each other's partial file (the last rename wins; both results are whole files).
    let tmp = a
        .output
        .with_extension(format!("gguf.partial.{}", std::process::id()));
    {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        writer
            .write_to(&mut out)
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &a.output)
        .with_context(|| format!("renaming to {}", a.output.display()))?;
    Ok(())
}
