//! The generated CUDA kernels on a real GPU, against the same simple references as the CPU
//! emulator's tests (`codegen/tests/support/kernel_cases.rs`). Ignored without a GPU: run them
//! with `scripts/gpu/check.sh` (or `cargo test -p bitnetc-runtime --test cuda_gpu --
//! --include-ignored` on a machine with an NVIDIA GPU, its driver and NVRTC).

#[path = "support/gpu.rs"]
mod gpu;

use gpu::{bytes, f32s, launch, Arg};

macro_rules! kernel_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        #[ignore = "needs an NVIDIA GPU: scripts/gpu/check.sh"]
        fn $name() $body
    };
}

include!("../../codegen/tests/support/kernel_cases.rs");
