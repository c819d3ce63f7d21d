//! One `basic_consume` per task queue and driver handle, feeding a local buffer that
//! [`Driver::dequeue`](asynctasq_core::Driver::dequeue) takes from.
//!
//! The consumer tells its [`Owner`] (the driver) what happens to it: a delivery buffered, a
//! delivery that arrived before its due time, the consumer's end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};
use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::error::lapin_err;
use super::message::Meta;
use super::session::Session;
use super::topology::{self, Names};

/// What a consumer reports to the driver that started it.
pub(super) trait Owner: Send + Sync {
    /// A delivery arrived before its due time, `not_before`: move it back to a delay bucket.
    fn early(self: Arc<Self>, consumer: Arc<Consumer>, delivery: Buffered, not_before: u64);
    /// A delivery was buffered, or the consumer ended: wake whoever waits for one.
    fn arrived(&self);
    /// The consumer stopped without being cancelled: its channel or connection closed.
    fn died(&self, consumer: &Arc<Consumer>);
}

/// A delivery received from the broker and not yet handed to the engine.
pub(super) struct Buffered {
    pub(super) tag: u64,
    pub(super) received: Instant,
    pub(super) data: Vec<u8>,
    pub(super) meta: Meta,
}

#[derive(Default)]
struct State {
    buffer: VecDeque<Buffered>,
    /// Deliveries of this consumer not yet acked or rejected: buffered, leased or being moved.
    unacked: usize,
    /// Deliveries received since the start.
    received: usize,
    /// The consumer stopped (channel closed, or cancelled by `stop_prefetch`).
    ended: bool,
    /// Cancelled on purpose: its leases stay valid, its channel closes once they are settled.
    cancelled: bool,
}

/// A consumer of one work queue on a channel of its own.
pub(super) struct Consumer {
    /// The task queue it consumes.
    pub(super) queue: String,
    /// The RabbitMQ work queue of that task queue.
    pub(super) work: String,
    /// The session it was started on.
    pub(super) generation: u64,
    /// Tells this handle's consumers apart, in lease tokens.
    pub(super) seq: u64,
    /// Its own channel.
    pub(super) channel: Channel,
    /// The consumer tag.
    pub(super) tag: String,
    /// Deliveries it may hold unacknowledged.
    pub(super) prefetch: usize,
    /// Deliveries expected at the start: the tasks ready then, up to the prefetch.
    initial: usize,
    state: Mutex<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Consumer {
    /// Starts consuming `queue` (whose queues are `names`) on a channel of its own with
    /// `prefetch` deliveries of credit; `seq` tells this handle's consumers apart.
    pub(super) async fn start(
        session: &Session,
        queue: &str,
        names: &Names,
        seq: u64,
        prefetch: usize,
        owner: Weak<dyn Owner>,
    ) -> Result<Arc<Self>, DriverError> {
        let channel = session.conn.create_channel().await.map_err(|e| lapin_err("opening a consumer channel", e))?;
        channel.basic_qos(prefetch as u16, BasicQosOptions::default()).await.map_err(|e| lapin_err("setting the prefetch", e))?;
        let tag = format!("asynctasq-{}-{seq}", std::process::id());
        let ready = topology::ready_count(&channel, &names.work).await?;
        let stream = channel
            .basic_consume(names.work.as_str().into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(|e| lapin_err("starting a consumer", e))?;
        let c = Arc::new(Self {
            queue: queue.to_owned(),
            work: names.work.clone(),
            generation: session.generation,
            seq,
            channel,
            tag,
            prefetch,
            initial: prefetch.min(usize::try_from(ready).unwrap_or(usize::MAX)),
            state: Mutex::default(),
            task: Mutex::new(None),
        });
        *c.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::spawn(run(c.clone(), stream, owner)));
        Ok(c)
    }

    /// Whether the tasks that were ready when it started have not all arrived yet.
    pub(super) fn expects_more(&self) -> bool {
        let s = self.state();
        !s.ended && s.received < self.initial
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Still receiving deliveries.
    pub(super) fn is_live(&self) -> bool {
        !self.state().ended && self.channel.status().connected()
    }

    /// Whether the broker may push more deliveries to it now.
    pub(super) fn has_credit(&self) -> bool {
        let s = self.state();
        !s.ended && s.unacked < self.prefetch
    }

    pub(super) fn buffered(&self) -> usize {
        self.state().buffer.len()
    }

    /// Takes up to `max` buffered deliveries, oldest first.
    pub(super) fn take(&self, max: usize) -> Vec<Buffered> {
        let mut s = self.state();
        let n = max.min(s.buffer.len());
        s.buffer.drain(..n).collect()
    }

    /// Adds to `taken` (up to `max` in all) as deliveries arrive, while `more` says so, for at
    /// most `wait` and only while the consumer lives; `arrivals` is signalled on each arrival.
    pub(super) async fn take_waiting(
        &self,
        taken: &mut Vec<Buffered>,
        max: usize,
        wait: Duration,
        arrivals: &Notify,
        more: impl Fn(&Self, &[Buffered]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + wait;
        while more(self, taken) && self.is_live() {
            let arrived = arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            taken.extend(self.take(max - taken.len()));
            if !more(self, taken) || tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        taken.extend(self.take(max - taken.len()));
    }

    /// Acks a delivery whose copy was published elsewhere (moved).
    pub(super) async fn ack_moved(&self, tag: u64) {
        if let Err(error) = self.channel.basic_ack(tag, BasicAckOptions::default()).await {
            tracing::debug!(%error, "ack after a move failed; the broker redelivers the original");
        }
        self.settled(1);
    }

    /// Rejects a delivery with requeue: the broker puts it back and counts an attempt.
    pub(super) async fn requeue(&self, tag: u64) {
        let _ = self.channel.basic_nack(tag, BasicNackOptions { requeue: true, multiple: false }).await;
        self.settled(1);
    }

    /// Takes the buffered deliveries received before `cutoff`.
    pub(super) fn take_stale(&self, cutoff: Instant) -> Vec<Buffered> {
        let mut s = self.state();
        let n = s.buffer.iter().take_while(|b| b.received < cutoff).count();
        s.buffer.drain(..n).collect()
    }

    /// `n` deliveries were acked or rejected.
    pub(super) fn settled(&self, n: usize) {
        let close = {
            let mut s = self.state();
            s.unacked = s.unacked.saturating_sub(n);
            s.cancelled && s.unacked == 0
        };
        if close {
            let channel = self.channel.clone();
            tokio::spawn(async move {
                let _ = channel.close(200, "asynctasq: consumer stopped".into()).await;
            });
        }
    }

    /// Cancels the consumer and waits until every delivery sent before the cancel is buffered;
    /// returns the buffered deliveries, which the caller gives back.
    pub(super) async fn cancel(&self) -> Vec<Buffered> {
        self.state().cancelled = true;
        if let Err(error) = self.channel.basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default()).await {
            tracing::debug!(%error, queue = %self.queue, "cancelling the consumer failed; its channel is gone");
        }
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = task {
            // The stream ends at the cancel-ok; every delivery before it is in the buffer then.
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                tracing::warn!(queue = %self.queue, "consumer did not stop within 5 s of its cancel");
            }
        }
        let mut s = self.state();
        s.ended = true;
        s.buffer.drain(..).collect()
    }
}

/// Receives deliveries until the consumer stops: buffers due ones (waking waiters) and moves
/// early ones back into a delay bucket.
async fn run(consumer: Arc<Consumer>, mut stream: lapin::Consumer, owner: Weak<dyn Owner>) {
    while let Some(item) = stream.next().await {
        let delivery = match item {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, queue = %consumer.queue, "consumer stopped");
                break;
            }
        };
        let Some(owner) = owner.upgrade() else { break };
        let meta = Meta::read(&delivery.properties);
        {
            let mut s = consumer.state();
            s.unacked += 1;
            s.received += 1;
        }
        let not_before = meta.not_before.filter(|&t| t > SystemClock.now());
        let buffered = Buffered { tag: delivery.delivery_tag, received: Instant::now(), data: delivery.data, meta };
        if let Some(not_before) = not_before {
            owner.early(consumer.clone(), buffered, not_before);
            continue;
        }
        consumer.state().buffer.push_back(buffered);
        owner.arrived();
    }
    let cancelled = {
        let mut s = consumer.state();
        s.ended = true;
        s.cancelled
    };
    if let Some(owner) = owner.upgrade() {
        if !cancelled {
            owner.died(&consumer);
        }
        owner.arrived();
    }
}

/// Drops the buffer of a consumer whose channel closed (the broker has requeued it all).
pub(super) fn clear(consumer: &Consumer) {
    let mut s = consumer.state();
    s.buffer.clear();
    s.unacked = 0;
}
