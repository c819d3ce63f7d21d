//! Notices: what a backend pushes to its handles as it happens, so a waiting producer or a
//! worker holding a cancelled task hears at once instead of at its next poll or lease renewal.
//!
//! A notice is a hint, never the guarantee: one may be lost (a subscriber reconnecting, a slow
//! receiver lagging behind), and whoever listens also polls (a waiter reads the task again
//! within [`MAX_POLL`](crate::follow::MAX_POLL); a worker renews its lease every third of it,
//! and the renewal reports a cancel). So a lost notice costs time, never an answer.

use tokio::sync::broadcast;

use crate::envelope::TaskId;

/// What a notice says happened to its task ([`Driver::notices`](crate::Driver::notices)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NoticeKind {
    /// The task was settled for good: acked and kept, dead-lettered, or cancelled. A waiter
    /// reads it again.
    Settled,
    /// A cancel was requested while the task was leased: its holder renews its lease now, and
    /// the renewal reports the cancel.
    CancelRequested,
}

impl NoticeKind {
    /// The one-letter tag of the kind in a pushed payload (`s:ID,ID…`, `c:ID`).
    pub fn tag(self) -> char {
        match self {
            NoticeKind::Settled => 's',
            NoticeKind::CancelRequested => 'c',
        }
    }
}

/// Notices to hand out, one broadcast per kind: what a driver that pushes keeps. A notice is
/// sent only while someone listens, so a driver without listeners pays one atomic read.
#[derive(Debug)]
pub struct NoticeBus {
    settled: broadcast::Sender<TaskId>,
    cancels: broadcast::Sender<TaskId>,
}

impl Default for NoticeBus {
    fn default() -> Self {
        Self { settled: broadcast::channel(4096).0, cancels: broadcast::channel(1024).0 }
    }
}

impl NoticeBus {
    fn sender(&self, kind: NoticeKind) -> &broadcast::Sender<TaskId> {
        match kind {
            NoticeKind::Settled => &self.settled,
            NoticeKind::CancelRequested => &self.cancels,
        }
    }

    /// A receiver of the notices of `kind` sent from now on.
    pub fn subscribe(&self, kind: NoticeKind) -> broadcast::Receiver<TaskId> {
        self.sender(kind).subscribe()
    }

    /// Whether anyone listens for `kind` (a pushing backend may skip the push otherwise).
    pub fn listened(&self, kind: NoticeKind) -> bool {
        self.sender(kind).receiver_count() > 0
    }

    /// Tells the listeners of `kind` about `id`.
    pub fn send(&self, kind: NoticeKind, id: TaskId) {
        if self.listened(kind) {
            let _ = self.sender(kind).send(id);
        }
    }

    /// Sends what a pushed payload says: `s:` or `c:` (the kind's [`tag`](NoticeKind::tag)),
    /// then task ids separated by commas. Anything else is ignored.
    pub fn send_payload(&self, payload: &str) {
        let kind = match payload.get(..2) {
            Some("s:") => NoticeKind::Settled,
            Some("c:") => NoticeKind::CancelRequested,
            _ => return,
        };
        if !self.listened(kind) {
            return;
        }
        for id in payload[2..].split(',').filter_map(|s| s.parse::<TaskId>().ok()) {
            let _ = self.sender(kind).send(id);
        }
    }
}

/// Waits until `rx` carries `id` (or fell behind, and may have missed it). A receiver whose
/// sender is gone never completes; `None` never completes.
pub async fn heard(rx: &mut Option<broadcast::Receiver<TaskId>>, id: TaskId) {
    let Some(r) = rx else { return std::future::pending().await };
    loop {
        match r.recv().await {
            Ok(got) if got == id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => {
                *rx = None;
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_payload_reaches_the_listeners_of_its_kind_only() {
        let bus = NoticeBus::default();
        let (a, b) = (TaskId::new(), TaskId::new());
        let (mut settled, mut cancels) = (bus.subscribe(NoticeKind::Settled), bus.subscribe(NoticeKind::CancelRequested));
        bus.send_payload(&format!("s:{a},{b}"));
        bus.send_payload(&format!("c:{b}"));
        bus.send_payload("x:nonsense");
        assert_eq!((settled.recv().await.ok(), settled.recv().await.ok()), (Some(a), Some(b)));
        assert_eq!(cancels.recv().await.ok(), Some(b));
        assert!(settled.try_recv().is_err() && cancels.try_recv().is_err(), "nothing else");
    }

    #[tokio::test]
    async fn heard_waits_for_its_own_id() {
        let bus = NoticeBus::default();
        let (mine, other) = (TaskId::new(), TaskId::new());
        let mut rx = Some(bus.subscribe(NoticeKind::Settled));
        bus.send(NoticeKind::Settled, other);
        bus.send(NoticeKind::Settled, mine);
        tokio::time::timeout(std::time::Duration::from_secs(1), heard(&mut rx, mine)).await.expect("heard");
    }
}
