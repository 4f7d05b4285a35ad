//! TQ2_0 (`bitnet-gguf.md` §2.4): ternary, 256 elements in 66 bytes: `qs: [u8; 64]`, `d: f16`.
//!
//! Element `e`: byte `qs[32·(e/128) + e%32]`, bits `2·((e%128)/32)` and up (least-significant
//! pair first). Code `t ∈ {0,1,2}` means `w = (t − 1)·d`; code 3 is never produced and is
//! reported by [`validate`] / refused by [`dequantize_row`].

use half::f16;

use super::ternary_rows::{self, BlockFormat};
use super::{read_f16, DType, QuantError};

/// Elements per block.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 66;

const DT: DType = DType::TQ2_0;

/// Unpacks one 66-byte block into `codes` (as stored, 0..=3) and returns `f32(d)`.
///
/// # Panics
/// If `block.len() != 66` (use [`decode_row_codes`] for checked access to untrusted data).
pub fn decode_block(block: &[u8], codes: &mut [u8; 256]) -> f32 {
    assert_eq!(block.len(), BLOCK_BYTES, "TQ2_0 block must be 66 bytes");
    for half in 0..2 {
        let qs = &block[32 * half..32 * half + 32];
        let c = &mut codes[128 * half..128 * half + 128];
        for (m, &b) in qs.iter().enumerate() {
            c[m] = b & 3;
            c[m + 32] = (b >> 2) & 3;
            c[m + 64] = (b >> 4) & 3;
            c[m + 96] = b >> 6;
        }
    }
    read_f16(&block[64..66]).to_f32()
}

/// Packs 256 codes and the scale `d` into one 66-byte block.
///
/// # Panics
/// If `out.len() != 66` or a code is above 2 ([`encode_row`] checks both and returns errors).
pub fn encode_block(codes: &[u8; 256], d: f16, out: &mut [u8]) {
    assert_eq!(out.len(), BLOCK_BYTES, "TQ2_0 block must be 66 bytes");
    assert!(
        codes.iter().all(|&c| c <= 2),
        "TQ2_0 codes must be 0, 1 or 2"
    );
    for half in 0..2 {
        let c = &codes[128 * half..128 * half + 128];
        for m in 0..32 {
            out[32 * half + m] = c[m] | (c[m + 32] << 2) | (c[m + 64] << 4) | (c[m + 96] << 6);
        }
    }
    out[64..66].copy_from_slice(&d.to_le_bytes());
}

/// Index (within the block) of the first stored code 3, which no producer writes.
fn first_bad_code(block: &[u8]) -> Option<usize> {
    let m = block[..64].iter().position(|&q| q & (q >> 1) & 0x55 != 0)?;
    let q = block[m];
    let lane = (0..4).find(|l| (q >> (2 * l)) & 3 == 3).unwrap_or(0);
    Some(128 * (m / 32) + 32 * lane + m % 32)
}

const FORMAT: BlockFormat = BlockFormat {
    dtype: DT,
    block_bytes: BLOCK_BYTES,
    scale_offset: 64,
    decode: decode_block,
    encode: encode_block,
    first_bad_code,
};

/// Unpacks a row into codes (as stored, 0..=3) and one f32 scale per 256-element block.
/// Requires `codes.len()` a multiple of 256, `scales.len() = codes.len()/256` and
/// `row.len() = 66·scales.len()`.
pub fn decode_row_codes(
    row: &[u8],
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), QuantError> {
    ternary_rows::decode_row_codes(&FORMAT, row, codes, scales)
}

/// Packs codes (each 0..=2) with one f16 scale per 256 elements into `out`
/// (`66·scales.len()` bytes).
pub fn encode_row(codes: &[u8], scales: &[f16], out: &mut [u8]) -> Result<(), QuantError> {
    ternary_rows::encode_row(&FORMAT, codes, scales, out)
}

/// Checks a row of whole blocks: every scale finite, no code 3.
pub fn validate(row: &[u8]) -> Result<(), QuantError> {
    ternary_rows::validate(&FORMAT, row)
}

/// Decodes a row to `(code − 1)·d`; code 3 and non-finite scales are errors.
pub fn dequantize_row(row: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    ternary_rows::dequantize_row(&FORMAT, row, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{hex, lcg_codes};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const VECTOR: &str = "9a05886925161010288891829458520aa84010485659521480a4a8268506569298111106a546a8568a45108255090604a995081a296a1022580996a999409255003c";

    #[test]
    fn test_vector_encode_and_decode() {
        let codes: [u8; 256] = lcg_codes(256).try_into().unwrap();
        let mut out = [0u8; 66];
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
        // The mainline reference quantizer gives the same bytes.
        let x: Vec<f32> = codes.iter().map(|&c| c as f32 - 1.0).collect();
        let mut q = [0u8; 66];
        crate::quant::quantize_row(DT, &x, &mut q).unwrap();
        assert_eq!(hex(&q), VECTOR);
    }

    #[test]
    fn element_position_formula() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut blk = [0u8; 66];
        rng.fill(&mut blk[..64]);
        let mut codes = [0u8; 256];
        decode_block(&blk, &mut codes);
        for (e, &c) in codes.iter().enumerate() {
            let (half, r) = (e / 128, e % 128);
            assert_eq!(c, (blk[32 * half + r % 32] >> (2 * (r / 32))) & 3);
        }
    }

    #[test]
    fn random_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for nb in [1usize, 2, 5, 17] {
            let codes: Vec<u8> = (0..256 * nb).map(|_| rng.gen_range(0..3)).collect();
            let scales: Vec<f16> = (0..nb)
                .map(|_| f16::from_f32(rng.gen_range(0.0f32..2.0)))
                .collect();
            let mut row = vec![0u8; 66 * nb];
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
    fn errors() {
        let mut codes = vec![1u8; 256];
        let mut s = [0f32; 1];
        assert!(decode_row_codes(&[0; 65], &mut codes, &mut s).is_err());
        assert!(decode_row_codes(&[0; 66], &mut codes, &mut [0f32; 2]).is_err());
        assert!(encode_row(&codes, &[f16::ONE], &mut [0; 65]).is_err());
        codes[7] = 3;
        assert_eq!(
            encode_row(&codes, &[f16::ONE], &mut [0; 66]),
            Err(QuantError::BadCode {
                dtype: DT,
                index: 7,
                code: 3
            })
        );
        // Stored code 3 at element 128 + 64 + 5: decode returns it as stored, validate reports it.
        let mut blk = [0u8; 66];
        blk[32 + 5] = 3 << 4;
        let mut c = [0u8; 256];
        decode_block(&blk, &mut c);
        assert_eq!(c[128 + 64 + 5], 3);
        assert_eq!(
            validate(&blk),
            Err(QuantError::BadCode {
                dtype: DT,
                index: 197,
                code: 3
            })
        );
        assert!(dequantize_row(&blk, &mut [0f32; 256]).is_err());
        blk[32 + 5] = 0;
        blk[64..].copy_from_slice(&f16::NEG_INFINITY.to_le_bytes());
        assert!(matches!(
            validate(&blk),
            Err(QuantError::NonFiniteScale { .. })
        ));
        assert!(validate(&[0; 67]).is_err());
    }
}
