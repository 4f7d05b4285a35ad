//! The ternary × int8 linear kernel for the GPU, and the weight packing it reads.
//!
//! **Packing** ([`PackedTernary`]): each of the M rows is `k_pad / 16` little-endian u32 words
//! (`k_pad` = K rounded up to 64, padding codes 1 = weight 0); element `16w + 4j + b` of a row is
//! the 2-bit code at bits `8b + 2j` of word `w` (see `bn_ternary_dot16` in the prelude). Rows
//! carry one f32 scale each (I2_S's tensor scale repeated, or the TQ row's block scale).
//!
//! **Kernel** ([`TernaryKernel`]): one warp per weight row, `warps` rows per block; lane `l`
//! reads `load_words` consecutive words at vector index `l, l + 32, …` (a warp reads
//! `128·load_words` contiguous bytes per step) and the matching int8 activations, for up to
//! `tokens` tokens at once (a prompt batch reads each weight once per token tile; `gridDim.y`
//! covers the batch). Integer sums are exact; the output is
//! `((float)Σ w·q / s_t) · scale_row` (times the layer's output scale when it has one), the
//! reference backend's `((acc − Σq) / s) · scale` bit for bit, because every integer involved
//! is below 2^24 (K ≤ 65536).
//!
//! Signature:
//!
//! ```text
//! void ternary_…(const unsigned *w, const float *row_scale, const signed char *q,
//!                const float *q_scale, float *y, int n_tokens, float out_scale)
//! ```
//!
//! `q` is `[n_tokens, k_pad]` int8 (zero padded), `q_scale` `[n_tokens]`, `y` `[n_tokens, M]`.
//! Grid: `(ceil(M / warps), ceil(n_tokens / tokens))`.

use bitnetc_ir::Weight;
use rayon::prelude::*;

use super::{round_up, KernelSource};
use crate::cpu::TernaryRows;
use crate::CodegenError;

/// Largest K whose integer sums stay exact in f32 (|Σ w·q| ≤ 128·K ≤ 2^24 needs K ≤ 2^17; the
/// reference's `acc = Σ code·q` with codes up to 2 needs K ≤ 2^16).
pub const MAX_K: usize = 1 << 16;

/// Most tokens one block handles.
pub const MAX_TOKENS: u32 = 8;

/// A ternary weight packed for [`TernaryKernel`].
#[derive(Clone, Debug)]
pub struct PackedTernary {
    /// Inputs per row.
    pub k: usize,
    /// K rounded up to 64: the activation row length the kernel reads.
    pub k_pad: usize,
    /// Rows.
    pub m: usize,
    /// `m · k_pad / 16` words.
    pub words: Vec<u32>,
    /// One scale per row.
    pub row_scales: Vec<f32>,
}

/// Packs plain codes (`m` rows of `k` codes 0..=2, row-major) with per-row scales.
pub fn pack_codes(codes: &[u8], k: usize, m: usize, row_scales: Vec<f32>) -> PackedTernary {
    assert_eq!(codes.len(), k * m, "codes for {m} rows of {k}");
    assert_eq!(row_scales.len(), m, "one scale per row");
    let k_pad = round_up(k, 64);
    let row_words = k_pad / 16;
    let mut words = vec![0u32; m * row_words];
    words
        .par_chunks_mut(row_words)
        .zip(codes.par_chunks(k))
        .for_each(|(dst, src)| pack_row(src, dst));
    PackedTernary {
        k,
        k_pad,
        m,
        words,
        row_scales,
    }
}

/// Packs one row of codes into `dst` (padding codes are 1).
fn pack_row(codes: &[u8], dst: &mut [u32]) {
    for (w, word) in dst.iter_mut().enumerate() {
        let mut v = 0u32;
        for e in 0..16 {
            let code = codes.get(16 * w + e).copied().unwrap_or(1);
            let (j, b) = (e / 4, e % 4);
            v |= u32::from(code) << (8 * b + 2 * j);
        }
        *word = v;
    }
}

/// Decodes and packs a ternary weight (I2_S / TQ1_0 / TQ2_0, `dims = [K, M]`).
///
/// Errors: those of [`TernaryRows`]; K above [`MAX_K`].
pub fn pack_weight(weight: &Weight) -> Result<PackedTernary, CodegenError> {
    let src = TernaryRows::new(weight)?;
    let (k, m) = (src.k, src.m);
    if k > MAX_K {
        return Err(CodegenError::Unsupported(format!(
            "{}: K = {k} is above the CUDA kernel's exact-integer limit {MAX_K}",
            weight.name
        )));
    }
    let k_pad = round_up(k, 64);
    let row_words = k_pad / 16;
    let mut words = vec![0u32; m * row_words];
    let mut row_scales = vec![0f32; m];
    words
        .par_chunks_mut(row_words)
        .zip(row_scales.par_iter_mut())
        .enumerate()
        .try_for_each_init(
            || (vec![0u8; k], vec![0f32; k / 256]),
            |(codes, blk), (row, (dst, scale))| {
                let s = src.decode(row, codes, blk)?;
                *scale = src.tensor_scale.unwrap_or(s);
                pack_row(codes, dst);
                Ok::<(), CodegenError>(())
            },
        )?;
    Ok(PackedTernary {
        k,
        k_pad,
        m,
        words,
        row_scales,
    })
}

/// Tunable values of [`TernaryKernel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TernaryParams {
    /// Rows (warps) per block: 1, 2, 4 or 8.
    pub warps: u32,
    /// Tokens per block: 1..=[`MAX_TOKENS`].
    pub tokens: u32,
    /// u32 words per lane load: 1, 2 or 4 (4 = 16-byte loads).
    pub load_words: u32,
}

impl TernaryParams {
    /// Defaults for decode (one token): 4 rows per block, 16-byte loads.
    pub fn decode_default() -> TernaryParams {
        TernaryParams {
            warps: 4,
            tokens: 1,
            load_words: 4,
        }
    }

    /// Defaults for prompt batches: 8 tokens per weight read.
    pub fn prompt_default() -> TernaryParams {
        TernaryParams {
            tokens: MAX_TOKENS,
            ..TernaryParams::decode_default()
        }
    }

    fn validate(&self) -> Result<(), CodegenError> {
        let ok = matches!(self.warps, 1 | 2 | 4 | 8)
            && (1..=MAX_TOKENS).contains(&self.tokens)
            && matches!(self.load_words, 1 | 2 | 4);
        if ok {
            Ok(())
        } else {
            Err(CodegenError::Unsupported(format!(
                "CUDA ternary parameters {self:?} (warps 1/2/4/8, tokens 1..={MAX_TOKENS}, \
                 load words 1/2/4)"
            )))
        }
    }
}

/// The linear kernel for one weight shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TernaryKernel {
    /// Inputs per row.
    pub k: usize,
    /// Rows.
    pub m: usize,
    /// Whether the layer multiplies by an output scale (`out_scale` is ignored otherwise).
    pub out_scale: bool,
    /// Tunable values.
    pub params: TernaryParams,
}

impl TernaryKernel {
    /// Activation row length (K rounded up to 64).
    pub fn k_pad(&self) -> usize {
        round_up(self.k, 64)
    }

    /// Grid for `n_tokens` tokens.
    pub fn grid(&self, n_tokens: usize) -> (u32, u32, u32) {
        let p = self.params;
        (
            self.m.div_ceil(p.warps as usize) as u32,
            n_tokens.div_ceil(p.tokens as usize) as u32,
            1,
        )
    }

    /// The CUDA C source.
    pub fn source(&self) -> Result<KernelSource, CodegenError> {
        let p = self.params;
        p.validate()?;
        if self.k == 0 || self.m == 0 || self.k > MAX_K {
            return Err(CodegenError::Shape(format!(
                "CUDA ternary kernel for K = {}, M = {} (K must be 1..={MAX_K})",
                self.k, self.m
            )));
        }
        let l = p.load_words as usize;
        let (vec_ty, parts): (&str, &[&str]) = match l {
            1 => ("unsigned", &["c"]),
            2 => ("uint2", &["c.x", "c.y"]),
            _ => ("uint4", &["c.x", "c.y", "c.z", "c.w"]),
        };
        let k_pad = self.k_pad();
        let name = format!(
            "ternary_{}x{}_w{}_t{}_l{}{}",
            self.k,
            self.m,
            p.warps,
            p.tokens,
            l,
            if self.out_scale { "_s" } else { "" }
        );
        let dots: String = parts
            .iter()
            .enumerate()
            .map(|(j, part)| {
                format!("                acc[t] = bn_ternary_dot16({part}, a[{j}], acc[t]);\n")
            })
            .collect();
        let scaled = if self.out_scale { "v * out_scale" } else { "v" };
        let block = 32 * p.warps;
        let body = format!(
            r#"#define M {m}
#define K_PAD {k_pad}
#define ROW_VECS {row_vecs}
#define WARPS {warps}
#define TT {tt}
extern "C" __global__ void __launch_bounds__({block}) {name}(
    const unsigned* __restrict__ w, const float* __restrict__ row_scale,
    const signed char* __restrict__ q, const float* __restrict__ q_scale,
    float* __restrict__ y, int n_tokens, float out_scale)
{{
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= M) return; // the whole warp leaves together
    const int t0 = blockIdx.y * TT;
    const int nt = min(TT, n_tokens - t0);
    int acc[TT];
#pragma unroll
    for (int t = 0; t < TT; ++t) acc[t] = 0;
    const {vec_ty}* wr = (const {vec_ty}*)(w + (unsigned long long)row * (K_PAD / 16));
    for (int i = lane; i < ROW_VECS; i += 32) {{
        const {vec_ty} c = wr[i];
#pragma unroll
        for (int t = 0; t < TT; ++t) {{
            if (t < nt) {{
                const int4* a = (const int4*)(q + (unsigned long long)(t0 + t) * K_PAD) + i * {l};
{dots}            }}
        }}
    }}
#pragma unroll
    for (int t = 0; t < TT; ++t) {{
        const int d = bn_warp_sum_i(acc[t]);
        if (lane == 0 && t < nt) {{
            const float v = ((float)d / q_scale[t0 + t]) * row_scale[row];
            y[(unsigned long long)(t0 + t) * M + row] = {scaled};
        }}
    }}
}}
#undef M
#undef K_PAD
#undef ROW_VECS
#undef WARPS
#undef TT
"#,
            m = self.m,
            row_vecs = k_pad / 16 / l,
            warps = p.warps,
            tt = p.tokens,
        );
        Ok(KernelSource::new(name, body, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unpacks element `e` of a packed row the way the prelude's dot reads it.
    fn unpack(words: &[u32], e: usize) -> u8 {
        let (w, i) = (e / 16, e % 16);
        let (j, b) = (i / 4, i % 4);
        ((words[w] >> (8 * b + 2 * j)) & 3) as u8
    }

    #[test]
    fn packing_round_trips_and_pads_with_zero_weights() {
        let (k, m) = (80, 3);
        let codes: Vec<u8> = (0..k * m).map(|i| ((i * 7 + i / 5) % 3) as u8).collect();
        let p = pack_codes(&codes, k, m, vec![1.0; m]);
        assert_eq!(p.k_pad, 128);
        assert_eq!(p.words.len(), m * 8);
        for r in 0..m {
            let row = &p.words[r * 8..(r + 1) * 8];
            for e in 0..k {
                assert_eq!(unpack(row, e), codes[r * k + e], "row {r} element {e}");
            }
            for e in k..128 {
                assert_eq!(unpack(row, e), 1);
            }
        }
    }

    #[test]
    fn sources_name_their_shape_and_refuse_bad_parameters() {
        let k = TernaryKernel {
            k: 2560,
            m: 6912,
            out_scale: true,
            params: TernaryParams::decode_default(),
        };
        let src = k.source().unwrap();
        assert_eq!(src.name, "ternary_2560x6912_w4_t1_l4_s");
        assert!(src.code.contains("#define K_PAD 2560"));
        assert_eq!(src.block, 128);
        assert_eq!(k.grid(3), (1728, 3, 1));
        let bad = TernaryKernel {
            params: TernaryParams {
                warps: 3,
                ..TernaryParams::decode_default()
            },
            ..k
        };
        assert!(bad.source().is_err());
        let too_wide = TernaryKernel { k: MAX_K + 64, ..k };
        assert!(too_wide.source().is_err());
    }
}
