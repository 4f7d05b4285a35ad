//! bitnetc: a compiler and runtime for ternary (BitNet b1.58) language models.
//!
//! The crates of the workspace each do one job — `bitnetc_models` reads GGUF files and lowers
//! them to the IR (`bitnetc_ir`), `bitnetc_codegen` generates kernels, `bitnetc_tune` tunes
//! them, `bitnetc_runtime` executes the IR — and this crate puts them together: [`Engine`]
//! loads a model (a GGUF or an [`artifact`]) once and runs generations on it.
//!
//! Load once, share between threads, one session (KV cache) per conversation, tokens streamed
//! to a callback that can stop the generation, logits on demand:
//!
//! ```
//! use bitnetc::{Engine, EngineOptions, GenerateRequest};
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("tiny.gguf");
//! # {
//! #     use bitnetc::models::synth::{synthesize, Preset, SynthOptions};
//! #     let preset = Preset::from_name("tiny").unwrap();
//! #     let opts = SynthOptions {
//! #         arch: "bitnet-b1.58".into(),
//! #         preset,
//! #         ternary_type: bitnetc::ir::DType::I2S,
//! #         embedding_type: bitnetc::ir::DType::F16,
//! #         tokenizer: bitnetc::models::tokenizer::builtin::byte_level_bpe_spec(preset.n_vocab(), 600)?,
//! #         seed: 1,
//! #     };
//! #     synthesize(&opts)?.write_to(&mut std::fs::File::create(&path)?)?;
//! # }
//! let engine = Engine::load(&path, &EngineOptions::default())?;
//! let prompt = engine.tokenize("Hello", true);
//!
//! std::thread::scope(|s| {
//!     for _ in 0..2 {
//!         s.spawn(|| {
//!             let mut session = engine.new_session(64);
//!             let req = GenerateRequest::greedy(prompt.clone(), 8);
//!             let mut streamed = 0;
//!             let out = engine
//!                 .generate(&mut session, &req, |_id| {
//!                     streamed += 1;
//!                     streamed < 5 // stop after five tokens
//!                 })
//!                 .unwrap();
//!             assert_eq!(out.generated_ids.len(), 5);
//!             println!("{}", engine.model().tokenizer.decode(&out.generated_ids));
//!         });
//!     }
//! });
//!
//! let mut session = engine.new_session(64);
//! let logits = engine.forward(&mut session, &prompt, bitnetc::runtime::LogitsFor::Last)?;
//! assert_eq!(logits.len(), engine.model().config.n_vocab as usize);
//! # Ok::<(), anyhow::Error>(())
//! ```
pub mod artifact;
pub mod bench;
pub mod engine;

pub use bitnetc_ir as ir;
pub use bitnetc_models as models;
pub use bitnetc_runtime as runtime;
pub use bitnetc_tune as tune;
pub use engine::{
    BackendKind, Engine, EngineOptions, GenerateRequest, GenerateResult, KernelUse, Timings,
    TuningSource,
};
