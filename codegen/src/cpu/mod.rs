//! CPU kernels.

pub mod attention;
pub mod gemv;
pub mod head;
pub mod isa;
pub mod jit;
pub mod pool;
pub mod repack;

pub use gemv::{
    compile_only, epilogue, split_groups, split_part, ternary_output, DotForm, GemvKernel,
    GemvParams, GemvShape, KernelInfo, MAX_TOKENS,
};
pub use isa::{CpuVendor, HostFeatures, IsaLevel, Target, TargetInfo};
pub use pool::WorkerPool;
pub use repack::{
    ExpandedActivations, ExpandedBatch, Layout, RepackedMatrix, RowScales, TernaryRows,
};
