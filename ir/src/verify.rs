//! Type and shape rules of every op, used when building a graph and when validating one.

use std::collections::HashSet;

use crate::graph::{ElemKind, Graph, GraphInfo, Node, Op, ValueId, ValueType, Weight, WeightId};
use crate::DType;

/// A graph that breaks a rule of the IR.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("IR error at {location}: {problem}")]
pub struct IrError {
    /// Where: a node label or "graph".
    pub location: String,
    /// What is wrong.
    pub problem: String,
}

fn err(location: &str, problem: impl Into<String>) -> IrError {
    IrError {
        location: location.to_string(),
        problem: problem.into(),
    }
}

/// Computes the type of `op`'s result from the nodes before it, or says which rule it breaks.
pub fn infer_type(
    op: &Op,
    label: &str,
    info: &GraphInfo,
    weights: &[Weight],
    nodes: &[Node],
) -> Result<ValueType, IrError> {
    let value = |id: ValueId| -> Result<ValueType, IrError> {
        nodes.get(id.0 as usize).map(|n| n.ty).ok_or_else(|| {
            err(
                label,
                format!("operand %{} is not defined before this node", id.0),
            )
        })
    };
    let weight = |id: WeightId| -> Result<&Weight, IrError> {
        weights
            .get(id.0 as usize)
            .ok_or_else(|| err(label, format!("weight #{} does not exist", id.0)))
    };
    let f32_value = |id: ValueId| -> Result<u32, IrError> {
        let t = value(id)?;
        if t.kind != ElemKind::F32 {
            return Err(err(
                label,
                format!("operand %{} must be f32, it is {:?}", id.0, t.kind),
            ));
        }
        Ok(t.width)
    };
    let vector = |w: &Weight, n: u32| -> Result<(), IrError> {
        if w.dtype != DType::F32 || w.dims != [u64::from(n)] {
            return Err(err(
                label,
                format!(
                    "weight '{}' must be f32 [{n}], it is {} {:?}",
                    w.name, w.dtype, w.dims
                ),
            ));
        }
        Ok(())
    };
    let matrix = |w: &Weight| -> Result<(u32, u32), IrError> {
        match w.dims[..] {
            [k, m] => Ok((
                u32::try_from(k).map_err(|_| err(label, "matrix too large"))?,
                u32::try_from(m).map_err(|_| err(label, "matrix too large"))?,
            )),
            _ => Err(err(
                label,
                format!("weight '{}' must be 2-D, it has dims {:?}", w.name, w.dims),
            )),
        }
    };
    let table = |id: WeightId| -> Result<(u32, u32), IrError> {
        let w = weight(id)?;
        if w.dtype.is_ternary() {
            return Err(err(
                label,
                format!("table '{}' cannot be ternary ({})", w.name, w.dtype),
            ));
        }
        matrix(w)
    };
    let f32_of = |width: u32| ValueType {
        kind: ElemKind::F32,
        width,
    };

    match *op {
        Op::Embedding { table: t } => {
            let (e, v) = table(t)?;
            if v != info.n_vocab {
                return Err(err(
                    label,
                    format!(
                        "embedding has {v} rows but the vocabulary has {}",
                        info.n_vocab
                    ),
                ));
            }
            Ok(f32_of(e))
        }
        Op::RmsNorm { x, weight: w, eps } => {
            let n = f32_value(x)?;
            vector(weight(w)?, n)?;
            if !(eps.is_finite() && eps > 0.0) {
                return Err(err(label, format!("eps must be positive, it is {eps}")));
            }
            Ok(f32_of(n))
        }
        Op::QuantizeActivation { x } => Ok(ValueType {
            kind: ElemKind::QInt8,
            width: f32_value(x)?,
        }),
        Op::TernaryLinear {
            x,
            weight: w,
            out_scale,
        } => {
            let t = value(x)?;
            if t.kind != ElemKind::QInt8 {
                return Err(err(label, "ternary linear needs a quantized (QInt8) input"));
            }
            let w = weight(w)?;
            if !w.dtype.is_ternary() {
                return Err(err(
                    label,
                    format!("weight '{}' is {}, not a ternary format", w.name, w.dtype),
                ));
            }
            let (k, m) = matrix(w)?;
            if k != t.width {
                return Err(err(
                    label,
                    format!(
                        "weight '{}' takes {k} inputs but the operand has width {}",
                        w.name, t.width
                    ),
                ));
            }
            if let Some(s) = out_scale {
                vector(weight(s)?, 1)?;
            }
            Ok(f32_of(m))
        }
        Op::AddBias { x, bias } => {
            let n = f32_value(x)?;
            vector(weight(bias)?, n)?;
            Ok(f32_of(n))
        }
        Op::Rope {
            x,
            n_heads,
            head_dim,
            freq_base,
        } => {
            let n = f32_value(x)?;
            if head_dim == 0 || head_dim % 2 != 0 || n_heads.checked_mul(head_dim) != Some(n) {
                return Err(err(
                    label,
                    format!("rope over {n_heads} heads of {head_dim} does not fit width {n}"),
                ));
            }
            if !(freq_base.is_finite() && freq_base > 0.0) {
                return Err(err(
                    label,
                    format!("rope base must be positive, it is {freq_base}"),
                ));
            }
            Ok(f32_of(n))
        }
        Op::Attention {
            q,
            k,
            v,
            layer,
            n_head,
            n_head_kv,
            head_dim,
        } => {
            let (wq, wk, wv) = (f32_value(q)?, f32_value(k)?, f32_value(v)?);
            if n_head_kv == 0 || n_head % n_head_kv != 0 {
                return Err(err(
                    label,
                    format!("{n_head} query heads cannot share {n_head_kv} KV heads"),
                ));
            }
            if n_head.checked_mul(head_dim) != Some(wq)
                || n_head_kv.checked_mul(head_dim) != Some(wk)
                || wk != wv
            {
                return Err(err(label, format!("q/k/v widths {wq}/{wk}/{wv} do not match {n_head}/{n_head_kv} heads of {head_dim}")));
            }
            if layer >= info.n_kv_layers || wk != info.kv_width {
                return Err(err(
                    label,
                    format!(
                        "KV layer {layer} of width {wk} is outside the cache ({} layers of {})",
                        info.n_kv_layers, info.kv_width
                    ),
                ));
            }
            Ok(f32_of(wq))
        }
        Op::GatedActivation { gate, up, .. } | Op::Add { a: gate, b: up } => {
            let (a, b) = (f32_value(gate)?, f32_value(up)?);
            if a != b {
                return Err(err(label, format!("operand widths differ: {a} vs {b}")));
            }
            Ok(f32_of(a))
        }
        Op::OutputHead { x, table: t } => {
            let n = f32_value(x)?;
            let (e, v) = table(t)?;
            if e != n || v != info.n_vocab {
                return Err(err(
                    label,
                    format!(
                        "head table [{e}, {v}] does not map width {n} to {} logits",
                        info.n_vocab
                    ),
                ));
            }
            Ok(f32_of(v))
        }
    }
}

/// Checks every rule of the IR on a whole graph.
pub fn validate(graph: &Graph) -> Result<(), IrError> {
    for w in &graph.weights {
        let n = w.n_elems();
        let expected = w.dims.first().and_then(|&ne0| w.dtype.tensor_bytes(ne0, n));
        if expected != Some(w.data.bytes().len() as u64) {
            return Err(err(
                "graph",
                format!(
                    "weight '{}' has {} bytes, {} {:?} needs {expected:?}",
                    w.name,
                    w.data.bytes().len(),
                    w.dtype,
                    w.dims
                ),
            ));
        }
    }
    let mut kv_layers = HashSet::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let ty = infer_type(
            &node.op,
            &node.label,
            &graph.info,
            &graph.weights,
            &graph.nodes[..i],
        )?;
        if ty != node.ty {
            return Err(err(
                &node.label,
                format!("recorded type {:?} but the op produces {ty:?}", node.ty),
            ));
        }
        if let Op::Attention { layer, .. } = node.op {
            if !kv_layers.insert(layer) {
                return Err(err(
                    &node.label,
                    format!("KV layer {layer} is written twice"),
                ));
            }
        }
    }
    let out = graph
        .nodes
        .get(graph.output.0 as usize)
        .ok_or_else(|| err("graph", "output value does not exist"))?;
    if !matches!(out.op, Op::OutputHead { .. }) {
        return Err(err(
            "graph",
            "the output value is not produced by an output head",
        ));
    }
    Ok(())
}
