//! How a task travels as an SQS message.
//!
//! The body is the MessagePack envelope in base64 (SQS bodies are text). Message attributes
//! carry what the driver must read even from a body it cannot decode:
//!
//! | Attribute              | Type   | Meaning |
//! |------------------------|--------|---------|
//! | `asynctasq.id`         | String | the task id |
//! | `asynctasq.base`       | Number | attempts spent before this copy was sent; a delivery's attempt is `base + ApproximateReceiveCount` |
//! | `asynctasq.not-before` | Number | due time (Unix ms); a copy received earlier is sent again with the rest of its delay |
//! | `asynctasq.error`      | String | dead copies: the last error |
//! | `asynctasq.attempt`    | Number | dead copies: deliveries at death |
//! | `asynctasq.dead-at`    | Number | dead copies: time of death (Unix ms) |
//! | `asynctasq.replayed`   | Number | `1` once the task was moved back from the dead queue |

use std::collections::HashMap;

use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::{CodecError, DriverError};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const ID: &str = "asynctasq.id";
const BASE: &str = "asynctasq.base";
const NOT_BEFORE: &str = "asynctasq.not-before";
const ERROR: &str = "asynctasq.error";
const ATTEMPT: &str = "asynctasq.attempt";
const DEAD_AT: &str = "asynctasq.dead-at";
const REPLAYED: &str = "asynctasq.replayed";

/// The envelope header naming a FIFO message group (tasks of one group run one at a time, in
/// order). Without it a task's key ([`Envelope::key`]) is its group, and a task without either
/// is a group of its own.
pub const GROUP_HEADER: &str = "group";

/// Longest error kept on a dead copy (the rest is cut, so a huge error cannot make the copy
/// exceed SQS's size limit).
const MAX_ERROR: usize = 8 * 1024;

/// Why a copy is dead.
#[derive(Clone, Debug)]
pub(super) struct Death {
    pub(super) error: String,
    pub(super) attempt: u32,
    pub(super) dead_at: u64,
}

/// One message copy to send.
#[derive(Clone, Debug)]
pub(super) struct Outgoing {
    /// The task's id, sent as an attribute.
    pub(super) id: TaskId,
    /// The encoded envelope (base64 of its bytes).
    pub(super) body: String,
    /// Attempts spent before this copy.
    pub(super) base: u32,
    /// When the task is due (Unix ms), sent as an attribute.
    pub(super) not_before: u64,
    /// The FIFO message group, if any.
    pub(super) group: Option<String>,
    /// Why and when it died, for a dead copy.
    pub(super) death: Option<Death>,
    /// FIFO deduplication id: the task id for a first send (a repeated dispatch within SQS's
    /// five-minute window is dropped), a fresh id for every later copy.
    pub(super) dedup: String,
    /// Moved back from the dead queue since dispatch.
    pub(super) replayed: bool,
}

impl Outgoing {
    /// The first copy of a dispatched task.
    pub(super) fn dispatch(envelope: &Envelope) -> Result<Self, DriverError> {
        Ok(Self {
            id: envelope.id,
            body: STANDARD.encode(envelope.encode()?),
            base: 0,
            not_before: envelope.not_before,
            group: envelope.headers.get(GROUP_HEADER).or(envelope.key.as_ref()).cloned(),
            death: None,
            dedup: envelope.id.to_string(),
            replayed: false,
        })
    }

    /// A later copy of a received message, with a fresh deduplication id.
    pub(super) fn copy(of: &Meta, base: u32, not_before: u64) -> Self {
        Self {
            id: of.id,
            body: of.body.clone(),
            base,
            not_before,
            group: of.group.clone(),
            death: None,
            dedup: TaskId::new().to_string(),
            replayed: of.replayed,
        }
    }

    /// Bytes SQS counts against its size limit: body plus attribute names, types and values.
    pub(super) fn size(&self) -> usize {
        self.attributes().iter().map(|(k, t, v)| k.len() + t.len() + v.len()).sum::<usize>() + self.body.len()
    }

    fn attributes(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut v = vec![
            (ID, "String", self.id.to_string()),
            (BASE, "Number", self.base.to_string()),
            (NOT_BEFORE, "Number", self.not_before.to_string()),
        ];
        if let Some(d) = &self.death {
            v.push((ERROR, "String", d.error.clone()));
            v.push((ATTEMPT, "Number", d.attempt.to_string()));
            v.push((DEAD_AT, "Number", d.dead_at.to_string()));
        }
        if self.replayed {
            v.push((REPLAYED, "Number", "1".to_owned()));
        }
        v
    }

    /// The batch entry, `i` being its id within the batch.
    pub(super) fn entry(&self, i: usize, delay_secs: u32, fifo: bool) -> Result<SendMessageBatchRequestEntry, DriverError> {
        let mut b = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(&self.body);
        for (name, kind, value) in self.attributes() {
            let value = MessageAttributeValue::builder().data_type(kind).string_value(value).build().map_err(build_error)?;
            b = b.message_attributes(name, value);
        }
        if fifo {
            b = b.message_group_id(self.group.clone().unwrap_or_else(|| self.id.to_string())).message_deduplication_id(&self.dedup);
        } else if delay_secs > 0 {
            b = b.delay_seconds(delay_secs as i32);
        }
        b.build().map_err(build_error)
    }
}

/// Cuts an error to what a dead copy keeps, on a character boundary.
pub(super) fn clip_error(error: &str) -> String {
    if error.len() <= MAX_ERROR {
        return error.to_owned();
    }
    let mut end = MAX_ERROR;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &error[..end], error.len() - end)
}

fn build_error(e: aws_sdk_sqs::error::BuildError) -> DriverError {
    DriverError::backend("building an SQS request", e)
}

/// A received message, decoded as far as it goes.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) meta: Meta,
    pub(super) envelope: Result<Envelope, CodecError>,
}

/// What the driver keeps of a received message besides its decoded envelope.
#[derive(Clone, Debug)]
pub(super) struct Meta {
    /// The receipt handle: the lease token.
    pub(super) receipt: String,
    /// The task's id (from its attribute, else its envelope).
    pub(super) id: TaskId,
    /// The body as received, sent again verbatim by copies.
    pub(super) body: String,
    /// Attempts spent before this copy was sent.
    pub(super) base: u32,
    /// SQS's `ApproximateReceiveCount` of this copy.
    pub(super) receive_count: u32,
    /// When the task is due (Unix ms).
    pub(super) not_before: u64,
    /// The FIFO message group, if any.
    pub(super) group: Option<String>,
    /// Why and when it died, on a dead copy.
    pub(super) death: Option<Death>,
    /// The lease the task asked for (ms), when its body decodes.
    pub(super) lease_ms: Option<u64>,
    /// Moved back from the dead queue since dispatch.
    pub(super) replayed: bool,
}

impl Incoming {
    /// Reads a received message; `None` when it has no receipt handle (never from SQS).
    pub(super) fn parse(message: &Message) -> Option<Self> {
        let receipt = message.receipt_handle()?.to_owned();
        let body = message.body().unwrap_or_default().to_owned();
        let empty = HashMap::new();
        let attrs = message.message_attributes().unwrap_or(&empty);
        let text = |name: &str| attrs.get(name).and_then(|v| v.string_value()).map(str::to_owned);
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let envelope = decode(&body);
        let id = text(ID).and_then(|s| s.parse().ok()).or_else(|| envelope.as_ref().ok().map(|e| e.id)).unwrap_or_default();
        let receive_count = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let death = text(ERROR).map(|error| Death {
            error,
            attempt: number(ATTEMPT).unwrap_or_default() as u32,
            dead_at: number(DEAD_AT).unwrap_or_default(),
        });
        let meta = Meta {
            receipt,
            id,
            base: number(BASE).unwrap_or_default() as u32,
            receive_count,
            not_before: number(NOT_BEFORE).or_else(|| envelope.as_ref().ok().map(|e| e.not_before)).unwrap_or_default(),
            group: message.attributes().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned(),
            death,
            lease_ms: envelope.as_ref().ok().map(|e| e.lease_ms),
            replayed: number(REPLAYED) == Some(1),
            body,
        };
        Some(Self { meta, envelope })
    }
}

impl Meta {
    /// This delivery's attempt: attempts before this copy plus its receives.
    pub(super) fn attempt(&self) -> u32 {
        self.base + self.receive_count
    }
}

fn decode(body: &str) -> Result<Envelope, CodecError> {
    let bytes = STANDARD
        .decode(body.trim())
        .map_err(|e| CodecError::Decode(rmp_serde::decode::Error::Uncategorized(format!("SQS message body is not base64 ({e})"))))?;
    Envelope::decode(&bytes)
}
