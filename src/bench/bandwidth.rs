//! The read-bandwidth probe: how fast this machine streams memory into its cores, measured in
//! the same run as the decode speed it bounds.
//!
//! Decoding one token reads every weight once (see
//! [`Graph::decode_weight_bytes`](bitnetc_ir::Graph::decode_weight_bytes)), so
//! `bandwidth / bytes per token` is the fastest decode memory allows, and the measured tokens/s
//! divided by it says how much of the machine a backend uses. The probe is the simplest loop
//! that reads memory at full speed: each thread sums its own contiguous share of a buffer far
//! larger than the last-level cache, as 64-bit integers (the compiler vectorizes the sum).

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::stats::Figure;

/// Bytes the probe streams per pass: far above any last-level cache this runs on.
pub const PROBE_BYTES: usize = 1 << 30;
/// Timed passes (after one untimed pass that faults the pages in).
pub const PROBE_PASSES: usize = 10;

/// Read bandwidth measured with some number of threads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadBandwidth {
    /// Threads reading at once.
    pub threads: usize,
    /// Bytes read per pass.
    pub buffer_bytes: u64,
    /// GB/s (10⁹ bytes per second) of each pass.
    pub gb_per_s: Figure,
}

impl ReadBandwidth {
    /// Tokens per second a decode reading `bytes_per_token` could reach at the median
    /// bandwidth (`None` for zero bytes).
    pub fn ceiling_tokens_per_s(&self, bytes_per_token: u64) -> Option<f64> {
        (bytes_per_token > 0).then(|| self.gb_per_s.median * 1e9 / bytes_per_token as f64)
    }
}

/// The sum of one thread's share: one sequential stream of loads.
pub fn sum_stream(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// Measures the read bandwidth of `threads` threads over a `bytes`-byte buffer, `passes` times.
pub fn measure_read_bandwidth(
    threads: usize,
    bytes: usize,
    passes: usize,
) -> anyhow::Result<ReadBandwidth> {
    let threads = threads.max(1);
    let words = (bytes / 8).max(threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building the bandwidth probe's thread pool")?;
    let mut buf: Vec<u64> = Vec::new();
    buf.try_reserve_exact(words).with_context(|| {
        format!(
            "allocating the {} MiB bandwidth probe buffer",
            (words * 8) >> 20
        )
    })?;
    // Distinct values: untouched or zeroed pages could all map one shared page and stay cached.
    buf.extend((0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let share = words.div_ceil(threads);
    let pass = || {
        pool.install(|| {
            let start = Instant::now();
            let s: u64 = buf.par_chunks(share).map(sum_stream).sum();
            black_box(s);
            start.elapsed().as_secs_f64()
        })
    };
    pass();
    let samples: Vec<f64> = (0..passes.max(1))
        .map(|_| (words * 8) as f64 / pass().max(1e-9) / 1e9)
        .collect();
    Ok(ReadBandwidth {
        threads,
        buffer_bytes: (words * 8) as u64,
        gb_per_s: Figure::new(samples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_sum_is_the_wrapping_sum() {
        let words: Vec<u64> = (0..1001u64).map(|i| u64::MAX - i * 3).collect();
        let mut expect = 0u64;
        for &w in &words {
            expect = expect.wrapping_add(w);
        }
        assert_eq!(sum_stream(&words), expect);
        assert_eq!(sum_stream(&[]), 0);
    }

    #[test]
    fn a_small_probe_reports_every_pass_and_a_ceiling() {
        let bw = measure_read_bandwidth(2, 1 << 20, 3).unwrap();
        assert_eq!((bw.threads, bw.buffer_bytes), (2, 1 << 20));
        assert_eq!(bw.gb_per_s.samples.len(), 3);
        assert!(bw
            .gb_per_s
            .samples
            .iter()
            .all(|&g| g > 0.0 && g.is_finite()));
        let ceiling = bw.ceiling_tokens_per_s(1_000_000_000).unwrap();
        assert!((ceiling - bw.gb_per_s.median).abs() <= 1e-9 * ceiling);
        assert_eq!(bw.ceiling_tokens_per_s(0), None);
    }
}
