//! Q6_K (`bitnet-gguf.md` §2.3): super-blocks of 256 elements in 210 bytes:
//! `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16`; value = `d·scale·(q − 32)`.
//!
//! Element `e` of a super-block always uses `scales[e / 16]`, so each i8 scale covers 16
//! consecutive elements.

use half::f16;

use super::{check_finite, check_row, read_f16, DType, QuantError};

/// Elements per super-block.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block.
pub const BLOCK_BYTES: usize = 210;

/// Decodes a row exactly as ggml's `dequantize_row_q6_K` (`(d·scale)·(q − 32)` in f32).
/// `row.len()` must be `210·out.len()/256`; a non-finite `d` is an error.
pub fn dequantize_row(row: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    check_row(DType::Q6K, row.len(), out.len())?;
    for (b, (blk, o)) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(BLOCK_ELEMS))
        .enumerate()
    {
        let d = read_f16(&blk[208..210]).to_f32();
        if !d.is_finite() {
            return Err(QuantError::NonFiniteScale {
                dtype: DType::Q6K,
                block: b,
                value: d,
            });
        }
        for h in 0..2 {
            let ql = &blk[64 * h..64 * h + 64];
            let qh = &blk[128 + 32 * h..128 + 32 * h + 32];
            let sc = &blk[192 + 8 * h..192 + 8 * h + 8];
            let y = &mut o[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
    Ok(())
}

/// One super-block's integer parts: the 6-bit values `q` (0..=63, element order; the element's
/// value is `d·scale·(q − 32)`), the sixteen sub-block scales and `d` as f32 (not checked here).
pub fn block_parts(blk: &[u8; BLOCK_BYTES]) -> ([u8; BLOCK_ELEMS], [i8; 16], f32) {
    let mut q = [0u8; BLOCK_ELEMS];
    for h in 0..2 {
        let ql = &blk[64 * h..64 * h + 64];
        let qh = &blk[128 + 32 * h..128 + 32 * h + 32];
        let y = &mut q[128 * h..128 * h + 128];
        for l in 0..32 {
            y[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            y[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            y[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            y[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    let scales = std::array::from_fn(|j| blk[192 + j] as i8);
    (q, scales, read_f16(&blk[208..210]).to_f32())
}

/// A simple, deterministic Q6_K quantizer (not ggml's search-based one).
///
/// Per 16-element sub-block `s_j = max|x|/31`; `d = f16(max_j s_j / 127)`;
/// `scale_j = min(127, ceil(s_j / d))` (rounding up, so no value needs clamping);
/// `q = clamp(round(x / (d·scale_j)), −32, 31) + 32`. Each element's error is at most about
/// half a step, `0.5·(s_j + d)`. Inputs must be finite; `out.len()` must be `210·x.len()/256`.
pub fn quantize_row(x: &[f32], out: &mut [u8]) -> Result<(), QuantError> {
    check_row(DType::Q6K, out.len(), x.len())?;
    check_finite(DType::Q6K, x)?;
    for (xb, ob) in x
        .chunks_exact(BLOCK_ELEMS)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        quantize_block(xb, ob);
    }
    Ok(())
}

fn quantize_block(x: &[f32], out: &mut [u8]) {
    let mut sub = [0f32; 16];
    for (s, xs) in sub.iter_mut().zip(x.chunks_exact(16)) {
        *s = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 31.0;
    }
    let max_s = sub.iter().fold(0f32, |m, &v| m.max(v));
    let mut d = f16::from_f32(max_s / 127.0);
    if d.is_infinite() {
        d = f16::MAX; // values beyond Q6_K's range saturate
    }
    let df = d.to_f32();
    let mut levels = [32u8; 256];
    let mut scales = [0i8; 16];
    if df > 0.0 {
        for j in 0..16 {
            let sc = (sub[j] / df).ceil().min(127.0);
            scales[j] = sc as i8;
            let eff = df * sc;
            if eff > 0.0 {
                let inv = 1.0 / eff;
                for (l, &v) in levels[16 * j..16 * j + 16]
                    .iter_mut()
                    .zip(&x[16 * j..16 * j + 16])
                {
                    *l = ((v * inv).round().clamp(-32.0, 31.0) as i32 + 32) as u8;
                }
            }
        }
    } else {
        d = f16::ZERO;
    }
    // Pack (inverse of the decoder's layout).
    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let (sc, dd) = rest.split_at_mut(16);
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            let (a, b, c, e) = (lv[l], lv[l + 32], lv[l + 64], lv[l + 96]);
            ql[64 * h + l] = (a & 0xF) | ((c & 0xF) << 4);
            ql[64 * h + l + 32] = (b & 0xF) | ((e & 0xF) << 4);
            qh[32 * h + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
        }
    }
    for (o, s) in sc.iter_mut().zip(scales) {
        *o = s as u8;
    }
    dd.copy_from_slice(&d.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Straightforward per-element formula, independent of the decoder's loop structure.
    fn reference(blk: &[u8], e: usize) -> f32 {
        let (h, r) = (e / 128, e % 128);
        let (k, l) = (r / 32, r % 32);
        let qlb = blk[64 * h + l + 32 * (k & 1)];
        let low = if k >= 2 { qlb >> 4 } else { qlb & 0xF };
        let high = (blk[128 + 32 * h + l] >> (2 * k)) & 3;
        let q = (low | (high << 4)) as i32 - 32;
        let sc = blk[192 + e / 16] as i8 as f32;
        let d = f16::from_bits(u16::from_le_bytes([blk[208], blk[209]])).to_f32();
        d * sc * q as f32
    }

    #[test]
    fn dequantize_matches_formula_on_random_bytes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for nb in [1usize, 3] {
            let mut row = vec![0u8; nb * 210];
            rng.fill(&mut row[..]);
            for b in 0..nb {
                let d = f16::from_f32(rng.gen_range(-0.1f32..0.1));
                row[210 * b + 208..210 * b + 210].copy_from_slice(&d.to_le_bytes());
            }
            let mut out = vec![0f32; nb * 256];
            dequantize_row(&row, &mut out).unwrap();
            for (i, v) in out.iter().enumerate() {
                assert_eq!(
                    *v,
                    reference(&row[210 * (i / 256)..], i % 256),
                    "element {i}"
                );
            }
        }
    }

    #[test]
    fn quantize_round_trip_error_bound() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let nb = 16;
        // Sub-blocks of very different magnitudes, to exercise small scales.
        let x: Vec<f32> = (0..256 * nb)
            .map(|i| {
                let mag = [1.0f32, 0.01, 0.3, 5.0][(i / 16) % 4];
                rng.gen_range(-mag..mag)
            })
            .collect();
        let mut q = vec![0u8; 210 * nb];
        quantize_row(&x, &mut q).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_row(&q, &mut y).unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        for (xb, yb) in x.chunks(256).zip(y.chunks(256)) {
            let max_s = xb.iter().fold(0f32, |m, v| m.max(v.abs())) / 31.0;
            for (xs, ys) in xb.chunks(16).zip(yb.chunks(16)) {
                let s = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 31.0;
                let bound = 0.52 * (s + max_s / 127.0 * 1.001);
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= bound, "{a} vs {b}, bound {bound}");
                    num += ((a - b) as f64).powi(2);
                    den += (*a as f64).powi(2);
                }
            }
        }
        let rel = (num / den).sqrt();
        assert!(rel < 0.02, "relative RMS error {rel}");
        // All-zero block encodes to d = 0 and decodes to zeros.
        let mut q = [0u8; 210];
        quantize_row(&[0.0; 256], &mut q).unwrap();
        let mut y = [1f32; 256];
        dequantize_row(&q, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn errors() {
        let mut out = [0f32; 256];
        assert!(dequantize_row(&[0; 209], &mut out).is_err());
        assert!(dequantize_row(&[0; 210], &mut out[..255]).is_err());
        let mut nan = [0u8; 210];
        nan[208..].copy_from_slice(&f16::NAN.to_le_bytes());
        assert!(matches!(
            dequantize_row(&nan, &mut out),
            Err(QuantError::NonFiniteScale { .. })
        ));
        assert!(quantize_row(&[f32::INFINITY; 256], &mut [0; 210]).is_err());
        assert!(quantize_row(&[0.0; 128], &mut [0; 105]).is_err());
    }
}
