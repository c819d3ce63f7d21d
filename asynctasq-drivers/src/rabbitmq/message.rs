//! What a task looks like on the wire: the MessagePack envelope as the body, and the driver's
//! bookkeeping in headers.
//!
//! | Header | Type | Meaning |
//! |---|---|---|
//! | `x-asynctasq-attempt` | long-long | deliveries spent before this message was published |
//! | `x-delivery-count` | long-long | set by the quorum work queue: deliveries given back since |
//! | `x-asynctasq-not-before` | long-long | Unix ms before which the task must not run (delays, retries) |
//! | `x-asynctasq-error` | long string | the last error (retries and dead tasks) |
//! | `x-asynctasq-dead-at` | long-long | Unix ms of the dead-lettering (dead tasks) |
//! | `x-asynctasq-replayed` | long-long | `1` once the task was moved back from the dead queue |
//!
//! A delivery's attempt is `x-asynctasq-attempt + x-delivery-count + 1`. Properties:
//! `delivery_mode = 2` (persistent), `message_id` = the task id, `content_type` =
//! `application/msgpack`.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use asynctasq_core::envelope::TaskId;

pub(super) const ATTEMPT: &str = "x-asynctasq-attempt";
pub(super) const DELIVERY_COUNT: &str = "x-delivery-count";
pub(super) const NOT_BEFORE: &str = "x-asynctasq-not-before";
pub(super) const ERROR: &str = "x-asynctasq-error";
pub(super) const DEAD_AT: &str = "x-asynctasq-dead-at";
pub(super) const REPLAYED: &str = "x-asynctasq-replayed";

/// The driver's headers of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Meta {
    /// Deliveries spent, including those the queue counted since the last publish.
    pub(super) spent: u32,
    pub(super) not_before: Option<u64>,
    pub(super) error: Option<String>,
    pub(super) dead_at: Option<u64>,
    pub(super) message_id: Option<String>,
    /// Moved back from the dead queue since dispatch.
    pub(super) replayed: bool,
}

fn int(table: &FieldTable, key: &str) -> Option<i64> {
    match table.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

fn text(table: &FieldTable, key: &str) -> Option<String> {
    match table.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

impl Meta {
    /// Reads the headers of a delivered message (missing or malformed headers count as absent:
    /// a message published by something else is still delivered, as attempt 1).
    pub(super) fn read(props: &BasicProperties) -> Self {
        let empty = FieldTable::default();
        let h = props.headers().as_ref().unwrap_or(&empty);
        let count = |key| u32::try_from(int(h, key).unwrap_or(0).max(0)).unwrap_or(u32::MAX);
        Self {
            spent: count(ATTEMPT).saturating_add(count(DELIVERY_COUNT)),
            not_before: int(h, NOT_BEFORE).and_then(|v| u64::try_from(v).ok()),
            error: text(h, ERROR),
            dead_at: int(h, DEAD_AT).and_then(|v| u64::try_from(v).ok()),
            message_id: props.message_id().as_ref().map(|s| s.as_str().to_owned()),
            replayed: int(h, REPLAYED) == Some(1),
        }
    }

    /// The headers of a message of a dead queue: as [`read`](Self::read), without the queue's
    /// `x-delivery-count` (reads of the dead queue given back, not attempts).
    pub(super) fn read_dead(props: &BasicProperties) -> Self {
        let empty = FieldTable::default();
        let h = props.headers().as_ref().unwrap_or(&empty);
        Self { spent: u32::try_from(int(h, ATTEMPT).unwrap_or(0).max(0)).unwrap_or(u32::MAX), ..Self::read(props) }
    }

    /// The task id from `message_id`, if it is one.
    pub(super) fn task_id(&self) -> Option<TaskId> {
        self.message_id.as_deref()?.parse().ok()
    }

    /// Properties for publishing a message with these headers.
    pub(super) fn properties(&self) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(ATTEMPT.into(), AMQPValue::LongLongInt(i64::from(self.spent)));
        if let Some(t) = self.not_before {
            h.insert(NOT_BEFORE.into(), AMQPValue::LongLongInt(t as i64));
        }
        if let Some(e) = &self.error {
            h.insert(ERROR.into(), AMQPValue::LongString(e.as_str().into()));
        }
        if let Some(t) = self.dead_at {
            h.insert(DEAD_AT.into(), AMQPValue::LongLongInt(t as i64));
        }
        if self.replayed {
            h.insert(REPLAYED.into(), AMQPValue::LongLongInt(1));
        }
        let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/msgpack".into()).with_headers(h);
        match &self.message_id {
            Some(id) => props.with_message_id(id.as_str().into()),
            None => props,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_the_queue_count_adds_to_the_attempt() {
        let meta = Meta {
            spent: 3,
            not_before: Some(1_700_000_000_000),
            error: Some("boom".into()),
            dead_at: Some(5),
            message_id: Some("id".into()),
            replayed: true,
        };
        let props = meta.properties();
        assert_eq!(Meta::read(&props), meta);
        let mut h = props.headers().clone().expect("headers");
        h.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        assert_eq!(Meta::read(&props.with_headers(h)).spent, 5, "queue-counted deliveries are spent attempts");
    }

    #[test]
    fn foreign_messages_without_headers_start_at_attempt_one() {
        assert_eq!(Meta::read(&BasicProperties::default()), Meta::default());
    }
}
