//! Causal attention over the device KV cache.
//!
//! One block per (token, query head). Scores `dot(q, k_j) · 1/sqrt(d)` are computed one key per
//! thread with the reference `dot_f32` order (eight interleaved partial sums), so each score is
//! the reference's bit for bit; the softmax's max and sum are block-wide tree reductions and the
//! weighted sum `Σ_j p_j · v_j` runs in `j` order per output element, as the reference does.
//!
//! ```text
//! void attention_…(const float *q, const float *k_cache, const float *v_cache,
//!                  float *scores, float *out, int n_past)
//! ```
//!
//! `q`/`out` are `[n_tokens, n_head · head_dim]`; `k_cache`/`v_cache` point at the layer's first
//! position (`[n_ctx, kv_width]`, already holding the batch's keys and values); `scores` is
//! scratch of `n_tokens · n_head · n_ctx` floats. Grid `(n_tokens, n_head, 1)`.

use super::{float_literal, KernelSource};
use crate::CodegenError;

/// Threads per block.
pub const BLOCK: u32 = 128;

/// Attention shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionKernel {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (divides `n_head`).
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Positions the cache holds (the scores scratch row length).
    pub n_ctx: usize,
}

impl AttentionKernel {
    /// Floats of scores scratch for `n_tokens` tokens.
    pub fn scratch_len(&self, n_tokens: usize) -> usize {
        n_tokens * self.n_head * self.n_ctx
    }

    /// Grid for `n_tokens` tokens.
    pub fn grid(&self, n_tokens: usize) -> (u32, u32, u32) {
        (n_tokens as u32, self.n_head as u32, 1)
    }

    /// The CUDA C source.
    pub fn source(&self) -> Result<KernelSource, CodegenError> {
        let s = *self;
        if s.n_head == 0
            || s.n_head_kv == 0
            || !s.n_head.is_multiple_of(s.n_head_kv)
            || s.head_dim == 0
            || s.head_dim > 1024
            || s.n_ctx == 0
        {
            return Err(CodegenError::Shape(format!("CUDA attention for {s:?}")));
        }
        let d = s.head_dim;
        let name = format!(
            "attention_{}x{}_kv{}_ctx{}",
            s.n_head, d, s.n_head_kv, s.n_ctx
        );
        let scale = float_literal(1.0 / (d as f32).sqrt());
        let body = format!(
            r#"#define D {d}
#define QW {qw}
#define KVW {kvw}
#define GROUP {group}
#define NCTX {nctx}
#define B {b}
extern "C" __global__ void __launch_bounds__({b}) {name}(
    const float* __restrict__ q, const float* __restrict__ k_cache,
    const float* __restrict__ v_cache, float* __restrict__ scores,
    float* __restrict__ out, int n_past)
{{
    __shared__ float qs[D];
    __shared__ float red[B];
    const int t = blockIdx.x, h = blockIdx.y;
    const int n = n_past + t + 1;
    const int off = (h / GROUP) * D;
    float* sc = scores + ((unsigned long long)t * gridDim.y + h) * NCTX;
    for (int i = threadIdx.x; i < D; i += B) qs[i] = q[(unsigned long long)t * QW + h * D + i];
    __syncthreads();
    float mx = -__int_as_float(0x7f800000);
    for (int j = threadIdx.x; j < n; j += B) {{
        const float* kj = k_cache + (unsigned long long)j * KVW + off;
        float acc[8] = {{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}};
        for (int c = 0; c < D / 8; ++c)
            for (int l = 0; l < 8; ++l) acc[l] += qs[8 * c + l] * kj[8 * c + l];
        float tail = 0.0f;
        for (int i = D / 8 * 8; i < D; ++i) tail += qs[i] * kj[i];
        const float dot = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
        const float v = dot * {scale};
        sc[j] = v;
        mx = fmaxf(mx, v);
    }}
    red[threadIdx.x] = mx;
    __syncthreads();
    for (int s = B / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }}
    mx = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += B) {{
        const float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }}
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = B / 2; s > 0; s >>= 1) {{
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }}
    sum = red[0];
    for (int i = threadIdx.x; i < D; i += B) {{
        float o = 0.0f;
        for (int j = 0; j < n; ++j) o += (sc[j] / sum) * v_cache[(unsigned long long)j * KVW + off + i];
        out[(unsigned long long)t * QW + h * D + i] = o;
    }}
}}
#undef D
#undef QW
#undef KVW
#undef GROUP
#undef NCTX
#undef B
"#,
            qw = s.n_head * d,
            kvw = s.n_head_kv * d,
            group = s.n_head / s.n_head_kv,
            nctx = s.n_ctx,
            b = BLOCK,
        );
        Ok(KernelSource::new(name, body, BLOCK))
    }
}
