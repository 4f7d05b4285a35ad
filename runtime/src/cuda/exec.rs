//! The forward pass on the device: the graph walked in order, each value a device buffer freed
//! after its last use, the KV cache in device memory owned by the session.

use bitnetc_ir::{Op, ValueId};
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::error::{driver, CudaError};
use super::plan::NodeKernel;
use super::CudaBackend;
use crate::error::RuntimeError;
use crate::exec::{weight_f32, LogitsFor, Session};
use crate::reference::weights::table_row;
use bitnetc_codegen::cuda::elementwise::elementwise_grid;

/// A session's device state: keys and values per layer (`n_ctx × kv_width` f32 each).
pub(super) struct DeviceKv {
    keys: Vec<CudaSlice<f32>>,
    values: Vec<CudaSlice<f32>>,
}

/// A value during a pass.
enum Value {
    F32(CudaSlice<f32>),
    Q8 {
        q: CudaSlice<i8>,
        scale: CudaSlice<f32>,
    },
}

impl Value {
    fn f32(&self) -> &CudaSlice<f32> {
        match self {
            Value::F32(v) => v,
            Value::Q8 { .. } => unreachable!("the IR validator guarantees operand kinds"),
        }
    }
}

fn config(grid: (u32, u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn launch_err(name: &str) -> impl FnOnce(cudarc::driver::DriverError) -> RuntimeError + '_ {
    move |e| {
        RuntimeError::Cuda(CudaError::Driver {
            what: format!("launching {name}"),
            problem: format!("{e:?}"),
        })
    }
}

pub(super) fn forward(
    b: &CudaBackend,
    session: &mut Session,
    tokens: &[u32],
    want: LogitsFor,
) -> Result<Vec<f32>, RuntimeError> {
    let g = &*b.graph;
    let stream = &b.stream;
    let t_count = tokens.len();
    let n_past = session.kv.len();
    if session.device.is_none() {
        let cap = session.kv.capacity();
        let width = g.info.kv_width as usize;
        let alloc = |_| {
            stream
                .alloc_zeros::<f32>(cap * width)
                .map_err(driver("allocating the KV cache"))
        };
        let layers = g.info.n_kv_layers as usize;
        let kv = DeviceKv {
            keys: (0..layers).map(alloc).collect::<Result<_, _>>()?,
            values: (0..layers).map(alloc).collect::<Result<_, _>>()?,
        };
        session.device = Some(Box::new(kv));
    }
    let kv = session
        .device
        .as_mut()
        .and_then(|d| d.downcast_mut::<DeviceKv>())
        .ok_or(CudaError::ForeignSession)?;
    let kv_width = g.info.kv_width as usize;
    // SAFETY (uninitialized memory): every value is written in full by the kernel producing it.
    let alloc = |n: usize| unsafe { stream.alloc::<f32>(n) }.map_err(driver("allocating a value"));
    let mut values: Vec<Option<Value>> = (0..g.nodes.len()).map(|_| None).collect();
    let mut fused: Option<Value> = None;
    for (i, node) in g.nodes.iter().enumerate() {
        let width = node.ty.width as usize;
        let get = |id: ValueId| {
            values[id.0 as usize]
                .as_ref()
                .expect("operands are computed before use")
        };
        let kernel = &b.plan.nodes[i];
        let func = |k: usize| (&b.functions[k], &b.plan.sources[k]);
        let out: Option<Value> = match (&node.op, kernel) {
            (Op::Embedding { table }, NodeKernel::HostEmbedding) => {
                let w = g.weight(*table);
                let mut rows = vec![0.0f32; t_count * width];
                for (row, &tok) in rows.chunks_mut(width).zip(tokens) {
                    table_row(w, tok as usize, row)?;
                }
                Some(Value::F32(
                    stream
                        .clone_htod(&rows)
                        .map_err(driver("uploading embeddings"))?,
                ))
            }
            (Op::RmsNorm { x, weight, .. }, NodeKernel::NormQuantize { kernel, k_pad }) => {
                let (f, src) = func(*kernel);
                // SAFETY: the kernel writes every element, padding included.
                let mut q = unsafe { stream.alloc::<i8>(t_count * k_pad) }
                    .map_err(driver("allocating activations"))?;
                let mut scale = alloc(t_count)?;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*x).f32())
                        .arg(&b.weights.f32s[weight])
                        .arg(&mut q)
                        .arg(&mut scale)
                        .launch(config((t_count as u32, 1, 1), src.block))
                }
                .map_err(launch_err(&src.name))?;
                // The value of the quantization node that follows; the norm's own f32 output
                // is never materialized.
                fused = Some(Value::Q8 { q, scale });
                None
            }
            (Op::QuantizeActivation { .. }, NodeKernel::FusedIntoPrevious) => {
                Some(fused.take().expect("the fused norm runs just before"))
            }
            (Op::RmsNorm { x, weight, .. }, NodeKernel::Launch(k)) => {
                let (f, src) = func(*k);
                let mut out = alloc(t_count * width)?;
                let w = &b.weights.f32s[weight];
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*x).f32())
                        .arg(w)
                        .arg(&mut out)
                        .launch(config((t_count as u32, 1, 1), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::QuantizeActivation { x }, NodeKernel::Quantize { kernel, k_pad }) => {
                let (f, src) = func(*kernel);
                // SAFETY: the kernel writes every element, padding included.
                let mut q = unsafe { stream.alloc::<i8>(t_count * k_pad) }
                    .map_err(driver("allocating activations"))?;
                let mut scale = alloc(t_count)?;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*x).f32())
                        .arg(&mut q)
                        .arg(&mut scale)
                        .launch(config((t_count as u32, 1, 1), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::Q8 { q, scale })
            }
            (
                Op::TernaryLinear {
                    x,
                    weight,
                    out_scale,
                },
                NodeKernel::Ternary { decode, prompt },
            ) => {
                let (k, shape) = if t_count == 1 { decode } else { prompt };
                let (f, src) = func(*k);
                let w = &b.weights.ternary[weight];
                let scale = out_scale.map_or(0.0, |s| weight_f32(g.weight(s))[0]);
                let Value::Q8 { q, scale: q_scale } = get(*x) else {
                    unreachable!("the IR validator guarantees operand kinds")
                };
                let mut out = alloc(t_count * width)?;
                let n = t_count as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(&w.words)
                        .arg(&w.row_scales)
                        .arg(q)
                        .arg(q_scale)
                        .arg(&mut out)
                        .arg(&n)
                        .arg(&scale)
                        .launch(config(shape.grid(t_count), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::AddBias { x, bias }, NodeKernel::Launch(k)) => {
                let (f, src) = func(*k);
                let n = t_count * width;
                let mut out = alloc(n)?;
                let n_i = n as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*x).f32())
                        .arg(&b.weights.f32s[bias])
                        .arg(&mut out)
                        .arg(&n_i)
                        .launch(config(elementwise_grid(n), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::Add { a, b: y }, NodeKernel::Launch(k))
            | (Op::GatedActivation { gate: a, up: y, .. }, NodeKernel::Launch(k)) => {
                let (f, src) = func(*k);
                let n = t_count * width;
                let mut out = alloc(n)?;
                let n_i = n as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*a).f32())
                        .arg(get(*y).f32())
                        .arg(&mut out)
                        .arg(&n_i)
                        .launch(config(elementwise_grid(n), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::Rope { x, n_heads, .. }, NodeKernel::Rope { kernel, step }) => {
                let (f, src) = func(*kernel);
                let mut out = alloc(t_count * width)?;
                let past = n_past as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*x).f32())
                        .arg(&mut out)
                        .arg(&past)
                        .arg(step)
                        .launch(config((t_count as u32, *n_heads, 1), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::Attention { q, k, v, layer, .. }, NodeKernel::Attention { kernel, shape }) => {
                let layer = *layer as usize;
                let span = n_past * kv_width..(n_past + t_count) * kv_width;
                stream
                    .memcpy_dtod(get(*k).f32(), &mut kv.keys[layer].slice_mut(span.clone()))
                    .map_err(driver("appending keys"))?;
                stream
                    .memcpy_dtod(get(*v).f32(), &mut kv.values[layer].slice_mut(span))
                    .map_err(driver("appending values"))?;
                let (f, src) = func(*kernel);
                let mut scores = alloc(shape.scratch_len(t_count))?;
                let mut out = alloc(t_count * width)?;
                let past = n_past as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(get(*q).f32())
                        .arg(&kv.keys[layer])
                        .arg(&kv.values[layer])
                        .arg(&mut scores)
                        .arg(&mut out)
                        .arg(&past)
                        .launch(config(shape.grid(t_count), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (Op::OutputHead { x, table }, NodeKernel::Head { kernel, shape }) => {
                let (f, src) = func(*kernel);
                let xs = get(*x).f32();
                let k = shape.k;
                let (first, rows) = match want {
                    LogitsFor::All => (0, t_count),
                    LogitsFor::Last => (t_count - 1, 1),
                };
                let view = xs.slice(first * k..(first + rows) * k);
                let mut out = alloc(rows * shape.rows)?;
                let n = rows as i32;
                unsafe {
                    stream
                        .launch_builder(f)
                        .arg(&b.weights.tables[table])
                        .arg(&view)
                        .arg(&mut out)
                        .arg(&n)
                        .launch(config(shape.grid(rows), src.block))
                }
                .map_err(launch_err(&src.name))?;
                Some(Value::F32(out))
            }
            (op, plan) => unreachable!("plan {plan:?} for op {}", op.kind_name()),
        };
        values[i] = out;
        for input in node.op.inputs() {
            if b.last_use[input.0 as usize] == i {
                values[input.0 as usize] = None;
            }
        }
    }
    let logits = match values[g.output.0 as usize].take() {
        Some(Value::F32(v)) => v,
        _ => unreachable!("the validator guarantees an f32 output"),
    };
    let host = stream
        .clone_dtoh(&logits)
        .map_err(driver("downloading logits"))?;
    Ok(host)
}
