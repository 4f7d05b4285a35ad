//! `bitnetc compile`: artifacts give the GGUF's greedy tokens, and a flipped byte in any
//! section, a truncated file, a wrong format version or a CPU without a required feature each
//! give a clear error.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bitnetc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnetc"))
        .args(args)
        .output()
        .expect("bitnetc runs")
}

fn ok(args: &[&str]) -> String {
    let out = bitnetc(args);
    assert!(
        out.status.success(),
        "bitnetc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dir() -> &'static Path {
    support::scratch_dir()
}

/// The model of these options, generated once (tests run in parallel: one writer at a time).
fn model(arch: &str, preset: &str, ty: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join(format!("{arch}-{preset}-{ty}.gguf"));
    if !path.exists() {
        ok(&[
            "gen-model",
            "--arch",
            arch,
            "--preset",
            preset,
            "--type",
            ty,
            "--seed",
            "4",
            "-o",
            path.to_str().unwrap(),
        ]);
    }
    path
}

fn greedy(model: &Path, threads: &str) -> Vec<u64> {
    let out = ok(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--prompt-ids",
        "1,17,300,42,5,77",
        "-n",
        "10",
        "--temp",
        "0",
        "--ignore-eos",
        "--json",
        "-t",
        threads,
        "--cache-dir",
        dir().join("no-tuning").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn compile(model: &Path, out: &Path, extra: &[&str]) {
    let no_tuning = dir().join("no-tuning");
    let mut args = vec![
        "compile",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--cache-dir",
        no_tuning.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = bitnetc(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn artifacts_give_the_gguf_tokens() {
    for (arch, preset, ty) in [
        ("bitnet-b1.58", "tiny", "i2_s"),
        ("bitnet-b1.58", "tiny", "tq1_0"),
        ("bitnet", "large", "tq2_0"),
    ] {
        let gguf = model(arch, preset, ty);
        let bnc = dir().join(format!("{arch}-{preset}-{ty}.bnc"));
        compile(&gguf, &bnc, &[]);
        for t in ["1", "2"] {
            assert_eq!(greedy(&bnc, t), greedy(&gguf, t), "{preset} {ty} t={t}");
        }
    }
    // Other commands take an artifact like a GGUF.
    let bnc = dir().join("bitnet-b1.58-tiny-i2_s.bnc");
    let text = ok(&["inspect", bnc.to_str().unwrap()]);
    assert!(text.contains("bitnet-b1.58"), "{text}");
    let kernels = ok(&["inspect", "--kernels", bnc.to_str().unwrap()]);
    assert!(kernels.contains("jit.gemv."), "{kernels}");
    // An artifact for a lower ISA level runs here too.
    let gguf = model("bitnet-b1.58", "tiny", "i2_s");
    let bnc = dir().join("tiny-sse4.bnc");
    compile(&gguf, &bnc, &["--isa", "sse4"]);
    assert_eq!(greedy(&bnc, "2"), greedy(&gguf, "2"));
}

fn run_err(path: &Path) -> String {
    let out = bitnetc(&[
        "run",
        "-m",
        path.to_str().unwrap(),
        "--prompt-ids",
        "1,2",
        "-n",
        "2",
    ]);
    assert!(!out.status.success(), "a damaged artifact must be refused");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn section_offsets(bytes: &[u8]) -> Vec<(u32, usize, usize)> {
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| {
            let e = 16 + 32 * i;
            let kind = u32::from_le_bytes(bytes[e..e + 4].try_into().unwrap());
            let off = u64::from_le_bytes(bytes[e + 8..e + 16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(bytes[e + 16..e + 24].try_into().unwrap()) as usize;
            (kind, off, len)
        })
        .collect()
}

#[test]
fn damaged_artifacts_are_refused_with_a_clear_error() {
    let gguf = model("bitnet-b1.58", "tiny", "i2_s");
    let bnc = dir().join("damage-src.bnc");
    compile(&gguf, &bnc, &[]);
    let good = std::fs::read(&bnc).unwrap();
    let bad = dir().join("damaged.bnc");
    // A flipped byte in the middle of each section, and in the header.
    let sections = section_offsets(&good);
    assert_eq!(sections.len(), 3);
    for (kind, off, len) in sections {
        let mut b = good.clone();
        b[off + len / 2] ^= 0x40;
        std::fs::write(&bad, &b).unwrap();
        let name = ["", "META", "MODEL", "WEIGHTS"][kind as usize];
        let err = run_err(&bad);
        assert!(
            err.contains(&format!("section {name} is corrupted")),
            "{name}: {err}"
        );
    }
    let mut b = good.clone();
    b[20] ^= 1; // a section table entry
    std::fs::write(&bad, &b).unwrap();
    assert!(run_err(&bad).contains("header checksum mismatch"));
    // Truncated.
    std::fs::write(&bad, &good[..good.len() - 100]).unwrap();
    assert!(run_err(&bad).contains("truncated"));
    std::fs::write(&bad, &good[..10]).unwrap();
    assert!(run_err(&bad).contains("not a bitnetc artifact"));
    // Another format version.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    let err = run_err(&bad);
    assert!(
        err.contains("artifact format 2") && err.contains("bitnetc compile"),
        "{err}"
    );
}

#[test]
fn a_cpu_without_a_required_feature_is_refused() {
    // An artifact written through the library for a made-up feature this CPU cannot have.
    let gguf = model("bitnet-b1.58", "tiny", "i2_s");
    let out = dir().join("future-cpu.bnc");
    bitnetc::artifact::write(
        &out,
        &gguf,
        bitnetc_codegen::cpu::IsaLevel::Native,
        &["has_sse41", "has_future_extension"],
        Default::default(),
        &[],
    )
    .unwrap();
    let err = run_err(&out);
    assert!(
        err.contains("lacks has_future_extension") && err.contains("--isa"),
        "{err}"
    );
    // Refusing to compile an artifact again, or over its own model.
    let again = bitnetc(&["compile", out.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a compiled artifact"));
}
