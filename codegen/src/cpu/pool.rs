//! A small persistent worker pool for the generated kernels.
//!
//! A decode step runs a few hundred short parallel ops (about 100 µs each on the 2B4T model);
//! waking sleeping threads for each one costs a noticeable share of the step. These workers
//! spin for a short while after each job, so the next op starts without a system call, and only
//! then park. Work is split statically: part `i` of a job always runs on thread `i` (the
//! caller runs part 0), so every thread streams the same rows on every token.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::CodegenError;

/// Spin iterations a worker waits for the next job before it parks.
const SPIN_LIMIT: u32 = 1 << 16;

/// One job: a function of the part index.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    /// Incremented for each job (and to stop).
    epoch: AtomicUsize,
    /// The current job (`*const Job`), valid while `pending > 0`.
    job: AtomicPtr<()>,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    /// A worker's part panicked.
    panicked: AtomicBool,
    stop: AtomicBool,
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

/// `threads − 1` worker threads plus the calling thread.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    running: Mutex<()>,
}

impl WorkerPool {
    /// A pool running jobs on `threads` threads (the caller included).
    pub fn new(threads: usize) -> Result<WorkerPool, CodegenError> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for index in 1..threads.max(1) {
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("bitnetc-jit-{index}"))
                .spawn(move || worker(&s, index))
                .map_err(|e| CodegenError::Threads {
                    threads,
                    problem: e.to_string(),
                })?;
            workers.push(handle);
        }
        Ok(WorkerPool {
            shared,
            workers,
            running: Mutex::new(()),
        })
    }

    /// Threads a job runs on.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(0)`, …, `f(threads − 1)`, part `i` on thread `i`, and returns when all are done.
    ///
    /// # Panics
    /// If a part panicked (after every part has finished).
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            f(0);
            return;
        }
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let job = Job { f };
        s.job.store((&job as *const Job).cast_mut().cast(), SeqCst);
        s.pending.store(self.workers.len(), SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        if s.sleeping.load(SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0u32;
        while s.pending.load(SeqCst) != 0 {
            spins = spins.saturating_add(1);
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), SeqCst);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a worker thread's part of a kernel panicked");
        }
    }
}

impl WorkerPool {
    /// Runs `f` over contiguous ranges that together cover `0..n` exactly once, and returns
    /// when all are done: each thread of the pool takes the next range not yet taken until
    /// none is left.
    ///
    /// Ranges shrink as the work runs out (guided self-scheduling: a quarter of what is left
    /// per thread, none under `min_len` items but the last), so the threads finish close
    /// together however fast each one runs (a busy core, a descheduled vCPU), for a few
    /// claims per thread. Where [`WorkerPool::run`] gives each thread a fixed part, the range
    /// a thread runs varies from run to run here, so `f` must compute each item the same way
    /// in any range (every kernel here does: a row's result depends on the row only).
    ///
    /// # Panics
    /// If `f` panicked (after every thread has stopped taking ranges).
    pub fn run_ranges(&self, n: usize, min_len: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        let next = AtomicUsize::new(0);
        let share = 2 * self.threads();
        let take_all = |_: usize| loop {
            let mut start = next.load(Relaxed);
            let range = loop {
                if start >= n {
                    return;
                }
                let len = ((n - start) / share).max(min_len.max(1)).min(n - start);
                match next.compare_exchange_weak(start, start + len, Relaxed, Relaxed) {
                    Ok(_) => break start..start + len,
                    Err(now) => start = now,
                }
            };
            f(range);
        };
        if n <= min_len || self.workers.is_empty() {
            take_all(0);
        } else {
            self.run(&take_all);
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0u32;
        loop {
            let e = s.epoch.load(SeqCst);
            if e != seen {
                seen = e;
                break;
            }
            spins += 1;
            if spins < SPIN_LIMIT {
                std::hint::spin_loop();
                continue;
            }
            let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleeping.fetch_add(1, SeqCst);
            while s.epoch.load(SeqCst) == seen {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            s.sleeping.fetch_sub(1, SeqCst);
            spins = 0;
        }
        if s.stop.load(SeqCst) {
            return;
        }
        let job = s.job.load(SeqCst).cast::<Job>();
        // SAFETY: `run` stored a pointer to a `Job` on its stack before publishing the new epoch
        // and does not return (so the job stays alive) until `pending` reaches zero below.
        let f = unsafe { (*job).f };
        if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
            s.panicked.store(true, SeqCst);
        }
        s.pending.fetch_sub(1, SeqCst);
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.stop.store(true, SeqCst);
        s.epoch.fetch_add(1, SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once_per_job_on_its_own_thread() {
        for threads in [1usize, 2, 3] {
            let pool = WorkerPool::new(threads).unwrap();
            assert_eq!(pool.threads(), threads);
            let counts: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
            for round in 0..2000u64 {
                pool.run(&|i| {
                    counts[i].fetch_add(round + 1, SeqCst);
                });
                // Park the workers now and then, to exercise waking them.
                if round % 500 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            let expected: u64 = (1..=2000).sum();
            for c in &counts {
                assert_eq!(c.load(SeqCst), expected);
            }
        }
    }

    #[test]
    fn ranges_cover_every_item_exactly_once() {
        for threads in [1usize, 2, 3] {
            let pool = WorkerPool::new(threads).unwrap();
            for (n, min_len) in [
                (0usize, 1usize),
                (1, 1),
                (5, 1),
                (64, 4),
                (1000, 0),
                (1000, 7),
            ] {
                let counts: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                let claims = AtomicU64::new(0);
                for _ in 0..50 {
                    pool.run_ranges(n, min_len, &|r| {
                        assert!(!r.is_empty() && r.end <= n);
                        assert!(r.len() >= min_len || r.end == n, "{r:?} of {n}");
                        claims.fetch_add(1, SeqCst);
                        for c in &counts[r] {
                            c.fetch_add(1, SeqCst);
                        }
                    });
                }
                assert!(counts.iter().all(|c| c.load(SeqCst) == 50), "{threads} {n}");
                // Guided: a few claims per thread, not one per item.
                assert!(
                    claims.load(SeqCst) <= 50 * 40,
                    "{} claims",
                    claims.load(SeqCst)
                );
            }
        }
    }

    #[test]
    fn a_panicking_part_is_reported_to_the_caller_and_the_pool_goes_on() {
        let pool = WorkerPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("part 1 fails");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 2);
    }
}
