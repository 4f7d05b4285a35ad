//! Hyperparameters of the BitNet architectures, read from GGUF metadata (`bitnet-gguf.md` §3.2).

use bitnetc_ir::Activation;

use crate::error::ModelError;
use crate::gguf::Metadata;

/// Which graph family a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchFamily {
    /// `bitnet-b1.58` and its older name `bitnet-25` (2B4T): relu² FFN, GQA.
    BitNetB158,
    /// `bitnet` (1bitLLM conversions): SiLU FFN, optional per-matrix `.scale` tensors.
    BitNet,
}

impl ArchFamily {
    /// Recognizes an architecture string.
    pub fn from_name(name: &str) -> Option<ArchFamily> {
        match name {
            "bitnet-b1.58" | "bitnet-25" => Some(ArchFamily::BitNetB158),
            "bitnet" => Some(ArchFamily::BitNet),
            _ => None,
        }
    }
}

/// Everything the graph needs to know about a model's shape and numerics.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// Architecture string as found in the file (prefix of its keys).
    pub arch: String,
    /// Graph family.
    pub family: ArchFamily,
    /// Vocabulary size.
    pub n_vocab: u32,
    /// Trained context length.
    pub n_ctx: u32,
    /// Hidden size.
    pub n_embd: u32,
    /// Number of transformer blocks.
    pub n_layer: u32,
    /// Feed-forward width.
    pub n_ff: u32,
    /// Query heads.
    pub n_head: u32,
    /// Key/value heads.
    pub n_head_kv: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMSNorm epsilon (all norms).
    pub eps: f32,
    /// FFN nonlinearity.
    pub activation: Activation,
}

/// Largest hyperparameter accepted, to keep hostile files from driving huge allocations.
const MAX_DIM: u32 = 1 << 20;

impl ModelConfig {
    /// Reads the hyperparameters. `n_vocab` comes from the embedding tensor; `activation` overrides
    /// the FFN nonlinearity (for files whose architecture string does not tell it reliably).
    pub fn from_metadata(
        md: &Metadata,
        n_vocab: u32,
        activation: Option<Activation>,
    ) -> Result<ModelConfig, ModelError> {
        let arch = md.str("general.architecture")?.to_string();
        let family =
            ArchFamily::from_name(&arch).ok_or_else(|| ModelError::UnknownArch(arch.clone()))?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = md.u32(&key("embedding_length"))?;
        let n_layer = md.u32(&key("block_count"))?;
        let n_ff = md
            .u32_or_uniform_array(&key("feed_forward_length"))?
            .ok_or_else(|| crate::gguf::GgufError::MissingKey(key("feed_forward_length")))?;
        let n_head = md
            .u32_or_uniform_array(&key("attention.head_count"))?
            .ok_or_else(|| crate::gguf::GgufError::MissingKey(key("attention.head_count")))?;
        let n_head_kv = md
            .u32_or_uniform_array(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        let n_ctx = md.u32(&key("context_length"))?;
        let eps = md
            .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                crate::gguf::GgufError::MissingKey(key("attention.layer_norm_rms_epsilon"))
            })?;
        let rope_base = md.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);

        for (name, v) in [
            ("embedding_length", n_embd),
            ("block_count", n_layer),
            ("feed_forward_length", n_ff),
            ("attention.head_count", n_head),
            ("attention.head_count_kv", n_head_kv),
            ("context_length", n_ctx),
        ] {
            if v == 0 || v > MAX_DIM {
                return Err(ModelError::BadConfig(format!(
                    "{arch}.{name} = {v} is out of range 1..={MAX_DIM}"
                )));
            }
        }
        if n_embd % n_head != 0 {
            return Err(ModelError::BadConfig(format!(
                "embedding_length {n_embd} is not divisible by head_count {n_head}"
            )));
        }
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadConfig(format!(
                "head_count {n_head} is not a multiple of head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = n_embd / n_head;
        for k in [
            "attention.key_length",
            "attention.value_length",
            "rope.dimension_count",
        ] {
            if let Some(v) = md.opt_u32(&key(k))? {
                if v != head_dim {
                    return Err(ModelError::Unsupported(format!(
                        "{arch}.{k} = {v} differs from the head size {head_dim}"
                    )));
                }
            }
        }
        if head_dim % 2 != 0 {
            return Err(ModelError::BadConfig(format!(
                "head size {head_dim} is odd; RoPE needs pairs"
            )));
        }
        if let Some(t) = md.opt_str(&key("rope.scaling.type"))? {
            let factor = md.opt_f32(&key("rope.scaling.factor"))?.unwrap_or(1.0);
            if !(t == "none" || (t == "linear" && factor == 1.0)) {
                return Err(ModelError::Unsupported(format!(
                    "RoPE scaling '{t}' with factor {factor}"
                )));
            }
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(ModelError::BadConfig(format!(
                "rms epsilon {eps} must be positive"
            )));
        }
        if !(rope_base.is_finite() && rope_base > 0.0) {
            return Err(ModelError::BadConfig(format!(
                "rope.freq_base {rope_base} must be positive"
            )));
        }
        if let Some(v) = md.opt_u32(&key("vocab_size"))? {
            if v != n_vocab {
                return Err(ModelError::BadConfig(format!(
                    "{arch}.vocab_size = {v} but token_embd has {n_vocab} rows"
                )));
            }
        }
        let activation = match activation {
            Some(a) => a,
            // 2B4T is relu²-gated whatever the file says (reference §3.5).
            None if family == ArchFamily::BitNetB158 => Activation::Relu2,
            None => match md.opt_str(&key("hidden_activation"))? {
                None | Some("silu") => Activation::Silu,
                Some("relu2") => Activation::Relu2,
                Some(other) => {
                    return Err(ModelError::Unsupported(format!(
                        "hidden_activation '{other}'"
                    )))
                }
            },
        };
        Ok(ModelConfig {
            arch,
            family,
            n_vocab,
            n_ctx,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            rope_base,
            eps,
            activation,
        })
    }

    /// Width of one token's K (or V).
    pub fn kv_width(&self) -> u32 {
        self.n_head_kv * self.head_dim
    }
}
