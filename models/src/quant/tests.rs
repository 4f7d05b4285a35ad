//! Shared test helpers (the §2.7 ternary sequence) and cross-format tests of the row API.

use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// The §2.7 test sequence as signed weights: `s₀ = 1`, `s ← (1103515245·s + 12345) mod 2³¹`,
/// `w = ((s >> 16) mod 3) − 1`, taking the value after each update.
pub(crate) fn lcg_weights(n: usize) -> Vec<i8> {
    let mut s: u64 = 1;
    (0..n)
        .map(|_| {
            s = (1103515245 * s + 12345) % (1 << 31);
            ((s >> 16) % 3) as i8 - 1
        })
        .collect()
}

/// The §2.7 sequence as codes `w + 1`.
pub(crate) fn lcg_codes(n: usize) -> Vec<u8> {
    lcg_weights(n).iter().map(|&w| (w + 1) as u8).collect()
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn lcg_first_16() {
    assert_eq!(
        lcg_weights(16),
        vec![1, 0, -1, 0, 0, 1, -1, -1, -1, -1, 0, 1, -1, -1, 1, 1]
    );
}

#[test]
fn row_api_dispatch_round_trips() {
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let n = 512;
    let x: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q6K] {
        let mut q = vec![0u8; row_bytes(dtype, n).unwrap()];
        quantize_row(dtype, &x, &mut q).unwrap();
        let mut y = vec![0f32; n];
        dequantize_row(dtype, &q, &mut y).unwrap();
        let tol = match dtype {
            DType::F32 => 0.0,
            DType::F16 => 1e-3,
            DType::BF16 => 4e-3,
            DType::Q8_0 => 1.0 / 127.0,
            _ => 1.0 / 31.0,
        };
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= tol, "{dtype}: {a} vs {b}");
        }
    }
    // Ternary formats: exact for ternary input with a power-of-two scale.
    let codes = lcg_codes(n);
    let t: Vec<f32> = codes.iter().map(|&c| (c as f32 - 1.0) * 0.25).collect();
    for dtype in [DType::TQ1_0, DType::TQ2_0] {
        let mut q = vec![0u8; row_bytes(dtype, n).unwrap()];
        quantize_row(dtype, &t, &mut q).unwrap();
        let mut y = vec![0f32; n];
        dequantize_row(dtype, &q, &mut y).unwrap();
        assert_eq!(y, t, "{dtype}");
    }
}

#[test]
fn row_api_tq_matches_code_helpers() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let codes: Vec<u8> = (0..768).map(|_| rng.gen_range(0..3)).collect();
    let scales = [f16::from_f32(0.5), f16::from_f32(0.013), f16::ZERO];
    let mut r1 = vec![0u8; 3 * 54];
    let mut r2 = vec![0u8; 3 * 66];
    tq1_0::encode_row(&codes, &scales, &mut r1).unwrap();
    tq2_0::encode_row(&codes, &scales, &mut r2).unwrap();
    let mut y1 = vec![0f32; 768];
    let mut y2 = vec![0f32; 768];
    dequantize_row(DType::TQ1_0, &r1, &mut y1).unwrap();
    dequantize_row(DType::TQ2_0, &r2, &mut y2).unwrap();
    for (i, &c) in codes.iter().enumerate() {
        let want = (c as f32 - 1.0) * scales[i / 256].to_f32();
        assert_eq!(y1[i], want);
        assert_eq!(y2[i], want);
    }
}

#[test]
fn row_api_errors_not_panics() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    // Unsupported combinations.
    assert!(matches!(
        dequantize_row(DType::I2S, &[0; 32], &mut [0f32; 128]),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(matches!(
        quantize_row(DType::I2S, &[0f32; 128], &mut [0; 32]),
        Err(QuantError::Unsupported { .. })
    ));
    // Every format, every wrong length near the right one, random bytes: Err or Ok, never a panic.
    for dtype in DType::ALL {
        let n = 256;
        let Ok(good) = row_bytes(dtype, n) else {
            continue;
        };
        for len in [0, 1, good - 1, good + 1, good / 2] {
            let mut b = vec![0u8; len];
            rng.fill(&mut b[..]);
            assert!(
                dequantize_row(dtype, &b, &mut [0f32; 256]).is_err(),
                "{dtype} len {len}"
            );
            assert!(
                quantize_row(dtype, &[0f32; 256], &mut b).is_err(),
                "{dtype} len {len}"
            );
        }
        // Right length, random bytes: may be Err (bad scale/code) but must not panic.
        for _ in 0..50 {
            let mut b = vec![0u8; good];
            rng.fill(&mut b[..]);
            let _ = dequantize_row(dtype, &b, &mut [0f32; 256]);
        }
        // Element count not a block multiple.
        if dtype.block_elems() > 1 {
            assert!(matches!(
                dequantize_row(dtype, &[0; 34], &mut [0f32; 33]),
                Err(QuantError::NotBlockMultiple { .. }) | Err(QuantError::Unsupported { .. })
            ));
        }
    }
    // Error messages name the problem.
    let e = dequantize_row(DType::Q8_0, &[0; 33], &mut [0f32; 32]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "q8_0: 32 elements need 34 bytes, buffer has 33"
    );
}
