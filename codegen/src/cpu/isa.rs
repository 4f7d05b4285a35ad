//! Host detection and Cranelift target construction, limited to a chosen instruction-set level.
//!
//! [`IsaLevel`] selects which x86-64 extensions generated code may use. A level is never allowed
//! above what the host has: asking for AVX-512 on a host without it is an error, not a silent
//! downgrade. [`TargetInfo`] records what a built target actually enabled, so each compiled
//! kernel can say which features it relied on (e.g. whether VNNI was on, so that the u8×i8 dot
//! tree could be folded into `vpdpbusd`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};

use crate::CodegenError;

/// Instruction-set level generated CPU code may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IsaLevel {
    /// x86-64 with SSE3, SSSE3 and SSE4.1 (`pmaddubsw` available, no VEX, no VNNI).
    Sse41,
    /// x86-64-v3: SSE4.2, POPCNT, AVX, AVX2, FMA, BMI1/2, LZCNT. No VNNI (the VEX AVX-VNNI
    /// extension is deliberately left off so that this level exercises the non-VNNI path).
    Avx2,
    /// x86-64-v4: the AVX2 set plus AVX-512 F/VL/DQ, and AVX-512 VNNI/BITALG/VBMI when the host
    /// has them. AVX-VNNI (VEX) is left off, so a dot product folds to the EVEX `vpdpbusd`.
    Avx512,
    /// Every feature `cranelift_native` detects on the host (any architecture).
    Native,
}

impl IsaLevel {
    /// All levels, lowest first.
    pub const ALL: [IsaLevel; 4] = [
        IsaLevel::Sse41,
        IsaLevel::Avx2,
        IsaLevel::Avx512,
        IsaLevel::Native,
    ];

    /// Lower-case name (`sse4`, `avx2`, `avx512`, `native`), as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            IsaLevel::Sse41 => "sse4",
            IsaLevel::Avx2 => "avx2",
            IsaLevel::Avx512 => "avx512",
            IsaLevel::Native => "native",
        }
    }

    /// x86 flags this level requires (an error if the host lacks one) and flags it enables
    /// only when the host has them.
    fn x86_flags(self) -> (&'static [&'static str], &'static [&'static str]) {
        const SSE41: &[&str] = &["has_sse3", "has_ssse3", "has_sse41"];
        const AVX2: &[&str] = &[
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
            "has_avx",
            "has_avx2",
            "has_fma",
            "has_bmi1",
            "has_bmi2",
            "has_lzcnt",
        ];
        const AVX512: &[&str] = &[
            "has_sse3",
            "has_ssse3",
            "has_sse41",
            "has_sse42",
            "has_popcnt",
            "has_avx",
            "has_avx2",
            "has_fma",
            "has_bmi1",
            "has_bmi2",
            "has_lzcnt",
            "has_avx512f",
            "has_avx512vl",
            "has_avx512dq",
        ];
        const AVX512_OPT: &[&str] = &["has_avx512vnni", "has_avx512bitalg", "has_avx512vbmi"];
        match self {
            IsaLevel::Sse41 => (SSE41, &[]),
            IsaLevel::Avx2 => (AVX2, &[]),
            IsaLevel::Avx512 => (AVX512, AVX512_OPT),
            IsaLevel::Native => (&[], &[]),
        }
    }
}

impl fmt::Display for IsaLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IsaLevel {
    type Err = CodegenError;
    fn from_str(s: &str) -> Result<IsaLevel, CodegenError> {
        match s.to_ascii_lowercase().as_str() {
            "sse4" | "sse41" | "sse4.1" => Ok(IsaLevel::Sse41),
            "avx2" => Ok(IsaLevel::Avx2),
            "avx512" => Ok(IsaLevel::Avx512),
            "native" => Ok(IsaLevel::Native),
            other => Err(CodegenError::Isa(format!(
                "unknown ISA level '{other}' (expected sse4, avx2, avx512 or native)"
            ))),
        }
    }
}

/// The features of the host, as `cranelift_native` detects them.
#[derive(Clone, Debug)]
pub struct HostFeatures {
    /// Architecture name (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Names of the boolean ISA flags that are on (`has_avx2`, `has_avx512vnni`, ...).
    pub enabled: Vec<&'static str>,
}

impl HostFeatures {
    /// Detects the host.
    pub fn detect() -> Result<HostFeatures, CodegenError> {
        let isa = native_isa(cranelift_native::builder().map_err(host_err)?)?;
        Ok(HostFeatures {
            arch: isa.triple().architecture.to_string(),
            enabled: enabled_flags(&*isa),
        })
    }

    /// Whether the host has ISA flag `name` (e.g. `has_avx512vnni`).
    pub fn has(&self, name: &str) -> bool {
        self.enabled.contains(&name)
    }

    /// Whether the host is x86-64.
    pub fn is_x86_64(&self) -> bool {
        self.arch == "x86_64"
    }

    /// Whether `level` can be built on this host.
    pub fn supports(&self, level: IsaLevel) -> bool {
        match level {
            IsaLevel::Native => true,
            l => self.is_x86_64() && l.x86_flags().0.iter().all(|f| self.has(f)),
        }
    }

    /// The levels this host supports, lowest first.
    pub fn supported_levels(&self) -> Vec<IsaLevel> {
        IsaLevel::ALL
            .into_iter()
            .filter(|&l| self.supports(l))
            .collect()
    }
}

/// Who designed the host's cores. The kernels' default parameters (those used where the tune
/// cache has no entry) depend on it where the measured best differs between makers' cores: a
/// Zen 4 EPYC and an Intel Xeon (Sapphire Rapids class) disagree on how many streams a thread
/// should read at once and on how far Cranelift's register spills cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuVendor {
    /// AMD (and Hygon's Zen-derived cores).
    Amd,
    /// Intel.
    Intel,
    /// Any other maker, or not an x86-64 host.
    Other,
}

impl CpuVendor {
    /// The vendor of a 12-byte CPUID vendor string (`AuthenticAMD`, `GenuineIntel`, ...).
    pub fn from_cpuid_id(id: &[u8]) -> CpuVendor {
        match id {
            b"AuthenticAMD" | b"HygonGenuine" => CpuVendor::Amd,
            b"GenuineIntel" => CpuVendor::Intel,
            _ => CpuVendor::Other,
        }
    }

    /// The host's vendor (read once).
    pub fn host() -> CpuVendor {
        static HOST: std::sync::OnceLock<CpuVendor> = std::sync::OnceLock::new();
        *HOST.get_or_init(host_vendor)
    }

    /// Lower-case name: `amd`, `intel`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            CpuVendor::Amd => "amd",
            CpuVendor::Intel => "intel",
            CpuVendor::Other => "other",
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
fn host_vendor() -> CpuVendor {
    // SAFETY: CPUID leaf 0 exists on every x86-64 processor.
    let r = unsafe { std::arch::x86_64::__cpuid(0) };
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&r.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&r.edx.to_le_bytes());
    id[8..].copy_from_slice(&r.ecx.to_le_bytes());
    CpuVendor::from_cpuid_id(&id)
}

#[cfg(not(target_arch = "x86_64"))]
fn host_vendor() -> CpuVendor {
    CpuVendor::Other
}

fn host_err(msg: &'static str) -> CodegenError {
    CodegenError::Isa(format!("host not supported by Cranelift: {msg}"))
}

/// Shared (target-independent) flags every kernel is compiled with.
fn shared_flags() -> Result<settings::Flags, CodegenError> {
    let mut b = settings::builder();
    let set = |b: &mut settings::Builder, k: &str, v: &str| {
        b.set(k, v)
            .map_err(|e| CodegenError::Isa(format!("setting {k}={v}: {e}")))
    };
    set(&mut b, "opt_level", "speed")?;
    set(&mut b, "is_pic", "false")?;
    set(&mut b, "use_colocated_libcalls", "false")?;
    // The generated functions are verified in debug builds (tests) only.
    set(
        &mut b,
        "enable_verifier",
        if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        },
    )?;
    Ok(settings::Flags::new(b))
}

fn native_isa(builder: isa::Builder) -> Result<OwnedTargetIsa, CodegenError> {
    builder
        .finish(shared_flags()?)
        .map_err(|e| CodegenError::Isa(format!("building the target: {e}")))
}

fn enabled_flags(isa: &dyn isa::TargetIsa) -> Vec<&'static str> {
    isa.isa_flags()
        .into_iter()
        .filter(|v| v.as_bool() == Some(true))
        .map(|v| v.name)
        .collect()
}

/// A Cranelift target plus the record of what it enables.
#[derive(Clone)]
pub struct Target {
    /// The Cranelift ISA.
    pub isa: OwnedTargetIsa,
    /// What it enables.
    pub info: TargetInfo,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.info.fmt(f)
    }
}

/// The features a target (and so a kernel compiled for it) relies on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Target triple.
    pub triple: String,
    /// The level asked for (`None` for a cross target such as [`Target::aarch64`]).
    pub level: Option<IsaLevel>,
    /// Whether the code runs on this host (JIT) or is compiled only.
    pub host: bool,
    /// Boolean ISA flags that are on.
    pub enabled: Vec<&'static str>,
}

impl TargetInfo {
    /// Whether flag `name` is on.
    pub fn has(&self, name: &str) -> bool {
        self.enabled.contains(&name)
    }

    /// Whether this is an x86-64 target.
    pub fn is_x86_64(&self) -> bool {
        self.triple.starts_with("x86_64")
    }

    /// Whether this is an aarch64 target.
    pub fn is_aarch64(&self) -> bool {
        self.triple.starts_with("aarch64")
    }

    /// A short tag for the features code is compiled with: `avx512vnni`, `avx2`, `sse4`,
    /// `neon-dotprod`, ...
    pub fn tag(&self) -> String {
        if self.is_aarch64() {
            return match (self.has("has_dotprod"), self.has("has_i8mm")) {
                (true, true) => "neon-dotprod-i8mm".into(),
                (true, false) => "neon-dotprod".into(),
                (false, true) => "neon-i8mm".into(),
                (false, false) => "neon".into(),
            };
        }
        let base = if self.has("has_avx512f") {
            "avx512"
        } else if self.has("has_avx2") {
            "avx2"
        } else if self.has("has_sse41") {
            "sse4"
        } else {
            "base"
        };
        match self.vnni() {
            Some(_) => format!("{base}vnni"),
            None => base.to_string(),
        }
    }

    /// Which VNNI form (if any) a u8×i8 dot tree folds into: `avx_vnni` (VEX `vpdpbusd`),
    /// `avx512vnni` (EVEX `vpdpbusd`), or `None`.
    pub fn vnni(&self) -> Option<&'static str> {
        if !self.is_x86_64() {
            None
        } else if self.has("has_avx_vnni") {
            Some("avx_vnni")
        } else if self.has("has_avx512vnni") && self.has("has_avx512vl") {
            Some("avx512vnni")
        } else {
            None
        }
    }
}

impl Target {
    /// A host target limited to `level`. Errors if the host lacks a feature the level requires,
    /// or (for the x86 levels) if the host is not x86-64.
    pub fn host(level: IsaLevel) -> Result<Target, CodegenError> {
        let host = HostFeatures::detect()?;
        let isa = match level {
            IsaLevel::Native => native_isa(cranelift_native::builder().map_err(host_err)?)?,
            _ => {
                if !host.is_x86_64() {
                    return Err(CodegenError::Isa(format!(
                        "ISA level {level} is x86-64 only; this host is {}",
                        host.arch
                    )));
                }
                let (required, optional) = level.x86_flags();
                if let Some(missing) = required.iter().find(|f| !host.has(f)) {
                    return Err(CodegenError::Isa(format!(
                        "ISA level {level} needs {missing}, which this host lacks"
                    )));
                }
                // A builder for the host triple with no features inferred.
                let mut b = cranelift_native::builder_with_options(false).map_err(host_err)?;
                for f in required
                    .iter()
                    .chain(optional.iter().filter(|f| host.has(f)))
                {
                    b.enable(f)
                        .map_err(|e| CodegenError::Isa(format!("enabling {f}: {e}")))?;
                }
                native_isa(b)?
            }
        };
        let info = TargetInfo {
            triple: isa.triple().to_string(),
            level: Some(level),
            host: true,
            enabled: enabled_flags(&*isa),
        };
        Ok(Target { isa, info })
    }

    /// An aarch64 (Linux) target with NEON, for compile-only use from any host. `dotprod` turns
    /// on FEAT_DotProd (`sdot`/`udot`), `i8mm` FEAT_I8MM (`usdot`).
    pub fn aarch64(dotprod: bool, i8mm: bool) -> Result<Target, CodegenError> {
        let mut b = isa::lookup_by_name("aarch64-unknown-linux-gnu")
            .map_err(|e| CodegenError::Isa(format!("aarch64 target: {e}")))?;
        for (flag, on) in [("has_dotprod", dotprod), ("has_i8mm", i8mm)] {
            if on {
                b.enable(flag)
                    .map_err(|e| CodegenError::Isa(format!("enabling {flag}: {e}")))?;
            }
        }
        let isa: OwnedTargetIsa = b
            .finish(shared_flags()?)
            .map_err(|e| CodegenError::Isa(format!("building the aarch64 target: {e}")))?;
        let info = TargetInfo {
            triple: isa.triple().to_string(),
            level: None,
            host: false,
            enabled: enabled_flags(&*isa),
        };
        Ok(Target {
            isa: Arc::clone(&isa),
            info,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CpuVendor;

    #[test]
    fn vendor_strings_name_their_maker() {
        assert_eq!(CpuVendor::from_cpuid_id(b"AuthenticAMD"), CpuVendor::Amd);
        assert_eq!(CpuVendor::from_cpuid_id(b"HygonGenuine"), CpuVendor::Amd);
        assert_eq!(CpuVendor::from_cpuid_id(b"GenuineIntel"), CpuVendor::Intel);
        assert_eq!(CpuVendor::from_cpuid_id(b"CentaurHauls"), CpuVendor::Other);
        assert_eq!(CpuVendor::from_cpuid_id(b""), CpuVendor::Other);
        // The host's is read once and is one of the three.
        assert_eq!(CpuVendor::host(), CpuVendor::host());
        if !cfg!(target_arch = "x86_64") {
            assert_eq!(CpuVendor::host(), CpuVendor::Other);
        }
    }
}
