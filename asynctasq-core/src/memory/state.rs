//! What the in-memory driver stores: live tasks indexed per queue by when they are visible,
//! the dead ones, and the settled ones kept for their time to live; each kind with what
//! [`Driver::find`](crate::Driver::find) reports of it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::driver::{Lease, TaskRecord, TaskState, Totals, WorkerInfo};
use crate::envelope::{Envelope, TaskId, UnixMillis};
use crate::error::DriverError;
use crate::history::AttemptError;
use crate::unique::{Owner, UniqueLock};

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) tasks: HashMap<TaskId, Record>,
    pub(super) queues: BTreeMap<String, QueueState>,
    pub(super) workers: BTreeMap<String, WorkerInfo>,
    /// Succeeded tasks kept with their results, and when each is swept.
    pub(super) done: HashMap<TaskId, Done>,
    pub(super) done_expiry: BTreeSet<(UnixMillis, TaskId)>,
    /// When each dead task expires. An entry outlives its task when the task is requeued,
    /// purged or deleted first: the sweep deletes only a dead task whose expiry has passed.
    pub(super) dead_expiry: BTreeSet<(UnixMillis, TaskId)>,
    /// Who this store's claims are for ([`Driver::consumer`]).
    pub(super) consumer: Option<Arc<str>>,
    /// Queues no claim takes from ([`Driver::set_paused`](crate::Driver::set_paused)).
    pub(super) paused: BTreeSet<String>,
    /// Queues' limits ([`Driver::set_limits`](crate::Driver::set_limits)).
    pub(super) limits: BTreeMap<String, crate::driver::QueueLimits>,
    /// Unique keys by (queue, key), and when each lock expires (see [`crate::unique`]).
    pub(super) unique: HashMap<(String, String), UniqueLock>,
    pub(super) unique_expiry: BTreeSet<(UnixMillis, String, String)>,
    /// Schedules by name ([`Driver::claim_slot`](crate::Driver::claim_slot)).
    pub(super) schedules: BTreeMap<String, super::schedules::Kept>,
    pub(super) next_seq: u64,
    pub(super) next_token: u64,
}

#[derive(Debug, Default)]
pub(super) struct QueueState {
    /// Every live task of the queue by (visible_at, seq): ready ones first.
    pub(super) index: BTreeSet<(UnixMillis, u64, TaskId)>,
    pub(super) dead: Vec<DeadRecord>,
    pub(super) totals: Totals,
    /// Parked tasks by key, in order ([`crate::limits`]): their index entries are offset by
    /// [`PARKED`](crate::limits::PARKED). An entry may outlive its task (deleted, cancelled).
    pub(super) parked: BTreeMap<String, BTreeSet<(u64, TaskId)>>,
    /// The rate's log of starts ([`crate::limits`]): (time, key, how many), oldest first.
    pub(super) starts: std::collections::VecDeque<(UnixMillis, String, usize)>,
}

#[derive(Debug)]
pub(super) struct Record {
    pub(super) queue: String,
    pub(super) raw: Vec<u8>,
    pub(super) attempt: u32,
    pub(super) lease_ms: u64,
    /// Due time when waiting, lease expiry when leased.
    pub(super) visible_at: UnixMillis,
    pub(super) seq: u64,
    /// The task's key, for per-key limits ([`crate::limits`]).
    pub(super) key: Option<String>,
    pub(super) token: Option<u64>,
    pub(super) last_error: Option<String>,
    /// Moved back from the dead tasks since dispatch.
    pub(super) replayed: bool,
    /// A cancel was requested while it was leased: how long to keep it once cancelled (ms).
    pub(super) cancel: Option<u64>,
    /// The latest run's progress, encoded.
    pub(super) progress: Option<Vec<u8>>,
    /// Every failed attempt's error.
    pub(super) errors: Vec<AttemptError>,
    /// The consumer its latest claim was for.
    pub(super) holder: Option<Arc<str>>,
    /// When its latest delivery was claimed.
    pub(super) started_at: Option<UnixMillis>,
}

/// A settled task, kept until `expires_at` ([`Ack::keep`], or a cancel's time to live).
#[derive(Debug)]
pub(super) struct Done {
    /// Succeeded or cancelled.
    pub(super) state: TaskState,
    pub(super) queue: String,
    pub(super) raw: Vec<u8>,
    pub(super) attempt: u32,
    pub(super) finished_at: UnixMillis,
    pub(super) expires_at: UnixMillis,
    pub(super) result: Option<Vec<u8>>,
    pub(super) started_at: Option<UnixMillis>,
}

#[derive(Debug)]
pub(super) struct DeadRecord {
    pub(super) id: TaskId,
    pub(super) errors: Vec<AttemptError>,
    pub(super) raw: Vec<u8>,
    pub(super) attempt: u32,
    pub(super) error: String,
    pub(super) dead_at: UnixMillis,
    /// When it expires ([`Driver::dead_letter`]'s `keep`).
    pub(super) expires_at: UnixMillis,
    pub(super) started_at: Option<UnixMillis>,
    /// Its place in the dead-letter order, for paging by cursor ([`Driver::dead_after`]).
    pub(super) seq: u64,
}

impl Record {
    /// Appends a failure of the current attempt, by the consumer that held it, to the history.
    pub(super) fn record_error(&mut self, at: UnixMillis, error: &str) {
        let worker = self.holder.as_deref().map(str::to_owned);
        self.errors.push(AttemptError { attempt: self.attempt, at, error: error.to_owned(), worker });
    }

    /// What `find` reports of this live task at `now`.
    pub(super) fn record(&self, id: TaskId, now: UnixMillis) -> TaskRecord {
        let state = TaskState::of_live(self.token.is_some(), self.visible_at, now);
        let record = TaskRecord::new(
            id,
            &self.queue,
            state,
            self.attempt,
            crate::limits::unparked(self.visible_at),
            self.last_error.clone(),
            Envelope::decode(&self.raw),
        );
        let record = record.cancel_requested(self.cancel.is_some()).with_progress(self.progress.as_deref());
        let record = TaskRecord { errors: self.errors.clone(), ..record };
        record.with_holder(self.holder.as_deref().map(str::to_owned)).with_started(self.started_at)
    }
}

impl DeadRecord {
    /// What `find` reports of this dead task of `queue`.
    pub(super) fn record(&self, queue: &str) -> TaskRecord {
        let record = TaskRecord::new(
            self.id,
            queue,
            TaskState::Dead,
            self.attempt,
            self.dead_at,
            Some(self.error.clone()),
            Envelope::decode(&self.raw),
        );
        TaskRecord { errors: self.errors.clone(), ..record }.with_started(self.started_at)
    }
}

impl Done {
    /// What `find` reports of this kept task.
    pub(super) fn record(&self, id: TaskId) -> TaskRecord {
        let record = match self.state {
            TaskState::Succeeded => {
                TaskRecord::succeeded(id, &self.queue, self.attempt, self.finished_at, self.result.clone(), Envelope::decode(&self.raw))
            }
            state => TaskRecord::new(id, &self.queue, state, self.attempt, self.finished_at, None, Envelope::decode(&self.raw)),
        };
        record.with_started(self.started_at)
    }
}

impl State {
    pub(super) fn insert(&mut self, id: TaskId, queue: String, raw: Vec<u8>, lease_ms: u64, visible_at: UnixMillis, key: Option<String>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queues.entry(queue.clone()).or_default().index.insert((visible_at, seq, id));
        let record = Record {
            queue,
            raw,
            attempt: 0,
            lease_ms,
            visible_at,
            seq,
            token: None,
            last_error: None,
            replayed: false,
            cancel: None,
            progress: None,
            errors: Vec::new(),
            holder: None,
            started_at: None,
            key,
        };
        self.tasks.insert(id, record);
    }

    /// The record under `lease` if the lease still holds it.
    pub(super) fn held(&mut self, lease: &Lease) -> Result<&mut Record, DriverError> {
        let token: Option<u64> = lease.token.parse().ok();
        match self.tasks.get_mut(&lease.id) {
            Some(r) if r.token.is_some() && r.token == token => Ok(r),
            _ => Err(DriverError::LeaseLost(lease.id)),
        }
    }

    pub(super) fn move_to(&mut self, id: TaskId, visible_at: UnixMillis) {
        let Some(r) = self.tasks.get_mut(&id) else { return };
        let q = self.queues.entry(r.queue.clone()).or_default();
        q.index.remove(&(r.visible_at, r.seq, id));
        r.visible_at = visible_at;
        q.index.insert((visible_at, r.seq, id));
    }

    /// Deletes the kept successes whose time has passed.
    pub(super) fn sweep(&mut self, now: UnixMillis) {
        while let Some((at, _, _)) = self.unique_expiry.first()
            && *at <= now
        {
            let (_, queue, key) = self.unique_expiry.pop_first().expect("first");
            let slot = (queue, key);
            if self.unique.get(&slot).is_some_and(|l| l.expires_at <= now) {
                self.unique.remove(&slot);
            }
        }
        while let Some(&(at, id)) = self.done_expiry.first()
            && at <= now
        {
            self.done_expiry.pop_first();
            self.done.remove(&id);
        }
        let mut expired = HashSet::new();
        while let Some(&(at, id)) = self.dead_expiry.first()
            && at <= now
        {
            self.dead_expiry.pop_first();
            expired.insert(id);
        }
        if !expired.is_empty() {
            for q in self.queues.values_mut() {
                q.dead.retain(|d| d.expires_at > now || !expired.contains(&d.id));
            }
        }
    }

    /// Where the lock owner `id` is: waiting for its first delivery, started, or gone (a task
    /// flagged by a cancel is as good as gone).
    pub(super) fn owner(&self, id: TaskId) -> Owner {
        match self.tasks.get(&id) {
            Some(r) if r.cancel.is_none() => {
                if r.attempt == 0 && r.token.is_none() {
                    Owner::Waiting
                } else {
                    Owner::Started
                }
            }
            _ => Owner::Gone,
        }
    }

    /// Gives `key` of `queue` to `lock`'s owner, replacing the lock held before.
    pub(super) fn lock_key(&mut self, queue: &str, key: &str, lock: UniqueLock) {
        self.unique_expiry.insert((lock.expires_at, queue.to_owned(), key.to_owned()));
        self.unique.insert((queue.to_owned(), key.to_owned()), lock);
    }

    /// Gives the waiting task `id` new arguments (the envelope `raw`, encoded with its id) and,
    /// when `due` is given, a new due time.
    pub(super) fn rewrite(&mut self, id: TaskId, raw: Vec<u8>, lease_ms: u64, due: Option<UnixMillis>) {
        let Some(r) = self.tasks.get_mut(&id) else { return };
        r.raw = raw;
        r.lease_ms = lease_ms;
        if let Some(due) = due {
            let q = self.queues.get_mut(&r.queue).expect("a live task's queue");
            q.index.remove(&(r.visible_at, r.seq, id));
            r.visible_at = due;
            q.index.insert((due, r.seq, id));
        }
    }

    /// Keeps a settled task until `expires_at`, replacing an earlier record of the id.
    pub(super) fn keep(&mut self, id: TaskId, done: Done) {
        self.done_expiry.insert((done.expires_at, id));
        if let Some(old) = self.done.insert(id, done) {
            self.done_expiry.remove(&(old.expires_at, id));
        }
    }

    /// Deletes the live task `id` and keeps it as cancelled for `keep_ms`.
    pub(super) fn settle_cancelled(&mut self, id: TaskId, now: UnixMillis, keep_ms: u64) {
        let Some(r) = self.remove(id) else { return };
        let done = Done {
            state: TaskState::Cancelled,
            queue: r.queue,
            raw: r.raw,
            attempt: r.attempt,
            finished_at: now,
            expires_at: now + keep_ms,
            result: None,
            started_at: r.started_at,
        };
        self.keep(id, done);
    }

    pub(super) fn remove(&mut self, id: TaskId) -> Option<Record> {
        let r = self.tasks.remove(&id)?;
        if let Some(q) = self.queues.get_mut(&r.queue) {
            q.index.remove(&(r.visible_at, r.seq, id));
        }
        Some(r)
    }
}
