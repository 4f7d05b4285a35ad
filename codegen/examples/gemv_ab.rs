//! Alternating A/B comparison of a few GEMV variants at the 2B4T decode shapes (weights rotated
//! over ~1 GiB of copies, so they stream from memory): median GB/s of 7 rounds per variant and
//! its ratio to the first (the default), measured in the same run.
//!
//! `[VARIANTS=16:4x2,16:4x8] cargo run --release -p bitnetc-codegen --example gemv_ab -- [threads]`

use std::time::Instant;

use bitnetc_codegen::cpu::{
    ExpandedActivations, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout, RepackedMatrix,
};

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(2, |a| a.parse().unwrap());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    // VARIANTS=R:SxU,... (rows per group, streams, unroll) replaces the built-in list.
    let from_env: Option<Vec<(Layout, usize, usize)>> = std::env::var("VARIANTS").ok().map(|v| {
        v.split(',')
            .map(|s| {
                let (r, su) = s.split_once(':').expect("VARIANTS entries are R:SxU");
                let (st, u) = su.split_once('x').expect("VARIANTS entries are R:SxU");
                let n = |x: &str| x.parse::<usize>().expect("a number");
                (Layout::rows16(n(r)), n(st), n(u))
            })
            .collect()
    });
    let variants: Vec<(Layout, usize, usize)> = from_env.unwrap_or_else(|| {
        vec![
            (
                Layout::default(),
                GemvParams::default().streams,
                GemvParams::default().unroll,
            ),
            (Layout::rows16(16), 4, 2),
            (Layout::rows16(16), 2, 2),
            (Layout::rows16(32), 2, 2),
            (Layout::rows16(32), 4, 2),
        ]
    });
    for (k, m) in [
        (2560usize, 2560usize),
        (2560, 6912),
        (6912, 2560),
        (2560, 640),
    ] {
        let codes: Vec<u8> = (0..k * m)
            .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
            .collect();
        let q: Vec<i8> = (0..k).map(|i| (i * 37 % 251) as i8).collect();
        let xq = ExpandedActivations::new(&q);
        let mut out = vec![0i32; m];
        let built: Vec<(Vec<RepackedMatrix>, GemvKernel)> = variants
            .iter()
            .map(|&(layout, streams, unroll)| {
                let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, layout).unwrap();
                let copies = ((1usize << 30) / w.bytes().len()).max(1);
                let p = GemvParams {
                    streams,
                    unroll,
                    ..GemvParams::default()
                };
                let kern = GemvKernel::compile(&GemvShape::of(&w), &p, IsaLevel::Native).unwrap();
                ((0..copies).map(|_| w.clone()).collect(), kern)
            })
            .collect();
        let mut gbs = vec![Vec::new(); variants.len()];
        for _round in 0..7 {
            for (i, (mats, kern)) in built.iter().enumerate() {
                let iters = mats.len() * 2;
                let el = pool.install(|| {
                    let t = Instant::now();
                    for j in 0..iters {
                        kern.run_parallel(&mats[j % mats.len()], &xq, &mut out, threads)
                            .unwrap();
                    }
                    t.elapsed().as_secs_f64()
                });
                gbs[i].push((iters * mats[0].bytes().len()) as f64 / el / 1e9);
            }
        }
        let med: Vec<f64> = gbs
            .iter_mut()
            .map(|v| {
                v.sort_by(|a, b| a.total_cmp(b));
                v[3]
            })
            .collect();
        for (i, &(layout, s, u)) in variants.iter().enumerate() {
            println!(
                "{k}x{m} rows{}/{:?} streams={s} unroll={u}: {:.1} GB/s ({:.2}x)",
                layout.rows_per_group,
                layout.pack,
                med[i],
                med[i] / med[0]
            );
        }
    }
}
