//! Prints NVRTC's register and spill report (ptxas `-v`) for every kernel of a model's generated
//! CUDA module, for a given compute capability. Needs only the NVRTC library, no GPU.
//!
//! `cargo run -p bitnetc-runtime --example cuda_regs -- MODEL.gguf [90]`

use std::ffi::CString;

use bitnetc_models::{LoadOptions, Model};
use bitnetc_runtime::cuda::plan::plan;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: cuda_regs MODEL.gguf [CC]");
    let cc = args.next().unwrap_or_else(|| "90".into());
    let model = Model::load(&path, &LoadOptions::default()).expect("model");
    let p = plan(&model.graph, model.graph.info.n_ctx as usize).expect("plan");
    let src = CString::new(p.module_source()).unwrap();
    let prog = cudarc::nvrtc::result::create_program(&src, None).expect("NVRTC");
    let opts = vec![
        format!("--gpu-architecture=sm_{cc}"),
        "--fmad=false".to_string(),
        "--std=c++17".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    // SAFETY: a program just created, valid options.
    let ok = unsafe { cudarc::nvrtc::result::compile_program(prog, &opts) };
    // SAFETY: as above.
    let log = unsafe { cudarc::nvrtc::result::get_program_log(prog) }.expect("log");
    let log: String = log.iter().map(|&c| c as u8 as char).collect();
    println!("{}", log.trim_end_matches('\0'));
    ok.expect("compile");
}
