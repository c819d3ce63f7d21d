//! The rules of unique keys ([`Capability::UniqueKeys`], see [`crate::unique`]): one task per
//! key in a queue while the key's lock holds, taken in the enqueue's own atomic step, released
//! by the owner's state or the lock's expiry, never left to block forever.

use std::time::{Duration, Instant};

use super::{LONG, PATIENCE, now};
use crate::driver::{Ack, Capability, Delivery, EnqueueOutcome, Waiting};
use crate::envelope::Envelope;
use crate::error::DriverError;
use crate::testing::{Harness, eventually, ids};
use crate::unique::{Unique, UniqueMode, UniqueUntil};

/// A task of `q` holding `key` until `until`, for `ttl`, in `mode`.
fn unique(h: &Harness, q: &str, key: &str, until: UniqueUntil, ttl: Duration, mode: UniqueMode) -> Envelope {
    Envelope { unique: Some(Unique { key: key.into(), until, ttl_ms: ttl.as_millis() as u64, mode }), ..h.envelope(q, LONG) }
}

/// A task of `q` holding `key` until done, for an hour, skipping duplicates.
fn until_done(h: &Harness, q: &str, key: &str) -> Envelope {
    unique(h, q, key, UniqueUntil::Done, Duration::from_secs(3600), UniqueMode::Skip)
}

async fn enqueue_one(h: &Harness, e: &Envelope) -> EnqueueOutcome {
    h.driver.enqueue(std::slice::from_ref(e)).await.expect("enqueue")[0]
}

async fn lease_one(h: &Harness, q: &str) -> Delivery {
    let mut got = h.driver.dequeue(q, 1).await.expect("dequeue");
    assert_eq!(got.len(), 1, "one task to lease");
    got.remove(0)
}

fn duplicate_of(e: &Envelope) -> EnqueueOutcome {
    EnqueueOutcome::Duplicate { existing: e.id }
}

/// While a task holds its key, another task with the key is not stored and the outcome names
/// the holder, in one batch as across calls; other keys, other queues and plain tasks are
/// not affected.
pub async fn duplicate_unique_key_is_not_stored_while_the_first_waits(h: Harness) {
    let (q, other) = (h.queue("q"), h.queue("other"));
    let first = until_done(&h, &q, "k");
    assert_eq!(enqueue_one(&h, &first).await, EnqueueOutcome::New);
    assert_eq!(enqueue_one(&h, &until_done(&h, &q, "k")).await, duplicate_of(&first), "a second task with the key");
    let (a, b) = (until_done(&h, &q, "batch"), until_done(&h, &q, "batch"));
    let plain = h.envelope(&q, LONG);
    let outcomes = h.driver.enqueue(&[a.clone(), b, plain.clone()]).await.expect("enqueue");
    assert_eq!(outcomes, vec![EnqueueOutcome::New, duplicate_of(&a), EnqueueOutcome::New], "in one batch");
    let (other_key, other_queue) = (until_done(&h, &q, "k2"), until_done(&h, &other, "k"));
    assert_eq!(h.driver.enqueue(&[other_key.clone(), other_queue.clone()]).await.expect("enqueue"), EnqueueOutcome::all_new(2));

    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    let mut want = vec![first.id, a.id, plain.id, other_key.id];
    want.sort();
    let mut have = ids(&got);
    have.sort();
    assert_eq!(have, want, "the duplicates were not stored");
    assert_eq!(
        got.iter().find(|d| d.lease.id == first.id).and_then(|d| d.envelope.as_ref().ok()).and_then(|e| e.unique.clone()),
        first.unique
    );
    let mut leases: Vec<_> = got.into_iter().map(|d| d.lease).collect();
    leases.extend(h.driver.dequeue(&other, 10).await.expect("dequeue").into_iter().map(|d| d.lease));
    h.driver.ack(&Ack::each(&leases)).await.expect("ack");
}

/// Racing enqueues of one key, each in a batch with a task of its own, store exactly one task
/// with the key; every other racer is told which.
pub async fn concurrent_enqueues_of_one_unique_key_store_exactly_one(h: Harness) {
    let q = h.queue("q");
    for round in 0..5 {
        let racers: Vec<_> = (0..8u8)
            .map(|n| {
                let driver = h.driver.clone();
                let mut e = until_done(&h, &q, &format!("k{round}"));
                e.payload = vec![0x91, n];
                let own = h.envelope(&q, LONG);
                tokio::spawn(async move { (e.id, driver.enqueue(&[own, e]).await.expect("enqueue")) })
            })
            .collect();
        let (mut winners, mut named) = (Vec::new(), Vec::new());
        for racer in racers {
            let (id, outcomes) = racer.await.expect("join");
            assert_eq!(outcomes[0], EnqueueOutcome::New, "each racer's own task is new");
            match outcomes[1] {
                EnqueueOutcome::New => winners.push(id),
                EnqueueOutcome::Duplicate { existing } => named.push(existing),
                EnqueueOutcome::Exists => panic!("round {round}: a fresh id reported as existing"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one racer stored a task with the key");
        assert!(named.iter().all(|id| *id == winners[0]), "round {round}: every duplicate names the one stored");
    }
    let mut total = 0;
    loop {
        let got = h.driver.dequeue(&q, 50).await.expect("dequeue");
        if got.is_empty() {
            break;
        }
        total += got.len();
        h.driver.ack(&Ack::each(&got.into_iter().map(|d| d.lease).collect::<Vec<_>>())).await.expect("ack");
    }
    assert_eq!(total, 5 * 9, "5 rounds of 8 own tasks and one with the key");
}

/// A key held until start is free again once its task is leased (one may wait while one runs),
/// and held while its task waits.
pub async fn unique_key_until_start_is_released_when_the_task_is_leased(h: Harness) {
    let q = h.queue("q");
    let hour = Duration::from_secs(3600);
    let a = unique(&h, &q, "k", UniqueUntil::Start, hour, UniqueMode::Skip);
    assert_eq!(enqueue_one(&h, &a).await, EnqueueOutcome::New);
    assert_eq!(
        enqueue_one(&h, &unique(&h, &q, "k", UniqueUntil::Start, hour, UniqueMode::Skip)).await,
        duplicate_of(&a),
        "held while it waits"
    );
    let running = lease_one(&h, &q).await;
    assert_eq!(running.lease.id, a.id);
    let b = unique(&h, &q, "k", UniqueUntil::Start, hour, UniqueMode::Skip);
    assert_eq!(enqueue_one(&h, &b).await, EnqueueOutcome::New, "free once its holder was leased");
    assert_eq!(enqueue_one(&h, &unique(&h, &q, "k", UniqueUntil::Start, hour, UniqueMode::Skip)).await, duplicate_of(&b));
    // The first one, retried, waits again but has started: the key stays with the second.
    h.driver.nack(&running.lease, Duration::ZERO, "failed").await.expect("nack");
    assert_eq!(enqueue_one(&h, &unique(&h, &q, "k", UniqueUntil::Start, hour, UniqueMode::Skip)).await, duplicate_of(&b));
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(got.len(), 2, "the retried task and the second holder");
    h.driver.ack(&Ack::each(&got.into_iter().map(|d| d.lease).collect::<Vec<_>>())).await.expect("ack");
}

/// A key held until done stays held while its task runs and through its retries, and is free
/// once the task is acked, dead-lettered, purged or cancelled.
pub async fn unique_key_until_done_is_held_through_retries_and_released_by_ack_dead_letter_purge_or_cancel(h: Harness) {
    let q = h.queue("q");
    let mut endings = vec!["ack", "dead letter", "purge"];
    if h.driver.supports(Capability::Cancel) {
        endings.push("cancel");
    }
    for ending in endings {
        let a = until_done(&h, &q, ending);
        assert_eq!(enqueue_one(&h, &a).await, EnqueueOutcome::New);
        let first = lease_one(&h, &q).await;
        assert_eq!(enqueue_one(&h, &until_done(&h, &q, ending)).await, duplicate_of(&a), "{ending}: held while it runs");
        h.driver.nack(&first.lease, Duration::ZERO, "failed").await.expect("nack");
        assert_eq!(enqueue_one(&h, &until_done(&h, &q, ending)).await, duplicate_of(&a), "{ending}: held through a retry");
        match ending {
            "ack" => {
                let again = lease_one(&h, &q).await;
                h.driver.ack(&[again.lease.into()]).await.expect("ack");
            }
            "dead letter" => {
                let again = lease_one(&h, &q).await;
                h.driver.dead_letter(&again.lease, "gave up", LONG).await.expect("dead letter");
            }
            "purge" => assert_eq!(h.driver.purge_waiting(&q, Waiting::Both).await.expect("purge"), 1),
            _ => {
                h.driver.cancel(a.id, LONG).await.expect("cancel");
            }
        }
        let b = until_done(&h, &q, ending);
        assert_eq!(enqueue_one(&h, &b).await, EnqueueOutcome::New, "free once the holder's {ending} settled it");
        let next = lease_one(&h, &q).await;
        assert_eq!(next.lease.id, b.id);
        h.driver.ack(&[next.lease.into()]).await.expect("ack");
    }
}

/// A key held until expiry stays held after its task succeeded, until the lock's time to live
/// has passed; and a key held until done is freed by its time to live even while its task
/// still waits: no lock is permanent.
pub async fn unique_key_with_ttl_blocks_until_expiry_even_after_the_task_finished(h: Harness) {
    let q = h.queue("q");
    let ttl = Duration::from_millis(1500);
    let started = Instant::now();
    let a = unique(&h, &q, "k", UniqueUntil::Expiry, ttl, UniqueMode::Skip);
    let waiting = unique(&h, &q, "w", UniqueUntil::Done, ttl, UniqueMode::Skip);
    let delayed = Envelope { not_before: now() + 3_600_000, ..waiting.clone() };
    assert_eq!(h.driver.enqueue(&[a.clone(), delayed.clone()]).await.expect("enqueue"), EnqueueOutcome::all_new(2));
    let run = lease_one(&h, &q).await;
    assert_eq!(run.lease.id, a.id);
    h.driver.ack(&[run.lease.into()]).await.expect("ack");
    assert_eq!(
        enqueue_one(&h, &unique(&h, &q, "k", UniqueUntil::Expiry, ttl, UniqueMode::Skip)).await,
        duplicate_of(&a),
        "held after it succeeded"
    );
    let w = unique(&h, &q, "w", UniqueUntil::Done, ttl, UniqueMode::Skip);
    assert_eq!(enqueue_one(&h, &w).await, duplicate_of(&delayed), "held while its task waits");
    let b = unique(&h, &q, "k", UniqueUntil::Expiry, ttl, UniqueMode::Skip);
    eventually(PATIENCE, "the key free after its time to live", || async {
        (enqueue_one(&h, &b).await == EnqueueOutcome::New).then_some(())
    })
    .await;
    assert!(started.elapsed() >= ttl - Duration::from_millis(50), "not before the time to live: {:?}", started.elapsed());
    assert_eq!(enqueue_one(&h, &w).await, EnqueueOutcome::New, "a waiting holder's key is freed by its time to live too");
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    let mut got_ids = ids(&got);
    got_ids.sort();
    let mut want = vec![b.id, w.id];
    want.sort();
    assert_eq!(got_ids, want, "the two new holders");
    h.driver.ack(&Ack::each(&got.into_iter().map(|d| d.lease).collect::<Vec<_>>())).await.expect("ack");
    assert_eq!(h.driver.purge_waiting(&q, Waiting::Both).await.expect("purge"), 1, "the delayed first holder");
}

/// A lock whose owner is gone by a way no release names (deleted by id, or dead and then
/// purged from the dead store) does not block the next task with its key.
pub async fn stale_unique_key_whose_owner_is_gone_does_not_block(h: Harness) {
    let q = h.queue("q");
    let a = until_done(&h, &q, "k");
    assert_eq!(enqueue_one(&h, &a).await, EnqueueOutcome::New);
    if h.driver.supports(Capability::Browse) {
        h.driver.delete(a.id).await.expect("delete");
    } else {
        h.driver.purge(&q).await.expect("purge");
    }
    let b = until_done(&h, &q, "k");
    assert_eq!(enqueue_one(&h, &b).await, EnqueueOutcome::New, "a deleted holder does not block");
    let run = lease_one(&h, &q).await;
    h.driver.dead_letter(&run.lease, "gave up", LONG).await.expect("dead letter");
    h.driver.purge_dead(&q).await.expect("purge dead");
    let c = until_done(&h, &q, "k");
    assert_eq!(enqueue_one(&h, &c).await, EnqueueOutcome::New, "a purged dead holder does not block");
    let run = lease_one(&h, &q).await;
    assert_eq!(run.lease.id, c.id);
    h.driver.ack(&[run.lease.into()]).await.expect("ack");
}

/// A duplicate dispatch in `Replace` mode gives the waiting holder its arguments; in
/// `Debounce` mode also its due time; neither touches a holder that has started.
pub async fn replace_and_debounce_rewrite_the_holder_while_it_waits(h: Harness) {
    let q = h.queue("q");
    let hour = Duration::from_secs(3600);
    let a = unique(&h, &q, "r", UniqueUntil::Done, hour, UniqueMode::Replace);
    assert_eq!(enqueue_one(&h, &a).await, EnqueueOutcome::New);
    let newer = Envelope { payload: vec![0x91, 0x02], ..unique(&h, &q, "r", UniqueUntil::Done, hour, UniqueMode::Replace) };
    assert_eq!(enqueue_one(&h, &newer).await, duplicate_of(&a));
    let run = lease_one(&h, &q).await;
    let got = run.envelope.as_ref().expect("decodes");
    assert_eq!((run.lease.id, got.id, &got.payload), (a.id, a.id, &newer.payload), "the holder, with the newer arguments");
    let late = Envelope { payload: vec![0x91, 0x03], ..newer.clone() };
    assert_eq!(enqueue_one(&h, &late).await, duplicate_of(&a), "held while it runs");
    h.driver.nack(&run.lease, Duration::ZERO, "failed").await.expect("nack");
    let rerun = lease_one(&h, &q).await;
    assert_eq!(rerun.envelope.as_ref().expect("decodes").payload, newer.payload, "a started holder keeps its arguments");
    h.driver.ack(&[rerun.lease.into()]).await.expect("ack");

    let soon = now() + 300;
    let d = Envelope { not_before: soon, ..unique(&h, &q, "d", UniqueUntil::Done, hour, UniqueMode::Debounce) };
    assert_eq!(enqueue_one(&h, &d).await, EnqueueOutcome::New);
    let pushed = Envelope {
        not_before: now() + 1_500,
        payload: vec![0x91, 0x04],
        ..unique(&h, &q, "d", UniqueUntil::Done, hour, UniqueMode::Debounce)
    };
    assert_eq!(enqueue_one(&h, &pushed).await, duplicate_of(&d));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "not due at the first dispatch's time");
    let run = eventually(PATIENCE, "the debounced task", || async {
        let mut got = h.driver.dequeue(&q, 10).await.expect("dequeue");
        (!got.is_empty()).then(|| got.remove(0))
    })
    .await;
    assert!(now() >= pushed.not_before, "not before the last dispatch's due time");
    let got = run.envelope.as_ref().expect("decodes");
    assert_eq!((run.lease.id, got.id, &got.payload), (d.id, d.id, &pushed.payload));
    h.driver.ack(&[run.lease.into()]).await.expect("ack");
}

/// A backend without unique keys refuses a batch holding a unique task, saying so, and stores
/// nothing of it.
pub async fn unique_dispatch_is_refused_by_a_driver_without_unique_keys(h: Harness) {
    let q = h.queue("q");
    let batch = [h.envelope(&q, LONG), until_done(&h, &q, "k")];
    if h.driver.supports(Capability::UniqueKeys) {
        assert_eq!(h.driver.enqueue(&batch).await.expect("enqueue"), EnqueueOutcome::all_new(2));
    } else {
        let err = h.driver.enqueue(&batch).await.expect_err("refused");
        assert!(matches!(err, DriverError::Unsupported(_)), "refused as unsupported: {err}");
        assert!(err.to_string().contains("unique task"), "saying what: {err}");
    }
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    let want = if h.driver.supports(Capability::UniqueKeys) { 2 } else { 0 };
    assert_eq!(got.len(), want, "all or nothing");
    h.driver.ack(&Ack::each(&got.into_iter().map(|d| d.lease).collect::<Vec<_>>())).await.expect("ack");
}
