//! Facts about the machine and the process: CPU, ISA features, memory, peak RSS, CPU time,
//! the build's git commit and the time of day.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The machine a receipt was made on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name (informational; not part of the comparison fingerprint).
    pub hostname: String,
    /// CPU model string (`/proc/cpuinfo` "model name"), or "unknown".
    pub cpu_model: String,
    /// Logical CPUs the process may use.
    pub logical_cores: usize,
    /// Physical cores, where the OS tells.
    pub physical_cores: Option<usize>,
    /// ISA extensions detected at run time (`is_x86_feature_detected!` and friends).
    pub isa_features: Vec<String>,
    /// CPU architecture (`x86_64`, `aarch64`, …).
    pub arch: String,
    /// Operating system family (`linux`, `macos`, …).
    pub os: String,
    /// Distribution / OS release name, where known.
    pub os_release: Option<String>,
    /// Kernel release, where known.
    pub kernel: Option<String>,
    /// Physical memory in bytes, where known.
    pub memory_bytes: Option<u64>,
}

impl HostInfo {
    /// Describes this machine.
    pub fn detect() -> HostInfo {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        HostInfo {
            hostname: read_trim("/proc/sys/kernel/hostname")
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "unknown".into()),
            cpu_model: cpu_model(&cpuinfo),
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            physical_cores: physical_cores(&cpuinfo),
            isa_features: isa_features(),
            arch: std::env::consts::ARCH.into(),
            os: std::env::consts::OS.into(),
            os_release: os_release(),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            memory_bytes: meminfo_total(),
        }
    }

    /// How this host differs from `other` in what makes timings comparable (CPU model, core
    /// count, ISA features, architecture, OS, memory size within 10%); empty when it does not.
    pub fn differences(&self, other: &HostInfo) -> Vec<String> {
        let mut d = Vec::new();
        if self.cpu_model != other.cpu_model {
            d.push(format!(
                "CPU model {:?} vs {:?}",
                self.cpu_model, other.cpu_model
            ));
        }
        if self.logical_cores != other.logical_cores {
            d.push(format!(
                "logical cores {} vs {}",
                self.logical_cores, other.logical_cores
            ));
        }
        if self.isa_features != other.isa_features {
            let only = |a: &[String], b: &[String]| {
                a.iter()
                    .filter(|f| !b.contains(f))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            };
            d.push(format!(
                "ISA features differ (only new: [{}], only baseline: [{}])",
                only(&self.isa_features, &other.isa_features),
                only(&other.isa_features, &self.isa_features)
            ));
        }
        if self.arch != other.arch || self.os != other.os {
            d.push(format!(
                "platform {}-{} vs {}-{}",
                self.arch, self.os, other.arch, other.os
            ));
        }
        if let (Some(a), Some(b)) = (self.memory_bytes, other.memory_bytes) {
            if (a as f64 - b as f64).abs() > 0.1 * (b as f64) {
                d.push(format!("memory {} MiB vs {} MiB", a >> 20, b >> 20));
            }
        }
        d
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> impl Iterator<Item = &'a str> + 'a {
    let key = key.to_string();
    cpuinfo.lines().filter_map(move |l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn cpu_model(cpuinfo: &str) -> String {
    ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|k| cpuinfo_field(cpuinfo, k).next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    let mut phys = "0";
    for line in cpuinfo.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => phys = v.trim(),
                "core id" => {
                    cores.insert((phys.to_string(), v.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&text, "MemTotal:")
}

/// A `Key:   123 kB` line of a /proc file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// ISA extensions the CPU has, from the standard library's run-time detection.
pub fn isa_features() -> Vec<String> {
    #[allow(unused_mut)]
    let mut v: Vec<&str> = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        macro_rules! x86 {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { v.push($f); } )* };
        }
        x86!(
            "sse2",
            "sse3",
            "ssse3",
            "sse4.1",
            "sse4.2",
            "popcnt",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi1",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! arm {
            ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { v.push($f); } )* };
        }
        arm!("neon", "fp16", "dotprod", "i8mm", "sve", "sve2");
    }
    v.into_iter().map(str::to_string).collect()
}

/// Peak resident memory and CPU time of this process so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessFigures {
    /// Wall-clock seconds since the command started.
    pub wall_s: f64,
    /// User CPU seconds (all threads).
    pub user_cpu_s: Option<f64>,
    /// System CPU seconds (all threads).
    pub sys_cpu_s: Option<f64>,
    /// Peak resident set size in bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Where the peak came from: `VmHWM` (/proc/self/status) or `getrusage`.
    pub peak_rss_source: Option<String>,
}

impl ProcessFigures {
    /// Reads the figures now; `wall_s` is passed in.
    pub fn now(wall_s: f64) -> ProcessFigures {
        let (user, sys, ru_peak) = rusage();
        let (peak, source) = match peak_rss_vmhwm() {
            Some(p) => (Some(p), Some("VmHWM".to_string())),
            None => (ru_peak, ru_peak.map(|_| "getrusage".to_string())),
        };
        ProcessFigures {
            wall_s,
            user_cpu_s: user,
            sys_cpu_s: sys,
            peak_rss_bytes: peak,
            peak_rss_source: source,
        }
    }
}

/// Peak resident set size from `/proc/self/status` (`VmHWM`), in bytes.
pub fn peak_rss_vmhwm() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&text, "VmHWM:")
}

/// Peak resident set size in bytes: `VmHWM`, else `getrusage`.
pub fn peak_rss_bytes() -> Option<u64> {
    peak_rss_vmhwm().or_else(|| rusage().2)
}

#[cfg(unix)]
fn rusage() -> (Option<f64>, Option<f64>, Option<u64>) {
    // SAFETY: getrusage fills the zeroed struct it is given and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (None, None, None);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    // ru_maxrss is in KiB on Linux and in bytes on macOS.
    let scale = if cfg!(target_os = "macos") { 1 } else { 1024 };
    (
        Some(secs(ru.ru_utime)),
        Some(secs(ru.ru_stime)),
        Some(ru.ru_maxrss as u64 * scale),
    )
}

#[cfg(not(unix))]
fn rusage() -> (Option<f64>, Option<f64>, Option<u64>) {
    (None, None, None)
}

/// The bitnetc build: version and git commit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Crate version.
    pub version: String,
    /// Commit of the source tree (`-dirty` appended when it has uncommitted changes), or
    /// "unknown" outside a git checkout.
    pub git_commit: String,
}

impl BuildInfo {
    /// This build. The commit comes from `BITNETC_GIT_COMMIT` when set at build time,
    /// otherwise from `git` in the source folder the binary was built from, if it is still
    /// there.
    pub fn detect() -> BuildInfo {
        let commit = option_env!("BITNETC_GIT_COMMIT")
            .map(str::to_string)
            .or_else(|| git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .unwrap_or_else(|| "unknown".into());
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: commit,
        }
    }
}

fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// The current time as RFC 3339 UTC, e.g. `2025-01-31T12:00:00Z`.
pub fn timestamp_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn host_is_comparable_with_itself() {
        let h = HostInfo::detect();
        assert!(h.differences(&h).is_empty());
        let mut other = h.clone();
        other.cpu_model = "Some Other CPU".into();
        assert_eq!(h.differences(&other).len(), 1);
    }
}
