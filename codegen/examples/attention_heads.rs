//! Attention kernels with 1 and with 4 query heads per call (grouped-query attention sharing
//! each key and value load), timed alternately in one process over a 2B4T-shaped layer
//! (20 query heads, 5 KV heads of 128, KV rows of 640 floats), one thread.
//!
//! `cargo run --release -p bitnetc-codegen --example attention_heads [POSITIONS...]`

use std::time::Instant;

use bitnetc_codegen::cpu::attention::{AttentionKernels, AttentionParams, AttentionShape};
use bitnetc_codegen::cpu::IsaLevel;

const D: usize = 128;
const STRIDE: usize = 640;
const N_HEAD: usize = 20;
const GROUP: usize = 4;

/// Median nanoseconds of one layer (all heads: scores then weighted sum) with `k`.
fn time_layer(k: &AttentionKernels, q: &[f32], kv: &[f32], p: &[f32], n: usize) -> f64 {
    let heads = k.info().shape.heads;
    let mut s = vec![0.0f32; heads * n];
    let mut o = vec![0.0f32; heads * D];
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for block in 0..N_HEAD / heads {
                let h = block * heads;
                let off = (h / GROUP) * D;
                k.scores(&q[h * D..(h + heads) * D], &kv[off..], &mut s)
                    .expect("scores");
                k.weighted_sum(&p[..heads * n], &kv[off..], &mut o)
                    .expect("weighted sum");
            }
            std::hint::black_box(&o);
            t.elapsed().as_nanos() as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let positions: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let positions = if positions.is_empty() {
        vec![512, 2048]
    } else {
        positions
    };
    let kernels: Vec<AttentionKernels> = [1, GROUP]
        .iter()
        .map(|&heads| {
            let shape = AttentionShape {
                head_dim: D,
                stride: STRIDE,
                scale: 1.0 / (D as f32).sqrt(),
                heads,
            };
            AttentionKernels::compile(&shape, &AttentionParams::default(), IsaLevel::Native)
                .expect("compile")
        })
        .collect();
    let q: Vec<f32> = (0..N_HEAD * D).map(|i| (i % 13) as f32 / 13.0).collect();
    for n in positions {
        let kv: Vec<f32> = (0..n * STRIDE).map(|i| (i % 17) as f32 / 17.0).collect();
        let p: Vec<f32> = (0..GROUP * n).map(|i| (i % 7) as f32 / 700.0).collect();
        let mut ratios = Vec::new();
        for round in 0..5 {
            let one = time_layer(&kernels[0], &q, &kv, &p, n);
            let four = time_layer(&kernels[1], &q, &kv, &p, n);
            ratios.push(one / four);
            println!(
                "positions {n} round {round}: 1 head/call {:.0} µs, {GROUP} heads/call {:.0} µs, \
                 speed-up {:.2}x",
                one / 1e3,
                four / 1e3,
                one / four
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!("positions {n}: median speed-up {:.2}x", ratios[2]);
    }
}
