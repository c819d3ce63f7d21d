//! What a backend reports of the tasks it stores: a task looked up by id ([`TaskRecord`], in
//! its [`TaskState`]), a dead one ([`DeadTask`]), and what an enqueue, a cancel or a delete did
//! with one ([`EnqueueOutcome`], [`CancelOutcome`], [`DeleteOutcome`]). The seam that produces
//! them is [`Driver`](crate::Driver) (`driver.rs`).

use serde::{Deserialize, Serialize};

use crate::driver::stamped;
use crate::envelope::{Envelope, TaskId, UnixMillis};
use crate::error::CodecError;
use crate::history::AttemptError;
use crate::progress::Progress;

/// A dead-lettered task with the reason.
#[derive(Debug)]
pub struct DeadTask {
    /// The task's id.
    pub id: TaskId,
    /// The queue it died in.
    pub queue: String,
    /// Deliveries it had when it died.
    pub attempt: u32,
    /// The last error.
    pub error: String,
    /// When it was dead-lettered.
    pub dead_at: UnixMillis,
    /// Every failed attempt's error, in order ([`Capability::ErrorHistory`](crate::driver::Capability::ErrorHistory); empty without).
    pub errors: Vec<AttemptError>,
    /// The stored envelope, or why it could not be decoded.
    pub envelope: Result<Envelope, CodecError>,
}

impl DeadTask {
    /// A dead task with `attempt` deliveries, stamped into its envelope as [`Delivery::new`](crate::driver::Delivery::new) does.
    pub fn new(id: TaskId, queue: &str, attempt: u32, error: String, dead_at: UnixMillis, envelope: Result<Envelope, CodecError>) -> Self {
        Self { id, queue: queue.to_owned(), attempt, error, dead_at, envelope: stamped(envelope, attempt), errors: Vec::new() }
    }

    /// The same dead task with the error history stored with it (a JSON array, see
    /// [`crate::history`]).
    #[must_use]
    pub fn with_errors(self, stored: Option<&str>) -> Self {
        Self { errors: crate::history::parse(stored), ..self }
    }
}

/// Where a stored task is, as [`Driver::find`](crate::driver::Driver::find) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for its due time (a delayed dispatch, or a retry's backoff).
    Scheduled,
    /// Due and not leased: the next claim may take it (a task whose lease ran out is ready).
    Ready,
    /// Leased to a worker until `visible_at`.
    Leased,
    /// Dead-lettered.
    Dead,
    /// Acked, and kept until its result's time to live has passed ([`Ack::keep`](crate::driver::Ack::keep)).
    Succeeded,
    /// Cancelled ([`Driver::cancel`](crate::driver::Driver::cancel)): removed before it ran, or stopped by its worker; kept
    /// until the cancel's time to live has passed.
    Cancelled,
}

impl TaskState {
    /// The state of a live task whose `visible_at` is the due time while it waits and the
    /// lease expiry while it is `leased`, at `now`.
    pub fn of_live(leased: bool, visible_at: UnixMillis, now: UnixMillis) -> Self {
        // A parked task (see `crate::limits`) is due: it waits for a place, not for a time.
        match (leased, crate::limits::unparked(visible_at) > now) {
            (true, true) => TaskState::Leased,
            (false, true) => TaskState::Scheduled,
            (_, false) => TaskState::Ready,
        }
    }

    /// The state's name, as `task show` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Scheduled => "scheduled",
            TaskState::Ready => "ready",
            TaskState::Leased => "leased",
            TaskState::Dead => "dead",
            TaskState::Succeeded => "succeeded",
            TaskState::Cancelled => "cancelled",
        }
    }
}

/// A stored task looked up by id ([`Driver::find`](crate::driver::Driver::find)).
#[derive(Debug)]
pub struct TaskRecord {
    /// The task's id.
    pub id: TaskId,
    /// The queue that holds it.
    pub queue: String,
    /// Where it is.
    pub state: TaskState,
    /// Deliveries so far.
    pub attempt: u32,
    /// Scheduled or ready: its due time; leased: its lease's expiry; dead: when it died;
    /// succeeded: when it was acked.
    pub at: UnixMillis,
    /// The last failure's error, if it failed before (the reason, once dead).
    pub last_error: Option<String>,
    /// The stored envelope (task name, arguments, max attempts, creation time, headers) with
    /// `attempt` stamped in, or why it could not be decoded.
    pub envelope: Result<Envelope, CodecError>,
    /// Succeeded: what the run returned, as the engine encoded it ([`Ack::result`](crate::driver::Ack::result)).
    pub result: Option<Vec<u8>>,
    /// Live: a cancel was requested ([`Driver::cancel`](crate::driver::Driver::cancel)) and the worker holding the task has
    /// not settled it yet.
    pub cancel_requested: bool,
    /// Live: the progress its latest run reported ([`Driver::progress`](crate::driver::Driver::progress)).
    pub progress: Option<Progress>,
    /// Live or dead: every failed attempt's error, in order ([`Capability::ErrorHistory`](crate::driver::Capability::ErrorHistory)).
    pub errors: Vec<AttemptError>,
    /// Leased: the consumer holding its lease (a worker's id, [`Driver::consumer`](crate::driver::Driver::consumer)),
    /// when the backend records it.
    pub holder: Option<String>,
    /// When its latest delivery was claimed (its run started): while leased, and once it
    /// succeeded or died, where the backend keeps it; `None` before its first delivery.
    pub started_at: Option<UnixMillis>,
}

impl TaskRecord {
    /// A record with `attempt` deliveries, stamped into its envelope as [`Delivery::new`](crate::driver::Delivery::new) does.
    pub fn new(
        id: TaskId,
        queue: &str,
        state: TaskState,
        attempt: u32,
        at: UnixMillis,
        last_error: Option<String>,
        envelope: Result<Envelope, CodecError>,
    ) -> Self {
        Self {
            id,
            queue: queue.to_owned(),
            state,
            attempt,
            at,
            last_error,
            envelope: stamped(envelope, attempt),
            result: None,
            cancel_requested: false,
            progress: None,
            errors: Vec::new(),
            holder: None,
            started_at: None,
        }
    }

    /// The same record with when its latest delivery was claimed (a waiting task that was
    /// never delivered, or one returned to wait, has none to report).
    #[must_use]
    pub fn with_started(self, started_at: Option<UnixMillis>) -> Self {
        let shown = !matches!(self.state, TaskState::Scheduled | TaskState::Ready);
        Self { started_at: started_at.filter(|_| shown), ..self }
    }

    /// The same record with the consumer holding its lease, kept only while it is leased.
    #[must_use]
    pub fn with_holder(self, holder: Option<String>) -> Self {
        let holder = holder.filter(|h| self.state == TaskState::Leased && !h.is_empty());
        Self { holder, ..self }
    }

    /// The same record with the error history stored with it (a JSON array, see
    /// [`crate::history`]).
    #[must_use]
    pub fn with_errors(self, stored: Option<&str>) -> Self {
        Self { errors: crate::history::parse(stored), ..self }
    }

    /// The same record with the progress stored with it, decoded (a value that does not decode
    /// is left out: progress is a report, not data).
    #[must_use]
    pub fn with_progress(self, stored: Option<&[u8]>) -> Self {
        Self { progress: stored.and_then(|b| Progress::decode(b).ok()), ..self }
    }

    /// The same record, marked as asked to stop when `requested` (a live task whose cancel its
    /// worker has not settled yet).
    #[must_use]
    pub fn cancel_requested(self, requested: bool) -> Self {
        Self { cancel_requested: requested, ..self }
    }

    /// A succeeded task's record: acked at `finished_at` after `attempt` deliveries, with what
    /// its run returned.
    pub fn succeeded(
        id: TaskId,
        queue: &str,
        attempt: u32,
        finished_at: UnixMillis,
        result: Option<Vec<u8>>,
        envelope: Result<Envelope, CodecError>,
    ) -> Self {
        Self { result, ..Self::new(id, queue, TaskState::Succeeded, attempt, finished_at, None, envelope) }
    }
}

/// What [`Driver::cancel`](crate::driver::Driver::cancel) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The task was waiting (ready or scheduled): it is gone, kept as [`TaskState::Cancelled`],
    /// and will never be delivered.
    Removed,
    /// The task is leased: it is flagged, no claim delivers it again, and its worker learns of
    /// it at its next lease extension, stops it and settles it as cancelled.
    Requested,
    /// The task is already settled (succeeded, dead or cancelled) and is left as it was.
    AlreadyFinished,
    /// No task is stored under the id.
    NotFound,
}

impl CancelOutcome {
    /// The outcome's name, as `task cancel` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelOutcome::Removed => "removed",
            CancelOutcome::Requested => "requested",
            CancelOutcome::AlreadyFinished => "already finished",
            CancelOutcome::NotFound => "not found",
        }
    }
}

/// A page of dead tasks read from a cursor ([`Driver::dead_after`](crate::driver::Driver::dead_after)).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct DeadPage {
    /// The dead tasks, oldest first.
    pub tasks: Vec<TaskRecord>,
    /// The cursor just past each task, in order (as many as `tasks`): a reader that stops
    /// mid-page (a filter that has found enough) goes on from the one past its last task.
    pub cursors: Vec<String>,
    /// Where the next page starts (give it back as `after`); `None` once the listing has
    /// reached its end.
    pub next: Option<String>,
}

impl DeadPage {
    /// The cursor `after` as the backend's own type (a sequence number, an offset), or the
    /// error naming it when it is not one; `None` stays `None` (from the oldest).
    pub fn cursor<T: std::str::FromStr>(after: Option<&str>) -> Result<Option<T>, crate::DriverError> {
        after
            .map(|a| {
                a.parse().map_err(|_| crate::DriverError::Config(format!("not a dead-letter cursor: `{}`", crate::envelope::excerpt(a))))
            })
            .transpose()
    }

    /// A page of `tasks`, each with the cursor just past it, the next starting at `next`.
    pub fn new(tasks: Vec<(TaskRecord, String)>, next: Option<String>) -> Self {
        let (tasks, cursors) = tasks.into_iter().unzip();
        Self { tasks, cursors, next }
    }
}

/// What [`Driver::delete`](crate::driver::Driver::delete) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteOutcome {
    /// The task (waiting, dead, or kept once settled) is gone.
    Deleted,
    /// The task is leased: a worker runs it, and a delete would let it run on unseen. Nothing
    /// changed; cancel it instead ([`Driver::cancel`](crate::driver::Driver::cancel)).
    Leased,
    /// No task is stored under the id.
    NotFound,
}

/// What [`Driver::enqueue`](crate::driver::Driver::enqueue) did with one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// Stored: the task is new.
    New,
    /// Not stored: a task with this id already exists (waiting, leased, dead, or succeeded and
    /// kept) and is left as it was.
    Exists,
    /// Not stored: its unique key is held by the task `existing` (see [`crate::unique`]), left as
    /// it was, or given this dispatch's arguments by a
    /// [`Replace`](crate::unique::UniqueMode::Replace) or
    /// [`Debounce`](crate::unique::UniqueMode::Debounce).
    Duplicate {
        /// The task holding the key.
        existing: TaskId,
    },
}

impl EnqueueOutcome {
    /// `New` for every one of `n` envelopes: what a backend that stored them all reports.
    pub fn all_new(n: usize) -> Vec<EnqueueOutcome> {
        vec![EnqueueOutcome::New; n]
    }

    /// The outcome of each of `ids` when the backend stored exactly the ids in `stored`: the
    /// first occurrence of a stored id is new, everything else exists (a repeat in the batch,
    /// or an id the backend already held).
    pub fn from_stored(ids: impl IntoIterator<Item = TaskId>, stored: &std::collections::HashSet<TaskId>) -> Vec<EnqueueOutcome> {
        let mut seen = std::collections::HashSet::new();
        ids.into_iter()
            .map(|id| if stored.contains(&id) && seen.insert(id) { EnqueueOutcome::New } else { EnqueueOutcome::Exists })
            .collect()
    }
}

/// What a backend keeps of a schedule ([`Driver::claim_slot`](crate::driver::Driver::claim_slot)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The schedule's name.
    pub name: String,
    /// The latest slot claimed (Unix ms), if any.
    pub last_slot: Option<UnixMillis>,
    /// Whether claims of it are refused until it is resumed.
    pub paused: bool,
}
