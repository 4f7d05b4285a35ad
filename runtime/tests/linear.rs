//! The reference backend's ternary linear layer, checked bit for bit against a straightforward,
//! independent transcription of the I2_S reference semantics (`bitnet-gguf.md` §2.5), for I2_S
//! and TQ2_0 / TQ1_0 tensors built from the same ternary weights.

use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_models::quant::{i2s, tq1_0, tq2_0};
use bitnetc_runtime::reference::numerics::quantize_row;
use bitnetc_runtime::reference::ternary_linear;
use bitnetc_runtime::reference::weights::TernaryMatrix;
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Round half to even without the standard library's helper.
fn round_half_even(v: f32) -> f32 {
    let f = v.floor();
    let diff = v - f;
    if diff > 0.5 || (diff == 0.5 && (f as i64) % 2 != 0) {
        f + 1.0
    } else {
        f
    }
}

/// §2.5 written out directly from signed weights `w ∈ {−1, 0, 1}` (row-major `[m][k]`).
fn spec_linear(w: &[i8], k: usize, scale: f32, x: &[f32]) -> Vec<f32> {
    let mut amax = 0.0f64;
    for &v in x {
        if f64::from(v.abs()) > amax {
            amax = f64::from(v.abs());
        }
    }
    if amax < 1e-5 {
        amax = 1e-5;
    }
    let s = (127.0f64 / amax) as f32;
    let q: Vec<i32> = x
        .iter()
        .map(|&v| round_half_even(v * s).clamp(-128.0, 127.0) as i32)
        .collect();
    let qsum: i32 = q.iter().sum();
    w.chunks(k)
        .map(|row| {
            let acc: i32 = row
                .iter()
                .zip(&q)
                .map(|(&wv, &qv)| (i32::from(wv) + 1) * qv)
                .sum();
            ((acc as f32 - qsum as f32) / s) * scale
        })
        .collect()
}

fn weight(dtype: DType, k: usize, m: usize, codes: &[u8], scale: f32) -> Weight {
    let data = match dtype {
        DType::I2S => i2s::encode(codes, scale),
        _ => {
            let rb = dtype.row_bytes(k as u64).unwrap() as usize;
            let scales = vec![f16::from_f32(scale); k / 256];
            let mut out = vec![0u8; rb * m];
            for (row, dst) in codes.chunks(k).zip(out.chunks_mut(rb)) {
                if dtype == DType::TQ2_0 {
                    tq2_0::encode_row(row, &scales, dst).unwrap();
                } else {
                    tq1_0::encode_row(row, &scales, dst).unwrap();
                }
            }
            out
        }
    };
    Weight {
        name: format!("{dtype}-test"),
        dtype,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(data),
    }
}

fn check(k: usize, m: usize, tokens: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w: Vec<i8> = (0..k * m).map(|_| rng.gen_range(-1i8..=1)).collect();
    // An all-zero weight row.
    w[..k].iter_mut().for_each(|v| *v = 0);
    let codes: Vec<u8> = w.iter().map(|&v| (v + 1) as u8).collect();
    // A scale that f16 stores exactly, so I2_S and TQ hold the same number.
    let scale = f16::from_f32(rng.gen_range(0.01f32..2.0)).to_f32();
    let mut xs: Vec<Vec<f32>> = (0..tokens)
        .map(|_| (0..k).map(|_| rng.gen_range(-3.0f32..3.0)).collect())
        .collect();
    // An all-zero activation row, and one with exact .5 ties after scaling (amax = 127).
    xs[0] = vec![0.0; k];
    if tokens > 1 {
        xs[1] = (0..k)
            .map(|i| if i == 0 { 127.0 } else { (i % 7) as f32 - 3.5 })
            .collect();
    }
    let q: Vec<_> = xs.iter().map(|x| quantize_row(x)).collect();
    let types: Vec<DType> = if k.is_multiple_of(256) {
        vec![DType::I2S, DType::TQ2_0, DType::TQ1_0]
    } else {
        vec![DType::I2S]
    };
    for dtype in types {
        let wt = weight(dtype, k, m, &codes, scale);
        let got = ternary_linear(&TernaryMatrix::new(&wt).unwrap(), &q, None).unwrap();
        for (t, x) in xs.iter().enumerate() {
            let want = spec_linear(&w, k, scale, x);
            for (r, (&g, &e)) in got[t * m..(t + 1) * m].iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    e.to_bits(),
                    "{dtype} k={k} m={m} token {t} row {r}: {g} vs {e}"
                );
            }
        }
    }
}

#[test]
fn linear_matches_spec_at_round_shapes() {
    check(256, 64, 3, 1);
    check(512, 128, 2, 2);
}

#[test]
fn linear_matches_spec_at_odd_shapes() {
    check(128, 7, 2, 3); // I2_S only: one 128-block
    check(384, 33, 3, 4); // three I2_S blocks
    check(768, 5, 4, 5); // three TQ blocks
    check(1280, 67, 1, 6);
}

#[test]
fn linear_matches_spec_at_2b4t_shapes() {
    check(2560, 640, 2, 7);
    check(6912, 96, 1, 8);
}

#[test]
fn tq_rows_with_different_block_scales_use_per_block_scales() {
    let (k, m) = (512, 3);
    let codes: Vec<u8> = (0..k * m).map(|i| (i * 7 % 3) as u8).collect();
    let scales = [f16::from_f32(0.5), f16::from_f32(0.25)];
    let rb = DType::TQ2_0.row_bytes(k as u64).unwrap() as usize;
    let mut data = vec![0u8; rb * m];
    for (row, dst) in codes.chunks(k).zip(data.chunks_mut(rb)) {
        tq2_0::encode_row(row, &scales, dst).unwrap();
    }
    let wt = Weight {
        name: "mixed".into(),
        dtype: DType::TQ2_0,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(data),
    };
    let x: Vec<f32> = (0..k).map(|i| ((i * 13 % 17) as f32 - 8.0) / 3.0).collect();
    let q = quantize_row(&x);
    let got = ternary_linear(
        &TernaryMatrix::new(&wt).unwrap(),
        std::slice::from_ref(&q),
        None,
    )
    .unwrap();
    for r in 0..m {
        let exact: f64 = (0..k)
            .map(|i| {
                f64::from(codes[r * k + i] as i32 - 1)
                    * f64::from(q.q[i])
                    * f64::from(scales[i / 256].to_f32())
            })
            .sum::<f64>()
            / f64::from(q.scale);
        assert!(
            (f64::from(got[r]) - exact).abs() <= 1e-5 * exact.abs().max(1.0),
            "row {r}: {} vs {exact}",
            got[r]
        );
    }
}
