//! Which queues a server driver last found limited ([`Capability::QueueLimits`]). Its plain
//! claim skips a queue with a limits row; a claim that finds nothing asks whether the queue is
//! limited, and from then on its claims take the limited path first, until that path finds
//! the limit gone.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits

use std::collections::HashSet;
use std::sync::Mutex;

use asynctasq_core::driver::QueueLimits;

/// A limits row's columns as [`QueueLimits`]: a count out of range is clamped.
pub(crate) fn stored_limits(max_leased: Option<i64>, per_key: Option<i64>) -> QueueLimits {
    let count = |n: Option<i64>| n.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
    QueueLimits::default().with_max_leased(count(max_leased)).with_per_key(count(per_key))
}

/// The queues found limited, by name.
#[derive(Debug, Default)]
pub(crate) struct Limited(Mutex<HashSet<String>>);

impl Limited {
    /// Whether `queue` was last found limited.
    pub(crate) fn contains(&self, queue: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(queue)
    }

    /// Records whether `queue` is limited.
    pub(crate) fn mark(&self, queue: &str, limited: bool) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if limited {
            set.insert(queue.to_owned());
        } else {
            set.remove(queue);
        }
    }
}
