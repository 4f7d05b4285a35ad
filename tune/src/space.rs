//! The values each tunable parameter may take.

use crate::params::{KernelKind, PackName, TunedParams};

/// One parameter and its candidate values.
#[derive(Clone, Debug)]
pub struct Dim {
    /// Name, for progress output.
    pub name: &'static str,
    /// Number of values.
    pub len: usize,
}

/// The search space of a kernel family: its dimensions, and how an index vector maps to
/// parameters.
pub trait Space {
    /// The dimensions.
    fn dims(&self) -> Vec<Dim>;
    /// The parameters at `idx` (one index per dimension).
    fn params(&self, idx: &[usize]) -> TunedParams;
    /// The indices of `p` (`None` if it is not in the space).
    fn index_of(&self, p: &TunedParams) -> Option<Vec<usize>>;
}

/// Weight layouts tried for the one-token GEMV: (pack, rows per group).
pub const GEMV_LAYOUTS: [(PackName, usize); 4] = [
    (PackName::Rows16cols4, 16),
    (PackName::Rows16cols4, 32),
    (PackName::Rows4cols16, 4),
    (PackName::Rows4cols16, 8),
];
/// Memory streams tried for the GEMV.
pub const GEMV_STREAMS: [usize; 8] = [1, 2, 3, 4, 6, 8, 12, 16];
/// Unroll factors tried for the GEMV and GEMM.
pub const UNROLLS: [usize; 4] = [1, 2, 4, 8];
/// Tokens per call tried for the prompt GEMM.
pub const GEMM_TOKENS: [usize; 5] = [2, 3, 4, 6, 8];
/// Memory streams tried for the GEMM.
pub const GEMM_STREAMS: [usize; 3] = [1, 2, 4];
/// Rows per block tried for the head (each a stream of its own).
pub const HEAD_ROWS: [usize; 6] = [1, 2, 3, 4, 6, 8];
/// Key rows per step tried for attention.
pub const ATTENTION_ROWS: [usize; 4] = [1, 2, 3, 4];
/// Output columns (f32x4) per weighted-sum block tried for attention.
pub const ATTENTION_COLS: [usize; 5] = [1, 2, 4, 8, 16];

/// The space of a kernel family.
pub fn space_for(kind: KernelKind) -> Box<dyn Space> {
    match kind {
        KernelKind::Gemv => Box::new(GemvSpace),
        KernelKind::Gemm => Box::new(GemmSpace),
        KernelKind::Head => Box::new(HeadSpace),
        KernelKind::Attention => Box::new(AttentionSpace),
    }
}

fn pos<T: PartialEq>(values: &[T], v: &T) -> Option<usize> {
    values.iter().position(|x| x == v)
}

struct GemvSpace;

impl Space for GemvSpace {
    fn dims(&self) -> Vec<Dim> {
        vec![
            Dim {
                name: "layout",
                len: GEMV_LAYOUTS.len(),
            },
            Dim {
                name: "streams",
                len: GEMV_STREAMS.len(),
            },
            Dim {
                name: "unroll",
                len: UNROLLS.len(),
            },
        ]
    }

    fn params(&self, idx: &[usize]) -> TunedParams {
        let (pack, rows_per_group) = GEMV_LAYOUTS[idx[0]];
        TunedParams::Gemv {
            pack,
            rows_per_group,
            streams: GEMV_STREAMS[idx[1]],
            unroll: UNROLLS[idx[2]],
        }
    }

    fn index_of(&self, p: &TunedParams) -> Option<Vec<usize>> {
        match *p {
            TunedParams::Gemv {
                pack,
                rows_per_group,
                streams,
                unroll,
            } => Some(vec![
                pos(&GEMV_LAYOUTS, &(pack, rows_per_group))?,
                pos(&GEMV_STREAMS, &streams)?,
                pos(&UNROLLS, &unroll)?,
            ]),
            _ => None,
        }
    }
}

struct GemmSpace;

impl Space for GemmSpace {
    fn dims(&self) -> Vec<Dim> {
        vec![
            Dim {
                name: "tokens",
                len: GEMM_TOKENS.len(),
            },
            Dim {
                name: "streams",
                len: GEMM_STREAMS.len(),
            },
            Dim {
                name: "unroll",
                len: UNROLLS.len(),
            },
        ]
    }

    fn params(&self, idx: &[usize]) -> TunedParams {
        TunedParams::Gemm {
            tokens: GEMM_TOKENS[idx[0]],
            streams: GEMM_STREAMS[idx[1]],
            unroll: UNROLLS[idx[2]],
        }
    }

    fn index_of(&self, p: &TunedParams) -> Option<Vec<usize>> {
        match *p {
            TunedParams::Gemm {
                tokens,
                streams,
                unroll,
            } => Some(vec![
                pos(&GEMM_TOKENS, &tokens)?,
                pos(&GEMM_STREAMS, &streams)?,
                pos(&UNROLLS, &unroll)?,
            ]),
            _ => None,
        }
    }
}

struct HeadSpace;

impl Space for HeadSpace {
    fn dims(&self) -> Vec<Dim> {
        vec![
            Dim {
                name: "rows",
                len: HEAD_ROWS.len(),
            },
            Dim {
                name: "unroll",
                len: UNROLLS.len(),
            },
        ]
    }

    fn params(&self, idx: &[usize]) -> TunedParams {
        TunedParams::Head {
            rows: HEAD_ROWS[idx[0]],
            unroll: UNROLLS[idx[1]],
        }
    }

    fn index_of(&self, p: &TunedParams) -> Option<Vec<usize>> {
        match *p {
            TunedParams::Head { rows, unroll } => {
                Some(vec![pos(&HEAD_ROWS, &rows)?, pos(&UNROLLS, &unroll)?])
            }
            _ => None,
        }
    }
}

struct AttentionSpace;

impl Space for AttentionSpace {
    fn dims(&self) -> Vec<Dim> {
        vec![
            Dim {
                name: "rows",
                len: ATTENTION_ROWS.len(),
            },
            Dim {
                name: "cols",
                len: ATTENTION_COLS.len(),
            },
        ]
    }

    fn params(&self, idx: &[usize]) -> TunedParams {
        TunedParams::Attention {
            rows: ATTENTION_ROWS[idx[0]],
            cols: ATTENTION_COLS[idx[1]],
        }
    }

    fn index_of(&self, p: &TunedParams) -> Option<Vec<usize>> {
        match *p {
            TunedParams::Attention { rows, cols } => Some(vec![
                pos(&ATTENTION_ROWS, &rows)?,
                pos(&ATTENTION_COLS, &cols)?,
            ]),
            _ => None,
        }
    }
}
