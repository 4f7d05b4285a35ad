//! Autotuning for bitnetc's generated kernels.
//!
//! The kernel generators in `bitnetc-codegen` take plain parameters (weight layout, memory
//! streams, unroll, tokens per prompt block, head rows per block). This crate finds good values
//! for one host and keeps them:
//!
//! * [`fingerprint`]: what identifies a platform (CPU model, ISA features, cores).
//! * [`params`]: kernel identities ([`KernelKey`]) and their tunable values ([`TunedParams`]),
//!   with the documented heuristic defaults.
//! * [`space`]: the values each parameter may take.
//! * [`search`]: coordinate descent from the default, under a deadline.
//! * [`measure`]: runs candidates on realistic buffers, checks each output against a scalar
//!   reference, and times them (warm-up, repetitions, median).
//! * [`cache`]: the per-platform JSON file, read defensively and written atomically under a
//!   lock.
//! * [`tuner`]: ties these together for one kernel.

pub mod cache;
pub mod fingerprint;
pub mod measure;
pub mod params;
pub mod search;
pub mod space;
pub mod tuner;

pub use cache::{CacheEntry, TuneCache};
pub use fingerprint::HostFingerprint;
pub use params::{KernelKey, KernelKind, ParamSource, TunedParams};
pub use tuner::{tune_kernel, TuneOutcome};

/// Why tuning or the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Generating or running a kernel failed.
    #[error(transparent)]
    Codegen(#[from] bitnetc_codegen::CodegenError),
    /// Reading or writing the cache.
    #[error("tune cache {path}: {problem}")]
    Cache {
        /// The file or folder.
        path: std::path::PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A candidate computed a wrong result (it is never allowed to win).
    #[error("candidate {params} of {kernel} computed a wrong result: {problem}")]
    Mismatch {
        /// Kernel id.
        kernel: String,
        /// The parameters.
        params: String,
        /// First difference.
        problem: String,
    },
    /// Bad request (e.g. a shape the harness cannot take).
    #[error("{0}")]
    Invalid(String),
}
