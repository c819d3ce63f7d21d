//! Queue limits on the in-memory store (see [`crate::limits`]): live leases counted by key,
//! starts logged for a rate, tasks of keys without room parked, and unparked as their keys get
//! room.

use super::state::State;
use crate::driver::QueueLimits;
use crate::envelope::{TaskId, UnixMillis};
use crate::limits::{Counts, PARKED, RATE_LOG_SLACK, unpark_room};

impl State {
    /// What a claim of `queue` at `now` counts under `limits`: its live leases by key, and its
    /// starts in the rate's window by key (the log pruned of what is well past the window).
    pub(super) fn counts(&mut self, queue: &str, limits: &QueueLimits, now: UnixMillis) -> Counts {
        let mut counts = Counts::default();
        let Some(q) = self.queues.get_mut(queue) else { return counts };
        match limits.rate {
            Some(rate) => {
                let since = now.saturating_sub(rate.window_ms);
                while q.starts.front().is_some_and(|(at, _, _)| *at + RATE_LOG_SLACK <= since) {
                    q.starts.pop_front();
                }
                for (_, key, n) in q.starts.iter().filter(|(at, _, _)| *at > since) {
                    *counts.started.entry(key.clone()).or_default() += n;
                }
            }
            None => q.starts.clear(),
        }
        if !limits.caps_leases() {
            return counts;
        }
        for (_, _, id) in q.index.range((now + 1, 0, TaskId::from_bytes([0; 16]))..) {
            let Some(r) = self.tasks.get(id).filter(|r| r.token.is_some() && r.visible_at < PARKED) else { continue };
            *counts.leased.entry(r.key.clone().unwrap_or_default()).or_default() += 1;
        }
        counts
    }

    /// Logs a claim's starts at `now` (see [`QueueLimits::starts_to_log`]).
    pub(super) fn log_starts(&mut self, queue: &str, now: UnixMillis, starts: Vec<(String, usize)>) {
        if starts.is_empty() {
            return;
        }
        let q = self.queues.entry(queue.to_owned()).or_default();
        q.starts.extend(starts.into_iter().map(|(key, n)| (now, key, n)));
    }

    /// Parks the waiting task `id`: out of the due range, noted under its key.
    pub(super) fn park(&mut self, id: TaskId) {
        let Some(r) = self.tasks.get(&id) else { return };
        let (Some(key), at, seq, queue) = (r.key.clone(), r.visible_at, r.seq, r.queue.clone()) else { return };
        self.move_to(id, at + PARKED);
        self.queues.entry(queue).or_default().parked.entry(key).or_default().insert((seq, id));
    }

    /// Unparks, for each parked key of `queue` with room under `limits` given `counts` (every
    /// parked task when keys are not limited), its earliest parked tasks, as many as it has
    /// room for.
    pub(super) fn unpark(&mut self, queue: &str, limits: &QueueLimits, counts: &Counts) {
        let Some(q) = self.queues.get_mut(queue) else { return };
        let mut back = Vec::new();
        q.parked.retain(|key, parked| {
            let room = unpark_room(key, limits, counts);
            for _ in 0..room {
                let Some(entry) = parked.pop_first() else { break };
                back.push(entry.1);
            }
            !parked.is_empty()
        });
        for id in back {
            // An entry whose task was deleted, cancelled or unparked already is dropped.
            if let Some(at) = self.tasks.get(&id).filter(|r| r.token.is_none() && r.visible_at >= PARKED).map(|r| r.visible_at) {
                self.move_to(id, at - PARKED);
            }
        }
    }
}
