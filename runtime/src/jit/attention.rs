//! Attention on the generated kernels: scores and weighted sum per block of query heads sharing
//! a KV head, softmax between them with the reference numerics, (token, head block) pairs split
//! over the worker pool.

use std::sync::{Arc, Mutex};

use bitnetc_codegen::cpu::attention::{AttentionKernels, AttentionParams, AttentionShape as Shape};
use bitnetc_codegen::cpu::{Target, WorkerPool};
use bitnetc_codegen::CodegenError;
use bitnetc_tune::ParamSource;

use crate::error::RuntimeError;
use crate::exec::DisjointParts;
use crate::kv_cache::KvCache;
use crate::reference::numerics::softmax;
use crate::reference::AttentionShape;

/// How the attention ops of a graph run.
pub enum AttentionPlan {
    /// The generated kernels for the op's head shape, and where their parameters came from.
    Generated(Arc<AttentionKernels>, ParamSource),
    /// The reference attention, because the generator cannot take this shape.
    Fallback {
        /// Why.
        reason: String,
    },
}

impl AttentionPlan {
    /// Compiles the kernels for heads of `head_dim` values over the [`KvCache`]'s rows (one
    /// head's rows consecutive), `group` query heads per KV head, with `params` (and where they
    /// came from), or explains why there are none.
    pub fn build(
        head_dim: usize,
        group: usize,
        target: &Target,
        params: (AttentionParams, ParamSource),
    ) -> Result<AttentionPlan, RuntimeError> {
        let shape = Shape {
            head_dim,
            stride: head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
            heads: Shape::heads_for_group(group),
        };
        match AttentionKernels::compile_for(&shape, &params.0, target) {
            Ok(k) => Ok(AttentionPlan::Generated(Arc::new(k), params.1)),
            Err(CodegenError::Unsupported(reason)) => Ok(AttentionPlan::Fallback { reason }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Attention of the query rows `q` (`[T × n_head·D]`) over layer `layer` of `kv`, with the
/// generated kernels, into `out` (as long as `q`); bit-identical to the reference `attention`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    kernels: &AttentionKernels,
    kv: &KvCache,
    layer: usize,
    q: &[f32],
    n_past: usize,
    s: AttentionShape,
    pool: &WorkerPool,
    scores: &mut ScoreRows,
    out: &mut [f32],
) -> Result<(), RuntimeError> {
    let d = s.head_dim;
    let q_width = s.n_head * d;
    let heads = kernels.info().shape.heads;
    if d != kernels.info().shape.head_dim
        || !q.len().is_multiple_of(q_width)
        || out.len() != q.len()
        || !s.n_head.is_multiple_of(s.n_head_kv)
        || !(s.n_head / s.n_head_kv).is_multiple_of(heads)
    {
        return Err(CodegenError::Shape(format!(
            "attention of {} query values with {} heads of {d} (kernels for {})",
            q.len(),
            s.n_head,
            kernels.info().shape.head_dim
        ))
        .into());
    }
    let t_count = q.len() / q_width;
    let group = s.n_head / s.n_head_kv;
    out.fill(0.0);
    // Items are (token, block of `heads` query heads); a block shares one KV head.
    let blocks = s.n_head / heads;
    let items = t_count * blocks;
    let threads = pool.threads();
    // One score buffer per part, with room for the whole context, so none grows during a
    // sequence.
    let room = heads * kv.capacity().max(n_past + t_count);
    scores.0.resize_with(threads, Vec::new);
    for row in scores.0.iter_mut() {
        row.resize(row.len().max(room), 0.0);
    }
    let score_parts = DisjointParts::new(&mut scores.0);
    let out_parts = DisjointParts::new(out);
    let failure: Mutex<Option<CodegenError>> = Mutex::new(None);
    pool.run(&|i| {
        // SAFETY: part i alone uses score buffer i.
        let scores = &mut unsafe { score_parts.slice(i..i + 1) }[0];
        {
            // Items dealt out in turn: a causal prompt's later tokens attend to more keys, so
            // contiguous ranges would leave the last part most of the work.
            for idx in (i..items).step_by(threads) {
                // Token t, query heads h0..h0 + heads (one KV head), their outputs consecutive.
                let (t, h0) = (idx / blocks, (idx % blocks) * heads);
                let qh = &q[t * q_width + h0 * d..][..heads * d];
                let n = n_past + t + 1;
                let (keys, values) = (
                    kv.keys(layer, h0 / group, n),
                    kv.values(layer, h0 / group, n),
                );
                let sc = &mut scores[..heads * n];
                let first = (t * s.n_head + h0) * d;
                // SAFETY: each item owns its heads' D outputs; parts hold disjoint items.
                let o = unsafe { out_parts.slice(first..first + heads * d) };
                let r = kernels.scores(qh, keys, sc).and_then(|()| {
                    sc.chunks_mut(n).for_each(softmax);
                    kernels.weighted_sum(sc, values, o)
                });
                if let Err(e) = r {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return;
                }
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Score rows of the attention's parts, kept between calls (the backend keeps one set).
#[derive(Default)]
pub struct ScoreRows(Vec<Vec<f32>>);

/// The name of generated attention kernels: `jit.attention.<isa>.d<D>.s<stride>.h<heads>`
/// (query heads per call).
pub fn kernel_name(kernels: &AttentionKernels, isa: &str) -> String {
    let s = &kernels.info().shape;
    format!(
        "jit.attention.{isa}.d{}.s{}.h{}",
        s.head_dim, s.stride, s.heads
    )
}
