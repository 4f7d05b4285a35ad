//! The graph: weights, values and ops in execution order.

use std::ops::Range;
use std::sync::Arc;

use crate::DType;

/// Index of a value (the output of the node with the same index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a weight in [`Graph::weights`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(pub u32);

/// Element kind of an activation value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemKind {
    /// f32 per element.
    F32,
    /// int8 per element with one f32 scale and an i32 element sum per token
    /// (the per-token absmax quantization of the reference, `bitnet-gguf.md` §2.5).
    QInt8,
}

/// Type of an activation value: `[tokens, width]`, the token count being fixed per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// Element kind.
    pub kind: ElemKind,
    /// Elements per token.
    pub width: u32,
}

/// Something that owns bytes weights can point into (a memory map, a buffer).
pub type Storage = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A zero-copy view of a weight's payload inside some shared storage.
#[derive(Clone)]
pub struct WeightBytes {
    storage: Storage,
    range: Range<usize>,
}

impl WeightBytes {
    /// A view of `range` inside `storage`; `None` if the range is out of bounds.
    pub fn new(storage: Storage, range: Range<usize>) -> Option<WeightBytes> {
        let len = (*storage).as_ref().len();
        (range.start <= range.end && range.end <= len).then_some(WeightBytes { storage, range })
    }

    /// Owned bytes (tests, generated tensors).
    pub fn owned(bytes: Vec<u8>) -> WeightBytes {
        let len = bytes.len();
        WeightBytes {
            storage: Arc::new(bytes),
            range: 0..len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &(*self.storage).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightBytes({} bytes)", self.range.len())
    }
}

/// A constant tensor the graph reads.
#[derive(Clone, Debug)]
pub struct Weight {
    /// Name in the source file.
    pub name: String,
    /// Storage format.
    pub dtype: DType,
    /// Dimensions, fastest-varying first: a linear map from K inputs to M outputs is `[K, M]`.
    pub dims: Vec<u64>,
    /// The payload.
    pub data: WeightBytes,
}

impl Weight {
    /// Number of elements.
    pub fn n_elems(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Nonlinearity of a gated feed-forward block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(g, 0)²` (BitNet b1.58 2B4T).
    Relu2,
    /// `g / (1 + e^-g)` (1bitLLM BitNet).
    Silu,
}

/// One operation. Operands are values computed earlier; widths are per token.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Rows of `table` (`[E, V]`) selected by the batch's token ids → f32 `[T, E]`.
    Embedding { table: WeightId },
    /// `x / sqrt(mean(x²) + eps) ⊙ weight` per token.
    RmsNorm {
        x: ValueId,
        weight: WeightId,
        eps: f32,
    },
    /// Per-token int8 absmax quantization of an f32 value.
    QuantizeActivation { x: ValueId },
    /// Ternary weight `[K, M]` times a quantized activation `[T, K]` → f32 `[T, M]`,
    /// optionally multiplied by a one-element f32 `out_scale` weight.
    TernaryLinear {
        x: ValueId,
        weight: WeightId,
        out_scale: Option<WeightId>,
    },
    /// Adds a `[width]` f32 bias to every token.
    AddBias { x: ValueId, bias: WeightId },
    /// NeoX (rotate-half) rotary embedding on each head, at the batch's positions.
    Rope {
        x: ValueId,
        n_heads: u32,
        head_dim: u32,
        freq_base: f32,
    },
    /// Causal attention of `q` over the KV cache of `layer` after appending `k` and `v`.
    Attention {
        q: ValueId,
        k: ValueId,
        v: ValueId,
        layer: u32,
        n_head: u32,
        n_head_kv: u32,
        head_dim: u32,
    },
    /// `act(gate) ⊙ up`.
    GatedActivation {
        gate: ValueId,
        up: ValueId,
        act: Activation,
    },
    /// Elementwise sum.
    Add { a: ValueId, b: ValueId },
    /// `x · table` for a `[E, V]` table → f32 `[T, V]` logits.
    OutputHead { x: ValueId, table: WeightId },
}

impl Op {
    /// The values this op reads, in operand order (no allocation: executors call this for
    /// every node of every pass).
    pub fn inputs(&self) -> impl Iterator<Item = ValueId> + use<> {
        let ids = match *self {
            Op::Embedding { .. } => [None, None, None],
            Op::RmsNorm { x, .. }
            | Op::QuantizeActivation { x }
            | Op::TernaryLinear { x, .. }
            | Op::AddBias { x, .. }
            | Op::Rope { x, .. }
            | Op::OutputHead { x, .. } => [Some(x), None, None],
            Op::Attention { q, k, v, .. } => [Some(q), Some(k), Some(v)],
            Op::GatedActivation { gate, up, .. } => [Some(gate), Some(up), None],
            Op::Add { a, b } => [Some(a), Some(b), None],
        };
        ids.into_iter().flatten()
    }

    /// The weights this op reads.
    pub fn weights(&self) -> Vec<WeightId> {
        match *self {
            Op::Embedding { table } | Op::OutputHead { table, .. } => vec![table],
            Op::RmsNorm { weight, .. } => vec![weight],
            Op::TernaryLinear {
                weight, out_scale, ..
            } => std::iter::once(weight).chain(out_scale).collect(),
            Op::AddBias { bias, .. } => vec![bias],
            _ => vec![],
        }
    }

    /// Short lower-case name of the op kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Embedding { .. } => "embedding",
            Op::RmsNorm { .. } => "rms_norm",
            Op::QuantizeActivation { .. } => "quantize",
            Op::TernaryLinear { .. } => "ternary_linear",
            Op::AddBias { .. } => "add_bias",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::GatedActivation { .. } => "gated_activation",
            Op::Add { .. } => "add",
            Op::OutputHead { .. } => "output_head",
        }
    }
}

/// A node: an op, the type of the value it produces, and a label for printing.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// Type of its result.
    pub ty: ValueType,
    /// Human label, e.g. `blk.3.q`.
    pub label: String,
}

/// Model-level facts backends need besides the ops.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphInfo {
    /// Architecture name as found in the file.
    pub arch: String,
    /// Vocabulary size (logit width).
    pub n_vocab: u32,
    /// Longest sequence the model supports.
    pub n_ctx: u32,
    /// Number of KV-cache layers.
    pub n_kv_layers: u32,
    /// Width of one token's K (and V) in every KV layer.
    pub kv_width: u32,
}

/// A complete model graph: weights, nodes in execution order, and the logits value.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Model-level facts.
    pub info: GraphInfo,
    /// Constant tensors.
    pub weights: Vec<Weight>,
    /// Nodes in execution order; node `i` produces value `ValueId(i)`.
    pub nodes: Vec<Node>,
    /// The value holding the logits.
    pub output: ValueId,
}

impl Graph {
    /// The weight with this id.
    pub fn weight(&self, id: WeightId) -> &Weight {
        &self.weights[id.0 as usize]
    }

    /// The node producing this value.
    pub fn node(&self, id: ValueId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// Bytes of weight data one single-token forward pass reads, in the weights' stored
    /// formats: every weight an op reads whole, plus one row of each embedding table (a table
    /// that is also the output head is counted once, whole). This is what bounds decode speed
    /// by memory bandwidth; the KV cache and activations are not included.
    pub fn decode_weight_bytes(&self) -> u64 {
        let mut read = vec![0u64; self.weights.len()];
        for node in &self.nodes {
            for id in node.op.weights() {
                let w = self.weight(id);
                let whole = w.data.bytes().len() as u64;
                let bytes = match node.op {
                    Op::Embedding { .. } => w
                        .dims
                        .first()
                        .and_then(|&ne0| w.dtype.row_bytes(ne0))
                        .map_or(whole, |row| row.min(whole)),
                    _ => whole,
                };
                let slot = &mut read[id.0 as usize];
                *slot = (*slot).max(bytes);
            }
        }
        read.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, GraphBuilder, GraphInfo, Op, Weight, WeightBytes};

    fn f32_weight(name: &str, dims: &[u64]) -> Weight {
        let n: u64 = dims.iter().product();
        Weight {
            name: name.into(),
            dtype: DType::F32,
            dims: dims.to_vec(),
            data: WeightBytes::owned(vec![0; 4 * n as usize]),
        }
    }

    /// Embedding → norm → head over `[8, 10]` tables, tied or not.
    fn graph(tied: bool) -> crate::Graph {
        let mut b = GraphBuilder::new(GraphInfo {
            arch: "test".into(),
            n_vocab: 10,
            n_ctx: 16,
            n_kv_layers: 0,
            kv_width: 0,
        });
        let embd = b.weight(f32_weight("token_embd", &[8, 10]));
        let norm = b.weight(f32_weight("norm", &[8]));
        let head = if tied {
            embd
        } else {
            b.weight(f32_weight("output", &[8, 10]))
        };
        let x = b.push("embd", Op::Embedding { table: embd }).unwrap();
        let x = b
            .push(
                "norm",
                Op::RmsNorm {
                    x,
                    weight: norm,
                    eps: 1e-5,
                },
            )
            .unwrap();
        let out = b.push("head", Op::OutputHead { x, table: head }).unwrap();
        b.finish(out).unwrap()
    }

    #[test]
    fn decode_reads_one_embedding_row_and_every_other_weight_once() {
        // Separate head: one 8-float row of the embedding, the norm, the whole head.
        assert_eq!(graph(false).decode_weight_bytes(), 4 * (8 + 8 + 80));
        // Tied: the table is read whole once (by the head), plus the norm.
        assert_eq!(graph(true).decode_weight_bytes(), 4 * (80 + 8));
    }
}
