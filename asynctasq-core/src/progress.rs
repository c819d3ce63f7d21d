//! Progress: how far a running task says it has come ([`TaskContext::progress`]), written to
//! the backend under the run's lease and read back with the task ([`TaskRecord::progress`]).
//!
//! # Fenced and throttled
//! The worker writes a run's progress with [`Driver::progress`], which checks the run's lease
//! like a settle does: a run whose lease was lost (another delivery owns the task now) cannot
//! overwrite the newer run's progress. A task calling `progress` in a tight loop costs no round
//! trip per call: each call replaces the value in the run's [`ProgressSlot`], and the worker
//! writes the latest value at most once per [`PROGRESS_EVERY`].
//!
//! [`TaskContext::progress`]: crate::TaskContext::progress
//! [`TaskRecord::progress`]: crate::TaskRecord::progress
//! [`Driver::progress`]: crate::Driver::progress

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::envelope::UnixMillis;
use crate::error::CodecError;

/// The shortest pause between two progress writes of one run.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How far a running task has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// From 0 (started) to 1 (done); clamped into that range.
    pub fraction: f32,
    /// What the task says it is doing ("processed 40 of 100").
    pub message: String,
    /// When the task said it (Unix ms).
    pub at: UnixMillis,
}

impl Progress {
    /// The progress as the backend stores it (MessagePack, fields by name).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// A progress from [`encode`](Self::encode)'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }
}

/// Where a run puts its latest progress for the worker to write. Clones share it.
#[derive(Clone, Debug, Default)]
pub struct ProgressSlot(Arc<SlotInner>);

#[derive(Debug, Default)]
struct SlotInner {
    latest: Mutex<Option<Progress>>,
    changed: Notify,
    /// Whether the backend stores progress at all (set by the worker).
    kept: std::sync::atomic::AtomicBool,
}

impl ProgressSlot {
    /// A slot whose progress the backend keeps (`kept`) or cannot keep.
    pub(crate) fn new(kept: bool) -> Self {
        let slot = Self::default();
        slot.0.kept.store(kept, std::sync::atomic::Ordering::Relaxed);
        slot
    }

    /// Whether the backend keeps progress.
    pub(crate) fn kept(&self) -> bool {
        self.0.kept.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replaces the latest progress.
    pub(crate) fn put(&self, progress: Progress) {
        *self.0.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(progress);
        self.0.changed.notify_one();
    }

    /// Waits for a progress not yet taken, and takes it.
    pub(crate) async fn next(&self) -> Progress {
        loop {
            if let Some(p) = self.0.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                return p;
            }
            self.0.changed.notified().await;
        }
    }
}
