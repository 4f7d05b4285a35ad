//! Per-token and per-element kernels: RMSNorm, int8 activation quantization, RoPE, the gated
//! activation, residual add and bias add. Each mirrors its reference function's rounding steps
//! (`bitnet-gguf.md` §2.5); where a reduction is involved only its order differs.

use bitnetc_ir::Activation;

use super::{float_literal, round_up, KernelSource};
use crate::CodegenError;

/// Threads per block of the per-token kernels (RMSNorm, quantization).
pub const ROW_BLOCK: u32 = 256;
/// Threads per block of the per-element kernels.
pub const ELEM_BLOCK: u32 = 256;

fn check_width(what: &str, width: usize) -> Result<(), CodegenError> {
    if width == 0 || width > i32::MAX as usize / 16 {
        return Err(CodegenError::Shape(format!("CUDA {what} of width {width}")));
    }
    Ok(())
}

/// RMSNorm of `width`-wide token rows: `out = (x · 1/sqrt(mean(x²) + eps)) · weight`, the sum
/// of squares accumulated in f64 (a block-wide tree instead of the reference's sequential sum).
///
/// `void rms_norm_…(const float *x, const float *weight, float *out)`, one block per token
/// (grid `(n_tokens, 1, 1)`).
pub fn rms_norm(width: usize, eps: f32) -> Result<KernelSource, CodegenError> {
    check_width("rms_norm", width)?;
    let name = format!("rms_norm_{width}_{:08x}", eps.to_bits());
    let body = format!(
        r#"extern "C" __global__ void __launch_bounds__({b}) {name}(
    const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ out)
{{
    __shared__ double red[{b}];
    const float* xr = x + (unsigned long long)blockIdx.x * {width};
    float* o = out + (unsigned long long)blockIdx.x * {width};
    double ss = 0.0;
    for (int i = threadIdx.x; i < {width}; i += {b}) {{
        const float v = xr[i];
        ss += (double)(v * v);
    }}
    red[threadIdx.x] = ss;
    __syncthreads();
    for (int s = {b} / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }}
    const float mean = (float)(red[0] / {width}.0);
    const float r = 1.0f / sqrtf(mean + {eps});
    for (int i = threadIdx.x; i < {width}; i += {b}) o[i] = (xr[i] * r) * weight[i];
}}
"#,
        b = ROW_BLOCK,
        eps = float_literal(eps),
    );
    Ok(KernelSource::new(name, body, ROW_BLOCK))
}

/// Row length of quantized activations of width `width` (rounded up to 64, zero padded), the
/// layout the ternary kernel reads.
pub fn quantized_width(width: usize) -> usize {
    round_up(width, 64)
}

/// Per-token int8 absmax quantization: `s = f32(127 / max(max|x|, 1e-5))` (division in f64),
/// `q = clamp(rint(x·s), −128, 127)` with ties to even; rows padded with zeros to
/// [`quantized_width`].
///
/// `void quantize_…(const float *x, signed char *q, float *q_scale)`, one block per token.
pub fn quantize(width: usize) -> Result<KernelSource, CodegenError> {
    check_width("quantize", width)?;
    let pad = quantized_width(width);
    let name = format!("quantize_{width}");
    let body = format!(
        r#"extern "C" __global__ void __launch_bounds__({b}) {name}(
    const float* __restrict__ x, signed char* __restrict__ q, float* __restrict__ q_scale)
{{
    __shared__ float red[{b}];
    const float* xr = x + (unsigned long long)blockIdx.x * {width};
    signed char* qr = q + (unsigned long long)blockIdx.x * {pad};
    float m = 0.0f;
    for (int i = threadIdx.x; i < {width}; i += {b}) m = fmaxf(m, fabsf(xr[i]));
    red[threadIdx.x] = m;
    __syncthreads();
    for (int s = {b} / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }}
    const float scale = (float)(127.0 / fmax((double)red[0], 1e-5));
    for (int i = threadIdx.x; i < {pad}; i += {b}) {{
        signed char v = 0;
        if (i < {width}) v = (signed char)fminf(fmaxf(rintf(xr[i] * scale), -128.0f), 127.0f);
        qr[i] = v;
    }}
    if (threadIdx.x == 0) q_scale[blockIdx.x] = scale;
}}
"#,
        b = ROW_BLOCK,
    );
    Ok(KernelSource::new(name, body, ROW_BLOCK))
}

/// RMSNorm followed by the int8 quantization of its output, in one kernel (for a norm whose
/// only reader is the quantization): the normalized values are computed exactly as
/// [`rms_norm`] computes them (same reduction), twice (once for the absmax, once to quantize)
/// instead of being stored, and quantized exactly as [`quantize`] does.
///
/// `void rms_norm_quantize_…(const float *x, const float *weight, signed char *q,
/// float *q_scale)`, one block per token.
pub fn rms_norm_quantize(width: usize, eps: f32) -> Result<KernelSource, CodegenError> {
    check_width("rms_norm_quantize", width)?;
    let pad = quantized_width(width);
    let name = format!("rms_norm_quantize_{width}_{:08x}", eps.to_bits());
    let body = format!(
        r#"extern "C" __global__ void __launch_bounds__({b}) {name}(
    const float* __restrict__ x, const float* __restrict__ weight,
    signed char* __restrict__ q, float* __restrict__ q_scale)
{{
    __shared__ double red[{b}];
    __shared__ float redf[{b}];
    const float* xr = x + (unsigned long long)blockIdx.x * {width};
    signed char* qr = q + (unsigned long long)blockIdx.x * {pad};
    double ss = 0.0;
    for (int i = threadIdx.x; i < {width}; i += {b}) {{
        const float v = xr[i];
        ss += (double)(v * v);
    }}
    red[threadIdx.x] = ss;
    __syncthreads();
    for (int s = {b} / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }}
    const float mean = (float)(red[0] / {width}.0);
    const float r = 1.0f / sqrtf(mean + {eps});
    float m = 0.0f;
    for (int i = threadIdx.x; i < {width}; i += {b}) m = fmaxf(m, fabsf((xr[i] * r) * weight[i]));
    redf[threadIdx.x] = m;
    __syncthreads();
    for (int s = {b} / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) redf[threadIdx.x] = fmaxf(redf[threadIdx.x], redf[threadIdx.x + s]);
        __syncthreads();
    }}
    const float scale = (float)(127.0 / fmax((double)redf[0], 1e-5));
    for (int i = threadIdx.x; i < {pad}; i += {b}) {{
        signed char v = 0;
        if (i < {width}) v = (signed char)fminf(fmaxf(rintf(((xr[i] * r) * weight[i]) * scale), -128.0f), 127.0f);
        qr[i] = v;
    }}
    if (threadIdx.x == 0) q_scale[blockIdx.x] = scale;
}}
"#,
        b = ROW_BLOCK,
        eps = float_literal(eps),
    );
    Ok(KernelSource::new(name, body, ROW_BLOCK))
}

/// NeoX rotary embedding of `n_heads` heads of `head_dim` per token at positions
/// `n_past + t`: pair `(i, i + d/2)` rotated by `θ_i = pos · step^i`, θ built by `i` successive
/// f32 multiplications as the reference does (`step = base^(−2/d)` is computed on the host).
///
/// `void rope_…(const float *x, float *out, int n_past, float step)`, grid
/// `(n_tokens, n_heads, 1)`, `head_dim / 2` threads.
pub fn rope(n_heads: usize, head_dim: usize) -> Result<KernelSource, CodegenError> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > 2048 || n_heads == 0 {
        return Err(CodegenError::Shape(format!(
            "CUDA rope for {n_heads} heads of {head_dim} (an even head size up to 2048)"
        )));
    }
    let half = head_dim / 2;
    let width = n_heads * head_dim;
    let name = format!("rope_{n_heads}x{head_dim}");
    let body = format!(
        r#"extern "C" __global__ void __launch_bounds__({half}) {name}(
    const float* __restrict__ x, float* __restrict__ out, int n_past, float step)
{{
    const int i = threadIdx.x;
    float theta = (float)(n_past + (int)blockIdx.x);
    for (int j = 0; j < i; ++j) theta *= step;
    const float s = sinf(theta), c = cosf(theta);
    const unsigned long long base = (unsigned long long)blockIdx.x * {width} + (unsigned long long)blockIdx.y * {head_dim};
    const float a = x[base + i], b = x[base + i + {half}];
    out[base + i] = a * c - b * s;
    out[base + i + {half}] = a * s + b * c;
}}
"#,
    );
    Ok(KernelSource::new(name, body, half as u32))
}

/// An elementwise kernel over `n` elements (grid-stride loop).
fn elementwise(name: String, params: &str, expr: &str) -> KernelSource {
    let body = format!(
        r#"extern "C" __global__ void __launch_bounds__({b}) {name}({params}, float* __restrict__ out, int n)
{{
    for (int i = blockIdx.x * {b} + threadIdx.x; i < n; i += gridDim.x * {b}) {{
        out[i] = {expr};
    }}
}}
"#,
        b = ELEM_BLOCK,
    );
    KernelSource::new(name, body, ELEM_BLOCK)
}

/// Grid of the elementwise kernels for `n` elements.
pub fn elementwise_grid(n: usize) -> (u32, u32, u32) {
    (n.div_ceil(ELEM_BLOCK as usize).clamp(1, 65535) as u32, 1, 1)
}

/// `out = act(gate) · up`: `max(g, 0)² · u` or `g / (1 + e^−g) · u`.
///
/// `void gated_…(const float *gate, const float *up, float *out, int n)`.
pub fn gated(act: Activation) -> KernelSource {
    let (name, expr) = match act {
        Activation::Relu2 => (
            "gated_relu2",
            "(fmaxf(gate[i], 0.0f) * fmaxf(gate[i], 0.0f)) * up[i]",
        ),
        Activation::Silu => ("gated_silu", "(gate[i] / (1.0f + expf(-gate[i]))) * up[i]"),
    };
    elementwise(
        name.into(),
        "const float* __restrict__ gate, const float* __restrict__ up",
        expr,
    )
}

/// `out = a + b`. `void add(const float *a, const float *b, float *out, int n)`.
pub fn add() -> KernelSource {
    elementwise(
        "add".into(),
        "const float* __restrict__ a, const float* __restrict__ b",
        "a[i] + b[i]",
    )
}

/// `out[t, j] = x[t, j] + bias[j]` for rows of `width`.
/// `void add_bias_…(const float *x, const float *bias, float *out, int n)`.
pub fn add_bias(width: usize) -> Result<KernelSource, CodegenError> {
    check_width("add_bias", width)?;
    Ok(elementwise(
        format!("add_bias_{width}"),
        "const float* __restrict__ x, const float* __restrict__ bias",
        &format!("x[i] + bias[i % {width}]"),
    ))
}
