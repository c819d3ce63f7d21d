//! Confirmed publishing: every message is mandatory and persistent, and counts as sent only
//! once the broker confirms it.

use asynctasq_core::DriverError;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation, PublisherConfirm};

use super::error::lapin_err;
use super::message::Meta;

/// Where a task's message goes: the work queue, the dead queue, or the delay bucket for a
/// task due in that many milliseconds.
#[derive(Clone, Copy)]
pub(super) enum Route {
    Work,
    Dead,
    Delay(u64),
}

/// Publishes one message on `publisher` (a channel in confirm mode) without waiting for its
/// confirm, so a batch has all its messages in flight at once.
pub(super) async fn send(publisher: &Channel, routing_key: &str, body: &[u8], meta: &Meta) -> Result<PublisherConfirm, DriverError> {
    publisher
        .basic_publish(
            "".into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            meta.properties(),
        )
        .await
        .map_err(|e| lapin_err("publishing", e))
}

/// Waits for a publish confirm: a nack or a returned (unroutable) message is an error.
pub(super) async fn confirmed(confirm: PublisherConfirm, key: &str) -> Result<(), DriverError> {
    check_confirm(confirm.await.map_err(|e| lapin_err("waiting for the publish confirm", e))?, key)
}

fn check_confirm(confirmation: Confirmation, key: &str) -> Result<(), DriverError> {
    match confirmation {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(DriverError::Backend { message: format!("RabbitMQ returned a message for `{key}`: {}", returned.reply_text), source: None })
        }
        Confirmation::Nack(None) => {
            Err(DriverError::Backend { message: format!("RabbitMQ refused a message for `{key}` (nack)"), source: None })
        }
    }
}
