//! `/schedules`: the cron schedules this binary's tasks declare and what the backend keeps of
//! each (last fire, paused), with the next fire, pause, resume and run now.

use std::collections::BTreeMap;
use std::sync::Arc;

use asynctasq_core::driver::{Capability, ScheduleState};
use asynctasq_core::schedule::Schedule;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::layout::{Section, absent, flash, now_ms, page as frame, time};
use crate::{App, driver_failed};

#[derive(Deserialize)]
pub(crate) struct Params {
    done: Option<String>,
}

/// The schedules this dashboard's binary declares, by name (none without a registry).
pub(crate) fn declared(app: &App) -> BTreeMap<String, Schedule> {
    app.registry.as_deref().and_then(|r| Schedule::declared_in(r).ok()).unwrap_or_default()
}

/// The schedules.
pub(crate) async fn page(State(app): State<Arc<App>>, Query(params): Query<Params>) -> Response {
    let driver = app.driver.as_ref();
    let keeps = driver.supports(Capability::ScheduleClaims);
    let stored: BTreeMap<String, ScheduleState> = if keeps {
        match driver.schedules().await {
            Ok(s) => s.into_iter().map(|s| (s.name.clone(), s)).collect(),
            Err(e) => return driver_failed(&app, "listing the schedules", &e),
        }
    } else {
        BTreeMap::new()
    };
    let declared = declared(&app);
    let mut names: Vec<&String> = declared.keys().chain(stored.keys()).collect();
    names.sort();
    names.dedup();
    let now = now_ms();
    let body = html! {
        h1 { "Schedules" }
        (flash(params.done.as_deref()))
        @if !keeps {
            (absent(&format!("The {} backend keeps no schedules: its workers refuse to run them.", driver.name())))
        }
        @if app.registry.is_none() {
            (absent("This dashboard was started without the tasks' registry, so it knows the schedules the backend keeps but not their patterns: serve it from the binary that declares them (`asynctasq dashboard` of your own binary) to see next fires and run one now."))
        }
        @if names.is_empty() { p.muted { "No schedules." } } @else {
            table {
                thead { tr { th { "Schedule" } th { "Pattern" } th { "Queue" } th { "Next fire" } th { "Last fire" } th { "" } } }
                tbody {
                    @for name in names {
                        @let s = declared.get(name);
                        @let state = stored.get(name);
                        @let paused = state.is_some_and(|st| st.paused);
                        tr {
                            td { code { (name) } @if paused { " " span.tag.paused { "paused" } } }
                            td { @if let Some(s) = s { code { (s.pattern()) } " " span.muted { (s.tz_name()) } } @else { span.muted { "not declared here" } } }
                            td { @if let (Some(s), Some(r)) = (s, app.registry.as_deref()) { (s.queue_in(r)) } }
                            td { @if let Some(next) = s.and_then(|s| s.next_after(now)) { (time(next)) } }
                            td { @if let Some(last) = state.and_then(|st| st.last_slot) { (time(last)) } @else { span.muted { "never" } } }
                            td.actions {
                                @if s.is_some() {
                                    @if keeps {
                                        form method="post" action=(if paused { "/schedules/resume" } else { "/schedules/pause" }) {
                                            input type="hidden" name="name" value=(name);
                                            button type="submit" { (if paused { "Resume" } else { "Pause" }) }
                                        }
                                    }
                                    form method="post" action="/schedules/run" {
                                        input type="hidden" name="name" value=(name);
                                        button type="submit" { "Run now" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&app, "Schedules", Section::Schedules, body).into_response()
}
