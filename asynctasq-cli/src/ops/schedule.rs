//! `schedule`: the cron schedules of this binary's tasks and what the backend keeps of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use asynctasq_core::driver::{Capability, Driver, ScheduleState};
use asynctasq_core::schedule::Schedule;
use asynctasq_core::{Client, Overrides, Registry};
use clap::Subcommand;
use serde_json::json;

use super::format::*;

/// `asynctasq schedule …`
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Every schedule of this binary's tasks (`#[task(cron = "…")]`) and every one the backend
    /// keeps: pattern, time zone, queue, next and last fire, paused.
    List {
        /// Print JSON (schema in the crate docs) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule: no worker claims its slots until `schedule resume NAME`.
    Pause {
        /// The schedule's name (a cron task's name).
        name: String,
    },
    /// Resume a paused schedule; its missed slots follow its catch-up policy.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Dispatch a schedule's task now, once, outside its slots (its slots are unchanged).
    Run {
        /// The schedule's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The schedules this binary declares, by name.
fn declared(registry: &Registry) -> anyhow::Result<BTreeMap<String, Schedule>> {
    Ok(Schedule::declared_in(registry)?)
}

/// A `worker --schedule NAME;PATTERN;TASK[;TZ[;ARGS-JSON]]`: the task must be in this binary
/// and the arguments fit it, or the flag is a usage error naming what is wrong.
pub(crate) fn schedule_flag(spec: &str, registry: &Registry) -> Result<Schedule, crate::Usage> {
    let usage = |what: String| crate::Usage(format!("invalid --schedule `{spec}`: {what}"));
    let mut parts = spec.splitn(5, ';').map(str::trim);
    let (Some(name), Some(pattern), Some(task)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage("expected NAME;PATTERN;TASK[;TZ[;ARGS-JSON]]".into()));
    };
    let (tz, args) = (parts.next().filter(|t| !t.is_empty()).unwrap_or("UTC"), parts.next().filter(|a| !a.is_empty()).unwrap_or("{}"));
    let registration = registry.get(task).ok_or_else(|| usage(format!("no task `{task}` in this binary")))?;
    let payload = (registration.args_from_json)(args).map_err(|e| usage(format!("arguments for task `{task}`: {e}")))?;
    Schedule::new(name, pattern, task, payload).and_then(|s| s.tz(tz)).map_err(|e| usage(e.to_string()))
}

/// The queue a schedule's tasks go to.
fn queue_of(schedule: &Schedule, registry: &Registry) -> String {
    schedule.queue_in(registry)
}

fn known<'a>(schedules: &'a BTreeMap<String, Schedule>, name: &str) -> anyhow::Result<&'a Schedule> {
    schedules.get(name).ok_or_else(|| {
        let names: Vec<&str> = schedules.keys().map(String::as_str).collect();
        anyhow::anyhow!(
            "unknown schedule `{name}`; this binary declares: {}",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        )
    })
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `schedule …`.
pub(crate) async fn schedule(driver: Arc<dyn Driver>, registry: &Registry, command: ScheduleCommand) -> anyhow::Result<()> {
    let schedules = declared(registry)?;
    match command {
        ScheduleCommand::List { json } => list(driver, registry, &schedules, json).await,
        ScheduleCommand::Pause { name } | ScheduleCommand::Resume { name } if !driver.supports(Capability::ScheduleClaims) => {
            let _ = known(&schedules, &name)?;
            bail!("the {} backend cannot pause a schedule (it keeps no schedules: its workers refuse to run them)", driver.name())
        }
        ScheduleCommand::Pause { name } => {
            let schedule = known(&schedules, &name)?;
            driver
                .set_schedule_paused(&name, &queue_of(schedule, registry), true)
                .await
                .with_context(|| format!("pausing schedule `{name}`"))?;
            outln!("paused schedule `{name}`: no worker claims its slots until `schedule resume {name}`");
            Ok(())
        }
        ScheduleCommand::Resume { name } => {
            let schedule = known(&schedules, &name)?;
            driver
                .set_schedule_paused(&name, &queue_of(schedule, registry), false)
                .await
                .with_context(|| format!("resuming schedule `{name}`"))?;
            outln!("resumed schedule `{name}`");
            Ok(())
        }
        ScheduleCommand::Run { name, json } => {
            let schedule = known(&schedules, &name)?;
            let task = registry.get(schedule.task()).context("the schedule's task is not in this binary")?;
            let overrides = Overrides { queue: Some(queue_of(schedule, registry)), ..Overrides::default() };
            let client = Client::new(driver);
            let envelope = client.envelope_of(task, schedule.payload().to_vec(), &overrides)?;
            let (id, queue) = (envelope.id, envelope.queue.clone());
            client.enqueue(vec![envelope]).await.context("enqueueing the schedule's task")?;
            if json {
                outln!("{}", json!({ "schedule": name, "id": id.to_string(), "queue": queue }));
            } else {
                outln!("dispatched schedule `{name}`'s task to queue {queue} as {id}");
            }
            Ok(())
        }
    }
}

async fn list(driver: Arc<dyn Driver>, registry: &Registry, schedules: &BTreeMap<String, Schedule>, json: bool) -> anyhow::Result<()> {
    let keeps = driver.supports(Capability::ScheduleClaims);
    let stored: BTreeMap<String, ScheduleState> =
        driver.schedules().await.context("listing schedules")?.into_iter().map(|s| (s.name.clone(), s)).collect();
    let now = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())).unwrap_or(0);
    let mut names: Vec<&String> = schedules.keys().chain(stored.keys()).collect();
    names.sort();
    names.dedup();
    let rows: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| {
            let s = schedules.get(name);
            let state = stored.get(name);
            json!({
                "name": name,
                "pattern": s.map(Schedule::pattern),
                "tz": s.map(Schedule::tz_name),
                "queue": s.map(|s| queue_of(s, registry)),
                "next_fire": s.and_then(|s| s.next_after(now)).map(rfc3339),
                "last_fire": state.and_then(|st| st.last_slot).map(rfc3339),
                "paused": state.is_some_and(|st| st.paused),
                "declared": s.is_some(),
            })
        })
        .collect();
    if json {
        outln!("{}", json!({ "driver": driver.name(), "keeps_schedules": keeps, "schedules": rows }));
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no schedules");
        return Ok(());
    }
    let mut t = table(&["SCHEDULE", "PATTERN", "TZ", "QUEUE", "NEXT", "LAST", "PAUSED"]);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    for r in &rows {
        t.add_row(vec![
            text(&r["name"]),
            text(&r["pattern"]),
            text(&r["tz"]),
            text(&r["queue"]),
            text(&r["next_fire"]),
            text(&r["last_fire"]),
            if r["paused"] == true { "paused".into() } else { "-".into() },
        ]);
    }
    outln!("{t}");
    if !keeps {
        outln!("the {} backend keeps no schedules: its workers refuse to run them", driver.name());
    }
    Ok(())
}
