//! The [`Driver`] trait: the one seam between the engine and a backend.
//!
//! # Why a trait object
//! The engine holds drivers as `Arc<dyn Driver>` (dynamic dispatch through `async-trait`).
//! The backend is chosen at run time from a URL or a `--driver` flag, the CLI links every
//! backend into one binary, and a boxed future per call costs nothing next to a network or
//! disk round trip, which the batched methods (`enqueue`, `dequeue`, `ack`) already amortise.
//! A generic engine would buy nothing measurable and multiply compile times.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, TaskId, UnixMillis};
use crate::error::{CodecError, DriverError};
use crate::notice::NoticeKind;
use crate::progress::Progress;
pub use crate::record::{CancelOutcome, DeadPage, DeadTask, DeleteOutcome, EnqueueOutcome, ScheduleState, TaskRecord, TaskState};
pub use crate::workers::WorkerInfo;

/// The right to settle one delivered task, held until it is settled or expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased task.
    pub id: TaskId,
    /// The queue it was taken from.
    pub queue: String,
    /// The backend's fencing token for this delivery (opaque to the engine).
    pub token: String,
    /// When the lease expires unless extended.
    pub expires_at: UnixMillis,
}

/// One task handed to a consumer under a lease.
#[derive(Debug)]
pub struct Delivery {
    /// The lease to settle the task with.
    pub lease: Lease,
    /// Deliveries of this task so far, including this one.
    pub attempt: u32,
    /// The stored envelope, or why it could not be decoded. A consumer must dead-letter an
    /// undecodable delivery (the engine does so at once, with the error as the reason).
    pub envelope: Result<Envelope, CodecError>,
    /// Whether the task was moved back from the dead tasks ([`Driver::requeue_dead`]) since it
    /// was dispatched. Its attempts start over, so attempt 1 of a replay is not the dispatch's
    /// own delivery: the worker's span links to the dispatch's trace instead of continuing it.
    pub replayed: bool,
}

impl Delivery {
    /// A delivery at `attempt`. The one place a delivery's attempt is stamped into its envelope:
    /// backends store the envelope as dispatched and count deliveries beside it, so a decoded
    /// envelope says what was stored, and this makes it say how many deliveries it has had.
    pub fn new(lease: Lease, attempt: u32, envelope: Result<Envelope, CodecError>) -> Self {
        Self { lease, attempt, envelope: stamped(envelope, attempt), replayed: false }
    }

    /// The same delivery, marked as a replay of a dead task when `replayed` (see
    /// [`Delivery::replayed`]).
    #[must_use]
    pub fn replayed(self, replayed: bool) -> Self {
        Self { replayed, ..self }
    }
}

pub(crate) fn stamped(envelope: Result<Envelope, CodecError>, attempt: u32) -> Result<Envelope, CodecError> {
    envelope.map(|mut e| {
        e.attempt = attempt;
        e
    })
}

/// A successful run to settle with [`Driver::ack`]: its lease, and what to keep of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The lease of the run that succeeded.
    pub lease: Lease,
    /// How long the task stays findable once acked ([`Capability::Results`]): as
    /// [`TaskState::Succeeded`], with its envelope and `result`, until this has passed. `ZERO`
    /// keeps nothing: the task is gone with the ack.
    pub keep: Duration,
    /// What the run returned, encoded by the engine ([`crate::StoredResult`]); opaque to the
    /// backend, stored beside the record. `None`: the task returns nothing.
    pub result: Option<Vec<u8>>,
}

impl Ack {
    /// Acks of `leases` that keep nothing.
    pub fn each(leases: &[Lease]) -> Vec<Ack> {
        leases.iter().cloned().map(Ack::from).collect()
    }
}

impl From<Lease> for Ack {
    /// An ack that keeps nothing: the task is gone with it.
    fn from(lease: Lease) -> Self {
        Self { lease, keep: Duration::ZERO, result: None }
    }
}

/// Counts for one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Due now and not leased.
    pub ready: u64,
    /// Not yet due: delayed at dispatch or waiting for a retry.
    pub scheduled: u64,
    /// Delivered and under a live lease.
    pub leased: u64,
    /// In the dead-letter store.
    pub dead: u64,
    /// How long the oldest ready task has been due (now − its due time); `Some(ZERO)` when none
    /// is ready. Scheduled tasks never count: a task delayed by an hour is not an hour late.
    /// `None` on a backend that cannot tell ([`Capability::OldestReadyAge`] undeclared).
    #[serde(rename = "oldest_ready_age_ms", default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub oldest_ready_age: Option<Duration>,
    /// Tasks the queue has settled for good since its store was made, kept in the backend so
    /// they outlive every worker. `None` on a backend with no place for them
    /// ([`Capability::Totals`] undeclared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// Some of the four counts are estimates: a backend that counts exactly
    /// ([`Capability::ExactStats`]) may estimate a state holding more tasks than it counts one
    /// by one (PostgreSQL past `exact_counts`, 10,000 by default), never one below.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

/// A queue's settled tasks over its life: counted by the same write that settles them (an ack
/// batch, a dead letter), so they cost no round trip of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Acked: the task ran and succeeded. A task acked after a dead-letter replay counts here too.
    pub succeeded: u64,
    /// Dead-lettered: the task failed its last attempt, was undecodable or unknown, or failed
    /// without retry.
    pub failed: u64,
}

impl QueueStats {
    /// The four counts only, without the age (what equality of counts means in tests).
    pub fn counts(&self) -> [u64; 4] {
        [self.ready, self.scheduled, self.leased, self.dead]
    }
}

/// `Option<Duration>` as whole milliseconds on the wire.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Which dead tasks [`Driver::requeue_dead`] moves back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadSelector {
    /// These ids (ids not in the dead store are ignored).
    Ids(Vec<TaskId>),
    /// Every dead task of the queue.
    All,
}

/// Which waiting tasks [`Driver::purge_waiting`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Due now and not leased.
    Ready,
    /// Not due yet: delayed at dispatch or waiting for a retry.
    Scheduled,
    /// Both (what [`Driver::purge`] deletes).
    Both,
}

/// Declares [`Capability`] and [`Capability::ALL`] from one list: a new capability is one
/// variant here, and everything that walks the capabilities (the conformance suite's declared
/// gaps, `asynctasq doctor`) sees it.
macro_rules! capabilities {
    ($(#[$meta:meta])* pub enum Capability { $($(#[$vmeta:meta])* $name:ident,)* }) => {
        $(#[$meta])*
        pub enum Capability { $($(#[$vmeta])* $name,)* }

        impl Capability {
            /// Every capability.
            pub const ALL: [Capability; [$(Capability::$name),*].len()] = [$(Capability::$name),*];
        }
    };
}

capabilities! {
    /// Optional behaviours a backend may lack. The conformance suite skips a rule that needs a
    /// missing capability and says so in the test output.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum Capability {
        /// Settling or extending a lease that was lost reports [`DriverError::LeaseLost`].
        Fencing,
        /// [`Driver::extend_lease`] works.
        ExtendLease,
        /// [`Driver::dead`] lists dead tasks without consuming them.
        ListDead,
        /// [`Driver::stats`] counts are exact (not approximate), at least up to a bound the
        /// backend documents; a count past it may be estimated and is then marked
        /// ([`QueueStats::estimated`]).
        ExactStats,
        /// [`Driver::wait_ready`] returns promptly when another handle in the same process
        /// enqueues, instead of at its timeout.
        WakeOnEnqueue,
        /// [`Driver::purge`] also deletes scheduled tasks (delayed, or waiting for a retry), not
        /// only ready ones. SQS cannot reach a message while it is delayed or hidden.
        PurgeScheduled,
        /// The backend keeps the worker registry ([`Driver::register_worker`],
        /// [`Driver::workers`]).
        WorkerRegistry,
        /// [`Driver::server_info`] reports the server's version, clock or schema. A broker or a
        /// cloud queue has nothing of the kind to ask.
        ServerInfo,
        /// [`QueueStats::oldest_ready_age`] is reported: the backend can find the earliest due
        /// time among ready tasks without consuming them.
        OldestReadyAge,
        /// [`QueueStats::totals`] is reported: the backend keeps succeeded and failed counts per
        /// queue, written with the ack or dead letter that settles each task. A broker that
        /// forgets a message once it is settled has no place for them.
        Totals,
        /// [`Driver::enqueue`] of an id already stored stores nothing and reports
        /// [`EnqueueOutcome::Exists`]. A broker keeps no index of the messages it holds.
        IdempotentEnqueue,
        /// [`Driver::find`] looks any stored task up by id. A broker or a cloud queue can only
        /// hand messages out.
        TaskLookup,
        /// [`Driver::ack`] keeps an acked task for [`Ack::keep`] with its result, found by
        /// [`Driver::find`] as [`TaskState::Succeeded`], and sweeps it once that has passed. A
        /// broker forgets a message once it is settled.
        Results,
        /// [`Driver::cancel`] stops tasks: a waiting one is removed, a leased one is flagged so
        /// that no claim delivers it again and its lease extension reports
        /// [`DriverError::CancelRequested`]. A broker cannot reach a message it has handed out.
        Cancel,
        /// [`Driver::notices`] of [`NoticeKind::Settled`] reach every handle on the backend,
        /// whichever process settled the task (Redis `PUBLISH`, PostgreSQL `NOTIFY`), so a
        /// waiter wakes at once instead of at its next poll.
        ResultNotify,
        /// [`Driver::notices`] of [`NoticeKind::CancelRequested`] reach every handle on the
        /// backend, so the worker holding a cancelled task hears at once instead of at its next
        /// lease renewal.
        CancelNotify,
        /// [`Driver::progress`] keeps a running task's progress under its lease, and
        /// [`Driver::find`] reports it ([`TaskRecord::progress`]).
        Progress,
        /// Each failure ([`Driver::nack`] with an error, [`Driver::dead_letter`]) appends its
        /// attempt, time and error to the task's history, kept with it while it lives and once
        /// it is dead ([`TaskRecord::errors`], [`DeadTask::errors`]).
        ErrorHistory,
        /// A dead task expires once the `keep` of its [`Driver::dead_letter`] has passed: from
        /// then on no call reports it, and the backend's own later calls delete it within a
        /// second. A broker keeps dead messages by its own retention instead (RabbitMQ until
        /// they are purged or requeued, SQS for its dead-letter queue's retention period).
        DeadExpiry,
        /// [`Driver::set_paused`] stops every claim of a queue, across processes, until it is
        /// resumed. A broker hands messages to its consumers on its own.
        PauseQueues,
        /// [`Driver::enqueue`] keeps an envelope's [`Unique`](crate::unique::Unique) key: it
        /// stores a task whose key is free and takes the lock in the same atomic step, and
        /// reports [`EnqueueOutcome::Duplicate`] for one whose key is held (see
        /// [`crate::unique`]). A backend without it refuses a unique envelope. A broker keeps
        /// no index of the messages it holds.
        UniqueKeys,
        /// [`Driver::claim_slot`] advances a schedule's last slot and stores the slot's task in
        /// one atomic step, and [`Driver::schedules`] and [`Driver::set_schedule_paused`] keep
        /// what it knows of each schedule. A broker keeps no state of ours to compare with.
        ScheduleClaims,
        /// [`Driver::list`] pages through a queue's tasks in one state, and
        /// [`Driver::delete`] deletes one by id.
        Browse,
        /// [`Driver::set_limits`] stores a queue's [`QueueLimits`] in the backend and every
        /// claim obeys them, whichever handle or process claims: the live leases of the queue
        /// are counted in the claim's own atomic step. A broker hands messages to its consumers
        /// on its own.
        QueueLimits,
        /// [`QueueLimits::per_key`] is enforced too: each claim counts the queue's live leases
        /// by task key, and a key at its limit never holds back other keys' tasks (its waiting
        /// tasks are parked until it has room; see [`crate::limits`]).
        KeyedLimits,
        /// [`QueueLimits::rate`] is enforced too: each claim logs its starts and counts those
        /// of the rate's window in its own atomic step, exactly in every window (a sliding log;
        /// see [`crate::limits`]). A rate per key needs [`KeyedLimits`](Capability::KeyedLimits) as well.
        RateLimits,
    }
}

pub use crate::limits::QueueLimits;

/// What a backend's server says about itself, for `asynctasq doctor`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The server's product and version (`"PostgreSQL 16.4"`), when it tells.
    pub version: Option<String>,
    /// The server's clock (Unix ms), when it has one to read. Compare it with the local
    /// clock at the middle of the round trip to estimate skew.
    pub clock_ms: Option<UnixMillis>,
    /// The schema's migrations, for backends that keep a schema.
    pub schema: Option<SchemaState>,
}

/// Migrations of a backend's schema: which are applied and which are still to run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaState {
    /// Versions applied, ascending.
    pub applied: Vec<i64>,
    /// Migrations this build knows and the schema lacks, as `(version, description)`.
    pub pending: Vec<(i64, String)>,
}

/// A task store and transport: the contract every backend keeps.
///
/// # Delivery contract
/// * **At least once.** A task enqueued successfully is delivered until it is acked or
///   dead-lettered, across crashes of consumers. It may be delivered more than once (a consumer
///   that dies after running a task but before acking it), never zero times.
/// * **Leases.** [`dequeue`](Driver::dequeue) leases each returned task for the envelope's
///   `lease_ms`. While the lease is live the task is invisible to every other consumer. When the
///   lease expires without being settled or extended, the task becomes ready again.
/// * **Attempts.** `attempt` counts deliveries: each lease increments it, including the
///   redelivery after an expired lease, so a task that crashes its worker over and over reaches
///   `max_attempts` like any failing task. Only [`release`](Driver::release) gives a delivery
///   back uncounted, and [`requeue_dead`](Driver::requeue_dead) resets the count to zero.
/// * **Fencing.** Where the backend can tell ([`Capability::Fencing`]), settling or extending a
///   lease that is no longer held (it expired and the task was leased again) fails with
///   [`DriverError::LeaseLost`] and changes nothing, so a slow consumer cannot ack the task
///   out from under its new holder.
/// * **Order.** Tasks of one queue are delivered in order of the time they became ready
///   (best effort; ties in creation order). Nothing is promised across queues: priority between
///   queues is the engine's business.
/// * **Names.** Queue names are checked with
///   [`validate_queue_name`](crate::envelope::validate_queue_name) before use.
/// * **Deadlines.** Every call ends. A backend reached over a connection bounds each request by
///   its request timeout (a few seconds, configurable) and fails one that gets no answer with
///   [`DriverError::Unavailable`]; the connection it ran on is then treated as dead, and the next
///   call uses a new one. A connection that goes half-open (no FIN, no RST, no bytes) must cost
///   one request timeout, never a call that waits forever. [`wait_ready`](Driver::wait_ready)
///   returns within its `timeout` plus the request timeout. The engine also bounds every call
///   it awaits (see [`WorkerBuilder::call_deadline`](crate::WorkerBuilder::call_deadline)), as
///   a backstop.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Stores tasks, each in the queue its envelope names, ready at its `not_before`, and says
    /// what it did with each, in order. All or nothing where the backend allows (SQL backends
    /// use one transaction). Envelopes arrive with `attempt == 0`.
    ///
    /// **Idempotent by id** ([`Capability::IdempotentEnqueue`]): an envelope whose id is
    /// already stored in its queue (waiting, leased, dead, or succeeded and still kept: see
    /// [`Ack::keep`]), or earlier in the same batch,
    /// changes nothing and is reported [`EnqueueOutcome::Exists`]; the stored task keeps its
    /// envelope, its state and its lease. A backend that cannot tell (a broker) reports
    /// [`EnqueueOutcome::New`] for every envelope, and the [`Client`](crate::Client) refuses ids set
    /// by the caller on it.
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError>;

    /// Leases up to `max` ready tasks of `queue` (ready: due, and not under a live lease) and
    /// returns them in delivery order, each with its attempt incremented. Returns an empty list
    /// at once when nothing is ready; it never waits for tasks to arrive (see
    /// [`wait_ready`](Driver::wait_ready)). A broker driver may wait briefly for deliveries the
    /// broker already sent (RabbitMQ: at most 400 ms); the conformance suite holds every driver
    /// to its `DEQUEUE_BOUND` (`testing::rules`, feature `testing`).
    ///
    /// **Limits** ([`Capability::QueueLimits`]): with [`QueueLimits::max_leased`] set for the
    /// queue, a claim delivers at most that many minus the queue's live leases (leased and not
    /// expired, by any handle), counted in the same atomic step as the claim, so concurrent
    /// claims from any number of processes never hold more at once. An expired lease counts
    /// for nothing: a crashed worker's tasks free their places when their leases run out.
    /// With a [`QueueLimits::rate`] ([`Capability::RateLimits`]), the starts of every claim
    /// within the rate's window, by any handle, count against it the same way.
    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError>;

    /// Waits until a task in one of `queues` may be ready, or until `timeout`. A hint, not a
    /// promise: it may return early with nothing ready, and consumers call
    /// [`dequeue`](Driver::dequeue) after it. Backends block on the server (a blocking pop,
    /// LISTEN/NOTIFY) or on an in-process signal rather than sleeping in a poll loop, and return
    /// no later than the earliest scheduled task of those queues falls due. The default sleeps
    /// for `timeout`.
    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        let _ = queues;
        tokio::time::sleep(timeout).await;
        Ok(())
    }

    /// Settles these runs as succeeded: deletes their tasks, and returns the ids whose lease was
    /// lost (not acked, see the fencing rule); an empty list when all were acked.
    ///
    /// **Results** ([`Capability::Results`]): an ack whose [`Ack::keep`] is not zero keeps the
    /// task, in the same atomic step as the delete, as a record [`find`](Driver::find) reports
    /// [`TaskState::Succeeded`] with the envelope, the attempt, the time of the ack and
    /// [`Ack::result`], until `keep` has passed. Only the attempt holding the lease writes it:
    /// a lost lease keeps nothing. Records past their time are never reported, and are deleted
    /// by the backend's own later calls (no process of their own): within a second of expiring
    /// while anything calls the driver. A backend without the capability ignores `keep`.
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError>;

    /// Returns the leased task to its queue, ready after `delay`, keeping its attempt count and
    /// recording `error` as its last error and appending it to the task's error history
    /// ([`Capability::ErrorHistory`]; an empty `error` records nothing). Used for retries. A task flagged by
    /// [`cancel`](Driver::cancel) is not retried: it is settled as cancelled instead (at once,
    /// or by the backend's own later calls within a second).
    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError>;

    /// Returns the leased task to its queue, ready at once, and takes back the delivery's
    /// attempt (it did not really run: the worker is shutting down).
    async fn release(&self, lease: &Lease) -> Result<(), DriverError>;

    /// Moves the leased task to the dead-letter store with `error`, its attempt count and the
    /// time, keeping its stored envelope as it was (even if undecodable), and appends `error`
    /// to its error history ([`Capability::ErrorHistory`]). The dead task is kept for `keep`
    /// (the task's failure time to live): then it expires, and the backend's own later calls
    /// delete it within a second, as they do kept results ([`Capability::DeadExpiry`]; a
    /// backend without it keeps dead tasks by its own retention and ignores `keep`).
    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError>;

    /// Extends a live lease to `by` from now and returns the renewed lease
    /// ([`Capability::ExtendLease`]). The lease of a task flagged by [`cancel`](Driver::cancel)
    /// is not extended: the call reports [`DriverError::CancelRequested`], and the holder stops
    /// the run and settles it with [`settle_cancelled`](Driver::settle_cancelled) before the
    /// lease runs out. The flag is in the backend, so it is seen here even when every other
    /// notice of the cancel was lost.
    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError>;

    /// Counts of one queue ([`Capability::ExactStats`] tells whether they are exact).
    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError>;

    /// Names of the queues that hold tasks (ready, scheduled, leased or dead), sorted.
    async fn queues(&self) -> Result<Vec<String>, DriverError>;

    /// Deletes the waiting tasks of `queue` that `which` names and returns how many; leased and
    /// dead tasks are not touched. A backend that cannot tell ready from scheduled tasks when
    /// deleting reports [`DriverError::Unsupported`] for that choice and deletes nothing; one
    /// lacking [`Capability::PurgeScheduled`] deletes the ready tasks for [`Waiting::Both`].
    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError>;

    /// Deletes every waiting task of `queue` the backend can reach and returns how many:
    /// [`purge_waiting`](Driver::purge_waiting) of [`Waiting::Both`], or of the ready tasks on
    /// a backend lacking [`Capability::PurgeScheduled`]. Not for drivers to override.
    async fn purge(&self, queue: &str) -> Result<u64, DriverError> {
        let which = if self.supports(Capability::PurgeScheduled) { Waiting::Both } else { Waiting::Ready };
        self.purge_waiting(queue, which).await
    }

    /// Lists up to `limit` dead tasks of `queue`, oldest first ([`Capability::ListDead`]).
    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError>;

    /// Moves dead tasks of `queue` back to it, ready at once with attempt reset to zero, and
    /// returns how many moved. Their deliveries from then on are [`Delivery::replayed`].
    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError>;

    /// Deletes the dead tasks of `queue` and returns how many.
    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError>;

    /// Tells the driver how many tasks its consumer runs at once (a worker's concurrency) and
    /// from how many queues, before the first [`dequeue`](Driver::dequeue). Backends that push
    /// tasks to consumers (RabbitMQ) size their prefetch from it; backends that claim on demand
    /// ignore it (the default).
    fn prefetch_hint(&self, tasks: usize, queues: usize) {
        let _ = (tasks, queues);
    }

    /// Names the consumer this handle claims for (a worker's id), before its first
    /// [`dequeue`](Driver::dequeue): claims record it as the lease holder
    /// ([`TaskRecord::holder`]) and failures as the failed run's worker
    /// ([`AttemptError::worker`](crate::history::AttemptError::worker)), where the backend
    /// keeps task records ([`Capability::TaskLookup`]); others ignore it (the default). A
    /// handle claims for one consumer: shared by two workers, it names the one named last.
    fn consumer(&self, name: &str) {
        let _ = name;
    }

    /// Gives back every task this handle fetched ahead of [`dequeue`](Driver::dequeue) but never
    /// delivered, ready at once and without spending an attempt, and stops fetching ahead until
    /// the next `dequeue` or [`wait_ready`](Driver::wait_ready). Leases already delivered are
    /// untouched. A worker calls it when it stops taking tasks, so prefetched tasks go to other
    /// workers at once. Backends that never fetch ahead do nothing (the default).
    async fn stop_prefetch(&self) -> Result<(), DriverError> {
        Ok(())
    }

    /// The task stored under `id`, in whichever queue holds it, live, dead or succeeded and
    /// kept ([`Capability::TaskLookup`]); `None` when no task has that id (never stored, acked
    /// without being kept or past its keeping, or purged). One indexed read where the backend
    /// has an index by id.
    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        let _ = id;
        Err(DriverError::Unsupported("looking a task up by id"))
    }

    /// Records how far the run holding `lease` has come ([`Capability::Progress`]), replacing
    /// what it recorded before; [`find`](Driver::find) reports it while the task is live. A
    /// lost lease records nothing ([`DriverError::LeaseLost`]): a stale run cannot overwrite
    /// the progress of the run that owns the task now. The engine throttles the calls.
    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<(), DriverError> {
        let _ = (lease, progress);
        Err(DriverError::Unsupported("recording a task's progress"))
    }

    /// Cancels the task stored under `id` ([`Capability::Cancel`]), in one atomic step:
    /// * waiting (ready or scheduled, including a task whose lease ran out): removed and kept
    ///   as [`TaskState::Cancelled`] for `keep`; [`CancelOutcome::Removed`]. It is never
    ///   delivered.
    /// * leased: flagged, and [`CancelOutcome::Requested`] (again for a second request). From
    ///   then on no claim delivers it: if its holder settles it cancelled, acks it, or dies, the
    ///   task ends there. A flagged task whose lease runs out, or that is nacked or released, is
    ///   settled as cancelled by the backend's own later calls, within a second while anything
    ///   calls the driver.
    /// * succeeded and kept, dead, or cancelled: [`CancelOutcome::AlreadyFinished`], unchanged.
    /// * not stored: [`CancelOutcome::NotFound`].
    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        let _ = (id, keep);
        Err(DriverError::Unsupported("cancelling a task"))
    }

    /// Settles the leased task as cancelled: deletes it and keeps it as
    /// [`TaskState::Cancelled`] for `keep`, in one atomic step. Not retried, not dead-lettered,
    /// not counted in the totals. A lost lease changes nothing
    /// ([`DriverError::LeaseLost`]).
    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        let _ = (lease, keep);
        Err(DriverError::Unsupported("cancelling a task"))
    }

    /// Notices of `kind` as they happen, pushed by the backend: to every handle on it where it
    /// declares [`Capability::ResultNotify`] or [`Capability::CancelNotify`], or only to this
    /// process's handles (an embedded database). `None`: the backend pushes nothing (the
    /// default). A hint, never the guarantee: a notice may be lost, and listeners keep polling
    /// (see [`crate::notice`]). Subscribe before reading, so nothing settled in between is
    /// missed.
    fn notices(&self, kind: NoticeKind) -> Option<tokio::sync::broadcast::Receiver<TaskId>> {
        let _ = kind;
        None
    }

    /// Up to `limit` tasks of `queue` in `state`, after skipping `offset` of them
    /// ([`Capability::Browse`]): ready, scheduled and leased ones by due time or lease expiry,
    /// dead ones by when they died, succeeded and cancelled ones (kept, not expired) by when
    /// they ended, earliest first. A page of an operator's listing, not a consistent snapshot:
    /// tasks move between states while it is read.
    async fn list(&self, queue: &str, state: TaskState, offset: usize, limit: usize) -> Result<Vec<TaskRecord>, DriverError> {
        let _ = (queue, state, offset, limit);
        Err(DriverError::Unsupported("listing tasks"))
    }

    /// Up to `limit` dead tasks of `queue`, oldest first, from the cursor `after` (the `next` of
    /// the page before; `None`: from the oldest), and the cursor of the next page
    /// ([`Capability::Browse`]). Each page is read from where the last one stopped, so the
    /// thousandth page costs what the first does: a listing past any count, as an operator's
    /// dead-letter page needs. A task dead-lettered since the listing began shows on a later
    /// page; one retried or deleted meanwhile is skipped, never another in its place. The
    /// cursor is the backend's own text (a sequence number, a score and a member); `next` is
    /// `None` once a page comes back short.
    ///
    /// The default pages by offset through [`list`](Driver::list), which reads past every
    /// earlier task: backends with an order of their own override it.
    async fn dead_after(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<DeadPage, DriverError> {
        let from = DeadPage::cursor::<usize>(after)?.unwrap_or(0);
        let tasks = self.list(queue, TaskState::Dead, from, limit).await?;
        let next = (tasks.len() == limit && limit > 0).then(|| (from + tasks.len()).to_string());
        Ok(DeadPage::new(tasks.into_iter().enumerate().map(|(i, t)| (t, (from + i + 1).to_string())).collect(), next))
    }

    /// Deletes the task stored under `id` unless it is leased ([`Capability::Browse`]): a
    /// waiting task never runs, a dead one cannot be retried, a kept one is no longer found.
    /// Counted in no totals.
    async fn delete(&self, id: TaskId) -> Result<DeleteOutcome, DriverError> {
        let _ = id;
        Err(DriverError::Unsupported("deleting a task"))
    }

    /// Claims the slot `slot` (Unix ms) of the schedule `name`, whose tasks go to `queue`
    /// ([`Capability::ScheduleClaims`]): advances the schedule's last slot to `slot` only if the
    /// stored one is older and the schedule is not paused, and in the same atomic step stores
    /// `task`, the slot's task (its id derived from the schedule and the slot, so a claim
    /// retried after a lost answer stores nothing twice); `None` advances without a task (a
    /// missed slot the schedule skips). Returns whether this call claimed the slot: `false`
    /// when it, or a newer one, was claimed already, or the schedule is paused. Every worker
    /// that knows a schedule claims its slots; exactly one claim of each slot succeeds.
    async fn claim_slot(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        let _ = (name, queue, slot, task);
        Err(DriverError::Unsupported("schedule claims (the backend cannot advance a schedule and store its task in one step)"))
    }

    /// Every schedule this backend keeps: its last slot and whether it is paused, by name.
    /// Empty on a backend without [`Capability::ScheduleClaims`].
    async fn schedules(&self) -> Result<Vec<ScheduleState>, DriverError> {
        Ok(Vec::new())
    }

    /// Pauses or resumes the schedule `name` (whose tasks go to `queue`): while paused, no claim
    /// of its slots succeeds, whichever process asks. Its missed slots follow its catch-up
    /// policy once it is resumed.
    async fn set_schedule_paused(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        let _ = (name, queue, paused);
        Err(DriverError::Unsupported("pausing a schedule (the backend keeps no schedules)"))
    }

    /// Pauses `queue` (`paused`) or resumes it ([`Capability::PauseQueues`]). The mark is
    /// stored in the backend, so it binds every handle and process: from the call's return no
    /// claim delivers a task of a paused queue, and [`wait_ready`](Driver::wait_ready) does not
    /// wake for one's tasks (a polling backend still returns at its poll). Leased tasks run
    /// on; tasks can still be enqueued to it. Pausing a paused queue, or resuming a running
    /// one, changes nothing.
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), DriverError> {
        let _ = (queue, paused);
        Err(DriverError::Unsupported("pausing a queue"))
    }

    /// The paused queues, by name ([`Capability::PauseQueues`]; none where it is lacking).
    async fn paused(&self) -> Result<Vec<String>, DriverError> {
        Ok(Vec::new())
    }

    /// Whether this backend can enforce `limits` on `queue`: an error naming what it cannot
    /// (never a limit silently ignored). By default what the capabilities declare
    /// ([`check_limits`](crate::limits::check_limits)); a backend that enforces some limits
    /// on some queues only (SQS FIFO queues run one task per key at a time, by message group)
    /// says so here. A worker asks before it starts.
    fn check_limits(&self, queue: &str, limits: &QueueLimits) -> Result<(), DriverError> {
        let _ = queue;
        crate::limits::check_limits(limits, |c| self.supports(c))
    }

    /// Stores `limits` for `queue` ([`Capability::QueueLimits`]), replacing what was set;
    /// [`QueueLimits::default`] (no limit) removes them. Stored in the backend, so they bind
    /// every handle and process: from the call's return every claim obeys them (see
    /// [`dequeue`](Driver::dequeue)). Leases already held run on, even past a lowered limit.
    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let _ = (queue, limits);
        Err(DriverError::Unsupported("limiting a queue"))
    }

    /// The queues with limits set, by name, and their limits ([`Capability::QueueLimits`];
    /// none where it is lacking).
    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        Ok(Vec::new())
    }

    /// Records `worker` in the registry, or rewrites its record
    /// ([`Capability::WorkerRegistry`]). Records past their `expires_at` are not listed.
    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        let _ = worker;
        Err(DriverError::Unsupported("the worker registry"))
    }

    /// Removes a worker's record (it stopped).
    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        let _ = id;
        Err(DriverError::Unsupported("the worker registry"))
    }

    /// The registered workers whose records have not expired, sorted by id.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        Err(DriverError::Unsupported("the worker registry"))
    }

    /// What the server reports about itself: version, clock, schema migrations. Read-only:
    /// it never changes the schema.
    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        Err(DriverError::Unsupported("server information"))
    }

    /// Whether the backend offers `capability`.
    fn supports(&self, capability: Capability) -> bool;

    /// A short name for logs and errors (`"sqlite"`, `"memory"`), never a URL.
    fn name(&self) -> &'static str;
}
