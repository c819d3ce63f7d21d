//! Unique tasks: at most one task per key in a queue while its lock holds.
//!
//! A task made unique (`#[task(unique(..))]`, [`Dispatch::unique_key`](crate::Dispatch::unique_key))
//! carries a [`Unique`] in its envelope. The driver's enqueue writes a lock record
//! `(queue, key) → (owner task, until, expiry)` in the same atomic step that stores the task
//! (the SQL transaction, the Redis script), or stores nothing and reports
//! [`EnqueueOutcome::Duplicate`](crate::EnqueueOutcome::Duplicate) naming the task that holds
//! the key.
//!
//! # When a lock holds
//! A lock blocks a new task with its key while **all** of these are true:
//! * its expiry has not passed: every lock has a time to live, so none is permanent;
//! * for [`UniqueUntil::Start`]: its owner still waits for its first delivery;
//! * for [`UniqueUntil::Done`]: its owner is still live: waiting, retrying or leased (not
//!   succeeded, dead, cancelled, purged or deleted);
//! * for [`UniqueUntil::Expiry`]: nothing more; the key stays taken until the expiry even after
//!   the task finished ("at most once per ten minutes").
//!
//! # Why the owner's state, not a release at each settle
//! Releasing the lock in every claim, ack, dead letter, purge and cancel would put a write on
//! each of those hot paths, for every task, unique or not, and a release missed by one of
//! them (a crash between two writes, a path added later) would leave a lock that blocks
//! until its expiry: asynq #275, BullMQ #4311. Instead the next enqueue of the key reads the
//! owner's state in its own atomic step and takes the lock over when the owner no longer
//! holds it. Plain tasks pay nothing; a stale lock cannot outlive its owner.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::envelope::{TaskId, UnixMillis};
use crate::error::DriverError;

/// How long a lock lives when nothing says: one day.
pub const DEFAULT_UNIQUE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Longest unique key, in bytes.
pub const MAX_UNIQUE_KEY: usize = 255;

/// Until when a unique task holds its key (each bounded by the lock's time to live).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueUntil {
    /// Until the task is first leased: one waiting task per key, one more may wait while it runs.
    Start,
    /// Until the task succeeds, is dead-lettered, cancelled, purged or deleted: one live task
    /// per key, retries included.
    #[default]
    Done,
    /// Until the lock's time to live has passed, whatever became of the task.
    Expiry,
}

/// What a dispatch whose key is taken does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UniqueMode {
    /// Stores nothing.
    #[default]
    Skip,
    /// Stores nothing new, but gives the holder this dispatch's arguments if it still waits for
    /// its first delivery.
    Replace,
    /// As [`Replace`](UniqueMode::Replace), and moves the holder's due time to this dispatch's
    /// (a burst of dispatches runs once, after the last one's delay).
    Debounce,
}

/// A task type's or a dispatch's unique policy (`#[task(unique(..))]`,
/// [`TaskOptions::unique`](crate::TaskOptions::unique)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uniqueness {
    /// Until when the key is held.
    pub until: UniqueUntil,
    /// The lock's time to live from the dispatch (a debounce renews it).
    pub ttl: Duration,
    /// What a dispatch whose key is taken does.
    pub mode: UniqueMode,
}

impl Default for Uniqueness {
    fn default() -> Self {
        Self { until: UniqueUntil::Done, ttl: DEFAULT_UNIQUE_TTL, mode: UniqueMode::Skip }
    }
}

/// The unique part of an envelope: the key and how it is held.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unique {
    /// The key, unique within the task's queue.
    pub key: String,
    /// Until when the key is held.
    pub until: UniqueUntil,
    /// The lock's time to live from the dispatch, in milliseconds.
    pub ttl_ms: u64,
    /// What a dispatch whose key is taken does.
    pub mode: UniqueMode,
}

impl Unique {
    /// The envelope's unique part for `key` under `policy`, the key checked.
    pub fn new(key: String, policy: Uniqueness) -> Result<Self, DriverError> {
        if key.is_empty() || key.len() > MAX_UNIQUE_KEY {
            return Err(DriverError::Config(format!("a unique key is 1 to {MAX_UNIQUE_KEY} bytes (got {})", key.len())));
        }
        if policy.ttl.is_zero() {
            return Err(DriverError::Config("a unique key's time to live must be more than zero".into()));
        }
        Ok(Self { key, until: policy.until, ttl_ms: crate::envelope::millis(policy.ttl), mode: policy.mode })
    }
}

/// The key of a task named `name` whose unique fields encode to `fields`: the name, then a
/// UUIDv5 of the name and the bytes (stable across runs, processes and builds: the bytes are
/// the fields' MessagePack encoding, and the namespace is fixed).
pub fn derive_key(name: &str, fields: &[u8]) -> String {
    let mut input = Vec::with_capacity(name.len() + 1 + fields.len());
    input.extend_from_slice(name.as_bytes());
    input.push(0);
    input.extend_from_slice(fields);
    format!("{name}:{}", uuid::Uuid::new_v5(&KEY_NAMESPACE, &input).simple())
}

/// The bytes of a task's unique fields, for [`derive_key`]: `fields` (a tuple of references to
/// them, as `#[task(unique(by = [..]))]` writes it) as MessagePack.
pub fn encode_fields<T: Serialize>(fields: &T) -> Result<Vec<u8>, crate::error::CodecError> {
    rmp_serde::to_vec(fields).map_err(crate::error::CodecError::Encode)
}

/// The UUIDv5 namespace of derived keys: a fixed value, never to change.
const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b0f_51f2_7a8e_5c4d_9a1e_3f0b_2c6d_8e41);

/// Where a lock's owner is, as the enqueue that finds the lock reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Waiting for its first delivery.
    Waiting,
    /// Delivered at least once and still live: leased, or waiting for a retry.
    Started,
    /// Not live: succeeded, dead, cancelled, purged, deleted, or never stored.
    Gone,
}

/// A stored lock: who holds the key, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniqueLock {
    /// The task that took the key.
    pub owner: TaskId,
    /// Until when it holds it.
    pub until: UniqueUntil,
    /// When the lock expires whatever its owner does.
    pub expires_at: UnixMillis,
}

impl UniqueLock {
    /// Whether the lock still keeps the key from a new task at `now`, its owner being where
    /// `owner` says (see the [module](self) documentation).
    pub fn holds(&self, now: UnixMillis, owner: Owner) -> bool {
        now < self.expires_at
            && match self.until {
                UniqueUntil::Start => owner == Owner::Waiting,
                UniqueUntil::Done => owner != Owner::Gone,
                UniqueUntil::Expiry => true,
            }
    }

    /// Whether a dispatch in `mode` may rewrite this lock's owner: it still waits for its first
    /// delivery.
    pub fn replaceable(mode: UniqueMode, owner: Owner) -> bool {
        mode != UniqueMode::Skip && owner == Owner::Waiting
    }
}

/// What a backend without [`Capability::UniqueKeys`](crate::Capability::UniqueKeys) answers to
/// a batch holding a unique task, before it stores any of the batch.
pub fn refuse(tasks: &[crate::Envelope]) -> Result<(), DriverError> {
    if tasks.iter().any(|t| t.unique.is_some()) {
        return Err(DriverError::Unsupported("a unique task (the backend keeps no index of its tasks' keys)"));
    }
    Ok(())
}

/// The code for `until` in a backend's lock row (`0` start, `1` done, `2` expiry).
pub fn until_code(until: UniqueUntil) -> i16 {
    match until {
        UniqueUntil::Start => 0,
        UniqueUntil::Done => 1,
        UniqueUntil::Expiry => 2,
    }
}

/// The `until` of a lock row's code (an unknown code holds until expiry: the safe reading).
pub fn until_of(code: i64) -> UniqueUntil {
    match code {
        0 => UniqueUntil::Start,
        1 => UniqueUntil::Done,
        _ => UniqueUntil::Expiry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_stable_and_tell_names_and_fields_apart() {
        let k = derive_key("email", b"\x91\xa1a");
        assert_eq!(k, derive_key("email", b"\x91\xa1a"));
        assert!(k.starts_with("email:"));
        assert_ne!(k, derive_key("email", b"\x91\xa1b"));
        assert_ne!(k, derive_key("mail", b"\x91\xa1a"));
        // Pinned: a change of the derivation would let a new build enqueue what an old one holds.
        assert_eq!(derive_key("t", b""), format!("t:{}", uuid::Uuid::new_v5(&KEY_NAMESPACE, b"t\0").simple()));
    }

    #[test]
    fn each_until_holds_while_its_owner_is_where_it_says() {
        let lock = |until| UniqueLock { owner: TaskId::new(), until, expires_at: 100 };
        for (until, waiting, started, gone) in
            [(UniqueUntil::Start, true, false, false), (UniqueUntil::Done, true, true, false), (UniqueUntil::Expiry, true, true, true)]
        {
            let l = lock(until);
            assert_eq!((l.holds(99, Owner::Waiting), l.holds(99, Owner::Started), l.holds(99, Owner::Gone)), (waiting, started, gone));
            assert!(!l.holds(100, Owner::Waiting), "{until:?}: no lock outlives its expiry");
        }
    }

    #[test]
    fn keys_and_ttls_are_checked() {
        assert!(Unique::new(String::new(), Uniqueness::default()).is_err());
        assert!(Unique::new("k".repeat(256), Uniqueness::default()).is_err());
        assert!(Unique::new("k".into(), Uniqueness { ttl: Duration::ZERO, ..Uniqueness::default() }).is_err());
        assert_eq!(Unique::new("k".into(), Uniqueness::default()).expect("a valid key").ttl_ms, 86_400_000);
    }
}
