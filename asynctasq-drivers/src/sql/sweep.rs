//! When a SQL driver deletes the results past their time to live: from its own claims, at most
//! once a second per driver handle, so no process of its own is needed and the hot path pays
//! one atomic read per claim.
//!
//! # Why a full batch brings the next sweep forward
//! A sweep deletes at most [`Sweeper::BATCH`] expired rows of each table. Once a second, that
//! caps what a handle can expire at 10,000 a second, and a steady 15,000 tasks a second with
//! results kept grew SQLite's file by 125 MB a minute without end (the soak of 2026-12-08:
//! 4.1 million kept rows, the oldest 215 s past their time). A sweep that filled a batch says
//! so ([`Sweeper::swept`]) and the next one is due after [`Sweeper::BEHIND_MS`] instead, so the
//! backlog goes in batches as fast as it came, and a quiet queue still costs one sweep a second.

use std::sync::atomic::{AtomicI64, Ordering};

/// The next time (Unix ms) a sweep is due, shared by the clones of one driver.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    next: AtomicI64,
}

impl Sweeper {
    /// The pause between two sweeps of one driver handle.
    const EVERY_MS: i64 = 1000;
    /// The pause after a sweep that filled a batch: more expired rows are waiting.
    const BEHIND_MS: i64 = 50;
    /// The rows one sweep deletes from a table at most (the `LIMIT` of each sweep statement).
    pub(crate) const BATCH: u64 = 10_000;

    /// Whether a sweep is due at `now`; when it is, claims it, so one caller of many sweeps.
    pub(crate) fn due(&self, now: i64) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        now >= next && self.next.compare_exchange(next, now + Self::EVERY_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// After the sweep that began at `now`, given the most rows it deleted from one table: when
    /// that was a full [`BATCH`](Self::BATCH), the next sweep is due in [`BEHIND_MS`](Self::BEHIND_MS).
    pub(crate) fn swept(&self, now: i64, most: u64) {
        if most >= Self::BATCH {
            self.next.fetch_min(now + Self::BEHIND_MS, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_due_once_a_second() {
        let s = Sweeper::default();
        assert!(s.due(10_000), "the first call sweeps");
        assert!(!s.due(10_001) && !s.due(10_999), "not again within the second");
        assert!(s.due(11_000), "due again a second later");
    }

    #[test]
    fn a_sweep_that_filled_a_batch_is_followed_by_another_soon() {
        let s = Sweeper::default();
        assert!(s.due(10_000));
        s.swept(10_000, Sweeper::BATCH - 1);
        assert!(!s.due(10_100), "a partial batch: the backlog is gone, the next in a second");
        s.swept(10_000, Sweeper::BATCH);
        assert!(!s.due(10_049) && s.due(10_050), "a full batch: the next is due 50 ms on");
        s.swept(10_050, 0);
        assert!(!s.due(10_100) && s.due(11_050), "then a second again once it caught up");
    }
}
