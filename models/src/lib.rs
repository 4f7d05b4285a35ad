//! Everything about model files: the GGUF container, tensor formats, BitNet architectures
//! (lowered to the IR) and tokenizers.
pub mod gguf;
pub mod quant;
pub mod tokenizer;
