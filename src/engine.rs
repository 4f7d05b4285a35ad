//! Loading a model and generating tokens with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bitnetc_codegen::cpu::IsaLevel;
use bitnetc_models::{LoadOptions, Model};
use bitnetc_runtime::{
    CudaBackend, CudaOptions, JitBackend, JitOptions, LogitsFor, ReferenceBackend, Sampler,
    SamplerConfig, Session,
};
use bitnetc_tune::{HostFingerprint, TuneCache};
use serde::Serialize;

/// Which executor runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Kernels generated for this host and these shapes (Cranelift JIT).
    #[default]
    Jit,
    /// The plain Rust executor with the reference numerics (the oracle).
    Reference,
    /// CUDA kernels generated for this model's shapes, compiled with NVRTC for the GPU.
    Cuda,
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Overrides passed to the loader.
    pub load: LoadOptions,
    /// The executor.
    pub backend: BackendKind,
    /// Instruction-set level of generated kernels (JIT backend; never above the host's).
    pub isa: IsaLevel,
    /// Where the JIT backend looks for tuned kernel parameters.
    pub tuning: TuningSource,
}

/// Where tuned kernel parameters come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TuningSource {
    /// The tune cache in the default folder (`$XDG_CACHE_HOME/bitnetc`).
    #[default]
    DefaultDir,
    /// The tune cache in this folder.
    Dir(PathBuf),
    /// None: every kernel uses its heuristic default.
    Off,
}

impl TuningSource {
    /// The tune cache of this host, if any folder applies; problems with its file are printed
    /// as one-line warnings on stderr and the file is ignored.
    pub fn open(&self) -> anyhow::Result<Option<TuneCache>> {
        let dir = match self {
            TuningSource::Off => return Ok(None),
            TuningSource::Dir(d) => d.clone(),
            TuningSource::DefaultDir => match TuneCache::default_dir() {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let host = HostFingerprint::detect().context("detecting the host for the tune cache")?;
        let (cache, warnings) = TuneCache::open(&dir, host);
        for w in warnings {
            eprintln!("{w}");
        }
        Ok(Some(cache))
    }
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            threads: 0,
            load: LoadOptions::default(),
            backend: BackendKind::Jit,
            isa: IsaLevel::Native,
            tuning: TuningSource::DefaultDir,
        }
    }
}

/// The executor of a loaded model.
enum Backend {
    Reference(ReferenceBackend),
    Jit(JitBackend),
    Cuda(CudaBackend),
}

/// A loaded model with a backend ready to run it.
pub struct Engine {
    model: Model,
    backend: Backend,
    load_seconds: f64,
    threads: usize,
}

/// The kernel one op of the graph runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelUse {
    /// The node's label, e.g. `blk.3.attn_q`.
    pub label: String,
    /// The op kind, e.g. `ternary_linear`.
    pub op: String,
    /// The kernel, e.g. `reference.ternary_linear.i2_s`.
    pub kernel: String,
    /// True when the op ran a fallback instead of its backend's real kernel.
    pub fallback: bool,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// Token ids fed before generation (BOS included if wanted).
    pub prompt_ids: Vec<u32>,
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampler: SamplerConfig,
    /// Stop at an end-of-generation token.
    pub stop_at_eog: bool,
    /// Keep the logits of every evaluated position.
    pub keep_logits: bool,
    /// Tokens per forward pass while reading the prompt.
    pub batch_size: usize,
}

impl GenerateRequest {
    /// Greedy decoding of `max_tokens` tokens after `prompt_ids`.
    pub fn greedy(prompt_ids: Vec<u32>, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            prompt_ids,
            max_tokens,
            sampler: SamplerConfig {
                temperature: 0.0,
                ..SamplerConfig::default()
            },
            stop_at_eog: true,
            keep_logits: false,
            batch_size: 512,
        }
    }
}

/// Wall-clock figures of one generation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// Model load time (file map, checks, lowering), seconds.
    pub load_s: f64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Time to evaluate them, seconds.
    pub prompt_s: f64,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Time to generate them (sampling included), seconds.
    pub gen_s: f64,
    /// Prompt throughput.
    pub prompt_tokens_per_s: f64,
    /// Generation throughput.
    pub gen_tokens_per_s: f64,
}

/// What a generation produced.
#[derive(Clone, Debug, Default)]
pub struct GenerateResult {
    /// Generated token ids (the EOG token included when it stopped generation).
    pub generated_ids: Vec<u32>,
    /// Logits of every evaluated position, `[positions × n_vocab]`, when asked for.
    pub logits: Vec<f32>,
    /// Timings.
    pub timings: Timings,
}

impl Engine {
    /// Loads a model file and prepares the reference backend.
    pub fn load(path: impl AsRef<Path>, opts: &EngineOptions) -> anyhow::Result<Engine> {
        let path = path.as_ref();
        let start = Instant::now();
        // An ahead-of-time artifact: its GGUF section, repacked weights, parameters and ISA.
        let artifact = if crate::artifact::is_artifact(path) {
            Some(crate::artifact::open(path)?)
        } else {
            None
        };
        let model = match &artifact {
            Some(a) => {
                let (off, len) = a.model_range;
                let file = bitnetc_models::gguf::GgufFile::open_range(path, off, len)
                    .with_context(|| format!("reading the model section of {}", path.display()))?;
                Model::from_gguf(file, &opts.load)
            }
            None => Model::load(path, &opts.load),
        }
        .with_context(|| format!("loading {}", path.display()))?;
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let backend = match opts.backend {
            BackendKind::Reference => {
                Backend::Reference(ReferenceBackend::new(model.graph.clone(), threads)?)
            }
            BackendKind::Cuda => {
                let cache_dir = match &opts.tuning {
                    TuningSource::Off => None,
                    TuningSource::Dir(d) => Some(d.clone()),
                    TuningSource::DefaultDir => TuneCache::default_dir(),
                };
                Backend::Cuda(
                    CudaBackend::new(
                        model.graph.clone(),
                        &CudaOptions {
                            device: 0,
                            cache_dir,
                        },
                    )
                    .context("starting the CUDA backend")?,
                )
            }
            BackendKind::Jit => {
                let jit = match artifact {
                    Some(a) => JitOptions {
                        threads,
                        isa: a.isa,
                        tuning: Some(Arc::new(TuneCache::in_memory(
                            HostFingerprint::detect()?,
                            a.tuning,
                        ))),
                        prepared: Some(Arc::new(a.weights)),
                        ..JitOptions::default()
                    },
                    None => JitOptions {
                        threads,
                        isa: opts.isa,
                        tuning: opts.tuning.open()?.map(Arc::new),
                        ..JitOptions::default()
                    },
                };
                Backend::Jit(
                    JitBackend::new(model.graph.clone(), &jit)
                        .context("building the JIT backend's kernels")?,
                )
            }
        };
        Ok(Engine {
            model,
            backend,
            load_seconds: start.elapsed().as_secs_f64(),
            threads,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Worker threads the backend uses.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Seconds the load took.
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// Name of the backend executing the model (`reference` or `jit`).
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Reference(_) => "reference",
            Backend::Jit(_) => "jit",
            Backend::Cuda(_) => "cuda",
        }
    }

    /// The JIT backend, when that is what runs the model.
    pub fn jit(&self) -> Option<&JitBackend> {
        match &self.backend {
            Backend::Jit(j) => Some(j),
            Backend::Reference(_) | Backend::Cuda(_) => None,
        }
    }

    /// Seconds spent compiling kernels while loading (`None`: the backend compiles nothing).
    pub fn compile_seconds(&self) -> Option<f64> {
        match &self.backend {
            Backend::Cuda(c) => Some(c.compile_time().0.as_secs_f64()),
            _ => self.jit().map(|j| j.compile_time().as_secs_f64()),
        }
    }

    /// The kernel each op of the graph runs, in execution order; `fallback` marks an op that
    /// did not get its backend's real kernel and ran a slower substitute instead.
    pub fn kernels(&self) -> Vec<KernelUse> {
        let graph = &self.model.graph;
        let choices: Vec<(String, bool)> = match &self.backend {
            Backend::Reference(r) => r.kernel_names().into_iter().map(|n| (n, false)).collect(),
            Backend::Cuda(c) => c.kernel_names().into_iter().map(|n| (n, false)).collect(),
            Backend::Jit(j) => j
                .kernel_choices()
                .into_iter()
                .map(|c| (c.name, c.fallback))
                .collect(),
        };
        graph
            .nodes
            .iter()
            .zip(choices)
            .map(|(node, (kernel, fallback))| KernelUse {
                label: node.label.clone(),
                op: node.op.kind_name().to_string(),
                kernel,
                fallback,
            })
            .collect()
    }

    /// Evaluates `tokens` at the next positions of `session` (one forward pass) and returns
    /// the logits `want` asks for (`n_vocab` per selected position).
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        want: LogitsFor,
    ) -> anyhow::Result<Vec<f32>> {
        Ok(match &self.backend {
            Backend::Reference(r) => r.forward(session, tokens, want)?,
            Backend::Jit(j) => j.forward(session, tokens, want)?,
            Backend::Cuda(c) => c.forward(session, tokens, want)?,
        })
    }

    /// Text to ids, with BOS when the model wants it (special tokens in the text are parsed).
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.model.tokenizer.encode(text, add_special, true)
    }

    /// A new sequence holding up to `n_ctx` positions.
    pub fn new_session(&self, n_ctx: usize) -> Session {
        match &self.backend {
            Backend::Reference(r) => r.new_session(n_ctx),
            Backend::Jit(j) => j.new_session(n_ctx),
            Backend::Cuda(c) => c.new_session(n_ctx),
        }
    }

    /// Runs `req` on `session`, calling `on_token` with each new id (return false to stop).
    pub fn generate(
        &self,
        session: &mut Session,
        req: &GenerateRequest,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> anyhow::Result<GenerateResult> {
        let want = if req.keep_logits {
            LogitsFor::All
        } else {
            LogitsFor::Last
        };
        let n_vocab = self.model.config.n_vocab as usize;
        let mut result = GenerateResult::default();
        let mut sampler = Sampler::new(req.sampler.clone());
        req.prompt_ids.iter().for_each(|&t| sampler.accept(t));

        let t0 = Instant::now();
        let mut last = Vec::new();
        for chunk in req.prompt_ids.chunks(req.batch_size.max(1)) {
            let logits = self.forward(session, chunk, want)?;
            if req.keep_logits {
                result.logits.extend_from_slice(&logits);
            }
            last = logits;
            last.drain(..last.len() - n_vocab);
        }
        let prompt_s = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        if last.is_empty() && req.max_tokens > 0 {
            anyhow::bail!("an empty prompt cannot start a generation (give at least one token)");
        }
        while result.generated_ids.len() < req.max_tokens {
            check_finite_logits(
                &last,
                &format!("after {} generated tokens", result.generated_ids.len()),
            )?;
            let id = sampler.sample(&last);
            sampler.accept(id);
            result.generated_ids.push(id);
            let go_on = on_token(id);
            if !go_on
                || (req.stop_at_eog && self.model.tokenizer.is_eog(id))
                || result.generated_ids.len() == req.max_tokens
            {
                break;
            }
            let logits = self.forward(session, &[id], want)?;
            if req.keep_logits {
                result.logits.extend_from_slice(&logits);
            }
            last = logits;
        }
        let gen_s = t1.elapsed().as_secs_f64();
        let n_prompt = req.prompt_ids.len();
        let n_gen = result.generated_ids.len();
        result.timings = Timings {
            load_s: self.load_seconds,
            prompt_tokens: n_prompt,
            prompt_s,
            gen_tokens: n_gen,
            gen_s,
            prompt_tokens_per_s: rate(n_prompt, prompt_s),
            gen_tokens_per_s: rate(n_gen, gen_s),
        };
        Ok(result)
    }
}

/// Refuses logits holding a NaN or an infinity (the model's arithmetic overflowed): a token
/// sampled from them, or a score computed from them, would be arbitrary, so the caller stops
/// with an error instead. `when` says where in the run (for the message).
pub(crate) fn check_finite_logits(logits: &[f32], when: &str) -> anyhow::Result<()> {
    match logits.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => anyhow::bail!(
            "the model produced a non-finite logit ({} at index {i}) {when}: its activations \
             overflowed, so no token can be chosen or scored from them",
            logits[i]
        ),
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}
