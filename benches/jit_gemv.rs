//! Decode GEMV (one token, ternary × int8) at BitNet b1.58 2B4T and large-preset shapes: the
//! Cranelift JIT kernel against the reference backend's `ternary_linear`, with a plain
//! read-bandwidth probe (sum of a large u64 buffer) in the same run as the ceiling. Throughput is
//! bytes of packed weights (2 bits per weight) per second.
//!
//! The JIT weights are rotated over copies totalling more than the last-level cache (480 MiB on
//! the machine this was tuned on), so they stream from memory as in a real decode step; the
//! timed step includes the activation expansion and the f32 epilogue, like `ternary_linear`.
//! 1 thread, and 2 threads (rayon pools built once, outside the timed loop).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitnetc::bench::bandwidth::sum_stream;
use bitnetc_codegen::cpu::{
    epilogue, ExpandedActivations, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout,
    RepackedMatrix,
};
use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_models::quant::i2s;
use bitnetc_runtime::reference::numerics::quantize_row;
use bitnetc_runtime::reference::ternary_linear;
use bitnetc_runtime::reference::weights::TernaryMatrix;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;

/// Bytes of weights the JIT benchmark rotates over (above the 480 MiB L3).
const ROTATION_BYTES: usize = 768 << 20;
/// Size of the bandwidth probe buffer.
const PROBE_BYTES: usize = 1 << 30;

/// `(K, M)`: the 2B4T layers (q/o, k/v, gate/up, down), then the large preset's (1536 wide).
const SHAPES: [(usize, usize); 7] = [
    (2560, 2560),
    (2560, 640),
    (2560, 6912),
    (6912, 2560),
    (1536, 1536),
    (1536, 4096),
    (4096, 1536),
];

fn pools() -> Vec<(usize, rayon::ThreadPool)> {
    [1usize, 2]
        .into_iter()
        .map(|t| {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("thread pool");
            (t, p)
        })
        .collect()
}

fn i2s_weight(k: usize, m: usize) -> Weight {
    let codes: Vec<u8> = (0..k * m)
        .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
        .collect();
    Weight {
        name: "bench".into(),
        dtype: DType::I2S,
        dims: vec![k as u64, m as u64],
        data: WeightBytes::owned(i2s::encode(&codes, 0.7)),
    }
}

fn activations(k: usize) -> Vec<f32> {
    (0..k)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect()
}

fn bandwidth_probe(c: &mut Criterion) {
    let buf: Vec<u64> = (0..PROBE_BYTES / 8).map(|i| i as u64).collect();
    let mut g = c.benchmark_group("read_bandwidth");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(PROBE_BYTES as u64));
    for (t, pool) in pools() {
        // 8 far-apart streams per thread, like the kernels' row-group streams: more requests in
        // flight than one sequential stream gets from the prefetchers.
        g.bench_function(format!("sum8_u64_{t}t"), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let s: u64 = buf
                            .par_chunks(buf.len() / t)
                            .map(|c| {
                                let n = c.len() / 8;
                                let mut acc = [0u64; 8];
                                for i in 0..n {
                                    for (j, a) in acc.iter_mut().enumerate() {
                                        *a = a.wrapping_add(c[j * n + i]);
                                    }
                                }
                                acc.iter().fold(0u64, |x, &y| x.wrapping_add(y))
                            })
                            .sum();
                        black_box(s);
                    }
                    start.elapsed()
                })
            })
        });
        g.bench_function(format!("sum_u64_{t}t"), |b| {
            b.iter_custom(|iters| {
                pool.install(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let s: u64 = buf.par_chunks(buf.len() / t).map(sum_stream).sum();
                        black_box(s);
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn jit_gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("jit_gemv");
    g.sample_size(20);
    let pools = pools();
    for (k, m) in SHAPES {
        let w = i2s_weight(k, m);
        let repacked = RepackedMatrix::from_weight(&w, Layout::default()).expect("repack");
        let kern = GemvKernel::compile(
            &GemvShape::of(&repacked),
            &GemvParams::default(),
            IsaLevel::Native,
        )
        .expect("compile");
        let copies = (ROTATION_BYTES / repacked.bytes().len()).max(1);
        let mats: Vec<RepackedMatrix> = (0..copies).map(|_| repacked.clone()).collect();
        let x = activations(k);
        let row = quantize_row(&x);
        let mut xq = ExpandedActivations::with_len(k);
        let mut acc = vec![0i32; m];
        let mut y = vec![0f32; m];
        // The JIT path (kernel + epilogue) must give the reference's outputs bit for bit.
        xq.fill(&row.q);
        kern.run_parallel(&repacked, &xq, &mut acc, 1).expect("run");
        epilogue(&repacked, &acc, xq.sum, row.scale, &mut y);
        let tm = TernaryMatrix::new(&w).expect("ternary");
        let want = ternary_linear(&tm, std::slice::from_ref(&row), None).expect("reference");
        assert!(
            y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
            "JIT GEMV differs from the reference at {m}x{k}"
        );
        g.throughput(Throughput::Bytes((k * m / 4) as u64));
        for (t, pool) in &pools {
            let mut next = 0usize;
            g.bench_function(format!("i2_s_{m}x{k}_{t}t"), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let wm = &mats[next];
                            next = (next + 1) % copies;
                            xq.fill(&row.q);
                            kern.run_parallel(wm, &xq, &mut acc, *t).expect("run");
                            epilogue(wm, &acc, xq.sum, row.scale, &mut y);
                            black_box(&y);
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

fn reference_gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference_gemv");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    let pools = pools();
    for (k, m) in SHAPES {
        let w = i2s_weight(k, m);
        let tm = TernaryMatrix::new(&w).expect("ternary");
        let q = vec![quantize_row(&activations(k))];
        g.throughput(Throughput::Bytes((k * m / 4) as u64));
        for (t, pool) in &pools {
            g.bench_function(format!("i2_s_{m}x{k}_{t}t"), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(ternary_linear(&tm, &q, None).expect("reference"));
                        }
                        start.elapsed()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bandwidth_probe, jit_gemv, reference_gemv);
criterion_main!(benches);
