//! Publishing engine events on a Redis pub/sub channel, for monitors.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{DriverError, Events};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::connection::{Conn, Connections, Target};

/// Publishes every [`Event`](asynctasq_core::Event) of a bus as MessagePack (named fields,
/// tagged by `event`) on a channel, `asynctasq:events` by default.
///
/// Publishing is best effort, as pub/sub itself is: events sent while Redis is unreachable, or
/// while this publisher lags more than the bus's capacity behind, are dropped and counted in a
/// warning; the worker is never slowed or stopped by its monitor.
#[derive(Debug)]
pub struct RedisEventPublisher {
    task: JoinHandle<()>,
}

/// How long a publish may wait for its answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The channel the seed system's monitors listen on.
pub const DEFAULT_EVENTS_CHANNEL: &str = "asynctasq:events";

impl RedisEventPublisher {
    /// Connects to the Redis at `url` and starts publishing `events` on `channel`.
    pub async fn connect(url: &str, events: &Events, channel: impl Into<String>) -> Result<Self, DriverError> {
        let target = Target::from_url(url, TIMEOUT)
            .map_err(|e| DriverError::Config(format!("invalid Redis URL {}: {e}", asynctasq_core::redact_url(url))))?;
        Self::start_on(target, events, channel).await
    }

    /// Starts publishing `events` on `channel` through a connection of `client` (with the
    /// driver's deadlines: a publish that gets no answer within 5 s is dropped and the next one
    /// uses a new connection).
    pub async fn start(client: &::redis::Client, events: &Events, channel: impl Into<String>) -> Result<Self, DriverError> {
        Self::start_on(Target::Single(client.clone()), events, channel).await
    }

    async fn start_on(target: Target, events: &Events, channel: impl Into<String>) -> Result<Self, DriverError> {
        let mut conn = Conn(Arc::new(Connections::open(target, TIMEOUT, None).await?));
        let channel = channel.into();
        let mut rx = events.subscribe();
        let task = tokio::spawn(async move {
            let mut dropped = 0u64;
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        dropped += n;
                        tracing::warn!(dropped, "event publisher lagged; events dropped");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Ok(bytes) = rmp_serde::to_vec_named(&event) else { continue };
                let sent: Result<i64, _> = ::redis::cmd("PUBLISH").arg(&channel).arg(bytes).query_async(&mut conn).await;
                if let Err(error) = sent {
                    dropped += 1;
                    tracing::warn!(%error, dropped, "publishing an event failed; dropped");
                }
            }
        });
        Ok(Self { task })
    }

    /// Stops publishing.
    pub fn stop(self) {
        self.task.abort();
    }

    /// Publishes what the bus still holds once every sender of the bus is gone (the worker has
    /// stopped and been dropped), waiting at most `within`; then stops. A worker's last events
    /// (`worker_stopped`) reach the channel this way instead of dying with the process.
    pub async fn finish(self, within: Duration) {
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            tracing::warn!(?within, "the event publisher did not finish in time; its last events are dropped");
            task.abort();
        }
    }
}
