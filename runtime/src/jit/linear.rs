//! Ternary linear layers on the generated GEMV kernel.

use std::sync::Arc;

use std::sync::Mutex;

use bitnetc_codegen::cpu::{split_groups, ExpandedActivations, GemvKernel, Layout, RepackedMatrix};
use bitnetc_codegen::CodegenError;
use bitnetc_ir::Weight;

use super::pool::WorkerPool;
use crate::error::RuntimeError;
use crate::reference::numerics::QuantizedRow;
use crate::reference::ternary_linear;
use crate::reference::weights::TernaryMatrix;

/// How one ternary linear op runs.
pub enum LinearPlan {
    /// The generated kernel over the weight repacked for it.
    Generated {
        /// The repacked weight.
        matrix: RepackedMatrix,
        /// The kernel for its shape.
        kernel: Arc<GemvKernel>,
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

    /// `y[t, m]` (`[T × M]`) for the token rows `x`; each GEMV's row groups are split into one
    /// contiguous part per thread of `pool`, and each part applies the epilogue to its rows.
    pub fn run(
        &self,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        pool: &WorkerPool,
    ) -> Result<Vec<f32>, RuntimeError> {
        let (matrix, kernel) = match self {
            LinearPlan::Generated { matrix, kernel } => (matrix, kernel),
            LinearPlan::Fallback { .. } => {
                return ternary_linear(&TernaryMatrix::new(weight)?, x, out_scale)
            }
        };
        let m = matrix.m;
        let parts = split_groups(kernel.groups(), pool.threads());
        let mut y = vec![0.0f32; x.len() * m];
        let mut acc = vec![0i32; m];
        let mut xq = ExpandedActivations::with_len(matrix.k);
        let failure: Mutex<Option<CodegenError>> = Mutex::new(None);
        for (row, y_row) in x.iter().zip(y.chunks_mut(m)) {
            xq.fill(&row.q);
            let acc_parts = DisjointParts::new(&mut acc);
            let y_parts = DisjointParts::new(y_row);
            pool.run(&|i| {
                let Some(groups) = parts.get(i) else { return };
                let rows = kernel.rows_of(groups.clone());
                // SAFETY: the parts' row ranges are disjoint, so no two threads touch the same
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
        Ok(y)
    }
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

/// The name of a generated GEMV kernel: `jit.gemv.<isa>.<K>x<M>.<layout>`.
pub fn kernel_name(kernel: &GemvKernel) -> String {
    let info = kernel.info();
    let s = &info.shape;
    format!(
        "jit.gemv.{}.{}x{}.{}",
        isa_tag(&info.target, info.vnni),
        s.k,
        s.m,
        layout_tag(&s.layout)
    )
}

/// A short tag for the features a kernel was compiled with: `avx512vnni`, `avx2`, `sse4`, ...
pub fn isa_tag(t: &bitnetc_codegen::cpu::TargetInfo, vnni: Option<&str>) -> String {
    let base = if t.has("has_avx512f") {
        "avx512"
    } else if t.has("has_avx2") {
        "avx2"
    } else if t.has("has_sse41") {
        "sse4"
    } else {
        "base"
    };
    match vnni {
        Some(_) => format!("{base}vnni"),
        None => base.to_string(),
    }
}

fn layout_tag(l: &Layout) -> String {
    format!("{:?}x{}", l.pack, l.rows_per_group).to_lowercase()
}
