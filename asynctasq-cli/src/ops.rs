//! Operating queues from a shell: counts, flushing, dead tasks, dispatch by name, health.
//!
//! Every command goes through the [`Driver`] contract, so it works on every backend; what a
//! backend cannot do (exact counts, listing dead tasks) is said in the output or the error.
//!
//! # JSON output (`--json`), a stable schema
//! * `queue status`: `{"driver": "sqlite", "exact": true, "queues": {"<queue>": {"ready": 0,
//!   "scheduled": 0, "leased": 0, "dead": 0}}}`; `exact` is false where the backend's counts
//!   are approximate.
//! * `dead list`: `{"dead": [<dead task>...]}`; `dead show`: one `<dead task>`, where a dead
//!   task is `{"id", "queue", "task", "attempt", "max_attempts", "error", "dead_at",
//!   "created_at", "args", "decode_error"}` (times in Unix milliseconds; `args` the decoded
//!   arguments or null, `decode_error` why they could not be decoded or null).
//! * `dispatch`: `{"id": "<task id>", "queue": "<queue>"}`.
//! * `workers`: `{"workers": [{"id", "host", "pid", "queues", "concurrency", "version",
//!   "started_at", "heartbeat_at", "heartbeat_ms", "expires_at", "in_flight", "counts": {"started",
//!   "succeeded", "retried", "dead", "released", "lease_lost"}, "stale"}]}`; `stale` is true for a
//!   worker that missed two heartbeats (its record expires after five).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use asynctasq_core::DriverError;
use asynctasq_core::driver::{Capability, DeadSelector, DeadTask, Driver, QueueStats, Waiting};
use asynctasq_core::envelope::{TaskId, unix_millis, validate_queue_name};
use asynctasq_core::error::error_chain;
use asynctasq_core::{Client, Overrides, Registry};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{CellAlignment, Table, presets};
use serde_json::{Value, json};

/// `asynctasq queue …`
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Counts per queue: ready, scheduled, leased, dead (every known queue when none is named).
    Status {
        /// Queues to show.
        #[arg(value_parser = crate::QUEUE_NAME)]
        queues: Vec<String>,
        /// Print JSON (schema in the crate docs) instead of a table.
        #[arg(long)]
        json: bool,
        /// Print again every SECONDS until interrupted.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// Delete tasks that are waiting (ready and scheduled), dead, or both; never leased ones.
    Flush {
        /// Queues to flush (every known queue when none is named).
        #[arg(value_parser = crate::QUEUE_NAME)]
        queues: Vec<String>,
        /// Which tasks to delete.
        #[arg(long, value_enum, default_value = "pending")]
        status: FlushStatus,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Move dead tasks back to their queue (alias of `dead retry`).
    Retry(DeadRetryArgs),
}

/// Which tasks `queue flush` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlushStatus {
    /// Tasks due now.
    Ready,
    /// Tasks not due yet (delayed, or waiting for a retry).
    Scheduled,
    /// Ready and scheduled tasks (backends lacking `PurgeScheduled`, such as SQS, reach only
    /// the ready ones).
    Pending,
    /// Dead tasks.
    Dead,
    /// Pending and dead tasks.
    All,
}

/// `asynctasq dead …`
#[derive(Debug, Subcommand)]
pub(crate) enum DeadCommand {
    /// List dead tasks, oldest first.
    List {
        /// Queue (every known queue when omitted).
        #[arg(value_parser = crate::QUEUE_NAME)]
        queue: Option<String>,
        /// Most tasks to list per queue.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead task: error, attempts, times and its arguments as JSON.
    Show {
        /// The task id.
        id: String,
        /// Look only in this queue.
        #[arg(long, value_parser = crate::QUEUE_NAME)]
        queue: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move dead tasks back to their queue, ready at once with attempts reset.
    Retry(DeadRetryArgs),
    /// Delete dead tasks for good.
    Purge {
        /// Queue (every known queue when omitted).
        #[arg(value_parser = crate::QUEUE_NAME)]
        queue: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead tasks to retry: `--id` (repeatable) or `--all`, one of the two.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(false).args(["ids", "all"])))]
pub(crate) struct DeadRetryArgs {
    /// Queue (every known queue when omitted).
    #[arg(value_parser = crate::QUEUE_NAME)]
    queue: Option<String>,
    /// Retry these tasks (repeatable).
    #[arg(long = "id", value_name = "ID", conflicts_with = "all")]
    ids: Vec<String>,
    /// Retry every dead task.
    #[arg(long)]
    all: bool,
    /// With `--all`: retry at most this many per queue, oldest first.
    #[arg(long, requires = "all")]
    limit: Option<usize>,
}

/// `asynctasq dispatch …`
#[derive(Debug, Args)]
pub(crate) struct DispatchArgs {
    /// A task registered in this binary (see `tasks`).
    task: String,
    /// The task's arguments as a JSON object, checked against its type (none: `{}`, for a task
    /// without arguments).
    #[arg(long, conflicts_with = "args_file")]
    args: Option<String>,
    /// Dispatch one task per line of this file (`-`: stdin), each line the arguments as JSON;
    /// every line is checked before any task is enqueued.
    #[arg(long, value_name = "FILE")]
    args_file: Option<std::path::PathBuf>,
    /// Queue instead of the task's.
    #[arg(long, value_parser = crate::QUEUE_NAME)]
    queue: Option<String>,
    /// Run no earlier than this from now (e.g. `30s`, `2h`).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// Deliveries allowed before dead-lettering.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The queues named, or every queue the backend knows when none is.
async fn queues_or_all(driver: &dyn Driver, named: &[String]) -> anyhow::Result<Vec<String>> {
    for q in named {
        validate_queue_name(q).with_context(|| format!("invalid queue name `{q}`"))?;
    }
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    driver.queues().await.context("listing queues")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    t
}

fn align_numbers(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// `queue status`.
pub(crate) async fn status(driver: Arc<dyn Driver>, named: &[String], json: bool, watch: Option<f64>) -> anyhow::Result<()> {
    loop {
        let queues = queues_or_all(&*driver, named).await?;
        let mut rows = Vec::new();
        for q in &queues {
            rows.push((q.clone(), driver.stats(q).await.with_context(|| format!("counting queue `{q}`"))?));
        }
        let exact = driver.supports(Capability::ExactStats);
        if json {
            let map: serde_json::Map<String, Value> =
                rows.iter().map(|(q, s)| (q.clone(), serde_json::to_value(s).unwrap_or_default())).collect();
            outln!("{}", json!({ "driver": driver.name(), "exact": exact, "queues": map }));
        } else {
            print_status(&rows, exact)?;
        }
        let Some(every) = watch else { return Ok(()) };
        if !every.is_finite() || every <= 0.0 {
            bail!("invalid --watch {every}: give a number of seconds above 0");
        }
        tokio::time::sleep(Duration::from_secs_f64(every)).await;
        if !json {
            outln!();
        }
    }
}

fn print_status(rows: &[(String, QueueStats)], exact: bool) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!("no queues");
        return Ok(());
    }
    let mut t = table(&["QUEUE", "READY", "SCHEDULED", "LEASED", "DEAD"]);
    for (q, s) in rows {
        t.add_row(vec![q.clone(), count(s.ready), count(s.scheduled), count(s.leased), count(s.dead)]);
    }
    align_numbers(&mut t, 1);
    outln!("{t}");
    if !exact {
        outln!("(counts are approximate on this backend)");
    }
    Ok(())
}

/// A count with thousands separators.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Asks to go on with `what`, unless `yes`; without a terminal to ask on, refuses.
fn confirm(what: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {what} without --yes (no terminal to confirm on)");
    }
    eprint!("{what}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `queue flush`.
pub(crate) async fn flush(driver: Arc<dyn Driver>, named: &[String], status: FlushStatus, yes: bool) -> anyhow::Result<()> {
    let queues = queues_or_all(&*driver, named).await?;
    let waiting = match status {
        FlushStatus::Ready => Some(Waiting::Ready),
        FlushStatus::Scheduled => Some(Waiting::Scheduled),
        FlushStatus::Pending | FlushStatus::All => Some(Waiting::Both),
        FlushStatus::Dead => None,
    };
    let dead = matches!(status, FlushStatus::Dead | FlushStatus::All);
    let scheduled_reachable = driver.supports(Capability::PurgeScheduled);
    let mut total = 0;
    for q in &queues {
        let s = driver.stats(q).await.with_context(|| format!("counting queue `{q}`"))?;
        let scheduled = if scheduled_reachable { s.scheduled } else { 0 };
        total += match waiting {
            Some(Waiting::Ready) => s.ready,
            Some(Waiting::Scheduled) => s.scheduled,
            Some(Waiting::Both) => s.ready + scheduled,
            None => 0,
        } + if dead { s.dead } else { 0 };
    }
    let kind = match status {
        FlushStatus::Ready => "ready",
        FlushStatus::Scheduled => "scheduled",
        FlushStatus::Pending => "waiting",
        FlushStatus::Dead => "dead",
        FlushStatus::All => "waiting and dead",
    };
    if total == 0 {
        outln!("{}", if status == FlushStatus::Dead { "no dead tasks" } else { "nothing to flush" });
        return Ok(());
    }
    if !confirm(&format!("delete {} {kind} task(s) from {} queue(s)", count(total), queues.len()), yes)? {
        bail!("not confirmed; nothing deleted");
    }
    let bar = progress(total, "flushing");
    let mut deleted = 0;
    for q in &queues {
        let at = deleted;
        if let Some(which) = waiting {
            deleted += match driver.purge_waiting(q, which).await {
                Err(DriverError::Unsupported(what)) => {
                    bail!("the {} backend cannot do this: {what}; use --status pending", driver.name())
                }
                other => other.with_context(|| format!("flushing queue `{q}`"))?,
            };
        }
        if dead {
            deleted += driver.purge_dead(q).await.with_context(|| format!("flushing dead tasks of `{q}`"))?;
        }
        bar.inc(deleted - at);
    }
    bar.finish_and_clear();
    outln!("deleted {} task(s)", count(deleted));
    Ok(())
}

fn dead_json(d: &DeadTask) -> Value {
    let (task, max_attempts, created_at, args, decode_error) = match &d.envelope {
        Ok(e) => match rmp_serde::from_slice::<Value>(&e.payload) {
            Ok(args) => (json!(e.name), json!(e.max_attempts), json!(e.created_at), args, Value::Null),
            Err(err) => (json!(e.name), json!(e.max_attempts), json!(e.created_at), Value::Null, json!(format!("arguments: {err}"))),
        },
        Err(err) => (Value::Null, Value::Null, Value::Null, Value::Null, json!(error_chain(err))),
    };
    json!({
        "id": d.id.to_string(), "queue": d.queue, "task": task, "attempt": d.attempt, "max_attempts": max_attempts,
        "error": d.error, "dead_at": d.dead_at, "created_at": created_at, "args": args, "decode_error": decode_error,
    })
}

/// A Unix-ms time as a readable age ("3m ago").
fn ago(ms: u64) -> String {
    let now = unix_millis(SystemTime::now());
    if ms == 0 {
        return "-".into();
    }
    let secs = now.saturating_sub(ms) / 1000;
    format!("{} ago", humantime::format_duration(Duration::from_secs(secs)))
}

fn needs_list_dead(driver: &dyn Driver) -> anyhow::Result<()> {
    if !driver.supports(Capability::ListDead) {
        bail!("the {} backend cannot list dead tasks", driver.name());
    }
    Ok(())
}

/// `dead list`.
pub(crate) async fn dead_list(driver: Arc<dyn Driver>, queue: Option<String>, limit: usize, json: bool) -> anyhow::Result<()> {
    needs_list_dead(&*driver)?;
    let queues = queues_or_all(&*driver, queue.as_slice()).await?;
    let mut all = Vec::new();
    for q in &queues {
        all.extend(driver.dead(q, limit).await.with_context(|| format!("listing dead tasks of `{q}`"))?);
    }
    if json {
        outln!("{}", json!({ "dead": all.iter().map(dead_json).collect::<Vec<_>>() }));
        return Ok(());
    }
    if all.is_empty() {
        outln!("no dead tasks");
        return Ok(());
    }
    let mut t = table(&["ID", "QUEUE", "TASK", "ATTEMPTS", "DIED", "ERROR"]);
    for d in &all {
        let name = d.envelope.as_ref().map(|e| e.name.clone()).unwrap_or_else(|_| "(undecodable)".into());
        let error: String = d.error.lines().next().unwrap_or_default().chars().take(80).collect();
        t.add_row(vec![d.id.to_string(), d.queue.clone(), name, d.attempt.to_string(), ago(d.dead_at), error]);
    }
    outln!("{t}");
    Ok(())
}

/// `dead show`.
pub(crate) async fn dead_show(driver: Arc<dyn Driver>, id: &str, queue: Option<String>, json: bool) -> anyhow::Result<()> {
    needs_list_dead(&*driver)?;
    let wanted: TaskId = id.parse().map_err(|_| anyhow::anyhow!("`{id}` is not a task id (a UUID)"))?;
    for q in queues_or_all(&*driver, queue.as_slice()).await? {
        let dead = driver.dead(&q, usize::MAX).await.with_context(|| format!("listing dead tasks of `{q}`"))?;
        if let Some(d) = dead.iter().find(|d| d.id == wanted) {
            let v = dead_json(d);
            if json {
                outln!("{v}");
            } else {
                outln!("id:        {}", d.id);
                outln!("queue:     {}", d.queue);
                outln!("task:      {}", v["task"].as_str().unwrap_or("(undecodable)"));
                outln!("attempts:  {} of {}", d.attempt, v["max_attempts"]);
                outln!("died:      {} ({})", ago(d.dead_at), d.dead_at);
                outln!("error:     {}", d.error);
                match &v["decode_error"] {
                    Value::Null => outln!("args:      {}", serde_json::to_string_pretty(&v["args"]).unwrap_or_default()),
                    e => outln!("args:      undecodable ({})", e.as_str().unwrap_or_default()),
                }
            }
            return Ok(());
        }
    }
    bail!("no dead task {wanted}")
}

/// `dead retry` and `queue retry`.
pub(crate) async fn dead_retry(driver: Arc<dyn Driver>, args: DeadRetryArgs) -> anyhow::Result<()> {
    let ids: Vec<TaskId> =
        args.ids.iter().map(|s| s.parse().map_err(|_| anyhow::anyhow!("`{s}` is not a task id (a UUID)"))).collect::<Result<_, _>>()?;
    let queues = queues_or_all(&*driver, args.queue.as_slice()).await?;
    let mut total = ids.len() as u64;
    if args.all {
        total = 0;
        for q in &queues {
            let dead = driver.stats(q).await.with_context(|| format!("counting queue `{q}`"))?.dead;
            total += args.limit.map_or(dead, |l| dead.min(l as u64));
        }
    }
    let bar = progress(total, "retrying");
    let mut moved = 0;
    for q in &queues {
        let which = match (args.all, args.limit) {
            (true, None) => DeadSelector::All,
            (true, Some(limit)) => {
                needs_list_dead(&*driver)?;
                DeadSelector::Ids(driver.dead(q, limit).await?.into_iter().map(|d| d.id).collect())
            }
            (false, _) => DeadSelector::Ids(ids.clone()),
        };
        let n = driver.requeue_dead(q, which).await.with_context(|| format!("retrying dead tasks of `{q}`"))?;
        bar.inc(n);
        moved += n;
    }
    bar.finish_and_clear();
    if !args.all && moved < ids.len() as u64 {
        outln!("retried {} task(s); {} id(s) were not dead", count(moved), ids.len() as u64 - moved);
    } else {
        outln!("retried {} task(s)", count(moved));
    }
    Ok(())
}

/// `dead purge`.
pub(crate) async fn dead_purge(driver: Arc<dyn Driver>, queue: Option<String>, yes: bool) -> anyhow::Result<()> {
    flush(driver, queue.as_slice(), FlushStatus::Dead, yes).await
}

/// `dispatch`.
pub(crate) async fn dispatch(driver: Arc<dyn Driver>, registry: &Registry, args: DispatchArgs) -> anyhow::Result<()> {
    let Some(task) = registry.get(&args.task) else {
        let known = registry.names().join(", ");
        bail!("unknown task `{}`; this binary has: {}", args.task, if known.is_empty() { "none" } else { &known });
    };
    if let Some(q) = &args.queue {
        validate_queue_name(q).with_context(|| format!("invalid --queue `{q}`"))?;
    }
    let overrides = Overrides { queue: args.queue.clone(), delay: args.delay, max_attempts: args.max_attempts, ..Default::default() };
    let client = Client::new(driver);
    if let Some(path) = &args.args_file {
        return dispatch_many(&client, task, &overrides, path, args.json).await;
    }
    let payload = match &args.args {
        Some(json) => (task.args_from_json)(json).map_err(|e| anyhow::anyhow!("invalid --args for task `{}`: {e}", args.task))?,
        None => (task.args_from_json)("{}").map_err(|e| {
            anyhow::anyhow!(
                "task `{}` takes arguments: pass them as a JSON object with --args '{{…}}', or one object per line with --args-file FILE ({e})",
                args.task
            )
        })?,
    };
    let envelope = client.envelope_from_payload(task.name, payload, &overrides, &(task.options)())?;
    let (id, queue) = (envelope.id, envelope.queue.clone());
    client.enqueue(vec![envelope]).await.context("enqueueing the task")?;
    if args.json {
        outln!("{}", json!({ "id": id.to_string(), "queue": queue }));
    } else {
        outln!("dispatched {} to queue {queue} as {id}", args.task);
    }
    Ok(())
}

/// Tasks per enqueue call of `dispatch --args-file`.
const DISPATCH_BATCH: usize = 1000;

/// `dispatch --args-file`: one task per line of JSON arguments, every line checked before any
/// task is enqueued, then enqueued in batches.
async fn dispatch_many(
    client: &Client,
    task: &asynctasq_core::TaskRegistration,
    overrides: &Overrides,
    path: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading arguments from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading --args-file {}", path.display()))?
    };
    let mut envelopes = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let payload = (task.args_from_json)(line)
            .map_err(|e| anyhow::anyhow!("invalid arguments on line {} for task `{}`: {e}", n + 1, task.name))?;
        envelopes.push(client.envelope_from_payload(task.name, payload, overrides, &(task.options)())?);
    }
    let queue = envelopes.first().map(|e| e.queue.clone()).unwrap_or_default();
    let bar = progress(envelopes.len() as u64, "dispatching");
    let total = envelopes.len();
    let mut sent = 0;
    let mut rest = envelopes;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(DISPATCH_BATCH));
        let n = rest.len();
        client.enqueue(rest).await.with_context(|| format!("enqueueing tasks (the first {} were enqueued)", count(sent as u64)))?;
        sent += n;
        bar.inc(n as u64);
        rest = tail;
    }
    bar.finish_and_clear();
    if json {
        outln!("{}", json!({ "dispatched": total, "queue": queue }));
    } else {
        outln!("dispatched {} {} task(s) to queue {queue}", count(total as u64), task.name);
    }
    Ok(())
}

/// A progress bar on stderr for a bulk operation over `total` tasks: drawn only on a terminal
/// and only when there are enough tasks for it to matter.
fn progress(total: u64, verb: &'static str) -> indicatif::ProgressBar {
    if total < 1000 {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} tasks ({rate}, {eta} left)")
        .map(|s| {
            s.progress_chars("=> ").with_key("rate", |p: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                write!(w, "{}/s", count(p.per_sec() as u64)).unwrap_or(())
            })
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(total).with_style(style).with_message(verb)
}

/// `workers`.
pub(crate) async fn workers(driver: Arc<dyn Driver>, json: bool) -> anyhow::Result<()> {
    if !driver.supports(Capability::WorkerRegistry) {
        bail!("the {} backend keeps no worker registry (see the README's backend notes)", driver.name());
    }
    let workers = driver.workers().await.context("listing workers")?;
    let now = unix_millis(SystemTime::now());
    if json {
        let list: Vec<Value> = workers
            .iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).unwrap_or_default();
                v["stale"] = json!(w.is_stale(now));
                v
            })
            .collect();
        outln!("{}", json!({ "workers": list }));
        return Ok(());
    }
    if workers.is_empty() {
        outln!("no live workers");
        return Ok(());
    }
    let mut t = table(&["ID", "HOST", "PID", "QUEUES", "CONC", "STARTED", "HEARTBEAT", "DONE", "FAILED", "IN FLIGHT", "STATE"]);
    for w in &workers {
        t.add_row(vec![
            w.id.clone(),
            w.host.clone(),
            w.pid.to_string(),
            w.queues.join(","),
            w.concurrency.to_string(),
            ago(w.started_at),
            ago(w.heartbeat_at),
            count(w.counts.succeeded),
            count(w.counts.retried + w.counts.dead),
            w.in_flight.to_string(),
            if w.is_stale(now) { "stale".into() } else { "live".into() },
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// `migrate [--dry-run]`: lists the pending migrations, then (unless a dry run) applies them.
pub(crate) async fn migrate(backend: &crate::BackendArgs, dry_run: bool) -> anyhow::Result<()> {
    let driver = crate::connect(backend, false).await?;
    let schema = match driver.server_info().await {
        Ok(info) => info.schema,
        Err(DriverError::Unsupported(_)) => None,
        Err(e) => return Err(e).context("cannot read the schema's migrations"),
    };
    let Some(schema) = schema else {
        outln!("nothing to migrate: {} keeps no schema", driver.name());
        return Ok(());
    };
    drop(driver);
    if schema.pending.is_empty() {
        outln!("schema is up to date ({} migrations applied)", schema.applied.len());
        return Ok(());
    }
    let verb = if dry_run { "would apply" } else { "applying" };
    for (version, description) in &schema.pending {
        outln!("{verb} {version:04} {description}");
    }
    if dry_run {
        outln!("dry run: nothing changed ({} pending; run `{}` to apply)", schema.pending.len(), crate::this_command("migrate"));
        return Ok(());
    }
    let driver = crate::connect(backend, true).await?;
    let after = driver.server_info().await.context("cannot read the schema's migrations")?.schema.unwrap_or_default();
    if !after.pending.is_empty() {
        bail!("{} migrations still pending after migrating", after.pending.len());
    }
    outln!("schema is up to date ({} migrations applied)", after.applied.len());
    Ok(())
}

/// `doctor`: whether the backend answers, what it runs, whether its schema is current, how
/// fast it answers, whether its clock agrees with this host's, and what it offers. Returns
/// whether all is well; prints one line per check.
pub(crate) async fn doctor(connect: impl std::future::Future<Output = anyhow::Result<Arc<dyn Driver>>>, registry: &Registry) -> bool {
    let t = Instant::now();
    let driver = match connect.await {
        Ok(d) => {
            verdict(GOOD, "ok", format_args!("connect: {} answered in {}", d.name(), ms(t.elapsed())));
            d
        }
        Err(e) => {
            verdict(BAD, "FAIL", format_args!("connect: {e:#}"));
            return false;
        }
    };
    let mut healthy = true;
    let mut schema_current = true;
    let before = SystemTime::now();
    let info = driver.server_info().await;
    let after = SystemTime::now();
    match info {
        Ok(info) => {
            match &info.version {
                Some(v) => verdict(GOOD, "ok", format_args!("server: {v}")),
                None => verdict(NOTE, "note", format_args!("server: {} does not report its version", driver.name())),
            }
            if let Some(schema) = &info.schema {
                if schema.pending.is_empty() {
                    verdict(GOOD, "ok", format_args!("migrations: all {} applied", schema.applied.len()));
                } else {
                    (healthy, schema_current) = (false, false);
                    let names: Vec<String> = schema.pending.iter().map(|(v, d)| format!("{v:04} {d}")).collect();
                    verdict(
                        BAD,
                        "FAIL",
                        format_args!(
                            "migrations: {} pending ({}); run `{}`",
                            names.len(),
                            names.join(", "),
                            crate::this_command("migrate")
                        ),
                    );
                }
            }
            match info.clock_ms {
                Some(server) => {
                    let (b, a) = (unix_millis(before) as i64, unix_millis(after) as i64);
                    let skew = server as i64 - (a + b) / 2;
                    let text = format!(
                        "clock: the server's is {} {} this host's (±{})",
                        ms(Duration::from_millis(skew.unsigned_abs())),
                        if skew >= 0 { "ahead of" } else { "behind" },
                        ms(Duration::from_millis(((a - b) / 2 + 1) as u64))
                    );
                    match skew.unsigned_abs() {
                        0..=250 => verdict(GOOD, "ok", format_args!("{text}")),
                        251..=2000 => {
                            verdict(NOTE, "note", format_args!("{text}; keep hosts in sync (NTP): leases and delays use each host's clock"))
                        }
                        _ => {
                            healthy = false;
                            verdict(BAD, "FAIL", format_args!("{text}; leases and delays use each host's clock: sync this host (NTP)"));
                        }
                    }
                }
                None => verdict(NOTE, "note", format_args!("clock: {} has no clock to compare (same host or not reported)", driver.name())),
            }
        }
        Err(DriverError::Unsupported(_)) => {
            verdict(NOTE, "note", format_args!("server: {} reports no version or clock", driver.name()));
        }
        Err(e) => {
            healthy = false;
            verdict(BAD, "FAIL", format_args!("server: {}", error_chain(&e)));
        }
    }
    if !schema_current {
        verdict(NOTE, "note", format_args!("round trip, queues: not checked until the schema is migrated"));
        return false;
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        if let Err(e) = driver.stats("asynctasq-doctor").await {
            verdict(BAD, "FAIL", format_args!("round trip: {}", error_chain(&e)));
            healthy = false;
            break;
        }
        times.push(t.elapsed());
    }
    times.sort();
    if let Some(best) = times.first() {
        verdict(GOOD, "ok", format_args!("round trip: {} median, {} best of {}", ms(times[times.len() / 2]), ms(*best), times.len()));
    }
    match driver.queues().await {
        Ok(q) => verdict(GOOD, "ok", format_args!("queues: {} known", q.len())),
        Err(e) => {
            verdict(BAD, "FAIL", format_args!("queues: {}", error_chain(&e)));
            healthy = false;
        }
    }
    let lacks: Vec<String> = Capability::ALL.into_iter().filter(|c| !driver.supports(*c)).map(|c| format!("{c:?}")).collect();
    if lacks.is_empty() {
        verdict(GOOD, "ok", format_args!("capabilities: all"));
    } else {
        verdict(NOTE, "note", format_args!("capabilities: lacks {} (see the README's backend notes)", lacks.join(", ")));
    }
    if registry.is_empty() {
        verdict(NOTE, "note", format_args!("tasks: none registered in this binary (a worker needs your binary: asynctasq_cli::main())"));
    } else {
        verdict(GOOD, "ok", format_args!("tasks: {} registered", registry.len()));
    }
    healthy
}

/// Styles of `doctor`'s verdicts. `anstream` drops them when stdout is not a terminal or
/// `NO_COLOR` is set (and keeps them with `CLICOLOR_FORCE`).
const GOOD: anstyle::Style = anstyle::AnsiColor::Green.on_default().bold();
const BAD: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();
const NOTE: anstyle::Style = anstyle::AnsiColor::Yellow.on_default();

/// Prints one `doctor` line: a verdict in its colour, then the finding.
fn verdict(style: anstyle::Style, word: &str, finding: std::fmt::Arguments<'_>) {
    // A closed stdout only loses the rest of the report; the checks and the exit code stand.
    let _ = crate::output::styled(format_args!("{style}{word:<5}{style:#} {finding}"));
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!((count(0), count(999), count(1000), count(1_234_567)), ("0".into(), "999".into(), "1,000".into(), "1,234,567".into()));
    }
}
