//! Test harness running generated CUDA kernels on the CPU through `cuda_emu.h`: writes the
//! kernel source and a driver, compiles them with the host C++ compiler (`$CXX`, else `c++`)
//! under AddressSanitizer and UBSan, runs the launch with a deadline and returns the buffers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitnetc_codegen::cuda::KernelSource;

/// One kernel argument.
pub enum Arg {
    /// A device buffer: its C element type and initial bytes (returned after the launch).
    Buf(&'static str, Vec<u8>),
    /// An `int`.
    Int(i64),
    /// A `float`, passed bit-exactly.
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

fn compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "c++".into())
}

/// Runs `src` over `grid` with `args`; returns the final bytes of every `Arg::Buf`, in order.
/// Panics with the compiler's or sanitizer's output when the kernel does not build or run
/// cleanly.
pub fn launch(src: &KernelSource, grid: (u32, u32, u32), args: Vec<Arg>) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("kernel.cu"), &src.code).unwrap();
    let mut loads = String::new();
    let mut call = Vec::new();
    let mut saves = String::new();
    let mut n_bufs = 0;
    for arg in &args {
        match arg {
            Arg::Buf(ty, data) => {
                std::fs::write(d.join(format!("b{n_bufs}.bin")), data).unwrap();
                loads.push_str(&format!(
                    "    emu::Buffer b{n_bufs}(dir + \"/b{n_bufs}.bin\");\n"
                ));
                call.push(format!("({ty}*)b{n_bufs}.data"));
                saves.push_str(&format!("    b{n_bufs}.save(dir + \"/b{n_bufs}.bin\");\n"));
                n_bufs += 1;
            }
            Arg::Int(v) => call.push(format!("(int){v}")),
            Arg::Float(v) => call.push(format!("__uint_as_float({:#x}u)", v.to_bits())),
        }
    }
    let driver = format!(
        r#"#include "cuda_emu.h"
#include "kernel.cu"
int main(int, char** argv) {{
    const std::string dir = argv[1];
{loads}    emu::launch(dim3({gx}, {gy}, {gz}), dim3({block}), [&] {{ {name}({call}); }});
{saves}    return 0;
}}
"#,
        gx = grid.0,
        gy = grid.1,
        gz = grid.2,
        block = src.block,
        name = src.name,
        call = call.join(", "),
    );
    std::fs::write(d.join("driver.cpp"), driver).unwrap();
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support");
    let exe = d.join("kernel");
    let out = Command::new(compiler())
        .args([
            "-std=c++20",
            "-O1",
            "-g",
            "-pthread",
            "-ffp-contract=off",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-Wall",
            "-Werror",
            "-Wno-unknown-pragmas",
        ])
        .arg("-I")
        .arg(&support)
        .arg("-I")
        .arg(d)
        .arg(d.join("driver.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C++ compiler `{}`: {e}", compiler()));
    assert!(
        out.status.success(),
        "{} does not compile:\n{}\n--- source ---\n{}",
        src.name,
        String::from_utf8_lossy(&out.stderr),
        src.code
    );
    let mut child = Command::new(&exe)
        .arg(d)
        .env("ASAN_OPTIONS", "detect_leaks=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{}: emulated launch did not finish (a deadlock: divergent barrier or shuffle?)",
                src.name
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed under the emulator:\n{}",
        src.name,
        String::from_utf8_lossy(&out.stderr)
    );
    (0..n_bufs)
        .map(|i| std::fs::read(d.join(format!("b{i}.bin"))).unwrap())
        .collect()
}
