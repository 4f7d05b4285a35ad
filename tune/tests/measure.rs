//! The measurement harnesses and the tuner on small real kernels.

use std::time::{Duration, Instant};

use bitnetc_codegen::cpu::head::HeadFormat;
use bitnetc_codegen::cpu::{IsaLevel, Layout, Target};
use bitnetc_tune::measure::{HeadHarness, TernaryHarness};
use bitnetc_tune::{tune_kernel, KernelKey, KernelKind, TunedParams};

fn key(kind: KernelKind, k: usize, m: usize) -> KernelKey {
    KernelKey {
        kind,
        isa: "native".into(),
        k,
        m,
        format: "ternary".into(),
        threads: 2,
    }
}

#[test]
fn every_gemv_and_gemm_candidate_is_verified_and_timed() {
    let target = Target::host(IsaLevel::Native).unwrap();
    let mut h = TernaryHarness::new(256, 77, 2, target).unwrap();
    for p in [
        TunedParams::default_for(KernelKind::Gemv),
        TunedParams::Gemv {
            pack: bitnetc_tune::params::PackName::Rows4cols16,
            rows_per_group: 8,
            streams: 3,
            unroll: 4,
        },
    ] {
        let ns = h.measure_gemv(&p).unwrap();
        assert!(ns > 0.0 && ns.is_finite());
    }
    for tokens in [2, 3, 8] {
        let p = TunedParams::Gemm {
            tokens,
            streams: 2,
            unroll: 2,
        };
        let ns = h.measure_gemm(&p, Layout::rows16(32)).unwrap();
        assert!(ns > 0.0 && ns.is_finite());
    }
    // A head candidate is not a GEMV one.
    assert!(h
        .measure_gemv(&TunedParams::default_for(KernelKind::Head))
        .is_err());
}

#[test]
fn tuning_keeps_the_default_unless_a_winner_beats_it() {
    let target = Target::host(IsaLevel::Native).unwrap();
    let mut h = TernaryHarness::new(512, 300, 2, target).unwrap();
    let k = key(KernelKind::Gemv, 512, 300);
    let mut warnings = Vec::new();
    let out = tune_kernel(
        &k,
        Instant::now() + Duration::from_secs(3),
        &mut |p| h.measure_gemv(p),
        &mut |w| warnings.push(w),
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(out.entry.candidates >= 1);
    assert!(out.entry.params.is_valid());
    if out.entry.params == out.default {
        assert_eq!(out.entry.tuned_ns, out.entry.default_ns);
    } else {
        assert!(out.entry.tuned_ns < out.entry.default_ns);
    }
}

#[test]
fn a_wrong_candidate_never_wins() {
    // A measure function that reports a wrong result for every non-default candidate, and
    // makes them look fast: the default must stay.
    let k = key(KernelKind::Head, 64, 64);
    let default = TunedParams::default_for(KernelKind::Head);
    let mut warnings = Vec::new();
    let out = tune_kernel(
        &k,
        Instant::now() + Duration::from_secs(5),
        &mut |p| {
            if *p == default {
                Ok(100.0)
            } else {
                Err(bitnetc_tune::TuneError::Mismatch {
                    kernel: "head".into(),
                    params: p.to_string(),
                    problem: "row 0".into(),
                })
            }
        },
        &mut |w| warnings.push(w),
    )
    .unwrap();
    assert_eq!(out.entry.params, default);
    assert!(!warnings.is_empty());
}

#[test]
fn head_candidates_are_checked_against_the_table() {
    let (k, rows) = (64usize, 203usize);
    let table: Vec<u8> = (0..k * rows)
        .flat_map(|i| half::f16::from_f32(((i * 37 % 101) as f32 - 50.0) / 64.0).to_le_bytes())
        .collect();
    let target = Target::host(IsaLevel::Native).unwrap();
    let h = HeadHarness::new(&table, k, rows, HeadFormat::F16 { finite: true }, 2, target).unwrap();
    for (r, u) in [(1, 1), (3, 2), (4, 8), (8, 2)] {
        let ns = h
            .measure(&TunedParams::Head { rows: r, unroll: u })
            .unwrap();
        assert!(ns > 0.0);
    }
    // A table of the wrong size is refused.
    let target = Target::host(IsaLevel::Native).unwrap();
    assert!(HeadHarness::new(&table[2..], k, rows, HeadFormat::BF16, 1, target).is_err());
}

/// Q6_K heads: the harness repacks the file's rows, checks each candidate's logits bit for bit
/// against Q6_K × Q8_K computed from the file's blocks, and times them; tables of the wrong
/// size or K are refused.
#[test]
fn q6k_head_candidates_are_checked_against_the_file_blocks() {
    use rand::{Rng, SeedableRng};
    let (k, rows) = (512usize, 45usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
    let row_bytes = k / 256 * 210;
    let mut table = vec![0u8; rows * row_bytes];
    for r in 0..rows {
        let w: Vec<f32> = (0..k).map(|_| rng.gen_range(-0.1f32..0.1)).collect();
        bitnetc_models::quant::q6_k::quantize_row(&w, &mut table[r * row_bytes..][..row_bytes])
            .unwrap();
    }
    let target = Target::host(IsaLevel::Native).unwrap();
    let h = HeadHarness::new(&table, k, rows, HeadFormat::Q6K, 2, target.clone()).unwrap();
    for r in [1, 3, 8] {
        let ns = h
            .measure(&TunedParams::Head { rows: r, unroll: 1 })
            .unwrap();
        assert!(ns > 0.0);
    }
    assert!(HeadHarness::new(&table[1..], k, rows, HeadFormat::Q6K, 2, target.clone()).is_err());
    assert!(HeadHarness::new(&table, 256, 2 * rows, HeadFormat::Q6K, 2, target.clone()).is_ok());
    assert!(HeadHarness::new(&table, 264, rows, HeadFormat::Q6K, 2, target).is_err());
}

/// Q8_0 heads likewise: repacked by the harness, every candidate checked bit for bit against
/// Q8_0 × Q8_0 computed from the file's blocks.
#[test]
fn q8_0_head_candidates_are_checked_against_the_file_blocks() {
    use rand::{Rng, SeedableRng};
    let (k, rows) = (160usize, 37usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(43);
    let row_bytes = k / 32 * 34;
    let mut table = vec![0u8; rows * row_bytes];
    for r in 0..rows {
        let w: Vec<f32> = (0..k).map(|_| rng.gen_range(-0.1f32..0.1)).collect();
        bitnetc_models::quant::q8_0::quantize_row(&w, &mut table[r * row_bytes..][..row_bytes])
            .unwrap();
    }
    let target = Target::host(IsaLevel::Native).unwrap();
    let h = HeadHarness::new(&table, k, rows, HeadFormat::Q8_0, 2, target.clone()).unwrap();
    for r in [1, 3, 8] {
        let ns = h
            .measure(&TunedParams::Head { rows: r, unroll: 1 })
            .unwrap();
        assert!(ns > 0.0);
    }
    assert!(HeadHarness::new(&table[1..], k, rows, HeadFormat::Q8_0, 2, target.clone()).is_err());
    assert!(HeadHarness::new(&table, 168, rows, HeadFormat::Q8_0, 2, target).is_err());
}

#[test]
fn attention_candidates_are_checked_and_timed() {
    use bitnetc_tune::measure::AttentionHarness;
    let target = Target::host(IsaLevel::Native).unwrap();
    let h = AttentionHarness::new(64, 8, 4, 100, 2, target).unwrap();
    for (rows, cols) in [(2, 8), (1, 1), (4, 16), (3, 4)] {
        let ns = h.measure(&TunedParams::Attention { rows, cols }).unwrap();
        assert!(ns > 0.0 && ns.is_finite());
    }
    // Query heads that the KV heads do not divide are refused.
    let target = Target::host(IsaLevel::Native).unwrap();
    assert!(AttentionHarness::new(64, 8, 3, 10, 1, target).is_err());
}
