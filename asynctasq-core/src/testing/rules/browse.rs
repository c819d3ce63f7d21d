//! The rules of browsing ([`Capability::Browse`]): an operator pages through a queue's tasks
//! in one state, and deletes any task but one a worker is running.

use std::time::Duration;

use super::LONG;
use crate::driver::{Ack, Capability, DeleteOutcome, TaskState};
use crate::envelope::TaskId;
use crate::testing::Harness;

/// Each state lists its own tasks, earliest first, and pages by offset and limit.
pub async fn list_pages_through_each_state_in_order(h: Harness) {
    let q = h.queue("q");
    let ready: Vec<_> = (0..3).map(|_| h.envelope(&q, LONG)).collect();
    let mut later = h.envelope(&q, LONG);
    later.not_before += 3_600_000;
    let (leased, dead, acked) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    // Leased, dead and acked first, so the three ready ones are left waiting.
    h.driver.enqueue(&[leased.clone(), dead.clone(), acked.clone()]).await.expect("enqueue");
    for d in h.driver.dequeue(&q, 3).await.expect("dequeue") {
        if d.lease.id == dead.id {
            h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
        } else if d.lease.id == acked.id {
            let keep = if h.driver.supports(Capability::Results) { LONG } else { Duration::ZERO };
            assert!(h.driver.ack(&[Ack { lease: d.lease, keep, result: None }]).await.expect("ack").is_empty());
        }
    }
    for e in &ready {
        h.driver.enqueue(std::slice::from_ref(e)).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    h.driver.enqueue(std::slice::from_ref(&later)).await.expect("enqueue");
    let ids = |records: Vec<crate::driver::TaskRecord>| records.into_iter().map(|r| (r.id, r.state)).collect::<Vec<_>>();
    let (driver, queue) = (&h.driver, &q);
    let list = |state, offset, limit| async move { ids(driver.list(queue, state, offset, limit).await.expect("list")) };
    let r = TaskState::Ready;
    assert_eq!(list(r, 0, 10).await, ready.iter().map(|e| (e.id, r)).collect::<Vec<_>>(), "ready, by due time");
    assert_eq!(list(r, 1, 1).await, vec![(ready[1].id, r)], "a page: offset 1, limit 1");
    assert_eq!(list(r, 3, 10).await, vec![], "past the end: nothing");
    assert_eq!(list(TaskState::Scheduled, 0, 10).await, vec![(later.id, TaskState::Scheduled)]);
    assert_eq!(list(TaskState::Leased, 0, 10).await, vec![(leased.id, TaskState::Leased)]);
    assert_eq!(list(TaskState::Dead, 0, 10).await, vec![(dead.id, TaskState::Dead)]);
    if h.driver.supports(Capability::Results) {
        assert_eq!(list(TaskState::Succeeded, 0, 10).await, vec![(acked.id, TaskState::Succeeded)]);
    }
    assert_eq!(list(TaskState::Cancelled, 0, 10).await, vec![], "none cancelled");
    let other = h.queue("other");
    assert!(h.driver.list(&other, r, 0, 10).await.expect("list").is_empty(), "queues are apart");
}

/// A delete removes a waiting, a dead or a kept task for good, refuses a leased one, and says
/// when there is nothing to delete.
pub async fn delete_removes_any_task_but_a_leased_one(h: Harness) {
    let q = h.queue("q");
    let (waiting, leased, dead) = (h.envelope(&q, LONG), h.envelope(&q, LONG), h.envelope(&q, LONG));
    h.driver.enqueue(&[leased.clone(), dead.clone()]).await.expect("enqueue");
    let mut held = None;
    for d in h.driver.dequeue(&q, 2).await.expect("dequeue") {
        if d.lease.id == dead.id {
            h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
        } else {
            held = Some(d.lease);
        }
    }
    h.driver.enqueue(std::slice::from_ref(&waiting)).await.expect("enqueue");
    assert_eq!(h.driver.delete(leased.id).await.expect("delete"), DeleteOutcome::Leased, "a running task is left alone");
    assert!(h.driver.find(leased.id).await.expect("find").is_some(), "and still stored");
    for id in [waiting.id, dead.id] {
        assert_eq!(h.driver.delete(id).await.expect("delete"), DeleteOutcome::Deleted);
        assert!(h.driver.find(id).await.expect("find").is_none(), "gone");
        assert_eq!(h.driver.delete(id).await.expect("delete"), DeleteOutcome::NotFound, "deleting twice finds nothing");
    }
    assert!(h.driver.dequeue(&q, 10).await.expect("dequeue").is_empty(), "the deleted waiting task is never delivered");
    assert_eq!(h.driver.stats(&q).await.expect("stats").counts(), [0, 0, 1, 0], "only the leased one is left");
    let lease = held.expect("the leased task");
    if h.driver.supports(Capability::Results) {
        assert!(h.driver.ack(&[Ack { lease, keep: LONG, result: None }]).await.expect("ack").is_empty());
        assert_eq!(h.driver.delete(leased.id).await.expect("delete"), DeleteOutcome::Deleted, "a kept record is deleted");
        assert!(h.driver.find(leased.id).await.expect("find").is_none());
    } else {
        h.driver.ack(&Ack::each(std::slice::from_ref(&lease))).await.expect("ack");
    }
    assert_eq!(h.driver.delete(TaskId::new()).await.expect("delete"), DeleteOutcome::NotFound);
}

/// Dead tasks paged by cursor ([`Driver::dead_after`](crate::driver::Driver::dead_after)) come oldest first, each once: a page
/// holds at most its limit, the last page says there is no next, a task dead-lettered after
/// the listing began shows on a later page, and one retried meanwhile leaves its place empty
/// without skipping another.
pub async fn dead_pages_by_cursor_list_each_dead_task_once_oldest_first(h: Harness) {
    let q = h.queue("q");
    let dead: Vec<_> = (0..7).map(|_| h.envelope(&q, LONG)).collect();
    h.driver.enqueue(&dead).await.expect("enqueue");
    let mut order = Vec::new();
    for _ in 0..7 {
        // One at a time, so each has a death of its own, in order.
        let d = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("a task to claim");
        h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
        order.push(d.lease.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let page = |after: Option<String>| {
        let (driver, q) = (&h.driver, &q);
        async move { driver.dead_after(q, after.as_deref(), 3).await.expect("dead_after") }
    };
    let ids = |p: &crate::driver::DeadPage| p.tasks.iter().map(|r| r.id).collect::<Vec<_>>();
    let first = page(None).await;
    assert_eq!(ids(&first), order[..3], "the oldest three");
    assert!(first.tasks.iter().all(|r| r.state == TaskState::Dead && r.last_error.as_deref() == Some("boom")), "dead records");

    // Meanwhile: the fifth is retried, and an eighth dies.
    assert_eq!(h.driver.requeue_dead(&q, crate::driver::DeadSelector::Ids(vec![order[4]])).await.expect("requeue"), 1);
    let late = h.envelope(&q, LONG);
    h.driver.enqueue(std::slice::from_ref(&late)).await.expect("enqueue");
    loop {
        // The retried fifth comes back first (ready again); the new one after it.
        let d = h.driver.dequeue(&q, 1).await.expect("dequeue").pop().expect("a task to claim");
        if d.lease.id == late.id {
            h.driver.dead_letter(&d.lease, "boom", LONG).await.expect("dead-letter");
            break;
        }
        h.driver.release(&d.lease).await.expect("release");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let second = page(first.next.clone()).await;
    assert_eq!(ids(&second), vec![order[3], order[5], order[6]], "from where the first stopped; the retried one is not in its place");
    let third = page(second.next.clone()).await;
    assert_eq!(ids(&third), vec![late.id], "the one that died later");
    assert!(third.next.is_none(), "a short page is the last");
    let other = h.queue("other");
    assert!(h.driver.dead_after(&other, None, 3).await.expect("dead_after").tasks.is_empty(), "queues are apart");
}
