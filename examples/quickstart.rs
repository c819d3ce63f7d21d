//! Quickstart: define tasks, dispatch them into the embedded SQLite default, run a worker until
//! the queues are empty, and print what happened.
//!
//! ```text
//! cargo run --release -p asynctasq-examples --example quickstart -- [--tasks 10000] [--concurrency 32] [--database-url sqlite://file.db]
//! ```
//!
//! One task in 100 fails once before succeeding (a retry), and one in 1000 always fails (dead
//! after 3 attempts). Without `--database-url` the database is a fresh file in a temp dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use asynctasq_core::{Client, Event, Events, Overrides, RetryPolicy, TaskContext, TaskError, Worker, task};
use asynctasq_drivers::SqliteDriver;

/// Succeeds at once.
#[task]
async fn greet(n: u64) {
    std::hint::black_box(n);
}

/// Fails on its first attempt, then succeeds.
#[task]
async fn flaky_once(ctx: TaskContext, n: u64) -> Result<(), TaskError> {
    if ctx.attempt() == 1 {
        return Err(TaskError::retry(format!("task {n}: transient failure, will retry")));
    }
    Ok(())
}

/// Always fails, so it ends dead-lettered with its error.
#[task(max_attempts = 3)]
async fn always_fails(n: u64) -> Result<(), TaskError> {
    Err(TaskError::retry(format!("task {n}: this one never works")))
}

struct Options {
    tasks: u64,
    concurrency: usize,
    database_url: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options { tasks: 10_000, concurrency: 32, database_url: None };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--tasks" => o.tasks = value()?.parse().map_err(|e| format!("--tasks: {e}"))?,
            "--concurrency" => o.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--database-url" => o.database_url = Some(value()?),
            other => return Err(format!("unknown argument `{other}`; expected --tasks N, --concurrency N, --database-url URL")),
        }
    }
    Ok(o)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into())).init();
    let opts = options()?;
    let dir = tempfile::tempdir()?;
    let url = opts.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/quickstart.db", dir.path().display()));
    let driver = Arc::new(SqliteDriver::connect(&url).await?);
    let client = Client::new(driver.clone());

    // Dispatch: 1 in 100 flaky, 1 in 1000 doomed, the rest plain.
    let started = Instant::now();
    let all: Vec<u64> = (0..opts.tasks).collect();
    for chunk in all.chunks(5_000) {
        let mut envelopes = Vec::with_capacity(chunk.len());
        for &n in chunk {
            let e = if n % 1000 == 999 {
                client.envelope(&AlwaysFails { n }, &Overrides::default())?
            } else if n % 100 == 99 {
                client.envelope(&FlakyOnce { n }, &Overrides::default())?
            } else {
                client.envelope(&Greet { n }, &Overrides::default())?
            };
            envelopes.push(e);
        }
        client.enqueue(envelopes).await?;
    }
    let enqueue_time = started.elapsed();
    println!(
        "dispatched {} tasks in {:.3}s ({:.0} tasks/s) into {}",
        opts.tasks,
        enqueue_time.as_secs_f64(),
        opts.tasks as f64 / enqueue_time.as_secs_f64(),
        url
    );

    // Run a worker until the queue is empty, collecting start latencies from its events.
    let events = Events::with_capacity(opts.tasks as usize * 3 + 1024);
    let mut rx = events.subscribe();
    let worker = Worker::builder(driver.clone())
        .queues("default")?
        .concurrency(opts.concurrency)
        .retry(RetryPolicy::exponential(Duration::from_millis(50), Duration::from_secs(1)))
        .stop_when_empty(true)
        .events(events)
        .build()?;
    let started = Instant::now();
    let counts = worker.start().await?;
    let wall = started.elapsed();

    let mut waits = Vec::with_capacity(opts.tasks as usize);
    let mut lagged = 0;
    loop {
        match rx.try_recv() {
            Ok(Event::TaskStarted { task, waited }) if task.attempt == 1 => waits.push(waited),
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => lagged += n,
            Err(_) => break,
        }
    }
    waits.sort_unstable();

    println!("succeeded:     {}", counts.succeeded);
    println!("retried:       {}", counts.retried);
    println!("dead-lettered: {}", counts.dead);
    println!("wall time:     {:.3}s", wall.as_secs_f64());
    println!("throughput:    {:.0} tasks/s", counts.succeeded as f64 / wall.as_secs_f64());
    println!(
        "enqueue->start p50 {:.1} ms, p99 {:.1} ms (all tasks were queued before the worker started, so this is time spent waiting behind the backlog)",
        percentile(&waits, 0.50).as_secs_f64() * 1e3,
        percentile(&waits, 0.99).as_secs_f64() * 1e3
    );
    if lagged > 0 {
        println!("(missed {lagged} events)");
    }
    let expected_dead = opts.tasks / 1000;
    if counts.succeeded + counts.dead != opts.tasks || counts.dead != expected_dead {
        return Err(format!("expected {} succeeded and {expected_dead} dead, got {counts:?}", opts.tasks - expected_dead).into());
    }
    Ok(())
}
