//! The GGUF container: a strict, memory-mapped reader and a writer.
//!
//! The reader follows the strict-loader checklist of the reference (`bitnet-gguf.md` §1.5):
//! every length and count is checked against the bytes that remain before anything is
//! allocated, so a truncated or hostile file yields a [`GgufError`] naming the problem.

mod error;
mod reader;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{parse_header, GgufFile, GgufHeader, TensorInfo};
pub use types::{ggml_type_name, GgmlType};
pub use value::{Metadata, Value, ValueType};
pub use writer::GgufWriter;

/// The four magic bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest tensor name ggml accepts (63 bytes plus the terminator).
pub const MAX_TENSOR_NAME: usize = 63;
/// Largest string the reader accepts (1 GiB, as llama.cpp).
pub const MAX_STRING_BYTES: u64 = 1 << 30;
/// Largest array element count the reader accepts (2^30, as llama.cpp).
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
