//! PostgreSQL's `LISTEN` connection: wakes waiting workers at every commit that makes a task
//! due, hands notices (settled tasks, cancels) to the driver's [`NoticeBus`], and is replaced
//! when it fails or stops answering (a half-open connection tells nothing otherwise).

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{DriverError, NoticeBus};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

use super::map_err;
use super::pool::Pools;

/// What the listener listens to: the channel that wakes workers, and the one of notices with
/// the bus it feeds.
pub(super) struct Channels {
    pub(super) ready: String,
    pub(super) notices: String,
    pub(super) bus: Arc<NoticeBus>,
}

/// A listener on both `channels` from the live pool, within the request timeout.
pub(super) async fn listen(pools: &Pools<sqlx::Postgres>, channels: &Channels) -> Result<PgListener, DriverError> {
    pools
        .bounded("LISTEN", pools.request_timeout(), async {
            let mut listener = PgListener::connect_with(&pools.pool()).await.map_err(|e| map_err("LISTEN connection", e))?;
            listener.listen_all([channels.ready.as_str(), channels.notices.as_str()]).await.map_err(|e| map_err("LISTEN", e))?;
            Ok(listener)
        })
        .await
}

/// How long the listener may hear nothing before it checks that its connection still answers.
const LISTEN_CHECK: Duration = Duration::from_secs(5);

/// Wakes waiters on every notification. A listener that fails, or hears nothing for
/// [`LISTEN_CHECK`] and then gets no answer to a query within the request timeout (a
/// half-open connection tells nothing otherwise), is replaced by a new one from the live pool;
/// meanwhile waiters fall back to their poll interval.
pub(super) async fn keep_listening(mut listener: PgListener, pools: Arc<Pools<sqlx::Postgres>>, channels: Channels, wake: Arc<Notify>) {
    loop {
        let alive = match tokio::time::timeout(LISTEN_CHECK, listener.recv()).await {
            Ok(Ok(notification)) => {
                if notification.channel() == channels.notices {
                    channels.bus.send_payload(notification.payload());
                } else {
                    wake.notify_waiters();
                }
                continue;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "PostgreSQL listener lost its connection; reconnecting");
                false
            }
            Err(_) => {
                let check = tokio::time::timeout(pools.request_timeout(), sqlx::query("SELECT 1").execute(&mut listener)).await;
                let answered = matches!(check, Ok(Ok(_)));
                if !answered {
                    tracing::warn!("PostgreSQL listener's connection does not answer; replacing it");
                }
                answered
            }
        };
        if alive {
            continue;
        }
        wake.notify_waiters();
        loop {
            match listen(&pools, &channels).await {
                Ok(l) => {
                    listener = l;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL listener could not reconnect; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        // Whatever was notified while the listener was away is found by the next claim.
        wake.notify_waiters();
    }
}
