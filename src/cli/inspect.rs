//! `bitnetc inspect`: what a model file holds.

use std::fmt::Write as _;
use std::path::PathBuf;

use bitnetc_models::{LoadOptions, Model};
use clap::Args;

use super::{BackendChoice, DeviceChoice, IsaChoice, ModelArgs};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model file.
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the lowered IR graph.
    #[arg(long)]
    pub ir: bool,
    /// Generate this host's kernels for the model and list them (op, shape, layout, ISA
    /// features, code bytes, compile time) and what each op of the graph runs.
    #[arg(long)]
    pub kernels: bool,
    /// With --kernels: also print each kernel's machine instructions (Cranelift's listing).
    #[arg(long, requires = "kernels")]
    pub asm: bool,
    /// With --kernels: instruction-set level to generate for (never above this CPU's).
    #[arg(long, value_enum, default_value_t = IsaChoice::Native)]
    pub isa: IsaChoice,
    /// With --kernels: threads the kernels are built for (tuned parameters are per thread
    /// count; default: all cores, as `run` uses).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// With --kernels: folder of the tune cache (default: $XDG_CACHE_HOME/bitnetc).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Print the CUDA C the CUDA backend generates for this model (one translation unit, as
    /// NVRTC compiles it), then what each op runs; needs no GPU.
    #[arg(long, conflicts_with = "kernels")]
    pub cuda_source: bool,
}

pub fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    if a.kernels {
        return kernels(&a);
    }
    if a.cuda_source {
        return cuda_source(&a);
    }
    let file = bitnetc::artifact::open_gguf(&a.model)?;
    let model = Model::from_gguf(
        bitnetc::artifact::open_gguf(&a.model)?,
        &LoadOptions::default(),
    )?;
    let cfg = &model.config;
    let ternary_params: u64 = model
        .graph
        .weights
        .iter()
        .filter(|w| w.dtype.is_ternary())
        .map(|w| w.n_elems())
        .sum();
    let params: u64 = model.graph.weights.iter().map(|w| w.n_elems()).sum();
    if a.json {
        let doc = serde_json::json!({
            "path": a.model,
            "version": file.header().version,
            "file_bytes": file.file_len(),
            "metadata": file.metadata().entries().iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
            "tensors": file.tensors().iter().map(|t| serde_json::json!({"name": t.name, "type": t.dtype.name(), "shape": t.dims, "bytes": t.nbytes, "offset": t.offset})).collect::<Vec<_>>(),
            "architecture": {
                "arch": cfg.arch, "n_vocab": cfg.n_vocab, "n_ctx": cfg.n_ctx, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
                "n_ff": cfg.n_ff, "n_head": cfg.n_head, "n_head_kv": cfg.n_head_kv, "head_dim": cfg.head_dim,
                "rope_base": cfg.rope_base, "eps": cfg.eps, "activation": format!("{:?}", cfg.activation),
                "parameters": params, "ternary_parameters": ternary_params,
                "tokenizer": model.tokenizer.pre_split().map_or("sentencepiece".to_string(), |p| format!("bpe/{p:?}")),
            },
            "ir": a.ir.then(|| model.graph.to_string()),
        });
        return super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    }
    let mut o = String::new();
    writeln!(
        o,
        "file: {} (GGUF v{}, {} bytes)",
        a.model.display(),
        file.header().version,
        file.file_len()
    )?;
    writeln!(o, "\nmetadata ({} keys):", file.metadata().entries().len())?;
    for (k, v) in file.metadata().entries() {
        writeln!(o, "  {k:<45} {}", v.summary())?;
    }
    writeln!(o, "\ntensors ({}):", file.tensors().len())?;
    for t in file.tensors() {
        writeln!(
            o,
            "  {:<32} {:<6} {:<16} {:>12} bytes",
            t.name,
            t.dtype.name(),
            format!("{:?}", t.dims),
            t.nbytes
        )?;
    }
    writeln!(o, "\narchitecture: {} ({:?} FFN)", cfg.arch, cfg.activation)?;
    writeln!(o, "  layers {}  hidden {}  ffn {}  heads {}/{} of {}  vocab {}  context {}  rope base {}  eps {:e}", cfg.n_layer, cfg.n_embd, cfg.n_ff, cfg.n_head, cfg.n_head_kv, cfg.head_dim, cfg.n_vocab, cfg.n_ctx, cfg.rope_base, cfg.eps)?;
    writeln!(o, "  parameters {params} ({ternary_params} ternary)")?;
    match model.tokenizer.pre_split() {
        Some(p) => writeln!(o, "  tokenizer: byte-level BPE, {p:?} pre-split")?,
        None => writeln!(o, "  tokenizer: SentencePiece")?,
    }
    if a.ir {
        writeln!(o, "\n{}", model.graph)?;
    }
    super::print_stdout(&o)
}

/// `inspect --kernels [--asm]`: builds the JIT backend and reports its kernels.
fn kernels(a: &InspectArgs) -> anyhow::Result<()> {
    let margs = ModelArgs {
        model: a.model.clone(),
        threads: a.threads,
        backend: BackendChoice::Jit,
        device: DeviceChoice::Cpu,
        isa: a.isa,
        activation: None,
        pre_tokenizer: None,
        cache_dir: a.cache_dir.clone(),
    };
    let engine = bitnetc::Engine::load(&a.model, &margs.engine_options())?;
    let jit = engine.jit().expect("the JIT backend was asked for");
    let reports = jit.kernel_reports();
    let uses = engine.kernels();
    if a.json {
        let doc = serde_json::json!({
            "isa": jit.isa().name(),
            "compile_ms": jit.compile_time().as_secs_f64() * 1e3,
            "prepare_ms": jit.repack_time().as_secs_f64() * 1e3,
            "kernels": reports.iter().map(|r| serde_json::json!({
                "name": r.name, "op": r.op, "shape": r.shape, "layout": r.layout,
                "features": r.features, "code_bytes": r.code_bytes,
                "compile_ms": r.compile_time.as_secs_f64() * 1e3, "uses": r.uses,
                "params": r.params.name(),
                "asm": if a.asm { r.listing.clone() } else { None },
            })).collect::<Vec<_>>(),
            "ops": uses,
        });
        return super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    }
    let mut o = String::new();
    writeln!(
        o,
        "{} generated kernels for ISA level {} (compiled in {:.1} ms; weights prepared in {:.1} ms)",
        reports.len(),
        jit.isa(),
        jit.compile_time().as_secs_f64() * 1e3,
        jit.repack_time().as_secs_f64() * 1e3
    )?;
    for r in &reports {
        writeln!(o, "\n{}", r.name)?;
        writeln!(
            o,
            "  op {}  shape {}  used by {} nodes",
            r.op, r.shape, r.uses
        )?;
        writeln!(
            o,
            "  layout {}  (parameters: {})",
            r.layout,
            r.params.name()
        )?;
        writeln!(
            o,
            "  code {} bytes, compiled in {:.2} ms",
            r.code_bytes,
            r.compile_time.as_secs_f64() * 1e3
        )?;
        writeln!(o, "  features {}", r.features.join(" "))?;
        if a.asm {
            writeln!(o, "  machine code:")?;
            for line in r.listing.as_deref().unwrap_or("(no listing)").lines() {
                writeln!(o, "    {line}")?;
            }
        }
    }
    let fallbacks: Vec<_> = uses.iter().filter(|u| u.fallback).collect();
    writeln!(
        o,
        "\nops: {} nodes, {} on generated kernels, {} fallbacks",
        uses.len(),
        uses.iter().filter(|u| u.kernel.starts_with("jit.")).count(),
        fallbacks.len()
    )?;
    let choices = jit.kernel_choices();
    for (u, c) in uses.iter().zip(&choices).filter(|(u, _)| u.fallback) {
        writeln!(
            o,
            "  fallback: {} ({}) runs {}: {}",
            u.label,
            u.op,
            u.kernel,
            c.reason.as_deref().unwrap_or("")
        )?;
    }
    super::print_stdout(&o)
}

/// `inspect --cuda-source`: the generated CUDA module and each op's kernel.
fn cuda_source(a: &InspectArgs) -> anyhow::Result<()> {
    let model = Model::from_gguf(
        bitnetc::artifact::open_gguf(&a.model)?,
        &LoadOptions::default(),
    )?;
    let g = &model.graph;
    let plan = bitnetc_runtime::cuda::plan::plan(g, g.info.n_ctx as usize)?;
    let mut text = plan.module_source();
    text.push_str("\n// What each op runs:\n");
    for (node, kernel) in g.nodes.iter().zip(plan.node_kernel_names()) {
        text.push_str(&format!(
            "//   {:<24} {:<18} {kernel}\n",
            node.label,
            node.op.kind_name()
        ));
    }
    super::print_stdout(&text)
}
