//! The registry: a queue of task-queue names, one message per task queue this prefix has
//! used, so `queues()` can list them (AMQP has no way to list queues).
//!
//! The registry is read with `basic.get` without ack on a channel of its own: closing the
//! channel puts every message back.

use std::collections::BTreeSet;

use asynctasq_core::DriverError;
use asynctasq_core::envelope::validate_queue_name;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};

use super::error::lapin_err;
use super::session::Session;
use super::topology;

/// Every task queue in the registry. Duplicates and foreign names are acked (compacted).
pub(super) async fn read(session: &Session, prefix: &str) -> Result<BTreeSet<String>, DriverError> {
    let channel = session.channel().await?;
    let registry = topology::registry(prefix);
    let mut names = BTreeSet::new();
    let result = async {
        loop {
            let m = match channel.basic_get(registry.as_str().into(), BasicGetOptions::default()).await {
                Ok(Some(m)) => m,
                Ok(None) => break,
                // No registry: every queue of this prefix was deleted.
                Err(e) if topology::is_not_found(&e) => break,
                Err(e) => return Err(lapin_err("reading the queue registry", e)),
            };
            let name = String::from_utf8_lossy(&m.delivery.data).into_owned();
            if validate_queue_name(&name).is_err() || !names.insert(name) {
                channel
                    .basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| lapin_err("compacting the queue registry", e))?;
            }
        }
        Ok::<_, DriverError>(())
    }
    .await;
    let _ = channel.close(200, "asynctasq: registry read".into()).await;
    result.map(|()| names)
}

/// Removes `queue` from the registry, and the registry itself once it is empty.
pub(super) async fn forget(session: &Session, prefix: &str, queue: &str) -> Result<(), DriverError> {
    let registry = topology::registry(prefix);
    let channel = session.channel().await?;
    let mut kept = 0usize;
    loop {
        let m = match channel.basic_get(registry.as_str().into(), BasicGetOptions::default()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            // No registry: no queue of this prefix is left to forget.
            Err(e) if topology::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(lapin_err("reading the queue registry", e)),
        };
        if m.delivery.data == queue.as_bytes() {
            channel
                .basic_ack(m.delivery.delivery_tag, BasicAckOptions::default())
                .await
                .map_err(|e| lapin_err("updating the queue registry", e))?;
        } else {
            kept += 1;
        }
    }
    let _ = channel.close(200, "asynctasq: registry updated".into()).await;
    if kept == 0 {
        // `if_empty`: a queue registered meanwhile by another process keeps the registry.
        let channel = session.channel().await?;
        let options = QueueDeleteOptions { if_empty: true, ..Default::default() };
        if channel.queue_delete(registry.as_str().into(), options).await.is_ok() {
            let _ = channel.close(200, "asynctasq: registry deleted".into()).await;
            session.registry_gone();
        }
    }
    Ok(())
}
