//! Deleting tasks that are not leased: `queue flush` (waiting tasks) and `dead purge` (dead
//! ones) are this one operation.

use super::format::*;
use anyhow::{Context, bail};
use asynctasq_core::DriverError;
use asynctasq_core::driver::{Capability, Driver, Waiting};
use clap::ValueEnum;
use std::sync::Arc;

/// Which tasks `queue flush` deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FlushStatus {
    /// Tasks due now.
    Ready,
    /// Tasks not due yet (delayed, or waiting for a retry).
    Scheduled,
    /// Waiting tasks: ready and scheduled (backends lacking `PurgeScheduled`, such as SQS,
    /// reach only the ready ones). `pending` is its old name, still accepted.
    #[value(name = "waiting", alias = "pending")]
    Pending,
    /// Dead tasks: a hidden alias of `dead purge`, kept for scripts.
    #[value(hide = true)]
    Dead,
    /// Waiting and dead tasks.
    All,
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
                    bail!("the {} backend cannot do this: {what}; use --status waiting (formerly --status pending)", driver.name())
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
