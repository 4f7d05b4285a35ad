//! Q8_K (`bitnet-gguf.md` §2.3): the activation format llama.cpp multiplies Q6_K weights with.
//! Never stored in files: an activation row is quantized to it once per token, per 256-element
//! block: the element of largest magnitude `max` (its sign kept, the first one on ties) gives
//! `iscale = −127/max`, each value becomes `min(127, round_half_even(iscale·x))` and the block's
//! scale is `d = 1/iscale`; an all-zero block has `d = 0` and zero values. `bsums` holds the sum
//! of each 16 consecutive values.

use super::QuantError;

/// Elements per block.
pub const BLOCK_ELEMS: usize = 256;

/// One activation row in Q8_K.
#[derive(Clone, Debug, PartialEq)]
pub struct Q8kRow {
    /// The int8 values, one per element.
    pub qs: Vec<i8>,
    /// Sum of each 16 consecutive values.
    pub bsums: Vec<i16>,
    /// Scale of each 256-element block.
    pub d: Vec<f32>,
}

/// Quantizes `x` (a whole number of 256-element blocks) to Q8_K.
pub fn quantize_row(x: &[f32]) -> Result<Q8kRow, QuantError> {
    if !x.len().is_multiple_of(BLOCK_ELEMS) {
        return Err(QuantError::LengthMismatch {
            what: "Q8_K activation row (a multiple of 256 values)",
            expected: x.len().next_multiple_of(BLOCK_ELEMS),
            actual: x.len(),
        });
    }
    let mut row = Q8kRow {
        qs: vec![0; x.len()],
        bsums: vec![0; x.len() / 16],
        d: vec![0.0; x.len() / BLOCK_ELEMS],
    };
    for (b, block) in x.chunks_exact(BLOCK_ELEMS).enumerate() {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in block {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            continue;
        }
        let iscale = -127.0 / max;
        let qs = &mut row.qs[b * BLOCK_ELEMS..(b + 1) * BLOCK_ELEMS];
        for (q, &v) in qs.iter_mut().zip(block) {
            *q = (iscale * v).round_ties_even().min(127.0) as i8;
        }
        for (j, s) in qs.chunks_exact(16).enumerate() {
            row.bsums[b * 16 + j] = s.iter().map(|&q| i16::from(q)).sum();
        }
        row.d[b] = 1.0 / iscale;
    }
    Ok(row)
}
