//! `/`: every queue's counts, age, totals and throughput, refreshed in place every two
//! seconds (`/fragments/queues`).

use std::sync::Arc;

use asynctasq_core::driver::{Capability, QueueStats};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::layout::{Section, absent, age, count, counted, flash, page as frame, sparkline};
use crate::{App, driver_failed};

#[derive(Deserialize)]
pub(crate) struct Params {
    done: Option<String>,
}

/// The overview.
pub(crate) async fn page(State(app): State<Arc<App>>, Query(params): Query<Params>) -> Response {
    let table = match queues(&app).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let driver = app.driver.as_ref();
    let body = html! {
        h1 { "Queues" }
        (flash(params.done.as_deref()))
        (table)
        @if !driver.supports(Capability::ExactStats) {
            (absent(&format!("The {} backend counts approximately: its numbers are the broker's estimates.", driver.name())))
        }
        @if !driver.supports(Capability::Totals) {
            (absent(&format!("The {} backend keeps no succeeded/failed totals, so there is no throughput line.", driver.name())))
        }
    };
    frame(&app, "Queues", Section::Overview, body).into_response()
}

/// The queue table alone, for the refresh.
pub(crate) async fn fragment(State(app): State<Arc<App>>) -> Response {
    match queues(&app).await {
        Ok(t) => t.into_response(),
        Err(r) => r,
    }
}

async fn queues(app: &App) -> Result<Markup, Response> {
    let driver = app.driver.as_ref();
    let reading = crate::sampler::latest(app).await.map_err(|e| driver_failed(app, "reading the queues' counts", &e))?;
    let paused = driver.paused().await.map_err(|e| driver_failed(app, "reading the paused queues", &e))?;
    let rows: &[(String, QueueStats)] = &reading.queues;
    let totals = driver.supports(Capability::Totals);
    Ok(html! {
        div #queues hx-get="/fragments/queues" hx-trigger="every 2s" hx-swap="outerHTML" {
            p.muted { "Counted " (age(reading.at.elapsed())) " ago." }
            @if rows.is_empty() {
                p.muted { "No queues yet: dispatch a task and its queue appears here." }
            } @else {
                table {
                    thead { tr {
                        th { "Queue" } th.n { "Ready" } th.n { "Scheduled" } th.n { "Leased" } th.n { "Dead" }
                        th.n { "Oldest ready" }
                        @if totals { th.n { "Succeeded" } th.n { "Failed" } th { "Throughput" } }
                    } }
                    tbody {
                        @for (name, s) in rows {
                            tr {
                                td {
                                    a href={ "/queues/" (name) } { (name) }
                                    @if paused.contains(name) { " " span.tag.paused { "paused" } }
                                }
                                td.n { a href={ "/queues/" (name) "?state=ready" } { (counted(s, s.ready)) } }
                                td.n { a href={ "/queues/" (name) "?state=scheduled" } { (counted(s, s.scheduled)) } }
                                td.n { a href={ "/queues/" (name) "?state=leased" } { (counted(s, s.leased)) } }
                                td.n { a href={ "/dead?queue=" (name) } class=[(s.dead > 0).then_some("bad")] { (counted(s, s.dead)) } }
                                td.n { (s.oldest_ready_age.filter(|_| s.ready > 0).map(age).unwrap_or_else(|| "-".into())) }
                                @if totals {
                                    td.n { (s.totals.map(|t| count(t.succeeded)).unwrap_or_default()) }
                                    td.n { (s.totals.map(|t| count(t.failed)).unwrap_or_default()) }
                                    td { (sparkline(&app.history.rates(name))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
