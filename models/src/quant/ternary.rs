//! Ternarization of f32 weights as BitNet's `weight_quant` does it
//! (`bitnet-gguf.md` §2.5, "How the scale is obtained").

/// Returns `(codes, scale)` with `scale = max(mean|w|, 1e-5)` and
/// `code = clamp(round(w·(1/scale)), −1, 1) + 1 ∈ {0, 1, 2}`.
///
/// Like the PyTorch original (`(w * (1/m)).round().clamp(-1, 1)`), the multiplier is the f32
/// reciprocal of the scale and ties round half to even (`torch.round`), so `|w| = m/2` gives
/// code 1. The mean is summed in f64 and rounded to f32. NaN weights give code 1 (and a NaN
/// scale); inputs are expected to be finite.
pub fn ternarize(w: &[f32]) -> (Vec<u8>, f32) {
    let sum: f64 = w.iter().map(|v| v.abs() as f64).sum();
    let mean = if w.is_empty() {
        0.0
    } else {
        (sum / w.len() as f64) as f32
    };
    let m = mean.max(1e-5);
    let inv = 1.0 / m;
    let codes = w
        .iter()
        .map(|&v| {
            let r = (v * inv).round_ties_even();
            if r >= 1.0 {
                2
            } else if r <= -1.0 {
                0
            } else {
                1
            }
        })
        .collect();
    (codes, if mean.is_nan() { mean } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::lcg_codes;

    #[test]
    fn exact_ternary_input_is_recovered() {
        let codes = lcg_codes(4096);
        let x: Vec<f32> = codes.iter().map(|&c| (c as f32 - 1.0) * 0.0371).collect();
        let (c, s) = ternarize(&x);
        assert_eq!(c, codes);
        let frac = codes.iter().filter(|&&c| c != 1).count() as f32 / codes.len() as f32;
        assert!((s - 0.0371 * frac).abs() < 1e-7);
    }

    #[test]
    fn rounding_and_clamp() {
        // mean |w| = 1.0 exactly.
        let w = [0.5f32, -0.5, 0.75, -0.75, 3.0, -2.5, 0.0, 0.0];
        let (c, s) = ternarize(&w);
        assert_eq!(s, 1.0);
        assert_eq!(c, vec![1, 1, 2, 0, 2, 0, 1, 1]);
        // Clamp of the scale.
        let (c, s) = ternarize(&[0.0; 4]);
        assert_eq!(s, 1e-5);
        assert_eq!(c, vec![1; 4]);
        let (c, s) = ternarize(&[]);
        assert!(c.is_empty() && s == 1e-5);
    }
}
