//! Deadlines on the engine's driver calls, and the watchdog that reports a stalled loop.
//!
//! # Why the engine bounds calls its drivers already bound
//! Every driver with a connection fails a request that gets no answer within its own request
//! timeout (see the [`Driver`](crate::Driver) contract). The engine still wraps each call it
//! awaits in a deadline of its own, longer than any driver's, so that a driver bug (a wait
//! without a timeout, a lock held across a dead connection) costs one failed call and a logged
//! error, never a worker that is alive, holds no error and does nothing: nothing restarts such a
//! worker, and its tasks wait behind it.
//!
//! The watchdog is the second half: each loop the engine runs (the fetch loop and the acker)
//! marks when it starts waiting on the backend; one that stays inside a single wait longer than
//! the deadline is logged as an error, with how long it has been stalled, every few seconds
//! until it moves again.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::DriverError;

/// The default engine deadline on one driver call (a backstop: drivers bound their requests at
/// a few seconds).
pub(crate) const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs `call`, failing it with [`DriverError::Unavailable`] (logged as an error) if it has not
/// finished within `limit`.
pub(crate) async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    let started = crate::metrics::enabled().then(Instant::now);
    let result = match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(call = what, stalled = ?limit, "a driver call gave no answer within the engine's deadline; abandoning it");
            Err(DriverError::timed_out(format!("driver call `{what}`"), limit))
        }
    };
    // A lost lease is an answer, not a failure of the backend.
    if let Some(started) = started {
        let failed = matches!(&result, Err(e) if !matches!(e, DriverError::LeaseLost(_)));
        crate::metrics::driver_op(what, started.elapsed(), failed);
    }
    result
}

/// Where one loop of the engine is: idle, or waiting on the backend since an instant.
#[derive(Debug)]
pub(crate) struct Beacon {
    name: &'static str,
    origin: Instant,
    /// Milliseconds after `origin` (plus one) when the current wait began; 0 when not waiting.
    since: AtomicU64,
}

impl Beacon {
    pub(crate) fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name, origin: Instant::now(), since: AtomicU64::new(0) })
    }

    /// Marks the start of a wait on the backend; the wait ends when the guard drops.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        let at = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        self.since.store(at, Ordering::Relaxed);
        Waiting(self)
    }

    /// How long the current wait has lasted, if the loop is waiting.
    pub(crate) fn stalled_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            at => Some(self.origin.elapsed().saturating_sub(Duration::from_millis(at - 1))),
        }
    }
}

/// An ongoing wait of a [`Beacon`]'s loop.
pub(crate) struct Waiting<'a>(&'a Beacon);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Relaxed);
    }
}

/// Logs an error every `every` for each beacon whose loop has been inside one wait for longer
/// than `limit`. Runs until aborted.
pub(crate) async fn watch(beacons: Vec<Arc<Beacon>>, limit: Duration, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for b in &beacons {
            if let Some(stalled) = b.stalled_for().filter(|s| *s > limit) {
                tracing::error!(
                    engine_loop = b.name,
                    stalled_secs = stalled.as_secs(),
                    "worker loop stalled for {stalled:?} waiting on the backend"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_fails_as_unavailable() {
        let never = std::future::pending::<Result<(), DriverError>>();
        let err = bounded("dequeue", Duration::from_secs(30), never).await.expect_err("the deadline must end the call");
        assert!(err.is_transient(), "a stalled call is retried like a dropped connection: {err}");
        assert!(err.to_string().contains("dequeue"), "the error names the call: {err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_beacon_reports_how_long_its_loop_has_waited() {
        let b = Beacon::new("fetch");
        assert_eq!(b.stalled_for(), None);
        let wait = b.waiting();
        tokio::time::advance(Duration::from_secs(42)).await;
        let stalled = b.stalled_for().expect("waiting");
        assert!(stalled >= Duration::from_secs(42) && stalled < Duration::from_secs(43), "{stalled:?}");
        drop(wait);
        assert_eq!(b.stalled_for(), None, "the wait ended");
    }
}
