//! The task model: what a task is, how it runs, and how it reports failure.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::blocking::BlockingPool;
use crate::envelope::TaskId;
use crate::error::DriverError;
use crate::progress::{Progress, ProgressSlot};
use crate::result::ResultSlot;
use crate::retry::RetryPolicy;

/// A unit of work with a stable wire name and typed, serializable arguments.
///
/// `#[task]` implements this for you from an `async fn`; implement it by hand when you want
/// the arguments type to be your own struct. The value *is* the arguments: it is encoded with
/// MessagePack (fields by name, so adding an optional field stays compatible) at dispatch and
/// decoded by the worker before [`Task::run`].
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The wire name: stable across deploys, unique in a binary.
    const NAME: &'static str;

    /// Defaults for this task (queue, attempts, timeout, lease, retry policy); each can be
    /// overridden per dispatch.
    fn options() -> TaskOptions {
        TaskOptions::default()
    }

    /// The bytes this task's unique key is derived from when its options make it unique
    /// ([`TaskOptions::unique`]): `#[task(unique(by = [a, b]))]` writes the named fields as a
    /// MessagePack tuple. `None` (the default): all the arguments.
    fn unique_fields(&self) -> Result<Option<Vec<u8>>, crate::error::CodecError> {
        Ok(None)
    }

    /// The task's key, which a queue's per-key limit counts by ([`crate::QueueLimits::per_key`]):
    /// `#[task(key = field)]` gives the field as text. `None` (the default): no key.
    fn key(&self) -> Option<String> {
        None
    }

    /// Runs the task once.
    fn run(self, ctx: TaskContext) -> impl Future<Output = TaskResult> + Send;
}

/// Per-task defaults. `None` means "the worker's or client's default".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOptions {
    /// Queue to dispatch to (default `"default"`).
    pub queue: Option<String>,
    /// Deliveries allowed before dead-lettering (default 3).
    pub max_attempts: Option<u32>,
    /// Longest one run may take (default: none).
    pub timeout: Option<Duration>,
    /// Lease (visibility timeout) of each delivery (default 30 s). The worker renews it every
    /// third of its length while the task runs, so it bounds crash recovery, not run time.
    pub lease: Option<Duration>,
    /// Retry policy (default: the worker's).
    pub retry: Option<RetryPolicy>,
    /// How long the task stays findable with its result once it succeeded (default: the
    /// worker's, 24 h); `ZERO` keeps nothing.
    pub result_ttl: Option<Duration>,
    /// How long the task stays findable once it was dead-lettered or cancelled, with its error
    /// history (default: the worker's, 7 days).
    pub failure_ttl: Option<Duration>,
    /// Makes the task unique: a dispatch whose key (derived from the task's name and
    /// [`Task::unique_fields`], or given by [`Dispatch::unique_key`](crate::Dispatch::unique_key))
    /// is held stores nothing (see [`crate::unique`]).
    pub unique: Option<crate::unique::Uniqueness>,
}

/// What a running task knows about itself.
#[derive(Clone, Debug)]
pub struct TaskContext {
    pub(crate) id: TaskId,
    pub(crate) name: String,
    pub(crate) queue: String,
    /// This delivery's number, from 1.
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    /// When this delivery was claimed (Unix ms).
    pub(crate) claimed_at: crate::envelope::UnixMillis,
    /// Cancelled when the run must stop: its lease was lost, or its timeout ran out.
    pub(crate) cancel: CancellationToken,
    /// Where a blocking task's body runs.
    pub(crate) blocking: BlockingPool,
    /// Where the run puts what it returned.
    pub(crate) result: ResultSlot,
    /// Where the run puts how far it has come.
    pub(crate) progress: ProgressSlot,
}

impl TaskContext {
    /// A context for calling a task function directly, e.g. in a unit test.
    pub fn detached(name: &str, queue: &str, attempt: u32) -> Self {
        Self {
            id: TaskId::new(),
            name: name.to_owned(),
            queue: queue.to_owned(),
            attempt,
            max_attempts: attempt.max(1),
            claimed_at: crate::clock::Clock::now(&crate::clock::SystemClock),
            cancel: CancellationToken::new(),
            blocking: BlockingPool::per_core(),
            result: ResultSlot::default(),
            // Accepted and kept nowhere: a detached run has no worker to write it.
            progress: ProgressSlot::new(true),
        }
    }

    /// Reports how far this run has come: `fraction` from 0 to 1 (clamped) and what it is
    /// doing. Cheap to call in a loop: the worker writes the latest report at most every
    /// [`PROGRESS_EVERY`](crate::progress::PROGRESS_EVERY), under the run's lease, and `task
    /// show` and [`Driver::find`](crate::Driver::find) read it back. Refused on a backend that
    /// keeps no record of a running task ([`Capability::Progress`](crate::Capability::Progress)).
    pub fn progress(&self, fraction: f32, message: impl Into<String>) -> Result<(), DriverError> {
        if !self.progress.kept() {
            return Err(DriverError::Unsupported("recording a task's progress (this backend keeps no record of a running task)"));
        }
        let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        let at = crate::clock::Clock::now(&crate::clock::SystemClock);
        self.progress.put(Progress { fraction, message: message.into(), at });
        Ok(())
    }

    /// Where this run's result goes: `#[task]` puts a function's `Ok` value there; a task
    /// implemented by hand calls [`ResultSlot::put`] (or [`TaskContext::set_result`]).
    pub fn result_slot(&self) -> &ResultSlot {
        &self.result
    }

    /// Keeps `value` as this run's result, stored with the ack when the run succeeds (see
    /// [`crate::result`]).
    pub fn set_result<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), TaskError> {
        self.result.put(value).map_err(|e| TaskError::fatal(format!("the task's result cannot be encoded: {e}")))
    }

    /// The pool a blocking task's body runs on (what `#[task]` on a plain `fn` uses).
    pub fn blocking_pool(&self) -> &BlockingPool {
        &self.blocking
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task's wire name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue the task was taken from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// This delivery's number: 1 on the first run, counting deliveries lost to crashes.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Deliveries allowed before the task is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// When this delivery was claimed, in Unix milliseconds, by the claiming clock: its lease's
    /// first expiry less the lease. The time a queue's rate counts the start at
    /// ([`QueueLimits::rate`](crate::QueueLimits::rate)); the run itself begins a little later.
    /// On a broker (RabbitMQ, SQS), when this worker received the message.
    pub fn claimed_at(&self) -> crate::envelope::UnixMillis {
        self.claimed_at
    }

    /// Whether the worker wants this run to stop: the task was cancelled
    /// ([`Client::cancel`](crate::Client::cancel); the run has the worker's cancel grace to
    /// return before it is aborted), the worker is shutting down past its grace period, or the
    /// task's lease was lost (another worker may already be running it).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the run should stop (see [`TaskContext::is_cancelled`]); `select!` on it
    /// in long loops.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// What a task returns.
pub type TaskResult = Result<(), TaskError>;

/// What to do after a failed run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disposition {
    /// Retry according to the task's retry policy, until attempts run out.
    Retry,
    /// Retry after exactly this delay (still bounded by max attempts).
    RetryAfter(Duration),
    /// Do not retry: dead-letter the task now.
    Fatal,
}

/// A task's failure: a message and what to do next.
///
/// `?` converts any `std::error::Error` into a retryable `TaskError`, so task bodies read like
/// ordinary fallible code; use [`TaskError::fatal`] or [`TaskError::retry_after`] to decide
/// otherwise. Like `anyhow::Error`, this type deliberately does not implement
/// `std::error::Error` itself, which is what makes the blanket `From` possible.
pub struct TaskError {
    message: String,
    disposition: Disposition,
}

impl TaskError {
    /// A failure retried per policy.
    pub fn retry(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), disposition: Disposition::Retry }
    }

    /// A failure retried after `delay` (bounded by max attempts).
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> Self {
        Self { message: message.to_string(), disposition: Disposition::RetryAfter(delay) }
    }

    /// A failure that must not be retried: the task is dead-lettered at once.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), disposition: Disposition::Fatal }
    }

    /// The failure's message (kept in the dead-letter store).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the worker does next.
    pub fn disposition(&self) -> Disposition {
        self.disposition
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError").field("message", &self.message).field("disposition", &self.disposition).finish()
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        // Keep the whole source chain: the dead-letter store is where operators read it.
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::retry(message)
    }
}

/// What a `#[task]` function may return: `()`, or a `Result` whose value is serializable (it
/// becomes the task's stored result) and whose error converts into [`TaskError`].
pub trait IntoTaskResult {
    /// Converts into the engine's result, putting a returned value into `slot`.
    fn into_task_result(self, slot: &ResultSlot) -> TaskResult;
}

impl IntoTaskResult for () {
    fn into_task_result(self, _: &ResultSlot) -> TaskResult {
        Ok(())
    }
}

impl<T: Serialize, E: Into<TaskError>> IntoTaskResult for Result<T, E> {
    fn into_task_result(self, slot: &ResultSlot) -> TaskResult {
        let value = self.map_err(Into::into)?;
        slot.put(&value).map_err(|e| TaskError::fatal(format!("the task's result cannot be encoded: {e}")))
    }
}
