//! CUDA kernels: CUDA C source generated for one model's exact shapes and one set of tuning
//! parameters, compiled at run time with NVRTC by the runtime's CUDA backend.
//!
//! Nothing here touches a GPU or a CUDA library: every generator is a pure function from a shape
//! and parameters to a [`KernelSource`] (C source, entry-point name, block size), so sources can
//! be generated, inspected, hashed for a compile cache and tested on machines without CUDA.
//!
//! * [`prelude`]: helpers every kernel includes (warp sums, the ternary 4-way dot, f16/bf16).
//! * [`ternary`]: the ternary × int8 linear kernel (decode and prompt batches) and the weight
//!   packing it reads.
//! * [`elementwise`]: RMSNorm, activation quantization, RoPE, gated activation, add, bias.
//! * [`attention`]: causal attention over the device KV cache.
//! * [`head`]: the output head over F16 / BF16 / F32 / scaled-int8 tables.
//!
//! Conventions of every kernel: 1-D blocks; `extern "C"` entry points; shapes compiled in as
//! constants; pointers to device buffers laid out as the runtime documents (token-major
//! activations `[T, width]`); no early exit before a `__syncthreads`, and warp shuffles only in
//! warp-uniform control flow. Sources are compiled with `--fmad=false`, so every float
//! operation rounds as written (as in the reference backend).

pub mod attention;
pub mod elementwise;
pub mod head;
pub mod prelude;
pub mod ternary;

/// One generated kernel: its source and how it is launched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSource {
    /// Entry-point name (unique per shape and parameters), e.g. `ternary_2560x6912_w4_t1_l4`.
    pub name: String,
    /// Complete CUDA C source: the [`prelude`] followed by the kernel.
    pub code: String,
    /// Threads per block.
    pub block: u32,
}

impl KernelSource {
    fn new(name: String, body: String, block: u32) -> KernelSource {
        KernelSource {
            code: format!("{}\n{}", prelude::PRELUDE, body),
            name,
            block,
        }
    }
}

/// An f32 constant as a C literal that parses back to exactly the same value.
pub fn float_literal(v: f32) -> String {
    if v.is_nan() {
        return "__int_as_float(0x7fc00000)".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "__int_as_float(0x7f800000)".into()
        } else {
            "__int_as_float(0xff800000)".into()
        };
    }
    // `{:?}` prints the shortest decimal that round-trips; C parses it to the same float.
    let s = format!("{v:?}");
    if s.contains('.') || s.contains('e') {
        format!("{s}f")
    } else {
        format!("{s}.0f")
    }
}

/// `n` rounded up to a multiple of `to`.
pub(crate) fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literals_round_trip() {
        for v in [0.0f32, 1.0, -2.5, 1e-5, 0.088388346, 3.4028235e38, 1.4e-45] {
            let lit = float_literal(v);
            let parsed: f32 = lit.trim_end_matches('f').parse().unwrap();
            assert_eq!(parsed.to_bits(), v.to_bits(), "{lit}");
        }
        assert!(float_literal(f32::INFINITY).contains("0x7f800000"));
    }
}
