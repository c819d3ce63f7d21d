//! The envelope: what a driver stores and carries for one task.
//!
//! Every backend stores the same envelope, encoded as MessagePack by [`Envelope::encode`]. The
//! fields are written as a map (named fields), so a later version can add fields without
//! breaking tasks already stored, and `headers` carries open-ended metadata (correlation ids,
//! trace context, unique keys, priority) without a format change at all.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{CodecError, DriverError};
pub use crate::task_id::TaskId;

/// The envelope format this build writes and the newest it reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Milliseconds since the Unix epoch: how every timestamp in an envelope is kept.
pub type UnixMillis = u64;

/// The current wall-clock time in [`UnixMillis`].
pub fn unix_millis(t: SystemTime) -> UnixMillis {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One task as drivers store it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`] when written by this build).
    pub version: u8,
    /// The task's id.
    pub id: TaskId,
    /// The task's wire name, the key into the registry.
    pub name: String,
    /// The queue the task is in.
    pub queue: String,
    /// The task's arguments, MessagePack-encoded by the task type.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Deliveries so far. Zero while waiting for its first delivery; a driver sets it to the
    /// delivery's number (1 for the first) when it leases the task.
    pub attempt: u32,
    /// Deliveries allowed before the task is dead-lettered.
    pub max_attempts: u32,
    /// Longest a single run may take, in milliseconds; `None` for no limit.
    pub timeout_ms: Option<u64>,
    /// Lease duration (visibility timeout) of each delivery, in milliseconds.
    pub lease_ms: u64,
    /// When the task was dispatched.
    pub created_at: UnixMillis,
    /// The earliest time the task may be delivered (dispatch time unless delayed).
    pub not_before: UnixMillis,
    /// Open-ended metadata. Keys starting with `asynctasq-` are reserved.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The options neither the dispatch nor `#[task]` set, so a worker's defaults may take
    /// their place. Absent (nothing defaulted) in envelopes of older builds.
    #[serde(default, skip_serializing_if = "Defaulted::is_empty")]
    pub defaulted: Defaulted,
    /// The task's unique key and how it is held (see [`crate::unique`]); `None` for a task
    /// that may be stored any number of times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<crate::unique::Unique>,
    /// The task's key (`#[task(key = field)]`, [`Dispatch::key`](crate::Dispatch::key)): tasks
    /// of a queue sharing it share the queue's per-key limit ([`QueueLimits::per_key`](crate::QueueLimits::per_key)).
    /// `None` for a task no per-key limit applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A set of the envelope's options that nothing set: [`Defaulted::ATTEMPTS`],
/// [`Defaulted::LEASE`]. One small integer on the wire.
///
/// # Why a field, not a header
/// It began as a header (`asynctasq-defaulted: attempts,lease`). Nearly every envelope carries
/// it, and as a header it cost two strings and a map node to encode and to decode per task: on
/// the in-memory backend the plain path drained 0.86× the tasks/s of the build before it
/// (BENCHMARKS.md, issue 19's cost). As a field it is a byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Defaulted(u8);

impl Defaulted {
    /// Max attempts were not set.
    pub const ATTEMPTS: Self = Self(1);
    /// The lease was not set.
    pub const LEASE: Self = Self(2);

    /// Nothing defaulted.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether every option of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Defaulted {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl Envelope {
    /// Encodes the envelope as MessagePack with named fields.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        rmp_serde::to_vec_named(self).map_err(CodecError::Encode)
    }

    /// Decodes an envelope; corrupt, foreign or too-new bytes give an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        // One pass in the common case. The version is checked whether or not the shape parsed,
        // so an envelope from a newer build is reported as such, not as whatever field mismatch
        // its new shape causes (the version is read again only when the full parse failed).
        #[derive(Deserialize)]
        struct Version {
            version: u8,
        }
        let check = |version: u8| {
            if version == 0 || version > ENVELOPE_VERSION {
                return Err(CodecError::UnknownVersion { found: version, supported: ENVELOPE_VERSION });
            }
            Ok(())
        };
        match rmp_serde::from_slice::<Self>(bytes) {
            Ok(envelope) => check(envelope.version).map(|()| envelope),
            Err(e) => {
                if let Ok(Version { version }) = rmp_serde::from_slice(bytes) {
                    check(version)?;
                }
                Err(CodecError::Decode(e))
            }
        }
    }

    /// The lease duration as a [`Duration`].
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// The timeout as a [`Duration`].
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// Checks a queue name: 1 to 128 characters of `A-Z a-z 0-9 _ - .`.
///
/// Every driver calls this before using a name in a key, a table row or a broker queue, so a
/// name can never escape a key prefix or need quoting.
pub fn validate_queue_name(name: &str) -> Result<(), DriverError> {
    validate_name("queue", name, 128, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a task name: 1 to 200 characters of `A-Z a-z 0-9 _ - . :`.
pub fn validate_task_name(name: &str) -> Result<(), DriverError> {
    validate_name("task", name, 200, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// At most `EXCERPT` characters of user input, for an error message (a 10 KB name echoed in full
/// buries the reason): the start, then `…` and the full length.
pub fn excerpt(input: &str) -> String {
    const EXCERPT: usize = 60;
    if input.chars().count() <= EXCERPT {
        return input.to_owned();
    }
    let start: String = input.chars().take(EXCERPT).collect();
    format!("{start}… ({} bytes)", input.len())
}

fn validate_name(kind: &str, name: &str, max: usize, ok: impl Fn(char) -> bool) -> Result<(), DriverError> {
    if name.is_empty() {
        return Err(DriverError::Config(format!("{kind} name is empty")));
    }
    if name.len() > max {
        return Err(DriverError::Config(format!("{kind} name `{}` is {} bytes long; the limit is {max}", excerpt(name), name.len())));
    }
    if let Some(bad) = name.chars().find(|c| !ok(*c)) {
        let shown: String = name.chars().take(40).collect();
        return Err(DriverError::Config(format!("{kind} name `{shown}` contains {bad:?}; use letters, digits, `_`, `-` or `.`")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaulted_set_costs_one_small_field_and_older_envelopes_lack_it() {
        let mut e = sample();
        let with = e.encode().expect("encode");
        assert_eq!(Envelope::decode(&with).expect("decode").defaulted, Defaulted::ATTEMPTS | Defaulted::LEASE);
        e.defaulted = Defaulted::default();
        let without = e.encode().expect("encode");
        assert!(!without.windows(9).any(|w| w == b"defaulted"), "nothing defaulted: the field is left out, as older builds wrote it");
        assert_eq!(with.len() - without.len(), "defaulted".len() + 2, "a key and a one-byte integer");
        assert!(Envelope::decode(&without).expect("decode").defaulted.is_empty());
    }

    fn sample() -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            id: TaskId::new(),
            name: "send_email".into(),
            queue: "default".into(),
            payload: vec![1, 2, 3],
            attempt: 0,
            max_attempts: 3,
            timeout_ms: Some(1000),
            lease_ms: 30_000,
            created_at: 1,
            not_before: 2,
            headers: BTreeMap::from([("trace".into(), "abc".into())]),
            defaulted: Defaulted::ATTEMPTS | Defaulted::LEASE,
            unique: None,
            key: None,
        }
    }

    #[test]
    fn envelope_round_trips() {
        let e = sample();
        let decoded = Envelope::decode(&e.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded, e);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let bytes = sample().encode().expect("encodes");
        for cut in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "truncated at {cut} must not decode");
        }
        assert!(Envelope::decode(b"\xff\x00garbage").is_err());
    }

    #[test]
    fn newer_envelope_version_is_reported_as_unknown() {
        let mut e = sample();
        e.version = ENVELOPE_VERSION + 1;
        let err = Envelope::decode(&e.encode().expect("encodes")).expect_err("must refuse");
        assert!(matches!(err, CodecError::UnknownVersion { found, .. } if found == ENVELOPE_VERSION + 1));
        // A newer build may also change the shape: still reported by its version.
        let reshaped = rmp_serde::to_vec_named(&serde_json::json!({ "version": ENVELOPE_VERSION + 1, "task": "x" })).expect("encodes");
        let err = Envelope::decode(&reshaped).expect_err("must refuse");
        assert!(matches!(err, CodecError::UnknownVersion { found, .. } if found == ENVELOPE_VERSION + 1), "{err:?}");
        let current = rmp_serde::to_vec_named(&serde_json::json!({ "version": ENVELOPE_VERSION, "task": "x" })).expect("encodes");
        assert!(matches!(Envelope::decode(&current), Err(CodecError::Decode(_))), "a current version with a bad shape is a decode error");
    }

    #[test]
    fn hostile_queue_names_are_rejected() {
        for bad in ["", "a b", "x;drop", "q'", "{tag}", "a:b", "é", &"x".repeat(200)] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} must be rejected");
        }
        for good in ["default", "high-1", "emails.v2", "A_b"] {
            validate_queue_name(good).expect("valid name");
        }
    }

    #[test]
    fn hostile_task_names_are_rejected_with_the_reason() {
        for (bad, says) in
            [("", "empty"), ("a'b", "'\\''"), ("x; drop", "';'"), ("{tag}", "'{'"), ("é", "'é'"), (&"x".repeat(201)[..], "limit is 200")]
        {
            let err = validate_task_name(bad).expect_err("hostile task name").to_string();
            assert!(err.contains(says), "{bad:.20?}: {err}");
        }
        for good in ["send_email", "app::mailer::send", "emails.v2"] {
            validate_task_name(good).expect("valid name");
        }
    }
}
