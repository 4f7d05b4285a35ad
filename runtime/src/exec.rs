//! The graph walker shared by every CPU backend.
//!
//! [`execute`] runs the nodes of a [`Graph`] in order over a batch of tokens, keeping every value
//! as a plain vector and freeing each one after its last use. The ops whose implementation
//! differs between backends (the ternary linear layers and the output head, where nearly all
//! bytes are read) are asked of an [`OpKernels`]; every other op runs the reference numerics, so
//! two backends whose kernels agree bit for bit produce bit-identical logits.
//!
//! Activation buffers come from the session's [`Scratch`]: a value's vector goes back to it after
//! its last use and serves a later value (of this pass or of the next), so once a sequence has run
//! a batch of a given size, passes of that size allocate nothing but the logits they return.

use std::borrow::Cow;

use bitnetc_ir::{Activation, Graph, Op, ValueId, Weight};

use crate::error::RuntimeError;
use crate::kv_cache::KvCache;
use crate::reference::numerics::{
    self, quantize_row_into, rms_norm_rows, rope_angles, rope_apply, QuantizedRow, RMS_NORM_ROWS,
};
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
    /// Activation buffers kept between passes (CPU backends).
    pub scratch: Scratch,
}

impl Session {
    /// A new, empty sequence for `graph` holding at most `n_ctx` positions (capped at the
    /// model's context).
    pub fn for_graph(graph: &Graph, n_ctx: usize) -> Session {
        let info = &graph.info;
        let cap = n_ctx.min(info.n_ctx as usize).max(1);
        Session {
            kv: KvCache::new(
                info.n_kv_layers as usize,
                info.kv_width as usize,
                kv_head_dim(graph),
                cap,
            ),
            device: None,
            scratch: Scratch::default(),
        }
    }

    /// Number of positions processed so far.
    pub fn n_past(&self) -> usize {
        self.kv.len()
    }
}

/// The head width of the graph's attention ops (the KV cache is laid out by head), or 0 when it
/// has none.
fn kv_head_dim(graph: &Graph) -> usize {
    graph
        .nodes
        .iter()
        .find_map(|n| match n.op {
            Op::Attention { head_dim, .. } => Some(head_dim as usize),
            _ => None,
        })
        .unwrap_or(0)
}

/// The kernels a backend supplies for the heavy ops.
pub trait OpKernels: Sync {
    /// `y[t, m]` (`[T × M]`, row-major) of the ternary linear op at node `node` with weight
    /// `weight`, for the quantized token rows `x`, times `out_scale` when there is one.
    /// `out` holds `T × M` values on entry (their contents unspecified) and all of them are
    /// written.
    fn ternary_linear(
        &self,
        node: usize,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        out: &mut [f32],
    ) -> Result<(), RuntimeError>;

    /// Logits (`[rows × n_vocab]`) of the output head at node `node` for each row of `xs`.
    fn output_head(
        &self,
        node: usize,
        table: &Weight,
        xs: &[&[f32]],
    ) -> Result<Vec<f32>, RuntimeError>;

    /// Causal attention at node `node` of the query rows `q` over layer `layer` of `kv` (whose
    /// keys and values already include the batch), the first query at position `n_past`, into
    /// `out` (as long as `q`, every value written). The default is the reference.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        _node: usize,
        kv: &KvCache,
        layer: usize,
        q: &[f32],
        n_past: usize,
        shape: AttentionShape,
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        out.copy_from_slice(&attention(kv, layer, q, n_past, shape));
        Ok(())
    }

    /// Runs `f(t)` for every `t` in `0..n`, the calls independent of each other. A backend with
    /// a thread pool spreads them over it; the default runs them in order.
    fn for_each_token(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(f);
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

/// For each node, whether a pass that wants `want` needs its value for every token of the batch
/// (`false`: only for the last one).
///
/// With [`LogitsFor::Last`] only the last token's row reaches the logits, so a node needs every
/// row only when it feeds the KV cache (the keys and values of an attention op, and what they are
/// computed from) or a node that needs every row. In the last layer that leaves the query, the
/// attention output and the whole feed-forward block to the last token alone, as the reference
/// computes them for it: its logits are the same, and a prompt skips the rest of that work.
pub fn rows_needed(graph: &Graph, want: LogitsFor) -> Vec<bool> {
    let n = graph.nodes.len();
    if want == LogitsFor::All {
        return vec![true; n];
    }
    let mut all = vec![false; n];
    // Only a head's logits come one row per token; any other output is wanted whole.
    let out = graph.output.0 as usize;
    all[out] = !matches!(graph.nodes[out].op, Op::OutputHead { .. });
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        match node.op {
            Op::Attention { q, k, v, .. } => {
                all[k.0 as usize] = true;
                all[v.0 as usize] = true;
                all[q.0 as usize] |= all[i];
            }
            ref op => {
                if all[i] {
                    op.inputs().for_each(|x| all[x.0 as usize] = true);
                }
            }
        }
    }
    all
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
pub enum Buf {
    /// Rows of f32 values.
    F32(Vec<f32>),
    /// Quantized token rows.
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

/// Buffers recycled between the values of a forward pass and from one pass to the next.
#[derive(Default)]
pub struct Scratch {
    f32s: Vec<Vec<f32>>,
    rows: Vec<Vec<QuantizedRow>>,
    values: Vec<Option<Buf>>,
    /// Quantized rows cut from kept vectors by shorter requests.
    spare_rows: Vec<QuantizedRow>,
    /// [`rows_needed`] of the session's graph for [`LogitsFor::Last`], once computed.
    last_token_rows: Vec<bool>,
}

impl Scratch {
    /// Most spare vectors of each kind kept (more than a pass holds at once).
    const KEEP: usize = 32;

    /// `len` values whose contents are unspecified (what an earlier value left; every op
    /// writes all of its output), in the smallest kept vector that holds them (or a new one).
    fn buffer(&mut self, len: usize) -> Vec<f32> {
        let fit = (self.f32s.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut v = fit.map_or_else(|| Vec::with_capacity(len), |i| self.f32s.swap_remove(i));
        v.truncate(len);
        v.resize(len, 0.0);
        v
    }

    /// A copy of `x` in a recycled vector.
    fn copy_of(&mut self, x: &[f32]) -> Vec<f32> {
        let mut v = self.buffer(x.len());
        v.copy_from_slice(x);
        v
    }

    /// `n` quantized rows (contents unspecified), reusing kept rows and their code vectors: the
    /// kept vector with the fewest rows that are enough (so a pass that mixes batch-wide and
    /// last-token values does not cut long vectors down and grow them again), else the longest.
    fn rows(&mut self, n: usize) -> Vec<QuantizedRow> {
        let fit = (self.rows.iter().enumerate())
            .filter(|(_, v)| v.len() >= n)
            .min_by_key(|(_, v)| v.len())
            .or_else(|| (self.rows.iter().enumerate()).max_by_key(|(_, v)| v.len()))
            .map(|(i, _)| i);
        let mut v = fit.map_or_else(Vec::new, |i| self.rows.swap_remove(i));
        // Rows beyond `n` wait in `spare_rows` (with their code vectors) for a longer request.
        while v.len() > n {
            self.spare_rows.extend(v.pop());
        }
        while v.len() < n {
            v.push(self.spare_rows.pop().unwrap_or_default());
        }
        v
    }

    /// Takes a buffer back.
    fn recycle(&mut self, buf: Buf) {
        match buf {
            Buf::F32(v) => keep(&mut self.f32s, v),
            Buf::Q8(v) => keep(&mut self.rows, v),
        }
    }
}

/// Adds `v` to `kept`, dropping the smallest kept vector when there are too many.
fn keep<T>(kept: &mut Vec<Vec<T>>, v: Vec<T>) {
    kept.push(v);
    if kept.len() > Scratch::KEEP {
        if let Some(i) = (0..kept.len()).min_by_key(|&i| kept[i].capacity()) {
            kept.swap_remove(i);
        }
    }
}

/// An f32 weight as a vector (norm weights, biases, scales).
pub fn weight_f32(w: &Weight) -> Vec<f32> {
    weight_f32_view(w).into_owned()
}

/// An f32 weight's values: the bytes themselves where they are aligned for f32 (GGUF aligns
/// tensors; little-endian hosts), a decoded copy otherwise.
pub fn weight_f32_view(w: &Weight) -> Cow<'_, [f32]> {
    let bytes = w.data.bytes();
    if cfg!(target_endian = "little") {
        // SAFETY: every bit pattern is a valid f32; `align_to` only returns an aligned middle.
        let (head, mid, tail) = unsafe { bytes.align_to::<f32>() };
        if head.is_empty() && tail.is_empty() {
            return Cow::Borrowed(mid);
        }
    }
    Cow::Owned(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// `out` cut into rows of `width`, row `t` written by `f(t, row)`, the rows spread by
/// [`OpKernels::for_each_token`].
/// `out[i] = f(gate[i], up[i])`, rows of `width` split over the threads.
fn gated_rows(
    kernels: &dyn OpKernels,
    gate: &[f32],
    up: &[f32],
    width: usize,
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    for_each_row(kernels, out, width, &|t, o| {
        let span = t * width..(t + 1) * width;
        let (g, u) = (&gate[span.clone()], &up[span]);
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = f(g, u);
        }
    });
}

fn for_each_row<T: Send>(
    kernels: &dyn OpKernels,
    out: &mut [T],
    width: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let n = out.len() / width.max(1);
    let parts = DisjointParts::new(out);
    kernels.for_each_token(n, &|t| {
        // SAFETY: row `t` is only handed to this call; rows do not overlap.
        let row = unsafe { parts.slice(t * width..(t + 1) * width) };
        f(t, row);
    });
}

/// A mutable slice handed out in disjoint ranges to the parts of a parallel job.
pub(crate) struct DisjointParts<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: only used to give different threads non-overlapping ranges (see `slice`).
unsafe impl<T: Send> Sync for DisjointParts<T> {}

impl<T> DisjointParts<T> {
    pub(crate) fn new(s: &mut [T]) -> DisjointParts<T> {
        DisjointParts {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// The first element's address.
    pub(crate) fn ptr(&self) -> *mut T {
        self.ptr
    }

    /// The elements `range`.
    ///
    /// # Safety
    /// No two live slices obtained from one `DisjointParts` may overlap, and the slice the
    /// parts were made from must outlive them.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
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
    let mut values = std::mem::take(&mut session.scratch.values);
    values.clear();
    values.resize_with(graph.nodes.len(), || None);
    // Which nodes compute every token's row for `Last` (computed on the session's first such
    // pass and kept; `All` computes every row of every node).
    let mut last_rows = std::mem::take(&mut session.scratch.last_token_rows);
    if want == LogitsFor::Last && last_rows.len() != graph.nodes.len() {
        last_rows = rows_needed(graph, want);
    }
    let result = run_nodes(
        graph,
        last_use,
        kernels,
        session,
        tokens,
        (want, &last_rows),
        &mut values,
    );
    session.scratch.last_token_rows = last_rows;
    // Every buffer still held goes back to the scratch (all of them after an error).
    for v in values.iter_mut() {
        if let Some(buf) = v.take() {
            session.scratch.recycle(buf);
        }
    }
    session.scratch.values = values;
    result
}

/// The node loop of [`execute`]; `values` starts all `None`, one per node. `want` comes with
/// the graph's [`rows_needed`] for [`LogitsFor::Last`] (unread for `All`).
fn run_nodes(
    graph: &Graph,
    last_use: &[usize],
    kernels: &dyn OpKernels,
    session: &mut Session,
    tokens: &[u32],
    (want, last_rows): (LogitsFor, &[bool]),
    values: &mut [Option<Buf>],
) -> Result<Vec<f32>, RuntimeError> {
    let g = graph;
    let n_tokens = tokens.len();
    let n_past = session.kv.len();
    let Session { kv, scratch, .. } = session;
    let full = |i: usize| want == LogitsFor::All || last_rows[i];
    for (i, node) in g.nodes.iter().enumerate() {
        let width = node.ty.width as usize;
        // The rows this node computes: the batch's, or the last token's alone; `first` is the
        // batch index of its first row.
        let t_count = if full(i) { n_tokens } else { 1 };
        let first = n_tokens - t_count;
        let get = |id: ValueId| {
            values[id.0 as usize]
                .as_ref()
                .expect("operands are computed before use")
        };
        // An operand's rows for this node: the last of them when the operand has the batch's
        // rows and this node only the last token's.
        let narrow = |id: ValueId| !full(i) && full(id.0 as usize);
        let f32_in = |id: ValueId| {
            let v = get(id).f32();
            match narrow(id) {
                true => &v[v.len() - v.len() / n_tokens..],
                false => v,
            }
        };
        let q8_in = |id: ValueId| {
            let v = get(id).q8();
            match narrow(id) {
                true => &v[v.len() - 1..],
                false => v,
            }
        };
        let out = match &node.op {
            Op::Embedding { table } => {
                let w = g.weight(*table);
                let mut out = scratch.buffer(t_count * width);
                for (row, &tok) in out.chunks_mut(width).zip(&tokens[first..]) {
                    table_row(w, tok as usize, row)?;
                }
                Buf::F32(out)
            }
            Op::RmsNorm { x, weight, eps } => {
                let w = weight_f32_view(g.weight(*weight));
                let x = f32_in(*x);
                let mut out = scratch.buffer(t_count * width);
                // Blocks of rows, whose sums of squares run side by side.
                let block = RMS_NORM_ROWS * width;
                let parts = DisjointParts::new(&mut out);
                kernels.for_each_token(t_count.div_ceil(RMS_NORM_ROWS), &|b| {
                    let span = b * block..((b + 1) * block).min(t_count * width);
                    // SAFETY: block `b`'s rows are only handed to this call; blocks do not overlap.
                    let o = unsafe { parts.slice(span.clone()) };
                    rms_norm_rows(&x[span], width, &w, *eps, o);
                });
                Buf::F32(out)
            }
            Op::QuantizeActivation { x } => {
                let x = f32_in(*x);
                let mut rows = scratch.rows(t_count);
                for_each_row(kernels, &mut rows, 1, &|t, r| {
                    quantize_row_into(&x[t * width..(t + 1) * width], &mut r[0])
                });
                Buf::Q8(rows)
            }
            Op::TernaryLinear {
                x,
                weight,
                out_scale,
            } => {
                let scale = out_scale.map(|s| weight_f32_view(g.weight(s))[0]);
                let mut out = scratch.buffer(t_count * width);
                kernels.ternary_linear(i, g.weight(*weight), q8_in(*x), scale, &mut out)?;
                Buf::F32(out)
            }
            Op::AddBias { x, bias } => {
                let b = weight_f32_view(g.weight(*bias));
                let mut out = scratch.copy_of(f32_in(*x));
                for row in out.chunks_mut(width) {
                    row.iter_mut().zip(b.iter()).for_each(|(o, b)| *o += b);
                }
                Buf::F32(out)
            }
            Op::Rope {
                x,
                head_dim,
                freq_base,
                ..
            } => {
                let d = *head_dim as usize;
                let pos0 = n_past + first;
                let mut out = scratch.copy_of(f32_in(*x));
                for_each_row(kernels, &mut out, width, &|t, row| {
                    // One position's angles serve all of its heads (the reference's values).
                    let mut cs = [(0.0f32, 0.0f32); ROPE_MAX_PAIRS];
                    match cs.get_mut(..d / 2) {
                        Some(cs) => {
                            rope_angles(pos0 + t, d, *freq_base, cs);
                            row.chunks_mut(d).for_each(|head| rope_apply(head, cs));
                        }
                        None => {
                            let mut cs = vec![(0.0f32, 0.0f32); d / 2];
                            rope_angles(pos0 + t, d, *freq_base, &mut cs);
                            row.chunks_mut(d).for_each(|head| rope_apply(head, &cs));
                        }
                    }
                });
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
                kv.append(layer, get(*k).f32(), get(*v).f32())?;
                let shape = AttentionShape {
                    n_head: *n_head as usize,
                    n_head_kv: *n_head_kv as usize,
                    head_dim: *head_dim as usize,
                };
                // Keys and values of the whole batch go to the cache; the queries are this
                // node's rows, the first at position `n_past + first`.
                let q = f32_in(*q);
                let mut out = scratch.buffer(q.len());
                kernels.attention(i, kv, layer, q, n_past + first, shape, &mut out)?;
                Buf::F32(out)
            }
            Op::GatedActivation { gate, up, act } => {
                let (gate, up) = (f32_in(*gate), f32_in(*up));
                let mut out = scratch.buffer(gate.len());
                // One loop per activation, so the function is inlined and the loop vectorized.
                match act {
                    Activation::Relu2 => {
                        gated_rows(kernels, gate, up, width, &mut out, numerics::relu2_gate)
                    }
                    Activation::Silu => {
                        gated_rows(kernels, gate, up, width, &mut out, numerics::silu_gate)
                    }
                }
                Buf::F32(out)
            }
            Op::Add { a, b } => {
                let (a, b) = (f32_in(*a), f32_in(*b));
                let mut out = scratch.buffer(a.len());
                for_each_row(kernels, &mut out, width, &|t, o| {
                    let span = t * width..(t + 1) * width;
                    for ((o, &x), &y) in o.iter_mut().zip(&a[span.clone()]).zip(&b[span]) {
                        *o = x + y;
                    }
                });
                Buf::F32(out)
            }
            Op::OutputHead { x, table } => {
                let xs = f32_in(*x);
                let in_w = xs.len() / t_count;
                let table = g.weight(*table);
                let logits = match want {
                    LogitsFor::All => {
                        let rows: Vec<&[f32]> = xs.chunks(in_w).collect();
                        kernels.output_head(i, table, &rows)?
                    }
                    LogitsFor::Last => {
                        kernels.output_head(i, table, &[&xs[(t_count - 1) * in_w..]])?
                    }
                };
                Buf::F32(logits)
            }
        };
        values[i] = Some(out);
        for input in node.op.inputs() {
            if last_use[input.0 as usize] == i {
                if let Some(buf) = values[input.0 as usize].take() {
                    scratch.recycle(buf);
                }
            }
        }
    }
    match values[g.output.0 as usize].take() {
        Some(Buf::F32(v)) => Ok(v),
        _ => unreachable!("the validator guarantees an f32 output"),
    }
}

/// Head widths up to twice this use a stack table of RoPE angles.
const ROPE_MAX_PAIRS: usize = 256;
