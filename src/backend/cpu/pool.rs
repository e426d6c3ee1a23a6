//! A persistent worker pool for data-parallel kernels.
//!
//! A decode step of a 30-layer model dispatches a few hundred small jobs; waking threads
//! through the OS for each would cost more than the work. Workers therefore spin briefly on
//! an epoch counter after each job (staying hot between the ops of one step), then park when
//! idle. The calling thread takes part too.
//!
//! Work is split into chunks that threads claim from a shared counter, and a job is complete
//! when all its chunks are done, not when every worker has checked in. A worker that the OS
//! has descheduled (another process on its core) therefore delays a job by at most the one
//! chunk it holds, never by a whole time slice: whoever is running does the rest.
//!
//! The claim counter packs the job's sequence number (high 32 bits) with the next chunk index
//! (low 32 bits), so a late worker can never take a chunk of a job that has ended, and never
//! dereferences the job's closure unless it holds a chunk the caller is still waiting for.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// Spin iterations before a waiting thread starts yielding.
const SPIN_ITERS: u32 = 1 << 12;
/// Yields before an idle worker parks.
const YIELD_ITERS: u32 = 256;
const IDX_MASK: u64 = 0xffff_ffff;

/// The job currently published: a thin pointer to this struct travels through an `AtomicPtr`.
struct JobRef<'a> {
    f: &'a (dyn Fn(usize, usize) + Sync),
}

struct Shared {
    /// Bumped for every job; idle workers watch it.
    epoch: AtomicU64,
    /// `(sequence << 32) | next chunk index`.
    claim: AtomicU64,
    /// `(sequence << 32) | chunk count` of the job `job` points to, published as one word: a
    /// claimer must never pair one job's sequence number with another job's chunk count.
    job_desc: AtomicU64,
    job: AtomicPtr<JobRef<'static>>,
    done: AtomicUsize,
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
    run_lock: Mutex<u64>,
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
            claim: AtomicU64::new(0),
            job_desc: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
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
        ThreadPool { n_threads, shared, workers, run_lock: Mutex::new(0) }
    }

    /// A pool sized to the machine's available parallelism.
    pub fn with_available_parallelism() -> ThreadPool {
        ThreadPool::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// Number of threads that take part in each job.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Run `f(chunk, thread)` for every `chunk` in `0..n_chunks`, each exactly once, on
    /// whichever threads are running; `thread` (in `0..n_threads`, 0 = the caller) identifies
    /// the executing thread, for per-thread scratch space. Returns when all chunks are done.
    /// A panic inside `f` is re-raised here afterwards. Called from inside a job, everything
    /// runs inline on the calling thread.
    pub fn run(&self, n_chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if n_chunks == 0 {
            return;
        }
        if self.n_threads == 1 || n_chunks == 1 || IN_POOL_JOB.with(|c| c.get()) {
            for i in 0..n_chunks {
                f(i, 0);
            }
            return;
        }
        assert!(n_chunks < IDX_MASK as usize, "too many chunks");
        let mut seq = self.run_lock.lock();
        *seq = (*seq + 1) & IDX_MASK;
        let s = &*self.shared;
        let job = JobRef { f };
        // SAFETY: workers dereference this pointer only while holding a claimed chunk of this
        // job (see `claim_and_run`), and this function does not return, so `job` and `f` stay
        // alive, until every chunk is done. The 'static is a lifetime erasure only.
        s.job.store(&job as *const JobRef<'_> as *mut JobRef<'static>, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.panicked.store(false, Ordering::Relaxed);
        s.job_desc.store((*seq << 32) | n_chunks as u64, Ordering::Release);
        s.claim.store(*seq << 32, Ordering::Release);
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock();
            s.cv.notify_all();
        }
        IN_POOL_JOB.with(|c| c.set(true));
        claim_and_run(s, 0);
        IN_POOL_JOB.with(|c| c.set(false));
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != n_chunks {
            spins += 1;
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if s.panicked.load(Ordering::Relaxed) {
            panic!("a CPU kernel panicked inside the thread pool");
        }
    }
}

/// Claim and run chunks of the current job until none are left.
fn claim_and_run(s: &Shared, thread: usize) {
    loop {
        let c = s.claim.fetch_add(1, Ordering::AcqRel);
        let (seq, idx) = (c >> 32, (c & IDX_MASK) as usize);
        // A stale claim (an ended job's counter) or a job not yet fully published: nothing to
        // do. One load of the descriptor: a stale sequence number must never be checked
        // against the next job's chunk count (that ran chunks twice and hung the caller).
        let desc = s.job_desc.load(Ordering::Acquire);
        if seq != desc >> 32 || idx as u64 >= desc & IDX_MASK {
            return;
        }
        // SAFETY: we hold chunk `idx < n_chunks` of job `seq`, which is the job the pointer
        // describes (published before the claim counter was reset, Release/AcqRel); the
        // caller waits for this chunk's `done` increment before the job ends.
        let job = unsafe { &*s.job.load(Ordering::Acquire) };
        if catch_unwind(AssertUnwindSafe(|| (job.f)(idx, thread))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.done.fetch_add(1, Ordering::Release);
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
        claim_and_run(s, idx);
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

/// An output buffer shared by the chunks of one pool job, each of which writes a disjoint set
/// of its elements (the caller's `&mut` borrow outlives the job).
#[derive(Clone, Copy)]
pub struct SharedOut(*mut f32);

// SAFETY: a `SharedOut` is only made from a `&mut [f32]` that outlives the pool job using it,
// and every user writes disjoint elements from different chunks (each use site states which).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Share `buf` with the chunks of a job.
    pub fn new(buf: &mut [f32]) -> SharedOut {
        SharedOut(buf.as_mut_ptr())
    }

    /// The raw pointer (a method, so closures capture the whole `SharedOut`).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// Chunk count for `total` work units: about three chunks per thread (fewer claims per op;
/// measured faster for decode than eight, and a descheduled worker still delays a job by one
/// chunk only), each at least `min_units` units, in multiples of `align`. Returns
/// `(n_chunks, units_per_chunk)`.
pub fn chunking(total: usize, n_threads: usize, min_units: usize, align: usize) -> (usize, usize) {
    if total == 0 {
        return (0, 1);
    }
    let target = (total / (n_threads * 3)).max(min_units).max(1);
    let per = target.div_ceil(align) * align;
    (total.div_ceil(per), per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_exactly_once() {
        let pool = ThreadPool::new(3);
        let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..500 {
            pool.run(37, &|c, t| {
                assert!(t < 3);
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 500);
        }
    }

    /// Jobs of alternating sizes, back to back: a late claim of one job must never be taken
    /// for a chunk of the next (every chunk runs exactly once, and every job ends).
    #[test]
    fn alternating_job_sizes_run_every_chunk_exactly_once() {
        let pool = ThreadPool::new(3);
        let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        for j in 0..20_000usize {
            let n = if j % 2 == 0 { 2 } else { 2 + j % 61 };
            pool.run(n, &|c, _| {
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
            for (c, h) in hits.iter().enumerate().take(n) {
                assert_eq!(h.swap(0, Ordering::Relaxed), 1, "job {j}: chunk {c} of {n}");
            }
        }
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::new(2);
        let n = AtomicUsize::new(0);
        pool.run(4, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let threads: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
        pool.run(64, &|_, t| {
            n.fetch_add(1, Ordering::Relaxed);
            threads[t].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_micros(200));
        });
        assert_eq!(n.load(Ordering::Relaxed), 68);
        assert!(threads[1].load(Ordering::Relaxed) > 0, "the parked worker never took part");
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|c, _| {
                if c == 5 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(8, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn chunking_covers_everything() {
        for total in [1, 7, 64, 1000, 49152] {
            let (n, per) = chunking(total, 2, 16, 4);
            assert!(n * per >= total && (n - 1) * per < total);
            assert_eq!(per % 4, 0);
        }
        assert_eq!(chunking(0, 2, 16, 4).0, 0);
    }
}
