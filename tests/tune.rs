//! `bitnetc tune`: tunes a model's kernels into the per-host cache; later commands use the cache
//! (visible in `inspect --kernels`) and still compute exactly the reference's tokens; damaged
//! caches are reported in one line and ignored; concurrent tuners leave a valid cache.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bitnetc_tune::{HostFingerprint, TuneCache};

fn bitnetc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnetc"))
        .args(args)
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("bitnetc runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = bitnetc(args);
    assert!(
        out.status.success(),
        "bitnetc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn dir() -> &'static Path {
    support::scratch_dir()
}

fn tiny() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join("tiny-i2_s.gguf");
    if !path.exists() {
        ok(&[
            "gen-model",
            "--preset",
            "tiny",
            "--type",
            "i2_s",
            "--embedding-type",
            "f16",
            "--seed",
            "5",
            "-o",
            path.to_str().unwrap(),
        ]);
    }
    path
}

fn tune(model: &Path, cache: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "tune",
        "-m",
        model.to_str().unwrap(),
        "-t",
        "2",
        "--budget",
        "8",
        "--no-e2e",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args).0
}

fn kernels(model: &Path, cache: &Path) -> serde_json::Value {
    let (out, _) = ok(&[
        "inspect",
        "--kernels",
        "--json",
        "-t",
        "2",
        "--cache-dir",
        cache.to_str().unwrap(),
        model.to_str().unwrap(),
    ]);
    serde_json::from_str(&out).unwrap()
}

fn greedy(model: &Path, backend: &str, cache: &Path) -> (Vec<u64>, String) {
    let out = bitnetc(&[
        "run",
        "-m",
        model.to_str().unwrap(),
        "--prompt-ids",
        "1,17,300,42,5,77,9,8,1000",
        "-n",
        "12",
        "--temp",
        "0",
        "--ignore-eos",
        "--json",
        "-t",
        "2",
        "--backend",
        backend,
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (ids, String::from_utf8(out.stderr).unwrap())
}

fn cache_file(cache: &Path) -> PathBuf {
    let (c, _) = TuneCache::open(cache, HostFingerprint::detect().unwrap());
    c.path().to_path_buf()
}

#[test]
fn tuned_parameters_are_cached_used_and_exact() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = tune(&model, cache.path(), &[]);
    // q/o, k/v, up/gate, down: a GEMV and a GEMM each, the head and attention.
    for family in ["gemv/", "gemm/", "head/", "attention/"] {
        assert!(out.contains(family), "{out}");
    }
    assert!(out.contains("speedup"), "{out}");
    let (c, w) = TuneCache::open(cache.path(), HostFingerprint::detect().unwrap());
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.len(), 10, "{:?}", c.path());
    let text = std::fs::read_to_string(c.path()).unwrap();
    assert!(text.contains("\"tuned_ns\""), "{text}");

    // Every tuned kernel now takes its parameters from the cache; without it, from the default.
    let v = kernels(&model, cache.path());
    let tuned = v["kernels"].as_array().unwrap();
    assert_eq!(tuned.len(), 10, "{v}");
    assert!(tuned.iter().all(|k| k["params"] == "cache"), "{v}");
    let v = kernels(&model, empty.path());
    assert!(v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["params"] == "default"));

    // A second tune finds everything cached and does not re-tune.
    let again = tune(&model, cache.path(), &[]);
    assert_eq!(again.matches("(cached").count(), 10, "{again}");
    let (c2, _) = TuneCache::open(cache.path(), HostFingerprint::detect().unwrap());
    assert_eq!(
        std::fs::read_to_string(c2.path()).unwrap(),
        std::fs::read_to_string(c.path()).unwrap()
    );

    // Tuned kernels compute exactly what the reference does.
    let (reference, _) = greedy(&model, "reference", empty.path());
    let (tuned, err) = greedy(&model, "jit", cache.path());
    assert_eq!(tuned, reference);
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn damaged_caches_are_reported_in_one_line_and_ignored() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    tune(&model, cache.path(), &["--ops", "gemv"]);
    let path = cache_file(cache.path());
    let good = std::fs::read_to_string(&path).unwrap();
    let (reference, _) = greedy(&model, "reference", cache.path());
    let version = format!("\"bitnetc_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    let cpu = HostFingerprint::detect().unwrap().cpu_model;
    for (what, damaged) in [
        ("corrupt", good.replace("\"entries\"", "\"entr\u{1}")),
        ("truncated", good[..good.len() / 3].to_string()),
        (
            "foreign version",
            good.replace(&version, "\"bitnetc_version\": \"0.0.0-old\""),
        ),
        (
            "foreign host",
            good.replace(&serde_json::to_string(&cpu).unwrap(), "\"Some Other CPU\""),
        ),
    ] {
        assert_ne!(damaged, good, "{what}: the damage must change the file");
        std::fs::write(&path, &damaged).unwrap();
        let (ids, err) = greedy(&model, "jit", cache.path());
        assert_eq!(ids, reference, "{what}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("tune cache")).collect();
        assert_eq!(warnings.len(), 1, "{what}: {err}");
        assert!(
            warnings[0].starts_with("warning: ignoring tune cache"),
            "{what}: {err}"
        );
        let v = kernels(&model, cache.path());
        assert!(
            v["kernels"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["params"] == "default"),
            "{what}: a damaged cache must not be used"
        );
        // The file the user had is still there, untouched, until a tune replaces it.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged, "{what}");
    }
}

/// The prompt kernel reads the weight layout its shape's GEMV chose. Tuned from a cache whose
/// GEMVs chose a layout other than the default, each shape either keeps that layout (its prompt
/// kernel is no slower on it) or moves its GEMV back to the default layout and says so on
/// stderr: the cache and the report agree, and the kernels still give the reference's tokens.
#[test]
fn a_gemv_layout_that_slows_prompts_is_given_up() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    tune(&model, cache.path(), &["--ops", "gemv"]);
    let path = cache_file(cache.path());
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gemvs: Vec<String> = doc["entries"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|id| id.starts_with("gemv/"))
        .cloned()
        .collect();
    assert_eq!(gemvs.len(), 4, "{doc}");
    for id in &gemvs {
        let params = &mut doc["entries"][id]["params"];
        params["pack"] = "rows4cols16".into();
        params["rows_per_group"] = 4.into();
        params["streams"] = 1.into();
        params["unroll"] = 1.into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let c = cache.path().to_str().unwrap();
    let m = model.to_str().unwrap();
    let (out, err) = ok(&[
        "tune",
        "-m",
        m,
        "-t",
        "2",
        "--budget",
        "8",
        "--no-e2e",
        "--cache-dir",
        c,
        "--ops",
        "gemm",
    ]);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for id in &gemvs {
        let params = &doc["entries"][id]["params"];
        let said = err.contains(&format!(
            "{id}: the prompt kernel is faster on the default weight layout"
        ));
        match params["pack"].as_str().unwrap() {
            "rows4cols16" => {
                assert_eq!(params["rows_per_group"], 4, "{params}");
                assert!(
                    !said,
                    "{id} kept its layout but the tuner says otherwise:\n{err}"
                );
            }
            "rows16cols4" => {
                assert_eq!(params["rows_per_group"], 16, "{params}");
                assert!(
                    said,
                    "{id} went back to the default layout silently:\n{err}"
                );
                assert!(out.contains(id.as_str()), "{out}");
            }
            other => panic!("{id}: layout {other} is neither the one it had nor the default"),
        }
    }
    let (reference, _) = greedy(&model, "reference", cache.path());
    let (tuned, err) = greedy(&model, "jit", cache.path());
    assert_eq!(tuned, reference);
    assert!(!err.contains("warning"), "{err}");
}

/// The one-token GEMVs are timed alone while tuning; the end-to-end check also runs the tuned
/// set with the GEMVs at their defaults and keeps those defaults only when they generate
/// faster. Seeded with slow GEMV values, the report and the cache agree whichever way it goes,
/// and the kernels still give the reference's tokens.
#[test]
fn tuned_gemvs_that_generate_slower_end_to_end_are_given_up() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    tune(&model, cache.path(), &["--ops", "gemv"]);
    let path = cache_file(cache.path());
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gemvs: Vec<String> = doc["entries"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|id| id.starts_with("gemv/"))
        .cloned()
        .collect();
    assert_eq!(gemvs.len(), 4, "{doc}");
    for id in &gemvs {
        let params = &mut doc["entries"][id]["params"];
        params["pack"] = "rows4cols16".into();
        params["rows_per_group"] = 4.into();
        params["streams"] = 1.into();
        params["unroll"] = 1.into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let c = cache.path().to_str().unwrap();
    let m = model.to_str().unwrap();
    let (out, _) = ok(&[
        "tune",
        "-m",
        m,
        "-t",
        "2",
        "--budget",
        "8",
        "--cache-dir",
        c,
        "--ops",
        "gemv",
        "--e2e-prompt",
        "8",
        "--e2e-gen",
        "8",
    ]);
    assert!(out.contains("end to end"), "{out}");
    let given_up = out.contains("the tuned one-token GEMVs generated slower than their defaults");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for id in &gemvs {
        let params = &doc["entries"][id]["params"];
        let (pack, rows) = if given_up {
            ("rows16cols4", 16)
        } else {
            ("rows4cols16", 4)
        };
        assert_eq!(params["pack"], pack, "{id}: {params}\n{out}");
        assert_eq!(params["rows_per_group"], rows, "{id}: {params}\n{out}");
    }
    let (reference, _) = greedy(&model, "reference", cache.path());
    let (tuned, err) = greedy(&model, "jit", cache.path());
    assert_eq!(tuned, reference);
    assert!(!err.contains("warning"), "{err}");
}

#[test]
fn two_tuners_at_once_leave_a_valid_cache() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    let spawn = |ops: &str| {
        Command::new(env!("CARGO_BIN_EXE_bitnetc"))
            .args([
                "tune",
                "-m",
                model.to_str().unwrap(),
                "-t",
                "1",
                "--budget",
                "6",
                "--no-e2e",
                "--force",
                "--ops",
                ops,
                "--cache-dir",
                cache.path().to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("gemv,head");
    let b = spawn("gemv,gemm");
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (c, w) = TuneCache::open(cache.path(), HostFingerprint::detect().unwrap());
    assert!(w.is_empty(), "{w:?}");
    // 4 GEMV + 4 GEMM + 1 head entries, from both tuners.
    assert_eq!(c.len(), 9);
}

#[test]
fn bad_tune_requests_are_refused_clearly() {
    let model = tiny();
    let cache = tempfile::tempdir().unwrap();
    let out = bitnetc(&[
        "tune",
        "-m",
        model.to_str().unwrap(),
        "--ops",
        "gemv,conv",
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kernel family 'conv'"));
}
