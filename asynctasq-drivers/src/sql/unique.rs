//! Unique keys on the SQL backends: what an enqueue does with the unique envelopes of its
//! batch, decided in Rust from the lock rows and their owners' states that the driver read in
//! the enqueue's transaction (see `asynctasq_core::unique`).
//!
//! Each driver reads, then writes what [`Plan`] says, in the same transaction that inserts the
//! batch: the lock rows it takes (`INSERT … ON CONFLICT DO UPDATE`), the holders it rewrites
//! (`Replace`, `Debounce`), then the tasks to store by its ordinary insert. A batch without a
//! unique envelope never comes here.

use std::collections::HashMap;

use asynctasq_core::envelope::{Envelope, TaskId, UnixMillis};
use asynctasq_core::unique::{Owner, UniqueLock, UniqueMode};
use asynctasq_core::{DriverError, EnqueueOutcome};

/// A lock row and where its owner is, as read in the enqueue's transaction.
pub(crate) type Held = HashMap<(String, String), (UniqueLock, Owner)>;

/// Where a lock's owner is, from its row in the tasks table: `None` when it has none (acked,
/// dead, purged, deleted); `cancelled` and `kept` (a succeeded task kept in place) are gone.
pub(crate) fn owner_state(row: Option<(i64, bool, bool)>) -> Owner {
    match row {
        None | Some((_, _, true)) => Owner::Gone,
        Some((attempt, leased, false)) => {
            if attempt == 0 && !leased {
                Owner::Waiting
            } else {
                Owner::Started
            }
        }
    }
}

/// A lock to write: the key of `queue` taken by `lock.owner`.
pub(crate) struct Take {
    pub(crate) queue: String,
    pub(crate) key: String,
    pub(crate) lock: UniqueLock,
}

/// A stored holder given a duplicate's arguments: its envelope rewritten with its own id, and
/// when `due` is set its due time.
pub(crate) struct Rewrite {
    pub(crate) id: TaskId,
    pub(crate) envelope: Vec<u8>,
    pub(crate) lease_ms: u64,
    pub(crate) due: Option<UnixMillis>,
}

/// What to do with a batch holding unique envelopes.
pub(crate) struct Plan {
    /// Per envelope of the batch: the duplicate's outcome, or `None` for one to insert.
    pub(crate) decided: Vec<Option<EnqueueOutcome>>,
    /// The envelopes to insert, in batch order (a holder in the batch already carries what a
    /// later duplicate in `Replace` or `Debounce` mode gave it).
    pub(crate) insert: Vec<Envelope>,
    /// Lock rows to write: keys taken or taken over, and debounced locks renewed.
    pub(crate) take: Vec<Take>,
    /// Stored holders to rewrite.
    pub(crate) rewrite: Vec<Rewrite>,
}

impl Plan {
    /// The batch's outcomes: the decided ones, and in the others' places the insert's, in order.
    pub(crate) fn outcomes(&self, inserted: Vec<EnqueueOutcome>) -> Vec<EnqueueOutcome> {
        let mut inserted = inserted.into_iter();
        self.decided.iter().map(|d| d.unwrap_or_else(|| inserted.next().unwrap_or(EnqueueOutcome::Exists))).collect()
    }
}

/// The (queue, key) pairs of the batch's unique envelopes, sorted and without repeats: the
/// order every driver reads and locks them in, so two enqueues never wait on each other in a
/// cycle.
pub(crate) fn keys(tasks: &[Envelope]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> =
        tasks.iter().filter_map(|t| t.unique.as_ref().map(|u| (t.queue.clone(), u.key.clone()))).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Decides each envelope of `tasks` at `now` against the locks `held` read for its keys.
pub(crate) fn plan(tasks: &[Envelope], held: &Held, now: UnixMillis) -> Result<Plan, DriverError> {
    let mut plan = Plan { decided: Vec::with_capacity(tasks.len()), insert: Vec::new(), take: Vec::new(), rewrite: Vec::new() };
    // Keys taken by an earlier envelope of this batch: the index of its envelope in `insert`.
    let mut taken: HashMap<(&str, &str), usize> = HashMap::new();
    let mut renewed = false;
    for t in tasks {
        let Some(u) = &t.unique else {
            plan.decided.push(None);
            plan.insert.push(t.clone());
            continue;
        };
        let replaces = u.mode != UniqueMode::Skip;
        if let Some(&at) = taken.get(&(t.queue.as_str(), u.key.as_str())) {
            let holder = &mut plan.insert[at];
            let existing = holder.id;
            if replaces {
                let due = if u.mode == UniqueMode::Debounce { t.not_before } else { holder.not_before };
                *holder = Envelope { id: existing, not_before: due, ..t.clone() };
            }
            plan.decided.push(Some(EnqueueOutcome::Duplicate { existing }));
            continue;
        }
        let slot = (t.queue.clone(), u.key.clone());
        if let Some((lock, owner)) = held.get(&slot).filter(|(lock, owner)| lock.holds(now, *owner)) {
            if UniqueLock::replaceable(u.mode, *owner) {
                let debounce = u.mode == UniqueMode::Debounce;
                let envelope = Envelope { id: lock.owner, ..t.clone() }.encode()?;
                plan.rewrite.push(Rewrite { id: lock.owner, envelope, lease_ms: t.lease_ms, due: debounce.then_some(t.not_before) });
                if debounce {
                    plan.take.push(Take { queue: slot.0, key: slot.1, lock: UniqueLock { expires_at: now + u.ttl_ms, ..*lock } });
                    renewed = true;
                }
            }
            plan.decided.push(Some(EnqueueOutcome::Duplicate { existing: lock.owner }));
            continue;
        }
        taken.insert((t.queue.as_str(), u.key.as_str()), plan.insert.len());
        plan.take.push(Take { queue: slot.0, key: slot.1, lock: UniqueLock { owner: t.id, until: u.until, expires_at: now + u.ttl_ms } });
        plan.decided.push(None);
        plan.insert.push(t.clone());
    }
    // A key renewed twice (two debounces of one held key) is written once, as last decided: a
    // statement may not upsert one row twice. Only a renewal can repeat a key.
    if renewed {
        let mut seen = std::collections::HashSet::new();
        plan.take.reverse();
        plan.take.retain(|t| seen.insert((t.queue.clone(), t.key.clone())));
        plan.take.reverse();
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use asynctasq_core::unique::{Unique, UniqueUntil};

    fn unique(key: &str, mode: UniqueMode) -> Envelope {
        let mut e = asynctasq_core::testing::envelope("q", std::time::Duration::from_secs(30));
        e.unique = Some(Unique { key: key.into(), until: UniqueUntil::Done, ttl_ms: 1000, mode });
        e
    }

    #[test]
    fn a_repeat_in_the_batch_is_a_duplicate_of_the_first_and_may_rewrite_it() {
        let (a, b) = (unique("k", UniqueMode::Skip), unique("k", UniqueMode::Replace));
        let b = Envelope { payload: vec![0x91, 0x07], ..b };
        let plan = plan(&[a.clone(), b.clone()], &Held::new(), 10).expect("plan");
        assert_eq!(plan.decided, vec![None, Some(EnqueueOutcome::Duplicate { existing: a.id })]);
        assert_eq!((plan.insert.len(), plan.insert[0].id, &plan.insert[0].payload), (1, a.id, &b.payload));
        assert_eq!(plan.take.len(), 1);
        assert_eq!(plan.outcomes(vec![EnqueueOutcome::New]), vec![EnqueueOutcome::New, EnqueueOutcome::Duplicate { existing: a.id }]);
    }

    #[test]
    fn a_held_key_is_a_duplicate_and_a_released_one_is_taken_over() {
        let holder = TaskId::new();
        let lock = UniqueLock { owner: holder, until: UniqueUntil::Done, expires_at: 100 };
        let mut held = Held::new();
        held.insert(("q".into(), "k".into()), (lock, Owner::Started));
        let e = unique("k", UniqueMode::Debounce);
        let p = plan(std::slice::from_ref(&e), &held, 50).expect("plan");
        assert_eq!(p.decided, vec![Some(EnqueueOutcome::Duplicate { existing: holder })]);
        assert!(p.rewrite.is_empty() && p.take.is_empty(), "a started holder is not rewritten");
        held.insert(("q".into(), "k".into()), (lock, Owner::Gone));
        let p = plan(std::slice::from_ref(&e), &held, 50).expect("plan");
        assert_eq!((p.decided[0], p.take[0].lock.owner), (None, e.id), "taken over from a gone holder");
    }
}
