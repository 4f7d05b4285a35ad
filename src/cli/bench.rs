//! `bitnetc bench`, `bitnetc bench-compare` and `bitnetc bench-report`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use bitnetc::bench::bandwidth::{measure_read_bandwidth, ReadBandwidth, PROBE_BYTES, PROBE_PASSES};
use bitnetc::bench::compare::{compare, Thresholds};
use bitnetc::bench::host::{timestamp_now, BuildInfo, HostInfo, ProcessFigures};
use bitnetc::bench::perplexity::{perplexity, PerplexityOptions};
use bitnetc::bench::receipt::{
    check_strict, compute_path, group_kernels, sha256_hex, BenchConfig, ModelInfo, Quality,
    Receipt, RECEIPT_KIND, SCHEMA_VERSION,
};
use bitnetc::bench::report;
use bitnetc::bench::runner::{check_fits, run_test, RunnerConfig, Test};
use bitnetc::Engine;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{ActivationChoice, BackendChoice, DeviceChoice, IsaChoice, ModelArgs, PreSplitChoice};

/// Regression thresholds, in percent.
#[derive(Args, Debug, Clone)]
pub struct ThresholdArgs {
    /// Warning when median tokens/s changes by this much or less.
    #[arg(long, default_value_t = -8.0, allow_negative_numbers = true)]
    pub warn_tp: f64,
    /// Critical when median tokens/s changes by this much or less.
    #[arg(long, default_value_t = -15.0, allow_negative_numbers = true)]
    pub crit_tp: f64,
    /// Warning when latency (tg: p50 per token; pp: median TTFT) rises by this much or more.
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true)]
    pub warn_lat: f64,
    /// Critical when latency rises by this much or more.
    #[arg(long, default_value_t = 25.0, allow_negative_numbers = true)]
    pub crit_lat: f64,
    /// Improvement when median tokens/s rises by more than this.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub improve: f64,
    /// Warning when perplexity (same text, same --quality-ctx) changes by more than this.
    #[arg(long, default_value_t = 0.1)]
    pub warn_ppl: f64,
    /// Critical when perplexity changes by more than this.
    #[arg(long, default_value_t = 1.0)]
    pub crit_ppl: f64,
    /// Compare receipts from different hosts or models anyway.
    #[arg(long)]
    pub force: bool,
}

impl ThresholdArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            warn_tp: self.warn_tp,
            crit_tp: self.crit_tp,
            warn_lat: self.warn_lat,
            crit_lat: self.crit_lat,
            improve: self.improve,
            warn_ppl: self.warn_ppl,
            crit_ppl: self.crit_ppl,
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model file (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt sizes of the pp tests, comma-separated (0: no pp test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths of the tg tests, comma-separated (0: no tg test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "64"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts, comma-separated (default: all cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    pub threads: Option<Vec<usize>>,
    /// Measured repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    /// Prompt tokens a tg test reads before it decodes.
    #[arg(long, default_value_t = 4)]
    pub tg_prompt: usize,
    /// Skip the warm-up run of each test.
    #[arg(long)]
    pub no_warmup: bool,
    /// Backend executing the model on the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Jit)]
    pub backend: BackendChoice,
    /// Where the model runs (`cuda`: the CUDA backend on GPU 0).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Instruction-set level of the generated kernels (never above what this CPU has).
    #[arg(long, value_enum, default_value_t = IsaChoice::Native)]
    pub isa: IsaChoice,
    /// Force the FFN activation.
    #[arg(long, value_enum)]
    pub activation: Option<ActivationChoice>,
    /// Force the BPE pre-tokenizer split.
    #[arg(long, value_enum)]
    pub pre_tokenizer: Option<PreSplitChoice>,
    /// Folder of the tune cache (default: $XDG_CACHE_HOME/bitnetc); see `bitnetc tune`.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Write the receipt (JSON) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the tables in Markdown.
    #[arg(long)]
    pub markdown: bool,
    /// Fail when any op runs a fallback instead of its backend's real kernel.
    #[arg(long)]
    pub strict: bool,
    /// Also measure the perplexity of this text file and record it.
    #[arg(long)]
    pub quality: Option<PathBuf>,
    /// Window size of the --quality perplexity.
    #[arg(long, default_value_t = 512)]
    pub quality_ctx: usize,
    /// Compare the run with this baseline receipt (exit status 1 when a test is critical).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Also measure the memory read bandwidth with each thread count, and report each tg test's
    /// speed as a share of the decode ceiling it implies (bandwidth / weight bytes per token).
    #[arg(long)]
    pub bandwidth: bool,
    /// Size of the --bandwidth probe buffer in MiB (keep it well above the last-level cache).
    #[arg(long, default_value_t = PROBE_BYTES >> 20, value_parser = clap::value_parser!(usize))]
    pub bandwidth_mib: usize,
    /// Also run every test on the reference backend (same threads) and report the speed ratio
    /// of the chosen backend to it, measured in the same run.
    #[arg(long)]
    pub vs_reference: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    /// Testing aid: report the ops of this kind (e.g. `ternary_linear`) as having run a
    /// fallback kernel, to exercise `compute_path` and `--strict`. Changes nothing that runs.
    #[arg(long, hide = true)]
    pub simulate_fallback: Option<String>,
}

fn tests_of(a: &BenchArgs) -> Vec<Test> {
    let mut tests: Vec<Test> = a
        .n_prompt
        .iter()
        .filter(|&&p| p > 0)
        .map(|&p| Test::Pp(p))
        .collect();
    tests.extend(a.n_gen.iter().filter(|&&n| n > 0).map(|&n| Test::Tg(n)));
    tests
}

pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let wall = Instant::now();
    let tests = tests_of(&a);
    if tests.is_empty() {
        bail!("nothing to measure: every -p and -n is 0");
    }
    if a.repetitions == 0 {
        bail!("-r must be at least 1");
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = a
        .threads
        .clone()
        .unwrap_or_else(|| vec![all])
        .into_iter()
        .map(|t| if t == 0 { all } else { t })
        .collect();
    let baseline = a.compare.as_deref().map(Receipt::read).transpose()?;
    let cfg = RunnerConfig {
        repetitions: a.repetitions,
        warmup_runs: usize::from(!a.no_warmup),
        tg_prompt: a.tg_prompt,
        token_seed: 1234,
    };
    let backends = if a.vs_reference { 2 } else { 1 };
    let steps =
        (backends * threads.len() * tests.len() * (cfg.repetitions + cfg.warmup_runs)) as u64;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );

    let mut read_bandwidth = Vec::new();
    if a.bandwidth {
        if a.bandwidth_mib == 0 {
            bail!("--bandwidth-mib must be at least 1");
        }
        for &t in &threads {
            bar.set_message(format!("read bandwidth (t={t})"));
            read_bandwidth.push(measure_read_bandwidth(
                t,
                a.bandwidth_mib << 20,
                PROBE_PASSES,
            )?);
        }
    }
    // The chosen backend first (its kernels describe the run), then the reference twin.
    let mut runs = vec![(a.backend, a.device)];
    if a.vs_reference && (a.backend, a.device) != (BackendChoice::Reference, DeviceChoice::Cpu) {
        runs.push((BackendChoice::Reference, DeviceChoice::Cpu));
    }
    let mut results = Vec::new();
    let mut kernels = Vec::new();
    let mut model_info = None;
    let mut last_engine = None;
    for (&t, &(backend, device)) in threads
        .iter()
        .flat_map(|t| runs.iter().map(move |r| (t, r)))
    {
        let margs = ModelArgs {
            model: a.model.clone(),
            threads: t,
            backend,
            device,
            isa: a.isa,
            activation: a.activation,
            pre_tokenizer: a.pre_tokenizer,
            cache_dir: a.cache_dir.clone(),
        };
        bar.set_message(format!("loading {backend:?} (t={t})"));
        let engine = Engine::load(&a.model, &margs.engine_options())?;
        if model_info.is_none() {
            for test in &tests {
                check_fits(&engine, *test, cfg.tg_prompt)?;
            }
            let mut uses = engine.kernels();
            if let Some(op) = &a.simulate_fallback {
                for u in uses.iter_mut().filter(|u| &u.op == op) {
                    u.fallback = true;
                }
            }
            if a.strict {
                check_strict(&uses)?;
            }
            kernels = uses;
            model_info = Some(ModelInfo::describe(&engine, &a.model)?);
        }
        for test in &tests {
            let name = test.name();
            let r = run_test(&engine, *test, &cfg, |what, done| {
                if done {
                    bar.inc(1);
                } else {
                    bar.set_message(format!("{name} t={t} {what}"));
                }
            })?;
            results.push(r);
        }
        // --quality runs on the chosen backend, not on the reference twin.
        if (backend, device) == runs[0] {
            last_engine = Some(engine);
        }
    }
    bar.finish_and_clear();

    let quality = match (&a.quality, &last_engine) {
        (Some(path), Some(engine)) => Some(measure_quality(engine, path, a.quality_ctx)?),
        _ => None,
    };
    drop(last_engine);
    for r in &mut results {
        let probe = receipt_bandwidth(&read_bandwidth, r.threads);
        r.of_bandwidth_ceiling = match (probe, r.weight_bytes_per_token) {
            (Some(bw), Some(bytes)) => bw
                .ceiling_tokens_per_s(bytes)
                .map(|ceiling| r.tokens_per_s.median / ceiling),
            _ => None,
        };
    }
    let receipt = Receipt {
        schema_version: SCHEMA_VERSION,
        kind: RECEIPT_KIND.into(),
        timestamp: timestamp_now(),
        bitnetc: BuildInfo::detect(),
        command: std::env::args().collect(),
        host: HostInfo::detect(),
        model: model_info.expect("at least one thread count"),
        backend: results
            .first()
            .map_or_else(|| "reference".into(), |r| r.backend.clone()),
        threads: threads.clone(),
        compute_path: compute_path(&kernels).into(),
        kernels: group_kernels(&kernels),
        config: BenchConfig {
            n_prompt: a.n_prompt.clone(),
            n_gen: a.n_gen.clone(),
            repetitions: cfg.repetitions,
            warmup_runs: cfg.warmup_runs,
            tg_prompt: cfg.tg_prompt,
            token_seed: cfg.token_seed,
        },
        results,
        process: ProcessFigures::now(wall.elapsed().as_secs_f64()),
        quality,
        read_bandwidth,
    };
    if let Some(path) = &a.json {
        receipt.write(path)?;
        eprintln!("bitnetc bench: receipt written to {}", path.display());
    }
    super::print_stdout(&report::results_table(&receipt, a.markdown))?;
    if receipt.compute_path != "real" {
        eprintln!(
            "bitnetc bench: warning: compute path is {} (some ops ran a fallback kernel)",
            receipt.compute_path
        );
    }
    if let (Some(base), Some(path)) = (&baseline, &a.compare) {
        super::print_stdout("\n")?;
        let code = report_comparison(&receipt, base, path, &a.thresholds, a.markdown)?;
        if code != 0 {
            std::process::exit(code);
        }
    }
    Ok(())
}

/// The probe measured with `threads` threads, if any.
fn receipt_bandwidth(probes: &[ReadBandwidth], threads: usize) -> Option<&ReadBandwidth> {
    probes.iter().find(|p| p.threads == threads)
}

fn measure_quality(engine: &Engine, path: &Path, ctx: usize) -> anyhow::Result<Quality> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes.clone())
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let tokens = engine.tokenize(&text, true);
    eprintln!(
        "bitnetc bench: perplexity of {} ({} tokens)",
        path.display(),
        tokens.len()
    );
    let r = perplexity(
        engine,
        &tokens,
        PerplexityOptions {
            n_ctx: ctx,
            n_batch: ctx,
        },
        |_, _| {},
    )
    .context("--quality")?;
    Ok(Quality {
        text_path: path.display().to_string(),
        text_sha256: sha256_hex(&bytes),
        n_tokens: r.n_tokens,
        n_ctx: r.n_ctx,
        n_batch: r.n_batch,
        n_chunks: r.n_chunks,
        ppl: r.ppl,
        ppl_error: r.ppl_error,
        chunk_ppl: r.chunk_ppl,
        seconds: r.seconds,
        threads: engine.threads(),
    })
}

/// Prints the comparison; returns the exit status (0, or 1 when something is critical).
/// A refused comparison prints why and exits with status 2.
fn report_comparison(
    new: &Receipt,
    base: &Receipt,
    base_path: &Path,
    th: &ThresholdArgs,
    markdown: bool,
) -> anyhow::Result<i32> {
    match compare(new, base, &th.thresholds(), th.force) {
        Ok(c) => {
            super::print_stdout(&c.report(markdown))?;
            let crit = c.critical();
            if !crit.is_empty() {
                eprintln!("bitnetc: critical regression in {}", crit.join(", "));
            }
            Ok(c.exit_code())
        }
        Err(why) => {
            eprintln!(
                "error: refusing to compare with {}: {}; pass --force to compare anyway",
                base_path.display(),
                why.join("; ")
            );
            std::process::exit(2);
        }
    }
}

#[derive(Args, Debug)]
pub struct BenchCompareArgs {
    /// The new receipt.
    pub new: PathBuf,
    /// The baseline receipt.
    pub baseline: PathBuf,
    /// Print the report in Markdown.
    #[arg(long)]
    pub markdown: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

pub fn bench_compare(a: BenchCompareArgs) -> anyhow::Result<()> {
    let new = Receipt::read(&a.new)?;
    let base = Receipt::read(&a.baseline)?;
    let code = report_comparison(&new, &base, &a.baseline, &a.thresholds, a.markdown)?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BenchReportArgs {
    /// Receipts to draw (any order: they are sorted by timestamp).
    #[arg(required = true)]
    pub receipts: Vec<PathBuf>,
    /// Output file: `.svg` (the charts) or `.html` (the charts and a table).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

pub fn bench_report(a: BenchReportArgs) -> anyhow::Result<()> {
    let receipts = a
        .receipts
        .iter()
        .map(|p| Receipt::read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ext = a
        .output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let text = match ext.as_str() {
        "svg" => report::svg(&receipts)?,
        "html" | "htm" => report::html(&receipts)?,
        other => bail!(
            "cannot write a report as {:?}: use a .svg or .html output file",
            other
        ),
    };
    std::fs::write(&a.output, text).with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "bitnetc bench-report: {} receipt(s) drawn to {}",
        receipts.len(),
        a.output.display()
    );
    Ok(())
}
