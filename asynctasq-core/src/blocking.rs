//! The blocking pool: where the bodies of blocking tasks (`#[task]` on a plain `fn`) run, so
//! a CPU-bound or blocking task never occupies one of the async runtime's workers, whose
//! time belongs to fetching, lease renewals, acks and the other tasks.
//!
//! The pool is bounded: at most `threads` bodies run at once (a worker's
//! `--blocking-threads`, default the number of cores); the others wait for a slot without
//! holding a thread. Threads come from tokio's blocking pool (`spawn_blocking`), never from its
//! async workers.
//!
//! A blocking body cannot be pre-empted. When its task times out (or its lease is lost, or the
//! worker stops past its grace period), the task is reported as such at once and its result is
//! discarded, but the body runs on to its end and keeps its slot until then. Long bodies check
//! [`TaskContext::is_cancelled`](crate::TaskContext::is_cancelled) to stop early.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::task::TaskResult;

/// A bounded pool for blocking task bodies. Cheap to clone; clones share the slots.
#[derive(Clone, Debug)]
pub struct BlockingPool {
    slots: Arc<Semaphore>,
    threads: usize,
}

impl BlockingPool {
    /// A pool running at most `threads` bodies at once (at least 1).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Self { slots: Arc::new(Semaphore::new(threads)), threads }
    }

    /// A pool of one thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// How many bodies may run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `body` on a thread of the pool once a slot is free. A panic in `body` resumes in
    /// the caller, so the engine catches it as it catches an async task's.
    pub async fn run(&self, body: impl FnOnce() -> TaskResult + Send + 'static) -> TaskResult {
        let slot = Arc::clone(&self.slots).acquire_owned().await.expect("the pool's semaphore is never closed");
        let joined = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            body()
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(crate::task::TaskError::retry(format!("blocking body did not finish: {e}"))),
        }
    }
}

impl Default for BlockingPool {
    fn default() -> Self {
        Self::per_core()
    }
}
