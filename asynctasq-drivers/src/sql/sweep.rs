//! When a SQL driver deletes the results past their time to live: from its own claims, at most
//! once a second per driver handle, so no process of its own is needed and the hot path pays
//! one atomic read per claim.

use std::sync::atomic::{AtomicI64, Ordering};

/// The next time (Unix ms) a sweep is due, shared by the clones of one driver.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    next: AtomicI64,
}

impl Sweeper {
    /// The pause between two sweeps of one driver handle.
    const EVERY_MS: i64 = 1000;

    /// Whether a sweep is due at `now`; when it is, claims it, so one caller of many sweeps.
    pub(crate) fn due(&self, now: i64) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        now >= next && self.next.compare_exchange(next, now + Self::EVERY_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
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
}
