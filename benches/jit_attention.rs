//! Attention over the KV cache at the BitNet b1.58 2B4T shape (20 query heads, 5 KV heads of
//! 128, each head's rows consecutive in the cache): the generated scores and weighted-sum kernels (softmax in Rust
//! between them, (token, head) pairs over the worker pool) against the reference backend's
//! `attention` (rayon over heads), for one decoding token and for a 16-token prompt block at
//! 512 and 2048 cached positions, on 1 and 2 threads. Throughput is KV-cache bytes read.

use std::hint::black_box;
use std::time::Duration;

use bitnetc_codegen::cpu::{IsaLevel, Target, WorkerPool};
use bitnetc_runtime::jit::attention::{run, AttentionPlan, ScoreRows};
use bitnetc_runtime::kv_cache::KvCache;
use bitnetc_runtime::reference::{attention, AttentionShape};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SHAPE: AttentionShape = AttentionShape {
    n_head: 20,
    n_head_kv: 5,
    head_dim: 128,
};
const KV_WIDTH: usize = 640;

fn filled_cache(positions: usize) -> KvCache {
    let mut kv = KvCache::new(1, KV_WIDTH, SHAPE.head_dim, positions);
    let k: Vec<f32> = (0..positions * KV_WIDTH)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
        .collect();
    let v: Vec<f32> = (0..positions * KV_WIDTH)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
        .collect();
    kv.append(0, &k, &v).expect("room for every position");
    kv.advance(positions);
    kv
}

fn attention_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(500));
    let target = Target::host(IsaLevel::Native).expect("host");
    let default = (Default::default(), bitnetc_tune::ParamSource::Default);
    let AttentionPlan::Generated(kernels, _) = AttentionPlan::build(
        SHAPE.head_dim,
        SHAPE.n_head / SHAPE.n_head_kv,
        &target,
        default,
    )
    .expect("compile") else {
        panic!("the 2B4T head shape must get generated kernels");
    };
    for positions in [512usize, 2048] {
        let kv = filled_cache(positions);
        for queries in [1usize, 16] {
            let n_past = positions - queries;
            let q: Vec<f32> = (0..queries * SHAPE.n_head * SHAPE.head_dim)
                .map(|i| ((i * 29 % 89) as f32 - 44.0) / 50.0)
                .collect();
            let want = attention(&kv, 0, &q, n_past, SHAPE);
            let one = WorkerPool::new(1).expect("workers");
            let mut got = vec![0.0f32; q.len()];
            run(
                &kernels,
                &kv,
                0,
                &q,
                n_past,
                SHAPE,
                &one,
                &mut ScoreRows::default(),
                &mut got,
            )
            .expect("jit");
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "generated attention differs from the reference"
            );
            // Keys and values of every position, read once per query token and KV head group.
            let bytes = queries * SHAPE.n_head * positions * SHAPE.head_dim * 2 * 4;
            g.throughput(Throughput::Bytes(bytes as u64));
            for t in [1usize, 2] {
                let pool = WorkerPool::new(t).expect("workers");
                let rp = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .expect("pool");
                let name = format!("ctx{positions}_q{queries}_{t}t");
                let mut scores = ScoreRows::default();
                g.bench_function(format!("jit_{name}"), |b| {
                    b.iter(|| {
                        run(
                            &kernels,
                            &kv,
                            0,
                            &q,
                            n_past,
                            SHAPE,
                            &pool,
                            &mut scores,
                            &mut got,
                        )
                        .expect("jit");
                        black_box(&got);
                    })
                });
                g.bench_function(format!("reference_{name}"), |b| {
                    b.iter(|| rp.install(|| black_box(attention(&kv, 0, &q, n_past, SHAPE))))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, attention_bench);
criterion_main!(benches);
