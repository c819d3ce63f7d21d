//! The dashboard's pages over a big backend (`dashboard`): `--tasks` ready tasks in the run's
//! queue and `--dead` dead ones in a second, then each page asked `--rounds` times through the
//! router (no socket: the server's own time), p50/p99/max per page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use asynctasq_core::{Client, Driver, Overrides, TaskState};
use asynctasq_dashboard::Dashboard;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt as _;

use super::{BoxError, Latency, Noop, dispatch};

/// One page's times.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PageTime {
    pub(crate) page: String,
    pub(crate) bytes: usize,
    pub(crate) ms: Latency,
}

/// Fills the backend: `tasks` ready in `queue`, `dead` dead in `{queue}-dead` (dispatched,
/// claimed and dead-lettered 500 at a time).
pub(crate) async fn fill(driver: &Arc<dyn Driver>, client: &Client, queue: &str, tasks: u64, dead: u64) -> Result<(), BoxError> {
    dispatch(client, tasks, 1000, &Overrides { queue: Some(queue.into()), ..Default::default() }, |n| Noop { n }).await?;
    let dead_queue = format!("{queue}-dead");
    dispatch(client, dead, 1000, &Overrides { queue: Some(dead_queue.clone()), ..Default::default() }, |n| Noop { n }).await?;
    let mut left = dead;
    while left > 0 {
        let deliveries = driver.dequeue(&dead_queue, 500.min(left as usize)).await?;
        if deliveries.is_empty() {
            return Err("the dead queue's tasks could not be claimed".into());
        }
        left -= deliveries.len() as u64;
        let mut settling = tokio::task::JoinSet::new();
        for (i, d) in deliveries.into_iter().enumerate() {
            let driver = driver.clone();
            let error = if i % 10 == 0 { "connection refused by smtp.example.com" } else { "timeout after 30s" };
            settling.spawn(async move { driver.dead_letter(&d.lease, error, Duration::from_secs(86_400)).await });
        }
        while let Some(done) = settling.join_next().await {
            done??;
        }
    }
    Ok(())
}

/// `cursor` as a query value.
fn form_cursor(cursor: &str) -> String {
    cursor
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Asks each page `rounds` times; its times.
pub(crate) async fn pages(driver: Arc<dyn Driver>, queue: &str, rounds: usize) -> Result<Vec<PageTime>, BoxError> {
    let dead_queue = format!("{queue}-dead");
    let ready = driver.stats(queue).await?.ready;
    let dead = driver.stats(&dead_queue).await?.dead;
    let mid_ready = driver.list(queue, TaskState::Ready, (ready / 2) as usize, 1).await?.pop().ok_or("no ready task in the middle")?.id;
    let mid_dead = driver.list(&dead_queue, TaskState::Dead, (dead / 2) as usize, 1).await?.pop().ok_or("no dead task")?.id;
    // A cursor near the end of the dead letters, as an operator paging that far would hold.
    let mut deep = None;
    let mut read = 0;
    while read + 1000 <= dead.saturating_sub(100) {
        deep = driver.dead_after(&dead_queue, deep.as_deref(), 1000).await?.next;
        read += 1000;
    }
    let deep = form_cursor(deep.as_deref().unwrap_or_default());
    let router = Dashboard::new(driver, "bench").router();
    let paths = [
        "/".to_owned(),
        format!("/queues/{queue}?state=ready"),
        format!("/queues/{queue}?state=ready&page=20"),
        format!("/dead?queue={dead_queue}"),
        format!("/dead?queue={dead_queue}&cursor={deep}"),
        format!("/dead?queue={dead_queue}&error=refused"),
        format!("/dead?queue={dead_queue}&error=no-such-error"),
        format!("/tasks/{mid_ready}"),
        format!("/tasks/{mid_dead}"),
    ];
    let mut out = Vec::new();
    for path in paths {
        let mut took = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let request = Request::get(&path).header("host", "bench").body(Body::empty())?;
            let t = Instant::now();
            let response = router.clone().oneshot(request).await?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            took.push(t.elapsed().as_micros() as u64);
            if !status.is_success() {
                return Err(format!("GET {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
            }
            bytes = body.len();
        }
        took.sort_unstable();
        let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
        let page = path
            .replace(&deep, "{cursor past 99,000}")
            .replace(queue, "Q")
            .replace(&mid_ready.to_string(), "{ready id}")
            .replace(&mid_dead.to_string(), "{dead id}");
        out.push(PageTime { page, bytes, ms: Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: at(1.0) } });
    }
    Ok(out)
}
