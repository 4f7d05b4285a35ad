//! Executors for the bitnetc IR.
//!
//! [`reference::ReferenceBackend`] runs a [`bitnetc_ir::Graph`] with the reference numerics; the
//! [`sampling`] module picks tokens from logits; [`kv_cache::KvCache`] holds a sequence's keys and
//! values.
pub mod cuda;
pub mod error;
pub mod exec;
pub mod jit;
pub mod kv_cache;
pub mod reference;
pub mod sampling;

pub use cuda::{CudaBackend, CudaOptions};
pub use error::RuntimeError;
pub use exec::{LogitsFor, OpKernels, Session};
pub use jit::{JitBackend, JitOptions};
pub use reference::ReferenceBackend;
pub use sampling::{Sampler, SamplerConfig};
