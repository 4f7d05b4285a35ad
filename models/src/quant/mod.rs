//! Tensor storage formats: encode and decode (`bitnet-gguf.md` §2).
//!
//! * [`dequantize_row`] / [`quantize_row`] convert one row (a whole number of blocks) between a
//!   storage format and `f32`.
//! * The ternary formats also expose their raw codes (`0/1/2` meaning `w = code − 1`):
//!   [`tq2_0`], [`tq1_0`] (one f16 scale per 256 elements) and [`i2s`] (one f32 scale per tensor).
//! * [`ternary::ternarize`] turns f32 weights into codes and a scale the way BitNet's
//!   `weight_quant` does.
//!
//! Every decoder validates buffer lengths and returns a [`QuantError`] instead of panicking,
//! whatever the input bytes hold.

pub mod float;
pub mod i2s;
pub mod q6_k;
pub mod q8_0;
pub mod q8_k;
pub mod ternary;
mod ternary_rows;
pub mod tq1_0;
pub mod tq2_0;

#[cfg(test)]
mod tests;

pub use bitnetc_ir::DType;
pub use ternary::ternarize;

/// Why a buffer could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    /// The element count is not a whole number of blocks.
    #[error("{dtype}: {n_elems} elements is not a multiple of the block size {block}")]
    NotBlockMultiple {
        /// Format.
        dtype: DType,
        /// Element count given.
        n_elems: usize,
        /// Elements per block.
        block: usize,
    },
    /// A byte buffer has the wrong size for the element count.
    #[error("{dtype}: {n_elems} elements need {expected} bytes, buffer has {actual}")]
    WrongByteLength {
        /// Format.
        dtype: DType,
        /// Element count.
        n_elems: usize,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// Two buffers that must agree in length do not.
    #[error("{what}: expected length {expected}, got {actual}")]
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// The operation is not defined for this format.
    #[error("{op} is not supported for {dtype}")]
    Unsupported {
        /// Format.
        dtype: DType,
        /// What was asked for.
        op: &'static str,
    },
    /// A ternary code outside `0..=2`.
    #[error("{dtype}: invalid ternary code {code} at element {index} (codes must be 0, 1 or 2)")]
    BadCode {
        /// Format.
        dtype: DType,
        /// Element index (within the buffer given).
        index: usize,
        /// The offending code.
        code: u8,
    },
    /// A stored scale is NaN or infinite.
    #[error("{dtype}: block {block} has a non-finite scale {value}")]
    NonFiniteScale {
        /// Format.
        dtype: DType,
        /// Block index (0 for per-tensor scales).
        block: usize,
        /// The scale, as f32.
        value: f32,
    },
    /// A stored scale is finite but not acceptable (e.g. a negative I2_S scale).
    #[error("{dtype}: invalid scale {value}: {reason}")]
    BadScale {
        /// Format.
        dtype: DType,
        /// The scale.
        value: f32,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An input value to a quantizer is NaN or infinite.
    #[error("{dtype}: cannot quantize non-finite value {value} at element {index}")]
    NonFiniteInput {
        /// Format.
        dtype: DType,
        /// Element index.
        index: usize,
        /// The value.
        value: f32,
    },
}

/// Byte size of a row of `n_elems` elements (for I2_S: packed codes only, no tail).
pub fn row_bytes(dtype: DType, n_elems: usize) -> Result<usize, QuantError> {
    let block = dtype.block_elems() as usize;
    if !n_elems.is_multiple_of(block) {
        return Err(QuantError::NotBlockMultiple {
            dtype,
            n_elems,
            block,
        });
    }
    (n_elems / block)
        .checked_mul(dtype.block_bytes() as usize)
        .ok_or(QuantError::NotBlockMultiple {
            dtype,
            n_elems,
            block,
        })
}

/// Checks that `bytes` is exactly one row of `n_elems` elements of `dtype`.
pub(crate) fn check_row(dtype: DType, bytes: usize, n_elems: usize) -> Result<(), QuantError> {
    let expected = row_bytes(dtype, n_elems)?;
    if bytes != expected {
        return Err(QuantError::WrongByteLength {
            dtype,
            n_elems,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// Reads a little-endian f16 from the first two bytes of `b`.
#[inline]
pub(crate) fn read_f16(b: &[u8]) -> half::f16 {
    half::f16::from_le_bytes([b[0], b[1]])
}

/// Decodes one row of `out.len()` elements stored as `dtype` in `row`.
///
/// `row` must be exactly [`row_bytes`]`(dtype, out.len())` long. Ternary formats give
/// `(code − 1)·d`. Block scales that are NaN/infinite, and TQ2_0 code 3, are errors.
/// I2_S is per-tensor (its scale sits after the last row) and is handled by [`i2s`].
pub fn dequantize_row(dtype: DType, row: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    match dtype {
        DType::F32 => float::f32_bytes_to_f32(row, out),
        DType::F16 => float::f16_bytes_to_f32(row, out),
        DType::BF16 => float::bf16_bytes_to_f32(row, out),
        DType::Q8_0 => q8_0::dequantize_row(row, out),
        DType::Q6K => q6_k::dequantize_row(row, out),
        DType::TQ1_0 => tq1_0::dequantize_row(row, out),
        DType::TQ2_0 => tq2_0::dequantize_row(row, out),
        DType::I2S => Err(QuantError::Unsupported {
            dtype,
            op: "row dequantization (I2_S has a per-tensor scale; use quant::i2s)",
        }),
    }
}

/// Encodes one row `x` as `dtype` into `out`, which must be exactly
/// [`row_bytes`]`(dtype, x.len())` long.
///
/// Float formats round to nearest even. Q8_0 and Q6_K follow §2.3 (see their modules);
/// TQ1_0/TQ2_0 use mainline's reference rule (`d = max|x|` per block, `t = round(x/d) + 1`).
/// Quantized formats refuse NaN/infinite inputs. I2_S is per-tensor: use [`i2s::encode`].
pub fn quantize_row(dtype: DType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    match dtype {
        DType::F32 => float::f32_to_f32_bytes(x, out),
        DType::F16 => float::f32_to_f16_bytes(x, out),
        DType::BF16 => float::f32_to_bf16_bytes(x, out),
        DType::Q8_0 => q8_0::quantize_row(x, out),
        DType::Q6K => q6_k::quantize_row(x, out),
        DType::TQ1_0 | DType::TQ2_0 => quantize_row_tq(dtype, x, out),
        DType::I2S => Err(QuantError::Unsupported {
            dtype,
            op: "row quantization (I2_S has a per-tensor scale; use quant::i2s::encode)",
        }),
    }
}

pub(crate) fn check_finite(dtype: DType, x: &[f32]) -> Result<(), QuantError> {
    match x.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(QuantError::NonFiniteInput {
            dtype,
            index,
            value: x[index],
        }),
        None => Ok(()),
    }
}

/// Mainline `quantize_row_tq{1,2}_0_ref`: per 256-block `d = max|x|`, `t = round(x/d) + 1`
/// (half away from zero).
fn quantize_row_tq(dtype: DType, x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    check_row(dtype, out.len(), x.len())?;
    check_finite(dtype, x)?;
    let bb = dtype.block_bytes() as usize;
    let mut codes = [0u8; 256];
    for (xb, ob) in x.chunks_exact(256).zip(out.chunks_exact_mut(bb)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax > 0.0 { 1.0 / amax } else { 0.0 };
        for (c, &v) in codes.iter_mut().zip(xb) {
            *c = ((v * id).round().clamp(-1.0, 1.0) as i8 + 1) as u8;
        }
        let d = half::f16::from_f32(amax);
        match dtype {
            DType::TQ1_0 => tq1_0::encode_block(&codes, d, ob),
            _ => tq2_0::encode_block(&codes, d, ob),
        }
    }
    Ok(())
}
