//! Output head (logits of one token over an F16, a Q6_K or a Q8_0 table) at the BitNet b1.58 2B4T
//! shape (2560 × 128256; 657 MB in F16, 269 MB in Q6_K, 349 MB in Q8_0: none fits in any cache)
//! and the large
//! preset's (1536 × 32002):
//! the generated kernel as the JIT backend runs it (`HeadPlan::run`, rows split across its
//! worker pool)
//! against the reference backend's `output_head`, on 1 and 2 threads. Throughput is table bytes
//! per second; compare with the read-bandwidth probe of `jit_gemv` run on the same machine.

use std::hint::black_box;

use bitnetc_codegen::cpu::head::HeadParams;
use bitnetc_codegen::cpu::WorkerPool;
use bitnetc_codegen::cpu::{IsaLevel, Target};
use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_runtime::jit::head::HeadPlan;
use bitnetc_runtime::reference::output_head;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use half::f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPES: [(&str, usize, usize); 2] = [("2b4t", 2560, 128256), ("large", 1536, 32002)];

fn f16_table(k: usize, rows: usize) -> Weight {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let bytes: Vec<u8> = (0..k * rows)
        .flat_map(|_| {
            f16::from_f32(rng.gen_range(-0.05f32..0.05))
                .to_bits()
                .to_le_bytes()
        })
        .collect();
    Weight {
        name: "token_embd.weight".into(),
        dtype: DType::F16,
        dims: vec![k as u64, rows as u64],
        data: WeightBytes::owned(bytes),
    }
}

/// The same kind of values as [`f16_table`], quantized with the project's Q6_K quantizer.
fn q6k_table(k: usize, rows: usize) -> Weight {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let row_bytes = k / 256 * 210;
    let mut bytes = vec![0u8; row_bytes * rows];
    for row in bytes.chunks_exact_mut(row_bytes) {
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-0.05f32..0.05)).collect();
        bitnetc_models::quant::q6_k::quantize_row(&x, row).expect("q6_k row");
    }
    Weight {
        name: "token_embd.weight".into(),
        dtype: DType::Q6K,
        dims: vec![k as u64, rows as u64],
        data: WeightBytes::owned(bytes),
    }
}

/// The same kind of values as [`f16_table`], quantized with the project's Q8_0 quantizer.
fn q8_0_table(k: usize, rows: usize) -> Weight {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let row_bytes = k / 32 * 34;
    let mut bytes = vec![0u8; row_bytes * rows];
    for row in bytes.chunks_exact_mut(row_bytes) {
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-0.05f32..0.05)).collect();
        bitnetc_models::quant::q8_0::quantize_row(&x, row).expect("q8_0 row");
    }
    Weight {
        name: "token_embd.weight".into(),
        dtype: DType::Q8_0,
        dims: vec![k as u64, rows as u64],
        data: WeightBytes::owned(bytes),
    }
}

fn head(c: &mut Criterion) {
    let target = Target::host(IsaLevel::Native).expect("host target");
    let mut g = c.benchmark_group("output_head");
    g.sample_size(10);
    for (name, k, table) in SHAPES.iter().flat_map(|&(name, k, rows)| {
        [
            (format!("f16/{name}"), k, f16_table(k, rows)),
            (format!("q6_k/{name}"), k, q6k_table(k, rows)),
            (format!("q8_0/{name}"), k, q8_0_table(k, rows)),
        ]
    }) {
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let (plan, _) = HeadPlan::build(&table, &target, |shape| {
            (
                HeadParams::default_for(shape.format),
                bitnetc_tune::ParamSource::Default,
            )
        })
        .expect("head kernel");
        // The two must agree before either is timed.
        assert_eq!(
            plan.run(&table, &[&x], &WorkerPool::new(2).unwrap())
                .unwrap(),
            output_head(&table, &[&x]).unwrap()
        );
        g.throughput(Throughput::Bytes(table.data.bytes().len() as u64));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let workers = WorkerPool::new(threads).expect("workers");
            g.bench_function(format!("jit/{name}/t{threads}"), |b| {
                b.iter(|| black_box(plan.run(&table, &[&x], &workers).unwrap()))
            });
            g.bench_function(format!("reference/{name}/t{threads}"), |b| {
                b.iter(|| pool.install(|| black_box(output_head(&table, &[&x]).unwrap())))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, head);
criterion_main!(benches);
