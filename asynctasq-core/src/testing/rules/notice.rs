//! The rules of notices ([`Driver::notices`](crate::Driver::notices)): a backend that declares
//! it pushes tells its handles when a task is settled and when a leased task's cancel is
//! requested.

use std::time::Duration;

use tokio::sync::broadcast;

use super::{LONG, PATIENCE};
use crate::driver::{Ack, CancelOutcome};
use crate::envelope::TaskId;
use crate::notice::NoticeKind;
use crate::testing::Harness;

/// Waits up to `within` for `id` on `rx`, skipping other ids.
async fn hears(rx: &mut broadcast::Receiver<TaskId>, id: TaskId, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Ok(got) if got == id => return true,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// A subscription may take a moment to reach the server: cancels waiting tasks of a queue of
/// its own until one is noticed, so the rule's own notices are not lost to the start-up.
async fn until_listening(h: &Harness, rx: &mut broadcast::Receiver<TaskId>) {
    let q = h.queue("warmup");
    let until = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < until {
        let probe = h.envelope(&q, LONG);
        h.driver.enqueue(std::slice::from_ref(&probe)).await.expect("enqueue");
        assert_eq!(h.driver.cancel(probe.id, LONG).await.expect("cancel"), CancelOutcome::Removed);
        if hears(rx, probe.id, Duration::from_millis(200)).await {
            return;
        }
    }
    panic!("no notice arrived within {PATIENCE:?} of subscribing");
}

/// A task acked and kept, a task dead-lettered and a waiting task cancelled are each noticed
/// as settled.
pub async fn settled_tasks_are_noticed(h: Harness) {
    let mut rx = h.driver.notices(NoticeKind::Settled).expect("a backend that pushes hands out notices");
    until_listening(&h, &mut rx).await;
    let q = h.queue("q");
    let (acked, dead, cancelled) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[acked.clone(), dead.clone()]).await.expect("enqueue");
    for d in h.driver.dequeue(&q, 2).await.expect("dequeue") {
        if d.lease.id == acked.id {
            assert!(h.driver.ack(&[Ack { lease: d.lease, keep: LONG, result: None }]).await.expect("ack").is_empty());
            assert!(hears(&mut rx, acked.id, PATIENCE).await, "the ack is noticed");
        } else {
            h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
            assert!(hears(&mut rx, dead.id, PATIENCE).await, "the dead letter is noticed");
        }
    }
    h.driver.enqueue(std::slice::from_ref(&cancelled)).await.expect("enqueue");
    assert_eq!(h.driver.cancel(cancelled.id, LONG).await.expect("cancel"), CancelOutcome::Removed);
    assert!(hears(&mut rx, cancelled.id, PATIENCE).await, "the removal is noticed");
}

/// A cancel of a leased task is noticed as requested, so its holder need not wait for its
/// next renewal; settling it is then noticed as settled.
pub async fn cancel_requests_are_noticed(h: Harness) {
    let mut settled = h.driver.notices(NoticeKind::Settled).expect("a backend that pushes cancels pushes settles");
    until_listening(&h, &mut settled).await;
    let mut rx = h.driver.notices(NoticeKind::CancelRequested).expect("a backend that pushes hands out notices");
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    assert_eq!(h.driver.cancel(sent.id, LONG).await.expect("cancel"), CancelOutcome::Requested);
    assert!(hears(&mut rx, sent.id, PATIENCE).await, "the request is noticed");
    h.driver.settle_cancelled(&lease, LONG).await.expect("settle");
    assert!(hears(&mut settled, sent.id, PATIENCE).await, "and its settling too");
}
