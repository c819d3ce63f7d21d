//! The asynctasq web dashboard: what the queues hold, one task by id, the dead letters, the
//! workers and the schedules, on any backend, server-rendered from the binary.
//!
//! ```no_run
//! # async fn f(driver: std::sync::Arc<dyn asynctasq_core::Driver>) -> Result<(), Box<dyn std::error::Error>> {
//! use asynctasq_dashboard::{Access, Dashboard};
//! let dashboard = Dashboard::new(driver, "sqlite://tasks.db").access(Access::open());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! dashboard.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! # How it is built
//! * **Pages** (`pages/`) are HTML rendered on the server by maud, which escapes every value;
//!   one vendored script (htmx, pinned with its integrity hash) refreshes parts in place, and
//!   every page works without it. No build step, no CDN.
//! * **Actions** (`actions.rs`) are `POST`s to plain routes answered with a redirect, so a
//!   script can drive them as well as a browser: `POST /queues/{queue}/pause`,
//!   `/queues/{queue}/resume`, `/queues/{queue}/flush`, `/tasks/{id}/retry`,
//!   `/tasks/{id}/cancel`, `/tasks/{id}/delete`, `/dead/retry`, `/dead/delete`,
//!   `/schedules/pause`, `/schedules/resume`, `/schedules/run`.
//! * **Bounded reads.** A page reads pages of tasks (50), never a whole queue; the dead-letter
//!   filter scans at most 5,000 tasks (about 30 ms) per page view and hands back a cursor.
//! * **Safe by default** (`access.rs`): credentials with roles, a cross-site write refused, a
//!   non-loopback listener refused without credentials, and every response sent with a strict
//!   Content Security Policy (no inline script), `X-Frame-Options: DENY` and `nosniff`.
//!   Secrets never appear: the backend is shown by its redacted URL.

// A handler's error is the page it answers with, built once on a cold path: boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod access;
mod actions;
mod assets;
mod jobs;
mod layout;
mod pages;
mod sampler;

use std::future::Future;
use std::sync::Arc;

use asynctasq_core::{Driver, Registry};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use access::{Access, AccessError, Role};

/// What the pages share: the driver, who may do what, and what the server keeps between views.
pub(crate) struct App {
    pub(crate) driver: Arc<dyn Driver>,
    /// The backend, as shown in the header: its URL with credentials redacted.
    pub(crate) backend_label: String,
    pub(crate) access: Access,
    pub(crate) jobs: jobs::Jobs,
    pub(crate) history: sampler::History,
    /// The tasks this binary knows, for the schedules they declare.
    pub(crate) registry: Option<Arc<Registry>>,
}

/// A dashboard over one backend: build it, then [`serve`](Dashboard::serve) it or take its
/// [`router`](Dashboard::router) into your own server.
pub struct Dashboard {
    driver: Arc<dyn Driver>,
    backend_label: String,
    access: Access,
    registry: Option<Arc<Registry>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("backend", &self.backend_label).field("access", &self.access).finish()
    }
}

/// Why the dashboard could not serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The access rules refuse the listener's address.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The listener failed.
    #[error("the dashboard's listener failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Dashboard {
    /// A dashboard over `driver`, showing `backend_label` (give a redacted URL: it is
    /// rendered on every page) and open to every request until [`access`](Dashboard::access)
    /// says otherwise.
    pub fn new(driver: Arc<dyn Driver>, backend_label: impl Into<String>) -> Self {
        Self { driver, backend_label: backend_label.into(), access: Access::open(), registry: None }
    }

    /// Who may see and act ([`Access`]).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The tasks this binary registers: the schedules they declare show with their pattern
    /// and next fire, and can be paused, resumed and run now.
    pub fn registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The routes, with the access checks and security headers on every one. Starts the
    /// throughput sampler behind the overview's sparklines, so call it inside a Tokio runtime.
    pub fn router(self) -> Router {
        let app = Arc::new(App {
            driver: self.driver,
            backend_label: self.backend_label,
            access: self.access,
            jobs: jobs::Jobs::default(),
            history: sampler::History::default(),
            registry: self.registry,
        });
        sampler::start(&app);
        Router::new()
            .route("/", get(pages::overview::page))
            .route("/fragments/queues", get(pages::overview::fragment))
            .route("/queues/{queue}", get(pages::queue::page))
            .route("/queues/{queue}/flush", get(pages::queue::confirm_flush).post(actions::flush))
            .route("/queues/{queue}/pause", post(actions::pause))
            .route("/queues/{queue}/resume", post(actions::resume))
            .route("/tasks", get(pages::task::find))
            .route("/tasks/{id}", get(pages::task::page))
            .route("/tasks/{id}/retry", post(actions::retry))
            .route("/tasks/{id}/cancel", post(actions::cancel))
            .route("/tasks/{id}/delete", post(actions::delete))
            .route("/dead", get(pages::dead::page))
            .route("/dead/confirm", get(pages::dead::confirm))
            .route("/dead/retry", post(actions::dead_retry))
            .route("/dead/delete", post(actions::dead_delete))
            .route("/jobs/{job}", get(pages::job::page))
            .route("/workers", get(pages::workers::page))
            .route("/schedules", get(pages::schedules::page))
            .route("/schedules/pause", post(actions::schedule_pause))
            .route("/schedules/resume", post(actions::schedule_resume))
            .route("/schedules/run", post(actions::schedule_run))
            .route(assets::HTMX_PATH, get(assets::htmx))
            .route(assets::STYLE_PATH, get(assets::style))
            .route(assets::ICON_PATH, get(assets::icon))
            .route("/favicon.ico", get(assets::icon))
            .fallback(pages::not_found)
            .layer(middleware::from_fn_with_state(app.clone(), guard))
            .with_state(app)
    }

    /// Serves on `listener` until `shutdown` resolves. Refuses a non-loopback address without
    /// credentials ([`Access::check_listen`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        self.access.check_listen(listener.local_addr()?)?;
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}

/// Every request: admitted by [`access::admit`] or refused, and every answer sent with the
/// security headers.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let mut response = match access::admit(&app.access, request.method(), request.headers()) {
        Ok(_) => next.run(request).await,
        Err(refusal) => {
            let mut r = layout::error_page(&app, refusal.status, refusal.why);
            if refusal.status == axum::http::StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"asynctasq\", charset=\"UTF-8\""));
            }
            r
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A driver error as the page says it.
pub(crate) fn driver_failed(app: &App, what: &str, e: &asynctasq_core::DriverError) -> Response {
    tracing::warn!(error = %e, "dashboard: {what} failed");
    layout::error_page(app, axum::http::StatusCode::BAD_GATEWAY, &format!("{what} failed: {e}")).into_response()
}
