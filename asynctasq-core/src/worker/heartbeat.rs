//! Worker heartbeats: the event every interval, and the worker's record in the backend's
//! registry, rewritten with each beat (a record not rewritten expires: a crashed worker).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::deadline::bounded;
use super::running::Running;
use super::shared::Counters;
use crate::clock::Clock;
use crate::driver::{Driver, WorkerInfo};
use crate::envelope::millis;
use crate::event::{Event, Events};
use crate::workers::{RunningTask, WorkerCounts};

/// The registry record of a worker, refreshed by [`RegistryRecord::beat`].
pub(super) struct RegistryRecord(WorkerInfo, Arc<dyn Clock>);

pub(super) fn registry_record(
    id: &str,
    queues: &[String],
    concurrency: usize,
    interval: Duration,
    clock: Arc<dyn Clock>,
) -> RegistryRecord {
    let now = clock.now();
    RegistryRecord(
        WorkerInfo {
            id: id.to_owned(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            queues: queues.to_vec(),
            concurrency,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: now,
            heartbeat_at: now,
            heartbeat_ms: millis(interval),
            expires_at: now,
            in_flight: 0,
            counts: WorkerCounts::default(),
            running: Vec::new(),
        },
        clock,
    )
}

impl RegistryRecord {
    /// The record as of now: it lapses after five missed heartbeats (a crashed worker).
    pub(super) fn beat(&self, in_flight: usize, counts: WorkerCounts, running: Vec<RunningTask>) -> WorkerInfo {
        let now = self.1.now();
        WorkerInfo { heartbeat_at: now, expires_at: now + 5 * self.0.heartbeat_ms.max(1000), in_flight, counts, running, ..self.0.clone() }
    }
}

/// What a heartbeat reports from.
pub(super) struct Beat {
    pub(super) worker_id: String,
    pub(super) events: Events,
    pub(super) counters: Arc<Counters>,
    pub(super) running: Arc<Running>,
    pub(super) clock: Arc<dyn Clock>,
}

/// Emits a heartbeat event every `every`, reports the runs that went past their stuck
/// threshold since the last beat (an event, a warning and a metric each, once per run), and
/// rewrites the worker's registry record when the backend keeps one, with what it runs: the
/// event and the record are the same heartbeat.
pub(super) async fn heartbeats(beat: Beat, every: Duration, registry: Option<(Arc<dyn Driver>, RegistryRecord)>, limit: Duration) {
    let Beat { worker_id, events, counters, running, clock } = beat;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let in_flight = counters.in_flight.load(Ordering::Relaxed);
        let counts = counters.snapshot();
        tracing::debug!(worker.id = %worker_id, in_flight, ?counts, "worker heartbeat");
        events.emit(|| Event::WorkerHeartbeat { worker_id: worker_id.clone(), in_flight, counts });
        let (runs, stuck) = running.look(clock.now());
        for (task, running_for) in stuck {
            tracing::warn!(
                task.id = %task.id,
                task.name = %task.name,
                task.queue = %task.queue,
                worker.id = %worker_id,
                running_for = ?running_for,
                "task `{}` looks stuck: it has run for {}",
                task.name,
                super::running::human(running_for)
            );
            crate::metrics::stuck(&task.queue, &task.name);
            events.emit(|| Event::TaskStuck { task: task.clone(), worker_id: worker_id.clone(), running_for });
        }
        if let Some((driver, record)) = &registry
            && let Err(error) = bounded("register_worker", limit, driver.register_worker(&record.beat(in_flight, counts, runs))).await
        {
            tracing::warn!(%error, "could not refresh the worker's registry record");
        }
    }
}
