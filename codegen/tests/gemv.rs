//! Decode GEMV kernels against a scalar reference written here from the original ternary codes.

use bitnetc_codegen::cpu::{
    compile_only, split_groups, split_part, ternary_output, DotForm, ExpandedActivations,
    ExpandedBatch, GemvKernel, GemvParams, GemvShape, HostFeatures, IsaLevel, Layout,
    RepackedMatrix, RowScales, Target,
};
use bitnetc_codegen::CodegenError;
use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_models::quant::{i2s, tq1_0, tq2_0};
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `acc[m] = Σ_k codes[m·k + k']·q[k']`, the plain definition.
fn scalar_reference(codes: &[u8], q: &[i8], k: usize, m: usize) -> Vec<i32> {
    (0..m)
        .map(|row| {
            codes[row * k..(row + 1) * k]
                .iter()
                .zip(q)
                .map(|(&c, &v)| i32::from(c) * i32::from(v))
                .sum()
        })
        .collect()
}

fn random_codes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.gen_range(0..3u8)).collect()
}

/// Extreme activations included (−128 and 127) so that any i16 saturation would show.
fn random_q(rng: &mut ChaCha8Rng, k: usize) -> Vec<i8> {
    (0..k)
        .map(|i| match i % 7 {
            0 => -128,
            1 => 127,
            _ => rng.gen(),
        })
        .collect()
}

/// Encodes `codes` (`m` rows of `k`) as `dtype` with tensor scale `scale` (TQ: per-row scale
/// `scale·(row+1)` repeated over its blocks).
fn encode(dtype: DType, codes: &[u8], k: usize, m: usize, scale: f32) -> Weight {
    let bytes = match dtype {
        DType::I2S => i2s::encode(codes, scale),
        DType::TQ1_0 | DType::TQ2_0 => {
            let rb = dtype.row_bytes(k as u64).unwrap() as usize;
            let mut out = vec![0u8; rb * m];
            for row in 0..m {
                let d = f16::from_f32(scale * (row % 5 + 1) as f32);
                let scales = vec![d; k / 256];
                let c = &codes[row * k..(row + 1) * k];
                let o = &mut out[row * rb..(row + 1) * rb];
                if dtype == DType::TQ1_0 {
                    tq1_0::encode_row(c, &scales, o).unwrap();
                } else {
                    tq2_0::encode_row(c, &scales, o).unwrap();
                }
            }
            out
        }
        _ => unreachable!(),
    };
    Weight {
        name: format!("test.{dtype}"),
        dtype,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(bytes),
    }
}

fn host() -> HostFeatures {
    HostFeatures::detect().expect("host detection")
}

fn params_variants() -> Vec<GemvParams> {
    vec![
        GemvParams::default(),
        GemvParams {
            streams: 1,
            unroll: 1,
            ..GemvParams::default()
        },
        GemvParams {
            streams: 3,
            unroll: 4,
            ..GemvParams::default()
        },
    ]
}

/// Runs every supported level on one matrix and checks exact equality.
fn check_all_levels(w: &RepackedMatrix, codes: &[u8], q: &[i8], params: &[GemvParams]) {
    let (k, m) = (w.k, w.m);
    let want = scalar_reference(codes, q, k, m);
    let xq = ExpandedActivations::new(q);
    let shape = GemvShape::of(w);
    for level in host().supported_levels() {
        for p in params {
            let kern = GemvKernel::compile(&shape, p, level).unwrap();
            let mut got = vec![i32::MIN; m];
            kern.run(w, q, &mut got).unwrap();
            assert_eq!(got, want, "K={k} M={m} {:?} {level} {p:?}", w.layout);
            for parts in [2, 3] {
                let mut got = vec![i32::MIN; m];
                kern.run_parallel(w, &xq, &mut got, parts).unwrap();
                assert_eq!(got, want, "K={k} M={m} {level} {p:?} parts={parts}");
            }
        }
    }
    check_batches(w, codes, q);
}

/// Token-blocked kernels (T = 2, 3, 4, 8) on every level: T different activation rows (the
/// first is `q`, the others derived from it), each token's rows checked exactly, group ranges
/// split in parts, and values outside the written rows left untouched.
fn check_batches(w: &RepackedMatrix, codes: &[u8], q: &[i8]) {
    let (k, m) = (w.k, w.m);
    let shape = GemvShape::of(w);
    for (tokens, streams, unroll) in [(2usize, 3usize, 1usize), (3, 1, 2), (4, 2, 2), (8, 1, 1)] {
        let rows: Vec<Vec<i8>> = (0..tokens)
            .map(|t| {
                q.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        if t == 0 {
                            v
                        } else {
                            v.wrapping_mul(t as i8 + 1) ^ (i as i8)
                        }
                    })
                    .collect()
            })
            .collect();
        let wants: Vec<Vec<i32>> = rows
            .iter()
            .map(|r| scalar_reference(codes, r, k, m))
            .collect();
        let mut xb = ExpandedBatch::new(k, tokens);
        for (t, r) in rows.iter().enumerate() {
            xb.fill(t, r);
        }
        let p = GemvParams {
            streams,
            unroll,
            tokens,
            ..GemvParams::default()
        };
        for level in host().supported_levels() {
            let kern = GemvKernel::compile(&shape, &p, level).unwrap();
            assert_eq!(kern.tokens(), tokens);
            for parts in [1, 3] {
                let mut got = vec![i32::MIN; tokens * m];
                for g in split_groups(kern.groups(), parts) {
                    kern.run_batch(w, &xb, g, &mut got).unwrap();
                }
                for (t, want) in wants.iter().enumerate() {
                    assert_eq!(
                        &got[t * m..(t + 1) * m],
                        &want[..],
                        "K={k} M={m} {:?} {level} {p:?} token {t} parts={parts}",
                        w.layout
                    );
                }
            }
            // Only the asked-for groups' rows are written.
            if kern.groups() > 1 {
                let mut got = vec![i32::MIN; tokens * m];
                kern.run_batch(w, &xb, 1..2, &mut got).unwrap();
                let written = kern.rows_of(1..2);
                for (i, &v) in got.iter().enumerate() {
                    assert_eq!(
                        v == i32::MIN,
                        !written.contains(&(i % m)),
                        "K={k} M={m} {level} {p:?} value {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn host_levels_are_consistent() {
    let h = host();
    let levels = h.supported_levels();
    assert!(levels.contains(&IsaLevel::Native));
    for level in IsaLevel::ALL {
        match Target::host(level) {
            Ok(t) => {
                assert!(h.supports(level), "{level} built but not supported");
                // Never above the host.
                for f in &t.info.enabled {
                    assert!(h.has(f), "{level} enabled {f}, which the host lacks");
                }
                if level == IsaLevel::Sse41 || level == IsaLevel::Avx2 {
                    assert_eq!(t.info.vnni(), None, "{level} must not use VNNI");
                }
            }
            Err(e) => assert!(!h.supports(level), "{level}: {e}"),
        }
    }
    eprintln!("host {}: levels {levels:?}, flags {:?}", h.arch, h.enabled);
}

#[test]
fn odd_shapes_i2s_all_levels() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for k in [128usize, 384, 1280] {
        for m in [1usize, 4, 7, 33, 65] {
            let codes = random_codes(&mut rng, k * m);
            let q = random_q(&mut rng, k);
            let w = RepackedMatrix::from_weight(
                &encode(DType::I2S, &codes, k, m, 0.5),
                Layout::rows4(4),
            )
            .unwrap();
            assert_eq!(w.scales, RowScales::Tensor(0.5));
            check_all_levels(&w, &codes, &q, &params_variants());
        }
    }
}

/// The largest sums the kernels can meet: every code +1 (2) against every activation −128, then
/// +127, so each i16 `pmaddubsw` partial sum reaches its bound (`I16_CHUNKS` chunks of the
/// largest products); long unrolls (8, 16 chunks summed in i16) and both layouts, every level.
#[test]
fn extreme_sums_do_not_wrap() {
    let (k, m) = (1024usize, 33usize);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for fill in [-128i8, 127] {
        for codes in [vec![2u8; k * m], random_codes(&mut rng, k * m)] {
            let q = vec![fill; k];
            let weight = encode(DType::I2S, &codes, k, m, 1.0);
            for layout in [Layout::rows4(4), Layout::rows16(16), Layout::rows16(32)] {
                let w = RepackedMatrix::from_weight(&weight, layout).unwrap();
                let params: Vec<GemvParams> = [(1usize, 16usize), (2, 8), (1, 32), (4, 2)]
                    .into_iter()
                    .map(|(streams, unroll)| GemvParams {
                        streams,
                        unroll,
                        ..GemvParams::default()
                    })
                    .collect();
                check_all_levels(&w, &codes, &q, &params);
                // Prompt kernels: every token at the extreme, the longest i16 sums.
                let want = scalar_reference(&codes, &q, k, m);
                for (tokens, unroll) in [(8usize, 4usize), (8, 16), (3, 8)] {
                    let mut xb = ExpandedBatch::new(k, tokens);
                    for t in 0..tokens {
                        xb.fill(t, &q);
                    }
                    let p = GemvParams {
                        streams: 1,
                        unroll,
                        tokens,
                        ..GemvParams::default()
                    };
                    for level in host().supported_levels() {
                        let kern = GemvKernel::compile(&GemvShape::of(&w), &p, level).unwrap();
                        let mut got = vec![i32::MIN; tokens * m];
                        kern.run_batch(&w, &xb, 0..kern.groups(), &mut got).unwrap();
                        for t in 0..tokens {
                            assert_eq!(&got[t * m..(t + 1) * m], &want[..], "{level} {p:?}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn odd_shapes_tq_formats_and_layouts() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for dtype in [DType::TQ1_0, DType::TQ2_0] {
        for (k, m) in [(256usize, 7usize), (512, 33), (1280, 65)] {
            let codes = random_codes(&mut rng, k * m);
            let q = random_q(&mut rng, k);
            let weight = encode(dtype, &codes, k, m, 0.25);
            for layout in [
                Layout::rows4(4),
                Layout::rows4(8),
                Layout::rows4(16),
                Layout::rows16(16),
                Layout::rows16(32),
            ] {
                let w = RepackedMatrix::from_weight(&weight, layout).unwrap();
                match &w.scales {
                    RowScales::PerRow(v) => {
                        for (row, &s) in v.iter().enumerate() {
                            assert_eq!(s, f16::from_f32(0.25 * (row % 5 + 1) as f32).to_f32());
                        }
                    }
                    other => panic!("{other:?}"),
                }
                for row in 0..m {
                    for col in [0, k / 2 + 3, k - 1] {
                        assert_eq!(w.code(row, col), codes[row * k + col]);
                    }
                }
                check_all_levels(&w, &codes, &q, &params_variants()[..2]);
            }
        }
    }
}

#[test]
fn bitnet_2b4t_shapes_all_formats() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // (K, M) of the 2B4T linears: q/o, k/v, gate/up, down.
    for (k, m) in [
        (2560usize, 2560usize),
        (2560, 640),
        (2560, 6912),
        (6912, 2560),
    ] {
        let codes = random_codes(&mut rng, k * m);
        let q = random_q(&mut rng, k);
        for dtype in [DType::I2S, DType::TQ1_0, DType::TQ2_0] {
            let w =
                RepackedMatrix::from_weight(&encode(dtype, &codes, k, m, 0.5), Layout::rows4(4))
                    .unwrap();
            check_all_levels(&w, &codes, &q, &[GemvParams::default()]);
        }
    }
}

#[test]
fn epilogue_matches_reference_order() {
    // ((acc − qsum) / s) · scale, all in f32.
    let (acc, qsum, s, scale) = (12345i32, -321i32, 3.7f32, 0.61f32);
    let want = ((acc as f32 - qsum as f32) / s) * scale;
    assert_eq!(
        ternary_output(acc, qsum, s, scale).to_bits(),
        want.to_bits()
    );
}

#[test]
fn mixed_tq_block_scales_are_reported() {
    let k = 512;
    let codes = vec![2u8; k];
    let rb = DType::TQ2_0.row_bytes(k as u64).unwrap() as usize;
    let mut bytes = vec![0u8; rb];
    tq2_0::encode_row(
        &codes,
        &[f16::from_f32(1.0), f16::from_f32(2.0)],
        &mut bytes,
    )
    .unwrap();
    let w = Weight {
        name: "mixed".into(),
        dtype: DType::TQ2_0,
        dims: vec![k as u64, 1],
        data: WeightBytes::owned(bytes),
    };
    match RepackedMatrix::from_weight(&w, Layout::rows4(4)) {
        Err(CodegenError::Unsupported(msg)) => assert!(msg.contains("different"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_code_3_is_refused_with_its_position() {
    // I2_S: element j of a 128-block sits in byte j % 32 at bits 7-6 minus 2·(j / 32).
    let (k, m) = (256, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let codes = random_codes(&mut rng, k * m);
    for (row, col) in [(0, 0), (2, 77), (1, 255)] {
        let mut w = encode(DType::I2S, &codes, k, m, 0.5);
        let e = row * k + col;
        let mut bytes = w.data.bytes().to_vec();
        bytes[(e / 128) * 32 + e % 32] |= 3 << (6 - 2 * ((e % 128) / 32));
        w.data = WeightBytes::owned(bytes);
        match RepackedMatrix::from_weight(&w, Layout::rows4(4)) {
            Err(CodegenError::Weight { problem, .. }) => assert!(
                problem.contains(&format!("invalid ternary code 3 at element {e} ")),
                "{problem}"
            ),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn length_checks() {
    let (k, m) = (128, 8);
    let codes = vec![1u8; k * m];
    let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, Layout::rows4(4)).unwrap();
    let kern =
        GemvKernel::compile(&GemvShape::of(&w), &GemvParams::default(), IsaLevel::Native).unwrap();
    let q = vec![1i8; k];
    assert!(kern.run(&w, &q[..k - 4], &mut vec![0; m]).is_err());
    assert!(kern.run(&w, &q, &mut vec![0; m - 1]).is_err());
    let other =
        RepackedMatrix::from_codes(&vec![1u8; 256 * m], 256, m, 1.0, Layout::rows4(4)).unwrap();
    assert!(kern.run(&other, &q, &mut vec![0; m]).is_err());
    let xq = ExpandedActivations::new(&q);
    assert!(kern.run_expanded(&w, &xq, 0..3, &mut vec![0; m]).is_err());
    let mut out = vec![0; 4];
    kern.run_expanded(&w, &xq, 1..2, &mut out).unwrap();
    assert_eq!(out, vec![k as i32; 4]);
}

#[test]
fn split_groups_covers_everything() {
    for n in 0..40 {
        for parts in 1..6 {
            let r = split_groups(n, parts);
            let mut next = 0;
            for g in &r {
                assert_eq!(g.start, next);
                assert!(g.end > g.start);
                next = g.end;
            }
            assert_eq!(next, n);
            assert!(r.len() <= parts);
            for i in 0..parts + 2 {
                let want = r.get(i).cloned().filter(|g| !g.is_empty());
                let got = Some(split_part(n, parts, i)).filter(|g| !g.is_empty());
                assert_eq!(got, want, "n {n}, parts {parts}, part {i}");
            }
        }
    }
}

#[test]
fn vnni_is_used_when_available() {
    for (level, layout) in host()
        .supported_levels()
        .into_iter()
        .flat_map(|l| [(l, Layout::rows4(4)), (l, Layout::rows16(16))])
    {
        let shape = GemvShape {
            k: 2560,
            m: 2560,
            layout,
        };
        let kern = GemvKernel::compile(&shape, &GemvParams::default(), level).unwrap();
        let info = kern.info();
        let vnni = info.uses_instruction("vpdpbusd");
        eprintln!(
            "{level} {:?}: dot {:?}, vnni {:?}, vpdpbusd {vnni}, pmaddubsw {}, {} code bytes, {:?}",
            layout.pack,
            info.dot,
            info.vnni,
            info.uses_instruction("pmaddubsw") || info.uses_instruction("vpmaddubsw"),
            info.code.len(),
            info.compile_time
        );
        if info.target.is_x86_64() {
            assert_eq!(vnni, info.vnni.is_some(), "{level}");
        }
        if std::env::var_os("BITNETC_DUMP_CODE").is_some() {
            let dir = std::env::temp_dir();
            let tag = format!("{level}_{:?}", layout.pack);
            std::fs::write(dir.join(format!("gemv_{tag}.bin")), &info.code).unwrap();
            std::fs::write(
                dir.join(format!("gemv_{tag}.vcode")),
                info.vcode.as_deref().unwrap_or(""),
            )
            .unwrap();
        }
    }
}

#[test]
fn compiles_for_aarch64() {
    let mut report = Vec::new();
    for (dotprod, i8mm) in [(false, false), (true, false), (false, true), (true, true)] {
        let target = Target::aarch64(dotprod, i8mm).unwrap();
        for (k, m, layout) in [
            (2560usize, 2560usize, Layout::rows4(4)),
            (2560, 640, Layout::rows4(4)),
            (2560, 6912, Layout::rows4(4)),
            (6912, 2560, Layout::rows4(4)),
            (384, 33, Layout::rows4(4)),
            (2560, 2560, Layout::rows16(16)),
            (2560, 6912, Layout::rows16(16)),
            (6912, 2560, Layout::rows16(32)),
            (384, 33, Layout::rows16(16)),
        ] {
            let shape = GemvShape { k, m, layout };
            // The prompt (token-blocked) kernel too.
            let gemm = compile_only(&shape, &GemvParams::prompt_default(4), &target).unwrap();
            assert!(!gemm.code.is_empty());
            if dotprod && !i8mm {
                assert!(gemm.uses_instruction("sdot"), "prompt kernel {k}x{m}");
            }
            let info = compile_only(&shape, &GemvParams::default(), &target).unwrap();
            assert!(!info.code.is_empty());
            let sdot = info.uses_instruction("sdot");
            let usdot = info.uses_instruction("usdot");
            if k == 2560 && m == 2560 {
                report.push(format!(
                    "dotprod={dotprod} i8mm={i8mm} {:?}: {:?} sdot={sdot} usdot={usdot} {} bytes",
                    layout.pack,
                    info.dot,
                    info.code.len()
                ));
            }
            match info.dot {
                DotForm::SignedTree => assert_eq!(sdot, dotprod, "{dotprod} {i8mm}"),
                DotForm::UnsignedSignedTree => assert_eq!(usdot, i8mm, "{dotprod} {i8mm}"),
                other => panic!("{other:?}"),
            }
        }
        // The other aarch64 form compiles too.
        let shape = GemvShape {
            k: 256,
            m: 9,
            layout: Layout::rows4(8),
        };
        let p = GemvParams {
            dot: Some(DotForm::UnsignedSignedTree),
            ..GemvParams::default()
        };
        let info = compile_only(&shape, &p, &target).unwrap();
        assert_eq!(info.uses_instruction("usdot"), i8mm);
    }
    eprintln!("{}", report.join("\n"));
}

/// A range's full groups go to `streams` equal runs, and the groups left over to blocks of
/// streams/2, streams/4, ..., 1 read side by side: every group range of a matrix with a partial
/// last group gives exactly its rows, for stream counts whose tails use every block width.
#[test]
fn every_group_range_gives_its_rows_for_every_tail() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (k, m) = (128usize, 16 * 37 + 5);
    let codes = random_codes(&mut rng, k * m);
    let q = random_q(&mut rng, k);
    let want = scalar_reference(&codes, &q, k, m);
    let weight = encode(DType::I2S, &codes, k, m, 1.0);
    let w = RepackedMatrix::from_weight(&weight, Layout::rows16(16)).unwrap();
    let xq = ExpandedActivations::new(&q);
    let mut checked = 0;
    for level in host().supported_levels() {
        for streams in [5usize, 8, 16] {
            let p = GemvParams {
                streams,
                unroll: 2,
                ..GemvParams::default()
            };
            let kern = GemvKernel::compile(&GemvShape::of(&w), &p, level).unwrap();
            let groups = kern.groups();
            for a in 0..groups {
                for b in a + 1..=groups {
                    let rows = kern.rows_of(a..b);
                    let mut got = vec![i32::MIN; rows.len()];
                    kern.run_expanded(&w, &xq, a..b, &mut got).unwrap();
                    assert_eq!(got, want[rows], "{level} streams {streams} groups {a}..{b}");
                    checked += 1;
                }
            }
        }
    }
    // 38 groups (the last partial): 741 ranges per level and stream count.
    assert_eq!(checked, 741 * 3 * host().supported_levels().len());
}
