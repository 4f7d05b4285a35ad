//! Quick sweep of the token-blocked prompt kernel (tokens × streams × unroll) at one shape,
//! against the one-token kernel in the same run; reports time per token row.
//!
//! `cargo run --release -p bitnetc-codegen --example gemm_sweep -- [K] [M] [threads]`

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
) -> f64 {
    let parts = split_groups(kern.groups(), threads);
    let m = w.m;
    let tokens = kern.tokens();
    let mut samples = Vec::new();
    for _ in 0..7 {
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
    samples.sort_by(f64::total_cmp);
    let _ = m;
    samples[samples.len() / 2]
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
    let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, Layout::rows16(16)).unwrap();
    let shape = GemvShape::of(&w);
    let mut base = 0.0;
    for (tokens, streams, unroll) in [
        (1usize, 8usize, 2usize),
        (1, 1, 2),
        (1, 2, 2),
        (1, 4, 2),
        (2, 1, 2),
        (2, 2, 2),
        (2, 4, 2),
        (3, 1, 2),
        (3, 2, 2),
        (4, 1, 1),
        (4, 1, 2),
        (4, 2, 2),
        (6, 1, 2),
        (8, 1, 1),
        (8, 1, 2),
    ] {
        let p = GemvParams {
            streams,
            unroll,
            tokens,
            ..GemvParams::default()
        };
        let kern = GemvKernel::compile(&shape, &p, IsaLevel::Native).unwrap();
        let mut xb = ExpandedBatch::new(k, tokens);
        for t in 0..tokens {
            let q: Vec<i8> = (0..k).map(|i| ((i * 37 + t * 11) % 251) as i8).collect();
            xb.fill(t, &q);
        }
        let mut out = vec![0i32; m * tokens];
        let s = time_kernel(&kern, &w, &xb, &mut out, &pool, threads);
        if tokens == 1 {
            base = s;
        }
        println!(
            "T={tokens} streams={streams} unroll={unroll}: {:.1} us/token ({:.2}x vs T=1)",
            s * 1e6,
            base / s
        );
    }
}
