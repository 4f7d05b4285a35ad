//! The CUDA backend: the graph's kernels generated as CUDA C for its exact shapes
//! ([`bitnetc_codegen::cuda`]), compiled once with NVRTC for the GPU's compute capability
//! (PTX cached on disk), weights uploaded once, every op run on the device on one stream; only
//! the batch's embedding rows go up and the logits come down.
//!
//! * [`plan`]: which kernel each node runs (pure; no GPU needed).
//! * [`device`]: finding the GPU and NVRTC, compiling, the PTX cache.
//! * [`weights`]: packing and uploading weights.
//! * [`exec`]: the forward pass.

pub mod device;
pub mod error;
mod exec;
pub mod plan;
pub mod weights;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitnetc_ir::Graph;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};

pub use device::GpuInfo;
pub use error::CudaError;

use crate::error::RuntimeError;
use crate::exec::{forward_checked, last_uses, LogitsFor, Session};
use plan::CudaPlan;
use weights::DeviceWeights;

/// How to start the CUDA backend.
#[derive(Clone, Debug, Default)]
pub struct CudaOptions {
    /// GPU index.
    pub device: usize,
    /// Folder for the compiled-kernel cache (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
}

/// Executes a graph on an NVIDIA GPU.
pub struct CudaBackend {
    graph: Arc<Graph>,
    last_use: Vec<usize>,
    plan: CudaPlan,
    info: GpuInfo,
    _ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: Vec<CudaFunction>,
    weights: DeviceWeights,
    compile_time: Duration,
    compile_cached: bool,
    /// One pass at a time on the stream.
    busy: Mutex<()>,
}

impl CudaBackend {
    /// Opens the GPU, generates and compiles the kernels, uploads the weights.
    ///
    /// Errors: no driver, NVRTC or device ([`CudaError`]); shapes or weight types the kernels do
    /// not take; compile or upload failures.
    pub fn new(graph: Arc<Graph>, opts: &CudaOptions) -> Result<CudaBackend, RuntimeError> {
        let (ctx, info) = device::probe(opts.device)?;
        // SAFETY: every buffer of this backend is used on the context's one default stream, so
        // the per-buffer events that order uses across streams are not needed.
        unsafe { ctx.disable_event_tracking() };
        let plan = plan::plan(&graph, graph.info.n_ctx as usize)?;
        let compiled = device::build_module(
            &ctx,
            &info,
            &plan.module_source(),
            opts.cache_dir.as_deref(),
        )?;
        let functions = plan
            .sources
            .iter()
            .map(|s| {
                compiled
                    .module
                    .load_function(&s.name)
                    .map_err(error::driver(format!("finding kernel {}", s.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        let weights = DeviceWeights::upload(&graph, &stream)?;
        stream
            .synchronize()
            .map_err(error::driver("uploading weights"))?;
        Ok(CudaBackend {
            last_use: last_uses(&graph),
            graph,
            plan,
            info,
            _ctx: ctx,
            stream,
            functions,
            weights,
            compile_time: compiled.time,
            compile_cached: compiled.cached,
            busy: Mutex::new(()),
        })
    }

    /// The GPU.
    pub fn gpu(&self) -> &GpuInfo {
        &self.info
    }

    /// Time spent compiling and loading the kernels, and whether they came from the cache.
    pub fn compile_time(&self) -> (Duration, bool) {
        (self.compile_time, self.compile_cached)
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> usize {
        self.weights.bytes
    }

    /// The kernel each node runs, in graph order.
    pub fn kernel_names(&self) -> Vec<String> {
        self.plan.node_kernel_names()
    }

    /// A new, empty sequence (its device KV cache is allocated on the first pass).
    pub fn new_session(&self, n_ctx: usize) -> Session {
        Session::for_graph(&self.graph, n_ctx)
    }

    /// Evaluates `tokens` at the next positions of `session` and returns logits.
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        want: LogitsFor,
    ) -> Result<Vec<f32>, RuntimeError> {
        forward_checked(&self.graph, session, tokens, |s| {
            let _one_at_a_time = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            exec::forward(self, s, tokens, want)
        })
    }
}
