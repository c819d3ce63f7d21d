//! Lease renewal while a task runs.

use std::sync::Arc;
use std::time::Duration;

use super::deadline::bounded;
use crate::driver::{Driver, Lease};
use crate::error::DriverError;

/// Renews `lease` every third of `length` for as long as it is polled. Completes only when the
/// lease is lost; transient errors are logged and retried at the next beat, since a lease has
/// two more beats of slack before it can expire. Each renewal is bounded by `limit`.
pub(crate) async fn keep_leased(driver: Arc<dyn Driver>, mut lease: Lease, length: Duration, limit: Duration) {
    let interval = (length / 3).max(Duration::from_millis(5));
    loop {
        tokio::time::sleep(interval).await;
        match bounded("extend_lease", limit.min(length), driver.extend_lease(&lease, length)).await {
            Ok(renewed) => lease = renewed,
            Err(DriverError::LeaseLost(_)) => return,
            Err(error) => tracing::warn!(task.id = %lease.id, %error, "lease renewal failed; retrying at the next beat"),
        }
    }
}
