//! Coordinate descent over a discrete space, under a deadline.
//!
//! Starting from the default, each pass sweeps one dimension at a time over all its values
//! with the others fixed, and moves to the best value when it beats the current point by more
//! than the noise margin. Passes repeat until one changes nothing or the deadline passes. With
//! `d` dimensions of `n` values a pass costs about `d·n` measurements instead of the `n^d` of the
//! full grid.

use std::collections::HashMap;
use std::time::Instant;

/// Relative improvement a move must show to be taken (the timing noise on a shared machine).
pub const NOISE_MARGIN: f64 = 0.03;

/// What the search found.
#[derive(Clone, Debug)]
pub struct SearchResult {
    /// Index vector of the best point.
    pub best: Vec<usize>,
    /// Its measured time.
    pub best_ns: f64,
    /// The start point's measured time.
    pub start_ns: f64,
    /// Distinct points measured.
    pub measured: usize,
    /// Whether the deadline cut the search short.
    pub timed_out: bool,
}

/// Coordinate descent from `start` over dimensions of sizes `dims`. `measure` returns the time of
/// a point, or `None` when the point is invalid (it is then skipped). Returns `None` if even the
/// start point cannot be measured.
pub fn coordinate_descent(
    dims: &[usize],
    start: Vec<usize>,
    deadline: Instant,
    mut measure: impl FnMut(&[usize]) -> Option<f64>,
) -> Option<SearchResult> {
    let mut seen: HashMap<Vec<usize>, Option<f64>> = HashMap::new();
    let mut eval = |p: &[usize], seen: &mut HashMap<Vec<usize>, Option<f64>>| -> Option<f64> {
        if let Some(v) = seen.get(p) {
            return *v;
        }
        let v = measure(p);
        seen.insert(p.to_vec(), v);
        v
    };
    let start_ns = eval(&start, &mut seen)?;
    let (mut best, mut best_ns) = (start, start_ns);
    let mut timed_out = false;
    'passes: loop {
        let mut moved = false;
        for (d, &len) in dims.iter().enumerate() {
            let mut cand_best: Option<(usize, f64)> = None;
            for v in 0..len {
                if v == best[d] {
                    continue;
                }
                if Instant::now() >= deadline {
                    timed_out = true;
                    break 'passes;
                }
                let mut p = best.clone();
                p[d] = v;
                if let Some(t) = eval(&p, &mut seen) {
                    if cand_best.is_none_or(|(_, bt)| t < bt) {
                        cand_best = Some((v, t));
                    }
                }
            }
            if let Some((v, t)) = cand_best {
                if t < best_ns * (1.0 - NOISE_MARGIN) {
                    best[d] = v;
                    best_ns = t;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    Some(SearchResult {
        best,
        best_ns,
        start_ns,
        measured: seen.len(),
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn finds_the_minimum_of_a_separable_bowl_cheaper_than_the_grid() {
        let dims = [8, 8, 4];
        let target = [5usize, 2, 3];
        let mut calls = 0;
        let r = coordinate_descent(
            &dims,
            vec![0, 0, 0],
            Instant::now() + Duration::from_secs(60),
            |p| {
                calls += 1;
                Some(
                    100.0
                        + p.iter()
                            .zip(target)
                            .map(|(&a, b)| (a as f64 - b as f64).powi(2))
                            .sum::<f64>(),
                )
            },
        )
        .unwrap();
        assert_eq!(r.best, target);
        assert_eq!(r.best_ns, 100.0);
        assert_eq!(r.start_ns, 100.0 + 25.0 + 4.0 + 9.0);
        assert!(calls < 8 * 8 * 4 / 4, "{calls} measurements");
        assert!(!r.timed_out);
    }

    #[test]
    fn invalid_points_are_skipped_and_noise_does_not_move() {
        let r = coordinate_descent(
            &[4],
            vec![1],
            Instant::now() + Duration::from_secs(60),
            |p| {
                match p[0] {
                    0 => None,
                    1 => Some(100.0),
                    2 => Some(99.0), // within the noise margin
                    _ => Some(150.0),
                }
            },
        )
        .unwrap();
        assert_eq!(r.best, vec![1]);
    }

    #[test]
    fn a_passed_deadline_measures_only_the_start() {
        let r = coordinate_descent(&[4, 4], vec![0, 0], Instant::now(), |_| Some(1.0)).unwrap();
        assert!(r.timed_out);
        assert_eq!(r.measured, 1);
        assert!(coordinate_descent(&[2], vec![0], Instant::now(), |_| None).is_none());
    }
}
