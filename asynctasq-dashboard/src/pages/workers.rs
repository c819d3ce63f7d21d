//! `/workers`: the live registry: each worker's host, pid, queues, concurrency, what it runs
//! now and for how long; workers whose heartbeat is overdue are marked stale.

use std::sync::Arc;

use asynctasq_core::driver::Capability;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::layout::{Section, absent, age, count, now_ms, page as frame, time};
use crate::{App, driver_failed};

/// The workers.
pub(crate) async fn page(State(app): State<Arc<App>>) -> Response {
    let driver = app.driver.as_ref();
    if !driver.supports(Capability::WorkerRegistry) {
        let why = format!("The {} backend keeps no worker registry: its workers cannot be listed from here.", driver.name());
        return frame(&app, "Workers", Section::Workers, html! { h1 { "Workers" } (absent(&why)) }).into_response();
    }
    let workers = match driver.workers().await {
        Ok(w) => w,
        Err(e) => return driver_failed(&app, "listing the workers", &e),
    };
    let now = now_ms();
    let body = html! {
        div #workers hx-get="/workers" hx-trigger="every 5s" hx-select="#workers" hx-swap="outerHTML" {
            h1 { "Workers" }
            @if workers.is_empty() { p.muted { "No worker is registered." } }
            @for w in &workers {
                h2 {
                    code { (w.id) }
                    @if w.expires_at < now { " " span.tag.stale { "stale: no heartbeat since " (age(std::time::Duration::from_millis(now - w.heartbeat_at))) } }
                }
                dl.fields {
                    dt { "Host / pid" } dd { (w.host) " / " (w.pid) }
                    dt { "Queues" } dd { (w.queues.join(", ")) }
                    dt { "Concurrency" } dd { (w.concurrency) " (" (w.in_flight) " in flight)" }
                    dt { "Started" } dd { (time(w.started_at)) }
                    dt { "Heartbeat" } dd { (time(w.heartbeat_at)) }
                    dt { "Version" } dd { (w.version) }
                    dt { "Started / succeeded / retried / dead" } dd { (count(w.counts.started)) " / " (count(w.counts.succeeded)) " / " (count(w.counts.retried)) " / " (count(w.counts.dead)) }
                }
                @if !w.running.is_empty() {
                    table {
                        thead { tr { th { "Running" } th { "Task" } th { "Queue" } th { "For" } } }
                        tbody { @for r in &w.running { tr {
                            td { a.id href={ "/tasks/" (r.id) } { (r.id) } }
                            td { (r.name) }
                            td { (r.queue) }
                            td {
                                (age(std::time::Duration::from_millis(now.saturating_sub(r.started_at))))
                                @if r.stuck { " " span.tag.stuck { "stuck" } }
                            }
                        } } }
                    }
                }
            }
        }
    };
    frame(&app, "Workers", Section::Workers, body).into_response()
}
