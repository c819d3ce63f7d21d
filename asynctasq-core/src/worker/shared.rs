//! What every executor of one worker shares: the driver, handlers, policy, counters, the
//! acker's queue, and the settle steps they have in common.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::deadline::bounded;
use crate::blocking::BlockingPool;
use crate::clock::Clock;
use crate::driver::Driver;
use crate::driver::{Ack, Lease};
use crate::envelope::{Defaulted, Envelope};
use crate::error::DriverError;
use crate::event::Events;
use crate::event::{Event, TaskInfo};
use crate::metrics::{EngineMetrics, Finished, TaskMetrics, UNKNOWN};
use crate::registry::Registry;
use crate::retry::RetryPolicy;
use crate::workers::WorkerCounts;

/// What a worker has done so far, as [`WorkerCounts`] reports it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Deliveries handed to an executor.
    pub(crate) started: AtomicU64,
    /// Tasks that succeeded (acked, or waiting for their ack).
    pub(crate) succeeded: AtomicU64,
    /// Failures with a retry scheduled.
    pub(crate) retried: AtomicU64,
    /// Tasks dead-lettered.
    pub(crate) dead: AtomicU64,
    /// Tasks given back unfinished at shutdown.
    pub(crate) released: AtomicU64,
    /// Runs whose lease was lost before they settled.
    pub(crate) lease_lost: AtomicU64,
    /// Runs stopped by a cancel and settled as cancelled.
    pub(crate) cancelled: AtomicU64,
    /// Tasks running now.
    pub(crate) in_flight: AtomicUsize,
    /// Successes whose ack has not reached the backend yet.
    pub(crate) pending_acks: AtomicUsize,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WorkerCounts {
        WorkerCounts {
            started: self.started.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            lease_lost: self.lease_lost.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }
}

/// Ack permits per concurrency slot. One per slot caps the drain at one concurrency's worth of
/// tasks per ack round trip, which PostgreSQL reaches at concurrency 50 (0.94 of the unbounded
/// throughput, 1.12 of its CPU per task, 15 alternated pairs); two per slot measured 0.99 and
/// 1.02 (BENCHMARKS.md, "Unsettled acks are bounded").
pub(crate) const ACK_CREDITS_PER_SLOT: usize = 2;

/// State every executor of one worker shares.
pub(crate) struct Shared {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) registry: Registry,
    pub(crate) retry: RetryPolicy,
    pub(crate) default_timeout: Option<Duration>,
    /// Max attempts for tasks whose dispatch and `#[task]` set none.
    pub(crate) default_max_attempts: Option<u32>,
    /// Lease for tasks whose dispatch and `#[task]` set none.
    pub(crate) default_lease: Option<Duration>,
    /// What is kept of a success, for how long.
    pub(crate) keeping: crate::result::Keeping,
    /// Where blocking task bodies run.
    pub(crate) blocking: BlockingPool,
    pub(crate) events: Events,
    pub(crate) counters: Arc<Counters>,
    pub(crate) acks: mpsc::Sender<PendingAck>,
    /// Successes that may wait for their ack at once ([`ACK_CREDITS_PER_SLOT`] × concurrency):
    /// a success takes a permit before it joins the acker's queue and gives it back once its
    /// batch is settled. While the acker is stuck (a backend that stopped answering), executors
    /// wait here holding their slots, so the fetch loop claims nothing more, and what a worker
    /// holds unsettled stays within 3 × its concurrency whatever the backend does.
    pub(crate) ack_credits: Arc<Semaphore>,
    /// How long a cancelled run may take to stop on its own before it is aborted.
    pub(crate) cancel_grace: Duration,
    /// The backend's cancel notices, handed to running tasks (`None`: it pushes none).
    pub(crate) cancel_watch: Option<Arc<super::lease::CancelWatch>>,
    /// The engine's deadline on each driver call it awaits (see [`deadline`]).
    pub(crate) deadline: Duration,
    /// The wall clock (the same one the client and the in-memory driver may be given).
    pub(crate) clock: Arc<dyn Clock>,
    /// Cancelled when running tasks must be given up (grace period over, or immediate stop).
    pub(crate) abandon: CancellationToken,
    /// The metrics handles of each queue and task.
    pub(crate) metrics: EngineMetrics,
    /// What runs now (for the registry record and stuck runs).
    pub(crate) running: Arc<super::running::Running>,
}

/// Retries a driver call on transient errors (a dropped connection) a few times with backoff;
/// returns the last error otherwise.
macro_rules! with_retries {
    ($call:expr) => {{
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            match $call.await {
                Err(e) if e.is_transient() && tries < 6 => {
                    tries += 1;
                    tracing::warn!(error = %e, "driver call failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use with_retries;

impl Shared {
    /// The max attempts and lease length `envelope` runs with (see [`effective`]).
    pub(crate) fn effective(&self, envelope: &Envelope) -> (u32, Duration) {
        effective(envelope, self.default_max_attempts, self.default_lease)
    }

    /// The metrics handles of `task` (`(unknown)` for a name without a handler here).
    pub(crate) fn metrics_of(&self, task: &TaskInfo) -> Arc<TaskMetrics> {
        let name = if self.registry.get(&task.name).is_some() { &task.name } else { &*UNKNOWN };
        self.metrics.task(&task.queue, name)
    }

    /// How long `task` is kept once it failed for good or was cancelled: its `#[task]`'s
    /// `failure_ttl`, or the worker's.
    fn failure_ttl(&self, task: &TaskInfo) -> Duration {
        self.registry.get(&task.name).and_then(|r| (r.options)().failure_ttl).unwrap_or(self.keeping.failure_ttl)
    }

    pub(crate) async fn dead_letter(&self, lease: &Lease, task: TaskInfo, error: String) {
        let keep = self.failure_ttl(&task);
        match with_retries!(bounded("dead_letter", self.deadline, self.driver.dead_letter(lease, &error, keep))) {
            Ok(()) => {
                self.counters.dead.fetch_add(1, Ordering::Relaxed);
                self.metrics_of(&task).finished(Finished::Dead);
                tracing::warn!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, %error, "task dead-lettered");
                self.events.emit(|| Event::TaskDeadLettered { task, error });
            }
            Err(DriverError::LeaseLost(_)) => self.lease_lost(task),
            Err(e) => {
                tracing::error!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, error = %e, "could not dead-letter task; it returns when its lease expires")
            }
        }
    }

    /// Settles a run stopped by a cancel. A failure leaves nothing to redo: no claim delivers
    /// a flagged task, and the backend settles it as cancelled once its lease runs out.
    pub(crate) async fn settle_cancelled(&self, lease: &Lease, task: TaskInfo) {
        let keep = self.failure_ttl(&task);
        match with_retries!(bounded("settle_cancelled", self.deadline, self.driver.settle_cancelled(lease, keep))) {
            Ok(()) => {
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                self.metrics_of(&task).finished(Finished::Cancelled);
                tracing::info!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, "task cancelled");
                self.events.emit(|| Event::TaskCancelled(task));
            }
            Err(e) => {
                tracing::warn!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, error = %e, "could not settle the cancelled task; it ends cancelled when its lease expires")
            }
        }
    }

    pub(crate) fn lease_lost(&self, task: TaskInfo) {
        self.counters.lease_lost.fetch_add(1, Ordering::Relaxed);
        self.metrics_of(&task).finished(Finished::LeaseLost);
        tracing::warn!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, "lease lost before the task was settled; another delivery owns it now");
        self.events.emit(|| Event::LeaseLost(task));
    }
}

/// The max attempts and lease length `envelope` runs with: its own, unless neither its
/// dispatch nor its `#[task]` set them (the client says so in [`Envelope::defaulted`]) and the
/// worker has a default for them.
pub(crate) fn effective(envelope: &Envelope, attempts: Option<u32>, lease: Option<Duration>) -> (u32, Duration) {
    let unset = |option| envelope.defaulted.contains(option);
    let attempts = match attempts {
        Some(n) if unset(Defaulted::ATTEMPTS) => n,
        _ => envelope.max_attempts,
    };
    let lease = match lease {
        Some(d) if unset(Defaulted::LEASE) => d,
        _ => envelope.lease(),
    };
    (attempts, lease)
}

/// A successful run waiting for its (batched) ack.
#[derive(Debug)]
pub(crate) struct PendingAck {
    /// The lease, what the run returned and how long to keep it.
    pub(crate) ack: Ack,
    pub(crate) task: TaskInfo,
    pub(crate) duration: Duration,
    pub(crate) metrics: Arc<TaskMetrics>,
    /// Given back when the ack is settled (see [`Shared::ack_credits`]).
    pub(crate) _credit: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, Overrides};
    use crate::memory::MemoryDriver;
    use crate::task::TaskOptions;

    fn envelope(overrides: Overrides, task: TaskOptions) -> Envelope {
        Client::new(Arc::new(MemoryDriver::new())).envelope_from_payload("t", vec![0x80], &overrides, &task).expect("envelope")
    }

    #[test]
    fn worker_defaults_fill_only_what_neither_the_dispatch_nor_the_task_set() {
        let (five, minute) = (Some(5), Some(Duration::from_secs(60)));
        let secs = Duration::from_secs;
        let plain = envelope(Overrides::default(), TaskOptions::default());
        assert_eq!(effective(&plain, five, minute), (5, secs(60)), "worker defaults");
        assert_eq!(effective(&plain, None, None), (3, secs(30)), "built-in");
        let task = TaskOptions { max_attempts: Some(7), lease: Some(secs(90)), ..Default::default() };
        assert_eq!(effective(&envelope(Overrides::default(), task.clone()), five, minute), (7, secs(90)), "#[task] wins");
        let call = Overrides { max_attempts: Some(2), lease: Some(secs(10)), ..Default::default() };
        assert_eq!(effective(&envelope(call, task), five, minute), (2, secs(10)), "per dispatch wins");
        let lease_only = Overrides { lease: Some(secs(10)), ..Default::default() };
        assert_eq!(effective(&envelope(lease_only, TaskOptions::default()), five, minute), (5, secs(10)), "each option on its own");
    }
}
