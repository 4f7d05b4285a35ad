//! Storage formats of weight tensors, as the IR knows them.
//!
//! The IR names formats; the byte layouts live in `bitnetc_models::quant`.

use serde::{Deserialize, Serialize};

/// The storage format of a weight tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (upper half of a binary32).
    BF16,
    /// ggml Q8_0: blocks of 32 int8 with one f16 scale (34 bytes).
    Q8_0,
    /// ggml Q6_K: super-blocks of 256 6-bit values (210 bytes).
    Q6K,
    /// ggml TQ1_0: ternary, base-3 packed, blocks of 256 with an f16 scale (54 bytes).
    TQ1_0,
    /// ggml TQ2_0: ternary, 2 bits per weight, blocks of 256 with an f16 scale (66 bytes).
    TQ2_0,
    /// bitnet.cpp I2_S: ternary, 2 bits per weight in 128-element blocks, one f32 scale per tensor.
    I2S,
}

impl DType {
    /// Every supported format.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q6K,
        DType::TQ1_0,
        DType::TQ2_0,
        DType::I2S,
    ];

    /// Lower-case name as used on the command line and in printed IR.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q6K => "q6_k",
            DType::TQ1_0 => "tq1_0",
            DType::TQ2_0 => "tq2_0",
            DType::I2S => "i2_s",
        }
    }

    /// Parses a name produced by [`DType::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<DType> {
        let lower = name.to_ascii_lowercase();
        DType::ALL.into_iter().find(|t| t.name() == lower)
    }

    /// Whether the format stores ternary weights.
    pub fn is_ternary(self) -> bool {
        matches!(self, DType::TQ1_0 | DType::TQ2_0 | DType::I2S)
    }

    /// Number of elements in one block (the unit `ne0` must be a multiple of).
    pub fn block_elems(self) -> u64 {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 => 32,
            DType::Q6K | DType::TQ1_0 | DType::TQ2_0 => 256,
            DType::I2S => 128,
        }
    }

    /// Bytes of one block; for I2_S, bytes per 128 elements (the 32-byte tail is extra).
    pub fn block_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q6K => 210,
            DType::TQ1_0 => 54,
            DType::TQ2_0 => 66,
            DType::I2S => 32,
        }
    }

    /// Byte size of a whole tensor of `n_elems` elements whose rows have `ne0` elements,
    /// or `None` if `ne0` is not a multiple of the block size or the size overflows.
    pub fn tensor_bytes(self, ne0: u64, n_elems: u64) -> Option<u64> {
        if ne0 == 0 || !ne0.is_multiple_of(self.block_elems()) || !n_elems.is_multiple_of(ne0) {
            return None;
        }
        let body = (n_elems / self.block_elems()).checked_mul(self.block_bytes())?;
        match self {
            DType::I2S => body.checked_add(32),
            _ => Some(body),
        }
    }

    /// Byte size of one row of `ne0` elements (for I2_S: the packed codes only).
    pub fn row_bytes(self, ne0: u64) -> Option<u64> {
        if !ne0.is_multiple_of(self.block_elems()) {
            return None;
        }
        (ne0 / self.block_elems()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
