//! Test helpers for your tasks: what was enqueued, running a task once through the real
//! executor, and draining a queue with retries and delays played out on a clock that jumps.
//!
//! [`Jobs`] wraps a driver (the in-memory one by default, or any backend) in a recorder: give
//! your code [`Jobs::client`] (or [`Jobs::driver`]) and assert on what it enqueued.
//!
//! ```
//! use asynctasq_core::testing::Jobs;
//! use asynctasq_core::{assert_enqueued, refute_enqueued, task, Client, TaskError};
//!
//! #[task(queue = "emails", max_attempts = 5, backoff = "1h")]
//! async fn send_welcome(user_id: u64) -> Result<(), TaskError> {
//!     if user_id == 0 { return Err(TaskError::retry("no such user")) }
//!     Ok(())
//! }
//!
//! async fn sign_up(client: &Client, user_id: u64) -> Result<(), asynctasq_core::DriverError> {
//!     client.dispatch(SendWelcome { user_id }).await.map(|_| ())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let jobs = Jobs::new();
//! sign_up(&jobs.client(), 42).await.unwrap();
//! assert_enqueued!(jobs, SendWelcome { user_id: 42 }, queue = "emails");
//! refute_enqueued!(jobs, SendWelcome { user_id: 7 });
//!
//! // Runs it through the real executor: decode, timeout, panic capture, retry decision.
//! assert!(jobs.perform(SendWelcome { user_id: 42 }).await.is_success());
//!
//! // Five failures an hour and more apart, played out in no wall time.
//! sign_up(&jobs.client(), 0).await.unwrap();
//! let report = jobs.drain("emails").with_scheduled().await.unwrap();
//! assert_eq!((report.succeeded, report.retried, report.dead), (1, 4, 1));
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::enqueued::{Enqueued, Filter};
use super::recorder::Recorder;
use crate::client::{Client, Overrides};
use crate::clock::{Clock, ManualClock, SystemClock};
use crate::driver::{Driver, Lease};
use crate::envelope::TaskId;
use crate::error::{DriverError, WorkerError};
use crate::event::Event;
use crate::memory::MemoryDriver;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::task::Task;
use crate::worker::once::Runner;

/// Test helpers over one driver. Cheap to clone; clones share what was recorded.
#[derive(Clone)]
pub struct Jobs {
    recorder: Arc<Recorder>,
    clock: Arc<dyn Clock>,
    manual: Option<Arc<ManualClock>>,
    registry: Option<Registry>,
    retry: RetryPolicy,
    tolerance: Duration,
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs").field("driver", &self.recorder.name()).finish_non_exhaustive()
    }
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new()
    }
}

impl Jobs {
    /// Helpers on a fresh in-memory driver whose clock moves only when a drain
    /// [`with_scheduled`](Drain::with_scheduled) (or [`Jobs::advance`]) moves it.
    pub fn new() -> Self {
        let clock = Arc::new(ManualClock::new());
        Self::on_with_clock(Arc::new(MemoryDriver::with_clock(clock.clone())), clock)
    }

    /// Helpers on `driver` (any backend: SQLite, Redis, PostgreSQL… in integration tests),
    /// reading the system clock. Drains there cannot jump to due times.
    pub fn on(driver: Arc<dyn Driver>) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Self::build(driver, clock, None)
    }

    /// Helpers on `driver`, which reads `clock` (an in-memory driver made with it), so drains
    /// can jump to due times.
    pub fn on_with_clock(driver: Arc<dyn Driver>, clock: Arc<ManualClock>) -> Self {
        Self::build(driver, clock.clone(), Some(clock))
    }

    fn build(driver: Arc<dyn Driver>, clock: Arc<dyn Clock>, manual: Option<Arc<ManualClock>>) -> Self {
        Self {
            recorder: Arc::new(Recorder::new(driver, clock.clone())),
            clock,
            manual,
            registry: None,
            retry: RetryPolicy::default(),
            tolerance: Duration::from_secs(1),
        }
    }

    /// The tasks [`perform`](Jobs::perform) and [`drain`](Jobs::drain) can run (default: every
    /// `#[task]` linked into the test binary).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The retry policy for tasks that set none, as the worker's (default: the built-in).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How far an enqueued task's delay may be from the one an assertion names (default 1 s).
    pub fn delay_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The recording driver: hand it to the code under test.
    pub fn driver(&self) -> Arc<dyn Driver> {
        self.recorder.clone()
    }

    /// A client on the recording driver and this clock: hand it to the code under test.
    pub fn client(&self) -> Client {
        Client::new(self.driver()).with_clock(self.clock.clone())
    }

    /// The clock the helpers, the client and (from [`Jobs::new`]) the driver read.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Moves the manual clock forward. Panics when the helpers read the system clock.
    pub fn advance(&self, by: Duration) {
        self.manual.as_ref().expect("Jobs::advance needs a manual clock (Jobs::new or Jobs::on_with_clock)").advance(by);
    }

    /// Every task enqueued through these helpers and not delivered since.
    pub fn all_enqueued(&self) -> Enqueued {
        Enqueued::of(self.recorder.waiting_since(0), self.tolerance)
    }

    /// The tasks of type `T` enqueued to `queue` and not delivered since, decoded.
    pub fn enqueued<T: Task>(&self, queue: &str) -> Vec<T> {
        self.all_enqueued().decoded::<T>(&Filter::default().queue(queue)).into_iter().map(|(t, _)| t).collect()
    }

    /// Runs `body` and returns its output with only the tasks enqueued while it ran, so setup
    /// done before does not count in the assertions made on them.
    pub async fn during<F: Future>(&self, body: F) -> (F::Output, Enqueued) {
        let mark = self.recorder.mark();
        let out = body.await;
        (out, Enqueued::of(self.recorder.waiting_since(mark), self.tolerance))
    }

    /// Runs `task` once, attempt 1, through the real executor (encode, decode, timeout, panic
    /// capture, retry decision, events) on a private in-memory queue, and says how it ended.
    /// Tasks it enqueues through [`Jobs::client`] are recorded as usual.
    pub async fn perform<T: Task>(&self, task: T) -> Performed {
        self.perform_with(task, Overrides::default()).await
    }

    /// Like [`Jobs::perform`], with dispatch overrides (a timeout, max attempts, a retry policy).
    pub async fn perform_with<T: Task>(&self, task: T, overrides: Overrides) -> Performed {
        let private: Arc<dyn Driver> = Arc::new(MemoryDriver::with_clock(self.clock.clone()));
        let client = Client::new(private.clone()).with_clock(self.clock.clone());
        let mut envelope = match client.envelope(&task, &overrides) {
            Ok(e) => e,
            Err(e) => return Performed::Refused(e.to_string()),
        };
        envelope.not_before = envelope.created_at;
        let queue = envelope.queue.clone();
        if let Err(e) = client.enqueue(vec![envelope]).await {
            return Performed::Refused(e.to_string());
        }
        let mut registry = Registry::new();
        if let Err(e) = registry.register::<T>() {
            return Performed::Refused(e.to_string());
        }
        let mut runner = Runner::new(private.clone(), registry, self.retry.clone(), self.clock.clone());
        let delivery = match private.dequeue(&queue, 1).await {
            Ok(mut got) if got.len() == 1 => got.remove(0),
            Ok(_) => return Performed::Refused("the task was not delivered".into()),
            Err(e) => return Performed::Refused(e.to_string()),
        };
        let events = runner.run(delivery).await;
        events.iter().find_map(Performed::from_event).unwrap_or_else(|| Performed::Refused("the run ended without a settlement".into()))
    }

    /// Drains `queue`: runs each ready task once, in order, through the real executor, until
    /// none is ready. See [`Drain`] for running tasks enqueued by tasks, retries and delayed
    /// tasks, and for failing at the first error.
    pub fn drain(&self, queue: &str) -> Drain<'_> {
        Drain { jobs: self, queue: queue.to_owned(), recursive: false, with_scheduled: false, surface_errors: false }
    }

    fn registry_for_runs(&self) -> Result<Registry, WorkerError> {
        match &self.registry {
            Some(r) => Ok(r.clone()),
            None => Registry::linked(),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Performed {
    /// It succeeded and was acked.
    Succeeded,
    /// It failed; a retry was scheduled after `delay`.
    Retried {
        /// When the next attempt is due, from the failure.
        delay: Duration,
        /// The failure (a panic reads `panicked: …`, a timeout `timed out after …`).
        error: String,
    },
    /// It was dead-lettered (a fatal error, attempts used up, undecodable arguments).
    Dead {
        /// The reason kept in the dead-letter store.
        error: String,
    },
    /// It could not be run: the dispatch was refused, or the task is not registered.
    Refused(String),
}

impl Performed {
    fn from_event(event: &Event) -> Option<Self> {
        match event {
            Event::TaskSucceeded { .. } => Some(Self::Succeeded),
            Event::TaskRetryScheduled { delay, error, .. } => Some(Self::Retried { delay: *delay, error: error.clone() }),
            Event::TaskDeadLettered { error, .. } => Some(Self::Dead { error: error.clone() }),
            Event::LeaseLost(_) => Some(Self::Refused("the lease was lost while it ran".into())),
            _ => None,
        }
    }

    /// Whether the run succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded)
    }

    /// Panics, with the error, unless the run succeeded.
    #[track_caller]
    pub fn expect_success(&self) {
        assert!(self.is_success(), "the task did not succeed: {self:?}");
    }
}

/// A drain being configured; `.await` it for the [`DrainReport`].
#[must_use = "a drain does nothing until awaited"]
pub struct Drain<'a> {
    jobs: &'a Jobs,
    queue: String,
    recursive: bool,
    with_scheduled: bool,
    surface_errors: bool,
}

impl Drain<'_> {
    /// Also runs tasks that the drained tasks enqueue (by default they stay enqueued, for
    /// assertions).
    pub fn recursive(mut self) -> Self {
        self.recursive = true;
        self
    }

    /// Also runs tasks not due yet (delayed tasks and retries): when nothing is ready, the
    /// manual clock jumps to the next due time. Needs [`Jobs::new`] or [`Jobs::on_with_clock`].
    pub fn with_scheduled(mut self) -> Self {
        self.with_scheduled = true;
        self
    }

    /// Stops at the first failed run and returns it as the error (by default failures are
    /// counted in the report and the drain goes on).
    pub fn surface_errors(mut self) -> Self {
        self.surface_errors = true;
        self
    }

    async fn run(self) -> Result<DrainReport, DrainError> {
        let jobs = self.jobs;
        let manual = match (&jobs.manual, self.with_scheduled) {
            (None, true) => return Err(DrainError::NoManualClock),
            (manual, _) => manual.clone(),
        };
        let driver = jobs.driver();
        let start = jobs.recorder.mark();
        let mut runner =
            Runner::new(driver.clone(), jobs.registry_for_runs().map_err(DrainError::Registry)?, jobs.retry.clone(), jobs.clock());
        let mut report = DrainReport::default();
        // Tasks enqueued by the drained ones, left alone unless recursive.
        let mut later: HashSet<TaskId> = HashSet::new();
        loop {
            let mut held: Vec<Lease> = Vec::new();
            loop {
                let got = driver.dequeue(&self.queue, 64).await.map_err(DrainError::Driver)?;
                if got.is_empty() {
                    break;
                }
                for delivery in got {
                    let id = delivery.lease.id;
                    if !self.recursive && jobs.recorder.seq_of(id).is_some_and(|seq| seq >= start) {
                        later.insert(id);
                        held.push(delivery.lease);
                        continue;
                    }
                    let (name, attempt) = match &delivery.envelope {
                        Ok(e) => (e.name.clone(), delivery.attempt),
                        Err(_) => (String::new(), delivery.attempt),
                    };
                    for event in runner.run(delivery).await {
                        let failure = |error: &str| TaskFailure { id, name: name.clone(), attempt, error: error.to_owned() };
                        match Performed::from_event(&event) {
                            Some(Performed::Succeeded) => report.succeeded += 1,
                            Some(Performed::Retried { error, .. }) => {
                                report.retried += 1;
                                report.errors.push(failure(&error));
                            }
                            Some(Performed::Dead { error }) => {
                                report.dead += 1;
                                report.errors.push(failure(&error));
                            }
                            Some(Performed::Refused(error)) => report.errors.push(failure(&error)),
                            None => continue,
                        }
                        if self.surface_errors
                            && let Some(first) = report.errors.first()
                        {
                            let first = first.clone();
                            give_back(&*driver, &held).await;
                            return Err(DrainError::Task(first));
                        }
                    }
                }
            }
            give_back(&*driver, &held).await;
            let Some(clock) = manual.as_ref().filter(|_| self.with_scheduled) else { break };
            match jobs.recorder.next_due(&self.queue, &later) {
                Some(at) if at > clock.now() => clock.set(at),
                _ => break,
            }
        }
        Ok(report)
    }
}

/// Gives held deliveries back unspent.
async fn give_back(driver: &dyn Driver, held: &[Lease]) {
    for lease in held {
        let _ = driver.release(lease).await;
    }
}

impl<'a> IntoFuture for Drain<'a> {
    type Output = Result<DrainReport, DrainError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// What a drain ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrainReport {
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed with a retry scheduled.
    pub retried: u64,
    /// Tasks dead-lettered.
    pub dead: u64,
    /// Every failed run, in order.
    pub errors: Vec<TaskFailure>,
}

/// One failed run.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskFailure {
    /// The task.
    pub id: TaskId,
    /// Its wire name.
    pub name: String,
    /// The attempt that failed.
    pub attempt: u32,
    /// The failure.
    pub error: String,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` ({}) failed on attempt {}: {}", self.name, self.id, self.attempt, self.error)
    }
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrainError {
    /// A run failed and the drain was asked to [`surface_errors`](Drain::surface_errors).
    #[error("{0}")]
    Task(TaskFailure),
    /// The driver failed.
    #[error("driver error while draining: {0}")]
    Driver(DriverError),
    /// The registry of linked tasks is invalid (two tasks with one name).
    #[error("{0}")]
    Registry(WorkerError),
    /// `with_scheduled` on helpers that read the system clock.
    #[error("with_scheduled needs a clock the drain can move: use Jobs::new() (in-memory) or Jobs::on_with_clock")]
    NoManualClock,
}
