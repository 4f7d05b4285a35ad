//! TQ1_0 (`bitnet-gguf.md` §2.4): ternary, 256 elements in 54 bytes:
//! `qs: [u8; 48]`, `qh: [u8; 4]`, `d: f16`, base-3 packed.
//!
//! Trits (codes `t ∈ {0,1,2}`, `w = (t − 1)·d`) are grouped five to a byte, most significant
//! first, as the base-3 number `v` stretched to a byte by `byte = ceil(v·256/243)`:
//! * `qs[m]`, `m < 32`: elements `m + 32n`, `n = 0..5`;
//! * `qs[32+m]`, `m < 16`: elements `160 + m + 16n`;
//! * `qh[j]`, `j < 4`: elements `240 + j + 4n`, `n = 0..4`, then a 0 trit.
//!
//! Trit `n` of byte `b` decodes as `(((b·3ⁿ) mod 256)·3) >> 8`, which is always 0, 1 or 2, so
//! no byte value decodes to an invalid code.

use half::f16;

use super::ternary_rows::{self, BlockFormat};
use super::{read_f16, DType, QuantError};

/// Elements per block.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 54;

const DT: DType = DType::TQ1_0;
const POW3: [u8; 5] = [1, 3, 9, 27, 81];

#[inline]
fn trit(b: u8, n: usize) -> u8 {
    ((b.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8
}

#[inline]
fn pack(trits: impl Iterator<Item = u8>) -> u8 {
    let v = trits.fold(0u16, |v, t| v * 3 + t as u16);
    (v * 256).div_ceil(243) as u8
}

/// Unpacks one 54-byte block into `codes` (each 0..=2) and returns `f32(d)`.
///
/// # Panics
/// If `block.len() != 54` (use [`decode_row_codes`] for checked access to untrusted data).
pub fn decode_block(block: &[u8], codes: &mut [u8; 256]) -> f32 {
    assert_eq!(block.len(), BLOCK_BYTES, "TQ1_0 block must be 54 bytes");
    for (m, &b) in block[..32].iter().enumerate() {
        for n in 0..5 {
            codes[m + 32 * n] = trit(b, n);
        }
    }
    for (m, &b) in block[32..48].iter().enumerate() {
        for n in 0..5 {
            codes[160 + m + 16 * n] = trit(b, n);
        }
    }
    for (j, &b) in block[48..52].iter().enumerate() {
        for n in 0..4 {
            codes[240 + j + 4 * n] = trit(b, n);
        }
    }
    read_f16(&block[52..54]).to_f32()
}

/// Packs 256 codes (each 0..=2) and the scale `d` into one 54-byte block.
///
/// # Panics
/// If `out.len() != 54` or a code is above 2 ([`encode_row`] checks both and returns errors).
pub fn encode_block(codes: &[u8; 256], d: f16, out: &mut [u8]) {
    assert_eq!(out.len(), BLOCK_BYTES, "TQ1_0 block must be 54 bytes");
    assert!(
        codes.iter().all(|&c| c <= 2),
        "TQ1_0 codes must be 0, 1 or 2"
    );
    for m in 0..32 {
        out[m] = pack((0..5).map(|n| codes[m + 32 * n]));
    }
    for m in 0..16 {
        out[32 + m] = pack((0..5).map(|n| codes[160 + m + 16 * n]));
    }
    for j in 0..4 {
        out[48 + j] = pack((0..4).map(|n| codes[240 + j + 4 * n]).chain([0]));
    }
    out[52..54].copy_from_slice(&d.to_le_bytes());
}

const FORMAT: BlockFormat = BlockFormat {
    dtype: DT,
    block_bytes: BLOCK_BYTES,
    scale_offset: 52,
    decode: decode_block,
    encode: encode_block,
    // Every byte decodes to valid trits: there is no invalid code.
    first_bad_code: |_| None,
};

/// Unpacks a row into codes and one f32 scale per 256-element block.
/// Requires `codes.len()` a multiple of 256, `scales.len() = codes.len()/256` and
/// `row.len() = 54·scales.len()`.
pub fn decode_row_codes(
    row: &[u8],
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), QuantError> {
    ternary_rows::decode_row_codes(&FORMAT, row, codes, scales)
}

/// Packs codes (each 0..=2) with one f16 scale per 256 elements into `out`
/// (`54·scales.len()` bytes).
pub fn encode_row(codes: &[u8], scales: &[f16], out: &mut [u8]) -> Result<(), QuantError> {
    ternary_rows::encode_row(&FORMAT, codes, scales, out)
}

/// Checks a row of whole blocks: every scale finite. (Every byte decodes to valid trits, so
/// there is no code to check.)
pub fn validate(row: &[u8]) -> Result<(), QuantError> {
    ternary_rows::validate(&FORMAT, row)
}

/// Decodes a row to `(code − 1)·d`; non-finite scales are errors.
pub fn dequantize_row(row: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    ternary_rows::dequantize_row(&FORMAT, row, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{hex, lcg_codes};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const VECTOR: &str = "f47341a786d30a0c4e4166b42e47bae454050a3fd59db829073755dc7ac8d6bcf62a4392aa96c367e9902a429cab5975bbcb1a17003c";

    #[test]
    fn test_vector_encode_and_decode() {
        let codes: [u8; 256] = lcg_codes(256).try_into().unwrap();
        let mut out = [0u8; 54];
        encode_block(&codes, f16::ONE, &mut out);
        assert_eq!(hex(&out), VECTOR);
        let mut back = [9u8; 256];
        assert_eq!(decode_block(&out, &mut back), 1.0);
        assert_eq!(back, codes);
        let mut y = [0f32; 256];
        dequantize_row(&out, &mut y).unwrap();
        for (v, c) in y.iter().zip(codes) {
            assert_eq!(*v, c as f32 - 1.0);
        }
        let x: Vec<f32> = codes.iter().map(|&c| c as f32 - 1.0).collect();
        let mut q = [0u8; 54];
        crate::quant::quantize_row(DT, &x, &mut q).unwrap();
        assert_eq!(hex(&q), VECTOR);
    }

    #[test]
    fn every_base3_value_round_trips() {
        for v in 0u16..243 {
            let digits: Vec<u8> = (0..5).map(|n| ((v / 3u16.pow(4 - n)) % 3) as u8).collect();
            let b = pack(digits.iter().copied());
            for (n, &t) in digits.iter().enumerate() {
                assert_eq!(trit(b, n), t, "v={v} n={n}");
            }
        }
        // Any byte decodes to valid trits.
        for b in 0..=255u8 {
            assert!((0..5).all(|n| trit(b, n) <= 2));
        }
    }

    #[test]
    fn random_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for nb in [1usize, 2, 5, 17] {
            let codes: Vec<u8> = (0..256 * nb).map(|_| rng.gen_range(0..3)).collect();
            let scales: Vec<f16> = (0..nb)
                .map(|_| f16::from_f32(rng.gen_range(0.0f32..2.0)))
                .collect();
            let mut row = vec![0u8; 54 * nb];
            encode_row(&codes, &scales, &mut row).unwrap();
            validate(&row).unwrap();
            let mut back = vec![0u8; codes.len()];
            let mut s = vec![0f32; nb];
            decode_row_codes(&row, &mut back, &mut s).unwrap();
            assert_eq!(back, codes);
            assert_eq!(s, scales.iter().map(|d| d.to_f32()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn errors_and_arbitrary_bytes() {
        let mut codes = vec![1u8; 256];
        let mut s = [0f32; 1];
        assert!(decode_row_codes(&[0; 53], &mut codes, &mut s).is_err());
        assert!(decode_row_codes(&[0; 54], &mut codes[..255], &mut s).is_err());
        assert!(encode_row(&codes, &[], &mut [0; 54]).is_err());
        codes[200] = 5;
        assert_eq!(
            encode_row(&codes, &[f16::ONE], &mut [0; 54]),
            Err(QuantError::BadCode {
                dtype: DT,
                index: 200,
                code: 5
            })
        );
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut blk = [0u8; 54];
        rng.fill(&mut blk[..52]);
        let mut c = [0u8; 256];
        decode_block(&blk, &mut c);
        assert!(c.iter().all(|&t| t <= 2));
        blk[52..].copy_from_slice(&f16::NAN.to_le_bytes());
        assert!(matches!(
            dequantize_row(&blk, &mut [0f32; 256]),
            Err(QuantError::NonFiniteScale { .. })
        ));
        assert!(validate(&[0; 55]).is_err());
    }
}
