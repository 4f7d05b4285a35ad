//! Argument definitions and dispatch of the subcommands.

mod bench;
mod chat;
mod compile;
mod gen_model;
mod inspect;
mod perplexity;
mod run;
mod tune;

use std::path::PathBuf;

use bitnetc::{BackendKind, EngineOptions, TuningSource};
use bitnetc_codegen::cpu::IsaLevel;
use bitnetc_ir::Activation;
use bitnetc_models::tokenizer::PreSplit;
use bitnetc_models::LoadOptions;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A compiler and runtime for ternary (BitNet b1.58) language models.
#[derive(Parser, Debug)]
#[command(name = "bitnetc", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Talk with a model using its chat format.
    Chat(chat::ChatArgs),
    /// Show a model file's metadata, tensors, architecture and IR.
    Inspect(inspect::InspectArgs),
    /// Write a GGUF with a real BitNet architecture and seeded random ternary weights.
    GenModel(gen_model::GenModelArgs),
    /// Make the tiny model (once, in the cache folder) and generate from it.
    Demo(DemoArgs),
    /// Measure prompt processing and generation speed (llama-bench style) and write a receipt.
    Bench(bench::BenchArgs),
    /// Compare a bench receipt with a baseline (exit status 1 on a critical regression).
    BenchCompare(bench::BenchCompareArgs),
    /// Draw bench receipts as SVG or HTML.
    BenchReport(bench::BenchReportArgs),
    /// Perplexity of a text file, computed as llama.cpp's perplexity tool does.
    Perplexity(perplexity::PerplexityArgs),
    /// Measure kernel variants for a model on this host and cache the fastest.
    Tune(tune::TuneArgs),
    /// Write an ahead-of-time artifact: the model with its weights already prepared for this
    /// machine's kernels, which loads faster; every command accepts it like a GGUF.
    Compile(compile::CompileArgs),
}

/// Options shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model file (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Backend executing the model on the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Jit)]
    pub backend: BackendChoice,
    /// Where the model runs: `cuda` uses the CUDA backend on GPU 0 (kernels generated for the
    /// model and compiled with NVRTC; `--backend` then does not apply).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Instruction-set level of the generated kernels (never above what this CPU has).
    #[arg(long, value_enum, default_value_t = IsaChoice::Native)]
    pub isa: IsaChoice,
    /// Force the FFN activation (for files whose architecture name does not say it reliably).
    #[arg(long, value_enum)]
    pub activation: Option<ActivationChoice>,
    /// Force the BPE pre-tokenizer split instead of the file's `tokenizer.ggml.pre`.
    #[arg(long, value_enum)]
    pub pre_tokenizer: Option<PreSplitChoice>,
    /// Folder of the tune cache (default: $XDG_CACHE_HOME/bitnetc); see `bitnetc tune`.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

/// The tuning source for an optional `--cache-dir`.
pub fn tuning_source(cache_dir: &Option<PathBuf>) -> TuningSource {
    match cache_dir {
        Some(d) => TuningSource::Dir(d.clone()),
        None => TuningSource::DefaultDir,
    }
}

/// Backends.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// Kernels generated for this CPU and this model's shapes with Cranelift.
    Jit,
    /// Plain Rust executor with the reference numerics.
    Reference,
}

/// Devices.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU (backend chosen by `--backend`).
    Cpu,
    /// An NVIDIA GPU through CUDA (driver and NVRTC loaded at run time).
    Cuda,
}

/// Instruction-set levels for generated kernels.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsaChoice {
    /// Everything this CPU has.
    Native,
    /// x86-64 AVX-512 (with VNNI when present).
    Avx512,
    /// x86-64-v3 (AVX2, no VNNI).
    Avx2,
    /// x86-64 SSE4.1.
    Sse4,
}

/// FFN activations.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ActivationChoice {
    /// relu(g)² (BitNet b1.58 2B4T).
    Relu2,
    /// SiLU (1bitLLM).
    Silu,
}

/// BPE pre-splits.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PreSplitChoice {
    /// llama.cpp's default 4-pass split (what bitnet.cpp uses for the official 2B4T file).
    Default,
    /// The Llama-3 regex split (what Hugging Face tokenizers use).
    LlamaBpe,
}

impl ModelArgs {
    /// Engine options from the flags.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            threads: self.threads,
            backend: match (self.device, self.backend) {
                (DeviceChoice::Cuda, _) => BackendKind::Cuda,
                (DeviceChoice::Cpu, BackendChoice::Jit) => BackendKind::Jit,
                (DeviceChoice::Cpu, BackendChoice::Reference) => BackendKind::Reference,
            },
            isa: match self.isa {
                IsaChoice::Native => IsaLevel::Native,
                IsaChoice::Avx512 => IsaLevel::Avx512,
                IsaChoice::Avx2 => IsaLevel::Avx2,
                IsaChoice::Sse4 => IsaLevel::Sse41,
            },
            tuning: tuning_source(&self.cache_dir),
            load: LoadOptions {
                activation: self.activation.map(|a| match a {
                    ActivationChoice::Relu2 => Activation::Relu2,
                    ActivationChoice::Silu => Activation::Silu,
                }),
                pre_split: self.pre_tokenizer.map(|p| match p {
                    PreSplitChoice::Default => PreSplit::Default,
                    PreSplitChoice::LlamaBpe => PreSplit::Llama3,
                }),
            },
        }
    }
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Where the demo model is kept (default: the user cache folder).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Prompt.
    #[arg(short = 'p', long, default_value = "The quick brown fox")]
    prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 32)]
    n_predict: usize,
}

/// Writes `text` to stdout; a closed pipe (`bitnetc inspect m.gguf | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Runs one parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::chat(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::GenModel(a) => gen_model::gen_model(a),
        Command::Demo(a) => demo(a),
        Command::Bench(a) => bench::bench(a),
        Command::BenchCompare(a) => bench::bench_compare(a),
        Command::BenchReport(a) => bench::bench_report(a),
        Command::Perplexity(a) => perplexity::perplexity(a),
        Command::Tune(a) => tune::tune(a),
        Command::Compile(a) => compile::compile(a),
    }
}

fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let dir = a
        .cache_dir
        .or_else(|| dirs::cache_dir().map(|d| d.join("bitnetc")))
        .unwrap_or_else(|| PathBuf::from(".cache/bitnetc"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo-tiny-i2_s.gguf");
    if !path.exists() {
        eprintln!("bitnetc demo: writing the tiny model to {}", path.display());
        gen_model::write_model(&gen_model::GenModelArgs::tiny_demo(path.clone()))?;
    }
    eprintln!(
        "bitnetc demo: bitnetc run -m {} -p {:?} -n {} --temp 0",
        path.display(),
        a.prompt,
        a.n_predict
    );
    run::run(run::RunArgs::demo(path, a.prompt, a.n_predict))
}
