//! `asynctasq dashboard` and `worker --dashboard`: the web dashboard (`asynctasq-dashboard`)
//! on its own listener or on the worker's.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use asynctasq_core::{Driver, Registry};
use asynctasq_dashboard::{Access, Dashboard, Role};
use clap::Args;

use crate::Usage;

/// Who may use the dashboard. Prefer the environment variables: a flag's value shows in the
/// process list.
#[derive(Debug, Args)]
pub(crate) struct DashboardAccess {
    /// Token that grants the operator role (view and act): sent as `Authorization: Bearer
    /// TOKEN`, or as the password of a browser's login with any user name. At least 16
    /// characters.
    #[arg(long, env = "ASYNCTASQ_DASHBOARD_TOKEN", value_name = "TOKEN", hide_env_values = true, hide_short_help = true)]
    auth_token: Option<String>,
    /// A login (`USER:PASSWORD`, HTTP Basic) that grants the operator role.
    #[arg(long, env = "ASYNCTASQ_DASHBOARD_BASIC_AUTH", value_name = "USER:PASSWORD", hide_env_values = true, hide_short_help = true)]
    basic_auth: Option<String>,
    /// Token that grants the viewer role (pages only, no action).
    #[arg(long, env = "ASYNCTASQ_DASHBOARD_VIEWER_TOKEN", value_name = "TOKEN", hide_env_values = true, hide_short_help = true)]
    viewer_token: Option<String>,
    /// A login (`USER:PASSWORD`) that grants the viewer role.
    #[arg(
        long,
        env = "ASYNCTASQ_DASHBOARD_VIEWER_BASIC_AUTH",
        value_name = "USER:PASSWORD",
        hide_env_values = true,
        hide_short_help = true
    )]
    viewer_basic_auth: Option<String>,
    /// Everyone is a viewer: nothing can be changed from the dashboard.
    #[arg(long, env = "ASYNCTASQ_DASHBOARD_READ_ONLY", hide_short_help = true)]
    read_only: bool,
}

impl DashboardAccess {
    /// The access rules the flags give, refused (a usage error) for a listener on `addr` off
    /// loopback without credentials.
    pub(crate) fn access(&self, addr: SocketAddr) -> Result<Access, Usage> {
        let usage = |flag: &str, e: asynctasq_dashboard::AccessError| Usage(format!("invalid {flag}: {e}"));
        let mut access = Access::open();
        if let Some(t) = &self.auth_token {
            access = access.token(t.clone(), Role::Operator).map_err(|e| usage("--auth-token", e))?;
        }
        if let Some(b) = &self.basic_auth {
            access = access.basic(b, Role::Operator).map_err(|e| usage("--basic-auth", e))?;
        }
        if let Some(t) = &self.viewer_token {
            access = access.token(t.clone(), Role::Viewer).map_err(|e| usage("--viewer-token", e))?;
        }
        if let Some(b) = &self.viewer_basic_auth {
            access = access.basic(b, Role::Viewer).map_err(|e| usage("--viewer-basic-auth", e))?;
        }
        if self.read_only {
            access = access.read_only();
        }
        access.check_listen(addr).map_err(|e| Usage(e.to_string()))?;
        Ok(access)
    }
}

/// `asynctasq dashboard`.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. Off loopback (`0.0.0.0:8080`) it needs --auth-token or --basic-auth.
    #[arg(long, env = "ASYNCTASQ_DASHBOARD_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    access: DashboardAccess,
}

/// The dashboard over `driver`, with the schedules `registry` declares.
pub(crate) fn dashboard(driver: Arc<dyn Driver>, shown_url: Option<String>, access: Access, registry: Registry) -> Dashboard {
    let label = shown_url.unwrap_or_else(|| driver.name().to_owned());
    Dashboard::new(driver, label).access(access).registry(Arc::new(registry))
}

/// Serves the dashboard until SIGINT or SIGTERM.
pub(crate) async fn serve(backend: &crate::backend::BackendArgs, args: DashboardArgs) -> anyhow::Result<()> {
    let access = args.access.access(args.listen)?;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("cannot install signal handlers")?;
    let driver = crate::backend::connect(backend, true).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, "dashboard: http://{addr}/");
    outln!("dashboard on http://{addr}/ (Ctrl-C stops it)");
    let dashboard = dashboard(driver, backend.shown_url(), access, Registry::linked()?);
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("dashboard: stopping");
    };
    dashboard.serve(listener, stop).await?;
    Ok(())
}
