//! The receive buffer and the long-poller: messages received and not yet handed out wait in
//! a per-queue buffer, earliest due first; each queue has at most one long poll running, and
//! one receive at a time per handle.
//!
//! A FIFO queue's messages of one group are handed out one at a time: SQS delivers several of
//! a group in one receive (and none of it to anyone else while they are in flight), so the
//! buffer holds a group's later messages until this handle settles the one it leased out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use asynctasq_core::clock::{Clock, SystemClock};
use tokio::task::JoinHandle;

use super::message::Incoming;
use crate::sync::lock;

/// A received message waiting in the local buffer.
#[derive(Debug)]
pub(super) struct Buffered {
    pub(super) msg: Incoming,
    pub(super) received_at: u64,
    pub(super) visible_until: u64,
}

/// The buffered messages of each task queue.
#[derive(Default)]
pub(super) struct Buffers {
    queues: Mutex<HashMap<String, VecDeque<Buffered>>>,
}

impl Buffers {
    /// Adds messages received at `now`, hidden until `visible_until`, keeping due order.
    pub(super) fn add(&self, queue: &str, got: Vec<Incoming>, now: u64, visible_until: u64) {
        let mut queues = lock(&self.queues);
        let buffer = queues.entry(queue.to_owned()).or_default();
        buffer.extend(got.into_iter().map(|msg| Buffered { msg, received_at: now, visible_until }));
        buffer.make_contiguous().sort_by_key(|b| b.msg.meta.not_before);
    }

    /// Takes up to `max` buffered messages of `queue`, earliest due first, at most one of a
    /// FIFO group and none of a group in `busy` (leased out by this handle); drops those whose
    /// visibility has (nearly) run out: SQS delivers them again.
    pub(super) fn take(&self, queue: &str, max: usize, busy: &HashSet<String>) -> Vec<Buffered> {
        let now = SystemClock.now();
        let mut queues = lock(&self.queues);
        let Some(buffer) = queues.get_mut(queue) else { return Vec::new() };
        buffer.retain(|b| b.visible_until > now + 500);
        if buffer.iter().all(|b| b.msg.meta.group.is_none()) {
            let n = max.min(buffer.len());
            return buffer.drain(..n).collect();
        }
        let mut groups: HashSet<&str> = HashSet::new();
        let mut picked = Vec::new();
        for (i, b) in buffer.iter().enumerate() {
            if picked.len() == max {
                break;
            }
            match b.msg.meta.group.as_deref() {
                Some(g) if busy.contains(g) || !groups.insert(g) => {}
                _ => picked.push(i),
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for i in picked.into_iter().rev() {
            out.extend(buffer.remove(i));
        }
        out.reverse();
        out
    }

    /// Everything buffered for `queue`, whatever its group.
    pub(super) fn take_all(&self, queue: &str) -> Vec<Buffered> {
        lock(&self.queues).get_mut(queue).map(|b| b.drain(..).collect()).unwrap_or_default()
    }

    /// Whether any of `queues` has a buffered message [`take`](Self::take) would hand out,
    /// `busy` giving each queue's groups leased out.
    pub(super) fn any(&self, queues: &[String], busy: impl Fn(&str) -> HashSet<String>) -> bool {
        let buffers = lock(&self.queues);
        queues.iter().any(|q| {
            buffers.get(q).is_some_and(|b| {
                if b.iter().all(|b| b.msg.meta.group.is_none()) {
                    return !b.is_empty();
                }
                let busy = busy(q);
                b.iter().any(|b| b.msg.meta.group.as_ref().is_none_or(|g| !busy.contains(g)))
            })
        })
    }

    /// Messages buffered for `queue`.
    pub(super) fn len(&self, queue: &str) -> usize {
        lock(&self.queues).get(queue).map_or(0, VecDeque::len)
    }

    /// The task queues that have had a buffer.
    pub(super) fn queues(&self) -> Vec<String> {
        lock(&self.queues).keys().cloned().collect()
    }
}

/// The long polls running, and the lock that keeps one receive per queue at a time.
#[derive(Default)]
pub(super) struct Polls {
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    receiving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Polls {
    /// Starts `poll` for `queue` unless one is running.
    pub(super) fn ensure(&self, queue: &str, poll: impl FnOnce() -> JoinHandle<()>) {
        let mut running = lock(&self.running);
        if running.get(queue).is_some_and(|p| !p.is_finished()) {
            return;
        }
        running.insert(queue.to_owned(), poll());
    }

    /// Whether a long poll of `queue` is running.
    pub(super) fn polling(&self, queue: &str) -> bool {
        lock(&self.running).get(queue).is_some_and(|p| !p.is_finished())
    }

    /// Stops every long poll.
    pub(super) fn abort_all(&self) {
        for (_, poll) in lock(&self.running).drain() {
            poll.abort();
        }
    }

    /// The lock that keeps one handle to one receive of `queue` at a time.
    pub(super) fn receive_lock(&self, queue: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.receiving).entry(queue.to_owned()).or_default())
    }
}
