//! The compute ceiling of the prompt kernel on x86-64, beside the kernel.
//!
//! Without VNNI the generated prompt kernel needs, per 16 multiply-accumulates, one 128-bit
//! `pmaddubsw` and one `paddw` to sum its result (Cranelift emits no 256-bit vectors); with
//! VNNI one 128-bit `vpdpbusd`. This example times the `pmaddubsw` + `paddw` pair alone and,
//! on a CPU with AVX-512 VNNI, `vpdpbusd` alone — eight independent accumulators, no loads —
//! on one thread, then the default prompt kernel (8 tokens) at K = 2560, M = 512 with its
//! weights in L2, alternating over several rounds, and prints the kernel's rate as a share of
//! each. Multiply by the cores for the machine-wide bound on ternary GEMM throughput.
//!
//! `cargo run --release -p bitnetc-codegen --example pmaddubsw_peak`

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::time::Instant;

    use bitnetc_codegen::cpu::{
        ExpandedBatch, GemvKernel, GemvParams, GemvShape, IsaLevel, Layout, RepackedMatrix, Target,
    };

    if !std::arch::is_x86_feature_detected!("avx") {
        println!("this CPU has no AVX: nothing to measure");
        return;
    }

    /// Seconds per `pmaddubsw` + `paddw` pair (VEX-encoded, xmm), median of a few runs.
    fn pair_seconds() -> f64 {
        const ITERS: u64 = 20_000_000; // 8 pairs each
        let t = Instant::now();
        // SAFETY: register-only AVX instructions (checked above), no memory access.
        unsafe {
            std::arch::asm!(
                "vpxor xmm0, xmm0, xmm0",
                "vpxor xmm1, xmm1, xmm1",
                "vpxor xmm2, xmm2, xmm2",
                "vpxor xmm3, xmm3, xmm3",
                "vpxor xmm4, xmm4, xmm4",
                "vpxor xmm5, xmm5, xmm5",
                "vpxor xmm6, xmm6, xmm6",
                "vpxor xmm7, xmm7, xmm7",
                "vpcmpeqb xmm14, xmm14, xmm14",
                "vpabsb xmm15, xmm14",
                "2:",
                "vpmaddubsw xmm8, xmm15, xmm14",
                "vpaddw xmm0, xmm0, xmm8",
                "vpmaddubsw xmm9, xmm15, xmm14",
                "vpaddw xmm1, xmm1, xmm9",
                "vpmaddubsw xmm10, xmm15, xmm14",
                "vpaddw xmm2, xmm2, xmm10",
                "vpmaddubsw xmm11, xmm15, xmm14",
                "vpaddw xmm3, xmm3, xmm11",
                "vpmaddubsw xmm8, xmm15, xmm14",
                "vpaddw xmm4, xmm4, xmm8",
                "vpmaddubsw xmm9, xmm15, xmm14",
                "vpaddw xmm5, xmm5, xmm9",
                "vpmaddubsw xmm10, xmm15, xmm14",
                "vpaddw xmm6, xmm6, xmm10",
                "vpmaddubsw xmm11, xmm15, xmm14",
                "vpaddw xmm7, xmm7, xmm11",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) ITERS => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
                out("xmm14") _, out("xmm15") _,
                options(nostack, nomem),
            );
        }
        t.elapsed().as_secs_f64() / (ITERS * 8) as f64
    }

    /// Seconds per 128-bit `vpdpbusd` (16 multiply-accumulates), eight independent
    /// accumulators, median of a few runs; `None` without AVX-512 VNNI.
    fn vpdpbusd_seconds() -> Option<f64> {
        if !(std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl"))
        {
            return None;
        }
        const ITERS: u64 = 20_000_000; // 8 instructions each
        let t = Instant::now();
        // SAFETY: register-only AVX-512 VNNI/VL instructions (checked above), no memory access.
        unsafe {
            std::arch::asm!(
                "vpxor xmm0, xmm0, xmm0",
                "vpxor xmm1, xmm1, xmm1",
                "vpxor xmm2, xmm2, xmm2",
                "vpxor xmm3, xmm3, xmm3",
                "vpxor xmm4, xmm4, xmm4",
                "vpxor xmm5, xmm5, xmm5",
                "vpxor xmm6, xmm6, xmm6",
                "vpxor xmm7, xmm7, xmm7",
                "vpcmpeqb xmm14, xmm14, xmm14",
                "vpabsb xmm15, xmm14",
                "2:",
                "vpdpbusd xmm0, xmm15, xmm14",
                "vpdpbusd xmm1, xmm15, xmm14",
                "vpdpbusd xmm2, xmm15, xmm14",
                "vpdpbusd xmm3, xmm15, xmm14",
                "vpdpbusd xmm4, xmm15, xmm14",
                "vpdpbusd xmm5, xmm15, xmm14",
                "vpdpbusd xmm6, xmm15, xmm14",
                "vpdpbusd xmm7, xmm15, xmm14",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) ITERS => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm14") _, out("xmm15") _,
                options(nostack, nomem),
            );
        }
        Some(t.elapsed().as_secs_f64() / (ITERS * 8) as f64)
    }

    // 512 rows: 320 KiB of weights, which stay in L2.
    let (k, m, tokens) = (2560usize, 512usize, 8usize);
    let codes: Vec<u8> = (0..k * m)
        .map(|i| ((i * 2654435761) >> 7) as u8 % 3)
        .collect();
    let w = RepackedMatrix::from_codes(&codes, k, m, 1.0, Layout::rows16(16)).unwrap();
    let target = Target::host(IsaLevel::Native).unwrap();
    let params = GemvParams {
        tokens,
        ..GemvParams::prompt_default_for(&target.info)
    };
    let kern = GemvKernel::compile_for(&GemvShape::of(&w), &params, &target).unwrap();
    let mut xb = ExpandedBatch::new(k, tokens);
    for t in 0..tokens {
        let q: Vec<i8> = (0..k).map(|i| ((i * 37 + t * 11) % 251) as i8).collect();
        xb.fill(t, &q);
    }
    let mut out = vec![0i32; m * tokens];
    let kernel_seconds = |out: &mut [i32]| {
        let calls = 24;
        let t = Instant::now();
        for _ in 0..calls {
            // SAFETY: buffers sized for the kernel (weights of `w`, `tokens` expanded rows,
            // `m · tokens` outputs).
            unsafe {
                kern.run_raw(
                    w.bytes().as_ptr(),
                    xb.as_slice().as_ptr(),
                    out.as_mut_ptr(),
                    0..kern.groups(),
                )
            };
        }
        t.elapsed().as_secs_f64() / calls as f64
    };
    let macs = (k * m * tokens) as f64;
    let (mut pair, mut kernel, mut vnni) = (vec![], vec![], vec![]);
    for _ in 0..9 {
        pair.push(16.0 / pair_seconds() / 1e9);
        if let Some(s) = vpdpbusd_seconds() {
            vnni.push(16.0 / s / 1e9);
        }
        kernel.push(macs / kernel_seconds(&mut out) / 1e9);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, g) = (median(&mut pair), median(&mut kernel));
    println!(
        "pmaddubsw + paddw pairs: {p:.1} GMAC/s per core (16 per pair); prompt kernel \
         {tokens} tokens, streams {}, unroll {}: {g:.1} GMAC/s = {:.0}% of it (1 thread, \
         weights in cache; medians of 9 alternating rounds)",
        params.streams,
        params.unroll,
        100.0 * g / p
    );
    if !vnni.is_empty() {
        let v = median(&mut vnni);
        println!(
            "vpdpbusd (xmm): {v:.1} GMAC/s per core (16 per instruction); the prompt kernel \
             uses it on this CPU: {g:.1} GMAC/s = {:.0}% of it",
            100.0 * g / v
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
