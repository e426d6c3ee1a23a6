//! A persistent worker pool for data-parallel kernels.
//!
//! A decode step of a 30-layer model dispatches a few hundred small jobs; waking threads
//! through the OS for each would cost more than the work. Workers therefore spin briefly on
//! an epoch counter after each job (staying hot between the ops of one step), then park on a
//! condition variable when idle. The calling thread takes part as worker 0.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// Spin iterations before a waiting thread starts yielding.
const SPIN_ITERS: u32 = 1 << 14;
/// Yields before an idle worker parks.
const YIELD_ITERS: u32 = 64;

/// The job currently published to workers: a thin pointer to this struct travels through an
/// `AtomicPtr`.
struct JobRef<'a> {
    f: &'a (dyn Fn(usize) + Sync),
}

struct Shared {
    epoch: AtomicU64,
    job: AtomicPtr<JobRef<'static>>,
    remaining: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

/// A fixed set of worker threads running one data-parallel job at a time.
///
/// Thread safety: `ThreadPool` is `Send + Sync`; concurrent calls to [`ThreadPool::run`] are
/// serialized by an internal lock.
pub struct ThreadPool {
    n_threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    run_lock: Mutex<()>,
}

thread_local! {
    static IN_POOL_JOB: Cell<bool> = const { Cell::new(false) };
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (the caller counts as one), at least one.
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            remaining: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let workers = (1..n_threads)
            .map(|idx| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("loradock-cpu-{idx}"))
                    .spawn(move || worker_loop(&s, idx))
                    .expect("spawning a CPU worker thread failed (out of threads?)")
            })
            .collect();
        ThreadPool { n_threads, shared, workers, run_lock: Mutex::new(()) }
    }

    /// A pool sized to the machine's available parallelism.
    pub fn with_available_parallelism() -> ThreadPool {
        ThreadPool::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// Number of threads that run each job.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Run `f(thread_index)` on every thread of the pool (indices `0..n_threads`) and return
    /// when all have finished. A panic inside `f` is re-raised here after all threads are done.
    /// Called from inside a job, `f` runs inline for every index (no nested parallelism).
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 || IN_POOL_JOB.with(|c| c.get()) {
            for i in 0..self.n_threads {
                f(i);
            }
            return;
        }
        let _serial = self.run_lock.lock();
        let s = &*self.shared;
        let job = JobRef { f };
        s.remaining.store(self.n_threads - 1, Ordering::Relaxed);
        s.panicked.store(false, Ordering::Relaxed);
        // SAFETY: the pointer is only dereferenced by workers between the epoch bump below and
        // their decrement of `remaining`; this function does not return (and so `job` and `f`
        // stay alive) until `remaining` is zero. The 'static is a lifetime erasure only.
        s.job.store(&job as *const JobRef<'_> as *mut JobRef<'static>, Ordering::Relaxed);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock();
            s.cv.notify_all();
        }
        IN_POOL_JOB.with(|c| c.set(true));
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        IN_POOL_JOB.with(|c| c.set(false));
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.load(Ordering::Relaxed) {
            panic!("a CPU worker thread panicked inside a kernel");
        }
    }
}

fn worker_loop(s: &Shared, idx: usize) {
    IN_POOL_JOB.with(|c| c.set(true));
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else if spins < SPIN_ITERS + YIELD_ITERS {
                std::thread::yield_now();
            } else {
                let mut g = s.lock.lock();
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.epoch.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                    s.cv.wait(&mut g);
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        }
        let ptr = s.job.load(Ordering::Relaxed);
        if !ptr.is_null() {
            // SAFETY: see `ThreadPool::run`: the job outlives this call because the caller
            // waits for `remaining` to reach zero, which happens only after the decrement below.
            let job = unsafe { &*ptr };
            if catch_unwind(AssertUnwindSafe(|| (job.f)(idx))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.remaining.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock.lock();
            self.shared.cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The half-open range of `0..total` that thread `idx` of `n` handles, in `align`-sized steps.
pub fn split_range(total: usize, idx: usize, n: usize, align: usize) -> std::ops::Range<usize> {
    let units = total.div_ceil(align);
    let start = (units * idx / n * align).min(total);
    let end = (units * (idx + 1) / n * align).min(total);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_per_job() {
        let pool = ThreadPool::new(3);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..1000 {
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 1000);
        }
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::new(2);
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn split_range_covers_everything() {
        for total in [0, 1, 7, 64, 100] {
            let mut covered = 0;
            for i in 0..3 {
                let r = split_range(total, i, 3, 4);
                assert_eq!(r.start, covered);
                covered = r.end;
            }
            assert_eq!(covered, total);
        }
    }
}
