//! Benchmark harness: one scenario against one backend, numbers on stdout (`--json`: one
//! object). BENCHMARKS.md lists the commands that produced its tables.
//!
//! ```text
//! cargo run --release -p asynctasq-benches --bin bench -- --driver redis --scenario throughput --tasks 100000 --concurrency 50
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario enqueue --tasks 100000
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario latency --tasks 5000 --rate 2000
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario scaling --sizes 10000,100000,1000000
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario memory --tasks 50000 --concurrency 100
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario cpu --tasks 2000 --work-us 2000 --kind blocking
//! cargo run --release -p asynctasq-benches --bin bench -- --driver memory --scenario throughput --tasks 200000 --http 127.0.0.1:9464
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario scrape --series-queues 100 --series-tasks 50
//! ```
//!
//! Scenarios (no-op tasks, one worker in this process unless said otherwise):
//! * `enqueue`: bulk-dispatch N tasks in batches of `--batch`; tasks/s.
//! * `throughput`: drain N pre-enqueued tasks at `--concurrency`; tasks/s.
//! * `latency`: offer N tasks at a steady `--rate` per second (1 ms ticks) to a running, mostly
//!   idle worker; each task carries its dispatch time in microseconds in its arguments, so
//!   enqueue→start is measured per task (p50/p95/p99/max), not estimated from queue depth.
//! * `scaling`: `throughput` at each of `--sizes` (after `--warmup` unmeasured tasks); the spread
//!   (fastest/slowest − 1) shows whether cost is linear in work.
//! * `retry`: N tasks that fail their first attempt (retried at once) and then succeed; tasks/s
//!   counts completed tasks, deliveries/s both runs of each.
//! * `memory`: enqueue N tasks, then drain them with a worker in a **child process** (this
//!   binary, scenario `drain`) and report that process's peak RSS.
//! * `drain`: run a worker on N tasks already in the run's queue (what `memory` starts).
//! * `cpu`: drain N tasks that each spin a core for `--work-us` microseconds, written as a
//!   blocking task (`--kind blocking`: a plain `fn`, run on the blocking pool) or as an `async
//!   fn` (`--kind async`: on the runtime's threads); tasks/s, and in `latency_ms` how late a
//!   10 ms ticker on the same runtime fires meanwhile (what lease renewals and acks feel).
//! * `scrape`: a worker with its HTTP listener, and the series of `--series-queues` ×
//!   `--series-tasks` (queue, task) pairs recorded (`--spread`: each task on two queues only);
//!   the time of `GET /metrics` (p50/p95/p99/max over `--tasks` scrapes) and the page's size.
//! * `await` and `cancel` (module `follow`): how soon a waiting producer wakes after its task
//!   ended, and how soon a running task hears of its cancel.
//! * `soak` (module `soak`, run by `scripts/soak`): a steady `--rate` for `--minutes` with
//!   retries and dead tasks, sampled every minute (throughput, memory, backend storage).
//! * `backlog` (module `backlog`): N tasks enqueued, `stats` and a dead-task page timed over
//!   them, then drained: `--tasks 10000000` is the ten-million backlog.
//!
//! `--http ADDR` gives every worker of the run its HTTP listener, so the metrics are recorded
//! (without it no recorder is installed and the instrumentation is a no-op).
//!
//! Every report names the machine (cores, memory, CPU) and the server version.

mod backend;
mod backlog;
mod dashboard;
mod follow;
mod limits;
mod machine;
mod soak;

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asynctasq_core::{Client, Overrides, RetryPolicy, TaskContext, TaskError, Worker, task};
use backend::{Backend, DriverKind};
use clap::{Parser, ValueEnum};
use machine::Machine;

#[derive(Debug, Parser)]
#[command(about = "asynctasq benchmark harness")]
struct Args {
    /// Backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    driver: DriverKind,
    /// Backend URL (defaults: see `--help` of each driver value; SQS: the endpoint).
    #[arg(long)]
    url: Option<String>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "throughput")]
    scenario: Scenario,
    /// Number of tasks.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Task counts of `scaling`.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// `scaling`: tasks to process first, unmeasured, so every size meets the server in its
    /// sustained state (a short burst can fit in a database's write buffers and look faster).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Dispatch batch size.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Serve the worker's `/metrics` etc. on this address (installs the metrics recorder).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// `scrape`: queues with series.
    #[arg(long, default_value_t = 100)]
    series_queues: usize,
    /// `scrape`: task names with series.
    #[arg(long, default_value_t = 50)]
    series_tasks: usize,
    /// `scrape`: each task on two queues, not on every queue.
    #[arg(long)]
    spread: bool,
    /// `cpu`: microseconds of CPU each task spins.
    #[arg(long, default_value_t = 2000)]
    work_us: u64,
    /// `cpu`: how the CPU-bound task is written.
    #[arg(long, value_enum, default_value = "blocking")]
    kind: CpuKind,
    /// Offered load of `latency`, tasks per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Names this run's queue and keys (`bench-<run>`); a child process of `memory` gets its
    /// parent's.
    #[arg(long)]
    run_id: Option<String>,
    /// Leave the queue in place at the end (the parent of a `drain` child removes it).
    #[arg(long, hide = true)]
    keep: bool,
    /// How long the worker keeps each succeeded task with its result (`0s`: nothing, the ack
    /// only deletes; default: the worker's, 24 h).
    #[arg(long, value_parser = humantime::parse_duration)]
    result_ttl: Option<Duration>,
    /// `enqueue`: dispatch tasks unique by their number (`#[task(unique(by = [n]))]`, every key
    /// new: the unique path's common case) instead of plain ones.
    #[arg(long)]
    unique: bool,
    /// `throughput`: tasks return a string of this many bytes (their result) instead of nothing.
    #[arg(long)]
    result_bytes: Option<usize>,
    /// `cancel`: the lease of each task (renewed every third of it, when a cancel is heard).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    lease: Duration,
    /// `throughput`, `drain`, `latency`: cap the run's queue at this many leased tasks
    /// (`Driver::set_limits`) before its worker starts; above the concurrency it never binds,
    /// which measures what counting the leases costs.
    #[arg(long)]
    max_leased: Option<u32>,
    /// `throughput`, `drain`, `latency`: limit the run's queue to N starts in any window of
    /// DURATION (`N/DURATION`, `Driver::set_limits`) before its worker starts; above the drain
    /// rate it never binds, which measures what logging and counting the starts costs.
    #[arg(long, value_name = "N/DURATION", value_parser = str::parse::<asynctasq_core::limits::Rate>)]
    start_rate: Option<asynctasq_core::limits::Rate>,
    /// `dashboard`: dead tasks stored beside the `--tasks` ready ones.
    #[arg(long, default_value_t = 100_000)]
    dead: u64,
    /// `dashboard`: requests per page.
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// `keyed`: tasks of the saturated key queued before the others.
    #[arg(long, default_value_t = 10_000)]
    hot: u64,
    /// `keyed`: how long each of the saturated key's tasks runs (ms).
    #[arg(long, default_value_t = 20)]
    hot_ms: u64,
    /// Print the result as one JSON object.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Enqueue,
    Throughput,
    Latency,
    Scaling,
    Retry,
    Memory,
    Drain,
    Cpu,
    Scrape,
    /// How long after a task's run ends a producer waiting on it (`Client::wait`) wakes:
    /// `--tasks` tasks offered at `--rate`, each with a waiter started at its dispatch.
    Await,
    /// How long after `Client::cancel` returns a running task's context says stop: `--tasks`
    /// tasks under leases of `--lease`, all running, cancelled over one renewal interval.
    Cancel,
    /// How soon tasks start while another key is saturated: a cap of 1 per key, `--hot` tasks
    /// of one key (each `--hot-ms`) queued first, then `--tasks` tasks of keys of their own
    /// offered at `--rate`; their latency from dispatch to start.
    Keyed,
    /// The dashboard's page times over a big backend: `--tasks` ready and `--dead` dead
    /// tasks stored, each page asked `--rounds` times (server time, p50/p99 per page).
    Dashboard,
    /// A steady `--rate` for `--minutes`, 1 % of tasks retried and 0.1 % dead, sampled every
    /// minute (module `soak`).
    Soak,
    /// `--tasks` tasks enqueued, operator reads over them timed, then drained (module
    /// `backlog`).
    Backlog,
}

/// How the `cpu` scenario's task is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CpuKind {
    /// A plain `fn`: the blocking pool.
    Blocking,
    /// An `async fn`: the runtime's threads.
    Async,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Report {
    driver: String,
    server: String,
    scenario: String,
    tasks: u64,
    concurrency: usize,
    seconds: f64,
    tasks_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    deliveries_per_second: Option<f64>,
    /// `throughput`, `retry`: the rate of the setup's bulk enqueue (batches of `--batch`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    enqueue_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    latency_ms: Option<Latency>,
    /// `scaling`: one throughput run per size.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    runs: Option<Vec<Run>>,
    /// `scaling`: fastest / slowest − 1 (0.2 = the slowest run is 20% below the fastest).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    spread: Option<f64>,
    /// Peak RSS of the process that ran the worker, MiB (`memory`, `drain`: the worker alone).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    peak_rss_mib: Option<f64>,
    /// SQS requests per task in the measured phase (what AWS bills), in total and by kind.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    requests_per_task: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    requests_by_kind: Option<RequestsPerTask>,
    /// `scrape`: bytes of one `/metrics` page and the series it holds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    page_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    series: Option<usize>,
    /// `dashboard`: each page's server time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pages: Option<Vec<dashboard::PageTime>>,
    /// `soak`: one sample per minute.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    minutes: Option<Vec<soak::Minute>>,
    /// `backlog`: its rates, storage per task and read times.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    backlog: Option<backlog::Backlog>,
    #[serde(skip_deserializing)]
    machine: Machine,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Run {
    tasks: u64,
    seconds: f64,
    tasks_per_second: f64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RequestsPerTask {
    send: f64,
    receive: f64,
    delete: f64,
    visibility: f64,
    other: f64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Report {
    fn requests(&mut self, during: asynctasq_drivers::SqsRequests) {
        let per = |n: u64| n as f64 / self.tasks as f64;
        self.requests_per_task = Some(per(during.total()));
        self.requests_by_kind = Some(RequestsPerTask {
            send: per(during.send),
            receive: per(during.receive),
            delete: per(during.delete),
            visibility: per(during.visibility),
            other: per(during.other),
        });
    }
}

static LATENCIES: LazyLock<Mutex<Vec<u64>>> = LazyLock::new(Default::default);

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Does nothing, once per run and number: unique by them (the `enqueue --unique` scenario),
/// its lock kept ten minutes at most so a run's locks are gone before long.
#[task(unique(by = [run, n], until = "done", ttl = "10m"))]
async fn unique_noop(run: String, n: u64) {
    std::hint::black_box((run, n));
}

/// Does nothing.
#[task]
async fn noop(n: u64) {
    std::hint::black_box(n);
}

/// Returns `bytes` bytes: a task with a result.
#[task]
async fn echo(n: u64, bytes: usize) -> Result<String, TaskError> {
    Ok(format!("{n:0bytes$}"))
}

/// Records how long after `sent_us` it started.
#[task]
async fn stamp(sent_us: u64) {
    let waited = micros_now().saturating_sub(sent_us);
    LATENCIES.lock().expect("latency lock").push(waited);
}

/// Fails its first attempt, then succeeds.
#[task(max_attempts = 3)]
async fn fail_once(ctx: TaskContext, n: u64) -> Result<(), TaskError> {
    if ctx.attempt() == 1 {
        return Err(TaskError::retry(format!("task {n}: first attempt fails")));
    }
    Ok(())
}

/// Rounds of [`churn`] one core does per microsecond, measured once at start-up on an idle
/// process, so a task's work is a fixed amount of computation: a spin timed by the clock would
/// count the time the OS gave its core to another thread as work.
static ROUNDS_PER_US: LazyLock<u64> = LazyLock::new(|| {
    let t = Instant::now();
    let mut rounds = 0u64;
    while t.elapsed() < Duration::from_millis(100) {
        churn(10_000);
        rounds += 10_000;
    }
    (rounds / t.elapsed().as_micros().max(1) as u64).max(1)
});

fn churn(rounds: u64) {
    let mut x = 0u64;
    for _ in 0..rounds {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Computes for about `us` microseconds of one core.
fn spin(us: u64) {
    churn(us * *ROUNDS_PER_US);
}

/// CPU-bound work as a blocking task (runs on the blocking pool).
#[task]
fn spin_blocking(us: u64) {
    spin(us);
}

/// The same work as an async task (runs on the runtime's threads).
#[task]
async fn spin_async(us: u64) {
    spin(us);
}

type BoxError = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let scratch = tempfile::tempdir()?;
    let run = args.run_id.clone().unwrap_or_else(|| {
        format!("{:08x}", std::process::id() ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()))
    });
    let backend = Backend::connect(args.driver, args.url.clone(), &run, scratch.path()).await?;
    let queue = format!("bench-{run}");
    let mut report = Report {
        driver: backend.driver.name().into(),
        server: backend.server_version().await,
        scenario: format!("{:?}{}", args.scenario, if args.unique { "-unique" } else { "" }).to_lowercase(),
        tasks: args.tasks,
        concurrency: args.concurrency,
        machine: Machine::read(),
        ..Default::default()
    };
    let client = Client::new(backend.driver.clone());
    let overrides = Overrides { queue: Some(queue.clone()), ..Default::default() };

    let limits = asynctasq_core::QueueLimits::default().with_max_leased(args.max_leased).with_rate(args.start_rate);
    if !limits.is_none() {
        backend.driver.set_limits(&queue, limits).await?;
    }
    match args.scenario {
        Scenario::Enqueue => {
            let before = backend.sqs_requests();
            let t = Instant::now();
            if args.unique {
                dispatch(&client, args.tasks, args.batch, &overrides, |n| UniqueNoop { run: run.clone(), n }).await?;
            } else {
                dispatch(&client, args.tasks, args.batch, &overrides, |n| Noop { n }).await?;
            }
            report.seconds = t.elapsed().as_secs_f64();
            if let (Some(a), Some(b)) = (before, backend.sqs_requests()) {
                report.requests(b.since(&a));
            }
        }
        Scenario::Throughput => {
            let t = Instant::now();
            match args.result_bytes {
                Some(bytes) => dispatch(&client, args.tasks, args.batch, &overrides, |n| Echo { n, bytes }).await?,
                None => dispatch(&client, args.tasks, args.batch, &overrides, |n| Noop { n }).await?,
            }
            report.enqueue_per_second = Some(args.tasks as f64 / t.elapsed().as_secs_f64());
            let before = backend.sqs_requests();
            report.seconds = drain(&backend, &queue, args.tasks, &args, None).await?;
            if let (Some(a), Some(b)) = (before, backend.sqs_requests()) {
                report.requests(b.since(&a));
            }
        }
        Scenario::Drain => {
            report.seconds = drain(&backend, &queue, args.tasks, &args, None).await?;
            report.peak_rss_mib = machine::peak_rss_mib();
        }
        Scenario::Retry => {
            let t = Instant::now();
            dispatch(&client, args.tasks, args.batch, &overrides, |n| FailOnce { n }).await?;
            report.enqueue_per_second = Some(args.tasks as f64 / t.elapsed().as_secs_f64());
            report.seconds = drain(&backend, &queue, args.tasks, &args, Some(RetryPolicy::Fixed(Duration::ZERO))).await?;
            report.deliveries_per_second = Some(2.0 * args.tasks as f64 / report.seconds);
        }
        Scenario::Scaling => {
            let mut runs = Vec::new();
            if args.warmup > 0 {
                let q = format!("{queue}-warmup");
                let overrides = Overrides { queue: Some(q.clone()), ..Default::default() };
                dispatch(&client, args.warmup, args.batch, &overrides, |n| Noop { n }).await?;
                drain(&backend, &q, args.warmup, &args, None).await?;
                backend.remove(&q).await?;
            }
            for &size in &args.sizes {
                let q = format!("{queue}-{size}");
                let overrides = Overrides { queue: Some(q.clone()), ..Default::default() };
                dispatch(&client, size, args.batch, &overrides, |n| Noop { n }).await?;
                let seconds = drain(&backend, &q, size, &args, None).await?;
                backend.remove(&q).await?;
                runs.push(Run { tasks: size, seconds, tasks_per_second: size as f64 / seconds });
            }
            let rates = runs.iter().map(|r| r.tasks_per_second);
            let (fast, slow) = rates.fold((0f64, f64::MAX), |(hi, lo), r| (hi.max(r), lo.min(r)));
            report.spread = Some(fast / slow - 1.0);
            report.tasks = runs.iter().map(|r| r.tasks).sum();
            report.seconds = runs.iter().map(|r| r.seconds).sum();
            report.runs = Some(runs);
        }
        Scenario::Memory => {
            dispatch(&client, args.tasks, args.batch, &overrides, |n| Noop { n }).await?;
            let child = drain_in_child(&args, &backend, &run)?;
            report.seconds = child.seconds;
            report.peak_rss_mib = child.peak_rss_mib;
        }
        Scenario::Cpu => {
            let us = args.work_us;
            LazyLock::force(&ROUNDS_PER_US);
            match args.kind {
                CpuKind::Blocking => dispatch(&client, args.tasks, args.batch, &overrides, |_| SpinBlocking { us }).await?,
                CpuKind::Async => dispatch(&client, args.tasks, args.batch, &overrides, |_| SpinAsync { us }).await?,
            }
            // A ticker on the worker's runtime: how late each 10 ms tick fires is how long the
            // runtime's threads were kept from everything else (renewals, acks, other tasks).
            let ticker = tokio::spawn(async {
                let mut next = Instant::now() + Duration::from_millis(10);
                loop {
                    tokio::time::sleep_until(next.into()).await;
                    LATENCIES.lock().expect("latency lock").push(next.elapsed().as_micros() as u64);
                    next = Instant::now() + Duration::from_millis(10);
                }
            });
            report.seconds = drain(&backend, &queue, args.tasks, &args, None).await?;
            ticker.abort();
            let mut l = LATENCIES.lock().expect("latency lock").clone();
            l.sort_unstable();
            if !l.is_empty() {
                let at = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
                report.latency_ms = Some(Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) });
            }
        }
        Scenario::Scrape => {
            let addr = args.http.unwrap_or_else(|| ([127, 0, 0, 1], 9464).into());
            let worker = Worker::builder(backend.driver.clone()).queues(&queue)?.http(addr).build()?;
            let handle = worker.handle();
            let running = tokio::spawn(worker.start());
            tokio::time::sleep(Duration::from_millis(300)).await;
            let series = record_series(args.series_queues, args.series_tasks, args.spread);
            let mut took = Vec::new();
            let mut bytes = 0;
            for _ in 0..args.tasks.max(1) {
                let t = Instant::now();
                bytes = http_get(addr, "/metrics").await?.len();
                took.push(t.elapsed().as_micros() as u64);
            }
            handle.stop();
            running.await??;
            took.sort_unstable();
            let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            report.latency_ms = Some(Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) });
            report.seconds = took.iter().sum::<u64>() as f64 / 1e6;
            report.page_bytes = Some(bytes);
            report.series = Some(series);
        }
        Scenario::Latency => {
            let worker =
                Worker::builder(backend.driver.clone()).queues(&queue)?.concurrency(args.concurrency).max_tasks(args.tasks).build()?;
            let running = tokio::spawn(worker.start());
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Offer the load in ticks of at most 1 ms; above 1000 tasks/s a tick dispatches its
            // share in one call, as a busy producer would.
            let rate = args.rate.max(1);
            let per_tick = (rate / 1000).max(1);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let t = Instant::now();
            let mut sent = 0;
            while sent < args.tasks {
                tick.tick().await;
                let n = per_tick.min(args.tasks - sent);
                let now = micros_now();
                client.dispatch_many((0..n).map(|_| Stamp { sent_us: now }), overrides.clone()).await?;
                sent += n;
            }
            let counts = running.await??;
            report.seconds = t.elapsed().as_secs_f64();
            if counts.succeeded != args.tasks {
                return Err(format!("{} of {} tasks succeeded", counts.succeeded, args.tasks).into());
            }
            let mut l = LATENCIES.lock().expect("latency lock").clone();
            l.sort_unstable();
            let at = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            report.latency_ms = Some(Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) });
        }
        Scenario::Await => {
            let (seconds, latency) =
                follow::awaited(backend.driver.clone(), &client, &queue, args.tasks, args.rate, args.concurrency).await?;
            (report.seconds, report.latency_ms) = (seconds, Some(latency));
        }
        Scenario::Cancel => {
            let (seconds, latency) = follow::cancelled(backend.driver.clone(), &client, &queue, args.tasks, args.lease).await?;
            (report.seconds, report.latency_ms) = (seconds, Some(latency));
        }
        Scenario::Soak => {
            let t = Instant::now();
            let minutes =
                soak::soak(backend.driver.clone(), backend.url.as_deref(), &client, &queue, (args.rate, args.minutes, args.concurrency))
                    .await?;
            report.seconds = t.elapsed().as_secs_f64();
            report.tasks = minutes.iter().map(|m| (m.ended_per_second * 60.0) as u64).sum();
            report.minutes = Some(minutes);
        }
        Scenario::Backlog => {
            let t = Instant::now();
            let found = backlog::backlog(
                backend.driver.clone(),
                backend.url.as_deref(),
                &client,
                &queue,
                (args.tasks, args.batch, args.rounds.min(20), args.concurrency),
            )
            .await?;
            report.seconds = t.elapsed().as_secs_f64();
            report.backlog = Some(found);
        }
        Scenario::Dashboard => {
            let t = Instant::now();
            dashboard::fill(&backend.driver, &client, &queue, args.tasks, args.dead).await?;
            report.seconds = t.elapsed().as_secs_f64();
            report.pages = Some(dashboard::pages(backend.driver.clone(), &queue, args.rounds).await?);
            backend.remove(&format!("{queue}-dead")).await?;
        }
        Scenario::Keyed => {
            let (seconds, latency) = limits::saturated(
                backend.driver.clone(),
                &client,
                &queue,
                (args.tasks, args.rate, args.concurrency),
                (args.hot, args.hot_ms),
            )
            .await?;
            (report.seconds, report.latency_ms) = (seconds, Some(latency));
        }
    }
    report.tasks_per_second = report.tasks as f64 / report.seconds;
    if !args.keep {
        backend.remove(&queue).await?;
        backend.leave().await?;
    }
    print(&report, args.json)?;
    Ok(())
}

/// Records the engine's per-task series for `queues` × `tasks` pairs (`spread`: each task on
/// two queues), as a worker that ran them would have; how many (queue, task) pairs.
fn record_series(queues: usize, tasks: usize, spread: bool) -> usize {
    use asynctasq_core::metrics::names;
    let mut pairs = Vec::new();
    for t in 0..tasks {
        if spread {
            pairs.push((t % queues.max(1), t));
            pairs.push(((t + queues / 2) % queues.max(1), t));
        } else {
            pairs.extend((0..queues).map(|q| (q, t)));
        }
    }
    for &(q, t) in &pairs {
        let (q, t) = (format!("queue-{q:03}"), format!("task_{t:02}"));
        metrics::counter!(names::TASKS_STARTED, "queue" => q.clone(), "task" => t.clone()).increment(100);
        for outcome in ["succeeded", "retried", "dead", "released", "lease_lost"] {
            metrics::counter!(names::TASKS_FINISHED, "queue" => q.clone(), "task" => t.clone(), "outcome" => outcome).increment(20);
        }
        // As the engine labels them: run time by task, wait time by queue.
        for h in [
            metrics::histogram!(names::TASK_RUN_SECONDS, "task" => t.clone()),
            metrics::histogram!(names::TASK_WAIT_SECONDS, "queue" => q.clone()),
        ] {
            for i in 0..20 {
                h.record(f64::from(i) / 100.0);
            }
        }
    }
    pairs.len()
}

/// The body of `GET path` from `addr`.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String, BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await?;
    let text = String::from_utf8(answer)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or_default()).into());
    }
    Ok(body.to_owned())
}

/// Dispatches `n` tasks made by `make` in batches of `batch`.
async fn dispatch<T: asynctasq_core::Task>(
    client: &Client,
    n: u64,
    batch: usize,
    overrides: &Overrides,
    make: impl Fn(u64) -> T,
) -> Result<(), asynctasq_core::DriverError> {
    let mut next = 0;
    while next < n {
        let end = (next + batch as u64).min(n);
        client.dispatch_many((next..end).map(&make), overrides.clone()).await?;
        next = end;
    }
    Ok(())
}

/// Runs a worker on `queue` until `tasks` tasks succeeded (with `retry`, each task runs twice),
/// at the concurrency, listener and result time to live of `args`; the seconds it took.
async fn drain(backend: &Backend, queue: &str, tasks: u64, args: &Args, retry: Option<RetryPolicy>) -> Result<f64, BoxError> {
    let runs = if retry.is_some() { 2 * tasks } else { tasks };
    let mut builder = Worker::builder(backend.driver.clone()).queues(queue)?.concurrency(args.concurrency).max_tasks(runs);
    if let Some(addr) = args.http {
        builder = builder.http(addr);
    }
    if let Some(ttl) = args.result_ttl {
        builder = builder.result_ttl(ttl);
    }
    if let Some(policy) = retry {
        builder = builder.retry(policy);
    }
    let worker = builder.build()?;
    let t = Instant::now();
    let counts = worker.start().await?;
    let seconds = t.elapsed().as_secs_f64();
    if counts.succeeded != tasks {
        return Err(format!("{} of {tasks} tasks succeeded ({counts:?})", counts.succeeded).into());
    }
    Ok(seconds)
}

/// Runs this binary's `drain` scenario on the run's queue in a child process; its report.
fn drain_in_child(args: &Args, backend: &Backend, run: &str) -> Result<Report, BoxError> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["--driver", &format!("{:?}", args.driver).to_lowercase(), "--scenario", "drain", "--json", "--keep", "--run-id", run]);
    cmd.args(["--tasks", &args.tasks.to_string(), "--concurrency", &args.concurrency.to_string()]);
    if let Some(ttl) = args.result_ttl {
        cmd.args(["--result-ttl", &humantime::format_duration(ttl).to_string()]);
    }
    match &backend.url {
        Some(url) => cmd.args(["--url", url]),
        None => return Err("the memory driver lives in one process: `memory` needs a backend a child process can reach".into()),
    };
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("the drain process failed ({})", out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn print(report: &Report, json: bool) -> Result<(), BoxError> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    let m = &report.machine;
    println!("machine: {} cores, {} MiB, {} (Linux {})", m.cores, m.memory_mib, m.cpu, m.kernel);
    println!("server: {}", report.server);
    println!(
        "{} {} tasks={} concurrency={} {:.3}s {:.0} tasks/s",
        report.driver, report.scenario, report.tasks, report.concurrency, report.seconds, report.tasks_per_second
    );
    if let Some(e) = report.enqueue_per_second {
        println!("setup enqueue: {e:.0} tasks/s");
    }
    if let Some(d) = report.deliveries_per_second {
        println!("deliveries: {d:.0}/s (each task runs twice)");
    }
    for r in report.runs.iter().flatten() {
        println!("  {:>9} tasks: {:.3}s {:.0} tasks/s", r.tasks, r.seconds, r.tasks_per_second);
    }
    if let Some(s) = report.spread {
        println!("spread: {:.1}% (fastest over slowest)", s * 100.0);
    }
    if let Some(rss) = report.peak_rss_mib {
        println!("worker peak RSS: {rss:.1} MiB");
    }
    for p in report.pages.iter().flatten() {
        println!("  {:<48} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {} bytes", p.page, p.ms.p50, p.ms.p99, p.ms.max, p.bytes);
    }
    if let (Some(r), Some(k)) = (report.requests_per_task, &report.requests_by_kind) {
        println!(
            "SQS requests per task: {r:.3} (send {:.3}, receive {:.3}, delete {:.3}, visibility {:.3}, other {:.3})",
            k.send, k.receive, k.delete, k.visibility, k.other
        );
    }
    if let Some(l) = &report.latency_ms {
        println!("enqueue->start ms: p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}", l.p50, l.p95, l.p99, l.max);
    }
    Ok(())
}
