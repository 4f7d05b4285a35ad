//! Text form of a graph (`bitnetc inspect --ir`).

use std::fmt;

use crate::graph::{ElemKind, Graph, Op};

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        writeln!(
            f,
            "graph arch={} vocab={} ctx={} kv_layers={} kv_width={}",
            i.arch, i.n_vocab, i.n_ctx, i.n_kv_layers, i.kv_width
        )?;
        for (id, w) in self.weights.iter().enumerate() {
            writeln!(f, "  weight #{id} {} {} {:?}", w.name, w.dtype, w.dims)?;
        }
        for (id, node) in self.nodes.iter().enumerate() {
            let kind = match node.ty.kind {
                ElemKind::F32 => "f32",
                ElemKind::QInt8 => "q8",
            };
            let w = |id: crate::WeightId| format!("#{}", id.0);
            let args = match &node.op {
                Op::Embedding { table } => format!("tokens, {}", w(*table)),
                Op::RmsNorm { x, weight, eps } => format!("%{}, {}, eps={eps:e}", x.0, w(*weight)),
                Op::QuantizeActivation { x } => format!("%{}", x.0),
                Op::TernaryLinear {
                    x,
                    weight,
                    out_scale,
                } => match out_scale {
                    Some(s) => format!("%{}, {}, scale={}", x.0, w(*weight), w(*s)),
                    None => format!("%{}, {}", x.0, w(*weight)),
                },
                Op::AddBias { x, bias } => format!("%{}, {}", x.0, w(*bias)),
                Op::Rope {
                    x,
                    n_heads,
                    head_dim,
                    freq_base,
                } => {
                    format!(
                        "%{}, heads={n_heads}, head_dim={head_dim}, base={freq_base}",
                        x.0
                    )
                }
                Op::Attention {
                    q,
                    k,
                    v,
                    layer,
                    n_head,
                    n_head_kv,
                    head_dim,
                } => format!(
                    "%{}, %{}, %{}, layer={layer}, heads={n_head}/{n_head_kv}, head_dim={head_dim}",
                    q.0, k.0, v.0
                ),
                Op::GatedActivation { gate, up, act } => format!("%{}, %{}, {act:?}", gate.0, up.0),
                Op::Add { a, b } => format!("%{}, %{}", a.0, b.0),
                Op::OutputHead { x, table } => format!("%{}, {}", x.0, w(*table)),
            };
            writeln!(
                f,
                "  %{id}: {kind}[T,{}] = {} {args}    ; {}",
                node.ty.width,
                node.op.kind_name(),
                node.label
            )?;
        }
        writeln!(f, "  return %{}", self.output.0)
    }
}
