//! What a running worker tells the outside: whether its backend answers and its fetch loop
//! moves (readiness), its configuration and state, and, with feature `http`, the listener that
//! serves them with the Prometheus metrics (see [`http`]).
//!
//! # What "ready" means
//! Ready while (1) the most recent backend call of the fetch loop or of the stats collector
//! succeeded, and (2) the fetch loop is not stuck inside one backend call past the readiness
//! bound. A fetch loop that waits for free slots (every slot busy with long tasks) is not
//! stuck: it makes no backend call, and the collector's samples still show the backend
//! answering. A dead connection fails the next call within the driver's request timeout and
//! turns the worker unready with that error as the reason; a wedged call shows as a stall.

#[cfg(feature = "http")]
pub(crate) mod http;
#[cfg(feature = "http")]
mod prometheus;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::worker::deadline::Beacon;

/// The HTTP listener's settings (`WorkerBuilder::http` and its companions).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct HttpConfig {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) token: Option<String>,
    pub(crate) backend_url: Option<String>,
    pub(crate) collect_interval: Duration,
    /// More routes served beside the listener's own (`WorkerBuilder::http_routes`).
    #[cfg(feature = "http")]
    pub(crate) routes: Option<axum::Router>,
}

/// The readiness state of one worker.
#[derive(Debug)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct Monitor {
    origin: Instant,
    /// Milliseconds after `origin` (plus one) of the last backend call that succeeded / failed.
    last_ok: AtomicU64,
    last_failed: AtomicU64,
    last_error: Mutex<String>,
    fetching: Arc<Beacon>,
    bound: Duration,
    running: AtomicBool,
}

/// Why a worker is not ready, or that it is.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[cfg_attr(not(feature = "http"), allow(dead_code))]
impl Monitor {
    pub(crate) fn new(fetching: Arc<Beacon>, bound: Duration) -> Self {
        Self {
            origin: Instant::now(),
            last_ok: AtomicU64::new(0),
            last_failed: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            fetching,
            bound,
            running: AtomicBool::new(true),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A backend call answered.
    pub(crate) fn answered(&self) {
        self.last_ok.store(self.now(), Ordering::Relaxed);
    }

    /// A backend call failed with `error`.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
        self.last_failed.store(self.now(), Ordering::Relaxed);
    }

    /// The worker's loops have ended.
    pub(crate) fn stopped(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// Whether the worker's loops run (liveness).
    pub(crate) fn alive(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Readiness now (see the module docs).
    pub(crate) fn readiness(&self) -> Readiness {
        let not = |reason: String| Readiness { ready: false, reason: Some(reason) };
        if !self.alive() {
            return not("the worker has stopped".into());
        }
        if let Some(stalled) = self.fetching.stalled_for().filter(|s| *s > self.bound) {
            return not(format!("the fetch loop has waited {}s on one backend call (bound {}s)", stalled.as_secs(), self.bound.as_secs()));
        }
        let (ok, failed) = (self.last_ok.load(Ordering::Relaxed), self.last_failed.load(Ordering::Relaxed));
        if failed > ok {
            let error = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return not(format!("the backend's last answer was an error: {error}"));
        }
        if ok == 0 {
            return not("the backend has not answered yet".into());
        }
        Readiness { ready: true, reason: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_ready_only_once_the_backend_answered_and_not_after_an_error() {
        let m = Monitor::new(Beacon::new("fetch"), Duration::from_secs(10));
        assert!(!m.readiness().ready, "nothing answered yet");
        m.answered();
        assert_eq!(m.readiness(), Readiness { ready: true, reason: None });
        std::thread::sleep(Duration::from_millis(2));
        m.failed(&"connection refused");
        let r = m.readiness();
        assert!(!r.ready && r.reason.as_deref().is_some_and(|s| s.contains("connection refused")), "{r:?}");
        std::thread::sleep(Duration::from_millis(2));
        m.answered();
        assert!(m.readiness().ready, "ready again once the backend answers");
        m.stopped();
        assert!(!m.readiness().ready && !m.alive());
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_loop_stuck_in_one_call_past_the_bound_is_not_ready() {
        let beacon = Beacon::new("fetch");
        let m = Monitor::new(beacon.clone(), Duration::from_secs(10));
        m.answered();
        let _wait = beacon.waiting();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(m.readiness().ready, "within the bound");
        tokio::time::advance(Duration::from_secs(2)).await;
        let r = m.readiness();
        assert!(!r.ready && r.reason.as_deref().is_some_and(|s| s.contains("fetch loop")), "{r:?}");
    }
}
