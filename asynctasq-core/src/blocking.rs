//! The blocking pool: where the bodies of blocking tasks (`#[task]` on a plain `fn`) run, so
//! a CPU-bound or blocking task never occupies one of the async runtime's workers, whose
//! time belongs to fetching, lease renewals, acks and the other tasks.
//!
//! The pool is bounded: `threads` threads of its own (a worker's `--blocking-threads`, default
//! the number of cores), started at its first body, never tokio's async workers. Bodies wait in
//! one queue; a thread that finishes a body takes the next at once.
//!
//! # Why threads of its own, not `spawn_blocking` behind a semaphore
//! That was the first design, and it left cores idle between bodies: a finishing body released
//! its slot, which woke a parked runtime thread, which handed the next body to a parked
//! blocking thread: two wake-ups in series per task. With 2 ms bodies on this 2-core machine
//! the worker used 1.5 cores and drained 0.71× the tasks/s of the same work written as an
//! `async fn` (`bench --scenario cpu`, BENCHMARKS.md). Here the thread that frees up pulls the
//! next body itself; only the result travels back to the runtime.
//!
//! A blocking body cannot be pre-empted. When its task times out (or its lease is lost, or the
//! worker stops past its grace period), the task is reported as such at once and its result is
//! discarded, but the body runs on to its end and keeps its slot until then. Long bodies check
//! [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled) to stop early.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::task::{TaskError, TaskResult};

type Body = Box<dyn FnOnce() + Send>;

/// A bounded pool for blocking task bodies. Cheap to clone; clones share the threads. The
/// threads end when the last clone is dropped (after the bodies already queued).
#[derive(Clone, Debug)]
pub struct BlockingPool {
    shared: Arc<Shared>,
    /// Shared by the clones, not by the threads: its drop closes the queue.
    _owner: Arc<Owner>,
}

#[derive(Debug)]
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.0.ready.notify_all();
    }
}

#[derive(Debug)]
struct Shared {
    threads: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
    started: OnceLock<()>,
}

struct Queue {
    bodies: VecDeque<Body>,
    closed: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("waiting", &self.bodies.len()).field("closed", &self.closed).finish()
    }
}

impl BlockingPool {
    /// A pool of `threads` threads (at least 1), started when the first body arrives.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            threads: threads.max(1),
            queue: Mutex::new(Queue { bodies: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
            started: OnceLock::new(),
        });
        Self { _owner: Arc::new(Owner(Arc::clone(&shared))), shared }
    }

    /// A pool of one thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// How many bodies may run at once.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `body` on a thread of the pool once one is free. A panic in `body` resumes in the
    /// caller, so the engine catches it as it catches an async task's. Dropping the returned
    /// future (a timeout) does not stop a body that has started: it runs to its end and its
    /// result is discarded.
    pub async fn run(&self, body: impl FnOnce() -> TaskResult + Send + 'static) -> TaskResult {
        self.start();
        let (tx, rx) = oneshot::channel();
        let job: Body = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(body)));
        });
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.bodies.push_back(job);
        }
        self.shared.ready.notify_one();
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(TaskError::retry("the blocking pool stopped before the body ran")),
        }
    }

    /// Starts the threads, once.
    fn start(&self) {
        self.shared.started.get_or_init(|| {
            for n in 0..self.shared.threads {
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new().name(format!("asynctasq-blocking-{n}")).spawn(move || serve(shared));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a blocking-pool thread");
                }
            }
        });
    }
}

/// One thread of the pool: takes bodies until the last pool is dropped and the queue is empty.
fn serve(shared: Arc<Shared>) {
    loop {
        let body = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(body) = queue.bodies.pop_front() {
                    break body;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        body();
    }
}

impl Default for BlockingPool {
    fn default() -> Self {
        Self::per_core()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_bodies_run_at_once_than_the_pool_has_threads() {
        let pool = BlockingPool::new(3);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let runs = (0..12).map(|_| {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            tokio::spawn(async move {
                pool.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            })
        });
        for run in runs.collect::<Vec<_>>() {
            run.await.expect("join").expect("body");
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_runs_on_a_pool_thread_and_its_result_comes_back() {
        let pool = BlockingPool::new(1);
        let name = Arc::new(Mutex::new(String::new()));
        let seen = name.clone();
        let result = pool
            .run(move || {
                *seen.lock().expect("name lock") = std::thread::current().name().unwrap_or_default().to_owned();
                Err(TaskError::fatal("from the body"))
            })
            .await;
        assert_eq!(result.expect_err("the body failed").to_string(), TaskError::fatal("from the body").to_string());
        assert_eq!(*name.lock().expect("name lock"), "asynctasq-blocking-0");
    }

    #[tokio::test]
    async fn a_panic_in_a_body_resumes_in_the_caller_and_the_thread_serves_on() {
        let pool = BlockingPool::new(1);
        let p = pool.clone();
        let panicked = tokio::spawn(async move { p.run(|| panic!("boom")).await }).await;
        assert!(panicked.expect_err("the panic reaches the caller").is_panic());
        assert!(pool.run(|| Ok(())).await.is_ok(), "the one thread still serves");
    }

    #[tokio::test]
    async fn a_body_whose_caller_gave_up_runs_to_its_end_and_keeps_its_thread() {
        let pool = BlockingPool::new(1);
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            pool.run(move || {
                std::thread::sleep(Duration::from_millis(200));
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the caller timed out");
        // The next body waits for the thread the abandoned one still holds.
        pool.run(|| Ok(())).await.expect("next body");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "the abandoned body ran to its end first");
    }

    #[tokio::test]
    async fn dropping_the_last_pool_ends_its_threads() {
        let pool = BlockingPool::new(2);
        pool.run(|| Ok(())).await.expect("body");
        let shared = Arc::downgrade(&pool.shared);
        drop(pool);
        for _ in 0..200 {
            if shared.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the pool's threads still hold it a second after the last pool was dropped");
    }
}
