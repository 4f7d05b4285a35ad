//! Quick sweep of GEMV kernel variants (layout rows per group × streams × unroll) at one shape,
//! weights rotated over ~1 GiB of copies so they come from memory, not cache.
//!
//! `cargo run --release -p bitnetc-codegen --example gemv_sweep -- [K] [M] [threads]`

use std::time::Instant;

use bitnetc_codegen::cpu::{
    ExpandedActivations, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout, RepackedMatrix,
};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let k = args.first().copied().unwrap_or(2560);
    let m = args.get(1).copied().unwrap_or(6912);
    let threads = args.get(2).copied().unwrap_or(1);
    let total_mib = args.get(3).copied().unwrap_or(1024);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let codes: Vec<u8> = (0..k * m)
        .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
        .collect();
    let q: Vec<i8> = (0..k).map(|i| (i * 37 % 251) as i8).collect();
    let xq = ExpandedActivations::new(&q);
    let mut out = vec![0i32; m];
    // Bandwidth probe.
    let probe: Vec<u64> = (0..(1usize << 27)).map(|i| i as u64).collect();
    let t = Instant::now();
    let mut s = 0u64;
    for _ in 0..3 {
        s = s.wrapping_add(pool.install(|| {
            use rayon::prelude::*;
            probe
                .par_chunks(probe.len() / threads)
                .map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v)))
                .sum::<u64>()
        }));
    }
    let gbs = 3.0 * (probe.len() * 8) as f64 / t.elapsed().as_secs_f64() / 1e9;
    drop(probe);
    println!("probe {gbs:.1} GB/s ({s})");
    for layout in [Layout::rows4(4), Layout::rows16(16), Layout::rows16(32)] {
        let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, layout).unwrap();
        let copies = ((total_mib << 20) / w.bytes().len()).max(1);
        let mats: Vec<RepackedMatrix> = (0..copies).map(|_| w.clone()).collect();
        for streams in [1usize, 2, 3, 4, 6, 8] {
            for unroll in [1usize, 2, 4] {
                let p = GemvParams {
                    streams,
                    unroll,
                    ..GemvParams::default()
                };
                let kern = GemvKernel::compile(&GemvShape::of(&w), &p, IsaLevel::Native).unwrap();
                let iters = (copies * 2).max(200);
                let el = pool.install(|| {
                    let t = Instant::now();
                    for i in 0..iters {
                        kern.run_parallel(&mats[i % copies], &xq, &mut out, threads)
                            .unwrap();
                    }
                    t.elapsed().as_secs_f64()
                });
                let g = (iters * w.bytes().len()) as f64 / el / 1e9;
                println!(
                    "{layout:?} streams={streams} unroll={unroll}: {g:.1} GB/s ({:.0}%)",
                    100.0 * g / gbs
                );
            }
        }
    }
}
