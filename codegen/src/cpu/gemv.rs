//! Decode GEMV generator: `acc[m] = Σ_k code[m,k]·q[k]` for one token, in Cranelift IR.
//!
//! The generated function has the C signature
//!
//! ```text
//! void gemv(const u8 *w, const i8 *xq, i32 *out, usize g_begin, usize g_end)
//! ```
//!
//! and computes the rows of groups `g_begin..g_end` of a [`RepackedMatrix`] (`w` points at its
//! first byte), reading the [`ExpandedActivations`] `xq` (4·K bytes) and writing
//! `out[(g − g_begin)·R + r]` for every row of those groups that is below M (the padding rows of
//! a partial last group are never written). K and M are compile-time constants.
//!
//! With [`GemvParams::tokens`] = T > 1 the same function is a token-blocked GEMM for prompts:
//! `xq` points at T expanded rows `4·K` bytes apart (an [`ExpandedBatch`]) and token t's results
//! go `t·M` values after token 0's, so each weight load and code mask serves T dot products.
//!
//! Structure: the full groups of the range are split into `streams` equal, far-apart runs;
//! each outer iteration takes one group from each run (so `streams` independent memory streams
//! are in flight), runs over K with `unroll` 16-column chunks per inner iteration, keeping one
//! i32x4 accumulator per 4 rows. Left-over full groups are done in blocks of `streams/2`,
//! `streams/4`, ..., 1 adjacent groups read side by side, then the partial last group (if the
//! range reaches it) with lane-by-lane stores.
//!
//! The u8×i8 4-way dot product is emitted as one of the [`DotForm`]s; on x86-64 with VNNI the
//! widening tree folds into one `vpdpbusd`, without it `pmaddubsw` + `pmaddwd` is used (for the
//! Rows16Cols4 layout the `pmaddubsw` results of the unrolled chunks are summed in i16 first, one
//! `pmaddwd` per field per iteration instead of one per chunk: 1.1× on the 2B4T decode GEMVs and
//! 1.4× on prompts on an AVX2 EPYC); on aarch64
//! the tree folds into `sdot` (FEAT_DotProd) or `usdot` (FEAT_I8MM).

use std::ops::Range;
use std::time::{Duration, Instant};

use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, Function, InstBuilder, MemFlagsData, Signature,
    UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use super::isa::{CpuVendor, IsaLevel, Target, TargetInfo};
use super::jit::{compile_to_code, listing_uses, JitFunction};
use super::repack::{ExpandedActivations, ExpandedBatch, Layout, Pack, RepackedMatrix};
use crate::CodegenError;

/// How the 4-way u8×i8 dot-accumulate is written in the IR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DotForm {
    /// The widening tree `iadd(iadd_pairwise(iadd_pairwise(swiden(imul(swiden(q), uwiden(c))))…),
    /// acc)`; folds into `vpdpbusd` on x86-64 with AVX-VNNI or AVX-512 VNNI. Exact anywhere.
    MixedTree,
    /// `x86_pmaddubsw(q, c)` then `pmaddwd` by ones (`iadd_pairwise` of the i16 halves), then
    /// `iadd`: x86-64 with SSSE3. Exact because `|2·q·c| ≤ 512` cannot saturate i16.
    Pmaddubsw,
    /// The tree with both operands sign-widened (codes 0..2 are the same as i8); folds into
    /// `sdot` on aarch64 with FEAT_DotProd.
    SignedTree,
    /// The tree with the codes zero-widened as the first product operand; folds into `usdot` on
    /// aarch64 with FEAT_I8MM.
    UnsignedSignedTree,
}

impl DotForm {
    /// The best form for a target.
    pub fn for_target(info: &TargetInfo) -> DotForm {
        if info.is_x86_64() {
            if info.vnni().is_some() {
                DotForm::MixedTree
            } else if info.has("has_ssse3") {
                DotForm::Pmaddubsw
            } else {
                DotForm::MixedTree
            }
        } else if info.is_aarch64() {
            if info.has("has_i8mm") && !info.has("has_dotprod") {
                DotForm::UnsignedSignedTree
            } else {
                DotForm::SignedTree
            }
        } else {
            DotForm::MixedTree
        }
    }
}

/// Code-shape parameters of the GEMV kernel (the tuner's knobs on the code side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemvParams {
    /// Independent row groups (memory streams) per outer iteration, 1..=16.
    pub streams: usize,
    /// 16-column chunks per inner-loop iteration (reduced to the largest divisor of K/16 not
    /// above it), 1..=32.
    pub unroll: usize,
    /// Dot-product form; `None` picks [`DotForm::for_target`].
    pub dot: Option<DotForm>,
    /// Tokens per call, 1..=8: with more than one, every weight load and code mask is shared by
    /// that many activation rows (prompt GEMM). See [`ExpandedBatch`] for the input layout.
    pub tokens: usize,
}

impl Default for GemvParams {
    fn default() -> GemvParams {
        GemvParams {
            streams: 8,
            unroll: 2,
            dot: None,
            tokens: 1,
        }
    }
}

impl GemvParams {
    /// The one-token GEMV default for the target with this ISA tag ([`TargetInfo::tag`]):
    /// 8 streams where the 4-way dot product is one instruction (`vpdpbusd` with VNNI, `sdot` on
    /// aarch64's 32 vector registers), 4 on x86-64 without VNNI, whose `pmaddubsw` + `pmaddwd`
    /// sequence keeps more temporaries live: there 8 streams spill the 16 xmm registers
    /// (measured on an AVX2 EPYC, 2 threads, at the 2B4T shapes: 4 streams 1.05–1.11× faster),
    /// and there 4 chunks per iteration rather than 2, so that each `pmaddwd` + `paddd` widening
    /// serves 4 `pmaddubsw` instead of 2 (same machine, `gemv_ab`, three alternating runs of the
    /// four 2B4T shapes from memory: median 1.06×, 10 of 12 comparisons at or above 1.0×).
    pub fn decode_default_for_tag(isa_tag: &str) -> GemvParams {
        let spills = !isa_tag.starts_with("neon") && !isa_tag.ends_with("vnni");
        GemvParams {
            streams: if spills { 4 } else { 8 },
            unroll: if spills { 4 } else { 2 },
            ..GemvParams::default()
        }
    }

    /// [`GemvParams::decode_default_for_tag`] of a target.
    pub fn decode_default_for(info: &TargetInfo) -> GemvParams {
        GemvParams::decode_default_for_tag(&info.tag())
    }

    /// The prompt kernel default for the target with this ISA tag, on this host's cores
    /// ([`GemvParams::prompt_default_on`] with [`CpuVendor::host`]).
    pub fn prompt_default_for_tag(isa_tag: &str) -> GemvParams {
        GemvParams::prompt_default_on(isa_tag, CpuVendor::host())
    }

    /// The prompt kernel default for the target with this ISA tag on `vendor`'s cores:
    /// - x86-64 without VNNI: 8 tokens per weight read with 4 chunks unrolled (the `pmaddubsw`
    ///   form sums 4 chunks in i16 before widening; measured on an AVX2 EPYC, 2 threads, pp128
    ///   of the 2B4T model: 1.13× over 4 tokens × 2 chunks);
    /// - x86-64 with VNNI on Intel: 8 tokens, one stream, two chunks per iteration. Its 32
    ///   accumulators spill the 16 xmm registers Cranelift allocates, but each weight load and
    ///   mask then serves 8 tokens, and these cores absorb the spill traffic (Xeon with AVX-512
    ///   VNNI, 2 threads, `gemm_sweep` at the four 2B4T shapes: 1.45–1.75× over 2 tokens × 1
    ///   chunk, ahead of 4 × 2, 6 × 2, 8 × 1, 8 × 4 and 8 tokens in 2 streams);
    /// - x86-64 with VNNI elsewhere: 2 tokens, one stream, one chunk per iteration: its 8
    ///   accumulators, 4 masked code vectors and 2 activation rows fit the 16 xmm registers,
    ///   where 4 tokens' 16 accumulators are reloaded and stored around every `vpdpbusd`
    ///   (AVX-512 VNNI Zen 4, 2 threads: `gemm_sweep` 1.05–1.10× at the large 2B4T shapes,
    ///   pp128 of the 2B4T model 1.2× over 4 tokens × 2 chunks);
    /// - elsewhere (aarch64, 32 vector registers) [`GemvParams::prompt_default`]`(4)`.
    pub fn prompt_default_on(isa_tag: &str, vendor: CpuVendor) -> GemvParams {
        let x86 = isa_tag.starts_with("sse") || isa_tag.starts_with("avx");
        match (x86, isa_tag.ends_with("vnni")) {
            (true, false) => GemvParams {
                unroll: 4,
                ..GemvParams::prompt_default(8)
            },
            (true, true) if vendor == CpuVendor::Intel => GemvParams {
                streams: 1,
                unroll: 2,
                ..GemvParams::prompt_default(8)
            },
            (true, true) => GemvParams {
                streams: 1,
                unroll: 1,
                ..GemvParams::prompt_default(2)
            },
            (false, _) => GemvParams::prompt_default(4),
        }
    }

    /// [`GemvParams::prompt_default_for_tag`] of a target.
    pub fn prompt_default_for(info: &TargetInfo) -> GemvParams {
        GemvParams::prompt_default_for_tag(&info.tag())
    }

    /// The default parameters of the token-blocked prompt kernel (`tokens` rows per call):
    /// fewer streams, so that the `streams · tokens · R/4` accumulators stay near the register
    /// file.
    pub fn prompt_default(tokens: usize) -> GemvParams {
        GemvParams {
            streams: if tokens >= 4 { 1 } else { 2 },
            unroll: 2,
            dot: None,
            tokens,
        }
    }
}

/// A GEMV problem: shape and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemvShape {
    /// Inputs per row (a multiple of 16).
    pub k: usize,
    /// Rows.
    pub m: usize,
    /// Weight layout.
    pub layout: Layout,
}

impl GemvShape {
    /// The shape of a repacked matrix.
    pub fn of(w: &RepackedMatrix) -> GemvShape {
        GemvShape {
            k: w.k,
            m: w.m,
            layout: w.layout,
        }
    }
}

/// What one compiled kernel is and relied on.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// Shape and layout.
    pub shape: GemvShape,
    /// Parameters asked for.
    pub params: GemvParams,
    /// Unroll actually used.
    pub unroll: usize,
    /// Dot form used.
    pub dot: DotForm,
    /// The target's features.
    pub target: TargetInfo,
    /// `Some("avx_vnni")` / `Some("avx512vnni")` when the dot tree could fold into `vpdpbusd`.
    pub vnni: Option<&'static str>,
    /// Machine code (including the constant pool).
    pub code: Vec<u8>,
    /// Cranelift's listing of the lowered machine instructions (after register allocation).
    pub vcode: Option<String>,
    /// Time to build the IR and compile it.
    pub compile_time: Duration,
}

impl KernelInfo {
    /// Whether the lowered code contains instruction mnemonic `name` (e.g. `vpdpbusd`, `sdot`).
    pub fn uses_instruction(&self, name: &str) -> bool {
        listing_uses(self.vcode.as_deref(), name)
    }
}

fn check_params(shape: &GemvShape, p: &GemvParams) -> Result<usize, CodegenError> {
    shape.layout.validate()?;
    if shape.k == 0 || !shape.k.is_multiple_of(16) || shape.m == 0 {
        return Err(CodegenError::Unsupported(format!(
            "GEMV K = {}, M = {}: K must be a non-zero multiple of 16, M non-zero",
            shape.k, shape.m
        )));
    }
    if !(1..=16).contains(&p.streams)
        || !(1..=32).contains(&p.unroll)
        || !(1..=MAX_TOKENS).contains(&p.tokens)
    {
        return Err(CodegenError::Unsupported(format!(
            "GEMV params {p:?}: streams must be 1..=16, unroll 1..=32, tokens 1..={MAX_TOKENS}"
        )));
    }
    if p.tokens * 4 * shape.k.max(shape.m) >= i32::MAX as usize / 2 {
        return Err(CodegenError::Unsupported(format!(
            "GEMV K = {}, M = {} with {} tokens: offsets exceed 32 bits",
            shape.k, shape.m, p.tokens
        )));
    }
    let chunks = shape.k / shape.layout.pack.cols();
    Ok((1..=p.unroll)
        .rev()
        .find(|u| chunks.is_multiple_of(*u))
        .unwrap_or(1))
}

/// The most tokens one kernel call may take.
pub const MAX_TOKENS: usize = 8;

/// Chunks whose `pmaddubsw` results may be summed in i16 before widening. Each field is at most
/// `4·code ≤ 8` ([`Emitter::field`]) and `q ∈ [−128, 127]`, so one i16 lane (a pair of products)
/// lies in `[−2048, 2032]`, and 16 of them in `[−32768, 32512]`: no wrap.
const I16_CHUNKS: usize = 16;

/// `acc + (pairs of i16 lanes of `v` summed into i32 lanes)`: `pmaddwd` by ones, then `paddd`.
fn widen_pairs_add(b: &mut FunctionBuilder, v: Value, acc: Value) -> Value {
    let lo = b.ins().swiden_low(v);
    let hi = b.ins().swiden_high(v);
    let p32 = b.ins().iadd_pairwise(lo, hi);
    b.ins().iadd(p32, acc)
}

/// IR emitter state shared by the loops of one function.
struct Emitter {
    k: usize,
    r: usize,
    /// Tokens per call (activation rows `4·K` bytes apart).
    tokens: usize,
    layout: Layout,
    unroll: usize,
    dot: DotForm,
    ptr: types::Type,
    /// `0x03` in every byte (Rows4Cols16), or `3 << 2f` for f = 0..4 (Rows16Cols4).
    masks: Vec<Value>,
    w: Value,
    xq: Value,
}

/// Weight and activation loads: in bounds and 16-byte aligned (the wrappers guarantee it),
/// never written while the kernel runs, free to move.
const LOAD: MemFlagsData = MemFlagsData::trusted().with_readonly().with_can_move();
/// Output stores: in bounds, only 4-byte aligned.
const STORE: MemFlagsData = MemFlagsData::new().with_notrap();

impl Emitter {
    fn dot(&self, b: &mut FunctionBuilder, acc: Value, q: Value, c: Value) -> Value {
        match self.dot {
            DotForm::Pmaddubsw => {
                let p16 = b.ins().x86_pmaddubsw(q, c);
                widen_pairs_add(b, p16, acc)
            }
            form => {
                let (lo, hi) = match form {
                    DotForm::MixedTree => {
                        let a_lo = b.ins().swiden_low(q);
                        let b_lo = b.ins().uwiden_low(c);
                        let lo = b.ins().imul(a_lo, b_lo);
                        let a_hi = b.ins().swiden_high(q);
                        let b_hi = b.ins().uwiden_high(c);
                        let hi = b.ins().imul(a_hi, b_hi);
                        (lo, hi)
                    }
                    DotForm::SignedTree => {
                        let a_lo = b.ins().swiden_low(c);
                        let b_lo = b.ins().swiden_low(q);
                        let lo = b.ins().imul(a_lo, b_lo);
                        let a_hi = b.ins().swiden_high(c);
                        let b_hi = b.ins().swiden_high(q);
                        let hi = b.ins().imul(a_hi, b_hi);
                        (lo, hi)
                    }
                    _ => {
                        let a_lo = b.ins().uwiden_low(c);
                        let b_lo = b.ins().swiden_low(q);
                        let lo = b.ins().imul(a_lo, b_lo);
                        let a_hi = b.ins().uwiden_high(c);
                        let b_hi = b.ins().swiden_high(q);
                        let hi = b.ins().imul(a_hi, b_hi);
                        (lo, hi)
                    }
                };
                let lo_l = b.ins().swiden_low(lo);
                let lo_h = b.ins().swiden_high(lo);
                let p_lo = b.ins().iadd_pairwise(lo_l, lo_h);
                let hi_l = b.ins().swiden_low(hi);
                let hi_h = b.ins().swiden_high(hi);
                let p_hi = b.ins().iadd_pairwise(hi_l, hi_h);
                let t = b.ins().iadd_pairwise(p_lo, p_hi);
                b.ins().iadd(t, acc)
            }
        }
    }

    /// Emits the full-K loop for the groups whose weight bases are `bases` (one per stream);
    /// returns the `bases.len() · tokens · R/4` accumulators (index `(s·tokens + t)·R/4 + j`
    /// holds rows `4j..4j+4` of stream `s`'s group for token `t`) in the block after the loop,
    /// which is left as the current block.
    fn k_loop(&self, b: &mut FunctionBuilder, bases: &[Value]) -> Vec<Value> {
        let nq = self.r / 4; // accumulators (4-row quads) per stream and token
        let nt = self.tokens;
        let nsv = self.layout.subvectors();
        let nacc = bases.len() * nt * nq;
        // Byte distance between the expanded rows of consecutive tokens.
        let row_bytes = 4 * self.k;
        let cols = self.layout.pack.cols();
        let zero = b.ins().iconst(types::I32, 0);
        let zero = b.ins().splat(types::I32X4, zero);
        let body = b.create_block();
        let exit = b.create_block();
        let ow0 = b.ins().iconst(self.ptr, 0);
        b.append_block_param(body, self.ptr); // weight offset
        b.append_block_param(body, self.ptr); // activation offset
        for _ in 0..nacc {
            b.append_block_param(body, types::I32X4);
            b.append_block_param(exit, types::I32X4);
        }
        let mut args = vec![ow0.into(), ow0.into()];
        args.extend(std::iter::repeat_n(BlockArg::from(zero), nacc));
        b.ins().jump(body, &args);

        b.switch_to_block(body);
        let params = b.block_params(body).to_vec();
        let (ow, oa) = (params[0], params[1]);
        let mut accs: Vec<Value> = params[2..].to_vec();
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let xbase = b.ins().iadd(self.xq, oa);
        let wptrs: Vec<Value> = bases.iter().map(|&p| b.ins().iadd(p, ow)).collect();
        let chunk_bytes = self.layout.chunk_bytes();
        // Expanded activation bytes per column chunk.
        let act_bytes = 4 * cols;
        // i16 partial sums of the `pmaddubsw` form (Rows16Cols4), one per accumulator.
        let mut partial: Vec<Option<Value>> = vec![None; nacc];
        for u in 0..self.unroll {
            match self.layout.pack {
                Pack::Rows4Cols16 => {
                    // acts[t·4 + f]
                    let acts: Vec<Value> = (0..nt * 4)
                        .map(|i| {
                            let (t, f) = (i / 4, i % 4);
                            let off = (t * row_bytes + u * act_bytes + f * 16) as i32;
                            b.ins().load(types::I8X16, LOAD, xbase, off)
                        })
                        .collect();
                    for (s, &wp) in wptrs.iter().enumerate() {
                        for sv in 0..nsv {
                            let off = (u * chunk_bytes + sv * 16) as i32;
                            let wv = b.ins().load(types::I32X4, LOAD, wp, off);
                            for f in 0..4 {
                                let sh = if f == 0 {
                                    wv
                                } else {
                                    b.ins().ushr_imm_u(wv, (2 * f) as i64)
                                };
                                let c32 = b.ins().band(sh, self.masks[0]);
                                let c = b.ins().bitcast(types::I8X16, le, c32);
                                for t in 0..nt {
                                    let a = &mut accs[(s * nt + t) * nq + sv];
                                    *a = self.dot(b, *a, acts[t * 4 + f], c);
                                }
                            }
                        }
                    }
                }
                Pack::Rows16Cols4 if self.dot == DotForm::Pmaddubsw => {
                    // `pmaddubsw` products of the unrolled chunks are summed in i16 and widened
                    // once per field (one `pmaddwd` per `unroll` chunks instead of per chunk):
                    // exact, see `I16_CHUNKS`.
                    let qs: Vec<Value> = (0..nt)
                        .map(|t| {
                            let off = (t * row_bytes + u * act_bytes) as i32;
                            b.ins().load(types::I8X16, LOAD, xbase, off)
                        })
                        .collect();
                    for (s, &wp) in wptrs.iter().enumerate() {
                        for sv in 0..nsv {
                            let off = (u * chunk_bytes + sv * 16) as i32;
                            let wv = b.ins().load(types::I32X4, LOAD, wp, off);
                            for f in 0..4 {
                                let (shift, mask, _) = self.field(f);
                                let sh = if shift == 0 {
                                    wv
                                } else {
                                    b.ins().ushr_imm_u(wv, i64::from(shift))
                                };
                                let c32 = b.ins().band(sh, self.masks[mask]);
                                let c = b.ins().bitcast(types::I8X16, le, c32);
                                for (t, &q) in qs.iter().enumerate() {
                                    let idx = (s * nt + t) * nq + sv * 4 + f;
                                    let p16 = b.ins().x86_pmaddubsw(q, c);
                                    partial[idx] = Some(match partial[idx] {
                                        None => p16,
                                        Some(sum) => b.ins().iadd(sum, p16),
                                    });
                                }
                            }
                        }
                    }
                    if (u + 1) % I16_CHUNKS == 0 || u + 1 == self.unroll {
                        for (a, p) in accs.iter_mut().zip(partial.iter_mut()) {
                            if let Some(sum) = p.take() {
                                *a = widen_pairs_add(b, sum, *a);
                            }
                        }
                    }
                }
                Pack::Rows16Cols4 => {
                    let qs: Vec<Value> = (0..nt)
                        .map(|t| {
                            let off = (t * row_bytes + u * act_bytes) as i32;
                            b.ins().load(types::I8X16, LOAD, xbase, off)
                        })
                        .collect();
                    for (s, &wp) in wptrs.iter().enumerate() {
                        for sv in 0..nsv {
                            let off = (u * chunk_bytes + sv * 16) as i32;
                            let wv = b.ins().load(types::I32X4, LOAD, wp, off);
                            for f in 0..4 {
                                let (shift, mask, _) = self.field(f);
                                let sh = if shift == 0 {
                                    wv
                                } else {
                                    b.ins().ushr_imm_u(wv, i64::from(shift))
                                };
                                let c32 = b.ins().band(sh, self.masks[mask]);
                                let c = b.ins().bitcast(types::I8X16, le, c32);
                                for (t, &q) in qs.iter().enumerate() {
                                    let a = &mut accs[(s * nt + t) * nq + sv * 4 + f];
                                    *a = self.dot(b, *a, q, c);
                                }
                            }
                        }
                    }
                }
            }
        }
        let ow2 = b.ins().iadd_imm_u(ow, (self.unroll * chunk_bytes) as i64);
        let oa2 = b.ins().iadd_imm_u(oa, (self.unroll * act_bytes) as i64);
        let more = b.ins().icmp_imm_u(
            cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan,
            oa2,
            (self.k * 4) as i64,
        );
        let mut back = vec![ow2.into(), oa2.into()];
        back.extend(accs.iter().map(|&a| BlockArg::from(a)));
        let out_args: Vec<BlockArg> = accs.iter().map(|&a| BlockArg::from(a)).collect();
        b.ins().brif(more, body, &back, exit, &out_args);
        b.seal_block(body);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let mut res = b.block_params(exit).to_vec();
        if self.layout.pack == Pack::Rows16Cols4 {
            // Field f was multiplied by 4^f: divide exactly.
            for (j, a) in res.iter_mut().enumerate() {
                let (_, _, div) = self.field(j % 4);
                if div > 0 {
                    *a = b.ins().sshr_imm_u(*a, i64::from(div));
                }
            }
        }
        res
    }

    /// For [`Pack::Rows16Cols4`], how field `f` is extracted: (right shift, mask index, the
    /// power of two the dot product is scaled by). The codes are masked in place (`4^f·code`);
    /// only a sign-widening dot (sdot) cannot take `0x80` as a positive byte, so there the top
    /// field is shifted down instead.
    ///
    /// With `pmaddubsw` the two upper fields are shifted down by 4 bits first (one shift shared
    /// by both), so every field is at most `4·code` and the i16 products have the headroom to
    /// be summed over several chunks ([`I16_CHUNKS`]).
    fn field(&self, f: usize) -> (u32, usize, u32) {
        match (self.dot, f) {
            (DotForm::SignedTree, 3) => (6, 0, 0),
            (DotForm::Pmaddubsw, 2 | 3) => (4, f - 2, 2 * (f as u32 - 2)),
            _ => (0, f, 2 * f as u32),
        }
    }

    /// Weight base pointer of group `g` (a pointer-sized value).
    fn group_base(&self, b: &mut FunctionBuilder, g: Value) -> Value {
        let off = b.ins().imul_imm_u(g, (self.r * self.k / 4) as i64);
        b.ins().iadd(self.w, off)
    }
}

/// Block widths of the tail of a range (the full groups left after `streams` equal runs,
/// fewer than `streams`): `streams/2`, `streams/4`, ... down to 1, without repeats.
fn tail_widths(streams: usize) -> Vec<usize> {
    let mut widths = Vec::new();
    let mut w = streams / 2;
    while w > 1 {
        widths.push(w);
        w /= 2;
    }
    widths.push(1);
    widths
}

/// Builds the IR of the GEMV kernel for `shape` on `target`.
pub fn build_function(
    shape: &GemvShape,
    params: &GemvParams,
    target: &Target,
) -> Result<(Function, usize, DotForm), CodegenError> {
    use cranelift_codegen::ir::condcodes::IntCC;
    let unroll = check_params(shape, params)?;
    let dot = params
        .dot
        .unwrap_or_else(|| DotForm::for_target(&target.info));
    if dot == DotForm::Pmaddubsw && !(target.info.is_x86_64() && target.info.has("has_ssse3")) {
        return Err(CodegenError::Unsupported(
            "DotForm::Pmaddubsw needs x86-64 with SSSE3".into(),
        ));
    }
    let isa = &target.isa;
    let ptr = isa.pointer_type();
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..5 {
        sig.params.push(AbiParam::new(ptr));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);

    let (k, m, r) = (shape.k, shape.m, shape.layout.rows_per_group);
    let s_count = params.streams;
    let full = (m / r) as i64; // groups whose rows are all real
    let partial_rows = m % r;

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (w, xq, out, gb, ge) = (p[0], p[1], p[2], p[3], p[4]);
    let mask_bytes: Vec<u32> = match shape.layout.pack {
        Pack::Rows4Cols16 => vec![0x03],
        Pack::Rows16Cols4 => vec![0x03, 0x0C, 0x30, 0xC0],
    };
    let masks = mask_bytes
        .into_iter()
        .map(|mb| {
            let m = b.ins().iconst(types::I32, i64::from(mb * 0x0101_0101));
            b.ins().splat(types::I32X4, m)
        })
        .collect();
    let em = Emitter {
        k,
        r,
        tokens: params.tokens,
        layout: shape.layout,
        unroll,
        dot,
        ptr,
        masks,
        w,
        xq,
    };

    // Full groups of the range: gb .. min(ge, full), split into `s_count` runs of `per`.
    let full_v = b.ins().iconst(ptr, full);
    let gef = b.ins().umin(ge, full_v);
    let has = b.ins().icmp(IntCC::UnsignedGreaterThan, gef, gb);
    let diff = b.ins().isub(gef, gb);
    let zero = b.ins().iconst(ptr, 0);
    let n = b.ins().select(has, diff, zero);
    let per = b.ins().udiv_imm_u(n, s_count as i64);

    let nt = params.tokens;
    // Stores the accumulators of group `g` (all rows real; `nt · R/4` of them, token-major) at
    // out + (g − gb)·R·4, token t's rows M·4 bytes after token t − 1's.
    let store_group = |b: &mut FunctionBuilder, g: Value, accs: &[Value]| {
        let rel = b.ins().isub(g, gb);
        let off = b.ins().imul_imm_u(rel, (r * 4) as i64);
        let dst = b.ins().iadd(out, off);
        let nq = r / 4;
        for (i, &a) in accs.iter().enumerate() {
            let (t, j) = (i / nq, i % nq);
            b.ins().store(STORE, a, dst, (t * m * 4 + j * 16) as i32);
        }
    };

    // Outer loop over j in 0..per: groups gb + s·per + j.
    let outer = b.create_block();
    let outer_body = b.create_block();
    let tail = b.create_block();
    b.append_block_param(outer, ptr);
    b.ins().jump(outer, &[zero.into()]);
    b.switch_to_block(outer);
    let j = b.block_params(outer)[0];
    let go = b.ins().icmp(IntCC::UnsignedLessThan, j, per);
    b.ins().brif(go, outer_body, &[], tail, &[]);
    b.switch_to_block(outer_body);
    b.seal_block(outer_body);
    let gj = b.ins().iadd(gb, j);
    let groups: Vec<Value> = (0..s_count)
        .map(|s| {
            if s == 0 {
                gj
            } else {
                let o = b.ins().imul_imm_u(per, s as i64);
                b.ins().iadd(gj, o)
            }
        })
        .collect();
    let bases: Vec<Value> = groups.iter().map(|&g| em.group_base(&mut b, g)).collect();
    let accs = em.k_loop(&mut b, &bases);
    let per_stream = nt * r / 4;
    for (s, &g) in groups.iter().enumerate() {
        store_group(&mut b, g, &accs[s * per_stream..(s + 1) * per_stream]);
    }
    let j2 = b.ins().iadd_imm_u(j, 1);
    b.ins().jump(outer, &[j2.into()]);
    b.seal_block(outer);

    // Tail: the left-over full groups gb + s_count·per .. gef (fewer than `s_count`), in blocks
    // of s_count/2, s_count/4, ..., 1 adjacent groups read side by side, each width looped
    // while that many are left: one group at a time would read them as a single stream, which
    // on cores that need several streams per thread to fill the memory pipe ran the tail at a
    // third of the speed (the claimed ranges are tens of groups, so tails are a large share).
    b.switch_to_block(tail);
    b.seal_block(tail);
    let done = b.ins().imul_imm_u(per, s_count as i64);
    let mut g_next = b.ins().iadd(gb, done);
    let widths = tail_widths(s_count);
    for &width in &widths {
        let t_loop = b.create_block();
        let t_body = b.create_block();
        let t_after = b.create_block();
        b.append_block_param(t_loop, ptr);
        b.append_block_param(t_after, ptr);
        b.ins().jump(t_loop, &[g_next.into()]);
        b.switch_to_block(t_loop);
        let g = b.block_params(t_loop)[0];
        let g_end = b.ins().iadd_imm_u(g, width as i64);
        let go = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, g_end, gef);
        b.ins().brif(go, t_body, &[], t_after, &[g.into()]);
        b.switch_to_block(t_body);
        b.seal_block(t_body);
        let groups: Vec<Value> = (0..width)
            .map(|i| {
                if i == 0 {
                    g
                } else {
                    b.ins().iadd_imm_u(g, i as i64)
                }
            })
            .collect();
        let bases: Vec<Value> = groups.iter().map(|&g| em.group_base(&mut b, g)).collect();
        let accs = em.k_loop(&mut b, &bases);
        for (i, &gi) in groups.iter().enumerate() {
            store_group(&mut b, gi, &accs[i * per_stream..(i + 1) * per_stream]);
        }
        b.ins().jump(t_loop, &[g_end.into()]);
        b.seal_block(t_loop);
        b.switch_to_block(t_after);
        b.seal_block(t_after);
        g_next = b.block_params(t_after)[0];
    }
    if partial_rows > 0 {
        // The partial last group `full`, if the range reaches it: ge > full and gb <= full.
        let last = b.create_block();
        let ret = b.create_block();
        let past = b.ins().icmp(IntCC::UnsignedGreaterThan, ge, full_v);
        let from = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, gb, full_v);
        let both = b.ins().band(past, from);
        b.ins().brif(both, last, &[], ret, &[]);
        b.switch_to_block(last);
        b.seal_block(last);
        let base = em.group_base(&mut b, full_v);
        let accs = em.k_loop(&mut b, &[base]);
        let rel = b.ins().isub(full_v, gb);
        let off = b.ins().imul_imm_u(rel, (r * 4) as i64);
        let dst = b.ins().iadd(out, off);
        for t in 0..nt {
            for row in 0..partial_rows {
                let v = b
                    .ins()
                    .extractlane(accs[t * (r / 4) + row / 4], (row % 4) as u8);
                b.ins().store(STORE, v, dst, ((t * m + row) * 4) as i32);
            }
        }
        b.ins().jump(ret, &[]);
        b.switch_to_block(ret);
        b.seal_block(ret);
    }
    b.ins().return_(&[]);
    b.finalize(isa.frontend_config());
    Ok((func, unroll, dot))
}

/// Compiles the kernel for any target without running it (e.g. aarch64 from x86-64).
pub fn compile_only(
    shape: &GemvShape,
    params: &GemvParams,
    target: &Target,
) -> Result<KernelInfo, CodegenError> {
    let t0 = Instant::now();
    let (func, unroll, dot) = build_function(shape, params, target)?;
    let (code, vcode) = compile_to_code(func, target)?;
    Ok(KernelInfo {
        shape: *shape,
        params: *params,
        unroll,
        dot,
        target: target.info.clone(),
        vnni: target.info.vnni(),
        code,
        vcode,
        compile_time: t0.elapsed(),
    })
}

type GemvFn = unsafe extern "C" fn(*const u8, *const i8, *mut i32, usize, usize);

/// A JIT-compiled decode GEMV kernel for one shape on this host.
pub struct GemvKernel {
    func: GemvFn,
    info: KernelInfo,
    _code: JitFunction,
}

impl std::fmt::Debug for GemvKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GemvKernel")
            .field("info", &self.info)
            .finish()
    }
}

impl GemvKernel {
    /// Generates and JIT-compiles the kernel for `shape` at `level` on this host.
    pub fn compile(
        shape: &GemvShape,
        params: &GemvParams,
        level: IsaLevel,
    ) -> Result<GemvKernel, CodegenError> {
        GemvKernel::compile_for(shape, params, &Target::host(level)?)
    }

    /// Generates and JIT-compiles the kernel for a host `target` (see [`Target::host`]).
    pub fn compile_for(
        shape: &GemvShape,
        params: &GemvParams,
        target: &Target,
    ) -> Result<GemvKernel, CodegenError> {
        let t0 = Instant::now();
        let (func, unroll, dot) = build_function(shape, params, target)?;
        let jf = JitFunction::compile(func, target, "bitnetc_gemv")?;
        // SAFETY: the function was built with exactly this signature in the platform's C
        // calling convention.
        let func: GemvFn = unsafe { std::mem::transmute::<*const u8, GemvFn>(jf.ptr()) };
        Ok(GemvKernel {
            func,
            info: KernelInfo {
                shape: *shape,
                params: *params,
                unroll,
                dot,
                target: target.info.clone(),
                vnni: target.info.vnni(),
                code: jf.code.clone(),
                vcode: jf.vcode.clone(),
                compile_time: t0.elapsed(),
            },
            _code: jf,
        })
    }

    /// What was compiled and what it relies on.
    pub fn info(&self) -> &KernelInfo {
        &self.info
    }

    /// Number of row groups of the shape.
    pub fn groups(&self) -> usize {
        self.info.shape.layout.groups(self.info.shape.m)
    }

    /// Rows of `out` written for groups `groups`: `groups.start·R .. min(groups.end·R, M)`.
    pub fn rows_of(&self, groups: Range<usize>) -> Range<usize> {
        let r = self.info.shape.layout.rows_per_group;
        let m = self.info.shape.m;
        (groups.start * r).min(m)..(groups.end * r).min(m)
    }

    fn check(&self, w: &RepackedMatrix, xq: &ExpandedActivations) -> Result<(), CodegenError> {
        let s = &self.info.shape;
        if GemvShape::of(w) != *s {
            return Err(CodegenError::Shape(format!(
                "kernel is for {s:?}, weights are {:?}",
                GemvShape::of(w)
            )));
        }
        if xq.k() != s.k {
            return Err(CodegenError::Shape(format!(
                "kernel K = {}, activations K = {}",
                s.k,
                xq.k()
            )));
        }
        Ok(())
    }

    /// `out[m] = Σ_k code[m,k]·q[k]` for all M rows (`q.len() = K`, `out.len() = M`).
    /// Expands the activations on each call; see [`GemvKernel::run_expanded`] to reuse them.
    pub fn run(&self, w: &RepackedMatrix, q: &[i8], out: &mut [i32]) -> Result<(), CodegenError> {
        if q.len() != self.info.shape.k {
            return Err(CodegenError::Shape(format!(
                "kernel K = {}, q has {} values",
                self.info.shape.k,
                q.len()
            )));
        }
        let xq = ExpandedActivations::new(q);
        self.run_expanded(w, &xq, 0..self.groups(), out)
    }

    /// Rows of groups `groups` into `out` (`out.len()` = the length of [`GemvKernel::rows_of`]).
    pub fn run_expanded(
        &self,
        w: &RepackedMatrix,
        xq: &ExpandedActivations,
        groups: Range<usize>,
        out: &mut [i32],
    ) -> Result<(), CodegenError> {
        self.check(w, xq)?;
        if groups.start > groups.end || groups.end > self.groups() {
            return Err(CodegenError::Shape(format!(
                "groups {groups:?} out of 0..{}",
                self.groups()
            )));
        }
        let rows = self.rows_of(groups.clone());
        if out.len() != rows.len() {
            return Err(CodegenError::Shape(format!(
                "out has {} values, groups {groups:?} have {} rows",
                out.len(),
                rows.len()
            )));
        }
        // SAFETY: lengths checked above: `w` holds every group, `xq` 4·K bytes, `out` the rows.
        unsafe {
            self.run_raw(
                w.bytes().as_ptr(),
                xq.as_slice().as_ptr(),
                out.as_mut_ptr(),
                groups,
            )
        };
        Ok(())
    }

    /// Tokens per call this kernel was built for.
    pub fn tokens(&self) -> usize {
        self.info.params.tokens
    }

    /// `out[t·M + m] = Σ_k code[m,k]·q_t[k]` for the rows of groups `groups` and every token t
    /// of `xb` (which must hold exactly [`GemvKernel::tokens`] rows); `out.len()` = tokens·M and
    /// only the rows [`GemvKernel::rows_of`]`(groups)` of each token are written.
    pub fn run_batch(
        &self,
        w: &RepackedMatrix,
        xb: &ExpandedBatch,
        groups: Range<usize>,
        out: &mut [i32],
    ) -> Result<(), CodegenError> {
        let s = &self.info.shape;
        if GemvShape::of(w) != *s {
            return Err(CodegenError::Shape(format!(
                "kernel is for {s:?}, weights are {:?}",
                GemvShape::of(w)
            )));
        }
        if xb.k() != s.k || xb.tokens() != self.tokens() {
            return Err(CodegenError::Shape(format!(
                "kernel takes {} tokens of K = {}, batch has {} of K = {}",
                self.tokens(),
                s.k,
                xb.tokens(),
                xb.k()
            )));
        }
        if groups.start > groups.end || groups.end > self.groups() {
            return Err(CodegenError::Shape(format!(
                "groups {groups:?} out of 0..{}",
                self.groups()
            )));
        }
        if out.len() != self.tokens() * s.m {
            return Err(CodegenError::Shape(format!(
                "out has {} values, {} tokens × M = {} needed",
                out.len(),
                self.tokens(),
                self.tokens() * s.m
            )));
        }
        let rows = self.rows_of(groups.clone());
        // SAFETY: checked above: `w` holds every group, `xb` tokens·4·K bytes, `out` tokens·M
        // values, of which token t's rows `rows` start at t·M + rows.start.
        unsafe {
            self.run_raw(
                w.bytes().as_ptr(),
                xb.as_slice().as_ptr(),
                out.as_mut_ptr().add(rows.start),
                groups,
            )
        };
        Ok(())
    }

    /// Calls the kernel on raw pointers.
    ///
    /// # Safety
    /// `w` must point at `groups.end · R·K/4` readable bytes laid out as a [`RepackedMatrix`] of
    /// this shape, `xq` at `tokens·4·K` readable bytes of expanded activations (16-byte
    /// aligned), `out` at `rows_of(groups).len()` writable i32 for token 0 and the same count
    /// `t·M` values further on for each token t, and `groups.start <= groups.end <=
    /// self.groups()`.
    pub unsafe fn run_raw(&self, w: *const u8, xq: *const i8, out: *mut i32, groups: Range<usize>) {
        unsafe { (self.func)(w, xq, out, groups.start, groups.end) }
    }

    /// All rows, with the groups split into `parts` contiguous ranges run on the current rayon
    /// pool (one task per range; `parts = 1` runs inline).
    pub fn run_parallel(
        &self,
        w: &RepackedMatrix,
        xq: &ExpandedActivations,
        out: &mut [i32],
        parts: usize,
    ) -> Result<(), CodegenError> {
        self.check(w, xq)?;
        if out.len() != self.info.shape.m {
            return Err(CodegenError::Shape(format!(
                "out has {} values, M = {}",
                out.len(),
                self.info.shape.m
            )));
        }
        let ranges = split_groups(self.groups(), parts.max(1));
        if ranges.len() <= 1 {
            return self.run_expanded(w, xq, 0..self.groups(), out);
        }
        let mut chunks = Vec::with_capacity(ranges.len());
        let mut rest = out;
        for g in &ranges {
            let (head, tail) = rest.split_at_mut(self.rows_of(g.clone()).len());
            chunks.push((g.clone(), head));
            rest = tail;
        }
        rayon::scope(|s| {
            let mut it = chunks.into_iter();
            let first = it.next();
            for (g, o) in it {
                s.spawn(move |_| {
                    self.run_expanded(w, xq, g, o).expect("checked");
                });
            }
            if let Some((g, o)) = first {
                self.run_expanded(w, xq, g, o).expect("checked");
            }
        });
        Ok(())
    }
}

/// Splits `n_groups` row groups into at most `parts` contiguous, non-empty ranges whose sizes
/// differ by at most one.
pub fn split_groups(n_groups: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1).min(n_groups.max(1));
    let (q, rem) = (n_groups / parts, n_groups % parts);
    let mut v = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 0..parts {
        let len = q + usize::from(i < rem);
        if len > 0 {
            v.push(start..start + len);
        }
        start += len;
    }
    v
}

/// Part `i` of [`split_groups`]`(n_groups, parts)`, computed without building the list (empty
/// for a part that list does not have).
pub fn split_part(n_groups: usize, parts: usize, i: usize) -> Range<usize> {
    let parts = parts.max(1).min(n_groups.max(1));
    if i >= parts {
        return n_groups..n_groups;
    }
    let (q, rem) = (n_groups / parts, n_groups % parts);
    let start = i * q + i.min(rem);
    start..start + q + usize::from(i < rem)
}

/// The reference epilogue, in `ternary_output`'s order: `((acc − qsum) / s) · scale` in f32.
#[inline]
pub fn ternary_output(acc: i32, qsum: i32, s: f32, scale: f32) -> f32 {
    ((acc as f32 - qsum as f32) / s) * scale
}

/// Applies [`ternary_output`] to every row: `y[m] = ((acc[m] − qsum) / s) · scale[m]`.
pub fn epilogue(w: &RepackedMatrix, acc: &[i32], qsum: i32, s: f32, y: &mut [f32]) {
    assert_eq!(acc.len(), w.m);
    assert_eq!(y.len(), w.m);
    for (m, (o, &a)) in y.iter_mut().zip(acc).enumerate() {
        *o = ternary_output(a, qsum, s, w.scales.get(m));
    }
}

#[cfg(test)]
mod default_tests {
    use super::GemvParams;
    use crate::cpu::CpuVendor;

    #[test]
    fn tails_halve_down_to_one_group() {
        use super::tail_widths;
        assert_eq!(tail_widths(1), vec![1]);
        assert_eq!(tail_widths(2), vec![1]);
        assert_eq!(tail_widths(3), vec![1]);
        assert_eq!(tail_widths(5), vec![2, 1]);
        assert_eq!(tail_widths(8), vec![4, 2, 1]);
        assert_eq!(tail_widths(12), vec![6, 3, 1]);
        assert_eq!(tail_widths(16), vec![8, 4, 2, 1]);
    }

    #[test]
    fn decode_streams_follow_the_register_pressure_of_the_isa() {
        for (tag, streams) in [
            ("avx512vnni", 8),
            ("avx2vnni", 8),
            ("neon-dotprod", 8),
            ("neon", 8),
            ("avx512", 4),
            ("avx2", 4),
            ("sse4", 4),
        ] {
            assert_eq!(
                GemvParams::decode_default_for_tag(tag).streams,
                streams,
                "{tag}"
            );
        }
    }

    #[test]
    fn prompt_default_follows_the_registers_each_dot_form_needs() {
        for (tag, vendor, tokens, unroll) in [
            ("avx512vnni", CpuVendor::Amd, 2, 1),
            ("avx2vnni", CpuVendor::Other, 2, 1),
            ("avx512vnni", CpuVendor::Intel, 8, 2),
            ("avx2vnni", CpuVendor::Intel, 8, 2),
            ("neon-dotprod", CpuVendor::Other, 4, 2),
            ("avx512", CpuVendor::Amd, 8, 4),
            ("avx2", CpuVendor::Intel, 8, 4),
            ("sse4", CpuVendor::Other, 8, 4),
        ] {
            let p = GemvParams::prompt_default_on(tag, vendor);
            assert_eq!(
                (p.tokens, p.streams, p.unroll),
                (tokens, 1, unroll),
                "{tag} on {vendor:?}"
            );
        }
        let here = GemvParams::prompt_default_for_tag("avx512vnni");
        assert_eq!(
            here,
            GemvParams::prompt_default_on("avx512vnni", CpuVendor::host())
        );
    }
}
