//! Lowers a BitNet GGUF file into the IR (`bitnet-gguf.md` §3.3–3.4).

use std::collections::HashSet;

use bitnetc_ir::{
    DType, Graph, GraphBuilder, GraphInfo, Op, Storage, ValueId, Weight, WeightBytes, WeightId,
};

use crate::config::{ArchFamily, ModelConfig};
use crate::error::ModelError;
use crate::gguf::{GgufFile, TensorInfo};
use crate::payload::check_payload;

/// Formats accepted for the embedding / output-head table.
const TABLE_TYPES: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q6K];

/// Looks tensors up, checks their shapes and records which ones the graph used.
struct TensorPicker<'f> {
    file: &'f GgufFile,
    storage: Storage,
    used: HashSet<String>,
    builder: GraphBuilder,
}

impl<'f> TensorPicker<'f> {
    fn info(&self, name: &str) -> Option<&'f TensorInfo> {
        self.file.tensor(name)
    }

    fn add(&mut self, info: &TensorInfo) -> Result<WeightId, ModelError> {
        let start = (self.file.header().data_start + info.offset) as usize;
        let data = WeightBytes::new(self.storage.clone(), start..start + info.nbytes as usize)
            .ok_or_else(|| ModelError::BadTensor {
                name: info.name.clone(),
                problem: "payload outside the file".into(),
            })?;
        check_payload(&info.name, info.dtype, &info.dims, data.bytes())?;
        self.used.insert(info.name.clone());
        Ok(self.builder.weight(Weight {
            name: info.name.clone(),
            dtype: info.dtype,
            dims: info.dims.clone(),
            data,
        }))
    }

    fn check_dims(info: &TensorInfo, dims: &[u64]) -> Result<(), ModelError> {
        if info.dims != dims {
            return Err(ModelError::ShapeMismatch {
                name: info.name.clone(),
                found: info.dims.clone(),
                expected: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// A required tensor of exactly `dims` whose type is in `types`.
    fn required(
        &mut self,
        name: &str,
        dims: &[u64],
        types: &[DType],
    ) -> Result<WeightId, ModelError> {
        let info = self
            .info(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        Self::check_dims(info, dims)?;
        if !types.contains(&info.dtype) {
            let allowed: Vec<&str> = types.iter().map(|t| t.name()).collect();
            return Err(ModelError::BadTensor {
                name: name.into(),
                problem: format!(
                    "type {} is not allowed here (expected {})",
                    info.dtype,
                    allowed.join("/")
                ),
            });
        }
        self.add(info)
    }

    /// An optional tensor; present ones are checked like required ones.
    fn optional(
        &mut self,
        name: &str,
        dims: &[u64],
        types: &[DType],
    ) -> Result<Option<WeightId>, ModelError> {
        match self.info(name) {
            None => Ok(None),
            Some(_) => self.required(name, dims, types).map(Some),
        }
    }

    fn push(&mut self, label: String, op: Op) -> Result<ValueId, ModelError> {
        Ok(self.builder.push(label, op)?)
    }
}

/// Builds the IR graph of a BitNet model.
pub fn lower(file: &GgufFile, cfg: &ModelConfig) -> Result<Graph, ModelError> {
    let info = GraphInfo {
        arch: cfg.arch.clone(),
        n_vocab: cfg.n_vocab,
        n_ctx: cfg.n_ctx,
        n_kv_layers: cfg.n_layer,
        kv_width: cfg.kv_width(),
    };
    let storage: Storage = file.mapping();
    let mut p = TensorPicker {
        file,
        storage,
        used: HashSet::new(),
        builder: GraphBuilder::new(info),
    };
    let (e, ff, v) = (
        u64::from(cfg.n_embd),
        u64::from(cfg.n_ff),
        u64::from(cfg.n_vocab),
    );
    let (q_w, kv_w) = (
        u64::from(cfg.n_head * cfg.head_dim),
        u64::from(cfg.kv_width()),
    );
    let ternary = [DType::I2S, DType::TQ1_0, DType::TQ2_0];
    let f32 = [DType::F32];

    let table = p.required("token_embd.weight", &[e, v], &TABLE_TYPES)?;
    if p.info("rope_freqs.weight").is_some() {
        return Err(ModelError::Unsupported(
            "tensor 'rope_freqs.weight' (custom RoPE frequencies)".into(),
        ));
    }
    let mut x = p.push("embed".into(), Op::Embedding { table })?;
    for l in 0..cfg.n_layer {
        let t = |s: &str| format!("blk.{l}.{s}");
        let lab = |s: &str| format!("blk.{l}.{s}");
        // A linear layer: quantized input, ternary weight, optional scale and bias.
        let linear = |p: &mut TensorPicker,
                      xq: ValueId,
                      name: &str,
                      k: u64,
                      m: u64,
                      bias_ok: bool|
         -> Result<ValueId, ModelError> {
            let weight = p.required(&t(&format!("{name}.weight")), &[k, m], &ternary)?;
            let out_scale = match cfg.family {
                ArchFamily::BitNet => p.optional(&t(&format!("{name}.scale")), &[1], &f32)?,
                ArchFamily::BitNetB158 => None,
            };
            let mut y = p.push(
                lab(name),
                Op::TernaryLinear {
                    x: xq,
                    weight,
                    out_scale,
                },
            )?;
            if bias_ok && cfg.family == ArchFamily::BitNetB158 {
                if let Some(bias) = p.optional(&t(&format!("{name}.bias")), &[m], &f32)? {
                    y = p.push(lab(&format!("{name}.bias")), Op::AddBias { x: y, bias })?;
                }
            }
            Ok(y)
        };
        let norm =
            |p: &mut TensorPicker, x: ValueId, name: &str, n: u64| -> Result<ValueId, ModelError> {
                let weight = p.required(&t(&format!("{name}.weight")), &[n], &f32)?;
                p.push(
                    lab(name),
                    Op::RmsNorm {
                        x,
                        weight,
                        eps: cfg.eps,
                    },
                )
            };

        let a = norm(&mut p, x, "attn_norm", e)?;
        let aq = p.push(lab("attn_norm.q8"), Op::QuantizeActivation { x: a })?;
        let q = linear(&mut p, aq, "attn_q", e, q_w, true)?;
        let k = linear(&mut p, aq, "attn_k", e, kv_w, true)?;
        let v = linear(&mut p, aq, "attn_v", e, kv_w, true)?;
        let q = p.push(
            lab("attn_q.rope"),
            Op::Rope {
                x: q,
                n_heads: cfg.n_head,
                head_dim: cfg.head_dim,
                freq_base: cfg.rope_base,
            },
        )?;
        let k = p.push(
            lab("attn_k.rope"),
            Op::Rope {
                x: k,
                n_heads: cfg.n_head_kv,
                head_dim: cfg.head_dim,
                freq_base: cfg.rope_base,
            },
        )?;
        let o = p.push(
            lab("attention"),
            Op::Attention {
                q,
                k,
                v,
                layer: l,
                n_head: cfg.n_head,
                n_head_kv: cfg.n_head_kv,
                head_dim: cfg.head_dim,
            },
        )?;
        let o = norm(&mut p, o, "attn_sub_norm", q_w)?;
        let oq = p.push(lab("attn_sub_norm.q8"), Op::QuantizeActivation { x: o })?;
        let o = linear(&mut p, oq, "attn_output", q_w, e, true)?;
        let h = p.push(lab("attn_residual"), Op::Add { a: x, b: o })?;

        let f = norm(&mut p, h, "ffn_norm", e)?;
        let fq = p.push(lab("ffn_norm.q8"), Op::QuantizeActivation { x: f })?;
        let up = linear(&mut p, fq, "ffn_up", e, ff, false)?;
        let gate = linear(&mut p, fq, "ffn_gate", e, ff, false)?;
        // The b1.58 loader accepts FFN biases but its graph ignores them (reference §3.3).
        if cfg.family == ArchFamily::BitNetB158 {
            for (name, n) in [("ffn_gate", ff), ("ffn_up", ff), ("ffn_down", e)] {
                if let Some(info) = p.info(&t(&format!("{name}.bias"))) {
                    TensorPicker::check_dims(info, &[n])?;
                    p.used.insert(info.name.clone());
                }
            }
        }
        let z = p.push(
            lab("ffn_act"),
            Op::GatedActivation {
                gate,
                up,
                act: cfg.activation,
            },
        )?;
        let z = norm(&mut p, z, "ffn_sub_norm", ff)?;
        let zq = p.push(lab("ffn_sub_norm.q8"), Op::QuantizeActivation { x: z })?;
        let d = linear(&mut p, zq, "ffn_down", ff, e, false)?;
        x = p.push(lab("ffn_residual"), Op::Add { a: h, b: d })?;
    }
    let w = p.required("output_norm.weight", &[e], &f32)?;
    let x = p.push(
        "output_norm".into(),
        Op::RmsNorm {
            x,
            weight: w,
            eps: cfg.eps,
        },
    )?;
    // The head is tied to token_embd; bitnet.cpp's b1.58 graph ignores an `output.weight` too.
    if let Some(info) = p.info("output.weight") {
        TensorPicker::check_dims(info, &[e, v])?;
        p.used.insert(info.name.clone());
    }
    let logits = p.push("output".into(), Op::OutputHead { x, table })?;

    if let Some(extra) = file.tensors().iter().find(|t| !p.used.contains(&t.name)) {
        return Err(ModelError::UnexpectedTensors {
            expected: p.used.len(),
            found: file.tensors().len(),
            first_unexpected: extra.name.clone(),
        });
    }
    Ok(p.builder.finish(logits)?)
}
