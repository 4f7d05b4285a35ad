//! The output head: `logits[t, r] = Σ_k table[r, k] · x[t, k]` over the table's rows.
//!
//! One warp per table row, `warps` rows per block, up to `tokens` tokens per block (every row
//! is read once per token tile). Lanes read consecutive vectors of the row (16-byte loads where
//! the row length allows), convert to f32 and accumulate `element · x` per token; a warp sum
//! gives the logit. Element values are the reference's exactly (F16/BF16/F32 as stored, Q8_0 and
//! Q6_K repacked into [`HeadFormat::ScaledI8`] with the reference's scales); only the summation
//! order differs from the reference's `dot_f32`.
//!
//! ```text
//! void head_…(const unsigned char *table, const float *x, float *out, int n_tokens)
//! ```
//!
//! `x` is `[n_tokens, K]`, `out` `[n_tokens, rows]`. Grid `(ceil(rows / warps), ceil(n_tokens /
//! tokens), 1)`.

use super::KernelSource;
use crate::cpu::head::HeadFormat;
use crate::CodegenError;

/// Tunable values of [`HeadKernel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadParams {
    /// Rows (warps) per block: 1, 2, 4 or 8.
    pub warps: u32,
    /// Tokens per block: 1..=8.
    pub tokens: u32,
}

impl Default for HeadParams {
    fn default() -> HeadParams {
        HeadParams {
            warps: 4,
            tokens: 4,
        }
    }
}

/// The head kernel for one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadKernel {
    /// Element format (as uploaded).
    pub format: HeadFormat,
    /// Elements per row.
    pub k: usize,
    /// Table rows (vocabulary).
    pub rows: usize,
    /// Tunable values.
    pub params: HeadParams,
}

impl HeadKernel {
    /// Grid for `n_tokens` tokens.
    pub fn grid(&self, n_tokens: usize) -> (u32, u32, u32) {
        (
            self.rows.div_ceil(self.params.warps as usize) as u32,
            n_tokens.div_ceil(self.params.tokens as usize) as u32,
            1,
        )
    }

    /// Elements per lane load: as many as a 16-byte load holds when rows stay 16-byte aligned.
    fn vector_elems(&self) -> usize {
        let (bytes_per_elem, max) = match self.format {
            HeadFormat::F16 { .. } | HeadFormat::BF16 => (2, 8),
            HeadFormat::F32 => (4, 4),
            // Q6K and Q8_0 never get here (`source` refuses them).
            HeadFormat::ScaledI8 { .. } | HeadFormat::Q6K | HeadFormat::Q8_0 => (1, 16),
        };
        let row_bytes = self.format.row_bytes(self.k);
        let group = match self.format {
            HeadFormat::ScaledI8 { group } => group,
            _ => max,
        };
        let mut v = max;
        while v > 1
            && !(self.k.is_multiple_of(v)
                && row_bytes.is_multiple_of(v * bytes_per_elem)
                && group % v == 0)
        {
            v /= 2;
        }
        v
    }

    /// The CUDA C source.
    pub fn source(&self) -> Result<KernelSource, CodegenError> {
        let p = self.params;
        if !matches!(p.warps, 1 | 2 | 4 | 8) || !(1..=8).contains(&p.tokens) {
            return Err(CodegenError::Unsupported(format!(
                "CUDA head parameters {p:?} (warps 1/2/4/8, tokens 1..=8)"
            )));
        }
        if self.k == 0 || self.rows == 0 || self.k > (1 << 24) {
            return Err(CodegenError::Shape(format!(
                "CUDA head for {} rows of {}",
                self.rows, self.k
            )));
        }
        if matches!(self.format, HeadFormat::Q6K | HeadFormat::Q8_0) {
            return Err(CodegenError::Unsupported(format!(
                "CUDA head: Q6_K and Q8_0 tables are uploaded as scaled int8 rows (i8x16, i8x32), \
                 not {}",
                self.format.name()
            )));
        }
        if let HeadFormat::ScaledI8 { group } = self.format {
            if group % 4 != 0 || !self.k.is_multiple_of(group) {
                return Err(CodegenError::Shape(format!(
                    "CUDA head: scale groups of {group} over rows of {}",
                    self.k
                )));
            }
        }
        let v = self.vector_elems();
        // The load: `v` elements as a vector of 32-bit words (or one narrower word).
        let load_bytes = v * match self.format {
            HeadFormat::F16 { .. } | HeadFormat::BF16 => 2,
            HeadFormat::F32 => 4,
            HeadFormat::ScaledI8 { .. } | HeadFormat::Q6K | HeadFormat::Q8_0 => 1,
        };
        let (vec_ty, words): (&str, Vec<String>) = match load_bytes {
            16 => (
                "uint4",
                ["x", "y", "z", "w"]
                    .iter()
                    .map(|c| format!("c.{c}"))
                    .collect(),
            ),
            8 => (
                "uint2",
                ["x", "y"].iter().map(|c| format!("c.{c}")).collect(),
            ),
            4 => ("unsigned", vec!["c".into()]),
            2 => ("unsigned short", vec!["(unsigned)c".into()]),
            _ => ("unsigned char", vec!["(unsigned)c".into()]),
        };
        // C expressions for element `e` (0..v) of the loaded vector, as f32.
        let elem = |e: usize| -> String {
            match self.format {
                HeadFormat::F16 { .. } | HeadFormat::BF16 => {
                    let f = if self.format == HeadFormat::BF16 {
                        "bn_bf16_to_float"
                    } else {
                        "bn_half_to_float"
                    };
                    let (w, half) = (e / 2, e % 2);
                    format!("{f}((unsigned short)({} >> {}))", words[w], 16 * half)
                }
                HeadFormat::F32 => format!("__uint_as_float({})", words[e]),
                HeadFormat::ScaledI8 { .. } | HeadFormat::Q6K | HeadFormat::Q8_0 => {
                    let (w, byte) = (e / 4, e % 4);
                    format!(
                        "(scale * (float)(signed char)({} >> {}))",
                        words[w],
                        8 * byte
                    )
                }
            }
        };
        let row_bytes = self.format.row_bytes(self.k);
        let scale_line = match self.format {
            HeadFormat::ScaledI8 { group } => format!(
                "        const float scale = ((const float*)(tr + {k}))[(i * {v}) / {group}];\n",
                k = self.k
            ),
            _ => String::new(),
        };
        let converts: String = (0..v)
            .map(|e| format!("        const float e{e} = {};\n", elem(e)))
            .collect();
        let fmas: String = (0..v)
            .map(|e| format!("                acc[t] += e{e} * xt[{e}];\n"))
            .collect();
        let name = format!(
            "head_{}_{}x{}_w{}_t{}",
            self.format.name(),
            self.rows,
            self.k,
            p.warps,
            p.tokens
        );
        let block = 32 * p.warps;
        let body = format!(
            r#"extern "C" __global__ void __launch_bounds__({block}) {name}(
    const unsigned char* __restrict__ table, const float* __restrict__ x,
    float* __restrict__ out, int n_tokens)
{{
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * {warps} + (threadIdx.x >> 5);
    if (row >= {rows}) return; // the whole warp leaves together
    const int t0 = blockIdx.y * {tt};
    const int nt = min({tt}, n_tokens - t0);
    const unsigned char* tr = table + (unsigned long long)row * {row_bytes};
    float acc[{tt}];
#pragma unroll
    for (int t = 0; t < {tt}; ++t) acc[t] = 0.0f;
    for (int i = lane; i < {vecs}; i += 32) {{
        const {vec_ty} c = (({vec_ty} const*)tr)[i];
{scale_line}{converts}#pragma unroll
        for (int t = 0; t < {tt}; ++t) {{
            if (t < nt) {{
                const float* xt = x + (unsigned long long)(t0 + t) * {k} + i * {v};
{fmas}            }}
        }}
    }}
#pragma unroll
    for (int t = 0; t < {tt}; ++t) {{
        const float s = bn_warp_sum_f(acc[t]);
        if (lane == 0 && t < nt) out[(unsigned long long)(t0 + t) * {rows} + row] = s;
    }}
}}
"#,
            warps = p.warps,
            rows = self.rows,
            tt = p.tokens,
            k = self.k,
            vecs = self.k / v,
        );
        Ok(KernelSource::new(name, body, block))
    }
}
