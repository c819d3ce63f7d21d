//! Held leases and their expiry.
//!
//! A delivery handed to the engine stays unacknowledged on its consumer's channel; the driver
//! keeps it here under its lease token with the lease's expiry. A lease that runs out is
//! rejected with requeue (the quorum queue counts the attempt), and a token no longer here
//! (expired, or its channel closed) is a lost lease. No lease outlives the broker's
//! `consumer_timeout` less a margin, so one long task never costs its channel's neighbours
//! their leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};
use asynctasq_core::driver::{Delivery, Lease};
use asynctasq_core::envelope::{Envelope, TaskId, millis};

use super::consumer::{Buffered, Consumer};
use super::message::Meta;
use crate::sync::lock;

/// A delivery handed to the engine.
pub(super) struct Held {
    pub(super) consumer: Arc<Consumer>,
    pub(super) tag: u64,
    pub(super) id: TaskId,
    pub(super) attempt: u32,
    pub(super) data: Vec<u8>,
    pub(super) meta: Meta,
    expires_at: u64,
    /// Latest expiry allowed: the broker's consumer timeout, less a margin.
    cap_at: u64,
}

/// The leases this handle holds, by token.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<String, Held>>,
}

impl Leases {
    /// Hands buffered deliveries of `c` to the engine as leases, none outliving the broker's
    /// `consumer_timeout` (less a tenth, at most a minute) after its delivery.
    pub(super) fn hand_out(&self, c: &Arc<Consumer>, taken: Vec<Buffered>, consumer_timeout: Duration) -> Vec<Delivery> {
        let now = SystemClock.now();
        let timeout = millis(consumer_timeout);
        let margin = (timeout / 10).min(60_000);
        let mut held = lock(&self.held);
        taken
            .into_iter()
            .map(|b| {
                let attempt = b.meta.spent.saturating_add(1);
                let envelope = Envelope::decode(&b.data);
                let (id, lease_ms) = match &envelope {
                    Ok(e) => (e.id, e.lease_ms),
                    Err(_) => (b.meta.task_id().unwrap_or_default(), 30_000),
                };
                let received = now.saturating_sub(u64::try_from(b.received.elapsed().as_millis()).unwrap_or(u64::MAX));
                let cap_at = received + timeout - margin;
                let expires_at = (now + lease_ms).min(cap_at);
                let token = format!("{}.{}.{}", c.generation, c.seq, b.tag);
                let replayed = b.meta.replayed;
                held.insert(
                    token.clone(),
                    Held { consumer: c.clone(), tag: b.tag, id, attempt, data: b.data, meta: b.meta, expires_at, cap_at },
                );
                Delivery::new(Lease { id, queue: c.queue.clone(), token, expires_at }, attempt, envelope).replayed(replayed)
            })
            .collect()
    }

    /// Takes the lease with `token` out, if this handle still holds it.
    pub(super) fn take(&self, token: &str) -> Option<Held> {
        lock(&self.held).remove(token)
    }

    /// Puts back a lease taken out for a move that failed: it expires as usual.
    pub(super) fn put_back(&self, token: String, held: Held) {
        lock(&self.held).insert(token, held);
    }

    /// Takes out every lease of `leases` still held; the ids of the others are lost.
    pub(super) fn take_all<'a>(&self, leases: impl ExactSizeIterator<Item = &'a Lease>) -> (Vec<(TaskId, Held)>, Vec<TaskId>) {
        let mut held = lock(&self.held);
        let (mut taken, mut lost) = (Vec::with_capacity(leases.len()), Vec::new());
        for l in leases {
            match held.remove(&l.token) {
                Some(h) => taken.push((l.id, h)),
                None => lost.push(l.id),
            }
        }
        (taken, lost)
    }

    /// Extends a held lease to `by` from now, never past its cap nor below its expiry.
    pub(super) fn extend(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let mut held = lock(&self.held);
        let Some(h) = held.get_mut(&lease.token).filter(|h| h.consumer.channel.status().connected()) else {
            return Err(DriverError::LeaseLost(lease.id));
        };
        h.expires_at = (SystemClock.now() + millis(by)).min(h.cap_at).max(h.expires_at);
        Ok(Lease { expires_at: h.expires_at, ..lease.clone() })
    }

    /// Drops the leases of consumers `lost` says the broker requeued.
    pub(super) fn forget(&self, lost: impl Fn(&Consumer) -> bool) {
        lock(&self.held).retain(|_, h| !lost(&h.consumer));
    }

    /// Leases held on `queue`.
    pub(super) fn count(&self, queue: &str) -> u64 {
        lock(&self.held).values().filter(|h| h.consumer.queue == queue).count() as u64
    }

    /// Rejects, with requeue, every lease past its expiry: the queue counts the attempt.
    pub(super) async fn expire(&self) {
        let now = SystemClock.now();
        let expired: Vec<Held> = {
            let mut held = lock(&self.held);
            let keys: Vec<String> = held.iter().filter(|(_, h)| h.expires_at <= now).map(|(k, _)| k.clone()).collect();
            keys.into_iter().filter_map(|k| held.remove(&k)).collect()
        };
        for h in expired {
            tracing::debug!(task.id = %h.id, queue = %h.consumer.queue, "lease expired; requeueing the task");
            h.consumer.requeue(h.tag).await;
        }
    }
}
