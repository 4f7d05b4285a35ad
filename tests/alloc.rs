//! The JIT backend plans its buffers once per sequence: after the first passes of a batch size
//! (which size the session's scratch and the kernels' per-thread buffers; the KV cache reserves
//! its room up front), a forward pass allocates only a few blocks — the logits it returns and
//! the head's prepared input — not one per op (the tiny model has ~40 ops).
//!
//! Counted with a global allocator, so this binary holds this one test (a test running beside
//! it would be counted too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bitnetc::ir::DType;
use bitnetc::models::synth::{synthesize, Preset, SynthOptions};
use bitnetc::models::tokenizer::builtin::byte_level_bpe_spec;
use bitnetc::runtime::LogitsFor;
use bitnetc::{BackendKind, Engine, EngineOptions, TuningSource};

/// The system allocator, counting allocations and reallocations.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn write_model(path: &Path) {
    let preset = Preset::from_name("tiny").unwrap();
    let opts = SynthOptions {
        arch: "bitnet-b1.58".into(),
        preset,
        ternary_type: DType::I2S,
        embedding_type: DType::F16,
        tokenizer: byte_level_bpe_spec(preset.n_vocab(), 600).unwrap(),
        seed: 5,
    };
    let file = synthesize(&opts).unwrap();
    file.write_to(&mut std::fs::File::create(path).unwrap())
        .unwrap();
}

/// Allocations per pass of `batch` tokens, counted over 4 passes after 3 of warm-up.
fn allocations_per_pass(path: &Path, threads: usize, batch: usize) -> usize {
    let opts = EngineOptions {
        threads,
        backend: BackendKind::Jit,
        tuning: TuningSource::Off,
        ..EngineOptions::default()
    };
    let engine = Engine::load(path, &opts).unwrap();
    let mut session = engine.new_session(256);
    let tokens: Vec<u32> = (0..batch as u32).map(|i| 3 + 5 * i).collect();
    engine
        .forward(&mut session, &[1, 2, 3, 4, 5, 6], LogitsFor::Last)
        .unwrap();
    for _ in 0..3 {
        engine
            .forward(&mut session, &tokens, LogitsFor::Last)
            .unwrap();
    }
    let before = ALLOCATIONS.load(Relaxed);
    for _ in 0..4 {
        let logits = engine
            .forward(&mut session, &tokens, LogitsFor::Last)
            .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
    }
    (ALLOCATIONS.load(Relaxed) - before) / 4
}

#[test]
fn jit_passes_allocate_only_a_few_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_model(&path);
    for threads in [1, 2] {
        for batch in [1, 3, 16] {
            let n = allocations_per_pass(&path, threads, batch);
            eprintln!("threads {threads}, batches of {batch}: {n} allocations per pass");
            assert!(
                n <= 2,
                "{threads} threads, batches of {batch}: {n} allocations per pass (at most 2: \
                 the logits and the head's prepared input)"
            );
        }
    }
}
