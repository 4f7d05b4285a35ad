//! bitnetc: a compiler and runtime for ternary (BitNet b1.58) language models.
//!
//! The crates of the workspace each do one job — `bitnetc_models` reads GGUF files and lowers
//! them to the IR (`bitnetc_ir`), `bitnetc_runtime` executes the IR — and this crate puts them
//! together: [`Engine`] loads a model once and runs generations on it.
//!
//! ```no_run
//! use bitnetc::{Engine, EngineOptions, GenerateRequest};
//! let engine = Engine::load("model.gguf", &EngineOptions::default())?;
//! let prompt = engine.tokenize("Hello", true);
//! let mut session = engine.new_session(256);
//! let out = engine.generate(&mut session, &GenerateRequest::greedy(prompt, 16), |_id| true)?;
//! println!("{}", engine.model().tokenizer.decode(&out.generated_ids));
//! # Ok::<(), anyhow::Error>(())
//! ```
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
