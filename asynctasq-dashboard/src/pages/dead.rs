//! `/dead`: the dead letters of a queue, a page at a time past any count, filtered by task name
//! and error text, with retry and delete of the selected ones or of all a filter matches.
//!
//! # Paging past any count
//! A page is read from a cursor (how many dead tasks of the queue, oldest first, lie before
//! it), not from a page number capped somewhere: the link to the next page carries the cursor
//! where this one stopped. A filter is applied while scanning: one page view reads at most
//! [`SCAN`] dead tasks, for about [`SCAN_TIME`], then shows what it found with a link to scan on, so a rare match among
//! a million dead tasks costs the operator clicks, never a page that times out.

use std::sync::Arc;

use asynctasq_core::driver::{Capability, Driver, TaskRecord};
use asynctasq_core::{DriverError, TaskId};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::queue::short;
use super::{PAGE, queue_name};
use crate::layout::{Section, absent, count, flash, page as frame, time};
use crate::{App, driver_failed};

/// Dead tasks read per page view at most, when a filter skips most of them.
pub(crate) const SCAN: usize = 5_000;
/// How long one page view reads on, when a filter skips most of them: batches are read until
/// this has passed (the first always), so a page answers in about this long on any backend.
pub(crate) const SCAN_TIME: std::time::Duration = std::time::Duration::from_millis(30);
/// Dead tasks read per call while scanning.
const BATCH: usize = 500;

/// What the dead-letter filter keeps: tasks of this queue whose name contains `task` and whose
/// error contains `error` (case-insensitive; empty matches all).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Filter {
    pub(crate) queue: Option<String>,
    #[serde(default)]
    pub(crate) task: String,
    #[serde(default)]
    pub(crate) error: String,
}

impl Filter {
    /// Whether it keeps every dead task of its queue.
    pub(crate) fn is_all(&self) -> bool {
        self.task.trim().is_empty() && self.error.trim().is_empty()
    }

    /// Whether it keeps `r`.
    pub(crate) fn keeps(&self, r: &TaskRecord) -> bool {
        let has = |hay: &str, needle: &str| needle.trim().is_empty() || hay.to_lowercase().contains(&needle.trim().to_lowercase());
        let name = r.envelope.as_ref().map(|e| e.name.as_str()).unwrap_or("");
        has(name, &self.task) && has(r.last_error.as_deref().unwrap_or(""), &self.error)
    }

    /// The filter as a query string (with `extra` pairs after it).
    pub(crate) fn query(&self, extra: &[(&str, String)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(queue) = &self.queue {
            q.append_pair("queue", queue);
        }
        if !self.task.is_empty() {
            q.append_pair("task", &self.task);
        }
        if !self.error.is_empty() {
            q.append_pair("error", &self.error);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        q.finish()
    }
}

/// Up to `want` dead tasks of `queue` that `filter` keeps, read from `cursor` on
/// ([`Driver::dead_after`]), reading at most `bound` (and for no longer than [`SCAN_TIME`] past
/// the first batch); and the cursor to go on from (`None` at the end).
pub(crate) async fn scan(
    driver: &dyn Driver,
    queue: &str,
    filter: &Filter,
    cursor: Option<String>,
    want: usize,
    bound: usize,
) -> Result<(Vec<TaskRecord>, Option<String>), DriverError> {
    // Unfiltered, a page is all there is to read.
    let size = if filter.is_all() { want } else { BATCH };
    let (mut kept, mut at, mut read, started) = (Vec::new(), cursor, 0, std::time::Instant::now());
    while read < bound && (read == 0 || started.elapsed() < SCAN_TIME) {
        let n = size.min(bound - read);
        let page = driver.dead_after(queue, at.as_deref(), n).await?;
        read += n;
        let (len, end) = (page.tasks.len(), page.next.is_none());
        for (i, (r, past)) in page.tasks.into_iter().zip(page.cursors).enumerate() {
            if filter.keeps(&r) {
                kept.push(r);
                if kept.len() == want {
                    // The page is full: the next one goes on just past its last task (none
                    // when that was the listing's last).
                    return Ok((kept, (!(end && i + 1 == len)).then_some(past)));
                }
            }
        }
        at = page.next;
        if at.is_none() {
            break;
        }
    }
    Ok((kept, at))
}

#[derive(Deserialize)]
pub(crate) struct Params {
    #[serde(flatten)]
    filter: Filter,
    cursor: Option<String>,
    done: Option<String>,
}

/// The dead letters: of every queue in summary, or of one.
pub(crate) async fn page(State(app): State<Arc<App>>, Query(params): Query<Params>) -> Response {
    let driver = app.driver.as_ref();
    if !driver.supports(Capability::ListDead) {
        let why = format!("The {} backend cannot list its dead letters without consuming them.", driver.name());
        let body = html! { h1 { "Dead letters" } (absent(&why)) };
        return frame(&app, "Dead letters", Section::Dead, body).into_response();
    }
    let Some(queue) = params.filter.queue.clone().filter(|q| !q.is_empty()) else {
        return summary(&app, params.done.as_deref()).await;
    };
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let listing = if driver.supports(Capability::Browse) {
        match scan(driver, &queue, &params.filter, params.cursor.clone(), PAGE, SCAN).await {
            Ok((tasks, next)) => listing(&params.filter, params.cursor.is_some(), &tasks, next),
            Err(e) => return driver_failed(&app, "listing the dead tasks", &e),
        }
    } else {
        match driver.dead(&queue, PAGE).await {
            Ok(dead) => html! {
                (absent(&format!("The {} backend lists its oldest dead letters only; it cannot page or filter them.", driver.name())))
                table {
                    thead { tr { th { "Id" } th { "Task" } th.n { "Attempt" } th { "Died" } th { "Error" } } }
                    tbody { @for d in &dead { tr {
                        td.id { (d.id) }
                        td { (d.envelope.as_ref().map(|e| e.name.as_str()).unwrap_or("(undecodable)")) }
                        td.n { (d.attempt) } td { (time(d.dead_at)) } td.bad { (short(&d.error)) }
                    } } }
                }
            },
            Err(e) => return driver_failed(&app, "listing the dead tasks", &e),
        }
    };
    let f = &params.filter;
    let body = html! {
        h1 { "Dead letters of " code { (queue) } }
        (flash(params.done.as_deref()))
        form.filters method="get" action="/dead" {
            input type="hidden" name="queue" value=(queue);
            input type="search" name="task" value=(f.task) placeholder="task name contains" aria-label="task name contains";
            input type="search" name="error" value=(f.error) placeholder="error contains" aria-label="error contains";
            button type="submit" { "Filter" }
            @if !f.is_all() { a href={ "/dead?queue=" (queue) } { "Clear" } }
        }
        (listing)
    };
    frame(&app, &format!("Dead letters of {queue}"), Section::Dead, body).into_response()
}

/// Every queue with its dead count.
async fn summary(app: &App, done: Option<&str>) -> Response {
    let reading = match crate::sampler::latest(app).await {
        Ok(r) => r,
        Err(e) => return driver_failed(app, "reading the queues' counts", &e),
    };
    let rows: Vec<(&String, u64)> = reading.queues.iter().map(|(q, s)| (q, s.dead)).collect();
    let body = html! {
        h1 { "Dead letters" }
        (flash(done))
        @if rows.is_empty() { p.muted { "No queues yet." } } @else {
            table {
                thead { tr { th { "Queue" } th.n { "Dead" } } }
                tbody { @for (q, n) in &rows { tr {
                    td { a href={ "/dead?queue=" (q) } { (q) } }
                    td.n class=[(*n > 0).then_some("bad")] { (count(*n)) }
                } } }
            }
            p.muted { "Counted " (crate::layout::age(reading.at.elapsed())) " ago." }
        }
    };
    frame(app, "Dead letters", Section::Dead, body).into_response()
}

fn listing(filter: &Filter, paged: bool, tasks: &[TaskRecord], next: Option<String>) -> Markup {
    let queue = filter.queue.clone().unwrap_or_default();
    let scope = if filter.is_all() { "every dead task of the queue".to_owned() } else { "every dead task the filter matches".to_owned() };
    html! {
        form #dead-form method="post" {
            input type="hidden" name="queue" value=(queue);
            input type="hidden" name="task" value=(filter.task);
            input type="hidden" name="error" value=(filter.error);
            div.actions {
                button type="submit" formaction="/dead/retry" name="scope" value="selected" { "Retry selected" }
                button.danger type="submit" formaction="/dead/delete" name="scope" value="selected" { "Delete selected" }
                a href={ "/dead/confirm?" (filter.query(&[("action", "retry".into())])) } title=(scope) { "Retry all matching…" }
                a href={ "/dead/confirm?" (filter.query(&[("action", "delete".into())])) } title=(scope) { "Delete all matching…" }
            }
            @if tasks.is_empty() {
                p.muted { "No dead tasks" @if !filter.is_all() { " match the filter" } @if paged { " from here on" } "." }
            } @else {
                table {
                    thead { tr { th { "" } th { "Id" } th { "Task" } th.n { "Attempt" } th { "Died" } th { "Error" } } }
                    tbody {
                        @for t in tasks {
                            tr {
                                td { input type="checkbox" name="id" value=(t.id) aria-label={ "select " (t.id) }; }
                                td { a.id href={ "/tasks/" (t.id) } { (t.id) } }
                                td { (t.envelope.as_ref().map(|e| e.name.as_str()).unwrap_or("(undecodable)")) }
                                td.n { (t.attempt) }
                                td { (time(t.at)) }
                                td.bad { (t.last_error.as_deref().map(short).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        p.pager {
            @if paged { a href={ "/dead?" (filter.query(&[])) } { "⇤ Oldest" } }
            @if let Some(n) = next { a href={ "/dead?" (filter.query(&[("cursor", n)])) } { "Next →" } }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ConfirmParams {
    #[serde(flatten)]
    filter: Filter,
    action: String,
}

/// What a retry or delete of every dead task a filter matches would touch, and the button
/// that does it.
pub(crate) async fn confirm(State(app): State<Arc<App>>, Query(params): Query<ConfirmParams>) -> Response {
    let Some(queue) = params.filter.queue.clone() else {
        return crate::layout::error_page(&app, axum::http::StatusCode::BAD_REQUEST, "Which queue's dead tasks? (`queue`)");
    };
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let retry = match params.action.as_str() {
        "retry" => true,
        "delete" => false,
        _ => return crate::layout::error_page(&app, axum::http::StatusCode::BAD_REQUEST, "`action` is `retry` or `delete`."),
    };
    let dead = match crate::sampler::latest(&app).await {
        Ok(r) => r.of(&queue).map_or(0, |s| s.dead),
        Err(e) => return driver_failed(&app, "reading the queue's counts", &e),
    };
    let f = &params.filter;
    let verb = if retry { "Retry" } else { "Delete" };
    let body = html! {
        h1 { (verb) " dead tasks of " code { (queue) } "?" }
        @if f.is_all() {
            p class=(if retry { "note" } else { "note bad" }) {
                "This " (if retry { "moves" } else { "deletes" }) " every dead task of the queue: " strong { (count(dead)) } " as counted now."
                @if !retry { " They cannot be brought back." }
            }
        } @else {
            p class=(if retry { "note" } else { "note bad" }) {
                "This " (if retry { "moves" } else { "deletes" }) " every dead task whose task name contains “" (f.task) "” and whose error contains “" (f.error)
                "”, out of " (count(dead)) " dead tasks, a batch at a time, with its progress on the next page."
            }
        }
        div.actions {
            form method="post" action=(if retry { "/dead/retry" } else { "/dead/delete" }) {
                input type="hidden" name="queue" value=(queue);
                input type="hidden" name="task" value=(f.task);
                input type="hidden" name="error" value=(f.error);
                input type="hidden" name="scope" value="all";
                button type="submit" class=[(!retry).then_some("danger")] { (verb) " all matching" }
            }
            a href={ "/dead?" (f.query(&[])) } { "Cancel" }
        }
    };
    frame(&app, "Confirm", Section::Dead, body).into_response()
}

/// The ids a form selected (repeated `id` fields), or why one is not an id.
pub(crate) fn selected(pairs: &[(String, String)]) -> Result<Vec<TaskId>, String> {
    pairs.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.parse().map_err(|_| format!("`{v}` is not a task id"))).collect()
}
