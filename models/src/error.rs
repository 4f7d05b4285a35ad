//! Errors raised while turning a GGUF file into a model.

use crate::gguf::GgufError;

/// Why a file could not be loaded as a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The container itself is bad.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The architecture string is not one bitnetc runs.
    #[error(
        "unsupported architecture '{0}' (bitnetc runs 'bitnet-b1.58', 'bitnet-25' and 'bitnet')"
    )]
    UnknownArch(String),
    /// A tensor the architecture needs is absent.
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    /// A tensor has the wrong dimensions.
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Dimensions in the file.
        found: Vec<u64>,
        /// Dimensions the hyperparameters imply.
        expected: Vec<u64>,
    },
    /// A tensor has a type that cannot play its role.
    #[error("tensor '{name}': {problem}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The file has tensors the architecture does not use.
    #[error("wrong number of tensors: the architecture uses {expected}, the file has {found} (first unexpected: '{first_unexpected}')")]
    UnexpectedTensors {
        /// Tensors the model uses.
        expected: usize,
        /// Tensors in the file.
        found: usize,
        /// One tensor nothing uses.
        first_unexpected: String,
    },
    /// Hyperparameters are inconsistent or out of range.
    #[error("bad hyperparameters: {0}")]
    BadConfig(String),
    /// The feature exists in the format but bitnetc does not implement it.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The tokenizer metadata is unusable.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The lowered graph broke an IR rule (a bug or an inconsistent file).
    #[error(transparent)]
    Ir(#[from] bitnetc_ir::IrError),
}
