//! The bitnetc intermediate representation.
pub mod dtype;
pub use dtype::DType;
