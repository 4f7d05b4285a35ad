//! Ternary linear layers on the generated GEMV kernel.

use std::sync::Arc;

use std::sync::Mutex;

use bitnetc_codegen::cpu::{
    ExpandedActivations, ExpandedBatch, GemvKernel, Layout, RepackedMatrix, RowScales,
};
use bitnetc_codegen::CodegenError;
use bitnetc_ir::Weight;

use crate::error::RuntimeError;
use crate::exec::DisjointParts;
use crate::reference::numerics::QuantizedRow;
use crate::reference::ternary_linear;
use crate::reference::weights::TernaryMatrix;
use bitnetc_codegen::cpu::WorkerPool;

/// How one ternary linear op runs.
pub enum LinearPlan {
    /// The generated kernel over the weight repacked for it.
    Generated {
        /// The repacked weight.
        matrix: RepackedMatrix,
        /// The one-token (decode) kernel for its shape.
        kernel: Arc<GemvKernel>,
        /// The token-blocked (prompt) kernel for its shape, if any: batches run through it
        /// `prompt.tokens()` tokens at a time, the rest through `kernel`.
        prompt: Option<Arc<GemvKernel>>,
    },
    /// The reference kernel, because the generator cannot take this weight.
    Fallback {
        /// Why.
        reason: String,
    },
}

impl LinearPlan {
    /// Repacks `weight` for the generated kernels; `Err` holds why it cannot be.
    pub fn repack(weight: &Weight, layout: Layout) -> Result<RepackedMatrix, String> {
        RepackedMatrix::from_weight(weight, layout).map_err(|e| e.to_string())
    }

    /// `y[t, m]` (`[T × M]`, all written) for the token rows `x`; each GEMV's row groups are
    /// cut into contiguous ranges the threads of `pool` take in turn (shrinking as the work
    /// runs out), and each range applies the epilogue to its rows.
    pub fn run(
        &self,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        pool: &WorkerPool,
        y_all: &mut [f32],
    ) -> Result<(), RuntimeError> {
        self.run_with(
            weight,
            x,
            out_scale,
            pool,
            &mut LinearScratch::default(),
            y_all,
        )
    }

    /// [`LinearPlan::run`] with buffers kept in `scratch` between calls (none allocated once
    /// it has seen the shapes).
    pub fn run_with(
        &self,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        pool: &WorkerPool,
        scratch: &mut LinearScratch,
        y_all: &mut [f32],
    ) -> Result<(), RuntimeError> {
        let (matrix, kernel, prompt) = match self {
            LinearPlan::Generated {
                matrix,
                kernel,
                prompt,
            } => (matrix, kernel, prompt),
            LinearPlan::Fallback { .. } => {
                let y = ternary_linear(&TernaryMatrix::new(weight)?, x, out_scale)?;
                y_all.copy_from_slice(&y);
                return Ok(());
            }
        };
        let m = matrix.m;
        if y_all.len() != x.len() * m {
            return Err(CodegenError::Shape(format!(
                "{} outputs for {} tokens of {m} rows",
                y_all.len(),
                x.len()
            ))
            .into());
        }
        // Whole blocks of tokens through the prompt kernel, the rest one at a time.
        let blocked = match prompt {
            Some(p) if x.len() >= p.tokens() => {
                let n = x.len() - x.len() % p.tokens();
                let y = &mut y_all[..n * m];
                run_blocks(p, matrix, &x[..n], out_scale, pool, scratch, y)?;
                n
            }
            _ => 0,
        };
        let y = &mut y_all[blocked * m..];
        run_tokens(kernel, matrix, &x[blocked..], out_scale, pool, scratch, y)
    }
}

/// Buffers of the linear layers kept between calls (the backend keeps one), so a forward pass
/// allocates none once the shapes have been seen.
#[derive(Default)]
pub struct LinearScratch {
    /// Integer accumulators.
    acc: Vec<i32>,
    /// One expanded activation row per row length K.
    rows: Vec<ExpandedActivations>,
    /// One expanded batch per (K, tokens).
    batches: Vec<ExpandedBatch>,
}

/// `y` (`[x.len() × M]`) one token at a time through the decode kernel.
fn run_tokens(
    kernel: &GemvKernel,
    matrix: &RepackedMatrix,
    x: &[QuantizedRow],
    out_scale: Option<f32>,
    pool: &WorkerPool,
    scratch: &mut LinearScratch,
    y: &mut [f32],
) -> Result<(), RuntimeError> {
    if x.is_empty() {
        return Ok(());
    }
    let (m, k) = (matrix.m, matrix.k);
    let min_groups = min_groups_per_range(kernel, k);
    let xq = match scratch.rows.iter().position(|r| r.k() == k) {
        Some(i) => i,
        None => {
            scratch.rows.push(ExpandedActivations::with_len(k));
            scratch.rows.len() - 1
        }
    };
    let LinearScratch { acc, rows, .. } = scratch;
    let xq = &mut rows[xq];
    acc.resize(m.max(acc.len()), 0);
    let acc = &mut acc[..m];
    let failure: Mutex<Option<CodegenError>> = Mutex::new(None);
    for (row, y_row) in x.iter().zip(y.chunks_mut(m)) {
        xq.fill(&row.q);
        let xq = &*xq;
        let acc_parts = DisjointParts::new(acc);
        let y_parts = DisjointParts::new(y_row);
        pool.run_ranges(kernel.groups(), min_groups, &|groups| {
            let rows = kernel.rows_of(groups.clone());
            // SAFETY: the ranges are disjoint, so no two threads touch the same elements.
            let (acc, y) = unsafe { (acc_parts.slice(rows.clone()), y_parts.slice(rows.clone())) };
            if let Err(e) = kernel.run_expanded(matrix, xq, groups.clone(), acc) {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                return;
            }
            epilogue(acc, row, &matrix.scales, rows, out_scale, y);
        });
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e.into());
        }
    }
    Ok(())
}

/// Tokens expanded and multiplied per dispatch of the token-blocked kernel (rounded down to a
/// multiple of its tokens): enough that a prompt costs a few dispatches per matrix rather than
/// one per block, small enough that the expanded rows (`4·K` bytes each) stay a few MB.
const SUPER_BLOCK_TOKENS: usize = 64;

/// `y` (`[x.len() × M]`) through the token-blocked kernel, `x.len()` a multiple of its tokens.
/// Per super-block of up to [`SUPER_BLOCK_TOKENS`] tokens: the threads expand the activation
/// rows together, then each range of row groups runs the kernel for every token block in
/// turn (its weights stay in cache between blocks) and applies the epilogue to its rows.
fn run_blocks(
    kernel: &GemvKernel,
    matrix: &RepackedMatrix,
    x: &[QuantizedRow],
    out_scale: Option<f32>,
    pool: &WorkerPool,
    scratch: &mut LinearScratch,
    y: &mut [f32],
) -> Result<(), RuntimeError> {
    let (m, k, nt) = (matrix.m, matrix.k, kernel.tokens());
    if let Some(row) = x.iter().find(|row| row.q.len() != k) {
        return Err(CodegenError::Shape(format!(
            "activation row has {} values, K = {k}",
            row.q.len()
        ))
        .into());
    }
    let per = (SUPER_BLOCK_TOKENS / nt).max(1) * nt;
    let min_groups = min_groups_per_range(kernel, k);
    let b = match (scratch.batches.iter()).position(|b| b.k() == k && b.tokens() == per) {
        Some(i) => i,
        None => {
            scratch.batches.push(ExpandedBatch::new(k, per));
            scratch.batches.len() - 1
        }
    };
    let LinearScratch { acc, batches, .. } = scratch;
    let xb = &mut batches[b];
    acc.resize((per * m).max(acc.len()), 0);
    let row_bytes = 4 * k;
    for (rows_in, y_block) in x.chunks(per).zip(y.chunks_mut(per * m)) {
        let n = rows_in.len();
        debug_assert!(n.is_multiple_of(nt));
        let xb_bytes = DisjointParts::new(xb.as_mut_slice());
        pool.run_ranges(n, 1, &|tokens| {
            for t in tokens {
                // SAFETY: token t's row; the token ranges are disjoint.
                let row = unsafe { xb_bytes.slice(t * row_bytes..(t + 1) * row_bytes) };
                ExpandedBatch::expand_row(row, &rows_in[t].q);
            }
        });
        let xq = xb.as_slice();
        let acc_parts = DisjointParts::new(&mut acc[..n * m]);
        let y_parts = DisjointParts::new(y_block);
        pool.run_ranges(kernel.groups(), min_groups, &|groups| {
            let rows = kernel.rows_of(groups.clone());
            for blk in 0..n / nt {
                // SAFETY: the batch holds n rows of K and `acc` n·M values (checked above);
                // block `blk` reads rows nt·blk.. of the batch and writes rows `rows` of
                // tokens nt·blk.., disjoint from every other range's rows.
                unsafe {
                    kernel.run_raw(
                        matrix.bytes().as_ptr(),
                        xq.as_ptr().add(blk * nt * row_bytes),
                        acc_parts.ptr().add(blk * nt * m + rows.start),
                        groups.clone(),
                    );
                }
            }
            for (t, row) in rows_in.iter().enumerate() {
                let span = t * m + rows.start..t * m + rows.end;
                // SAFETY: token t's rows of this range: disjoint from every other range's.
                let (acc, y) = unsafe { (acc_parts.slice(span.clone()), y_parts.slice(span)) };
                epilogue(acc, row, &matrix.scales, rows.clone(), out_scale, y);
            }
        });
    }
    Ok(())
}

/// The reference's output of rows `rows` for one token: `y = ((acc − Σq) / s) · w_row`, then
/// `· out_scale` when there is one (`reference::ternary_linear`'s order, so bit-identical).
/// Written as branch-free loops per case so the compiler vectorizes them.
fn epilogue(
    acc: &[i32],
    row: &QuantizedRow,
    scales: &RowScales,
    rows: std::ops::Range<usize>,
    out_scale: Option<f32>,
    y: &mut [f32],
) {
    let (sum, s) = (row.sum as f32, row.scale);
    match scales {
        RowScales::Tensor(w) => {
            for (o, &a) in y.iter_mut().zip(acc) {
                *o = ((a as f32 - sum) / s) * w;
            }
        }
        RowScales::PerRow(ws) => {
            for ((o, &a), w) in y.iter_mut().zip(acc).zip(&ws[rows]) {
                *o = ((a as f32 - sum) / s) * w;
            }
        }
    }
    if let Some(f) = out_scale {
        y.iter_mut().for_each(|o| *o *= f);
    }
}

/// The fewest row groups a thread takes at once in [`WorkerPool::run_ranges`]: 32 KiB of
/// two-bit weights (a few µs of streaming), below which claiming costs more than it balances.
fn min_groups_per_range(kernel: &GemvKernel, k: usize) -> usize {
    const MIN_RANGE_BYTES: usize = 32 << 10;
    let group_bytes = (kernel.rows_of(0..1).len() * k / 4).max(1);
    MIN_RANGE_BYTES.div_ceil(group_bytes)
}

/// The name of a generated kernel: `jit.gemv.<isa>.<K>x<M>.<layout>` for one token,
/// `jit.gemm.<isa>.<K>x<M>.<layout>.t<T>` for the token-blocked prompt kernel.
pub fn kernel_name(kernel: &GemvKernel) -> String {
    let info = kernel.info();
    let s = &info.shape;
    let base = format!(
        "{}.{}x{}.{}",
        isa_tag(&info.target, info.vnni),
        s.k,
        s.m,
        layout_tag(&s.layout)
    );
    match info.params.tokens {
        1 => format!("jit.gemv.{base}"),
        t => format!("jit.gemm.{base}.t{t}"),
    }
}

/// A short tag for the features a kernel was compiled with (`avx512vnni`, `avx2`, `sse4`, ...);
/// `vnni = None` drops the VNNI suffix for kernels that do not use it.
pub fn isa_tag(t: &bitnetc_codegen::cpu::TargetInfo, vnni: Option<&str>) -> String {
    let tag = t.tag();
    match vnni {
        Some(_) => tag,
        None => tag.trim_end_matches("vnni").to_string(),
    }
}

fn layout_tag(l: &Layout) -> String {
    format!("{:?}x{}", l.pack, l.rows_per_group).to_lowercase()
}
