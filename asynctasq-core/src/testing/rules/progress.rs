//! The rules of progress ([`Driver::progress`](crate::Driver::progress)): a running task's
//! report is found with it, and only the run holding the lease may write it.

use super::{LONG, PATIENCE, SHORT_LEASE};
use crate::driver::Capability;
use crate::error::DriverError;
use crate::progress::Progress;
use crate::testing::{Harness, eventually};

fn report(fraction: f32, message: &str) -> Progress {
    Progress { fraction, message: message.to_owned(), at: super::now() }
}

/// What the holder reports is found with the task while it runs, the latest report replacing
/// the one before.
pub async fn progress_is_found_while_the_task_runs(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    assert_eq!(h.driver.find(sent.id).await.expect("find").expect("live").progress, None, "nothing reported yet");
    let first = report(0.4, "processed 40 of 100");
    h.driver.progress(&lease, &first).await.expect("progress");
    assert_eq!(h.driver.find(sent.id).await.expect("find").expect("live").progress, Some(first));
    let second = report(0.9, "processed 90 of 100");
    h.driver.progress(&lease, &second).await.expect("progress");
    assert_eq!(h.driver.find(sent.id).await.expect("find").expect("live").progress, Some(second), "the latest report");
    h.driver.ack(&crate::driver::Ack::each(std::slice::from_ref(&lease))).await.expect("ack");
}

/// A run whose lease was lost cannot overwrite the progress of the run that owns the task now.
pub async fn progress_from_a_lost_lease_is_refused(h: Harness) {
    h.requires(Capability::Fencing);
    let q = h.queue("q");
    let sent = h.envelope(&q, SHORT_LEASE);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let old = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    let new = eventually(PATIENCE, "the lease to expire and the task to return", || async {
        h.driver.dequeue(&q, 1).await.expect("dequeue").pop()
    })
    .await
    .lease;
    let mine = report(0.5, "the new run");
    h.driver.progress(&new, &mine).await.expect("the holder reports");
    let err = h.driver.progress(&old, &report(0.99, "the stale run")).await.expect_err("refused");
    assert!(matches!(err, DriverError::LeaseLost(id) if id == sent.id), "reported as a lost lease: {err:?}");
    assert_eq!(h.driver.find(sent.id).await.expect("find").expect("live").progress, Some(mine), "the holder's report stands");
}
