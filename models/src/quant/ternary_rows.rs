//! Row-level operations shared by the block-based ternary formats (TQ1_0, TQ2_0): each format
//! supplies its block codec, this module walks rows of blocks and checks lengths, codes and scales.

use half::f16;

use super::{check_row, read_f16, DType, QuantError};

/// Elements per block of every TQ format.
pub const BLOCK_ELEMS: usize = 256;

/// What a block-based ternary format provides.
pub(crate) struct BlockFormat {
    pub dtype: DType,
    pub block_bytes: usize,
    /// Byte offset of the f16 scale inside a block.
    pub scale_offset: usize,
    pub decode: fn(&[u8], &mut [u8; 256]) -> f32,
    pub encode: fn(&[u8; 256], f16, &mut [u8]),
    /// Index of the first stored code 3 in a block, for formats that can store one.
    pub first_bad_code: fn(&[u8]) -> Option<usize>,
}

fn check_scales(f: &BlockFormat, n_codes: usize, n_scales: usize) -> Result<(), QuantError> {
    if n_scales * BLOCK_ELEMS != n_codes {
        return Err(QuantError::LengthMismatch {
            what: match f.dtype {
                DType::TQ1_0 => "TQ1_0 scales",
                _ => "TQ2_0 scales",
            },
            expected: n_codes / BLOCK_ELEMS,
            actual: n_scales,
        });
    }
    Ok(())
}

pub(crate) fn decode_row_codes(
    f: &BlockFormat,
    row: &[u8],
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), QuantError> {
    check_row(f.dtype, row.len(), codes.len())?;
    check_scales(f, codes.len(), scales.len())?;
    let mut buf = [0u8; 256];
    for ((blk, c), s) in row
        .chunks_exact(f.block_bytes)
        .zip(codes.chunks_exact_mut(BLOCK_ELEMS))
        .zip(scales)
    {
        *s = (f.decode)(blk, &mut buf);
        c.copy_from_slice(&buf);
    }
    Ok(())
}

pub(crate) fn encode_row(
    f: &BlockFormat,
    codes: &[u8],
    scales: &[f16],
    out: &mut [u8],
) -> Result<(), QuantError> {
    check_row(f.dtype, out.len(), codes.len())?;
    check_scales(f, codes.len(), scales.len())?;
    if let Some(index) = codes.iter().position(|&c| c > 2) {
        return Err(QuantError::BadCode {
            dtype: f.dtype,
            index,
            code: codes[index],
        });
    }
    for ((c, &d), o) in codes
        .chunks_exact(BLOCK_ELEMS)
        .zip(scales)
        .zip(out.chunks_exact_mut(f.block_bytes))
    {
        let c: &[u8; 256] = c.try_into().expect("chunk of 256");
        (f.encode)(c, d, o);
    }
    Ok(())
}

pub(crate) fn validate(f: &BlockFormat, row: &[u8]) -> Result<(), QuantError> {
    if !row.len().is_multiple_of(f.block_bytes) {
        let n_elems = row.len() / f.block_bytes * BLOCK_ELEMS;
        return Err(QuantError::WrongByteLength {
            dtype: f.dtype,
            n_elems,
            expected: n_elems / BLOCK_ELEMS * f.block_bytes,
            actual: row.len(),
        });
    }
    for (b, blk) in row.chunks_exact(f.block_bytes).enumerate() {
        let d = read_f16(&blk[f.scale_offset..f.scale_offset + 2]);
        if !d.is_finite() {
            return Err(QuantError::NonFiniteScale {
                dtype: f.dtype,
                block: b,
                value: d.to_f32(),
            });
        }
        if let Some(i) = (f.first_bad_code)(blk) {
            return Err(QuantError::BadCode {
                dtype: f.dtype,
                index: b * BLOCK_ELEMS + i,
                code: 3,
            });
        }
    }
    Ok(())
}

pub(crate) fn dequantize_row(
    f: &BlockFormat,
    row: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    check_row(f.dtype, row.len(), out.len())?;
    validate(f, row)?;
    let mut buf = [0u8; 256];
    for (blk, o) in row
        .chunks_exact(f.block_bytes)
        .zip(out.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = (f.decode)(blk, &mut buf);
        for (v, &c) in o.iter_mut().zip(&buf) {
            *v = (c as i32 - 1) as f32 * d;
        }
    }
    Ok(())
}
