//! Tables and pictures of receipts: the table `bitnetc bench` prints, and the SVG / HTML of
//! `bitnetc bench-report`.

use std::fmt::Write as _;

use anyhow::{anyhow, bail};
use plotters::prelude::*;

use super::compare::table;
use super::receipt::Receipt;

fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b / (1u64 << 20) as f64)
    }
}

/// Bytes in decimal units (GB, MB), as bandwidths are quoted.
fn decimal_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.3} GB", b / 1e9)
    } else {
        format!("{:.3} MB", b / 1e6)
    }
}

fn human_count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.0} K", n / 1e3)
    }
}

/// The table `bitnetc bench` prints at the end (llama-bench's columns plus latency).
pub fn results_table(r: &Receipt, markdown: bool) -> String {
    let header = [
        "model",
        "size",
        "params",
        "backend",
        "threads",
        "test",
        "t/s",
        "median t/s",
        "TTFT ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ];
    let name = r
        .model
        .name
        .clone()
        .unwrap_or_else(|| r.model.architecture.clone());
    let types: Vec<&str> = r.model.tensor_types.keys().map(String::as_str).collect();
    let model = format!("{name} {}", types.join("/"));
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|t| {
            let lat = |f: fn(&super::stats::Latency) -> f64| {
                t.token_latency_ms
                    .as_ref()
                    .map_or("-".to_string(), |l| format!("{:.3}", f(l)))
            };
            vec![
                model.clone(),
                human_bytes(r.model.file_bytes),
                human_count(r.model.n_params),
                t.backend.clone(),
                t.threads.to_string(),
                t.test.clone(),
                format!("{:.2} ± {:.2}", t.tokens_per_s.mean, t.tokens_per_s.stddev),
                format!("{:.2}", t.tokens_per_s.median),
                format!("{:.2}", t.ttft_ms.median),
                lat(|l| l.p50),
                lat(|l| l.p95),
                lat(|l| l.p99),
            ]
        })
        .collect();
    let mut out = table(&header, &rows, markdown);
    let p = &r.process;
    let load: Vec<String> = {
        let mut seen = Vec::new();
        for t in &r.results {
            if !seen.iter().any(|(th, _)| *th == t.threads) {
                seen.push((t.threads, t.load_s));
            }
        }
        seen.iter()
            .map(|(th, s)| format!("{:.3} s (t={th})", s))
            .collect()
    };
    let compile = r
        .results
        .first()
        .and_then(|t| t.compile_s)
        .map_or("none (no JIT)".to_string(), |s| format!("{s:.3} s"));
    let _ = writeln!(
        out,
        "\n{b}load: {}; compile: {compile}; peak RSS: {}; wall {:.2} s, CPU {:.2} s user + {:.2} s sys",
        load.join(", "),
        p.peak_rss_bytes.map_or("unknown".into(), human_bytes),
        p.wall_s,
        p.user_cpu_s.unwrap_or(0.0),
        p.sys_cpu_s.unwrap_or(0.0),
        b = if markdown { "- " } else { "" },
    );
    let _ = writeln!(
        out,
        "{b}backend {} · compute path {} · {} kernels · commit {} · {} ({} cores)",
        r.backend,
        r.compute_path,
        r.kernels.len(),
        r.bitnetc.git_commit,
        r.host.cpu_model,
        r.host.logical_cores,
        b = if markdown { "- " } else { "" },
    );
    if let Some(q) = &r.quality {
        let _ = writeln!(
            out,
            "{b}quality: PPL = {:.4} +/- {:.5} ({} chunks of {} tokens, {})",
            q.ppl,
            q.ppl_error,
            q.n_chunks,
            q.n_ctx,
            q.text_path,
            b = if markdown { "- " } else { "" },
        );
    }
    for line in ratio_lines(r) {
        let _ = writeln!(out, "{}{line}", if markdown { "- " } else { "" });
    }
    out
}

/// The figures a run measured against each other: read bandwidth per thread count, each tg
/// test against the decode ceiling that bandwidth implies, and each test of the run's backend
/// against the same test on the reference backend.
pub fn ratio_lines(r: &Receipt) -> Vec<String> {
    let mut lines = Vec::new();
    for bw in &r.read_bandwidth {
        lines.push(format!(
            "read bandwidth (t={}): {:.1} GB/s median of {} passes over {}",
            bw.threads,
            bw.gb_per_s.median,
            bw.gb_per_s.samples.len(),
            human_bytes(bw.buffer_bytes),
        ));
    }
    for t in r.results.iter().filter(|t| t.backend == r.backend) {
        let mut parts = Vec::new();
        if let (Some(frac), Some(bytes)) = (t.of_bandwidth_ceiling, t.weight_bytes_per_token) {
            parts.push(format!(
                "{}/token → {:.1} GB/s = {:.0} % of the decode ceiling ({:.1} t/s)",
                decimal_bytes(bytes),
                t.tokens_per_s.median * bytes as f64 / 1e9,
                frac * 100.0,
                t.tokens_per_s.median / frac,
            ));
        }
        let twin = r
            .results
            .iter()
            .find(|u| u.backend == "reference" && u.test == t.test && u.threads == t.threads);
        if let Some(u) = twin.filter(|u| u.tokens_per_s.median > 0.0 && t.backend != u.backend) {
            parts.push(format!(
                "{:.2}× the reference backend ({:.2} t/s)",
                t.tokens_per_s.median / u.tokens_per_s.median,
                u.tokens_per_s.median,
            ));
        }
        if !parts.is_empty() {
            lines.push(format!(
                "{} {} t={}: {}",
                t.backend,
                t.test,
                t.threads,
                parts.join("; ")
            ));
        }
    }
    lines
}

/// A series key across receipts: `backend/test/t<threads>`.
fn series_keys(receipts: &[Receipt]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in receipts {
        for t in &r.results {
            if !keys.contains(&t.key()) {
                keys.push(t.key());
            }
        }
    }
    keys
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// An SVG with two charts: tokens/s of every test of the latest receipt as bars (mean, with
/// the min–max range of its samples as a whisker), and the mean tokens/s of each series over
/// the receipts in timestamp order.
pub fn svg(receipts: &[Receipt]) -> anyhow::Result<String> {
    if receipts.is_empty() {
        bail!("no receipts to draw");
    }
    let mut sorted: Vec<&Receipt> = receipts.iter().collect();
    sorted.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    let latest = sorted[sorted.len() - 1];
    let keys = series_keys(receipts);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (top, bottom) = root.split_vertically(450);

        // Bars: the latest receipt.
        let n = latest.results.len().max(1);
        let y_max = latest
            .results
            .iter()
            .map(|t| t.tokens_per_s.max.max(t.tokens_per_s.mean))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let labels: Vec<String> = latest
            .results
            .iter()
            .map(|t| format!("{} {} t{}", t.backend, t.test, t.threads))
            .collect();
        let caption = format!(
            "tokens/s — {} — {}",
            latest
                .model
                .name
                .clone()
                .unwrap_or(latest.model.architecture.clone()),
            latest.timestamp
        );
        let mut chart = ChartBuilder::on(&top)
            .caption(caption, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0f64..y_max)
            .map_err(plot_err)?;
        let fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .y_desc("tokens/s")
            .draw()
            .map_err(plot_err)?;
        for (i, t) in latest.results.iter().enumerate() {
            let x = i as f64;
            let color =
                Palette99::pick(keys.iter().position(|k| *k == t.key()).unwrap_or(i)).to_rgba();
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, t.tokens_per_s.mean)],
                    color.filled(),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, t.tokens_per_s.min), (x, t.tokens_per_s.max)],
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?;
        }

        // Trend: every series over the receipts.
        let m = sorted.len();
        let t_max = sorted
            .iter()
            .flat_map(|r| r.results.iter().map(|t| t.tokens_per_s.mean))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let stamps: Vec<String> = sorted
            .iter()
            .map(|r| {
                let c = &r.bitnetc.git_commit;
                format!(
                    "{} {}",
                    &r.timestamp[..r.timestamp.len().min(10)],
                    &c[..c.len().min(7)]
                )
            })
            .collect();
        let tfmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                stamps.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut trend = ChartBuilder::on(&bottom)
            .caption("trend over receipts (mean tokens/s)", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(m as f64 - 0.5), 0.0f64..t_max)
            .map_err(plot_err)?;
        trend
            .configure_mesh()
            .x_labels(m.min(12))
            .x_label_formatter(&tfmt)
            .y_desc("tokens/s")
            .draw()
            .map_err(plot_err)?;
        for (k, key) in keys.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            let pts: Vec<(f64, f64)> = sorted
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    r.results
                        .iter()
                        .find(|t| t.key() == *key)
                        .map(|t| (i as f64, t.tokens_per_s.mean))
                })
                .collect();
            trend
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(key.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            trend
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(plot_err)?;
        }
        trend
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page: the SVG inline, then a table of every result of every receipt.
pub fn html(receipts: &[Receipt]) -> anyhow::Result<String> {
    let svg = svg(receipts)?;
    let mut sorted: Vec<&Receipt> = receipts.iter().collect();
    sorted.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
    let mut rows = String::new();
    for r in &sorted {
        for t in &r.results {
            let lat = t.token_latency_ms.as_ref().map_or("-".into(), |l| {
                format!("{:.3} / {:.3} / {:.3}", l.p50, l.p95, l.p99)
            });
            let _ = writeln!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{:.2} ± {:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.timestamp),
                esc(&r.bitnetc.git_commit[..r.bitnetc.git_commit.len().min(12)]),
                esc(&r.model.name.clone().unwrap_or(r.model.architecture.clone())),
                esc(&t.backend),
                t.threads,
                esc(&t.test),
                t.tokens_per_s.mean,
                t.tokens_per_s.stddev,
                t.tokens_per_s.median,
                t.ttft_ms.median,
                lat,
                esc(&r.compute_path),
            );
        }
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>bitnetc bench report</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:nth-child(-n+4),th{{text-align:left}}</style></head><body>\n\
         <h1>bitnetc bench report</h1>\n<p>{} receipt(s); host {} ({} cores).</p>\n{svg}\n\
         <table>\n<tr><th>timestamp</th><th>commit</th><th>model</th><th>backend</th>\
         <th>threads</th><th>test</th><th>t/s (mean ± sd)</th><th>median t/s</th>\
         <th>TTFT ms</th><th>p50 / p95 / p99 ms</th><th>compute path</th></tr>\n{rows}</table>\n\
         </body></html>\n",
        receipts.len(),
        esc(&sorted[sorted.len() - 1].host.cpu_model),
        sorted[sorted.len() - 1].host.logical_cores,
    ))
}
