//! Stopping a worker: from its handle, or on SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;

/// Signals this close to the first stop signal repeat it rather than force an immediate stop.
pub const SAME_STOP: std::time::Duration = std::time::Duration::from_millis(200);

/// Stops a running worker. Cheap to clone; every clone stops the same worker.
#[derive(Clone, Debug, Default)]
pub struct WorkerHandle {
    pub(crate) graceful: CancellationToken,
    pub(crate) immediate: CancellationToken,
}

impl WorkerHandle {
    /// Graceful stop: fetch nothing more, let running tasks finish within the shutdown grace
    /// period, then release the rest so another worker takes them at once.
    pub fn stop(&self) {
        self.graceful.cancel();
    }

    /// Immediate stop: release every running task now.
    pub fn stop_now(&self) {
        self.graceful.cancel();
        self.immediate.cancel();
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.graceful.is_cancelled()
    }

    /// Waits until a stop is asked for (at once if one was already), e.g. to give up
    /// connecting when the process is told to stop before its worker runs.
    pub async fn stopping(&self) {
        self.graceful.cancelled().await;
    }

    /// Stops the worker gracefully on the first SIGINT or SIGTERM and at once on a later one.
    /// The signal handlers are installed before this returns; the waiting runs in a task spawned
    /// on the current runtime. Install them first thing (a handle can be made before its worker,
    /// see [`WorkerBuilder::handle`](crate::WorkerBuilder::handle)), so a signal that arrives
    /// while the process connects or migrates is a graceful stop too, never the default action.
    ///
    /// Signals within [`SAME_STOP`] of the first are the same request, not "stop now": GNU
    /// `timeout` (common around `worker run-once` in cron) signals the worker and then its
    /// process group, microseconds apart. A deliberate second Ctrl-C comes later and forces.
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        let handle = self.clone();
        let mut signals = Signals::install()?;
        tokio::spawn(async move {
            signals.recv().await;
            let first = tokio::time::Instant::now();
            tracing::info!("stop signal received: finishing running tasks (send again to stop at once)");
            handle.stop();
            loop {
                signals.recv().await;
                if first.elapsed() >= SAME_STOP {
                    break;
                }
                tracing::debug!("stop signal repeated within {SAME_STOP:?} of the first: the same stop");
            }
            tracing::warn!("second stop signal: releasing running tasks and stopping now");
            handle.stop_now();
        });
        Ok(())
    }
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
