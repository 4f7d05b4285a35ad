//! What identifies a platform for the tune cache.

use bitnetc_codegen::cpu::HostFeatures;
use serde::{Deserialize, Serialize};

/// The facts tuned parameters depend on. Two hosts with equal fingerprints share cache files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprint {
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// The CPU model as the operating system names it (`unknown` if it does not).
    pub cpu_model: String,
    /// ISA flags Cranelift detected on the host.
    pub features: Vec<String>,
    /// Logical cores available to this process.
    pub cores: usize,
}

impl HostFingerprint {
    /// This host's fingerprint.
    pub fn detect() -> Result<HostFingerprint, bitnetc_codegen::CodegenError> {
        let host = HostFeatures::detect()?;
        let mut features: Vec<String> = host.enabled.iter().map(|f| f.to_string()).collect();
        features.sort();
        Ok(HostFingerprint {
            arch: std::env::consts::ARCH.to_string(),
            cpu_model: cpu_model(),
            features,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// A short stable id of the fingerprint (16 hex digits of FNV-1a over its JSON form).
    pub fn id(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// The CPU model from `/proc/cpuinfo` (`model name`, or `CPU part` on Arm), else `unknown`.
fn cpu_model() -> String {
    let Ok(text) = std::fs::read_to_string("/proc/cpuinfo") else {
        return "unknown".into();
    };
    for key in ["model name", "Hardware", "CPU part"] {
        if let Some(v) = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
        {
            return v;
        }
    }
    "unknown".into()
}
