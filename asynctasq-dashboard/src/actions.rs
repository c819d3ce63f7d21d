//! What an operator does from the pages: each a `POST` to a plain route, answered with a
//! redirect (303) to the page that shows the outcome, so a script can drive every one of them
//! (with a bearer token, see [`crate::access`]).

use std::sync::Arc;

use asynctasq_core::driver::{CancelOutcome, Capability, DeadSelector, DeleteOutcome, TaskState, Waiting};
use asynctasq_core::{Client, DEFAULT_FAILURE_TTL, Overrides, TaskId};
use axum::extract::{Path, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::layout::error_page;
use crate::pages::dead::{Filter, selected};
use crate::pages::queue::parse_state;
use crate::pages::{queue_name, task_id};
use crate::{App, driver_failed};

/// The fields of a posted form, repeated ones kept.
fn fields(form: &RawForm) -> Vec<(String, String)> {
    form_urlencoded::parse(&form.0).into_owned().collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The redirect after an action that changed something; the counts are read again at once.
fn changed(app: &App, to: &str) -> Response {
    app.history.refresh();
    Redirect::to(to).into_response()
}

fn bad(app: &App, why: &str) -> Response {
    error_page(app, StatusCode::BAD_REQUEST, why)
}

/// `POST /queues/{queue}/pause`.
pub(crate) async fn pause(State(app): State<Arc<App>>, Path(queue): Path<String>) -> Response {
    set_paused(&app, &queue, true).await
}

/// `POST /queues/{queue}/resume`.
pub(crate) async fn resume(State(app): State<Arc<App>>, Path(queue): Path<String>) -> Response {
    set_paused(&app, &queue, false).await
}

async fn set_paused(app: &App, queue: &str, paused: bool) -> Response {
    if let Err(r) = queue_name(app, queue) {
        return r;
    }
    if !app.driver.supports(Capability::PauseQueues) {
        return bad(app, &format!("The {} backend cannot pause a queue.", app.driver.name()));
    }
    match app.driver.set_paused(queue, paused).await {
        Ok(()) => changed(app, &format!("/queues/{queue}?done={}", if paused { "paused" } else { "resumed" })).into_response(),
        Err(e) => driver_failed(app, if paused { "pausing the queue" } else { "resuming the queue" }, &e),
    }
}

/// `POST /queues/{queue}/flush` with `state` (ready, scheduled or dead).
pub(crate) async fn flush(State(app): State<Arc<App>>, Path(queue): Path<String>, form: RawForm) -> Response {
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let pairs = fields(&form);
    let driver = app.driver.as_ref();
    let done = match field(&pairs, "state").and_then(parse_state) {
        Some(TaskState::Ready) => driver.purge_waiting(&queue, Waiting::Ready).await,
        Some(TaskState::Scheduled) if driver.supports(Capability::PurgeScheduled) => driver.purge_waiting(&queue, Waiting::Scheduled).await,
        Some(TaskState::Dead) => driver.purge_dead(&queue).await,
        _ => {
            return bad(
                &app,
                "A flush deletes the ready, scheduled or dead tasks of a queue (scheduled ones where the backend can reach them).",
            );
        }
    };
    match done {
        Ok(n) => {
            tracing::info!(queue, deleted = n, "dashboard: flushed");
            changed(&app, &format!("/queues/{queue}?done=flushed")).into_response()
        }
        Err(e) => driver_failed(&app, "flushing", &e),
    }
}

/// The task `raw` names, as stored; else the page saying why.
async fn stored(app: &App, raw: &str) -> Result<asynctasq_core::TaskRecord, Response> {
    let id = task_id(app, raw)?;
    if !app.driver.supports(Capability::TaskLookup) {
        return Err(bad(app, &format!("The {} backend cannot look a task up by id.", app.driver.name())));
    }
    match app.driver.find(id).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error_page(app, StatusCode::NOT_FOUND, &format!("No task {id} is stored."))),
        Err(e) => Err(driver_failed(app, "looking the task up", &e)),
    }
}

/// `POST /tasks/{id}/retry`: a dead task back to its queue, ready now.
pub(crate) async fn retry(State(app): State<Arc<App>>, Path(raw): Path<String>) -> Response {
    let record = match stored(&app, &raw).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if record.state != TaskState::Dead {
        return error_page(&app, StatusCode::CONFLICT, "Only a dead task can be retried; this one is not dead.");
    }
    match app.driver.requeue_dead(&record.queue, DeadSelector::Ids(vec![record.id])).await {
        Ok(0) => error_page(&app, StatusCode::CONFLICT, "The task was no longer dead (retried or deleted meanwhile)."),
        Ok(_) => changed(&app, &format!("/tasks/{}?done=retried", record.id)).into_response(),
        Err(e) => driver_failed(&app, "retrying the task", &e),
    }
}

/// `POST /tasks/{id}/cancel`.
pub(crate) async fn cancel(State(app): State<Arc<App>>, Path(raw): Path<String>) -> Response {
    let id = match task_id(&app, &raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if !app.driver.supports(Capability::Cancel) {
        return bad(&app, &format!("The {} backend cannot cancel a task (it cannot reach one it handed out).", app.driver.name()));
    }
    match app.driver.cancel(id, DEFAULT_FAILURE_TTL).await {
        Ok(CancelOutcome::Removed | CancelOutcome::Requested) => changed(&app, &format!("/tasks/{id}?done=cancelled")).into_response(),
        Ok(CancelOutcome::AlreadyFinished) => error_page(&app, StatusCode::CONFLICT, "The task had already finished."),
        Ok(_) => error_page(&app, StatusCode::NOT_FOUND, &format!("No task {id} is stored.")),
        Err(e) => driver_failed(&app, "cancelling the task", &e),
    }
}

/// `POST /tasks/{id}/delete`: any task but a leased one.
pub(crate) async fn delete(State(app): State<Arc<App>>, Path(raw): Path<String>) -> Response {
    let record = match stored(&app, &raw).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if !app.driver.supports(Capability::Browse) {
        return bad(&app, &format!("The {} backend cannot delete one task.", app.driver.name()));
    }
    match app.driver.delete(record.id).await {
        Ok(DeleteOutcome::Deleted) if record.state == TaskState::Dead => {
            changed(&app, &format!("/dead?queue={}&done=deleted", record.queue)).into_response()
        }
        Ok(DeleteOutcome::Deleted) => changed(&app, &format!("/queues/{}?done=deleted", record.queue)).into_response(),
        Ok(DeleteOutcome::Leased) => error_page(&app, StatusCode::CONFLICT, "The task is running (leased): cancel it instead."),
        Ok(_) => error_page(&app, StatusCode::NOT_FOUND, "The task was no longer stored."),
        Err(e) => driver_failed(&app, "deleting the task", &e),
    }
}

/// `POST /dead/retry`: `queue`, then `scope=selected` with repeated `id`s, or `scope=all` with
/// the filter's `task` and `error`.
pub(crate) async fn dead_retry(State(app): State<Arc<App>>, form: RawForm) -> Response {
    dead_bulk(app, form, true).await
}

/// `POST /dead/delete`: as [`dead_retry`], deleting.
pub(crate) async fn dead_delete(State(app): State<Arc<App>>, form: RawForm) -> Response {
    dead_bulk(app, form, false).await
}

async fn dead_bulk(app: Arc<App>, form: RawForm, retry: bool) -> Response {
    let pairs = fields(&form);
    let Some(queue) = field(&pairs, "queue").map(str::to_owned) else { return bad(&app, "Which queue's dead tasks? (`queue`)") };
    if let Err(r) = queue_name(&app, &queue) {
        return r;
    }
    let filter = Filter {
        queue: Some(queue.clone()),
        task: field(&pairs, "task").unwrap_or_default().to_owned(),
        error: field(&pairs, "error").unwrap_or_default().to_owned(),
    };
    let back = format!("/dead?{}", filter.query(&[("done", (if retry { "retried" } else { "deleted" }).into())]));
    let driver = app.driver.as_ref();
    match field(&pairs, "scope") {
        Some("selected") => {
            let ids = match selected(&pairs) {
                Ok(ids) if !ids.is_empty() => ids,
                Ok(_) => return bad(&app, "No dead task was selected."),
                Err(why) => return bad(&app, &why),
            };
            let done =
                if retry { driver.requeue_dead(&queue, DeadSelector::Ids(ids)).await.map(drop) } else { delete_each(&app, &ids).await };
            match done {
                Ok(()) => changed(&app, &back).into_response(),
                Err(e) => driver_failed(&app, if retry { "retrying" } else { "deleting" }, &e),
            }
        }
        Some("all") if filter.is_all() => {
            let done = if retry { driver.requeue_dead(&queue, DeadSelector::All).await } else { driver.purge_dead(&queue).await };
            match done {
                Ok(_) => changed(&app, &back).into_response(),
                Err(e) => driver_failed(&app, if retry { "retrying" } else { "deleting" }, &e),
            }
        }
        Some("all") => {
            if !driver.supports(Capability::Browse) {
                return bad(&app, &format!("The {} backend cannot filter its dead tasks.", driver.name()));
            }
            let what = format!("{} the dead tasks of {queue} the filter matches", if retry { "Retrying" } else { "Deleting" });
            let job = app.jobs.start(what, back);
            tokio::spawn(filtered(app.clone(), job, filter, retry));
            changed(&app, &format!("/jobs/{job}")).into_response()
        }
        _ => bad(&app, "`scope` is `selected` or `all`."),
    }
}

async fn delete_each(app: &App, ids: &[TaskId]) -> Result<(), asynctasq_core::DriverError> {
    for id in ids {
        app.driver.delete(*id).await?;
    }
    Ok(())
}

/// Retries or deletes every dead task of the filter's queue it keeps, a batch at a time,
/// noting progress in job `job`.
async fn filtered(app: Arc<App>, job: u64, filter: Filter, retry: bool) {
    const BATCH: usize = 500;
    let queue = filter.queue.clone().unwrap_or_default();
    let driver = app.driver.as_ref();
    let mut cursor: Option<String> = None;
    let outcome = loop {
        let page = match driver.dead_after(&queue, cursor.as_deref(), BATCH).await {
            Ok(p) => p,
            Err(e) => break Err(e.to_string()),
        };
        let batch = page.tasks;
        let ids: Vec<TaskId> = batch.iter().filter(|r| filter.keeps(r)).map(|r| r.id).collect();
        let acted = if ids.is_empty() {
            Ok(0)
        } else if retry {
            driver.requeue_dead(&queue, DeadSelector::Ids(ids.clone())).await
        } else {
            delete_each(&app, &ids).await.map(|()| ids.len() as u64)
        };
        let acted = match acted {
            Ok(n) => n,
            Err(e) => break Err(e.to_string()),
        };
        app.jobs.update(job, |p| {
            p.scanned += batch.len() as u64;
            p.done += acted;
        });
        // The cursor is a place in the dead-letter order: what left it meanwhile moves nothing.
        cursor = page.next;
        if cursor.is_none() {
            break Ok(());
        }
    };
    app.jobs.update(job, |p| p.ended = Some(outcome));
}

/// `POST /schedules/pause` with `name`.
pub(crate) async fn schedule_pause(State(app): State<Arc<App>>, form: RawForm) -> Response {
    schedule_paused(&app, &fields(&form), true).await
}

/// `POST /schedules/resume` with `name`.
pub(crate) async fn schedule_resume(State(app): State<Arc<App>>, form: RawForm) -> Response {
    schedule_paused(&app, &fields(&form), false).await
}

async fn schedule_paused(app: &App, pairs: &[(String, String)], paused: bool) -> Response {
    let (Some(registry), Some(name)) = (app.registry.as_deref(), field(pairs, "name")) else {
        return bad(app, "Which schedule? (`name`, one this binary declares)");
    };
    let declared = crate::pages::schedules::declared(app);
    let Some(schedule) = declared.get(name) else { return bad(app, "This binary declares no such schedule.") };
    match app.driver.set_schedule_paused(name, &schedule.queue_in(registry), paused).await {
        Ok(()) => changed(app, if paused { "/schedules?done=schedule-paused" } else { "/schedules?done=schedule-resumed" }).into_response(),
        Err(e) => driver_failed(app, "pausing or resuming the schedule", &e),
    }
}

/// `POST /schedules/run` with `name`: its task dispatched once now, its slots unchanged.
pub(crate) async fn schedule_run(State(app): State<Arc<App>>, form: RawForm) -> Response {
    let pairs = fields(&form);
    let (Some(registry), Some(name)) = (app.registry.as_deref(), field(&pairs, "name")) else {
        return bad(&app, "Which schedule? (`name`, one this binary declares)");
    };
    let declared = crate::pages::schedules::declared(&app);
    let Some(schedule) = declared.get(name) else { return bad(&app, "This binary declares no such schedule.") };
    let Some(task) = registry.get(schedule.task()) else { return bad(&app, "The schedule's task is not in this binary.") };
    let overrides = Overrides { queue: Some(schedule.queue_in(registry)), ..Overrides::default() };
    let client = Client::new(app.driver.clone());
    let envelope = match client.envelope_of(task, schedule.payload().to_vec(), &overrides) {
        Ok(e) => e,
        Err(e) => return driver_failed(&app, "building the schedule's task", &e),
    };
    let id = envelope.id;
    match client.enqueue(vec![envelope]).await {
        Ok(_) => changed(&app, &format!("/tasks/{id}")).into_response(),
        Err(e) => driver_failed(&app, "dispatching the schedule's task", &e),
    }
}
