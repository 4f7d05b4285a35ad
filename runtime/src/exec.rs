//! The graph walker shared by every CPU backend.
//!
//! [`execute`] runs the nodes of a [`Graph`] in order over a batch of tokens, keeping every value
//! as a plain vector and freeing each one after its last use. The ops whose implementation
//! differs between backends (the ternary linear layers and the output head, where nearly all
//! bytes are read) are asked of an [`OpKernels`]; every other op runs the reference numerics, so
//! two backends whose kernels agree bit for bit produce bit-identical logits.

use bitnetc_ir::{Activation, Graph, Op, ValueId, Weight};

use crate::error::RuntimeError;
use crate::kv_cache::KvCache;
use crate::reference::numerics::{self, quantize_row, rms_norm, rope_neox, QuantizedRow};
use crate::reference::weights::table_row;
use crate::reference::{attention, AttentionShape};

/// Which positions of a batch need logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last token (generation).
    Last,
    /// Every token of the batch (`--dump-logits`, perplexity).
    All,
}

/// A sequence being evaluated: its KV cache.
pub struct Session {
    /// Keys and values of the positions processed so far (on the host; a device backend only
    /// keeps the positions' count here).
    pub kv: KvCache,
    /// State a device backend keeps for the sequence (its KV cache in device memory).
    pub device: Option<Box<dyn std::any::Any + Send>>,
}

impl Session {
    /// A new, empty sequence for `graph` holding at most `n_ctx` positions (capped at the
    /// model's context).
    pub fn for_graph(graph: &Graph, n_ctx: usize) -> Session {
        let info = &graph.info;
        let cap = n_ctx.min(info.n_ctx as usize).max(1);
        Session {
            kv: KvCache::new(info.n_kv_layers as usize, info.kv_width as usize, cap),
            device: None,
        }
    }

    /// Number of positions processed so far.
    pub fn n_past(&self) -> usize {
        self.kv.len()
    }
}

/// The kernels a backend supplies for the heavy ops.
pub trait OpKernels: Sync {
    /// `y[t, m]` (`[T × M]`, row-major) of the ternary linear op at node `node` with weight
    /// `weight`, for the quantized token rows `x`, times `out_scale` when there is one.
    fn ternary_linear(
        &self,
        node: usize,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
    ) -> Result<Vec<f32>, RuntimeError>;

    /// Logits (`[rows × n_vocab]`) of the output head at node `node` for each row of `xs`.
    fn output_head(
        &self,
        node: usize,
        table: &Weight,
        xs: &[&[f32]],
    ) -> Result<Vec<f32>, RuntimeError>;

    /// Causal attention at node `node` of the query rows `q` over layer `layer` of `kv` (whose
    /// keys and values already include the batch), the first query at position `n_past`. The
    /// default is the reference.
    fn attention(
        &self,
        _node: usize,
        kv: &KvCache,
        layer: usize,
        q: &[f32],
        n_past: usize,
        shape: AttentionShape,
    ) -> Result<Vec<f32>, RuntimeError> {
        Ok(attention(kv, layer, q, n_past, shape))
    }
}

/// For each node, the index of the last node that reads its value (`usize::MAX` for the
/// graph's output, which is never freed).
pub fn last_uses(graph: &Graph) -> Vec<usize> {
    let mut last_use = vec![0; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in node.op.inputs() {
            last_use[input.0 as usize] = i;
        }
    }
    last_use[graph.output.0 as usize] = usize::MAX;
    last_use
}

/// Checks a batch against the vocabulary and the session's room, runs `pass` and advances the
/// session on success; on failure the session is left as it was.
pub fn forward_checked(
    graph: &Graph,
    session: &mut Session,
    tokens: &[u32],
    pass: impl FnOnce(&mut Session) -> Result<Vec<f32>, RuntimeError>,
) -> Result<Vec<f32>, RuntimeError> {
    if tokens.is_empty() {
        return Err(RuntimeError::EmptyBatch);
    }
    let n_vocab = graph.info.n_vocab;
    if let Some(&id) = tokens.iter().find(|&&t| t >= n_vocab) {
        return Err(RuntimeError::TokenOutOfRange { id, n_vocab });
    }
    let start = session.kv.len();
    let needed = start + tokens.len();
    if needed > session.kv.capacity() {
        return Err(RuntimeError::ContextFull {
            n_ctx: session.kv.capacity(),
            needed,
        });
    }
    match pass(session) {
        Ok(logits) => {
            session.kv.advance(tokens.len());
            Ok(logits)
        }
        Err(e) => {
            session.kv.truncate(start);
            Err(e)
        }
    }
}

/// An activation value during a forward pass.
enum Buf {
    F32(Vec<f32>),
    Q8(Vec<QuantizedRow>),
}

impl Buf {
    fn f32(&self) -> &[f32] {
        match self {
            Buf::F32(v) => v,
            Buf::Q8(_) => unreachable!("the IR validator guarantees operand kinds"),
        }
    }

    fn q8(&self) -> &[QuantizedRow] {
        match self {
            Buf::Q8(v) => v,
            Buf::F32(_) => unreachable!("the IR validator guarantees operand kinds"),
        }
    }
}

/// An f32 weight as a vector (norm weights, biases, scales).
pub fn weight_f32(w: &Weight) -> Vec<f32> {
    w.data
        .bytes()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Runs every node of `graph` for `tokens` at the next positions of `session` (whose KV cache
/// receives their keys and values) and returns the graph's output. `last_use` comes from
/// [`last_uses`]. Does not advance the session; see [`forward_checked`].
pub fn execute(
    graph: &Graph,
    last_use: &[usize],
    kernels: &dyn OpKernels,
    session: &mut Session,
    tokens: &[u32],
    want: LogitsFor,
) -> Result<Vec<f32>, RuntimeError> {
    let g = graph;
    let t_count = tokens.len();
    let n_past = session.kv.len();
    let mut values: Vec<Option<Buf>> = (0..g.nodes.len()).map(|_| None).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        let width = node.ty.width as usize;
        let get = |id: ValueId| {
            values[id.0 as usize]
                .as_ref()
                .expect("operands are computed before use")
        };
        let out = match &node.op {
            Op::Embedding { table } => {
                let w = g.weight(*table);
                let mut out = vec![0.0; t_count * width];
                for (row, &tok) in out.chunks_mut(width).zip(tokens) {
                    table_row(w, tok as usize, row)?;
                }
                Buf::F32(out)
            }
            Op::RmsNorm { x, weight, eps } => {
                let w = weight_f32(g.weight(*weight));
                let mut out = vec![0.0; t_count * width];
                for (o, xr) in out.chunks_mut(width).zip(get(*x).f32().chunks(width)) {
                    rms_norm(xr, &w, *eps, o);
                }
                Buf::F32(out)
            }
            Op::QuantizeActivation { x } => {
                Buf::Q8(get(*x).f32().chunks(width).map(quantize_row).collect())
            }
            Op::TernaryLinear {
                x,
                weight,
                out_scale,
            } => {
                let scale = out_scale.map(|s| weight_f32(g.weight(s))[0]);
                Buf::F32(kernels.ternary_linear(i, g.weight(*weight), get(*x).q8(), scale)?)
            }
            Op::AddBias { x, bias } => {
                let b = weight_f32(g.weight(*bias));
                let mut out = get(*x).f32().to_vec();
                for row in out.chunks_mut(width) {
                    row.iter_mut().zip(&b).for_each(|(o, b)| *o += b);
                }
                Buf::F32(out)
            }
            Op::Rope {
                x,
                head_dim,
                freq_base,
                ..
            } => {
                let mut out = get(*x).f32().to_vec();
                for (t, row) in out.chunks_mut(width).enumerate() {
                    for head in row.chunks_mut(*head_dim as usize) {
                        rope_neox(head, n_past + t, *freq_base);
                    }
                }
                Buf::F32(out)
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
                let layer = *layer as usize;
                session.kv.append(layer, get(*k).f32(), get(*v).f32());
                let shape = AttentionShape {
                    n_head: *n_head as usize,
                    n_head_kv: *n_head_kv as usize,
                    head_dim: *head_dim as usize,
                };
                Buf::F32(kernels.attention(i, &session.kv, layer, get(*q).f32(), n_past, shape)?)
            }
            Op::GatedActivation { gate, up, act } => {
                let f = match act {
                    Activation::Relu2 => numerics::relu2_gate,
                    Activation::Silu => numerics::silu_gate,
                };
                Buf::F32(
                    get(*gate)
                        .f32()
                        .iter()
                        .zip(get(*up).f32())
                        .map(|(&g, &u)| f(g, u))
                        .collect(),
                )
            }
            Op::Add { a, b } => Buf::F32(
                get(*a)
                    .f32()
                    .iter()
                    .zip(get(*b).f32())
                    .map(|(x, y)| x + y)
                    .collect(),
            ),
            Op::OutputHead { x, table } => {
                let xs = get(*x).f32();
                let in_w = xs.len() / t_count;
                let rows: Vec<&[f32]> = match want {
                    LogitsFor::All => xs.chunks(in_w).collect(),
                    LogitsFor::Last => vec![&xs[(t_count - 1) * in_w..]],
                };
                Buf::F32(kernels.output_head(i, g.weight(*table), &rows)?)
            }
        };
        values[i] = Some(out);
        for input in node.op.inputs() {
            if last_use[input.0 as usize] == i {
                values[input.0 as usize] = None;
            }
        }
    }
    match values[g.output.0 as usize].take() {
        Some(Buf::F32(v)) => Ok(v),
        _ => unreachable!("the validator guarantees an f32 output"),
    }
}
