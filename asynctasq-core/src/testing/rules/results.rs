//! The rules of results: what an ack keeps ([`Ack::keep`]), who may write it, and how a wait
//! for it ends.

use std::time::Duration;

use super::{LONG, PATIENCE, SHORT_LEASE, now};
use crate::client::Client;
use crate::driver::{Ack, Capability, EnqueueOutcome, TaskState};
use crate::envelope::TaskId;
use crate::error::DriverError;
use crate::follow::{Awaited, WaitError};
use crate::result::StoredResult;
use crate::testing::{Harness, eventually};

fn stored(value: &str) -> Vec<u8> {
    StoredResult::Value(rmp_serde::to_vec(value).expect("encode")).encode().expect("encode")
}

/// An ack with a time to live keeps the task, found as succeeded with its envelope, attempt and
/// result until that time has passed, then not at all; while it is kept, its id is taken.
pub async fn acked_task_result_is_readable_until_its_ttl(h: Harness) {
    let q = h.queue("q");
    let (kept, plain) = (h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[kept.clone(), plain.clone()]).await.expect("enqueue");
    let got = h.driver.dequeue(&q, 2).await.expect("dequeue");
    assert_eq!(got.len(), 2);
    let before = now();
    let keep = Duration::from_millis(1500);
    let acks: Vec<Ack> = got
        .iter()
        .map(|d| {
            let lease = d.lease.clone();
            if d.lease.id == kept.id { Ack { lease, keep, result: Some(stored("forty-two")) } } else { lease.into() }
        })
        .collect();
    assert!(h.driver.ack(&acks).await.expect("ack").is_empty());

    let r = h.driver.find(kept.id).await.expect("find").expect("the kept task is found");
    assert_eq!((r.id, r.queue.as_str(), r.state, r.attempt), (kept.id, q.as_str(), TaskState::Succeeded, 1));
    assert_eq!(r.result, Some(stored("forty-two")), "its result, as the engine encoded it");
    assert!(r.at >= before.saturating_sub(1000) && r.at <= now() + 1000, "acked just now: {} vs {before}", r.at);
    let mut expected = kept.clone();
    expected.attempt = 1;
    assert_eq!(r.envelope.as_ref().expect("decodes"), &expected, "the envelope it ran with");
    assert!(h.driver.find(plain.id).await.expect("find").is_none(), "an ack that keeps nothing leaves nothing");
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "a kept task is never delivered again");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0, 0, 0, 0], "a kept task is no live or dead task");
    if h.driver.supports(Capability::IdempotentEnqueue) {
        let outcome = h.driver.enqueue(std::slice::from_ref(&kept)).await.expect("enqueue again");
        assert_eq!(outcome, vec![EnqueueOutcome::Exists], "its id stays taken while the task is kept");
        assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "and nothing new was stored");
    }
    eventually(keep + PATIENCE, "the kept task to expire", || async {
        h.driver.find(kept.id).await.expect("find").is_none().then_some(())
    })
    .await;
    assert!(now() >= before + 1500, "not before its time to live has passed");
    if h.driver.supports(Capability::IdempotentEnqueue) {
        let outcome = h.driver.enqueue(std::slice::from_ref(&kept)).await.expect("enqueue after expiry");
        assert_eq!(outcome, vec![EnqueueOutcome::New], "an expired record frees its id");
        let again = h.driver.dequeue(&q, 1).await.expect("dequeue");
        h.driver.ack(&Ack::each(&again.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
    }
}

/// Only the delivery holding the lease writes the result: a run whose lease was lost acks
/// nothing and keeps nothing, and the settling run's result is the one found.
pub async fn only_the_settling_attempt_writes_the_result(h: Harness) {
    h.requires(Capability::Fencing);
    let q = h.queue("q");
    let sent = h.envelope(&q, SHORT_LEASE);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let old = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered").lease;
    let new = eventually(PATIENCE, "the lease to expire and the task to return", || async {
        h.driver.dequeue(&q, 1).await.expect("dequeue").pop()
    })
    .await;
    assert_eq!(new.attempt, 2);
    let keep = Duration::from_secs(60);
    let lost = h.driver.ack(&[Ack { lease: old, keep, result: Some(stored("stale")) }]).await.expect("ack");
    assert_eq!(lost, vec![sent.id], "the stale run's lease is lost");
    assert_eq!(h.driver.find(sent.id).await.expect("find").expect("found").state, TaskState::Leased, "the stale ack kept nothing");
    assert!(h.driver.ack(&[Ack { lease: new.lease, keep, result: Some(stored("fresh")) }]).await.expect("ack").is_empty());
    let r = h.driver.find(sent.id).await.expect("find").expect("found");
    assert_eq!((r.state, r.attempt, r.result), (TaskState::Succeeded, 2, Some(stored("fresh"))), "the settling run's result");
}

/// A wait that starts after the task finished still gets its result, on the first read.
pub async fn waiter_that_starts_after_completion_still_gets_the_result(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let d = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered");
    let result = StoredResult::Value(rmp_serde::to_vec(&42u32).expect("encode"));
    let ack = Ack { lease: d.lease, keep: Duration::from_secs(60), result: Some(result.encode().expect("encode")) };
    assert!(h.driver.ack(&[ack]).await.expect("ack").is_empty());

    let client = Client::new(h.driver.clone());
    let started = std::time::Instant::now();
    let got = client.wait(sent.id, Duration::from_secs(30)).await.expect("wait");
    assert_eq!(got, Awaited::Succeeded(Some(result)));
    assert!(started.elapsed() < Duration::from_secs(5), "found at once, not at the timeout: {:?}", started.elapsed());
    assert_eq!(client.result::<u32>(sent.id, Duration::from_secs(30)).await.expect("typed"), Awaited::Succeeded(42));
}

/// A wait ends with an answer, never a hang: `Expired` when the task is not stored (acked
/// without keeping, or never stored), `Dead` with the reason, `TimedOut` at its timeout while
/// the task still waits, and a result that arrives mid-wait ends it then.
pub async fn waiter_gets_expired_not_a_hang_when_the_result_is_gone(h: Harness) {
    let q = h.queue("q");
    let (gone, dead, late) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[gone.clone(), dead.clone()]).await.expect("enqueue");
    for d in h.driver.dequeue(&q, 2).await.expect("dequeue") {
        if d.lease.id == gone.id {
            h.driver.ack(&[d.lease.into()]).await.expect("ack");
        } else {
            h.driver.dead_letter(&d.lease, "gave up", LONG).await.expect("dead-letter");
        }
    }
    let client = Client::new(h.driver.clone());
    let long = Duration::from_secs(30);
    let bounded = |what: &'static str| move |started: std::time::Instant| assert!(started.elapsed() < Duration::from_secs(5), "{what}");
    let started = std::time::Instant::now();
    assert_eq!(client.wait(gone.id, long).await.expect("wait"), Awaited::Expired, "acked and not kept");
    assert_eq!(client.wait(TaskId::new(), long).await.expect("wait"), Awaited::Expired, "never stored");
    assert_eq!(client.wait(dead.id, long).await.expect("wait"), Awaited::Dead("gave up".into()));
    bounded("answered at once")(started);

    h.driver.enqueue(std::slice::from_ref(&late)).await.expect("enqueue");
    let started = std::time::Instant::now();
    assert_eq!(client.wait(late.id, Duration::from_millis(300)).await.expect("wait"), Awaited::TimedOut);
    assert!(started.elapsed() >= Duration::from_millis(300), "not before its timeout");
    bounded("ended at its timeout")(started);

    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.result::<String>(late.id, Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("delivered");
    let acked_at = std::time::Instant::now();
    assert!(h.driver.ack(&[Ack { lease: d.lease, keep: LONG, result: Some(stored("done")) }]).await.expect("ack").is_empty());
    let got = waiter.await.expect("the waiter ran").expect("wait");
    assert_eq!(got, Awaited::Succeeded("done".to_owned()), "the result that arrived mid-wait");
    assert!(acked_at.elapsed() < Duration::from_secs(2), "woken within a poll or two of the ack: {:?}", acked_at.elapsed());
}

/// On a backend that keeps no results, a wait is refused with a clear error, never answered
/// with a guess; on one that keeps them, the same call answers.
pub async fn a_wait_is_refused_where_results_are_not_kept(h: Harness) {
    let client = Client::new(h.driver.clone());
    let got = client.wait(TaskId::new(), Duration::from_millis(100)).await;
    if h.driver.supports(Capability::Results) && h.driver.supports(Capability::TaskLookup) {
        assert_eq!(got.expect("a backend keeping results answers"), Awaited::Expired);
    } else {
        let err = got.expect_err("refused");
        assert!(matches!(err, WaitError::Driver(DriverError::Unsupported(_))), "refused as unsupported: {err:?}");
        assert!(err.to_string().contains("keeps no record"), "the error says why: {err}");
    }
}

/// A dead task keeps its error (and its history) for the dead letter's time to live: found as
/// dead, listed, counted and answered to a waiter until then; then gone, swept by the
/// backend's own claims within a second, and its id free again.
pub async fn failed_and_dead_tasks_keep_their_error_for_the_failure_ttl(h: Harness) {
    let q = h.queue("q");
    let (short, long) = (h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[short.clone(), long.clone()]).await.expect("enqueue");
    let got = h.driver.dequeue(&q, 2).await.expect("dequeue");
    assert_eq!(got.len(), 2);
    let before = now();
    let keep = Duration::from_millis(1500);
    for d in &got {
        let ttl = if d.lease.id == short.id { keep } else { LONG };
        h.driver.dead_letter(&d.lease, "gave up", ttl).await.expect("dead-letter");
    }

    let r = h.driver.find(short.id).await.expect("find").expect("the dead task is found");
    assert_eq!((r.state, r.last_error.as_deref()), (TaskState::Dead, Some("gave up")), "dead, with its error");
    if h.driver.supports(Capability::ErrorHistory) {
        assert_eq!(r.errors.iter().map(|e| e.error.as_str()).collect::<Vec<_>>(), ["gave up"], "and its history");
    }
    let listed: Vec<TaskId> = h.driver.dead(&q, 10).await.expect("dead").iter().map(|d| d.id).collect();
    assert_eq!(listed.len(), 2, "both listed while kept: {listed:?}");
    assert_eq!(h.driver.stats(&q).await.expect("stats").dead, 2);
    let client = Client::new(h.driver.clone());
    let waits = h.driver.supports(Capability::Results);
    if waits {
        assert_eq!(client.wait(short.id, LONG).await.expect("wait"), Awaited::Dead("gave up".into()));
    }

    eventually(keep + PATIENCE, "the dead task to expire and be swept", || async {
        // A worker's claims sweep, as the backend's own operations do.
        assert!(h.driver.dequeue(&q, 1).await.expect("dequeue").is_empty(), "an expired dead task is never delivered");
        (h.driver.find(short.id).await.expect("find").is_none() && h.driver.stats(&q).await.expect("stats").dead == 1).then_some(())
    })
    .await;
    assert!(now() >= before + 1500, "not before its time to live has passed");
    let listed: Vec<TaskId> = h.driver.dead(&q, 10).await.expect("dead").iter().map(|d| d.id).collect();
    assert_eq!(listed, [long.id], "only the one still kept is listed");
    if waits {
        assert_eq!(client.wait(short.id, LONG).await.expect("wait"), Awaited::Expired, "a waiter hears it expired");
    }
    assert!(h.driver.find(long.id).await.expect("find").is_some(), "the longer time to live still keeps its task");
    if h.driver.supports(Capability::IdempotentEnqueue) {
        let outcome = h.driver.enqueue(std::slice::from_ref(&short)).await.expect("enqueue after expiry");
        assert_eq!(outcome, vec![EnqueueOutcome::New], "an expired dead task frees its id");
        let again = h.driver.dequeue(&q, 1).await.expect("dequeue");
        h.driver.ack(&Ack::each(&again.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
    }
    h.driver.purge_dead(&q).await.expect("purge dead");
}

/// `find` tells when a task's latest delivery was claimed: none while it waits for its first,
/// the claim's time while leased, and the same time once it succeeded (kept) or died.
pub async fn find_tells_when_the_latest_delivery_started(h: Harness) {
    h.requires(Capability::TaskLookup);
    let q = h.queue("q");
    let (acked, dead, waiting) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[acked.clone(), dead.clone()]).await.expect("enqueue");
    let before = now();
    let got = h.driver.dequeue(&q, 2).await.expect("dequeue");
    let after = now();
    assert_eq!(got.len(), 2);
    h.driver.enqueue(std::slice::from_ref(&waiting)).await.expect("enqueue");
    let started = |id| {
        let h = &h;
        async move { h.driver.find(id).await.expect("find").expect("stored").started_at }
    };
    assert_eq!(started(waiting.id).await, None, "never delivered: never started");
    let at = started(acked.id).await.expect("a leased task started at its claim");
    assert!(at >= before.saturating_sub(1000) && at <= after + 1000, "at the claim: {at} in {before}..{after}");
    for d in got {
        if d.lease.id == acked.id {
            let keep = if h.driver.supports(Capability::Results) { LONG } else { Duration::ZERO };
            assert!(h.driver.ack(&[Ack { lease: d.lease, keep, result: None }]).await.expect("ack").is_empty());
        } else {
            h.driver.dead_letter(&d.lease, "gave up", LONG).await.expect("dead-letter");
        }
    }
    if h.driver.supports(Capability::Results) {
        assert_eq!(started(acked.id).await, Some(at), "the kept record keeps when its run started");
    }
    let died = started(dead.id).await.expect("a dead task keeps when its last run started");
    assert!(died >= before.saturating_sub(1000) && died <= after + 1000, "{died} in {before}..{after}");
    h.driver.purge_dead(&q).await.expect("purge dead");
}
