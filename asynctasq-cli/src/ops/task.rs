//! `task show`: any stored task by id, in whatever state and queue; `task wait`: the outcome of
//! one, once it has one; `task cancel`: stop one; `task list` and `task delete`: browse.

use super::dead::envelope_fields;
use super::format::*;
use anyhow::{Context, bail};
use asynctasq_core::driver::{Capability, DeleteOutcome, Driver, TaskRecord, TaskState};
use asynctasq_core::envelope::{TaskId, unix_millis};
use asynctasq_core::{Awaited, CancelOutcome, Client, StoredResult};
use clap::Subcommand;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;

/// `asynctasq task …`
#[derive(Debug, Subcommand)]
pub(crate) enum TaskCommand {
    /// Show one task by id, waiting, leased or dead: its state, queue, attempts, due time or
    /// lease expiry, last error and its arguments as JSON.
    Show {
        /// The task id (a UUID).
        #[arg(value_parser = super::dispatch::parse_task_id)]
        id: TaskId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Wait for one task to be settled and print how it ended: its result when it succeeded,
    /// the reason when it was dead-lettered. Exits 0 when it succeeded, 1 otherwise (dead,
    /// expired, or still unsettled at the timeout).
    Wait {
        /// The task id (a UUID).
        #[arg(value_parser = super::dispatch::parse_task_id)]
        id: TaskId,
        /// How long to wait, e.g. `30s`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", value_name = "DURATION")]
        timeout: std::time::Duration,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a queue's tasks in one state, earliest first, a page at a time: ready, scheduled
    /// and leased by due time or lease expiry, dead by when they died, succeeded and cancelled
    /// (while kept) by when they ended.
    List {
        /// The queue.
        queue: String,
        /// The state to list.
        #[arg(long, value_enum, default_value = "ready")]
        state: StateArg,
        /// Tasks to skip first (the page's start).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Tasks on the page.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete one task by id, waiting, dead or kept once settled: it will never run, be
    /// retried or be found again. A leased task is left alone (cancel it instead). Exits 0
    /// when deleted, 1 otherwise.
    Delete {
        /// The task id (a UUID).
        #[arg(value_parser = super::dispatch::parse_task_id)]
        id: TaskId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel one task: a waiting task is removed and never runs; a running one is stopped by
    /// its worker within a third of its lease (its context is cancelled, then it is aborted
    /// after the worker's `--cancel-grace`), and is neither retried nor dead-lettered. Exits 0
    /// when removed or requested, 1 when it had already finished or is not stored.
    Cancel {
        /// The task id (a UUID).
        #[arg(value_parser = super::dispatch::parse_task_id)]
        id: TaskId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A state `task list` lists.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum StateArg {
    /// Due and not leased.
    Ready,
    /// Waiting for a due time (delayed, or a retry's backoff).
    Scheduled,
    /// Running under a live lease.
    Leased,
    /// Dead-lettered.
    Dead,
    /// Acked and kept with its result.
    Succeeded,
    /// Cancelled and kept.
    Cancelled,
}

impl From<StateArg> for TaskState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Ready => TaskState::Ready,
            StateArg::Scheduled => TaskState::Scheduled,
            StateArg::Leased => TaskState::Leased,
            StateArg::Dead => TaskState::Dead,
            StateArg::Succeeded => TaskState::Succeeded,
            StateArg::Cancelled => TaskState::Cancelled,
        }
    }
}

/// `task list`.
pub(crate) async fn task_list(
    driver: Arc<dyn Driver>,
    queue: String,
    state: StateArg,
    offset: usize,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    if !driver.supports(Capability::Browse) {
        bail!("the {} backend cannot list its tasks (it keeps no index of its messages)", driver.name());
    }
    let state = TaskState::from(state);
    let tasks =
        driver.list(&queue, state, offset, limit).await.with_context(|| format!("listing the {} tasks of `{queue}`", state.as_str()))?;
    if json {
        outln!("{}", json!({ "queue": queue, "state": state, "offset": offset, "tasks": tasks.iter().map(task_json).collect::<Vec<_>>() }));
        return Ok(());
    }
    if tasks.is_empty() {
        outln!("no {} tasks in `{queue}`{}", state.as_str(), if offset > 0 { format!(" past {offset}") } else { String::new() });
        return Ok(());
    }
    let mut t = table(&["ID", "TASK", "ATTEMPTS", "AT", "ERROR"]);
    for r in &tasks {
        let name = r.envelope.as_ref().map(|e| e.name.clone()).unwrap_or_else(|_| "(undecodable)".into());
        let error: String = r.last_error.as_deref().unwrap_or("").lines().next().unwrap_or_default().chars().take(60).collect();
        t.add_row(vec![r.id.to_string(), name, r.attempt.to_string(), from_now(r.at), error]);
    }
    outln!("{t}");
    Ok(())
}

/// `task delete`.
pub(crate) async fn task_delete(driver: Arc<dyn Driver>, id: TaskId, json: bool) -> anyhow::Result<()> {
    if !driver.supports(Capability::Browse) {
        bail!("the {} backend cannot delete a task by id (it keeps no index of its messages)", driver.name());
    }
    let outcome = driver.delete(id).await.with_context(|| format!("deleting task {id}"))?;
    if json {
        outln!("{}", json!({ "id": id.to_string(), "outcome": outcome }));
    } else {
        match outcome {
            DeleteOutcome::Deleted => outln!("deleted: task {id}"),
            DeleteOutcome::Leased => outln!("leased: task {id} is running and was left alone; `task cancel` stops it"),
            DeleteOutcome::NotFound => outln!("not found: no task {id} is stored"),
        }
    }
    match outcome {
        DeleteOutcome::Deleted => Ok(()),
        DeleteOutcome::Leased => Err(Settled("leased").into()),
        DeleteOutcome::NotFound => Err(Settled("not found").into()),
    }
}

/// The JSON of one task (see the module docs of `ops` for the schema).
fn task_json(r: &TaskRecord) -> Value {
    let (task, max_attempts, created_at, args, decode_error) = envelope_fields(&r.envelope);
    json!({
        "id": r.id.to_string(), "queue": r.queue, "state": r.state, "task": task, "attempt": r.attempt,
        "max_attempts": max_attempts, "at": r.at, "last_error": r.last_error, "created_at": created_at,
        "args": args, "decode_error": decode_error, "result": result_json(r.result.as_deref()),
        "cancel_requested": r.cancel_requested, "errors": r.errors, "holder": r.holder, "started_at": r.started_at,
        "progress": r.progress.as_ref().map(|p| json!({ "fraction": p.fraction, "message": p.message, "at": p.at })),
        "stuck": stuck(r),
    })
}

/// Whether a leased task's run has gone past its stuck threshold (twice the timeout its
/// dispatch or `#[task]` gave it, or an hour; a worker's own default timeout is not stored).
fn stuck(r: &TaskRecord) -> bool {
    let (Some(started), TaskState::Leased) = (r.started_at, r.state) else { return false };
    let timeout = r.envelope.as_ref().ok().and_then(|e| e.timeout());
    let running = unix_millis(SystemTime::now()).saturating_sub(started);
    std::time::Duration::from_millis(running) >= asynctasq_core::workers::stuck_after(timeout)
}

/// A stored result as JSON (null when there is none).
fn result_json(stored: Option<&[u8]>) -> Value {
    match stored.map(StoredResult::decode) {
        None => Value::Null,
        Some(Ok(r)) => r.to_json(),
        Some(Err(e)) => json!({ "undecodable": e.to_string() }),
    }
}

/// `task show`.
pub(crate) async fn task_show(driver: Arc<dyn Driver>, id: TaskId, json: bool) -> anyhow::Result<()> {
    if !driver.supports(Capability::TaskLookup) {
        bail!("the {} backend cannot look a task up by id (it keeps no index of its messages)", driver.name());
    }
    let Some(r) = driver.find(id).await.with_context(|| format!("looking task {id} up"))? else {
        bail!("no task {id} (never dispatched, or acked since)")
    };
    let v = task_json(&r);
    if json {
        outln!("{v}");
        return Ok(());
    }
    let when = match r.state {
        TaskState::Scheduled | TaskState::Ready => "due:      ",
        TaskState::Leased => "until:    ",
        TaskState::Succeeded => "finished: ",
        TaskState::Cancelled => "ended:    ",
        _ => "died:     ",
    };
    outln!("id:        {}", r.id);
    outln!("queue:     {}", r.queue);
    outln!("state:     {}", r.state.as_str());
    outln!("task:      {}", v["task"].as_str().unwrap_or("(undecodable)"));
    outln!("attempts:  {} of {}", r.attempt, v["max_attempts"]);
    outln!("{when} {} ({})", from_now(r.at), r.at);
    if let Some(started) = r.started_at {
        outln!("started:   {} ({started})", from_now(started));
    }
    if let Some(holder) = &r.holder {
        outln!("worker:    {holder}");
    }
    if stuck(&r) {
        outln!("stuck:     it has run past twice its timeout (or an hour without one)");
    }
    if let Some(error) = &r.last_error {
        outln!("error:     {error}");
    }
    super::dead::print_history(&r.errors)?;
    if let Some(p) = &r.progress {
        outln!("progress:  {:.0}% {} ({})", p.fraction * 100.0, p.message, from_now(p.at));
    }
    if r.cancel_requested {
        outln!("cancel:    requested; its worker stops it at its next lease extension");
    }
    match &v["decode_error"] {
        Value::Null => outln!("args:      {}", serde_json::to_string_pretty(&v["args"]).unwrap_or_default()),
        e => outln!("args:      undecodable ({})", e.as_str().unwrap_or_default()),
    }
    if r.state == TaskState::Succeeded {
        outln!("result:    {}", serde_json::to_string_pretty(&v["result"]).unwrap_or_default());
    }
    Ok(())
}

/// `task wait`.
pub(crate) async fn task_wait(driver: Arc<dyn Driver>, id: TaskId, timeout: std::time::Duration, json: bool) -> anyhow::Result<()> {
    let client = Client::new(driver);
    let awaited = client.wait(id, timeout).await.with_context(|| format!("waiting for task {id}"))?;
    let (outcome, result, error) = match &awaited {
        Awaited::Succeeded(stored) => ("succeeded", stored.as_ref().map_or(Value::Null, StoredResult::to_json), None),
        Awaited::Dead(error) => ("dead", Value::Null, Some(error.clone())),
        Awaited::Cancelled => ("cancelled", Value::Null, None),
        Awaited::Expired => ("expired", Value::Null, None),
        Awaited::TimedOut => ("timed_out", Value::Null, None),
        _ => ("unknown", Value::Null, None),
    };
    if json {
        outln!("{}", json!({ "id": id.to_string(), "outcome": outcome, "result": result, "error": error }));
    } else {
        match &awaited {
            Awaited::Succeeded(_) => outln!("succeeded: {}", serde_json::to_string_pretty(&result).unwrap_or_default()),
            Awaited::Dead(error) => outln!("dead: {error}"),
            Awaited::Cancelled => outln!("cancelled: task {id} was cancelled"),
            Awaited::Expired => {
                outln!("expired: no task {id} is stored (its result's time to live has passed, it kept none, or it never existed)")
            }
            _ => outln!("timed out after {}: task {id} is not settled yet", humantime::format_duration(timeout)),
        }
    }
    if matches!(awaited, Awaited::Succeeded(_)) { Ok(()) } else { Err(Settled(outcome).into()) }
}

/// `task cancel`.
pub(crate) async fn task_cancel(driver: Arc<dyn Driver>, id: TaskId, json: bool) -> anyhow::Result<()> {
    let outcome = Client::new(driver).cancel(id).await.with_context(|| format!("cancelling task {id}"))?;
    if json {
        outln!("{}", json!({ "id": id.to_string(), "outcome": outcome }));
    } else {
        match outcome {
            CancelOutcome::Removed => outln!("removed: task {id} was waiting and will never run"),
            CancelOutcome::Requested => {
                outln!("requested: task {id} is running; its worker stops it at its next lease extension")
            }
            CancelOutcome::AlreadyFinished => outln!("already finished: task {id} was settled before the cancel; nothing changed"),
            CancelOutcome::NotFound => outln!("not found: no task {id} is stored"),
        }
    }
    match outcome {
        CancelOutcome::Removed | CancelOutcome::Requested => Ok(()),
        CancelOutcome::AlreadyFinished => Err(Settled("already finished").into()),
        CancelOutcome::NotFound => Err(Settled("not found").into()),
    }
}

/// A wait that ended without success: exit 1, having said why already.
#[derive(Debug)]
pub(crate) struct Settled(pub(crate) &'static str);

impl std::fmt::Display for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the task did not succeed ({})", self.0)
    }
}

impl std::error::Error for Settled {}
