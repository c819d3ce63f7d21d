//! A driver that forwards every call to another and remembers what went through it: each
//! enqueued envelope (in order), which tasks have been delivered since, and when each waiting
//! task is due. The test helpers read it, so they work over any backend, including those that
//! cannot list their waiting tasks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::driver::{
    Ack, CancelOutcome, Capability, DeadSelector, DeadTask, Delivery, Driver, EnqueueOutcome, Lease, QueueStats, ServerInfo, TaskRecord,
    Waiting, WorkerInfo,
};
use crate::envelope::{Envelope, TaskId, UnixMillis, millis};
use crate::error::DriverError;

/// One enqueue the recorder saw.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Its place in the order of enqueues, from 0.
    pub(crate) seq: u64,
    pub(crate) envelope: Envelope,
}

#[derive(Debug, Default)]
struct Log {
    entries: Vec<Entry>,
    /// Tasks delivered at least once since they were enqueued.
    taken: HashSet<TaskId>,
    /// Waiting tasks (enqueued, retried or released) and when each is due, with its queue.
    due: HashMap<TaskId, (String, UnixMillis)>,
}

/// The recording driver.
pub(crate) struct Recorder {
    inner: Arc<dyn Driver>,
    clock: Arc<dyn Clock>,
    log: Mutex<Log>,
}

impl Recorder {
    pub(crate) fn new(inner: Arc<dyn Driver>, clock: Arc<dyn Clock>) -> Self {
        Self { inner, clock, log: Mutex::default() }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many enqueues have been seen (the `seq` the next one gets).
    pub(crate) fn mark(&self) -> u64 {
        self.log().entries.len() as u64
    }

    /// Enqueued tasks not delivered since, from enqueue number `since` on.
    pub(crate) fn waiting_since(&self, since: u64) -> Vec<Entry> {
        let log = self.log();
        log.entries.iter().filter(|e| e.seq >= since && !log.taken.contains(&e.envelope.id)).cloned().collect()
    }

    /// The enqueue number of task `id`, if it was enqueued through the recorder.
    pub(crate) fn seq_of(&self, id: TaskId) -> Option<u64> {
        self.log().entries.iter().find(|e| e.envelope.id == id).map(|e| e.seq)
    }

    /// The earliest due time among tasks waiting in `queue`, except those in `skip`.
    pub(crate) fn next_due(&self, queue: &str, skip: &HashSet<TaskId>) -> Option<UnixMillis> {
        self.log().due.iter().filter(|(id, (q, _))| q == queue && !skip.contains(id)).map(|(_, (_, at))| *at).min()
    }

    fn waiting_again(&self, lease: &Lease, at: UnixMillis) {
        self.log().due.insert(lease.id, (lease.queue.clone(), at));
    }
}

#[async_trait]
impl Driver for Recorder {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let outcomes = self.inner.enqueue(tasks).await?;
        let mut log = self.log();
        for (t, _) in tasks.iter().zip(&outcomes).filter(|(_, o)| **o == EnqueueOutcome::New) {
            let seq = log.entries.len() as u64;
            log.entries.push(Entry { seq, envelope: t.clone() });
            log.due.insert(t.id, (t.queue.clone(), t.not_before));
        }
        Ok(outcomes)
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        let got = self.inner.dequeue(queue, max).await?;
        let mut log = self.log();
        for d in &got {
            log.taken.insert(d.lease.id);
            log.due.remove(&d.lease.id);
        }
        Ok(got)
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner.wait_ready(queues, timeout).await
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        self.inner.ack(acks).await
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        self.inner.nack(lease, delay, error).await?;
        self.waiting_again(lease, self.clock.now() + millis(delay));
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        self.inner.release(lease).await?;
        self.waiting_again(lease, self.clock.now());
        // Given back unspent: waiting as if never delivered.
        self.log().taken.remove(&lease.id);
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        self.inner.dead_letter(lease, error, keep).await
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        self.inner.extend_lease(lease, by).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        self.inner.stats(queue).await
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        self.inner.queues().await
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        let n = self.inner.purge_waiting(queue, which).await?;
        let now = self.clock.now();
        let mut log = self.log();
        let gone: Vec<TaskId> = log
            .due
            .iter()
            .filter(|(_, (q, at))| {
                q == queue
                    && match which {
                        Waiting::Ready => *at <= now,
                        Waiting::Scheduled => *at > now,
                        _ => true,
                    }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            log.due.remove(&id);
            log.taken.insert(id);
        }
        Ok(n)
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        self.inner.dead(queue, limit).await
    }

    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        self.inner.find(id).await
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        self.inner.requeue_dead(queue, which).await
    }

    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        self.inner.cancel(id, keep).await
    }

    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        self.inner.settle_cancelled(lease, keep).await
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        self.inner.purge_dead(queue).await
    }

    fn prefetch_hint(&self, tasks: usize, queues: usize) {
        self.inner.prefetch_hint(tasks, queues);
    }

    fn consumer(&self, name: &str) {
        self.inner.consumer(name);
    }

    async fn stop_prefetch(&self) -> Result<(), DriverError> {
        self.inner.stop_prefetch().await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        self.inner.register_worker(worker).await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        self.inner.deregister_worker(id).await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        self.inner.workers().await
    }

    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        self.inner.server_info().await
    }

    fn supports(&self, capability: Capability) -> bool {
        self.inner.supports(capability)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}
