//! The rules of the [`Driver`](crate::Driver) contract, one function each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{Harness, eventually, ids};

mod browse;
mod cancel;
mod history;
mod limits;
mod notice;
mod pause;
mod progress;
mod results;
mod schedule;
mod unique;
use crate::clock::{Clock, SystemClock};
use crate::driver::{Ack, Capability, DeadSelector, EnqueueOutcome, TaskState, Totals, WorkerInfo};
use crate::envelope::TaskId;
use crate::error::DriverError;
pub use browse::*;
pub use cancel::*;
pub use history::*;
pub use limits::*;
pub use notice::*;
pub use pause::*;
pub use progress::*;
pub use results::*;
pub use schedule::*;
pub use unique::*;

/// Every rule with the capability it needs (`None`: none), in the order the tests are
/// generated: the one place a rule is declared. [`conformance_tests!`](crate::conformance_tests)
/// expands `$m!($args; <this list>)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rules {
    ($m:ident($($args:tt)*)) => {
        $crate::$m!($($args)*;
            enqueued_task_is_delivered_with_attempt_one: None,
            dequeue_of_an_empty_queue_returns_nothing: None,
            leased_task_is_invisible_until_settled: None,
            ack_deletes_the_task: None,
            expired_lease_redelivers_with_next_attempt: None,
            settling_a_lost_lease_reports_lease_lost: Fencing,
            extend_lease_keeps_task_invisible_past_its_first_lease: ExtendLease,
            nack_with_delay_hides_task_until_due: None,
            release_returns_task_without_spending_an_attempt: None,
            dead_task_is_never_delivered: None,
            dead_letter_records_error_and_attempt: ListDead,
            requeue_dead_resets_attempts: None,
            purge_dead_empties_the_dead_store: None,
            headers_survive_retry_release_and_dead_letter_replay: None,
            queues_are_isolated: None,
            delayed_enqueue_is_invisible_until_due: None,
            task_due_before_claimed_ones_is_still_delivered: None,
            dequeue_returns_at_most_max_in_due_order: None,
            bulk_enqueue_then_drain_loses_nothing: None,
            enqueue_of_an_existing_id_stores_nothing_new: IdempotentEnqueue,
            concurrent_enqueues_of_one_id_store_it_once: IdempotentEnqueue,
            find_reports_every_state_by_id: TaskLookup,
            acked_task_result_is_readable_until_its_ttl: Results,
            only_the_settling_attempt_writes_the_result: Results,
            waiter_that_starts_after_completion_still_gets_the_result: Results,
            waiter_gets_expired_not_a_hang_when_the_result_is_gone: Results,
            failed_and_dead_tasks_keep_their_error_for_the_failure_ttl: DeadExpiry,
            find_tells_when_the_latest_delivery_started: TaskLookup,
            a_wait_is_refused_where_results_are_not_kept: None,
            cancelled_waiting_task_is_never_delivered: Cancel,
            cancel_of_a_leased_task_is_reported_by_the_next_lease_extension: Cancel,
            cancel_request_survives_when_no_notification_arrives: Cancel,
            cancelled_task_is_neither_retried_nor_dead_lettered: Cancel,
            cancelled_task_whose_holder_dies_is_not_run_again: Cancel,
            cancel_of_a_finished_task_reports_already_finished: Cancel,
            a_cancel_is_refused_where_the_backend_cannot_cancel: None,
            settled_tasks_are_noticed: ResultNotify,
            cancel_requests_are_noticed: CancelNotify,
            progress_is_found_while_the_task_runs: Progress,
            progress_from_a_lost_lease_is_refused: Progress,
            every_attempts_error_is_kept_in_order: ErrorHistory,
            each_failure_names_its_worker_and_a_leased_task_its_holder: ErrorHistory,
            paused_queue_is_not_claimed_until_resumed: PauseQueues,
            pause_is_refused_where_the_backend_cannot_pause: None,
            claims_never_exceed_the_queue_limit_with_many_consumers: QueueLimits,
            expired_lease_frees_its_queue_place: QueueLimits,
            queue_limit_is_listed_changed_and_cleared: QueueLimits,
            queue_limits_are_refused_where_the_backend_cannot_enforce_them: None,
            claims_never_exceed_the_per_key_limit_with_many_consumers: KeyedLimits,
            saturated_key_does_not_hold_back_other_keys: KeyedLimits,
            expired_lease_frees_its_key_slot: KeyedLimits,
            requeued_dead_task_keeps_its_key: KeyedLimits,
            parked_tasks_are_flushed_as_ready: KeyedLimits,
            per_key_limits_are_refused_where_the_backend_cannot_enforce_them: None,
            rate_limited_queue_starts_at_most_n_per_window: RateLimits,
            rate_limited_key_starts_at_most_n_per_window: RateLimits,
            queue_rate_binds_beside_a_cap_per_key: RateLimits,
            rate_limits_are_refused_where_the_backend_cannot_enforce_them: None,
            duplicate_unique_key_is_not_stored_while_the_first_waits: UniqueKeys,
            concurrent_enqueues_of_one_unique_key_store_exactly_one: UniqueKeys,
            unique_key_until_start_is_released_when_the_task_is_leased: UniqueKeys,
            unique_key_until_done_is_held_through_retries_and_released_by_ack_dead_letter_purge_or_cancel: UniqueKeys,
            unique_key_with_ttl_blocks_until_expiry_even_after_the_task_finished: UniqueKeys,
            stale_unique_key_whose_owner_is_gone_does_not_block: UniqueKeys,
            replace_and_debounce_rewrite_the_holder_while_it_waits: UniqueKeys,
            unique_dispatch_is_refused_by_a_driver_without_unique_keys: None,
            schedule_slot_fires_once_with_many_claimers: ScheduleClaims,
            claimed_slot_and_its_task_are_stored_together: ScheduleClaims,
            older_slot_cannot_be_claimed_after_a_newer_one: ScheduleClaims,
            paused_schedule_claims_nothing: ScheduleClaims,
            schedules_list_their_last_slot_after_restart: ScheduleClaims,
            schedule_claims_are_refused_where_the_backend_cannot_claim: None,
            list_pages_through_each_state_in_order: Browse,
            delete_removes_any_task_but_a_leased_one: Browse,
            dead_pages_by_cursor_list_each_dead_task_once_oldest_first: Browse,
            concurrent_consumers_never_double_deliver: None,
            stats_count_ready_scheduled_leased_and_dead: ExactStats,
            oldest_ready_age_counts_only_ready_tasks: OldestReadyAge,
            totals_count_each_acked_and_dead_lettered_task_once: Totals,
            purge_removes_ready_but_not_leased: None,
            purge_removes_scheduled_tasks: PurgeScheduled,
            purge_waiting_deletes_only_what_it_is_asked_for: None,
            queues_lists_every_queue_holding_tasks: None,
            wait_ready_wakes_on_enqueue: WakeOnEnqueue,
            wait_ready_returns_when_a_delayed_task_falls_due: None,
            dequeue_never_waits_longer_than_its_bound: None,
            server_info_tells_version_clock_and_schema: ServerInfo,
            wait_ready_on_an_idle_queue_ends_within_its_timeout_and_a_request_deadline: None,
            hostile_queue_names_are_rejected: None,
            hostile_task_names_are_stored_as_data_or_refused: None,
            stop_prefetch_gives_back_undelivered_tasks_unspent: None,
            registered_worker_is_listed_until_deregistered_or_expired: WorkerRegistry
        );
    };
}

const LONG: Duration = Duration::from_secs(60);
const SHORT_LEASE: Duration = Duration::from_millis(400);
const PATIENCE: Duration = Duration::from_secs(10);

fn now() -> u64 {
    SystemClock.now()
}

/// A task comes out as it went in, leased, with attempt 1.
pub async fn enqueued_task_is_delivered_with_attempt_one(h: Harness) {
    let q = h.queue("q");
    let mut sent = h.envelope(&q, LONG);
    sent.headers.insert("trace-id".into(), "abc123".into());
    sent.timeout_ms = Some(1234);
    sent.payload = vec![0x92, 0x01, 0xa1, b'x'];
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");

    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(got.len(), 1, "exactly the one task is delivered");
    let d = &got[0];
    assert_eq!(d.attempt, 1, "first delivery is attempt 1");
    assert_eq!(d.lease.id, sent.id);
    assert_eq!(d.lease.queue, q);
    assert!(d.lease.expires_at > now(), "lease expires in the future");
    let env = d.envelope.as_ref().expect("stored envelope decodes");
    let mut expected = sent.clone();
    expected.attempt = 1;
    assert_eq!(env, &expected, "every envelope field round-trips, with attempt set to the delivery");
}

/// Dequeue on an empty queue returns an empty list (it does not wait).
pub async fn dequeue_of_an_empty_queue_returns_nothing(h: Harness) {
    let got = tokio::time::timeout(Duration::from_secs(5), h.driver.dequeue(&h.queue("empty"), 10))
        .await
        .expect("dequeue returns without waiting for tasks")
        .expect("dequeue");
    assert!(got.is_empty());
}

/// The contract's bound on `dequeue`: it never waits for tasks to arrive. A broker driver may
/// wait briefly for deliveries the broker already sent ([`DEQUEUE_BOUND`]), on an empty queue as
/// on one whose every task is leased.
pub async fn dequeue_never_waits_longer_than_its_bound(h: Harness) {
    let (empty, busy) = (h.queue("empty"), h.queue("busy"));
    h.driver.enqueue(&[h.envelope(&busy, LONG)]).await.expect("enqueue");
    let held = eventually(PATIENCE, "the task to be leased", || async { h.driver.dequeue(&busy, 1).await.expect("dequeue").pop() }).await;
    for q in [&empty, &busy, &empty, &busy] {
        let started = std::time::Instant::now();
        let got = h.driver.dequeue(q, 10).await.expect("dequeue");
        assert!(got.is_empty(), "nothing is ready in {q}");
        assert!(started.elapsed() <= DEQUEUE_BOUND, "dequeue took {:?}, over its bound of {DEQUEUE_BOUND:?}", started.elapsed());
    }
    h.driver.ack(&[held.lease.into()]).await.expect("ack");
}

/// How long `dequeue` may take when nothing is ready (RabbitMQ waits up to 400 ms for
/// deliveries on their way), with room for a loaded machine.
pub const DEQUEUE_BOUND: Duration = Duration::from_millis(1000);

/// `server_info` answers: a version when the server tells one, a clock near ours when it has
/// one, and a schema with nothing pending once migrated (the harness's drivers are).
pub async fn server_info_tells_version_clock_and_schema(h: Harness) {
    let before = now();
    let info = h.driver.server_info().await.expect("server_info answers");
    let after = now();
    if let Some(v) = &info.version {
        assert!(!v.trim().is_empty(), "a version, when given, says something");
    }
    if let Some(clock) = info.clock_ms {
        let skew = (clock as i64 - ((before + after) / 2) as i64).abs();
        assert!(skew < 60_000, "the server's clock is within a minute of ours on one machine: {skew} ms");
    }
    if let Some(schema) = &info.schema {
        assert!(schema.pending.is_empty() && !schema.applied.is_empty(), "a migrated schema: {schema:?}");
    }
}

/// While leased, a task is not delivered again.
pub async fn leased_task_is_invisible_until_settled(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, LONG)]).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(first.len(), 1);
    let second = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert!(second.is_empty(), "a leased task is invisible to other consumers");
}

/// An acked task is gone for good.
pub async fn ack_deletes_the_task(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    let got = h.driver.dequeue(&q, 1).await.expect("dequeue");
    let lost = h.driver.ack(&[got[0].lease.clone().into()]).await.expect("ack");
    assert!(lost.is_empty(), "a live lease acks");
    // Past the lease it would have come back had the ack not deleted it.
    tokio::time::sleep(SHORT_LEASE * 2).await;
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "acked task never comes back");
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!(s.counts(), [0; 4]);
    assert_eq!(s.totals.is_some(), h.driver.supports(Capability::Totals), "totals are reported exactly when declared: {s:?}");
}

/// A lease that runs out makes the task ready again, counted as the next attempt.
pub async fn expired_lease_redelivers_with_next_attempt(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 1).await.expect("dequeue");
    assert_eq!(first[0].attempt, 1);
    let again = eventually(PATIENCE, "redelivery after the lease expired", || async {
        let got = h.driver.dequeue(&q, 1).await.expect("dequeue");
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(again[0].lease.id, first[0].lease.id);
    assert_eq!(again[0].attempt, 2, "the crashed delivery counts as an attempt");
    assert_eq!(again[0].envelope.as_ref().expect("decodes").attempt, 2);
    assert_ne!(again[0].lease.token, first[0].lease.token, "each delivery has its own lease token");
}

/// The old holder of an expired, re-leased task can neither settle nor extend it.
pub async fn settling_a_lost_lease_reports_lease_lost(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    let old = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0).lease;
    let new = eventually(PATIENCE, "redelivery", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await.lease;

    let lost = h.driver.ack(&[old.clone().into()]).await.expect("ack call succeeds");
    assert_eq!(lost, vec![old.id], "ack with a lost lease reports it");
    assert!(matches!(h.driver.nack(&old, Duration::ZERO, "x").await, Err(DriverError::LeaseLost(id)) if id == old.id));
    assert!(matches!(h.driver.dead_letter(&old, "x", LONG).await, Err(DriverError::LeaseLost(_))));
    assert!(matches!(h.driver.release(&old).await, Err(DriverError::LeaseLost(_))));
    if h.driver.supports(Capability::ExtendLease) {
        assert!(matches!(h.driver.extend_lease(&old, LONG).await, Err(DriverError::LeaseLost(_))));
    }
    assert_eq!(h.driver.stats(&q).await.expect("stats").dead, 0, "the stale dead-letter changed nothing");
    assert!(h.driver.ack(&[new.into()]).await.expect("ack").is_empty(), "the new holder still acks");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0; 4]);
}

/// Extending a lease keeps the task invisible past its original expiry.
pub async fn extend_lease_keeps_task_invisible_past_its_first_lease(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0).lease;
    let renewed = h.driver.extend_lease(&lease, LONG).await.expect("extend");
    assert_eq!(renewed.id, lease.id);
    assert!(renewed.expires_at >= now() + LONG.as_millis() as u64 - 5_000, "expiry moved to ~now + by");
    // Showing that nothing happens needs the time to pass.
    tokio::time::sleep(SHORT_LEASE * 3).await;
    assert!(h.driver.dequeue(&q, 1).await.expect("dequeue").is_empty(), "extended lease still hides the task");
    assert_eq!(h.driver.stats(&q).await.expect("stats").leased, 1);
    assert!(h.driver.ack(&[renewed.into()]).await.expect("ack").is_empty(), "the renewed lease acks");
}

/// A nack with a delay makes the task due only after the delay, same attempt count kept.
pub async fn nack_with_delay_hides_task_until_due(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, LONG)]).await.expect("enqueue");
    let lease = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0).lease;
    let delay = Duration::from_millis(700);
    let nacked_at = now();
    h.driver.nack(&lease, delay, "transient trouble").await.expect("nack");
    assert!(h.driver.dequeue(&q, 1).await.expect("dequeue").is_empty(), "not due yet");
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!((s.ready, s.scheduled, s.leased), (0, 1, 0), "a nacked task waits as scheduled");
    let d = eventually(PATIENCE, "the retry to fall due", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await;
    assert!(now() + 50 >= nacked_at + delay.as_millis() as u64, "delivered no earlier than its delay");
    assert_eq!(d.attempt, 2, "the retry is the next attempt");
}

/// Release gives a task back ready at once and does not count the delivery.
pub async fn release_returns_task_without_spending_an_attempt(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, LONG)]).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    h.driver.release(&first.lease).await.expect("release");
    let again = h.driver.dequeue(&q, 1).await.expect("dequeue");
    assert_eq!(again.len(), 1, "released task is ready at once");
    assert_eq!(again[0].attempt, 1, "the released delivery did not count");
}

/// A dead-lettered task is out of circulation and counted as dead.
pub async fn dead_task_is_never_delivered(h: Harness) {
    let q = h.queue("q");
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    let d = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
    tokio::time::sleep(SHORT_LEASE * 2).await;
    assert!(h.driver.dequeue(&q, 1).await.expect("dequeue").is_empty(), "a dead task is never delivered");
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!((s.ready, s.scheduled, s.leased, s.dead), (0, 0, 0, 1));
}

/// Dead-lettering keeps the error, the attempt count, the time and the envelope, listed without
/// consuming them.
pub async fn dead_letter_records_error_and_attempt(h: Harness) {
    let q = h.queue("q");
    let sent = h.envelope(&q, SHORT_LEASE);
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    h.driver.dequeue(&q, 1).await.expect("dequeue");
    let second = eventually(PATIENCE, "redelivery", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await;
    let before = now();
    h.driver.dead_letter(&second.lease, "boom: it broke", LONG).await.expect("dead-letter");
    for _ in 0..2 {
        let dead = h.driver.dead(&q, 10).await.expect("dead");
        assert_eq!(dead.len(), 1, "listing does not consume");
        assert_eq!(dead[0].id, sent.id);
        assert_eq!(dead[0].queue, q);
        assert_eq!(dead[0].error, "boom: it broke");
        assert_eq!(dead[0].attempt, 2, "the attempt count at death is kept");
        assert!(dead[0].dead_at + 1000 >= before && dead[0].dead_at <= now() + 1000);
        let env = dead[0].envelope.as_ref().expect("dead envelope decodes");
        assert_eq!((env.id, &env.name, &env.payload), (sent.id, &sent.name, &sent.payload));
        assert_eq!(env.attempt, 2, "the dead envelope says the same attempt count");
    }
    assert_eq!(h.driver.dead(&q, usize::MAX).await.expect("dead with no practical limit").len(), 1, "any limit is accepted");
}

/// Requeueing from dead makes tasks ready at once with the attempt count reset, and their
/// deliveries say they are replays (a first dispatch's never do).
pub async fn requeue_dead_resets_attempts(h: Harness) {
    let q = h.queue("q");
    let (a, b) = (h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[a.clone(), b.clone()]).await.expect("enqueue");
    for d in h.driver.dequeue(&q, 2).await.expect("dequeue") {
        assert!(!d.replayed, "a dispatched task's first delivery is no replay");
        h.driver.dead_letter(&d.lease, "dead", LONG).await.expect("dead-letter");
    }
    assert_eq!(h.driver.requeue_dead(&q, DeadSelector::Ids(vec![TaskId::new()])).await.expect("requeue"), 0, "unknown ids move nothing");
    assert_eq!(h.driver.requeue_dead(&q, DeadSelector::Ids(vec![a.id])).await.expect("requeue"), 1);
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(ids(&got), vec![a.id], "only the chosen task is back");
    assert_eq!(got[0].attempt, 1, "attempts start over");
    assert!(got[0].replayed, "the delivery says it is a replay");
    assert_eq!(h.driver.stats(&q).await.expect("stats").dead, 1);
    assert_eq!(h.driver.requeue_dead(&q, DeadSelector::All).await.expect("requeue"), 1);
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(ids(&got), vec![b.id]);
    assert_eq!(got[0].attempt, 1);
    assert!(got[0].replayed, "a replay of all dead tasks marks each");
    assert_eq!(h.driver.stats(&q).await.expect("stats").dead, 0);
}

/// Headers (trace context, correlation ids) and the defaulted mark come back unchanged after a
/// retry, a release and a dead-letter replay: a trace can link every delivery to its dispatch.
pub async fn headers_survive_retry_release_and_dead_letter_replay(h: Harness) {
    let q = h.queue("q");
    let mut sent = h.envelope(&q, LONG);
    sent.headers.insert("traceparent".into(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    sent.headers.insert("tracestate".into(), "vendor=opaque,other=1".into());
    sent.defaulted = crate::envelope::Defaulted::LEASE;
    h.driver.enqueue(std::slice::from_ref(&sent)).await.expect("enqueue");
    let same = |d: &crate::driver::Delivery, after: &str| {
        let e = d.envelope.as_ref().unwrap_or_else(|e| panic!("after {after}: undecodable: {e}"));
        assert_eq!(e.headers, sent.headers, "headers after {after}");
        assert_eq!(e.defaulted, sent.defaulted, "defaulted mark after {after}");
    };
    let d = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    same(&d, "enqueue");
    h.driver.nack(&d.lease, Duration::ZERO, "first failure").await.expect("nack");
    let d = eventually_one(&h, &q).await;
    same(&d, "a retry");
    assert!(!d.replayed, "a retry is no replay");
    h.driver.release(&d.lease).await.expect("release");
    let d = eventually_one(&h, &q).await;
    same(&d, "a release");
    assert!(!d.replayed, "a release is no replay");
    h.driver.dead_letter(&d.lease, "gave up", LONG).await.expect("dead-letter");
    assert_eq!(h.driver.requeue_dead(&q, DeadSelector::All).await.expect("replay"), 1);
    let d = eventually_one(&h, &q).await;
    same(&d, "a dead-letter replay");
    assert!(d.replayed && d.attempt == 1, "a replay starts at attempt 1 and says it is one");
    h.driver.nack(&d.lease, Duration::ZERO, "fails again").await.expect("nack");
    let d = eventually_one(&h, &q).await;
    same(&d, "a retry of a replay");
    assert!(d.replayed, "a replayed task stays one through its retries");
}

/// The one task of `q`, once it is ready again.
async fn eventually_one(h: &Harness, q: &str) -> crate::driver::Delivery {
    eventually(PATIENCE, "the task to be ready again", || async { h.driver.dequeue(q, 1).await.expect("dequeue").pop() }).await
}

/// Purging the dead store deletes only dead tasks of that queue.
pub async fn purge_dead_empties_the_dead_store(h: Harness) {
    let (q, other) = (h.queue("q"), h.queue("other"));
    h.driver.enqueue(&[h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&other, LONG)]).await.expect("enqueue");
    let d = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    h.driver.dead_letter(&d.lease, "x", LONG).await.expect("dead");
    let d = h.driver.dequeue(&other, 1).await.expect("dequeue").remove(0);
    h.driver.dead_letter(&d.lease, "x", LONG).await.expect("dead");
    assert_eq!(h.driver.purge_dead(&q).await.expect("purge dead"), 1);
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [1, 0, 0, 0]);
    assert_eq!(h.driver.stats(&other).await.expect("stats").dead, 1, "other queues' dead are untouched");
}

/// Queues never see each other's tasks.
pub async fn queues_are_isolated(h: Harness) {
    let (a, b) = (h.queue("a"), h.queue("b"));
    let ta = h.envelope(&a, LONG);
    let tb = h.envelope(&b, LONG);
    h.driver.enqueue(&[ta.clone(), tb.clone()]).await.expect("enqueue");
    assert_eq!(ids(&h.driver.dequeue(&a, 10).await.expect("dequeue")), vec![ta.id]);
    assert_eq!(h.driver.stats(&b).await.expect("stats").ready, 1);
    h.driver.enqueue(&[h.envelope(&a, LONG)]).await.expect("enqueue");
    assert_eq!(h.driver.purge(&a).await.expect("purge"), 1);
    assert_eq!(ids(&h.driver.dequeue(&b, 10).await.expect("dequeue")), vec![tb.id], "purging a leaves b alone");
}

/// A task enqueued with a future `not_before` is not delivered before it.
pub async fn delayed_enqueue_is_invisible_until_due(h: Harness) {
    let q = h.queue("q");
    let mut e = h.envelope(&q, LONG);
    e.not_before = now() + 800;
    h.driver.enqueue(std::slice::from_ref(&e)).await.expect("enqueue");
    assert!(h.driver.dequeue(&q, 1).await.expect("dequeue").is_empty(), "not due yet");
    assert_eq!(h.driver.stats(&q).await.expect("stats").scheduled, 1);
    let d = eventually(PATIENCE, "the delayed task to fall due", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await;
    assert!(now() + 50 >= e.not_before, "not delivered before its not_before");
    assert_eq!((d.lease.id, d.attempt), (e.id, 1));
}

/// A task whose due time lies before tasks already claimed (enqueued with a past due time by
/// a host with a slow clock, say) is still delivered, even while later tasks keep coming out.
pub async fn task_due_before_claimed_ones_is_still_delivered(h: Harness) {
    let q = h.queue("q");
    let later: Vec<_> = (0..20).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&later).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 1).await.expect("dequeue");
    assert_eq!(first.len(), 1);
    let mut early = h.envelope(&q, LONG);
    early.not_before = now() - 3_600_000;
    h.driver.enqueue(std::slice::from_ref(&early)).await.expect("enqueue");
    let seen = eventually(PATIENCE, "the task due an hour ago", || async {
        let batch = h.driver.dequeue(&q, 1).await.expect("dequeue");
        batch.into_iter().find(|d| d.lease.id == early.id)
    })
    .await;
    assert_eq!(seen.attempt, 1);
}

/// `max` bounds a dequeue, and the earliest due tasks come out first (order *within* one batch
/// is free: the batch runs concurrently anyway).
pub async fn dequeue_returns_at_most_max_in_due_order(h: Harness) {
    let q = h.queue("q");
    let base = now() - 10_000;
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let mut e = h.envelope(&q, LONG);
            e.not_before = base + i * 1000;
            e
        })
        .rev()
        .collect();
    h.driver.enqueue(&tasks).await.expect("enqueue");
    let expected: Vec<TaskId> = tasks.iter().rev().map(|e| e.id).collect();
    let first: HashSet<TaskId> = ids(&h.driver.dequeue(&q, 3).await.expect("dequeue")).into_iter().collect();
    assert_eq!(first, expected[..3].iter().copied().collect(), "at most max, earliest due first");
    let rest: HashSet<TaskId> = ids(&h.driver.dequeue(&q, 3).await.expect("dequeue")).into_iter().collect();
    assert_eq!(rest, expected[3..].iter().copied().collect());
}

/// A large bulk enqueue is drained completely, each task exactly once.
pub async fn bulk_enqueue_then_drain_loses_nothing(h: Harness) {
    let q = h.queue("q");
    let sent: Vec<_> = (0..1000).map(|_| h.envelope(&q, LONG)).collect();
    let outcomes = h.driver.enqueue(&sent).await.expect("bulk enqueue");
    assert_eq!(outcomes, EnqueueOutcome::all_new(1000), "one outcome per envelope, each new");
    assert_eq!(h.driver.stats(&q).await.expect("stats").ready, 1000);
    let mut seen = HashSet::new();
    loop {
        let got = h.driver.dequeue(&q, 128).await.expect("dequeue");
        if got.is_empty() {
            break;
        }
        for d in &got {
            assert!(seen.insert(d.lease.id), "task {} delivered twice", d.lease.id);
        }
        let leases: Vec<_> = got.into_iter().map(|d| d.lease).collect();
        assert!(h.driver.ack(&Ack::each(&leases)).await.expect("ack").is_empty());
    }
    let expected: HashSet<_> = sent.iter().map(|e| e.id).collect();
    assert_eq!(seen, expected, "every task delivered");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0; 4]);
}

/// An id already stored is not stored again: enqueueing it once more while its task waits, while
/// it is leased or once it is dead changes nothing (the task keeps its envelope, its state and
/// its lease) and is reported `Exists`, as is a repeat within one batch; in a mixed batch only
/// the new ids are stored.
pub async fn enqueue_of_an_existing_id_stores_nothing_new(h: Harness) {
    use EnqueueOutcome::{Exists, New};
    let q = h.queue("q");
    // Made first, so due before the two that are leased next.
    let waiting = h.envelope(&q, LONG);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (leased, dead) = (h.envelope(&q, LONG), h.envelope(&q, LONG));
    assert_eq!(h.driver.enqueue(&[leased.clone(), dead.clone()]).await.expect("enqueue"), vec![New, New]);
    let mut held: HashMap<TaskId, _> = h.driver.dequeue(&q, 2).await.expect("dequeue").into_iter().map(|d| (d.lease.id, d)).collect();
    assert_eq!(held.len(), 2, "both tasks leased");
    let held_dead = held.remove(&dead.id).expect("the second task leased");
    let held = held.remove(&leased.id).expect("the first task leased");
    h.driver.dead_letter(&held_dead.lease, "dead", LONG).await.expect("dead-letter");
    assert_eq!(h.driver.enqueue(std::slice::from_ref(&waiting)).await.expect("enqueue"), vec![New]);

    // The same ids once more, with other arguments and headers, among a new id given twice.
    let again = |e: &crate::Envelope| {
        let mut e = e.clone();
        e.payload = vec![0x91, 0x01];
        e.headers.insert("again".into(), "1".into());
        e
    };
    let fresh = h.envelope(&q, LONG);
    let batch = [again(&waiting), fresh.clone(), again(&leased), again(&fresh), again(&dead)];
    let outcomes = h.driver.enqueue(&batch).await.expect("enqueue of known ids is no error");
    assert_eq!(outcomes, vec![Exists, New, Exists, Exists, Exists], "only the first occurrence of the one new id is stored");
    // Batches of distinct ids, which drivers may insert another way.
    let second = h.envelope(&q, LONG);
    let outcomes = h.driver.enqueue(&[again(&dead), second.clone()]).await.expect("enqueue");
    assert_eq!(outcomes, vec![Exists, New], "a dead id beside a new one");
    let outcomes = h.driver.enqueue(&[second.clone(), again(&leased)]).await.expect("enqueue");
    assert_eq!(outcomes, vec![Exists, Exists], "a waiting and a leased id");
    if h.driver.supports(Capability::ExactStats) {
        let stats = h.driver.stats(&q).await.expect("stats");
        assert_eq!((stats.ready, stats.leased, stats.dead), (3, 1, 1), "one task per id: {stats:?}");
    }

    // The leased task was not put back to wait, and the waiting one kept its first envelope.
    // The waiting task was due before the two leased at the start, so a driver's claim may
    // reach it only on its next scan from the head (see `task_due_before_claimed_ones_is_still_delivered`).
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + PATIENCE;
    while got.len() < 3 && tokio::time::Instant::now() < until {
        got.extend(h.driver.dequeue(&q, 10).await.expect("dequeue"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut expected = vec![waiting.id, fresh.id, second.id];
    expected.sort();
    assert_eq!(got_ids, expected, "the waiting task and the new ones, each once; not the leased or dead task");
    for d in &got {
        let env = d.envelope.as_ref().expect("decodes");
        assert_eq!(env.payload, vec![0x90], "task {} keeps the arguments it was first stored with", d.lease.id);
        assert!(!env.headers.contains_key("again"), "task {} keeps its first headers", d.lease.id);
    }
    let mut leases: Vec<_> = got.into_iter().map(|d| d.lease).collect();
    leases.push(held.lease);
    assert!(h.driver.ack(&Ack::each(&leases)).await.expect("ack").is_empty(), "every lease still holds, the first one's included");
    if h.driver.supports(Capability::ListDead) {
        let listed = h.driver.dead(&q, 10).await.expect("dead");
        assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), vec![dead.id], "the dead task is still dead, once");
    }
    for _ in 0..2 {
        // Twice: a claim that finds nothing makes the next one scan from the head.
        assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "nothing else was stored");
    }
}

/// Producers racing to enqueue one id (a retried request handled twice at once) store it once:
/// exactly one of them is told `New`, the rest `Exists`, whichever wins.
pub async fn concurrent_enqueues_of_one_id_store_it_once(h: Harness) {
    let q = h.queue("q");
    for round in 0..5 {
        let first = h.envelope(&q, LONG);
        let racers: Vec<_> = (0..8u8)
            .map(|n| {
                let driver = h.driver.clone();
                let mut e = first.clone();
                e.payload = vec![0x91, n];
                // Each racer's batch also holds a task of its own, so the race is inside a batch.
                let own = h.envelope(&q, LONG);
                tokio::spawn(async move { driver.enqueue(&[own, e]).await.expect("enqueue") })
            })
            .collect();
        let mut new = 0;
        for racer in racers {
            let outcomes = racer.await.expect("join");
            assert_eq!(outcomes[0], EnqueueOutcome::New, "each racer's own task is new");
            new += usize::from(outcomes[1] == EnqueueOutcome::New);
        }
        assert_eq!(new, 1, "round {round}: exactly one racer stored the shared id");
    }
    if h.driver.supports(Capability::ExactStats) {
        assert_eq!(h.driver.stats(&q).await.expect("stats").ready, 5 * 9, "5 rounds of 8 own tasks and one shared");
    }
}

/// Any stored task can be looked up by id, whichever queue holds it: ready and scheduled with
/// their due time, leased with its lease's expiry, retried with its error, dead with the
/// reason; an id never stored, or acked, is not found.
pub async fn find_reports_every_state_by_id(h: Harness) {
    use crate::driver::TaskState;
    let (q, other) = (h.queue("q"), h.queue("other"));
    let (leased, retried, dead, acked) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[leased.clone(), retried.clone(), dead.clone(), acked.clone()]).await.expect("enqueue");
    let mut held: HashMap<TaskId, _> = h.driver.dequeue(&q, 4).await.expect("dequeue").into_iter().map(|d| (d.lease.id, d)).collect();
    assert_eq!(held.len(), 4, "all four leased");
    let take = |held: &mut HashMap<TaskId, crate::Delivery>, id| held.remove(&id).expect("leased");
    let lease_of_leased = take(&mut held, leased.id).lease;
    h.driver.nack(&take(&mut held, retried.id).lease, Duration::from_secs(3600), "first failure").await.expect("nack");
    h.driver.dead_letter(&take(&mut held, dead.id).lease, "gave up", LONG).await.expect("dead-letter");
    assert!(h.driver.ack(&[take(&mut held, acked.id).lease.into()]).await.expect("ack").is_empty());
    let ready = h.envelope(&q, LONG);
    let mut scheduled = h.envelope(&other, LONG);
    scheduled.not_before = now() + 3_600_000;
    h.driver.enqueue(&[ready.clone(), scheduled.clone()]).await.expect("enqueue");

    let find = |id: TaskId| {
        let driver = h.driver.clone();
        async move { driver.find(id).await.expect("find") }
    };
    let r = find(ready.id).await.expect("the ready task is found");
    assert_eq!((r.id, r.queue.as_str(), r.state, r.attempt, r.last_error.as_deref()), (ready.id, q.as_str(), TaskState::Ready, 0, None));
    assert_eq!(r.envelope.as_ref().expect("decodes"), &ready, "the stored envelope");
    let r = find(scheduled.id).await.expect("the scheduled task is found, in its own queue");
    assert_eq!((r.queue.as_str(), r.state, r.at), (other.as_str(), TaskState::Scheduled, scheduled.not_before));
    let r = find(leased.id).await.expect("the leased task is found");
    assert_eq!((r.state, r.attempt), (TaskState::Leased, 1));
    assert!(r.at.abs_diff(lease_of_leased.expires_at) <= 1000, "until its lease's expiry: {} vs {}", r.at, lease_of_leased.expires_at);
    assert_eq!(r.envelope.as_ref().expect("decodes").attempt, 1, "the envelope carries the attempt");
    let r = find(retried.id).await.expect("the retried task is found");
    assert_eq!((r.state, r.attempt, r.last_error.as_deref()), (TaskState::Scheduled, 1, Some("first failure")));
    let r = find(dead.id).await.expect("the dead task is found");
    assert_eq!((r.queue.as_str(), r.state, r.attempt, r.last_error.as_deref()), (q.as_str(), TaskState::Dead, 1, Some("gave up")));
    assert_eq!(r.envelope.as_ref().expect("decodes").name, dead.name);
    assert!(find(acked.id).await.is_none(), "an acked task is gone");
    assert!(find(TaskId::new()).await.is_none(), "an id never stored is not found");
    h.driver.ack(&[lease_of_leased.into()]).await.expect("ack");
}

/// Consumers racing on one queue never receive the same task.
pub async fn concurrent_consumers_never_double_deliver(h: Harness) {
    let q = h.queue("q");
    let sent: Vec<_> = (0..600).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&sent).await.expect("enqueue");
    let driver = h.driver.clone();
    let consumers: Vec<_> = (0..6)
        .map(|_| {
            let (driver, q) = (Arc::clone(&driver), q.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = driver.dequeue(&q, 7).await.expect("dequeue");
                    if got.is_empty() {
                        return mine;
                    }
                    let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
                    mine.extend(ids(&got));
                    driver.ack(&Ack::each(&leases)).await.expect("ack");
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.expect("consumer"));
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no task went to two consumers");
    assert_eq!(unique, sent.iter().map(|e| e.id).collect::<HashSet<_>>(), "every task was consumed");
}

/// Puts 2 ready, 1 scheduled, 1 leased and 1 dead task in `q`; returns the lease.
async fn one_of_each_state(h: &Harness, q: &str) -> crate::driver::Lease {
    let mut later = h.envelope(q, LONG);
    later.not_before = now() + 60_000;
    let tasks = vec![h.envelope(q, LONG), h.envelope(q, LONG), h.envelope(q, LONG), h.envelope(q, LONG), later];
    h.driver.enqueue(&tasks).await.expect("enqueue");
    let mut got = h.driver.dequeue(q, 2).await.expect("dequeue");
    h.driver.dead_letter(&got[1].lease, "x", LONG).await.expect("dead");
    got.swap_remove(0).lease
}

/// Stats tell ready, scheduled, leased and dead apart.
pub async fn stats_count_ready_scheduled_leased_and_dead(h: Harness) {
    let q = h.queue("q");
    one_of_each_state(&h, &q).await;
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!(s.counts(), [2, 1, 1, 1], "ready, scheduled, leased, dead: {s:?}");
}

/// The oldest ready task's age counts ready tasks only: a scheduled task due in a minute and a
/// leased task due long ago never make it older; an empty queue reports zero.
pub async fn oldest_ready_age_counts_only_ready_tasks(h: Harness) {
    let q = h.queue("q");
    assert_eq!(h.driver.stats(&q).await.expect("stats").oldest_ready_age, Some(Duration::ZERO), "nothing ready: zero");
    let mut long_ago = h.envelope(&q, LONG);
    long_ago.not_before = now() - 600_000;
    h.driver.enqueue(&[long_ago]).await.expect("enqueue");
    assert_eq!(h.driver.dequeue(&q, 1).await.expect("dequeue").len(), 1, "the old task is leased");
    let mut ready = h.envelope(&q, LONG);
    ready.not_before = now() - 5_000;
    let mut later = h.envelope(&q, LONG);
    later.not_before = now() + 60_000;
    h.driver.enqueue(&[ready, later]).await.expect("enqueue");
    let s = h.driver.stats(&q).await.expect("stats");
    let age = s.oldest_ready_age.expect("the driver declares OldestReadyAge");
    assert!(
        age >= Duration::from_millis(4_900) && age < Duration::from_secs(60),
        "the ready task's ~5 s, not the leased one's 10 min: {s:?}"
    );
}

/// Succeeded and failed totals count each ack and dead letter once: a lost lease, a retry, a
/// release and a purge count nothing, a replayed dead task that then succeeds counts in both,
/// and queues keep their own totals.
pub async fn totals_count_each_acked_and_dead_lettered_task_once(h: Harness) {
    let (q, other) = (h.queue("q"), h.queue("other"));
    let totals = |q: String| {
        let h = &h;
        async move { h.driver.stats(&q).await.expect("stats").totals.expect("the driver declares Totals") }
    };
    assert_eq!(totals(q.clone()).await, Totals::default(), "a new queue has settled nothing");
    let sent: Vec<_> = (0..5).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&sent).await.expect("enqueue");
    h.driver.enqueue(&[h.envelope(&other, LONG)]).await.expect("enqueue other");
    let mut got = h.driver.dequeue(&q, 5).await.expect("dequeue");
    assert_eq!(got.len(), 5);
    let mut take = || got.pop().expect("five delivered");
    let (retried, released, dead) = (take(), take(), take());
    let acked: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
    // Kept where the backend keeps results: a kept ack counts once, as a plain one does.
    let keep = if h.driver.supports(Capability::Results) { LONG } else { Duration::ZERO };
    let first: Vec<Ack> = acked.iter().map(|lease| Ack { lease: lease.clone(), keep, result: None }).collect();
    assert!(h.driver.ack(&first).await.expect("ack").is_empty());
    if h.driver.supports(Capability::Fencing) {
        assert_eq!(h.driver.ack(&Ack::each(&acked)).await.expect("ack again").len(), 2, "the second ack finds the leases lost");
    }
    h.driver.nack(&retried.lease, Duration::from_secs(60), "retry later").await.expect("nack");
    h.driver.release(&released.lease).await.expect("release");
    h.driver.dead_letter(&dead.lease, "failed", LONG).await.expect("dead-letter");
    assert_eq!(totals(q.clone()).await, Totals { succeeded: 2, failed: 1 });
    assert_eq!(h.driver.requeue_dead(&q, DeadSelector::All).await.expect("requeue"), 1);
    let again = eventually(PATIENCE, "the replayed and the released task", || async {
        let got = h.driver.dequeue(&q, 2).await.expect("dequeue");
        (!got.is_empty()).then_some(got)
    })
    .await;
    let leases: Vec<_> = again.iter().map(|d| d.lease.clone()).collect();
    assert!(h.driver.ack(&Ack::each(&leases)).await.expect("ack").is_empty());
    // A task whose holder crashed: the purge may delete it with its expired lease on it.
    h.driver.enqueue(&[h.envelope(&q, SHORT_LEASE)]).await.expect("enqueue");
    assert_eq!(h.driver.dequeue(&q, 1).await.expect("dequeue").len(), 1);
    tokio::time::sleep(SHORT_LEASE * 2).await;
    h.driver.purge(&q).await.expect("purge");
    let expected = Totals { succeeded: 2 + leases.len() as u64, failed: 1 };
    assert_eq!(totals(q.clone()).await, expected, "{} more acked, the purge counts nothing", leases.len());
    assert_eq!(totals(other.clone()).await, Totals::default(), "the other queue settled nothing");
    if !keep.is_zero() {
        for lease in &acked {
            let kept = h.driver.find(lease.id).await.expect("find").map(|r| r.state);
            assert_eq!(kept, Some(TaskState::Succeeded), "the purge leaves kept tasks alone");
        }
    }
}

/// Purge deletes ready tasks and leaves leased and dead ones alone.
pub async fn purge_removes_ready_but_not_leased(h: Harness) {
    let q = h.queue("q");
    let leased = one_of_each_state(&h, &q).await;
    let purged = h.driver.purge(&q).await.expect("purge");
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!(s.ready, 0, "no ready task is left");
    assert_eq!((s.leased, s.dead), (1, 1), "leased and dead tasks are untouched");
    if h.driver.supports(Capability::PurgeScheduled) {
        assert_eq!((purged, s.scheduled), (3, 0), "two ready and one scheduled are purged");
    } else {
        assert_eq!((purged, s.scheduled), (2, 1), "two ready are purged, the scheduled one stays");
    }
    assert!(h.driver.ack(&[leased.into()]).await.expect("ack").is_empty(), "the leased task still acks");
}

/// `purge_waiting` deletes exactly the ready or the scheduled tasks asked for, or reports that
/// it cannot tell them apart and deletes nothing; leased and dead tasks are never touched.
pub async fn purge_waiting_deletes_only_what_it_is_asked_for(h: Harness) {
    let q = h.queue("q");
    let leased = one_of_each_state(&h, &q).await;
    let before = h.driver.stats(&q).await.expect("stats");
    match h.driver.purge_waiting(&q, crate::driver::Waiting::Scheduled).await {
        Ok(n) => {
            assert_eq!(n, 1, "the one scheduled task");
            let s = h.driver.stats(&q).await.expect("stats");
            assert_eq!((s.ready, s.scheduled), (2, 0), "ready tasks stay");
        }
        Err(DriverError::Unsupported(_)) => {
            assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), before.counts(), "nothing deleted")
        }
        Err(e) => panic!("purge scheduled: {e}"),
    }
    let before = h.driver.stats(&q).await.expect("stats");
    match h.driver.purge_waiting(&q, crate::driver::Waiting::Ready).await {
        Ok(n) => {
            assert_eq!(n, 2, "the two ready tasks");
            let s = h.driver.stats(&q).await.expect("stats");
            assert_eq!((s.ready, s.scheduled), (0, before.scheduled), "scheduled tasks stay");
        }
        Err(DriverError::Unsupported(_)) => {
            assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), before.counts(), "nothing deleted")
        }
        Err(e) => panic!("purge ready: {e}"),
    }
    let s = h.driver.stats(&q).await.expect("stats");
    assert_eq!((s.leased, s.dead), (1, 1), "leased and dead tasks are untouched");
    assert!(h.driver.ack(&[leased.into()]).await.expect("ack").is_empty(), "the leased task still acks");
}

/// Purge reaches tasks that are not due yet: delayed at dispatch and waiting for a retry.
pub async fn purge_removes_scheduled_tasks(h: Harness) {
    let q = h.queue("q");
    let mut later = h.envelope(&q, LONG);
    later.not_before = now() + 60_000;
    h.driver.enqueue(&[later, h.envelope(&q, LONG)]).await.expect("enqueue");
    let retry = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    h.driver.nack(&retry.lease, Duration::from_secs(60), "later").await.expect("nack");
    assert_eq!(h.driver.purge(&q).await.expect("purge"), 2, "the delayed task and the retry");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0; 4]);
}

/// `queues` names every queue holding tasks, including only-dead ones, and answers (with
/// nothing of ours) before any task exists.
pub async fn queues_lists_every_queue_holding_tasks(h: Harness) {
    let (a, b) = (h.queue("a"), h.queue("b"));
    let before = h.driver.queues().await.expect("queues before any task was enqueued");
    assert!(!before.contains(&a) && !before.contains(&b), "{before:?} holds queues with no tasks");
    h.driver.enqueue(&[h.envelope(&a, LONG), h.envelope(&b, LONG)]).await.expect("enqueue");
    let d = h.driver.dequeue(&b, 1).await.expect("dequeue").remove(0);
    h.driver.dead_letter(&d.lease, "x", LONG).await.expect("dead");
    let names = h.driver.queues().await.expect("queues");
    assert!(names.contains(&a) && names.contains(&b), "{names:?} must contain {a} and {b}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted");
}

/// A consumer waiting on an idle queue wakes when a task is enqueued.
pub async fn wait_ready_wakes_on_enqueue(h: Harness) {
    let q = h.queue("q");
    let driver = h.driver.clone();
    let queues = vec![h.queue("other"), q.clone()];
    let waiter = tokio::spawn(async move { driver.wait_ready(&queues, Duration::from_secs(60)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.driver.enqueue(&[h.envelope(&q, LONG)]).await.expect("enqueue");
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the wait ends on enqueue, long before its 60 s timeout")
        .expect("join")
        .expect("wait");
}

/// A consumer waiting on a queue whose only task is delayed wakes when it falls due.
pub async fn wait_ready_returns_when_a_delayed_task_falls_due(h: Harness) {
    let q = h.queue("q");
    let mut e = h.envelope(&q, LONG);
    e.not_before = now() + 300;
    h.driver.enqueue(&[e]).await.expect("enqueue");
    tokio::time::timeout(Duration::from_secs(10), h.driver.wait_ready(std::slice::from_ref(&q), Duration::from_secs(60)))
        .await
        .expect("the wait ends when the delayed task is due, long before its 60 s timeout")
        .expect("wait");
    eventually(PATIENCE, "the delayed task to be ready", || async { h.driver.dequeue(&q, 1).await.expect("dequeue").pop() }).await;
}

/// Every call ends (the deadline rule): a wait on a queue where nothing happens returns within
/// its timeout plus one request deadline, never later, and the driver answers normally after it.
/// A backend's blocking wait (a blocking pop, a long poll, LISTEN) is bounded by the driver,
/// not left to the server.
pub async fn wait_ready_on_an_idle_queue_ends_within_its_timeout_and_a_request_deadline(h: Harness) {
    let q = h.queue("q");
    let timeout = Duration::from_millis(300);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let waited = tokio::time::timeout(timeout + REQUEST_DEADLINE, h.driver.wait_ready(std::slice::from_ref(&q), timeout)).await;
        waited.unwrap_or_else(|_| panic!("wait_ready({timeout:?}) still waiting after {:?}", started.elapsed())).expect("wait");
    }
    assert!(h.driver.dequeue(&q, 1).await.expect("dequeue after the waits").is_empty());
}

/// The request deadline every driver's default stays within (the drivers use 5 s), with room
/// for a slow CI machine.
const REQUEST_DEADLINE: Duration = Duration::from_secs(6);

/// Names that could escape a key prefix or break a statement are refused, never stored, by
/// every call that takes a queue name.
pub async fn hostile_queue_names_are_rejected(h: Harness) {
    for bad in HOSTILE_NAMES.iter().map(|s| (*s).to_owned()).chain([String::new(), "x".repeat(10_000)]) {
        let bad = bad.as_str();
        let mut e = h.envelope("placeholder", LONG);
        e.queue = bad.to_owned();
        assert!(matches!(h.driver.enqueue(&[e]).await, Err(DriverError::Config(_))), "enqueue to {bad:.20?} must be refused");
        assert!(h.driver.dequeue(bad, 1).await.is_err(), "dequeue from {bad:.20?} must be refused");
        assert!(h.driver.stats(bad).await.is_err(), "stats of {bad:.20?} must be refused");
        assert!(h.driver.purge(bad).await.is_err(), "purge of {bad:.20?} must be refused");
        assert!(h.driver.dead(bad, 1).await.is_err(), "dead tasks of {bad:.20?} must be refused");
        assert!(h.driver.purge_dead(bad).await.is_err(), "purge of dead tasks of {bad:.20?} must be refused");
    }
    let queues = h.driver.queues().await.expect("queues");
    assert!(queues.iter().all(|q| crate::envelope::validate_queue_name(q).is_ok()), "no hostile name was stored: {queues:?}");
}

/// Quotes, statement separators, key delimiters, unicode and control characters.
const HOSTILE_NAMES: [&str; 8] = ["a'b", "a\"b", "x; DROP TABLE t", "q{tag}", "a:b", "ü", "a b", "nul\0"];

/// A task name the client would refuse, written past it, is refused by the driver or stored as
/// data: delivered back byte for byte, never interpreted.
pub async fn hostile_task_names_are_stored_as_data_or_refused(h: Harness) {
    let q = h.queue("q");
    let names: Vec<String> = HOSTILE_NAMES.iter().map(|s| (*s).to_owned()).chain(["x".repeat(10_000)]).collect();
    let mut stored = HashMap::new();
    for name in &names {
        let mut e = h.envelope(&q, LONG);
        e.name = name.clone();
        match h.driver.enqueue(std::slice::from_ref(&e)).await {
            Ok(_) => {
                stored.insert(e.id, name.clone());
            }
            Err(DriverError::Config(_) | DriverError::TooLarge { .. }) => {}
            Err(other) => panic!("task name {name:.20?}: refused with an unclear error: {other}"),
        }
    }
    let mut seen = HashMap::new();
    while seen.len() < stored.len() {
        let got = eventually(PATIENCE, "the stored tasks to be delivered", || async {
            let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
            (!got.is_empty()).then_some(got)
        })
        .await;
        for d in got {
            let e = d.envelope.as_ref().expect("a stored hostile name decodes");
            seen.insert(e.id, e.name.clone());
            h.driver.ack(&[d.lease.into()]).await.expect("ack");
        }
    }
    assert_eq!(seen, stored, "every stored name came back exactly as written");
}

/// Stopping prefetch gives back tasks fetched ahead but not delivered, unspent, and leaves
/// delivered leases alone.
pub async fn stop_prefetch_gives_back_undelivered_tasks_unspent(h: Harness) {
    let q = h.queue("q");
    h.driver.prefetch_hint(8, 1);
    let sent: Vec<_> = (0..5).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&sent).await.expect("enqueue");
    let first = h.driver.dequeue(&q, 1).await.expect("dequeue").remove(0);
    h.driver.stop_prefetch().await.expect("stop prefetch");
    let mut rest = Vec::new();
    while rest.len() < 4 {
        rest.extend(
            eventually(PATIENCE, "the undelivered tasks to come back", || async {
                let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
                (!got.is_empty()).then_some(got)
            })
            .await,
        );
    }
    assert_eq!(rest.len(), 4, "every undelivered task comes back once");
    assert!(rest.iter().all(|d| d.attempt == 1), "prefetched but undelivered tasks spent no attempt");
    let mut all: HashSet<TaskId> = ids(&rest).into_iter().collect();
    all.insert(first.lease.id);
    assert_eq!(all, sent.iter().map(|e| e.id).collect::<HashSet<_>>());
    assert!(h.driver.ack(&[first.lease.into()]).await.expect("ack").is_empty(), "the delivered lease still acks");
}

/// A registered worker is listed as written, rewritten on each heartbeat, and gone once it
/// deregisters or its record expires.
pub async fn registered_worker_is_listed_until_deregistered_or_expired(h: Harness) {
    let worker = |label: &str, expires_in: u64| WorkerInfo {
        id: h.queue(label),
        host: "conformance-host".into(),
        pid: 4242,
        queues: vec!["high".into(), "default".into()],
        concurrency: 8,
        version: "0.0.0-test".into(),
        started_at: now() - 1000,
        heartbeat_at: now(),
        heartbeat_ms: 500,
        expires_at: now() + expires_in,
        in_flight: 3,
        counts: Default::default(),
        running: vec![crate::workers::RunningTask {
            id: TaskId::new(),
            name: "export".into(),
            queue: "default".into(),
            started_at: now() - 7_200_000,
            stuck: true,
        }],
    };
    let (mut live, brief) = (worker("live", 60_000), worker("brief", 300));
    h.driver.register_worker(&live).await.expect("register");
    h.driver.register_worker(&brief).await.expect("register");
    let listed = h.driver.workers().await.expect("workers");
    assert_eq!(listed.iter().find(|w| w.id == live.id), Some(&live), "listed exactly as written");
    let mut sorted = listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
    sorted.sort();
    assert_eq!(listed.iter().map(|w| w.id.clone()).collect::<Vec<_>>(), sorted, "sorted by id");

    live.in_flight = 1;
    live.counts.succeeded = 99;
    live.heartbeat_at = now();
    h.driver.register_worker(&live).await.expect("heartbeat");
    let again = h.driver.workers().await.expect("workers");
    assert_eq!(again.iter().filter(|w| w.id == live.id).collect::<Vec<_>>(), vec![&live], "one record, rewritten");

    eventually(PATIENCE, "the brief record to expire", || async {
        (!h.driver.workers().await.expect("workers").iter().any(|w| w.id == brief.id)).then_some(())
    })
    .await;
    h.driver.deregister_worker(&live.id).await.expect("deregister");
    assert!(!h.driver.workers().await.expect("workers").iter().any(|w| w.id == live.id), "a stopped worker is gone");
}
