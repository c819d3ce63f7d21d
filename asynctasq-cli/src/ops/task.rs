//! `task show`: any stored task by id, in whatever state and queue.

use super::dead::envelope_fields;
use super::format::*;
use anyhow::{Context, bail};
use asynctasq_core::driver::{Capability, Driver, TaskRecord, TaskState};
use asynctasq_core::envelope::TaskId;
use clap::Subcommand;
use serde_json::{Value, json};
use std::sync::Arc;

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
}

/// The JSON of one task (see the module docs of `ops` for the schema).
fn task_json(r: &TaskRecord) -> Value {
    let (task, max_attempts, created_at, args, decode_error) = envelope_fields(&r.envelope);
    json!({
        "id": r.id.to_string(), "queue": r.queue, "state": r.state, "task": task, "attempt": r.attempt,
        "max_attempts": max_attempts, "at": r.at, "last_error": r.last_error, "created_at": created_at,
        "args": args, "decode_error": decode_error,
    })
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
        _ => "died:     ",
    };
    outln!("id:        {}", r.id);
    outln!("queue:     {}", r.queue);
    outln!("state:     {}", r.state.as_str());
    outln!("task:      {}", v["task"].as_str().unwrap_or("(undecodable)"));
    outln!("attempts:  {} of {}", r.attempt, v["max_attempts"]);
    outln!("{when} {} ({})", from_now(r.at), r.at);
    if let Some(error) = &r.last_error {
        outln!("error:     {error}");
    }
    match &v["decode_error"] {
        Value::Null => outln!("args:      {}", serde_json::to_string_pretty(&v["args"]).unwrap_or_default()),
        e => outln!("args:      undecodable ({})", e.as_str().unwrap_or_default()),
    }
    Ok(())
}
