//! Prompt processing of one ternary linear layer (64 tokens, ternary × int8) at BitNet b1.58
//! 2B4T shapes: the token-blocked JIT GEMM (4 tokens per call) against the JIT with one GEMV per
//! token and against the reference backend's `ternary_linear`, all through the same entry point
//! the runtime uses (`LinearPlan::run`, activation expansion and epilogue included), on 1 and 2
//! threads. Throughput is tokens per second. The weights stay in cache across the token blocks,
//! as one layer's do while a prompt goes through it.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bitnetc_codegen::cpu::{GemvKernel, GemvParams, GemvShape, IsaLevel, Layout, WorkerPool};
use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_models::quant::i2s;
use bitnetc_runtime::jit::linear::LinearPlan;
use bitnetc_runtime::reference::numerics::{quantize_row, QuantizedRow};
use bitnetc_runtime::reference::ternary_linear;
use bitnetc_runtime::reference::weights::TernaryMatrix;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const TOKENS: usize = 64;
/// `(K, M)`: the 2B4T layers (q/o, k/v, gate/up, down).
const SHAPES: [(usize, usize); 4] = [(2560, 2560), (2560, 640), (2560, 6912), (6912, 2560)];

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

fn rows(k: usize) -> Vec<QuantizedRow> {
    (0..TOKENS)
        .map(|t| {
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 37 + t * 11) % 101) as f32 / 7.0 - 7.0)
                .collect();
            quantize_row(&x)
        })
        .collect()
}

fn plan(w: &Weight, prompt: bool) -> LinearPlan {
    let matrix = LinearPlan::repack(w, Layout::default()).expect("repack");
    let shape = GemvShape::of(&matrix);
    let kernel = Arc::new(
        GemvKernel::compile(&shape, &GemvParams::default(), IsaLevel::Native).expect("gemv"),
    );
    let prompt = prompt.then(|| {
        Arc::new(
            GemvKernel::compile(&shape, &GemvParams::prompt_default(4), IsaLevel::Native)
                .expect("gemm"),
        )
    });
    LinearPlan::Generated {
        matrix,
        kernel,
        prompt,
    }
}

fn prompt_gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("prompt_linear");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(TOKENS as u64));
    let pools: Vec<(usize, WorkerPool)> = [1, 2]
        .into_iter()
        .map(|t| (t, WorkerPool::new(t).expect("workers")))
        .collect();
    let rayon_pools: Vec<rayon::ThreadPool> = [1, 2]
        .into_iter()
        .map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("pool")
        })
        .collect();
    for (k, m) in SHAPES {
        let w = i2s_weight(k, m);
        let x = rows(k);
        let tm = TernaryMatrix::new(&w).expect("ternary");
        let want = ternary_linear(&tm, &x, None).expect("reference");
        let blocked = plan(&w, true);
        let single = plan(&w, false);
        let mut got = vec![0.0f32; want.len()];
        for p in [&blocked, &single] {
            p.run(&w, &x, None, &pools[0].1, &mut got).expect("jit");
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "JIT prompt linear differs from the reference at {m}x{k}"
            );
        }
        for ((t, pool), rp) in pools.iter().zip(&rayon_pools) {
            g.bench_function(format!("jit_gemm_t4_{m}x{k}_{t}t"), |b| {
                b.iter(|| {
                    blocked.run(&w, &x, None, pool, &mut got).expect("jit");
                    black_box(&got);
                })
            });
            g.bench_function(format!("jit_gemv_per_token_{m}x{k}_{t}t"), |b| {
                b.iter(|| {
                    single.run(&w, &x, None, pool, &mut got).expect("jit");
                    black_box(&got);
                })
            });
            g.bench_function(format!("reference_{m}x{k}_{t}t"), |b| {
                b.iter(|| rp.install(|| black_box(ternary_linear(&tm, &x, None).expect("ref"))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, prompt_gemm);
criterion_main!(benches);
