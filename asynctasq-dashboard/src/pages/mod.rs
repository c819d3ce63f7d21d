//! The pages, one file each; what they share: the checks of what a URL names.

pub(crate) mod dead;
pub(crate) mod job;
pub(crate) mod overview;
pub(crate) mod queue;
pub(crate) mod schedules;
pub(crate) mod task;
pub(crate) mod workers;

use std::sync::Arc;

use asynctasq_core::TaskId;
use asynctasq_core::envelope::validate_queue_name;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::App;
use crate::layout::error_page;

/// Tasks per page of a listing.
pub(crate) const PAGE: usize = 50;

/// Any path no route takes.
pub(crate) async fn not_found(State(app): State<Arc<App>>) -> Response {
    error_page(&app, StatusCode::NOT_FOUND, "No such page.")
}

/// `queue` when it is a valid queue name; else the page saying why.
pub(crate) fn queue_name(app: &App, queue: &str) -> Result<(), Response> {
    validate_queue_name(queue).map_err(|e| error_page(app, StatusCode::BAD_REQUEST, &e.to_string()))
}

/// The task id `raw` names; else the page saying why.
pub(crate) fn task_id(app: &App, raw: &str) -> Result<TaskId, Response> {
    raw.trim().parse().map_err(|_| {
        error_page(app, StatusCode::BAD_REQUEST, "That is not a task id (a UUID such as 0190f5c4-7b4e-7cc3-9d4e-1f2a3b4c5d6e).")
    })
}
