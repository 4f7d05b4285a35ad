//! Kernel generators for bitnetc: kernels specialized on the model's shapes and the host's
//! instruction set, built as Cranelift IR and JIT-compiled at load time.
//!
//! * [`cpu::isa`]: host detection and targets limited to an [`cpu::IsaLevel`].
//! * [`cpu::repack`]: ternary weights repacked into the layout the kernels read.
//! * [`cpu::gemv`]: the ternary × int8 GEMV generator (one token for decode, or a block of
//!   tokens for prompts).
//! * [`cpu::head`]: the F16/BF16 output-head generator.
//! * [`cpu::pool`]: the persistent worker pool the kernels run on.
//! * [`cuda`]: CUDA C sources generated per model shape for the GPU backend (compiled at run
//!   time with NVRTC by the runtime; nothing here needs CUDA).

pub mod cpu;
pub mod cuda;

/// Why a kernel could not be generated or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// Target construction or ISA level problem (e.g. a level above the host).
    #[error("ISA: {0}")]
    Isa(String),
    /// Cranelift failed to compile or link a function.
    #[error("compile: {0}")]
    Compile(String),
    /// A weight could not be read or repacked.
    #[error("weight {name}: {problem}")]
    Weight {
        /// Weight name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A shape, parameter or layout the generators do not handle (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Buffers or shapes that do not match the kernel.
    #[error("shape: {0}")]
    Shape(String),
    /// Worker threads could not be started.
    #[error("cannot start {threads} worker threads: {problem}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The operating system's answer.
        problem: String,
    },
}
