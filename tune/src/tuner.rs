//! Tuning one kernel: search from the default, then confirm the winner against the default in
//! alternating runs so that noise cannot make a kernel slower than its default.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cache::CacheEntry;
use crate::params::{KernelKey, TunedParams};
use crate::search::{coordinate_descent, NOISE_MARGIN};
use crate::space::space_for;
use crate::TuneError;

/// Rounds of the default-versus-winner confirmation.
pub const CONFIRM_ROUNDS: usize = 3;

/// What tuning one kernel gave.
#[derive(Clone, Debug)]
pub struct TuneOutcome {
    /// The kernel.
    pub key: KernelKey,
    /// The entry to cache (the default's values when nothing beat it).
    pub entry: CacheEntry,
    /// The default it started from.
    pub default: TunedParams,
    /// Whether the deadline cut the search short.
    pub timed_out: bool,
}

impl TuneOutcome {
    /// Default time over tuned time.
    pub fn speedup(&self) -> f64 {
        self.entry.default_ns / self.entry.tuned_ns
    }
}

/// Tunes `key` from its default: coordinate descent until `deadline`, then `CONFIRM_ROUNDS`
/// alternating measurements of the default and the winner; the winner is kept only if its
/// median beats the default's by more than the noise margin. `measure` returns the time of a
/// candidate (an `Err` skips it; a [`TuneError::Mismatch`] is passed to `warn`).
pub fn tune_kernel(
    key: &KernelKey,
    deadline: Instant,
    measure: &mut dyn FnMut(&TunedParams) -> Result<f64, TuneError>,
    warn: &mut dyn FnMut(String),
) -> Result<TuneOutcome, TuneError> {
    let space = space_for(key.kind);
    let default = TunedParams::default_for_key(key);
    let start = space
        .index_of(&default)
        .ok_or_else(|| TuneError::Invalid(format!("default {default} is outside the space")))?;
    let dims: Vec<usize> = space.dims().iter().map(|d| d.len).collect();
    let mut first_error = None;
    let result = coordinate_descent(&dims, start, deadline, |idx| {
        let p = space.params(idx);
        match measure(&p) {
            Ok(ns) => Some(ns),
            Err(e) => {
                if matches!(e, TuneError::Mismatch { .. }) {
                    warn(format!("warning: {key}: {e}"));
                }
                first_error.get_or_insert(e);
                None
            }
        }
    });
    let Some(result) = result else {
        return Err(first_error.unwrap_or_else(|| {
            TuneError::Invalid(format!("{key}: the default could not be measured"))
        }));
    };
    let winner = space.params(&result.best);
    let (params, default_ns, tuned_ns) = if winner == default {
        (default, result.start_ns, result.start_ns)
    } else {
        let (mut d, mut w) = (Vec::new(), Vec::new());
        for _ in 0..CONFIRM_ROUNDS {
            d.push(measure(&default)?);
            w.push(measure(&winner)?);
        }
        let (dm, wm) = (median(&mut d), median(&mut w));
        if wm < dm * (1.0 - NOISE_MARGIN) {
            (winner, dm, wm)
        } else {
            (default, dm, dm)
        }
    };
    Ok(TuneOutcome {
        key: key.clone(),
        entry: CacheEntry {
            params,
            default_ns,
            tuned_ns,
            candidates: result.measured,
            tuned_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        default,
        timed_out: result.timed_out,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
