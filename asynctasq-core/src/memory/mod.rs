//! The in-memory driver: the reference implementation of the [`Driver`] contract.
//!
//! It keeps everything in one process behind a mutex, stores envelopes encoded (as every real
//! backend does, so codec trouble shows up here too) and reads time from an injectable
//! [`Clock`]: the system clock by default, or a [`TokioClock`](crate::TokioClock), with which
//! tests on a paused tokio runtime see leases expire and delays pass without real sleeps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::driver::{
    Ack, CancelOutcome, Capability, DeadPage, DeadSelector, DeadTask, DeleteOutcome, Delivery, Driver, EnqueueOutcome, Lease, QueueLimits,
    QueueStats, ScheduleState, ServerInfo, TaskRecord, TaskState, Waiting, WorkerInfo,
};
use crate::envelope::{Envelope, TaskId, UnixMillis, millis, validate_queue_name};
use crate::error::DriverError;
use crate::notice::{NoticeBus, NoticeKind};
use crate::progress::Progress;
use crate::unique::{UniqueLock, UniqueMode};

mod limits;
mod schedules;
mod state;

use state::{DeadRecord, Done, State};

/// Lease used for a stored record that cannot be decoded (its own lease is unknown).
const FALLBACK_LEASE_MS: u64 = 30_000;

/// The in-memory driver. Cloning gives another handle to the same store.
#[derive(Clone, Debug)]
pub struct MemoryDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: Arc<dyn Clock>,
    lacks: Vec<Capability>,
    state: Mutex<State>,
    notify: Notify,
    notices: NoticeBus,
}

impl Default for MemoryDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDriver {
    fn registry_kept(&self) -> Result<(), DriverError> {
        if self.inner.lacks.contains(&Capability::WorkerRegistry) { Err(DriverError::Unsupported("the worker registry")) } else { Ok(()) }
    }

    /// A new, empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A new, empty store reading time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let state = Mutex::new(State::default());
        Self { inner: Arc::new(Inner { clock, lacks: Vec::new(), state, notify: Notify::new(), notices: NoticeBus::default() }) }
    }

    /// The same store claiming to lack `capabilities` (it still behaves fully): for testing how
    /// the engine and the conformance suite treat backends with gaps. Call before cloning.
    pub fn lacking(mut self, capabilities: &[Capability]) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.lacks = capabilities.to_vec();
        }
        self
    }

    /// Stores raw bytes as a task of `queue`, ready now, bypassing the codec: how tests put a
    /// corrupt or foreign record in front of a worker. Returns the id the record got.
    pub fn enqueue_raw(&self, queue: &str, raw: Vec<u8>) -> Result<TaskId, DriverError> {
        validate_queue_name(queue)?;
        let id = TaskId::new();
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.insert(id, queue.to_owned(), raw, FALLBACK_LEASE_MS, now, None);
        drop(state);
        self.inner.notify.notify_waiters();
        Ok(id)
    }

    /// Makes every live lease expire now, as if its worker had stalled past it: how tests
    /// take a task away from a running worker.
    pub fn expire_leases(&self) {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let leased: Vec<TaskId> = state.tasks.iter().filter(|(_, r)| r.token.is_some() && r.visible_at > now).map(|(id, _)| *id).collect();
        for id in leased {
            state.move_to(id, now);
        }
        drop(state);
        self.inner.notify.notify_waiters();
    }

    /// Tells waiters that `id` was settled.
    fn settled(&self, id: TaskId) {
        self.inner.notices.send(NoticeKind::Settled, id);
    }

    /// Settles the task `lease` holds as cancelled when a cancel flagged it (a flagged task is
    /// neither retried, released nor dead-lettered); whether it did.
    fn cancelled_instead(&self, state: &mut State, lease: &Lease, now: UnixMillis) -> Result<bool, DriverError> {
        let Some(keep_ms) = state.held(lease)?.cancel else { return Ok(false) };
        state.settle_cancelled(lease.id, now, keep_ms);
        self.settled(lease.id);
        Ok(true)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a record half-moved (every method
        // computes first and mutates last), so a poisoned lock is safe to keep using.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryDriver {
    /// Stores `tasks` in `state` (see [`Driver::enqueue`]).
    fn store(&self, state: &mut State, tasks: &[Envelope], now: UnixMillis) -> Result<Vec<EnqueueOutcome>, DriverError> {
        if !self.supports(Capability::UniqueKeys) {
            crate::unique::refuse(tasks)?;
        }
        let mut encoded = Vec::with_capacity(tasks.len());
        for t in tasks {
            validate_queue_name(&t.queue)?;
            encoded.push((t, t.encode()?));
        }
        // The dead ids of each queue the batch names, gathered once per batch.
        let mut dead: HashMap<String, HashSet<TaskId>> = HashMap::new();
        let mut outcomes = Vec::with_capacity(encoded.len());
        for (t, raw) in encoded {
            let (id, queue) = (t.id, &t.queue);
            let dead = dead
                .entry(queue.clone())
                .or_insert_with(|| state.queues.get(queue).map(|q| q.dead.iter().map(|d| d.id).collect()).unwrap_or_default());
            if state.tasks.contains_key(&id) || dead.contains(&id) || state.done.get(&id).is_some_and(|d| d.expires_at > now) {
                outcomes.push(EnqueueOutcome::Exists);
                continue;
            }
            if let Some(u) = &t.unique {
                let held = state.unique.get(&(queue.clone(), u.key.clone())).copied();
                if let Some(lock) = held.filter(|l| l.holds(now, state.owner(l.owner))) {
                    if UniqueLock::replaceable(u.mode, state.owner(lock.owner)) {
                        let debounce = u.mode == UniqueMode::Debounce;
                        let raw = Envelope { id: lock.owner, ..t.clone() }.encode()?;
                        state.rewrite(lock.owner, raw, t.lease_ms, debounce.then_some(t.not_before));
                        if debounce {
                            state.lock_key(queue, &u.key, UniqueLock { expires_at: now + u.ttl_ms, ..lock });
                        }
                    }
                    outcomes.push(EnqueueOutcome::Duplicate { existing: lock.owner });
                    continue;
                }
                state.lock_key(queue, &u.key, UniqueLock { owner: id, until: u.until, expires_at: now + u.ttl_ms });
            }
            state.insert(id, queue.clone(), raw, t.lease_ms, t.not_before, t.key.clone());
            outcomes.push(EnqueueOutcome::New);
        }
        Ok(outcomes)
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let now = self.inner.clock.now();
        let outcomes = self.store(&mut self.lock(), tasks, now)?;
        self.inner.notify.notify_waiters();
        Ok(outcomes)
    }

    async fn claim_slot(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        self.claim(name, queue, slot, task)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>, DriverError> {
        Ok(self.schedule_states())
    }

    async fn set_schedule_paused(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        self.pause_schedule(name, queue, paused)
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        validate_queue_name(queue)?;
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.sweep(now);
        if state.paused.contains(queue) && self.supports(Capability::PauseQueues) {
            return Ok(Vec::new());
        }
        // The queue's room under its cap and rate, given its live leases and starts; with limits
        // per key, the parked tasks of keys with room back in the due range first.
        let limits = state.limits.get(queue).copied().unwrap_or_default();
        let keyed = limits.keyed();
        let (mut max, mut counts) = (max, crate::limits::Counts::default());
        if !limits.is_none() {
            counts = state.counts(queue, &limits, now);
            max = limits.room(max, &counts);
            if keyed {
                state.unpark(queue, &limits, &counts);
            }
        }
        let Some(q) = state.queues.get(queue) else { return Ok(Vec::new()) };
        // A flagged task is never delivered: due, its lease ran out, and it ends cancelled here.
        let (mut due, mut flagged) = (Vec::new(), Vec::new());
        let scan = if keyed { crate::limits::scan_bound(max) } else { max };
        for (_, _, id) in q.index.iter().take_while(|(at, _, _)| *at <= now) {
            if due.len() == scan {
                break;
            }
            match state.tasks.get(id).and_then(|r| r.cancel) {
                Some(keep_ms) => flagged.push((*id, keep_ms)),
                None => due.push(*id),
            }
        }
        if !limits.is_none() {
            let keys: Vec<Option<String>> = due.iter().map(|id| state.tasks.get(id).and_then(|r| r.key.clone())).collect();
            let pick = crate::limits::pick(keys.iter().map(Option::as_deref), &limits, &counts, max);
            for &i in &pick.park {
                state.park(due[i]);
            }
            state.log_starts(queue, now, limits.starts_to_log(pick.take.iter().map(|&i| keys[i].as_deref())));
            due = pick.take.iter().map(|&i| due[i]).collect();
        }
        for (id, keep_ms) in flagged {
            state.settle_cancelled(id, now, keep_ms);
            self.settled(id);
        }
        let mut out = Vec::with_capacity(due.len());
        let holder = state.consumer.clone();
        for id in due {
            state.next_token += 1;
            let token = state.next_token;
            let r = state.tasks.get_mut(&id).expect("indexed task has a record");
            r.attempt += 1;
            r.token = Some(token);
            r.holder.clone_from(&holder);
            r.started_at = Some(now);
            let expires_at = now + r.lease_ms;
            let lease = Lease { id, queue: queue.to_owned(), token: token.to_string(), expires_at };
            let delivery = Delivery::new(lease, r.attempt, Envelope::decode(&r.raw)).replayed(r.replayed);
            state.move_to(id, expires_at);
            out.push(delivery);
        }
        Ok(out)
    }

    fn consumer(&self, name: &str) {
        self.lock().consumer = Some(name.into());
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        if !self.supports(Capability::PauseQueues) {
            return Err(DriverError::Unsupported("pausing a queue"));
        }
        let mut state = self.lock();
        if paused {
            state.paused.insert(queue.to_owned());
        } else if state.paused.remove(queue) {
            drop(state);
            self.inner.notify.notify_waiters();
        }
        Ok(())
    }

    async fn paused(&self) -> Result<Vec<String>, DriverError> {
        Ok(self.lock().paused.iter().cloned().collect())
    }

    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        if !self.supports(Capability::QueueLimits) {
            return Err(DriverError::Unsupported("limiting a queue"));
        }
        crate::limits::check_limits(&limits, |c| self.supports(c))?;
        let mut state = self.lock();
        if limits.is_none() {
            state.limits.remove(queue);
        } else {
            state.limits.insert(queue.to_owned(), limits);
        }
        if !limits.keyed() {
            // Nothing holds parked tasks back any more.
            state.unpark(queue, &limits, &crate::limits::Counts::default());
        }
        drop(state);
        // A raised limit may make tasks claimable.
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        Ok(self.lock().limits.iter().map(|(q, l)| (q.clone(), *l)).collect())
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        let notified = self.inner.notify.notified();
        tokio::pin!(notified);
        // Register before looking, so an enqueue between the look and the wait still wakes us.
        notified.as_mut().enable();
        let now = self.inner.clock.now();
        let next_due = {
            let state = self.lock();
            // A paused queue's tasks are not ready for anyone.
            queues
                .iter()
                .filter(|q| !state.paused.contains(*q))
                .filter_map(|q| state.queues.get(q)?.index.first().map(|(at, _, _)| *at))
                .min()
        };
        let wait = match next_due {
            Some(at) if at <= now => return Ok(()),
            Some(at) => timeout.min(Duration::from_millis(at - now)),
            None => timeout,
        };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(wait) => {}
        }
        Ok(())
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        let now = self.inner.clock.now();
        let keeps = self.supports(Capability::Results);
        // Asked once per batch: a send per task would lock the bus per task.
        let listened = self.inner.notices.listened(NoticeKind::Settled);
        let mut state = self.lock();
        state.sweep(now);
        let mut lost = Vec::new();
        for Ack { lease, keep, result } in acks {
            if state.held(lease).is_err() {
                lost.push(lease.id);
                continue;
            }
            let Some(r) = state.remove(lease.id) else { continue };
            if let Some(q) = state.queues.get_mut(&r.queue) {
                q.totals.succeeded += 1;
            }
            if listened {
                self.settled(lease.id);
            }
            if keeps && !keep.is_zero() {
                let expires_at = now + millis(*keep);
                let (queue, raw, attempt, result, started_at) = (r.queue, r.raw, r.attempt, result.clone(), r.started_at);
                let done = Done { state: TaskState::Succeeded, queue, raw, attempt, finished_at: now, expires_at, result, started_at };
                state.keep(lease.id, done);
            }
        }
        Ok(lost)
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        if self.cancelled_instead(&mut state, lease, now)? {
            return Ok(());
        }
        let r = state.held(lease)?;
        r.token = None;
        r.last_error = Some(error.to_owned());
        if !error.is_empty() && self.supports(Capability::ErrorHistory) {
            r.record_error(now, error);
        }
        state.move_to(lease.id, now + millis(delay));
        drop(state);
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        if self.cancelled_instead(&mut state, lease, now)? {
            return Ok(());
        }
        let r = state.held(lease)?;
        r.token = None;
        r.attempt = r.attempt.saturating_sub(1);
        state.move_to(lease.id, now);
        drop(state);
        self.inner.notify.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        if self.cancelled_instead(&mut state, lease, now)? {
            return Ok(());
        }
        let mut r = state.remove(lease.id).expect("held record exists");
        if self.supports(Capability::ErrorHistory) {
            r.record_error(now, error);
        }
        let queue = r.queue.clone();
        // Without the capability, kept until purged or requeued, as a broker keeps them.
        let expires_at = if self.supports(Capability::DeadExpiry) { now.saturating_add(millis(keep)) } else { UnixMillis::MAX };
        state.dead_expiry.insert((expires_at, lease.id));
        let seq = state.next_seq;
        state.next_seq += 1;
        let q = state.queues.entry(queue).or_default();
        let error = error.to_owned();
        let started_at = r.started_at;
        let dead =
            DeadRecord { id: lease.id, raw: r.raw, attempt: r.attempt, error, dead_at: now, errors: r.errors, expires_at, started_at, seq };
        q.dead.push(dead);
        q.totals.failed += 1;
        self.settled(lease.id);
        Ok(())
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        if state.held(lease)?.cancel.is_some() {
            return Err(DriverError::CancelRequested(lease.id));
        }
        let expires_at = now + millis(by);
        state.move_to(lease.id, expires_at);
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        validate_queue_name(queue)?;
        let now = self.inner.clock.now();
        let state = self.lock();
        let mut stats = QueueStats::default();
        let mut earliest: Option<u64> = None;
        if let Some(q) = state.queues.get(queue) {
            for (at, _, id) in &q.index {
                // A parked task is due (see `crate::limits`).
                let at = &crate::limits::unparked(*at);
                let leased = state.tasks.get(id).is_some_and(|r| r.token.is_some());
                match (*at <= now, leased) {
                    (true, _) => {
                        stats.ready += 1;
                        earliest = Some(earliest.map_or(*at, |e| e.min(*at)));
                    }
                    (false, true) => stats.leased += 1,
                    (false, false) => stats.scheduled += 1,
                }
            }
            stats.dead = q.dead.iter().filter(|d| d.expires_at > now).count() as u64;
            stats.totals = Some(q.totals);
        }
        if self.supports(Capability::Totals) {
            stats.totals.get_or_insert_default();
        } else {
            stats.totals = None;
        }
        if self.supports(Capability::OldestReadyAge) {
            stats.oldest_ready_age = Some(Duration::from_millis(earliest.map_or(0, |e| now.saturating_sub(e))));
        }
        Ok(stats)
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let state = self.lock();
        Ok(state.queues.iter().filter(|(_, q)| !q.index.is_empty() || !q.dead.is_empty()).map(|(n, _)| n.clone()).collect())
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        if which != Waiting::Ready && self.inner.lacks.contains(&Capability::PurgeScheduled) {
            return Err(DriverError::Unsupported("deleting scheduled tasks"));
        }
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let Some(q) = state.queues.get(queue) else { return Ok(0) };
        let victims: Vec<TaskId> = q
            .index
            .iter()
            .filter(|(at, _, id)| {
                // A parked task is ready (see `crate::limits`), waiting for its key's room.
                let parked = *at >= crate::limits::PARKED;
                let scheduled = *at > now && !parked && state.tasks.get(id).is_none_or(|r| r.token.is_none());
                match which {
                    Waiting::Ready => *at <= now || parked,
                    Waiting::Scheduled => scheduled,
                    Waiting::Both => *at <= now || parked || scheduled,
                }
            })
            .map(|(_, _, id)| *id)
            .collect();
        for id in &victims {
            state.remove(*id);
        }
        Ok(victims.len() as u64)
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        validate_queue_name(queue)?;
        let now = self.inner.clock.now();
        let state = self.lock();
        let Some(q) = state.queues.get(queue) else { return Ok(Vec::new()) };
        Ok(q.dead
            .iter()
            .filter(|d| d.expires_at > now)
            .take(limit)
            .map(|d| {
                let dead = DeadTask::new(d.id, queue, d.attempt, d.error.clone(), d.dead_at, Envelope::decode(&d.raw));
                DeadTask { errors: d.errors.clone(), ..dead }
            })
            .collect())
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let Some(q) = state.queues.get_mut(queue) else { return Ok(0) };
        let (moved, kept): (Vec<DeadRecord>, Vec<DeadRecord>) = std::mem::take(&mut q.dead).into_iter().partition(|d| match &which {
            DeadSelector::All => true,
            DeadSelector::Ids(ids) => ids.contains(&d.id),
        });
        q.dead = kept;
        let count = moved.len() as u64;
        for d in moved {
            let (lease_ms, key) = Envelope::decode(&d.raw).map(|e| (e.lease_ms, e.key)).unwrap_or((FALLBACK_LEASE_MS, None));
            state.insert(d.id, queue.to_owned(), d.raw, lease_ms, now, key);
            if let Some(r) = state.tasks.get_mut(&d.id) {
                r.replayed = true;
                r.errors = d.errors;
            }
        }
        drop(state);
        self.inner.notify.notify_waiters();
        Ok(count)
    }

    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        let now = self.inner.clock.now();
        let state = self.lock();
        if let Some(r) = state.tasks.get(&id) {
            return Ok(Some(r.record(id, now)));
        }
        for (name, q) in &state.queues {
            if let Some(d) = q.dead.iter().find(|d| d.id == id && d.expires_at > now) {
                return Ok(Some(d.record(name)));
            }
        }
        Ok(state.done.get(&id).filter(|d| d.expires_at > now).map(|d| d.record(id)))
    }

    async fn list(&self, queue: &str, wanted: TaskState, offset: usize, limit: usize) -> Result<Vec<TaskRecord>, DriverError> {
        validate_queue_name(queue)?;
        if !self.supports(Capability::Browse) {
            return Err(DriverError::Unsupported("listing tasks"));
        }
        let now = self.inner.clock.now();
        let state = self.lock();
        let Some(q) = state.queues.get(queue) else { return Ok(Vec::new()) };
        Ok(match wanted {
            TaskState::Dead => q.dead.iter().filter(|d| d.expires_at > now).skip(offset).take(limit).map(|d| d.record(queue)).collect(),
            TaskState::Succeeded | TaskState::Cancelled => {
                let mut kept: Vec<(&TaskId, &Done)> =
                    state.done.iter().filter(|(_, d)| d.queue == queue && d.state == wanted && d.expires_at > now).collect();
                kept.sort_by_key(|(id, d)| (d.finished_at, **id));
                kept.into_iter().skip(offset).take(limit).map(|(id, d)| d.record(*id)).collect()
            }
            _ => q
                .index
                .iter()
                .filter_map(|(_, _, id)| state.tasks.get(id).map(|r| r.record(*id, now)))
                .filter(|r| r.state == wanted)
                .skip(offset)
                .take(limit)
                .collect(),
        })
    }

    async fn dead_after(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<DeadPage, DriverError> {
        validate_queue_name(queue)?;
        if !self.supports(Capability::Browse) {
            return Err(DriverError::Unsupported("listing tasks"));
        }
        let after = DeadPage::cursor::<u64>(after)?;
        let now = self.inner.clock.now();
        let state = self.lock();
        let Some(q) = state.queues.get(queue) else { return Ok(DeadPage::default()) };
        let page: Vec<&DeadRecord> = q.dead.iter().filter(|d| d.expires_at > now && after.is_none_or(|a| d.seq > a)).take(limit).collect();
        let next = (page.len() == limit && limit > 0).then(|| page.last().map(|d| d.seq.to_string())).flatten();
        Ok(DeadPage::new(page.into_iter().map(|d| (d.record(queue), d.seq.to_string())).collect(), next))
    }

    async fn delete(&self, id: TaskId) -> Result<DeleteOutcome, DriverError> {
        if !self.supports(Capability::Browse) {
            return Err(DriverError::Unsupported("deleting a task"));
        }
        let now = self.inner.clock.now();
        let mut state = self.lock();
        if let Some(r) = state.tasks.get(&id) {
            if r.token.is_some() && r.visible_at > now {
                return Ok(DeleteOutcome::Leased);
            }
            state.remove(id);
            return Ok(DeleteOutcome::Deleted);
        }
        for q in state.queues.values_mut() {
            if let Some(at) = q.dead.iter().position(|d| d.id == id) {
                q.dead.remove(at);
                return Ok(DeleteOutcome::Deleted);
            }
        }
        match state.done.remove(&id) {
            Some(d) => {
                state.done_expiry.remove(&(d.expires_at, id));
                Ok(if d.expires_at > now { DeleteOutcome::Deleted } else { DeleteOutcome::NotFound })
            }
            None => Ok(DeleteOutcome::NotFound),
        }
    }

    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<(), DriverError> {
        if !self.supports(Capability::Progress) {
            return Err(DriverError::Unsupported("recording a task's progress"));
        }
        let encoded = progress.encode()?;
        self.lock().held(lease)?.progress = Some(encoded);
        Ok(())
    }

    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        if !self.supports(Capability::Cancel) {
            return Err(DriverError::Unsupported("cancelling a task"));
        }
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.sweep(now);
        if let Some(r) = state.tasks.get_mut(&id) {
            if r.token.is_some() && r.visible_at > now {
                r.cancel = Some(millis(keep));
                self.inner.notices.send(NoticeKind::CancelRequested, id);
                return Ok(CancelOutcome::Requested);
            }
            state.settle_cancelled(id, now, millis(keep));
            self.settled(id);
            return Ok(CancelOutcome::Removed);
        }
        let dead = state.queues.values().any(|q| q.dead.iter().any(|d| d.id == id));
        Ok(if dead || state.done.contains_key(&id) { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound })
    }

    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.held(lease)?;
        state.settle_cancelled(lease.id, now, millis(keep));
        self.settled(lease.id);
        Ok(())
    }

    fn notices(&self, kind: NoticeKind) -> Option<tokio::sync::broadcast::Receiver<TaskId>> {
        let capability = match kind {
            NoticeKind::Settled => Capability::ResultNotify,
            _ => Capability::CancelNotify,
        };
        self.supports(capability).then(|| self.inner.notices.subscribe(kind))
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let mut state = self.lock();
        Ok(state.queues.get_mut(queue).map(|q| std::mem::take(&mut q.dead).len() as u64).unwrap_or(0))
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        self.registry_kept()?;
        self.lock().workers.insert(worker.id.clone(), worker.clone());
        Ok(())
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        self.registry_kept()?;
        self.lock().workers.remove(id);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        self.registry_kept()?;
        let now = self.inner.clock.now();
        let mut state = self.lock();
        state.workers.retain(|_, w| w.expires_at > now);
        Ok(state.workers.values().cloned().collect())
    }

    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        if !self.supports(Capability::ServerInfo) {
            return Err(DriverError::Unsupported("server information"));
        }
        Ok(ServerInfo { version: Some(format!("in-process (asynctasq {})", env!("CARGO_PKG_VERSION"))), clock_ms: None, schema: None })
    }

    fn supports(&self, capability: Capability) -> bool {
        !self.inner.lacks.contains(&capability)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
