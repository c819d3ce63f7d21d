//! Following a dispatched task from the producer: waiting for its outcome, reading its result
//! and cancelling it ([`Client::wait`], [`Client::result`], [`Client::cancel`]).
//!
//! # Every wait ends
//! A wait reads the task's record by id ([`Driver::find`](crate::Driver::find)) until the task
//! is settled or the timeout passes, so a task that finished before the wait began is found on
//! the first read, and a wait never outlives its timeout: it ends with exactly one
//! [`Awaited`]. A backend that stops answering mid-wait (a restart, a dropped connection) is
//! read again at the next poll; only the timeout ends the wait then.
//!
//! The reads back off from 5 ms to [`MAX_POLL`], so a wait costs a few reads a second on the
//! backend at most. Where the backend pushes ([`Driver::notices`](crate::Driver::notices)), the
//! wait registers before its first read and reads again as soon as its task is noticed
//! settled; the polls stay, for a notice that is lost. A client's waits share one
//! subscription, which wakes only the waits on the noticed task (`waiters.rs` says why).

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::driver::{CancelOutcome, Capability, TaskState};
use crate::envelope::TaskId;
use crate::error::{CodecError, DriverError};
use crate::result::{DEFAULT_FAILURE_TTL, StoredResult};

/// The longest pause between two reads of a waited task.
pub const MAX_POLL: Duration = Duration::from_millis(250);

/// How a wait for a task ended: exactly one of these, never a hang.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Awaited<T> {
    /// The task ran and succeeded; its result.
    Succeeded(T),
    /// The task failed for good (what Celery and BullMQ call failed): dead-lettered after its
    /// last attempt or a fatal error; the reason. Answered until its failure time to live
    /// (`#[task(failure_ttl)]`, the worker's `failure_ttl`) has passed.
    Dead(String),
    /// The task was cancelled ([`Client::cancel`]): removed before it ran, or stopped by its
    /// worker.
    Cancelled,
    /// The task is not stored: it succeeded, was dead-lettered or was cancelled and its record's
    /// time to live has passed (or it was kept for none), it was purged, or it never existed.
    Expired,
    /// The timeout passed with the task still waiting or running.
    TimedOut,
}

/// Why a wait could not give an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The backend refused the read, or cannot keep results at all.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The stored result does not decode as the type asked for.
    #[error("the task's result does not decode as the type asked for")]
    Decode(#[source] CodecError),
    /// The task succeeded, but its result was over the worker's size limit and was not kept.
    #[error("the task succeeded but its result ({size} bytes) was over the worker's limit and was not kept")]
    TooLarge {
        /// The encoded size.
        size: u64,
    },
}

impl Client {
    /// Waits up to `timeout` for task `id` to be settled and returns how it ended, with its
    /// stored result as the engine encoded it ([`StoredResult`]; `None` when it returned
    /// nothing). Refused on a backend that cannot look tasks up or keep results
    /// ([`Capability::TaskLookup`], [`Capability::Results`]).
    pub async fn wait(&self, id: TaskId, timeout: Duration) -> Result<Awaited<Option<StoredResult>>, WaitError> {
        let driver = self.driver();
        if !driver.supports(Capability::TaskLookup) || !driver.supports(Capability::Results) {
            return Err(DriverError::Unsupported("waiting for a task's outcome (this backend keeps no record of settled tasks)").into());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        // Registered before the first read: a task settled in between is read, or noticed.
        let notices = self.waiters().map(|w| w.register(id));
        loop {
            match driver.find(id).await {
                Ok(None) => return Ok(Awaited::Expired),
                Ok(Some(record)) => match record.state {
                    TaskState::Succeeded => {
                        let result = record.result.as_deref().map(StoredResult::decode).transpose().map_err(WaitError::Decode)?;
                        return Ok(Awaited::Succeeded(result));
                    }
                    TaskState::Dead => return Ok(Awaited::Dead(record.last_error.unwrap_or_default())),
                    TaskState::Cancelled => return Ok(Awaited::Cancelled),
                    _ => {}
                },
                Err(e) if e.is_transient() => tracing::debug!(task.id = %id, error = %e, "reading a waited task failed; reading again"),
                Err(e) => return Err(e.into()),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Awaited::TimedOut);
            }
            tokio::select! {
                () = tokio::time::sleep(pause.min(deadline - now)) => pause = (pause * 2).min(MAX_POLL),
                () = noticed(notices.as_ref()) => {}
            }
        }
    }

    /// Cancels task `id` ([`Driver::cancel`](crate::Driver::cancel)): a waiting task is
    /// removed and never runs; a running one is flagged, and its worker learns of it at its
    /// next lease extension (within a third of the lease), cancels the task's
    /// [`TaskContext`](crate::TaskContext), aborts it after its grace and settles it as
    /// cancelled, neither retried nor dead-lettered. The cancelled record is kept for
    /// [`DEFAULT_FAILURE_TTL`]. Refused on a backend that cannot cancel
    /// ([`Capability::Cancel`]).
    pub async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, DriverError> {
        let driver = self.driver();
        if !driver.supports(Capability::Cancel) {
            return Err(DriverError::Unsupported("cancelling a task (this backend cannot reach a task once it is handed out)"));
        }
        driver.cancel(id, DEFAULT_FAILURE_TTL).await
    }

    /// [`Client::wait`], with the result decoded as `R` (what the task's function returned
    /// inside its `Ok`; `()` for a task that returns nothing).
    pub async fn result<R: DeserializeOwned>(&self, id: TaskId, timeout: Duration) -> Result<Awaited<R>, WaitError> {
        Ok(match self.wait(id, timeout).await? {
            Awaited::Succeeded(stored) => {
                // A task that returned nothing reads as MessagePack's nil: `()` or `None`.
                let bytes = match &stored {
                    None => &[0xc0][..],
                    Some(StoredResult::Value(bytes)) => bytes,
                    Some(StoredResult::TooLarge { size }) => return Err(WaitError::TooLarge { size: *size }),
                };
                Awaited::Succeeded(rmp_serde::from_slice(bytes).map_err(|e| WaitError::Decode(CodecError::Decode(e)))?)
            }
            Awaited::Dead(e) => Awaited::Dead(e),
            Awaited::Cancelled => Awaited::Cancelled,
            Awaited::Expired => Awaited::Expired,
            Awaited::TimedOut => Awaited::TimedOut,
        })
    }
}

/// Resolves when the registered task is noticed settled; never without a registration.
async fn noticed(registration: Option<&crate::waiters::Registration>) {
    match registration {
        Some(r) => r.noticed().await,
        None => std::future::pending().await,
    }
}
