//! `/jobs/{n}`: how far a bulk action has come, refreshed every second until it ends.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::App;
use crate::layout::{Section, count, error_page, page as frame};

/// A bulk action's progress.
pub(crate) async fn page(State(app): State<Arc<App>>, Path(job): Path<u64>) -> Response {
    let Some(p) = app.jobs.get(job) else {
        return error_page(&app, StatusCode::NOT_FOUND, "No such bulk action (they are kept until the dashboard restarts).");
    };
    let body = html! {
        div #job hx-get={ "/jobs/" (job) } hx-trigger=[p.ended.is_none().then_some("every 1s")] hx-select="#job" hx-swap="outerHTML" {
            h1 { (p.what) }
            p { (count(p.done)) " done, " (count(p.scanned)) " examined." }
            @match &p.ended {
                None => p.muted { "Running…" },
                Some(Ok(())) => p.note { "Done. " a href=(p.back) { "Back" } },
                Some(Err(why)) => p.note.bad { "Stopped: " (why) ". " a href=(p.back) { "Back" } },
            }
        }
    };
    frame(&app, "Bulk action", Section::Dead, body).into_response()
}
