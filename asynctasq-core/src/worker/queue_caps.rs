//! Per-process caps on a queue's running tasks (`WorkerBuilder::queue_concurrency`): this
//! worker runs at most N of that queue's tasks at once, whatever its overall concurrency. Kept
//! in the process, so they need no backend support; the fleet-wide cap is the backend's
//! (`Driver::set_limits`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The capped queues' caps and running counts, and a signal when one of their tasks ends.
#[derive(Debug, Default)]
pub(super) struct QueueCaps {
    caps: HashMap<String, (usize, AtomicUsize)>,
    freed: Notify,
}

impl QueueCaps {
    pub(super) fn new(caps: impl IntoIterator<Item = (String, usize)>) -> Arc<Self> {
        Arc::new(Self { caps: caps.into_iter().map(|(q, n)| (q, (n, AtomicUsize::new(0)))).collect(), freed: Notify::new() })
    }

    /// Whether any queue is capped.
    pub(super) fn any(&self) -> bool {
        !self.caps.is_empty()
    }

    /// How many more of `queue`'s tasks this worker may run now.
    pub(super) fn room(&self, queue: &str) -> usize {
        self.caps.get(queue).map_or(usize::MAX, |(cap, running)| cap.saturating_sub(running.load(Ordering::SeqCst)))
    }

    /// `n` of `queue`'s tasks were taken.
    pub(super) fn took(&self, queue: &str, n: usize) {
        if let Some((_, running)) = self.caps.get(queue) {
            running.fetch_add(n, Ordering::SeqCst);
        }
    }

    /// One of `queue`'s tasks ended.
    pub(super) fn ended(&self, queue: &str) {
        if let Some((_, running)) = self.caps.get(queue) {
            running.fetch_sub(1, Ordering::SeqCst);
            self.freed.notify_one();
        }
    }

    /// Resolves when a capped queue's task ends (at once if one ended since the last call).
    pub(super) async fn freed(&self) {
        if self.any() {
            self.freed.notified().await;
        } else {
            std::future::pending().await
        }
    }
}
