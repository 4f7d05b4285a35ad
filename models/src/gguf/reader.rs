//! The strict GGUF reader (checklist in `bitnet-gguf.md` §1.5).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnetc_ir::DType;
use memmap2::Mmap;

use super::types::{ggml_type_name, GgmlType};
use super::value::{Metadata, Value, ValueType};
use super::{
    GgufError, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_LEN, MAX_STRING_BYTES, MAX_TENSOR_NAME,
};

/// Description of one tensor in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, fastest-varying first (`ne0` = row length).
    pub dims: Vec<u64>,
    /// Storage format.
    pub dtype: DType,
    /// Offset of the payload relative to the data section.
    pub offset: u64,
    /// Payload size in bytes.
    pub nbytes: u64,
}

impl TensorInfo {
    /// Total number of elements.
    pub fn n_elems(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length (`ne0`).
    pub fn ne0(&self) -> u64 {
        self.dims[0]
    }

    /// Number of rows (product of all dimensions but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// Everything in a GGUF file before the tensor payloads.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Key/value metadata.
    pub metadata: Metadata,
    /// Tensor descriptions in file order.
    pub tensors: Vec<TensorInfo>,
    /// Alignment of the data section.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
}

/// A memory-mapped GGUF file whose header passed every check.
pub struct GgufFile {
    path: PathBuf,
    map: Arc<Mmap>,
    header: GgufHeader,
}

impl GgufFile {
    /// Opens, maps and validates a file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; bitnetc never writes model files it has mapped.
        // Another process truncating the file while it is mapped is outside what we defend.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(&map)?;
        Ok(GgufFile {
            path,
            map: Arc::new(map),
            header,
        })
    }

    /// Opens, maps and validates the GGUF stored in bytes `offset..offset + len` of a larger
    /// file (an ahead-of-time artifact's model section); `offset` must be a multiple of the
    /// page size.
    pub fn open_range(
        path: impl AsRef<Path>,
        offset: u64,
        len: usize,
    ) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: as in `open`: a read-only map of a file bitnetc does not write while mapped.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(&file)
        }
        .map_err(io)?;
        let header = parse_header(&map)?;
        Ok(GgufFile {
            path,
            map: Arc::new(map),
            header,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// The tensor descriptions in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// Looks a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.iter().find(|t| t.name == name)
    }

    /// The payload bytes of a tensor (zero-copy view into the map).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.header.data_start + info.offset) as usize;
        &self.map[start..start + info.nbytes as usize]
    }

    /// The whole mapped file, shared (used to build zero-copy weight views).
    pub fn mapping(&self) -> Arc<Mmap> {
        Arc::clone(&self.map)
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }
}

/// A bounds-checked reading position in the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
    version: u32,
}

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn remaining(&self) -> u64 {
        self.len() - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos,
                needed: n,
                len: self.len(),
            });
        }
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.bytes[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        Ok(self
            .take(N as u64, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count or length: u64 in v2/v3, u32 in v1.
    fn count(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        if self.version == 1 {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.count(what)?;
        if len > MAX_STRING_BYTES {
            return Err(GgufError::invalid(format!(
                "{} has absurd length {len}",
                what()
            )));
        }
        let raw = self.take(len, what)?;
        // Some writers emitted trailing NULs; tolerate them.
        let trimmed = match raw.iter().rposition(|&b| b != 0) {
            Some(last) => &raw[..=last],
            None => &raw[..0],
        };
        std::str::from_utf8(trimmed)
            .map(str::to_owned)
            .map_err(|_| GgufError::invalid(format!("{} is not valid UTF-8", what())))
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, GgufError> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(self.u32(&what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(self.u64(&what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::invalid(format!(
                        "metadata key '{key}' holds bool byte {b}; only 0 and 1 are valid"
                    )))
                }
            },
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                let elem_id = self.u32(&what)?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    GgufError::invalid(format!(
                        "metadata key '{key}': unknown array element type {elem_id}"
                    ))
                })?;
                if elem == ValueType::Array {
                    return Err(GgufError::invalid(format!(
                        "metadata key '{key}': nested arrays are not supported"
                    )));
                }
                let count = self.count(&what)?;
                // A string needs at least its length field; other types have a fixed size.
                let min_size = elem
                    .fixed_size()
                    .unwrap_or(if self.version == 1 { 4 } else { 8 });
                if count > MAX_ARRAY_LEN || count.saturating_mul(min_size) > self.remaining() {
                    return Err(GgufError::AbsurdCount {
                        what: "array length",
                        count,
                        remaining: self.remaining(),
                    });
                }
                let mut items = Vec::with_capacity(prealloc(count));
                for _ in 0..count {
                    items.push(self.value(elem, key)?);
                }
                Value::Array { elem, items }
            }
        })
    }
}

/// Capacity reserved up front for a counted list: counts are only claims until the items parse,
/// so at most a few thousand slots are reserved and the rest grows with what is really there.
fn prealloc(count: u64) -> usize {
    count.min(4096) as usize
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v / align * align)
}

/// Parses and validates everything up to the data section, and checks that every tensor's
/// payload lies inside `bytes`.
pub fn parse_header(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        version: 3,
    };
    let magic: [u8; 4] = c
        .array(&|| "magic".into())
        .map_err(|_| GgufError::BadMagic {
            found: bytes.iter().take(4).copied().collect(),
        })?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        0 => return Err(GgufError::BadVersion { version, hint: "" }),
        1 => {
            return Err(GgufError::BadVersion {
                version,
                hint: " (GGUF v1 is obsolete; re-convert the model with a current converter)",
            })
        }
        v if v & 0xFFFF == 0 => {
            return Err(GgufError::BadVersion {
                version: v,
                hint: " (this looks like a big-endian file; bitnetc reads little-endian GGUF only)",
            })
        }
        _ => {
            return Err(GgufError::BadVersion {
                version,
                hint: " (bitnetc reads versions 2 and 3)",
            })
        }
    }
    c.version = version;
    let n_tensors = c.u64(&|| "tensor count".into())?;
    let n_kv = c.u64(&|| "metadata count".into())?;
    // Minimal encoded sizes: a KV needs 8 (key length) + 1 + 4 (type) + 1; a tensor info needs
    // 8 + 1 (name) + 4 (n_dims) + 8 (one dimension) + 4 (type) + 8 (offset).
    if n_kv > i64::MAX as u64 || n_kv.saturating_mul(14) > c.remaining() {
        return Err(GgufError::AbsurdCount {
            what: "metadata count",
            count: n_kv,
            remaining: c.remaining(),
        });
    }
    if n_tensors > i64::MAX as u64 || n_tensors.saturating_mul(33) > c.remaining() {
        return Err(GgufError::AbsurdCount {
            what: "tensor count",
            count: n_tensors,
            remaining: c.remaining(),
        });
    }

    let mut entries: Vec<(String, Value)> = Vec::with_capacity(prealloc(n_kv));
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("key of metadata entry {i}"))?;
        if key.is_empty() || key.len() > u16::MAX as usize {
            return Err(GgufError::invalid(format!(
                "metadata entry {i} has a key of {} bytes (must be 1..=65535)",
                key.len()
            )));
        }
        if !keys.insert(key.clone()) {
            return Err(GgufError::invalid(format!(
                "duplicate metadata key '{key}'"
            )));
        }
        let ty_id = c.u32(&|| format!("type of metadata key '{key}'"))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| {
            GgufError::invalid(format!(
                "metadata key '{key}' has unknown value type {ty_id}"
            ))
        })?;
        let value = c.value(ty, &key)?;
        entries.push((key, value));
    }
    let metadata = Metadata::from_entries(entries);

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if *a >= 8 && a.is_power_of_two() => u64::from(*a),
        Some(v) => {
            return Err(GgufError::invalid(format!(
                "general.alignment must be a UINT32 power of two >= 8, found {v:?}"
            )))
        }
    };

    let mut tensors = Vec::with_capacity(prealloc(n_tensors));
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = c.string(&|| format!("name of tensor {i}"))?;
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            return Err(GgufError::invalid(format!(
                "tensor {i} has a name of {} bytes (must be 1..={MAX_TENSOR_NAME})",
                name.len()
            )));
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::invalid(format!(
                "duplicate tensor name '{name}'"
            )));
        }
        let what = || format!("info of tensor '{name}'");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(GgufError::invalid(format!(
                "tensor '{name}' has {n_dims} dimensions (must be 1..=4)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elems: u64 = 1;
        for _ in 0..n_dims {
            let d = c.count(&what)?;
            if d == 0 {
                return Err(GgufError::invalid(format!(
                    "tensor '{name}' has a zero dimension"
                )));
            }
            n_elems = n_elems
                .checked_mul(d)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| {
                    GgufError::invalid(format!(
                        "tensor '{name}' has absurd dimensions {dims:?}×{d}"
                    ))
                })?;
            dims.push(d);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        let dtype = tensor_dtype(&name, type_id, &dims)?;
        let nbytes = dtype.tensor_bytes(dims[0], n_elems).ok_or_else(|| {
            GgufError::invalid(format!(
                "tensor '{name}' of type {dtype} has row length {} which is not a multiple of {}",
                dims[0],
                dtype.block_elems()
            ))
        })?;
        if usize::try_from(nbytes).is_err() {
            return Err(GgufError::invalid(format!(
                "tensor '{name}' is too large for this machine"
            )));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            dtype,
            offset,
            nbytes,
        });
    }

    let data_start =
        align_up(c.pos, alignment).ok_or_else(|| GgufError::invalid("data start overflows"))?;
    if n_tensors > 0 && data_start > c.len() {
        return Err(GgufError::Truncated {
            what: "data section".into(),
            offset: c.pos,
            needed: data_start - c.pos,
            len: c.len(),
        });
    }
    check_tensor_ranges(&tensors, alignment, data_start, c.len())?;
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

/// Maps a tensor type id to a supported format, with a precise refusal otherwise.
fn tensor_dtype(name: &str, type_id: u32, dims: &[u64]) -> Result<DType, GgufError> {
    let refuse = |what: String| GgufError::UnsupportedTensorType {
        tensor: name.to_string(),
        what,
    };
    match type_id {
        38 | 39 => Err(refuse(format!(
            "type {type_id} ({}): bitnet.cpp's TL1/TL2 layouts depend on kernel tile sizes chosen at \
             conversion time and cannot be read portably; re-convert the model with --outtype i2_s",
            ggml_type_name(type_id)
        ))),
        36 if !dims[0].is_multiple_of(128) => Err(refuse(format!(
            "type I2_S with row length {}, not a multiple of 128: this is not the 128-element block \
             layout bitnetc reads (ARM builds of bitnet.cpp write 64-element blocks); re-quantize \
             with the x86 I2_S layout",
            dims[0]
        ))),
        _ => GgmlType(type_id).dtype().ok_or_else(|| {
            refuse(format!(
                "type {type_id} ({}), which bitnetc does not support (supported: F32, F16, BF16, Q8_0, \
                 Q6_K, TQ1_0, TQ2_0, I2_S)",
                ggml_type_name(type_id)
            ))
        }),
    }
}

/// Checks alignment, bounds and non-overlap of every tensor payload.
fn check_tensor_ranges(
    tensors: &[TensorInfo],
    alignment: u64,
    data_start: u64,
    len: u64,
) -> Result<(), GgufError> {
    let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::invalid(format!(
                "tensor '{}' offset {} is not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.nbytes))
            .ok_or_else(|| {
                GgufError::invalid(format!("tensor '{}' offset {} overflows", t.name, t.offset))
            })?;
        if end > len {
            return Err(GgufError::Truncated {
                what: format!("payload of tensor '{}'", t.name),
                offset: data_start.saturating_add(t.offset),
                needed: t.nbytes,
                len,
            });
        }
        ranges.push((t.offset, t.offset + t.nbytes, &t.name));
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(GgufError::invalid(format!(
                "tensors '{}' and '{}' overlap in the data section",
                pair[0].2, pair[1].2
            )));
        }
    }
    Ok(())
}
