//! A task's error history: every failed attempt's error, kept with the task in order
//! ([`TaskRecord::errors`](crate::TaskRecord::errors), [`DeadTask::errors`](crate::DeadTask::errors)),
//! not only the last one.
//!
//! Backends append one entry with each failure ([`Driver::nack`](crate::Driver::nack) with an
//! error, [`Driver::dead_letter`](crate::Driver::dead_letter)) in the same write that settles
//! the attempt, as a JSON array of `{"attempt", "at", "error", "worker"}` objects: SQL databases append
//! with their own JSON functions, Redis with `cjson`, so no failure reads the history first.

use serde::{Deserialize, Serialize};

use crate::envelope::UnixMillis;

/// One failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The delivery that failed (1 for the first).
    pub attempt: u32,
    /// When it failed (Unix ms).
    pub at: UnixMillis,
    /// Its error.
    pub error: String,
    /// The consumer whose run failed (a worker's id, [`Driver::consumer`](crate::Driver::consumer)),
    /// when the backend knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// The history stored as `json` (a JSON array; absent or unreadable: none).
pub fn parse(json: Option<&str>) -> Vec<AttemptError> {
    json.and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
}
