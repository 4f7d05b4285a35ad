//! Compiles `examples/generate.c` against `include/bitnetc.h` and the built cdylib with the
//! system C compiler, runs it on a tiny model, and checks its output: ten streamed tokens equal
//! to the Rust API's greedy tokens, and clear status codes and messages for a missing file and a
//! NULL handle.

use std::path::{Path, PathBuf};
use std::process::Command;

use bitnetc::{Engine, EngineOptions, GenerateRequest};

/// The cdylib's file name on this platform.
fn lib_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libbitnetc_c.dylib"
    } else {
        "libbitnetc_c.so"
    }
}

/// The folder cargo put this crate's cdylib in: `target/<profile>/deps` (beside this test, where
/// `cargo test` builds it) or `target/<profile>` (after `cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    if deps.join(lib_name()).exists() {
        deps
    } else {
        deps.parent().unwrap().to_path_buf()
    }
}

/// The tiny preset (I2_S, F16 embedding), written through the library.
fn write_tiny(path: &Path) {
    use bitnetc::ir::DType;
    use bitnetc::models::synth::{synthesize, Preset, SynthOptions};
    use bitnetc::models::tokenizer::builtin;
    let preset = Preset::from_name("tiny").unwrap();
    let opts = SynthOptions {
        arch: "bitnet-b1.58".into(),
        preset,
        ternary_type: DType::I2S,
        embedding_type: DType::F16,
        tokenizer: builtin::byte_level_bpe_spec(preset.n_vocab(), 600).unwrap(),
        seed: 3,
    };
    let mut file = std::fs::File::create(path).unwrap();
    synthesize(&opts).unwrap().write_to(&mut file).unwrap();
}

fn c_compiler() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

#[test]
fn c_example_compiles_runs_and_matches_the_rust_api() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny(&model);

    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    let so = lib.join(lib_name());
    assert!(so.exists(), "cdylib not built at {}", so.display());
    let exe = dir.path().join("generate");
    let cc = Command::new(c_compiler())
        .arg(crate_dir.join("examples/generate.c"))
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-Wall")
        .arg("-Werror")
        .arg("-o")
        .arg(&exe)
        .arg(&so)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .expect("a C compiler (set CC) is needed for this test");
    assert!(
        cc.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&cc.stderr)
    );

    let run = Command::new(&exe).arg(&model).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let c_ids: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    assert_eq!(c_ids.len(), 10, "{stdout}");
    assert!(stdout.contains("generated 10 tokens"), "{stdout}");
    assert!(stdout.contains("missing file: status 2"), "{stdout}");
    assert!(stdout.contains("/nonexistent/model.gguf"), "{stdout}");
    assert!(
        stdout.contains("null model: status 1, message \"model is NULL\""),
        "{stdout}"
    );

    // The same tokens through the Rust API.
    let engine = Engine::load(&model, &EngineOptions::default()).unwrap();
    let prompt = engine.tokenize("The quick brown fox", true);
    let mut s = engine.new_session(128);
    let mut n = 0;
    let r = engine
        .generate(&mut s, &GenerateRequest::greedy(prompt, 32), |_| {
            n += 1;
            n < 10
        })
        .unwrap();
    assert_eq!(r.generated_ids, c_ids);
}
