//! Limits on claiming a queue's tasks, stored in the backend and obeyed by every claim
//! ([`Driver::set_limits`](crate::Driver::set_limits)): a cap on the queue's live leases, and a
//! cap on its live leases per task key ([`Envelope::key`](crate::Envelope::key)).
//!
//! # Per-key limits: counted from live leases, and parking
//! "Running" is what holds a live lease: a claim counts the queue's live leases by key in its
//! own atomic step, so a crashed worker's places free themselves when its leases run out and
//! no counter can leak. A claim takes due tasks in order, skipping those whose key is at its
//! limit (counting what the claim itself takes), so a saturated key never holds back other
//! keys' tasks. The tasks it skipped are **parked**: moved out of the due range (their due time
//! offset by [`PARKED`], so every driver keeps them where it keeps waiting tasks) and their key
//! noted, so the next claims do not scan past them again. Each limited claim first unparks, for
//! the noted keys that have room again, as many of their parked tasks as there is room, earliest
//! first: a key's tasks run in order, and a parked task waits for a place, never for a timer.
//! [`pick`] is the decision every driver makes, on its candidates in due order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::envelope::UnixMillis;

/// Limits on claiming one queue's tasks, across every worker ([`Driver::set_limits`](crate::Driver::set_limits)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many of the queue's tasks leased at once, by all workers together; `None`:
    /// no cap. Zero holds every task back, like a pause.
    pub max_leased: Option<u32>,
    /// At most this many of the queue's tasks with one key ([`Envelope::key`](crate::Envelope::key))
    /// leased at once, by all workers together ([`Capability::KeyedLimits`](crate::Capability::KeyedLimits));
    /// `None`: no cap per key. Tasks without a key are not limited by it.
    #[serde(default)]
    pub per_key: Option<u32>,
}

impl QueueLimits {
    /// At most `n` of the queue's tasks leased at once.
    pub fn max_leased(n: u32) -> Self {
        Self { max_leased: Some(n), per_key: None }
    }

    /// At most `n` of the queue's tasks with one key leased at once.
    pub fn per_key(n: u32) -> Self {
        Self { max_leased: None, per_key: Some(n) }
    }

    /// These limits with the cap on live leases set to `n` (`None`: none).
    pub fn with_max_leased(mut self, n: Option<u32>) -> Self {
        self.max_leased = n;
        self
    }

    /// These limits with the cap per key set to `n` (`None`: none).
    pub fn with_per_key(mut self, n: Option<u32>) -> Self {
        self.per_key = n;
        self
    }

    /// Whether no limit is set.
    pub fn is_none(&self) -> bool {
        self.max_leased.is_none() && self.per_key.is_none()
    }
}

/// What a parked task's due time is offset by: past any real time (2^50 ms is 35,000 years),
/// below the SQLite driver's mark for results kept in place (2^62), and small enough that a
/// parked time stays exact as a double (Redis scores, Lua numbers: below 2^53).
pub const PARKED: UnixMillis = 1 << 50;

/// A due time or lease expiry as stored, with a parked task's offset taken off.
pub fn unparked(at: UnixMillis) -> UnixMillis {
    if (PARKED..2 * PARKED).contains(&at) { at - PARKED } else { at }
}

/// Most due tasks one limited claim looks at: the tasks it may take and those of saturated keys
/// it parks (`max` taken at most, so at most this many less `max` parked per claim).
pub fn scan_bound(max: usize) -> usize {
    max.saturating_mul(4).max(100)
}

/// What a claim does with its candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pick {
    /// Indexes of the candidates to lease, in due order.
    pub take: Vec<usize>,
    /// Indexes of the candidates to park: their key is at its limit.
    pub park: Vec<usize>,
}

/// Decides a limited claim: of `candidates` (each one's key, in due order), takes up to `room`,
/// at most `per_key` leased per key counting `leased` (live leases by key) and what it takes;
/// the candidates of a key at its limit met before `room` is reached are parked.
pub fn pick<'a>(
    candidates: impl IntoIterator<Item = Option<&'a str>>,
    leased: &HashMap<String, usize>,
    per_key: Option<u32>,
    room: usize,
) -> Pick {
    let mut pick = Pick::default();
    let mut taken: HashMap<&str, usize> = HashMap::new();
    for (i, key) in candidates.into_iter().enumerate() {
        if pick.take.len() >= room {
            break;
        }
        match (key, per_key) {
            (Some(key), Some(cap)) => {
                let held = leased.get(key).copied().unwrap_or(0) + taken.get(key).copied().unwrap_or(0);
                if held < cap as usize {
                    *taken.entry(key).or_default() += 1;
                    pick.take.push(i);
                } else {
                    pick.park.push(i);
                }
            }
            _ => pick.take.push(i),
        }
    }
    pick
}

/// How many of a parked key's tasks to unpark: its room, given its live leases.
pub fn unpark_room(key: &str, leased: &HashMap<String, usize>, per_key: u32) -> usize {
    (per_key as usize).saturating_sub(leased.get(key).copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saturated_key_is_parked_and_the_others_are_taken_in_order() {
        let leased = HashMap::from([("a".to_owned(), 1)]);
        let keys = [Some("a"), Some("b"), None, Some("a"), Some("b"), Some("b"), Some("c")];
        let p = pick(keys, &leased, Some(2), 4);
        assert_eq!(p.take, vec![0, 1, 2, 4], "a has one place left, b two, an unkeyed task always fits");
        assert_eq!(p.park, vec![3], "a's second is parked; the scan stops at the room");
        let p = pick(keys, &leased, Some(2), 10);
        assert_eq!((p.take, p.park), (vec![0, 1, 2, 4, 6], vec![3, 5]));
    }

    #[test]
    fn without_a_per_key_limit_everything_up_to_the_room_is_taken() {
        let p = pick([Some("a"), Some("a"), Some("a")], &HashMap::new(), None, 2);
        assert_eq!((p.take, p.park), (vec![0, 1], vec![]));
    }
}
