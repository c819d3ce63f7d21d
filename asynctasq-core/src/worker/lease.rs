//! Lease renewal while a task runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};

use super::deadline::bounded;
use crate::driver::{Driver, Lease};
use crate::envelope::TaskId;
use crate::error::DriverError;
use crate::notice::NoticeKind;

/// How long a run goes before it watches for cancel notices. Most runs end sooner and never
/// touch the watch (registering every delivery measured 0.88–0.91 of the drain rate on memory
/// and Redis); a notice for a run not watched yet is remembered for [`REMEMBERED`] and handed
/// over when it registers.
pub(crate) const WATCH_AFTER: Duration = Duration::from_millis(50);

/// How long a cancel notice for a run not (yet) watched is remembered.
const REMEMBERED: Duration = Duration::from_secs(2);

/// Hands the backend's cancel notices ([`NoticeKind::CancelRequested`]) to the running tasks
/// they name: one receiver for the worker, whatever its concurrency.
#[derive(Debug, Default)]
pub(crate) struct CancelWatch {
    running: Mutex<Watches>,
}

#[derive(Debug, Default)]
struct Watches {
    by_id: HashMap<TaskId, Arc<Notify>>,
    /// Notices that named no watched run, newest last: for runs about to register.
    recent: std::collections::VecDeque<(tokio::time::Instant, TaskId)>,
}

impl CancelWatch {
    /// A watch fed by `driver`'s cancel notices, and the task feeding it; `None` when the
    /// driver pushes none.
    pub(crate) fn start(driver: &dyn Driver) -> Option<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let mut rx = driver.notices(NoticeKind::CancelRequested)?;
        let watch = Arc::new(Self::default());
        let fed = watch.clone();
        let feeding = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(id) => fed.poke(Some(id)),
                    // Some notices were missed: every running task renews now.
                    Err(broadcast::error::RecvError::Lagged(_)) => fed.poke(None),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Some((watch, feeding))
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Watches> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the renewal of `id` (`None`: of every running task), or remembers the notice for
    /// a run that registers soon.
    fn poke(&self, id: Option<TaskId>) {
        let mut running = self.running();
        match id {
            Some(id) => match running.by_id.get(&id) {
                Some(n) => n.notify_one(),
                None => {
                    let now = tokio::time::Instant::now();
                    while running.recent.front().is_some_and(|(at, _)| now.duration_since(*at) > REMEMBERED) {
                        running.recent.pop_front();
                    }
                    running.recent.push_back((now, id));
                }
            },
            None => running.by_id.values().for_each(|n| n.notify_one()),
        }
    }

    /// Watches `id` while the returned guard lives; a notice that came before is handed over.
    pub(crate) fn watch(self: &Arc<Self>, id: TaskId) -> Watched {
        let notify = Arc::new(Notify::new());
        let mut running = self.running();
        if running.recent.iter().any(|(_, seen)| *seen == id) {
            notify.notify_one();
        }
        running.by_id.insert(id, notify.clone());
        drop(running);
        Watched { watch: self.clone(), id, notify }
    }
}

/// A running task's place in the [`CancelWatch`], left when dropped.
pub(crate) struct Watched {
    watch: Arc<CancelWatch>,
    id: TaskId,
    notify: Arc<Notify>,
}

impl Watched {
    /// Notified when a cancel of the task is noticed.
    pub(crate) fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watch.running().by_id.remove(&self.id);
    }
}

/// Why [`keep_leased`] stopped renewing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    /// The lease is no longer held.
    Lost,
    /// The task was cancelled ([`DriverError::CancelRequested`]): the lease was not extended.
    Cancelled,
}

/// Renews `lease` every third of `length` for as long as it is polled. Completes only when the
/// lease is lost or the task was cancelled; transient errors are logged and retried at the next
/// beat, since a lease has two more beats of slack before it can expire. Each renewal is
/// bounded by `limit`. A notice of a cancel (`poked`) renews at once: the renewal reports it.
///
/// The driver claimed the lease for `claimed` (the envelope's lease); when the worker's default
/// lease applies instead (`length`), the first renewal comes a third of the shorter one in, and
/// sets the lease to `length` from then on.
pub(crate) async fn keep_leased(
    driver: Arc<dyn Driver>,
    mut lease: Lease,
    claimed: Duration,
    length: Duration,
    limit: Duration,
    extended: &metrics::Counter,
    watch: Option<&Arc<CancelWatch>>,
) -> LeaseEnd {
    let interval = |d: Duration| (d / 3).max(Duration::from_millis(5));
    let mut next = interval(claimed.min(length));
    let mut watched = None;
    if let Some(watch) = watch {
        let first = WATCH_AFTER.min(next);
        tokio::time::sleep(first).await;
        next -= first;
        watched = Some(watch.watch(lease.id));
    }
    let poked = watched.as_ref().map(Watched::notify);
    loop {
        match &poked {
            Some(poked) => tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = poked.notified() => {}
            },
            None => tokio::time::sleep(next).await,
        }
        next = interval(length);
        match bounded("extend_lease", limit.min(length), driver.extend_lease(&lease, length)).await {
            Ok(renewed) => {
                lease = renewed;
                extended.increment(1);
            }
            Err(DriverError::LeaseLost(_)) => return LeaseEnd::Lost,
            Err(DriverError::CancelRequested(_)) => return LeaseEnd::Cancelled,
            Err(error) => tracing::warn!(task.id = %lease.id, %error, "lease renewal failed; retrying at the next beat"),
        }
    }
}
