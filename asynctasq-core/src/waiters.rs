//! The waits of one client on a pushing backend: one subscription to the driver's settled
//! notices, routed to the waits on each noticed task.
//!
//! # Why one subscription, not one per wait
//! A broadcast receiver per wait hands every notice to every wait: `n` waits on `n` tasks
//! cost `n²` wake-ups, and a wait that falls behind the channel reads its task again at once.
//! 2,000 waits racing their tasks on PostgreSQL spent a CI machine's two cores that way, the
//! worker they waited on starved, and 608 waits timed out. Routed through one receiver, a
//! notice wakes only the waits on its task: `n` wake-ups for `n` tasks.
//!
//! A notice stays a hint ([`crate::notice`]): the waits still poll, and when the router falls
//! behind, it wakes every wait to read its task again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, broadcast};

use crate::driver::Driver;
use crate::envelope::TaskId;
use crate::notice::NoticeKind;

/// Waits by task, fed by one router task per client.
#[derive(Default)]
pub(crate) struct Waiters {
    by_task: Mutex<HashMap<TaskId, Vec<Arc<Notify>>>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").finish_non_exhaustive()
    }
}

/// One wait's registration: notified when its task is noticed settled; removed on drop.
pub(crate) struct Registration {
    waiters: Arc<Waiters>,
    id: TaskId,
    notify: Arc<Notify>,
}

impl Registration {
    /// Resolves once a notice for the task came after the registration (at once when one
    /// already came and was not yet taken).
    pub(crate) async fn noticed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut by_task = self.waiters.by_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = by_task.get_mut(&self.id) {
            list.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if list.is_empty() {
                by_task.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    /// The waits of a client on `driver`, with the router started when the driver pushes
    /// settled notices (`None` when it does not: the waits poll).
    pub(crate) fn start(driver: &dyn Driver) -> Option<Arc<Self>> {
        let rx = driver.notices(NoticeKind::Settled)?;
        let waiters = Arc::new(Self::default());
        tokio::spawn(route(rx, Arc::downgrade(&waiters)));
        Some(waiters)
    }

    /// Registers a wait on `id`: notices of `id` from now on reach it.
    pub(crate) fn register(self: &Arc<Self>, id: TaskId) -> Registration {
        let notify = Arc::new(Notify::new());
        self.by_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(id).or_default().push(notify.clone());
        Registration { waiters: self.clone(), id, notify }
    }

    fn wake(&self, id: Option<TaskId>) {
        let by_task = self.by_task.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match id {
            // `notify_one` keeps a permit for a wait between two reads: it reads again at once.
            Some(id) => by_task.get(&id).into_iter().flatten().for_each(|n| n.notify_one()),
            None => by_task.values().flatten().for_each(|n| n.notify_one()),
        }
    }
}

/// Hands each notice to the waits on its task, until the client's waits are gone or the
/// driver stops pushing.
async fn route(mut rx: broadcast::Receiver<TaskId>, waiters: Weak<Waiters>) {
    loop {
        let got = rx.recv().await;
        let Some(waiters) = waiters.upgrade() else { return };
        match got {
            Ok(id) => waiters.wake(Some(id)),
            Err(broadcast::error::RecvError::Lagged(_)) => waiters.wake(None),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::memory::MemoryDriver;

    #[tokio::test]
    async fn a_notice_wakes_the_waits_on_its_task_only() {
        let driver = MemoryDriver::new();
        let waiters = Waiters::start(&driver).expect("the memory driver pushes");
        let (a, b) = (TaskId::new(), TaskId::new());
        let (on_a, on_b) = (waiters.register(a), waiters.register(b));
        waiters.wake(Some(a));
        tokio::time::timeout(Duration::from_secs(1), on_a.noticed()).await.expect("the wait on a is woken");
        assert!(tokio::time::timeout(Duration::from_millis(50), on_b.noticed()).await.is_err(), "the wait on b is not");
        drop((on_a, on_b));
        assert!(waiters.by_task.lock().expect("lock").is_empty(), "dropped registrations leave nothing behind");
    }
}
