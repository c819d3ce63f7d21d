//! Running one delivered task and settling it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::deadline::{Beacon, bounded};
use super::lease::LeaseEnd;
use super::settle::{self, Outcome, Settle};
use super::shared::{Counters, PendingAck, Shared, with_retries};
use crate::driver::{Ack, Capability, Delivery, Driver, Lease};
use crate::error::DriverError;
use crate::error::error_chain;
use crate::event::{Event, Events, TaskInfo};
use crate::metrics::{Finished, UNKNOWN};
use crate::result::StoredResult;
use crate::retry::{RETRY_HEADER, RetryPolicy};
use crate::task::{Disposition, TaskContext, TaskResult};

pub(crate) async fn execute(shared: Arc<Shared>, delivery: Delivery) {
    let Delivery { lease, attempt, envelope, replayed } = delivery;
    // A root span: its parent (attempt 1) or link (later attempts, replays) is the dispatch's send
    // span, taken from the envelope's trace headers (see `crate::trace`).
    let span = tracing::debug_span!(
        parent: None,
        "task",
        otel.name = %format_args!("process {}", lease.queue),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        otel.status_message = tracing::field::Empty,
        messaging.system = crate::trace::system(shared.driver.name()),
        messaging.destination.name = %lease.queue,
        messaging.operation.type = "process",
        messaging.message.id = %lease.id,
        task.id = %lease.id,
        task.queue = %lease.queue,
        task.attempt = attempt,
        task.name = tracing::field::Empty,
    );
    if let Ok(envelope) = &envelope {
        crate::trace::continue_from(&span, &envelope.headers, attempt, replayed);
    }
    shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let id = lease.id;
    run_delivery(&shared, lease, attempt, envelope).instrument(span).await;
    shared.running.end(id);
    shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
}

async fn run_delivery(shared: &Arc<Shared>, lease: Lease, attempt: u32, envelope: Result<crate::Envelope, crate::CodecError>) {
    let envelope = match envelope {
        Ok(e) => e,
        Err(err) => {
            let task = TaskInfo { id: lease.id, name: "".into(), queue: lease.queue.as_str().into(), attempt };
            shared.metrics_of(&task).started.increment(1);
            shared.dead_letter(&lease, task, format!("undecodable envelope: {}", error_chain(&err))).await;
            return;
        }
    };
    tracing::Span::current().record("task.name", envelope.name.as_str());
    let task = TaskInfo { id: lease.id, name: envelope.name.as_str().into(), queue: lease.queue.as_str().into(), attempt };
    let registration = shared.registry.get(&envelope.name);
    let metrics = shared.metrics.task(&task.queue, if registration.is_some() { &task.name } else { &UNKNOWN });
    metrics.started.increment(1);
    let Some(registration) = registration else {
        let error = format!("unknown task name `{}`: no handler is registered for it in this worker", envelope.name);
        shared.dead_letter(&lease, task, error).await;
        return;
    };
    let (max_attempts, lease_length) = shared.effective(&envelope);
    if attempt > max_attempts {
        let error = format!(
            "delivery {attempt} exceeds max attempts {max_attempts}: earlier deliveries ended without a result (worker crash or expired lease)"
        );
        shared.dead_letter(&lease, task, error).await;
        return;
    }

    let waited = Duration::from_millis(shared.clock.now().saturating_sub(envelope.not_before));
    metrics.wait.record(waited.as_secs_f64());
    shared.events.emit(|| Event::TaskStarted { task: task.clone(), waited });
    tracing::debug!(?waited, "task started");

    let cancel = CancellationToken::new();
    let ctx = TaskContext {
        id: lease.id,
        name: envelope.name.clone(),
        queue: envelope.queue.clone(),
        attempt,
        max_attempts,
        claimed_at: lease.expires_at.saturating_sub(envelope.lease_ms),
        cancel: cancel.clone(),
        blocking: shared.blocking.clone(),
        result: crate::result::ResultSlot::default(),
        progress: crate::progress::ProgressSlot::new(shared.driver.supports(Capability::Progress)),
    };
    let started = Instant::now();
    // The handler runs in its own task so a panic is caught by tokio (a JoinError), never
    // unwinding through the worker, and so it can be aborted on timeout or shutdown.
    let claimed = envelope.lease();
    let timeout = envelope.timeout().or(shared.default_timeout);
    shared.running.start(&task, shared.clock.now(), timeout);
    // Per dispatch, then `#[task]`, then the worker's policy.
    let options = (registration.options)();
    let policy = envelope
        .headers
        .get(RETRY_HEADER)
        .and_then(|h| RetryPolicy::from_header(h))
        .or(options.retry)
        .unwrap_or_else(|| shared.retry.clone());
    let keep = options.result_ttl.unwrap_or(shared.keeping.ttl);
    let slot = ctx.result.clone();
    let reports = ctx.progress.clone();
    let mut run = tokio::spawn((registration.handler)(ctx, envelope.payload));
    let renewals = async {
        if shared.driver.supports(Capability::ExtendLease) {
            super::lease::keep_leased(
                shared.driver.clone(),
                lease.clone(),
                claimed,
                lease_length,
                shared.deadline,
                &metrics.extended,
                shared.cancel_watch.as_ref(),
            )
            .await
        } else {
            std::future::pending::<LeaseEnd>().await
        }
    };
    // The run's progress reports, written under its lease: a report that finds the lease lost
    // stops them (the renewals say so too).
    let progress = async {
        if !reports.kept() {
            return std::future::pending::<LeaseEnd>().await;
        }
        loop {
            let report = reports.next().await;
            match bounded("progress", shared.deadline, shared.driver.progress(&lease, &report)).await {
                Ok(()) => {}
                Err(DriverError::LeaseLost(_)) => return std::future::pending::<LeaseEnd>().await,
                Err(error) => tracing::debug!(task.id = %lease.id, %error, "a progress report was not recorded"),
            }
            tokio::time::sleep(crate::progress::PROGRESS_EVERY).await;
        }
    };
    // `biased`: polled in order, without drawing a random start on every poll of every run.
    let heartbeat = async {
        tokio::select! {
            biased;
            end = renewals => end,
            end = progress => end,
        }
    };

    let outcome: Option<Result<TaskResult, JoinError>> = tokio::select! {
        biased;
        joined = run_with_timeout(&mut run, timeout) => joined,
        end = heartbeat => {
            cancel.cancel();
            if end == LeaseEnd::Cancelled {
                // The run's context says it is cancelled; it has the grace to stop on its own.
                // One that still succeeds did its work, and is acked as a success.
                match tokio::time::timeout(shared.cancel_grace, &mut run).await {
                    Ok(Ok(Ok(()))) => Some(Ok(Ok(()))),
                    _ => {
                        run.abort();
                        shared.settle_cancelled(&lease, task).await;
                        return;
                    }
                }
            } else {
                run.abort();
                shared.counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                metrics.finished(Finished::LeaseLost);
                tracing::warn!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, "lease lost while running; abandoning the run without settling it");
                shared.events.emit(|| Event::LeaseLost(task));
                return;
            }
        }
        () = shared.abandon.cancelled() => {
            cancel.cancel();
            run.abort();
            match with_retries!(bounded("release", shared.deadline, shared.driver.release(&lease))) {
                Ok(()) => {
                    shared.counters.released.fetch_add(1, Ordering::Relaxed);
                    metrics.finished(Finished::Released);
                    tracing::info!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, "released unfinished task at shutdown");
                    shared.events.emit(|| Event::TaskReleased(task));
                }
                Err(error) => {
                    tracing::warn!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, %error, "could not release task at shutdown; it returns when its lease expires")
                }
            }
            return;
        }
    };
    let duration = started.elapsed();
    metrics.run.record(duration.as_secs_f64());
    let outcome = match outcome {
        Some(Ok(Ok(()))) => Outcome::Succeeded,
        Some(Ok(Err(error))) => Outcome::Failed { message: error.message().to_owned(), disposition: error.disposition() },
        Some(Err(join)) if join.is_panic() => {
            Outcome::Failed { message: format!("panicked: {}", panic_message(join)), disposition: Disposition::Retry }
        }
        Some(Err(_)) => Outcome::Failed { message: "run was cancelled".to_owned(), disposition: Disposition::Retry },
        None => {
            cancel.cancel();
            run.abort();
            Outcome::Failed { message: format!("timed out after {:?}", timeout.unwrap_or_default()), disposition: Disposition::Retry }
        }
    };
    if let Outcome::Failed { message, .. } = &outcome {
        let span = tracing::Span::current();
        span.record("otel.status_code", "error");
        span.record("otel.status_message", message.as_str());
    }
    let (delay, message) = match settle::decide(outcome, attempt, max_attempts, &policy) {
        Settle::Ack => {
            let credit = shared.ack_credits.clone().acquire_owned().await.expect("the ack credits are never closed");
            shared.counters.pending_acks.fetch_add(1, Ordering::Relaxed);
            // Encoded only when the backend keeps it.
            let kept = (!keep.is_zero() && shared.driver.supports(Capability::Results)).then(|| slot.take()).flatten();
            let result = match kept.map(|value| StoredResult::of(value, shared.keeping.max_size).encode()) {
                Some(Ok(bytes)) => Some(bytes),
                Some(Err(error)) => {
                    tracing::warn!(task.id = %task.id, %error, "could not encode the task's result; it is kept without one");
                    None
                }
                None => None,
            };
            let pending = PendingAck { ack: Ack { lease, keep, result }, task, duration, metrics, _credit: credit };
            if let Err(mpsc::error::SendError(pending)) = shared.acks.send(pending).await {
                // The acker is gone only if the worker is being torn down; ack directly.
                ack_batch(&*shared.driver, &shared.events, &shared.counters, vec![pending], shared.deadline).await;
            }
            return;
        }
        Settle::Dead { reason } => {
            shared.dead_letter(&lease, task, reason).await;
            return;
        }
        Settle::Retry { delay, error } => (delay, error),
    };
    match with_retries!(bounded("nack", shared.deadline, shared.driver.nack(&lease, delay, &message))) {
        Ok(()) => {
            shared.counters.retried.fetch_add(1, Ordering::Relaxed);
            metrics.finished(Finished::Retried);
            tracing::info!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, error = %message, ?delay, "task failed; retry scheduled");
            shared.events.emit(|| Event::TaskRetryScheduled { task, delay, error: message });
        }
        Err(DriverError::LeaseLost(_)) => shared.lease_lost(task),
        Err(error) => {
            tracing::error!(task.id = %task.id, task.name = %task.name, task.queue = %task.queue, task.attempt = task.attempt, %error, "could not schedule retry; the task returns when its lease expires")
        }
    }
}

async fn run_with_timeout(
    run: &mut tokio::task::JoinHandle<TaskResult>,
    timeout: Option<Duration>,
) -> Option<Result<TaskResult, JoinError>> {
    match timeout {
        Some(t) => tokio::time::timeout(t, run).await.ok(),
        None => Some(run.await),
    }
}

fn panic_message(join: JoinError) -> String {
    let payload = join.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Acks successful runs in batches: whatever has queued up while the previous batch was in
/// flight goes in the next call, so one round trip (one commit) serves many tasks under load
/// and a lone task is acked at once when idle.
pub(crate) async fn ack_loop(
    driver: Arc<dyn Driver>,
    events: Events,
    counters: Arc<Counters>,
    mut rx: mpsc::Receiver<PendingAck>,
    limit: Duration,
    beacon: Arc<Beacon>,
) {
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let _waiting = beacon.waiting();
        ack_batch(&*driver, &events, &counters, std::mem::take(&mut batch), limit).await;
    }
}

async fn ack_batch(driver: &dyn Driver, events: &Events, counters: &Counters, mut batch: Vec<PendingAck>, limit: Duration) {
    // The results move into the call; the batch keeps what reporting needs.
    let acks: Vec<Ack> =
        batch.iter_mut().map(|p| Ack { lease: p.ack.lease.clone(), keep: p.ack.keep, result: p.ack.result.take() }).collect();
    let n = batch.len();
    match with_retries!(bounded("ack", limit, driver.ack(&acks))) {
        Ok(lost) => {
            for pending in batch {
                if lost.contains(&pending.task.id) {
                    counters.lease_lost.fetch_add(1, Ordering::Relaxed);
                    pending.metrics.finished(Finished::LeaseLost);
                    tracing::warn!(task.id = %pending.task.id, task.name = %pending.task.name, task.queue = %pending.task.queue, task.attempt = pending.task.attempt, "lease lost before the ack; another delivery owns the task now");
                    events.emit(|| Event::LeaseLost(pending.task));
                } else {
                    counters.succeeded.fetch_add(1, Ordering::Relaxed);
                    pending.metrics.finished(Finished::Succeeded);
                    events.emit(|| Event::TaskSucceeded { task: pending.task, duration: pending.duration });
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, tasks = n, "ack failed; these tasks return when their leases expire and may run again");
        }
    }
    counters.pending_acks.fetch_sub(n, Ordering::Relaxed);
}
