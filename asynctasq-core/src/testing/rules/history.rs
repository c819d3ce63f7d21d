//! The rule of the error history ([`Capability::ErrorHistory`]): every failed attempt's error
//! is kept with the task, in order, while it lives and once it is dead.

use std::time::Duration;

use super::{LONG, PATIENCE, SHORT_LEASE};
use crate::driver::{Capability, TaskState};
use crate::testing::{Harness, eventually};

/// Two retried failures and a dead letter leave three entries, attempt by attempt, found with
/// the live task as they happen and with the dead task at the end.
pub async fn every_attempts_error_is_kept_in_order(h: Harness) {
    h.requires(Capability::TaskLookup);
    let q = h.queue("q");
    let sent = h.envelope(&q, SHORT_LEASE);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let take = || async {
        eventually(PATIENCE, "the task to be delivered", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await.lease
    };
    let before = super::now();
    h.driver.nack(&take().await, Duration::ZERO, "first: timeout").await.expect("nack");
    let live = h.driver.find(sent.id).await.expect("find").expect("live");
    let seen: Vec<(u32, &str)> = live.errors.iter().map(|e| (e.attempt, e.error.as_str())).collect();
    assert_eq!(seen, vec![(1, "first: timeout")], "the live task carries its history");
    h.driver.nack(&take().await, Duration::ZERO, "second: refused").await.expect("nack");
    h.driver.dead_letter(&take().await, "third: gave up", LONG).await.expect("dead-letter");
    let dead = h.driver.find(sent.id).await.expect("find").expect("dead");
    assert_eq!(dead.state, TaskState::Dead);
    let seen: Vec<(u32, &str)> = dead.errors.iter().map(|e| (e.attempt, e.error.as_str())).collect();
    assert_eq!(seen, vec![(1, "first: timeout"), (2, "second: refused"), (3, "third: gave up")], "every attempt, in order");
    assert!(dead.errors.iter().all(|e| e.at >= before.saturating_sub(1000) && e.at <= super::now() + 1000), "stamped when they failed");
    if h.driver.supports(Capability::ListDead) {
        let listed = h.driver.dead(&q, 10).await.expect("dead");
        assert_eq!(listed[0].errors, dead.errors, "the dead list carries the same history");
    }
}

/// The consumer a handle claims for ([`Driver::consumer`](crate::driver::Driver::consumer)) is
/// found as the lease holder while the task is leased, and each failure names the worker
/// whose run failed.
pub async fn each_failure_names_its_worker_and_a_leased_task_its_holder(h: Harness) {
    h.requires(Capability::TaskLookup);
    let q = h.queue("q");
    let sent = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let take = |name: &'static str| {
        h.driver.consumer(name);
        async {
            eventually(PATIENCE, "the task to be delivered", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await.lease
        }
    };
    let first = take("host-a:101:0a0a").await;
    let leased = h.driver.find(sent.id).await.expect("find").expect("leased");
    assert_eq!((leased.state, leased.holder.as_deref()), (TaskState::Leased, Some("host-a:101:0a0a")), "held by its consumer");
    h.driver.nack(&first, Duration::ZERO, "first: timeout").await.expect("nack");
    let waiting = h.driver.find(sent.id).await.expect("find").expect("waiting");
    assert_eq!(waiting.holder, None, "a waiting task has no holder");
    let second = take("host-b:202:0b0b").await;
    h.driver.dead_letter(&second, "second: gave up", LONG).await.expect("dead-letter");
    let dead = h.driver.find(sent.id).await.expect("find").expect("dead");
    assert_eq!(dead.holder, None, "a dead task has no holder");
    let workers: Vec<Option<&str>> = dead.errors.iter().map(|e| e.worker.as_deref()).collect();
    assert_eq!(workers, [Some("host-a:101:0a0a"), Some("host-b:202:0b0b")], "each failure names its worker");
}
