//! Builds graphs node by node, checking each node's shapes as it is added.

use crate::graph::{Graph, GraphInfo, Node, Op, ValueId, Weight, WeightId};
use crate::verify::{infer_type, validate, IrError};

/// Incremental graph construction; every `push` is shape-checked.
pub struct GraphBuilder {
    info: GraphInfo,
    weights: Vec<Weight>,
    nodes: Vec<Node>,
}

impl GraphBuilder {
    /// Starts an empty graph.
    pub fn new(info: GraphInfo) -> GraphBuilder {
        GraphBuilder {
            info,
            weights: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Registers a weight and returns its id.
    pub fn weight(&mut self, weight: Weight) -> WeightId {
        self.weights.push(weight);
        WeightId(self.weights.len() as u32 - 1)
    }

    /// Appends a node after checking its operand types and shapes.
    pub fn push(&mut self, label: impl Into<String>, op: Op) -> Result<ValueId, IrError> {
        let label = label.into();
        let ty = infer_type(&op, &label, &self.info, &self.weights, &self.nodes)?;
        self.nodes.push(Node { op, ty, label });
        Ok(ValueId(self.nodes.len() as u32 - 1))
    }

    /// Finishes the graph with `output` as the logits and validates it as a whole.
    pub fn finish(self, output: ValueId) -> Result<Graph, IrError> {
        let graph = Graph {
            info: self.info,
            weights: self.weights,
            nodes: self.nodes,
            output,
        };
        validate(&graph)?;
        Ok(graph)
    }
}
