//! A task's result: what a run returns, how it is kept with the acked task, and how a producer
//! reads it back.
//!
//! A `#[task]` function returning `Result<T, E>` with `T: Serialize` hands `T` to the worker
//! through its context's [`ResultSlot`]; the worker encodes it as a [`StoredResult`] and gives it
//! to [`Driver::ack`](crate::Driver::ack) with the task's result time to live, so the backend
//! keeps it in the same atomic step that settles the task. A value over
//! [`WorkerBuilder::max_result_size`](crate::WorkerBuilder::max_result_size) is not kept: the
//! task still succeeds, and its record says the result was too large.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::CodecError;

/// How long an acked task and its result stay findable when neither the task
/// (`#[task(result_ttl = ..)]`) nor the worker says otherwise: 24 hours.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long the record of a task that did not succeed (cancelled) stays findable when the
/// worker or the caller does not say otherwise: 7 days.
pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The largest encoded result kept when the worker does not say otherwise: 1 MiB.
pub const DEFAULT_MAX_RESULT_SIZE: usize = 1 << 20;

/// What a worker keeps of its successes: for how long, and up to what size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keeping {
    /// How long an acked task stays findable when its `#[task]` sets no `result_ttl`.
    pub(crate) ttl: Duration,
    /// The largest encoded result kept.
    pub(crate) max_size: usize,
    /// How long a dead or cancelled task's record stays findable when its `#[task]` sets no
    /// `failure_ttl`.
    pub(crate) failure_ttl: Duration,
    /// Whether `failure_ttl` was set, not defaulted: a worker refuses one its backend cannot
    /// apply to dead tasks.
    pub(crate) failure_ttl_set: bool,
}

impl Default for Keeping {
    fn default() -> Self {
        Self { ttl: DEFAULT_RESULT_TTL, max_size: DEFAULT_MAX_RESULT_SIZE, failure_ttl: DEFAULT_FAILURE_TTL, failure_ttl_set: false }
    }
}

/// Where a run puts what it returned, for the worker to keep with the ack. One per delivery;
/// clones share it.
#[derive(Clone, Debug, Default)]
pub struct ResultSlot(Arc<Mutex<Option<Vec<u8>>>>);

impl ResultSlot {
    /// Keeps `value` (MessagePack, fields by name) as the run's result, replacing one kept
    /// before. A unit or `None` value keeps nothing: the task returns nothing.
    pub fn put<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CodecError> {
        let bytes = rmp_serde::to_vec_named(value).map_err(CodecError::Encode)?;
        // MessagePack's nil: `()`, `None`, a unit struct. Nothing worth a record's bytes.
        let kept = (bytes != [0xc0]).then_some(bytes);
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = kept;
        Ok(())
    }

    /// Takes what the run kept, leaving the slot empty.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// A result as the backend keeps it: the value, or a note that it was too large to keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StoredResult {
    /// The value, MessagePack-encoded as the task returned it.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The value encoded to `size` bytes, over the worker's limit: the task succeeded, and its
    /// result was dropped.
    TooLarge {
        /// The encoded size.
        size: u64,
    },
}

impl StoredResult {
    /// What is kept of an encoded value, given the size limit.
    pub fn of(value: Vec<u8>, limit: usize) -> Self {
        if value.len() > limit { StoredResult::TooLarge { size: value.len() as u64 } } else { StoredResult::Value(value) }
    }

    /// The bytes a backend stores.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec(self).map_err(CodecError::Encode)
    }

    /// Reads back what [`StoredResult::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(CodecError::Decode)
    }

    /// The value decoded as `T`; `None` when it was too large to keep.
    pub fn value<T: DeserializeOwned>(&self) -> Result<Option<T>, CodecError> {
        match self {
            StoredResult::Value(bytes) => rmp_serde::from_slice(bytes).map(Some).map_err(CodecError::Decode),
            StoredResult::TooLarge { .. } => Ok(None),
        }
    }

    /// The value as JSON, for `task show`; a too-large result shows as a note.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            StoredResult::Value(bytes) => rmp_serde::from_slice::<serde_json::Value>(bytes)
                .unwrap_or_else(|e| serde_json::json!({ "undecodable": e.to_string(), "bytes": bytes.len() })),
            StoredResult::TooLarge { size } => serde_json::json!({ "too_large": size }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_or_none_result_keeps_nothing() {
        let slot = ResultSlot::default();
        slot.put(&()).expect("encode");
        assert_eq!(slot.take(), None);
        slot.put(&Option::<u8>::None).expect("encode");
        assert_eq!(slot.take(), None);
        slot.put(&7u8).expect("encode");
        assert_eq!(slot.take(), Some(vec![7]), "a value is kept");
        assert_eq!(slot.take(), None, "taken once");
    }

    #[test]
    fn a_result_over_the_limit_is_recorded_as_too_large() {
        let value = rmp_serde::to_vec_named(&"x".repeat(100)).expect("encode");
        let kept = StoredResult::of(value.clone(), 64);
        assert_eq!(kept, StoredResult::TooLarge { size: value.len() as u64 });
        let round = StoredResult::decode(&kept.encode().expect("encode")).expect("decode");
        assert_eq!(round.value::<String>().expect("decode"), None);
        let small = StoredResult::of(rmp_serde::to_vec_named(&42u32).expect("encode"), 64);
        let round = StoredResult::decode(&small.encode().expect("encode")).expect("decode");
        assert_eq!(round.value::<u32>().expect("decode"), Some(42));
        assert_eq!(round.to_json(), serde_json::json!(42));
    }
}
