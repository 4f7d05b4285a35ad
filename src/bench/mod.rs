//! Benchmarking: llama-bench-style speed tests, receipts, baselines and reports.
//!
//! A run of `bitnetc bench` measures prompt processing (`pp`: one batch of `p` prompt tokens)
//! and text generation (`tg`: `n` tokens decoded one at a time after a short prompt) for each
//! thread count, and writes a [`Receipt`]: a versioned JSON document holding every sample with
//! the facts needed to trust and compare it (host, model hash, backend, the kernel of every
//! op). [`compare`] sets a receipt against a baseline with configurable thresholds, [`report`]
//! draws receipts as SVG / HTML, and [`perplexity`] scores a text the way llama.cpp does so a
//! receipt can carry quality beside speed, and [`bandwidth`] measures the memory read speed that
//! bounds decode, in the same run.
//!
//! Nothing here asserts speed: the tests check the machinery on synthetic samples.

pub mod bandwidth;
pub mod compare;
pub mod host;
pub mod perplexity;
pub mod receipt;
pub mod report;
pub mod runner;
pub mod stats;

pub use compare::{compare, Comparison, Thresholds, Verdict};
pub use receipt::{Receipt, SCHEMA_VERSION};
