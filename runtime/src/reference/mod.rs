//! The reference backend: a plain executor of the IR with the reference numerics.
//!
//! It runs the nodes of a [`Graph`] in order over a batch of tokens, keeping every value as a
//! plain vector, and parallelizes only across independent output rows (so results are the same
//! for every thread count). It is the oracle generated kernels are tested against; it is written
//! to be read, not to be fast.

pub mod numerics;
pub mod weights;

use std::sync::Arc;

use bitnetc_ir::{Activation, DType, Graph, Op, Weight};
use rayon::prelude::*;

use crate::error::RuntimeError;
use crate::exec::{execute, forward_checked, last_uses, LogitsFor, OpKernels, Session};
use crate::kv_cache::KvCache;
use numerics::{code_dot, dot_f32, softmax, ternary_output, QuantizedRow};
use weights::{table_row, RowScale, TernaryMatrix};

/// Executes a graph with the reference numerics on a private thread pool.
pub struct ReferenceBackend {
    graph: Arc<Graph>,
    pool: rayon::ThreadPool,
    last_use: Vec<usize>,
}

/// Output rows handed to one parallel task.
const ROWS_PER_TASK: usize = 64;

/// The reference kernels of the heavy ops.
pub struct ReferenceKernels;

impl OpKernels for ReferenceKernels {
    fn ternary_linear(
        &self,
        _node: usize,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        out.copy_from_slice(&ternary_linear(&TernaryMatrix::new(weight)?, x, out_scale)?);
        Ok(())
    }

    fn output_head(
        &self,
        _node: usize,
        table: &Weight,
        xs: &[&[f32]],
    ) -> Result<Vec<f32>, RuntimeError> {
        output_head(table, xs)
    }
}

/// Logits of a Q6_K table as llama.cpp computes them (`bitnet-gguf.md` §2.3): each row of `xs`
/// quantized to Q8_K; per super-block `b` of a table row the exact integer
/// `isum_b = Σ_j scale_j · Σ_{e in sub-block j} (q_e − 32)·x_e`; the logit
/// `Σ_b (d_b·dx_b)·f32(isum_b)`, accumulated block by block from 0 (multiply, then add).
pub fn q6k_output_head(table: &Weight, xs: &[&[f32]]) -> Result<Vec<f32>, RuntimeError> {
    use bitnetc_models::quant::{q6_k, q8_k};
    let (width, n_rows) = (table.dims[0] as usize, table.dims[1] as usize);
    let err = |problem: String| RuntimeError::Weight {
        name: table.name.clone(),
        problem,
    };
    let row_bytes = width / q6_k::BLOCK_ELEMS * q6_k::BLOCK_BYTES;
    let bytes = table.data.bytes();
    if !width.is_multiple_of(q6_k::BLOCK_ELEMS) || bytes.len() != row_bytes * n_rows {
        return Err(err(format!(
            "Q6_K table of {} bytes for {n_rows} rows of {width}",
            bytes.len()
        )));
    }
    let acts: Vec<q8_k::Q8kRow> = xs
        .iter()
        .map(|x| q8_k::quantize_row(x).map_err(|e| err(e.to_string())))
        .collect::<Result<_, _>>()?;
    let mut by_row = vec![0.0f32; n_rows * xs.len()];
    by_row
        .par_chunks_mut(ROWS_PER_TASK * xs.len())
        .enumerate()
        .try_for_each(|(chunk, out)| {
            for (r, o) in out.chunks_mut(xs.len()).enumerate() {
                let m = chunk * ROWS_PER_TASK + r;
                let row = &bytes[m * row_bytes..(m + 1) * row_bytes];
                o.fill(0.0);
                for (b, blk) in row.chunks_exact(q6_k::BLOCK_BYTES).enumerate() {
                    let blk: &[u8; q6_k::BLOCK_BYTES] = blk.try_into().expect("exact chunk");
                    let (q, scales, d) = q6_k::block_parts(blk);
                    if !d.is_finite() {
                        return Err(err(format!(
                            "row {m}: block {b} has a non-finite scale {d}"
                        )));
                    }
                    for (o, act) in o.iter_mut().zip(&acts) {
                        let xq = &act.qs[b * 256..(b + 1) * 256];
                        let isum: i32 = (0..16)
                            .map(|j| {
                                let group: i32 = (16 * j..16 * j + 16)
                                    .map(|e| (i32::from(q[e]) - 32) * i32::from(xq[e]))
                                    .sum();
                                i32::from(scales[j]) * group
                            })
                            .sum();
                        *o += (d * act.d[b]) * isum as f32;
                    }
                }
            }
            Ok::<(), RuntimeError>(())
        })?;
    Ok(transpose(&by_row, n_rows, xs.len()))
}

/// Logits of a Q8_0 table as llama.cpp computes them (`bitnet-gguf.md` §2.3): each row of `xs`
/// quantized to Q8_0 ([`q8_0::quantize_activations`](bitnetc_models::quant::q8_0)); per
/// 32-element block `b` of a table row the exact integer `isum_b = Σ_e w_e·x_e`; the logit
/// `Σ_b (d_b·dx_b)·f32(isum_b)`, accumulated block by block from 0 (multiply, then add), as
/// ggml's scalar `vec_dot_q8_0_q8_0`.
pub fn q8_0_output_head(table: &Weight, xs: &[&[f32]]) -> Result<Vec<f32>, RuntimeError> {
    use bitnetc_models::quant::q8_0;
    let (width, n_rows) = (table.dims[0] as usize, table.dims[1] as usize);
    let err = |problem: String| RuntimeError::Weight {
        name: table.name.clone(),
        problem,
    };
    let row_bytes = width / q8_0::BLOCK_ELEMS * q8_0::BLOCK_BYTES;
    let bytes = table.data.bytes();
    if !width.is_multiple_of(q8_0::BLOCK_ELEMS) || bytes.len() != row_bytes * n_rows {
        return Err(err(format!(
            "Q8_0 table of {} bytes for {n_rows} rows of {width}",
            bytes.len()
        )));
    }
    let acts: Vec<q8_0::Q8_0Acts> = xs
        .iter()
        .map(|x| q8_0::quantize_activations(x).map_err(|e| err(e.to_string())))
        .collect::<Result<_, _>>()?;
    let mut by_row = vec![0.0f32; n_rows * xs.len()];
    by_row
        .par_chunks_mut(ROWS_PER_TASK * xs.len())
        .enumerate()
        .try_for_each(|(chunk, out)| {
            for (r, o) in out.chunks_mut(xs.len()).enumerate() {
                let m = chunk * ROWS_PER_TASK + r;
                let row = &bytes[m * row_bytes..(m + 1) * row_bytes];
                o.fill(0.0);
                for (b, blk) in row.chunks_exact(q8_0::BLOCK_BYTES).enumerate() {
                    let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                    if !d.is_finite() {
                        return Err(err(format!(
                            "row {m}: block {b} has a non-finite scale {d}"
                        )));
                    }
                    for (o, act) in o.iter_mut().zip(&acts) {
                        let xq = &act.qs[b * 32..(b + 1) * 32];
                        let isum: i32 = blk[2..]
                            .iter()
                            .zip(xq)
                            .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
                            .sum();
                        *o += (d * act.d[b]) * isum as f32;
                    }
                }
            }
            Ok::<(), RuntimeError>(())
        })?;
    Ok(transpose(&by_row, n_rows, xs.len()))
}

/// A rayon pool of `threads` workers (at least one).
pub(crate) fn thread_pool(threads: usize) -> Result<rayon::ThreadPool, RuntimeError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| RuntimeError::Threads {
            threads,
            problem: e.to_string(),
        })
}

impl ReferenceBackend {
    /// A backend for `graph` using `threads` worker threads.
    pub fn new(graph: Arc<Graph>, threads: usize) -> Result<ReferenceBackend, RuntimeError> {
        Ok(ReferenceBackend {
            pool: thread_pool(threads)?,
            last_use: last_uses(&graph),
            graph,
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
        self.graph
            .nodes
            .iter()
            .map(|node| reference_kernel_name(&self.graph, &node.op))
            .collect()
    }

    /// A new, empty sequence holding at most `n_ctx` positions (capped at the model's context).
    pub fn new_session(&self, n_ctx: usize) -> Session {
        Session::for_graph(&self.graph, n_ctx)
    }

    /// Evaluates `tokens` at the next positions of `session` and returns logits
    /// (`n_vocab` per selected token, row-major).
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        want: LogitsFor,
    ) -> Result<Vec<f32>, RuntimeError> {
        forward_checked(&self.graph, session, tokens, |s| {
            self.pool.install(|| {
                execute(
                    &self.graph,
                    &self.last_use,
                    &ReferenceKernels,
                    s,
                    tokens,
                    want,
                )
            })
        })
    }
}

/// The reference kernel's name for `op`: `reference.<op>.<weight type or variant>`.
pub fn reference_kernel_name(g: &Graph, op: &Op) -> String {
    let variant = match op {
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
    format!("reference.{}.{}", op.kind_name(), variant)
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
pub struct AttentionShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Causal attention of each token's query heads over the cached keys and values.
pub fn attention(
    kv: &KvCache,
    layer: usize,
    q: &[f32],
    n_past: usize,
    s: AttentionShape,
) -> Vec<f32> {
    let q_width = s.n_head * s.head_dim;
    let t_count = q.len() / q_width;
    let group = s.n_head / s.n_head_kv;
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let mut out = vec![0.0f32; t_count * q_width];
    out.par_chunks_mut(s.head_dim)
        .enumerate()
        .for_each(|(idx, o)| {
            let (t, h) = (idx / s.n_head, idx % s.n_head);
            let qh = &q[t * q_width + h * s.head_dim..][..s.head_dim];
            let n = n_past + t + 1;
            let keys = kv.keys(layer, h / group, n);
            let values = kv.values(layer, h / group, n);
            let mut scores: Vec<f32> = keys
                .chunks_exact(s.head_dim)
                .map(|key| dot_f32(qh, key) * scale)
                .collect();
            softmax(&mut scores);
            for (&p, vj) in scores.iter().zip(values.chunks_exact(s.head_dim)) {
                o.iter_mut().zip(vj).for_each(|(o, v)| *o += p * v);
            }
        });
    out
}

/// Logits for each row of `xs`: the dot product with every row of the table. A Q6_K table is
/// multiplied the way llama.cpp multiplies it ([`q6k_output_head`]); every other format is
/// decoded to f32 and dotted with `x` in f32 ([`dot_f32`]).
pub fn output_head(table: &Weight, xs: &[&[f32]]) -> Result<Vec<f32>, RuntimeError> {
    match table.dtype {
        DType::Q6K => return q6k_output_head(table, xs),
        DType::Q8_0 => return q8_0_output_head(table, xs),
        _ => {}
    }
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
