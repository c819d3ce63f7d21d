//! The big backlog (`backlog`): `--tasks` tasks enqueued in batches (the enqueue rate), what the
//! backend stores per task, how long the reads an operator makes take over it (`stats` and
//! `queues`, what `queue status` shows, and a page of dead tasks, what `dead list` shows; each asked
//! `--rounds` times, p50 and max), then the drain by one worker (the drain rate).

use std::sync::Arc;
use std::time::Instant;

use asynctasq_core::{Client, Driver, Overrides, Worker};
use serde::Serialize;

use super::{BoxError, Noop};

/// What the backlog scenario measured.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub(crate) struct Backlog {
    pub(crate) enqueue_per_second: f64,
    pub(crate) drain_per_second: f64,
    /// Backend storage with the backlog in, less before it, per task.
    pub(crate) bytes_per_task: f64,
    /// `stats` (queue status) and a page of 50 dead tasks (dead list), ms: p50 and max.
    pub(crate) status_ms: (f64, f64),
    pub(crate) dead_list_ms: (f64, f64),
    /// Listing the queues (what `queue status` without a queue does first), ms: p50 and max.
    #[serde(default)]
    pub(crate) queues_ms: (f64, f64),
}

/// p50 and max of `rounds` calls of `call`, ms.
async fn timed<F, Fut, T>(rounds: usize, mut call: F) -> Result<(f64, f64), BoxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, asynctasq_core::DriverError>>,
{
    let mut ms = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        call().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[ms.len() - 1]))
}

/// Runs the scenario on `queue` (`tasks`, `batch`, `rounds`, `concurrency`).
pub(crate) async fn backlog(
    driver: Arc<dyn Driver>,
    url: Option<&str>,
    client: &Client,
    queue: &str,
    (tasks, batch, rounds, concurrency): (u64, usize, usize, usize),
) -> Result<Backlog, BoxError> {
    let name = driver.name().to_owned();
    let before = match url {
        Some(url) => super::soak::storage(&name, url).await,
        None => 0,
    };
    let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
    let t = Instant::now();
    super::dispatch(client, tasks, batch, &overrides, |n| Noop { n }).await?;
    let enqueue_per_second = tasks as f64 / t.elapsed().as_secs_f64();
    let after = match url {
        Some(url) => super::soak::storage(&name, url).await,
        None => 0,
    };
    let status_ms = timed(rounds, || driver.stats(queue)).await?;
    let dead_list_ms = timed(rounds, || driver.dead(queue, 50)).await?;
    let queues_ms = timed(rounds, || driver.queues()).await?;
    let worker = Worker::builder(driver.clone()).queues(queue)?.concurrency(concurrency).max_tasks(tasks).build()?;
    let t = Instant::now();
    let counts = worker.start().await?;
    if counts.succeeded != tasks {
        return Err(format!("{} of {tasks} tasks succeeded", counts.succeeded).into());
    }
    Ok(Backlog {
        enqueue_per_second,
        drain_per_second: tasks as f64 / t.elapsed().as_secs_f64(),
        bytes_per_task: after.saturating_sub(before) as f64 / tasks as f64,
        status_ms,
        dead_list_ms,
        queues_ms,
    })
}
