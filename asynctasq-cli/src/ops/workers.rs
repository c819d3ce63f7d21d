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
