//! `/tasks/{id}`: one task by id, in any state the backend keeps, with its arguments decoded,
//! its error history, progress and result, and the actions its state allows. `/tasks?id=`
//! is the header's search.

use std::sync::Arc;

use asynctasq_core::StoredResult;
use asynctasq_core::driver::{Capability, TaskRecord, TaskState};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::task_id;
use crate::layout::{Section, age, error_page, flash, page as frame, state_tag, time};
use crate::{App, driver_failed};

#[derive(Deserialize)]
pub(crate) struct FindParams {
    id: Option<String>,
}

/// The search: to the task's page, or why not.
pub(crate) async fn find(State(app): State<Arc<App>>, Query(params): Query<FindParams>) -> Response {
    let raw = params.id.unwrap_or_default();
    match task_id(&app, &raw) {
        Ok(id) => Redirect::to(&format!("/tasks/{id}")).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub(crate) struct Params {
    done: Option<String>,
}

/// A task.
pub(crate) async fn page(State(app): State<Arc<App>>, Path(raw): Path<String>, Query(params): Query<Params>) -> Response {
    let id = match task_id(&app, &raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let driver = app.driver.as_ref();
    if !driver.supports(Capability::TaskLookup) {
        let why = format!("The {} backend cannot look a task up by id: it keeps no index of the messages it holds.", driver.name());
        return error_page(&app, StatusCode::NOT_IMPLEMENTED, &why);
    }
    let record = match driver.find(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let why = format!(
                "No task {id} is stored: it never existed, or it succeeded (or was cancelled, or died) and its record's time to live has passed, or it was deleted."
            );
            return error_page(&app, StatusCode::NOT_FOUND, &why);
        }
        Err(e) => return driver_failed(&app, "looking the task up", &e),
    };
    let body = html! {
        h1 { "Task " code { (id) } " " (state_tag(record.state)) }
        (flash(params.done.as_deref()))
        (actions(&app, &record))
        (fields(&record))
        (details(&record))
    };
    frame(&app, &format!("Task {id}"), Section::Task, body).into_response()
}

fn actions(app: &App, r: &TaskRecord) -> Markup {
    let driver = app.driver.as_ref();
    let live = matches!(r.state, TaskState::Ready | TaskState::Scheduled | TaskState::Leased);
    html! {
        div.actions {
            @if r.state == TaskState::Dead {
                form method="post" action={ "/tasks/" (r.id) "/retry" } { button type="submit" { "Retry" } }
            }
            @if live && driver.supports(Capability::Cancel) && !r.cancel_requested {
                form method="post" action={ "/tasks/" (r.id) "/cancel" } { button type="submit" { "Cancel" } }
            }
            @if r.state != TaskState::Leased && driver.supports(Capability::Browse) {
                form method="post" action={ "/tasks/" (r.id) "/delete" } { button.danger type="submit" { "Delete" } }
            }
            a href={ "/queues/" (r.queue) } { "Queue " (r.queue) }
        }
    }
}

fn fields(r: &TaskRecord) -> Markup {
    let at_label = match r.state {
        TaskState::Ready | TaskState::Scheduled => "Due",
        TaskState::Leased => "Lease until",
        TaskState::Dead => "Died",
        TaskState::Succeeded => "Succeeded",
        _ => "Ended",
    };
    let envelope = r.envelope.as_ref().ok();
    html! {
        dl.fields {
            dt { "Task" } dd { (envelope.map(|e| e.name.as_str()).unwrap_or("(undecodable)")) }
            dt { "Queue" } dd { a href={ "/queues/" (r.queue) } { (r.queue) } }
            dt { "Attempt" } dd { (r.attempt) @if let Some(e) = envelope { " of " (e.max_attempts) } }
            dt { (at_label) } dd { (time(r.at)) }
            @if let Some(e) = envelope {
                dt { "Created" } dd { (time(e.created_at)) }
                @if let Some(t) = e.timeout() { dt { "Timeout" } dd { (age(t)) } }
                @if let Some(k) = &e.key { dt { "Key" } dd { code { (k) } } }
            }
            @if let Some(s) = r.started_at { dt { "Started" } dd { (time(s)) } }
            @if let Some(h) = &r.holder { dt { "Held by" } dd { code { (h) } } }
            @if r.cancel_requested { dt { "Cancel" } dd.warn { "requested; its worker stops it at its next lease renewal" } }
            @if let Some(p) = &r.progress {
                dt { "Progress" } dd {
                    progress max="1" value=(p.fraction) { (format!("{:.0}%", p.fraction * 100.0)) }
                    " " (format!("{:.0}%", p.fraction * 100.0)) " " (p.message) " (" (time(p.at)) ")"
                }
            }
        }
    }
}

fn details(r: &TaskRecord) -> Markup {
    let args = match &r.envelope {
        Ok(e) => match rmp_serde::from_slice::<serde_json::Value>(&e.payload) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(err) => format!("(the arguments do not decode: {err})"),
        },
        Err(err) => format!("(the stored envelope does not decode: {err})"),
    };
    let result = r.result.as_deref().map(|bytes| match StoredResult::decode(bytes) {
        Ok(stored) => serde_json::to_string_pretty(&stored.to_json()).unwrap_or_default(),
        Err(err) => format!("(the result does not decode: {err})"),
    });
    html! {
        h2 { "Arguments" }
        pre { (args) }
        @if let Some(result) = result { h2 { "Result" } pre { (result) } }
        @if let Some(e) = &r.last_error { h2 { "Last error" } pre.bad { (e) } }
        @if !r.errors.is_empty() {
            h2 { "Error history" }
            table {
                thead { tr { th.n { "Attempt" } th { "When" } th { "Worker" } th { "Error" } } }
                tbody {
                    @for e in &r.errors {
                        tr { td.n { (e.attempt) } td { (time(e.at)) } td { code { (e.worker.as_deref().unwrap_or("-")) } } td { pre { (e.error) } } }
                    }
                }
            }
        }
        @if let Ok(e) = &r.envelope && !e.headers.is_empty() {
            h2 { "Headers" }
            dl.fields { @for (k, v) in &e.headers { dt { (k) } dd { code { (v) } } } }
        }
    }
}
