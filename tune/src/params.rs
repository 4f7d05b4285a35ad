//! Kernel identities and their tunable parameters.
//!
//! The heuristic defaults (used whenever the cache has no entry) are the generators' own
//! per-target defaults ([`GemvParams::decode_default_for`], [`GemvParams::prompt_default_for`],
//! [`HeadParams::default_for`]): a `rows16(16)` layout for the GEMVs, with 8 streams and unroll 2
//! for the one-token GEMV where the dot product is one instruction (4 streams and unroll 4 with
//! x86-64's `pmaddubsw` pair), token-blocked prompt kernels (8 tokens, 1 stream, unroll 4 with
//! `pmaddubsw`; with VNNI 8 tokens × unroll 2 on Intel cores and 2 tokens × unroll 1 on others;
//! 4 tokens, 1 stream, unroll 2 elsewhere), and the head's per-format choice (float tables 8 rows
//! per block, 1 on AMD cores). Those that depend on the CPU's maker take the host's
//! ([`bitnetc_codegen::cpu::CpuVendor::host`]).

use bitnetc_codegen::cpu::attention::AttentionParams;
use bitnetc_codegen::cpu::head::{HeadFormat, HeadParams};
use bitnetc_codegen::cpu::repack::Pack;
use bitnetc_codegen::cpu::{GemvParams, Layout};
use serde::{Deserialize, Serialize};

/// A kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelKind {
    /// Ternary × int8 GEMV for one token (decode).
    Gemv,
    /// Token-blocked ternary × int8 GEMM (prompt processing).
    Gemm,
    /// Output head (F16/BF16 table × f32, Q6_K × Q8_K or Q8_0 × Q8_0).
    Head,
    /// Attention over the f32 KV cache (scores and weighted sum of one head).
    Attention,
}

impl KernelKind {
    /// `gemv`, `gemm` or `head`.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Gemv => "gemv",
            KernelKind::Gemm => "gemm",
            KernelKind::Head => "head",
            KernelKind::Attention => "attention",
        }
    }

    /// Parses [`KernelKind::name`].
    pub fn parse(s: &str) -> Option<KernelKind> {
        match s {
            "gemv" => Some(KernelKind::Gemv),
            "gemm" => Some(KernelKind::Gemm),
            "head" => Some(KernelKind::Head),
            "attention" => Some(KernelKind::Attention),
            _ => None,
        }
    }
}

/// What a tuned value is for: kernel family, ISA tag, shape, data format and thread count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelKey {
    /// Family.
    pub kind: KernelKind,
    /// The ISA tag the code is compiled for (`avx512vnni`, `avx2`, ...).
    pub isa: String,
    /// Inputs per row.
    pub k: usize,
    /// Rows.
    pub m: usize,
    /// Data format: `ternary` for GEMV/GEMM, the head format name (`f16_finite`, `bf16`, ...).
    pub format: String,
    /// Threads the work is split over.
    pub threads: usize,
}

impl KernelKey {
    /// The key's text form, used in the cache file: `gemv/avx2/ternary/2560x6912/t2`.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}x{}/t{}",
            self.kind.name(),
            self.isa,
            self.format,
            self.k,
            self.m,
            self.threads
        )
    }
}

impl std::fmt::Display for KernelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

/// Where a kernel's parameters came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamSource {
    /// The tune cache.
    Cache,
    /// The heuristic default (no cache entry).
    Default,
}

impl ParamSource {
    /// `cache` or `default`.
    pub fn name(self) -> &'static str {
        match self {
            ParamSource::Cache => "cache",
            ParamSource::Default => "default",
        }
    }
}

/// Tunable values of one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kernel", rename_all = "snake_case")]
pub enum TunedParams {
    /// One-token GEMV: weight layout and code shape.
    Gemv {
        /// `rows16cols4` or `rows4cols16`.
        pack: PackName,
        /// Rows per group.
        rows_per_group: usize,
        /// Memory streams.
        streams: usize,
        /// Column chunks per loop iteration.
        unroll: usize,
    },
    /// Prompt GEMM (reads the layout its GEMV chose).
    Gemm {
        /// Tokens per call.
        tokens: usize,
        /// Memory streams.
        streams: usize,
        /// Column chunks per loop iteration.
        unroll: usize,
    },
    /// Output head.
    Head {
        /// Table rows per block.
        rows: usize,
        /// 8-element steps per loop iteration.
        unroll: usize,
    },
    /// Attention.
    Attention {
        /// Key rows per scores step.
        rows: usize,
        /// f32x4 output columns per weighted-sum block.
        cols: usize,
    },
}

/// Serializable name of a [`Pack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackName {
    /// [`Pack::Rows16Cols4`].
    Rows16cols4,
    /// [`Pack::Rows4Cols16`].
    Rows4cols16,
}

impl From<Pack> for PackName {
    fn from(p: Pack) -> PackName {
        match p {
            Pack::Rows16Cols4 => PackName::Rows16cols4,
            Pack::Rows4Cols16 => PackName::Rows4cols16,
        }
    }
}

impl From<PackName> for Pack {
    fn from(p: PackName) -> Pack {
        match p {
            PackName::Rows16cols4 => Pack::Rows16Cols4,
            PackName::Rows4cols16 => Pack::Rows4Cols16,
        }
    }
}

impl TunedParams {
    /// The heuristic default of a kernel: its family's, with the one-token GEMV's and the prompt
    /// kernel's parameters chosen for the key's ISA ([`GemvParams::decode_default_for_tag`],
    /// [`GemvParams::prompt_default_for_tag`]) and the head's for its table format
    /// ([`HeadParams::default_for`]), as the runtime does.
    pub fn default_for_key(key: &KernelKey) -> TunedParams {
        match key.kind {
            KernelKind::Gemv => TunedParams::gemv(
                Layout::default(),
                &GemvParams::decode_default_for_tag(&key.isa),
            ),
            KernelKind::Gemm => TunedParams::gemm(&GemvParams::prompt_default_for_tag(&key.isa)),
            KernelKind::Head => match HeadFormat::from_name(&key.format) {
                Some(format) => TunedParams::head(&HeadParams::default_for(format)),
                None => TunedParams::default_for(KernelKind::Head),
            },
            kind => TunedParams::default_for(kind),
        }
    }

    /// The heuristic default of a family (the one-token GEMV's for VNNI targets).
    pub fn default_for(kind: KernelKind) -> TunedParams {
        match kind {
            KernelKind::Gemv => TunedParams::gemv(Layout::default(), &GemvParams::default()),
            KernelKind::Gemm => TunedParams::gemm(&GemvParams::prompt_default(4)),
            KernelKind::Head => TunedParams::head(&HeadParams::default()),
            KernelKind::Attention => {
                let p = AttentionParams::default();
                TunedParams::Attention {
                    rows: p.rows,
                    cols: p.cols,
                }
            }
        }
    }

    /// The family these values are for.
    pub fn kind(&self) -> KernelKind {
        match self {
            TunedParams::Gemv { .. } => KernelKind::Gemv,
            TunedParams::Gemm { .. } => KernelKind::Gemm,
            TunedParams::Head { .. } => KernelKind::Head,
            TunedParams::Attention { .. } => KernelKind::Attention,
        }
    }

    /// GEMV values from a layout and code parameters.
    pub fn gemv(layout: Layout, p: &GemvParams) -> TunedParams {
        TunedParams::Gemv {
            pack: layout.pack.into(),
            rows_per_group: layout.rows_per_group,
            streams: p.streams,
            unroll: p.unroll,
        }
    }

    /// GEMM values from code parameters.
    pub fn gemm(p: &GemvParams) -> TunedParams {
        TunedParams::Gemm {
            tokens: p.tokens,
            streams: p.streams,
            unroll: p.unroll,
        }
    }

    /// Head values from code parameters.
    pub fn head(p: &HeadParams) -> TunedParams {
        TunedParams::Head {
            rows: p.rows,
            unroll: p.unroll,
        }
    }

    /// The weight layout of GEMV values.
    pub fn layout(&self) -> Option<Layout> {
        match *self {
            TunedParams::Gemv {
                pack,
                rows_per_group,
                ..
            } => Some(Layout {
                pack: pack.into(),
                rows_per_group,
            }),
            _ => None,
        }
    }

    /// Code parameters of GEMV or GEMM values.
    pub fn gemv_params(&self) -> Option<GemvParams> {
        match *self {
            TunedParams::Gemv {
                streams, unroll, ..
            } => Some(GemvParams {
                streams,
                unroll,
                tokens: 1,
                dot: None,
            }),
            TunedParams::Gemm {
                tokens,
                streams,
                unroll,
            } => Some(GemvParams {
                streams,
                unroll,
                tokens,
                dot: None,
            }),
            TunedParams::Head { .. } | TunedParams::Attention { .. } => None,
        }
    }

    /// Head parameters of head values.
    pub fn head_params(&self) -> Option<HeadParams> {
        match *self {
            TunedParams::Head { rows, unroll } => Some(HeadParams { rows, unroll }),
            _ => None,
        }
    }

    /// Attention parameters of attention values.
    pub fn attention_params(&self) -> Option<AttentionParams> {
        match *self {
            TunedParams::Attention { rows, cols } => Some(AttentionParams { rows, cols }),
            _ => None,
        }
    }

    /// Whether the generators accept these values (a cache entry that does not is ignored).
    pub fn is_valid(&self) -> bool {
        match *self {
            TunedParams::Gemv {
                pack,
                rows_per_group,
                streams,
                unroll,
            } => {
                let layout = Layout {
                    pack: pack.into(),
                    rows_per_group,
                };
                layout.validate().is_ok()
                    && (1..=16).contains(&streams)
                    && (1..=32).contains(&unroll)
            }
            TunedParams::Gemm {
                tokens,
                streams,
                unroll,
            } => {
                (2..=bitnetc_codegen::cpu::MAX_TOKENS).contains(&tokens)
                    && (1..=16).contains(&streams)
                    && (1..=32).contains(&unroll)
            }
            TunedParams::Head { rows, unroll } => {
                (1..=8).contains(&rows) && (1..=16).contains(&unroll)
            }
            TunedParams::Attention { rows, cols } => {
                (1..=4).contains(&rows) && (1..=16).contains(&cols)
            }
        }
    }
}

impl std::fmt::Display for TunedParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            TunedParams::Gemv {
                pack,
                rows_per_group,
                streams,
                unroll,
            } => write!(
                f,
                "{}x{rows_per_group} streams {streams} unroll {unroll}",
                match pack {
                    PackName::Rows16cols4 => "rows16cols4",
                    PackName::Rows4cols16 => "rows4cols16",
                }
            ),
            TunedParams::Gemm {
                tokens,
                streams,
                unroll,
            } => write!(f, "tokens {tokens} streams {streams} unroll {unroll}"),
            TunedParams::Head { rows, unroll } => write!(f, "rows {rows} unroll {unroll}"),
            TunedParams::Attention { rows, cols } => write!(f, "key rows {rows} cols {cols}"),
        }
    }
}
