//! Lease renewal while a task runs.

use std::sync::Arc;
use std::time::Duration;

use super::deadline::bounded;
use crate::driver::{Driver, Lease};
use crate::error::DriverError;

/// Why [`keep_leased`] stopped renewing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    /// The lease is no longer held.
    Lost,
    /// The task was cancelled ([`DriverError::CancelRequested`]): the lease was not extended.
    Cancelled,
}

/// Renews `lease` every third of `length` for as long as it is polled. Completes only when the
/// lease is lost or the task was cancelled; transient errors are logged and retried at the next beat, since a lease has
/// two more beats of slack before it can expire. Each renewal is bounded by `limit`.
///
/// The driver claimed the lease for `claimed` (the envelope's lease); when the worker's default
/// lease applies instead (`length`), the first renewal comes a third of the shorter one in, and
/// sets the lease to `length` from then on.
pub(crate) async fn keep_leased(
    driver: Arc<dyn Driver>,
    mut lease: Lease,
    claimed: Duration,
    length: Duration,
    limit: Duration,
    extended: &metrics::Counter,
) -> LeaseEnd {
    let interval = |d: Duration| (d / 3).max(Duration::from_millis(5));
    let mut next = interval(claimed.min(length));
    loop {
        tokio::time::sleep(next).await;
        next = interval(length);
        match bounded("extend_lease", limit.min(length), driver.extend_lease(&lease, length)).await {
            Ok(renewed) => {
                lease = renewed;
                extended.increment(1);
            }
            Err(DriverError::LeaseLost(_)) => return LeaseEnd::Lost,
            Err(DriverError::CancelRequested(_)) => return LeaseEnd::Cancelled,
            Err(error) => tracing::warn!(task.id = %lease.id, %error, "lease renewal failed; retrying at the next beat"),
        }
    }
}
