//! Synthetic models: GGUF files with a real BitNet architecture and shapes and seeded random
//! ternary weights (`bitnetc gen-model`). They let every path be tested without downloading a
//! real model, and the same seed gives the same ternary weights in every ternary format, so
//! I2_S, TQ1_0 and TQ2_0 files of one seed must produce the same logits.

mod presets;

use std::hash::{Hash, Hasher};

use bitnetc_ir::DType;
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::config::ArchFamily;
use crate::gguf::{GgufWriter, Value};
use crate::quant::{self, i2s, tq1_0, tq2_0};
use crate::tokenizer::TokenizerSpec;

pub use presets::Preset;

/// Everything `gen-model` needs.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Architecture string: `bitnet-b1.58` or `bitnet`.
    pub arch: String,
    /// Shape preset.
    pub preset: Preset,
    /// Format of the ternary weights.
    pub ternary_type: DType,
    /// Format of `token_embd`.
    pub embedding_type: DType,
    /// The vocabulary to embed (its size sets `n_vocab` unless the preset fixes it).
    pub tokenizer: TokenizerSpec,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Why a synthetic model could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The options contradict each other.
    #[error("{0}")]
    Invalid(String),
    /// Encoding a tensor failed.
    #[error("encoding '{name}': {problem}")]
    Encode {
        /// Tensor name.
        name: String,
        /// What failed.
        problem: String,
    },
}

/// Embedding values are uniform in ±this. Small against what the layers add to the residual
/// stream (as in trained models), so the next token depends on the context rather than the tied
/// head simply echoing the current token.
const EMBED_RANGE: f32 = 0.05;

/// One tensor to generate: name, dims and what it holds.
struct TensorPlan {
    name: String,
    dims: Vec<u64>,
    kind: TensorKind,
}

enum TensorKind {
    Ternary,
    Norm,
    Embedding,
}

/// A random generator for one tensor, derived from the seed and the tensor name.
fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    ChaCha8Rng::seed_from_u64(seed ^ h.finish().rotate_left(17))
}

/// Builds the complete GGUF file in memory.
pub fn synthesize(opts: &SynthOptions) -> Result<GgufWriter, SynthError> {
    let family = ArchFamily::from_name(&opts.arch)
        .ok_or_else(|| SynthError::Invalid(format!("unknown architecture '{}'", opts.arch)))?;
    if !opts.ternary_type.is_ternary() {
        return Err(SynthError::Invalid(format!(
            "--type must be a ternary format, not {}",
            opts.ternary_type
        )));
    }
    if opts.embedding_type.is_ternary() {
        return Err(SynthError::Invalid(format!(
            "--embedding-type cannot be ternary ({})",
            opts.embedding_type
        )));
    }
    let p = opts.preset.hparams(family);
    let n_vocab = opts.tokenizer.tokens.len() as u64;
    for (what, n) in [
        ("embedding length", p.n_embd),
        ("feed-forward length", p.n_ff),
    ] {
        if u64::from(n) % opts.ternary_type.block_elems() != 0 {
            return Err(SynthError::Invalid(format!(
                "{what} {n} is not a multiple of the {} block",
                opts.ternary_type
            )));
        }
    }
    if u64::from(p.n_embd) % opts.embedding_type.block_elems() != 0 {
        return Err(SynthError::Invalid(format!(
            "embedding length {} is not a multiple of the {} block",
            p.n_embd, opts.embedding_type
        )));
    }

    let mut w = GgufWriter::new();
    let a = |k: &str| format!("{}.{k}", opts.arch);
    w.set("general.architecture", Value::str(&opts.arch));
    w.set(
        "general.name",
        Value::str(&format!("bitnetc-synthetic-{}", opts.preset.name())),
    );
    w.set(
        "general.file_type",
        Value::U32(match opts.ternary_type {
            DType::TQ1_0 => 36,
            DType::TQ2_0 => 37,
            _ => 40,
        }),
    );
    w.set("general.quantization_version", Value::U32(2));
    w.set(&a("vocab_size"), Value::U32(n_vocab as u32));
    w.set(&a("context_length"), Value::U32(p.n_ctx));
    w.set(&a("embedding_length"), Value::U32(p.n_embd));
    w.set(&a("block_count"), Value::U32(p.n_layer));
    w.set(&a("feed_forward_length"), Value::U32(p.n_ff));
    w.set(&a("attention.head_count"), Value::U32(p.n_head));
    w.set(&a("attention.head_count_kv"), Value::U32(p.n_head_kv));
    w.set(&a("rope.dimension_count"), Value::U32(p.n_embd / p.n_head));
    w.set(&a("rope.freq_base"), Value::F32(p.rope_base));
    w.set(&a("attention.layer_norm_rms_epsilon"), Value::F32(1e-5));
    put_tokenizer(&mut w, &opts.tokenizer);

    let (e, ff, v) = (u64::from(p.n_embd), u64::from(p.n_ff), n_vocab);
    let hd = u64::from(p.n_embd / p.n_head);
    let (qw, kvw) = (u64::from(p.n_head) * hd, u64::from(p.n_head_kv) * hd);
    let mut plan = vec![TensorPlan {
        name: "token_embd.weight".into(),
        dims: vec![e, v],
        kind: TensorKind::Embedding,
    }];
    plan.push(TensorPlan {
        name: "output_norm.weight".into(),
        dims: vec![e],
        kind: TensorKind::Norm,
    });
    for l in 0..p.n_layer {
        let t = |s: &str| format!("blk.{l}.{s}.weight");
        for (name, dims, kind) in [
            ("attn_norm", vec![e], TensorKind::Norm),
            ("attn_q", vec![e, qw], TensorKind::Ternary),
            ("attn_k", vec![e, kvw], TensorKind::Ternary),
            ("attn_v", vec![e, kvw], TensorKind::Ternary),
            ("attn_sub_norm", vec![qw], TensorKind::Norm),
            ("attn_output", vec![qw, e], TensorKind::Ternary),
            ("ffn_norm", vec![e], TensorKind::Norm),
            ("ffn_gate", vec![e, ff], TensorKind::Ternary),
            ("ffn_up", vec![e, ff], TensorKind::Ternary),
            ("ffn_sub_norm", vec![ff], TensorKind::Norm),
            ("ffn_down", vec![ff, e], TensorKind::Ternary),
        ] {
            plan.push(TensorPlan {
                name: t(name),
                dims,
                kind,
            });
        }
    }
    let encoded: Vec<(String, Vec<u64>, DType, Vec<u8>)> = plan
        .par_iter()
        .map(|t| {
            let (dtype, data) = make_tensor(t, opts)?;
            Ok((t.name.clone(), t.dims.clone(), dtype, data))
        })
        .collect::<Result<_, SynthError>>()?;
    for (name, dims, dtype, data) in encoded {
        w.add_tensor(&name, &dims, dtype, data)
            .map_err(|e| SynthError::Encode {
                name,
                problem: e.to_string(),
            })?;
    }
    Ok(w)
}

fn put_tokenizer(w: &mut GgufWriter, t: &TokenizerSpec) {
    w.set("tokenizer.ggml.model", Value::str(&t.model));
    if let Some(pre) = &t.pre {
        w.set("tokenizer.ggml.pre", Value::str(pre));
    }
    w.set("tokenizer.ggml.tokens", Value::str_array(&t.tokens));
    if let Some(s) = &t.scores {
        w.set("tokenizer.ggml.scores", Value::f32_array(s));
    }
    if let Some(tt) = &t.token_types {
        w.set("tokenizer.ggml.token_type", Value::i32_array(tt));
    }
    if !t.merges.is_empty() {
        w.set("tokenizer.ggml.merges", Value::str_array(&t.merges));
    }
    for (key, id) in [
        ("bos_token_id", t.bos_id),
        ("eos_token_id", t.eos_id),
        ("unknown_token_id", t.unk_id),
        ("padding_token_id", t.pad_id),
        ("eot_token_id", t.eot_id),
        ("eom_token_id", t.eom_id),
    ] {
        if let Some(id) = id {
            w.set(&format!("tokenizer.ggml.{key}"), Value::U32(id));
        }
    }
    for (key, b) in [
        ("add_bos_token", t.add_bos),
        ("add_eos_token", t.add_eos),
        ("add_space_prefix", t.add_space_prefix),
    ] {
        if let Some(b) = b {
            w.set(&format!("tokenizer.ggml.{key}"), Value::Bool(b));
        }
    }
    if let Some(c) = &t.chat_template {
        w.set("tokenizer.chat_template", Value::str(c));
    }
}

/// Random ternary codes (0, 1, 2 with probabilities ¼, ½, ¼), 32 per random word.
fn random_codes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut codes = Vec::with_capacity(n);
    while codes.len() < n {
        let mut r: u64 = rng.gen();
        for _ in 0..32.min(n - codes.len()) {
            codes.push(match r & 3 {
                0 => 0,
                2 => 2,
                _ => 1,
            });
            r >>= 2;
        }
    }
    codes
}

fn make_tensor(t: &TensorPlan, opts: &SynthOptions) -> Result<(DType, Vec<u8>), SynthError> {
    let mut rng = rng_for(opts.seed, &t.name);
    let n: usize = t.dims.iter().product::<u64>() as usize;
    let enc = |e: quant::QuantError| SynthError::Encode {
        name: t.name.clone(),
        problem: e.to_string(),
    };
    match t.kind {
        TensorKind::Norm => {
            let vals: Vec<f32> = (0..n).map(|_| 1.0 + rng.gen_range(-0.1f32..0.1)).collect();
            Ok((
                DType::F32,
                vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ))
        }
        TensorKind::Embedding => {
            let vals: Vec<f32> = (0..n)
                .map(|_| rng.gen_range(-EMBED_RANGE..EMBED_RANGE))
                .collect();
            let dtype = opts.embedding_type;
            let ne0 = t.dims[0];
            let row_bytes = dtype.row_bytes(ne0).expect("checked block multiple") as usize;
            let mut out = vec![0u8; row_bytes * (n / ne0 as usize)];
            for (row, dst) in vals.chunks(ne0 as usize).zip(out.chunks_mut(row_bytes)) {
                quant::quantize_row(dtype, row, dst).map_err(enc)?;
            }
            Ok((dtype, out))
        }
        TensorKind::Ternary => {
            let codes = random_codes(&mut rng, n);
            // A mean-|W|-like scale, rounded through f16 so every ternary format stores it exactly.
            let k = t.dims[0] as f32;
            let scale = f16::from_f32(rng.gen_range(0.5f32..1.5) / k.sqrt()).to_f32();
            let ne0 = t.dims[0] as usize;
            let data = match opts.ternary_type {
                DType::I2S => i2s::encode(&codes, scale),
                dtype => {
                    let row_bytes =
                        dtype.row_bytes(ne0 as u64).expect("checked block multiple") as usize;
                    let scales = vec![f16::from_f32(scale); ne0 / 256];
                    let mut out = vec![0u8; row_bytes * (n / ne0)];
                    for (row, dst) in codes.chunks(ne0).zip(out.chunks_mut(row_bytes)) {
                        if dtype == DType::TQ2_0 {
                            tq2_0::encode_row(row, &scales, dst).map_err(enc)?;
                        } else {
                            tq1_0::encode_row(row, &scales, dst).map_err(enc)?;
                        }
                    }
                    out
                }
            };
            Ok((opts.ternary_type, data))
        }
    }
}
