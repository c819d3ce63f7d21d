//! Benchmark harness: one scenario against one backend, numbers on stdout.
//!
//! ```text
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario throughput --tasks 100000 --concurrency 50
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario enqueue --tasks 100000
//! cargo run --release -p asynctasq-benches --bin bench -- --scenario latency --tasks 2000 --rate 1000
//! ```
//!
//! Scenarios:
//! * `enqueue`: bulk-dispatch N no-op tasks in batches of `--batch`; tasks/s.
//! * `throughput`: drain N pre-enqueued no-op tasks with one worker at `--concurrency`; tasks/s.
//! * `latency`: offer N tasks at `--rate` per second (in 1 ms ticks) to a running worker; each
//!   task carries its dispatch time in microseconds, so enqueue→start is measured per task.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asynctasq_core::{Client, Driver, Overrides, Worker, task};
use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "asynctasq benchmark harness")]
struct Args {
    /// Backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    driver: DriverKind,
    /// Backend URL (default: a fresh SQLite file in a temp dir; redis://127.0.0.1:6379;
    /// postgres://postgres@127.0.0.1:5432/test and mysql://root@127.0.0.1:3306/test, tables
    /// `asynctasq_bench_*`; amqp://guest:guest@127.0.0.1:5672/%2f, queues deleted at the end).
    #[arg(long)]
    url: Option<String>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "throughput")]
    scenario: Scenario,
    /// Number of tasks.
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Dispatch batch size (enqueue and throughput set-up).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Offered load for `latency`, tasks per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum DriverKind {
    Sqlite,
    Redis,
    Postgres,
    Mysql,
    Rabbitmq,
    /// SQS; `--url` is the endpoint (default moto at http://127.0.0.1:4566).
    Sqs,
    Memory,
}

#[derive(Clone, Copy, Debug, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Enqueue,
    Throughput,
    Latency,
}

#[derive(Debug, Default, serde::Serialize)]
struct Report {
    driver: &'static str,
    scenario: &'static str,
    tasks: u64,
    concurrency: usize,
    seconds: f64,
    tasks_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Latency>,
    /// SQS requests per task in the measured phase (what AWS bills), in total and by kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_task: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_by_kind: Option<RequestsPerTask>,
    cores: usize,
}

#[derive(Debug, serde::Serialize)]
struct RequestsPerTask {
    send: f64,
    receive: f64,
    delete: f64,
    visibility: f64,
    other: f64,
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

#[derive(Debug, serde::Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

static LATENCIES: LazyLock<Mutex<Vec<u64>>> = LazyLock::new(Default::default);

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Does nothing.
#[task]
async fn noop(n: u64) {
    std::hint::black_box(n);
}

/// Records how long after `sent_us` it started.
#[task]
async fn stamp(sent_us: u64) {
    let waited = micros_now().saturating_sub(sent_us);
    LATENCIES.lock().expect("latency lock").push(waited);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut rabbit = None;
    let mut sqs = None;
    let driver: Arc<dyn Driver> = match args.driver {
        DriverKind::Sqlite => {
            let url = args.url.clone().unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
            Arc::new(asynctasq_drivers::SqliteDriver::connect(&url).await?)
        }
        DriverKind::Redis => {
            let mut config = asynctasq_drivers::RedisConfig::new(args.url.clone().unwrap_or_else(|| "redis://127.0.0.1:6379".into()));
            // A prefix of its own, removed at the end, so runs never meet.
            config.prefix = format!("asynctasq-bench-{:08x}:", std::process::id());
            Arc::new(asynctasq_drivers::RedisDriver::connect_with(config).await?)
        }
        DriverKind::Postgres => {
            let url = args.url.clone().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
            let mut config = asynctasq_drivers::PostgresConfig::new(url);
            config.table_prefix = "asynctasq_bench".into();
            Arc::new(asynctasq_drivers::PostgresDriver::connect_with(config).await?)
        }
        DriverKind::Mysql => {
            let url = args.url.clone().unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".into());
            let mut config = asynctasq_drivers::MySqlConfig::new(url);
            config.table_prefix = "asynctasq_bench".into();
            Arc::new(asynctasq_drivers::MySqlDriver::connect_with(config).await?)
        }
        DriverKind::Rabbitmq => {
            let url = args.url.clone().unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
            let mut config = asynctasq_drivers::RabbitMqConfig::new(url);
            config.prefix = "asynctasq-bench".into();
            let driver = Arc::new(asynctasq_drivers::RabbitMqDriver::connect_with(config).await?);
            rabbit = Some(driver.clone());
            driver
        }
        DriverKind::Sqs => {
            let endpoint = args.url.clone().unwrap_or_else(|| "http://127.0.0.1:4566".into());
            let mut config = asynctasq_drivers::SqsConfig::local(endpoint);
            config.queue_prefix = "asynctasq-bench-".into();
            let driver = Arc::new(asynctasq_drivers::SqsDriver::connect(config).await?);
            sqs = Some(driver.clone());
            driver
        }
        DriverKind::Memory => Arc::new(asynctasq_core::MemoryDriver::new()),
    };
    let requests = || sqs.as_ref().map(|d| d.requests());
    let client = Client::new(driver.clone());
    let queue = format!("bench-{:08x}", std::process::id());
    let overrides = Overrides { queue: Some(queue.clone()), ..Default::default() };
    let mut report = Report {
        driver: driver.name(),
        tasks: args.tasks,
        concurrency: args.concurrency,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        ..Default::default()
    };

    match args.scenario {
        Scenario::Enqueue => {
            report.scenario = "enqueue";
            let before = requests();
            let t = Instant::now();
            dispatch_noops(&client, args.tasks, args.batch, &overrides).await?;
            report.seconds = t.elapsed().as_secs_f64();
            if let (Some(a), Some(b)) = (before, requests()) {
                report.requests(b.since(&a));
            }
        }
        Scenario::Throughput => {
            report.scenario = "throughput";
            dispatch_noops(&client, args.tasks, args.batch, &overrides).await?;
            let worker = Worker::builder(driver.clone()).queues(&queue)?.concurrency(args.concurrency).max_tasks(args.tasks).build()?;
            let before = requests();
            let t = Instant::now();
            let counts = worker.start().await?;
            report.seconds = t.elapsed().as_secs_f64();
            if let (Some(a), Some(b)) = (before, requests()) {
                report.requests(b.since(&a));
            }
            assert_eq!(counts.succeeded, args.tasks, "every task succeeded");
        }
        Scenario::Latency => {
            report.scenario = "latency";
            let worker = Worker::builder(driver.clone()).queues(&queue)?.concurrency(args.concurrency).max_tasks(args.tasks).build()?;
            let run = tokio::spawn(worker.start());
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Offer the load in ticks of at most 1 ms; above 1000 tasks/s a tick dispatches its
            // share in one call, as a busy producer would.
            let rate = args.rate.max(1);
            let per_tick = (rate / 1000).max(1);
            let interval = Duration::from_secs_f64(per_tick as f64 / rate as f64);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let overrides = Overrides { queue: Some(queue.clone()), ..Default::default() };
            let t = Instant::now();
            let mut sent = 0;
            while sent < args.tasks {
                tick.tick().await;
                let n = per_tick.min(args.tasks - sent);
                let now = micros_now();
                client.dispatch_many((0..n).map(|_| Stamp { sent_us: now }), overrides.clone()).await?;
                sent += n;
            }
            let counts = run.await??;
            report.seconds = t.elapsed().as_secs_f64();
            assert_eq!(counts.succeeded, args.tasks);
            let mut l = LATENCIES.lock().expect("latency lock").clone();
            l.sort_unstable();
            let at = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
            report.latency_ms = Some(Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) });
        }
    }
    report.tasks_per_second = args.tasks as f64 / report.seconds;
    // Leave the backend as found: the tasks are gone once run; drop what `enqueue` left.
    // (SQS: deleting the queues below removes everything at once.)
    if sqs.is_none() {
        driver.purge(&queue).await?;
    }
    if let Some(rabbit) = rabbit {
        rabbit.delete_queue(&queue).await?;
    }
    if let Some(sqs) = &sqs {
        sqs.delete_queue(&queue).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} {} tasks={} concurrency={} {:.3}s {:.0} tasks/s",
            report.driver, report.scenario, report.tasks, report.concurrency, report.seconds, report.tasks_per_second
        );
        if let (Some(r), Some(k)) = (report.requests_per_task, &report.requests_by_kind) {
            println!(
                "SQS requests per task: {r:.3} (send {:.3}, receive {:.3}, delete {:.3}, visibility {:.3}, other {:.3})",
                k.send, k.receive, k.delete, k.visibility, k.other
            );
        }
        if let Some(l) = &report.latency_ms {
            println!("enqueue->start ms: p50 {:.2} p95 {:.2} p99 {:.2} max {:.2}", l.p50, l.p95, l.p99, l.max);
        }
    }
    Ok(())
}

async fn dispatch_noops(client: &Client, n: u64, batch: usize, overrides: &Overrides) -> Result<(), asynctasq_core::DriverError> {
    let mut next = 0;
    while next < n {
        let end = (next + batch as u64).min(n);
        client.dispatch_many((next..end).map(|n| Noop { n }), overrides.clone()).await?;
        next = end;
    }
    Ok(())
}
