//! One `basic_consume` per task queue and driver handle, feeding a local buffer that
//! [`Driver::dequeue`](asynctasq_core::Driver::dequeue) takes from.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::BasicCancelOptions;
use tokio::task::JoinHandle;

use super::message::Meta;
use super::{Inner, now_ms};

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
    pub(super) queue: String,
    pub(super) work: String,
    pub(super) generation: u64,
    pub(super) seq: u64,
    pub(super) channel: Channel,
    pub(super) tag: String,
    pub(super) prefetch: usize,
    /// Deliveries expected at the start: the tasks ready then, up to the prefetch.
    initial: usize,
    state: Mutex<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Consumer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        queue: String,
        work: String,
        generation: u64,
        seq: u64,
        channel: Channel,
        tag: String,
        prefetch: usize,
        initial: usize,
    ) -> Self {
        Self { queue, work, generation, seq, channel, tag, prefetch, initial, state: Mutex::default(), task: Mutex::new(None) }
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

    pub(super) fn set_task(&self, task: JoinHandle<()>) {
        *self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }
}

/// Receives deliveries until the consumer stops: buffers due ones (waking waiters) and moves
/// early ones back into a delay bucket.
pub(super) async fn run(consumer: Arc<Consumer>, mut stream: lapin::Consumer, inner: Weak<Inner>) {
    while let Some(item) = stream.next().await {
        let delivery = match item {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, queue = %consumer.queue, "consumer stopped");
                break;
            }
        };
        let Some(inner) = inner.upgrade() else { break };
        let meta = Meta::read(&delivery.properties);
        {
            let mut s = consumer.state();
            s.unacked += 1;
            s.received += 1;
        }
        if let Some(not_before) = meta.not_before.filter(|&t| t > now_ms()) {
            tokio::spawn(super::redelay(inner, consumer.clone(), delivery.delivery_tag, delivery.data, meta, not_before));
            continue;
        }
        consumer.state().buffer.push_back(Buffered { tag: delivery.delivery_tag, received: Instant::now(), data: delivery.data, meta });
        inner.arrivals.notify_waiters();
    }
    let cancelled = {
        let mut s = consumer.state();
        s.ended = true;
        s.cancelled
    };
    if let Some(inner) = inner.upgrade() {
        if !cancelled {
            inner.consumer_died(&consumer);
        }
        inner.arrivals.notify_waiters();
    }
}

/// Drops the buffer of a consumer whose channel closed (the broker has requeued it all).
pub(super) fn clear(consumer: &Consumer) {
    let mut s = consumer.state();
    s.buffer.clear();
    s.unacked = 0;
}
