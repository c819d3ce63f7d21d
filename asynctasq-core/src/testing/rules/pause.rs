//! The rules of pausing a queue ([`Capability::PauseQueues`]): a paused queue is claimed by no
//! one until it is resumed, and a backend that cannot pause says so.

use std::time::Duration;

use super::{LONG, PATIENCE};
use crate::driver::{Ack, Capability};
use crate::error::DriverError;
use crate::testing::{Harness, eventually};

/// While a queue is paused no claim delivers its tasks and a wait for it does not wake, other
/// queues run on, tasks can still be enqueued to it, and it is listed as paused; once
/// resumed, its tasks are delivered again.
pub async fn paused_queue_is_not_claimed_until_resumed(h: Harness) {
    let (q, other) = (h.queue("q"), h.queue("other"));
    h.driver.enqueue(&[h.envelope(&q, LONG), h.envelope(&other, LONG)]).await.expect("enqueue");
    h.driver.set_paused(&q, true).await.expect("pause");
    h.driver.set_paused(&q, true).await.expect("pausing twice changes nothing");
    assert!(h.driver.paused().await.expect("paused").contains(&q), "listed as paused");
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "a paused queue is not claimed");
    h.driver.enqueue(&[h.envelope(&q, LONG)]).await.expect("a paused queue still takes tasks");
    // A wait may return early by its contract (a polling backend returns at its poll), so only
    // what follows it is checked: still nothing to claim.
    h.driver.wait_ready(std::slice::from_ref(&q), Duration::from_millis(300)).await.expect("wait");
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "still not claimed after a wait");
    let ran = h.driver.dequeue(&other, 10).await.expect("dequeue other");
    assert_eq!(ran.len(), 1, "other queues run on");
    h.driver.ack(&Ack::each(&ran.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");

    h.driver.set_paused(&q, false).await.expect("resume");
    assert!(!h.driver.paused().await.expect("paused").contains(&q), "no longer listed");
    let got = eventually(PATIENCE, "the resumed queue's tasks", || async {
        let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 2, "both tasks, once resumed");
    h.driver.ack(&Ack::each(&got.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
}

/// A backend that cannot pause a queue refuses to, with an error saying so, and lists none.
pub async fn pause_is_refused_where_the_backend_cannot_pause(h: Harness) {
    let q = h.queue("q");
    if h.driver.supports(Capability::PauseQueues) {
        h.driver.set_paused(&q, false).await.expect("resuming a running queue changes nothing");
        return;
    }
    let err = h.driver.set_paused(&q, true).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
    assert!(err.to_string().contains("pausing a queue"), "saying what: {err}");
    assert!(h.driver.paused().await.expect("paused").is_empty());
}
