//! `dead list`, `dead show`, `dead retry`, `dead purge`: the dead-letter store.

use super::format::*;
use super::purge::{FlushStatus, flush};
use anyhow::{Context, bail};
use asynctasq_core::CodecError;
use asynctasq_core::driver::{Capability, DeadSelector, DeadTask, Driver, TaskState};
use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::error::error_chain;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::sync::Arc;

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

/// What a stored envelope says, as JSON: `(task, max_attempts, created_at, args, decode_error)`,
/// the arguments decoded, or why they (or the envelope) could not be.
pub(crate) fn envelope_fields(envelope: &Result<Envelope, CodecError>) -> (Value, Value, Value, Value, Value) {
    match envelope {
        Ok(e) => match rmp_serde::from_slice::<Value>(&e.payload) {
            Ok(args) => (json!(e.name), json!(e.max_attempts), json!(e.created_at), args, Value::Null),
            Err(err) => (json!(e.name), json!(e.max_attempts), json!(e.created_at), Value::Null, json!(format!("arguments: {err}"))),
        },
        Err(err) => (Value::Null, Value::Null, Value::Null, Value::Null, json!(error_chain(err))),
    }
}

pub(crate) fn dead_json(d: &DeadTask) -> Value {
    let (task, max_attempts, created_at, args, decode_error) = envelope_fields(&d.envelope);
    json!({
        "id": d.id.to_string(), "queue": d.queue, "task": task, "attempt": d.attempt, "max_attempts": max_attempts,
        "error": d.error, "dead_at": d.dead_at, "created_at": created_at, "args": args, "decode_error": decode_error,
        "errors": d.errors,
    })
}

/// Prints every failed attempt's error, one line each, under `errors:` (nothing when none).
pub(crate) fn print_history(errors: &[asynctasq_core::AttemptError]) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    outln!("errors:");
    for e in errors {
        match &e.worker {
            Some(worker) => outln!("  attempt {} ({}, on {worker}): {}", e.attempt, ago(e.at), e.error),
            None => outln!("  attempt {} ({}): {}", e.attempt, ago(e.at), e.error),
        }
    }
    Ok(())
}

pub(crate) fn needs_list_dead(driver: &dyn Driver) -> anyhow::Result<()> {
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
    let found: Option<DeadTask> = if driver.supports(Capability::TaskLookup) {
        // One indexed read instead of reading every dead list.
        let record = driver.find(wanted).await.with_context(|| format!("looking task {wanted} up"))?;
        record.filter(|r| r.state == TaskState::Dead && queue.as_ref().is_none_or(|q| *q == r.queue)).map(|r| DeadTask {
            id: r.id,
            queue: r.queue,
            attempt: r.attempt,
            error: r.last_error.unwrap_or_default(),
            dead_at: r.at,
            envelope: r.envelope,
            errors: r.errors,
        })
    } else {
        let mut found = None;
        for q in queues_or_all(&*driver, queue.as_slice()).await? {
            let dead = driver.dead(&q, usize::MAX).await.with_context(|| format!("listing dead tasks of `{q}`"))?;
            if let Some(d) = dead.into_iter().find(|d| d.id == wanted) {
                found = Some(d);
                break;
            }
        }
        found
    };
    if let Some(d) = &found {
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
            print_history(&d.errors)?;
            match &v["decode_error"] {
                Value::Null => outln!("args:      {}", serde_json::to_string_pretty(&v["args"]).unwrap_or_default()),
                e => outln!("args:      undecodable ({})", e.as_str().unwrap_or_default()),
            }
        }
        return Ok(());
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
