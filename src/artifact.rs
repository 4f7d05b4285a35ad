//! Ahead-of-time artifacts (`bitnetc compile`): a model with its ternary weights already
//! repacked for the generated kernels, the kernel parameters it was compiled with, and the
//! target it needs, in one memory-mappable file that loads without repacking.
//!
//! Layout (little-endian):
//!
//! ```text
//! 0      "BITNETC\x1a" magic, u32 format version, u32 section count
//! 16     per section: u32 kind, u32 0, u64 offset, u64 length, u64 xxh3 of the section
//! ...    u64 xxh3 of the bytes before it (the header)
//! 4096·k sections, each at a page-aligned offset:
//!        META    JSON: bitnetc version, target ISA level and flags, tuned parameters,
//!                and per repacked weight its shape, layout, scales and offsets
//!        MODEL   the source GGUF, verbatim (mapped and read by the GGUF loader)
//!        WEIGHTS the repacked matrices (64-byte aligned) and their per-row scales
//! ```
//!
//! Loading checks the header checksum, every section's bounds and checksum, the format and
//! bitnetc versions, and that this CPU has every ISA flag the artifact was compiled for; each
//! failure is an [`ArtifactError`] naming what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnetc_codegen::cpu::repack::Pack;
use bitnetc_codegen::cpu::{HostFeatures, IsaLevel, Layout, RepackedMatrix, RowScales};
use bitnetc_ir::DType;
use bitnetc_tune::CacheEntry;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// The first 8 bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"BITNETC\x1a";
/// The format this bitnetc writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const PAGE: u64 = 4096;
const META: u32 = 1;
const MODEL: u32 = 2;
const WEIGHTS: u32 = 3;

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not an artifact, a truncated or corrupted one.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Written by another format or bitnetc version.
    #[error("{path}: {problem}; compile the model again with this bitnetc (`bitnetc compile`)")]
    Version {
        /// The file.
        path: PathBuf,
        /// Which versions.
        problem: String,
    },
    /// This CPU lacks an instruction-set feature the artifact's kernels need.
    #[error(
        "{path}: compiled for ISA level {isa}, and this CPU lacks {missing}; compile it for this \
         machine (`bitnetc compile --isa avx2` or `--isa sse4`)"
    )]
    Target {
        /// The file.
        path: PathBuf,
        /// The artifact's level.
        isa: String,
        /// Missing flags.
        missing: String,
    },
}

/// One repacked weight in the WEIGHTS section.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct WeightEntry {
    name: String,
    k: usize,
    m: usize,
    pack: String,
    rows_per_group: usize,
    source: String,
    /// Byte offset and length of the packed bytes in the section.
    offset: usize,
    len: usize,
    /// A tensor scale (bits of the f32), or the offset of `m` per-row f32 scales.
    tensor_scale: Option<u32>,
    row_scales_offset: Option<usize>,
}

/// The META section.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    bitnetc_version: String,
    isa: String,
    features: Vec<String>,
    source_file: String,
    tuning: BTreeMap<String, CacheEntry>,
    weights: Vec<WeightEntry>,
}

/// An opened, verified artifact.
pub struct Artifact {
    /// The file.
    pub path: PathBuf,
    /// Where its GGUF section is (offset, length).
    pub model_range: (u64, usize),
    /// The ISA level it was compiled for.
    pub isa: IsaLevel,
    /// The tuned parameters it was compiled with, by kernel key.
    pub tuning: BTreeMap<String, CacheEntry>,
    /// The repacked weights, by name (views into the mapped file).
    pub weights: HashMap<String, RepackedMatrix>,
}

/// The GGUF of a model file: the file itself, or an artifact's verified MODEL section.
pub fn open_gguf(path: &Path) -> anyhow::Result<bitnetc_models::gguf::GgufFile> {
    use anyhow::Context;
    if is_artifact(path) {
        let a = open(path)?;
        let (off, len) = a.model_range;
        Ok(bitnetc_models::gguf::GgufFile::open_range(path, off, len)
            .with_context(|| format!("reading the model section of {}", path.display()))?)
    } else {
        Ok(bitnetc_models::gguf::GgufFile::open(path)?)
    }
}

/// Whether the file at `path` starts with the artifact magic.
pub fn is_artifact(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == MAGIC
}

fn pack_name(p: Pack) -> &'static str {
    match p {
        Pack::Rows16Cols4 => "rows16cols4",
        Pack::Rows4Cols16 => "rows4cols16",
    }
}

fn align(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Writes an artifact for the GGUF at `source` with the repacked `weights`, compiled for
/// `isa` with `features` and `tuning`. Written to a temporary file renamed into place.
pub fn write(
    out: &Path,
    source: &Path,
    isa: IsaLevel,
    features: &[&str],
    tuning: BTreeMap<String, CacheEntry>,
    weights: &[(&str, &RepackedMatrix)],
) -> Result<(), ArtifactError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ArtifactError::Io { path: p, source }
    };
    // WEIGHTS section in memory: packed bytes at 64-byte offsets, then row scales.
    let mut wbytes: Vec<u8> = Vec::new();
    let mut entries = Vec::new();
    for (name, w) in weights {
        let offset = align(wbytes.len() as u64, 64) as usize;
        wbytes.resize(offset, 0);
        wbytes.extend_from_slice(w.bytes());
        let (tensor_scale, row_scales_offset) = match &w.scales {
            RowScales::Tensor(s) => (Some(s.to_bits()), None),
            RowScales::PerRow(v) => {
                let at = align(wbytes.len() as u64, 64) as usize;
                wbytes.resize(at, 0);
                for s in v {
                    wbytes.extend_from_slice(&s.to_le_bytes());
                }
                (None, Some(at))
            }
        };
        entries.push(WeightEntry {
            name: name.to_string(),
            k: w.k,
            m: w.m,
            pack: pack_name(w.layout.pack).into(),
            rows_per_group: w.layout.rows_per_group,
            source: w.source.to_string(),
            offset,
            len: w.bytes().len(),
            tensor_scale,
            row_scales_offset,
        });
    }
    let meta = Meta {
        bitnetc_version: env!("CARGO_PKG_VERSION").into(),
        isa: isa.name().into(),
        features: features.iter().map(|f| f.to_string()).collect(),
        source_file: source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        tuning,
        weights: entries,
    };
    let meta_bytes = serde_json::to_vec_pretty(&meta).expect("serializable");
    let model = std::fs::read(source).map_err(io(source))?;
    let sections: [(u32, &[u8]); 3] = [(META, &meta_bytes), (MODEL, &model), (WEIGHTS, &wbytes)];
    let mut header = Vec::new();
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    let mut offset = PAGE;
    let mut offsets = Vec::new();
    for (kind, bytes) in &sections {
        header.extend_from_slice(&kind.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        header.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        header.extend_from_slice(&xxh3_64(bytes).to_le_bytes());
        offsets.push(offset);
        offset = align(offset + bytes.len() as u64, PAGE);
    }
    let h = xxh3_64(&header);
    header.extend_from_slice(&h.to_le_bytes());
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(out))?;
    {
        let f = tmp.as_file_mut();
        let mut pos = 0u64;
        let mut put = |f: &mut std::fs::File, at: u64, bytes: &[u8]| -> std::io::Result<()> {
            f.write_all(&vec![0u8; (at - pos) as usize])?;
            f.write_all(bytes)?;
            pos = at + bytes.len() as u64;
            Ok(())
        };
        put(f, 0, &header).map_err(io(out))?;
        for ((_, bytes), at) in sections.iter().zip(&offsets) {
            put(f, *at, bytes).map_err(io(out))?;
        }
        f.sync_all().map_err(io(out))?;
    }
    // Readable like any file the user writes (the temporary file starts private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(out).map_err(|e| ArtifactError::Io {
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Opens and verifies an artifact (see the module docs for what is checked).
pub fn open(path: &Path) -> Result<Artifact, ArtifactError> {
    let corrupt = |problem: String| ArtifactError::Corrupt {
        path: path.to_path_buf(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: a read-only map of a file bitnetc does not write while it is mapped.
    let map =
        Arc::new(
            unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ArtifactError::Io {
                path: path.to_path_buf(),
                source,
            })?,
        );
    let bytes: &[u8] = &map;
    if bytes.len() < 16 || bytes[..8] != MAGIC {
        return Err(corrupt("not a bitnetc artifact (bad magic)".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(ArtifactError::Version {
            path: path.to_path_buf(),
            problem: format!(
                "artifact format {version}, this bitnetc reads format {FORMAT_VERSION}"
            ),
        });
    }
    let n = u32_at(12) as usize;
    let table_end = 16 + 32 * n;
    if n == 0 || n > 16 || bytes.len() < table_end + 8 {
        return Err(corrupt(format!(
            "truncated or damaged header ({n} sections)"
        )));
    }
    if xxh3_64(&bytes[..table_end]) != u64_at(table_end) {
        return Err(corrupt(
            "header checksum mismatch (the header is damaged)".into(),
        ));
    }
    let mut sections = HashMap::new();
    for i in 0..n {
        let e = 16 + 32 * i;
        let (kind, off, len, hash) = (u32_at(e), u64_at(e + 8), u64_at(e + 16), u64_at(e + 24));
        let name = match kind {
            META => "META",
            MODEL => "MODEL",
            WEIGHTS => "WEIGHTS",
            _ => return Err(corrupt(format!("unknown section kind {kind}"))),
        };
        let end = off.checked_add(len).filter(|&e| e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(corrupt(format!(
                "truncated: section {name} ends at byte {}, the file has {}",
                off.saturating_add(len),
                bytes.len()
            )));
        };
        let sec = &bytes[off as usize..end as usize];
        if xxh3_64(sec) != hash {
            return Err(corrupt(format!(
                "section {name} is corrupted (checksum mismatch)"
            )));
        }
        sections.insert(kind, (off, len as usize));
    }
    let get = |kind: u32, name: &str| {
        sections
            .get(&kind)
            .copied()
            .ok_or_else(|| corrupt(format!("missing section {name}")))
    };
    let (meta_off, meta_len) = get(META, "META")?;
    let meta: Meta =
        serde_json::from_slice(&bytes[meta_off as usize..meta_off as usize + meta_len])
            .map_err(|e| corrupt(format!("section META does not parse: {e}")))?;
    if meta.bitnetc_version != env!("CARGO_PKG_VERSION") {
        return Err(ArtifactError::Version {
            path: path.to_path_buf(),
            problem: format!(
                "compiled by bitnetc {}, this is {}",
                meta.bitnetc_version,
                env!("CARGO_PKG_VERSION")
            ),
        });
    }
    let host = HostFeatures::detect().map_err(|e| corrupt(e.to_string()))?;
    let missing: Vec<&str> = meta
        .features
        .iter()
        .filter(|f| !host.has(f))
        .map(|f| f.as_str())
        .collect();
    let isa: IsaLevel = meta
        .isa
        .parse()
        .map_err(|_| corrupt(format!("unknown ISA level '{}'", meta.isa)))?;
    if !missing.is_empty() {
        return Err(ArtifactError::Target {
            path: path.to_path_buf(),
            isa: meta.isa.clone(),
            missing: missing.join(", "),
        });
    }
    let (model_off, model_len) = get(MODEL, "MODEL")?;
    let (w_off, w_len) = get(WEIGHTS, "WEIGHTS")?;
    let shared: bitnetc_codegen::cpu::repack::SharedBytes = map.clone();
    let mut weights = HashMap::new();
    for w in &meta.weights {
        let bad = |p: &str| corrupt(format!("weight {}: {p}", w.name));
        let pack = match w.pack.as_str() {
            "rows16cols4" => Pack::Rows16Cols4,
            "rows4cols16" => Pack::Rows4Cols16,
            _ => return Err(bad("unknown pack")),
        };
        let source = DType::from_name(&w.source).ok_or_else(|| bad("unknown source type"))?;
        let scales = match (w.tensor_scale, w.row_scales_offset) {
            (Some(bits), None) => RowScales::Tensor(f32::from_bits(bits)),
            (None, Some(at)) => {
                let s = w_off as usize + at;
                let end = s + 4 * w.m;
                if at + 4 * w.m > w_len {
                    return Err(bad("row scales out of the section"));
                }
                RowScales::PerRow(
                    bytes[s..end]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect(),
                )
            }
            _ => return Err(bad("needs exactly one kind of scale")),
        };
        if w.offset + w.len > w_len {
            return Err(bad("packed bytes out of the section"));
        }
        let layout = Layout {
            pack,
            rows_per_group: w.rows_per_group,
        };
        let m = RepackedMatrix::from_shared(
            w.k,
            w.m,
            layout,
            source,
            scales,
            shared.clone(),
            w_off as usize + w.offset,
            w.len,
        )
        .map_err(|e| bad(&e.to_string()))?;
        weights.insert(w.name.clone(), m);
    }
    Ok(Artifact {
        path: path.to_path_buf(),
        model_range: (model_off, model_len),
        isa,
        tuning: meta.tuning,
        weights,
    })
}
