//! Why the CUDA backend cannot start or run.

/// A CUDA problem, each variant one line for the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CudaError {
    /// No CUDA driver library could be loaded.
    #[error("no CUDA driver found (libcuda.so.1 could not be loaded): --device cuda needs an NVIDIA GPU and its driver")]
    NoDriver,
    /// The driver is there but NVRTC is not.
    #[error("no NVRTC library found (libnvrtc.so.13 or .12): install the CUDA toolkit's NVRTC or add its folder to LD_LIBRARY_PATH")]
    NoNvrtc,
    /// The driver reports no device.
    #[error("no CUDA device: the driver reports {0}")]
    NoDevice(String),
    /// A driver call failed.
    #[error("CUDA driver: {what}: {problem}")]
    Driver {
        /// What was being done.
        what: String,
        /// The driver's answer.
        problem: String,
    },
    /// NVRTC refused the generated source.
    #[error("NVRTC could not compile the generated kernels for {arch}: {log}")]
    Compile {
        /// Target architecture.
        arch: String,
        /// The compiler's log (first lines).
        log: String,
    },
    /// A session made by another backend was handed to the CUDA backend.
    #[error("this session was not created by the CUDA backend")]
    ForeignSession,
}

/// A driver error for `what`.
pub(crate) fn driver(
    what: impl Into<String>,
) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    let what = what.into();
    move |e| CudaError::Driver {
        what,
        problem: format!("{e:?}"),
    }
}
