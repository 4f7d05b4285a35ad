//! Tests of the benchmark machinery: statistics, comparison logic and exit statuses, receipt
//! schema, host/model refusal, `--strict`, reports and perplexity. No test asserts a speed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bitnetc::bench::compare::{compare, compare_test, Thresholds, Verdict};
use bitnetc::bench::host::{BuildInfo, HostInfo, ProcessFigures};
use bitnetc::bench::perplexity::{perplexity, PerplexityOptions};
use bitnetc::bench::receipt::{
    check_strict, compute_path, group_kernels, BenchConfig, ContentHash, ModelInfo, Receipt,
    TestResult, RECEIPT_KIND, SCHEMA_VERSION,
};
use bitnetc::bench::stats::{mean, median, percentile, stddev, Figure, Latency};
use bitnetc::{Engine, EngineOptions, KernelUse};

// ---------------------------------------------------------------- helpers

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

fn dir() -> &'static Path {
    support::scratch_dir()
}

fn tiny() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir().join("tiny.gguf");
    if !path.exists() {
        ok(&[
            "gen-model",
            "--preset",
            "tiny",
            "--type",
            "i2_s",
            "--seed",
            "3",
            "-o",
            path.to_str().unwrap(),
        ]);
    }
    path
}

/// A receipt made by `bitnetc bench` on the tiny model (once per test binary).
fn real_receipt() -> &'static (PathBuf, serde_json::Value) {
    static R: OnceLock<(PathBuf, serde_json::Value)> = OnceLock::new();
    R.get_or_init(|| {
        let model = tiny();
        let json = dir().join("real.json");
        let text = dir().join("quality.txt");
        std::fs::write(&text, sample_text()).unwrap();
        ok(&[
            "bench",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "16",
            "-n",
            "8",
            "-t",
            "1,2",
            "-r",
            "2",
            "--json",
            json.to_str().unwrap(),
            "--quality",
            text.to_str().unwrap(),
            "--quality-ctx",
            "32",
        ]);
        let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (json, v)
    })
}

fn sample_text() -> String {
    let base = "The quick brown fox jumps over the lazy dog. A journey of a thousand miles \
                begins with a single step. All that glitters is not gold; where there is smoke \
                there is fire. ";
    base.repeat(6)
}

fn result(test: &str, threads: usize, tps: &[f64], lat_ms: Option<&[f64]>) -> TestResult {
    let tg = test.starts_with("tg");
    let n: usize = test[2..].parse().unwrap();
    TestResult {
        test: test.into(),
        kind: test[..2].into(),
        n_prompt: if tg { 0 } else { n },
        n_gen: if tg { n } else { 0 },
        backend: "reference".into(),
        threads,
        load_s: 0.01,
        compile_s: None,
        tokens_per_s: Figure::new(tps.to_vec()),
        seconds: tps.iter().map(|t| n as f64 / t).collect(),
        ttft_ms: Figure::new(tps.iter().map(|t| 1e3 * n as f64 / t).collect()),
        token_latency_ms: lat_ms.map(|l| Latency::new(l.to_vec())),
        peak_rss_bytes: Some(10 << 20),
        weight_bytes_per_token: tg.then_some(1 << 20),
        of_bandwidth_ceiling: None,
    }
}

fn synthetic() -> Receipt {
    Receipt {
        schema_version: SCHEMA_VERSION,
        kind: RECEIPT_KIND.into(),
        timestamp: "2025-01-01T00:00:00Z".into(),
        bitnetc: BuildInfo {
            version: "0.1.0".into(),
            git_commit: "unknown".into(),
        },
        command: vec!["bitnetc".into(), "bench".into()],
        host: HostInfo {
            hostname: "h".into(),
            cpu_model: "Test CPU".into(),
            logical_cores: 2,
            physical_cores: Some(2),
            isa_features: vec!["avx2".into()],
            arch: "x86_64".into(),
            os: "linux".into(),
            os_release: None,
            kernel: None,
            memory_bytes: Some(16 << 30),
        },
        model: ModelInfo {
            path: "m.gguf".into(),
            file_bytes: 1000,
            architecture: "bitnet-b1.58".into(),
            name: None,
            tensor_types: Default::default(),
            n_tensors: 1,
            n_params: 1,
            n_layer: 1,
            n_embd: 1,
            n_vocab: 1,
            content_hash: ContentHash {
                algorithm: "sha256".into(),
                value: "ab".repeat(32),
            },
        },
        backend: "reference".into(),
        threads: vec![1, 2],
        compute_path: "real".into(),
        kernels: group_kernels(&[KernelUse {
            label: "blk.0.attn_q".into(),
            op: "ternary_linear".into(),
            kernel: "reference.ternary_linear.i2_s".into(),
            fallback: false,
        }]),
        config: BenchConfig {
            n_prompt: vec![128],
            n_gen: vec![64],
            repetitions: 5,
            warmup_runs: 1,
            tg_prompt: 4,
            token_seed: 1,
        },
        results: vec![
            result("pp128", 1, &[100.0, 101.0, 99.0, 100.5, 99.5], None),
            result(
                "tg64",
                1,
                &[20.0, 20.2, 19.8, 20.1, 19.9],
                Some(&[50.0, 49.0, 51.0, 50.5, 49.5, 60.0]),
            ),
            result("pp128", 2, &[190.0, 192.0, 188.0, 191.0, 189.0], None),
        ],
        process: ProcessFigures::default(),
        quality: None,
        read_bandwidth: Vec::new(),
    }
}

/// `r` with every throughput sample (and so the summaries) multiplied by `factor`.
fn scale_throughput(r: &Receipt, factor: f64) -> Receipt {
    let mut r = r.clone();
    for t in &mut r.results {
        t.tokens_per_s = Figure::new(t.tokens_per_s.samples.iter().map(|x| x * factor).collect());
    }
    r
}

fn write(r: &Receipt, name: &str) -> PathBuf {
    let p = dir().join(name);
    r.write(&p).unwrap();
    p
}

// ---------------------------------------------------------------- statistics

#[test]
fn statistics_on_synthetic_samples() {
    let xs = [4.0, 1.0, 3.0, 2.0, 5.0];
    assert_eq!(mean(&xs), 3.0);
    assert!((stddev(&xs) - 2.5f64.sqrt()).abs() < 1e-12);
    assert_eq!(median(&xs), 3.0);
    assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    // NumPy's linear interpolation: rank p/100·(n−1).
    let ys: Vec<f64> = (1..=100).map(f64::from).collect();
    assert!((percentile(&ys, 50.0) - 50.5).abs() < 1e-12);
    assert!((percentile(&ys, 95.0) - 95.05).abs() < 1e-12);
    assert!((percentile(&ys, 99.0) - 99.01).abs() < 1e-12);
    assert_eq!(percentile(&[7.0], 99.0), 7.0);
    let f = Figure::new(vec![2.0, 4.0, 6.0]);
    assert_eq!((f.mean, f.median, f.min, f.max), (4.0, 4.0, 2.0, 6.0));
    assert!((f.stddev - 2.0).abs() < 1e-12);
    let l = Latency::new(vec![1.0, 2.0, 3.0, 4.0, 100.0]);
    assert_eq!(l.p50, 3.0);
    assert!(l.p99 > l.p95 && l.p95 > l.p50);
    assert_eq!(l.max, 100.0);
    // Empty input gives zeros, never NaN (which JSON cannot hold).
    let e = Figure::new(vec![]);
    assert_eq!(
        (e.mean, e.stddev, e.median, e.min, e.max),
        (0.0, 0.0, 0.0, 0.0, 0.0)
    );
}

// ---------------------------------------------------------------- comparison logic

#[test]
fn same_receipt_twice_is_stable() {
    let r = synthetic();
    let c = compare(&r, &r, &Thresholds::default(), false).unwrap();
    assert_eq!(c.tests.len(), 3);
    assert!(c.tests.iter().all(|t| t.verdict == Verdict::Stable));
    assert_eq!(c.worst(), Verdict::Stable);
    assert_eq!(c.exit_code(), 0);
    assert!(c.critical().is_empty());
}

#[test]
fn baseline_raised_30_percent_is_critical() {
    let new = synthetic();
    let base = scale_throughput(&new, 1.3);
    let c = compare(&new, &base, &Thresholds::default(), false).unwrap();
    assert_eq!(c.exit_code(), 1);
    assert!(c.critical().contains(&"reference/pp128/t1".to_string()));
    assert_eq!(c.critical().len(), 3);
    let report = c.report(true);
    assert!(report.contains("reference/tg64/t1"), "{report}");
    assert!(report.contains("CRITICAL"), "{report}");
    // Every test reports its run-to-run noise; these samples vary by about 1%.
    assert!(c.tests.iter().all(|t| t.noise > 0.0 && t.noise < 2.0));
    assert!(
        report.contains("noise") && !report.contains("noisy"),
        "{report}"
    );
}

#[test]
fn thresholds_classify_each_band() {
    let th = Thresholds::default();
    let base = result("pp128", 1, &[100.0; 3], None);
    let verdict = |tps: f64| compare_test(&result("pp128", 1, &[tps; 3], None), &base, &th);
    // pp latency is the time to first token, which moves with throughput here; so check
    // throughput bands with latency thresholds out of the way.
    let loose = Thresholds {
        warn_lat: 1e9,
        crit_lat: 1e9,
        ..th
    };
    let tp = |tps: f64| compare_test(&result("pp128", 1, &[tps; 3], None), &base, &loose).verdict;
    assert_eq!(tp(100.0), Verdict::Stable);
    assert_eq!(tp(104.0), Verdict::Stable);
    assert_eq!(tp(106.0), Verdict::Improvement);
    assert_eq!(tp(95.0), Verdict::Stable);
    assert_eq!(tp(91.0), Verdict::Warning);
    assert_eq!(tp(86.0), Verdict::Warning);
    assert_eq!(tp(84.0), Verdict::Critical);
    // With the defaults, an 80% throughput also means +25% time to first token.
    let v = verdict(80.0);
    assert_eq!(v.verdict, Verdict::Critical);
    assert_eq!(v.reasons.len(), 2, "{:?}", v.reasons);

    // tg: latency alone can warn or be critical while throughput holds.
    let lat = [10.0; 8];
    let base = result("tg64", 1, &[100.0; 3], Some(&lat));
    let with_lat =
        |l: f64| compare_test(&result("tg64", 1, &[100.0; 3], Some(&[l; 8])), &base, &th).verdict;
    assert_eq!(with_lat(11.0), Verdict::Stable);
    assert_eq!(with_lat(11.6), Verdict::Warning);
    assert_eq!(with_lat(12.6), Verdict::Critical);
    // Custom thresholds.
    let strict = Thresholds {
        crit_tp: -2.0,
        ..th
    };
    let b = result("pp128", 1, &[100.0; 3], None);
    let n = result("pp128", 1, &[97.0; 3], None);
    assert_eq!(compare_test(&n, &b, &strict).verdict, Verdict::Critical);
}

#[test]
fn unmatched_tests_are_listed_not_compared() {
    let new = synthetic();
    let mut base = synthetic();
    base.results.retain(|t| t.threads == 1);
    base.results
        .push(result("tg128", 1, &[10.0; 3], Some(&[1.0])));
    let c = compare(&new, &base, &Thresholds::default(), false).unwrap();
    assert_eq!(c.tests.len(), 2);
    assert_eq!(c.only_in_new, vec!["reference/pp128/t2".to_string()]);
    assert_eq!(c.only_in_baseline, vec!["reference/tg128/t1".to_string()]);
}

#[test]
fn different_host_or_model_is_refused_unless_forced() {
    let new = synthetic();
    let mut other_host = synthetic();
    other_host.host.cpu_model = "Another CPU".into();
    other_host.host.logical_cores = 64;
    let why = compare(&new, &other_host, &Thresholds::default(), false).unwrap_err();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(why[0].contains("different host") && why[0].contains("Another CPU"));
    let mut other_model = synthetic();
    other_model.model.content_hash.value = "cd".repeat(32);
    let why = compare(&new, &other_model, &Thresholds::default(), false).unwrap_err();
    assert!(why[0].contains("different model"), "{why:?}");
    // The hostname alone does not matter (CI machines of one kind differ in it).
    let mut renamed = synthetic();
    renamed.host.hostname = "ci-runner-7".into();
    assert!(compare(&new, &renamed, &Thresholds::default(), false).is_ok());
    // --force compares, and the report says what was overridden.
    let c = compare(&new, &other_host, &Thresholds::default(), true).unwrap();
    assert_eq!(c.forced.len(), 2);
    assert!(c.report(false).contains("--force"));
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn perplexity_change_is_flagged() {
    let mut new = synthetic();
    let mut base = synthetic();
    let q = bitnetc::bench::receipt::Quality {
        text_path: "t.txt".into(),
        text_sha256: "00".repeat(32),
        n_tokens: 100,
        n_ctx: 32,
        n_batch: 32,
        n_chunks: 3,
        ppl: 10.0,
        ppl_error: 0.1,
        chunk_ppl: vec![10.0; 3],
        seconds: 1.0,
        threads: 1,
    };
    base.quality = Some(q.clone());
    new.quality = Some(bitnetc::bench::receipt::Quality { ppl: 10.5, ..q });
    let c = compare(&new, &base, &Thresholds::default(), false).unwrap();
    assert_eq!(c.quality.as_ref().unwrap().verdict, Verdict::Critical);
    assert_eq!(c.critical(), vec!["quality/ppl".to_string()]);
}

// ---------------------------------------------------------------- kernels and --strict

#[test]
fn strict_names_the_op_that_fell_back() {
    let k = |label: &str, op: &str, kernel: &str, fallback: bool| KernelUse {
        label: label.into(),
        op: op.into(),
        kernel: kernel.into(),
        fallback,
    };
    let real = vec![
        k(
            "blk.0.attn_q",
            "ternary_linear",
            "jit.ternary_linear.i2_s.avx2",
            false,
        ),
        k("blk.0.attn_norm", "rms_norm", "jit.rms_norm.f32", false),
    ];
    assert_eq!(compute_path(&real), "real");
    assert!(check_strict(&real).is_ok());
    let mut mixed = real.clone();
    mixed.push(k(
        "blk.0.attn",
        "attention",
        "reference.attention.f32",
        true,
    ));
    mixed.push(k(
        "blk.1.attn",
        "attention",
        "reference.attention.f32",
        true,
    ));
    assert_eq!(compute_path(&mixed), "fallback");
    let err = check_strict(&mixed).unwrap_err().to_string();
    assert!(
        err.contains("blk.0.attn") && err.contains("attention"),
        "{err}"
    );
    assert!(err.contains("1 more"), "{err}");
    let groups = group_kernels(&mixed);
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[2].nodes, vec!["blk.0.attn", "blk.1.attn"]);
    assert!(groups[2].fallback);
}

#[test]
fn strict_cli_fails_on_a_fallback_and_names_the_op() {
    let model = tiny();
    let m = model.to_str().unwrap();
    let out = bitnetc(&[
        "bench",
        "-m",
        m,
        "-p",
        "8",
        "-n",
        "0",
        "-r",
        "1",
        "-t",
        "1",
        "--strict",
        "--simulate-fallback",
        "attention",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--strict") && err.contains("blk.0.attention"),
        "{err}"
    );
    // Without --strict the run goes on and the receipt says `fallback`.
    let json = dir().join("fallback.json");
    ok(&[
        "bench",
        "-m",
        m,
        "-p",
        "8",
        "-n",
        "0",
        "-r",
        "1",
        "-t",
        "1",
        "--simulate-fallback",
        "attention",
        "--json",
        json.to_str().unwrap(),
    ]);
    let r = Receipt::read(&json).unwrap();
    assert_eq!(r.compute_path, "fallback");
    assert!(r.kernels.iter().any(|g| g.fallback && g.op == "attention"));
}

// ---------------------------------------------------------------- real receipts

/// The checked-in receipt schema, itself checked against the JSON Schema meta-schema.
fn receipt_validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/receipt.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    jsonschema::meta::validate(&schema).expect("the schema is a valid JSON Schema");
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn real_receipt_validates_against_the_schema() {
    let validator = receipt_validator();
    let (path, v) = real_receipt();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
    // It is also what the reader accepts, with what was asked for.
    let r = Receipt::read(path).unwrap();
    assert_eq!(r.threads, vec![1, 2]);
    assert_eq!(r.results.len(), 4);
    assert_eq!(r.backend, "jit");
    assert_eq!(r.compute_path, "real");
    assert!(r.kernels.iter().any(|k| k.kernel.starts_with("jit.gemv.")));
    assert!(r.results.iter().all(|t| t.tokens_per_s.samples.len() == 2));
    let tg = r.results.iter().find(|t| t.test == "tg8").unwrap();
    assert_eq!(tg.token_latency_ms.as_ref().unwrap().samples.len(), 16);
    // The JIT backend reports how long its kernels took to compile.
    assert!(r
        .results
        .iter()
        .all(|t| t.compile_s.is_some_and(|s| s > 0.0 && s < 10.0)));
    assert!(r.process.peak_rss_bytes.unwrap() > 1 << 20);
    assert_eq!(r.model.content_hash.algorithm, "sha256");
    let q = r.quality.as_ref().unwrap();
    assert!(q.ppl.is_finite() && q.ppl > 1.0);
    // Synthetic receipts validate too, and a broken one does not.
    let synth = serde_json::to_value(synthetic()).unwrap();
    assert!(validator.is_valid(&synth));
    let mut broken = v.clone();
    broken["compute_path"] = "maybe".into();
    assert!(!validator.is_valid(&broken));
}

#[test]
fn bandwidth_probe_and_reference_twin_are_measured_in_the_same_run() {
    let model = tiny();
    let json = dir().join("ratios.json");
    let out = ok(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "4",
        "-t",
        "2",
        "-r",
        "1",
        "--no-warmup",
        "--bandwidth",
        "--bandwidth-mib",
        "8",
        "--vs-reference",
        "--json",
        json.to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let errors: Vec<String> = receipt_validator()
        .iter_errors(&v)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let r = Receipt::read(&json).unwrap();
    assert_eq!(r.backend, "jit");
    let keys: Vec<String> = r.results.iter().map(TestResult::key).collect();
    assert_eq!(
        keys,
        [
            "jit/pp8/t2",
            "jit/tg4/t2",
            "reference/pp8/t2",
            "reference/tg4/t2"
        ]
    );
    // The probe: one per thread count, every pass a real rate.
    assert_eq!(r.read_bandwidth.len(), 1);
    let bw = &r.read_bandwidth[0];
    assert_eq!((bw.threads, bw.buffer_bytes), (2, 8 << 20));
    assert!(bw
        .gb_per_s
        .samples
        .iter()
        .all(|&g| g > 0.0 && g.is_finite()));
    // The tiny model's head is tied to its embedding, so a decoded token reads every tensor
    // of the file once: the sum of the payload sizes its header declares.
    let bytes = std::fs::read(&model).unwrap();
    let header = bitnetc_models::gguf::parse_header(&bytes).unwrap();
    let payload: u64 = header.tensors.iter().map(|t| t.nbytes).sum();
    for t in &r.results {
        assert_eq!(
            t.weight_bytes_per_token,
            (t.kind == "tg").then_some(payload)
        );
        match t.kind.as_str() {
            "tg" => {
                let ceiling = bw.gb_per_s.median * 1e9 / payload as f64;
                let frac = t.of_bandwidth_ceiling.unwrap();
                assert!((frac - t.tokens_per_s.median / ceiling).abs() <= 1e-9 * frac);
            }
            _ => assert_eq!(t.of_bandwidth_ceiling, None),
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("read bandwidth (t=2): "), "{text}");
    assert!(text.contains("jit tg4 t=2: "), "{text}");
    assert!(text.contains("% of the decode ceiling"), "{text}");
    assert!(text.contains("× the reference backend"), "{text}");
    // A receipt without these fields (written before they existed) still reads.
    let mut old = v.clone();
    old.as_object_mut().unwrap().remove("read_bandwidth");
    for t in old["results"].as_array_mut().unwrap() {
        let t = t.as_object_mut().unwrap();
        t.remove("weight_bytes_per_token");
        t.remove("of_bandwidth_ceiling");
    }
    let old_path = dir().join("ratios-v1.json");
    std::fs::write(&old_path, serde_json::to_string(&old).unwrap()).unwrap();
    assert!(receipt_validator().is_valid(&old));
    assert!(Receipt::read(&old_path).unwrap().read_bandwidth.is_empty());
}

#[test]
fn cli_compare_exit_codes() {
    let (path, _) = real_receipt();
    let p = path.to_str().unwrap();
    // Same receipt twice: stable, exit 0.
    let out = ok(&["bench-compare", p, p]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("result: stable"));
    // A baseline whose throughput was raised by 30%: exit 1, naming the test.
    let real = Receipt::read(path).unwrap();
    let raised = write(&scale_throughput(&real, 1.3), "raised.json");
    let out = bitnetc(&["bench-compare", p, raised.to_str().unwrap(), "--markdown"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("jit/pp16/t1") && stdout.contains("CRITICAL"),
        "{stdout}"
    );
    assert!(
        stderr.contains("critical regression in jit/pp16/t1"),
        "{stderr}"
    );
    // Looser thresholds make the same pair pass.
    ok(&[
        "bench-compare",
        p,
        raised.to_str().unwrap(),
        "--crit-tp",
        "-50",
        "--warn-tp",
        "-40",
        "--crit-lat",
        "1000",
        "--warn-lat",
        "1000",
    ]);
    // Another host: refused (exit 2) with the reason, unless --force.
    let mut other = real.clone();
    other.host.cpu_model = "Imaginary CPU 9000".into();
    let other = write(&other, "other-host.json");
    let out = bitnetc(&["bench-compare", p, other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("different host") && stderr.contains("Imaginary CPU 9000"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"));
    let out = ok(&["bench-compare", p, other.to_str().unwrap(), "--force"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--force: comparing despite"));
    // Another model: refused.
    let mut m = real.clone();
    m.model.content_hash.value = "0".repeat(64);
    let m = write(&m, "other-model.json");
    let out = bitnetc(&["bench-compare", p, m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different model"));
}

#[test]
fn bench_with_compare_flag() {
    let (path, _) = real_receipt();
    let real = Receipt::read(path).unwrap();
    let raised = write(&scale_throughput(&real, 1.3), "raised-for-bench.json");
    let model = tiny();
    // The new run's figures vary, but against a baseline 30% (well, 1/1.3) faster every test
    // is critical unless this run happens to be 30% faster itself; loose thresholds avoid
    // asserting anything about speed: only that the flag compares and reports.
    let out = ok(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1,2",
        "-r",
        "1",
        "--compare",
        raised.to_str().unwrap(),
        "--crit-tp",
        "-100",
        "--warn-tp",
        "-100",
        "--crit-lat",
        "1e9",
        "--warn-lat",
        "1e9",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("jit/tg8/t2"), "{stdout}");
    assert!(stdout.contains("result: "), "{stdout}");
}

#[test]
fn report_svg_and_html() {
    let (path, _) = real_receipt();
    let mut older = Receipt::read(path).unwrap();
    older.timestamp = "2020-01-01T00:00:00Z".into();
    let older = write(&scale_throughput(&older, 0.8), "older.json");
    let svg = dir().join("report.svg");
    let html = dir().join("report.html");
    for out in [&svg, &html] {
        ok(&[
            "bench-report",
            path.to_str().unwrap(),
            older.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
    }
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("jit/tg8/t2"));
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("<svg") && h.contains("<table>") && h.contains("2020-01-01"));
    let out = bitnetc(&["bench-report", path.to_str().unwrap(), "-o", "x.pdf"]);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------- perplexity

#[test]
fn perplexity_is_finite_and_the_same_on_1_and_2_threads() {
    let model = tiny();
    let ppl = |threads: usize| {
        let engine = Engine::load(
            &model,
            &EngineOptions {
                threads,
                ..Default::default()
            },
        )
        .unwrap();
        let tokens = engine.tokenize(&sample_text(), true);
        let mut seen = Vec::new();
        let r = perplexity(
            &engine,
            &tokens,
            PerplexityOptions {
                n_ctx: 32,
                n_batch: 12,
            },
            |i, p| seen.push((i, p)),
        )
        .unwrap();
        assert_eq!(r.n_chunks, tokens.len() / 32);
        assert_eq!(seen.len(), r.n_chunks);
        assert_eq!(r.n_scored, r.n_chunks * 15);
        assert_eq!(r.chunk_ppl.last(), Some(&r.ppl));
        r
    };
    let one = ppl(1);
    let two = ppl(2);
    assert!(one.ppl.is_finite() && one.ppl > 1.0, "{one:?}");
    assert!(one.ppl_error.is_finite() && one.ppl_error > 0.0);
    // The vocabulary bounds the perplexity of a normalized distribution from... nowhere, but a
    // random model should not be absurd either: below the vocabulary size squared.
    assert!(one.ppl < 1024.0 * 1024.0);
    assert_eq!(one.ppl, two.ppl);
    assert_eq!(one.chunk_ppl, two.chunk_ppl);
}

#[test]
fn perplexity_batch_size_does_not_change_the_result() {
    let model = tiny();
    let engine = Engine::load(&model, &EngineOptions::default()).unwrap();
    let tokens = engine.tokenize(&sample_text(), true);
    let run = |b| {
        perplexity(
            &engine,
            &tokens,
            PerplexityOptions {
                n_ctx: 32,
                n_batch: b,
            },
            |_, _| {},
        )
        .unwrap()
        .ppl
    };
    let full = run(32);
    let small = run(7);
    assert!((full - small).abs() <= 1e-9 * full, "{full} vs {small}");
    // Too short a text is an error that says how many tokens are needed.
    let err = perplexity(
        &engine,
        &tokens[..40],
        PerplexityOptions {
            n_ctx: 32,
            n_batch: 32,
        },
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 64 tokens"), "{err}");
}

#[test]
fn perplexity_cli_prints_llama_cpp_style() {
    let model = tiny();
    let text = dir().join("ppl.txt");
    std::fs::write(&text, sample_text()).unwrap();
    let out = ok(&[
        "perplexity",
        "-m",
        model.to_str().unwrap(),
        "-f",
        text.to_str().unwrap(),
        "--ctx",
        "32",
        "-t",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[1]"), "{stdout}");
    assert!(stdout.contains("Final estimate: PPL = "), "{stdout}");
}

// ---------------------------------------------------------------- content hash

#[test]
fn content_hash_is_whole_file_sha256_when_small_and_sampled_when_large() {
    use bitnetc::bench::receipt::{content_hash, sha256_hex, FULL_HASH_LIMIT};
    use std::io::{Seek, SeekFrom, Write};
    let small = dir().join("small.bin");
    std::fs::write(&small, b"GGUF small file").unwrap();
    let h = content_hash(&small, 4).unwrap();
    assert_eq!(h.algorithm, "sha256");
    assert_eq!(h.value, sha256_hex(b"GGUF small file"));

    // A sparse file just over the limit: cheap to make, hashed by sampling.
    let big = dir().join("big.bin");
    let mut f = std::fs::File::create(&big).unwrap();
    f.set_len(FULL_HASH_LIMIT + 4096).unwrap();
    f.write_all(b"GGUF header bytes").unwrap();
    drop(f);
    let a = content_hash(&big, 64).unwrap();
    assert_eq!(a.algorithm, "sha256-sampled-v1");
    assert_eq!(a, content_hash(&big, 64).unwrap());
    let poke = |off: u64| {
        let mut f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(b"x").unwrap();
    };
    poke(10); // in the header
    let b = content_hash(&big, 64).unwrap();
    assert_ne!(a, b);
    poke(64); // the first sampled chunk starts right after the header
    assert_ne!(b, content_hash(&big, 64).unwrap());
}
