//! `bitnetc compile`: writes an ahead-of-time artifact (see `bitnetc::artifact`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use bitnetc::artifact;
use bitnetc::Engine;
use clap::Args;

use super::{BackendChoice, DeviceChoice, IsaChoice, ModelArgs};

/// Arguments of `bitnetc compile`.
#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The model file (GGUF).
    pub model: PathBuf,
    /// The artifact to write (default: the model's name with `.bnc`).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Instruction-set level to compile for (never above this CPU's; pick a lower one to run the
    /// artifact on older CPUs).
    #[arg(long = "isa", alias = "target", value_enum, default_value_t = IsaChoice::Native)]
    pub isa: IsaChoice,
    /// Folder of the tune cache whose parameters to compile in (default: $XDG_CACHE_HOME/bitnetc).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

pub fn compile(a: CompileArgs) -> anyhow::Result<()> {
    if artifact::is_artifact(&a.model) {
        bail!("{} is already a compiled artifact", a.model.display());
    }
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.model.with_extension("bnc"));
    if out == a.model {
        bail!("the output would overwrite the model; pass -o");
    }
    let start = Instant::now();
    let margs = ModelArgs {
        model: a.model.clone(),
        threads: 0,
        backend: BackendChoice::Jit,
        device: DeviceChoice::Cpu,
        isa: a.isa,
        activation: None,
        pre_tokenizer: None,
        cache_dir: a.cache_dir.clone(),
    };
    let opts = margs.engine_options();
    let engine = Engine::load(&a.model, &opts)?;
    let jit = engine.jit().expect("the JIT backend was asked for");
    let target = bitnetc_codegen::cpu::Target::host(opts.isa)?;
    let tuning = opts
        .tuning
        .open()?
        .map(|c| c.entries().clone())
        .unwrap_or_default();
    let weights = jit.repacked_weights();
    artifact::write(
        &out,
        &a.model,
        opts.isa,
        &target.info.enabled,
        tuning,
        &weights,
    )
    .with_context(|| format!("writing {}", out.display()))?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({size} bytes: {} repacked weights for {}) in {:.1} s",
        out.display(),
        weights.len(),
        opts.isa,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
