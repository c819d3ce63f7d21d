//! The scenarios of following a task: how soon a waiting producer wakes after its task's run
//! ends (`await`), and how soon a running task hears that it was cancelled (`cancel`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use asynctasq_core::{CancelOutcome, Client, Driver, TaskContext, TaskError, Worker, task};

use super::{BoxError, Latency, micros_now};

/// When each `finish` task ended its run (µs since the epoch), by its `n`.
static FINISHED: LazyLock<Mutex<HashMap<u64, u64>>> = LazyLock::new(Default::default);

/// Notes when it ends: the `await` scenario's task.
#[task]
async fn finish(n: u64) -> Result<u64, TaskError> {
    FINISHED.lock().expect("finished lock").insert(n, micros_now());
    Ok(n)
}

/// When each `hold` task started, and when its context said stop (µs since the epoch).
static HELD: LazyLock<Mutex<HashMap<u64, u64>>> = LazyLock::new(Default::default);
static STOPPED: LazyLock<Mutex<HashMap<u64, u64>>> = LazyLock::new(Default::default);

/// Runs until it is cancelled, noting when it heard: the `cancel` scenario's task.
#[task]
async fn hold(ctx: TaskContext, n: u64) -> Result<(), TaskError> {
    HELD.lock().expect("held lock").insert(n, micros_now());
    ctx.cancelled().await;
    STOPPED.lock().expect("stopped lock").insert(n, micros_now());
    Err(TaskError::retry("cancelled"))
}

/// Percentiles of `micros`, in milliseconds.
fn latency(mut micros: Vec<u64>) -> Latency {
    micros.sort_unstable();
    let at = |p: f64| micros[((micros.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) }
}

/// `await`: `tasks` tasks offered at `rate` per second, each with a waiter started at its
/// dispatch; how long after its run ended each waiter woke. Returns the seconds taken.
pub(crate) async fn awaited(
    driver: Arc<dyn Driver>,
    client: &Client,
    queue: &str,
    tasks: u64,
    rate: u64,
    concurrency: usize,
) -> Result<(f64, Latency), BoxError> {
    let worker = Worker::builder(driver).queues(queue)?.concurrency(concurrency).build()?;
    let handle = worker.handle();
    let running = tokio::spawn(worker.start());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let t = Instant::now();
    let mut waiters = Vec::new();
    for n in 0..tasks {
        tick.tick().await;
        let id = client.dispatch(Finish { n }).queue(queue).await?;
        let client = client.clone();
        waiters.push(tokio::spawn(async move {
            let awaited = client.result::<u64>(id, Duration::from_secs(60)).await;
            (n, awaited, micros_now())
        }));
    }
    let mut took = Vec::new();
    for w in waiters {
        let (n, awaited, woke) = w.await?;
        if awaited? != asynctasq_core::Awaited::Succeeded(n) {
            return Err(format!("task {n}: the wait did not end with its result").into());
        }
        let ended = FINISHED.lock().expect("finished lock").get(&n).copied().ok_or("a task never ran")?;
        took.push(woke.saturating_sub(ended));
    }
    let seconds = t.elapsed().as_secs_f64();
    handle.stop();
    running.await??;
    Ok((seconds, latency(took)))
}

/// `cancel`: `tasks` tasks under leases of `lease`, all running at once; each is cancelled at a
/// random moment within a third of its lease (the renewal interval), and how long after its
/// cancel returned its context said stop is measured. Returns the seconds taken.
pub(crate) async fn cancelled(
    driver: Arc<dyn Driver>,
    client: &Client,
    queue: &str,
    tasks: u64,
    lease: Duration,
) -> Result<(f64, Latency), BoxError> {
    let worker = Worker::builder(driver).queues(queue)?.concurrency(tasks as usize).cancel_grace(Duration::from_secs(1)).build()?;
    let handle = worker.handle();
    let running = tokio::spawn(worker.start());
    let t = Instant::now();
    let mut ids = Vec::new();
    for n in 0..tasks {
        ids.push(client.dispatch(Hold { n }).queue(queue).lease(lease).await?);
    }
    while (HELD.lock().expect("held lock").len() as u64) < tasks {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("the tasks did not all start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut cancels = Vec::new();
    // Spread evenly over one renewal interval, so the cancels meet every phase of the renewals.
    let spread = (lease / 3).as_micros() as u64;
    for (n, id) in ids.into_iter().enumerate() {
        let (client, n) = (client.clone(), n as u64);
        cancels.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(spread * n / tasks.max(1))).await;
            let outcome = client.cancel(id).await;
            (n, outcome, micros_now())
        }));
    }
    let mut asked = HashMap::new();
    for c in cancels {
        let (n, outcome, at) = c.await?;
        if outcome? != CancelOutcome::Requested {
            return Err(format!("task {n}: the cancel of a running task was not a request").into());
        }
        asked.insert(n, at);
    }
    while (STOPPED.lock().expect("stopped lock").len() as u64) < tasks {
        if t.elapsed() > Duration::from_secs(120) {
            return Err("the cancelled tasks did not all hear of it within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopped = STOPPED.lock().expect("stopped lock").clone();
    let took = stopped.iter().map(|(n, at)| at.saturating_sub(asked[n])).collect();
    let seconds = t.elapsed().as_secs_f64();
    handle.stop();
    let counts = running.await??;
    if counts.cancelled != tasks {
        return Err(format!("{} of {tasks} tasks were settled as cancelled", counts.cancelled).into());
    }
    Ok((seconds, latency(took)))
}
