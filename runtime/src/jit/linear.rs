//! Ternary linear layers on the generated GEMV kernel.

use std::sync::Arc;

use bitnetc_codegen::cpu::{ExpandedActivations, GemvKernel, Layout, RepackedMatrix};
use bitnetc_ir::Weight;

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

    /// `y[t, m]` (`[T × M]`) for the token rows `x`, with `threads` parts per GEMV.
    pub fn run(
        &self,
        weight: &Weight,
        x: &[QuantizedRow],
        out_scale: Option<f32>,
        threads: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        let (matrix, kernel) = match self {
            LinearPlan::Generated { matrix, kernel } => (matrix, kernel),
            LinearPlan::Fallback { .. } => {
                return ternary_linear(&TernaryMatrix::new(weight)?, x, out_scale)
            }
        };
        let m = matrix.m;
        let mut y = vec![0.0f32; x.len() * m];
        let mut acc = vec![0i32; m];
        let mut xq = ExpandedActivations::with_len(matrix.k);
        for (row, y_row) in x.iter().zip(y.chunks_mut(m)) {
            xq.fill(&row.q);
            kernel.run_parallel(matrix, &xq, &mut acc, threads)?;
            for (i, (o, &a)) in y_row.iter_mut().zip(&acc).enumerate() {
                let v = ((a as f32 - row.sum as f32) / row.scale) * matrix.scales.get(i);
                *o = match out_scale {
                    Some(s) => v * s,
                    None => v,
                };
            }
        }
        Ok(y)
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
