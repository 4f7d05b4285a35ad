//! The output head on the generated kernel (F16 / BF16 / F32 tables, Q8_0 and Q6_K repacked).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitnetc_codegen::cpu::head::{
    f16_table_is_finite, repack_q6k, repack_q8_0, repack_scaled_i8, HeadFormat, HeadKernel,
    HeadParams, HeadShape,
};
use bitnetc_codegen::cpu::Target;
use bitnetc_codegen::CodegenError;
use bitnetc_ir::{DType, Weight};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::exec::DisjointParts;
use bitnetc_codegen::cpu::WorkerPool;

use bitnetc_tune::ParamSource;

use crate::error::RuntimeError;
use crate::reference::output_head;

/// How the output head runs.
pub enum HeadPlan {
    /// The generated kernel, where its parameters came from, and the table repacked for it
    /// when the file's format is not one the kernel reads directly (Q8_0, Q6_K).
    Generated(Arc<HeadKernel>, ParamSource, Option<Vec<u8>>),
    /// The reference head, because no generated kernel takes this table.
    Fallback {
        /// Why.
        reason: String,
    },
}

impl HeadPlan {
    /// Compiles the head kernel for `table` with the parameters `params_for` gives its shape,
    /// or explains why there is none; also returns the time spent compiling.
    pub fn build(
        table: &Weight,
        target: &Target,
        params_for: impl Fn(&HeadShape) -> (HeadParams, ParamSource),
    ) -> Result<(HeadPlan, Duration), CodegenError> {
        let (k, rows) = (table.dims[0] as usize, table.dims[1] as usize);
        let bytes = table.data.bytes();
        let finite = match table.dtype {
            DType::F16 => bytes.par_chunks(1 << 20).all(f16_table_is_finite),
            _ => true,
        };
        let Some(format) = HeadFormat::of(table.dtype, finite) else {
            let reason = format!("no generated head kernel for {} tables yet", table.dtype);
            return Ok((HeadPlan::Fallback { reason }, Duration::ZERO));
        };
        if !k.is_multiple_of(8) {
            let reason = format!("head width {k} is not a multiple of 8");
            return Ok((HeadPlan::Fallback { reason }, Duration::ZERO));
        }
        let repacked = match format {
            HeadFormat::ScaledI8 { group } if k.is_multiple_of(group) => {
                match repack_rows(table.dtype, bytes, k, rows) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        // The reference refuses such a table too; it reports the error.
                        let reason = format!("cannot repack the head table: {e}");
                        return Ok((HeadPlan::Fallback { reason }, Duration::ZERO));
                    }
                }
            }
            HeadFormat::ScaledI8 { group } => {
                let reason = format!("head width {k} is not a multiple of {group}");
                return Ok((HeadPlan::Fallback { reason }, Duration::ZERO));
            }
            HeadFormat::Q6K | HeadFormat::Q8_0 => match repack_rows(table.dtype, bytes, k, rows) {
                Ok(r) => Some(r),
                Err(e) => {
                    let reason = format!("cannot repack the head table: {e}");
                    return Ok((HeadPlan::Fallback { reason }, Duration::ZERO));
                }
            },
            _ => None,
        };
        let shape = HeadShape { k, rows, format };
        let t0 = Instant::now();
        let (params, source) = params_for(&shape);
        let kernel = HeadKernel::compile_for(&shape, &params, target)?;
        Ok((
            HeadPlan::Generated(Arc::new(kernel), source, repacked),
            t0.elapsed(),
        ))
    }

    /// Logits (`[xs.len() × rows]`) for each row of `xs`, the vocabulary cut into contiguous
    /// ranges the threads of `pool` take in turn (shrinking as the work runs out).
    pub fn run(
        &self,
        table: &Weight,
        xs: &[&[f32]],
        pool: &WorkerPool,
    ) -> Result<Vec<f32>, RuntimeError> {
        let (kernel, repacked) = match self {
            HeadPlan::Generated(k, _, r) => (k, r),
            HeadPlan::Fallback { .. } => return output_head(table, xs),
        };
        let rows = kernel.info().shape.rows;
        let bytes = repacked.as_deref().unwrap_or(table.data.bytes());
        // Ranges of at least 64 rows (tens of KB of table at least).
        const MIN_ROWS: usize = 64;
        let mut out = vec![0.0f32; xs.len() * rows];
        let failure: Mutex<Option<CodegenError>> = Mutex::new(None);
        for (x, o) in xs.iter().zip(out.chunks_mut(rows)) {
            let input = kernel.prepare(x)?;
            let o_parts = DisjointParts::new(o);
            pool.run_ranges(rows, MIN_ROWS, &|range| {
                // SAFETY: the ranges are disjoint.
                let part = unsafe { o_parts.slice(range.clone()) };
                if let Err(e) = kernel.run_prepared(bytes, &input, part, range.clone()) {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            });
            if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(e.into());
            }
        }
        Ok(out)
    }
}

/// [`repack_q6k`] (Q6_K), [`repack_q8_0`] (Q8_0) or [`repack_scaled_i8`] over chunks of rows in
/// parallel.
fn repack_rows(dtype: DType, bytes: &[u8], k: usize, rows: usize) -> Result<Vec<u8>, CodegenError> {
    const CHUNK: usize = 4096;
    let src_row = bytes.len() / rows.max(1);
    if src_row == 0 {
        return Err(CodegenError::Shape(format!(
            "{dtype} head table of {} bytes for {rows} rows",
            bytes.len()
        )));
    }
    let parts: Vec<Vec<u8>> = bytes
        .par_chunks(src_row * CHUNK)
        .map(|c| match dtype {
            DType::Q6K => repack_q6k(c, k, c.len() / src_row),
            DType::Q8_0 => repack_q8_0(c, k, c.len() / src_row),
            _ => repack_scaled_i8(dtype, c, k, c.len() / src_row),
        })
        .collect::<Result<_, _>>()?;
    Ok(parts.concat())
}

/// The name of a generated head kernel: `jit.head.<format>.<K>x<rows>`.
pub fn kernel_name(kernel: &HeadKernel, isa: &str) -> String {
    let s = &kernel.info().shape;
    format!("jit.head.{isa}.{}.{}x{}", s.format.name(), s.k, s.rows)
}
