//! Comparing a receipt with a baseline: per-test verdicts and an exit status for CI.
//!
//! Tests are matched by backend, test name and thread count. For each pair:
//! * throughput change = (new − base) / base of the median tokens/s of the repetitions, in
//!   percent (the median, not the mean, so one disturbed repetition does not flag a test);
//! * latency change = (new − base) / base of the median per-token latency (tg) or of the
//!   median time to first token (pp), in percent.
//!
//! A test is **critical** when throughput fell by at least `crit_tp` percent or latency rose by
//! at least `crit_lat` percent, a **warning** at `warn_tp` / `warn_lat`, an **improvement** when
//! throughput rose by more than `improve` percent without a warning, and **stable** otherwise.
//! Perplexity, when both receipts measured the same text with the same window, is compared
//! too: a relative change above `warn_ppl` / `crit_ppl` percent is a warning / critical.

use std::fmt::Write as _;

use serde::Serialize;

use super::receipt::{Receipt, TestResult};

/// Limits in percent (throughput limits negative: a fall).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Warning when throughput changes by this much or less (e.g. −8).
    pub warn_tp: f64,
    /// Critical when throughput changes by this much or less (e.g. −15).
    pub crit_tp: f64,
    /// Warning when latency rises by this much or more (e.g. 15).
    pub warn_lat: f64,
    /// Critical when latency rises by this much or more (e.g. 25).
    pub crit_lat: f64,
    /// Improvement when throughput rises by more than this (e.g. 5).
    pub improve: f64,
    /// Warning when perplexity changes (either way) by more than this.
    pub warn_ppl: f64,
    /// Critical when perplexity changes (either way) by more than this.
    pub crit_ppl: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            warn_tp: -8.0,
            crit_tp: -15.0,
            warn_lat: 15.0,
            crit_lat: 25.0,
            improve: 5.0,
            warn_ppl: 0.1,
            crit_ppl: 1.0,
        }
    }
}

/// How a test (or the comparison as a whole) fared; ordered by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Faster beyond the improvement threshold.
    Improvement,
    /// Within the thresholds.
    Stable,
    /// Beyond a warning threshold.
    Warning,
    /// Beyond a critical threshold.
    Critical,
}

impl Verdict {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Improvement => "improvement",
            Verdict::Stable => "stable",
            Verdict::Warning => "warning",
            Verdict::Critical => "critical",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Verdict::Improvement => "🟢 improvement",
            Verdict::Stable => "✅ stable",
            Verdict::Warning => "🟡 warning",
            Verdict::Critical => "🔴 CRITICAL",
        }
    }
}

/// One matched test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestComparison {
    /// `backend/test/t<threads>`.
    pub key: String,
    /// Baseline median tokens/s.
    pub base_tps: f64,
    /// New median tokens/s.
    pub new_tps: f64,
    /// Throughput change, percent.
    pub tps_change: f64,
    /// Which latency was compared (`p50 token latency` or `median TTFT`).
    pub latency_metric: String,
    /// Baseline latency, ms.
    pub base_latency_ms: f64,
    /// New latency, ms.
    pub new_latency_ms: f64,
    /// Latency change, percent.
    pub latency_change: f64,
    /// Run-to-run noise: the larger relative standard deviation of the two tests' tokens/s
    /// samples, percent. A change smaller than this is within the noise.
    pub noise: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Why (the thresholds crossed).
    pub reasons: Vec<String>,
}

/// Perplexity of both receipts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityComparison {
    /// Baseline perplexity.
    pub base_ppl: f64,
    /// New perplexity.
    pub new_ppl: f64,
    /// Relative change, percent.
    pub change: f64,
    /// The verdict (never an improvement: a change is what is flagged).
    pub verdict: Verdict,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// Matched tests in the new receipt's order.
    pub tests: Vec<TestComparison>,
    /// Tests only in the baseline.
    pub only_in_baseline: Vec<String>,
    /// Tests only in the new receipt.
    pub only_in_new: Vec<String>,
    /// Perplexity, when both measured the same text the same way.
    pub quality: Option<QualityComparison>,
    /// Host / model differences overridden with `--force`.
    pub forced: Vec<String>,
    /// The thresholds used.
    #[serde(skip)]
    pub thresholds: Thresholds,
}

/// Why two receipts cannot be compared: host or model differences.
pub fn mismatches(new: &Receipt, base: &Receipt) -> Vec<String> {
    let mut why: Vec<String> = new
        .host
        .differences(&base.host)
        .into_iter()
        .map(|d| format!("different host: {d}"))
        .collect();
    why.extend(
        new.model
            .differences(&base.model)
            .into_iter()
            .map(|d| format!("different model: {d}")),
    );
    why
}

fn pct(new: f64, base: f64) -> f64 {
    if base > 0.0 {
        (new - base) / base * 100.0
    } else {
        0.0
    }
}

/// The latency compared for a test, and its name.
fn latency_of(t: &TestResult) -> (f64, &'static str) {
    match &t.token_latency_ms {
        Some(l) if !l.samples.is_empty() => (l.p50, "p50 token latency"),
        _ => (t.ttft_ms.median, "median TTFT"),
    }
}

/// Relative standard deviation of a test's tokens/s, percent.
fn cv(t: &TestResult) -> f64 {
    let f = &t.tokens_per_s;
    if f.mean > 0.0 {
        f.stddev / f.mean * 100.0
    } else {
        0.0
    }
}

/// Verdict of one test pair.
pub fn compare_test(new: &TestResult, base: &TestResult, th: &Thresholds) -> TestComparison {
    let tps_change = pct(new.tokens_per_s.median, base.tokens_per_s.median);
    let (new_lat, metric) = latency_of(new);
    let (base_lat, _) = latency_of(base);
    let latency_change = pct(new_lat, base_lat);
    let mut reasons = Vec::new();
    let mut verdict = Verdict::Stable;
    let mut raise = |v: Verdict, why: String, verdict: &mut Verdict| {
        *verdict = (*verdict).max(v);
        reasons.push(why);
    };
    if tps_change <= th.crit_tp {
        raise(
            Verdict::Critical,
            format!("throughput {tps_change:+.1}% ≤ {:+}%", th.crit_tp),
            &mut verdict,
        );
    } else if tps_change <= th.warn_tp {
        raise(
            Verdict::Warning,
            format!("throughput {tps_change:+.1}% ≤ {:+}%", th.warn_tp),
            &mut verdict,
        );
    }
    if latency_change >= th.crit_lat {
        raise(
            Verdict::Critical,
            format!("{metric} {latency_change:+.1}% ≥ {:+}%", th.crit_lat),
            &mut verdict,
        );
    } else if latency_change >= th.warn_lat {
        raise(
            Verdict::Warning,
            format!("{metric} {latency_change:+.1}% ≥ {:+}%", th.warn_lat),
            &mut verdict,
        );
    }
    if verdict == Verdict::Stable && tps_change > th.improve {
        verdict = Verdict::Improvement;
        reasons.push(format!("throughput {tps_change:+.1}% > {:+}%", th.improve));
    }
    TestComparison {
        key: new.key(),
        base_tps: base.tokens_per_s.median,
        new_tps: new.tokens_per_s.median,
        tps_change,
        latency_metric: metric.into(),
        base_latency_ms: base_lat,
        new_latency_ms: new_lat,
        latency_change,
        noise: cv(new).max(cv(base)),
        verdict,
        reasons,
    }
}

/// Compares `new` with `base`. Receipts from different hosts or models are refused (the error
/// lists every difference) unless `force`, in which case the differences are kept in
/// [`Comparison::forced`].
pub fn compare(
    new: &Receipt,
    base: &Receipt,
    th: &Thresholds,
    force: bool,
) -> Result<Comparison, Vec<String>> {
    let why = mismatches(new, base);
    if !why.is_empty() && !force {
        return Err(why);
    }
    let mut tests = Vec::new();
    let mut only_in_new = Vec::new();
    for t in &new.results {
        match base.results.iter().find(|b| b.key() == t.key()) {
            Some(b) => tests.push(compare_test(t, b, th)),
            None => only_in_new.push(t.key()),
        }
    }
    let only_in_baseline = base
        .results
        .iter()
        .filter(|b| !new.results.iter().any(|t| t.key() == b.key()))
        .map(|b| b.key())
        .collect();
    let quality = match (&new.quality, &base.quality) {
        (Some(n), Some(b)) if n.text_sha256 == b.text_sha256 && n.n_ctx == b.n_ctx => {
            let change = pct(n.ppl, b.ppl);
            let verdict = if change.abs() > th.crit_ppl {
                Verdict::Critical
            } else if change.abs() > th.warn_ppl {
                Verdict::Warning
            } else {
                Verdict::Stable
            };
            Some(QualityComparison {
                base_ppl: b.ppl,
                new_ppl: n.ppl,
                change,
                verdict,
            })
        }
        _ => None,
    };
    Ok(Comparison {
        tests,
        only_in_baseline,
        only_in_new,
        quality,
        forced: why,
        thresholds: *th,
    })
}

impl Comparison {
    /// The worst verdict (stable when nothing matched).
    pub fn worst(&self) -> Verdict {
        self.tests
            .iter()
            .map(|t| t.verdict)
            .chain(self.quality.as_ref().map(|q| q.verdict))
            .max()
            .unwrap_or(Verdict::Stable)
            .max(Verdict::Stable)
    }

    /// Keys of the critical tests (`quality/ppl` for a perplexity change).
    pub fn critical(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tests
            .iter()
            .filter(|t| t.verdict == Verdict::Critical)
            .map(|t| t.key.clone())
            .collect();
        if self
            .quality
            .as_ref()
            .is_some_and(|q| q.verdict == Verdict::Critical)
        {
            v.push("quality/ppl".into());
        }
        v
    }

    /// 0 when nothing is critical, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.worst() == Verdict::Critical)
    }

    /// The report: a Markdown table (`markdown`) or aligned plain text.
    pub fn report(&self, markdown: bool) -> String {
        let th = &self.thresholds;
        let mut out = String::new();
        if markdown {
            out.push_str("## bitnetc bench: comparison with baseline\n\n");
        }
        for f in &self.forced {
            let _ = writeln!(out, "{}--force: comparing despite {f}", bullet(markdown));
        }
        if !self.forced.is_empty() {
            out.push('\n');
        }
        let header = [
            "test",
            "base t/s (median)",
            "new t/s",
            "Δ t/s",
            "latency",
            "base ms",
            "new ms",
            "Δ lat",
            "noise",
            "verdict",
        ];
        let rows: Vec<Vec<String>> = self
            .tests
            .iter()
            .map(|t| {
                vec![
                    t.key.clone(),
                    format!("{:.2}", t.base_tps),
                    format!("{:.2}", t.new_tps),
                    format!("{:+.1}%", t.tps_change),
                    t.latency_metric.clone(),
                    format!("{:.3}", t.base_latency_ms),
                    format!("{:.3}", t.new_latency_ms),
                    format!("{:+.1}%", t.latency_change),
                    format!("±{:.1}%", t.noise),
                    if markdown {
                        t.verdict.mark().to_string()
                    } else {
                        t.verdict.name().to_string()
                    },
                ]
            })
            .collect();
        out.push_str(&table(&header, &rows, markdown));
        out.push('\n');
        if let Some(q) = &self.quality {
            let _ = writeln!(
                out,
                "{}perplexity: {:.4} → {:.4} ({:+.3}%): {}",
                bullet(markdown),
                q.base_ppl,
                q.new_ppl,
                q.change,
                q.verdict.name()
            );
        }
        for k in &self.only_in_baseline {
            let _ = writeln!(
                out,
                "{}only in the baseline (not compared): {k}",
                bullet(markdown)
            );
        }
        for k in &self.only_in_new {
            let _ = writeln!(
                out,
                "{}only in the new run (not compared): {k}",
                bullet(markdown)
            );
        }
        if self.tests.is_empty() {
            let _ = writeln!(
                out,
                "{}no test matched between the two receipts",
                bullet(markdown)
            );
        }
        for t in self.tests.iter().filter(|t| t.verdict > Verdict::Stable) {
            let _ = writeln!(
                out,
                "{}{} {}: {}",
                bullet(markdown),
                t.verdict.name(),
                t.key,
                t.reasons.join("; ")
            );
        }
        let noisy: Vec<&str> = self
            .tests
            .iter()
            .filter(|t| t.noise > th.warn_tp.abs() / 2.0)
            .map(|t| t.key.as_str())
            .collect();
        if !noisy.is_empty() {
            let _ = writeln!(
                out,
                "{}noisy (tokens/s varies by more than {:.1}% between repetitions; use more -r or \
                 a quieter machine): {}",
                bullet(markdown),
                th.warn_tp.abs() / 2.0,
                noisy.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n{}thresholds: warning at {:+}% throughput or {:+}% latency, critical at {:+}% / {:+}%, improvement above {:+}%",
            if markdown { "_" } else { "" },
            th.warn_tp,
            th.warn_lat,
            th.crit_tp,
            th.crit_lat,
            th.improve
        );
        if markdown {
            out.pop();
            out.push_str("_\n");
        }
        let crit = self.critical();
        let _ = writeln!(
            out,
            "{}result: {}{}",
            if markdown { "\n**" } else { "" },
            self.worst().name(),
            if crit.is_empty() {
                String::new()
            } else {
                format!(" (critical: {})", crit.join(", "))
            }
        );
        if markdown {
            out.pop();
            out.push_str("**\n");
        }
        out
    }
}

fn bullet(markdown: bool) -> &'static str {
    if markdown {
        "- "
    } else {
        ""
    }
}

/// A table: Markdown (`| a | b |`) or plain text with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}|",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { " :--- " } else { " ---: " })
                .collect::<Vec<_>>()
                .join("|")
        );
        for r in rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        return out;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let pad = widths[c] - s.chars().count();
                if c == 0 {
                    format!("{s}{}", " ".repeat(pad))
                } else {
                    format!("{}{s}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    let _ = writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
    out
}
