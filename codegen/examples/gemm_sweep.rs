//! Sweep of the token-blocked prompt kernel (tokens × streams × unroll) at one shape, the
//! variants alternating over 12 rounds; reports the fastest and the median time per token row
//! and the multiply-accumulates per second (with the weights in cache, the compute bound).
//!
//! `LAYOUT` picks the weight layout (`rows16x16`, the default, `rows16xR` or `rows4xR`);
//! `ASM=PREFIX` writes each variant's Cranelift listing to `PREFIX.TxSxU`.
//!
//! `VARIANTS=1x4x2,8x1x4 cargo run --release -p bitnetc-codegen --example gemm_sweep -- [K] [M] [threads]`

use std::time::Instant;

use bitnetc_codegen::cpu::{
    split_groups, ExpandedBatch, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout,
    RepackedMatrix,
};

fn time_kernel(
    kern: &GemvKernel,
    w: &RepackedMatrix,
    xb: &ExpandedBatch,
    out: &mut [i32],
    pool: &rayon::ThreadPool,
    threads: usize,
) -> Vec<f64> {
    let parts = split_groups(kern.groups(), threads);
    let tokens = kern.tokens();
    let mut samples = Vec::new();
    for _ in 0..3 {
        let iters = 192 / tokens;
        let t = Instant::now();
        for _ in 0..iters {
            let o = out.as_mut_ptr() as usize;
            if threads == 1 {
                // SAFETY: buffers sized for the kernel.
                unsafe {
                    kern.run_raw(
                        w.bytes().as_ptr(),
                        xb.as_slice().as_ptr(),
                        out.as_mut_ptr(),
                        0..kern.groups(),
                    )
                };
                continue;
            }
            pool.scope(|s| {
                for g in &parts {
                    let g = g.clone();
                    s.spawn(move |_| {
                        let rows = kern.rows_of(g.clone());
                        // SAFETY: disjoint rows per part; buffers sized for the kernel.
                        unsafe {
                            kern.run_raw(
                                w.bytes().as_ptr(),
                                xb.as_slice().as_ptr(),
                                (o as *mut i32).add(rows.start),
                                g,
                            )
                        }
                    });
                }
            });
        }
        samples.push(t.elapsed().as_secs_f64() / (iters * tokens) as f64);
    }
    samples
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let k = args.first().copied().unwrap_or(2560);
    let m = args.get(1).copied().unwrap_or(6912);
    let threads = args.get(2).copied().unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let codes: Vec<u8> = (0..k * m)
        .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
        .collect();
    // LAYOUT=rows16x16 (default), rows16x32, rows4x8, rows4x16, ...
    let layout_name = std::env::var("LAYOUT").unwrap_or("rows16x16".into());
    let (pack, rows) = layout_name
        .split_once('x')
        .expect("LAYOUT=rows16xR or rows4xR");
    let rows: usize = rows.parse().unwrap();
    let layout = match pack {
        "rows4" => Layout::rows4(rows),
        _ => Layout::rows16(rows),
    };
    let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, layout).unwrap();
    let shape = GemvShape::of(&w);
    // VARIANTS=TxSxU,... (tokens × streams × unroll); the first is the reference.
    let names: Vec<String> = std::env::var("VARIANTS")
        .unwrap_or("1x4x2,8x1x4,8x1x8,4x1x4,2x1x8".into())
        .split(',')
        .map(String::from)
        .collect();
    let variants: Vec<(usize, usize, usize)> = names
        .iter()
        .map(|v| {
            let n: Vec<usize> = v.split('x').map(|x| x.parse().unwrap()).collect();
            (n[0], n[1], n[2])
        })
        .collect();
    let kerns: Vec<(GemvKernel, ExpandedBatch)> = variants
        .iter()
        .map(|&(tokens, streams, unroll)| {
            let p = GemvParams {
                streams,
                unroll,
                tokens,
                ..GemvParams::default()
            };
            let kern = GemvKernel::compile(&shape, &p, IsaLevel::Native).unwrap();
            if let Ok(path) = std::env::var("ASM") {
                let listing = kern.info().vcode.clone().unwrap_or_default();
                std::fs::write(format!("{path}.{tokens}x{streams}x{unroll}"), listing).unwrap();
            }
            let mut xb = ExpandedBatch::new(k, tokens);
            for t in 0..tokens {
                let q: Vec<i8> = (0..k).map(|i| ((i * 37 + t * 11) % 251) as i8).collect();
                xb.fill(t, &q);
            }
            (kern, xb)
        })
        .collect();
    let mut samples = vec![vec![]; variants.len()];
    for _ in 0..12 {
        for (i, (kern, xb)) in kerns.iter().enumerate() {
            let mut out = vec![0i32; m * kern.tokens()];
            samples[i].extend(time_kernel(kern, &w, xb, &mut out, &pool, threads));
        }
    }
    for (i, s) in samples.iter_mut().enumerate() {
        s.sort_by(f64::total_cmp);
        let gmacs = (k * m) as f64 / 1e9;
        println!(
            "{}: min {:.1} us/token, median {:.1} ({:.1} / {:.1} GMAC/s)",
            names[i],
            s[0] * 1e6,
            s[s.len() / 2] * 1e6,
            gmacs / s[0],
            gmacs / s[s.len() / 2]
        );
    }
}
