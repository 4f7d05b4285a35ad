//! Test harness running generated CUDA kernels on GPU 0: compiles the source with NVRTC
//! (the backend's options), uploads the buffers, launches once and downloads every buffer.

use std::sync::{Arc, OnceLock};

use bitnetc_codegen::cuda::KernelSource;
use bitnetc_runtime::cuda::device::{compile_ptx, probe};
use bitnetc_runtime::cuda::GpuInfo;
use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

/// One kernel argument.
pub enum Arg {
    /// A device buffer: its C element type (unused here) and initial bytes.
    Buf(#[allow(dead_code)] &'static str, Vec<u8>),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f32),
}

/// Bytes of a slice of plain numbers.
pub fn bytes<T: Copy>(v: &[T]) -> Vec<u8> {
    let n = std::mem::size_of_val(v);
    // SAFETY: plain numeric types, read as bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), n) }.to_vec()
}

/// f32 values of bytes.
pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// GPU 0, opened once per test process.
pub fn gpu() -> &'static (Arc<CudaContext>, GpuInfo) {
    static GPU: OnceLock<(Arc<CudaContext>, GpuInfo)> = OnceLock::new();
    GPU.get_or_init(|| probe(0).unwrap_or_else(|e| panic!("this test needs a GPU: {e}")))
}

/// Runs `src` over `grid` with `args`; returns the final bytes of every `Arg::Buf`, in order.
pub fn launch(src: &KernelSource, grid: (u32, u32, u32), args: Vec<Arg>) -> Vec<Vec<u8>> {
    let (ctx, info) = gpu();
    let ptx = compile_ptx(&src.code, info).unwrap_or_else(|e| panic!("{}: {e}", src.name));
    let module = ctx.load_module(Ptx::from_src(ptx)).unwrap();
    let f = module.load_function(&src.name).unwrap();
    let stream = ctx.default_stream();
    let mut bufs = Vec::new();
    let mut ints = Vec::new();
    let mut floats = Vec::new();
    for a in &args {
        match a {
            Arg::Buf(_, data) => bufs.push(stream.clone_htod(data).unwrap()),
            Arg::Int(v) => ints.push(*v as i32),
            Arg::Float(v) => floats.push(*v),
        }
    }
    let mut builder = stream.launch_builder(&f);
    let (mut b, mut i, mut fl) = (0, 0, 0);
    for a in &args {
        match a {
            Arg::Buf(..) => {
                builder.arg(&bufs[b]);
                b += 1;
            }
            Arg::Int(_) => {
                builder.arg(&ints[i]);
                i += 1;
            }
            Arg::Float(_) => {
                builder.arg(&floats[fl]);
                fl += 1;
            }
        }
    }
    let cfg = LaunchConfig {
        grid_dim: grid,
        block_dim: (src.block, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match the kernel's documented signature (the test cases build them
    // from the generator's shapes).
    unsafe { builder.launch(cfg) }.unwrap_or_else(|e| panic!("{}: {e:?}", src.name));
    stream
        .synchronize()
        .unwrap_or_else(|e| panic!("{}: {e:?}", src.name));
    bufs.iter().map(|d| stream.clone_dtoh(d).unwrap()).collect()
}
