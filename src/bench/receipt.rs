//! The receipt: a versioned JSON record of one `bitnetc bench` run.
//!
//! Its shape is checked in as `schemas/receipt.schema.json`; bump [`SCHEMA_VERSION`] and the
//! schema together when a field changes meaning or disappears.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bandwidth::ReadBandwidth;
use super::host::{BuildInfo, HostInfo, ProcessFigures};
use super::stats::{Figure, Latency};
use crate::{Engine, KernelUse};

/// Version of the receipt format.
pub const SCHEMA_VERSION: u32 = 1;
/// The `kind` field every receipt carries.
pub const RECEIPT_KIND: &str = "bitnetc-bench-receipt";

/// One `bitnetc bench` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// Always [`RECEIPT_KIND`].
    pub kind: String,
    /// When the run finished (RFC 3339, UTC).
    pub timestamp: String,
    /// The bitnetc build.
    pub bitnetc: BuildInfo,
    /// The command line.
    pub command: Vec<String>,
    /// The machine.
    pub host: HostInfo,
    /// The model.
    pub model: ModelInfo,
    /// Backend name (`reference`, …).
    pub backend: String,
    /// Thread counts measured.
    pub threads: Vec<usize>,
    /// `real` when every op ran its backend's real kernel, `fallback` otherwise.
    pub compute_path: String,
    /// The kernel every op ran, grouped by (op, kernel, fallback).
    pub kernels: Vec<KernelGroup>,
    /// What was measured and how.
    pub config: BenchConfig,
    /// One entry per (test, thread count).
    pub results: Vec<TestResult>,
    /// Whole-process figures at the end of the run.
    pub process: ProcessFigures,
    /// Perplexity of a text (`--quality`), if measured.
    pub quality: Option<Quality>,
    /// Read bandwidth per thread count (`--bandwidth`), measured in this run; empty if not.
    #[serde(default)]
    pub read_bandwidth: Vec<ReadBandwidth>,
}

/// How the tests were run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Prompt sizes of the pp tests.
    pub n_prompt: Vec<usize>,
    /// Generation lengths of the tg tests.
    pub n_gen: Vec<usize>,
    /// Measured repetitions of each test.
    pub repetitions: usize,
    /// Unmeasured warm-up runs before them.
    pub warmup_runs: usize,
    /// Prompt tokens fed (untimed for throughput) before a tg test generates.
    pub tg_prompt: usize,
    /// Seed of the pseudo-random prompt tokens.
    pub token_seed: u64,
}

/// Figures of one test at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestResult {
    /// `pp128`, `tg64`, … (llama-bench's names).
    pub test: String,
    /// `pp` or `tg`.
    pub kind: String,
    /// Prompt tokens per repetition.
    pub n_prompt: usize,
    /// Generated tokens per repetition.
    pub n_gen: usize,
    /// Backend.
    pub backend: String,
    /// Worker threads.
    pub threads: usize,
    /// Seconds the model load took for this thread count.
    pub load_s: f64,
    /// Seconds of kernel compilation during the load (null: the backend compiles nothing).
    pub compile_s: Option<f64>,
    /// Tokens per second of each repetition (pp: prompt tokens / batch time; tg: generated
    /// tokens / decode time).
    pub tokens_per_s: Figure,
    /// Seconds of the timed part of each repetition.
    pub seconds: Vec<f64>,
    /// Milliseconds from the start of a repetition to the logits of its first new token.
    pub ttft_ms: Figure,
    /// Per-token decode latency in milliseconds over all repetitions (tg only).
    pub token_latency_ms: Option<Latency>,
    /// Peak resident bytes of the process after this test.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes of weights one decoded token reads, in the model file's formats (tg only).
    #[serde(default)]
    pub weight_bytes_per_token: Option<u64>,
    /// Median tokens/s over the fastest decode the read bandwidth measured in the same run
    /// allows (`median GB/s / weight_bytes_per_token`); tg tests of a run with `--bandwidth`.
    #[serde(default)]
    pub of_bandwidth_ceiling: Option<f64>,
}

impl TestResult {
    /// The key tests are matched by across receipts: `backend/test/t<threads>`.
    pub fn key(&self) -> String {
        format!("{}/{}/t{}", self.backend, self.test, self.threads)
    }
}

/// Kernels of a run, grouped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelGroup {
    /// Op kind, e.g. `ternary_linear`.
    pub op: String,
    /// Kernel name, e.g. `reference.ternary_linear.i2_s`.
    pub kernel: String,
    /// True when these ops ran a fallback instead of their real kernel.
    pub fallback: bool,
    /// The labels of the ops (graph nodes) that ran it, in execution order.
    pub nodes: Vec<String>,
}

/// Groups per-op kernel uses by (op, kernel, fallback), keeping first-seen order.
pub fn group_kernels(uses: &[KernelUse]) -> Vec<KernelGroup> {
    let mut groups: Vec<KernelGroup> = Vec::new();
    for u in uses {
        match groups
            .iter_mut()
            .find(|g| g.op == u.op && g.kernel == u.kernel && g.fallback == u.fallback)
        {
            Some(g) => g.nodes.push(u.label.clone()),
            None => groups.push(KernelGroup {
                op: u.op.clone(),
                kernel: u.kernel.clone(),
                fallback: u.fallback,
                nodes: vec![u.label.clone()],
            }),
        }
    }
    groups
}

/// `real`, or `fallback` when any op ran a fallback.
pub fn compute_path(uses: &[KernelUse]) -> &'static str {
    if uses.iter().any(|u| u.fallback) {
        "fallback"
    } else {
        "real"
    }
}

/// `--strict`: an error naming the first op that ran a fallback (and how many did).
pub fn check_strict(uses: &[KernelUse]) -> anyhow::Result<()> {
    let fallbacks: Vec<&KernelUse> = uses.iter().filter(|u| u.fallback).collect();
    if let Some(first) = fallbacks.first() {
        anyhow::bail!(
            "--strict: op {} ({}) ran the fallback kernel {}{}",
            first.label,
            first.op,
            first.kernel,
            if fallbacks.len() > 1 {
                format!(" (and {} more ops ran fallbacks)", fallbacks.len() - 1)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// The model measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Path as given.
    pub path: String,
    /// File size in bytes.
    pub file_bytes: u64,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// Tensor count per storage type (`i2_s`, `f16`, …).
    pub tensor_types: BTreeMap<String, usize>,
    /// Number of tensors.
    pub n_tensors: usize,
    /// Elements of all tensors.
    pub n_params: u64,
    /// Transformer blocks.
    pub n_layer: u32,
    /// Hidden width.
    pub n_embd: u32,
    /// Vocabulary size.
    pub n_vocab: u32,
    /// Content hash of the file.
    pub content_hash: ContentHash,
}

/// A hash identifying a model file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentHash {
    /// `sha256` (the whole file) or `sha256-sampled-v1` (see [`content_hash`]).
    pub algorithm: String,
    /// Lower-case hex digest.
    pub value: String,
}

/// Files up to this size are hashed whole.
pub const FULL_HASH_LIMIT: u64 = 64 << 20;
/// Chunks read by the sampled hash.
pub const SAMPLE_CHUNKS: u64 = 256;
/// Bytes per sampled chunk.
pub const SAMPLE_CHUNK_BYTES: u64 = 64 << 10;

/// Hashes a model file. Files of at most [`FULL_HASH_LIMIT`] bytes get the SHA-256 of the
/// whole file (`sha256`, the same digest as `sha256sum`). Larger files get
/// `sha256-sampled-v1`: SHA-256 over the file length (u64 little-endian), the first
/// `header_bytes` bytes (the GGUF header, metadata and tensor table), then [`SAMPLE_CHUNKS`]
/// chunks of [`SAMPLE_CHUNK_BYTES`] bytes at offsets `header_bytes + i·(len − header_bytes −
/// chunk) / (SAMPLE_CHUNKS − 1)`, in order. That reads at most 16 MiB plus the header, so it is
/// cheap even for multi-gigabyte files, and any change to the metadata, the tensor table, the
/// length or a sampled region changes it.
pub fn content_hash(path: &Path, header_bytes: u64) -> anyhow::Result<ContentHash> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    if len <= FULL_HASH_LIMIT {
        std::io::copy(&mut f, &mut HashWriter(&mut h))?;
        return Ok(ContentHash {
            algorithm: "sha256".into(),
            value: hex(&h.finalize()),
        });
    }
    let header_bytes = header_bytes.min(len);
    h.update(len.to_le_bytes());
    let mut header = Vec::new();
    (&mut f).take(header_bytes).read_to_end(&mut header)?;
    h.update(&header);
    let span = len - header_bytes;
    let chunk = SAMPLE_CHUNK_BYTES.min(span);
    let mut buf = vec![0u8; chunk as usize];
    for i in 0..SAMPLE_CHUNKS {
        let off = header_bytes + i * (span - chunk) / (SAMPLE_CHUNKS - 1);
        f.seek(SeekFrom::Start(off))?;
        f.read_exact(&mut buf)?;
        h.update(&buf);
    }
    Ok(ContentHash {
        algorithm: "sha256-sampled-v1".into(),
        value: hex(&h.finalize()),
    })
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a byte string, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl ModelInfo {
    /// Describes the model an engine loaded from `path`.
    pub fn describe(engine: &Engine, path: &Path) -> anyhow::Result<ModelInfo> {
        let model = engine.model();
        let file = &model.file;
        let mut tensor_types = BTreeMap::new();
        let mut n_params = 0u64;
        for t in file.tensors() {
            *tensor_types.entry(t.dtype.name().to_string()).or_insert(0) += 1;
            n_params += t.n_elems();
        }
        Ok(ModelInfo {
            path: path.display().to_string(),
            file_bytes: file.file_len(),
            architecture: model.config.arch.clone(),
            name: file
                .metadata()
                .opt_str("general.name")
                .ok()
                .flatten()
                .map(str::to_string),
            tensor_types,
            n_tensors: file.tensors().len(),
            n_params,
            n_layer: model.config.n_layer,
            n_embd: model.config.n_embd,
            n_vocab: model.config.n_vocab,
            content_hash: content_hash(path, file.header().data_start)?,
        })
    }

    /// Why this model is not the one `other` measured (empty when it is).
    pub fn differences(&self, other: &ModelInfo) -> Vec<String> {
        let mut d = Vec::new();
        if self.content_hash != other.content_hash {
            d.push(format!(
                "model content hash {}:{} ({}) vs {}:{} ({})",
                self.content_hash.algorithm,
                short(&self.content_hash.value),
                self.path,
                other.content_hash.algorithm,
                short(&other.content_hash.value),
                other.path
            ));
        }
        if self.architecture != other.architecture {
            d.push(format!(
                "architecture {} vs {}",
                self.architecture, other.architecture
            ));
        }
        d
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// Perplexity of a text, recorded with `bench --quality`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// The text file.
    pub text_path: String,
    /// SHA-256 of its bytes.
    pub text_sha256: String,
    /// Tokens in the text (BOS included when the model adds one).
    pub n_tokens: usize,
    /// Window size.
    pub n_ctx: usize,
    /// Tokens per forward pass.
    pub n_batch: usize,
    /// Windows scored.
    pub n_chunks: usize,
    /// Final perplexity.
    pub ppl: f64,
    /// Its standard error (llama.cpp's estimate).
    pub ppl_error: f64,
    /// Running perplexity after each window.
    pub chunk_ppl: Vec<f64>,
    /// Seconds the evaluation took.
    pub seconds: f64,
    /// Threads used.
    pub threads: usize,
}

impl Receipt {
    /// Reads a receipt, checking its kind and version.
    pub fn read(path: &Path) -> anyhow::Result<Receipt> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Receipt::parse(&text).with_context(|| format!("reading receipt {}", path.display()))
    }

    /// Parses a receipt from JSON, checking its kind and version.
    pub fn parse(text: &str) -> anyhow::Result<Receipt> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != RECEIPT_KIND {
            anyhow::bail!("not a bitnetc bench receipt (kind {kind:?})");
        }
        let version = v
            .get("schema_version")
            .and_then(|k| k.as_u64())
            .unwrap_or(0);
        if version != u64::from(SCHEMA_VERSION) {
            anyhow::bail!(
                "receipt schema version {version}, this bitnetc reads version {SCHEMA_VERSION}"
            );
        }
        Ok(serde_json::from_value(v)?)
    }

    /// Writes it as pretty JSON.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}
