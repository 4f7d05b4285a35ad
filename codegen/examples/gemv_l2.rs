//! One-thread GEMV throughput of a few (streams, unroll) variants with the weights in L2 (the
//! compute bound) and streamed from memory, at K = 2560.
//!
//! `cargo run --release -p bitnetc-codegen --example gemv_l2`
use std::time::Instant;

use bitnetc_codegen::cpu::{
    ExpandedActivations, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout, RepackedMatrix,
};

fn main() {
    let k = 2560usize;
    let variants = [
        (4usize, 2usize),
        (1, 2),
        (1, 4),
        (1, 8),
        (1, 16),
        (2, 4),
        (2, 8),
    ];
    for (m, copies) in [(512usize, 1usize), (2560, 160)] {
        let codes: Vec<u8> = (0..k * m)
            .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
            .collect();
        let q: Vec<i8> = (0..k).map(|i| (i * 37 % 251) as i8).collect();
        let xq = ExpandedActivations::new(&q);
        let mut out = vec![0i32; m];
        let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, Layout::default()).unwrap();
        let mats: Vec<RepackedMatrix> = (0..copies).map(|_| w.clone()).collect();
        let iters = (300_000_000 / w.bytes().len()).max(copies);
        let mut res = vec![vec![]; variants.len()];
        let kerns: Vec<GemvKernel> = variants
            .iter()
            .map(|&(streams, unroll)| {
                let p = GemvParams {
                    streams,
                    unroll,
                    ..GemvParams::default()
                };
                GemvKernel::compile(&GemvShape::of(&w), &p, IsaLevel::Native).unwrap()
            })
            .collect();
        for _ in 0..5 {
            for (i, kern) in kerns.iter().enumerate() {
                let t = Instant::now();
                for j in 0..iters {
                    kern.run_expanded(&mats[j % copies], &xq, 0..kern.groups(), &mut out)
                        .unwrap();
                }
                res[i].push((iters * w.bytes().len()) as f64 / t.elapsed().as_secs_f64() / 1e9);
            }
        }
        for (i, v) in res.iter_mut().enumerate() {
            v.sort_by(|a, b| a.total_cmp(b));
            println!(
                "M={m} copies={copies} streams={} unroll={}: {:.1} GB/s (1 thread)",
                variants[i].0, variants[i].1, v[2]
            );
        }
    }
}
