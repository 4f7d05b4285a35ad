//! Everything about model files: the GGUF container, tensor formats, BitNet architectures
//! (lowered to the IR) and tokenizers.
pub mod config;
pub mod error;
pub mod gguf;
pub mod lower;
pub mod model;
mod payload;
pub mod quant;
pub mod synth;
pub mod tokenizer;

pub use config::{ArchFamily, ModelConfig};
pub use error::ModelError;
pub use model::{LoadOptions, Model};
