//! The GGUF container: a strict reader and a writer.
