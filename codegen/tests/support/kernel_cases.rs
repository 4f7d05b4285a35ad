// Kernel test cases shared by the CPU emulator (`codegen/tests/cuda_kernels.rs`) and the GPU
// (`runtime/tests/cuda_gpu.rs`): included with `include!` into a module that provides
// `launch(&KernelSource, grid, Vec<Arg>) -> Vec<Vec<u8>>`, `Arg`, `bytes`, `f32s` and the
// `kernel_test!` macro (a plain test, or one that needs a GPU).

use bitnetc_codegen::cpu::head::HeadFormat;
use bitnetc_codegen::cuda::attention::AttentionKernel;
use bitnetc_codegen::cuda::elementwise::{self, elementwise_grid};
use bitnetc_codegen::cuda::head::{HeadKernel, HeadParams};
use bitnetc_codegen::cuda::ternary::{pack_codes, pack_weight, TernaryKernel, TernaryParams};
use bitnetc_ir::{Activation, DType, Weight, WeightBytes};
use bitnetc_models::quant::{i2s, tq2_0};
use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_f32(r: &mut ChaCha8Rng, n: usize, amp: f32) -> Vec<f32> {
    (0..n).map(|_| r.gen_range(-amp..amp)).collect()
}

/// `((Σ code·q − Σ q) / s) · scale [· out]` per token and row, as the reference backend.
fn ternary_reference(
    codes: &[u8],
    k: usize,
    m: usize,
    q: &[Vec<i8>],
    q_scale: &[f32],
    row_scale: &[f32],
    out: Option<f32>,
) -> Vec<f32> {
    let mut y = vec![0f32; q.len() * m];
    for (t, qt) in q.iter().enumerate() {
        let sum: i32 = qt.iter().map(|&v| i32::from(v)).sum();
        for r in 0..m {
            let acc: i32 = codes[r * k..(r + 1) * k]
                .iter()
                .zip(qt)
                .map(|(&c, &v)| i32::from(c) * i32::from(v))
                .sum();
            let v = ((acc as f32 - sum as f32) / q_scale[t]) * row_scale[r];
            y[t * m + r] = out.map_or(v, |s| v * s);
        }
    }
    y
}

/// Activations `[T, k_pad]` (zero padded) for the kernel.
fn padded_q(q: &[Vec<i8>], k_pad: usize) -> Vec<u8> {
    let mut out = vec![0u8; q.len() * k_pad];
    for (t, qt) in q.iter().enumerate() {
        for (i, &v) in qt.iter().enumerate() {
            out[t * k_pad + i] = v as u8;
        }
    }
    out
}

fn run_ternary(
    seed: u64,
    k: usize,
    m: usize,
    n_tokens: usize,
    params: TernaryParams,
    out: Option<f32>,
) {
    let mut r = rng(seed);
    let codes: Vec<u8> = (0..k * m).map(|_| r.gen_range(0..3u8)).collect();
    let row_scale: Vec<f32> = (0..m).map(|_| r.gen_range(0.5..2.0)).collect();
    let q: Vec<Vec<i8>> = (0..n_tokens)
        .map(|_| (0..k).map(|_| r.gen_range(-128..=127i32) as i8).collect())
        .collect();
    let q_scale: Vec<f32> = (0..n_tokens).map(|_| r.gen_range(1.0..100.0)).collect();
    let packed = pack_codes(&codes, k, m, row_scale.clone());
    let kernel = TernaryKernel {
        k,
        m,
        out_scale: out.is_some(),
        params,
    };
    let src = kernel.source().unwrap();
    let bufs = launch(
        &src,
        kernel.grid(n_tokens),
        vec![
            Arg::Buf("unsigned", bytes(&packed.words)),
            Arg::Buf("float", bytes(&packed.row_scales)),
            Arg::Buf("signed char", padded_q(&q, kernel.k_pad())),
            Arg::Buf("float", bytes(&q_scale)),
            Arg::Buf("float", vec![0xAB; 4 * n_tokens * m]),
            Arg::Int(n_tokens as i64),
            Arg::Float(out.unwrap_or(0.0)),
        ],
    );
    let got = f32s(&bufs[4]);
    let want = ternary_reference(&codes, k, m, &q, &q_scale, &row_scale, out);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{}: output {i}: {g} vs {w}",
            src.name
        );
    }
}

kernel_test! {
fn ternary_odd_shapes_every_parameter_kind() {
    let variants = [(1, 1, 4), (2, 2, 2), (4, 3, 1), (8, 8, 4)];
    for (i, &(warps, tokens, load_words)) in variants.iter().enumerate() {
        let p = TernaryParams {
            warps,
            tokens,
            load_words,
        };
        // K not a multiple of 64 (padding), M not a multiple of the rows per block, a partial
        // token tile.
        run_ternary(10 + i as u64, 100, 37, 5, p, None);
        run_ternary(20 + i as u64, 448, 13, 1, p, Some(0.75));
    }
}
}

kernel_test! {
fn ternary_2b4t_shape_decode_and_prompt() {
    run_ternary(1, 2560, 96, 1, TernaryParams::decode_default(), Some(1.5));
    run_ternary(2, 6912, 40, 9, TernaryParams::prompt_default(), None);
}
}

kernel_test! {
/// Packing real I2_S and TQ2_0 weights gives the codes and scales the reference decodes.
fn packing_real_weights_matches_their_codes() {
    let mut r = rng(3);
    let (k, m) = (256, 5);
    let codes: Vec<u8> = (0..k * m).map(|_| r.gen_range(0..3u8)).collect();
    let i2 = Weight {
        name: "w.i2s".into(),
        dtype: DType::I2S,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(i2s::encode(&codes, 0.25)),
    };
    let p = pack_weight(&i2).unwrap();
    assert_eq!(p.row_scales, vec![0.25; m]);
    assert_eq!(p.words, pack_codes(&codes, k, m, vec![0.25; m]).words);

    let rb = DType::TQ2_0.row_bytes(k as u64).unwrap() as usize;
    let mut tq = vec![0u8; rb * m];
    for row in 0..m {
        let d = f16::from_f32(0.5 + row as f32);
        tq2_0::encode_row(
            &codes[row * k..(row + 1) * k],
            &[d],
            &mut tq[row * rb..(row + 1) * rb],
        )
        .unwrap();
    }
    let w = Weight {
        name: "w.tq2".into(),
        dtype: DType::TQ2_0,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(tq),
    };
    let p = pack_weight(&w).unwrap();
    assert_eq!(
        p.row_scales,
        (0..m).map(|r| 0.5 + r as f32).collect::<Vec<_>>()
    );
    assert_eq!(
        p.words,
        pack_codes(&codes, k, m, p.row_scales.clone()).words
    );
    let bad = Weight {
        dtype: DType::F16,
        ..w
    };
    assert!(pack_weight(&bad)
        .unwrap_err()
        .to_string()
        .contains("not a ternary format"));
}
}

/// The reference quantization (`bitnet-gguf.md` §2.5).
fn quantize_reference(x: &[f32]) -> (Vec<i8>, f32) {
    let amax = x
        .iter()
        .fold(0f64, |m, &v| m.max(f64::from(v.abs())))
        .max(1e-5);
    let s = (127.0 / amax) as f32;
    let q = x
        .iter()
        .map(|&v| (v * s).round_ties_even().clamp(-128.0, 127.0) as i8)
        .collect();
    (q, s)
}

kernel_test! {
fn quantize_matches_exactly_with_padding_and_zero_rows() {
    let width = 300;
    let mut r = rng(4);
    let mut x = random_f32(&mut r, 3 * width, 4.0);
    x[width..2 * width].iter_mut().for_each(|v| *v = 0.0);
    // Exact halves after scaling (amax 127 → s = 1): ties go to even.
    x[2 * width] = 127.0;
    x[2 * width + 1] = 2.5;
    x[2 * width + 2] = -3.5;
    let src = elementwise::quantize(width).unwrap();
    let pad = elementwise::quantized_width(width);
    let bufs = launch(
        &src,
        (3, 1, 1),
        vec![
            Arg::Buf("float", bytes(&x)),
            Arg::Buf("signed char", vec![0x55; 3 * pad]),
            Arg::Buf("float", vec![0; 12]),
        ],
    );
    let scales = f32s(&bufs[2]);
    for t in 0..3 {
        let (q, s) = quantize_reference(&x[t * width..(t + 1) * width]);
        assert_eq!(scales[t].to_bits(), s.to_bits(), "token {t} scale");
        let got = &bufs[1][t * pad..(t + 1) * pad];
        for i in 0..width {
            assert_eq!(got[i] as i8, q[i], "token {t} element {i}");
        }
        assert!(got[width..].iter().all(|&b| b == 0), "padding of token {t}");
    }
    assert_eq!(bufs[1][2 * pad + 1] as i8, 2);
    assert_eq!(bufs[1][2 * pad + 2] as i8, -4);
}
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1e-3);
        assert!(err <= tol, "{what}[{i}]: {g} vs {w} (relative error {err})");
    }
}

kernel_test! {
fn fused_rms_norm_quantize_equals_the_two_steps() {
    for (width, tokens) in [(2560, 2), (300, 3)] {
        let mut r = rng(15);
        let x = random_f32(&mut r, tokens * width, 3.0);
        let w = random_f32(&mut r, width, 2.0);
        let eps = 1e-6;
        let src = elementwise::rms_norm_quantize(width, eps).unwrap();
        let pad = elementwise::quantized_width(width);
        let bufs = launch(
            &src,
            (tokens as u32, 1, 1),
            vec![
                Arg::Buf("float", bytes(&x)),
                Arg::Buf("float", bytes(&w)),
                Arg::Buf("signed char", vec![0x55; tokens * pad]),
                Arg::Buf("float", vec![0; 4 * tokens]),
            ],
        );
        let scales = f32s(&bufs[3]);
        for (t, xr) in x.chunks(width).enumerate() {
            let ss: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
            let mean = (ss / width as f64) as f32;
            let rr = 1.0f32 / (mean + eps).sqrt();
            let normed: Vec<f32> = xr.iter().zip(&w).map(|(&v, &wv)| (v * rr) * wv).collect();
            let (q, s) = quantize_reference(&normed);
            assert_eq!(scales[t].to_bits(), s.to_bits(), "{}: token {t} scale", src.name);
            let got = &bufs[2][t * pad..(t + 1) * pad];
            for i in 0..width {
                assert_eq!(got[i] as i8, q[i], "{}: token {t} element {i}", src.name);
            }
            assert!(got[width..].iter().all(|&b| b == 0), "padding of token {t}");
        }
    }
}
}

kernel_test! {
fn rms_norm_matches() {
    let width = 2560;
    let mut r = rng(5);
    let x = random_f32(&mut r, 2 * width, 3.0);
    let w = random_f32(&mut r, width, 2.0);
    let eps = 1e-5;
    let src = elementwise::rms_norm(width, eps).unwrap();
    let bufs = launch(
        &src,
        (2, 1, 1),
        vec![
            Arg::Buf("float", bytes(&x)),
            Arg::Buf("float", bytes(&w)),
            Arg::Buf("float", vec![0; 8 * width]),
        ],
    );
    let mut want = vec![0f32; 2 * width];
    for (o, xr) in want.chunks_mut(width).zip(x.chunks(width)) {
        let ss: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
        let mean = (ss / width as f64) as f32;
        let rr = 1.0f32 / (mean + eps).sqrt();
        for ((o, &v), &wv) in o.iter_mut().zip(xr).zip(&w) {
            *o = (v * rr) * wv;
        }
    }
    assert_close(&f32s(&bufs[2]), &want, 1e-6, "rms_norm");
}
}

kernel_test! {
fn rope_matches() {
    let (heads, d, tokens, n_past, base) = (3, 20, 2, 7, 10000f32);
    let mut r = rng(6);
    let x = random_f32(&mut r, tokens * heads * d, 1.0);
    let step = base.powf(-2.0 / d as f32);
    let src = elementwise::rope(heads, d).unwrap();
    let bufs = launch(
        &src,
        (tokens as u32, heads as u32, 1),
        vec![
            Arg::Buf("float", bytes(&x)),
            Arg::Buf("float", vec![0; 4 * x.len()]),
            Arg::Int(n_past as i64),
            Arg::Float(step),
        ],
    );
    let mut want = x.clone();
    for (t, row) in want.chunks_mut(heads * d).enumerate() {
        for head in row.chunks_mut(d) {
            let mut theta = (n_past + t) as f32;
            for i in 0..d / 2 {
                let (s, c) = theta.sin_cos();
                let (a, b) = (head[i], head[i + d / 2]);
                head[i] = a * c - b * s;
                head[i + d / 2] = a * s + b * c;
                theta *= step;
            }
        }
    }
    assert_close(&f32s(&bufs[1]), &want, 1e-5, "rope");
}
}

kernel_test! {
fn elementwise_ops_match() {
    let n = 1000;
    let mut r = rng(7);
    let a = random_f32(&mut r, n, 3.0);
    let b = random_f32(&mut r, n, 3.0);
    let run = |src: bitnetc_codegen::cuda::KernelSource, x: &[f32], y: &[f32]| {
        let bufs = launch(
            &src,
            elementwise_grid(n),
            vec![
                Arg::Buf("float", bytes(x)),
                Arg::Buf("float", bytes(y)),
                Arg::Buf("float", vec![0; 4 * n]),
                Arg::Int(n as i64),
            ],
        );
        f32s(&bufs[2])
    };
    let relu2: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(&g, &u)| g.max(0.0) * g.max(0.0) * u)
        .collect();
    assert_close(
        &run(elementwise::gated(Activation::Relu2), &a, &b),
        &relu2,
        0.0,
        "relu2",
    );
    let silu: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
        .collect();
    assert_close(
        &run(elementwise::gated(Activation::Silu), &a, &b),
        &silu,
        1e-6,
        "silu",
    );
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_close(&run(elementwise::add(), &a, &b), &sum, 0.0, "add");
    let width = 40;
    let biased: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, x)| x + b[i % width])
        .collect();
    assert_close(
        &run(elementwise::add_bias(width).unwrap(), &a, &b[..width]),
        &biased,
        0.0,
        "bias",
    );
}
}

/// The reference attention (`dot_f32` order, softmax, `Σ p·v` in position order).
#[allow(clippy::too_many_arguments)]
fn attention_reference(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    s: &AttentionKernel,
    n_past: usize,
    tokens: usize,
) -> Vec<f32> {
    let d = s.head_dim;
    let (qw, kvw, group) = (s.n_head * d, s.n_head_kv * d, s.n_head / s.n_head_kv);
    let scale = 1.0 / (d as f32).sqrt();
    let dot = |a: &[f32], b: &[f32]| {
        let mut acc = [0f32; 8];
        for c in 0..d / 8 {
            for l in 0..8 {
                acc[l] += a[8 * c + l] * b[8 * c + l];
            }
        }
        let mut tail = 0f32;
        for i in d / 8 * 8..d {
            tail += a[i] * b[i];
        }
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    };
    let mut out = vec![0f32; tokens * qw];
    for t in 0..tokens {
        for h in 0..s.n_head {
            let qh = &q[t * qw + h * d..][..d];
            let off = (h / group) * d;
            let n = n_past + t + 1;
            let mut sc: Vec<f32> = (0..n)
                .map(|j| dot(qh, &keys[j * kvw + off..][..d]) * scale)
                .collect();
            let mx = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in sc.iter_mut() {
                *v = (*v - mx).exp();
                sum += *v;
            }
            let o = &mut out[t * qw + h * d..][..d];
            for (j, &e) in sc.iter().enumerate() {
                let p = e / sum;
                for (oi, vi) in o.iter_mut().zip(&values[j * kvw + off..][..d]) {
                    *oi += p * vi;
                }
            }
        }
    }
    out
}

kernel_test! {
fn attention_matches_with_grouped_heads_and_odd_head_size() {
    for (shape, n_past, tokens) in [
        (
            AttentionKernel {
                n_head: 4,
                n_head_kv: 2,
                head_dim: 20,
                n_ctx: 40,
            },
            5,
            3,
        ),
        (
            AttentionKernel {
                n_head: 2,
                n_head_kv: 2,
                head_dim: 128,
                n_ctx: 300,
            },
            290,
            1,
        ),
    ] {
        let mut r = rng(8);
        let kvw = shape.n_head_kv * shape.head_dim;
        let q = random_f32(&mut r, tokens * shape.n_head * shape.head_dim, 2.0);
        let k = random_f32(&mut r, shape.n_ctx * kvw, 2.0);
        let v = random_f32(&mut r, shape.n_ctx * kvw, 2.0);
        let src = shape.source().unwrap();
        let bufs = launch(
            &src,
            shape.grid(tokens),
            vec![
                Arg::Buf("float", bytes(&q)),
                Arg::Buf("float", bytes(&k)),
                Arg::Buf("float", bytes(&v)),
                Arg::Buf("float", vec![0; 4 * shape.scratch_len(tokens)]),
                Arg::Buf("float", vec![0; 4 * q.len()]),
                Arg::Int(n_past as i64),
            ],
        );
        let want = attention_reference(&q, &k, &v, &shape, n_past, tokens);
        assert_close(&f32s(&bufs[4]), &want, 1e-4, &src.name);
    }
}
}

/// A table in `format` with its f32 element values.
fn head_table(
    format: HeadFormat,
    k: usize,
    rows: usize,
    r: &mut ChaCha8Rng,
) -> (Vec<u8>, Vec<f32>) {
    let vals = random_f32(r, k * rows, 1.0);
    match format {
        HeadFormat::F16 { .. } => {
            let h: Vec<f16> = vals.iter().map(|&v| f16::from_f32(v)).collect();
            (bytes(&h), h.iter().map(|v| v.to_f32()).collect())
        }
        HeadFormat::BF16 => {
            let h: Vec<bf16> = vals.iter().map(|&v| bf16::from_f32(v)).collect();
            (bytes(&h), h.iter().map(|v| v.to_f32()).collect())
        }
        HeadFormat::F32 => (bytes(&vals), vals),
        HeadFormat::ScaledI8 { group } => {
            let mut table = Vec::new();
            let mut exact = Vec::new();
            for row in vals.chunks(k) {
                let codes: Vec<i8> = row
                    .iter()
                    .map(|_| r.gen_range(-128..=127i32) as i8)
                    .collect();
                let scales: Vec<f32> = (0..k / group).map(|_| r.gen_range(0.001..0.01)).collect();
                table.extend(codes.iter().map(|&c| c as u8));
                table.extend(bytes(&scales));
                exact.extend(
                    codes
                        .iter()
                        .enumerate()
                        .map(|(e, &c)| scales[e / group] * f32::from(c)),
                );
            }
            (table, exact)
        }
        HeadFormat::Q6K | HeadFormat::Q8_0 => {
            unreachable!("the CUDA head takes Q6_K and Q8_0 tables as scaled int8 rows")
        }
    }
}

kernel_test! {
fn head_matches_for_every_format() {
    let formats = [
        HeadFormat::F16 { finite: true },
        HeadFormat::BF16,
        HeadFormat::F32,
        HeadFormat::ScaledI8 { group: 32 },
        HeadFormat::ScaledI8 { group: 16 },
    ];
    for (i, format) in formats.into_iter().enumerate() {
        // An odd length (narrow loads) and a round one (16-byte loads), a partial token tile.
        for (k, rows, tokens, params) in [
            (
                96,
                37,
                3,
                HeadParams {
                    warps: 2,
                    tokens: 2,
                },
            ),
            (2560, 21, 1, HeadParams::default()),
            (
                36,
                5,
                2,
                HeadParams {
                    warps: 1,
                    tokens: 1,
                },
            ),
        ] {
            if let HeadFormat::ScaledI8 { group } = format {
                if k % group != 0 {
                    continue;
                }
            }
            let mut r = rng(9 + i as u64);
            let (table, vals) = head_table(format, k, rows, &mut r);
            let x = random_f32(&mut r, tokens * k, 2.0);
            let kernel = HeadKernel {
                format,
                k,
                rows,
                params,
            };
            let src = kernel.source().unwrap();
            let bufs = launch(
                &src,
                kernel.grid(tokens),
                vec![
                    Arg::Buf("unsigned char", table),
                    Arg::Buf("float", bytes(&x)),
                    Arg::Buf("float", vec![0; 4 * tokens * rows]),
                    Arg::Int(tokens as i64),
                ],
            );
            let got = f32s(&bufs[2]);
            for t in 0..tokens {
                for row in 0..rows {
                    let xs = &x[t * k..(t + 1) * k];
                    let ws = &vals[row * k..(row + 1) * k];
                    let exact: f64 = xs
                        .iter()
                        .zip(ws)
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum();
                    let mag: f64 = xs
                        .iter()
                        .zip(ws)
                        .map(|(a, b)| f64::from((a * b).abs()))
                        .sum();
                    let g = f64::from(got[t * rows + row]);
                    assert!(
                        (g - exact).abs() <= 1e-5 * mag,
                        "{}: token {t} row {row}: {g} vs {exact}",
                        src.name
                    );
                }
            }
        }
    }
}
}

