//! The worker's HTTP listener (feature `http`, `WorkerBuilder::http`):
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format (names in [`crate::metrics::names`]) |
//! | `GET /health` | liveness: 200 while the worker's loops run, else 503 |
//! | `GET /ready` | readiness (see [`super`]): 200 `{"ready":true}`, or 503 with the reason as JSON |
//! | `GET /worker` | configuration and state as JSON; off loopback only with the bearer token |
//!
//! `/metrics`, `/health` and `/ready` expose no secrets and need no token, so probes and
//! scrapers work from the pod's address. `/worker` names the backend (its URL with the password
//! hidden) and the queues, so off loopback it wants `Authorization: Bearer <--http-token>`,
//! compared in constant time; without a token configured it is loopback-only, and the answer
//! says so.
//!
//! # Why queue gauges come from a collector, not from the scrape
//! A scrape that asked the backend for every queue's counts would cost a round trip per queue per
//! scraper, and a slow backend would make the scrape time out. One collector per worker samples
//! the counts every few seconds; a scrape only renders what is in memory.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::prometheus::{Recorder, Registry};
use super::{HttpConfig, Monitor};
use crate::driver::Driver;
use crate::error::WorkerError;
use crate::metrics::names;
use crate::worker::shared::Counters;
use crate::workers::WorkerCounts;

static RECORDER: OnceLock<Result<Arc<Registry>, String>> = OnceLock::new();

/// The process's recorder, installed at the first call: every worker of the process shares it,
/// as they share the process.
fn recorder() -> Result<Arc<Registry>, WorkerError> {
    RECORDER
        .get_or_init(|| {
            let registry = Arc::new(Registry::default());
            metrics::set_global_recorder(Recorder(registry.clone())).map_err(|e| {
                format!("cannot install the Prometheus recorder ({e}): another `metrics` recorder is installed in this process")
            })?;
            Ok(registry)
        })
        .clone()
        .map_err(WorkerError::Http)
        .inspect(|_| crate::metrics::enable())
}

/// A queue the worker consumes, as `/worker` shows it.
#[derive(Clone, Debug, Serialize)]
struct QueueView {
    name: String,
    weight: u32,
}

/// What does not change while the worker runs, for `/worker`.
#[derive(Clone, Debug, Serialize)]
struct Static {
    id: String,
    queues: Vec<QueueView>,
    priority: &'static str,
    concurrency: usize,
    backend: Backend,
    version: &'static str,
    started_at: u64,
    host: String,
    pid: u32,
}

/// The backend, for `/worker`: its driver's name and its URL with the password hidden.
#[derive(Clone, Debug, Serialize)]
struct Backend {
    driver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[derive(Serialize)]
struct WorkerView<'a> {
    #[serde(flatten)]
    fixed: &'a Static,
    uptime_seconds: u64,
    in_flight: usize,
    leases_held: usize,
    counts: WorkerCounts,
    readiness: super::Readiness,
}

/// What the routes read.
struct HttpState {
    fixed: Static,
    monitor: Arc<Monitor>,
    counters: Arc<Counters>,
    prometheus: Arc<Registry>,
    token: Option<String>,
}

/// The worker a listener shows.
pub(crate) struct Subject<'a> {
    pub(crate) id: &'a str,
    /// Queue names and weights, in priority order.
    pub(crate) queues: Vec<(String, u32)>,
    /// `strict` or `weighted`.
    pub(crate) priority: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) driver: &'a Arc<dyn Driver>,
    pub(crate) call_deadline: Duration,
}

/// Installs the recorder, binds the listener and starts it and its collector: their tasks, which
/// end once `stop` is cancelled.
pub(crate) async fn start(
    config: &HttpConfig,
    subject: Subject<'_>,
    monitor: &Arc<Monitor>,
    counters: &Arc<Counters>,
    stop: &CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, WorkerError> {
    let prometheus = recorder()?;
    let listener = bind(config.addr).await?;
    let addr = listener.local_addr().unwrap_or(config.addr);
    let fixed = Static {
        id: subject.id.to_owned(),
        queues: subject.queues.iter().map(|(name, weight)| QueueView { name: name.clone(), weight: *weight }).collect(),
        priority: subject.priority,
        concurrency: subject.concurrency,
        backend: Backend { driver: subject.driver.name(), url: config.backend_url.clone() },
        version: env!("CARGO_PKG_VERSION"),
        started_at: now_secs(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        pid: std::process::id(),
    };
    let state = Arc::new(HttpState {
        fixed,
        monitor: monitor.clone(),
        counters: counters.clone(),
        prometheus: prometheus.clone(),
        token: config.token.clone(),
    });
    tracing::info!(%addr, "HTTP listener: /metrics /health /ready /worker");
    let names = subject.queues.into_iter().map(|(name, _)| name).collect();
    let collector = collect(subject.driver.clone(), names, monitor.clone(), config.collect_interval, subject.call_deadline, stop.clone());
    let routes = config.routes.clone();
    Ok(vec![tokio::spawn(serve(listener, state, routes, stop.clone())), tokio::spawn(collector)])
}

/// Binds `addr`; an address in use or not local is an error naming it.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, WorkerError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| WorkerError::Http(format!("cannot listen on {addr}: {e}")))
}

/// Serves the routes on `listener` until `stop`.
async fn serve(listener: tokio::net::TcpListener, state: Arc<HttpState>, routes: Option<Router>, stop: CancellationToken) {
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/worker", get(worker))
        .with_state(state);
    if let Some(routes) = routes {
        app = app.merge(routes);
    }
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the HTTP listener failed");
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let c = &state.counters;
    metrics::gauge!(names::WORKER_IN_FLIGHT).set(c.in_flight.load(std::sync::atomic::Ordering::Relaxed) as f64);
    metrics::gauge!(names::WORKER_CONCURRENCY).set(state.fixed.concurrency as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.prometheus.render()).into_response()
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    if state.monitor.alive() {
        (StatusCode::OK, Json(serde_json::json!({"alive": true}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"alive": false}))).into_response()
    }
}

async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let r = state.monitor.readiness();
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

async fn worker(State(state): State<Arc<HttpState>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err((status, why)) = authorize(peer.ip(), state.token.as_deref(), given) {
        return refuse(status, why);
    }
    let c = &state.counters;
    let in_flight = c.in_flight.load(std::sync::atomic::Ordering::Relaxed);
    let view = WorkerView {
        fixed: &state.fixed,
        uptime_seconds: now_secs().saturating_sub(state.fixed.started_at),
        in_flight,
        leases_held: in_flight + c.pending_acks.load(std::sync::atomic::Ordering::Relaxed),
        counts: c.snapshot(),
        readiness: state.monitor.readiness(),
    };
    Json(view).into_response()
}

/// Whether `/worker` may answer a request from `peer` carrying the `Authorization` header
/// `given`: loopback always; off loopback only with the configured bearer token.
fn authorize(peer: std::net::IpAddr, token: Option<&str>, given: Option<&str>) -> Result<(), (StatusCode, &'static str)> {
    if peer.is_loopback() {
        return Ok(());
    }
    match (token, given.and_then(|v| v.strip_prefix("Bearer "))) {
        (None, _) => {
            Err((StatusCode::FORBIDDEN, "GET /worker is served off loopback only to a bearer token: start the worker with --http-token"))
        }
        (Some(want), Some(got)) if same(want.as_bytes(), got.as_bytes()) => Ok(()),
        (Some(_), _) => {
            Err((StatusCode::UNAUTHORIZED, "GET /worker off loopback needs `Authorization: Bearer <the worker's --http-token>`"))
        }
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, Json(serde_json::json!({"error": why}))).into_response()
}

/// Equal in time that depends only on the lengths, never on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Samples every queue's counts every `every` into the queue gauges, reports the backend's
/// answers to `monitor`. Runs until `stop`.
async fn collect(
    driver: Arc<dyn Driver>,
    queues: Vec<String>,
    monitor: Arc<Monitor>,
    every: Duration,
    limit: Duration,
    stop: CancellationToken,
) {
    // The first sample one interval in, not at once: a worker that starts on a deep backlog
    // takes its first batches before the backend is asked to count it.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for q in &queues {
            match crate::worker::deadline::bounded("stats", limit, driver.stats(q)).await {
                Ok(s) => {
                    monitor.answered();
                    for (state, n) in [("ready", s.ready), ("scheduled", s.scheduled), ("leased", s.leased), ("dead", s.dead)] {
                        metrics::gauge!(names::QUEUE_TASKS, "queue" => q.clone(), "state" => state).set(n as f64);
                    }
                    if let Some(age) = s.oldest_ready_age {
                        metrics::gauge!(names::QUEUE_OLDEST_READY_AGE, "queue" => q.clone()).set(age.as_secs_f64());
                    }
                }
                Err(error) => {
                    monitor.failed(&error);
                    tracing::warn!(%error, queue = %q, "sampling the queue's counts failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use axum::http::StatusCode;

    use super::{authorize, same};

    const POD: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn the_worker_page_answers_loopback_without_a_token() {
        assert!(authorize(IpAddr::V4(Ipv4Addr::LOCALHOST), None, None).is_ok());
        assert!(authorize(IpAddr::V6(Ipv6Addr::LOCALHOST), Some("t0ken-of-16-chars"), None).is_ok());
    }

    #[test]
    fn off_loopback_the_worker_page_needs_the_bearer_token_and_says_so() {
        let (status, why) = authorize(POD, None, Some("Bearer anything")).expect_err("no token configured");
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(why.contains("--http-token"), "{why}");
        let token = Some("t0ken-of-16-chars");
        let (status, why) = authorize(POD, token, None).expect_err("no header");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(why.contains("Authorization: Bearer"), "{why}");
        assert!(authorize(POD, token, Some("Bearer t0ken-of-16-charX")).is_err(), "a wrong token");
        assert!(authorize(POD, token, Some("t0ken-of-16-chars")).is_err(), "not a bearer header");
        assert!(authorize(POD, token, Some("Bearer t0ken-of-16-chars")).is_ok());
    }

    #[test]
    fn tokens_compare_equal_only_when_every_byte_is() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"", b"x"));
    }
}
