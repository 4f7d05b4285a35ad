//! End-to-end tests of the `bitnetc` binary on synthetic models it generates itself.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bitnetc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnetc"))
        .args(args)
        .output()
        .expect("bitnetc runs")
}

fn ok(args: &[&str]) -> Output {
    let out = bitnetc(args);
    assert!(
        out.status.success(),
        "bitnetc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary folder shared by the tests of this file.
fn dir() -> &'static Path {
    support::scratch_dir()
}

/// The tiny model of `arch` and `ty`, generated once.
fn tiny(arch: &str, ty: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join(format!("tiny-{arch}-{ty}.gguf"));
    if !path.exists() {
        ok(&[
            "gen-model",
            "--arch",
            arch,
            "--preset",
            "tiny",
            "--type",
            ty,
            "--seed",
            "7",
            "-o",
            path.to_str().unwrap(),
        ]);
    }
    path
}

fn run_json(model: &Path, threads: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "run",
        "-m",
        model.to_str().unwrap(),
        "--prompt-ids",
        "1,5,9,200,33",
        "-n",
        "32",
        "--temp",
        "0",
        "--ignore-eos",
        "--json",
        "-t",
        threads,
    ];
    args.extend_from_slice(extra);
    let out = ok(&args);
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn ids(v: &serde_json::Value) -> Vec<u64> {
    v["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn greedy_ids_are_the_same_on_1_and_2_threads_and_across_runs() {
    for ty in ["i2_s", "tq1_0", "tq2_0"] {
        let m = tiny("bitnet-b1.58", ty);
        let a = run_json(&m, "1", &[]);
        let b = run_json(&m, "2", &[]);
        let c = run_json(&m, "2", &[]);
        assert_eq!(ids(&a).len(), 32, "{ty}");
        // A model that echoes one token would make the comparisons below vacuous.
        let distinct: std::collections::HashSet<u64> = ids(&a).into_iter().collect();
        assert!(distinct.len() >= 8, "{ty}: degenerate output {:?}", ids(&a));
        assert_eq!(ids(&a), ids(&b), "{ty}: 1 vs 2 threads");
        assert_eq!(ids(&b), ids(&c), "{ty}: repeated run");
        for key in ["prompt_ids", "text", "timings"] {
            assert!(!a[key].is_null(), "{ty}: key {key}");
        }
    }
}

#[test]
fn the_three_ternary_formats_of_one_seed_give_identical_logits() {
    let mut dumps = Vec::new();
    for ty in ["i2_s", "tq1_0", "tq2_0"] {
        let m = tiny("bitnet", ty);
        let path = dir().join(format!("logits-{ty}.bin"));
        run_json(&m, "2", &["--dump-logits", path.to_str().unwrap()]);
        dumps.push(std::fs::read(&path).unwrap());
    }
    // 5 prompt positions + 31 evaluated generated tokens, 1024 logits each.
    assert_eq!(dumps[0].len(), (5 + 31) * 1024 * 4);
    assert!(dumps[0] == dumps[1] && dumps[1] == dumps[2]);
}

#[test]
fn text_prompts_stream_text_and_sampling_is_seeded() {
    let m = tiny("bitnet-b1.58", "i2_s");
    let p = m.to_str().unwrap();
    let a = ok(&[
        "run",
        "-m",
        p,
        "-p",
        "Hello world",
        "-n",
        "12",
        "--seed",
        "3",
        "--temp",
        "0.9",
    ]);
    let b = ok(&[
        "run",
        "-m",
        p,
        "-p",
        "Hello world",
        "-n",
        "12",
        "--seed",
        "3",
        "--temp",
        "0.9",
        "-t",
        "1",
    ]);
    assert_eq!(a.stdout, b.stdout);
    let stderr = String::from_utf8_lossy(&a.stderr);
    assert!(
        stderr.contains("tokens/s") && stderr.contains("load"),
        "{stderr}"
    );
}

#[test]
fn inspect_prints_tensors_and_ir() {
    let m = tiny("bitnet-b1.58", "tq2_0");
    let out = ok(&["inspect", m.to_str().unwrap(), "--ir"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "blk.1.ffn_down.weight",
        "tq2_0",
        "ternary_linear",
        "attention",
        "Relu2",
        "output_head",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    let out = ok(&["inspect", m.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"]["n_layer"], 2);
    assert_eq!(v["tensors"].as_array().unwrap().len(), 2 + 2 * 11);
}

/// A failing command: non-zero exit, one `error:` line, no panic.
fn assert_clean_failure(args: &[&str], needle: &str) {
    let out = bitnetc(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: expected '{needle}' in {stderr}"
    );
}

/// A model whose arithmetic overflows (finite weights, so the loader takes it: the final norm's
/// weights near f32's largest value push the logits to infinity) stops with an error naming
/// non-finite logits instead of sampling from them.
#[test]
fn overflowing_logits_are_an_error_not_a_token() {
    let m = tiny("bitnet-b1.58", "i2_s");
    let mut bytes = std::fs::read(&m).unwrap();
    let header = bitnetc_models::gguf::parse_header(&bytes).unwrap();
    let norm = header
        .tensors
        .iter()
        .find(|t| t.name == "output_norm.weight")
        .expect("an output norm");
    let start = (header.data_start + norm.offset) as usize;
    let n: usize = norm.dims.iter().product::<u64>() as usize;
    for v in bytes[start..start + 4 * n].chunks_exact_mut(4) {
        v.copy_from_slice(&3.0e38f32.to_le_bytes());
    }
    let bad = dir().join("overflowing.gguf");
    std::fs::write(&bad, &bytes).unwrap();
    let bad_s = bad.to_str().unwrap();
    for backend in ["jit", "reference"] {
        assert_clean_failure(
            &[
                "run",
                "-m",
                bad_s,
                "-p",
                "hello",
                "-n",
                "2",
                "--backend",
                backend,
            ],
            "non-finite logit",
        );
    }
    // Perplexity scores logits too: an error, not a NaN estimate.
    let text = dir().join("overflowing.txt");
    std::fs::write(
        &text,
        "the quick brown fox jumps over the lazy dog. ".repeat(40),
    )
    .unwrap();
    let text_s = text.to_str().unwrap();
    assert_clean_failure(
        &["perplexity", "-m", bad_s, "-f", text_s, "--ctx", "16"],
        "non-finite logit",
    );
}

#[test]
fn truncated_and_corrupt_files_fail_with_one_line() {
    let m = tiny("bitnet-b1.58", "i2_s");
    let bytes = std::fs::read(&m).unwrap();
    let header_end = bitnetc_models::gguf::parse_header(&bytes)
        .unwrap()
        .data_start as usize;
    let bad = dir().join("bad.gguf");
    let bad_s = bad.to_str().unwrap();
    let mut cuts: Vec<usize> = vec![
        0,
        3,
        4,
        8,
        20,
        24,
        100,
        header_end - 1,
        header_end,
        header_end + 1000,
        bytes.len() - 1,
    ];
    cuts.extend((0..header_end).step_by(header_end / 7 + 1));
    for cut in cuts {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let needle = if cut < 4 { "magic" } else { "" };
        assert_clean_failure(
            &["run", "-m", bad_s, "--prompt-ids", "1", "-n", "1"],
            needle,
        );
    }
    let mut wrong = bytes.clone();
    wrong[..4].copy_from_slice(b"GGML");
    std::fs::write(&bad, &wrong).unwrap();
    assert_clean_failure(&["inspect", bad_s], "not a GGUF file");
    assert_clean_failure(
        &["run", "-m", "/nonexistent/model.gguf", "-p", "x"],
        "cannot read",
    );
}

/// Finds the tensor-info record of `name` and returns the offset of its n_dims field.
fn tensor_record(bytes: &[u8], name: &str) -> usize {
    let mut key = (name.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let pos = bytes
        .windows(key.len())
        .rposition(|w| w == key.as_slice())
        .expect("tensor record");
    pos + key.len()
}

#[test]
fn model_level_problems_are_named() {
    let m = tiny("bitnet-b1.58", "i2_s");
    let bytes = std::fs::read(&m).unwrap();
    let bad = dir().join("bad-model.gguf");
    let bad_s = bad.to_str().unwrap();
    let run = ["run", "-m", bad_s, "--prompt-ids", "1", "-n", "1"];

    // Renamed tensor: the real one is missing.
    let mut b = bytes.clone();
    let at = tensor_record(&b, "blk.1.ffn_up.weight");
    b[at - 9] = b'X';
    std::fs::write(&bad, &b).unwrap();
    assert_clean_failure(&run, "missing tensor 'blk.1.ffn_up.weight'");

    // Unknown tensor type (after n_dims and two dims).
    let mut b = bytes.clone();
    let at = tensor_record(&b, "blk.0.attn_q.weight");
    b[at + 4 + 16..at + 4 + 16 + 4].copy_from_slice(&77u32.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_clean_failure(&run, "blk.0.attn_q.weight");

    // Mismatched shape: swap K and M of attn_k ([256, 128] → [128, 256] has the same size).
    let mut b = bytes.clone();
    let at = tensor_record(&b, "blk.0.attn_k.weight");
    let (k, mm) = (b[at + 4..at + 12].to_vec(), b[at + 12..at + 20].to_vec());
    b[at + 4..at + 12].copy_from_slice(&mm);
    b[at + 12..at + 20].copy_from_slice(&k);
    std::fs::write(&bad, &b).unwrap();
    assert_clean_failure(&run, "blk.0.attn_k.weight");

    // A corrupt I2_S scale.
    let h = bitnetc_models::gguf::parse_header(&bytes).unwrap();
    let t = h
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    let scale_at = (h.data_start + t.offset + t.n_elems() / 4) as usize;
    let mut b = bytes.clone();
    b[scale_at..scale_at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_clean_failure(&run, "blk.0.ffn_down.weight");

    // An absurd hyperparameter.
    let mut b = bytes.clone();
    let key = b"bitnet-b1.58.block_count";
    let pos = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    b[pos..pos + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&bad, &b).unwrap();
    assert_clean_failure(&run, "block_count");
}

#[test]
fn bad_arguments_fail_cleanly() {
    let m = tiny("bitnet-b1.58", "i2_s");
    let p = m.to_str().unwrap();
    assert_clean_failure(
        &["run", "-m", p, "--prompt-ids", "99999", "-n", "1"],
        "outside the vocabulary",
    );
    assert_clean_failure(
        &["run", "-m", p, "--prompt-ids", "1,2", "-n", "10", "-c", "4"],
        "context full",
    );
    assert_clean_failure(
        &["gen-model", "--preset", "huge", "-o", "/tmp/x.gguf"],
        "unknown preset",
    );
}

#[test]
fn chat_answers_each_turn_and_ends_on_an_empty_line() {
    use std::io::Write;
    let m = tiny("bitnet-b1.58", "i2_s");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnetc"))
        .args(["chat", "-m", m.to_str().unwrap(), "-n", "8", "--temp", "0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello there\nand again\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("tokens/s]").count(), 2, "{stderr}");
    assert!(stderr.contains("BitNet"), "{stderr}");
}

#[test]
fn demo_makes_its_model_once_and_generates() {
    let cache = dir().join("demo-cache");
    let c = cache.to_str().unwrap();
    let first = ok(&["demo", "--cache-dir", c, "-n", "8"]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("writing the tiny model"));
    assert!(!first.stdout.is_empty());
    let second = ok(&["demo", "--cache-dir", c, "-n", "8"]);
    assert!(!String::from_utf8_lossy(&second.stderr).contains("writing the tiny model"));
    assert_eq!(first.stdout, second.stdout);
}
