//! The frame every page shares (head, navigation, the id search) and the small formatters its
//! cells use. Everything goes through maud, which escapes every value it is given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asynctasq_core::driver::TaskState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::App;
use crate::assets::{HTMX_INTEGRITY, HTMX_PATH, ICON_PATH, STYLE_PATH};

/// The navigation's sections.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Overview,
    Dead,
    Workers,
    Schedules,
    Task,
}

/// A whole page: `title`, the section it belongs to, and its body.
pub(crate) fn page(app: &App, title: &str, section: Section, body: Markup) -> Markup {
    let nav = [
        (Section::Overview, "/", "Queues"),
        (Section::Dead, "/dead", "Dead letters"),
        (Section::Workers, "/workers", "Workers"),
        (Section::Schedules, "/schedules", "Schedules"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx adds no inline style (the CSP forbids it) and evaluates nothing.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · asynctasq" }
                link rel="stylesheet" href=(STYLE_PATH);
                link rel="icon" href=(ICON_PATH) type="image/svg+xml";
                script src=(HTMX_PATH) integrity=(HTMX_INTEGRITY) defer {}
            }
            body {
                header {
                    a.brand href="/" { "asynctasq" }
                    @for (s, href, label) in nav {
                        a href=(href) class=[(s == section).then_some("here")] { (label) }
                    }
                    span.backend title="the backend (credentials redacted)" { (app.backend_label) }
                    form action="/tasks" method="get" role="search" {
                        input type="search" name="id" placeholder="task id" aria-label="find a task by id" size="38";
                        button type="submit" { "Find" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error page with `status`.
pub(crate) fn error_page(app: &App, status: StatusCode, message: &str) -> Response {
    let body = html! {
        h1 { (status.canonical_reason().unwrap_or("Error")) }
        p.note.bad { (message) }
    };
    (status, page(app, "Error", Section::Overview, body)).into_response()
}

/// A note at the top of a page after an action, by code (never text from the request).
pub(crate) fn flash(done: Option<&str>) -> Markup {
    let text = match done {
        Some("paused") => "Queue paused: no worker claims from it until it is resumed.",
        Some("resumed") => "Queue resumed.",
        Some("retried") => "Task moved back to its queue, ready now.",
        Some("cancelled") => "Cancel sent: a waiting task is removed; a running one is stopped by its worker.",
        Some("deleted") => "Task deleted.",
        Some("flushed") => "Flushed.",
        Some("schedule-paused") => "Schedule paused.",
        Some("schedule-resumed") => "Schedule resumed.",
        _ => return html! {},
    };
    html! { p.note { (text) } }
}

/// Says why part of a page is absent on this backend.
pub(crate) fn absent(why: &str) -> Markup {
    html! { p.absent { (why) } }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    asynctasq_core::envelope::unix_millis(SystemTime::now())
}

/// A Unix-ms time as UTC, to the second, with how long ago or ahead.
pub(crate) fn time(ms: u64) -> Markup {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let now = now_ms();
    let relative = if ms <= now {
        format!("{} ago", age(Duration::from_millis(now - ms)))
    } else {
        format!("in {}", age(Duration::from_millis(ms - now)))
    };
    html! { time datetime=(stamp) title=(stamp) { (relative) } }
}

/// A duration the way an operator reads it: `850ms`, `42s`, `3m 12s`, `5h 4m`, `2d 3h`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A count of `stats`, marked `~` when the backend estimated it ([`QueueStats::estimated`](asynctasq_core::QueueStats::estimated)).
pub(crate) fn counted(stats: &asynctasq_core::QueueStats, n: u64) -> String {
    if stats.estimated { format!("~{}", count(n)) } else { count(n) }
}

/// A count with thousands separators.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A state's name as the pages and links spell it.
pub(crate) fn state_name(state: TaskState) -> &'static str {
    match state {
        TaskState::Ready => "ready",
        TaskState::Scheduled => "scheduled",
        TaskState::Leased => "leased",
        TaskState::Dead => "dead",
        TaskState::Succeeded => "succeeded",
        TaskState::Cancelled => "cancelled",
        _ => "other",
    }
}

/// A state's tag.
pub(crate) fn state_tag(state: TaskState) -> Markup {
    let name = state_name(state);
    html! { span class={ "tag " (name) } { (name) } }
}

/// A line of points, 120×24, for a series of rates (an empty mark for fewer than two).
pub(crate) fn sparkline(points: &[f64]) -> Markup {
    if points.len() < 2 {
        return html! { span.muted { "…" } };
    }
    let max = points.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = 120.0 / (points.len() - 1) as f64;
    let mut line = String::new();
    for (i, p) in points.iter().enumerate() {
        line.push_str(&format!("{:.1},{:.1} ", i as f64 * step, 23.0 - p / max * 22.0));
    }
    let last = points.last().copied().unwrap_or(0.0);
    html! {
        svg.spark viewBox="0 0 120 24" role="img" aria-label={ "throughput, latest " (format!("{last:.1}")) " tasks/s" } {
            polyline points=(line.trim_end()) {}
        }
        " " span.muted { (format!("{last:.1}/s")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_way_operators_say_them() {
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(192)), "3m 12s");
        assert_eq!(age(Duration::from_secs(5 * 3600 + 240)), "5h 4m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 3 * 3600)), "2d 3h");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
    }
}
