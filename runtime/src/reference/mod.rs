//! The reference backend: a plain executor of the IR with the reference numerics.
//!
//! It runs the nodes of a [`Graph`] in order over a batch of tokens, keeping every value as a
//! plain vector, and parallelizes only across independent output rows (so results are the same
//! for every thread count). It is the oracle generated kernels are tested against; it is written
//! to be read, not to be fast.

pub mod numerics;
pub mod weights;

use std::sync::Arc;

use bitnetc_ir::{Activation, Graph, Op, ValueId};
use rayon::prelude::*;

use crate::error::RuntimeError;
use crate::kv_cache::KvCache;
use numerics::{
    code_dot, dot_f32, quantize_row, rms_norm, rope_neox, softmax, ternary_output, QuantizedRow,
};
use weights::{table_row, RowScale, TernaryMatrix};

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
    /// Keys and values of the positions processed so far.
    pub kv: KvCache,
}

impl Session {
    /// Number of positions processed so far.
    pub fn n_past(&self) -> usize {
        self.kv.len()
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

/// Executes a graph with the reference numerics on a private thread pool.
pub struct ReferenceBackend {
    graph: Arc<Graph>,
    pool: rayon::ThreadPool,
    last_use: Vec<usize>,
}

/// Output rows handed to one parallel task.
const ROWS_PER_TASK: usize = 64;

impl ReferenceBackend {
    /// A backend for `graph` using `threads` worker threads.
    pub fn new(graph: Arc<Graph>, threads: usize) -> Result<ReferenceBackend, RuntimeError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| RuntimeError::Threads {
                threads,
                problem: e.to_string(),
            })?;
        let mut last_use = vec![0; graph.nodes.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for input in node.op.inputs() {
                last_use[input.0 as usize] = i;
            }
        }
        last_use[graph.output.0 as usize] = usize::MAX;
        Ok(ReferenceBackend {
            graph,
            pool,
            last_use,
        })
    }

    /// The graph being executed.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Name of the kernel this backend runs for each node of the graph, in node order, e.g.
    /// `reference.ternary_linear.i2_s` (`reference.<op>.<weight type or variant>`). Every node
    /// runs on every forward pass, so this is also the list of kernels a pass executes.
    pub fn kernel_names(&self) -> Vec<String> {
        let g = &*self.graph;
        g.nodes
            .iter()
            .map(|node| {
                let variant = match &node.op {
                    Op::Embedding { table } | Op::OutputHead { table, .. } => {
                        g.weight(*table).dtype.name().to_string()
                    }
                    Op::TernaryLinear { weight, .. } => g.weight(*weight).dtype.name().to_string(),
                    Op::QuantizeActivation { .. } => "i8_absmax".to_string(),
                    Op::Rope { .. } => "neox".to_string(),
                    Op::GatedActivation { act, .. } => match act {
                        Activation::Relu2 => "relu2".to_string(),
                        Activation::Silu => "silu".to_string(),
                    },
                    _ => "f32".to_string(),
                };
                format!("reference.{}.{}", node.op.kind_name(), variant)
            })
            .collect()
    }

    /// A new, empty sequence holding at most `n_ctx` positions (capped at the model's context).
    pub fn new_session(&self, n_ctx: usize) -> Session {
        let info = &self.graph.info;
        let cap = n_ctx.min(info.n_ctx as usize).max(1);
        Session {
            kv: KvCache::new(info.n_kv_layers as usize, info.kv_width as usize, cap),
        }
    }

    /// Evaluates `tokens` at the next positions of `session` and returns logits
    /// (`n_vocab` per selected token, row-major).
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        want: LogitsFor,
    ) -> Result<Vec<f32>, RuntimeError> {
        if tokens.is_empty() {
            return Err(RuntimeError::EmptyBatch);
        }
        let n_vocab = self.graph.info.n_vocab;
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
        let result = self.pool.install(|| self.run(session, tokens, want));
        match result {
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

    fn run(
        &self,
        session: &mut Session,
        tokens: &[u32],
        want: LogitsFor,
    ) -> Result<Vec<f32>, RuntimeError> {
        let g = &*self.graph;
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
                    Buf::F32(ternary_linear(
                        &TernaryMatrix::new(g.weight(*weight))?,
                        get(*x).q8(),
                        scale,
                    )?)
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
                    Buf::F32(attention(&session.kv, layer, get(*q).f32(), n_past, shape))
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
                    Buf::F32(output_head(g.weight(*table), &rows)?)
                }
            };
            values[i] = Some(out);
            for input in node.op.inputs() {
                if self.last_use[input.0 as usize] == i {
                    values[input.0 as usize] = None;
                }
            }
        }
        match values[g.output.0 as usize].take() {
            Some(Buf::F32(v)) => Ok(v),
            _ => unreachable!("the validator guarantees an f32 output"),
        }
    }
}

/// An f32 weight as a vector (norm weights, biases, scales).
fn weight_f32(w: &bitnetc_ir::Weight) -> Vec<f32> {
    w.data
        .bytes()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// `y[t, m]` for every token `t` and row `m`, rows split across the pool.
pub fn ternary_linear(
    w: &TernaryMatrix,
    x: &[QuantizedRow],
    out_scale: Option<f32>,
) -> Result<Vec<f32>, RuntimeError> {
    let t_count = x.len();
    // Computed row-major by weight row ([M, T]) so each task owns a contiguous slice.
    let mut by_row = vec![0.0f32; w.m * t_count];
    by_row
        .par_chunks_mut(ROWS_PER_TASK * t_count)
        .enumerate()
        .try_for_each(|(chunk, out)| {
            let mut codes = vec![0u8; w.k];
            for (r, out_row) in out.chunks_mut(t_count).enumerate() {
                let m = chunk * ROWS_PER_TASK + r;
                let scale = w.row(m, &mut codes)?;
                for (o, xr) in out_row.iter_mut().zip(x) {
                    let y = match &scale {
                        RowScale::Uniform(s) => ternary_output(code_dot(&codes, &xr.q), xr, *s),
                        RowScale::PerBlock(scales) => per_block_output(&codes, xr, scales),
                    };
                    *o = match out_scale {
                        Some(s) => y * s,
                        None => y,
                    };
                }
            }
            Ok::<(), RuntimeError>(())
        })?;
    Ok(transpose(&by_row, w.m, t_count))
}

/// `[rows × cols]` → `[cols × rows]`.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = src[r * cols + c];
        }
    }
    out
}

/// A row whose 256-element blocks have different scales: `Σ_b (Σ w·q)_b / s · d_b` in f32.
fn per_block_output(codes: &[u8], x: &QuantizedRow, scales: &[f32]) -> f32 {
    let mut y = 0.0f32;
    for ((c, q), &d) in codes.chunks(256).zip(x.q.chunks(256)).zip(scales) {
        let qsum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        let dot = code_dot(c, q) - qsum;
        y += dot as f32 / x.scale * d;
    }
    y
}

/// Head counts of an attention op.
#[derive(Clone, Copy)]
struct AttentionShape {
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
}

/// Causal attention of each token's query heads over the cached keys and values.
fn attention(kv: &KvCache, layer: usize, q: &[f32], n_past: usize, s: AttentionShape) -> Vec<f32> {
    let q_width = s.n_head * s.head_dim;
    let t_count = q.len() / q_width;
    let group = s.n_head / s.n_head_kv;
    let kv_w = kv.kv_width();
    let keys = kv.keys(layer, n_past + t_count);
    let values = kv.values(layer, n_past + t_count);
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut out = vec![0.0f32; t_count * q_width];
    out.par_chunks_mut(s.head_dim)
        .enumerate()
        .for_each(|(idx, o)| {
            let (t, h) = (idx / s.n_head, idx % s.n_head);
            let qh = &q[t * q_width + h * s.head_dim..][..s.head_dim];
            let off = (h / group) * s.head_dim;
            let n = n_past + t + 1;
            let mut scores: Vec<f32> = (0..n)
                .map(|j| dot_f32(qh, &keys[j * kv_w + off..][..s.head_dim]) * scale)
                .collect();
            softmax(&mut scores);
            for (j, &p) in scores.iter().enumerate() {
                let vj = &values[j * kv_w + off..][..s.head_dim];
                o.iter_mut().zip(vj).for_each(|(o, v)| *o += p * v);
            }
        });
    out
}

/// Logits for each row of `xs`: the dot product with every row of the table.
fn output_head(table: &bitnetc_ir::Weight, xs: &[&[f32]]) -> Result<Vec<f32>, RuntimeError> {
    let (width, n_rows) = (table.dims[0] as usize, table.dims[1] as usize);
    let mut by_row = vec![0.0f32; n_rows * xs.len()];
    by_row
        .par_chunks_mut(ROWS_PER_TASK * xs.len())
        .enumerate()
        .try_for_each(|(chunk, out)| {
            let mut row = vec![0.0f32; width];
            for (r, o) in out.chunks_mut(xs.len()).enumerate() {
                table_row(table, chunk * ROWS_PER_TASK + r, &mut row)?;
                for (o, x) in o.iter_mut().zip(xs) {
                    *o = dot_f32(&row, x);
                }
            }
            Ok::<(), RuntimeError>(())
        })?;
    Ok(transpose(&by_row, n_rows, xs.len()))
}
