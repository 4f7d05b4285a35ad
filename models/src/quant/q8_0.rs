//! Q8_0 (`bitnet-gguf.md` §2.3): blocks of 32 elements in 34 bytes, `d: f16` then `qs: [i8; 32]`,
//! `x[j] = qs[j]·f32(d)`.

use half::f16;

use super::{check_finite, check_row, read_f16, DType, QuantError};

/// Elements per block.
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;

/// Decodes a row; `row.len()` must be `34·out.len()/32`. Non-finite block scales are errors.
pub fn dequantize_row(row: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_row(DType::Q8_0, row.len(), out.len())?;
    for (b, (blk, o)) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(BLOCK_ELEMS))
        .enumerate()
    {
        let d = read_f16(blk).to_f32();
        if !d.is_finite() {
            return Err(QuantError::NonFiniteScale {
                dtype: DType::Q8_0,
                block: b,
                value: d,
            });
        }
        for (v, &q) in o.iter_mut().zip(&blk[2..]) {
            *v = (q as i8) as f32 * d;
        }
    }
    Ok(())
}

/// Encodes a row like ggml's `quantize_row_q8_0_ref`: per block `d = amax/127`, stored as f16;
/// `q = round(x·(1/d))` with the f32 `d`, half away from zero. `out.len()` must be
/// `34·x.len()/32`; inputs must be finite.
pub fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    check_row(DType::Q8_0, out.len(), x.len())?;
    check_finite(DType::Q8_0, x)?;
    for (xb, ob) in x
        .chunks_exact(BLOCK_ELEMS)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        ob[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (q, &v) in ob[2..].iter_mut().zip(xb) {
            *q = ((v * id).round().clamp(-127.0, 127.0) as i8) as u8;
        }
    }
    Ok(())
}

/// An activation row quantized to Q8_0, the way llama.cpp quantizes activations it multiplies
/// by Q8_0 weights (`bitnet-gguf.md` §2.3): the values and each block's scale as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Q8_0Acts {
    /// The int8 values, one per element (−127..=127).
    pub qs: Vec<i8>,
    /// Each 32-element block's scale: the f16 `d` of [`quantize_row`], as f32.
    pub d: Vec<f32>,
}

/// Quantizes an activation row (a whole number of 32-element blocks) to Q8_0 with exactly the
/// arithmetic of [`quantize_row`] (ggml's `quantize_row_q8_0_ref`). Non-finite inputs are not
/// refused here: a block holding one gets a non-finite scale, so the products come out
/// non-finite rather than as an error in the middle of a generation.
pub fn quantize_activations(x: &[f32]) -> Result<Q8_0Acts, QuantError> {
    if !x.len().is_multiple_of(BLOCK_ELEMS) {
        return Err(QuantError::LengthMismatch {
            what: "Q8_0 activation row (a multiple of 32 values)",
            expected: x.len().next_multiple_of(BLOCK_ELEMS),
            actual: x.len(),
        });
    }
    let mut acts = Q8_0Acts {
        qs: vec![0; x.len()],
        d: vec![0.0; x.len() / BLOCK_ELEMS],
    };
    for ((xb, qb), d_out) in x
        .chunks_exact(BLOCK_ELEMS)
        .zip(acts.qs.chunks_exact_mut(BLOCK_ELEMS))
        .zip(acts.d.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        *d_out = f16::from_f32(d).to_f32();
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = (v * id).round().clamp(-127.0, 127.0) as i8;
        }
    }
    Ok(acts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn activations_are_the_stored_blocks_of_quantize_row() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut x: Vec<f32> = (0..96).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
        x[32..64].fill(0.0);
        let acts = quantize_activations(&x).unwrap();
        let mut row = vec![0u8; 3 * 34];
        quantize_row(&x, &mut row).unwrap();
        for b in 0..3 {
            let blk = &row[34 * b..34 * (b + 1)];
            assert_eq!(acts.d[b], read_f16(blk).to_f32());
            let qs: Vec<i8> = blk[2..].iter().map(|&q| q as i8).collect();
            assert_eq!(&acts.qs[32 * b..32 * (b + 1)], &qs[..]);
        }
        assert_eq!(acts.d[1], 0.0);
        assert!(quantize_activations(&x[..40]).is_err());
    }

    #[test]
    fn dequantize_matches_formula_on_random_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for nb in [1usize, 2, 7] {
            let mut row = vec![0u8; nb * 34];
            rng.fill(&mut row[..]);
            for b in 0..nb {
                // Keep scales finite: random finite f16 in a sane range.
                let d = f16::from_f32(rng.gen_range(-2.0f32..2.0));
                row[34 * b..34 * b + 2].copy_from_slice(&d.to_le_bytes());
            }
            let mut out = vec![0f32; nb * 32];
            dequantize_row(&row, &mut out).unwrap();
            for (i, v) in out.iter().enumerate() {
                let blk = &row[34 * (i / 32)..];
                let d = f16::from_bits(blk[0] as u16 | (blk[1] as u16) << 8).to_f32();
                let q = blk[2 + i % 32] as i8 as f32;
                assert_eq!(*v, q * d);
            }
        }
    }

    #[test]
    fn quantize_round_trip_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x: Vec<f32> = (0..32 * 20).map(|_| rng.gen_range(-3.0f32..3.0)).collect();
        let mut q = vec![0u8; 34 * 20];
        quantize_row(&x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_row(&q, &mut y).unwrap();
        for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in xb.iter().zip(yb) {
                // half a step, plus the f16 rounding of d applied to up to 127 steps
                assert!(
                    (a - b).abs() <= amax / 127.0 * 0.5 + amax * 2f32.powi(-11) * 1.01,
                    "{a} {b}"
                );
            }
        }
        // Exact cases: amax element maps to ±127; zero block gives d = 0.
        let mut x = [0f32; 32];
        x[3] = -127.0;
        x[5] = 63.5;
        x[6] = -0.5;
        let mut q = [0u8; 34];
        quantize_row(&x, &mut q).unwrap();
        assert_eq!(q[2 + 3] as i8, -127);
        assert_eq!(q[2 + 5] as i8, 64); // 63.5 rounds away from zero
        assert_eq!(q[2 + 6] as i8, -1);
        assert_eq!(&q[..2], &f16::ONE.to_le_bytes());
        quantize_row(&[0.0; 32], &mut q).unwrap();
        assert!(q.iter().all(|&b| b == 0));
    }

    #[test]
    fn errors() {
        let mut out = [0f32; 32];
        assert!(dequantize_row(&[0; 33], &mut out).is_err());
        assert!(dequantize_row(&[0; 34], &mut out[..31]).is_err());
        let mut inf = [0u8; 34];
        inf[..2].copy_from_slice(&f16::INFINITY.to_le_bytes());
        assert!(matches!(
            dequantize_row(&inf, &mut out),
            Err(QuantError::NonFiniteScale { .. })
        ));
        assert!(quantize_row(&[f32::NAN; 32], &mut [0; 34]).is_err());
        assert!(quantize_row(&[0.0; 32], &mut [0; 35]).is_err());
    }
}
