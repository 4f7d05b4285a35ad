//! Finding the GPU and compiling the generated kernels for it.
//!
//! The CUDA libraries are loaded at run time; [`probe`] checks that the driver and NVRTC
//! libraries can be loaded before any call into them, so a machine without CUDA gets a
//! [`CudaError`] instead of a panic. Compiled PTX is cached on disk per GPU and source hash.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};

use super::error::{driver, CudaError};

/// What the backend learned about the GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device name, e.g. `NVIDIA H200`.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub memory_bytes: usize,
}

impl GpuInfo {
    /// Virtual architecture the kernels are compiled for, e.g. `compute_90`.
    pub fn arch(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!("compute_{major}{minor}")
    }

    /// A file-name-safe identity of the GPU for caches, e.g. `nvidia-h200-cc90`.
    pub fn cache_tag(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let (major, minor) = self.compute_capability;
        format!("{}-cc{major}{minor}", name.trim_matches('-'))
    }
}

/// Runs `f`, turning a panic inside the CUDA bindings (a symbol the installed driver lacks) into
/// an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        Err(CudaError::Driver {
            what: what.into(),
            problem: msg,
        })
    })
}

/// Whether the CUDA driver and NVRTC libraries can be loaded (nothing else is touched).
pub fn libraries_present() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the libraries by name.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    Ok(())
}

/// Whether the NVRTC library can be loaded (compiling needs no GPU or driver).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by name.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Opens GPU `ordinal`: checks the libraries, then the device.
pub fn probe(ordinal: usize) -> Result<(Arc<CudaContext>, GpuInfo), CudaError> {
    libraries_present()?;
    guarded("opening the GPU", || {
        let count =
            CudaContext::device_count().map_err(|e| CudaError::NoDevice(format!("{e:?}")))?;
        if count <= ordinal as i32 {
            return Err(CudaError::NoDevice(format!(
                "{count} devices, device {ordinal} asked for"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(driver(format!("creating a context on device {ordinal}")))?;
        let info = GpuInfo {
            name: ctx.name().map_err(driver("reading the device name"))?,
            compute_capability: ctx
                .compute_capability()
                .map_err(driver("reading the compute capability"))?,
            memory_bytes: ctx.total_mem().map_err(driver("reading the memory size"))?,
        };
        Ok((ctx, info))
    })
}

/// NVRTC options every kernel is compiled with (`--fmad=false`: floats round as written).
pub fn compile_options(info: &GpuInfo) -> Vec<String> {
    vec![
        format!("--gpu-architecture={}", info.arch()),
        "--fmad=false".into(),
        "--std=c++17".into(),
    ]
}

/// Compiles `source` to PTX with NVRTC.
pub fn compile_ptx(source: &str, info: &GpuInfo) -> Result<String, CudaError> {
    let options = compile_options(info);
    guarded("running NVRTC", || {
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(
            source,
            CompileOptions {
                options,
                ..Default::default()
            },
        )
        .map_err(|e| CudaError::Compile {
            arch: info.arch(),
            log: format!("{e:?}")
                .lines()
                .take(20)
                .collect::<Vec<_>>()
                .join(" | "),
        })?;
        Ok(ptx.to_src())
    })
}

/// Where compiled kernels are cached: `<dir>/cuda/<gpu tag>-<hash of source and options>.ptx`.
pub fn ptx_cache_path(dir: &Path, source: &str, info: &GpuInfo) -> PathBuf {
    let mut key = source.as_bytes().to_vec();
    for o in compile_options(info) {
        key.extend_from_slice(o.as_bytes());
    }
    key.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    let hash = xxhash_rust::xxh3::xxh3_64(&key);
    dir.join("cuda")
        .join(format!("{}-{hash:016x}.ptx", info.cache_tag()))
}

/// A compiled module and how it was obtained.
pub struct Compiled {
    /// The loaded module.
    pub module: Arc<CudaModule>,
    /// Time spent compiling (zero on a cache hit) and loading.
    pub time: Duration,
    /// Whether the PTX came from the cache.
    pub cached: bool,
}

/// Compiles (or takes from `cache_dir`) and loads `source`. A cached file that does not load is
/// reported on stderr and replaced.
pub fn build_module(
    ctx: &Arc<CudaContext>,
    info: &GpuInfo,
    source: &str,
    cache_dir: Option<&Path>,
) -> Result<Compiled, CudaError> {
    let start = Instant::now();
    let path = cache_dir.map(|d| ptx_cache_path(d, source, info));
    if let Some(p) = &path {
        if let Ok(ptx) = std::fs::read_to_string(p) {
            match guarded("loading cached kernels", || {
                ctx.load_module(Ptx::from_src(ptx))
                    .map_err(driver("loading cached PTX"))
            }) {
                Ok(module) => {
                    return Ok(Compiled {
                        module,
                        time: start.elapsed(),
                        cached: true,
                    })
                }
                Err(e) => eprintln!("warning: ignoring cached CUDA kernels {}: {e}", p.display()),
            }
        }
    }
    let ptx = compile_ptx(source, info)?;
    let module = guarded("loading kernels", || {
        ctx.load_module(Ptx::from_src(ptx.clone()))
            .map_err(driver("loading PTX"))
    })?;
    if let Some(p) = &path {
        // A cache that cannot be written only costs a compile next time.
        let _ = write_atomically(p, ptx.as_bytes());
    }
    Ok(Compiled {
        module,
        time: start.elapsed(),
        cached: false,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
