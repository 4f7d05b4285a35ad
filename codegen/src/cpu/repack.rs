//! Repacking ternary weight matrices into the layout generated GEMV/GEMM kernels read.
//!
//! A weight `[K, M]` (M rows of K codes) in I2_S, TQ1_0 or TQ2_0 is decoded with the
//! `bitnetc_models::quant` codecs into unsigned codes `0/1/2` (meaning `−1/0/+1`) and stored as
//! follows ([`Layout`]):
//!
//! * rows are cut into **groups** of `rows_per_group` rows; M is padded to a whole number of
//!   groups with zero-weight rows (code 1); a group is `R·K/4` contiguous bytes
//!   (`R = rows_per_group`): one memory stream for the kernel;
//! * inside a group, for each column chunk `c`, come the group's 16-byte **sub-vectors**, whose
//!   shape is the [`Pack`] kind:
//!   - [`Pack::Rows4Cols16`] (R a multiple of 4; chunks of 16 columns, `R/4` sub-vectors): byte
//!     `4i+t`, bit pair `f` (bits `2f..2f+2`) = row `4·sv+i`, column `16c+4f+t`. Shifting right
//!     by `2f` and masking each byte with 3 leaves, in byte `4i+t`, row `i`'s code for column
//!     `16c+4f+t`; a 4-way u8×i8 dot product against `q[16c+4f..+4]` repeated four times puts
//!     row `i`'s partial sum in i32 lane `i`.
//!   - [`Pack::Rows16Cols4`] (R a multiple of 16; chunks of 4 columns, `R/16` sub-vectors): byte
//!     `4i+t`, bit pair `f` = row `16·sv+4f+i`, column `4c+t`. Masking with `3 << 2f` (no shift)
//!     gives `4^f·code`; all four fields use the same activation vector `q[4c..4c+4]` repeated,
//!     each into its own accumulator, which is divided by `4^f` (an exact arithmetic shift) at
//!     the end. 8 vector operations per 16 weight bytes instead of 11, one activation load.
//!     (The `pmaddubsw` kernels shift the upper two fields down by 4 bits first, so their
//!     i16 products stay small enough to be summed over several column chunks.)
//!
//! The kernel computes `acc = Σ code·q`; the signed result is `acc − Σ q`.

use bitnetc_ir::{DType, Weight};
use bitnetc_models::quant::{i2s, tq1_0, tq2_0, QuantError};
use rayon::prelude::*;

use crate::CodegenError;

/// The shape of one 16-byte sub-vector of packed codes (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pack {
    /// 4 rows × 16 columns; fields selected by shift + mask.
    Rows4Cols16,
    /// 16 rows × 4 columns; fields selected by mask only.
    Rows16Cols4,
}

impl Pack {
    /// Rows in one sub-vector.
    pub fn rows(self) -> usize {
        match self {
            Pack::Rows4Cols16 => 4,
            Pack::Rows16Cols4 => 16,
        }
    }

    /// Columns in one sub-vector (one column chunk).
    pub fn cols(self) -> usize {
        64 / self.rows()
    }
}

/// Weight layout parameters (the tuner's knobs on the data side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Sub-vector shape.
    pub pack: Pack,
    /// Rows per group: a multiple of `pack.rows()`. Each group is one contiguous stream of
    /// `R·K/4` bytes read by one set of `R/4` i32x4 accumulators.
    pub rows_per_group: usize,
}

/// The fastest layout measured so far on the 2-core AVX-512 VNNI machine (decode GEMV from
/// memory, 1 thread, 2560×6912: 12.7 GB/s = 83 % of the read probe, against 11.8 GB/s for the
/// best `rows4` variant): `rows16(16)`.
impl Default for Layout {
    fn default() -> Layout {
        Layout::rows16(16)
    }
}

impl Layout {
    /// [`Pack::Rows4Cols16`] with `r` rows per group.
    pub fn rows4(r: usize) -> Layout {
        Layout {
            pack: Pack::Rows4Cols16,
            rows_per_group: r,
        }
    }

    /// [`Pack::Rows16Cols4`] with `r` rows per group.
    pub fn rows16(r: usize) -> Layout {
        Layout {
            pack: Pack::Rows16Cols4,
            rows_per_group: r,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), CodegenError> {
        let (r, pr) = (self.rows_per_group, self.pack.rows());
        if r == 0 || r % pr != 0 || r > 64 {
            return Err(CodegenError::Unsupported(format!(
                "rows_per_group = {r}: must be a multiple of {pr} between {pr} and 64 for {:?}",
                self.pack
            )));
        }
        Ok(())
    }

    /// Sub-vectors per group and column chunk.
    pub fn subvectors(&self) -> usize {
        self.rows_per_group / self.pack.rows()
    }

    /// Bytes of one group for a row length of `k`.
    pub fn group_bytes(&self, k: usize) -> usize {
        self.rows_per_group * k / 4
    }

    /// Number of groups for `m` rows.
    pub fn groups(&self, m: usize) -> usize {
        m.div_ceil(self.rows_per_group)
    }

    /// Bytes of one column chunk of a group (all its sub-vectors).
    pub fn chunk_bytes(&self) -> usize {
        self.subvectors() * 16
    }

    /// Byte offset of the sub-vector (`group`, column chunk `c`, sub-vector `sv`).
    pub fn offset(&self, k: usize, group: usize, c: usize, sv: usize) -> usize {
        group * self.group_bytes(k) + c * self.chunk_bytes() + sv * 16
    }

    /// (sub-vector, byte, bit pair) of row `i` (within its group) and column `col`.
    pub fn position(&self, i: usize, col: usize) -> (usize, usize, usize) {
        match self.pack {
            Pack::Rows4Cols16 => (i / 4, 4 * (i % 4) + col % 4, (col % 16) / 4),
            Pack::Rows16Cols4 => (i / 16, 4 * (i % 4) + col % 4, (i % 16) / 4),
        }
    }
}

/// How the outputs of the rows are scaled.
#[derive(Clone, Debug, PartialEq)]
pub enum RowScales {
    /// One scale for the whole tensor (I2_S).
    Tensor(f32),
    /// One scale per row (TQ1_0 / TQ2_0 rows whose non-empty 256-blocks share one scale;
    /// an all-zero row gets 0).
    PerRow(Vec<f32>),
}

impl RowScales {
    /// The scale of row `m`.
    pub fn get(&self, m: usize) -> f32 {
        match self {
            RowScales::Tensor(s) => *s,
            RowScales::PerRow(v) => v[m],
        }
    }
}

/// 64-byte aligned storage unit.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Bytes owned elsewhere (a memory-mapped artifact section), kept alive by an `Arc`.
pub type SharedBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Where a matrix's packed bytes live.
#[derive(Clone)]
enum Storage {
    /// Built here, 64-byte aligned.
    Owned(Vec<Line>),
    /// A 64-byte aligned range of shared bytes (an ahead-of-time artifact).
    Shared(SharedBytes, usize),
}

/// A ternary matrix in the [`Layout`] the generated kernels read.
#[derive(Clone)]
pub struct RepackedMatrix {
    /// Inputs per row.
    pub k: usize,
    /// Rows (outputs), without padding.
    pub m: usize,
    /// The layout.
    pub layout: Layout,
    /// The source format.
    pub source: DType,
    /// Per-row scales.
    pub scales: RowScales,
    lines: Storage,
    len: usize,
}

impl std::fmt::Debug for RepackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RepackedMatrix({}x{} from {}, {:?}, {} bytes)",
            self.m, self.k, self.source, self.layout, self.len
        )
    }
}

fn quant_err(name: &str, e: QuantError) -> CodegenError {
    CodegenError::Weight {
        name: name.to_string(),
        problem: e.to_string(),
    }
}

/// The scale shared by every 256-block of a TQ row that holds a non-zero weight (`0` for an
/// all-zero row), or `None` if they differ.
fn uniform_scale(codes: &[u8], scales: &[f32]) -> Option<f32> {
    let mut shared: Option<f32> = None;
    for (block, &d) in codes.chunks(256).zip(scales) {
        if block.iter().all(|&c| c == 1) {
            continue;
        }
        match shared {
            None => shared = Some(d),
            Some(s) if s.to_bits() == d.to_bits() => {}
            Some(_) => return None,
        }
    }
    Some(shared.unwrap_or(0.0))
}

/// A ternary weight (`dims = [K, M]`, I2_S / TQ1_0 / TQ2_0), checked and decoded one row at a
/// time into unsigned codes `0/1/2` and the row's scale. Every backend's repacking starts here.
pub struct TernaryRows<'w> {
    name: &'w str,
    dtype: DType,
    bytes: &'w [u8],
    /// Inputs per row.
    pub k: usize,
    /// Rows (outputs).
    pub m: usize,
    /// The tensor's scale (I2_S); `None` for per-row scales (TQ1_0 / TQ2_0).
    pub tensor_scale: Option<f32>,
}

impl<'w> TernaryRows<'w> {
    /// Checks a ternary weight.
    ///
    /// Errors: other formats; K not a multiple of the format's block; bad payload length;
    /// invalid scales.
    pub fn new(weight: &'w Weight) -> Result<TernaryRows<'w>, CodegenError> {
        let name = weight.name.as_str();
        if weight.dims.len() != 2 {
            return Err(CodegenError::Weight {
                name: name.into(),
                problem: format!("expected 2 dimensions [K, M], got {:?}", weight.dims),
            });
        }
        let (k, m) = (weight.dims[0] as usize, weight.dims[1] as usize);
        let dtype = weight.dtype;
        let bytes = weight.data.bytes();
        let block = match dtype {
            DType::I2S => i2s::BLOCK_ELEMS,
            DType::TQ1_0 | DType::TQ2_0 => 256,
            other => {
                return Err(CodegenError::Weight {
                    name: name.into(),
                    problem: format!("{other} is not a ternary format"),
                })
            }
        };
        if k == 0 || m == 0 || k % block != 0 {
            return Err(CodegenError::Weight {
                name: name.into(),
                problem: format!("K = {k}, M = {m}: K must be a non-zero multiple of {block}"),
            });
        }
        let tensor_scale = match dtype {
            DType::I2S => Some(i2s::scale(bytes, k * m).map_err(|e| quant_err(name, e))?),
            _ => {
                let rb = dtype.row_bytes(k as u64).expect("checked multiple") as usize;
                if bytes.len() != rb * m {
                    return Err(quant_err(
                        name,
                        QuantError::WrongByteLength {
                            dtype,
                            n_elems: k * m,
                            expected: rb * m,
                            actual: bytes.len(),
                        },
                    ));
                }
                None
            }
        };
        Ok(TernaryRows {
            name,
            dtype,
            bytes,
            k,
            m,
            tensor_scale,
        })
    }

    /// The source format.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Decodes row `row` into `codes` (`k` of them) and returns its scale: the row's shared
    /// 256-block scale for TQ (0 for an all-zero row), 0 for I2_S (see `tensor_scale`). `blk`
    /// is scratch for `k / 256` block scales.
    ///
    /// Errors: a code 3; a TQ row whose non-empty blocks have different scales (per-block
    /// scales are not supported by the generated kernels yet).
    pub fn decode(
        &self,
        row: usize,
        codes: &mut [u8],
        blk: &mut [f32],
    ) -> Result<f32, CodegenError> {
        let (name, dtype, bytes, k) = (self.name, self.dtype, self.bytes, self.k);
        match dtype {
            DType::I2S => {
                i2s::decode_codes(bytes, row * k, codes).map_err(|e| quant_err(name, e))?
            }
            DType::TQ2_0 | DType::TQ1_0 => {
                let rb = dtype.row_bytes(k as u64).expect("checked") as usize;
                let src = &bytes[row * rb..(row + 1) * rb];
                if dtype == DType::TQ2_0 {
                    tq2_0::decode_row_codes(src, codes, blk)
                } else {
                    tq1_0::decode_row_codes(src, codes, blk)
                }
                .map_err(|e| quant_err(name, e))?
            }
            _ => unreachable!("checked in new"),
        }
        // The max folds into vector code; the position is only looked for on failure (a scalar
        // search over every row was 40 % of a model's load time).
        let max = codes.iter().fold(0u8, |m, &c| m.max(c));
        if max > 2 {
            let i = codes.iter().position(|&c| c > 2).unwrap_or(0);
            return Err(quant_err(
                name,
                QuantError::BadCode {
                    dtype,
                    index: row * k + i,
                    code: codes[i],
                },
            ));
        }
        if self.tensor_scale.is_some() {
            return Ok(0.0);
        }
        uniform_scale(codes, blk).ok_or_else(|| {
            CodegenError::Unsupported(format!(
                "{name}: row {row} has 256-blocks with different {dtype} scales; \
                 per-block scales are not supported by the generated kernels yet"
            ))
        })
    }
}

impl RepackedMatrix {
    /// Repacks a ternary weight (`dims = [K, M]`, I2_S / TQ1_0 / TQ2_0).
    ///
    /// Errors: those of [`TernaryRows::new`] and [`TernaryRows::decode`].
    pub fn from_weight(weight: &Weight, layout: Layout) -> Result<RepackedMatrix, CodegenError> {
        layout.validate()?;
        let src = TernaryRows::new(weight)?;
        let (k, m, dtype, tensor_scale) = (src.k, src.m, src.dtype, src.tensor_scale);
        let decode_row =
            |row: usize, codes: &mut [u8], blk: &mut [f32]| src.decode(row, codes, blk);

        let r = layout.rows_per_group;
        let gb = layout.group_bytes(k);
        let groups = layout.groups(m);
        let len = groups * gb;
        debug_assert_eq!(len % 64, 0);
        let mut lines = vec![Line([0u8; 64]); len / 64];
        let mut row_scales = vec![0f32; groups * r];
        {
            // SAFETY: `Line` is 64 plain bytes with no padding; the view covers exactly `lines`.
            let data: &mut [u8] =
                unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), len) };
            data.par_chunks_mut(gb)
                .zip(row_scales.par_chunks_mut(r))
                .enumerate()
                .try_for_each(|(g, (dst, scl))| {
                    let mut codes = vec![1u8; r * k];
                    let mut blk = vec![0f32; k / 256];
                    for i in 0..r {
                        let row = g * r + i;
                        if row < m {
                            scl[i] = decode_row(row, &mut codes[i * k..(i + 1) * k], &mut blk)?;
                        }
                    }
                    pack_group(&codes, k, &layout, dst);
                    Ok::<(), CodegenError>(())
                })?;
        }
        row_scales.truncate(m);
        let scales = match tensor_scale {
            Some(s) => RowScales::Tensor(s),
            None => RowScales::PerRow(row_scales),
        };
        Ok(RepackedMatrix {
            k,
            m,
            layout,
            source: dtype,
            scales,
            lines: Storage::Owned(lines),
            len,
        })
    }

    /// Repacks plain codes (`m` rows of `k` codes, each 0..=2, row-major) with a tensor scale.
    /// `k` must be a multiple of 16. Used by tests and synthetic benchmarks.
    pub fn from_codes(
        codes: &[u8],
        k: usize,
        m: usize,
        scale: f32,
        layout: Layout,
    ) -> Result<RepackedMatrix, CodegenError> {
        layout.validate()?;
        if k == 0 || m == 0 || !k.is_multiple_of(16) || codes.len() != k * m {
            return Err(CodegenError::Unsupported(format!(
                "from_codes: {} codes for K = {k} (a multiple of 16), M = {m}",
                codes.len()
            )));
        }
        if let Some(i) = codes.iter().position(|&c| c > 2) {
            return Err(CodegenError::Unsupported(format!(
                "from_codes: code {} at {i}",
                codes[i]
            )));
        }
        let r = layout.rows_per_group;
        let gb = layout.group_bytes(k);
        let len = layout.groups(m) * gb;
        // K multiple of 16 and R multiple of 4 give a multiple of 16, not always 64: round up.
        let mut lines = vec![Line([0u8; 64]); len.div_ceil(64)];
        {
            // SAFETY: as in `from_weight`; the view is no longer than `lines`.
            let data: &mut [u8] =
                unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), len) };
            let mut buf = vec![1u8; r * k];
            for (g, dst) in data.chunks_mut(gb).enumerate() {
                buf.fill(1);
                let rows = r.min(m - g * r);
                buf[..rows * k].copy_from_slice(&codes[g * r * k..(g * r + rows) * k]);
                pack_group(&buf, k, &layout, dst);
            }
        }
        Ok(RepackedMatrix {
            k,
            m,
            layout,
            source: DType::I2S,
            scales: RowScales::Tensor(scale),
            lines: Storage::Owned(lines),
            len,
        })
    }

    /// The packed bytes (`groups · R·K/4`).
    pub fn bytes(&self) -> &[u8] {
        match &self.lines {
            // SAFETY: `lines` holds at least `len` initialized bytes.
            Storage::Owned(lines) => unsafe {
                std::slice::from_raw_parts(lines.as_ptr().cast::<u8>(), self.len)
            },
            Storage::Shared(bytes, start) => &(**bytes).as_ref()[*start..*start + self.len],
        }
    }

    /// A matrix over packed bytes kept elsewhere (`bytes[start..]`, as [`RepackedMatrix::bytes`]
    /// gave them when the matrix was built): checks the length and the 64-byte alignment the
    /// kernels rely on.
    #[allow(clippy::too_many_arguments)]
    pub fn from_shared(
        k: usize,
        m: usize,
        layout: Layout,
        source: DType,
        scales: RowScales,
        bytes: SharedBytes,
        start: usize,
        len: usize,
    ) -> Result<RepackedMatrix, CodegenError> {
        layout.validate()?;
        let want = layout.groups(m) * layout.group_bytes(k);
        let all = (*bytes).as_ref();
        let bad = |p: String| CodegenError::Weight {
            name: format!("prepared {m}x{k} matrix"),
            problem: p,
        };
        if len != want || start.checked_add(len).is_none_or(|e| e > all.len()) {
            return Err(bad(format!(
                "{len} bytes at {start} of {} (expected {want})",
                all.len()
            )));
        }
        if !(all.as_ptr() as usize + start).is_multiple_of(64) {
            return Err(bad("bytes are not 64-byte aligned".into()));
        }
        if let RowScales::PerRow(v) = &scales {
            if v.len() != m {
                return Err(bad(format!("{} row scales for {m} rows", v.len())));
            }
        }
        Ok(RepackedMatrix {
            k,
            m,
            layout,
            source,
            scales,
            lines: Storage::Shared(bytes, start),
            len,
        })
    }

    /// Number of row groups.
    pub fn groups(&self) -> usize {
        self.layout.groups(self.m)
    }

    /// Rows including padding.
    pub fn padded_rows(&self) -> usize {
        self.groups() * self.layout.rows_per_group
    }

    /// Reads back the code of (`row`, `col`) from the packed form (for tests and debugging).
    pub fn code(&self, row: usize, col: usize) -> u8 {
        let r = self.layout.rows_per_group;
        let (sv, byte, f) = self.layout.position(row % r, col);
        let c = col / self.layout.pack.cols();
        let b = self.bytes()[self.layout.offset(self.k, row / r, c, sv) + byte];
        (b >> (2 * f)) & 3
    }
}

/// Packs one group: `codes` holds `R` rows of `k` codes (`k` a multiple of 16); `dst` is
/// `R·k/4` bytes, every one of them written.
///
/// Every 4 consecutive codes of a row (columns 4j..4j+4) land in 4 consecutive bytes of the
/// group at one bit pair (see the module docs), and each such 32-bit word of `dst` gathers four
/// of them at bit pairs 0..4: the word is built in a register from its four sources (codes ≤ 2
/// shifted by ≤ 6 stay inside their byte) and stored once.
fn pack_group(codes: &[u8], k: usize, layout: &Layout, dst: &mut [u8]) {
    let r = layout.rows_per_group;
    // Columns 4j..4j+4 of row `row` as one little-endian word.
    let (quads, _) = codes.as_chunks::<4>();
    let (words, _) = dst.as_chunks_mut::<4>();
    let quad = |row: usize, j: usize| u32::from_le_bytes(quads[row * k / 4 + j]);
    let mut store = |off: usize, word: u32| words[off / 4] = word.to_le_bytes();
    match layout.pack {
        // Word at `j·R + 16·b + 4·p`: rows `16b + 4s + p` (s = 0..4, bit pair s), columns 4j..4j+4.
        Pack::Rows16Cols4 => {
            for j in 0..k / 4 {
                for b in 0..r / 16 {
                    for p in 0..4 {
                        let row = |s: usize| 16 * b + 4 * s + p;
                        let word = quad(row(0), j)
                            | quad(row(1), j) << 2
                            | quad(row(2), j) << 4
                            | quad(row(3), j) << 6;
                        store(j * r + 16 * b + 4 * p, word);
                    }
                }
            }
        }
        // Word at `c·4R + 16·q + 4·p`: row `4q + p`, columns `16c + 4s..16c + 4s + 4` at bit
        // pair s.
        Pack::Rows4Cols16 => {
            for c in 0..k / 16 {
                for i in 0..r {
                    let (q, p) = (i / 4, i % 4);
                    let word = quad(i, 4 * c)
                        | quad(i, 4 * c + 1) << 2
                        | quad(i, 4 * c + 2) << 4
                        | quad(i, 4 * c + 3) << 6;
                    store(c * 4 * r + 16 * q + 4 * p, word);
                }
            }
        }
    }
}

/// Activations expanded for the kernels: each group of 4 int8 values repeated to fill 16 bytes
/// (`4·K` bytes, 64-byte aligned), plus `Σ q`.
#[derive(Clone)]
pub struct ExpandedActivations {
    lines: Vec<Line>,
    len: usize,
    /// `Σ q` (i32).
    pub sum: i32,
}

impl std::fmt::Debug for ExpandedActivations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExpandedActivations(K = {}, sum = {})",
            self.k(),
            self.sum
        )
    }
}

impl ExpandedActivations {
    /// A zeroed buffer for rows of `k` values (reuse it with [`ExpandedActivations::fill`]).
    pub fn with_len(k: usize) -> ExpandedActivations {
        ExpandedActivations {
            lines: vec![Line([0u8; 64]); (4 * k).div_ceil(64)],
            len: 4 * k,
            sum: 0,
        }
    }

    /// Expands `q` (its length must be a multiple of 4).
    pub fn new(q: &[i8]) -> ExpandedActivations {
        let mut e = ExpandedActivations::with_len(q.len());
        e.fill(q);
        e
    }

    /// Refills from `q`, resizing if needed (no allocation when the length is unchanged).
    ///
    /// # Panics
    /// If `q.len()` is not a multiple of 4.
    pub fn fill(&mut self, q: &[i8]) {
        assert!(
            q.len().is_multiple_of(4),
            "activation length must be a multiple of 4"
        );
        if self.len != 4 * q.len() {
            *self = ExpandedActivations::with_len(q.len());
        }
        // SAFETY: `lines` holds at least `len` bytes; i8 and u8 have the same layout.
        let data: &mut [i8] = unsafe {
            std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<i8>(), self.len)
        };
        expand_into(data, q);
        self.sum = q.iter().map(|&v| i32::from(v)).sum();
    }

    /// The row length K.
    pub fn k(&self) -> usize {
        self.len / 4
    }

    /// The expanded bytes (`4·K`).
    pub fn as_slice(&self) -> &[i8] {
        // SAFETY: `lines` holds at least `len` initialized bytes.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<i8>(), self.len) }
    }
}

/// Writes each group of 4 values of `q` four times into `dst` (`4·q.len()` bytes).
fn expand_into(dst: &mut [i8], q: &[i8]) {
    for (d, src) in dst.chunks_exact_mut(16).zip(q.chunks_exact(4)) {
        for rep in 0..4 {
            d[4 * rep..4 * rep + 4].copy_from_slice(src);
        }
    }
}

/// The activation rows of several tokens for a token-blocked kernel: row t expanded like
/// [`ExpandedActivations`] at byte `t·4·K` (64-byte aligned).
#[derive(Clone)]
pub struct ExpandedBatch {
    lines: Vec<Line>,
    k: usize,
    tokens: usize,
}

impl std::fmt::Debug for ExpandedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpandedBatch(K = {}, tokens = {})", self.k, self.tokens)
    }
}

impl ExpandedBatch {
    /// A zeroed batch of `tokens` rows of `k` values (`k` a multiple of 16).
    ///
    /// # Panics
    /// If `k` is not a multiple of 16.
    pub fn new(k: usize, tokens: usize) -> ExpandedBatch {
        assert!(
            k.is_multiple_of(16),
            "batch row length must be a multiple of 16"
        );
        ExpandedBatch {
            lines: vec![Line([0u8; 64]); tokens * 4 * k / 64],
            k,
            tokens,
        }
    }

    /// Expands `q` (K values) into row `t`.
    ///
    /// # Panics
    /// If `t` is out of range or `q.len() != K`.
    pub fn fill(&mut self, t: usize, q: &[i8]) {
        assert!(
            t < self.tokens && q.len() == self.k,
            "batch row {t} / length {}",
            q.len()
        );
        let row = 4 * self.k;
        // SAFETY: `lines` holds tokens·4·K bytes; i8 and u8 have the same layout.
        let data: &mut [i8] = unsafe {
            std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<i8>().add(t * row), row)
        };
        expand_into(data, q);
    }

    /// Expands `q` into `row`, a `4·q.len()`-byte row of [`ExpandedBatch::as_mut_slice`] (for
    /// filling rows from several threads; [`ExpandedBatch::fill`] does the same for one row).
    ///
    /// # Panics
    /// If `row.len() != 4·q.len()`.
    pub fn expand_row(row: &mut [i8], q: &[i8]) {
        assert_eq!(row.len(), 4 * q.len(), "expanded row length");
        expand_into(row, q);
    }

    /// The expanded bytes (`tokens·4·K`), writable: token `t`'s row is bytes `t·4·K..`.
    pub fn as_mut_slice(&mut self) -> &mut [i8] {
        // SAFETY: `lines` holds tokens·4·K initialized bytes; i8 and u8 have the same layout.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.lines.as_mut_ptr().cast::<i8>(),
                self.tokens * 4 * self.k,
            )
        }
    }

    /// The row length K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of token rows.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The expanded bytes (`tokens·4·K`).
    pub fn as_slice(&self) -> &[i8] {
        // SAFETY: `lines` holds tokens·4·K initialized bytes.
        unsafe {
            std::slice::from_raw_parts(self.lines.as_ptr().cast::<i8>(), self.tokens * 4 * self.k)
        }
    }
}
