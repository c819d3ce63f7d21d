//! The rules of schedule claims ([`Capability::ScheduleClaims`], see `crate::schedule`): each
//! slot of a schedule is claimed once, with its task, in one step; never an older slot after a
//! newer one; never while the schedule is paused.

use std::collections::HashSet;

use super::{LONG, now};
use crate::driver::{Ack, Capability};
use crate::envelope::{Envelope, TaskId, UnixMillis};
use crate::error::DriverError;
use crate::testing::{Harness, ids};

/// The task of `slot`: an id of the slot's own (as a schedule derives it), due at the slot.
fn slot_task(h: &Harness, q: &str, name: &str, slot: UnixMillis) -> Envelope {
    let id = TaskId::from_bytes(*uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{name}@{slot}").as_bytes()).as_bytes());
    Envelope { id, not_before: slot, ..h.envelope(q, LONG) }
}

async fn drain(h: &Harness, q: &str) -> Vec<TaskId> {
    let got = h.driver.dequeue(q, 100).await.expect("dequeue");
    let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
    h.driver.ack(&Ack::each(&leases)).await.expect("ack");
    ids(&got)
}

/// Racing claims of one slot, each carrying the slot's task, succeed exactly once and store
/// the task once; slot after slot.
pub async fn schedule_slot_fires_once_with_many_claimers(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    let base = now() - 10_000;
    for round in 0..5u64 {
        let slot = base + round * 1000;
        let task = slot_task(&h, &q, &name, slot);
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (driver, name, q, task) = (h.driver.clone(), name.clone(), q.clone(), task.clone());
                tokio::spawn(async move { driver.claim_slot(&name, &q, slot, Some(&task)).await.expect("claim") })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            won += usize::from(r.await.expect("join"));
        }
        assert_eq!(won, 1, "slot {round}: exactly one claim succeeded");
        assert_eq!(drain(&h, &q).await, vec![task.id], "slot {round}: its task, once");
    }
}

/// A claim that succeeds has stored the slot's task, due at the slot; one that fails has
/// stored nothing; a claim may skip a slot without a task.
pub async fn claimed_slot_and_its_task_are_stored_together(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    let slot = now() - 5_000;
    let task = slot_task(&h, &q, &name, slot);
    assert!(h.driver.claim_slot(&name, &q, slot, Some(&task)).await.expect("claim"));
    let late = slot_task(&h, &q, &name, slot);
    let other = Envelope { id: TaskId::new(), ..late };
    assert!(!h.driver.claim_slot(&name, &q, slot, Some(&other)).await.expect("claim"), "the slot is taken");
    let got = h.driver.dequeue(&q, 10).await.expect("dequeue");
    assert_eq!(ids(&got), vec![task.id], "only the claiming call's task");
    assert_eq!(got[0].envelope.as_ref().expect("decodes").not_before, slot, "due at its slot");
    h.driver.ack(&[got[0].lease.clone().into()]).await.expect("ack");
    assert!(h.driver.claim_slot(&name, &q, slot + 1000, None).await.expect("skip"), "a slot skipped");
    assert!(drain(&h, &q).await.is_empty(), "no task for a skipped slot");
    let state = h.driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == name).expect("listed");
    assert_eq!(state.last_slot, Some(slot + 1000), "the skip advanced it");
}

/// Once a slot is claimed, no older slot can be, nor the same one again; a newer one can.
pub async fn older_slot_cannot_be_claimed_after_a_newer_one(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    let t = now() - 60_000;
    assert!(h.driver.claim_slot(&name, &q, t + 2000, Some(&slot_task(&h, &q, &name, t + 2000))).await.expect("claim"));
    for older in [t + 1000, t + 2000] {
        assert!(!h.driver.claim_slot(&name, &q, older, Some(&slot_task(&h, &q, &name, older))).await.expect("claim"), "slot {older}");
    }
    assert!(h.driver.claim_slot(&name, &q, t + 3000, Some(&slot_task(&h, &q, &name, t + 3000))).await.expect("claim"));
    let stored: HashSet<TaskId> = drain(&h, &q).await.into_iter().collect();
    let want: HashSet<TaskId> = [t + 2000, t + 3000].iter().map(|s| slot_task(&h, &q, &name, *s).id).collect();
    assert_eq!(stored, want, "the tasks of the claimed slots alone");
}

/// While a schedule is paused no claim of it succeeds and none stores its task; it is listed as
/// paused; once resumed, its next slot is claimed.
pub async fn paused_schedule_claims_nothing(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    let t = now() - 60_000;
    h.driver.set_schedule_paused(&name, &q, true).await.expect("pause");
    assert!(!h.driver.claim_slot(&name, &q, t, Some(&slot_task(&h, &q, &name, t))).await.expect("claim"), "paused");
    assert!(drain(&h, &q).await.is_empty(), "nothing stored");
    let state = h.driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == name).expect("listed");
    assert!(state.paused, "listed as paused");
    h.driver.set_schedule_paused(&name, &q, false).await.expect("resume");
    assert!(h.driver.claim_slot(&name, &q, t + 1000, Some(&slot_task(&h, &q, &name, t + 1000))).await.expect("claim"));
    assert_eq!(drain(&h, &q).await.len(), 1);
    let state = h.driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == name).expect("listed");
    assert_eq!((state.paused, state.last_slot), (false, Some(t + 1000)));
}

/// What a backend keeps of a schedule is stored, not remembered by a worker: a worker that
/// starts again lists the last slot and claims only newer ones (across processes: the CLI's
/// `schedule list` tests, `tests/tests/schedules.rs`).
pub async fn schedules_list_their_last_slot_after_restart(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    let t = now() - 60_000;
    assert!(h.driver.claim_slot(&name, &q, t, None).await.expect("claim"));
    let again = h.driver.clone();
    let state = again.schedules().await.expect("schedules").into_iter().find(|s| s.name == name).expect("listed");
    assert_eq!((state.last_slot, state.paused), (Some(t), false));
    assert!(!again.claim_slot(&name, &q, t, None).await.expect("claim"), "the slot stays claimed");
    assert!(again.claim_slot(&name, &q, t + 1, None).await.expect("claim"));
}

/// A backend without schedule claims refuses a claim and a pause, saying so, and lists none.
pub async fn schedule_claims_are_refused_where_the_backend_cannot_claim(h: Harness) {
    let (q, name) = (h.queue("q"), h.queue("schedule"));
    if h.driver.supports(Capability::ScheduleClaims) {
        return;
    }
    let err = h.driver.claim_slot(&name, &q, now(), Some(&slot_task(&h, &q, &name, now()))).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)) && err.to_string().contains("schedule"), "{err}");
    let err = h.driver.set_schedule_paused(&name, &q, true).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)) && err.to_string().contains("schedule"), "{err}");
    assert!(h.driver.schedules().await.expect("schedules").is_empty());
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "nothing stored");
}
