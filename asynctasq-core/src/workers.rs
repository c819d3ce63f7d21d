//! Workers as the fleet sees them: the record a worker keeps in its backend's registry, and the
//! counters it reports in that record and in its events.

use serde::{Deserialize, Serialize};

use crate::envelope::UnixMillis;
use crate::error::CodecError;

/// What a worker did (a snapshot of its counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerCounts {
    /// Deliveries taken (each counts toward `max_tasks`).
    pub started: u64,
    /// Runs that succeeded and were acked.
    pub succeeded: u64,
    /// Failed runs scheduled for retry.
    pub retried: u64,
    /// Tasks dead-lettered.
    pub dead: u64,
    /// Unfinished tasks given back at shutdown.
    pub released: u64,
    /// Runs whose lease was lost before they were settled.
    pub lease_lost: u64,
    /// Runs stopped by a cancel ([`Driver::cancel`](crate::Driver::cancel)) and settled as
    /// cancelled.
    #[serde(default)]
    pub cancelled: u64,
}

/// A running worker as recorded in the backend's worker registry: written when it starts,
/// rewritten on every heartbeat, removed when it stops; a record not rewritten by
/// `expires_at` (a crashed worker) is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's id (unique).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it consumes, in priority order.
    pub queues: Vec<String>,
    /// Its concurrency limit.
    pub concurrency: usize,
    /// The asynctasq version it runs.
    pub version: String,
    /// When it started (Unix ms).
    pub started_at: UnixMillis,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_at: UnixMillis,
    /// Its heartbeat interval (ms): a worker silent for two intervals is stale.
    pub heartbeat_ms: u64,
    /// When the record lapses unless rewritten (Unix ms).
    pub expires_at: UnixMillis,
    /// Tasks running at the last heartbeat.
    pub in_flight: usize,
    /// Its counters at the last heartbeat.
    pub counts: WorkerCounts,
    /// What it ran at the last heartbeat (at most [`RUNNING_LISTED`] runs, the oldest first).
    /// Empty in records of older builds.
    #[serde(default)]
    pub running: Vec<RunningTask>,
}

/// Most runs a worker's registry record lists.
pub const RUNNING_LISTED: usize = 100;

/// A run a worker holds, as its registry record lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningTask {
    /// The task's id.
    pub id: crate::TaskId,
    /// Its wire name.
    pub name: String,
    /// Its queue.
    pub queue: String,
    /// When this run started (Unix ms).
    pub started_at: UnixMillis,
    /// Whether it has run past its threshold ([`stuck_after`]): a run that looks stuck.
    pub stuck: bool,
}

/// How long a run may go before it looks stuck: twice its timeout, or an hour when it has none.
pub fn stuck_after(timeout: Option<std::time::Duration>) -> std::time::Duration {
    timeout.map_or(std::time::Duration::from_secs(3600), |t| t * 2)
}

impl WorkerInfo {
    /// The record as bytes (MessagePack with field names), for backends that store blobs.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// A record from [`encode`](Self::encode)'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }

    /// Whether it missed two heartbeats as of `now` (Unix ms).
    pub fn is_stale(&self, now: UnixMillis) -> bool {
        now > self.heartbeat_at + 2 * self.heartbeat_ms
    }
}
