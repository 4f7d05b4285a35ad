//! I2_S (bitnet.cpp type 36, `bitnet-gguf.md` §2.5), the 2024–2025 x86 layout.
//!
//! A tensor of `N` elements (flat row-major order) is `N/4` bytes of 2-bit codes followed by a
//! 32-byte tail whose first 4 bytes are the per-tensor f32 scale. Codes: `0 → −1`, `1 → 0`,
//! `2 → +1` (3 is never produced). The flat sequence is cut into 128-element blocks of 32 bytes;
//! byte `i` of a block holds elements `i, i+32, i+64, i+96` at shifts 6, 4, 2, 0
//! (most-significant pair first).
//!
//! The ARM (64-element) and non-`ACT_PARALLEL` (4-row interleave) variants of §2.5 are not
//! handled here; nothing in a file distinguishes them.

use super::{DType, QuantError};

/// Elements per packing block.
pub const BLOCK_ELEMS: usize = 128;
/// Bytes per packing block.
pub const BLOCK_BYTES: usize = 32;
/// Bytes of the tail after the packed codes (scale + 28 unspecified bytes).
pub const TAIL_BYTES: usize = 32;

const DT: DType = DType::I2S;

/// Total payload size of an I2_S tensor of `n_elems` elements: `n/4 + 32`.
pub fn payload_bytes(n_elems: u64) -> u64 {
    n_elems / 4 + TAIL_BYTES as u64
}

fn check_payload(payload: &[u8], n_elems: usize) -> Result<usize, QuantError> {
    if !n_elems.is_multiple_of(BLOCK_ELEMS) {
        return Err(QuantError::NotBlockMultiple {
            dtype: DT,
            n_elems,
            block: BLOCK_ELEMS,
        });
    }
    let packed = n_elems / 4;
    let expected = packed + TAIL_BYTES;
    if payload.len() < expected {
        return Err(QuantError::WrongByteLength {
            dtype: DT,
            n_elems,
            expected,
            actual: payload.len(),
        });
    }
    Ok(packed)
}

/// Reads the per-tensor scale (the f32 at byte `n_elems/4`).
///
/// `n_elems` must be a multiple of 128 and `payload` at least `n_elems/4 + 32` bytes (longer is
/// accepted; the rest is ignored). NaN/infinite scales and negative scales are errors.
/// A zero scale (`+0.0` or `-0.0`) is accepted only when every code is 1: that is what
/// llama-quantize writes for an all-zero tensor (`scale = max|w| = 0`), and such a tensor decodes
/// to zeros whatever the scale; a zero scale with non-zero codes would silently zero real
/// weights, so it is refused.
pub fn scale(payload: &[u8], n_elems: usize) -> Result<f32, QuantError> {
    let packed = check_payload(payload, n_elems)?;
    let s = f32::from_le_bytes([
        payload[packed],
        payload[packed + 1],
        payload[packed + 2],
        payload[packed + 3],
    ]);
    if !s.is_finite() {
        return Err(QuantError::NonFiniteScale {
            dtype: DT,
            block: 0,
            value: s,
        });
    }
    if s < 0.0 {
        return Err(QuantError::BadScale {
            dtype: DT,
            value: s,
            reason: "the per-tensor scale must not be negative",
        });
    }
    if s == 0.0 && payload[..packed].iter().any(|&b| b != 0x55) {
        return Err(QuantError::BadScale {
            dtype: DT,
            value: s,
            reason: "zero scale but some weights are non-zero",
        });
    }
    Ok(s)
}

/// Unpacks `codes.len()` codes (as stored, 0..=3) starting at flat element `start_elem`.
///
/// Any start and length are accepted (a multiple of 128 for `start_elem` takes the fast path);
/// `payload` must hold every 32-byte block the range touches, else an error.
pub fn decode_codes(payload: &[u8], start_elem: usize, codes: &mut [u8]) -> Result<(), QuantError> {
    let end = start_elem.checked_add(codes.len());
    let need = end.and_then(|e| e.div_ceil(BLOCK_ELEMS).checked_mul(BLOCK_BYTES));
    match need {
        Some(need) if need <= payload.len() => {}
        _ => {
            return Err(QuantError::WrongByteLength {
                dtype: DT,
                n_elems: end.unwrap_or(usize::MAX),
                expected: need.unwrap_or(usize::MAX),
                actual: payload.len(),
            })
        }
    }
    let mut e = start_elem;
    let mut out = &mut codes[..];
    // Leading partial block.
    while !e.is_multiple_of(BLOCK_ELEMS) && !out.is_empty() {
        out[0] = code_at(payload, e);
        out = &mut out[1..];
        e += 1;
    }
    // Whole blocks.
    let whole = out.len() / BLOCK_ELEMS;
    let (body, rest) = out.split_at_mut(whole * BLOCK_ELEMS);
    let first = e / BLOCK_ELEMS * BLOCK_BYTES;
    for (c, blk) in body
        .chunks_exact_mut(BLOCK_ELEMS)
        .zip(payload[first..].chunks_exact(BLOCK_BYTES))
    {
        for (i, &b) in blk.iter().enumerate() {
            c[i] = b >> 6;
            c[i + 32] = (b >> 4) & 3;
            c[i + 64] = (b >> 2) & 3;
            c[i + 96] = b & 3;
        }
    }
    e += whole * BLOCK_ELEMS;
    // Trailing partial block.
    for c in rest.iter_mut() {
        *c = code_at(payload, e);
        e += 1;
    }
    Ok(())
}

#[inline]
fn code_at(payload: &[u8], e: usize) -> u8 {
    let j = e % BLOCK_ELEMS;
    (payload[BLOCK_BYTES * (e / BLOCK_ELEMS) + j % 32] >> (6 - 2 * (j / 32))) & 3
}

/// Packs a whole tensor: `codes.len()/4` bytes of codes, then `scale` (f32 LE) and 28 zero bytes.
///
/// # Panics
/// If `codes.len()` is not a multiple of 128 or a code is above 2 ([`try_encode`] returns errors
/// instead).
pub fn encode(codes: &[u8], scale: f32) -> Vec<u8> {
    match try_encode(codes, scale) {
        Ok(v) => v,
        Err(e) => panic!("i2s::encode: {e}"),
    }
}

/// [`encode`] that reports a bad length or code as an error.
pub fn try_encode(codes: &[u8], scale: f32) -> Result<Vec<u8>, QuantError> {
    if !codes.len().is_multiple_of(BLOCK_ELEMS) {
        return Err(QuantError::NotBlockMultiple {
            dtype: DT,
            n_elems: codes.len(),
            block: BLOCK_ELEMS,
        });
    }
    if let Some(index) = codes.iter().position(|&c| c > 2) {
        return Err(QuantError::BadCode {
            dtype: DT,
            index,
            code: codes[index],
        });
    }
    let packed = codes.len() / 4;
    let mut out = vec![0u8; packed + TAIL_BYTES];
    for (c, o) in codes
        .chunks_exact(BLOCK_ELEMS)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        for i in 0..32 {
            o[i] = (c[i] << 6) | (c[i + 32] << 4) | (c[i + 64] << 2) | c[i + 96];
        }
    }
    out[packed..packed + 4].copy_from_slice(&scale.to_le_bytes());
    Ok(out)
}

/// Number of 2-bit fields equal to 3 in packed code bytes (pass only the `N/4` code bytes, not the
/// tail). Works a 64-bit word at a time.
pub fn count_invalid_codes(payload_codes: &[u8]) -> usize {
    const LOW: u64 = 0x5555_5555_5555_5555;
    let words = payload_codes.chunks_exact(8);
    let tail = words.remainder();
    let mut n: usize = 0;
    for w in words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        n += (w & (w >> 1) & LOW).count_ones() as usize;
    }
    for &b in tail {
        n += (b & (b >> 1) & 0x55).count_ones() as usize;
    }
    n
}

/// Decodes a whole tensor to `(code − 1)·scale`. Checks the scale as [`scale`] does and refuses
/// code 3. `out.len()` is the element count.
pub fn dequantize(payload: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let s = scale(payload, out.len())?;
    let packed = out.len() / 4;
    if count_invalid_codes(&payload[..packed]) > 0 {
        let e = (0..out.len())
            .find(|&e| code_at(payload, e) == 3)
            .unwrap_or(0);
        return Err(QuantError::BadCode {
            dtype: DT,
            index: e,
            code: 3,
        });
    }
    let mut codes = [0u8; BLOCK_ELEMS];
    for (b, o) in out.chunks_exact_mut(BLOCK_ELEMS).enumerate() {
        decode_codes(payload, b * BLOCK_ELEMS, &mut codes)?;
        for (v, &c) in o.iter_mut().zip(&codes) {
            *v = (c as i32 - 1) as f32 * s;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{hex, lcg_codes};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn test_vector_first_128() {
        let codes = lcg_codes(128);
        let p = encode(&codes, 1.0);
        assert_eq!(
            hex(&p[..32]),
            "a65022695894040428224682162585a02a01042195658514021a2a9852909586"
        );
        let mut back = vec![0u8; 128];
        decode_codes(&p, 0, &mut back).unwrap();
        assert_eq!(back, codes);
    }

    #[test]
    fn test_vector_2x128_half() {
        let codes = lcg_codes(256);
        let p = encode(&codes, 0.5);
        assert_eq!(p.len(), 96);
        assert_eq!(payload_bytes(256), 96);
        assert_eq!(hex(&p[64..68]), "0000003f");
        assert!(p[68..].iter().all(|&b| b == 0));
        assert_eq!(scale(&p, 256).unwrap(), 0.5);
        let mut y = vec![0f32; 256];
        dequantize(&p, &mut y).unwrap();
        for (v, c) in y.iter().zip(&codes) {
            assert_eq!(*v, (*c as f32 - 1.0) * 0.5);
        }
        // Row 1 starts at byte 32 = 128/4.
        let mut row1 = vec![0u8; 128];
        decode_codes(&p, 128, &mut row1).unwrap();
        assert_eq!(row1, codes[128..]);
    }

    #[test]
    fn element_position_formula_and_unaligned_ranges() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut p = vec![0u8; 3 * 32 + 32];
        rng.fill(&mut p[..]);
        let mut all = vec![0u8; 384];
        decode_codes(&p, 0, &mut all).unwrap();
        for (e, &c) in all.iter().enumerate() {
            let (b, j) = (e / 128, e % 128);
            assert_eq!(c, (p[32 * b + j % 32] >> (6 - 2 * (j / 32))) & 3);
        }
        for (start, len) in [(0, 0), (5, 1), (3, 200), (127, 130), (128, 256), (130, 254)] {
            let mut c = vec![9u8; len];
            decode_codes(&p, start, &mut c).unwrap();
            assert_eq!(c, all[start..start + len], "start {start} len {len}");
        }
    }

    #[test]
    fn random_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for n in [128usize, 256, 640, 128 * 33, 2560 * 4] {
            let codes: Vec<u8> = (0..n).map(|_| rng.gen_range(0..3)).collect();
            let s = rng.gen_range(0.01f32..3.0);
            let p = encode(&codes, s);
            assert_eq!(p.len() as u64, payload_bytes(n as u64));
            assert_eq!(scale(&p, n).unwrap(), s);
            assert_eq!(count_invalid_codes(&p[..n / 4]), 0);
            let mut back = vec![0u8; n];
            decode_codes(&p, 0, &mut back).unwrap();
            assert_eq!(back, codes);
        }
    }

    #[test]
    fn arbitrary_ranges_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for _ in 0..2000 {
            let mut p = vec![0u8; rng.gen_range(0..200)];
            rng.fill(&mut p[..]);
            let start = rng.gen_range(0..600);
            let mut c = vec![0u8; rng.gen_range(0..600)];
            let ok = (start + c.len()).div_ceil(128) * 32 <= p.len();
            assert_eq!(decode_codes(&p, start, &mut c).is_ok(), ok);
            let n = 128 * rng.gen_range(0..3);
            let _ = scale(&p, n);
            let _ = dequantize(&p, &mut vec![0f32; n]);
        }
    }

    #[test]
    fn invalid_code_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for len in [0usize, 1, 7, 8, 9, 100, 4096] {
            let mut b = vec![0u8; len];
            rng.fill(&mut b[..]);
            let naive: usize = b
                .iter()
                .map(|&x| (0..4).filter(|k| (x >> (2 * k)) & 3 == 3).count())
                .sum();
            assert_eq!(count_invalid_codes(&b), naive);
        }
        assert_eq!(count_invalid_codes(&[0xFF; 9]), 36);
    }

    #[test]
    fn scale_rules_and_errors() {
        let codes = vec![1u8; 128];
        let mut p = encode(&codes, 0.0);
        assert_eq!(scale(&p, 128).unwrap(), 0.0); // all-zero tensor
        p[0] = 0x95; // one +1 weight
        assert!(matches!(scale(&p, 128), Err(QuantError::BadScale { .. })));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let p = encode(&codes, bad);
            assert!(matches!(
                scale(&p, 128),
                Err(QuantError::NonFiniteScale { .. })
            ));
        }
        assert!(matches!(
            scale(&encode(&codes, -1.0), 128),
            Err(QuantError::BadScale { .. })
        ));
        let p = encode(&codes, 1.0);
        assert!(scale(&p[..63], 128).is_err()); // short tail
        assert!(scale(&p, 64).is_err()); // not a block multiple
        assert!(scale(&[], 128).is_err());
        let mut c = [0u8; 129];
        assert!(decode_codes(&p[..31], 0, &mut c[..1]).is_err());
        assert!(decode_codes(&p, usize::MAX, &mut c[..2]).is_err());
        assert!(decode_codes(&p, 128, &mut c).is_err()); // needs 96 bytes, payload has 64
        assert!(decode_codes(&p, 0, &mut c[..128]).is_ok());
        assert!(try_encode(&[1; 100], 1.0).is_err());
        assert!(try_encode(&[3; 128], 1.0).is_err());
        let mut q = encode(&codes, 1.0);
        q[5] = 0xC0; // element 5 holds code 3
        assert_eq!(
            dequantize(&q, &mut [0f32; 128]),
            Err(QuantError::BadCode {
                dtype: DT,
                index: 5,
                code: 3
            })
        );
        assert!(dequantize(&q[..60], &mut [0f32; 128]).is_err());
    }
}
