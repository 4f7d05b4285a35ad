//! Reading weights in the reference backend: ternary rows as codes plus scales, and table rows
//! (embedding, output head) as f32.

use bitnetc_ir::{DType, Weight};
use bitnetc_models::quant::{self, i2s, tq1_0, tq2_0};

use crate::error::RuntimeError;

/// How the outputs of one ternary row are scaled.
#[derive(Clone, Debug, PartialEq)]
pub enum RowScale {
    /// One scale for the whole row (I2_S, and TQ rows whose non-empty blocks share a scale).
    Uniform(f32),
    /// One scale per 256-element block (TQ rows with differing block scales).
    PerBlock(Vec<f32>),
}

/// A ternary weight matrix `[K, M]` decoded one row at a time.
pub struct TernaryMatrix<'w> {
    weight: &'w Weight,
    /// Inputs per row.
    pub k: usize,
    /// Rows (outputs).
    pub m: usize,
    tensor_scale: f32,
}

fn weight_err(w: &Weight, problem: impl ToString) -> RuntimeError {
    RuntimeError::Weight {
        name: w.name.clone(),
        problem: problem.to_string(),
    }
}

impl<'w> TernaryMatrix<'w> {
    /// Wraps a ternary weight.
    pub fn new(weight: &'w Weight) -> Result<TernaryMatrix<'w>, RuntimeError> {
        let (k, m) = (weight.dims[0] as usize, weight.dims[1] as usize);
        let tensor_scale = match weight.dtype {
            DType::I2S => {
                i2s::scale(weight.data.bytes(), k * m).map_err(|e| weight_err(weight, e))?
            }
            DType::TQ1_0 | DType::TQ2_0 => 0.0,
            other => {
                return Err(weight_err(
                    weight,
                    format!("{other} is not a ternary format"),
                ))
            }
        };
        Ok(TernaryMatrix {
            weight,
            k,
            m,
            tensor_scale,
        })
    }

    /// Decodes row `row` into `codes` (0, 1, 2 for −1, 0, +1) and returns its scale.
    pub fn row(&self, row: usize, codes: &mut [u8]) -> Result<RowScale, RuntimeError> {
        let bytes = self.weight.data.bytes();
        let err = |e: quant::QuantError| weight_err(self.weight, e);
        match self.weight.dtype {
            DType::I2S => {
                i2s::decode_codes(bytes, row * self.k, codes).map_err(err)?;
                Ok(RowScale::Uniform(self.tensor_scale))
            }
            dtype => {
                let rb = dtype
                    .row_bytes(self.k as u64)
                    .expect("validated row length") as usize;
                let src = &bytes[row * rb..(row + 1) * rb];
                let mut scales = vec![0.0f32; self.k / 256];
                if dtype == DType::TQ2_0 {
                    tq2_0::decode_row_codes(src, codes, &mut scales).map_err(err)?;
                } else {
                    tq1_0::decode_row_codes(src, codes, &mut scales).map_err(err)?;
                }
                Ok(uniform_scale(codes, &scales)
                    .map_or(RowScale::PerBlock(scales), RowScale::Uniform))
            }
        }
    }
}

/// The scale shared by every block that holds a non-zero weight, if there is one.
fn uniform_scale(codes: &[u8], scales: &[f32]) -> Option<f32> {
    let mut shared: Option<f32> = None;
    for (block, &d) in codes.chunks(256).zip(scales) {
        if block.iter().all(|&c| c == 1) {
            continue;
        }
        match shared {
            None => shared = Some(d),
            Some(s) if s.to_bits() == d.to_bits() => {}
            Some(_) => return None,
        }
    }
    Some(shared.unwrap_or(0.0))
}

/// Decodes row `index` of a table `[width, rows]` (embedding or output head) into f32.
pub fn table_row(weight: &Weight, index: usize, out: &mut [f32]) -> Result<(), RuntimeError> {
    let width = weight.dims[0];
    let rb = weight
        .dtype
        .row_bytes(width)
        .ok_or_else(|| weight_err(weight, "bad row length"))? as usize;
    let bytes = weight
        .data
        .bytes()
        .get(index * rb..(index + 1) * rb)
        .ok_or_else(|| weight_err(weight, format!("row {index} out of range")))?;
    quant::dequantize_row(weight.dtype, bytes, out).map_err(|e| weight_err(weight, e))
}
