/// Why a forward pass or a generation step failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The sequence would exceed the KV cache.
    #[error("context full: {needed} positions needed but the context holds {n_ctx} (use a larger --ctx or a shorter prompt)")]
    ContextFull {
        /// Capacity.
        n_ctx: usize,
        /// Positions the request needs.
        needed: usize,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: u32,
    },
    /// A forward pass was asked for no tokens.
    #[error("empty batch: at least one token is needed")]
    EmptyBatch,
    /// A weight could not be decoded.
    #[error("weight '{name}': {problem}")]
    Weight {
        /// Weight name.
        name: String,
        /// What failed.
        problem: String,
    },
    /// The thread pool could not be created.
    #[error("cannot start {threads} worker threads: {problem}")]
    Threads {
        /// Requested count.
        threads: usize,
        /// The OS error.
        problem: String,
    },
    /// The CUDA backend cannot start or run.
    #[error("{0}")]
    Cuda(crate::cuda::CudaError),
    /// A kernel could not be generated, compiled or run.
    #[error("code generation: {0}")]
    Codegen(#[from] bitnetc_codegen::CodegenError),
}
