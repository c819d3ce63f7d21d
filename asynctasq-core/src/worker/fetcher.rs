//! The fetch loop: wait for free slots, take as many tasks as there are, spawn an executor for
//! each, and wait on the backend when nothing is ready.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::deadline::{Beacon, bounded};
use super::shared::Shared;
use super::{BACKLOG_GATHER, Worker, executor};
use crate::driver::Delivery;
use crate::error::WorkerError;
use crate::monitor::Monitor;

/// The first back-off after a wait that woke early to an empty claim; it doubles with each
/// one in a row, up to [`IDLE_WAKE_BACKOFF_MAX`] (and never past the idle wait).
const IDLE_WAKE_BACKOFF: Duration = Duration::from_millis(5);
const IDLE_WAKE_BACKOFF_MAX: Duration = Duration::from_millis(200);

impl Worker {
    pub(super) async fn fetch_loop(
        &mut self,
        shared: &Arc<Shared>,
        names: &[String],
        running: &mut JoinSet<()>,
        beacon: &Beacon,
        monitor: &Monitor,
    ) -> Result<(), WorkerError> {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let deadline = self.max_time.map(|d| tokio::time::Instant::now() + d);
        let stop = self.handle.graceful.clone();
        let until_deadline = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(until_deadline);
        let mut failures = 0u32;
        let mut backlog = false;
        // Waits that returned before their time and were followed by an empty claim, in a row:
        // ready tasks this worker may not take (a queue at its limit). Each one backs off
        // longer, so such a queue is polled, never spun on.
        let (mut woke_early, mut idle_wakes) = (false, 0u32);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            while running.try_join_next().is_some() {}
            let remaining = match self.max_tasks {
                Some(max) => max.saturating_sub(shared.counters.started.load(Ordering::Relaxed)),
                None => u64::MAX,
            };
            if remaining == 0 {
                return Ok(());
            }
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = stop.cancelled() => return Ok(()),
                () = &mut until_deadline => return Ok(()),
            };
            let want = self.fetch_batch.min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let mut permits = vec![first];
            if backlog {
                // The queue had more than we could take: rather than claim every freed slot one
                // by one (a round trip per task), give the running tasks a moment to free half
                // a batch. Idle workers never wait here, so latency is unaffected.
                let gather = tokio::time::sleep(BACKLOG_GATHER);
                tokio::pin!(gather);
                while permits.len() < want / 2 {
                    tokio::select! {
                        permit = slots.clone().acquire_owned() => permits.push(permit.expect("the semaphore is never closed")),
                        () = &mut gather => break,
                    }
                }
            }
            while permits.len() < want {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let asked = permits.len();
            let fetched = {
                let _waiting = beacon.waiting();
                self.fetch(asked).await
            };
            let deliveries = match fetched {
                Ok(d) => {
                    monitor.answered();
                    failures = 0;
                    backlog = d.len() == asked && asked > 0;
                    d
                }
                Err(error) => {
                    monitor.failed(&error);
                    failures += 1;
                    let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6))).min(Duration::from_secs(5));
                    tracing::error!(%error, ?backoff, "fetching tasks failed; retrying");
                    drop(permits);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        () = stop.cancelled() => return Ok(()),
                    }
                }
            };
            if deliveries.is_empty() {
                drop(permits);
                idle_wakes = if std::mem::take(&mut woke_early) { idle_wakes + 1 } else { 0 };
                // One early wake to nothing is a notice of a task another claim took first
                // (a push backend's wake-ups lag its claims): only a second in a row backs off.
                if idle_wakes >= 2 {
                    let pause = (IDLE_WAKE_BACKOFF * 2u32.pow(idle_wakes.min(9) - 2)).min(self.idle_wait).min(IDLE_WAKE_BACKOFF_MAX);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.caps.freed() => {}
                        () = stop.cancelled() => return Ok(()),
                        () = &mut until_deadline => return Ok(()),
                    }
                }
                let mut wait = self.idle_wait;
                if self.stop_when_empty {
                    while running.try_join_next().is_some() {}
                    if running.is_empty() && shared.counters.pending_acks.load(Ordering::Relaxed) == 0 && {
                        let _waiting = beacon.waiting();
                        self.queues_empty(names).await
                    } {
                        return Ok(());
                    }
                    wait = wait.min(Duration::from_millis(50));
                }
                let _waiting = beacon.waiting();
                let waited = tokio::time::Instant::now();
                tokio::select! {
                    r = bounded("wait_ready", wait + self.call_deadline, self.driver.wait_ready(names, wait)) => {
                        woke_early = waited.elapsed() < wait / 2;
                        if let Err(error) = r {
                            monitor.failed(&error);
                            tracing::warn!(%error, "waiting for tasks failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    // A task of a queue at this worker's own cap ended: its place is free.
                    () = self.caps.freed() => {}
                    () = stop.cancelled() => return Ok(()),
                    () = &mut until_deadline => return Ok(()),
                }
                continue;
            }
            idle_wakes = 0;
            shared.counters.started.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
            for (delivery, permit) in deliveries.into_iter().zip(permits) {
                let shared = shared.clone();
                let capped = self.caps.any().then(|| (self.caps.clone(), delivery.lease.queue.clone()));
                // Boxed: the executor's state machine is large, and tokio would otherwise copy it
                // by value into the task.
                running.spawn(Box::pin(async move {
                    executor::execute(shared, delivery).await;
                    if let Some((caps, queue)) = capped {
                        caps.ended(&queue);
                    }
                    drop(permit);
                }));
            }
        }
    }

    /// Takes up to `n` tasks, from the queues in this round's priority order.
    async fn fetch(&mut self, n: usize) -> Result<Vec<Delivery>, crate::DriverError> {
        let mut out = Vec::new();
        for i in self.order.next() {
            let queue = self.order.name(i);
            let want = (n - out.len()).min(self.caps.room(queue));
            if want == 0 {
                continue;
            }
            let got = bounded("dequeue", self.call_deadline, self.driver.dequeue(queue, want)).await?;
            self.caps.took(queue, got.len());
            out.extend(got);
            if out.len() >= n {
                break;
            }
        }
        Ok(out)
    }

    /// Whether the queues hold nothing ready, scheduled or leased (a paused one, or one whose
    /// limit is zero, counts as empty). A failed count (a dropped connection) counts as "not empty": the worker keeps
    /// going rather than exit on a blip.
    async fn queues_empty(&self, names: &[String]) -> bool {
        // A paused queue gives this worker nothing, whatever it holds.
        let mut paused = if self.driver.supports(crate::driver::Capability::PauseQueues) {
            bounded("paused", self.call_deadline, self.driver.paused()).await.unwrap_or_default()
        } else {
            Vec::new()
        };
        // So does a queue held back by a limit of zero.
        if self.driver.supports(crate::driver::Capability::QueueLimits) {
            let limits = bounded("limits", self.call_deadline, self.driver.limits()).await.unwrap_or_default();
            paused.extend(limits.into_iter().filter(|(_, l)| l.max_leased == Some(0)).map(|(q, _)| q));
        }
        for q in names.iter().filter(|q| !paused.contains(q)) {
            match bounded("stats", self.call_deadline, self.driver.stats(q)).await {
                Ok(s) if s.ready + s.scheduled + s.leased == 0 => {}
                Ok(_) => return false,
                Err(error) => {
                    tracing::warn!(%error, queue = %q, "counting tasks failed; assuming the queue is not empty");
                    return false;
                }
            }
        }
        true
    }
}
