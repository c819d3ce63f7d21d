//! The scenario of per-key limits: how soon other keys' tasks start while one key is
//! saturated (`keyed`): a backlog of one key's tasks, one at a time, and the others offered at
//! `--rate`, each its own key.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use asynctasq_core::{Client, Driver, Overrides, QueueLimits, Worker, WorkerHandle, task};

use super::{BoxError, Latency, micros_now};

/// How long after its dispatch each `keyed_stamp` task started (µs).
static STARTED: LazyLock<Mutex<Vec<u64>>> = LazyLock::new(Default::default);

/// Notes how long after `sent_us` it started: the other keys' task.
#[task]
async fn keyed_stamp(sent_us: u64) {
    STARTED.lock().expect("started lock").push(micros_now().saturating_sub(sent_us));
}

/// Holds its key's one place for `ms`: the saturated key's task.
#[task]
async fn hot_hold(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs the scenario: `hot` tasks of key `hot` (1 per key, each `hot_ms`) queued first, then
/// `tasks` tasks of keys of their own at `rate`; the seconds it took and the others' latency
/// from dispatch to start.
pub(crate) async fn saturated(
    driver: Arc<dyn Driver>,
    client: &Client,
    queue: &str,
    (tasks, rate, concurrency): (u64, u64, usize),
    (hot, hot_ms): (u64, u64),
) -> Result<(f64, Latency), BoxError> {
    driver.set_limits(queue, QueueLimits::per_key(1)).await?;
    let hot_overrides = Overrides { queue: Some(queue.into()), key: Some("hot".into()), ..Default::default() };
    let mut sent = 0;
    while sent < hot {
        let n = 1000.min(hot - sent);
        client.dispatch_many((0..n).map(|_| HotHold { ms: hot_ms }), hot_overrides.clone()).await?;
        sent += n;
    }
    let handle = WorkerHandle::default();
    let worker = Worker::builder(driver.clone()).queues(queue)?.concurrency(concurrency).handle(handle.clone()).build()?;
    let running = tokio::spawn(worker.start());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t = Instant::now();
    for n in 0..tasks {
        tick.tick().await;
        let overrides = Overrides { queue: Some(queue.into()), key: Some(format!("k{n}")), ..Default::default() };
        let envelope = client.envelope(&KeyedStamp { sent_us: micros_now() }, &overrides)?;
        client.enqueue(vec![envelope]).await?;
    }
    while (STARTED.lock().expect("started lock").len() as u64) < tasks {
        if t.elapsed() > Duration::from_secs(120) {
            return Err("the other keys' tasks did not all start within 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = t.elapsed().as_secs_f64();
    handle.stop();
    running.await??;
    let mut micros = STARTED.lock().expect("started lock").clone();
    micros.sort_unstable();
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    Ok((seconds, Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) }))
}
