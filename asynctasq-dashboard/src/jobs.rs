//! Bulk actions that outlast a request (retrying or deleting every dead task a filter
//! matches): run in the background, followed on `/jobs/{n}` until done.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far a bulk action has come.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// What it does, for the page's title.
    pub(crate) what: String,
    /// Tasks examined so far.
    pub(crate) scanned: u64,
    /// Tasks acted on so far.
    pub(crate) done: u64,
    /// Set once it ended: `Ok` or why it stopped.
    pub(crate) ended: Option<Result<(), String>>,
    /// Where to go back to.
    pub(crate) back: String,
}

/// The bulk actions of this dashboard, by number. Kept until the process ends (a few per
/// operator session).
#[derive(Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    by_id: Mutex<HashMap<u64, Progress>>,
}

impl Jobs {
    /// A new job doing `what`, returning to `back` when done.
    pub(crate) fn start(&self, what: String, back: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, Progress { what, back, ..Progress::default() });
        id
    }

    /// Updates job `id`.
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = self.lock().get_mut(&id) {
            f(p);
        }
    }

    /// Where job `id` stands.
    pub(crate) fn get(&self, id: u64) -> Option<Progress> {
        self.lock().get(&id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Progress>> {
        self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
