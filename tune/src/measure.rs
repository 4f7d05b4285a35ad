//! Running and timing candidates on realistic buffers, after checking their output.
//!
//! * One-token GEMV: random ternary codes of the kernel's shape, repacked in the candidate's
//!   layout and copied until the copies exceed the last-level cache several times over, so that
//!   every call streams its weights from memory, as a decode step does.
//! * Prompt GEMM: one copy, which stays in cache, as one layer's weights do while a prompt's
//!   token blocks go through it; time per token.
//! * Head: the model's own table (large enough to come from memory; Q6_K and Q8_0 repacked as
//!   the runtime does), all rows.
//!
//! Each candidate's output is first compared with a scalar reference written here (integer
//! accumulators exactly; head logits within 1e-5 of the absolute dot product); a mismatch is an
//! error and the candidate can never win. Times are the median of several repetitions after a
//! warm-up, with the work split over the same worker pool and parts the runtime uses.

use std::time::Instant;

use bitnetc_codegen::cpu::attention::{AttentionKernels, AttentionShape as AttnShape};
use bitnetc_codegen::cpu::head::{repack_q6k, repack_q8_0, HeadFormat, HeadKernel, HeadShape};
use bitnetc_codegen::cpu::{
    split_groups, ExpandedActivations, ExpandedBatch, GemvKernel, GemvShape, Layout,
    RepackedMatrix, Target, WorkerPool, MAX_TOKENS,
};
use bitnetc_models::quant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::params::TunedParams;
use crate::TuneError;

/// Median of `reps` samples of `sample` after one unmeasured call.
pub fn median_of(reps: usize, mut sample: impl FnMut() -> f64) -> f64 {
    sample();
    let mut v: Vec<f64> = (0..reps.max(1)).map(|_| sample()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes the GEMV copies should span: four times the last-level cache, 64 MiB to 1 GiB, and
/// at most a quarter of the memory available. (Some hosts report a last-level cache of
/// hundreds of MiB: on a Xeon reporting 480 MiB, copies capped at 512 MiB and at 256 per
/// matrix, 105 MiB for the 2560 × 640 one, were timed from cache, and the variants picked
/// decoded 7 % slower than the defaults.)
pub fn rotation_bytes() -> usize {
    let llc = last_level_cache_bytes().unwrap_or(32 << 20);
    let span = (4 * llc).clamp(64 << 20, 1 << 30);
    match available_memory_bytes() {
        Some(avail) => span.min(avail / 4).max(64 << 20),
        None => span,
    }
}

/// Bytes of calls one timed GEMV sample makes: each sample goes on through the copies where
/// the last one stopped, so every call still finds its weights out of cache.
const SAMPLE_BYTES: usize = 128 << 20;

/// At most this many calls per sample (small matrices: the call itself dominates).
const MAX_SAMPLE_CALLS: usize = 1024;

/// `MemAvailable` of `/proc/meminfo`.
fn available_memory_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// The largest cache size sysfs reports for CPU 0.
fn last_level_cache_bytes() -> Option<usize> {
    let mut best = None;
    for i in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
        let Ok(s) = std::fs::read_to_string(p) else {
            continue;
        };
        let s = s.trim();
        let (num, mul) = match s.strip_suffix('K') {
            Some(n) => (n, 1 << 10),
            None => match s.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (s, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(Some(n * mul));
        }
    }
    best
}

/// Raw pointers handed to pool parts.
#[derive(Clone, Copy)]
struct Ptrs {
    w: usize,
    x: usize,
    out: usize,
}

/// Runs `kernel` over all its row groups, split like the runtime splits them.
fn run_split(
    pool: &WorkerPool,
    kernel: &GemvKernel,
    w: &RepackedMatrix,
    x: *const i8,
    out: *mut i32,
) {
    let parts = split_groups(kernel.groups(), pool.threads());
    let p = Ptrs {
        w: w.bytes().as_ptr() as usize,
        x: x as usize,
        out: out as usize,
    };
    pool.run(&|i| {
        let Some(g) = parts.get(i) else { return };
        let rows = kernel.rows_of(g.clone());
        // SAFETY: `w` is a matrix of the kernel's shape, `x` holds the kernel's token rows,
        // `out` tokens·M values; parts write disjoint rows.
        unsafe {
            kernel.run_raw(
                p.w as *const u8,
                p.x as *const i8,
                (p.out as *mut i32).add(rows.start),
                g.clone(),
            )
        }
    });
}

/// Measures GEMV and GEMM candidates of one ternary shape.
pub struct TernaryHarness {
    k: usize,
    m: usize,
    target: Target,
    pool: WorkerPool,
    codes: Vec<u8>,
    /// `MAX_TOKENS` activation rows.
    q: Vec<Vec<i8>>,
    /// Scalar reference accumulators of each row.
    want: Vec<Vec<i32>>,
    rotate: usize,
    copies: Option<(Layout, Vec<RepackedMatrix>)>,
    reps: usize,
}

impl TernaryHarness {
    /// A harness for `K × M` on `threads` threads, code for `target`.
    pub fn new(
        k: usize,
        m: usize,
        threads: usize,
        target: Target,
    ) -> Result<TernaryHarness, TuneError> {
        if k == 0 || !k.is_multiple_of(16) || m == 0 {
            return Err(TuneError::Invalid(format!("ternary shape {k}×{m}")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64((k * 31 + m) as u64);
        let codes: Vec<u8> = (0..k * m).map(|_| rng.gen_range(0..3u8)).collect();
        let q: Vec<Vec<i8>> = (0..MAX_TOKENS)
            .map(|_| (0..k).map(|_| rng.gen()).collect())
            .collect();
        let want = q.iter().map(|q| scalar_gemv(&codes, q, k, m)).collect();
        Ok(TernaryHarness {
            k,
            m,
            target,
            pool: WorkerPool::new(threads)?,
            codes,
            q,
            want,
            rotate: rotation_bytes(),
            copies: None,
            reps: 5,
        })
    }

    /// Makes the copies hold the weights in `layout`: all the rotated copies with `rotated`,
    /// else at least one.
    fn ensure_copies(&mut self, layout: Layout, rotated: bool) -> Result<(), TuneError> {
        let have = match &self.copies {
            Some((l, v)) if *l == layout => v.len(),
            _ => 0,
        };
        let bytes = layout.groups(self.m) * layout.group_bytes(self.k);
        let n = if rotated {
            (self.rotate / bytes.max(1)).clamp(1, 1 << 14)
        } else {
            1
        };
        if have < n {
            self.copies = None;
            let w = RepackedMatrix::from_codes(&self.codes, self.k, self.m, 1.0, layout)?;
            let mut v = Vec::with_capacity(n);
            for _ in 1..n {
                v.push(w.clone());
            }
            v.push(w);
            self.copies = Some((layout, v));
        }
        Ok(())
    }

    /// Frees the rotated copies but one (the prompt GEMM times a single copy, in cache).
    pub fn release_rotation(&mut self) {
        if let Some((_, v)) = &mut self.copies {
            v.truncate(1);
            v.shrink_to_fit();
        }
    }

    /// Nanoseconds per call of the one-token GEMV with values `p` (a [`TunedParams::Gemv`]).
    pub fn measure_gemv(&mut self, p: &TunedParams) -> Result<f64, TuneError> {
        let (Some(layout), Some(params)) = (p.layout(), p.gemv_params()) else {
            return Err(TuneError::Invalid(format!("{p} is not a GEMV candidate")));
        };
        let shape = GemvShape {
            k: self.k,
            m: self.m,
            layout,
        };
        let kernel = GemvKernel::compile_for(&shape, &params, &self.target)?;
        let xq = ExpandedActivations::new(&self.q[0]);
        let want = self.want[0].clone();
        let reps = self.reps;
        let m = self.m;
        self.ensure_copies(layout, true)?;
        let mats = &self.copies.as_ref().expect("ensured").1;
        let mut out = vec![i32::MIN; m];
        let pool = &self.pool;
        run_split(
            pool,
            &kernel,
            &mats[0],
            xq.as_slice().as_ptr(),
            out.as_mut_ptr(),
        );
        check_exact(&out, &want, p)?;
        let calls = (SAMPLE_BYTES / mats[0].bytes().len().max(1)).clamp(1, MAX_SAMPLE_CALLS);
        let mut next = 0;
        Ok(median_of(reps, || {
            let t = Instant::now();
            for _ in 0..calls {
                let w = &mats[next];
                next = (next + 1) % mats.len();
                run_split(pool, &kernel, w, xq.as_slice().as_ptr(), out.as_mut_ptr());
            }
            t.elapsed().as_nanos() as f64 / calls as f64
        }))
    }

    /// Nanoseconds per token of the prompt GEMM with values `p` (a [`TunedParams::Gemm`]) on
    /// weights in `layout`.
    pub fn measure_gemm(&mut self, p: &TunedParams, layout: Layout) -> Result<f64, TuneError> {
        let Some(params) = p.gemv_params().filter(|_| p.layout().is_none()) else {
            return Err(TuneError::Invalid(format!("{p} is not a GEMM candidate")));
        };
        let shape = GemvShape {
            k: self.k,
            m: self.m,
            layout,
        };
        let kernel = GemvKernel::compile_for(&shape, &params, &self.target)?;
        let t = params.tokens;
        let mut xb = ExpandedBatch::new(self.k, t);
        for (i, q) in self.q.iter().take(t).enumerate() {
            xb.fill(i, q);
        }
        let want: Vec<i32> = self.want[..t].concat();
        let (reps, m) = (self.reps, self.m);
        self.ensure_copies(layout, false)?;
        let w = &self.copies.as_ref().expect("ensured").1[0];
        let mut out = vec![i32::MIN; t * m];
        let pool = &self.pool;
        run_split(pool, &kernel, w, xb.as_slice().as_ptr(), out.as_mut_ptr());
        check_exact(&out, &want, p)?;
        let calls = 16usize.div_ceil(t);
        Ok(median_of(reps, || {
            let start = Instant::now();
            for _ in 0..calls {
                run_split(pool, &kernel, w, xb.as_slice().as_ptr(), out.as_mut_ptr());
            }
            start.elapsed().as_nanos() as f64 / (calls * t) as f64
        }))
    }
}

/// `acc[m] = Σ_k codes[m·K + k]·q[k]`, the plain definition.
fn scalar_gemv(codes: &[u8], q: &[i8], k: usize, m: usize) -> Vec<i32> {
    (0..m)
        .map(|r| {
            codes[r * k..(r + 1) * k]
                .iter()
                .zip(q)
                .map(|(&c, &v)| i32::from(c) * i32::from(v))
                .sum()
        })
        .collect()
}

fn check_exact(got: &[i32], want: &[i32], p: &TunedParams) -> Result<(), TuneError> {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(TuneError::Mismatch {
            kernel: "ternary".into(),
            params: p.to_string(),
            problem: format!("value {i}: {} instead of {}", got[i], want[i]),
        }),
    }
}

/// Measures head candidates on a model's table.
pub struct HeadHarness<'a> {
    /// The table as the kernel reads it (Q6_K repacked by the harness).
    table: std::borrow::Cow<'a, [u8]>,
    shape: HeadShape,
    target: Target,
    pool: WorkerPool,
    x: Vec<f32>,
    /// Rows checked against the reference, with their reference value and tolerance.
    checks: Vec<(usize, f64, f64)>,
    reps: usize,
}

impl<'a> HeadHarness<'a> {
    /// A harness for `table` (`rows × K` elements of `format`, little-endian; for
    /// [`HeadFormat::Q6K`] and [`HeadFormat::Q8_0`] the file's rows, repacked here) on `threads`
    /// threads.
    pub fn new(
        table: &'a [u8],
        k: usize,
        rows: usize,
        format: HeadFormat,
        threads: usize,
        target: Target,
    ) -> Result<HeadHarness<'a>, TuneError> {
        let expected = match format {
            HeadFormat::F16 { .. } | HeadFormat::BF16 => Some(2 * k * rows),
            HeadFormat::Q6K if k.is_multiple_of(256) => Some(rows * (k / 256) * Q6K_BLOCK_BYTES),
            HeadFormat::Q8_0 if k.is_multiple_of(32) => Some(rows * (k / 32) * Q8_0_BLOCK_BYTES),
            _ => None,
        };
        if expected != Some(table.len()) || k == 0 || !k.is_multiple_of(8) || rows == 0 {
            return Err(TuneError::Invalid(format!(
                "{} head table of {} bytes for {rows} rows × {k}",
                format.name(),
                table.len()
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let step = (rows / 61).max(1);
        let checked = (0..rows).step_by(step).chain(std::iter::once(rows - 1));
        let (table, checks) = if format == HeadFormat::Q6K {
            let q8k = quant::q8_k::quantize_row(&x)
                .map_err(|e| TuneError::Invalid(format!("activations: {e}")))?;
            let row_bytes = (k / 256) * Q6K_BLOCK_BYTES;
            let checks = checked
                .map(|r| {
                    let want = q6k_q8k_logit(&table[r * row_bytes..(r + 1) * row_bytes], &q8k);
                    (r, f64::from(want), 0.0)
                })
                .collect();
            let packed = repack_q6k(table, k, rows)?;
            (std::borrow::Cow::Owned(packed), checks)
        } else if format == HeadFormat::Q8_0 {
            let acts = quant::q8_0::quantize_activations(&x)
                .map_err(|e| TuneError::Invalid(format!("activations: {e}")))?;
            let row_bytes = (k / 32) * Q8_0_BLOCK_BYTES;
            let checks = checked
                .map(|r| {
                    let want = q8_0_logit(&table[r * row_bytes..(r + 1) * row_bytes], &acts);
                    (r, f64::from(want), 0.0)
                })
                .collect();
            let packed = repack_q8_0(table, k, rows)?;
            (std::borrow::Cow::Owned(packed), checks)
        } else {
            let elem = |i: usize| -> f64 {
                let h = u16::from_le_bytes([table[2 * i], table[2 * i + 1]]);
                if format == HeadFormat::BF16 {
                    f64::from(half::bf16::from_bits(h).to_f32())
                } else {
                    f64::from(half::f16::from_bits(h).to_f32())
                }
            };
            let checks = checked
                .map(|r| {
                    let (mut dot, mut abs) = (0.0f64, 0.0f64);
                    for (j, &xj) in x.iter().enumerate() {
                        let p = elem(r * k + j) * f64::from(xj);
                        dot += p;
                        abs += p.abs();
                    }
                    (r, dot, 1e-5 * abs + 1e-30)
                })
                .collect();
            (std::borrow::Cow::Borrowed(table), checks)
        };
        Ok(HeadHarness {
            table,
            shape: HeadShape { k, rows, format },
            target,
            pool: WorkerPool::new(threads)?,
            x,
            checks,
            reps: 3,
        })
    }

    fn run(&self, kernel: &HeadKernel, out: &mut [f32]) -> Result<(), TuneError> {
        let parts = split_groups(self.shape.rows, self.pool.threads());
        let out_ptr = out.as_mut_ptr() as usize;
        let failure = std::sync::Mutex::new(None);
        self.pool.run(&|i| {
            let Some(r) = parts.get(i) else { return };
            // SAFETY: parts cover disjoint row ranges of `out`.
            let o = unsafe {
                std::slice::from_raw_parts_mut((out_ptr as *mut f32).add(r.start), r.len())
            };
            if let Err(e) = kernel.run(&self.table, &self.x, o, r.clone()) {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Nanoseconds per call (all rows) of the head with values `p` (a [`TunedParams::Head`]).
    pub fn measure(&self, p: &TunedParams) -> Result<f64, TuneError> {
        let Some(params) = p.head_params() else {
            return Err(TuneError::Invalid(format!("{p} is not a head candidate")));
        };
        let kernel = HeadKernel::compile_for(&self.shape, &params, &self.target)?;
        let mut out = vec![f32::NAN; self.shape.rows];
        self.run(&kernel, &mut out)?;
        for &(r, want, tol) in &self.checks {
            let got = f64::from(out[r]);
            if (got - want).abs() > tol || !got.is_finite() {
                return Err(TuneError::Mismatch {
                    kernel: "head".into(),
                    params: p.to_string(),
                    problem: format!("row {r}: {got} instead of {want} (± {tol:e})"),
                });
            }
        }
        let mut failure = None;
        let ns = median_of(self.reps, || {
            let t = Instant::now();
            if let Err(e) = self.run(&kernel, &mut out) {
                failure = Some(e);
            }
            t.elapsed().as_nanos() as f64
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(ns),
        }
    }
}

/// Bytes of one Q6_K super-block in a file.
const Q6K_BLOCK_BYTES: usize = 210;
/// Bytes of one Q8_0 block in a file (f16 `d`, 32 codes).
const Q8_0_BLOCK_BYTES: usize = 34;

/// The logit of one Q8_0 row (file layout) times Q8_0 activations, as llama.cpp and the
/// reference backend compute it: `Σ_b (d_b·dx_b)·f32(Σ w·q)` block by block in f32.
fn q8_0_logit(row: &[u8], x: &quant::q8_0::Q8_0Acts) -> f32 {
    let mut total = 0.0f32;
    for (b, blk) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
        let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let isum: i32 = blk[2..]
            .iter()
            .zip(&x.qs[32 * b..32 * (b + 1)])
            .map(|(&w, &q)| i32::from(w as i8) * i32::from(q))
            .sum();
        total += (d * x.d[b]) * isum as f32;
    }
    total
}

/// The logit of one Q6_K row (file layout) times Q8_K activations, in the order llama.cpp and
/// the reference backend use: per super-block the exact integer
/// `Σ_j scale_j·Σ_{e∈j} (q_e − 32)·x_e`, and `Σ_b (d_b·dx_b)·f32(isum_b)` in f32.
fn q6k_q8k_logit(row: &[u8], x: &quant::q8_k::Q8kRow) -> f32 {
    let mut total = 0.0f32;
    for (b, blk) in row.chunks_exact(Q6K_BLOCK_BYTES).enumerate() {
        let blk: &[u8; Q6K_BLOCK_BYTES] = blk.try_into().expect("exact chunks");
        let (q, scales, d) = quant::q6_k::block_parts(blk);
        let xs = &x.qs[256 * b..256 * (b + 1)];
        let isum: i32 = (0..16)
            .map(|j| {
                let sub: i32 = (16 * j..16 * (j + 1))
                    .map(|e| (i32::from(q[e]) - 32) * i32::from(xs[e]))
                    .sum();
                i32::from(scales[j]) * sub
            })
            .sum();
        total += (d * x.d[b]) * isum as f32;
    }
    total
}

/// Measures attention candidates: one decoding token's query heads over `positions` cached
/// positions of random keys and values laid out as the runtime's KV cache lays them out (each KV
/// head's rows consecutive), (head) items split over the pool as the runtime splits them, each head's scores and weighted sum checked bit for bit against a scalar reference of
/// the reference backend's order first.
pub struct AttentionHarness {
    shape: AttnShape,
    n_head: usize,
    group: usize,
    target: Target,
    pool: WorkerPool,
    q: Vec<f32>,
    kv: Vec<f32>,
    probs: Vec<f32>,
    want_scores: Vec<f32>,
    want_sum: Vec<f32>,
    positions: usize,
    reps: usize,
}

impl AttentionHarness {
    /// A harness for `n_head` query heads over `n_head_kv` KV heads of `head_dim` values,
    /// `positions` cached positions, on `threads` threads.
    pub fn new(
        head_dim: usize,
        n_head: usize,
        n_head_kv: usize,
        positions: usize,
        threads: usize,
        target: Target,
    ) -> Result<AttentionHarness, TuneError> {
        if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) || head_dim == 0 {
            return Err(TuneError::Invalid(format!(
                "attention heads {n_head}/{n_head_kv} of {head_dim}"
            )));
        }
        let stride = head_dim;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let q: Vec<f32> = (0..n_head * head_dim)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let kv: Vec<f32> = (0..n_head_kv * positions * stride)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect();
        let probs: Vec<f32> = (0..positions)
            .map(|_| rng.gen_range(0.0f32..0.01))
            .collect();
        let scale = 1.0 / (head_dim as f32).sqrt();
        let group = n_head / n_head_kv;
        let heads = AttnShape::heads_for_group(group);
        // The first block of heads (KV head 0): each head's scores, and the same probabilities
        // for every head of the block (so the same weighted sum).
        let want_scores = (0..heads)
            .flat_map(|h| {
                let qh = &q[h * head_dim..(h + 1) * head_dim];
                let kv = &kv;
                (0..positions).map(move |j| dot8(qh, &kv[j * stride..][..head_dim]) * scale)
            })
            .collect();
        let mut want_sum = vec![0.0f32; head_dim];
        for (j, &p) in probs.iter().enumerate() {
            for (o, &v) in want_sum.iter_mut().zip(&kv[j * stride..][..head_dim]) {
                *o += p * v;
            }
        }
        let want_sum = want_sum.repeat(heads);
        let probs = probs.repeat(heads);
        Ok(AttentionHarness {
            shape: AttnShape {
                head_dim,
                stride,
                scale,
                heads,
            },
            n_head,
            group,
            target,
            pool: WorkerPool::new(threads)?,
            q,
            kv,
            probs,
            want_scores,
            want_sum,
            positions,
            reps: 5,
        })
    }

    /// Nanoseconds per decoding step (all heads) with values `p` (a
    /// [`TunedParams::Attention`]).
    pub fn measure(&self, p: &TunedParams) -> Result<f64, TuneError> {
        let Some(params) = p.attention_params() else {
            return Err(TuneError::Invalid(format!(
                "{p} is not an attention candidate"
            )));
        };
        let k = AttentionKernels::compile_for(&self.shape, &params, &self.target)?;
        let (d, heads) = (self.shape.head_dim, self.shape.heads);
        let mut s = vec![f32::NAN; heads * self.positions];
        k.scores(&self.q[..heads * d], &self.kv, &mut s)?;
        let mut o = vec![f32::NAN; heads * d];
        k.weighted_sum(&self.probs, &self.kv, &mut o)?;
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        if !same(&s, &self.want_scores) || !same(&o, &self.want_sum) {
            return Err(TuneError::Mismatch {
                kernel: "attention".into(),
                params: p.to_string(),
                problem: "scores or weighted sum differ from the reference".into(),
            });
        }
        let parts = split_groups(self.n_head / heads, self.pool.threads());
        Ok(median_of(self.reps, || {
            let t = Instant::now();
            self.pool.run(&|i| {
                let Some(r) = parts.get(i) else { return };
                let mut s = vec![0.0f32; heads * self.positions];
                let mut o = vec![0.0f32; heads * d];
                for block in r.clone() {
                    let h = block * heads;
                    let off = (h / self.group) * self.positions * d;
                    let q = &self.q[h * d..(h + heads) * d];
                    // Lengths were checked by the calls above; these cannot fail.
                    let _ = k.scores(q, &self.kv[off..], &mut s);
                    let _ = k.weighted_sum(&self.probs, &self.kv[off..], &mut o);
                }
            });
            t.elapsed().as_nanos() as f64
        }))
    }
}

/// The reference `dot_f32` order.
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += ca[l] * cb[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + 0.0
}
