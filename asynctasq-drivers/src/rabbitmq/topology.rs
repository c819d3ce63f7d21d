//! Every queue and argument the RabbitMQ driver declares, in one place.
//!
//! For the prefix `p` (default `asynctasq`) and a task queue `q`:
//!
//! | Queue | Type | Arguments | Holds |
//! |---|---|---|---|
//! | `p:q` | quorum, durable | `x-queue-type=quorum` | ready tasks; workers consume from it |
//! | `p:q:dead` | classic, durable (quorum with several nodes) | | dead tasks, with the error and attempt in headers |
//! | `p:q:delay:<ms>` | classic, durable | `x-message-ttl=<ms>`, `x-dead-letter-exchange=""`, `x-dead-letter-routing-key=p:q` | tasks waiting for a delay or a retry (up to 14 buckets, each declared on first use, see below) |
//! | `p:queues` | classic, durable (quorum with several nodes) | | the registry: one message per task queue name (for [`Driver::queues`](asynctasq_core::Driver::queues)) |
//!
//! A URL naming several nodes of a cluster declares the registry and dead-letter queues as
//! quorum queues too: a classic queue lives on one node, and while that node is down it cannot
//! even be declared, which would stop every session on the surviving nodes. With one node
//! they stay classic, as they always were (a queue's type cannot change once declared).
//! Delay buckets stay classic either way: while the node a bucket lives on is down, delays and
//! retries through that bucket wait for it (nothing is lost; their messages are durable).
//!
//! There are no exchanges and no bindings: every publish goes through the default exchange,
//! which routes by queue name, and every publish is `mandatory` (an unroutable message is an
//! error, never silently dropped) with publisher confirms, persistent (`delivery_mode = 2`).
//! Queue names validated by [`validate_queue_name`](asynctasq_core::envelope::validate_queue_name)
//! cannot contain `:`, so no task queue's names collide with another's.
//!
//! # Why quorum work queues
//! A quorum queue counts how often each message was handed out and given back (a consumer died,
//! its channel closed, its lease expired) in the `x-delivery-count` header. The driver adds it to
//! the attempt count carried in its own header, so a task that crashes workers over and over
//! reaches `max_attempts` like any failing task. Quorum queues are also replicated and fsync
//! their log, and on this machine they publish and deliver faster than classic queues.
//!
//! # Delays without plugins
//! Each bucket queue has a fixed time-to-live and dead-letters expired messages into the work
//! queue through the default exchange. Bucket lengths are 16 ms × 4ᵏ for k = 0‥13 (16 ms up
//! to ~12 days). A task due in `d` goes to the longest bucket not longer than `d` (the 16 ms
//! bucket when `d` is shorter); because every message of a bucket has the same time-to-live, a
//! long delay never holds up a short one. A task that reaches the work queue before its
//! `x-asynctasq-not-before` header is published again into the bucket for what is left, by
//! whichever worker receives it, so no delay depends on the process that set it, and no task
//! is delivered early. A delay takes at most three hops per bucket length.
//!
//! Buckets are declared when first used, so a queue without delays has two RabbitMQ queues,
//! not sixteen (thousands of idle queues slow a broker's start-up to minutes). Counting
//! scheduled tasks looks each bucket up with a passive declare.
//!
//! Classic bucket queues dead-letter at most once: a broker that crashes (not a clean
//! `stop_app`) in the instant between expiry and routing can lose that one message.

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Queue};

use super::error::lapin_err;
use asynctasq_core::DriverError;

/// Time-to-live of the delay buckets, shortest first.
pub(super) const BUCKETS_MS: [u64; 14] = {
    let mut b = [16u64; 14];
    let mut i = 1;
    while i < 14 {
        b[i] = b[i - 1] * 4;
        i += 1;
    }
    b
};

/// The names of one task queue's RabbitMQ queues.
#[derive(Clone, Debug)]
pub(super) struct Names {
    /// The work queue.
    pub(super) work: String,
    /// The dead-letter queue.
    pub(super) dead: String,
    /// The delay buckets, in [`BUCKETS_MS`] order.
    pub(super) buckets: Vec<String>,
}

impl Names {
    pub(super) fn new(prefix: &str, queue: &str) -> Self {
        let work = format!("{prefix}:{queue}");
        Self { dead: format!("{work}:dead"), buckets: BUCKETS_MS.iter().map(|ms| format!("{work}:delay:{ms}")).collect(), work }
    }

    /// The bucket for a task due in `ms`: the longest not longer than `ms`, or the shortest.
    pub(super) fn bucket_index(&self, ms: u64) -> usize {
        BUCKETS_MS.iter().rposition(|&b| b <= ms).unwrap_or(0)
    }
}

/// The registry queue's name.
pub(super) fn registry(prefix: &str) -> String {
    format!("{prefix}:queues")
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}

fn bucket_args(work: &str, ttl_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms as i64));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(work.into()));
    args
}

/// The ready count of an existing work queue (a passive declare on `channel`; on a consumer's
/// channel it is answered after the deliveries sent before it).
pub(super) async fn ready_count(channel: &Channel, work: &str) -> Result<u64, DriverError> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    channel
        .queue_declare(work.into(), passive, FieldTable::default())
        .await
        .map(|q| u64::from(q.message_count()))
        .map_err(|e| lapin_err("counting ready tasks", e))
}

/// Declares the work queue (idempotent) and returns its counts.
pub(super) async fn declare_work(channel: &Channel, names: &Names) -> Result<Queue, DriverError> {
    channel.queue_declare(names.work.as_str().into(), durable(), quorum_args()).await.map_err(|e| lapin_err("declaring the work queue", e))
}

/// The arguments of a queue that is replicated (quorum) in a cluster, classic otherwise.
fn kept_args(replicated: bool) -> FieldTable {
    if replicated { quorum_args() } else { FieldTable::default() }
}

/// Declares the work and dead-letter queues of one task queue (idempotent: the same arguments
/// each time) and returns their message counts: (ready, dead).
pub(super) async fn declare_base(channel: &Channel, names: &Names, replicated: bool) -> Result<(u64, u64), DriverError> {
    let work = declare_work(channel, names);
    let dead = channel.queue_declare(names.dead.as_str().into(), durable(), kept_args(replicated));
    let (work, dead) = futures_util::future::join(work, dead).await;
    let dead = dead.map_err(|e| lapin_err("declaring the dead-letter queue", e))?;
    Ok((u64::from(work?.message_count()), u64::from(dead.message_count())))
}

/// Declares delay bucket `i` of one task queue (idempotent).
pub(super) async fn declare_bucket(channel: &Channel, names: &Names, i: usize) -> Result<(), DriverError> {
    channel
        .queue_declare(names.buckets[i].as_str().into(), durable(), bucket_args(&names.work, BUCKETS_MS[i]))
        .await
        .map(drop)
        .map_err(|e| lapin_err("declaring a delay queue", e))
}

/// The delay buckets of one task queue that exist, with their message counts. Buckets are
/// declared on first use, by any process, so each is looked up with a passive declare; a
/// missing queue closes the channel it was asked on, so the next lookup opens another.
pub(super) async fn existing_buckets(conn: &Connection, names: &Names) -> Result<Vec<(usize, u64)>, DriverError> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let mut found = Vec::new();
    let mut channel: Option<Channel> = None;
    for (i, name) in names.buckets.iter().enumerate() {
        let ch = match channel.take() {
            Some(ch) if ch.status().connected() => ch,
            _ => conn.create_channel().await.map_err(|e| lapin_err("opening a channel", e))?,
        };
        match ch.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
            Ok(q) => {
                found.push((i, u64::from(q.message_count())));
                channel = Some(ch);
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(lapin_err("looking up a delay queue", e)),
        }
    }
    if let Some(ch) = channel {
        let _ = ch.close(200, "asynctasq: probed".into()).await;
    }
    Ok(found)
}

/// Whether the broker said the queue does not exist.
pub(super) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// Declares the registry queue.
pub(super) async fn declare_registry(channel: &Channel, prefix: &str, replicated: bool) -> Result<(), DriverError> {
    channel
        .queue_declare(registry(prefix).into(), durable(), kept_args(replicated))
        .await
        .map(drop)
        .map_err(|e| lapin_err("declaring the queue registry", e))
}
