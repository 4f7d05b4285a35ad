//! The generated CUDA kernels, run on the CPU through the emulator in `support/cuda_emu.h`
//! (block barriers, warp shuffles, AddressSanitizer), against simple references written in
//! `support/kernel_cases.rs`: integer results and the reference-ordered floats exactly,
//! reductions by relative error. These check the kernels' logic and bounds on machines without
//! a GPU; `runtime/tests/cuda_gpu.rs` runs the same cases on a GPU through NVRTC
//! (`scripts/gpu/check.sh`).

#[path = "support/emu.rs"]
mod emu;

use emu::{bytes, f32s, launch, Arg};

macro_rules! kernel_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() $body
    };
}

include!("support/kernel_cases.rs");

/// The emulator's AddressSanitizer catches a kernel reading past its buffer: the same launch
/// with the weight buffer one word short must fail.
#[test]
fn an_overrun_is_caught() {
    let (k, m) = (64, 4);
    let packed = pack_codes(&vec![1u8; k * m], k, m, vec![1.0; m]);
    let kernel = TernaryKernel {
        k,
        m,
        out_scale: false,
        params: TernaryParams::decode_default(),
    };
    let src = kernel.source().unwrap();
    let result = std::panic::catch_unwind(|| {
        launch(
            &src,
            kernel.grid(1),
            vec![
                Arg::Buf("unsigned", bytes(&packed.words[..packed.words.len() - 1])),
                Arg::Buf("float", bytes(&packed.row_scales)),
                Arg::Buf("signed char", vec![0; k]),
                Arg::Buf("float", bytes(&[1.0f32])),
                Arg::Buf("float", vec![0; 4 * m]),
                Arg::Int(1),
                Arg::Float(0.0),
            ],
        )
    });
    let message = match result {
        Ok(_) => panic!("the overrun was not detected"),
        Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(message.contains("AddressSanitizer"), "{message}");
}
