use std::path::PathBuf;

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The version field is not one this reader accepts.
    #[error("unsupported GGUF version {version}{hint}")]
    BadVersion {
        /// The version read.
        version: u32,
        /// Extra explanation.
        hint: &'static str,
    },
    /// The file ended before a field that the header says is there.
    #[error("truncated GGUF file: {what} needs {needed} bytes at offset {offset}, but the file has {len} bytes")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Its size.
        needed: u64,
        /// The file length.
        len: u64,
    },
    /// A count in the header is impossible for the file's size.
    #[error(
        "corrupt GGUF header: {what} = {count} cannot fit in the {remaining} bytes that remain"
    )]
    AbsurdCount {
        /// Which count.
        what: &'static str,
        /// The value read.
        count: u64,
        /// Bytes left in the file at that point.
        remaining: u64,
    },
    /// A structural rule of the format is broken.
    #[error("invalid GGUF file: {0}")]
    Invalid(String),
    /// A tensor uses a type this reader does not know or support.
    #[error("tensor '{tensor}' has {what}")]
    UnsupportedTensorType {
        /// The tensor name.
        tensor: String,
        /// Description of the type and why it is refused.
        what: String,
    },
    /// A metadata key the model needs is missing.
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    /// A metadata value has the wrong type or an unusable value.
    #[error("metadata key '{key}': {problem}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl GgufError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        GgufError::Invalid(msg.into())
    }
}
