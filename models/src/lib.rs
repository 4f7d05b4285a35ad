//! Everything about model files: the GGUF container, tensor formats, BitNet architectures
//! (lowered to the IR) and tokenizers.
pub mod gguf;
pub mod quant;
pub mod tokenizer;
pub mod config;
pub mod error;
pub mod lower;
mod payload;
// WIP(lead): pub mod model;

pub use config::{ArchFamily, ModelConfig};
pub use error::ModelError;
// WIP(lead): pub mod synth;
