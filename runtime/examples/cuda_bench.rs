//! Times the generated CUDA kernels on GPU 0 at the BitNet b1.58 2B4T shapes, beside a plain
//! read-bandwidth probe measured in the same run (run by `scripts/gpu/check.sh`):
//!
//! ```text
//! cargo run --release -p bitnetc-runtime --example cuda_bench
//! ```
//!
//! For each kernel: median time per launch over 5 rounds of 100 launches (ternary weights
//! rotated over copies larger than the L2 cache), bytes of weights read per launch, the
//! bandwidth that makes, and its ratio to the probe. Small matrices are dominated by launch
//! latency; the end-to-end `bitnetc bench --device cuda` is the figure that counts.

use std::time::Instant;

use bitnetc_codegen::cpu::head::HeadFormat;
use bitnetc_codegen::cuda::head::{HeadKernel, HeadParams};
use bitnetc_codegen::cuda::ternary::{pack_codes, TernaryKernel, TernaryParams};
use bitnetc_codegen::cuda::KernelSource;
use bitnetc_runtime::cuda::device::{compile_ptx, probe};
use bitnetc_runtime::cuda::GpuInfo;
use cudarc::driver::{CudaFunction, CudaStream, LaunchArgs, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;
use rand::{Rng, SeedableRng};

/// A read probe: every thread sums 16-byte loads, one store per block.
const PROBE: &str = r#"
extern "C" __global__ void __launch_bounds__(256) read_probe(const uint4* __restrict__ p, unsigned long long n, unsigned* out)
{
    unsigned acc = 0;
    for (unsigned long long i = blockIdx.x * 256ull + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * 256ull) {
        const uint4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) out[blockIdx.x] = acc;
}
"#;

fn load(
    ctx: &std::sync::Arc<cudarc::driver::CudaContext>,
    info: &GpuInfo,
    src: &KernelSource,
) -> CudaFunction {
    let ptx = compile_ptx(&src.code, info).unwrap();
    ctx.load_module(Ptx::from_src(ptx))
        .unwrap()
        .load_function(&src.name)
        .unwrap()
}

/// Median seconds per launch of `launch` (5 rounds of `reps`).
fn time(stream: &CudaStream, reps: usize, mut launch: impl FnMut()) -> f64 {
    launch();
    stream.synchronize().unwrap();
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                launch();
            }
            stream.synchronize().unwrap();
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[2]
}

fn run(b: &mut LaunchArgs<'_>, cfg: LaunchConfig) {
    // SAFETY: arguments pushed by the caller match the kernel's signature.
    unsafe { b.launch(cfg) }.unwrap();
}

fn main() {
    let (ctx, info) = probe(0).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let stream = ctx.default_stream();
    println!(
        "GPU: {} (compute {}.{}, {:.1} GiB)",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);

    // Read-bandwidth probe over 2 GiB.
    let probe_src = KernelSource {
        name: "read_probe".into(),
        code: PROBE.into(),
        block: 256,
    };
    let f = load(&ctx, &info, &probe_src);
    let n16 = (2usize << 30) / 16;
    let buf = stream.alloc_zeros::<u8>(n16 * 16).unwrap();
    let out = stream.alloc_zeros::<u32>(132 * 8).unwrap();
    let n = n16 as u64;
    let cfg = LaunchConfig {
        grid_dim: (132 * 8, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let s = time(&stream, 10, || {
        let mut b = stream.launch_builder(&f);
        b.arg(&buf).arg(&n).arg(&out);
        run(&mut b, cfg);
    });
    let probe_gbs = (n16 * 16) as f64 / s / 1e9;
    println!("read probe: {probe_gbs:.0} GB/s (2 GiB, median)");
    drop(buf);

    println!(
        "{:<34} {:>10} {:>10} {:>9} {:>8}",
        "kernel", "bytes", "us", "GB/s", "/probe"
    );
    let shapes = [
        (2560usize, 2560usize),
        (2560, 640),
        (2560, 6912),
        (6912, 2560),
    ];
    for (k, m) in shapes {
        for tokens in [1usize, 8] {
            let params = if tokens == 1 {
                TernaryParams::decode_default()
            } else {
                TernaryParams::prompt_default()
            };
            let kernel = TernaryKernel {
                k,
                m,
                out_scale: false,
                params,
            };
            let codes: Vec<u8> = (0..k * m).map(|_| rng.gen_range(0..3u8)).collect();
            let packed = pack_codes(&codes, k, m, vec![1.0; m]);
            // Copies of the weights rotated over more than 4× the L2 cache (60 MB on an H200),
            // so every launch reads them from device memory.
            let copies = ((256usize << 20) / (4 * packed.words.len())).max(1);
            let ws: Vec<_> = (0..copies)
                .map(|_| stream.clone_htod(&packed.words).unwrap())
                .collect();
            let mut next = 0usize;
            let rs = stream.clone_htod(&packed.row_scales).unwrap();
            let q: Vec<i8> = (0..tokens * kernel.k_pad())
                .map(|_| rng.gen_range(-127..=127))
                .collect();
            let q = stream.clone_htod(&q).unwrap();
            let qs = stream.clone_htod(&vec![1.0f32; tokens]).unwrap();
            let y = stream.alloc_zeros::<f32>(tokens * m).unwrap();
            let src = kernel.source().unwrap();
            let f = load(&ctx, &info, &src);
            let nt = tokens as i32;
            let scale = 1.0f32;
            let cfg = LaunchConfig {
                grid_dim: kernel.grid(tokens),
                block_dim: (src.block, 1, 1),
                shared_mem_bytes: 0,
            };
            let s = time(&stream, 100, || {
                let w = &ws[next % copies];
                next += 1;
                let mut b = stream.launch_builder(&f);
                b.arg(w)
                    .arg(&rs)
                    .arg(&q)
                    .arg(&qs)
                    .arg(&y)
                    .arg(&nt)
                    .arg(&scale);
                run(&mut b, cfg);
            });
            let bytes = packed.words.len() * 4;
            let gbs = bytes as f64 / s / 1e9;
            println!(
                "{:<34} {:>10} {:>10.2} {:>9.0} {:>7.0}%",
                format!("{} (T={tokens})", src.name),
                bytes,
                s * 1e6,
                gbs,
                100.0 * gbs / probe_gbs
            );
        }
    }
    // The F16 output head of 2B4T.
    let (k, rows) = (2560usize, 128256usize);
    let kernel = HeadKernel {
        format: HeadFormat::F16 { finite: false },
        k,
        rows,
        params: HeadParams::default(),
    };
    let table: Vec<u16> = (0..k * rows)
        .map(|_| half::f16::from_f32(rng.gen_range(-1.0..1.0)).to_bits())
        .collect();
    let table = stream.clone_htod(&table).unwrap();
    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let x = stream.clone_htod(&x).unwrap();
    let out = stream.alloc_zeros::<f32>(rows).unwrap();
    let src = kernel.source().unwrap();
    let f = load(&ctx, &info, &src);
    let one = 1i32;
    let cfg = LaunchConfig {
        grid_dim: kernel.grid(1),
        block_dim: (src.block, 1, 1),
        shared_mem_bytes: 0,
    };
    let s = time(&stream, 50, || {
        let mut b = stream.launch_builder(&f);
        b.arg(&table).arg(&x).arg(&out).arg(&one);
        run(&mut b, cfg);
    });
    let bytes = 2 * k * rows;
    let gbs = bytes as f64 / s / 1e9;
    println!(
        "{:<34} {:>10} {:>10.2} {:>9.0} {:>7.0}%",
        src.name,
        bytes,
        s * 1e6,
        gbs,
        100.0 * gbs / probe_gbs
    );
}
