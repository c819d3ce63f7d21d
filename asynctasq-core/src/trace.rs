//! Trace context through the task: the W3C `traceparent`/`tracestate` headers a dispatch
//! writes and the worker's span continues.
//!
//! Two spans per task, named and shaped by the OpenTelemetry messaging conventions:
//!
//! | Span | Where | Kind | Name | Parent |
//! |---|---|---|---|---|
//! | send | [`Client`](crate::Client) dispatch, one per call (a batch is one span) | producer | `send {queue}` | the caller's current span |
//! | process | the worker, one per delivery | consumer | `process {queue}` | attempt 1: the send span; later attempts and dead-letter replays ([`Delivery::replayed`](crate::Delivery::replayed)): none (a new trace) **linked** to it |
//!
//! Attributes: `messaging.system` (the driver's [`system`] name), `messaging.destination.name`
//! (the queue), `messaging.operation.type` (`send` / `process`), `messaging.message.id` (the
//! task id), `messaging.batch.message_count` on a batch send, and `task.name`, `task.attempt`.
//! A failed run sets `otel.status_code = "error"` with the error as `otel.status_message`.
//!
//! Both spans are `tracing` spans at DEBUG level under the target `asynctasq_core`. With the
//! `otel` feature and a `tracing-opentelemetry` layer installed, the dispatch writes the send
//! span's context into the envelope's headers (unless the caller set a `traceparent` header
//! itself) and the worker's span takes its parent or link from them. Give that layer a filter
//! that admits these spans, e.g. `Targets::new().with_target("asynctasq_core", Level::DEBUG)`
//! as a per-layer filter, so the log output stays at its own level. Without the feature the
//! spans are still made for `tracing` subscribers, and trace headers set by the caller pass
//! through every backend untouched.

/// The header of the W3C trace context that carries the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The header of the W3C trace context that carries vendor state.
pub const TRACESTATE: &str = "tracestate";

/// `messaging.system` for a driver's [`name`](crate::Driver::name): the convention's
/// registered value where there is one (`aws_sqs`, `rabbitmq`), else the driver's name.
pub fn system(driver: &str) -> &str {
    match driver {
        "sqs" => "aws_sqs",
        other => other,
    }
}

#[cfg(feature = "otel")]
mod propagate {
    use std::collections::BTreeMap;

    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TRACEPARENT;

    struct Writer<'a>(&'a mut Vec<(String, String)>);

    impl Injector for Writer<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }

    struct Reader<'a>(&'a BTreeMap<String, String>);

    impl Extractor for Reader<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).map(String::as_str)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
    }

    /// The trace headers of `span`'s context: empty when no OpenTelemetry layer records it.
    pub(crate) fn headers_of(span: &tracing::Span) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if span.is_disabled() {
            return out;
        }
        let cx = span.context();
        if cx.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&cx, &mut Writer(&mut out));
        }
        out
    }

    /// Makes `span` (not yet entered) continue the trace in `headers`: its child on attempt 1
    /// of a dispatch, a new trace linked to it on later attempts and on replays.
    pub(crate) fn continue_from(span: &tracing::Span, headers: &BTreeMap<String, String>, attempt: u32, replayed: bool) {
        if span.is_disabled() || !headers.contains_key(TRACEPARENT) {
            return;
        }
        let cx = TraceContextPropagator::new().extract(&Reader(headers));
        let remote = cx.span().span_context().clone();
        if !remote.is_valid() {
            return;
        }
        if attempt <= 1 && !replayed {
            // Fails only when no OpenTelemetry layer records the span: nothing to continue then.
            let _ = span.set_parent(cx);
        } else {
            span.add_link(remote);
        }
    }
}

/// The trace headers of `span`'s context, to add to each envelope of a dispatch: empty
/// without the `otel` feature or when no OpenTelemetry layer records the span.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn headers_of(span: &tracing::Span) -> Vec<(String, String)> {
    #[cfg(feature = "otel")]
    return propagate::headers_of(span);
    #[cfg(not(feature = "otel"))]
    Vec::new()
}

/// Runs `call` with `span` open around it, but not entered: the span times the call without
/// being the current span inside it.
///
/// Why: a backend client may keep the current span of a call alive for longer than the call.
/// sqlx's SQLite connection thread takes `Span::current()` with each command and drops it only
/// after it has answered, so a send span entered around its enqueue could end after a short
/// process (a `dispatch` command) had flushed its exporter, and be lost: 7 of 30 `dispatch`
/// processes on SQLite exported no span on a loaded machine, 0 of 30 on Redis. (Entering
/// `Span::none()` inside does not help: a disabled span leaves the current one as it was.)
pub async fn around<F: std::future::Future>(span: tracing::Span, call: F) -> F::Output {
    let out = call.await;
    drop(span);
    out
}

/// The trace headers of the caller's current span ([`headers_of`] it).
pub(crate) fn current_headers() -> Vec<(String, String)> {
    #[cfg(feature = "otel")]
    return propagate::headers_of(&tracing::Span::current());
    #[cfg(not(feature = "otel"))]
    Vec::new()
}

/// Makes the worker's `span` continue (attempt 1 of a dispatch) or link (later attempts, and
/// every attempt of a dead task's replay) the trace in `headers`.
#[cfg_attr(not(feature = "otel"), allow(unused_variables))]
pub(crate) fn continue_from(span: &tracing::Span, headers: &std::collections::BTreeMap<String, String>, attempt: u32, replayed: bool) {
    #[cfg(feature = "otel")]
    propagate::continue_from(span, headers, attempt, replayed);
}

/// The producer span of one dispatch call of `count` tasks to `queue`.
pub(crate) fn send_span(system: &str, queue: &str, count: usize) -> tracing::Span {
    let span = tracing::debug_span!(
        "send",
        otel.name = %format_args!("send {queue}"),
        otel.kind = "producer",
        messaging.system = system,
        messaging.destination.name = queue,
        messaging.operation.type = "send",
        messaging.message.id = tracing::field::Empty,
        messaging.batch.message_count = tracing::field::Empty,
    );
    if count != 1 {
        span.record("messaging.batch.message_count", count);
    }
    span
}
