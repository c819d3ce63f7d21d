//! `dispatch`: enqueue a task by name with JSON arguments, one or a file of them.

use super::format::*;
use anyhow::{Context, bail};
use asynctasq_core::driver::{Driver, EnqueueOutcome};
use asynctasq_core::envelope::{TaskId, validate_queue_name};
use asynctasq_core::{Client, Overrides, Registry, UniqueUntil};
use clap::Args;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

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
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Run no earlier than this time, RFC 3339 in UTC (e.g. `2026-12-24T18:00:00Z`); a time
    /// already past runs at once.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak, value_name = "TIME")]
    at: Option<std::time::SystemTime>,
    /// Deliveries allowed before dead-lettering.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// The task's id (a UUID) instead of a new one: a task with this id already stored is left
    /// as it is and nothing is dispatched, so a retried script dispatches once.
    #[arg(long, value_parser = parse_task_id, conflicts_with = "args_file")]
    id: Option<TaskId>,
    /// Makes the task unique under this key in its queue: while a task holding the key is
    /// stored, nothing is dispatched (see the README's "Unique tasks").
    #[arg(long, value_name = "KEY", conflicts_with = "args_file")]
    unique_key: Option<String>,
    /// Until when the unique key is held: `start`, `done` or `expiry` (makes the task unique,
    /// its key derived from its name and arguments unless --unique-key gives it).
    #[arg(long, value_name = "UNTIL", value_parser = ["start", "done", "expiry"])]
    unique_until: Option<String>,
    /// How long the unique key is held at most (e.g. `10m`; default: the task's, else a day).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    unique_ttl: Option<Duration>,
    /// The task's key instead of its `#[task(key = ..)]` parameter's: tasks of a queue sharing
    /// a key share the queue's per-key limit (`queue limit --per-key`).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    let unique = (args.unique_until.is_some() || args.unique_ttl.is_some()).then(|| {
        let mut policy = (task.options)().unique.unwrap_or_default();
        if let Some(ttl) = args.unique_ttl {
            policy.ttl = ttl;
        }
        policy.until = match args.unique_until.as_deref() {
            Some("start") => UniqueUntil::Start,
            Some("expiry") => UniqueUntil::Expiry,
            Some(_) => UniqueUntil::Done,
            None => policy.until,
        };
        policy
    });
    let overrides = Overrides {
        queue: args.queue.clone(),
        delay: args.delay,
        run_at: args.at,
        max_attempts: args.max_attempts,
        id: args.id,
        unique_key: args.unique_key.clone(),
        unique,
        key: args.key.clone(),
        ..Default::default()
    };
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
    let span = client.send_span(&queue_of(&overrides, &(task.options)()), 1);
    let envelope = span.in_scope(|| client.envelope_of(task, payload, &overrides))?;
    let (id, queue) = (envelope.id, envelope.queue.clone());
    span.record("messaging.message.id", tracing::field::display(id));
    // Open around the enqueue, not entered in it (see `asynctasq_core::trace::around`).
    let outcome = asynctasq_core::trace::around(span, client.enqueue(vec![envelope])).await.context("enqueueing the task")?[0];
    match (args.json, outcome) {
        (true, EnqueueOutcome::Duplicate { existing }) => {
            outln!("{}", json!({ "id": id.to_string(), "queue": queue, "outcome": "duplicate", "existing": existing.to_string() }))
        }
        (true, outcome) => outln!("{}", json!({ "id": id.to_string(), "queue": queue, "outcome": outcome })),
        (false, EnqueueOutcome::Exists) => outln!("task {id} already exists; nothing dispatched"),
        (false, EnqueueOutcome::Duplicate { existing }) => {
            outln!("task {existing} holds this task's unique key in queue {queue}; nothing dispatched")
        }
        (false, EnqueueOutcome::New) => outln!("dispatched {} to queue {queue} as {id}", args.task),
    }
    Ok(())
}

/// `--id`: a task id is a UUID.
pub(crate) fn parse_task_id(s: &str) -> Result<TaskId, String> {
    s.parse().map_err(|_| format!("`{s}` is not a task id (a UUID)"))
}

/// Tasks per enqueue call of `dispatch --args-file`.
pub(crate) const DISPATCH_BATCH: usize = 1000;

/// `dispatch --args-file`: one task per line of JSON arguments, every line checked before any
/// task is enqueued, then enqueued in batches.
pub(crate) async fn dispatch_many(
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
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    // One send span for the whole file: each batch is enqueued inside it.
    let span = client.send_span(&queue_of(overrides, &(task.options)()), lines.len());
    let mut envelopes = Vec::new();
    for (n, line) in lines {
        let payload = (task.args_from_json)(line)
            .map_err(|e| anyhow::anyhow!("invalid arguments on line {} for task `{}`: {e}", n + 1, task.name))?;
        envelopes.push(span.in_scope(|| client.envelope_of(task, payload, overrides))?);
    }
    let queue = envelopes.first().map(|e| e.queue.clone()).unwrap_or_default();
    let bar = progress(envelopes.len() as u64, "dispatching");
    let total = envelopes.len();
    let (mut sent, mut stored) = (0, 0);
    let mut rest = envelopes;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(DISPATCH_BATCH));
        let n = rest.len();
        let outcomes = asynctasq_core::trace::around(span.clone(), client.enqueue(rest))
            .await
            .with_context(|| format!("enqueueing tasks (the first {} were enqueued)", count(sent as u64)))?;
        stored += outcomes.iter().filter(|o| **o == EnqueueOutcome::New).count();
        sent += n;
        bar.inc(n as u64);
        rest = tail;
    }
    bar.finish_and_clear();
    // Lines not stored: their id or unique key was held.
    let skipped = total - stored;
    if json {
        outln!("{}", json!({ "dispatched": stored, "skipped": skipped, "queue": queue }));
    } else if skipped > 0 {
        outln!(
            "dispatched {} {} task(s) to queue {queue}; {} skipped (their unique key was held)",
            count(stored as u64),
            task.name,
            count(skipped as u64)
        );
    } else {
        outln!("dispatched {} {} task(s) to queue {queue}", count(stored as u64), task.name);
    }
    Ok(())
}

/// The queue a dispatch of a task with `options` goes to.
fn queue_of(overrides: &Overrides, options: &asynctasq_core::TaskOptions) -> String {
    overrides.queue.clone().or_else(|| options.queue.clone()).unwrap_or_else(|| asynctasq_core::client::DEFAULT_QUEUE.to_owned())
}
