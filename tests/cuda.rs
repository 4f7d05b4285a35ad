//! The CUDA backend where it can be checked without a GPU: `--device cuda` fails with one clear
//! line (never a panic) when the machine has no CUDA, every node of the tiny and large presets
//! gets a generated kernel, and the whole generated module is valid C++ for the emulator the
//! kernel tests use. On a machine with a GPU (ignored elsewhere; `scripts/gpu/check.sh`):
//! `run --device cuda --temp 0` gives the CPU backend's tokens.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use bitnetc_codegen::cuda::ternary::{TernaryKernel, TernaryParams};
use bitnetc_models::{LoadOptions, Model};
use bitnetc_runtime::cuda::device::{compile_ptx, nvrtc_present, probe};
use bitnetc_runtime::cuda::plan::{plan, NodeKernel};
use bitnetc_runtime::cuda::GpuInfo;

/// The binary under test (`BITNETC_BIN` overrides the build's path, for prebuilt bundles run
/// on another machine by `scripts/gpu/check.sh`).
fn bitnetc(args: &[&str]) -> std::process::Output {
    let exe = std::env::var("BITNETC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bitnetc").into());
    Command::new(exe).args(args).output().expect("bitnetc runs")
}

fn dir() -> &'static Path {
    support::scratch_dir()
}

fn model(preset: &str, ty: &str, embedding: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join(format!("{preset}-{ty}-{embedding}.gguf"));
    if !path.exists() {
        let out = bitnetc(&[
            "gen-model",
            "--preset",
            preset,
            "--type",
            ty,
            "--embedding-type",
            embedding,
            "--seed",
            "5",
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    path
}

#[test]
fn device_cuda_without_a_gpu_is_one_clear_error() {
    let m = model("tiny", "i2_s", "f16");
    let m = m.to_str().unwrap();
    let gpu = probe(0);
    for args in [
        vec![
            "run",
            "-m",
            m,
            "--device",
            "cuda",
            "--prompt-ids",
            "1,2,3",
            "-n",
            "2",
            "--temp",
            "0",
        ],
        vec![
            "bench", "-m", m, "--device", "cuda", "-p", "4", "-n", "2", "-r", "1",
        ],
    ] {
        let out = bitnetc(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        match &gpu {
            Err(e) => {
                assert!(!out.status.success(), "{args:?} succeeded without a GPU");
                let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                let last = lines.last().copied().unwrap_or_default();
                assert!(
                    last.starts_with("error:") && last.contains(&e.to_string()),
                    "{args:?}: {stderr}"
                );
                assert!(
                    lines.iter().filter(|l| l.starts_with("error")).count() == 1,
                    "{args:?}: one error line expected: {stderr}"
                );
            }
            Ok(_) => assert!(out.status.success(), "{args:?} with a GPU: {stderr}"),
        }
    }
}

#[test]
fn every_node_of_every_preset_gets_a_generated_kernel() {
    for preset in ["tiny", "large"] {
        for (ty, emb) in [("i2_s", "f16"), ("tq1_0", "q6_k"), ("tq2_0", "q8_0")] {
            let m = Model::load(model(preset, ty, emb), &LoadOptions::default()).unwrap();
            let g = &m.graph;
            let p = plan(g, g.info.n_ctx as usize).unwrap();
            assert_eq!(p.nodes.len(), g.nodes.len());
            let names: std::collections::HashSet<&str> =
                p.sources.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names.len(), p.sources.len(), "kernel names are unique");
            let module = p.module_source();
            for s in &p.sources {
                assert!(
                    module.contains(&format!("void __launch_bounds__({}) {}(", s.block, s.name))
                );
            }
            let embeddings = p
                .nodes
                .iter()
                .filter(|n| matches!(n, NodeKernel::HostEmbedding))
                .count();
            assert_eq!(
                embeddings, 1,
                "{preset} {ty}: only the embedding gather runs on the host"
            );
            assert!(p
                .node_kernel_names()
                .iter()
                .all(|n| n.starts_with("cuda.") || n == "host.embedding"));
            // Every norm read only by the quantization after it runs fused with it: all four
            // norms of every layer here, each followed by a node that runs nothing.
            let fused = p
                .nodes
                .iter()
                .filter(|n| matches!(n, NodeKernel::NormQuantize { .. }))
                .count();
            assert_eq!(fused, 4 * m.config.n_layer as usize, "{preset} {ty}");
            for (i, n) in p.nodes.iter().enumerate() {
                if matches!(n, NodeKernel::FusedIntoPrevious) {
                    assert!(matches!(p.nodes[i - 1], NodeKernel::NormQuantize { .. }));
                }
            }
        }
    }
}

/// The whole generated module (every kernel of the large preset, helpers once) compiles as one
/// translation unit with the host C++ compiler and the emulator header: no name clashes, no
/// leaked macros, no C++ the kernel tests did not see.
#[test]
fn the_generated_module_is_one_valid_translation_unit() {
    let m = Model::load(model("large", "i2_s", "f16"), &LoadOptions::default()).unwrap();
    let p = plan(&m.graph, m.graph.info.n_ctx as usize).unwrap();
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("module.cpp");
    std::fs::write(
        &src,
        format!("#include \"cuda_emu.h\"\n{}", p.module_source()),
    )
    .unwrap();
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("codegen/tests/support");
    let out = Command::new(std::env::var("CXX").unwrap_or_else(|_| "c++".into()))
        .args([
            "-std=c++20",
            "-fsyntax-only",
            "-Wall",
            "-Werror",
            "-Wno-unknown-pragmas",
        ])
        .arg("-I")
        .arg(&support)
        .arg(&src)
        .output()
        .expect("a C++ compiler (c++ or $CXX)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where NVRTC can be loaded (`.ci/run` installs it from PyPI; compiling needs no GPU), the
/// generated modules of both presets, and the ternary kernel in every parameter kind, compile
/// with the options the backend uses, for Ampere and Hopper, and the PTX has every entry point.
#[test]
fn nvrtc_compiles_the_generated_modules() {
    if !nvrtc_present() {
        eprintln!("skipped: no NVRTC library to load (.ci/run installs one from PyPI)");
        return;
    }
    let extra: Vec<_> = [(1, 1, 1), (2, 3, 2), (8, 8, 4)]
        .into_iter()
        .map(|(warps, tokens, load_words)| {
            TernaryKernel {
                k: 100,
                m: 37,
                out_scale: true,
                params: TernaryParams {
                    warps,
                    tokens,
                    load_words,
                },
            }
            .source()
            .unwrap()
        })
        .collect();
    for cc in [(8, 0), (9, 0)] {
        let gpu = GpuInfo {
            name: "compile check".into(),
            compute_capability: cc,
            memory_bytes: 0,
        };
        for preset in ["tiny", "large"] {
            for (ty, emb) in [("i2_s", "f16"), ("tq2_0", "q8_0"), ("tq1_0", "q6_k")] {
                let m = Model::load(model(preset, ty, emb), &LoadOptions::default()).unwrap();
                let mut p = plan(&m.graph, m.graph.info.n_ctx as usize).unwrap();
                p.sources.extend(extra.iter().cloned());
                let ptx = compile_ptx(&p.module_source(), &gpu)
                    .unwrap_or_else(|e| panic!("{preset} {ty} for {}: {e}", gpu.arch()));
                for s in &p.sources {
                    assert!(
                        ptx.contains(&format!(".entry {}(", s.name)),
                        "{} missing from the PTX",
                        s.name
                    );
                }
                // The ternary kernels use the 4-way int8 dot instruction; f16 tables the
                // hardware conversion.
                assert!(ptx.contains("dp4a.s32.s32"), "no dp4a in the PTX");
                if emb == "f16" {
                    assert!(ptx.contains("cvt.f32.f16"), "no f16 conversion in the PTX");
                }
            }
        }
    }
}

/// Greedy ids of `run --json`.
fn greedy(model: &Path, device: &str) -> Vec<u64> {
    let out = bitnetc(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--prompt-ids",
        "1,17,300,42,5,77",
        "-n",
        "12",
        "--temp",
        "0",
        "--ignore-eos",
        "--json",
        "--device",
        device,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["generated_ids"]
        .as_array()
        .expect("generated_ids")
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu/check.sh"]
fn cuda_gives_the_cpu_backends_greedy_tokens() {
    // Not a Q6_K or Q8_0 head: the CPU backends multiply those by Q8_K / Q8_0 activations, the
    // CUDA head in f32 (its kernel is checked against the f32 twin in `codegen/tests`).
    for preset in ["tiny", "large"] {
        for (ty, emb) in [("i2_s", "f16"), ("tq1_0", "bf16"), ("tq2_0", "f32")] {
            let m = model(preset, ty, emb);
            assert_eq!(greedy(&m, "cuda"), greedy(&m, "cpu"), "{preset} {ty} {emb}");
        }
    }
}
