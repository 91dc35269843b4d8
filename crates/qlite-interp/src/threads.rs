//! A persistent pool of worker threads for splitting one inference's large kernels.
//!
//! Started once (with [`crate::Interpreter::threads`]), not per layer: a job is published to
//! workers that spin for a while after their last task (so the layers of one inference reach
//! them in a few hundred nanoseconds) and then sleep on a condition variable. The thread that
//! submits a job takes part in it and returns only when every task has finished, so a job may
//! borrow from its caller's stack.
//!
//! Tasks are claimed through one word tagged with the job's number: a worker that wakes late
//! for a job that already finished cannot claim (and so cannot run) anything of the next one.
//! Each thread prefers its own tasks (task i on thread i mod threads), so consecutive layers
//! split alike keep their data in one core's cache.
//! A job submitted while the pool is busy (another thread's inference on the same interpreter,
//! or a task that itself splits) runs on the submitting thread alone: no deadlock, the same
//! results.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::isa::{self, Isa};

/// How long an idle worker spins before it sleeps: longer than the gap between two split
/// layers of one inference, short enough not to hold a core after it.
const SPIN: Duration = Duration::from_micros(200);

/// A job as the workers see it: the task function (borrowed from the submitting call, which
/// outlives every task claimed under this job's number), its task count and its tier.
#[derive(Clone, Copy)]
struct Job {
    number: u32,
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    /// Threads of the pool (the submitter is thread 0).
    threads: usize,
    isa: Isa,
}

// SAFETY: `f` is only called for a task claimed under `number`, and the submitting thread waits
// for every such task to finish before the borrow behind `f` ends.
#[allow(unsafe_code)]
unsafe impl Send for Job {}

struct Shared {
    job: Mutex<Option<Job>>,
    wake: Condvar,
    /// The number of the latest job, for spinning workers to watch without the lock.
    latest: AtomicU64,
    /// `number << 32 | next task`, or `| claimed bits` for jobs of at most 32 tasks.
    claim: AtomicU64,
    /// Tasks of the current job finished.
    done: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
}

/// Worker threads kept for the life of an interpreter.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held while a job runs: a second job at the same time runs serially on its own thread.
    busy: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ThreadPool {
    /// A pool running jobs on `threads` threads in all: the submitting thread and
    /// `threads − 1` workers. `None` if the system refuses to start a thread.
    pub fn new(threads: usize) -> Option<ThreadPool> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            wake: Condvar::new(),
            latest: AtomicU64::new(0),
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
        });
        let mut pool = ThreadPool { shared: shared.clone(), workers: Vec::new(), busy: Mutex::new(()) };
        for i in 1..threads.max(1) {
            let s = shared.clone();
            let h = std::thread::Builder::new().name(format!("qlite-worker-{i}")).spawn(move || worker(&s, i)).ok()?;
            pool.workers.push(h);
        }
        Some(pool)
    }

    /// Threads a job runs on, the submitting one included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(0)`, …, `f(tasks − 1)`, spread over the pool, and return when all have run. The
    /// calling thread takes part; the tasks run at its instruction-set tier. A task's panic is
    /// raised again here once every task has finished.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        let guard = if tasks > 1 && !self.workers.is_empty() { self.busy.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            (0..tasks).for_each(f);
            return;
        };
        let s = &*self.shared;
        #[allow(unsafe_code)]
        // SAFETY: only the lifetime is erased; this call does not return before every task
        // claimed under the job's number has finished (the wait below), and no task can be
        // claimed under it afterwards (the claim counter moves on to the next number first).
        let fp: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        let job = {
            let mut slot = lock(&s.job);
            let number = slot.map_or(1, |j| j.number.wrapping_add(1));
            let job = Job { number, f: fp, tasks, threads: self.threads(), isa: isa::current() };
            *slot = Some(job);
            s.done.store(0, Ordering::Relaxed);
            s.panicked.store(false, Ordering::Relaxed);
            s.claim.store(u64::from(number) << 32, Ordering::Release);
            s.latest.store(u64::from(number), Ordering::Release);
            if s.sleepers.load(Ordering::Relaxed) > 0 {
                s.wake.notify_all();
            }
            job
        };
        work(s, &job, 0);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < tasks {
            spins += 1;
            if spins < 1 << 16 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if s.panicked.load(Ordering::Relaxed) {
            panic!("a task of a split kernel panicked on a worker thread");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _slot = lock(&self.shared.job);
            self.shared.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Claim and run tasks of `job` until none is left, as thread `me` of the pool. Jobs of at
/// most 32 tasks claim by bits (`number << 32 | claimed`): each thread runs its own tasks first
/// (`me`, `me + threads`, …) and then any left, so a layer split the same way as the one
/// before it finds its input in the cache of the core that wrote it (a random assignment
/// measured up to 1.6× slower on 2 cores); larger jobs count tasks off in order.
fn work(s: &Shared, job: &Job, me: usize) {
    let tag = u64::from(job.number) << 32;
    let run = |task: usize| {
        #[allow(unsafe_code)]
        // SAFETY: the task was claimed under the job's number, so the job's submitter is still
        // waiting for it and `f` is alive (see `ThreadPool::run`).
        let f = unsafe { &*job.f };
        let ok = isa::with(job.isa, || catch_unwind(AssertUnwindSafe(|| f(task))).is_ok());
        if !ok {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.done.fetch_add(1, Ordering::Release);
    };
    if job.tasks <= 32 {
        let claim = |task: usize| -> bool {
            let bit = 1u64 << task;
            let mut c = s.claim.load(Ordering::Acquire);
            loop {
                if c & !0xffff_ffff != tag || c & bit != 0 {
                    return false;
                }
                match s.claim.compare_exchange_weak(c, c | bit, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return true,
                    Err(now) => c = now,
                }
            }
        };
        let step = job.threads.max(1);
        for task in (me..job.tasks).step_by(step).chain(0..job.tasks) {
            if claim(task) {
                run(task);
            }
        }
        return;
    }
    let mut c = s.claim.load(Ordering::Acquire);
    loop {
        if c & !0xffff_ffff != tag || (c & 0xffff_ffff) as usize >= job.tasks {
            return;
        }
        match s.claim.compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                run((c & 0xffff_ffff) as usize);
                c = s.claim.load(Ordering::Acquire);
            }
            Err(now) => c = now,
        }
    }
}

fn worker(s: &Shared, me: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        while s.latest.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut slot = lock(&s.job);
            s.sleepers.fetch_add(1, Ordering::Relaxed);
            while s.latest.load(Ordering::Acquire) == seen && !s.shutdown.load(Ordering::Acquire) {
                slot = s.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Some(job) = *lock(&s.job) else { continue };
        seen = u64::from(job.number);
        work(s, &job, me);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_per_job() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool::new(threads).unwrap();
            assert_eq!(pool.threads(), threads);
            for tasks in [0, 1, 2, 7, 64, 1000] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{threads} threads, {tasks} tasks");
            }
        }
    }

    #[test]
    fn many_short_jobs_and_sleeping_workers() {
        let pool = ThreadPool::new(2).unwrap();
        let total = AtomicUsize::new(0);
        for round in 0..20_000 {
            pool.run(3, &|t| {
                total.fetch_add(t + 1, Ordering::Relaxed);
            });
            if round % 5000 == 0 {
                std::thread::sleep(Duration::from_millis(2)); // the worker goes to sleep
            }
        }
        assert_eq!(total.load(Ordering::Relaxed), 20_000 * 6);
    }

    #[test]
    fn concurrent_and_nested_jobs_run_serially_where_the_pool_is_busy() {
        let pool = ThreadPool::new(2).unwrap();
        let total = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..3 {
                sc.spawn(|| {
                    for _ in 0..500 {
                        pool.run(4, &|_| {
                            pool.run(2, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 500 * 8);
    }

    #[test]
    fn a_task_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(8, &|t| {
                if t == 5 {
                    panic!("task 5");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(8, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }
}
