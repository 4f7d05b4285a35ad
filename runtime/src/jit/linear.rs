//! Ternary linear layers on the generated GEMV kernel.

use std::sync::Arc;

use std::sync::Mutex;

use bitnetc_codegen::cpu::{
    ExpandedActivations, ExpandedBatch, GemvKernel, Layout, RepackedMatrix,
};
use bitnetc_codegen::CodegenError;
use bitnetc_ir::Weight;

use crate::error::RuntimeError;
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

    /// `y[t, m]` (`[T × M]`) for the token rows `x`; each GEMV's row groups are cut into
    /// contiguous ranges the threads of `pool` take in turn (shrinking as the work runs out),
    /// and each range applies the epilogue to its rows.
    pub fn run(
        &self,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        pool: &WorkerPool,
    ) -> Result<Vec<f32>, RuntimeError> {
        let (matrix, kernel, prompt) = match self {
            LinearPlan::Generated {
                matrix,
                kernel,
                prompt,
            } => (matrix, kernel, prompt),
            LinearPlan::Fallback { .. } => {
                return ternary_linear(&TernaryMatrix::new(weight)?, x, out_scale)
            }
        };
        let m = matrix.m;
        let mut y_all = vec![0.0f32; x.len() * m];
        // Whole blocks of tokens through the prompt kernel, the rest one at a time.
        let blocked = match prompt {
            Some(p) if x.len() >= p.tokens() => {
                let n = x.len() - x.len() % p.tokens();
                run_blocks(p, matrix, &x[..n], out_scale, pool, &mut y_all[..n * m])?;
                n
            }
            _ => 0,
        };
        let x = &x[blocked..];
        let y = &mut y_all[blocked * m..];
        let min_groups = min_groups_per_range(kernel, matrix.k);
        let mut acc = vec![0i32; m];
        let mut xq = ExpandedActivations::with_len(matrix.k);
        let failure: Mutex<Option<CodegenError>> = Mutex::new(None);
        for (row, y_row) in x.iter().zip(y.chunks_mut(m)) {
            xq.fill(&row.q);
            let acc_parts = DisjointParts::new(&mut acc);
            let y_parts = DisjointParts::new(y_row);
            pool.run_ranges(kernel.groups(), min_groups, &|groups| {
                let rows = kernel.rows_of(groups.clone());
                // SAFETY: the ranges are disjoint, so no two threads touch the same
                // elements.
                let (acc, y) =
                    unsafe { (acc_parts.slice(rows.clone()), y_parts.slice(rows.clone())) };
                if let Err(e) = kernel.run_expanded(matrix, &xq, groups.clone(), acc) {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return;
                }
                for ((o, &a), r) in y.iter_mut().zip(acc.iter()).zip(rows) {
                    let v = ((a as f32 - row.sum as f32) / row.scale) * matrix.scales.get(r);
                    *o = match out_scale {
                        Some(s) => v * s,
                        None => v,
                    };
                }
            });
            if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(e.into());
            }
        }
        Ok(y_all)
    }
}

/// `y` (`[x.len() × M]`) through the token-blocked kernel, `x.len()` a multiple of its tokens:
/// per block, each range of the row groups runs the kernel and applies the epilogue to its rows
/// of every token.
fn run_blocks(
    kernel: &GemvKernel,
    matrix: &RepackedMatrix,
    x: &[QuantizedRow],
    out_scale: Option<f32>,
    pool: &WorkerPool,
    y: &mut [f32],
) -> Result<(), RuntimeError> {
    let (m, nt) = (matrix.m, kernel.tokens());
    let min_groups = min_groups_per_range(kernel, matrix.k);
    let mut acc = vec![0i32; nt * m];
    let mut xb = ExpandedBatch::new(matrix.k, nt);
    for (rows_in, y_block) in x.chunks_exact(nt).zip(y.chunks_exact_mut(nt * m)) {
        for (t, row) in rows_in.iter().enumerate() {
            if row.q.len() != matrix.k {
                return Err(CodegenError::Shape(format!(
                    "activation row has {} values, K = {}",
                    row.q.len(),
                    matrix.k
                ))
                .into());
            }
            xb.fill(t, &row.q);
        }
        let acc_parts = DisjointParts::new(&mut acc);
        let y_parts = DisjointParts::new(y_block);
        let xb = &xb;
        pool.run_ranges(kernel.groups(), min_groups, &|groups| {
            let rows = kernel.rows_of(groups.clone());
            // SAFETY: `acc` holds nt·M values and `xb` nt rows of K (checked above); part i
            // writes rows `rows` of every token, disjoint from every other range's rows.
            unsafe {
                let base = acc_parts.ptr();
                kernel.run_raw(
                    matrix.bytes().as_ptr(),
                    xb.as_slice().as_ptr(),
                    base.add(rows.start),
                    groups.clone(),
                );
            }
            for (t, row) in rows_in.iter().enumerate() {
                let span = t * m + rows.start..t * m + rows.end;
                // SAFETY: token t's rows of this range: disjoint from every other range's.
                let (acc, y) = unsafe { (acc_parts.slice(span.clone()), y_parts.slice(span)) };
                for ((o, &a), r) in y.iter_mut().zip(acc.iter()).zip(rows.clone()) {
                    let v = ((a as f32 - row.sum as f32) / row.scale) * matrix.scales.get(r);
                    *o = match out_scale {
                        Some(s) => v * s,
                        None => v,
                    };
                }
            }
        });
    }
    Ok(())
}

/// The fewest row groups a thread takes at once in [`WorkerPool::run_ranges`]: 32 KiB of
/// two-bit weights (a few µs of streaming), below which claiming costs more than it balances.
fn min_groups_per_range(kernel: &GemvKernel, k: usize) -> usize {
    const MIN_RANGE_BYTES: usize = 32 << 10;
    let group_bytes = (kernel.rows_of(0..1).len() * k / 4).max(1);
    MIN_RANGE_BYTES.div_ceil(group_bytes)
}

/// A mutable slice handed out in disjoint ranges to the parts of a pool job.
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
