//! `bitnetc tune`: measures kernel variants for a model on this host and caches the winners.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bitnetc_codegen::cpu::head::{f16_table_is_finite, HeadFormat};
use bitnetc_codegen::cpu::Target;
use bitnetc_ir::{DType, Graph, Op};
use bitnetc_models::{LoadOptions, Model};
use bitnetc_runtime::{JitBackend, JitOptions, LogitsFor};
use bitnetc_tune::measure::{AttentionHarness, HeadHarness, TernaryHarness};
use bitnetc_tune::search::NOISE_MARGIN;
use bitnetc_tune::{
    tune_kernel, KernelKey, KernelKind, TuneCache, TuneError, TuneOutcome, TunedParams,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::{tuning_source, BackendChoice, DeviceChoice, IsaChoice, ModelArgs};

/// Arguments of `bitnetc tune`.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The model file (GGUF) whose kernels to tune.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Threads the kernels will run on (default: all cores, as `run` uses).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Seconds for the whole run: kernel search, then the before/after measurement.
    #[arg(long, default_value_t = 120.0)]
    pub budget: f64,
    /// Kernel families to tune, comma-separated: gemv (decode), gemm (prompt), head, attention.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gemv,gemm,head,attention"
    )]
    pub ops: Vec<String>,
    /// Re-tune kernels that already have a cache entry.
    #[arg(long)]
    pub force: bool,
    /// Folder of the tune cache (default: $XDG_CACHE_HOME/bitnetc).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Instruction-set level of the generated kernels (never above what this CPU has).
    #[arg(long, value_enum, default_value_t = IsaChoice::Native)]
    pub isa: IsaChoice,
    /// Skip the end-to-end before/after measurement.
    #[arg(long)]
    pub no_e2e: bool,
    /// Prompt tokens of the end-to-end prompt-processing measurement.
    #[arg(long, default_value_t = 64)]
    pub e2e_prompt: usize,
    /// Tokens of the end-to-end generation measurement.
    #[arg(long, default_value_t = 16)]
    pub e2e_gen: usize,
}

/// One kernel to tune.
struct Job {
    key: KernelKey,
    /// Head table node (for head jobs).
    table: Option<bitnetc_ir::WeightId>,
    /// Query and KV heads (for attention jobs).
    heads: (usize, usize),
}

pub fn tune(a: TuneArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(a.budget.max(1.0));
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
    let eopts = margs.engine_options();
    let threads = if a.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        a.threads
    };
    let mut kinds = BTreeSet::new();
    for op in &a.ops {
        match KernelKind::parse(op.trim()) {
            Some(k) => {
                kinds.insert(k);
            }
            None => bail!(
                "unknown kernel family '{op}' in --ops (expected gemv, gemm, head or attention)"
            ),
        }
    }
    let Some(mut cache) = tuning_source(&a.cache_dir).open()? else {
        bail!("no cache folder on this platform: pass --cache-dir");
    };
    let model = Model::from_gguf(
        bitnetc::artifact::open_gguf(&a.model)?,
        &LoadOptions::default(),
    )
    .with_context(|| format!("loading {}", a.model.display()))?;
    let graph = model.graph.clone();
    let target = Target::host(eopts.isa)?;
    let isa = target.info.tag();
    let jobs = jobs(&graph, &kinds, &isa, threads);
    if jobs.is_empty() {
        bail!(
            "{} has no kernels of the families {:?}",
            a.model.display(),
            a.ops
        );
    }
    eprintln!(
        "tuning {} kernels of {} for {isa} on {threads} threads; cache {}",
        jobs.len(),
        a.model.display(),
        cache.path().display()
    );

    let e2e_share = if a.no_e2e { 0.0 } else { 0.35 };
    let search_end = start + budget.mul_f64(1.0 - e2e_share);
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let mut outcomes: Vec<(TuneOutcome, bool)> = Vec::new();
    let mut harnesses: std::collections::HashMap<(usize, usize), TernaryHarness> =
        Default::default();
    for (i, job) in jobs.iter().enumerate() {
        bar.set_message(job.key.id());
        if !a.force {
            if let Some(e) = cache.get(&job.key) {
                outcomes.push((
                    TuneOutcome {
                        key: job.key.clone(),
                        entry: e.clone(),
                        default: TunedParams::default_for_key(&job.key),
                        timed_out: false,
                    },
                    true,
                ));
                bar.inc(1);
                continue;
            }
        }
        let now = Instant::now();
        let left = search_end.saturating_duration_since(now);
        let slice = left / (jobs.len() - i) as u32;
        let deadline = now + slice.mul_f64(0.75);
        let mut warn = |w: String| say(&bar, w);
        let outcome = match job.key.kind {
            KernelKind::Gemv | KernelKind::Gemm => {
                let (k, m) = (job.key.k, job.key.m);
                let h = match harnesses.entry((k, m)) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(TernaryHarness::new(k, m, threads, target.clone())?)
                    }
                };
                if job.key.kind == KernelKind::Gemv {
                    let outcome =
                        tune_kernel(&job.key, deadline, &mut |p| h.measure_gemv(p), &mut warn)?;
                    // The rotated copies (up to 1 GiB) of one shape at a time.
                    h.release_rotation();
                    outcome
                } else {
                    let gemv_key = KernelKey {
                        kind: KernelKind::Gemv,
                        ..job.key.clone()
                    };
                    let (outcome, gemv_redone) =
                        tune_gemm(&job.key, &gemv_key, &cache, h, deadline, &mut warn)?;
                    if let Some(gemv) = gemv_redone {
                        say(
                            &bar,
                            format!(
                                "{}: the prompt kernel is faster on the default weight layout, so \
                             the GEMV keeps it: {}",
                                gemv_key.id(),
                                gemv.entry.params
                            ),
                        );
                        cache.insert(&gemv_key, gemv.entry.clone());
                        match outcomes.iter_mut().find(|(o, _)| o.key == gemv_key) {
                            Some(slot) => *slot = (gemv, false),
                            None => outcomes.push((gemv, false)),
                        }
                    }
                    outcome
                }
            }
            KernelKind::Attention => {
                let positions = (graph.info.n_ctx as usize).clamp(1, 1024);
                let h = AttentionHarness::new(
                    job.key.k,
                    job.heads.0,
                    job.heads.1,
                    positions,
                    threads,
                    target.clone(),
                )?;
                tune_kernel(&job.key, deadline, &mut |p| h.measure(p), &mut warn)?
            }
            KernelKind::Head => {
                let w = graph.weight(job.table.expect("head jobs carry their table"));
                let format = head_format(w).expect("only generated head formats are listed");
                let h = HeadHarness::new(
                    w.data.bytes(),
                    job.key.k,
                    job.key.m,
                    format,
                    threads,
                    target.clone(),
                )?;
                tune_kernel(&job.key, deadline, &mut |p| h.measure(p), &mut warn)?
            }
        };
        cache.insert(&job.key, outcome.entry.clone());
        for w in cache.save()? {
            say(&bar, w);
        }
        outcomes.push((outcome, false));
        bar.inc(1);
    }
    drop(harnesses);
    bar.finish_and_clear();
    let mut o = String::new();
    writeln!(
        o,
        "{:<36} {:<36} {:>10} {:<36} {:>10} {:>8} {:>5}",
        "kernel", "default", "time", "tuned", "time", "speedup", "tried"
    )?;
    for (t, cached) in &outcomes {
        writeln!(
            o,
            "{:<36} {:<36} {:>10} {:<36} {:>10} {:>7.2}x {:>5}{}",
            t.key.id(),
            t.default.to_string(),
            fmt_ns(t.entry.default_ns),
            t.entry.params.to_string(),
            fmt_ns(t.entry.tuned_ns),
            t.speedup(),
            t.entry.candidates,
            if *cached {
                "  (cached; --force re-tunes)"
            } else if t.timed_out {
                "  (budget ran out)"
            } else {
                ""
            }
        )?;
    }
    writeln!(
        o,
        "\nkernel search: {:.1} s; cache {}",
        start.elapsed().as_secs_f64(),
        cache.path().display()
    )?;
    super::print_stdout(&o)?;
    if !a.no_e2e {
        let end = start + budget;
        let gemv_keys: Vec<KernelKey> = jobs
            .iter()
            .filter(|j| j.key.kind == KernelKind::Gemv)
            .map(|j| j.key.clone())
            .collect();
        let report = end_to_end(&graph, &eopts.isa, threads, &mut cache, &gemv_keys, &a, end)?;
        super::print_stdout(&report)?;
    }
    Ok(())
}

/// `cache` with each of `keys` whose tuned values differ from the default set back to the
/// default, or `None` when none differs.
fn with_default_values(cache: &TuneCache, keys: &[KernelKey]) -> Option<TuneCache> {
    let mut out = cache.clone();
    let mut changed = false;
    for key in keys {
        let Some(e) = cache.get(key) else { continue };
        let default = TunedParams::default_for_key(key);
        if e.params != default {
            let entry = bitnetc_tune::CacheEntry {
                params: default,
                tuned_ns: e.default_ns,
                ..e.clone()
            };
            out.insert(key, entry);
            changed = true;
        }
    }
    changed.then_some(out)
}

/// The kernels of `graph` in tuning order: GEMVs (they choose the layout), GEMMs, heads.
/// Prints a line above the progress bar, or on stderr when the bar is hidden (stderr not a
/// terminal), where the bar's own `println` would drop it.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Tunes the prompt kernel of a shape. It reads the weight layout its shape's GEMV chose; when
/// that is not the default layout, the prompt kernel is tuned on both, and if it is faster on
/// the default one (beyond the noise margin) the GEMV is tuned again within the default layout,
/// so a layout that speeds decoding never slows prompts. Returns the prompt kernel's outcome
/// and, in that case, the GEMV's new one.
fn tune_gemm(
    key: &KernelKey,
    gemv_key: &KernelKey,
    cache: &TuneCache,
    h: &mut TernaryHarness,
    deadline: Instant,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<(TuneOutcome, Option<TuneOutcome>)> {
    let default_layout = TunedParams::default_for_key(gemv_key)
        .layout()
        .unwrap_or_default();
    let layout = cache
        .get(gemv_key)
        .and_then(|e| e.params.layout())
        .unwrap_or(default_layout);
    if layout == default_layout {
        let o = tune_kernel(key, deadline, &mut |p| h.measure_gemm(p, layout), warn)?;
        return Ok((o, None));
    }
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    let on_chosen = tune_kernel(
        key,
        now + left / 3,
        &mut |p| h.measure_gemm(p, layout),
        warn,
    )?;
    let on_default = tune_kernel(
        key,
        now + left.mul_f64(2.0 / 3.0),
        &mut |p| h.measure_gemm(p, default_layout),
        warn,
    )?;
    if on_default.entry.tuned_ns >= on_chosen.entry.tuned_ns * (1.0 - NOISE_MARGIN) {
        return Ok((on_chosen, None));
    }
    let gemv = tune_kernel(
        gemv_key,
        deadline,
        &mut |p| {
            if p.layout() == Some(default_layout) {
                h.measure_gemv(p)
            } else {
                Err(TuneError::Invalid(format!("{p}: the layout is fixed")))
            }
        },
        warn,
    )?;
    Ok((on_default, Some(gemv)))
}

fn jobs(graph: &Graph, kinds: &BTreeSet<KernelKind>, isa: &str, threads: usize) -> Vec<Job> {
    let mut shapes = BTreeSet::new();
    let mut heads = Vec::new();
    let mut attention = std::collections::BTreeMap::new();
    for node in &graph.nodes {
        match &node.op {
            Op::TernaryLinear { weight, .. } => {
                let w = graph.weight(*weight);
                let (k, m) = (w.dims[0] as usize, w.dims[1] as usize);
                if k.is_multiple_of(16) {
                    shapes.insert((k, m));
                }
            }
            Op::Attention {
                n_head,
                n_head_kv,
                head_dim,
                ..
            } => {
                attention.insert(*head_dim as usize, (*n_head as usize, *n_head_kv as usize));
            }
            Op::OutputHead { table, .. } => {
                let w = graph.weight(*table);
                if let Some(f) = head_format(w) {
                    if (w.dims[0] as usize).is_multiple_of(8) {
                        heads.push((*table, w.dims[0] as usize, w.dims[1] as usize, f));
                    }
                }
            }
            _ => {}
        }
    }
    let key = |kind, k, m, format: &str| KernelKey {
        kind,
        isa: isa.to_string(),
        k,
        m,
        format: format.to_string(),
        threads,
    };
    let mut jobs = Vec::new();
    for kind in [KernelKind::Gemv, KernelKind::Gemm] {
        if kinds.contains(&kind) {
            for &(k, m) in &shapes {
                jobs.push(Job {
                    key: key(kind, k, m, "ternary"),
                    table: None,
                    heads: (0, 0),
                });
            }
        }
    }
    if kinds.contains(&KernelKind::Head) {
        for (table, k, rows, f) in heads {
            jobs.push(Job {
                key: key(KernelKind::Head, k, rows, f.name()),
                table: Some(table),
                heads: (0, 0),
            });
        }
    }
    if kinds.contains(&KernelKind::Attention) {
        for (d, heads) in attention {
            jobs.push(Job {
                // The KV cache keeps each head's rows consecutive: the stride is D.
                key: key(KernelKind::Attention, d, d, "f32"),
                table: None,
                heads,
            });
        }
    }
    jobs
}

/// The generated head format of a table the tuner can measure as stored (F16, BF16), if any.
fn head_format(w: &bitnetc_ir::Weight) -> Option<HeadFormat> {
    let finite = match w.dtype {
        DType::F16 => w.data.bytes().par_chunks(1 << 20).all(f16_table_is_finite),
        _ => true,
    };
    HeadFormat::of(w.dtype, finite).filter(|f| {
        matches!(
            f,
            HeadFormat::F16 { .. } | HeadFormat::BF16 | HeadFormat::Q6K | HeadFormat::Q8_0
        )
    })
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} us", ns / 1e3)
    }
}

/// Measures prompt processing and generation end to end with the default kernels and with the
/// tuned ones, alternating until `end` (at least once each, at most three times), and compares
/// the medians. The one-token GEMVs are timed alone while tuning, and a variant that
/// wins alone can lose inside a decode step (on a Xeon the tuned GEMVs decoded 7 % slower than
/// their defaults): when tuned GEMVs differ from their defaults, the tuned set with the GEMVs
/// at their defaults is measured too, and if it generates faster beyond the noise margin
/// without slower prompts, those defaults are what the cache keeps.
fn end_to_end(
    graph: &Arc<Graph>,
    isa: &bitnetc_codegen::cpu::IsaLevel,
    threads: usize,
    cache: &mut TuneCache,
    gemv_keys: &[KernelKey],
    a: &TuneArgs,
    end: Instant,
) -> anyhow::Result<String> {
    let base = JitOptions {
        threads,
        isa: *isa,
        ..JitOptions::default()
    };
    let with = |c: TuneCache| {
        JitBackend::new(
            graph.clone(),
            &JitOptions {
                tuning: Some(Arc::new(c)),
                ..base.clone()
            },
        )
    };
    let fallback_cache = with_default_values(cache, gemv_keys);
    let mut backends = vec![JitBackend::new(graph.clone(), &base)?, with(cache.clone())?];
    if let Some(c) = &fallback_cache {
        backends.push(with(c.clone())?);
    }
    let n_vocab = graph.info.n_vocab;
    let n_ctx = (graph.info.n_ctx as usize).max(1);
    let pp = a
        .e2e_prompt
        .clamp(1, n_ctx.saturating_sub(a.e2e_gen + 1).max(1));
    let tg = a.e2e_gen.clamp(1, n_ctx - pp.min(n_ctx - 1));
    let prompt: Vec<u32> = (0..pp as u32).map(|i| (i * 7919 + 1) % n_vocab).collect();
    let measure = |b: &JitBackend| -> anyhow::Result<(f64, f64)> {
        let mut s = b.new_session(pp + tg);
        let t = Instant::now();
        b.forward(&mut s, &prompt, LogitsFor::Last)?;
        let pp_rate = pp as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..tg as u32 {
            b.forward(&mut s, &[(i * 104_729 + 3) % n_vocab], LogitsFor::Last)?;
        }
        Ok((pp_rate, tg as f64 / t.elapsed().as_secs_f64()))
    };
    // Per backend: prompt and generation rates of each round.
    let mut rates: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); backends.len()];
    for round in 0..3 {
        if round > 0 && Instant::now() >= end {
            break;
        }
        for (b, r) in backends.iter().zip(&mut rates) {
            let (p, t) = measure(b)?;
            r.0.push(p);
            r.1.push(t);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<(f64, f64)> = rates.iter().map(|(p, t)| (med(p), med(t))).collect();
    let (bp, bt) = medians[0];
    let (mut ap, mut at) = medians[1];
    let mut o = String::new();
    writeln!(
        o,
        "\nend to end ({threads} threads, median of {} alternating runs each):",
        rates[0].0.len()
    )?;
    if let (Some(fallback), Some(&(fp, ft))) = (fallback_cache, medians.get(2)) {
        if ft > at * (1.0 + NOISE_MARGIN) && fp >= ap * (1.0 - NOISE_MARGIN) {
            writeln!(
                o,
                "  the tuned one-token GEMVs generated slower than their defaults ({at:.2} against \
                 {ft:.2} tokens/s): the cache keeps the defaults"
            )?;
            for key in gemv_keys {
                if let Some(e) = fallback.get(key) {
                    cache.insert(key, e.clone());
                }
            }
            for w in cache.save()? {
                writeln!(o, "  {w}")?;
            }
            (ap, at) = (fp, ft);
        } else {
            writeln!(
                o,
                "  with the one-token GEMVs at their defaults: pp{pp} {fp:.2}, tg{tg} {ft:.2} \
                 tokens/s (the tuned ones are kept)"
            )?;
        }
    }
    writeln!(o, "  pp{pp}: {bp:.2} -> {ap:.2} tokens/s ({:.2}x)", ap / bp)?;
    writeln!(o, "  tg{tg}: {bt:.2} -> {at:.2} tokens/s ({:.2}x)", at / bt)?;
    Ok(o)
}
