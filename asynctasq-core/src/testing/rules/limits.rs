//! The rules of a queue's limits ([`Capability::QueueLimits`]): a cap on its live leases that
//! every claim obeys, however many consumers race, and that an expired lease stops counting
//! against; a backend that cannot enforce one refuses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{LONG, PATIENCE};
use crate::clock::Clock;
use crate::driver::{Ack, Capability, QueueLimits, TaskState};
use crate::error::DriverError;
use crate::limits::Rate;
use crate::testing::{Harness, eventually};

/// The first non-empty claim of up to `max` of `queue`'s tasks, within the rules' patience.
async fn claimed_eventually(h: &Harness, queue: &str, max: usize, what: &str) -> Vec<crate::Delivery> {
    eventually(PATIENCE, what, || async {
        let got = h.driver.dequeue(queue, max).await.expect("dequeue");
        (!got.is_empty()).then_some(got)
    })
    .await
}

/// Leases of `deliveries`, acked.
async fn ack_all(h: &Harness, deliveries: &[crate::Delivery]) {
    h.driver.ack(&Ack::each(&deliveries.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
}

/// With a cap of 3, eight consumers racing for 40 tasks never hold more than 3 at once, counted
/// from what they hold (each counts a task from its claim's return until before its ack is
/// sent, so a count over the cap is a claim the backend let through), and all 40 run.
pub async fn claims_never_exceed_the_queue_limit_with_many_consumers(h: Harness) {
    const CAP: usize = 3;
    const TASKS: usize = 40;
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::max_leased(CAP as u32)).await.expect("set limits");
    let tasks: Vec<_> = (0..TASKS).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&tasks).await.expect("enqueue");

    // All at once, holding what they got: exactly the cap between them.
    let mut first = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (driver, q) = (h.driver.clone(), q.clone());
        first.spawn(async move { driver.dequeue(&q, 5).await.expect("dequeue") });
    }
    let held: Vec<_> = first.join_all().await.into_iter().flatten().collect();
    assert_eq!(held.len(), CAP, "eight racing claims take the cap between them, no more, no fewer");
    assert!(h.driver.dequeue(&q, 5).await.expect("dequeue").is_empty(), "nothing more while the cap is held");
    ack_all(&h, &held).await;

    let (holding, most, ran) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(CAP)));
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (driver, q) = (h.driver.clone(), q.clone());
        let (holding, most, ran) = (holding.clone(), most.clone(), ran.clone());
        consumers.spawn(async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while ran.load(Ordering::SeqCst) < TASKS && tokio::time::Instant::now() < deadline {
                let got = driver.dequeue(&q, 2).await.expect("dequeue");
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let now = holding.fetch_add(got.len(), Ordering::SeqCst) + got.len();
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                holding.fetch_sub(got.len(), Ordering::SeqCst);
                ran.fetch_add(got.len(), Ordering::SeqCst);
                driver.ack(&Ack::each(&got.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
            }
        });
    }
    consumers.join_all().await;
    assert_eq!(ran.load(Ordering::SeqCst), TASKS, "every task ran");
    let most = most.load(Ordering::SeqCst);
    assert!(most <= CAP, "at most {CAP} held at once, saw {most}");
    assert!(most >= 2, "the consumers did run side by side (saw at most {most} at once)");
}

/// A lease that runs out stops counting: a crashed consumer's task frees its place, and the
/// next claim takes a task (the expired one again, or another) within the lease.
pub async fn expired_lease_frees_its_queue_place(h: Harness) {
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::max_leased(1)).await.expect("set limits");
    h.driver.enqueue(&[h.envelope(&q, Duration::from_millis(600)), h.envelope(&q, Duration::from_millis(600))]).await.expect("enqueue");
    let lost = h.driver.dequeue(&q, 5).await.expect("dequeue");
    assert_eq!(lost.len(), 1, "one place");
    assert!(h.driver.dequeue(&q, 5).await.expect("dequeue").is_empty(), "the place is held");
    // The holder "crashes": it never settles.
    let next = claimed_eventually(&h, &q, 5, "a claim once the lease ran out").await;
    assert_eq!(next.len(), 1, "still one place: the expired lease counts for nothing, the new one for one");
    ack_all(&h, &next).await;
}

/// A limit is listed once set, binds the next claim when raised or lowered, and once cleared
/// the queue is claimed freely and no longer listed.
pub async fn queue_limit_is_listed_changed_and_cleared(h: Harness) {
    let (q, other) = (h.queue("q"), h.queue("other"));
    h.driver.set_limits(&q, QueueLimits::max_leased(2)).await.expect("set limits");
    assert!(h.driver.limits().await.expect("limits").contains(&(q.clone(), QueueLimits::max_leased(2))), "listed");
    let tasks: Vec<_> = (0..6).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&tasks).await.expect("enqueue");
    h.driver.enqueue(&[h.envelope(&other, LONG), h.envelope(&other, LONG), h.envelope(&other, LONG)]).await.expect("enqueue other");
    let a = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(a.len(), 2, "the cap");
    assert_eq!(h.driver.dequeue(&other, 10).await.expect("dequeue other").len(), 3, "another queue is not limited");
    h.driver.set_limits(&q, QueueLimits::max_leased(3)).await.expect("raise");
    let b = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(b.len(), 1, "a raised cap, less what is held");
    h.driver.set_limits(&q, QueueLimits::max_leased(0)).await.expect("lower to zero");
    ack_all(&h, &a).await;
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "a cap of zero holds every task back");
    h.driver.set_limits(&q, QueueLimits::default()).await.expect("clear");
    assert!(!h.driver.limits().await.expect("limits").iter().any(|(name, _)| *name == q), "no longer listed");
    let c = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(c.len(), 3, "no cap: every ready task");
    ack_all(&h, &b).await;
    ack_all(&h, &c).await;
}

/// A backend that cannot enforce a limit refuses to store one, with an error saying so, and
/// lists none.
pub async fn queue_limits_are_refused_where_the_backend_cannot_enforce_them(h: Harness) {
    let q = h.queue("q");
    if h.driver.supports(Capability::QueueLimits) {
        h.driver.set_limits(&q, QueueLimits::default()).await.expect("clearing what was never set changes nothing");
        return;
    }
    let err = h.driver.set_limits(&q, QueueLimits::max_leased(1)).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
    assert!(err.to_string().contains("limiting a queue"), "saying what: {err}");
    assert!(h.driver.limits().await.expect("limits").is_empty());
}

/// An envelope of `queue` with the key `key`.
fn keyed(h: &Harness, queue: &str, key: &str, lease: Duration) -> crate::Envelope {
    crate::Envelope { key: Some(key.into()), ..h.envelope(queue, lease) }
}

/// With 2 per key, one claim takes 2 of each key and every unkeyed task it meets; then eight
/// consumers racing for the rest never hold more than 2 of one key at once (counted as in the
/// queue-limit rule), and all of them run.
pub async fn claims_never_exceed_the_per_key_limit_with_many_consumers(h: Harness) {
    const PER_KEY: usize = 2;
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::per_key(PER_KEY as u32)).await.expect("set limits");
    let mut tasks: Vec<_> = (0..30).map(|i| keyed(&h, &q, ["a", "b", "c"][i % 3], LONG)).collect();
    tasks.extend((0..6).map(|_| h.envelope(&q, LONG)));
    let total = tasks.len();
    h.driver.enqueue(&tasks).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 20).await.expect("dequeue");
    let mut by_key: std::collections::BTreeMap<Option<String>, usize> = std::collections::BTreeMap::new();
    for d in &first {
        *by_key.entry(d.envelope.as_ref().expect("decodes").key.clone()).or_default() += 1;
    }
    let want = [(None, 6), (Some("a".to_owned()), PER_KEY), (Some("b".to_owned()), PER_KEY), (Some("c".to_owned()), PER_KEY)];
    assert_eq!(by_key, want.into_iter().collect(), "one claim: {PER_KEY} of each key, and the unkeyed tasks");
    ack_all(&h, &first).await;
    let holding: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let (most, ran) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(first.len())));
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (driver, q) = (h.driver.clone(), q.clone());
        let (holding, most, ran) = (holding.clone(), most.clone(), ran.clone());
        consumers.spawn(async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while ran.load(Ordering::SeqCst) < total && tokio::time::Instant::now() < deadline {
                let got = driver.dequeue(&q, 3).await.expect("dequeue");
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let keys: Vec<Option<String>> = got.iter().map(|d| d.envelope.as_ref().expect("decodes").key.clone()).collect();
                {
                    let mut holding = holding.lock().expect("lock");
                    for key in keys.iter().flatten() {
                        let n = holding.entry(key.clone()).or_default();
                        *n += 1;
                        most.fetch_max(*n, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                {
                    let mut holding = holding.lock().expect("lock");
                    for key in keys.iter().flatten() {
                        *holding.get_mut(key).expect("held") -= 1;
                    }
                }
                ran.fetch_add(got.len(), Ordering::SeqCst);
                driver.ack(&Ack::each(&got.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
            }
        });
    }
    consumers.join_all().await;
    assert_eq!(ran.load(Ordering::SeqCst), total, "every task ran");
    let most = most.load(Ordering::SeqCst);
    assert!(most <= PER_KEY, "at most {PER_KEY} of one key held at once, saw {most}");
}

/// A key at its limit never holds back another key's tasks, even behind a backlog of its own
/// longer than a claim looks at: its tasks are parked, still counted as ready, and unparked in
/// order once it has room; clearing the limit unparks them all.
pub async fn saturated_key_does_not_hold_back_other_keys(h: Harness) {
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::per_key(1)).await.expect("set limits");
    let hot: Vec<_> = (0..250).map(|_| keyed(&h, &q, "hot", LONG)).collect();
    h.driver.enqueue(&hot).await.expect("enqueue hot");
    let cold: Vec<_> = (0..3).map(|i| keyed(&h, &q, &format!("cold-{i}"), LONG)).collect();
    h.driver.enqueue(&cold).await.expect("enqueue cold");
    let first = h.driver.dequeue(&q, 1).await.expect("dequeue");
    assert_eq!(crate::testing::ids(&first), vec![hot[0].id], "the earliest task first");
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(h.driver.dequeue(&q, 1).await.expect("dequeue"));
        if got.len() == cold.len() {
            break;
        }
    }
    let got_ids = crate::testing::ids(&got);
    assert_eq!(
        got_ids,
        cold.iter().map(|t| t.id).collect::<Vec<_>>(),
        "the other keys' tasks, within a few claims, and none of the saturated key's"
    );
    if h.driver.supports(Capability::ExactStats) {
        let stats = h.driver.stats(&q).await.expect("stats");
        assert_eq!((stats.ready, stats.scheduled, stats.leased), (249, 0, 4), "parked tasks are ready, waiting for a place");
    }
    if h.driver.supports(Capability::Browse) {
        let ready = h.driver.list(&q, TaskState::Ready, 0, 300).await.expect("list ready");
        assert_eq!(ready.len(), 249, "listed as ready too");
        assert_eq!(h.driver.list(&q, TaskState::Ready, 240, 300).await.expect("list ready").len(), 9, "paged like any others");
        assert!(h.driver.list(&q, TaskState::Scheduled, 0, 300).await.expect("list scheduled").is_empty(), "not as scheduled");
        if h.driver.supports(Capability::TaskLookup) {
            let parked = h.driver.find(hot[200].id).await.expect("find").expect("stored");
            assert_eq!(parked.state, TaskState::Ready, "found as ready");
            assert!(parked.at <= crate::clock::SystemClock.now(), "at its own due time, not the parking offset");
        }
    }
    ack_all(&h, &got).await;
    ack_all(&h, &first).await;
    let next = h.driver.dequeue(&q, 5).await.expect("dequeue");
    assert_eq!(crate::testing::ids(&next), vec![hot[1].id], "the key's place taken by its next task in order");
    h.driver.set_limits(&q, QueueLimits::default()).await.expect("clear");
    let rest = claimed_eventually(&h, &q, 300, "the parked tasks, once the limit is cleared").await;
    assert_eq!(rest.len(), 248, "every parked task is claimable again");
    ack_all(&h, &next).await;
    ack_all(&h, &rest).await;
}

/// A key's lease that runs out frees its place: the next claim takes one of the key's tasks.
pub async fn expired_lease_frees_its_key_slot(h: Harness) {
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::per_key(1)).await.expect("set limits");
    let short = Duration::from_millis(600);
    h.driver.enqueue(&[keyed(&h, &q, "k", short), keyed(&h, &q, "k", short)]).await.expect("enqueue");
    assert_eq!(h.driver.dequeue(&q, 5).await.expect("dequeue").len(), 1, "one place for the key");
    assert!(h.driver.dequeue(&q, 5).await.expect("dequeue").is_empty(), "the key's place is held");
    let next = claimed_eventually(&h, &q, 5, "a claim of the key once the lease ran out").await;
    assert_eq!(next.len(), 1, "still one place: the expired lease counts for nothing");
    ack_all(&h, &next).await;
}

/// A dead task moved back to its queue keeps its key: with 1 per key, it waits while another
/// task of its key is leased, as it did before it died.
pub async fn requeued_dead_task_keeps_its_key(h: Harness) {
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::per_key(1)).await.expect("set limits");
    let (first, second) = (keyed(&h, &q, "k", LONG), keyed(&h, &q, "k", LONG));
    h.driver.enqueue(&[first.clone(), second.clone()]).await.expect("enqueue");
    let got = h.driver.dequeue(&q, 5).await.expect("dequeue");
    assert_eq!(crate::testing::ids(&got), vec![first.id], "one of the key");
    h.driver.dead_letter(&got[0].lease, "dies", LONG).await.expect("dead-letter");
    let next = claimed_eventually(&h, &q, 5, "the key's next task once the first died").await;
    assert_eq!(crate::testing::ids(&next), vec![second.id], "the key's place went to its next task");
    assert_eq!(h.driver.requeue_dead(&q, crate::driver::DeadSelector::All).await.expect("requeue"), 1);
    assert!(h.driver.dequeue(&q, 5).await.expect("dequeue").is_empty(), "the retried task waits for its key's place");
    ack_all(&h, &next).await;
    let back = claimed_eventually(&h, &q, 5, "the retried task once its key has room").await;
    assert_eq!(crate::testing::ids(&back), vec![first.id]);
    ack_all(&h, &back).await;
}

/// A parked task is flushed as ready, never as scheduled: with 1 per key, one claim leases a
/// key's first task and parks its next two; a task due in an hour is the only scheduled one.
pub async fn parked_tasks_are_flushed_as_ready(h: Harness) {
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::per_key(1)).await.expect("set limits");
    let keyed_tasks: Vec<_> = (0..3).map(|_| keyed(&h, &q, "k", LONG)).collect();
    h.driver.enqueue(&keyed_tasks).await.expect("enqueue");
    let later = crate::Envelope { not_before: crate::clock::SystemClock.now() + 3_600_000, ..h.envelope(&q, LONG) };
    h.driver.enqueue(std::slice::from_ref(&later)).await.expect("enqueue later");
    let got = h.driver.dequeue(&q, 5).await.expect("dequeue");
    assert_eq!(crate::testing::ids(&got), vec![keyed_tasks[0].id], "the key's first; its next two are parked");
    match h.driver.purge_waiting(&q, crate::driver::Waiting::Scheduled).await {
        Err(DriverError::Unsupported(_)) => {
            assert_eq!(h.driver.purge(&q).await.expect("purge"), 3, "the parked two and the scheduled one, not the leased");
        }
        scheduled => {
            assert_eq!(scheduled.expect("flush scheduled"), 1, "only the task due in an hour is scheduled");
            let ready = h.driver.purge_waiting(&q, crate::driver::Waiting::Ready).await.expect("flush ready");
            assert_eq!(ready, 2, "the parked tasks are ready");
        }
    }
    ack_all(&h, &got).await;
    assert!(h.driver.dequeue(&q, 5).await.expect("dequeue").is_empty(), "nothing left, parked or not");
}

/// A backend that cannot limit a queue per key refuses to, with an error saying so.
pub async fn per_key_limits_are_refused_where_the_backend_cannot_enforce_them(h: Harness) {
    let q = h.queue("q");
    if h.driver.supports(Capability::KeyedLimits) {
        return;
    }
    let err = h.driver.set_limits(&q, QueueLimits::per_key(1)).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
    assert!(err.to_string().contains("limiting a queue"), "saying what: {err}");
    assert!(!h.driver.limits().await.expect("limits").iter().any(|(name, _)| *name == q), "nothing stored");
}

/// Claims until `want` tasks of `queue` were taken or the rules' patience ran out; returns them
/// in the order taken, each with how long after `since` its claim returned.
async fn drain_timed(h: &Harness, queue: &str, want: usize, since: tokio::time::Instant) -> Vec<(crate::Delivery, Duration)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < want && tokio::time::Instant::now() < deadline {
        let batch = h.driver.dequeue(queue, want).await.expect("dequeue");
        let at = since.elapsed();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        ack_all(h, &batch).await;
        got.extend(batch.into_iter().map(|d| (d, at)));
    }
    got
}

/// With a rate of 4 starts per 800 ms for the queue, eight consumers racing take 4 between
/// them; acking them frees no start; the next 4 come no sooner than a window after the first
/// claim, and so on until all 10 ran: starts, not leases, are what a rate counts.
pub async fn rate_limited_queue_starts_at_most_n_per_window(h: Harness) {
    const STARTS: usize = 4;
    const WINDOW: Duration = Duration::from_millis(800);
    let q = h.queue("q");
    h.driver.set_limits(&q, QueueLimits::rate(Rate::new(STARTS as u32, WINDOW))).await.expect("set limits");
    assert!(h.driver.limits().await.expect("limits").contains(&(q.clone(), QueueLimits::rate(Rate::new(STARTS as u32, WINDOW)))), "listed");
    let tasks: Vec<_> = (0..10).map(|i| if i % 2 == 0 { h.envelope(&q, LONG) } else { keyed(&h, &q, "k", LONG) }).collect();
    h.driver.enqueue(&tasks).await.expect("enqueue");
    let since = tokio::time::Instant::now();
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (driver, q) = (h.driver.clone(), q.clone());
        racing.spawn(async move { driver.dequeue(&q, 3).await.expect("dequeue") });
    }
    let first: Vec<_> = racing.join_all().await.into_iter().flatten().collect();
    assert_eq!(first.len(), STARTS, "eight racing claims start the rate between them, no more, no fewer");
    ack_all(&h, &first).await;
    let rest = drain_timed(&h, &q, tasks.len() - STARTS, since).await;
    assert_eq!(rest.len(), tasks.len() - STARTS, "every task ran, a window's worth at a time");
    for (i, (_, at)) in rest.iter().enumerate() {
        let window = (i / STARTS) as u32 + 1;
        assert!(
            *at + Duration::from_millis(2) >= WINDOW * window,
            "start {} came {at:?} after the first claim, before window {window} had passed",
            i + STARTS + 1
        );
    }
    h.driver.set_limits(&q, QueueLimits::default()).await.expect("clear");
}

/// A rate for the whole queue binds beside a cap per key too (the claims that pick by key log
/// and count it the same way): 3 starts per window over keys of their own, then none until the
/// window has passed, then the rest.
pub async fn queue_rate_binds_beside_a_cap_per_key(h: Harness) {
    const WINDOW: Duration = Duration::from_millis(800);
    let q = h.queue("q");
    let limits = QueueLimits::per_key(10).with_rate(Some(Rate::new(3, WINDOW)));
    if !h.driver.supports(Capability::KeyedLimits) {
        assert!(h.driver.set_limits(&q, limits).await.is_err(), "a cap per key is refused without limits per key");
        return;
    }
    h.driver.set_limits(&q, limits).await.expect("set limits");
    let tasks: Vec<_> = (0..6).map(|i| keyed(&h, &q, &format!("k{i}"), LONG)).collect();
    h.driver.enqueue(&tasks).await.expect("enqueue");
    let since = tokio::time::Instant::now();
    let first = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(crate::testing::ids(&first), tasks[..3].iter().map(|t| t.id).collect::<Vec<_>>(), "the rate's 3, in order");
    ack_all(&h, &first).await;
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "none more within the window");
    let rest = drain_timed(&h, &q, 3, since).await;
    assert_eq!(rest.len(), 3, "the rest once the window passed");
    assert!(
        rest.iter().all(|(_, at)| *at + Duration::from_millis(2) >= WINDOW),
        "not before the window passed: {:?}",
        rest.iter().map(|r| r.1).collect::<Vec<_>>()
    );
    h.driver.set_limits(&q, QueueLimits::default()).await.expect("clear");
}

/// With 3 starts per second per key, a key's tasks start 3 a window, in order, while the other
/// key's and the unkeyed tasks start at once: a key over its rate is parked, not holding others
/// back, and unparked once its window has room again.
pub async fn rate_limited_key_starts_at_most_n_per_window(h: Harness) {
    const STARTS: usize = 3;
    const WINDOW: Duration = Duration::from_millis(1000);
    let q = h.queue("q");
    let rate = QueueLimits::rate(Rate::new(STARTS as u32, WINDOW).per_key());
    if !h.driver.supports(Capability::KeyedLimits) {
        let err = h.driver.set_limits(&q, rate).await.expect_err("a rate per key is refused without limits per key");
        assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
        return;
    }
    h.driver.set_limits(&q, rate).await.expect("set limits");
    let hot: Vec<_> = (0..8).map(|_| keyed(&h, &q, "hot", LONG)).collect();
    h.driver.enqueue(&hot).await.expect("enqueue hot");
    let others = [keyed(&h, &q, "cold", LONG), keyed(&h, &q, "cold", LONG), h.envelope(&q, LONG)];
    h.driver.enqueue(&others).await.expect("enqueue others");
    let since = tokio::time::Instant::now();
    let first = h.driver.dequeue(&q, 20).await.expect("dequeue");
    let mut expected: Vec<_> = hot[..STARTS].iter().map(|t| t.id).collect();
    expected.extend(others.iter().map(|t| t.id));
    assert_eq!(crate::testing::ids(&first), expected, "the key's first 3 in order, and every other task at once");
    ack_all(&h, &first).await;
    assert!(h.driver.dequeue(&q, 20).await.expect("dequeue").is_empty(), "acked starts still count within the window");
    let rest = drain_timed(&h, &q, hot.len() - STARTS, since).await;
    let ids: Vec<_> = rest.iter().map(|(d, _)| d.lease.id).collect();
    assert_eq!(ids, hot[STARTS..].iter().map(|t| t.id).collect::<Vec<_>>(), "the rest of the key's tasks, in order");
    for (i, (_, at)) in rest.iter().enumerate() {
        let window = (i / STARTS) as u32 + 1;
        assert!(
            *at + Duration::from_millis(2) >= WINDOW * window,
            "the key's start {} came {at:?} after the first claim, before window {window} had passed",
            i + STARTS + 1
        );
    }
    h.driver.set_limits(&q, QueueLimits::default()).await.expect("clear");
}

/// A backend that cannot enforce a rate refuses one, with an error saying so, and stores nothing.
pub async fn rate_limits_are_refused_where_the_backend_cannot_enforce_them(h: Harness) {
    let q = h.queue("q");
    if h.driver.supports(Capability::RateLimits) {
        return;
    }
    let err = h.driver.set_limits(&q, QueueLimits::rate(Rate::new(1, Duration::from_secs(1)))).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
    assert!(err.to_string().contains("limiting a queue"), "saying what: {err}");
    assert!(!h.driver.limits().await.expect("limits").iter().any(|(name, _)| *name == q), "nothing stored");
}
