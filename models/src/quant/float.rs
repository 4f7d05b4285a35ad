//! F32 / F16 / BF16 rows (`bitnet-gguf.md` §2.2), little-endian bytes ↔ `f32`.
//!
//! f16 → f32 and bf16 → f32 are exact; f32 → f16/bf16 round to nearest even (as ggml on x86/ARM).
//! Conversions go through `half`'s slice helpers (hardware F16C/NEON where available) in
//! fixed-size chunks, so no unsafe byte reinterpretation is needed.

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};

use super::{DType, QuantError};

const CHUNK: usize = 256;

fn check(dtype: DType, bytes: usize, n: usize, width: usize) -> Result<(), QuantError> {
    match n.checked_mul(width) {
        Some(expected) if expected == bytes => Ok(()),
        Some(expected) => Err(QuantError::WrongByteLength {
            dtype,
            n_elems: n,
            expected,
            actual: bytes,
        }),
        None => Err(QuantError::WrongByteLength {
            dtype,
            n_elems: n,
            expected: usize::MAX,
            actual: bytes,
        }),
    }
}

/// Little-endian f32 bytes → f32. `src.len()` must be `4·dst.len()`.
pub fn f32_bytes_to_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(DType::F32, src.len(), dst.len(), 4)?;
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// f32 → little-endian bytes. `dst.len()` must be `4·src.len()`.
pub fn f32_to_f32_bytes(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(DType::F32, dst.len(), src.len(), 4)?;
    for (b, v) in dst.chunks_exact_mut(4).zip(src) {
        b.copy_from_slice(&v.to_le_bytes());
    }
    Ok(())
}

/// Little-endian f16 bytes → f32 (exact). `src.len()` must be `2·dst.len()`.
pub fn f16_bytes_to_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(DType::F16, src.len(), dst.len(), 2)?;
    let mut bits = [0u16; CHUNK];
    for (s, d) in src.chunks(2 * CHUNK).zip(dst.chunks_mut(CHUNK)) {
        let bits = &mut bits[..d.len()];
        for (w, b) in bits.iter_mut().zip(s.chunks_exact(2)) {
            *w = u16::from_le_bytes([b[0], b[1]]);
        }
        bits.reinterpret_cast::<f16>().convert_to_f32_slice(d);
    }
    Ok(())
}

/// f32 → little-endian f16 bytes, round to nearest even. `dst.len()` must be `2·src.len()`.
pub fn f32_to_f16_bytes(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(DType::F16, dst.len(), src.len(), 2)?;
    let mut halves = [f16::ZERO; CHUNK];
    for (s, d) in src.chunks(CHUNK).zip(dst.chunks_mut(2 * CHUNK)) {
        let halves = &mut halves[..s.len()];
        halves.convert_from_f32_slice(s);
        for (b, h) in d.chunks_exact_mut(2).zip(halves.iter()) {
            b.copy_from_slice(&h.to_le_bytes());
        }
    }
    Ok(())
}

/// Little-endian bf16 bytes → f32 (exact: the bits become the upper half). `src.len()` must be
/// `2·dst.len()`.
pub fn bf16_bytes_to_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(DType::BF16, src.len(), dst.len(), 2)?;
    for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
    Ok(())
}

/// f32 → little-endian bf16 bytes, round to nearest even (NaN stays NaN). `dst.len()` must be
/// `2·src.len()`.
pub fn f32_to_bf16_bytes(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(DType::BF16, dst.len(), src.len(), 2)?;
    let mut halves = [bf16::ZERO; CHUNK];
    for (s, d) in src.chunks(CHUNK).zip(dst.chunks_mut(2 * CHUNK)) {
        let halves = &mut halves[..s.len()];
        halves.convert_from_f32_slice(s);
        for (b, h) in d.chunks_exact_mut(2).zip(halves.iter()) {
            b.copy_from_slice(&h.to_le_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn f16_all_bit_patterns_exact() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
        let mut out = vec![0f32; 65536];
        f16_bytes_to_f32(&bytes, &mut out).unwrap();
        for (b, v) in (0..=u16::MAX).zip(&out) {
            let want = f16::from_bits(b).to_f32();
            assert!(
                want.to_bits() == v.to_bits() || (want.is_nan() && v.is_nan()),
                "{b:#06x}"
            );
        }
    }

    #[test]
    fn bf16_is_upper_half() {
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
        let mut out = vec![0f32; 65536];
        bf16_bytes_to_f32(&bytes, &mut out).unwrap();
        for (b, v) in (0..=u16::MAX).zip(&out) {
            assert_eq!(v.to_bits(), (b as u32) << 16);
        }
    }

    #[test]
    fn round_trips_and_rounding() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for n in [0usize, 1, 255, 256, 257, 1000] {
            let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-100.0f32..100.0)).collect();
            let mut b4 = vec![0u8; 4 * n];
            let mut b2 = vec![0u8; 2 * n];
            let mut y = vec![0f32; n];
            f32_to_f32_bytes(&x, &mut b4).unwrap();
            f32_bytes_to_f32(&b4, &mut y).unwrap();
            assert_eq!(x, y);

            f32_to_f16_bytes(&x, &mut b2).unwrap();
            f16_bytes_to_f32(&b2, &mut y).unwrap();
            for (a, b) in x.iter().zip(&y) {
                assert_eq!(*b, f16::from_f32(*a).to_f32());
                assert!((a - b).abs() <= a.abs() * 2f32.powi(-11));
            }

            f32_to_bf16_bytes(&x, &mut b2).unwrap();
            bf16_bytes_to_f32(&b2, &mut y).unwrap();
            for (a, b) in x.iter().zip(&y) {
                // Independent round-to-nearest-even on the bits.
                let u = a.to_bits();
                let r = u.wrapping_add(0x7FFF + ((u >> 16) & 1)) & 0xFFFF_0000;
                assert_eq!(b.to_bits(), r);
            }
        }
        // Tie: 1 + 2^-11 is exactly half-way between two f16 values: rounds to even (1.0).
        let mut b2 = [0u8; 2];
        f32_to_f16_bytes(&[1.0 + 2f32.powi(-11)], &mut b2).unwrap();
        assert_eq!(u16::from_le_bytes(b2), 0x3C00);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0f32; 4];
        assert!(f16_bytes_to_f32(&[0; 7], &mut out).is_err());
        assert!(bf16_bytes_to_f32(&[0; 9], &mut out).is_err());
        assert!(f32_bytes_to_f32(&[0; 15], &mut out).is_err());
        assert!(f32_to_f16_bytes(&out, &mut [0; 7]).is_err());
        assert!(f32_to_bf16_bytes(&out, &mut [0; 9]).is_err());
        assert!(f32_to_f32_bytes(&out, &mut [0; 17]).is_err());
    }
}
