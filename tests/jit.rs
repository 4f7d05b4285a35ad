//! The JIT backend gives exactly the reference backend's results: the same greedy tokens and
//! bit-identical logits for I2_S, TQ1_0 and TQ2_0 models of the tiny and large presets, on 1
//! and 2 threads, at every ISA level the host supports; its kernel list names generated kernels
//! and marks the ops that fell back.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use bitnetc_codegen::cpu::{HostFeatures, IsaLevel};

fn bitnetc(args: &[&str]) -> std::process::Output {
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

/// The model of these options, generated once (tests run in parallel: one writer at a time, and
/// no reader before the file is complete).
fn model(arch: &str, preset: &str, ty: &str, embedding: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join(format!("{arch}-{preset}-{ty}-{embedding}.gguf"));
    if !path.exists() {
        ok(&[
            "gen-model",
            "--arch",
            arch,
            "--preset",
            preset,
            "--type",
            ty,
            "--embedding-type",
            embedding,
            "--seed",
            "11",
            "-o",
            path.to_str().unwrap(),
        ]);
    }
    path
}

/// Generated ids and the dumped logits of a greedy run.
fn run(model: &Path, backend: &str, threads: &str, isa: &str, n: &str) -> (Vec<u64>, Vec<u8>) {
    let logits = dir().join(format!(
        "logits-{}-{backend}-{threads}-{isa}.bin",
        model.file_stem().unwrap().to_string_lossy()
    ));
    let out = ok(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--prompt-ids",
        "1,17,300,42,5,77",
        "-n",
        n,
        "--temp",
        "0",
        "--ignore-eos",
        "--json",
        "-t",
        threads,
        "--backend",
        backend,
        "--isa",
        isa,
        "--dump-logits",
        logits.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids = v["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (ids, std::fs::read(&logits).unwrap())
}

fn isa_levels() -> Vec<&'static str> {
    HostFeatures::detect()
        .unwrap()
        .supported_levels()
        .into_iter()
        .map(|l| l.name())
        .collect()
}

fn check_model(model: &Path, n: &str, levels: &[&str]) {
    let (ref_ids, ref_logits) = run(model, "reference", "2", "native", n);
    let distinct: std::collections::HashSet<_> = ref_ids.iter().collect();
    assert!(
        distinct.len() >= 3,
        "degenerate reference output {ref_ids:?}"
    );
    for threads in ["1", "2"] {
        for isa in levels {
            let (ids, logits) = run(model, "jit", threads, isa, n);
            assert_eq!(
                ids,
                ref_ids,
                "{} jit t={threads} isa={isa}",
                model.display()
            );
            assert!(
                logits == ref_logits,
                "{} jit t={threads} isa={isa}: logits differ from the reference",
                model.display()
            );
        }
    }
}

#[test]
fn jit_equals_reference_on_tiny_models_at_every_isa_level() {
    let levels = isa_levels();
    for ty in ["i2_s", "tq1_0", "tq2_0"] {
        check_model(&model("bitnet-b1.58", "tiny", ty, "f16"), "24", &levels);
    }
    // BF16, F32, Q8_0 and Q6_K heads, and the 1bitLLM architecture.
    for emb in ["bf16", "f32", "q8_0", "q6_k"] {
        check_model(&model("bitnet-b1.58", "tiny", "i2_s", emb), "12", &levels);
    }
    check_model(&model("bitnet", "tiny", "tq2_0", "f16"), "12", &levels);
}

/// A prompt longer than the prompt kernels' super-blocks, of a length no token block divides:
/// every ISA level's token-blocked kernel (2, 4 or 8 tokens per call) runs several super-blocks
/// and the last tokens go through the one-token kernel; every logit of every position equals
/// the reference's.
#[test]
fn long_prompts_through_the_blocked_kernels_equal_the_reference() {
    use bitnetc::runtime::LogitsFor;
    use bitnetc::{BackendKind, Engine, EngineOptions, TuningSource};
    let path = model("bitnet-b1.58", "tiny", "i2_s", "f16");
    let prompt: Vec<u32> = (0..149u32).map(|i| (i * 37 + 11) % 500).collect();
    let logits = |backend: BackendKind, threads: usize, isa| {
        let opts = EngineOptions {
            threads,
            backend,
            isa,
            tuning: TuningSource::Off,
            ..EngineOptions::default()
        };
        let engine = Engine::load(&path, &opts).unwrap();
        let mut session = engine.new_session(prompt.len());
        engine
            .forward(&mut session, &prompt, LogitsFor::All)
            .unwrap()
    };
    let want = logits(BackendKind::Reference, 2, IsaLevel::Native);
    assert!(want.iter().all(|x| x.is_finite()));
    for level in HostFeatures::detect().unwrap().supported_levels() {
        for threads in [1, 2] {
            let got = logits(BackendKind::Jit, threads, level);
            assert_eq!(got.len(), want.len());
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{} t={threads}: logits differ", level.name());
        }
    }
}

/// A pass that wants only the last token's logits computes the last layer for that token alone:
/// its logits equal the last row of a pass computing every row, and the keys and values it leaves
/// in the cache give the next token the same logits too (both backends, several thread counts).
#[test]
fn last_token_passes_equal_the_last_row_of_full_passes() {
    use bitnetc::runtime::LogitsFor;
    use bitnetc::{BackendKind, Engine, EngineOptions, TuningSource};
    let path = model("bitnet-b1.58", "tiny", "i2_s", "f16");
    let prompt: Vec<u32> = (0..37u32).map(|i| (i * 53 + 7) % 500).collect();
    for (backend, threads) in [
        (BackendKind::Reference, 1),
        (BackendKind::Jit, 1),
        (BackendKind::Jit, 2),
    ] {
        let opts = EngineOptions {
            threads,
            backend,
            tuning: TuningSource::Off,
            ..EngineOptions::default()
        };
        let engine = Engine::load(&path, &opts).unwrap();
        // Prompt with `want`, then one more token; returns both passes' last logits.
        let run = |want: LogitsFor| {
            let mut session = engine.new_session(prompt.len() + 1);
            let first = engine.forward(&mut session, &prompt, want).unwrap();
            let next = engine
                .forward(&mut session, &[42], LogitsFor::Last)
                .unwrap();
            (first, next)
        };
        let (all, next_after_all) = run(LogitsFor::All);
        let (last, next_after_last) = run(LogitsFor::Last);
        let n_vocab = all.len() / prompt.len();
        assert_eq!(last.len(), n_vocab);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&last),
            bits(&all[all.len() - n_vocab..]),
            "{backend:?} t={threads}: last-token logits"
        );
        assert_eq!(
            bits(&next_after_last),
            bits(&next_after_all),
            "{backend:?} t={threads}: the next token after a last-token pass"
        );
    }
}

#[test]
fn jit_equals_reference_on_large_models() {
    for ty in ["i2_s", "tq1_0", "tq2_0"] {
        check_model(&model("bitnet", "large", ty, "f16"), "6", &["native"]);
    }
    check_model(&model("bitnet", "large", "tq2_0", "q6_k"), "6", &["native"]);
}

fn kernels(model: &Path) -> serde_json::Value {
    let receipt = dir().join(format!(
        "receipt-{}.json",
        model.file_stem().unwrap().to_string_lossy()
    ));
    ok(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "4",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1",
        "--no-warmup",
        "--json",
        receipt.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(receipt).unwrap()).unwrap();
    v
}

#[test]
fn receipts_name_generated_kernels_and_mark_fallbacks() {
    let v = kernels(&model("bitnet-b1.58", "tiny", "tq2_0", "f16"));
    assert_eq!(v["compute_path"], "real", "{v}");
    let ks = v["kernels"].as_array().unwrap();
    let of =
        |op: &str| -> Vec<&serde_json::Value> { ks.iter().filter(|k| k["op"] == op).collect() };
    assert!(!of("ternary_linear").is_empty());
    for k in of("ternary_linear") {
        assert!(
            k["kernel"].as_str().unwrap().starts_with("jit.gemv."),
            "{k}"
        );
    }
    for k in of("output_head") {
        assert!(
            k["kernel"].as_str().unwrap().starts_with("jit.head."),
            "{k}"
        );
    }
    // Q6_K and Q8_0 heads run generated kernels on the repacked table, F32 ones directly, so
    // no op of a generated model falls back any more; `--strict` on a fallback is covered by
    // `tests/bench.rs::strict_cli_fails_on_a_fallback_and_names_the_op`.
    for emb in ["q6_k", "q8_0", "f32"] {
        let v = kernels(&model("bitnet-b1.58", "tiny", "tq2_0", emb));
        assert_eq!(v["compute_path"], "real", "{emb}: {v}");
        for k in v["kernels"].as_array().unwrap() {
            if k["op"] == "output_head" {
                assert!(
                    k["kernel"].as_str().unwrap().starts_with("jit.head."),
                    "{k}"
                );
            }
        }
    }
}

#[test]
fn an_isa_level_above_the_host_is_refused() {
    let levels = isa_levels();
    let tiny = model("bitnet-b1.58", "tiny", "i2_s", "f16");
    for isa in ["sse4", "avx2", "avx512"] {
        let out = bitnetc(&[
            "run",
            "-m",
            tiny.to_str().unwrap(),
            "-p",
            "hi",
            "-n",
            "1",
            "--isa",
            isa,
        ]);
        if levels.contains(&isa) {
            assert!(out.status.success());
        } else {
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                err.lines().filter(|l| l.starts_with("error:")).count(),
                1,
                "{err}"
            );
        }
    }
}

#[test]
fn inspect_kernels_lists_generated_kernels_with_their_code() {
    let tiny = model("bitnet-b1.58", "tiny", "i2_s", "f16");
    let text = ok(&["inspect", "--kernels", tiny.to_str().unwrap()]);
    assert!(text.contains("jit.gemv."), "{text}");
    assert!(text.contains("jit.gemm."), "{text}");
    assert!(text.contains("jit.head."), "{text}");
    assert!(text.contains("jit.attention."), "{text}");
    assert!(text.contains("0 fallbacks"), "{text}");
    let json = ok(&[
        "inspect",
        "--kernels",
        "--asm",
        "--json",
        tiny.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ks = v["kernels"].as_array().unwrap();
    // tiny: q/o 256×256, k/v 256×128, up/gate 256×512, down 512×256, each as a one-token GEMV
    // and a token-blocked prompt GEMM, the head, and attention.
    assert_eq!(ks.len(), 10, "{v}");
    assert_eq!(
        ks.iter().filter(|k| k["op"] == "attention").count(),
        1,
        "{v}"
    );
    let prompt = ks
        .iter()
        .filter(|k| k["op"] == "ternary_linear_prompt")
        .count();
    assert_eq!(prompt, 4, "{v}");
    for k in ks {
        assert!(k["code_bytes"].as_u64().unwrap() > 0);
        assert!(k["uses"].as_u64().unwrap() > 0);
        let asm = k["asm"].as_str().unwrap();
        assert!(asm.lines().count() > 20, "{asm}");
    }
    // Every op of the graph is listed with the kernel it runs.
    assert!(v["ops"].as_array().unwrap().len() > 10);
}
