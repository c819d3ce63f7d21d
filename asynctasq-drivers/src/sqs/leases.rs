//! Leases: a lease is the message's visibility timeout. The driver records each lease it hands
//! out (by receipt handle) with when its message was received, since SQS caps visibility at
//! 12 hours after the receive, and remembers per queue the lease its tasks last asked for, so
//! the next receive asks for that visibility.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};
use asynctasq_core::driver::{Delivery, Lease};
use asynctasq_core::envelope::millis;

use super::batch;
use super::buffer::Buffered;
use super::client::{Queue, Sqs};
use super::message::{Incoming, Meta};
use crate::sync::lock;

/// Whole seconds covering `ms`.
pub(super) fn secs(ms: u64) -> u32 {
    ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32
}

/// A task handed out by this handle and not settled yet.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) meta: Meta,
    queue: String,
    pub(super) attempt: u32,
    pub(super) received_at: u64,
    expires_at: u64,
}

/// The leases this handle holds, and the lease each queue's tasks last asked for.
pub(super) struct Leases {
    held: Mutex<HashMap<String, Held>>,
    visibility: Mutex<HashMap<String, u32>>,
    /// The lease asked for before a queue's tasks have said.
    first_lease: Duration,
}

impl Leases {
    pub(super) fn new(first_lease: Duration) -> Self {
        Self { held: Mutex::default(), visibility: Mutex::default(), first_lease }
    }

    /// The visibility receives from `queue` ask for: the lease its tasks last asked for.
    pub(super) fn receive_visibility(&self, queue: &str) -> u32 {
        lock(&self.visibility).get(queue).copied().unwrap_or_else(|| secs(millis(self.first_lease)))
    }

    /// Leases buffered messages out: gives each the visibility its task asks for (messages SQS
    /// refuses that for are dropped: they were received again) and records it.
    pub(super) async fn lease_out(&self, sqs: &Sqs, q: &Queue, taken: Vec<Buffered>) -> Result<Vec<Delivery>, DriverError> {
        let now = SystemClock.now();
        let fallback = millis(self.first_lease);
        let wants: Vec<u32> = taken.iter().map(|b| secs(b.msg.meta.lease_ms.unwrap_or(fallback)).max(1)).collect();
        let adjust: Vec<usize> = (0..taken.len())
            .filter(|&i| {
                let left = taken[i].visible_until.saturating_sub(now);
                let want = u64::from(wants[i]) * 1000;
                left < want * 2 / 3 || left > want + 1000
            })
            .collect();
        let mut dropped = Vec::new();
        if !adjust.is_empty() {
            let items: Vec<(&str, u32)> = adjust.iter().map(|&i| (taken[i].msg.meta.receipt.as_str(), wants[i])).collect();
            dropped = batch::change_visibility(sqs, &q.url, &items).await?.into_iter().filter_map(|f| adjust.get(f).copied()).collect();
        }
        if let Some(last) = taken.iter().zip(&wants).rev().find(|(b, _)| b.msg.meta.lease_ms.is_some()) {
            lock(&self.visibility).insert(q.name.clone(), *last.1);
        }
        let mut held = lock(&self.held);
        held.retain(|_, h| h.expires_at + 3_600_000 > now);
        let mut out = Vec::with_capacity(taken.len());
        for (i, b) in taken.into_iter().enumerate() {
            if dropped.contains(&i) {
                continue;
            }
            let expires_at = if adjust.contains(&i) { now + u64::from(wants[i]) * 1000 } else { b.visible_until };
            let Incoming { meta, envelope } = b.msg;
            let attempt = meta.attempt();
            let lease = Lease { id: meta.id, queue: q.name.clone(), token: meta.receipt.clone(), expires_at };
            let replayed = meta.replayed;
            held.insert(meta.receipt.clone(), Held { meta, queue: q.name.clone(), attempt, received_at: b.received_at, expires_at });
            out.push(Delivery::new(lease, attempt, envelope).replayed(replayed));
        }
        Ok(out)
    }

    /// The record of a lease this handle handed out, removed; lost when it has none.
    pub(super) fn settle(&self, lease: &Lease) -> Result<Held, DriverError> {
        lock(&self.held).remove(&lease.token).ok_or(DriverError::LeaseLost(lease.id))
    }

    /// Forgets the records of `leases` (acked); whether one of them was of a FIFO group.
    pub(super) fn forget(&self, leases: &[&Lease]) -> bool {
        let mut held = lock(&self.held);
        let mut grouped = false;
        for l in leases {
            grouped |= held.remove(&l.token).is_some_and(|h| h.meta.group.is_some());
        }
        grouped
    }

    /// When the message of a held lease was received.
    pub(super) fn received_at(&self, lease: &Lease) -> Result<u64, DriverError> {
        lock(&self.held).get(&lease.token).map(|h| h.received_at).ok_or(DriverError::LeaseLost(lease.id))
    }

    /// Records a held lease's new expiry.
    pub(super) fn extended(&self, lease: &Lease, expires_at: u64) {
        if let Some(h) = lock(&self.held).get_mut(&lease.token) {
            h.expires_at = expires_at;
        }
    }

    /// The FIFO groups of the leases held on `queue`: their later messages wait in the buffer.
    pub(super) fn busy_groups(&self, queue: &str) -> HashSet<String> {
        lock(&self.held).values().filter(|h| h.queue == queue).filter_map(|h| h.meta.group.clone()).collect()
    }

    /// Live leases held on `queue`.
    pub(super) fn count(&self, queue: &str) -> u64 {
        let now = SystemClock.now();
        lock(&self.held).values().filter(|h| h.queue == queue && h.expires_at > now).count() as u64
    }
}
