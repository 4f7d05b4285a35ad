//! Attention generators: the two loops of a block of query heads over the f32 KV cache.
//!
//! For query head `q` (D values) and the cached positions `0..n` of its KV head (rows `stride`
//! floats apart in the cache), attention is
//!
//! ```text
//! s[j] = dot(q, key_j) · scale        (scores kernel)
//! p    = softmax(s)                   (Rust, in the caller: it needs `exp`)
//! o[d] = Σ_j p[j] · value_j[d]        (weighted-sum kernel)
//! ```
//!
//! with the C signatures
//!
//! ```text
//! void scores(const f32 *q, const f32 *keys, f32 *s, usize n)
//! void weighted_sum(const f32 *p, const f32 *values, f32 *o, usize n)
//! ```
//!
//! A call handles `heads` query heads that share one KV head (grouped-query attention): their
//! queries and outputs are consecutive (`heads·D` floats), their scores and probabilities are
//! `heads` rows of `n`, and each key and value row is loaded once for all of them.
//!
//! D, the row stride, the head count and the scale are compile-time constants. Both are
//! bit-identical to the
//! reference: the score is the reference `dot_f32` (eight f32 partial sums in two f32x4
//! accumulators, combined as `((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7)) + 0`) times the
//! scale; the weighted sum accumulates each output element over `j` in order from 0 with a
//! separate multiply and add, exactly as the reference's scalar loop does, four elements per
//! vector lane. The softmax between them is left to Rust because Cranelift has no `exp`, and
//! bit-identity needs the same `expf` the reference calls.

use std::time::{Duration, Instant};

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};

use super::isa::{IsaLevel, Target, TargetInfo};
use super::jit::{compile_to_code, JitFunction};
use crate::CodegenError;

/// One attention head's problem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    /// Values per head (a multiple of 8, at most 512).
    pub head_dim: usize,
    /// Floats between consecutive positions in the cache (the KV width), at least `head_dim`.
    pub stride: usize,
    /// Score scale (`1/√D` for standard attention).
    pub scale: f32,
    /// Query heads per call, sharing each key and value load (1..=4; they must share a KV head).
    pub heads: usize,
}

impl AttentionShape {
    /// The most query heads per call (at most 4, a divisor of `group`) for `group` query heads
    /// per KV head.
    pub fn heads_for_group(group: usize) -> usize {
        (1..=4)
            .rev()
            .find(|h| group.is_multiple_of(*h))
            .unwrap_or(1)
    }
}

/// Code-shape parameters of the attention kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttentionParams {
    /// Key rows per scores-loop iteration (sharing each load of `q`), 1..=4.
    pub rows: usize,
    /// f32x4 output vectors per weighted-sum block (reduced to the largest divisor of D/4 not
    /// above it), 1..=16.
    pub cols: usize,
}

impl Default for AttentionParams {
    fn default() -> AttentionParams {
        AttentionParams { rows: 2, cols: 8 }
    }
}

/// What was compiled.
#[derive(Clone, Debug)]
pub struct AttentionInfo {
    /// Shape.
    pub shape: AttentionShape,
    /// Parameters asked for.
    pub params: AttentionParams,
    /// Key rows per scores iteration actually used.
    pub rows: usize,
    /// Weighted-sum block width actually used.
    pub cols: usize,
    /// The target's features.
    pub target: TargetInfo,
    /// Machine code of both kernels.
    pub code: Vec<u8>,
    /// Cranelift's listings of both kernels.
    pub vcode: Option<String>,
    /// Time to build and compile both.
    pub compile_time: Duration,
}

/// Checks a shape and parameters; returns the key rows per scores iteration and the
/// weighted-sum block width actually used (fewer with more heads, so that the accumulators,
/// `2·rows·heads` and `cols·heads`, stay in registers).
fn check(shape: &AttentionShape, p: &AttentionParams) -> Result<(usize, usize), CodegenError> {
    let d = shape.head_dim;
    if d == 0 || !d.is_multiple_of(8) || d > 512 || shape.stride < d {
        return Err(CodegenError::Unsupported(format!(
            "attention head_dim = {d}, stride = {}: head_dim must be a multiple of 8 up to 512 \
             and the stride at least head_dim",
            shape.stride
        )));
    }
    if shape
        .stride
        .checked_mul(4)
        .is_none_or(|b| b > i32::MAX as usize)
    {
        return Err(CodegenError::Unsupported(
            "attention stride too large".into(),
        ));
    }
    if !(1..=4).contains(&p.rows) || !(1..=16).contains(&p.cols) {
        return Err(CodegenError::Unsupported(format!(
            "attention params {p:?}: rows must be 1..=4, cols 1..=16"
        )));
    }
    let h = shape.heads;
    if !(1..=4).contains(&h) {
        return Err(CodegenError::Unsupported(format!(
            "attention heads per call = {h}: must be 1..=4"
        )));
    }
    let rows = if h == 1 {
        p.rows
    } else {
        p.rows.min(4 / h).max(1)
    };
    let max_cols = if h == 1 {
        p.cols
    } else {
        p.cols.min(8 / h).max(1)
    };
    let vecs = d / 4;
    let cols = (1..=max_cols)
        .rev()
        .find(|c| vecs.is_multiple_of(*c))
        .unwrap_or(1);
    Ok((rows, cols))
}

/// Positions per tile of the weighted sum (128 value rows of a 128-wide head: 64 KiB).
const WEIGHTED_SUM_TILE: usize = 128;

/// Loads: in bounds, 4-byte aligned, read-only.
const LOAD: MemFlagsData = MemFlagsData::new().with_notrap().with_readonly();
/// Loads of what the kernel itself stored (not read-only): in bounds, 4-byte aligned.
const OUT_LOAD: MemFlagsData = MemFlagsData::new().with_notrap();
/// Stores: in bounds, 4-byte aligned.
const STORE: MemFlagsData = MemFlagsData::new().with_notrap();

fn signature(target: &Target) -> Signature {
    let ptr = target.isa.pointer_type();
    let mut sig = Signature::new(target.isa.default_call_conv());
    for _ in 0..4 {
        sig.params.push(AbiParam::new(ptr));
    }
    sig
}

/// Emits `for j in (start..end).step_by(step) { body(j) }` and leaves the builder after it.
fn counted_loop(
    b: &mut FunctionBuilder,
    ptr: types::Type,
    start: Value,
    end: Value,
    step: usize,
    mut body: impl FnMut(&mut FunctionBuilder, Value),
) {
    let head = b.create_block();
    let inner = b.create_block();
    let after = b.create_block();
    b.append_block_param(head, ptr);
    b.ins().jump(head, &[start.into()]);
    b.switch_to_block(head);
    let j = b.block_params(head)[0];
    let step_end = b.ins().iadd_imm_u(j, step as i64);
    let go = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, step_end, end);
    b.ins().brif(go, inner, &[], after, &[]);
    b.switch_to_block(inner);
    b.seal_block(inner);
    body(b, j);
    b.ins().jump(head, &[step_end.into()]);
    b.seal_block(head);
    b.switch_to_block(after);
    b.seal_block(after);
}

/// Builds the scores function.
pub fn build_scores(
    shape: &AttentionShape,
    params: &AttentionParams,
    target: &Target,
) -> Result<Function, CodegenError> {
    let (rows, _) = check(shape, params)?;
    let ptr = target.isa.pointer_type();
    let mut func = Function::with_name_signature(UserFuncName::user(0, 2), signature(target));
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (q, keys, s, n) = (p[0], p[1], p[2], p[3]);
    let (d, row_bytes, heads) = (shape.head_dim, (4 * shape.stride) as i64, shape.heads);
    let zero = b.ins().f32const(0.0);
    let scale = b.ins().f32const(shape.scale);
    let zero_v = b.ins().splat(types::F32X4, zero);
    // Head h's scores start h·n floats into `s`.
    let score_row = b.ins().imul_imm_u(n, 4);
    let head_rows: Vec<Value> = (0..heads)
        .map(|h| b.ins().imul_imm_u(score_row, h as i64))
        .collect();
    // Scores of `rows` consecutive positions starting at j, for every head. The D/8 chunks
    // are a loop carrying the accumulators: fully unrolled, Cranelift's optimizer placed every
    // product and sum at its first use (the reduction after the last chunk), so all of the
    // body's loads were live at once and spilled (2.4 KB of stack for 4 heads).
    let n_accs = |rows: usize| 2 * rows * heads;
    let block = |b: &mut FunctionBuilder, j: Value, rows: usize| {
        let base_off = b.ins().imul_imm_u(j, row_bytes);
        let base = b.ins().iadd(keys, base_off);
        let head = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(head, ptr);
        for _ in 0..n_accs(rows) {
            b.append_block_param(head, types::F32X4);
            b.append_block_param(exit, types::F32X4);
        }
        let zero_i = b.ins().iconst(ptr, 0);
        let mut args: Vec<BlockArg> = vec![zero_i.into()];
        args.extend(std::iter::repeat_n(BlockArg::from(zero_v), n_accs(rows)));
        b.ins().jump(head, &args);
        b.switch_to_block(head);
        let hp = b.block_params(head).to_vec();
        let (c_off, accs) = (hp[0], hp[1..].to_vec());
        let go = b
            .ins()
            .icmp_imm_u(IntCC::UnsignedLessThan, c_off, (4 * d) as i64);
        let acc_args: Vec<BlockArg> = accs.iter().map(|&a| a.into()).collect();
        b.ins().brif(go, body, &[], exit, &acc_args);
        b.switch_to_block(body);
        b.seal_block(body);
        // Chunk c (bytes c_off..c_off + 32 of each head's query and key): accs[2·(h·rows + i)
        // + half].
        let kbase = b.ins().iadd(base, c_off);
        let qbase = b.ins().iadd(q, c_off);
        let ks: Vec<(Value, Value)> = (0..rows)
            .map(|i| {
                let off = (i as i64 * row_bytes) as i32;
                let ka = b.ins().load(types::F32X4, LOAD, kbase, off);
                let kb = b.ins().load(types::F32X4, LOAD, kbase, off + 16);
                (ka, kb)
            })
            .collect();
        let mut next: Vec<BlockArg> = vec![BlockArg::from(zero_i); n_accs(rows) + 1];
        next[0] = b.ins().iadd_imm_u(c_off, 32).into();
        for h in 0..heads {
            let q_off = (4 * h * d) as i32;
            let qa = b.ins().load(types::F32X4, LOAD, qbase, q_off);
            let qb = b.ins().load(types::F32X4, LOAD, qbase, q_off + 16);
            for (i, &(ka, kb)) in ks.iter().enumerate() {
                let a = 2 * (h * rows + i);
                let pa = b.ins().fmul(qa, ka);
                let pb = b.ins().fmul(qb, kb);
                next[1 + a] = b.ins().fadd(accs[a], pa).into();
                next[2 + a] = b.ins().fadd(accs[a + 1], pb).into();
            }
        }
        b.ins().jump(head, &next);
        b.seal_block(head);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let accs = b.block_params(exit).to_vec();
        let dst_off = b.ins().imul_imm_u(j, 4);
        let dst = b.ins().iadd(s, dst_off);
        for (h, &head_row) in head_rows.iter().enumerate() {
            let dst_h = b.ins().iadd(dst, head_row);
            for i in 0..rows {
                let a = 2 * (h * rows + i);
                let t = b.ins().fadd(accs[a], accs[a + 1]);
                let l: Vec<Value> = (0..4).map(|k| b.ins().extractlane(t, k as u8)).collect();
                let x = b.ins().fadd(l[0], l[1]);
                let y = b.ins().fadd(l[2], l[3]);
                let v = b.ins().fadd(x, y);
                let v = b.ins().fadd(v, zero);
                let v = b.ins().fmul(v, scale);
                b.ins().store(STORE, v, dst_h, (4 * i) as i32);
            }
        }
    };
    let zero_i = b.ins().iconst(ptr, 0);
    // Blocks of `rows`, then single positions up to n.
    let blocks = b.ins().udiv_imm_u(n, rows as i64);
    let full_end = b.ins().imul_imm_u(blocks, rows as i64);
    counted_loop(&mut b, ptr, zero_i, full_end, rows, |b, j| {
        block(b, j, rows)
    });
    if rows > 1 {
        counted_loop(&mut b, ptr, full_end, n, 1, |b, j| block(b, j, 1));
    }
    b.ins().return_(&[]);
    b.finalize(target.isa.frontend_config());
    Ok(func)
}

/// Builds the weighted-sum function.
pub fn build_weighted_sum(
    shape: &AttentionShape,
    params: &AttentionParams,
    target: &Target,
) -> Result<Function, CodegenError> {
    let (_, cols) = check(shape, params)?;
    let ptr = target.isa.pointer_type();
    let mut func = Function::with_name_signature(UserFuncName::user(0, 3), signature(target));
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (probs, values, out, n) = (p[0], p[1], p[2], p[3]);
    let (row_bytes, heads, d) = ((4 * shape.stride) as i64, shape.heads, shape.head_dim);
    let zero = b.ins().f32const(0.0);
    let zero_v = b.ins().splat(types::F32X4, zero);
    let zero_i = b.ins().iconst(ptr, 0);
    // Head h's probabilities start h·n floats into `probs`.
    let prob_row = b.ins().imul_imm_u(n, 4);
    let head_rows: Vec<Value> = (0..heads)
        .map(|h| b.ins().imul_imm_u(prob_row, h as i64))
        .collect();
    let accs_n = heads * cols;
    // The outputs start at +0.0, as the reference's do.
    for a in 0..heads * d / 4 {
        b.ins().store(STORE, zero_v, out, (16 * a) as i32);
    }
    // Positions in tiles of WEIGHTED_SUM_TILE: every column block runs over a tile before the
    // next tile, so the tile's value rows are still in cache for the later column blocks (one
    // pass per block over all positions re-read them from L3 once they outgrow L2). The
    // accumulators go through `out` between tiles; each element still sums over j in order.
    let tile_head = b.create_block();
    let tile_body = b.create_block();
    let done = b.create_block();
    b.append_block_param(tile_head, ptr);
    b.ins().jump(tile_head, &[zero_i.into()]);
    b.switch_to_block(tile_head);
    let t = b.block_params(tile_head)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, t, n);
    b.ins().brif(more, tile_body, &[], done, &[]);
    b.switch_to_block(tile_body);
    b.seal_block(tile_body);
    let t_next = b.ins().iadd_imm_u(t, WEIGHTED_SUM_TILE as i64);
    let t_end = b.ins().umin(t_next, n);
    for blk in 0..d / 4 / cols {
        let col0 = (16 * blk * cols) as i32;
        let out_off = |a: usize| (4 * (a / cols) * d) as i32 + col0 + (16 * (a % cols)) as i32;
        // Loop over j in the tile carrying `heads·cols` accumulators (acc[h·cols + c]).
        let head = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.append_block_param(head, ptr);
        for _ in 0..accs_n {
            b.append_block_param(head, types::F32X4);
            b.append_block_param(exit, types::F32X4);
        }
        let mut args: Vec<BlockArg> = vec![t.into()];
        for a in 0..accs_n {
            let acc = b.ins().load(types::F32X4, OUT_LOAD, out, out_off(a));
            args.push(acc.into());
        }
        b.ins().jump(head, &args);
        b.switch_to_block(head);
        let hp = b.block_params(head).to_vec();
        let (j, accs) = (hp[0], hp[1..].to_vec());
        let go = b.ins().icmp(IntCC::UnsignedLessThan, j, t_end);
        let acc_args: Vec<BlockArg> = accs.iter().map(|&a| a.into()).collect();
        b.ins().brif(go, body, &[], exit, &acc_args);
        b.switch_to_block(body);
        b.seal_block(body);
        let poff = b.ins().imul_imm_u(j, 4);
        let pp = b.ins().iadd(probs, poff);
        let pvs: Vec<Value> = head_rows
            .iter()
            .map(|&hr| {
                let pph = b.ins().iadd(pp, hr);
                let pj = b.ins().load(types::F32, LOAD, pph, 0);
                b.ins().splat(types::F32X4, pj)
            })
            .collect();
        let voff = b.ins().imul_imm_u(j, row_bytes);
        let vrow = b.ins().iadd(values, voff);
        let mut next: Vec<BlockArg> = vec![BlockArg::from(zero_i); accs_n + 1];
        next[0] = b.ins().iadd_imm_u(j, 1).into();
        for c in 0..cols {
            let v = b
                .ins()
                .load(types::F32X4, LOAD, vrow, col0 + (16 * c) as i32);
            for (h, &pv) in pvs.iter().enumerate() {
                let prod = b.ins().fmul(pv, v);
                next[1 + h * cols + c] = b.ins().fadd(accs[h * cols + c], prod).into();
            }
        }
        b.ins().jump(head, &next);
        b.seal_block(head);
        b.switch_to_block(exit);
        b.seal_block(exit);
        let res = b.block_params(exit).to_vec();
        for (a, &r) in res.iter().enumerate() {
            b.ins().store(STORE, r, out, out_off(a));
        }
    }
    b.ins().jump(tile_head, &[t_end.into()]);
    b.seal_block(tile_head);
    b.switch_to_block(done);
    b.seal_block(done);
    b.ins().return_(&[]);
    b.finalize(target.isa.frontend_config());
    Ok(func)
}

/// Compiles both kernels for any target without running them (e.g. aarch64 from x86-64).
pub fn compile_only(
    shape: &AttentionShape,
    params: &AttentionParams,
    target: &Target,
) -> Result<AttentionInfo, CodegenError> {
    let t0 = Instant::now();
    let (rows, cols) = check(shape, params)?;
    let (mut code, v1) = compile_to_code(build_scores(shape, params, target)?, target)?;
    let (code2, v2) = compile_to_code(build_weighted_sum(shape, params, target)?, target)?;
    code.extend_from_slice(&code2);
    Ok(AttentionInfo {
        shape: *shape,
        params: *params,
        rows,
        cols,
        target: target.info.clone(),
        code,
        vcode: join_listings(v1, v2),
        compile_time: t0.elapsed(),
    })
}

fn join_listings(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("; scores\n{a}\n; weighted_sum\n{b}")),
        (a, b) => a.or(b),
    }
}

type AttnFn = unsafe extern "C" fn(*const f32, *const f32, *mut f32, usize);

/// The JIT-compiled attention kernels of one head shape on this host.
pub struct AttentionKernels {
    scores: AttnFn,
    weighted_sum: AttnFn,
    info: AttentionInfo,
    _code: (JitFunction, JitFunction),
}

impl std::fmt::Debug for AttentionKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttentionKernels")
            .field("shape", &self.info.shape)
            .field("params", &self.info.params)
            .finish()
    }
}

impl AttentionKernels {
    /// Generates and JIT-compiles the kernels for `shape` at `level` on this host.
    pub fn compile(
        shape: &AttentionShape,
        params: &AttentionParams,
        level: IsaLevel,
    ) -> Result<AttentionKernels, CodegenError> {
        AttentionKernels::compile_for(shape, params, &Target::host(level)?)
    }

    /// Generates and JIT-compiles the kernels for a host `target`.
    pub fn compile_for(
        shape: &AttentionShape,
        params: &AttentionParams,
        target: &Target,
    ) -> Result<AttentionKernels, CodegenError> {
        let t0 = Instant::now();
        let (rows, cols) = check(shape, params)?;
        let s = JitFunction::compile(
            build_scores(shape, params, target)?,
            target,
            "bitnetc_attn_scores",
        )?;
        let w = JitFunction::compile(
            build_weighted_sum(shape, params, target)?,
            target,
            "bitnetc_attn_weighted_sum",
        )?;
        // SAFETY: both were built with exactly this signature in the platform's C convention.
        let (scores, weighted_sum) = unsafe {
            (
                std::mem::transmute::<*const u8, AttnFn>(s.ptr()),
                std::mem::transmute::<*const u8, AttnFn>(w.ptr()),
            )
        };
        let mut code = s.code.clone();
        code.extend_from_slice(&w.code);
        Ok(AttentionKernels {
            scores,
            weighted_sum,
            info: AttentionInfo {
                shape: *shape,
                params: *params,
                rows,
                cols,
                target: target.info.clone(),
                code,
                vcode: join_listings(s.vcode.clone(), w.vcode.clone()),
                compile_time: t0.elapsed(),
            },
            _code: (s, w),
        })
    }

    /// What was compiled.
    pub fn info(&self) -> &AttentionInfo {
        &self.info
    }

    /// Floats a cache slice must hold for `n` positions: `(n − 1)·stride + D`.
    fn span(&self, n: usize) -> usize {
        let s = &self.info.shape;
        if n == 0 {
            0
        } else {
            (n - 1) * s.stride + s.head_dim
        }
    }

    /// For each of the `heads` query heads `h` (`q[h·D..][..D]`) and `j < n`, with
    /// `n = s.len() / heads`: `s[h·n + j] = dot(q_h, keys[j·stride ..][..D]) · scale`.
    pub fn scores(&self, q: &[f32], keys: &[f32], s: &mut [f32]) -> Result<(), CodegenError> {
        let (d, heads) = (self.info.shape.head_dim, self.info.shape.heads);
        let n = s.len() / heads;
        if q.len() != heads * d || s.len() != heads * n || keys.len() < self.span(n) {
            return Err(CodegenError::Shape(format!(
                "attention scores: q has {} values ({heads} heads of D = {d}), {} scores, \
                 keys {} for {n} positions ({} needed)",
                q.len(),
                s.len(),
                keys.len(),
                self.span(n)
            )));
        }
        // SAFETY: lengths checked above.
        unsafe { (self.scores)(q.as_ptr(), keys.as_ptr(), s.as_mut_ptr(), n) };
        Ok(())
    }

    /// For each of the `heads` query heads `h` and `d < D`, with `n = p.len() / heads`:
    /// `o[h·D + d] = Σ_{j<n} p[h·n + j]·values[j·stride + d]`.
    pub fn weighted_sum(
        &self,
        p: &[f32],
        values: &[f32],
        o: &mut [f32],
    ) -> Result<(), CodegenError> {
        let (d, heads) = (self.info.shape.head_dim, self.info.shape.heads);
        let n = p.len() / heads;
        if o.len() != heads * d || p.len() != heads * n || values.len() < self.span(n) {
            return Err(CodegenError::Shape(format!(
                "attention weighted sum: out has {} values ({heads} heads of D = {d}), {} \
                 probabilities, values {} for {n} positions ({} needed)",
                o.len(),
                p.len(),
                values.len(),
                self.span(n)
            )));
        }
        // SAFETY: lengths checked above.
        unsafe { (self.weighted_sum)(p.as_ptr(), values.as_ptr(), o.as_mut_ptr(), n) };
        Ok(())
    }
}
