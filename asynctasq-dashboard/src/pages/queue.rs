//! `/queues/{queue}`: one queue's counts, its limits, its tasks by state a page at a time,
//! pause and resume, and the flush of a state behind a page that shows what it deletes.

use std::sync::Arc;

use asynctasq_core::driver::{Capability, TaskRecord, TaskState};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{PAGE, queue_name};
use crate::layout::{Section, absent, count, flash, page as frame, state_name, state_tag, time};
use crate::{App, driver_failed};

#[derive(Deserialize)]
pub(crate) struct Params {
    state: Option<String>,
    page: Option<usize>,
    done: Option<String>,
}

/// The states a queue's page lists, as their links spell them.
const STATES: [TaskState; 6] =
    [TaskState::Ready, TaskState::Scheduled, TaskState::Leased, TaskState::Dead, TaskState::Succeeded, TaskState::Cancelled];

pub(crate) fn parse_state(s: &str) -> Option<TaskState> {
    STATES.into_iter().find(|st| state_name(*st) == s)
}

/// A queue.
pub(crate) async fn page(State(app): State<Arc<App>>, Path(queue): Path<String>, Query(params): Query<Params>) -> Response {
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let driver = app.driver.as_ref();
    let state = params.state.as_deref().and_then(parse_state).unwrap_or(TaskState::Ready);
    let page_no = params.page.unwrap_or(0);
    let (stats, counted) = match counts(&app, &queue).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let paused = match driver.paused().await {
        Ok(p) => p.contains(&queue),
        Err(e) => return driver_failed(&app, "reading the paused queues", &e),
    };
    let limits = if driver.supports(Capability::QueueLimits) {
        match driver.limits().await {
            Ok(all) => all.into_iter().find(|(q, _)| *q == queue).map(|(_, l)| l),
            Err(e) => return driver_failed(&app, "reading the queue's limits", &e),
        }
    } else {
        None
    };
    let listing = if driver.supports(Capability::Browse) {
        match driver.list(&queue, state, page_no * PAGE, PAGE + 1).await {
            Ok(tasks) => listing(&queue, state, page_no, tasks),
            Err(e) => return driver_failed(&app, "listing the queue's tasks", &e),
        }
    } else {
        absent(&format!(
            "The {} backend hands its messages out and cannot page through them; the counts above are what it tells.",
            driver.name()
        ))
    };
    let can_pause = driver.supports(Capability::PauseQueues);
    let body = html! {
        h1 { "Queue " code { (queue) } @if paused { " " span.tag.paused { "paused" } } }
        (flash(params.done.as_deref()))
        dl.fields {
            dt { "Counted" } dd { (counted) }
            dt { "Ready" } dd { (crate::layout::counted(&stats, stats.ready)) }
            dt { "Scheduled" } dd { (crate::layout::counted(&stats, stats.scheduled)) }
            dt { "Leased" } dd { (crate::layout::counted(&stats, stats.leased)) }
            dt { "Dead" } dd { a href={ "/dead?queue=" (queue) } { (crate::layout::counted(&stats, stats.dead)) } }
            @if let Some(t) = stats.totals {
                dt { "Succeeded" } dd { (count(t.succeeded)) }
                dt { "Failed" } dd { (count(t.failed)) }
            }
            @if let Some(l) = &limits {
                dt { "Limits" } dd { (limits_text(l)) }
            }
        }
        div.actions {
            @if can_pause {
                @if paused {
                    form method="post" action={ "/queues/" (queue) "/resume" } { button type="submit" { "Resume" } }
                } @else {
                    form method="post" action={ "/queues/" (queue) "/pause" } { button type="submit" { "Pause" } }
                }
            } @else {
                span.muted { "The " (driver.name()) " backend cannot pause a queue." }
            }
            a href={ "/queues/" (queue) "/flush?state=ready" } { "Flush ready…" }
            @if driver.supports(Capability::PurgeScheduled) {
                a href={ "/queues/" (queue) "/flush?state=scheduled" } { "Flush scheduled…" }
            }
            @if driver.supports(Capability::ListDead) {
                a href={ "/queues/" (queue) "/flush?state=dead" } { "Flush dead…" }
            }
        }
        (listing)
    };
    frame(&app, &format!("Queue {queue}"), Section::Overview, body).into_response()
}

/// The queue's counts from the latest reading (a queue new since it is counted now), and how
/// long ago they were counted.
async fn counts(app: &App, queue: &str) -> Result<(asynctasq_core::QueueStats, String), Response> {
    let reading = crate::sampler::latest(app).await.map_err(|e| driver_failed(app, "reading the queues' counts", &e))?;
    if let Some(s) = reading.of(queue) {
        return Ok((*s, format!("{} ago", crate::layout::age(reading.at.elapsed()))));
    }
    let stats = app.driver.stats(queue).await.map_err(|e| driver_failed(app, "reading the queue's counts", &e))?;
    Ok((stats, "now".into()))
}

fn limits_text(l: &asynctasq_core::QueueLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.max_leased {
        parts.push(format!("at most {n} leased"));
    }
    if let Some(n) = l.per_key {
        parts.push(format!("at most {n} leased per key"));
    }
    if let Some(r) = &l.rate {
        parts.push(format!("rate {r}"));
    }
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

/// A page of tasks in `state`, with the links to the other states and pages (`tasks` holds one
/// more than a page when there is a next one).
fn listing(queue: &str, state: TaskState, page_no: usize, mut tasks: Vec<TaskRecord>) -> Markup {
    let more = tasks.len() > PAGE;
    tasks.truncate(PAGE);
    let at_label = match state {
        TaskState::Ready | TaskState::Scheduled => "Due",
        TaskState::Leased => "Lease until",
        TaskState::Dead => "Died",
        _ => "Ended",
    };
    html! {
        h2 { "Tasks" }
        p.states {
            @for s in STATES {
                a href={ "/queues/" (queue) "?state=" (state_name(s)) } class=[(s == state).then_some("here")] { (state_name(s)) }
            }
        }
        @if tasks.is_empty() {
            p.muted { "No " (state_name(state)) " tasks" @if page_no > 0 { " on this page" } "." }
        } @else {
            table {
                thead { tr { th { "Id" } th { "Task" } th { "State" } th.n { "Attempt" } th { (at_label) } th { "Last error" } } }
                tbody {
                    @for t in &tasks {
                        tr {
                            td { a.id href={ "/tasks/" (t.id) } { (t.id) } }
                            td { (t.envelope.as_ref().map(|e| e.name.as_str()).unwrap_or("(undecodable)")) }
                            td { (state_tag(t.state)) }
                            td.n { (t.attempt) }
                            td { (time(t.at)) }
                            td.bad { (t.last_error.as_deref().map(short).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        p.pager {
            @if page_no > 0 { a href={ "/queues/" (queue) "?state=" (state_name(state)) "&page=" (page_no - 1) } { "← Previous" } }
            @if more { a href={ "/queues/" (queue) "?state=" (state_name(state)) "&page=" (page_no + 1) } { "Next →" } }
        }
    }
}

/// The first line of an error, at most 120 characters.
pub(crate) fn short(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    if line.chars().count() > 120 { format!("{}…", line.chars().take(120).collect::<String>()) } else { line.to_owned() }
}

#[derive(Deserialize)]
pub(crate) struct FlushParams {
    state: Option<String>,
}

/// What a flush of a state would delete, and the button that does it.
pub(crate) async fn confirm_flush(State(app): State<Arc<App>>, Path(queue): Path<String>, Query(params): Query<FlushParams>) -> Response {
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let state =
        params.state.as_deref().and_then(parse_state).filter(|s| matches!(s, TaskState::Ready | TaskState::Scheduled | TaskState::Dead));
    let Some(state) = state else {
        return crate::layout::error_page(
            &app,
            axum::http::StatusCode::BAD_REQUEST,
            "A flush deletes the ready, scheduled or dead tasks of a queue.",
        );
    };
    let (stats, counted) = match counts(&app, &queue).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let n = match state {
        TaskState::Ready => stats.ready,
        TaskState::Scheduled => stats.scheduled,
        _ => stats.dead,
    };
    let body = html! {
        h1 { "Flush the " (state_name(state)) " tasks of " code { (queue) } "?" }
        p.note.bad { "This deletes " strong { (count(n)) } " " (state_name(state)) " tasks (counted " (counted) "; tasks arriving meanwhile go too). They cannot be brought back." }
        div.actions {
            form method="post" action={ "/queues/" (queue) "/flush" } {
                input type="hidden" name="state" value=(state_name(state));
                input type="hidden" name="counted" value=(n);
                button.danger type="submit" { "Delete " (count(n)) " tasks" }
            }
            a href={ "/queues/" (queue) } { "Cancel" }
        }
    };
    frame(&app, "Flush", Section::Overview, body).into_response()
}
