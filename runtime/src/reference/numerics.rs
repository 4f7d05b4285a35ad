//! The reference numerics of every op, one plain function each (`bitnet-gguf.md` §2.5, §3.4).
//!
//! These are the oracle later kernels are tested against: written for clarity, with every
//! rounding step where the reference implementation has it.

/// Per-token int8 activations: values, the scale `s` they were multiplied by, and their sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantizedRow {
    /// `clamp(round_half_even(x·s), −128, 127)`.
    pub q: Vec<i8>,
    /// `f32(127 / max(max|x|, 1e-5))`, the division done in f64.
    pub scale: f32,
    /// `Σ q`.
    pub sum: i32,
}

/// Quantizes one token's activations (reference `quantize_row_i8_s`).
pub fn quantize_row(x: &[f32]) -> QuantizedRow {
    let mut row = QuantizedRow::default();
    quantize_row_into(x, &mut row);
    row
}

/// [`quantize_row`] into `row`, reusing its code vector.
pub fn quantize_row_into(x: &[f32], row: &mut QuantizedRow) {
    let amax = f64::from(abs_max(x)).max(1e-5);
    let scale = (127.0 / amax) as f32;
    row.q.resize(x.len(), 0);
    for (q, &v) in row.q.iter_mut().zip(x) {
        *q = quantize_code(v * scale);
    }
    row.sum = row.q.iter().map(|&v| i32::from(v)).sum();
    row.scale = scale;
}

/// The largest `|v|` of `x` (0 for an empty row), NaNs skipped as `f32::max` skips them.
///
/// Eight running maxima with a plain comparison, so the compiler keeps them in one vector
/// register (a `max` reduction is exact in any order).
pub fn abs_max(x: &[f32]) -> f32 {
    let mut m = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in m.iter_mut().zip(c) {
            let a = v.abs();
            if a > *m {
                *m = a;
            }
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, &v| m.max(v.abs()));
    m.iter().fold(tail, |a, &b| a.max(b))
}

/// The int8 code of an already scaled activation: `v` rounded to the nearest integer (ties to
/// even), clamped to `[−128, 127]`; NaN gives 0. Equal to
/// `v.round_ties_even().clamp(-128.0, 127.0) as i8`, without the `rintf` library call that
/// `round_ties_even` becomes on x86-64 below SSE4.1 (LLVM calls it for every element).
///
/// Clamping first gives the same code (rounding is monotone and the bounds are integers); then
/// `|v| ≤ 128`, so `v + 1.5·2^23` lies in `[2^23, 2^24)`, where the f32 spacing is 1: the
/// addition itself rounds `v` to an integer `n`, ties to even (1.5·2^23 is even), and the sum's
/// bit pattern is `1.5·2^23`'s plus `n`. Reading `n` from the bits rather than converting the
/// float back keeps every step a plain vector operation, so rows quantize in SIMD.
#[inline]
pub fn quantize_code(v: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    let rounded = v.clamp(-128.0, 127.0) + MAGIC;
    let n = (rounded.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) as i8;
    if v.is_nan() {
        0
    } else {
        n
    }
}

/// `Σ code·q` for unsigned ternary codes (0, 1, 2 meaning −1, 0, +1).
pub fn code_dot(codes: &[u8], q: &[i8]) -> i32 {
    codes
        .iter()
        .zip(q)
        .map(|(&c, &v)| i32::from(c) * i32::from(v))
        .sum()
}

/// One output of a ternary linear layer with a single weight scale (I2_S semantics):
/// `((f32(acc) − f32(qsum)) / s) · scale`.
pub fn ternary_output(acc: i32, row: &QuantizedRow, weight_scale: f32) -> f32 {
    ((acc as f32 - row.sum as f32) / row.scale) * weight_scale
}

/// RMS normalization then elementwise weight, in the reference's order of roundings.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    scale_by_rms(x, ss, weight, eps, out);
}

/// Rows per call of [`rms_norm_rows`].
pub const RMS_NORM_ROWS: usize = 8;

/// [`rms_norm`] of each row of `x` (up to [`RMS_NORM_ROWS`] rows of `width`) into the same row of
/// `out`, bit-identical to it. Each row's sum of squares is still added up in order (the
/// reference's rounding), but the rows' sums advance together, so the adder's latency is paid
/// once per step for all of them rather than once per value of each row.
///
/// # Panics
/// If `x` holds more than [`RMS_NORM_ROWS`] rows, or `out` is shorter than `x`.
pub fn rms_norm_rows(x: &[f32], width: usize, weight: &[f32], eps: f32, out: &mut [f32]) {
    let rows = x.len() / width.max(1);
    assert!(
        rows <= RMS_NORM_ROWS && out.len() >= x.len(),
        "rms_norm_rows shape"
    );
    if rows < 2 {
        return rms_norm(x, weight, eps, out);
    }
    let mut ss = [0.0f64; RMS_NORM_ROWS];
    // Missing rows repeat the last one (their sums are not used).
    let xs: [&[f32]; RMS_NORM_ROWS] =
        std::array::from_fn(|r| &x[r.min(rows - 1) * width..][..width]);
    for i in 0..width {
        for (s, x) in ss.iter_mut().zip(&xs) {
            *s += f64::from(x[i] * x[i]);
        }
    }
    for (r, out) in out.chunks_mut(width).take(rows).enumerate() {
        scale_by_rms(xs[r], ss[r], weight, eps, out);
    }
}

/// `out = (x · 1/√(ss/len + eps)) · weight`, given the sum of squares `ss` of `x`.
fn scale_by_rms(x: &[f32], ss: f64, weight: &[f32], eps: f32, out: &mut [f32]) {
    let mean = (ss / x.len() as f64) as f32;
    let r = 1.0f32 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = (v * r) * w;
    }
}

/// NeoX rotary embedding of one head at position `pos`: pairs `(i, i + d/2)`, angle
/// `θ_i = pos · base^(−2i/d)` built by repeated f32 multiplication as the reference does.
pub fn rope_neox(head: &mut [f32], pos: usize, base: f32) {
    let mut cs = vec![(0.0f32, 0.0f32); head.len() / 2];
    rope_angles(pos, head.len(), base, &mut cs);
    rope_apply(head, &cs);
}

/// `(cos θ_i, sin θ_i)` for the `d/2` pairs of a head of width `d` at position `pos` (the
/// angles [`rope_neox`] uses; the same for every head of a position).
pub fn rope_angles(pos: usize, d: usize, base: f32, cs: &mut [(f32, f32)]) {
    let step = base.powf(-2.0 / d as f32);
    let mut theta = pos as f32;
    for c in cs.iter_mut().take(d / 2) {
        let (s, co) = theta.sin_cos();
        *c = (co, s);
        theta *= step;
    }
}

/// Rotates the pairs `(i, i + d/2)` of `head` by the angles of [`rope_angles`].
pub fn rope_apply(head: &mut [f32], cs: &[(f32, f32)]) {
    let half = head.len() / 2;
    let (lo, hi) = head.split_at_mut(half);
    for ((a, b), &(c, s)) in lo.iter_mut().zip(hi.iter_mut()).zip(cs) {
        let (x, y) = (*a, *b);
        *a = x * c - y * s;
        *b = x * s + y * c;
    }
}

/// f32 dot product with eight interleaved partial sums combined in a fixed order, so results do
/// not depend on threads or hardware.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[8 * c + l] * b[8 * c + l];
        }
    }
    let mut tail = 0.0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Softmax in place: subtract the maximum, exponentiate, normalize.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `max(g, 0)² · u`.
pub fn relu2_gate(g: f32, u: f32) -> f32 {
    let r = g.max(0.0);
    r * r * u
}

/// `g / (1 + e^−g) · u`.
pub fn silu_gate(g: f32, u: f32) -> f32 {
    g / (1.0 + (-g).exp()) * u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_to_even_and_handles_zero_rows() {
        // amax = 127 → s = 1, so values are rounded as they are.
        let r = quantize_row(&[0.5, 1.5, 2.5, -0.5, -127.0, 127.0]);
        assert_eq!(r.scale, 1.0);
        assert_eq!(r.q, vec![0, 2, 2, 0, -127, 127]);
        assert_eq!(r.sum, 4);
        let z = quantize_row(&[0.0; 5]);
        assert_eq!(z.q, vec![0; 5]);
        assert_eq!(z.scale, (127.0f64 / 1e-5) as f32);
        assert_eq!(ternary_output(0, &z, 3.0), 0.0);
    }

    #[test]
    fn abs_max_equals_the_plain_fold() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 7, 8, 9, 63, 2560, 2561] {
            for nan in [false, true] {
                let mut x: Vec<f32> = (0..n)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng >> 40) as f32 / 1e5 - 80.0
                    })
                    .collect();
                if nan && n > 0 {
                    x[n / 2] = f32::NAN;
                }
                let want = x.iter().fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
                assert_eq!(f64::from(abs_max(&x)), want, "n {n} nan {nan}");
            }
        }
    }

    #[test]
    fn quantize_code_equals_round_then_clamp() {
        // Every multiple of 1/64 in [-300, 300] (every tie among them), the clamp edges, values
        // far outside, NaN and infinities, and a stride through every f32 bit pattern.
        let mut vals: Vec<f32> = (-19_200..=19_200).map(|i| i as f32 / 64.0).collect();
        for v in [
            127.5f32,
            128.5,
            4_194_304.0,
            8_388_607.5,
            1e9,
            f32::MAX,
            f32::INFINITY,
        ] {
            vals.extend([v, -v]);
        }
        vals.extend([f32::NAN, f32::MIN_POSITIVE, 1e-40, -1e-40]);
        vals.extend((0..=u32::MAX).step_by(65_537).map(f32::from_bits));
        for v in vals {
            let want = v.round_ties_even().clamp(-128.0, 127.0) as i8;
            assert_eq!(quantize_code(v), want, "{v}");
        }
    }

    #[test]
    fn rms_norm_rows_equals_rms_norm_row_by_row() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Magnitudes from 1e-3 to 1e3, so the running sums round.
            let m = ((rng >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
            (m * 10f64.powi((rng % 7) as i32 - 3)) as f32
        };
        for width in [1usize, 5, 64, 2561] {
            let w: Vec<f32> = (0..width).map(|_| next()).collect();
            for rows in 1..=RMS_NORM_ROWS {
                let x: Vec<f32> = (0..rows * width).map(|_| next()).collect();
                let mut got = vec![f32::NAN; rows * width];
                rms_norm_rows(&x, width, &w, 1e-6, &mut got);
                let mut want = vec![0.0; rows * width];
                for (x, o) in x.chunks(width).zip(want.chunks_mut(width)) {
                    rms_norm(x, &w, 1e-6, o);
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "width {width}, rows {rows}");
            }
        }
    }

    #[test]
    fn rms_norm_of_constant_row_is_one() {
        let mut out = [0.0; 4];
        rms_norm(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0], 1e-5, &mut out);
        for (o, w) in out.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert!((o - w).abs() < 1e-5);
        }
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let mut h = [1.0, 2.0, 3.0, 4.0];
        rope_neox(&mut h, 0, 10000.0);
        assert_eq!(h, [1.0, 2.0, 3.0, 4.0]);
        rope_neox(&mut h, 7, 10000.0);
        let n: f32 = h.iter().map(|v| v * v).sum();
        assert!((n - 30.0).abs() < 1e-4);
    }

    #[test]
    fn rope_matches_the_formula_pair_by_pair() {
        // `bitnet-gguf.md` §3.4: θ_0 = pos, θ_{i+1} = θ_i · base^(−2/d) in f32; pairs (i, i + d/2).
        for (d, pos, base) in [
            (128usize, 1000usize, 500_000.0f32),
            (6, 3, 10_000.0),
            (64, 0, 1e4),
        ] {
            let x: Vec<f32> = (0..d)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            let mut want = x.clone();
            let step = base.powf(-2.0 / d as f32);
            let mut theta = pos as f32;
            for i in 0..d / 2 {
                let (s, c) = (theta.sin(), theta.cos());
                want[i] = x[i] * c - x[i + d / 2] * s;
                want[i + d / 2] = x[i] * s + x[i + d / 2] * c;
                theta *= step;
            }
            let mut got = x.clone();
            rope_neox(&mut got, pos, base);
            assert_eq!(got, want, "d {d}, pos {pos}");
            // Two heads rotated with one position's angles, as the executor does.
            let mut cs = vec![(0.0, 0.0); d / 2];
            rope_angles(pos, d, base, &mut cs);
            let mut two = [x.clone(), x.clone()].concat();
            two.chunks_mut(d).for_each(|h| rope_apply(h, &cs));
            assert_eq!(two, [want.clone(), want].concat());
        }
    }

    #[test]
    fn dot_matches_f64_sum() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot_f32(&a, &b)) - exact).abs() < 1e-5);
    }
}
