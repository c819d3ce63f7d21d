//! # asynctasq-cli
//!
//! The `asynctasq` command line, and the same commands as a library entry point: a binary
//! that links your `#[task]` functions gets every command with one line in `main`.
//!
//! ```no_run
//! use asynctasq_core::{task, TaskError};
//!
//! #[task(queue = "emails")]
//! async fn send_welcome(user_id: u64) -> Result<(), TaskError> {
//!     println!("welcome, user {user_id}");
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     asynctasq_cli::main()
//! }
//! ```
//!
//! Then `my-app worker --queues emails,default --concurrency 20` runs a worker with
//! `send_welcome` registered. Every flag has an `ASYNCTASQ_*` environment variable.
//!
//! | Feature  | Default | Backend |
//! |----------|---------|---------|
//! | `sqlite` | yes     | `--driver sqlite` (the embedded default) |
//! | `redis`  | no      | `--driver redis --redis-url redis://127.0.0.1:6379` |
//! | `postgres` | no    | `--driver postgres --database-url postgres://127.0.0.1/db` |
//! | `mysql`  | no      | `--driver mysql --database-url mysql://root@127.0.0.1:3306/db` (MySQL 8, MariaDB 10.6+) |
//! | `rabbitmq` | no    | `--driver rabbitmq --rabbitmq-url amqp://guest:guest@127.0.0.1:5672/%2f` (RabbitMQ 3.10+) |
//! | `sqs`    | no      | `--driver sqs --sqs-region us-east-1 [--sqs-endpoint-url http://127.0.0.1:4566]` (credentials from the AWS chain) |
//! | `http`   | yes     | `worker --http ADDR`: `/metrics`, `/health`, `/ready`, `/worker` |
//! | `full`   | no      | all of the above |
//! | `testing` | no     | the test helpers, `asynctasq::core::testing` (for `[dev-dependencies]`) |
//!
//! One dependency line is enough: this crate re-exports asynctasq-core as
//! [`core`] and asynctasq-drivers as [`drivers`], and `#[task]`
//! finds them through it. [`run!`] reports your package's name and version.
//!
//! Exit codes: 0 success, 1 error, 2 usage error, 3 unhealthy (`doctor`).

/// asynctasq-core (tasks, the client, the worker engine), re-exported so one dependency line
/// on this crate is enough: `#[task]` finds it here when `asynctasq-core` is not a dependency.
pub use asynctasq_core as core;
pub use asynctasq_core::{Awaited, Client, RetryPolicy, Task, TaskContext, TaskError, Worker, task};
/// asynctasq-drivers (the backends this build's features enable), re-exported.
pub use asynctasq_drivers as drivers;
/// The `tracing` crate the worker logs through, re-exported so tasks can log
/// (`asynctasq::tracing::info!`) without a dependency line of their own.
pub use tracing;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

#[macro_use]
mod output;
mod backend;
#[cfg(feature = "dashboard")]
mod dashboard;
mod ops;
mod otlp;

use self::backend::{BackendArgs, connect};

use anyhow::{Context, bail};
use asynctasq_core::{Registry, WorkerHandle};
use clap::{Args, Parser, Subcommand};

/// Command line of asynctasq.
#[derive(Debug, Parser)]
#[command(name = "asynctasq", version, about = "Run and operate asynctasq workers")]
pub struct Cli {
    #[command(flatten, next_help_heading = "Backend (every command; -h shows the main ones, --help all of this build's)")]
    backend: BackendArgs,
    #[command(flatten, next_help_heading = "Tracing")]
    tracing: otlp::Tracing,
    #[command(subcommand)]
    command: Command,
}

/// A flag value checked when the flags are read, so a bad one is a usage error (exit 2) whose
/// message echoes at most an excerpt of it (clap's own "invalid value" echoes it whole). With
/// `named`, the message starts with the flag's name.
#[derive(Clone, Copy)]
pub(crate) struct Checked {
    check: fn(&str) -> Result<(), String>,
    named: bool,
}

impl clap::builder::TypedValueParser for Checked {
    type Value = String;

    fn parse_ref(&self, _cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<String, clap::Error> {
        let text = value.to_string_lossy();
        (self.check)(&text).map_err(|reason| {
            let message = match arg.and_then(|a| a.get_long()).filter(|_| self.named) {
                Some(flag) => format!("invalid --{flag}: {reason}"),
                None => reason,
            };
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{message}\n"))
        })?;
        Ok(text.into_owned())
    }
}

/// A `--queues` list (`high,default` or `high:6,default:3`).
pub(crate) const QUEUE_LIST: Checked =
    Checked { check: |text| asynctasq_core::QueueSpec::parse_list(text).map(|_| ()).map_err(|e| e.to_string()), named: true };

/// A `--queue-concurrency` entry: `QUEUE=N`, N at least 1.
pub(crate) const QUEUE_CAP: Checked = Checked { check: |text| parse_queue_cap(text).map(|_| ()), named: true };

fn parse_queue_cap(text: &str) -> Result<(String, usize), String> {
    let (queue, n) = text.split_once('=').ok_or_else(|| format!("`{text}` is not QUEUE=N"))?;
    asynctasq_core::envelope::validate_queue_name(queue).map_err(|e| e.to_string())?;
    match n.parse::<usize>() {
        Ok(n) if n >= 1 => Ok((queue.to_owned(), n)),
        _ => Err(format!("`{n}` in `{text}` is not a count of at least 1")),
    }
}

/// A queue name.
pub(crate) const QUEUE_NAME: Checked = Checked {
    check: |text| {
        asynctasq_core::envelope::validate_queue_name(text).map_err(|e| match e {
            asynctasq_core::DriverError::Config(m) => format!("invalid {m}"),
            other => other.to_string(),
        })
    },
    named: false,
};

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a worker: take tasks from the queues and run them until stopped (SIGINT/SIGTERM
    /// stop gracefully; a second signal stops at once). `worker run-once` processes what is
    /// due and exits with a summary.
    Worker(WorkerCommand),
    /// List the tasks registered in this binary, with the queue each is dispatched to.
    Tasks {
        /// One JSON object per task (name, queue, max_attempts, timeout_ms, lease_ms,
        /// result_ttl_ms; null where the task sets none).
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the backend's schema (SQL backends; others have nothing to migrate).
    /// Every other command applies pending migrations on connect, except `doctor`.
    Migrate {
        /// List the migrations that would run, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// See and repair queues: counts, flushing, retrying dead tasks.
    #[command(subcommand)]
    Queue(ops::QueueCommand),
    /// Dead-lettered tasks: list, show, retry, purge.
    #[command(subcommand)]
    Dead(ops::DeadCommand),
    /// Any stored task by id: show.
    #[command(subcommand)]
    Task(ops::TaskCommand),
    /// Cron schedules (`#[task(cron = "…")]`): list, pause, resume, run now.
    #[command(subcommand)]
    Schedule(ops::ScheduleCommand),
    /// Enqueue a task registered in this binary by name, with JSON arguments.
    Dispatch(ops::DispatchArgs),
    /// Check the backend: connection, server version, migrations, round-trip time, clock skew,
    /// capabilities (exit 3 when unhealthy). Changes nothing.
    Doctor,
    /// Live workers from the backend's worker registry (stale ones marked; they expire).
    Workers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the web dashboard: queues, tasks by id, dead letters, workers, schedules.
    #[cfg(feature = "dashboard")]
    Dashboard(dashboard::DashboardArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct WorkerCommand {
    #[command(subcommand)]
    action: Option<WorkerAction>,
    #[command(flatten)]
    args: WorkerArgs,
}

#[derive(Debug, Subcommand)]
enum WorkerAction {
    /// Process what is due (ready now, or falling due while running), then exit with a
    /// summary: for cron. Same flags as `worker`.
    RunOnce(WorkerArgs),
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// Queues in priority order (`high,default`: strict) or with weights
    /// (`high:6,default:3,low:1`: weighted, no starvation).
    #[arg(long, env = "ASYNCTASQ_QUEUES", default_value = "default", value_parser = QUEUE_LIST)]
    queues: String,
    /// Most tasks running at once.
    #[arg(long, env = "ASYNCTASQ_CONCURRENCY", default_value_t = 10)]
    concurrency: usize,
    /// Most of one queue's tasks this worker runs at once (`export=2`; repeat or separate with
    /// commas for more queues). Per process: for a cap across every worker see `queue limit`.
    #[arg(
        long,
        env = "ASYNCTASQ_QUEUE_CONCURRENCY",
        value_delimiter = ',',
        value_name = "QUEUE=N",
        value_parser = QUEUE_CAP,
        hide_short_help = true
    )]
    queue_concurrency: Vec<String>,
    /// Most blocking task bodies (`#[task]` on a plain `fn`) running at once, each on a thread
    /// off the async runtime [default: the number of cores].
    #[arg(long, env = "ASYNCTASQ_BLOCKING_THREADS", value_name = "N")]
    blocking_threads: Option<usize>,
    /// Stop after taking exactly this many tasks.
    #[arg(long, env = "ASYNCTASQ_MAX_TASKS")]
    max_tasks: Option<u64>,
    /// Stop gracefully after this long (e.g. `1h`, `90s`).
    #[arg(long, env = "ASYNCTASQ_MAX_TIME", value_parser = humantime::parse_duration)]
    max_time: Option<Duration>,
    /// Stop once the queues hold nothing ready, scheduled or running.
    #[arg(long, env = "ASYNCTASQ_STOP_WHEN_EMPTY")]
    stop_when_empty: bool,
    /// How long a graceful stop waits for running tasks before releasing them.
    #[arg(long, env = "ASYNCTASQ_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Run a cron schedule besides the binary's `#[task(cron)]` ones (repeatable; in the
    /// environment one per line): `NAME;PATTERN;TASK[;TZ[;ARGS-JSON]]`, e.g.
    /// `cleanup;0 3 * * *;purge_old;Europe/Berlin;{"days": 30}`.
    #[arg(long = "schedule", env = "ASYNCTASQ_SCHEDULES", value_delimiter = '\n', value_name = "SPEC", hide_short_help = true)]
    schedules: Vec<String>,
    #[command(flatten, next_help_heading = "Defaults for tasks that set nothing (per dispatch > #[task] > these > built-in)")]
    defaults: Box<TaskDefaults>,
    /// Print the final counts as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Monitoring")]
    events: Box<EventArgs>,
    #[command(flatten, next_help_heading = "Monitoring")]
    monitoring: Box<Monitoring>,
}

/// Publishing the worker's events on Redis pub/sub.
#[derive(Debug, Args)]
struct EventArgs {
    /// Publish the worker's events as MessagePack on a Redis pub/sub channel (default
    /// `asynctasq:events`): to `--events-redis-url`, or to the backend when it is Redis.
    #[arg(
        long,
        env = "ASYNCTASQ_PUBLISH_EVENTS",
        value_name = "CHANNEL",
        num_args = 0..=1,
        default_missing_value = "asynctasq:events",
        alias = "events-enable-event-emitter-redis"
    )]
    publish_events: Option<String>,
    /// The Redis to publish events to, whatever the backend (implies publishing).
    #[arg(long, env = "ASYNCTASQ_EVENTS_REDIS_URL", value_name = "URL", hide_env_values = true, hide_short_help = true)]
    events_redis_url: Option<String>,
    /// The channel to publish on (default `asynctasq:events`).
    #[arg(long, env = "ASYNCTASQ_EVENTS_CHANNEL", value_name = "NAME", hide_short_help = true)]
    events_channel: Option<String>,
}

impl EventArgs {
    /// Where to publish (the Redis URL, `None` for the backend's own) and on which channel, or
    /// `None` when events are not published. Two different channels are a usage error.
    fn target(&self) -> anyhow::Result<Option<(Option<&str>, String)>> {
        let on = self.publish_events.is_some() || self.events_redis_url.is_some() || self.events_channel.is_some();
        if !on {
            return Ok(None);
        }
        let channel = match (self.publish_events.as_deref(), self.events_channel.as_deref()) {
            (Some(a), Some(b)) if a != b && a != "asynctasq:events" => {
                return Err(Usage(format!("--publish-events {a} contradicts --events-channel {b}: name the channel once")).into());
            }
            (_, Some(c)) | (Some(c), None) => c.to_owned(),
            (None, None) => "asynctasq:events".to_owned(),
        };
        if channel.is_empty() {
            return Err(Usage("the events channel must not be empty".into()).into());
        }
        Ok(Some((self.events_redis_url.as_deref(), channel)))
    }
}

/// The worker's HTTP listener.
#[derive(Debug, Args)]
struct Monitoring {
    /// Serve `/metrics` (Prometheus), `/health`, `/ready` and `/worker` on this address, e.g.
    /// `127.0.0.1:9464` (`0.0.0.0:9464` for probes and scrapers from off the host).
    #[arg(long, env = "ASYNCTASQ_HTTP", value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Bearer token that `/worker` asks of requests from off loopback (the other routes never
    /// ask). Prefer the environment variable: a flag's value shows in the process list.
    #[arg(long, env = "ASYNCTASQ_HTTP_TOKEN", value_name = "TOKEN", hide_env_values = true, hide_short_help = true)]
    http_token: Option<String>,
    /// Serve the web dashboard on the --http listener too (its access flags as `dashboard`'s).
    #[cfg(feature = "dashboard")]
    #[arg(long, env = "ASYNCTASQ_DASHBOARD", requires = "http", hide_short_help = true)]
    dashboard: bool,
    #[cfg(feature = "dashboard")]
    #[command(flatten)]
    dashboard_access: dashboard::DashboardAccess,
}

/// The worker's defaults for tasks whose dispatch and `#[task]` set nothing. The seed system's
/// `--task-defaults-*` names are accepted too.
#[derive(Debug, Args)]
struct TaskDefaults {
    /// Deliveries allowed before dead-lettering (built-in: 3).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_MAX_ATTEMPTS", alias = "task-defaults-max-attempts", value_name = "N")]
    default_max_attempts: Option<u32>,
    /// Longest one run may take, e.g. `5m` (built-in: none).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_TIMEOUT", alias = "task-defaults-timeout", value_parser = humantime::parse_duration, value_name = "DURATION")]
    default_timeout: Option<Duration>,
    /// Lease of each delivery, renewed while the task runs (built-in: 30s).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_LEASE", aliases = ["task-defaults-lease", "task-defaults-visibility-timeout"], value_parser = humantime::parse_duration, value_name = "DURATION")]
    default_lease: Option<Duration>,
    /// How long a succeeded task stays findable with its result and arguments (`task show`,
    /// `task list --state succeeded`, waiters), e.g. `1h`; `0s` keeps nothing (built-in: 24h; a
    /// task's `#[task(result_ttl)]` wins). Also `--keep-completed`.
    #[arg(long, env = "ASYNCTASQ_RESULT_TTL", alias = "keep-completed", value_parser = humantime::parse_duration, value_name = "DURATION", hide_short_help = true)]
    result_ttl: Option<Duration>,
    /// Largest encoded result kept, in bytes; a larger one is recorded as too large and the task
    /// still succeeds (built-in: 1048576).
    #[arg(long, env = "ASYNCTASQ_MAX_RESULT_SIZE", value_name = "BYTES", hide_short_help = true)]
    max_result_size: Option<usize>,
    /// How long a dead-lettered or cancelled task stays findable (`task show`, `dead list`,
    /// waiters) when its `#[task(failure_ttl)]` does not say, e.g. `1d` (built-in: 7d). Refused
    /// on RabbitMQ and SQS, whose dead letters the broker keeps by its own retention.
    #[arg(long, env = "ASYNCTASQ_FAILURE_TTL", value_parser = humantime::parse_duration, value_name = "DURATION", hide_short_help = true)]
    failure_ttl: Option<Duration>,
    /// How long a running task that was cancelled (`task cancel`) may take to stop on its own
    /// once its context says so, before it is aborted (built-in: 5s).
    #[arg(long, env = "ASYNCTASQ_CANCEL_GRACE", value_parser = humantime::parse_duration, value_name = "DURATION", hide_short_help = true)]
    cancel_grace: Option<Duration>,
    /// Retry strategy (built-in: exponential).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_RETRY", alias = "task-defaults-retry-strategy", value_enum, value_name = "STRATEGY")]
    default_retry: Option<RetryKind>,
    /// Delay of the first retry (exponential) or of every retry (fixed) (built-in: 1s).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_BACKOFF", alias = "task-defaults-retry-delay", value_parser = humantime::parse_duration, value_name = "DURATION")]
    default_backoff: Option<Duration>,
    /// Longest exponential retry delay (built-in: 1h).
    #[arg(long, env = "ASYNCTASQ_DEFAULT_BACKOFF_CAP", alias = "task-defaults-retry-delay-max", value_parser = humantime::parse_duration, value_name = "DURATION")]
    default_backoff_cap: Option<Duration>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RetryKind {
    /// Doubling from the backoff, capped, with jitter.
    Exponential,
    /// The backoff after every failure.
    Fixed,
}

impl TaskDefaults {
    /// Checks the defaults; contradictions and values out of range are usage errors.
    fn check(&self) -> anyhow::Result<()> {
        if self.default_max_attempts == Some(0) {
            return Err(Usage("invalid --default-max-attempts: must be at least 1".into()).into());
        }
        if self.default_lease.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err(Usage("invalid --default-lease: must be at least 10ms".into()).into());
        }
        self.retry_policy().map(|_| ())
    }

    /// Applies the (checked) defaults given to `builder`.
    fn apply(&self, mut builder: asynctasq_core::WorkerBuilder) -> anyhow::Result<asynctasq_core::WorkerBuilder> {
        if let Some(n) = self.default_max_attempts {
            builder = builder.default_max_attempts(n);
        }
        if let Some(d) = self.default_timeout {
            builder = builder.default_timeout(d);
        }
        if let Some(d) = self.default_lease {
            builder = builder.default_lease(d);
        }
        if let Some(d) = self.result_ttl {
            builder = builder.result_ttl(d);
        }
        if let Some(n) = self.max_result_size {
            builder = builder.max_result_size(n);
        }
        if let Some(d) = self.failure_ttl {
            builder = builder.failure_ttl(d);
        }
        if let Some(d) = self.cancel_grace {
            builder = builder.cancel_grace(d);
        }
        if let Some(policy) = self.retry_policy()? {
            builder = builder.retry(policy);
        }
        Ok(builder)
    }

    fn retry_policy(&self) -> anyhow::Result<Option<asynctasq_core::RetryPolicy>> {
        use asynctasq_core::RetryPolicy;
        if self.default_retry.is_none() && self.default_backoff.is_none() && self.default_backoff_cap.is_none() {
            return Ok(None);
        }
        let base = self.default_backoff.unwrap_or(Duration::from_secs(1));
        match self.default_retry.unwrap_or(RetryKind::Exponential) {
            RetryKind::Fixed if self.default_backoff_cap.is_some() => Err(Usage(
                "--default-backoff-cap applies to --default-retry exponential; a fixed retry waits --default-backoff every time".into(),
            )
            .into()),
            RetryKind::Fixed => Ok(Some(RetryPolicy::Fixed(base))),
            RetryKind::Exponential => {
                let max = self.default_backoff_cap.unwrap_or(Duration::from_secs(3600));
                if max < base {
                    return Err(Usage("--default-backoff-cap must be at least --default-backoff".into()).into());
                }
                Ok(Some(RetryPolicy::Exponential { base, max, jitter: true }))
            }
        }
    }
}

/// Parses the process's arguments, runs the command and returns the exit code. Call it from
/// your binary's `main` so the worker sees your `#[task]` functions.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Like [`main`], with the arguments given (the first is the program name).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_from(args, None)
}

/// Like [`main`], with your binary's name and version in `--version` and `--help` instead of
/// asynctasq's; [`run!`] passes your package's.
pub fn main_named(name: &'static str, version: &'static str) -> ExitCode {
    run_from(std::env::args_os(), Some((name, version)))
}

/// Runs the command line as your binary: `fn main() -> std::process::ExitCode { asynctasq_cli::run!() }`
/// reports your package's name and version (from Cargo) in `--version` and `--help`.
#[macro_export]
macro_rules! run {
    () => {
        $crate::main_named(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    };
}

fn run_from<I, T>(args: I, named: Option<(&'static str, &'static str)>) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    if let Some((name, version)) = named {
        command = command.name(name).bin_name(name).version(version);
    }
    let parsed = command.try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // Flushes the spans still batched when the command ends (after the runtime is gone).
    let _exporter = match start_logging(cli.tracing.otlp_endpoint.as_deref()) {
        Ok(exporter) => exporter,
        Err(e) => {
            let red = anstyle::AnsiColor::Red.on_default().bold();
            anstream::eprintln!("{red}error:{red:#} {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli));
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<output::ClosedStdout>() => ExitCode::SUCCESS,
        // `task wait` has printed how the task ended.
        Err(e) if e.is::<ops::Settled>() => ExitCode::from(1),
        Err(e) if e.is::<Usage>() => {
            let red = anstyle::AnsiColor::Red.on_default().bold();
            anstream::eprintln!("{red}error:{red:#} {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            let red = anstyle::AnsiColor::Red.on_default().bold();
            // Colour only on a terminal, never with NO_COLOR (anstream decides).
            anstream::eprintln!("{red}error:{red:#} {}", cause_once(&e));
            ExitCode::from(if e.is::<Unhealthy>() { 3 } else { 1 })
        }
    }
}

/// The command line to run `sub` as this process was run: the running binary's name (a user's
/// own binary is not `asynctasq`) and the backend flags it was given, URLs without passwords.
pub(crate) fn this_command(sub: &str) -> String {
    let mut args = std::env::args();
    let program = args.next().map(|p| std::path::Path::new(&p).file_name().map_or(p.clone(), |n| n.to_string_lossy().into_owned()));
    let mut out = vec![program.unwrap_or_else(|| "asynctasq".into()), sub.to_owned()];
    let backend = |flag: &str| {
        ["--url", "--driver", "--database-url", "--redis-url", "--rabbitmq-url", "--table-prefix", "--redis-prefix", "--rabbitmq-prefix"]
            .contains(&flag)
            || flag.starts_with("--sqs-")
    };
    let rest: Vec<String> = args.collect();
    let mut i = 0;
    while i < rest.len() {
        let (flag, inline) = match rest[i].split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (rest[i].clone(), None),
        };
        if backend(&flag) {
            let value = match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    rest.get(i).cloned()
                }
            };
            out.push(flag);
            out.extend(value.map(|v| asynctasq_drivers::redact_url(&v)));
        }
        i += 1;
    }
    out.join(" ")
}

/// An error and its causes joined with `": "`, each said once: a cause whose text is already in
/// the message (errors that print their source themselves, as sqlx's and redis's do) is not
/// repeated.
fn cause_once(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let t = cause.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
    }
    text
}

/// Installs the logging the command line uses, for a worker run from your own code: to stderr,
/// filtered by `ASYNCTASQ_LOG` (or `RUST_LOG`; default `info`), colour only on a terminal and
/// never with `NO_COLOR`. Does nothing when a global subscriber is already installed.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt().with_env_filter(log_filter()).with_writer(std::io::stderr).with_ansi(log_colour()).try_init();
}

/// The logging of `init_logging`, plus the OpenTelemetry exporter to `otlp` when given (its
/// guard flushes on drop). A build without the `otel` feature refuses an endpoint.
fn start_logging(otlp: Option<&str>) -> Result<Option<otlp::Exporter>, String> {
    let Some(endpoint) = otlp else {
        init_logging();
        return Ok(None);
    };
    #[cfg(feature = "otel")]
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let (spans, exporter) = otlp::layer(endpoint)?;
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(log_colour()).with_filter(log_filter());
        let _ = tracing_subscriber::registry().with(logs).with(spans).try_init();
        Ok(Some(exporter))
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = endpoint;
        Err("--otlp-endpoint: this build has no OpenTelemetry exporter (build asynctasq-cli with the `otel` feature)".into())
    }
}

/// What the logs show: `ASYNCTASQ_LOG` (or `RUST_LOG`; default `info`), with the noise below.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("ASYNCTASQ_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // lapin logs an ERROR for every channel the broker closes, including the expected 404 of a
    // passive declare that asks whether a queue exists; the driver logs real trouble itself.
    // Asking for `lapin` in the filter brings them back.
    let asked = std::env::var("ASYNCTASQ_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    if !asked.contains("lapin")
        && let Ok(quiet) = "lapin::channel=off".parse()
    {
        filter = filter.add_directive(quiet);
    }
    // PostgreSQL's notices (`relation "…_migrations" already exists, skipping` on every
    // command) are the server talking to itself; asking for `sqlx` brings them back.
    if !asked.contains("sqlx")
        && let Ok(quiet) = "sqlx::postgres::notice=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    filter
}

/// Colour codes only on a terminal, never with NO_COLOR: logs piped to a file or a collector
/// stay plain text.
fn log_colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none()
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Tasks { json } => tasks(json),
        Command::Worker(WorkerCommand { action: None, args }) => worker(&cli.backend, args).await,
        Command::Worker(WorkerCommand { action: Some(WorkerAction::RunOnce(mut args)), .. }) => {
            args.stop_when_empty = true;
            worker(&cli.backend, args).await
        }
        Command::Migrate { dry_run } => ops::migrate(&cli.backend, dry_run).await,
        Command::Queue(ops::QueueCommand::Status { queues, json, watch }) => {
            ops::status(connect(&cli.backend, true).await?, &queues, json, watch).await
        }
        Command::Queue(ops::QueueCommand::Limit { queue, max_leased, per_key, rate, rate_per_key, clear, json }) => {
            let rate = rate.map(|r| if rate_per_key { r.per_key() } else { r });
            let args = ops::LimitArgs { max_leased, per_key, rate, clear };
            ops::limit(connect(&cli.backend, true).await?, &queue, args, json).await
        }
        Command::Queue(ops::QueueCommand::Pause { queue }) => ops::pause(connect(&cli.backend, true).await?, &queue, true).await,
        Command::Queue(ops::QueueCommand::Resume { queue }) => ops::pause(connect(&cli.backend, true).await?, &queue, false).await,
        Command::Queue(ops::QueueCommand::Flush { queues, status, yes }) => {
            ops::flush(connect(&cli.backend, true).await?, &queues, status, yes).await
        }
        Command::Queue(ops::QueueCommand::Retry(args)) | Command::Dead(ops::DeadCommand::Retry(args)) => {
            ops::dead_retry(connect(&cli.backend, true).await?, args).await
        }
        Command::Dead(ops::DeadCommand::List { queue, limit, json }) => {
            ops::dead_list(connect(&cli.backend, true).await?, queue, limit, json).await
        }
        Command::Dead(ops::DeadCommand::Show { id, queue, json }) => {
            ops::dead_show(connect(&cli.backend, true).await?, &id, queue, json).await
        }
        Command::Dead(ops::DeadCommand::Purge { queue, yes }) => ops::dead_purge(connect(&cli.backend, true).await?, queue, yes).await,
        Command::Task(ops::TaskCommand::Show { id, json }) => ops::task_show(connect(&cli.backend, true).await?, id, json).await,
        Command::Task(ops::TaskCommand::Wait { id, timeout, json }) => {
            ops::task_wait(connect(&cli.backend, true).await?, id, timeout, json).await
        }
        Command::Task(ops::TaskCommand::Cancel { id, json }) => ops::task_cancel(connect(&cli.backend, true).await?, id, json).await,
        Command::Task(ops::TaskCommand::Delete { id, json }) => ops::task_delete(connect(&cli.backend, true).await?, id, json).await,
        Command::Task(ops::TaskCommand::List { queue, state, offset, limit, json }) => {
            ops::task_list(connect(&cli.backend, true).await?, queue, state, offset, limit, json).await
        }
        Command::Schedule(command) => ops::schedule(connect(&cli.backend, true).await?, &Registry::linked()?, command).await,
        Command::Dispatch(args) => ops::dispatch(connect(&cli.backend, true).await?, &Registry::linked()?, args).await,
        Command::Workers { json } => ops::workers(connect(&cli.backend, true).await?, json).await,
        #[cfg(feature = "dashboard")]
        Command::Dashboard(args) => dashboard::serve(&cli.backend, args).await,
        Command::Doctor => {
            if ops::doctor(connect(&cli.backend, false), &Registry::linked()?).await {
                Ok(())
            } else {
                Err(Unhealthy.into())
            }
        }
    }
}

/// `doctor` found a problem (exit code 3).
#[derive(Debug)]
struct Unhealthy;

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backend is not healthy (see above)")
    }
}

impl std::error::Error for Unhealthy {}

/// A usage error found after the flags were parsed (exit 2, like clap's own).
#[derive(Debug)]
pub(crate) struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Why a binary has no tasks, and what to do: the linker drops a library crate nothing in the
/// binary refers to, registrations included.
const NO_TASKS: &str = "no tasks are registered in this binary. Workers run the #[task] functions linked into the binary \
     that starts them: call asynctasq_cli::main() from your own binary's main (see the README). Tasks defined in a \
     library crate are linked only if the binary refers to that crate: call asynctasq_core::link_tasks!(your_tasks_crate) \
     in main, after adding asynctasq_core::tasks_crate!() to the library's lib.rs";

/// `tasks`: each registered task and its queue; no tasks is an error that says why.
fn tasks(json: bool) -> anyhow::Result<()> {
    let registry = Registry::linked()?;
    if registry.is_empty() {
        bail!(NO_TASKS);
    }
    for name in registry.names() {
        let Some(r) = registry.get(name) else { continue };
        let o = (r.options)();
        let queue = o.queue.as_deref().unwrap_or(asynctasq_core::client::DEFAULT_QUEUE);
        if json {
            let line = serde_json::json!({
                "name": name,
                "queue": queue,
                "max_attempts": o.max_attempts,
                "timeout_ms": o.timeout.map(|d| d.as_millis() as u64),
                "lease_ms": o.lease.map(|d| d.as_millis() as u64),
                "result_ttl_ms": o.result_ttl.map(|d| d.as_millis() as u64),
            });
            outln!("{line}");
        } else {
            outln!("{name}\tqueue {queue}");
        }
    }
    Ok(())
}

/// Warns, naming them, about registered tasks whose queue this worker does not consume: they
/// would wait for another worker (or forever), which is otherwise silent.
fn warn_unconsumed_queues(registry: &Registry, queues: &[asynctasq_core::QueueSpec]) {
    let consumed: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    for name in registry.names() {
        let Some(r) = registry.get(name) else { continue };
        let queue = (r.options)().queue.unwrap_or_else(|| asynctasq_core::client::DEFAULT_QUEUE.to_owned());
        if !consumed.contains(&queue.as_str()) {
            tracing::warn!(task = name, queue = %queue, consumed = ?consumed, "task `{name}` is dispatched to queue `{queue}`, which this worker does not consume; add it to --queues");
        }
    }
}

async fn worker(backend: &BackendArgs, args: WorkerArgs) -> anyhow::Result<()> {
    // Signals first: one that arrives while the worker connects or migrates is a graceful stop
    // (exit 0), not the default action.
    let handle = WorkerHandle::default();
    handle.stop_on_signals().context("cannot install signal handlers")?;
    // Check the flags and the backend before anything else, so mistakes surface at once.
    let builder_checks = asynctasq_core::QueueSpec::parse_list(&args.queues).context("invalid --queues")?;
    if args.concurrency == 0 {
        bail!("invalid --concurrency: must be at least 1");
    }
    let mut queue_caps = Vec::new();
    for cap in &args.queue_concurrency {
        let (queue, n) = parse_queue_cap(cap).map_err(Usage)?;
        if !builder_checks.0.iter().any(|q| q.name == queue) {
            return Err(Usage(format!("invalid --queue-concurrency: `{queue}` is not one of --queues")).into());
        }
        queue_caps.push((queue, n));
    }
    args.defaults.check()?;
    if args.blocking_threads == Some(0) {
        return Err(Usage("invalid --blocking-threads: must be at least 1".into()).into());
    }
    let monitoring = &args.monitoring;
    if monitoring.http_token.is_some() && monitoring.http.is_none() {
        return Err(Usage("--http-token needs --http ADDR: the token guards the listener's /worker route".into()).into());
    }
    if monitoring.http_token.as_deref().is_some_and(|t| t.len() < 16) {
        return Err(Usage("--http-token must be at least 16 characters".into()).into());
    }
    #[cfg(feature = "dashboard")]
    let dashboard_access = match (monitoring.dashboard, monitoring.http) {
        (true, Some(addr)) => Some(monitoring.dashboard_access.access(addr)?),
        _ => None,
    };
    let driver = tokio::select! {
        driver = connect(backend, true) => driver?,
        () = handle.stopping() => {
            tracing::info!("stopped before the worker started");
            return Ok(());
        }
    };
    let registry = Registry::linked()?;
    if registry.is_empty() {
        bail!(NO_TASKS);
    }
    warn_unconsumed_queues(&registry, &builder_checks.0);
    let flag_registry = registry.clone();
    let mut builder = Worker::builder(driver.clone())
        .registry(registry)
        .queue_specs(builder_checks.0, builder_checks.1)
        .concurrency(args.concurrency)
        .shutdown_grace(args.shutdown_grace)
        .stop_when_empty(args.stop_when_empty)
        .handle(handle);
    builder = args.defaults.apply(builder)?;
    if let Some(n) = args.blocking_threads {
        builder = builder.blocking_threads(n);
    }
    if let Some(n) = args.max_tasks {
        builder = builder.max_tasks(n);
    }
    for (queue, n) in &queue_caps {
        builder = builder.queue_concurrency(queue, *n);
    }
    if let Some(d) = args.max_time {
        builder = builder.max_time(d);
    }
    for spec in args.schedules.iter().filter(|s| !s.trim().is_empty()) {
        builder = builder.schedule(ops::schedule_flag(spec, &flag_registry)?);
    }
    if let Some(addr) = monitoring.http {
        builder = builder.http(addr);
        if let Some(url) = backend.shown_url() {
            builder = builder.backend_url(&url);
        }
        if let Some(token) = &monitoring.http_token {
            builder = builder.http_token(token.clone());
        }
        #[cfg(feature = "dashboard")]
        if let Some(access) = dashboard_access {
            let dashboard = dashboard::dashboard(driver.clone(), backend.shown_url(), access, flag_registry.clone());
            builder = builder.http_routes(dashboard.router());
        }
    }
    let worker = builder.build()?;
    let publisher = match args.events.target()? {
        None => None,
        Some((url, channel)) => Some(publish_events(backend, &worker, url, &channel).await?),
    };
    let counts = worker.start().await?;
    #[cfg(feature = "redis")]
    if let Some(publisher) = publisher {
        publisher.finish(Duration::from_secs(3)).await;
    }
    #[cfg(not(feature = "redis"))]
    let _: Option<()> = publisher;
    if args.json {
        outln!("{}", serde_json::to_string(&counts)?);
    } else if args.stop_when_empty {
        outln!(
            "{} succeeded, {} retried, {} dead, {} released ({} taken)",
            counts.succeeded,
            counts.retried,
            counts.dead,
            counts.released,
            counts.started
        );
    }
    Ok(())
}

#[cfg(feature = "redis")]
async fn publish_events(
    backend: &BackendArgs,
    worker: &Worker,
    url: Option<&str>,
    channel: &str,
) -> anyhow::Result<asynctasq_drivers::RedisEventPublisher> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => match backend.redis_base()? {
            Some(u) => u,
            None => {
                return Err(Usage("publishing events from a worker whose backend is not Redis needs --events-redis-url URL".into()).into());
            }
        },
    };
    let publisher = asynctasq_drivers::RedisEventPublisher::connect(&url, worker.events(), channel)
        .await
        .with_context(|| format!("cannot publish events to {}", asynctasq_drivers::redact_url(&url)))?;
    tracing::info!(channel, redis = %asynctasq_drivers::redact_url(&url), "publishing worker events");
    Ok(publisher)
}

#[cfg(not(feature = "redis"))]
async fn publish_events(_: &BackendArgs, _: &Worker, _: Option<&str>, _: &str) -> anyhow::Result<()> {
    bail!("publishing events needs a build with the redis feature (asynctasq-cli features = [\"redis\"])")
}
