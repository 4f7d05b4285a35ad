//! Type-specific payload checks (`bitnet-gguf.md` §1.5 item 12): scales must be finite and
//! ternary codes must be 0, 1 or 2, so that a corrupt tensor is refused rather than computed with.

use bitnetc_ir::DType;
use half::f16;

use crate::error::ModelError;
use crate::quant::i2s;

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
            let scale = i2s::scale(bytes, n as usize).map_err(|e| bad(name, e.to_string()))?;
            let invalid = i2s::count_invalid_codes(&bytes[..(n / 4) as usize]);
            if invalid > 0 {
                return Err(bad(name, format!("{invalid} I2_S weights hold code 3, which no producer writes (corrupt file or unknown I2_S variant)")));
            }
            if !(scale.is_finite() && scale >= 0.0) {
                return Err(bad(
                    name,
                    format!("I2_S scale {scale} is not a finite non-negative number"),
                ));
            }
        }
        DType::TQ2_0 => {
            for (b, block) in bytes.chunks_exact(66).enumerate() {
                check_f16(name, b, &block[64..66])?;
                if let Some(i) = block[..64].iter().position(|&q| q & (q >> 1) & 0x55 != 0) {
                    return Err(bad(
                        name,
                        format!("TQ2_0 block {b} byte {i} holds code 3 (corrupt payload)"),
                    ));
                }
            }
        }
        DType::TQ1_0 => bytes
            .chunks_exact(54)
            .enumerate()
            .try_for_each(|(b, blk)| check_f16(name, b, &blk[52..54]))?,
        DType::Q8_0 => bytes
            .chunks_exact(34)
            .enumerate()
            .try_for_each(|(b, blk)| check_f16(name, b, &blk[0..2]))?,
        DType::Q6K => bytes
            .chunks_exact(210)
            .enumerate()
            .try_for_each(|(b, blk)| check_f16(name, b, &blk[208..210]))?,
        DType::F32 | DType::F16 | DType::BF16 => {}
    }
    Ok(())
}

fn check_f16(name: &str, block: usize, raw: &[u8]) -> Result<(), ModelError> {
    let d = f16::from_le_bytes([raw[0], raw[1]]);
    if !d.is_finite() {
        return Err(bad(
            name,
            format!("block {block} has a non-finite scale {d}"),
        ));
    }
    Ok(())
}
