//! Per-key limits on the in-memory store (see [`crate::limits`]): live leases counted by key,
//! tasks of saturated keys parked, and unparked as their keys get room.

use std::collections::HashMap;

use super::state::State;
use crate::envelope::{TaskId, UnixMillis};
use crate::limits::{PARKED, unpark_room};

impl State {
    /// The queue's live leases at `now`, in all and by key.
    pub(super) fn leased(&self, queue: &str, now: UnixMillis) -> (usize, HashMap<String, usize>) {
        let (mut all, mut by_key) = (0, HashMap::new());
        let Some(q) = self.queues.get(queue) else { return (all, by_key) };
        for (_, _, id) in q.index.range((now + 1, 0, TaskId::from_bytes([0; 16]))..) {
            let Some(r) = self.tasks.get(id).filter(|r| r.token.is_some() && r.visible_at < PARKED) else { continue };
            all += 1;
            if let Some(key) = &r.key {
                *by_key.entry(key.clone()).or_default() += 1;
            }
        }
        (all, by_key)
    }

    /// Parks the waiting task `id`: out of the due range, noted under its key.
    pub(super) fn park(&mut self, id: TaskId) {
        let Some(r) = self.tasks.get(&id) else { return };
        let (Some(key), at, seq, queue) = (r.key.clone(), r.visible_at, r.seq, r.queue.clone()) else { return };
        self.move_to(id, at + PARKED);
        self.queues.entry(queue).or_default().parked.entry(key).or_default().insert((seq, id));
    }

    /// Unparks, for each parked key of `queue` with room under `per_key` (`None`: every parked
    /// task), its earliest parked tasks, as many as it has room for.
    pub(super) fn unpark(&mut self, queue: &str, leased: &HashMap<String, usize>, per_key: Option<u32>) {
        let Some(q) = self.queues.get_mut(queue) else { return };
        let mut back = Vec::new();
        q.parked.retain(|key, parked| {
            let room = per_key.map_or(usize::MAX, |n| unpark_room(key, leased, n));
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
