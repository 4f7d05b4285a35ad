//! Throughput of the reference backend's kernels at BitNet b1.58 2B4T shapes. The reference is
//! the correctness oracle, not a fast path; these figures are the floor generated kernels start
//! from.

use bitnetc_ir::{DType, Weight, WeightBytes};
use bitnetc_models::quant::i2s;
use bitnetc_runtime::reference::numerics::quantize_row;
use bitnetc_runtime::reference::ternary_linear;
use bitnetc_runtime::reference::weights::TernaryMatrix;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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

fn decode_gemv(c: &mut Criterion) {
    let mut g = c.benchmark_group("reference_ternary_gemv");
    g.sample_size(10);
    for (k, m) in [(2560usize, 2560usize), (2560, 6912), (6912, 2560)] {
        let w = i2s_weight(k, m);
        let x: Vec<f32> = (0..k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let q = vec![quantize_row(&x)];
        let tm = TernaryMatrix::new(&w).unwrap();
        g.throughput(Throughput::Elements((k * m) as u64));
        g.bench_function(format!("i2_s_{m}x{k}"), |b| {
            b.iter(|| ternary_linear(&tm, &q, None).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, decode_gemv);
criterion_main!(benches);
