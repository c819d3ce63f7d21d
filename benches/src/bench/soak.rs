//! The soak (`soak`): a steady load for a long time, sampled every minute, to show that nothing
//! drifts. Tasks are offered at `--rate` per second in ticks of 10 ms to a worker in this
//! process; 1 % of them fail their first attempt and succeed on the retry, and 0.1 % fail every
//! attempt and are dead-lettered (after 2). Succeeded tasks are kept 60 s and dead ones 5 min,
//! so what the backend holds should level off after five minutes.
//!
//! Each minute's sample: the tasks that ended in it (succeeded or dead-lettered), the process's
//! resident memory, what the backend stores (SQLite: the database files; PostgreSQL: the run's
//! tables with their indexes and TOAST; Redis: `used_memory`), and the queue's counts.
//! `scripts/soak` runs it on each backend; BENCHMARKS.md has the verdicts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asynctasq_core::{Client, Driver, Overrides, RetryPolicy, TaskContext, TaskError, Worker, task};

use super::BoxError;

/// Tasks whose run ended (succeeded, or failed for the last time).
static ENDED: AtomicU64 = AtomicU64::new(0);

/// A soak task: `fate` 0 succeeds, 1 fails its first attempt, 2 fails every attempt.
#[task(max_attempts = 2)]
async fn soaked(ctx: TaskContext, n: u64, fate: u8) -> Result<(), TaskError> {
    std::hint::black_box(n);
    let last = ctx.attempt() >= 2;
    if fate == 2 || (fate == 1 && !last) {
        if fate == 2 && last {
            ENDED.fetch_add(1, Ordering::Relaxed);
        }
        return Err(TaskError::retry(format!("task {n}: failing on purpose (fate {fate})")));
    }
    ENDED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One minute of the soak.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Minute {
    /// Tasks that ended in the minute, per second.
    pub(crate) ended_per_second: f64,
    /// Resident memory of this process at its end, MiB.
    pub(crate) rss_mib: f64,
    /// What the backend stores at its end, bytes.
    pub(crate) storage_bytes: u64,
    /// The queue's ready, scheduled and leased tasks, and its dead ones.
    pub(crate) queued: u64,
    pub(crate) dead: u64,
}

/// What the backend at `url` stores now, in bytes (0 where it cannot be read).
pub(crate) async fn storage(driver: &str, url: &str) -> u64 {
    match driver {
        "sqlite" => {
            let path = url.trim_start_matches("sqlite://").split('?').next().unwrap_or_default().to_owned();
            ["", "-wal", "-shm"].iter().filter_map(|s| std::fs::metadata(format!("{path}{s}")).ok()).map(|m| m.len()).sum()
        }
        "postgres" => {
            let Ok(pool) = sqlx::PgPool::connect(url.split('?').next().unwrap_or(url)).await else { return 0 };
            let sql = "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                       WHERE c.relkind = 'r' AND c.relname LIKE 'asynctasq\\_bench%'";
            let bytes: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap_or(0);
            pool.close().await;
            bytes.max(0) as u64
        }
        "redis" => {
            let Ok(client) = redis::Client::open(url.split('?').next().unwrap_or(url)) else { return 0 };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return 0 };
            let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.unwrap_or_default();
            info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Runs the soak: `rate` tasks a second for `minutes`, on `queue` at `concurrency`; one
/// sample per minute.
pub(crate) async fn soak(
    driver: Arc<dyn Driver>,
    url: Option<&str>,
    client: &Client,
    queue: &str,
    (rate, minutes, concurrency): (u64, u64, usize),
) -> Result<Vec<Minute>, BoxError> {
    let worker = Worker::builder(driver.clone())
        .queues(queue)?
        .concurrency(concurrency)
        .retry(RetryPolicy::Fixed(Duration::from_millis(100)))
        .result_ttl(Duration::from_secs(60))
        .failure_ttl(Duration::from_secs(300))
        .build()?;
    let handle = worker.handle();
    let running = tokio::spawn(worker.start());
    let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (start, mut next_sample, mut n) = (Instant::now(), Duration::from_secs(60), 0u64);
    let mut samples = Vec::new();
    let mut ended_before = 0;
    let name = driver.name().to_owned();
    while samples.len() < minutes as usize {
        tick.tick().await;
        // Fates by the task's number: 1 in 100 fails once, 1 in 1,000 dies.
        let batch = (n..n + per_tick).map(|n| Soaked {
            n,
            fate: if n % 1000 == 999 {
                2
            } else if n % 100 == 7 {
                1
            } else {
                0
            },
        });
        client.dispatch_many(batch, overrides.clone()).await?;
        n += per_tick;
        if start.elapsed() >= next_sample {
            let ended = ENDED.load(Ordering::Relaxed);
            let stats = driver.stats(queue).await?;
            samples.push(Minute {
                ended_per_second: (ended - ended_before) as f64 / 60.0,
                rss_mib: super::machine::rss_mib(),
                storage_bytes: match url {
                    Some(url) => storage(&name, url).await,
                    None => 0,
                },
                queued: stats.ready + stats.scheduled + stats.leased,
                dead: stats.dead,
            });
            eprintln!("soak minute {}: {:?}", samples.len(), samples.last());
            ended_before = ended;
            next_sample += Duration::from_secs(60);
        }
    }
    handle.stop();
    running.await??;
    Ok(samples)
}
