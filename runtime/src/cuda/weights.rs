//! Weights on the device: uploaded once at load, in the layouts the kernels read.

use std::collections::HashMap;
use std::sync::Arc;

use bitnetc_codegen::cpu::head::{repack_scaled_i8, HeadFormat};
use bitnetc_codegen::cuda::ternary::pack_weight;
use bitnetc_ir::{Graph, Op, WeightId};
use cudarc::driver::{CudaSlice, CudaStream};
use rayon::prelude::*;

use super::error::{driver, CudaError};
use super::plan::head_format;
use crate::error::RuntimeError;
use crate::exec::weight_f32;

/// A packed ternary weight on the device.
pub struct DeviceTernary {
    /// Packed codes (`m · k_pad / 16` words).
    pub words: CudaSlice<u32>,
    /// One scale per row.
    pub row_scales: CudaSlice<f32>,
}

/// Every weight the graph's kernels read, uploaded.
pub struct DeviceWeights {
    /// f32 vectors (norm weights, biases).
    pub f32s: HashMap<WeightId, CudaSlice<f32>>,
    /// Ternary matrices.
    pub ternary: HashMap<WeightId, DeviceTernary>,
    /// Output-head tables (bytes in the head kernel's format).
    pub tables: HashMap<WeightId, CudaSlice<u8>>,
    /// Bytes uploaded.
    pub bytes: usize,
}

impl DeviceWeights {
    /// Packs (in parallel on the host) and uploads every weight the kernels read.
    pub fn upload(graph: &Graph, stream: &Arc<CudaStream>) -> Result<DeviceWeights, RuntimeError> {
        let mut f32_ids = Vec::new();
        let mut ternary_ids = Vec::new();
        let mut table_ids = Vec::new();
        for node in &graph.nodes {
            match &node.op {
                Op::RmsNorm { weight, .. } => f32_ids.push(*weight),
                Op::AddBias { bias, .. } => f32_ids.push(*bias),
                Op::TernaryLinear { weight, .. } => ternary_ids.push(*weight),
                Op::OutputHead { table, .. } => table_ids.push(*table),
                _ => {}
            }
        }
        for ids in [&mut f32_ids, &mut ternary_ids, &mut table_ids] {
            ids.sort();
            ids.dedup();
        }
        let packed = ternary_ids
            .par_iter()
            .map(|&id| pack_weight(graph.weight(id)).map(|p| (id, p)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = DeviceWeights {
            f32s: HashMap::new(),
            ternary: HashMap::new(),
            tables: HashMap::new(),
            bytes: 0,
        };
        for id in f32_ids {
            let v = weight_f32(graph.weight(id));
            out.bytes += 4 * v.len();
            let d = stream
                .clone_htod(&v)
                .map_err(driver(format!("uploading {}", graph.weight(id).name)))?;
            out.f32s.insert(id, d);
        }
        for (id, p) in packed {
            let name = &graph.weight(id).name;
            out.bytes += 4 * (p.words.len() + p.row_scales.len());
            let words = stream
                .clone_htod(&p.words)
                .map_err(driver(format!("uploading {name}")))?;
            let row_scales = stream
                .clone_htod(&p.row_scales)
                .map_err(driver(format!("uploading {name}")))?;
            out.ternary.insert(id, DeviceTernary { words, row_scales });
        }
        for id in table_ids {
            let w = graph.weight(id);
            let (k, rows) = (w.dims[0] as usize, w.dims[1] as usize);
            let bytes = match head_format(w.dtype) {
                Some(HeadFormat::ScaledI8 { .. }) => {
                    repack_scaled_i8(w.dtype, w.data.bytes(), k, rows)?
                }
                _ => w.data.bytes().to_vec(),
            };
            out.bytes += bytes.len();
            let d = stream
                .clone_htod(&bytes)
                .map_err(driver(format!("uploading {}", w.name)))?;
            out.tables.insert(id, d);
        }
        Ok(out)
    }
}

impl From<CudaError> for RuntimeError {
    fn from(e: CudaError) -> RuntimeError {
        RuntimeError::Cuda(e)
    }
}
