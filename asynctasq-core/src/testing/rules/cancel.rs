//! The rules of cancellation ([`Driver::cancel`](crate::Driver::cancel)): a waiting task is
//! removed and never runs; a leased one is flagged, its holder learns of it from its lease, and
//! it ends cancelled whatever its holder does next: settles it, fails it, gives it back or dies.

use std::time::Duration;

use super::{LONG, PATIENCE, SHORT_LEASE};
use crate::client::Client;
use crate::driver::{Ack, CancelOutcome, Capability, EnqueueOutcome, TaskState};
use crate::envelope::TaskId;
use crate::error::DriverError;
use crate::follow::Awaited;
use crate::testing::{Harness, eventually};

const KEEP: Duration = Duration::from_secs(60);

/// Waits until `id` is found cancelled, calling `dequeue` on `queue` meanwhile (the backend's
/// own calls are what settle a flagged task whose lease ran out), and checks that nothing was
/// delivered on the way.
async fn ends_cancelled(h: &Harness, queue: &str, id: TaskId) {
    eventually(PATIENCE, "the task to end cancelled", || async {
        let got = h.driver.dequeue(queue, 10).await.expect("dequeue");
        assert!(got.is_empty(), "a cancelled task is never delivered again: {got:?}");
        let found = h.driver.find(id).await.expect("find").expect("a cancelled task is kept");
        (found.state == TaskState::Cancelled).then_some(())
    })
    .await;
}

/// A waiting task, due or scheduled, is removed by a cancel, never delivered, and kept as
/// cancelled (its id stays taken); a waiter hears `Cancelled`.
pub async fn cancelled_waiting_task_is_never_delivered(h: Harness) {
    let q = h.queue("q");
    let ready = h.envelope(&q, LONG);
    let mut later = h.envelope(&q, LONG);
    later.not_before += 3_600_000;
    h.driver.enqueue(&[ready.clone(), later.clone()]).await.expect("enqueue");
    for sent in [&ready, &later] {
        assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel"), CancelOutcome::Removed, "a waiting task is removed");
        let found = h.driver.find(sent.id).await.expect("find").expect("kept as cancelled");
        assert_eq!((found.state, found.queue.as_str(), found.attempt), (TaskState::Cancelled, q.as_str(), 0));
        assert_eq!(found.envelope.as_ref().expect("decodes").name, sent.name, "with the envelope it was dispatched with");
        assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel again"), CancelOutcome::AlreadyFinished);
    }
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "a cancelled task is never delivered");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0, 0, 0, 0], "a cancelled task is no live or dead task");
    if h.driver.supports(Capability::IdempotentEnqueue) {
        let outcome = h.driver.enqueue(std::slice::from_ref(&ready)).await.expect("enqueue again");
        assert_eq!(outcome, vec![EnqueueOutcome::Exists], "its id stays taken while the record is kept");
        assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "and nothing new was stored");
    }
    if h.driver.supports(Capability::Results) {
        let waited = Client::new(h.driver.clone()).wait(ready.id, Duration::from_secs(5)).await.expect("wait");
        assert_eq!(waited, Awaited::Cancelled, "a waiter hears that the task was cancelled");
    }
}

/// A cancel of a leased task flags it: the lease is not extended, the extension reports the
/// cancel, and the holder settles it as cancelled; it is never delivered again.
pub async fn cancel_of_a_leased_task_is_reported_by_the_next_lease_extension(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    let renewed = h.driver.extend_lease(&lease, LONG).await.expect("an unflagged lease extends");
    assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel"), CancelOutcome::Requested, "a leased task is flagged");
    let found = h.driver.find(sent.id).await.expect("find").expect("still live");
    assert_eq!((found.state, found.cancel_requested), (TaskState::Leased, true), "leased, with the cancel requested");
    let err = h.driver.extend_lease(&renewed, LONG).await.expect_err("the extension reports the cancel");
    assert!(matches!(err, DriverError::CancelRequested(id) if id == sent.id), "reported as a cancel: {err:?}");
    assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel again"), CancelOutcome::Requested, "asking twice is the same");
    h.driver.settle_cancelled(&renewed, KEEP).await.expect("the holder settles it as cancelled");
    let found = h.driver.find(sent.id).await.expect("find").expect("kept as cancelled");
    assert_eq!((found.state, found.attempt, found.cancel_requested), (TaskState::Cancelled, 1, false));
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "never delivered again");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0, 0, 0, 0]);
    let err = h.driver.settle_cancelled(&renewed, KEEP).await.expect_err("settled once");
    assert!(matches!(err, DriverError::LeaseLost(_)), "a second settle finds no lease: {err:?}");
}

/// The flag is stored with the task, not sent: however long the holder goes without hearing
/// of it, every extension reports it, reading it does not clear it, and a lookup shows it.
pub async fn cancel_request_survives_when_no_notification_arrives(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel"), CancelOutcome::Requested);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let err = h.driver.extend_lease(&lease, LONG).await.expect_err("each extension reports the cancel");
        assert!(matches!(err, DriverError::CancelRequested(_)), "reported as a cancel: {err:?}");
    }
    assert!(h.driver.find(sent.id).await.expect("find").expect("live").cancel_requested, "the flag is still stored");
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "still leased, and never delivered elsewhere");
    h.driver.settle_cancelled(&lease, KEEP).await.expect("settle");
}

/// A flagged task whose run fails is not retried, one given back is not delivered again, one
/// failing for good is not dead-lettered: each ends cancelled.
pub async fn cancelled_task_is_neither_retried_nor_dead_lettered(h: Harness) {
    let q = h.queue("q");
    let (failing, released, fatal) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[failing.clone(), released.clone(), fatal.clone()]).await.expect("enqueue");
    let got = h.driver.dequeue(&q, 3).await.expect("dequeue");
    assert_eq!(got.len(), 3);
    for d in &got {
        assert_eq!(h.driver.cancel(d.lease.id, KEEP).await.expect("cancel"), CancelOutcome::Requested);
    }
    for d in got {
        if d.lease.id == failing.id {
            h.driver.nack(&d.lease, Duration::ZERO, "stopped by its cancel").await.expect("nack");
        } else if d.lease.id == released.id {
            h.driver.release(&d.lease).await.expect("release");
        } else {
            h.driver.dead_letter(&d.lease, "failed for good", LONG).await.expect("dead-letter");
        }
    }
    for id in [failing.id, released.id, fatal.id] {
        ends_cancelled(&h, &q, id).await;
    }
    if h.driver.supports(Capability::ListDead) {
        assert!(h.driver.dead(&q, 10).await.expect("dead").is_empty(), "nothing was dead-lettered");
    }
    let stats = h.driver.stats(&q).await.expect("stats");
    assert_eq!(stats.counts(), [0, 0, 0, 0], "neither waiting nor dead");
    if h.driver.supports(Capability::Totals) {
        assert_eq!(stats.totals.map(|t| t.failed), Some(0), "a cancel is no failure");
    }
}

/// A flagged task whose holder dies (its lease runs out unsettled) is never delivered to
/// another consumer: it ends cancelled.
pub async fn cancelled_task_whose_holder_dies_is_not_run_again(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, SHORT_LEASE);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered");
    assert_eq!(h.driver.cancel(sent.id, KEEP).await.expect("cancel"), CancelOutcome::Requested);
    tokio::time::sleep(SHORT_LEASE * 2).await;
    ends_cancelled(&h, &q, sent.id).await;
}

/// A cancel of a task already settled changes nothing and says so; a cancel of an id never
/// stored says that.
pub async fn cancel_of_a_finished_task_reports_already_finished(h: Harness) {
    let q = h.queue("q");
    let (acked, dead) = (h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[acked.clone(), dead.clone()]).await.expect("enqueue");
    for d in h.driver.dequeue(&q, 2).await.expect("dequeue") {
        if d.lease.id == acked.id {
            let keep = if h.driver.supports(Capability::Results) { LONG } else { Duration::ZERO };
            assert!(h.driver.ack(&[Ack { lease: d.lease, keep, result: None }]).await.expect("ack").is_empty());
        } else {
            h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
        }
    }
    assert_eq!(h.driver.cancel(dead.id, KEEP).await.expect("cancel"), CancelOutcome::AlreadyFinished, "dead");
    assert_eq!(h.driver.find(dead.id).await.expect("find").expect("dead").state, TaskState::Dead, "and left dead");
    if h.driver.supports(Capability::Results) {
        assert_eq!(h.driver.cancel(acked.id, KEEP).await.expect("cancel"), CancelOutcome::AlreadyFinished, "succeeded");
        assert_eq!(h.driver.find(acked.id).await.expect("find").expect("kept").state, TaskState::Succeeded, "and left so");
    }
    assert_eq!(h.driver.cancel(TaskId::new(), KEEP).await.expect("cancel"), CancelOutcome::NotFound, "never stored");
}

/// On a backend that cannot cancel, the client refuses with a clear error instead of
/// pretending; on one that can, the same call answers.
pub async fn a_cancel_is_refused_where_the_backend_cannot_cancel(h: Harness) {
    let got = Client::new(h.driver.clone()).cancel(TaskId::new()).await;
    if h.driver.supports(Capability::Cancel) {
        assert_eq!(got.expect("a backend that cancels answers"), CancelOutcome::NotFound);
    } else {
        let err = got.expect_err("refused");
        assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err:?}");
        assert!(err.to_string().contains("cannot reach a task"), "the error says why: {err}");
    }
}
