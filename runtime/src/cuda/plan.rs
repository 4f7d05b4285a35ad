//! Which generated CUDA kernel each node of a graph runs. Pure: no GPU or CUDA library is
//! touched, so the sources of a model can be generated, listed and tested anywhere.

use std::collections::HashMap;

use bitnetc_codegen::cpu::head::HeadFormat;
use bitnetc_codegen::cuda::attention::AttentionKernel;
use bitnetc_codegen::cuda::head::{HeadKernel, HeadParams};
use bitnetc_codegen::cuda::ternary::{TernaryKernel, TernaryParams};
use bitnetc_codegen::cuda::{elementwise, KernelSource};
use bitnetc_codegen::CodegenError;
use bitnetc_ir::{DType, Graph, Op};

use crate::error::RuntimeError;

/// How one node runs.
#[derive(Clone, Debug)]
pub enum NodeKernel {
    /// Token embedding rows gathered on the host and uploaded (a few KB per token).
    HostEmbedding,
    /// A kernel launched once per pass over the whole batch (index into [`CudaPlan::sources`]).
    Launch(usize),
    /// RMSNorm and the quantization of its output in one kernel (the norm's only reader is that
    /// quantization, whose node then runs nothing: [`NodeKernel::FusedIntoPrevious`]).
    NormQuantize {
        /// Kernel index.
        kernel: usize,
        /// Row length of the quantized activations.
        k_pad: usize,
    },
    /// Computed by the previous node's fused kernel.
    FusedIntoPrevious,
    /// Quantization into rows of `k_pad` int8 values.
    Quantize {
        /// Kernel index.
        kernel: usize,
        /// Row length of the quantized activations.
        k_pad: usize,
    },
    /// Ternary linear: one kernel for a single token, one for prompt batches.
    Ternary {
        /// Kernel for one token and its shape.
        decode: (usize, TernaryKernel),
        /// Kernel for batches and its shape.
        prompt: (usize, TernaryKernel),
    },
    /// RoPE with `step = base^(−2/d)` computed on the host as the reference computes it.
    Rope {
        /// Kernel index.
        kernel: usize,
        /// Angle step.
        step: f32,
    },
    /// Attention over the device KV cache.
    Attention {
        /// Kernel index.
        kernel: usize,
        /// Its shape.
        shape: AttentionKernel,
    },
    /// The output head.
    Head {
        /// Kernel index.
        kernel: usize,
        /// Its shape.
        shape: HeadKernel,
    },
}

/// The kernels of a graph: every distinct source once, and each node's use of them.
#[derive(Clone, Debug)]
pub struct CudaPlan {
    /// Distinct kernel sources.
    pub sources: Vec<KernelSource>,
    /// Per node, in graph order.
    pub nodes: Vec<NodeKernel>,
}

impl CudaPlan {
    /// All sources as one CUDA C translation unit (the helpers are included once).
    pub fn module_source(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.code.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The kernel name each node runs (`host.embedding` for the host-side gather).
    pub fn node_kernel_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| match n {
                NodeKernel::HostEmbedding => "host.embedding".to_string(),
                NodeKernel::FusedIntoPrevious => "cuda.fused-into-previous".to_string(),
                NodeKernel::Launch(i)
                | NodeKernel::NormQuantize { kernel: i, .. }
                | NodeKernel::Quantize { kernel: i, .. }
                | NodeKernel::Rope { kernel: i, .. }
                | NodeKernel::Attention { kernel: i, .. }
                | NodeKernel::Head { kernel: i, .. } => format!("cuda.{}", self.sources[*i].name),
                NodeKernel::Ternary { decode, prompt } => format!(
                    "cuda.{}+{}",
                    self.sources[decode.0].name, self.sources[prompt.0].name
                ),
            })
            .collect()
    }
}

/// The element format a head table is uploaded in (Q8_0 / Q6_K are repacked to scaled int8).
pub fn head_format(dtype: DType) -> Option<HeadFormat> {
    match dtype {
        DType::F16 => Some(HeadFormat::F16 { finite: false }),
        // The CUDA head multiplies Q6_K and Q8_0 in f32 (the repacked scaled-int8 rows), not by
        // Q8_K / Q8_0 activations as the CPU backends do.
        DType::Q6K => Some(HeadFormat::ScaledI8 { group: 16 }),
        DType::Q8_0 => Some(HeadFormat::ScaledI8 { group: 32 }),
        other => HeadFormat::of(other, false),
    }
}

#[derive(Default)]
struct Sources {
    list: Vec<KernelSource>,
    index: HashMap<String, usize>,
}

impl Sources {
    fn add(&mut self, src: KernelSource) -> usize {
        if let Some(&i) = self.index.get(&src.name) {
            return i;
        }
        self.index.insert(src.name.clone(), self.list.len());
        self.list.push(src);
        self.list.len() - 1
    }
}

/// Plans the kernels of `graph`, the attention scratch sized for `n_ctx` positions.
///
/// Errors: a table type the head kernel does not read, shapes the generators refuse.
pub fn plan(graph: &Graph, n_ctx: usize) -> Result<CudaPlan, RuntimeError> {
    let mut sources = Sources::default();
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    let mut readers = vec![0usize; graph.nodes.len()];
    for node in &graph.nodes {
        for input in node.op.inputs() {
            readers[input.0 as usize] += 1;
        }
    }
    // A norm read only by the quantization right after it runs fused with it.
    let fused = |i: usize| {
        matches!(graph.nodes[i].op, Op::RmsNorm { .. })
            && readers[i] == 1
            && graph.output.0 as usize != i
            && matches!(
                graph.nodes.get(i + 1).map(|n| &n.op),
                Some(Op::QuantizeActivation { x }) if x.0 as usize == i
            )
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        let width = node.ty.width as usize;
        let kernel = match &node.op {
            Op::Embedding { .. } => NodeKernel::HostEmbedding,
            Op::RmsNorm { eps, .. } if fused(i) => NodeKernel::NormQuantize {
                kernel: sources.add(elementwise::rms_norm_quantize(width, *eps)?),
                k_pad: elementwise::quantized_width(width),
            },
            Op::QuantizeActivation { .. } if i > 0 && fused(i - 1) => NodeKernel::FusedIntoPrevious,
            Op::RmsNorm { eps, .. } => {
                NodeKernel::Launch(sources.add(elementwise::rms_norm(width, *eps)?))
            }
            Op::QuantizeActivation { .. } => NodeKernel::Quantize {
                kernel: sources.add(elementwise::quantize(width)?),
                k_pad: elementwise::quantized_width(width),
            },
            Op::TernaryLinear {
                weight, out_scale, ..
            } => {
                let w = graph.weight(*weight);
                let shape = |params| TernaryKernel {
                    k: w.dims[0] as usize,
                    m: w.dims[1] as usize,
                    out_scale: out_scale.is_some(),
                    params,
                };
                let decode = shape(TernaryParams::decode_default());
                let prompt = shape(TernaryParams::prompt_default());
                NodeKernel::Ternary {
                    decode: (sources.add(decode.source()?), decode),
                    prompt: (sources.add(prompt.source()?), prompt),
                }
            }
            Op::AddBias { .. } => NodeKernel::Launch(sources.add(elementwise::add_bias(width)?)),
            Op::Rope {
                n_heads,
                head_dim,
                freq_base,
                ..
            } => NodeKernel::Rope {
                kernel: sources.add(elementwise::rope(*n_heads as usize, *head_dim as usize)?),
                step: freq_base.powf(-2.0 / *head_dim as f32),
            },
            Op::Attention {
                n_head,
                n_head_kv,
                head_dim,
                ..
            } => {
                let shape = AttentionKernel {
                    n_head: *n_head as usize,
                    n_head_kv: *n_head_kv as usize,
                    head_dim: *head_dim as usize,
                    n_ctx,
                };
                NodeKernel::Attention {
                    kernel: sources.add(shape.source()?),
                    shape,
                }
            }
            Op::GatedActivation { act, .. } => {
                NodeKernel::Launch(sources.add(elementwise::gated(*act)))
            }
            Op::Add { .. } => NodeKernel::Launch(sources.add(elementwise::add())),
            Op::OutputHead { table, .. } => {
                let t = graph.weight(*table);
                let format = head_format(t.dtype).ok_or_else(|| {
                    CodegenError::Unsupported(format!(
                        "CUDA output head over a {} table ({})",
                        t.dtype, t.name
                    ))
                })?;
                let shape = HeadKernel {
                    format,
                    k: t.dims[0] as usize,
                    rows: t.dims[1] as usize,
                    params: HeadParams::default(),
                };
                NodeKernel::Head {
                    kernel: sources.add(shape.source()?),
                    shape,
                }
            }
        };
        nodes.push(kernel);
    }
    Ok(CudaPlan {
        sources: sources.list,
        nodes,
    })
}
