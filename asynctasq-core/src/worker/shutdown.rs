//! Stopping a worker: from its handle, or on SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;

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

    /// Stops the worker gracefully on the first SIGINT or SIGTERM and at once on the second.
    /// The signal handlers are installed before this returns; the waiting runs in a task spawned
    /// on the current runtime.
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        let handle = self.clone();
        let mut signals = Signals::install()?;
        tokio::spawn(async move {
            signals.recv().await;
            tracing::info!("stop signal received: finishing running tasks (send again to stop at once)");
            handle.stop();
            signals.recv().await;
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
