//! Which queues a server driver last found limited ([`Capability::QueueLimits`]). Its plain
//! claim skips a queue with a limits row; a claim that finds nothing asks whether the queue is
//! limited, and from then on its claims take the limited path first, until that path finds
//! the limit gone.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits

use std::collections::HashSet;
use std::sync::Mutex;

use asynctasq_core::driver::QueueLimits;
use asynctasq_core::limits::Rate;

/// A limits row's columns: `max_leased`, `per_key`, `rate`, `rate_window_ms`, `rate_per_key`.
pub(crate) type LimitsRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>, bool);

/// A limits row's columns as [`QueueLimits`]: a count out of range is clamped; a rate needs
/// both its count and its window.
pub(crate) fn stored_limits((max_leased, per_key, rate, window_ms, rate_per_key): LimitsRow) -> QueueLimits {
    let count = |n: Option<i64>| n.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX));
    let rate = match (count(rate), window_ms) {
        (Some(starts), Some(ms)) => {
            let rate = Rate::new(starts, std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(1)));
            Some(if rate_per_key { rate.per_key() } else { rate })
        }
        _ => None,
    };
    QueueLimits::default().with_max_leased(count(max_leased)).with_per_key(count(per_key)).with_rate(rate)
}

/// What a claim reads of a queue-wide rate's log (entries under the key `''`, whose times never
/// go back and whose `cum` is how many the log had counted before each): the newest entry's time
/// and the count after it, and the count before the oldest entry within the window. Two index
/// probes count a window, however many entries it holds.
#[derive(Debug, Default)]
pub(crate) struct QueueLog {
    /// The newest entry's time.
    pub(crate) last_at: Option<i64>,
    /// The count after the newest entry.
    pub(crate) after: Option<i64>,
    /// The count before the oldest entry within the window (none: the window is empty).
    pub(crate) first: Option<i64>,
}

impl QueueLog {
    /// The log as read: (`last_at`, `after`, `first`).
    pub(crate) fn read((last_at, after, first): (Option<i64>, Option<i64>, Option<i64>)) -> Self {
        Self { last_at, after, first }
    }

    /// Starts within the window.
    pub(crate) fn started(&self) -> usize {
        match (self.after, self.first) {
            (Some(after), Some(first)) => usize::try_from(after - first).unwrap_or(0),
            _ => 0,
        }
    }

    /// The time and count-before of the entry a claim at `now` logs: never before the newest.
    pub(crate) fn next(&self, now: i64) -> (i64, i64) {
        (self.last_at.map_or(now, |last| last.max(now)), self.after.unwrap_or(0))
    }
}

/// A listed limits row: the queue's name, then [`LimitsRow`]'s columns.
pub(crate) type NamedLimitsRow = (String, Option<i64>, Option<i64>, Option<i64>, Option<i64>, bool);

/// A listed limits row as the queue's name and its [`QueueLimits`].
pub(crate) fn named_limits((queue, a, b, c, d, e): NamedLimitsRow) -> (String, QueueLimits) {
    (queue, stored_limits((a, b, c, d, e)))
}

/// `limits` as a limits row's columns (see [`stored_limits`]).
pub(crate) fn limits_row(limits: &QueueLimits) -> LimitsRow {
    let count = |n: Option<u32>| n.map(i64::from);
    let rate = limits.rate;
    (
        count(limits.max_leased),
        count(limits.per_key),
        rate.map(|r| i64::from(r.starts)),
        rate.map(|r| i64::try_from(r.window_ms).unwrap_or(i64::MAX)),
        rate.is_some_and(|r| r.per_key),
    )
}

/// Whether a server driver's claims of a queue with `limits` count in statements of their own
/// (a cap per key or a rate), rather than in the plain claim or the capped one.
pub(crate) fn counted(limits: &QueueLimits) -> bool {
    limits.per_key.is_some() || limits.rate.is_some()
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
