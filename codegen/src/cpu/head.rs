//! Output-head generator: `logits[r] = Σ_k table[r, k]·x[k]` over F16 or BF16 table rows.
//!
//! The generated function has the C signature
//!
//! ```text
//! void head(const u8 *table, const f32 *x, f32 *out, usize r_begin, usize r_end)
//! ```
//!
//! and writes `out[r − r_begin]` for the rows `r_begin..r_end` of a `[rows × K]` table stored
//! row-major (`2·K` bytes per row). K is a compile-time constant, a multiple of 8.
//!
//! The result is bit-identical to the reference `dot_f32`: per row, eight f32 partial sums (two
//! f32x4 accumulators, lanes `l` and `l + 4`) take `sum += table·x` as a separate multiply and
//! add (Cranelift never fuses them), then combine as
//! `((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)) + 0`. `rows` table rows share each load
//! of `x`, which keeps `2·rows` independent accumulators in flight.
//!
//! Cranelift 0.135 has no f16 → f32 vector conversion on x86-64 (no `vcvtph2ps`), so halves are
//! widened with integer instructions: sign-extend to i32, shift the exponent and mantissa into
//! f32 position and keep the sign, which gives `value · 2^-112` exactly. The general F16 variant
//! then multiplies by 2^112 (exact for normal and subnormal halves) and selects infinities and
//! NaNs on top. A table known at load time to hold no infinity or NaN gets a shorter sequence:
//! no rebias at all, because the kernel is handed `x · 2^112` instead of `x` (exact while
//! `|x| < 2^16`), and `(value · 2^-112) · (x · 2^112)` rounds exactly like `value · x`: it is the
//! same real number. Its halves are not widened one vector at a time either: the 16-byte load
//! is read as four i32 lanes of two halves, and an arithmetic right shift by 3 (after a left
//! shift by 16 for the low halves) plus one mask puts each half's bits in f32 position — five
//! integer operations per eight halves instead of seven — giving the even elements in one
//! vector and the odd ones in the other. `HeadKernel::run` hands the kernel each block of eight
//! activations as `[x0 x2 x4 x6 x1 x3 x5 x7]`, so each accumulator lane still holds one of the
//! eight reference partial sums, and the final combination picks them in the reference's order.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use bitnetc_ir::DType;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, Function, InstBuilder, MemFlagsData, Signature,
    UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use super::isa::{CpuVendor, IsaLevel, Target, TargetInfo};
use super::jit::{compile_to_code, JitFunction};
use crate::CodegenError;

/// How table elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeadFormat {
    /// IEEE half precision; `finite` when the table is known to hold no infinity or NaN.
    F16 {
        /// No element is ±inf or NaN (the shorter conversion is exact).
        finite: bool,
    },
    /// bfloat16 (the upper half of an f32).
    BF16,
    /// Plain f32.
    F32,
    /// Int8 codes with one f32 scale per `group` elements: a row is `K` i8 codes followed by
    /// `K/group` f32 scales, element `e` being `scale[e / group] · code[e]`. Q8_0 (group 32)
    /// and Q6_K (group 16) tables are repacked into it ([`repack_scaled_i8`]) with the scale
    /// computed exactly as the dequantizer computes it, so the products are the dequantized
    /// elements times f32 activations: the form the CUDA head reads (the CPU backends multiply
    /// those tables by quantized activations, [`HeadFormat::Q8_0`] and [`HeadFormat::Q6K`]).
    ScaledI8 {
        /// Elements per scale: 16 or 32.
        group: usize,
    },
    /// A Q6_K table multiplied the way llama.cpp multiplies it: by the activations quantized to
    /// Q8_K, in integers within each 256-element super-block (the reference's
    /// `q6k_output_head`). A row is one 228-byte block per super-block: the 6-bit codes `q`
    /// (0..=63, element `e` is `d·scale·(q − 32)`) as 128 bytes of nibbles and 64 of bit pairs,
    /// 16 i16 sub-block scales and `d` as f32, so a row is one sequential read;
    /// [`repack_q6k`] builds it at load.
    Q6K,
    /// A Q8_0 table multiplied the way llama.cpp multiplies it: by the activations quantized to
    /// Q8_0, in integers within each 32-element block (the reference's `q8_0_output_head`). A
    /// row is a run of groups of four blocks (the last group may hold fewer), each group the
    /// blocks' i8 codes then their scales `d` as f32, so a row is one sequential read;
    /// [`repack_q8_0`] builds it at load.
    Q8_0,
}

impl HeadFormat {
    /// The format of a table of type `dtype` (`None` if the generator does not take it);
    /// `finite` says whether its elements are all finite.
    pub fn of(dtype: DType, finite: bool) -> Option<HeadFormat> {
        match dtype {
            DType::F16 => Some(HeadFormat::F16 { finite }),
            DType::BF16 => Some(HeadFormat::BF16),
            DType::F32 => Some(HeadFormat::F32),
            DType::Q8_0 => Some(HeadFormat::Q8_0),
            DType::Q6K => Some(HeadFormat::Q6K),
            _ => None,
        }
    }

    /// Short name (`f16`, `f16_finite`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            HeadFormat::F16 { finite: true } => "f16_finite",
            HeadFormat::F16 { finite: false } => "f16",
            HeadFormat::BF16 => "bf16",
            HeadFormat::F32 => "f32",
            HeadFormat::ScaledI8 { group: 32 } => "i8x32",
            HeadFormat::ScaledI8 { .. } => "i8x16",
            HeadFormat::Q6K => "q6k_q8k",
            HeadFormat::Q8_0 => "q8_0_q8_0",
        }
    }

    /// The format named `name` ([`HeadFormat::name`]).
    pub fn from_name(name: &str) -> Option<HeadFormat> {
        Some(match name {
            "f16_finite" => HeadFormat::F16 { finite: true },
            "f16" => HeadFormat::F16 { finite: false },
            "bf16" => HeadFormat::BF16,
            "f32" => HeadFormat::F32,
            "i8x32" => HeadFormat::ScaledI8 { group: 32 },
            "i8x16" => HeadFormat::ScaledI8 { group: 16 },
            "q6k_q8k" => HeadFormat::Q6K,
            "q8_0_q8_0" => HeadFormat::Q8_0,
            _ => return None,
        })
    }

    /// Bytes of one row of `k` elements.
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            HeadFormat::F16 { .. } | HeadFormat::BF16 => 2 * k,
            HeadFormat::F32 => 4 * k,
            HeadFormat::ScaledI8 { group } => k + 4 * (k / group),
            HeadFormat::Q8_0 => k + 4 * (k / 32),
            HeadFormat::Q6K => Q6K_BLOCK * (k / 256),
        }
    }

    /// Bytes per element of the code part of a row.
    fn elem_bytes(self) -> usize {
        match self {
            HeadFormat::ScaledI8 { .. } | HeadFormat::Q6K | HeadFormat::Q8_0 => 1,
            HeadFormat::F32 => 4,
            _ => 2,
        }
    }
}

/// Repacks a Q8_0 or Q6_K table (`rows × k`) into [`HeadFormat::ScaledI8`] rows. Each scale is
/// computed as the reference dequantizer computes it (`d` for Q8_0, `d · scale_j` for Q6_K, in
/// f32), so `scale · code` is the reference's element bit for bit. A block with a non-finite `d`
/// is an error (the reference refuses it too).
pub fn repack_scaled_i8(
    dtype: DType,
    bytes: &[u8],
    k: usize,
    rows: usize,
) -> Result<Vec<u8>, CodegenError> {
    let (group, block_elems, block_bytes) = match dtype {
        DType::Q8_0 => (32, 32, 34),
        DType::Q6K => (16, 256, 210),
        other => {
            return Err(CodegenError::Unsupported(format!(
                "no scaled-int8 repacking for {other}"
            )))
        }
    };
    let fmt = HeadFormat::ScaledI8 { group };
    let src_row = k / block_elems * block_bytes;
    if !k.is_multiple_of(block_elems) || bytes.len() != src_row * rows {
        return Err(CodegenError::Shape(format!(
            "{dtype} table of {} bytes for {rows} rows of {k}",
            bytes.len()
        )));
    }
    let dst_row = fmt.row_bytes(k);
    let mut out = vec![0u8; dst_row * rows];
    let f16 = |b: &[u8]| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    for (r, (src, dst)) in bytes
        .chunks_exact(src_row)
        .zip(out.chunks_exact_mut(dst_row))
        .enumerate()
    {
        let (codes, scales) = dst.split_at_mut(k);
        let mut put_scale = |j: usize, v: f32| {
            scales[4 * j..4 * j + 4].copy_from_slice(&v.to_le_bytes());
        };
        for (bi, blk) in src.chunks_exact(block_bytes).enumerate() {
            let e0 = bi * block_elems;
            let d = if dtype == DType::Q8_0 {
                f16(&blk[0..2])
            } else {
                f16(&blk[208..210])
            };
            if !d.is_finite() {
                return Err(CodegenError::Weight {
                    name: format!("{dtype} head table"),
                    problem: format!("row {r}: block {bi} has a non-finite scale {d}"),
                });
            }
            if dtype == DType::Q8_0 {
                for (c, &q) in codes[e0..e0 + 32].iter_mut().zip(&blk[2..34]) {
                    *c = q;
                }
                put_scale(e0 / 32, d);
                continue;
            }
            for e in 0..256 {
                let (h, rr) = (e / 128, e % 128);
                let (l, quarter) = (rr % 32, rr / 32);
                let ql = blk[64 * h + l + 32 * (quarter % 2)];
                let qh = blk[128 + 32 * h + l];
                let low = if quarter < 2 { ql & 0xF } else { ql >> 4 };
                let high = (qh >> (2 * quarter)) & 3;
                codes[e0 + e] = ((i32::from(low | (high << 4)) - 32) as i8) as u8;
            }
            for j in 0..16 {
                put_scale(e0 / 16 + j, d * f32::from(blk[192 + j] as i8));
            }
        }
    }
    Ok(out)
}

/// Bytes after each super-block's codes in a [`HeadFormat::Q6K`] row: 16 i16 scales and `d`
/// (f32).
const Q6K_META: usize = 36;
/// Bytes of the 6-bit codes of a [`HeadFormat::Q6K`] super-block: four quads of sub-blocks
/// (quad `Q` holds sub-blocks `4Q..4Q+4`), 48 bytes each. A quad's 64 codes are taken as four
/// vectors of 16 ([`q6k_slot`]: byte `4l + t` of vector `v` is element `4v + t` of sub-block
/// `4Q + l`), so one `vpdpbusd` lane sums four products of one sub-block. Vectors 0, 1 and 2
/// are stored whole in bits 0..5 of the quad's three 16-byte words; vector 3's codes are split
/// over their bits 6..7 (bits 0..1 in word 0, 2..3 in word 1, 4..5 in word 2).
const Q6K_CODES: usize = 192;
/// Bytes of one [`HeadFormat::Q6K`] super-block: codes, 16 i16 scales, `d`.
const Q6K_BLOCK: usize = Q6K_CODES + Q6K_META;

/// Blocks per group of a [`HeadFormat::Q8_0`] row.
const Q8_0_GROUP: usize = 4;

/// Repacks a Q8_0 table (`rows × k`, `k` a multiple of 32) into [`HeadFormat::Q8_0`] rows:
/// per group of up to four blocks, their 32-byte codes, then their f16 scales as f32. A block
/// with a non-finite scale is an error (the reference refuses it too).
pub fn repack_q8_0(bytes: &[u8], k: usize, rows: usize) -> Result<Vec<u8>, CodegenError> {
    use bitnetc_models::quant::q8_0::{BLOCK_BYTES, BLOCK_ELEMS};
    let src_row = k / BLOCK_ELEMS * BLOCK_BYTES;
    if !k.is_multiple_of(BLOCK_ELEMS) || bytes.len() != src_row * rows {
        return Err(CodegenError::Shape(format!(
            "Q8_0 table of {} bytes for {rows} rows of {k}",
            bytes.len()
        )));
    }
    let dst_row = HeadFormat::Q8_0.row_bytes(k);
    let mut out = vec![0u8; dst_row * rows];
    for (r, (src, dst)) in bytes
        .chunks_exact(src_row)
        .zip(out.chunks_exact_mut(dst_row))
        .enumerate()
    {
        let group_src = Q8_0_GROUP * BLOCK_BYTES;
        let group_dst = Q8_0_GROUP * (BLOCK_ELEMS + 4);
        for (g, (gs, gd)) in src
            .chunks(group_src)
            .zip(dst.chunks_mut(group_dst))
            .enumerate()
        {
            let n = gs.len() / BLOCK_BYTES;
            let (codes, scales) = gd.split_at_mut(n * BLOCK_ELEMS);
            for (i, blk) in gs.chunks_exact(BLOCK_BYTES).enumerate() {
                let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                if !d.is_finite() {
                    return Err(CodegenError::Weight {
                        name: "q8_0 head table".into(),
                        problem: format!(
                            "row {r}: block {} has a non-finite scale {d}",
                            Q8_0_GROUP * g + i
                        ),
                    });
                }
                codes[BLOCK_ELEMS * i..BLOCK_ELEMS * (i + 1)].copy_from_slice(&blk[2..]);
                scales[4 * i..4 * i + 4].copy_from_slice(&d.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// Where element `e` (0..256) of a super-block sits in the [`HeadFormat::Q6K`] kernel's order:
/// (quad, vector within the quad, byte within the vector). The activations are laid out in
/// the same order ([`q6k_activations`]), so element `e` meets its activation in the same byte.
fn q6k_slot(e: usize) -> (usize, usize, usize) {
    let (sub, i) = (e / 16, e % 16);
    (sub / 4, i / 4, 4 * (sub % 4) + i % 4)
}

/// Repacks a Q6_K table (`rows × k`, `k` a multiple of 256) into [`HeadFormat::Q6K`] rows. A
/// block with a non-finite `d` is an error (the reference refuses it too).
pub fn repack_q6k(bytes: &[u8], k: usize, rows: usize) -> Result<Vec<u8>, CodegenError> {
    use bitnetc_models::quant::q6_k::{block_parts, BLOCK_BYTES, BLOCK_ELEMS};
    let src_row = k / BLOCK_ELEMS * BLOCK_BYTES;
    if !k.is_multiple_of(BLOCK_ELEMS) || bytes.len() != src_row * rows {
        return Err(CodegenError::Shape(format!(
            "Q6_K table of {} bytes for {rows} rows of {k}",
            bytes.len()
        )));
    }
    let dst_row = HeadFormat::Q6K.row_bytes(k);
    let mut out = vec![0u8; dst_row * rows];
    for (r, (src, dst)) in bytes
        .chunks_exact(src_row)
        .zip(out.chunks_exact_mut(dst_row))
        .enumerate()
    {
        for (bi, (blk, out_blk)) in src
            .chunks_exact(BLOCK_BYTES)
            .zip(dst.chunks_exact_mut(Q6K_BLOCK))
            .enumerate()
        {
            let (codes, m) = out_blk.split_at_mut(Q6K_CODES);
            let (q, scales, d) = block_parts(blk.try_into().expect("exact chunk"));
            if !d.is_finite() {
                return Err(CodegenError::Weight {
                    name: "q6_k head table".into(),
                    problem: format!("row {r}: block {bi} has a non-finite scale {d}"),
                });
            }
            codes.fill(0);
            for (e, &code) in q.iter().enumerate() {
                let (quad, v, byte) = q6k_slot(e);
                let word = &mut codes[48 * quad..48 * quad + 48];
                if v < 3 {
                    word[16 * v + byte] |= code;
                } else {
                    for (w, chunk) in word.chunks_exact_mut(16).enumerate() {
                        chunk[byte] |= ((code >> (2 * w)) & 3) << 6;
                    }
                }
            }
            for (j, &sc) in scales.iter().enumerate() {
                m[2 * j..2 * j + 2].copy_from_slice(&i16::from(sc).to_le_bytes());
            }
            m[32..36].copy_from_slice(&d.to_le_bytes());
        }
    }
    Ok(out)
}

/// Whether every element of an F16 table (little-endian bytes) is finite.
pub fn f16_table_is_finite(bytes: &[u8]) -> bool {
    const EXP: u64 = 0x7c00_7c00_7c00_7c00;
    const LOW: u64 = 0x0001_0001_0001_0001;
    const HIGH: u64 = 0x8000_8000_8000_8000;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    // A half is ±inf or NaN when its exponent bits are all set: lane `(h & EXP) ^ EXP` is then
    // zero. The classic has-a-zero-lane test can only err by flagging extra lanes above a real
    // zero lane, so "no lane flagged" is exact.
    let any_special = words.fold(0u64, |acc, w| {
        let y = (u64::from_le_bytes(w.try_into().expect("8 bytes")) & EXP) ^ EXP;
        acc | (y.wrapping_sub(LOW) & !y & HIGH)
    });
    any_special == 0
        && tail
            .chunks_exact(2)
            .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 != 0x7c00)
}

/// A head problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadShape {
    /// Elements per row (a multiple of 8).
    pub k: usize,
    /// Rows (vocabulary size).
    pub rows: usize,
    /// Element format.
    pub format: HeadFormat,
}

/// Code-shape parameters of the head kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeadParams {
    /// Table rows sharing each load of `x`, 1..=8: the rows a call is given are cut into
    /// this many equal parts, read side by side.
    pub rows: usize,
    /// 8-element steps per loop iteration (reduced to the largest divisor of K/8 not above
    /// it), 1..=16.
    pub unroll: usize,
}

impl Default for HeadParams {
    fn default() -> HeadParams {
        HeadParams { rows: 4, unroll: 2 }
    }
}

impl HeadParams {
    /// The default for a table format on this host's cores ([`HeadParams::default_on`] with
    /// [`CpuVendor::host`]).
    pub fn default_for(format: HeadFormat) -> HeadParams {
        HeadParams::default_on(format, CpuVendor::host())
    }

    /// The default for a table format on `vendor`'s cores.
    ///
    /// Float tables (F16, BF16, F32): a block's rows come from separate parts of the call's
    /// range, so `rows` is also the number of sequential streams each thread reads.
    /// - On an Intel Xeon (AVX-512 VNNI, 2 threads, 2B4T head, `codegen/examples/head_l2.rs`
    ///   alternating with a read probe) one stream per thread reads far below the probe, and
    ///   each stream more helps up to 8: finite F16 rows 1 took 57–77 ms, rows 4 × unroll 2
    ///   33–37 ms, rows 8 × unroll 2 27–29 ms (85–88 % of the probe; rows 8 × unroll 1 28–31,
    ///   rows 12 29–30, rows 16 31–33), BF16 rows 4 29 ms and rows 8 26 ms (96 %). Rows 8's 16
    ///   accumulators spill the 16 xmm registers Cranelift allocates, at no cost with the table
    ///   in L2 (14 GB/s per thread for rows 4 and 8 alike). Rows 8 × unroll 2 is the default on
    ///   every core except AMD's.
    /// - On a Zen 4 EPYC, rows 1 reads as fast as rows 4 or a little faster (finite F16 rows 1 ×
    ///   unroll 4: 22.9–27.8 ms, rows 4 × unroll 2: 26–28 ms; unroll 4 over 2 at rows 1 in five
    ///   alternating runs, each faster, and 2B4T decoding 18.4 against 18.1 tokens/s), and one
    ///   row keeps Cranelift's two accumulators in registers: AMD cores take rows 1, with
    ///   unroll 4 for finite F16 tables and 2 for the others.
    ///
    /// The scaled-int8 form (Q8_0 and Q6_K tables in f32, which the CUDA head reads; the CPU
    /// backends take those tables as [`HeadFormat::Q8_0`] and [`HeadFormat::Q6K`]) is
    /// compute-bound and keeps 4 rows sharing each load of `x` (40 % of the probe against 34 %).
    /// The integer Q6_K and Q8_0 kernels read a block's rows side by side too, each its own
    /// stream: on the Xeon the 2B4T Q6_K head took 20.1–20.6 ms with one row, 12.0–12.4 ms with
    /// 4 and 11.3 ms with 6 or 8 (92–94 % of the probe; in L2, 24–25 GB/s per thread for all),
    /// a Q8_0 one 35.8–37.1 ms, 16.6–17.0 and 13.9–14.4 ms with 1, 4 and 8 rows; so rows 8
    /// except on AMD cores, which keep the one row they were measured with (several were not
    /// measured there).
    pub fn default_on(format: HeadFormat, vendor: CpuVendor) -> HeadParams {
        let amd = vendor == CpuVendor::Amd;
        match format {
            HeadFormat::ScaledI8 { .. } => HeadParams::default(),
            HeadFormat::Q6K | HeadFormat::Q8_0 if amd => HeadParams { rows: 1, unroll: 1 },
            HeadFormat::Q6K | HeadFormat::Q8_0 => HeadParams { rows: 8, unroll: 1 },
            HeadFormat::F16 { finite: true } if amd => HeadParams { rows: 1, unroll: 4 },
            HeadFormat::F16 { .. } | HeadFormat::BF16 | HeadFormat::F32 if amd => {
                HeadParams { rows: 1, unroll: 2 }
            }
            HeadFormat::F16 { .. } | HeadFormat::BF16 | HeadFormat::F32 => {
                HeadParams { rows: 8, unroll: 2 }
            }
        }
    }
}

/// What one compiled head kernel is.
#[derive(Clone, Debug)]
pub struct HeadInfo {
    /// Shape.
    pub shape: HeadShape,
    /// Parameters asked for.
    pub params: HeadParams,
    /// Unroll actually used.
    pub unroll: usize,
    /// The target's features.
    pub target: TargetInfo,
    /// Machine code.
    pub code: Vec<u8>,
    /// Cranelift's listing of the lowered machine instructions.
    pub vcode: Option<String>,
    /// Time to build the IR and compile it.
    pub compile_time: Duration,
}

fn check(shape: &HeadShape, p: &HeadParams) -> Result<usize, CodegenError> {
    if shape.k == 0 || !shape.k.is_multiple_of(8) || shape.rows == 0 {
        return Err(CodegenError::Unsupported(format!(
            "head K = {}, rows = {}: K must be a non-zero multiple of 8, rows non-zero",
            shape.k, shape.rows
        )));
    }
    if !(1..=8).contains(&p.rows) || !(1..=16).contains(&p.unroll) {
        return Err(CodegenError::Unsupported(format!(
            "head params {p:?}: rows must be 1..=8, unroll 1..=16"
        )));
    }
    if let HeadFormat::ScaledI8 { group } = shape.format {
        if !matches!(group, 16 | 32) || !shape.k.is_multiple_of(group) {
            return Err(CodegenError::Unsupported(format!(
                "scaled int8 head: group {group} must be 16 or 32 and divide K = {}",
                shape.k
            )));
        }
    }
    if shape.format == HeadFormat::Q6K && !shape.k.is_multiple_of(256) {
        return Err(CodegenError::Unsupported(format!(
            "q6_k head: K = {} must be a multiple of 256",
            shape.k
        )));
    }
    if shape.format == HeadFormat::Q8_0 && !shape.k.is_multiple_of(32) {
        return Err(CodegenError::Unsupported(format!(
            "q8_0 head: K = {} must be a multiple of 32",
            shape.k
        )));
    }
    let steps = shape.k / 8;
    Ok((1..=p.unroll)
        .rev()
        .find(|u| steps.is_multiple_of(*u))
        .unwrap_or(1))
}

/// `Σ` of adjacent lane pairs of the i16 products `a·b`, in i32 lanes: the tree x86-64 lowers
/// to one `pmaddwd`.
fn dot_i16_pairs(b: &mut FunctionBuilder, x: Value, y: Value) -> Value {
    let xl = b.ins().swiden_low(x);
    let yl = b.ins().swiden_low(y);
    let xh = b.ins().swiden_high(x);
    let yh = b.ins().swiden_high(y);
    let lo = b.ins().imul(xl, yl);
    let hi = b.ins().imul(xh, yh);
    b.ins().iadd_pairwise(lo, hi)
}

/// Table and activation loads: in bounds, not necessarily 16-byte aligned, read-only.
const LOAD: MemFlagsData = MemFlagsData::new().with_notrap().with_readonly();
/// Activation loads: as `LOAD`, and free to move, so Cranelift places each one just before the
/// multiply that reads it, where it folds into that instruction as a memory operand.
const X_LOAD: MemFlagsData = LOAD.with_can_move();
/// Output stores: in bounds, 4-byte aligned.
const STORE: MemFlagsData = MemFlagsData::new().with_notrap();

#[derive(Clone, Copy)]
struct Emitter {
    /// Finite F16 rows: whether the even elements come from a second load two bytes before
    /// the odd ones' (see [`Emitter::finite_pair_offset`]). Off for row 0, whose two bytes
    /// before may lie outside the table's memory.
    even_from_offset_load: bool,
    /// Whether `x86_pmaddubsw` is available (SSSE3 on x86-64).
    pmaddubsw: bool,
    /// Whether the u8×i8 dot tree folds into `vpdpbusd` (x86-64 with VNNI).
    vnni: bool,
    k: usize,
    unroll: usize,
    format: HeadFormat,
    ptr: types::Type,
    table: Value,
    x: Value,
    le: MemFlagsData,
}

impl Emitter {
    fn splat_i32(&self, b: &mut FunctionBuilder, v: u32) -> Value {
        let c = b.ins().iconst(types::I32, i64::from(v));
        b.ins().splat(types::I32X4, c)
    }

    /// `v >> n` as 16-bit lanes (x86-64 has no byte shift); the caller masks what crosses
    /// bytes.
    fn shr_bytes(&self, b: &mut FunctionBuilder, v: Value, n: i64) -> Value {
        let w = b.ins().bitcast(types::I16X8, self.le, v);
        let w = b.ins().ushr_imm_u(w, n);
        b.ins().bitcast(types::I8X16, self.le, w)
    }

    /// `acc + Σ` of each four adjacent products `x·c` (`x` signed, `c` unsigned bytes below
    /// 128) in i32 lanes: the tree that folds into `vpdpbusd` with VNNI, and into `sdot` on
    /// aarch64 (both operands sign-widened there: `c` < 128 reads the same).
    fn dot_u8_i8(&self, b: &mut FunctionBuilder, acc: Value, x: Value, c: Value) -> Value {
        let (xl, xh) = (b.ins().swiden_low(x), b.ins().swiden_high(x));
        let (cl, ch) = if self.vnni {
            (b.ins().uwiden_low(c), b.ins().uwiden_high(c))
        } else {
            (b.ins().swiden_low(c), b.ins().swiden_high(c))
        };
        let lo = b.ins().imul(xl, cl);
        let hi = b.ins().imul(xh, ch);
        let lo_l = b.ins().swiden_low(lo);
        let lo_h = b.ins().swiden_high(lo);
        let p_lo = b.ins().iadd_pairwise(lo_l, lo_h);
        let hi_l = b.ins().swiden_low(hi);
        let hi_h = b.ins().swiden_high(hi);
        let p_hi = b.ins().iadd_pairwise(hi_l, hi_h);
        let t = b.ins().iadd_pairwise(p_lo, p_hi);
        b.ins().iadd(t, acc)
    }

    fn as_f32(&self, b: &mut FunctionBuilder, v: Value) -> Value {
        b.ins().bitcast(types::F32X4, self.le, v)
    }

    /// Converts the low or high four elements of the 16-byte vector `h` to f32x4.
    fn widen(&self, b: &mut FunctionBuilder, h: Value, high: bool) -> Value {
        match self.format {
            HeadFormat::ScaledI8 { .. } | HeadFormat::F32 | HeadFormat::Q6K | HeadFormat::Q8_0 => {
                unreachable!("int8 and f32 rows are converted in rows_block")
            }
            HeadFormat::BF16 => {
                let u = if high {
                    b.ins().uwiden_high(h)
                } else {
                    b.ins().uwiden_low(h)
                };
                let bits = b.ins().ishl_imm_u(u, 16);
                self.as_f32(b, bits)
            }
            HeadFormat::F16 { finite: true } => {
                unreachable!("finite f16 rows are converted in pairs by `finite_pair`")
            }
            HeadFormat::F16 { finite: false } => {
                let u = if high {
                    b.ins().uwiden_high(h)
                } else {
                    b.ins().uwiden_low(h)
                };
                let m7fff = self.splat_i32(b, 0x7fff);
                let em = b.ins().band(u, m7fff);
                let em_sh = b.ins().ishl_imm_u(em, 13);
                let f = self.as_f32(b, em_sh);
                let magic = self.magic(b);
                let fin = b.ins().fmul(f, magic);
                let fin_bits = b.ins().bitcast(types::I32X4, self.le, fin);
                let exp_ones = self.splat_i32(b, 0x7f80_0000);
                let special = b.ins().bor(em_sh, exp_ones);
                let lim = self.splat_i32(b, 0x7c00);
                let is_special = b.ins().icmp(IntCC::SignedGreaterThanOrEqual, em, lim);
                let mag = b.ins().bitselect(is_special, special, fin_bits);
                let m8000 = self.splat_i32(b, 0x8000);
                let sign = b.ins().band(u, m8000);
                let sign = b.ins().ishl_imm_u(sign, 16);
                let bits = b.ins().bor(mag, sign);
                self.as_f32(b, bits)
            }
        }
    }

    /// Converts eight finite halves, read as four i32 lanes of two halves each, to
    /// `value · 2^-112` as f32: the even elements (low halves) and the odd ones (high halves).
    /// A half's sign lands on bit 31 and its exponent·mantissa on bits 13..27 after an
    /// arithmetic shift right by 3 from the lane's top; the mask clears the three sign copies
    /// and the other half's bits. Five integer operations per eight halves.
    fn finite_pair(&self, b: &mut FunctionBuilder, h: Value, mask: Value) -> (Value, Value) {
        let low_up = b.ins().ishl_imm_u(h, 16);
        let even = b.ins().sshr_imm_u(low_up, 3);
        let even = b.ins().band(even, mask);
        let odd = b.ins().sshr_imm_u(h, 3);
        let odd = b.ins().band(odd, mask);
        (self.as_f32(b, even), self.as_f32(b, odd))
    }

    /// [`Emitter::finite_pair`] with one shift fewer: `h` holds halves `2j` (low) and `2j + 1`
    /// (high) of lane `j`, and `h_before`, read two bytes earlier, holds half `2j` in the high
    /// part of lane `j`. Both then only need the arithmetic shift and the mask, which keeps
    /// nothing of a lane's low half, so the two bytes `h_before` reads before the halves never
    /// reach the result: two shifts per eight halves instead of three (the 2B4T head read from
    /// memory 1.17× faster on a Zen 4 EPYC, 2 threads, `codegen/examples/head_l2.rs`).
    fn finite_pair_offset(
        &self,
        b: &mut FunctionBuilder,
        h: Value,
        h_before: Value,
        mask: Value,
    ) -> (Value, Value) {
        let even = b.ins().sshr_imm_u(h_before, 3);
        let even = b.ins().band(even, mask);
        let odd = b.ins().sshr_imm_u(h, 3);
        let odd = b.ins().band(odd, mask);
        (self.as_f32(b, even), self.as_f32(b, odd))
    }

    /// The mask `finite_pair` applies.
    fn finite_mask(&self, b: &mut FunctionBuilder) -> Value {
        self.splat_i32(b, 0x8FFF_E000)
    }

    fn magic(&self, b: &mut FunctionBuilder) -> Value {
        // 2^112 as f32: exponent 127 + 112.
        let c = b.ins().f32const(f32::from_bits((127 + 112) << 23));
        b.ins().splat(types::F32X4, c)
    }

    /// Emits the [`HeadFormat::Q6K`] rows `rows` side by side (one loop over super-blocks,
    /// each row its own stream and its own f32 total) and stores row `i`'s logit at
    /// `outs[i]`. `x` points at the Q8_K activations as `HeadKernel::run` lays them out: `K` i8
    /// values, `K/16` i16 block sums, `K/256` f32 scales. Per super-block the integer sum is
    /// `Σ_j scale_j·Σ_e q_e·x_e − 32·Σ_j scale_j·bsum_j` (products of the unsigned codes, then
    /// the `q − 32` offset through the block sums), exact in i32; each logit accumulates
    /// `(d·dx)·f32(isum)` block by block, as the reference does.
    fn q6k_rows(&self, b: &mut FunctionBuilder, rows: &[Value], outs: &[Value]) {
        let nb = self.k / 256;
        let n = rows.len();
        let row_bytes = HeadFormat::Q6K.row_bytes(self.k) as i64;
        let bases: Vec<Value> = rows
            .iter()
            .map(|&row| {
                let off = b.ins().imul_imm_u(row, row_bytes);
                b.ins().iadd(self.table, off)
            })
            .collect();
        let zero = b.ins().f32const(0.0);
        // Top-tested loop over super-blocks (see `rows_block` for why the test is at the top).
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(header, self.ptr); // super-block index
        for _ in 0..n {
            b.append_block_param(header, types::F32);
            b.append_block_param(exit, types::F32);
        }
        let b0 = b.ins().iconst(self.ptr, 0);
        let mut args: Vec<BlockArg> = vec![b0.into()];
        args.extend(std::iter::repeat_n(BlockArg::from(zero), n));
        b.ins().jump(header, &args);
        b.switch_to_block(header);
        let bi = b.block_params(header)[0];
        let totals: Vec<BlockArg> = b.block_params(header)[1..]
            .iter()
            .map(|&v| v.into())
            .collect();
        let done = b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, bi, nb as i64);
        b.ins().brif(done, exit, &totals, body, &[]);

        b.switch_to_block(body);
        b.seal_block(body);
        let mut next: Vec<BlockArg> = Vec::with_capacity(n + 1);
        let bi2 = b.ins().iadd_imm_u(bi, 1);
        next.push(bi2.into());
        for (i, &base) in bases.iter().enumerate() {
            let total = b.block_params(header)[1 + i];
            let term = self.q6k_super_block(b, base, bi);
            next.push(b.ins().fadd(total, term).into());
        }
        b.ins().jump(header, &next);
        b.seal_block(header);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let res = b.block_params(exit).to_vec();
        for (&r, &o) in res.iter().zip(outs) {
            b.ins().store(STORE, r, o, 0);
        }
    }

    /// `(d·dx)·f32(isum)` of super-block `bi` of the [`HeadFormat::Q6K`] row at `base` (see
    /// [`Emitter::q6k_rows`]).
    fn q6k_super_block(&self, b: &mut FunctionBuilder, base: Value, bi: Value) -> Value {
        let e0 = b.ins().imul_imm_u(bi, 256);
        let xp = b.ins().iadd(self.x, e0);
        let bo = b.ins().imul_imm_u(bi, Q6K_BLOCK as i64);
        let cp = b.ins().iadd(base, bo);
        let meta = b.ins().iadd_imm_u(cp, Q6K_CODES as i64);
        let scale_vecs: Vec<Value> = (0..2)
            .map(|h| b.ins().load(types::I16X8, X_LOAD, meta, 16 * h))
            .collect();
        let splat_i8 = |b: &mut FunctionBuilder, v: u8| {
            let c = b.func.dfg.constants.insert(vec![v; 16].into());
            b.ins().vconst(types::I8X16, c)
        };
        // Per quad: its four code vectors (see `Q6K_CODES`), their dot products with the
        // activations in the same order (lane l of the i32 result: sub-block 4Q + l), times
        // the sub-block scales, summed over the quads into the lanes of `acc`.
        let mut acc: Option<Value> = None;
        for quad in 0..4 {
            let words: Vec<Value> = (0..3)
                .map(|w| {
                    b.ins()
                        .load(types::I8X16, X_LOAD, cp, (48 * quad + 16 * w) as i32)
                })
                .collect();
            let mut codes: Vec<Value> = words
                .iter()
                .map(|&w| {
                    let m = splat_i8(b, 0x3F);
                    b.ins().band(w, m)
                })
                .collect();
            // Vector 3 from the top bit pairs: ((w0·· >> 2 | w1··) >> 2 | w2··) >> 2, where w··
            // keeps bits 6..7 of each byte. The shifts are 16-bit, but bits 0..1 of every byte
            // are clear before each one, so nothing crosses into the byte below.
            let mut v3: Option<Value> = None;
            for &w in &words {
                let m = splat_i8(b, 0xC0);
                let top = b.ins().band(w, m);
                v3 = Some(match v3 {
                    None => top,
                    Some(prev) => {
                        let sh = self.shr_bytes(b, prev, 2);
                        b.ins().bor(sh, top)
                    }
                });
            }
            let v3 = v3.expect("three words");
            codes.push(self.shr_bytes(b, v3, 2));
            let xv: Vec<Value> = (0..4)
                .map(|v| {
                    b.ins()
                        .load(types::I8X16, X_LOAD, xp, (64 * quad + 16 * v) as i32)
                })
                .collect();
            let h = quad / 2;
            let term = if self.pmaddubsw && !self.vnni {
                // Pair sums in i16 (at most 2·63·128 each, so two vectors' sum still fits),
                // then `pmaddwd` by the scales, each repeated over its sub-block's two lanes.
                let p: Vec<Value> = (0..4)
                    .map(|v| b.ins().x86_pmaddubsw(xv[v], codes[v]))
                    .collect();
                let p01 = b.ins().iadd(p[0], p[1]);
                let p23 = b.ins().iadd(p[2], p[3]);
                let first = 4 * (quad % 2) as u8;
                let mask: Vec<u8> = (0..16u8).map(|i| 2 * (first + i / 4) + i % 2).collect();
                let scv = b.ins().bitcast(types::I8X16, self.le, scale_vecs[h]);
                let m = b.func.dfg.immediates.push(mask.into());
                let pairs = b.ins().shuffle(scv, scv, m);
                let sc = b.ins().bitcast(types::I16X8, self.le, pairs);
                let d01 = dot_i16_pairs(b, p01, sc);
                let d23 = dot_i16_pairs(b, p23, sc);
                b.ins().iadd(d01, d23)
            } else {
                // The u8×i8 dot tree (one `vpdpbusd` per vector with VNNI, `sdot` on aarch64:
                // the codes are below 64, so signed or unsigned makes no difference), then the
                // lanes times their sub-block's scale.
                let zero = b.ins().iconst(types::I32, 0);
                let mut s = b.ins().splat(types::I32X4, zero);
                for v in 0..4 {
                    s = self.dot_u8_i8(b, s, xv[v], codes[v]);
                }
                let sc = if quad % 2 == 0 {
                    b.ins().swiden_low(scale_vecs[h])
                } else {
                    b.ins().swiden_high(scale_vecs[h])
                };
                b.ins().imul(s, sc)
            };
            acc = Some(match acc {
                None => term,
                Some(a) => b.ins().iadd(a, term),
            });
        }
        let products = acc.expect("four quads");
        // The `q − 32` offset: 32·Σ_j scale_j·bsum_j.
        let bso = b.ins().imul_imm_u(bi, 32);
        let bsp = b.ins().iadd(self.x, bso);
        let mut corr = None;
        for (h, &sc) in scale_vecs.iter().enumerate() {
            let bs = b
                .ins()
                .load(types::I16X8, X_LOAD, bsp, self.k as i32 + 16 * h as i32);
            let d = dot_i16_pairs(b, sc, bs);
            corr = Some(match corr {
                None => d,
                Some(c) => b.ins().iadd(c, d),
            });
        }
        let corr = b.ins().ishl_imm_u(corr.expect("two halves"), 5);
        let acc = b.ins().isub(products, corr);
        let lanes: Vec<Value> = (0..4).map(|l| b.ins().extractlane(acc, l as u8)).collect();
        let s01 = b.ins().iadd(lanes[0], lanes[1]);
        let s23 = b.ins().iadd(lanes[2], lanes[3]);
        let isum = b.ins().iadd(s01, s23);
        let isum = b.ins().fcvt_from_sint(types::F32, isum);
        let d = b.ins().load(types::F32, X_LOAD, meta, 32);
        let dxo = b.ins().ishl_imm_u(bi, 2);
        let dxp = b.ins().iadd(self.x, dxo);
        let dx = b
            .ins()
            .load(types::F32, X_LOAD, dxp, (self.k + 2 * (self.k / 16)) as i32);
        let ddx = b.ins().fmul(d, dx);
        b.ins().fmul(ddx, isum)
    }

    /// The exact integer `Σ_e w_e·x_e` of one Q8_0 block as an i32 scalar (the lanes of
    /// [`Emitter::q8_0_block_lanes`] added).
    fn q8_0_block_sum(
        &self,
        b: &mut FunctionBuilder,
        codes: Value,
        off: i32,
        xp: Value,
        xoff: i32,
    ) -> Value {
        let v = self.q8_0_block_lanes(b, codes, off, xp, xoff);
        // Lanes 2, 3 onto 0, 1, then lane 1 onto 0 (shuffles with immediate masks).
        let lanes = |b: &mut FunctionBuilder, v: Value, pick: [u8; 4]| {
            let bytes = b.ins().bitcast(types::I8X16, self.le, v);
            let mask: Vec<u8> = pick
                .iter()
                .flat_map(|&l| (0..4).map(move |i| 4 * l + i))
                .collect();
            let m = b.func.dfg.immediates.push(mask.into());
            let sh = b.ins().shuffle(bytes, bytes, m);
            b.ins().bitcast(types::I32X4, self.le, sh)
        };
        let hi = lanes(b, v, [2, 3, 2, 3]);
        let v = b.ins().iadd(v, hi);
        let odd = lanes(b, v, [1, 1, 1, 1]);
        let v = b.ins().iadd(v, odd);
        b.ins().extractlane(v, 0)
    }

    /// One Q8_0 block's products summed into the four i32 lanes of a vector (the block's sum
    /// is the sum of the lanes): the 32 codes at `codes + off` sign-extended to i16, times the
    /// block's i16 activations at `xp + xoff`, by `pmaddwd` on x86-64 (`|w·x| ≤ 128·127`: pair
    /// sums fit, no saturation).
    fn q8_0_block_lanes(
        &self,
        b: &mut FunctionBuilder,
        codes: Value,
        off: i32,
        xp: Value,
        xoff: i32,
    ) -> Value {
        // (Plain 16-byte loads widened in registers: Cranelift treats a `sload8x8` as a
        // side effect whatever its flags, so it would load all of a group's codes at the top
        // of the loop body and spill them.)
        let parts: Vec<Value> = (0..4)
            .map(|j| {
                let v = b
                    .ins()
                    .load(types::I8X16, X_LOAD, codes, off + 16 * (j / 2));
                let w = if j % 2 == 0 {
                    b.ins().swiden_low(v)
                } else {
                    b.ins().swiden_high(v)
                };
                let xv = b.ins().load(types::I16X8, X_LOAD, xp, xoff + 16 * j);
                dot_i16_pairs(b, w, xv)
            })
            .collect();
        let s01 = b.ins().iadd(parts[0], parts[1]);
        let s23 = b.ins().iadd(parts[2], parts[3]);
        b.ins().iadd(s01, s23)
    }

    /// `total + (d·dx)·f32(isum)` for block `blk` (an index value or constant offset given as
    /// byte offsets): `d` at `dp + doff`, `dx` at `dxp + dxoff`.
    fn q8_0_term(
        &self,
        b: &mut FunctionBuilder,
        total: Value,
        isum: Value,
        (dp, doff): (Value, i32),
        (dxp, dxoff): (Value, i32),
    ) -> Value {
        let isum = b.ins().fcvt_from_sint(types::F32, isum);
        let d = b.ins().load(types::F32, X_LOAD, dp, doff);
        let dx = b.ins().load(types::F32, X_LOAD, dxp, dxoff);
        let ddx = b.ins().fmul(d, dx);
        let term = b.ins().fmul(ddx, isum);
        b.ins().fadd(total, term)
    }

    /// Emits the [`HeadFormat::Q8_0`] rows `rows` side by side (one loop over groups of four
    /// blocks, each row its own stream and its own f32 total) and stores row `i`'s logit at
    /// `outs[i]`. `x` points at the Q8_0 activations as `HeadKernel::prepare` lays them out:
    /// `K` i16 values, then `K/32` f32 scales. Full groups of four blocks run in a loop tested
    /// at the top (see `rows_block`), the last partial group straight after it; each logit
    /// accumulates `(d·dx)·f32(isum)` block by block, as the reference does.
    fn q8_0_rows(&self, b: &mut FunctionBuilder, rows: &[Value], outs: &[Value]) {
        let nb = self.k / 32;
        let n = rows.len();
        let (full, tail) = (nb / Q8_0_GROUP, nb % Q8_0_GROUP);
        let group_bytes = (Q8_0_GROUP * 36) as i64;
        let row_bytes = HeadFormat::Q8_0.row_bytes(self.k) as i64;
        let bases: Vec<Value> = rows
            .iter()
            .map(|&row| {
                let off = b.ins().imul_imm_u(row, row_bytes);
                b.ins().iadd(self.table, off)
            })
            .collect();
        let dx_base = 2 * self.k as i32; // byte offset of the activation scales
        let zero = b.ins().f32const(0.0);
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(header, self.ptr); // group index
        for _ in 0..n {
            b.append_block_param(header, types::F32);
            b.append_block_param(exit, types::F32);
        }
        let g0 = b.ins().iconst(self.ptr, 0);
        let mut args: Vec<BlockArg> = vec![g0.into()];
        args.extend(std::iter::repeat_n(BlockArg::from(zero), n));
        b.ins().jump(header, &args);
        b.switch_to_block(header);
        let gi = b.block_params(header)[0];
        let totals: Vec<BlockArg> = b.block_params(header)[1..]
            .iter()
            .map(|&v| v.into())
            .collect();
        let done = b
            .ins()
            .icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, gi, full as i64);
        b.ins().brif(done, exit, &totals, body, &[]);

        b.switch_to_block(body);
        b.seal_block(body);
        let go = b.ins().imul_imm_u(gi, group_bytes);
        // Activations of the group: 4·32 i16 values (256 bytes) and 4 scales (16 bytes).
        let xo = b.ins().imul_imm_u(gi, 256);
        let xp = b.ins().iadd(self.x, xo);
        let dxo = b.ins().imul_imm_u(gi, 16);
        let dxp = b.ins().iadd(self.x, dxo);
        let gi2 = b.ins().iadd_imm_u(gi, 1);
        let mut next: Vec<BlockArg> = vec![gi2.into()];
        for (i, &base) in bases.iter().enumerate() {
            let cp = b.ins().iadd(base, go);
            // The four blocks' sums as the lanes of one vector (pairwise adds: `phaddd`), then
            // their terms `(d·dx)·f32(isum)` four at a time; the adds into the total stay one
            // block at a time, in order.
            let v: Vec<Value> = (0..Q8_0_GROUP as i32)
                .map(|j| self.q8_0_block_lanes(b, cp, 32 * j, xp, 64 * j))
                .collect();
            let h01 = b.ins().iadd_pairwise(v[0], v[1]);
            let h23 = b.ins().iadd_pairwise(v[2], v[3]);
            let sums = b.ins().iadd_pairwise(h01, h23);
            let sums = b.ins().fcvt_from_sint(types::F32X4, sums);
            let d = b.ins().load(types::F32X4, X_LOAD, cp, 128);
            let dx = b.ins().load(types::F32X4, X_LOAD, dxp, dx_base);
            let ddx = b.ins().fmul(d, dx);
            let terms = b.ins().fmul(ddx, sums);
            let mut t = b.block_params(header)[1 + i];
            for j in 0..Q8_0_GROUP as u8 {
                let term = b.ins().extractlane(terms, j);
                t = b.ins().fadd(t, term);
            }
            next.push(t.into());
        }
        b.ins().jump(header, &next);
        b.seal_block(header);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let ends = b.block_params(exit).to_vec();
        for ((&base, &out_ptr), mut t) in bases.iter().zip(outs).zip(ends) {
            if tail > 0 {
                let cp = b.ins().iadd_imm_u(base, full as i64 * group_bytes);
                let first = (full * Q8_0_GROUP) as i32;
                for i in 0..tail as i32 {
                    let isum = self.q8_0_block_sum(b, cp, 32 * i, self.x, 64 * (first + i));
                    let doff = 32 * tail as i32 + 4 * i;
                    let dxoff = dx_base + 4 * (first + i);
                    t = self.q8_0_term(b, t, isum, (cp, doff), (self.x, dxoff));
                }
            }
            b.ins().store(STORE, t, out_ptr, 0);
        }
    }

    /// Emits the block of `n` table rows `row + j·stride` (`j < n`; index values) and stores
    /// row `j`'s result at `out_ptr + 4·j·stride`.
    fn rows_block(
        &self,
        b: &mut FunctionBuilder,
        row: Value,
        stride: Value,
        n: usize,
        out_ptr: Value,
    ) {
        let row_bytes = self.format.row_bytes(self.k) as i64;
        let eb = self.format.elem_bytes();
        let base0 = {
            let off = b.ins().imul_imm_u(row, row_bytes);
            b.ins().iadd(self.table, off)
        };
        let stride_bytes = b.ins().imul_imm_u(stride, row_bytes);
        let out_stride = b.ins().ishl_imm_u(stride, 2);
        let mut bases = vec![base0];
        let mut outs = vec![out_ptr];
        for j in 1..n {
            let prev_base = bases[j - 1];
            let prev_out = outs[j - 1];
            bases.push(b.ins().iadd(prev_base, stride_bytes));
            outs.push(b.ins().iadd(prev_out, out_stride));
        }
        let zero = b.ins().f32const(0.0);
        let zero_v = b.ins().splat(types::F32X4, zero);
        // A loop tested at the top: `header` holds the offset and the accumulators and branches
        // to `exit` or `body`; `body` jumps back. Each accumulator computed in the body then has
        // one use (the jump's argument) rather than two (a bottom test's back edge and exit),
        // so Cranelift's use counting sees the multiplies and their activation loads as used
        // once and folds each load into its multiply as a memory operand. (The exit is the
        // branch's first target on purpose: Cranelift's elaborator visits the header's
        // dominator-tree children in reverse, and must reach the body while it still knows the
        // body is inside the loop, or it computes the row bases and the mask in every
        // iteration instead of before the loop.) K is a positive multiple of 8·unroll, so the
        // first test always enters the body.
        let header = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(header, self.ptr); // table byte offset (`eb` per element)
        for _ in 0..2 * n {
            b.append_block_param(header, types::F32X4);
            b.append_block_param(exit, types::F32X4);
        }
        let o0 = b.ins().iconst(self.ptr, 0);
        let mut args: Vec<BlockArg> = vec![o0.into()];
        args.extend(std::iter::repeat_n(BlockArg::from(zero_v), 2 * n));
        b.ins().jump(header, &args);

        b.switch_to_block(header);
        let params = b.block_params(header).to_vec();
        let done = b.ins().icmp_imm_u(
            IntCC::UnsignedGreaterThanOrEqual,
            params[0],
            (eb * self.k) as i64,
        );
        let out_args: Vec<BlockArg> = params[1..].iter().map(|&a| BlockArg::from(a)).collect();
        b.ins().brif(done, exit, &out_args, body, &[]);

        b.switch_to_block(body);
        b.seal_block(body);
        let ot = params[0];
        let mut accs = params[1..].to_vec();
        let mask = (self.format == HeadFormat::F16 { finite: true }).then(|| self.finite_mask(b));
        // x offset = (4 / eb) · table offset.
        let ox = match eb {
            4 => ot,
            2 => b.ins().ishl_imm_u(ot, 1),
            _ => b.ins().ishl_imm_u(ot, 2),
        };
        let xp = b.ins().iadd(self.x, ox);
        let tps: Vec<Value> = bases.iter().map(|&p| b.ins().iadd(p, ot)).collect();
        // Scaled int8: the splatted scale of each (row, group) the unrolled steps touch. At the
        // top of an iteration `ot` is a multiple of 8·unroll, so when that is a multiple of the
        // group or divides it, step u's group is `ot / group + 8u / group`: one scale load per
        // group instead of one per step.
        let mut scales: HashMap<(usize, usize), Value> = HashMap::new();
        let shared_groups = match self.format {
            HeadFormat::ScaledI8 { group } => {
                (8 * self.unroll).is_multiple_of(group) || group.is_multiple_of(8 * self.unroll)
            }
            _ => false,
        };
        for u in 0..self.unroll {
            let xa = b.ins().load(types::F32X4, X_LOAD, xp, (32 * u) as i32);
            let xb = b.ins().load(types::F32X4, X_LOAD, xp, (32 * u + 16) as i32);
            for (i, &tp) in tps.iter().enumerate() {
                let (lo, hi) = match self.format {
                    HeadFormat::ScaledI8 { group } => {
                        // Codes sign-extended to i16x8, then i32x4 halves, then f32, times the
                        // scale of their group: the byte offset `ot + 8u` is the element index.
                        let h = b.ins().sload8x8(LOAD, tp, (8 * u) as i32);
                        let scale = |b: &mut FunctionBuilder| {
                            let e = b.ins().iadd_imm_u(ot, (8 * u) as i64);
                            let gi = b.ins().ushr_imm_u(e, group.trailing_zeros() as i64);
                            let so = b.ins().ishl_imm_u(gi, 2);
                            let sp = b.ins().iadd(bases[i], so);
                            let sc = b.ins().load(types::F32, LOAD, sp, self.k as i32);
                            b.ins().splat(types::F32X4, sc)
                        };
                        let sc = if shared_groups {
                            *scales.entry((i, 8 * u / group)).or_insert_with(|| scale(b))
                        } else {
                            scale(b)
                        };
                        let l = b.ins().swiden_low(h);
                        let l = b.ins().fcvt_from_sint(types::F32X4, l);
                        let hh = b.ins().swiden_high(h);
                        let hh = b.ins().fcvt_from_sint(types::F32X4, hh);
                        (b.ins().fmul(sc, l), b.ins().fmul(sc, hh))
                    }
                    HeadFormat::F32 => (
                        b.ins().load(types::F32X4, LOAD, tp, (32 * u) as i32),
                        b.ins().load(types::F32X4, LOAD, tp, (32 * u + 16) as i32),
                    ),
                    HeadFormat::F16 { finite: true } => {
                        // Even elements pair with `xa`, odd ones with `xb`: `run` hands the
                        // kernel each block of eight activations as [x0 x2 x4 x6 x1 x3 x5 x7].
                        let h = b.ins().load(types::I32X4, LOAD, tp, (16 * u) as i32);
                        let mask = mask.expect("made above for finite F16 rows");
                        if self.even_from_offset_load {
                            let before = b.ins().load(types::I32X4, LOAD, tp, (16 * u) as i32 - 2);
                            self.finite_pair_offset(b, h, before, mask)
                        } else {
                            self.finite_pair(b, h, mask)
                        }
                    }
                    _ => {
                        let h = b.ins().load(types::I16X8, LOAD, tp, (16 * u) as i32);
                        (self.widen(b, h, false), self.widen(b, h, true))
                    }
                };
                let pa = b.ins().fmul(lo, xa);
                let pb = b.ins().fmul(hi, xb);
                accs[2 * i] = b.ins().fadd(accs[2 * i], pa);
                accs[2 * i + 1] = b.ins().fadd(accs[2 * i + 1], pb);
            }
        }
        let ot2 = b.ins().iadd_imm_u(ot, (8 * eb * self.unroll) as i64);
        let mut back: Vec<BlockArg> = vec![ot2.into()];
        back.extend(accs.iter().map(|&a| BlockArg::from(a)));
        b.ins().jump(header, &back);
        b.seal_block(header);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let res = b.block_params(exit).to_vec();
        for i in 0..n {
            // Partial sums s0..s7 by element position mod 8, combined in the reference's order
            // ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)).
            let (p04, p15, p26, p37) = if self.format == (HeadFormat::F16 { finite: true }) {
                // Accumulators hold [s0 s2 s4 s6] and [s1 s3 s5 s7].
                let e: Vec<Value> = (0..4)
                    .map(|j| b.ins().extractlane(res[2 * i], j as u8))
                    .collect();
                let o: Vec<Value> = (0..4)
                    .map(|j| b.ins().extractlane(res[2 * i + 1], j as u8))
                    .collect();
                (
                    b.ins().fadd(e[0], e[2]),
                    b.ins().fadd(o[0], o[2]),
                    b.ins().fadd(e[1], e[3]),
                    b.ins().fadd(o[1], o[3]),
                )
            } else {
                // Accumulators hold [s0 s1 s2 s3] and [s4 s5 s6 s7].
                let s = b.ins().fadd(res[2 * i], res[2 * i + 1]);
                let l: Vec<Value> = (0..4).map(|j| b.ins().extractlane(s, j as u8)).collect();
                (l[0], l[1], l[2], l[3])
            };
            let a = b.ins().fadd(p04, p15);
            let c = b.ins().fadd(p26, p37);
            let v = b.ins().fadd(a, c);
            let v = b.ins().fadd(v, zero);
            b.ins().store(STORE, v, outs[i], 0);
        }
    }
}

/// Builds the IR of the head kernel.
pub fn build_function(
    shape: &HeadShape,
    params: &HeadParams,
    target: &Target,
) -> Result<(Function, usize), CodegenError> {
    let unroll = check(shape, params)?;
    let isa = &target.isa;
    let ptr = isa.pointer_type();
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..5 {
        sig.params.push(AbiParam::new(ptr));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(0, 1), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (table, x, out, rb, re) = (p[0], p[1], p[2], p[3], p[4]);
    let finite_f16 = shape.format == HeadFormat::F16 { finite: true };
    let em = Emitter {
        even_from_offset_load: finite_f16,
        pmaddubsw: target.info.is_x86_64() && target.info.has("has_ssse3"),
        vnni: target.info.is_x86_64() && target.info.vnni().is_some(),
        k: shape.k,
        unroll,
        format: shape.format,
        ptr,
        table,
        x,
        le: MemFlagsData::new().with_endianness(Endianness::Little),
    };
    let n = params.rows;

    let zero = b.ins().iconst(ptr, 0);
    // Finite F16: row 0, when asked for, first and on its own with the plain conversion (the
    // offset loads of the others read two bytes before their row).
    let start = if finite_f16 {
        let first = b.create_block();
        let rest = b.create_block();
        b.append_block_param(rest, ptr);
        let at_zero = b.ins().icmp_imm_u(IntCC::Equal, rb, 0);
        let nonempty = b.ins().icmp(IntCC::UnsignedGreaterThan, re, rb);
        let row0 = b.ins().band(at_zero, nonempty);
        b.ins().brif(row0, first, &[], rest, &[rb.into()]);
        b.switch_to_block(first);
        b.seal_block(first);
        let plain = Emitter {
            even_from_offset_load: false,
            ..em
        };
        plain.rows_block(&mut b, zero, zero, 1, out);
        let one = b.ins().iconst(ptr, 1);
        b.ins().jump(rest, &[one.into()]);
        b.switch_to_block(rest);
        b.seal_block(rest);
        b.block_params(rest)[0]
    } else {
        rb
    };
    // The rows are cut into n equal parts of `per` rows, read side by side: block i holds rows
    // start + i, start + i + per, ... (each part one sequential stream, each row its own
    // accumulators), then the rows left over one at a time. (Adjacent rows in one block would
    // restart every stream after each row, which costs more than the shared activation loads
    // save.)
    let has = b.ins().icmp(IntCC::UnsignedGreaterThan, re, start);
    let diff = b.ins().isub(re, start);
    let count = b.ins().select(has, diff, zero);
    let per = b.ins().udiv_imm_u(count, n as i64);
    let parts_end = b.ins().iadd(start, per);
    let full_len = b.ins().imul_imm_u(per, n as i64);
    let full_end = b.ins().iadd(start, full_len);

    let emit_loop = |b: &mut FunctionBuilder, start: Value, end: Value, n: usize, stride: Value| {
        let head = b.create_block();
        let body = b.create_block();
        let after = b.create_block();
        b.append_block_param(head, ptr);
        b.ins().jump(head, &[start.into()]);
        b.switch_to_block(head);
        let r = b.block_params(head)[0];
        let go = b.ins().icmp(IntCC::UnsignedLessThan, r, end);
        b.ins().brif(go, body, &[], after, &[]);
        b.switch_to_block(body);
        b.seal_block(body);
        let rel = b.ins().isub(r, rb);
        let off = b.ins().imul_imm_u(rel, 4);
        let dst = b.ins().iadd(out, off);
        if matches!(em.format, HeadFormat::Q6K | HeadFormat::Q8_0) {
            // Row i of the block: r + i·stride, its logit 4·i·stride bytes further on.
            let stride_bytes = b.ins().imul_imm_u(stride, 4);
            let (mut rows, mut outs) = (vec![r], vec![dst]);
            for i in 1..n {
                rows.push(b.ins().iadd(rows[i - 1], stride));
                outs.push(b.ins().iadd(outs[i - 1], stride_bytes));
            }
            if em.format == HeadFormat::Q6K {
                em.q6k_rows(b, &rows, &outs);
            } else {
                em.q8_0_rows(b, &rows, &outs);
            }
        } else {
            em.rows_block(b, r, stride, n, dst);
        }
        let r2 = b.ins().iadd_imm_u(r, 1);
        b.ins().jump(head, &[r2.into()]);
        b.seal_block(head);
        b.switch_to_block(after);
        b.seal_block(after);
    };
    emit_loop(&mut b, start, parts_end, n, per);
    if n > 1 {
        let end = b.ins().select(has, re, start);
        emit_loop(&mut b, full_end, end, 1, zero);
    }
    b.ins().return_(&[]);
    b.finalize(isa.frontend_config());
    Ok((func, unroll))
}

/// Compiles the head kernel for any target without running it.
pub fn compile_only(
    shape: &HeadShape,
    params: &HeadParams,
    target: &Target,
) -> Result<HeadInfo, CodegenError> {
    let t0 = Instant::now();
    let (func, unroll) = build_function(shape, params, target)?;
    let (code, vcode) = compile_to_code(func, target)?;
    Ok(HeadInfo {
        shape: *shape,
        params: *params,
        unroll,
        target: target.info.clone(),
        code,
        vcode,
        compile_time: t0.elapsed(),
    })
}

/// `x` quantized to Q8_K in the layout the [`HeadFormat::Q6K`] kernel reads: `K` i8 values
/// (each super-block's in the order of [`q6k_slot`]),
/// `K/16` i16 block sums, `K/256` f32 scales (little-endian), padded to whole u32 words.
fn q6k_activations(x: &[f32]) -> Result<Vec<u32>, CodegenError> {
    let q = bitnetc_models::quant::q8_k::quantize_row(x)
        .map_err(|e| CodegenError::Shape(e.to_string()))?;
    let mut bytes: Vec<u8> = Vec::with_capacity(x.len() + x.len() / 8 + x.len() / 64 + 4);
    // Each super-block's values in the kernel's order (`q6k_slot`).
    bytes.resize(q.qs.len(), 0);
    for (blk_in, blk_out) in q.qs.chunks_exact(256).zip(bytes.chunks_exact_mut(256)) {
        for (e, &v) in blk_in.iter().enumerate() {
            let (quad, vec, byte) = q6k_slot(e);
            blk_out[64 * quad + 16 * vec + byte] = v as u8;
        }
    }
    bytes.extend(q.bsums.iter().flat_map(|v| v.to_le_bytes()));
    bytes.extend(q.d.iter().flat_map(|v| v.to_le_bytes()));
    Ok(bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect())
}

/// `x` quantized to Q8_0 in the layout the [`HeadFormat::Q8_0`] kernel reads: `K` i16 values,
/// then `K/32` f32 scales (little-endian), as u32 words.
fn q8_0_activations(x: &[f32]) -> Result<Vec<u32>, CodegenError> {
    let q = bitnetc_models::quant::q8_0::quantize_activations(x)
        .map_err(|e| CodegenError::Shape(e.to_string()))?;
    let mut words: Vec<u32> =
        q.qs.chunks_exact(2)
            .map(|p| u32::from(i16::from(p[0]) as u16) | (u32::from(i16::from(p[1]) as u16) << 16))
            .collect();
    words.extend(q.d.iter().map(|d| d.to_bits()));
    Ok(words)
}

/// 2^112: the exponent rebias from half to single precision.
const REBIAS: f32 = f32::from_bits((127 + 112) << 23);
/// `x · 2^112` is finite (exact) for `|x|` below this.
const X_LIMIT: f32 = 65536.0;

/// The kernel's results computed in Rust, in the same order (the finite-F16 kernel's path for
/// activations too large to prescale).
fn plain_rows(s: &HeadShape, table: &[u8], x: &[f32], out: &mut [f32], rows: Range<usize>) {
    for (o, r) in out.iter_mut().zip(rows) {
        let row = &table[2 * s.k * r..2 * s.k * (r + 1)];
        let mut acc = [0.0f32; 8];
        for (h, xs) in row.chunks_exact(16).zip(x.chunks_exact(8)) {
            for l in 0..8 {
                let v = half::f16::from_bits(u16::from_le_bytes([h[2 * l], h[2 * l + 1]]));
                acc[l] += v.to_f32() * xs[l];
            }
        }
        *o =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + 0.0;
    }
}

type HeadFn = unsafe extern "C" fn(*const u8, *const f32, *mut f32, usize, usize);

/// A JIT-compiled output-head kernel for one shape on this host.
pub struct HeadKernel {
    func: HeadFn,
    info: HeadInfo,
    _code: JitFunction,
}

impl std::fmt::Debug for HeadKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadKernel")
            .field("shape", &self.info.shape)
            .field("params", &self.info.params)
            .finish()
    }
}

impl HeadKernel {
    /// Generates and JIT-compiles the kernel for `shape` at `level` on this host.
    pub fn compile(
        shape: &HeadShape,
        params: &HeadParams,
        level: IsaLevel,
    ) -> Result<HeadKernel, CodegenError> {
        HeadKernel::compile_for(shape, params, &Target::host(level)?)
    }

    /// Generates and JIT-compiles the kernel for a host `target`.
    pub fn compile_for(
        shape: &HeadShape,
        params: &HeadParams,
        target: &Target,
    ) -> Result<HeadKernel, CodegenError> {
        let t0 = Instant::now();
        let (func, unroll) = build_function(shape, params, target)?;
        let jf = JitFunction::compile(func, target, "bitnetc_head")?;
        // SAFETY: built with exactly this signature in the platform's C calling convention.
        let func: HeadFn = unsafe { std::mem::transmute::<*const u8, HeadFn>(jf.ptr()) };
        Ok(HeadKernel {
            func,
            info: HeadInfo {
                shape: *shape,
                params: *params,
                unroll,
                target: target.info.clone(),
                code: jf.code.clone(),
                vcode: jf.vcode.clone(),
                compile_time: t0.elapsed(),
            },
            _code: jf,
        })
    }

    /// What was compiled.
    pub fn info(&self) -> &HeadInfo {
        &self.info
    }

    /// Logits of rows `rows` for activations `x` (`K` values) into `out`
    /// (`rows.len()` values). `table` is the whole `[rows × K]` table. (To run several row
    /// ranges for the same `x`, [`HeadKernel::prepare`] it once and call
    /// [`HeadKernel::run_prepared`].)
    pub fn run(
        &self,
        table: &[u8],
        x: &[f32],
        out: &mut [f32],
        rows: Range<usize>,
    ) -> Result<(), CodegenError> {
        let input = self.prepare(x)?;
        self.run_prepared(table, &input, out, rows)
    }

    /// `x` (`K` values) in the form this kernel reads: as given; times 2^112 and deinterleaved
    /// for finite F16 tables; quantized to Q8_K for Q6_K tables and to Q8_0 for Q8_0 tables.
    pub fn prepare(&self, x: &[f32]) -> Result<HeadInput, CodegenError> {
        let s = &self.info.shape;
        if x.len() != s.k {
            return Err(CodegenError::Shape(format!(
                "head K = {}, x has {} values",
                s.k,
                x.len()
            )));
        }
        let data = match s.format {
            HeadFormat::Q6K => InputData::Quantized(q6k_activations(x)?),
            HeadFormat::Q8_0 => InputData::Quantized(q8_0_activations(x)?),
            // `x · 2^112` would overflow: the plain order in Rust, same results.
            HeadFormat::F16 { finite: true } if !x.iter().all(|v| v.abs() < X_LIMIT) => {
                InputData::Large(x.to_vec())
            }
            // Times 2^112, and each block of eight as [x0 x2 x4 x6 x1 x3 x5 x7] (the kernel
            // converts even and odd halves separately).
            HeadFormat::F16 { finite: true } => InputData::F32(
                x.chunks_exact(8)
                    .flat_map(|c| [0, 2, 4, 6, 1, 3, 5, 7].map(|j| c[j] * REBIAS))
                    .collect(),
            ),
            _ => InputData::F32(x.to_vec()),
        };
        Ok(HeadInput {
            k: s.k,
            format: s.format,
            data,
        })
    }

    /// [`HeadKernel::run`] on activations [`HeadKernel::prepare`]d by a kernel of the same K and
    /// table format.
    pub fn run_prepared(
        &self,
        table: &[u8],
        input: &HeadInput,
        out: &mut [f32],
        rows: Range<usize>,
    ) -> Result<(), CodegenError> {
        let s = &self.info.shape;
        if table.len() != s.format.row_bytes(s.k) * s.rows {
            return Err(CodegenError::Shape(format!(
                "head table has {} bytes, expected {} ({} rows of {} {} elements)",
                table.len(),
                s.format.row_bytes(s.k) * s.rows,
                s.rows,
                s.k,
                s.format.name()
            )));
        }
        if input.k != s.k || input.format != s.format {
            return Err(CodegenError::Shape(format!(
                "head input prepared for K = {} {}, the kernel is K = {} {}",
                input.k,
                input.format.name(),
                s.k,
                s.format.name()
            )));
        }
        if rows.start > rows.end || rows.end > s.rows || out.len() != rows.len() {
            return Err(CodegenError::Shape(format!(
                "head rows {rows:?} of {} into {} outputs",
                s.rows,
                out.len()
            )));
        }
        let x: *const f32 = match &input.data {
            InputData::F32(v) => v.as_ptr(),
            InputData::Quantized(v) => v.as_ptr().cast(),
            InputData::Large(x) => {
                plain_rows(s, table, x, out, rows);
                return Ok(());
            }
        };
        // SAFETY: checked above: the table holds every row, the input is what this kernel reads
        // for K (K floats; or K i8 values, K/16 i16 sums and K/256 f32 scales for Q6_K; or K
        // i16 values and K/32 f32 scales for Q8_0), `out` holds the rows.
        unsafe { (self.func)(table.as_ptr(), x, out.as_mut_ptr(), rows.start, rows.end) };
        Ok(())
    }
}

/// Activations prepared for a head kernel ([`HeadKernel::prepare`]).
#[derive(Clone, Debug)]
pub struct HeadInput {
    k: usize,
    format: HeadFormat,
    data: InputData,
}

#[derive(Clone, Debug)]
enum InputData {
    /// What the kernel reads, f32.
    F32(Vec<f32>),
    /// Quantized activations as words: Q8_K (Q6_K tables) or Q8_0 (Q8_0 tables).
    Quantized(Vec<u32>),
    /// Activations too large to prescale for a finite-F16 kernel: computed in Rust.
    Large(Vec<f32>),
}

#[cfg(test)]
mod tests {
    use super::{f16_table_is_finite, HeadFormat, HeadParams};
    use crate::cpu::CpuVendor;

    #[test]
    fn heads_read_one_stream_per_thread_only_on_amd_cores() {
        let floats = [
            HeadFormat::F16 { finite: true },
            HeadFormat::F16 { finite: false },
            HeadFormat::BF16,
            HeadFormat::F32,
        ];
        for format in floats {
            for vendor in [CpuVendor::Intel, CpuVendor::Other] {
                let p = HeadParams::default_on(format, vendor);
                assert_eq!((p.rows, p.unroll), (8, 2), "{format:?} on {vendor:?}");
            }
            let amd = HeadParams::default_on(format, CpuVendor::Amd);
            let unroll = if format == (HeadFormat::F16 { finite: true }) {
                4
            } else {
                2
            };
            assert_eq!((amd.rows, amd.unroll), (1, unroll), "{format:?} on AMD");
            assert_eq!(
                HeadParams::default_for(format),
                HeadParams::default_on(format, CpuVendor::host())
            );
        }
        for vendor in [CpuVendor::Amd, CpuVendor::Intel, CpuVendor::Other] {
            let rows = if vendor == CpuVendor::Amd { 1 } else { 8 };
            for format in [HeadFormat::Q6K, HeadFormat::Q8_0] {
                let p = HeadParams::default_on(format, vendor);
                assert_eq!((p.rows, p.unroll), (rows, 1), "{format:?} on {vendor:?}");
            }
        }
    }

    #[test]
    fn finite_scan_sees_every_special_half_in_every_lane() {
        let finite: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00).collect();
        let bytes: Vec<u8> = finite.iter().flat_map(|h| h.to_le_bytes()).collect();
        assert!(f16_table_is_finite(&bytes));
        for special in [0x7c00u16, 0xfc00, 0x7c01, 0xfe00, 0x7fff, 0xffff] {
            // Lanes 0..4 of a word, and the odd tail half.
            for pos in 0..5 {
                let mut halves = [0x3c00u16; 9];
                halves[if pos == 4 { 8 } else { 4 + pos }] = special;
                let b: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
                assert!(!f16_table_is_finite(&b), "{special:#x} at {pos}");
            }
        }
    }
}
