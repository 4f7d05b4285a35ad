//! The bitnetc intermediate representation.
//!
//! A model is a [`Graph`]: a list of [`Weight`]s (zero-copy views of their payloads) and a
//! straight-line list of [`Node`]s, each an [`Op`] over values computed before it, for a batch of
//! `T` tokens. Every node's shapes are checked when it is added ([`GraphBuilder::push`]) and a
//! whole graph can be checked again with [`validate`]. Backends consume graphs; none of them reads
//! model files.
pub mod builder;
pub mod dtype;
pub mod graph;
mod print;
pub mod verify;

pub use builder::GraphBuilder;
pub use dtype::DType;
pub use graph::{
    Activation, ElemKind, Graph, GraphInfo, Node, Op, Storage, ValueId, ValueType, Weight,
    WeightBytes, WeightId,
};
pub use verify::{validate, IrError};
