//! ggml tensor type ids as they appear in GGUF tensor-info records.

use bitnetc_ir::DType;

/// A tensor type id read from a file, with what this reader makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// The id of each supported format (bitnet.cpp's numbering for I2_S).
    pub fn from_dtype(dtype: DType) -> GgmlType {
        GgmlType(match dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q8_0 => 8,
            DType::Q6K => 14,
            DType::BF16 => 30,
            DType::TQ1_0 => 34,
            DType::TQ2_0 => 35,
            DType::I2S => 36,
        })
    }

    /// The supported format this id denotes, if any.
    pub fn dtype(self) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|&d| GgmlType::from_dtype(d) == self)
    }
}

/// Human name of a ggml type id, including ones bitnetc does not support (for error messages).
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 | 29 => "an IQ quantization",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        30 => "BF16",
        31..=33 => "Q4_0_4_4/4_8/8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "I2_S",
        37 => "I8_S",
        38 => "TL1",
        39 => "TL2 (bitnet.cpp) or MXFP4 (llama.cpp)",
        _ => "an unknown type",
    }
}
