//! `workers`: the live workers of the registry.

use super::format::*;
use anyhow::{Context, bail};
use asynctasq_core::driver::{Capability, Driver};
use asynctasq_core::envelope::unix_millis;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;

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
                v["running"] = w
                    .running
                    .iter()
                    .map(|r| {
                        json!({ "id": r.id.to_string(), "task": r.name, "queue": r.queue, "started_at": r.started_at,
                                "age_ms": now.saturating_sub(r.started_at), "stuck": r.stuck })
                    })
                    .collect();
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
    // What each worker runs now, oldest first; a run past its threshold is marked.
    for w in workers.iter().filter(|w| !w.running.is_empty()) {
        outln!();
        outln!("{} runs:", w.id);
        let mut runs = table(&["TASK ID", "TASK", "QUEUE", "RUNNING FOR", ""]);
        for r in &w.running {
            let age = humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(r.started_at) / 1000)).to_string();
            runs.add_row(vec![
                r.id.to_string(),
                r.name.clone(),
                r.queue.clone(),
                age,
                if r.stuck { "STUCK".into() } else { String::new() },
            ]);
        }
        outln!("{runs}");
    }
    Ok(())
}
