//! Notices over Redis pub/sub: the scripts `PUBLISH` to the prefix's `notices` channel as they
//! settle tasks (`s:ID,ID…`) and as a cancel flags a leased one (`c:ID`); each driver handle
//! subscribes once, on the first [`notices`](asynctasq_core::Driver::notices) call, and hands
//! what it hears to its [`NoticeBus`].
//!
//! A subscriber that loses its connection subscribes again after a pause; what was published
//! meanwhile is lost, which costs listeners time, never an answer (see
//! [`asynctasq_core::notice`]). A half-open subscription hears nothing and looks like a quiet
//! channel: it is renewed every [`RENEW`] for that reason.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::NoticeBus;
use futures_util::StreamExt;

/// How long one subscription lives before it is replaced (a half-open one tells nothing).
const RENEW: Duration = Duration::from_secs(60);

/// The channel of `prefix`'s notices (what `_common.lua` derives from its first key).
pub(super) fn channel(prefix: &str) -> String {
    format!("{prefix}notices")
}

/// Subscribes to `channel` and feeds `bus` for as long as it runs, subscribing again after
/// each failure or [`RENEW`], through the next of `clients` (the nodes of a cluster, where a
/// message published on one node reaches the subscribers of every node).
pub(super) async fn subscribe(clients: Vec<::redis::Client>, channel: String, bus: Arc<NoticeBus>) {
    for client in clients.iter().cycle() {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    let until = tokio::time::Instant::now() + RENEW;
                    while let Ok(Some(message)) = tokio::time::timeout_at(until, messages.next()).await {
                        if let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) {
                            bus.send_payload(payload);
                        }
                    }
                    continue;
                }
                Err(error) => tracing::debug!(%error, "subscribing to Redis notices failed; retrying"),
            },
            Err(error) => tracing::debug!(%error, "connecting for Redis notices failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
