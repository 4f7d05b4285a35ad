//! Type-specific payload checks (`bitnet-gguf.md` §1.5 item 12): scales must be finite and
//! ternary codes must be 0, 1 or 2, so that a corrupt tensor is refused rather than computed with.

use bitnetc_ir::DType;
use half::f16;
use rayon::prelude::*;

use crate::error::ModelError;
use crate::quant::{i2s, tq1_0, tq2_0};

fn bad(name: &str, problem: String) -> ModelError {
    ModelError::BadTensor {
        name: name.to_string(),
        problem,
    }
}

/// Checks the payload of a tensor whose size already matches its format.
pub fn check_payload(
    name: &str,
    dtype: DType,
    dims: &[u64],
    bytes: &[u8],
) -> Result<(), ModelError> {
    let n: u64 = dims.iter().product();
    match dtype {
        DType::I2S => {
            i2s::scale(bytes, n as usize).map_err(|e| bad(name, e.to_string()))?;
            // Spread over the pool: this is the first read of the weights (page faults included).
            let invalid: usize = bytes[..(n / 4) as usize]
                .par_chunks(1 << 20)
                .map(i2s::count_invalid_codes)
                .sum();
            if invalid > 0 {
                return Err(bad(name, format!("{invalid} I2_S weights hold code 3, which no producer writes (corrupt file or unknown I2_S variant)")));
            }
        }
        // A tensor payload is a sequence of whole blocks, like a row.
        DType::TQ2_0 => tq2_0::validate(bytes).map_err(|e| bad(name, e.to_string()))?,
        DType::TQ1_0 => tq1_0::validate(bytes).map_err(|e| bad(name, e.to_string()))?,
        DType::Q8_0 => check_block_scales(name, bytes, 34, 0)?,
        DType::Q6K => check_block_scales(name, bytes, 210, 208)?,
        DType::F32 | DType::F16 | DType::BF16 => {}
    }
    Ok(())
}

/// Every block's f16 scale (at `offset` in blocks of `block_bytes`) must be finite.
fn check_block_scales(
    name: &str,
    bytes: &[u8],
    block_bytes: usize,
    offset: usize,
) -> Result<(), ModelError> {
    for (b, blk) in bytes.chunks_exact(block_bytes).enumerate() {
        let d = f16::from_le_bytes([blk[offset], blk[offset + 1]]);
        if !d.is_finite() {
            return Err(bad(name, format!("block {b} has a non-finite scale {d}")));
        }
    }
    Ok(())
}
