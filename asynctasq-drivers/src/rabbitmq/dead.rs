//! Reading the dead queue. A dead queue is read with `basic.get` without ack on a channel of
//! its own: what is not acked returns to the dead queue, in its place, when the channel
//! closes, so listing consumes nothing and a requeue removes only what it moved.

use std::collections::HashSet;

use asynctasq_core::driver::{DeadSelector, DeadTask};
use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::{CodecError, DriverError};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions};

use super::error::lapin_err;
use super::message::Meta;
use super::session::Session;
use super::topology::Names;

/// A dead message taken with `basic.get` and not yet acked.
struct DeadMessage {
    tag: u64,
    data: Vec<u8>,
    meta: Meta,
    envelope: Result<Envelope, CodecError>,
    /// From the envelope, else from `message_id`.
    id: Option<TaskId>,
}

/// Takes the next message of the dead queue on `channel`, unacked.
async fn next_dead(channel: &Channel, names: &Names) -> Result<Option<DeadMessage>, DriverError> {
    let Some(m) =
        channel.basic_get(names.dead.as_str().into(), BasicGetOptions::default()).await.map_err(|e| lapin_err("reading dead tasks", e))?
    else {
        return Ok(None);
    };
    // A quorum dead queue (a cluster's) counts the reads given back in `x-delivery-count`: they
    // are not attempts of the task, whose attempts at death its own header holds.
    let meta = Meta::read_dead(&m.delivery.properties);
    let envelope = Envelope::decode(&m.delivery.data);
    let id = envelope.as_ref().map(|e| e.id).ok().or_else(|| meta.task_id());
    Ok(Some(DeadMessage { tag: m.delivery.delivery_tag, data: m.delivery.data, meta, envelope, id }))
}

/// Up to `limit` dead tasks of `queue`, oldest first, left in the dead queue.
pub(super) async fn list(session: &Session, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
    let names = session.ensure_topology(queue).await?;
    let channel = session.channel().await?;
    let mut out = Vec::new();
    let result = async {
        while out.len() < limit {
            let Some(m) = next_dead(&channel, &names).await? else { break };
            let (error, dead_at) = (m.meta.error.unwrap_or_default(), m.meta.dead_at.unwrap_or_default());
            out.push(DeadTask::new(m.id.unwrap_or_default(), queue, m.meta.spent, error, dead_at, m.envelope));
        }
        Ok::<_, DriverError>(())
    }
    .await;
    let _ = channel.close(200, "asynctasq: dead tasks listed".into()).await;
    result.map(|()| out)
}

/// Moves the dead tasks `which` selects back to the work queue of `queue`, ready at once with
/// their attempts reset; returns how many moved.
pub(super) async fn requeue(session: &Session, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
    let names = session.ensure_topology(queue).await?;
    let channel = session.channel().await?;
    let mut wanted: Option<HashSet<TaskId>> = match which {
        DeadSelector::All => None,
        DeadSelector::Ids(ids) => Some(ids.into_iter().collect()),
    };
    let mut moved = 0u64;
    let result = async {
        loop {
            if wanted.as_ref().is_some_and(HashSet::is_empty) {
                break;
            }
            let Some(m) = next_dead(&channel, &names).await? else { break };
            let chosen = match (&mut wanted, m.id) {
                (None, _) => true,
                (Some(w), Some(id)) => w.remove(&id),
                (Some(_), None) => false,
            };
            if chosen {
                let fresh = Meta { message_id: m.meta.message_id.clone(), replayed: true, ..Meta::default() };
                session.publish_on(&names.work, &m.data, &fresh).await?;
                channel.basic_ack(m.tag, BasicAckOptions::default()).await.map_err(|e| lapin_err("removing a requeued dead task", e))?;
                moved += 1;
            }
        }
        Ok::<_, DriverError>(())
    }
    .await;
    let _ = channel.close(200, "asynctasq: dead tasks requeued".into()).await;
    result.map(|()| moved)
}
