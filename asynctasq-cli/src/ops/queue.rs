//! `queue status`, `queue flush`, `queue pause|resume` and `queue limit`: counts per queue,
//! deleting waiting tasks, and what every worker may claim.

use super::dead::DeadRetryArgs;
use super::format::*;
use super::purge::FlushStatus;
use anyhow::{Context, bail};
use asynctasq_core::driver::{Capability, Driver, QueueLimits, QueueStats};
use asynctasq_core::limits::Rate;
use clap::Subcommand;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// `asynctasq queue …`
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Counts per queue: ready, scheduled, leased, dead, the oldest ready task's age, and the
    /// succeeded and failed totals the backend keeps (every known queue when none is named).
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
    /// Delete tasks that are waiting (ready and scheduled); never leased ones. Dead tasks:
    /// `dead purge`.
    Flush {
        /// Queues to flush (every known queue when none is named).
        #[arg(value_parser = crate::QUEUE_NAME)]
        queues: Vec<String>,
        /// Which tasks to delete.
        #[arg(long, value_enum, default_value = "waiting")]
        status: FlushStatus,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Stop every worker of every process claiming from a queue, until `queue resume`; running
    /// tasks finish, and tasks can still be dispatched to it.
    Pause {
        /// The queue.
        #[arg(value_parser = crate::QUEUE_NAME)]
        queue: String,
    },
    /// Let workers claim from a paused queue again.
    Resume {
        /// The queue.
        #[arg(value_parser = crate::QUEUE_NAME)]
        queue: String,
    },
    /// Show or set a queue's limits, stored in the backend: every worker of every process obeys
    /// them from its next claim. Without an option: show them.
    Limit {
        /// The queue.
        #[arg(value_parser = crate::QUEUE_NAME)]
        queue: String,
        /// At most N of the queue's tasks leased at once, by all workers together (0 holds
        /// every task back). A crashed worker's tasks free their places when their leases
        /// run out.
        #[arg(long, value_name = "N", conflicts_with = "clear")]
        max_leased: Option<u32>,
        /// At most N of the queue's tasks with one key (`#[task(key = ..)]`, `dispatch --key`)
        /// leased at once, by all workers together; a key at its limit never holds back other
        /// keys' tasks.
        #[arg(long, value_name = "N", conflicts_with = "clear")]
        per_key: Option<u32>,
        /// At most N of the queue's tasks started in any window of DURATION (`100/1m`,
        /// `5/10s`), by all workers together: exact in every window, wherever it begins.
        #[arg(long, value_name = "N/DURATION", value_parser = str::parse::<Rate>, conflicts_with = "clear")]
        rate: Option<Rate>,
        /// Count the rate per task key rather than for the whole queue (tasks without a key
        /// are then not limited by it).
        #[arg(long, requires = "rate")]
        rate_per_key: bool,
        /// Remove the queue's limits.
        #[arg(long)]
        clear: bool,
        /// Print JSON (`{"queue", "max_leased", "per_key", "rate"}`, `rate` as `{"starts",
        /// "window_ms", "per_key"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move dead tasks back to their queue: a hidden alias of `dead retry`, kept for scripts.
    #[command(hide = true)]
    Retry(DeadRetryArgs),
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
        let paused = driver.paused().await.context("listing paused queues")?;
        let limits: std::collections::HashMap<String, QueueLimits> = driver.limits().await.context("listing limits")?.into_iter().collect();
        let cap = |q: &str| limits.get(q).and_then(|l| l.max_leased);
        let per_key = |q: &str| limits.get(q).and_then(|l| l.per_key);
        let rate = |q: &str| limits.get(q).and_then(|l| l.rate);
        if json {
            let map: serde_json::Map<String, Value> = rows
                .iter()
                .map(|(q, s)| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["paused"] = Value::Bool(paused.contains(q));
                    v["max_leased"] = json!(cap(q));
                    v["per_key"] = json!(per_key(q));
                    v["rate"] = json!(rate(q));
                    (q.clone(), v)
                })
                .collect();
            outln!("{}", json!({ "driver": driver.name(), "exact": exact, "queues": map }));
        } else {
            let rows: Vec<(String, QueueStats)> = rows
                .into_iter()
                .map(|(q, s)| {
                    let marks: Vec<String> = [
                        paused.contains(&q).then(|| "paused".to_owned()),
                        cap(&q).map(|n| format!("at most {n} leased")),
                        per_key(&q).map(|n| format!("at most {n} per key")),
                        rate(&q).map(say_rate),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    (if marks.is_empty() { q } else { format!("{q} ({})", marks.join(", ")) }, s)
                })
                .collect();
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

/// `queue pause` and `queue resume`.
pub(crate) async fn pause(driver: Arc<dyn Driver>, queue: &str, paused: bool) -> anyhow::Result<()> {
    if !driver.supports(Capability::PauseQueues) {
        bail!("the {} backend cannot pause a queue (its workers take what the broker hands them)", driver.name());
    }
    driver.set_paused(queue, paused).await.with_context(|| format!("pausing queue `{queue}`"))?;
    if paused {
        outln!("paused queue `{queue}`: no worker claims from it until `queue resume {queue}`");
    } else {
        outln!("resumed queue `{queue}`");
    }
    Ok(())
}

/// `queue limit`: sets (`max_leased`), clears, or shows a queue's limits.
/// A rate, said for people.
fn say_rate(rate: Rate) -> String {
    let per = if rate.per_key { " per key" } else { "" };
    format!("at most {} started per {}{per}", rate.starts, humantime::format_duration(rate.window()))
}

/// The options of `queue limit`, as given.
pub(crate) struct LimitArgs {
    /// `--max-leased`.
    pub(crate) max_leased: Option<u32>,
    /// `--per-key`.
    pub(crate) per_key: Option<u32>,
    /// `--rate`, with `--rate-per-key` applied.
    pub(crate) rate: Option<Rate>,
    /// `--clear`.
    pub(crate) clear: bool,
}

pub(crate) async fn limit(driver: Arc<dyn Driver>, queue: &str, args: LimitArgs, json: bool) -> anyhow::Result<()> {
    let LimitArgs { max_leased, per_key, rate, clear } = args;
    let limits = QueueLimits::default().with_max_leased(max_leased).with_per_key(per_key).with_rate(rate);
    let setting = !limits.is_none() || clear;
    if driver.supports(Capability::QueueLimits) {
        if (per_key.is_some() || rate.is_some_and(|r| r.per_key)) && !driver.supports(Capability::KeyedLimits) {
            bail!("the {} backend cannot limit a queue per key (its claims count leases per queue only)", driver.name());
        }
        if rate.is_some() && !driver.supports(Capability::RateLimits) {
            bail!("the {} backend cannot limit a queue's rate (its claims keep no log of starts)", driver.name());
        }
    } else if driver.check_limits(queue, &QueueLimits::per_key(1)).is_ok() {
        // What the queue enforces on its own (one per key, on an SQS FIFO queue) is all it takes.
        if let Err(e) = driver.check_limits(queue, &limits)
            && setting
        {
            bail!("the {} backend cannot limit queue `{queue}` so: {e}", driver.name());
        }
    } else {
        bail!("the {} backend cannot limit a queue (its workers take what the broker hands them)", driver.name());
    }
    if setting {
        driver.set_limits(queue, limits).await.with_context(|| format!("limiting queue `{queue}`"))?;
    }
    let limits = driver.limits().await.context("listing limits")?;
    let limits = limits.iter().find(|(q, _)| q == queue).map(|(_, l)| *l).unwrap_or_default();
    if json {
        outln!("{}", json!({ "queue": queue, "max_leased": limits.max_leased, "per_key": limits.per_key, "rate": limits.rate }));
    } else if limits.is_none() {
        outln!("queue `{queue}`: no limits");
    } else {
        let mut said = Vec::new();
        if let Some(n) = limits.max_leased {
            said.push(format!("at most {n} leased at once"));
        }
        if let Some(n) = limits.per_key {
            said.push(format!("at most {n} per key"));
        }
        if let Some(rate) = limits.rate {
            said.push(say_rate(rate));
        }
        outln!("queue `{queue}`: {}, across every worker", said.join(", "));
    }
    Ok(())
}

pub(crate) fn print_status(rows: &[(String, QueueStats)], exact: bool) -> anyhow::Result<()> {
    if rows.is_empty() {
        outln!("no queues");
        return Ok(());
    }
    let mut t = table(&["QUEUE", "READY", "SCHEDULED", "LEASED", "DEAD", "OLDEST READY", "SUCCEEDED", "FAILED"]);
    for (q, s) in rows {
        let age = match s.oldest_ready_age {
            Some(d) if s.ready == 0 || d.is_zero() => "-".to_owned(),
            Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string(),
            None => "n/a".to_owned(),
        };
        let (succeeded, failed) = match s.totals {
            Some(t) => (count(t.succeeded), count(t.failed)),
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        // An estimated row (a big queue on an exact backend) marks its counts with `~`.
        let n = |v: u64| if s.estimated && exact { format!("~{}", count(v)) } else { count(v) };
        t.add_row(vec![q.clone(), n(s.ready), n(s.scheduled), n(s.leased), n(s.dead), age, succeeded, failed]);
    }
    align_numbers(&mut t, 1);
    outln!("{t}");
    if !exact {
        outln!("(counts are approximate on this backend)");
    } else if rows.iter().any(|(_, s)| s.estimated) {
        outln!("(~: estimated; past the backend's exact bound a state is counted from a sample)");
    }
    if rows.iter().any(|(_, s)| s.oldest_ready_age.is_none()) {
        outln!("(OLDEST READY: this backend cannot tell a ready task's age without consuming it)");
    }
    if rows.iter().any(|(_, s)| s.totals.is_none()) {
        outln!("(SUCCEEDED, FAILED: this backend keeps nothing of a task once it is settled; see the workers' metrics)");
    }
    Ok(())
}
