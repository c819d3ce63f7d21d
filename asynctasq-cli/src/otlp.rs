//! `--otlp-endpoint`: the task spans of this process (`send {queue}` at dispatch, `process
//! {queue}` per delivery, see `asynctasq_core::trace`) to an OpenTelemetry collector, over
//! OTLP/HTTP with protobuf, batched by the SDK on a thread of its own.

use clap::Args;

use crate::Checked;

/// Where the spans go.
#[derive(Debug, Args)]
pub(crate) struct Tracing {
    /// Send the task spans to this OpenTelemetry collector (OTLP over HTTP, protobuf), e.g.
    /// `http://127.0.0.1:4318`; `/v1/traces` is added unless the path already names it. The
    /// service name is `OTEL_SERVICE_NAME` (default `asynctasq`). Needs the `otel` feature.
    #[arg(long, global = true, env = "ASYNCTASQ_OTLP_ENDPOINT", value_name = "URL", value_parser = ENDPOINT, hide_short_help = true)]
    pub(crate) otlp_endpoint: Option<String>,
}

/// An `http://` URL (a collector or agent beside the worker; this build has no TLS client).
const ENDPOINT: Checked = Checked {
    check: |text| {
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(if text.starts_with("https://") {
                "https is not supported (this build's exporter has no TLS): point it at a collector on the host or pod, http://HOST:PORT"
                    .into()
            } else {
                "expected an http:// URL of an OpenTelemetry collector, e.g. http://127.0.0.1:4318".into()
            });
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err("the URL names no host".into());
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported (send them with OTEL_EXPORTER_OTLP_HEADERS)".into());
        }
        Ok(())
    },
    named: true,
};

/// The traces endpoint: `/v1/traces` under the given URL unless its path ends with it.
#[cfg_attr(not(feature = "otel"), allow(dead_code))]
pub(crate) fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") { trimmed.to_owned() } else { format!("{trimmed}/v1/traces") }
}

/// The exporting half of the logging: flushes what is batched when dropped.
pub(crate) struct Exporter {
    #[cfg(feature = "otel")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: OpenTelemetry exporter: {e}");
        }
    }
}

/// A `tracing` layer exporting to `endpoint`, with its flush guard. The layer takes the task
/// spans (DEBUG, target `asynctasq_core`) and everything at INFO and above, whatever the log
/// filter says.
#[cfg(feature = "otel")]
pub(crate) fn layer<S>(endpoint: &str) -> Result<(impl tracing_subscriber::Layer<S>, Exporter), String>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::Layer as _;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter: {e}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "asynctasq".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let filter =
        tracing_subscriber::filter::Targets::new().with_target("asynctasq_core", tracing::Level::DEBUG).with_default(tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("asynctasq")).with_filter(filter);
    Ok((layer, Exporter { provider }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c/otlp"), "http://c/otlp/v1/traces");
    }

    #[test]
    fn endpoints_other_than_plain_http_are_refused_with_the_reason() {
        assert!((ENDPOINT.check)("http://127.0.0.1:4318").is_ok());
        assert!((ENDPOINT.check)("https://c:4318").expect_err("refused").contains("no TLS"));
        assert!((ENDPOINT.check)("127.0.0.1:4318").expect_err("refused").contains("http://"));
        assert!((ENDPOINT.check)("http://").expect_err("refused").contains("no host"));
        assert!((ENDPOINT.check)("http://u:secret@c:4318").expect_err("refused").contains("credentials"));
        assert!(!(ENDPOINT.check)("http://u:secret@c:4318").expect_err("refused").contains("secret"), "the error never echoes a secret");
    }
}
