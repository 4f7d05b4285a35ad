//! Head kernel variants at 2 threads on the 2B4T head shape, beside a read probe, alternating.
//!
//! `[VARIANTS=4x1,4x2] cargo run --release -p bitnetc-codegen --example head_l2 -- [f16|f16-any|bf16|q6k|q6k-q8k|q8_0] [l2]`
//!
//! (`q6k`: the scaled-int8 rows the CUDA head reads a Q6_K table as; `q6k-q8k`: the CPU
//! backends' Q6_K form, multiplied by Q8_K activations.)
use bitnetc_codegen::cpu::head::{HeadFormat, HeadKernel, HeadParams, HeadShape};
use bitnetc_codegen::cpu::IsaLevel;
use half::f16;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn probe(buf: &[u64]) -> f64 {
    let t = Instant::now();
    let s: u64 = std::thread::scope(|sc| {
        let hs: Vec<_> = buf
            .chunks(buf.len() / 2)
            .map(|c| {
                sc.spawn(move || {
                    let mut a = [0u64; 4];
                    for ch in c.chunks_exact(4) {
                        for j in 0..4 {
                            a[j] = a[j].wrapping_add(ch[j]);
                        }
                    }
                    a.iter().fold(0, |x, y| x ^ y)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold(0, |x, y| x ^ y)
    });
    std::hint::black_box(s);
    t.elapsed().as_secs_f64()
}

fn main() {
    let k = 2560usize;
    // `l2` as the second argument: one thread over 64 rows (the table stays in L2), the
    // kernel's compute bound.
    let in_l2 = std::env::args().nth(2).as_deref() == Some("l2");
    let rows = if in_l2 { 64 } else { 128256usize };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1f32..1.0)).collect();
    // `q6k` as the first argument: the scaled-int8 rows a Q6_K table is repacked into.
    let arg = std::env::args().nth(1).unwrap_or_default();
    let scaled = arg == "q6k";
    let format = match arg.as_str() {
        "q6k" => HeadFormat::ScaledI8 { group: 16 },
        "q6k-q8k" => HeadFormat::Q6K,
        "q8_0" => HeadFormat::Q8_0,
        "bf16" => HeadFormat::BF16,
        "f16-any" => HeadFormat::F16 { finite: false },
        _ => HeadFormat::F16 { finite: true },
    };
    let bytes: Vec<u8> = if format == HeadFormat::Q6K {
        // Per super-block: 256 6-bit codes (192 bytes, any values), 16 i16 scales, d.
        (0..rows * k / 256)
            .flat_map(|_| {
                let mut blk: Vec<u8> = (0..192).map(|_| rng.gen::<u8>()).collect();
                for _ in 0..16 {
                    blk.extend(rng.gen_range(-128i16..128).to_le_bytes());
                }
                blk.extend(rng.gen_range(1e-4f32..1e-3).to_le_bytes());
                blk
            })
            .collect()
    } else if format == HeadFormat::Q8_0 {
        // Per group of four blocks: 128 i8 codes, then four f32 scales.
        (0..rows * k / 128)
            .flat_map(|_| {
                let mut grp: Vec<u8> = (0..128).map(|_| rng.gen::<u8>()).collect();
                for _ in 0..4 {
                    grp.extend(rng.gen_range(1e-4f32..1e-3).to_le_bytes());
                }
                grp
            })
            .collect()
    } else if scaled {
        (0..rows)
            .flat_map(|_| {
                let mut row: Vec<u8> = (0..k).map(|_| rng.gen_range(-32i8..32) as u8).collect();
                for _ in 0..k / 16 {
                    row.extend(rng.gen_range(1e-4f32..1e-3).to_le_bytes());
                }
                row
            })
            .collect()
    } else {
        (0..k * rows)
            .flat_map(|_| {
                let v = rng.gen_range(-0.05f32..0.05);
                if format == HeadFormat::BF16 {
                    ((v.to_bits() >> 16) as u16).to_le_bytes()
                } else {
                    f16::from_f32(v).to_bits().to_le_bytes()
                }
            })
            .collect()
    };
    println!("{} table, {} MB", format.name(), bytes.len() / 1_000_000);
    let pbuf: Vec<u64> = (0..bytes.len() / 8).map(|i| i as u64).collect();
    // `VARIANTS=4x1,4x2` (rows x unroll) replaces the default list.
    let listed: Option<Vec<(usize, usize)>> = std::env::var("VARIANTS").ok().map(|v| {
        v.split(',')
            .map(|p| {
                let (r, u) = p.split_once('x').expect("ROWSxUNROLL");
                (r.parse().unwrap(), u.parse().unwrap())
            })
            .collect()
    });
    let variants: &[(usize, usize)] = match &listed {
        Some(v) => v,
        None if matches!(format, HeadFormat::Q6K | HeadFormat::Q8_0) => &[(1, 1), (4, 1), (8, 1)],
        None => &[(1, 2), (1, 4), (2, 2), (4, 2), (6, 2), (8, 1), (8, 2)],
    };
    let shape = HeadShape { k, rows, format };
    let kerns: Vec<_> = variants
        .iter()
        .map(|&(r, u)| {
            HeadKernel::compile(&shape, &HeadParams { rows: r, unroll: u }, IsaLevel::Native)
                .unwrap()
        })
        .collect();
    let mut ts = vec![vec![]; variants.len() + 1];
    let mut out = vec![0f32; rows];
    for _ in 0..9 {
        ts[0].push(probe(&pbuf));
        for (i, kern) in kerns.iter().enumerate() {
            let t = Instant::now();
            if in_l2 {
                // Activations prepared once, as the runtime does per token.
                let input = kern.prepare(&x).unwrap();
                for _ in 0..20_000 {
                    kern.run_prepared(&bytes, &input, &mut out, 0..rows)
                        .unwrap();
                }
                ts[i + 1].push(t.elapsed().as_secs_f64() / 20_000.0);
                continue;
            }
            std::thread::scope(|sc| {
                let (a, b) = out.split_at_mut(rows / 2);
                let (kern, x, bytes) = (&kern, &x, &bytes);
                sc.spawn(move || kern.run(bytes, x, a, 0..rows / 2).unwrap());
                kern.run(bytes, x, b, rows / 2..rows).unwrap();
            });
            ts[i + 1].push(t.elapsed().as_secs_f64());
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let p = med(&mut ts[0]);
    println!("probe {:.1} GB/s", bytes.len() as f64 / p / 1e9);
    for (i, v) in variants.iter().enumerate() {
        let m = med(&mut ts[i + 1]);
        println!(
            "rows {} unroll {}: {:.2} ms {:.1} GB/s = {:.0}% of probe",
            v.0,
            v.1,
            m * 1e3,
            bytes.len() as f64 / m / 1e9,
            p / m * 100.0
        );
    }
}
