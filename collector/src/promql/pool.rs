//! The query pool: where PromQL is parsed and evaluated, off the async runtime.
//!
//! ```text
//! handler ──submit──▶ the thread that went idle last ──▶ parse, regexes, eval,
//!    ▲        │ all busy: [ queue: max_queued ], oldest first   series look-up, JSON
//!    │        │ queue full: 503 "unavailable", Retry-After            │
//!    └──────────────────────── oneshot ◀────────────────────────────────┘
//! (max_concurrency threads, stack_bytes each)
//! ```
//! Like Prometheus' `--query.max-concurrency`, at most `max_concurrency` queries run at
//! once; up to `max_queued` more wait their turn, and beyond that a query is refused
//! at once with 503 and `Retry-After` instead of piling up. Parsing and the regex
//! compilation of label matchers happen on these threads too, so a costly query never
//! holds an async worker (and `/healthz` stays answerable). The threads have a large
//! stack of their own ([`QueryPoolOptions::stack_bytes`]) as a second guard behind the
//! depth limit of `limits.rs`. A panic inside a job is caught and answered as an
//! error; the thread lives on.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Default most queries running at once (Prometheus' `--query.max-concurrency`).
pub const DEFAULT_MAX_CONCURRENCY: usize = 20;
/// Default most queries waiting for a thread.
pub const DEFAULT_MAX_QUEUED: usize = 100;
/// Stack of each query thread: far more than the deepest query the depth limit lets
/// through needs (a debug build needs ~13 KiB a level for the worst shape, so this
/// holds ~4500 levels against a limit of 256, at most 512; `promql::tests::stack_probe`).
/// Only the pages a query touches become resident.
pub const DEFAULT_STACK_BYTES: usize = 64 << 20;
/// Seconds a refused client is told to wait.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Settings of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryPoolOptions {
    /// Threads, i.e. most queries running at once.
    pub max_concurrency: usize,
    /// Most queries waiting for a thread; beyond it, refused.
    pub max_queued: usize,
    /// Stack size of each thread, in bytes.
    pub stack_bytes: usize,
}

impl Default for QueryPoolOptions {
    fn default() -> Self {
        QueryPoolOptions {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queued: DEFAULT_MAX_QUEUED,
            stack_bytes: DEFAULT_STACK_BYTES,
        }
    }
}

/// Why a job did not give its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every thread is busy and the queue is full.
    #[error("too many queries at once: {running} running and {queued} waiting (query max_concurrency / max_queued); retry in a moment")]
    Busy {
        /// The pool's threads.
        running: usize,
        /// The queue's length.
        queued: usize,
    },
    /// The job panicked (a bug): answered as an internal error.
    #[error("the query failed unexpectedly (internal error)")]
    Panicked,
    /// The operating system refused to start the query threads.
    #[error("cannot start the query threads: {0}")]
    NoThreads(String),
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where a job waits: the queue (every thread busy), or the slot of an idle thread.
struct State {
    /// Jobs waiting for a thread, oldest first; at most `max_queued`.
    queue: VecDeque<Job>,
    /// Idle threads, the one that went idle last on top: it takes the next job.
    idle: Vec<Arc<Slot>>,
}

/// One idle thread's hand-off: a job is put here and the thread woken.
struct Slot {
    job: Mutex<Option<Job>>,
    ready: Condvar,
}

/// Locks `m`; a poisoned lock is used as it is (jobs catch their own panics, so a
/// poisoned lock only means a panic between two plain field updates).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fixed set of query threads behind a bounded queue.
///
/// Jobs go to the thread that went idle last (a stack, not a ring): one query after
/// another, as a dashboard sends them, runs on the same thread, with its caches and
/// its malloc arena warm. Handing the jobs round the twenty threads cost a small
/// query ~13 % (a 1 h `rate` of one series, 0.30 → 0.34 ms) and a wake-up of a second
/// thread each time.
pub struct QueryPool {
    state: Arc<Mutex<State>>,
    opts: QueryPoolOptions,
    /// Jobs accepted and not yet finished (running or queued), for `/metrics`.
    in_flight: Arc<AtomicUsize>,
    /// Jobs refused because the queue was full.
    refused: AtomicUsize,
}

impl QueryPool {
    /// Starts `opts.max_concurrency` threads.
    pub fn new(opts: QueryPoolOptions) -> std::io::Result<QueryPool> {
        let opts = QueryPoolOptions {
            max_concurrency: opts.max_concurrency.max(1),
            ..opts
        };
        let state = Arc::new(Mutex::new(State {
            queue: VecDeque::new(),
            idle: Vec::with_capacity(opts.max_concurrency),
        }));
        for i in 0..opts.max_concurrency {
            let state = state.clone();
            std::thread::Builder::new()
                .name(format!("calm-query-{i}"))
                .stack_size(opts.stack_bytes)
                .spawn(move || worker(&state))?;
        }
        Ok(QueryPool {
            state,
            opts,
            in_flight: Arc::new(AtomicUsize::new(0)),
            refused: AtomicUsize::new(0),
        })
    }

    /// The pool's settings.
    pub fn options(&self) -> QueryPoolOptions {
        self.opts
    }

    /// Queries accepted and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Queries refused because the pool was full, since start.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Runs `f` on a query thread and waits for its result without blocking the
    /// caller's async worker; refused at once when the queue is full.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let in_flight = self.in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f));
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send(out);
        });
        if self.submit(job).is_err() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(PoolError::Busy {
                running: self.opts.max_concurrency,
                queued: self.opts.max_queued,
            });
        }
        match result.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) | Err(_) => Err(PoolError::Panicked),
        }
    }

    /// Threads waiting for a job.
    #[cfg(test)]
    fn idle_threads(&self) -> usize {
        lock(&self.state).idle.len()
    }

    /// Hands `job` to the last idle thread, or queues it; gives it back when every
    /// thread is busy and the queue is full.
    fn submit(&self, job: Job) -> Result<(), Job> {
        let mut state = lock(&self.state);
        if let Some(slot) = state.idle.pop() {
            drop(state);
            *lock(&slot.job) = Some(job);
            slot.ready.notify_one();
            return Ok(());
        }
        if state.queue.len() >= self.opts.max_queued {
            return Err(job);
        }
        state.queue.push_back(job);
        Ok(())
    }
}

/// A query thread: the oldest queued job, else idle until one is handed over.
fn worker(state: &Mutex<State>) {
    let slot = Arc::new(Slot {
        job: Mutex::new(None),
        ready: Condvar::new(),
    });
    loop {
        let queued = {
            let mut state = lock(state);
            let job = state.queue.pop_front();
            if job.is_none() {
                state.idle.push(slot.clone());
            }
            job
        };
        let job = match queued {
            Some(job) => job,
            None => {
                let mut held = lock(&slot.job);
                loop {
                    if let Some(job) = held.take() {
                        break job;
                    }
                    held = slot.ready.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            }
        };
        // The job catches its own panics.
        job();
    }
}

static POOL: OnceLock<QueryPool> = OnceLock::new();

/// Starts the process-wide pool with `opts` (at start, from `[query]`); a second call
/// changes nothing and says so.
pub fn init(opts: QueryPoolOptions) -> std::io::Result<bool> {
    if POOL.get().is_some() {
        return Ok(false);
    }
    let pool = QueryPool::new(opts)?;
    Ok(POOL.set(pool).is_ok())
}

/// Runs `f` on the process-wide pool (started with the defaults if [`init`] was not
/// called).
pub async fn run<T, F>(f: F) -> Result<T, PoolError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if POOL.get().is_none() {
        init(QueryPoolOptions::default()).map_err(|e| PoolError::NoThreads(e.to_string()))?;
    }
    match POOL.get() {
        Some(p) => p.run(f).await,
        None => Err(PoolError::NoThreads("not started".into())),
    }
}

/// The process-wide pool, once started.
pub fn global() -> Option<&'static QueryPool> {
    POOL.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn full_pool_refuses_and_panics_are_errors() {
        let pool = Arc::new(
            QueryPool::new(QueryPoolOptions {
                max_concurrency: 1,
                max_queued: 1,
                stack_bytes: 1 << 20,
            })
            .unwrap(),
        );
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let started_rx = Arc::new(Mutex::new(started_rx));
        let mut held = Vec::new();
        // One running (wait until it runs), then one queued.
        for k in 0..2 {
            let p = pool.clone();
            let g = go_rx.clone();
            let s = started_tx.clone();
            held.push(tokio::spawn(async move {
                p.run(move || {
                    let _ = s.send(());
                    let _ = g.lock().unwrap().recv();
                    7
                })
                .await
            }));
            if k == 0 {
                let r = started_rx.clone();
                tokio::task::spawn_blocking(move || r.lock().unwrap().recv())
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
        for _ in 0..500 {
            if pool.in_flight() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.in_flight(), 2);
        let third = pool.run(|| 1).await;
        assert!(matches!(third, Err(PoolError::Busy { .. })), "{third:?}");
        assert_eq!(pool.refused(), 1);
        go_tx.send(()).unwrap();
        go_tx.send(()).unwrap();
        for h in held {
            assert_eq!(h.await.unwrap(), Ok(7));
        }
        let p = pool.run(|| -> i32 { panic!("boom") }).await;
        assert_eq!(p, Err(PoolError::Panicked));
        assert_eq!(pool.run(|| 3).await, Ok(3));
    }

    #[tokio::test]
    async fn one_query_after_another_runs_on_one_thread() {
        let pool = QueryPool::new(QueryPoolOptions {
            max_concurrency: 8,
            max_queued: 4,
            stack_bytes: 1 << 20,
        })
        .unwrap();
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            // Every thread idle again (the last one parks just after answering), as
            // between a dashboard's requests.
            for _ in 0..1000 {
                if pool.idle_threads() == 8 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let id = pool.run(|| std::thread::current().id()).await.unwrap();
            threads.insert(id);
        }
        assert_eq!(threads.len(), 1, "sequential queries ran on {threads:?}");
        // Jobs submitted at once still spread over the threads.
        let all: Vec<_> = (0..8)
            .map(|_| {
                pool.run(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    std::thread::current().id()
                })
            })
            .collect();
        let ids: std::collections::HashSet<_> = futures_util::future::join_all(all)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids.len(), 8);
    }
}
