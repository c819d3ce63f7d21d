//! Delayed tasks: a task due later waits in a delay bucket, a queue whose messages expire
//! (after the bucket's time-to-live) into the work queue. A delivery that reaches the work
//! queue before its due time (it waited in a shorter bucket than its delay) goes back to the
//! bucket for the rest.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};

use super::consumer::{Buffered, Consumer};
use super::session::Session;
use super::topology::{self, Names};
use crate::sync::lock;

/// The delay bucket for a task due in `ms`, declared if this session has not yet.
pub(super) async fn bucket<'n>(session: &Session, names: &'n Names, ms: u64) -> Result<&'n str, DriverError> {
    let i = names.bucket_index(ms);
    let name = names.buckets[i].as_str();
    if !lock(&session.buckets).contains(name) {
        topology::declare_bucket(&session.admin().await?, names, i).await?;
        lock(&session.buckets).insert(name.to_owned());
    }
    Ok(name)
}

/// Moves a delivery of `c` that arrived before `not_before` back into the delay bucket for the
/// rest, then acks it. When it cannot (no session, or the publish fails) the delivery is
/// requeued a second later, to arrive early again and be tried again.
pub(super) async fn redelay(session: Result<Arc<Session>, DriverError>, c: Arc<Consumer>, b: Buffered, not_before: u64) {
    let left = not_before.saturating_sub(SystemClock.now());
    let moved = async {
        let session = session?;
        let names = session.ensure_topology(&c.queue).await?;
        let key = bucket(&session, &names, left).await?;
        session.publish_on(key, &b.data, &b.meta).await
    };
    match moved.await {
        Ok(()) => c.ack_moved(b.tag).await,
        Err(error) => {
            tracing::warn!(%error, queue = %c.queue, "could not move an early task back to its delay queue; requeueing it");
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.requeue(b.tag).await;
        }
    }
}
