//! Batched requests: sends, deletes and visibility changes go 10 messages per call and
//! [`WAVE`] calls at a time; receives ask for full batches, several calls in parallel.

use std::time::Duration;

use asynctasq_core::DriverError;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::BuildError;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use futures_util::future::join_all;

use super::client::{Call, Sqs, sdk_error};
use super::message::{Incoming, Outgoing};

/// Batch calls in flight at once for one bulk operation.
const WAVE: usize = 16;
/// SQS's most messages per receive and per batch call.
pub(super) const BATCH: usize = 10;

/// Sends message copies, each with its delay in seconds, in batches within SQS's limits.
/// Nothing is sent when one copy is too large.
pub(super) async fn send(sqs: &Sqs, url: &str, fifo: bool, items: Vec<(Outgoing, u32)>) -> Result<(), DriverError> {
    let limit = sqs.max_message_bytes;
    if let Some((o, _)) = items.iter().find(|(o, _)| o.size() > limit) {
        return Err(DriverError::TooLarge { id: o.id, size: o.size(), limit });
    }
    let mut batches = Vec::new();
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for (o, delay) in &items {
        if batch.len() == BATCH || bytes + o.size() > limit {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        batch.push(o.entry(batch.len(), *delay, fifo)?);
        bytes += o.size();
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let mut batches = batches.into_iter();
    loop {
        let wave: Vec<_> = batches.by_ref().take(WAVE).collect();
        if wave.is_empty() {
            return Ok(());
        }
        sqs.count(Call::Send, wave.len());
        let calls = wave.into_iter().map(|entries| sqs.client.send_message_batch().queue_url(url).set_entries(Some(entries)).send());
        for result in join_all(calls).await {
            let out = result.map_err(|e| sqs.error(url, "sending tasks to SQS", e))?;
            if let Some(f) = out.failed().first() {
                return Err(DriverError::Backend {
                    message: format!("SQS refused {} task(s): {}: {}", out.failed().len(), f.code(), f.message().unwrap_or_default()),
                    source: None,
                });
            }
        }
    }
}

/// Runs `call` once per batch of up to 10 `items`, `WAVE` calls at a time. `call` gets the
/// index of its first item and the batch, and returns the (batch entry id, code) pairs SQS
/// refused; entry ids are the items' indexes, so the result is (index, code).
async fn in_batches<T, F, Fut>(sqs: &Sqs, kind: Call, items: &[T], call: F) -> Result<Vec<(usize, String)>, DriverError>
where
    F: Fn(usize, &[T]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(String, String)>, DriverError>>,
{
    let mut failed = Vec::new();
    for (w, wave) in items.chunks(BATCH * WAVE).enumerate() {
        let calls = wave.chunks(BATCH).enumerate().map(|(b, chunk)| call(w * BATCH * WAVE + b * BATCH, chunk));
        sqs.count(kind, wave.len().div_ceil(BATCH));
        for out in join_all(calls).await {
            failed.extend(out?.into_iter().map(|(id, code)| (id.parse().unwrap_or(usize::MAX), code)));
        }
    }
    Ok(failed)
}

/// The batch entries for `chunk`, the first being item `first`: each entry's id is its item's
/// index, so what SQS refuses maps back to the items.
fn entries<T, E>(first: usize, chunk: &[T], build: impl Fn(String, &T) -> Result<E, BuildError>) -> Result<Vec<E>, DriverError> {
    chunk
        .iter()
        .enumerate()
        .map(|(i, item)| build((first + i).to_string(), item))
        .collect::<Result<_, _>>()
        .map_err(|e| DriverError::backend("building an SQS request", e))
}

/// Deletes messages by receipt handle; returns the indexes SQS refused, with the code.
pub(super) async fn delete(sqs: &Sqs, url: &str, receipts: &[&str]) -> Result<Vec<(usize, String)>, DriverError> {
    in_batches(sqs, Call::Delete, receipts, |first, chunk| {
        let entries = entries(first, chunk, |id, r| DeleteMessageBatchRequestEntry::builder().id(id).receipt_handle(*r).build());
        async move {
            let request = sqs.client.delete_message_batch().queue_url(url).set_entries(Some(entries?));
            let out = request.send().await.map_err(|e| sdk_error("deleting SQS messages", e))?;
            Ok(out.failed().iter().map(|f| (f.id().to_owned(), f.code().to_owned())).collect())
        }
    })
    .await
}

/// Sets the visibility of messages (receipt handle, seconds); returns the indexes SQS refused.
pub(super) async fn change_visibility(sqs: &Sqs, url: &str, items: &[(&str, u32)]) -> Result<Vec<usize>, DriverError> {
    let entry = |id, (receipt, secs): &(&str, u32)| {
        ChangeMessageVisibilityBatchRequestEntry::builder().id(id).receipt_handle(*receipt).visibility_timeout(*secs as i32).build()
    };
    let refused = in_batches(sqs, Call::Visibility, items, |first, chunk| {
        let entries = entries(first, chunk, entry);
        async move {
            let request = sqs.client.change_message_visibility_batch().queue_url(url).set_entries(Some(entries?));
            let out = request.send().await.map_err(|e| sdk_error("changing SQS message visibility", e))?;
            Ok(out.failed().iter().map(|f| (f.id().to_owned(), f.code().to_owned())).collect())
        }
    })
    .await?;
    Ok(refused.into_iter().map(|(i, _)| i).collect())
}

/// Receives up to `calls` batches in parallel, waiting up to `wait` seconds (a long poll) and
/// hidden for `visibility` seconds; each call is bounded by its wait plus the request timeout.
pub(super) async fn receive(sqs: &Sqs, url: &str, calls: usize, wait: u32, visibility: u32) -> Result<Vec<Incoming>, DriverError> {
    sqs.count(Call::Receive, calls);
    let receives = (0..calls).map(|_| {
        sqs.client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(BATCH as i32)
            .visibility_timeout(visibility as i32)
            .wait_time_seconds(wait as i32)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(
                TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(u64::from(wait)) + sqs.request_timeout).build(),
            ))
            .send()
    });
    let (mut got, mut error) = (Vec::new(), None);
    for result in join_all(receives).await {
        match result {
            Ok(out) => got.extend(out.messages().iter().filter_map(Incoming::parse)),
            Err(e) => error = Some(sqs.error(url, "receiving from SQS", e)),
        }
    }
    match error {
        Some(e) if got.is_empty() => Err(e),
        _ => Ok(got),
    }
}

/// Receives every message of `url` it can (hidden for `visibility` seconds), up to `limit`.
/// Long polls of 1 s: a short poll on AWS samples some of its servers and can come back
/// empty while messages remain.
pub(super) async fn drain(sqs: &Sqs, url: &str, visibility: u32, limit: usize) -> Result<Vec<Incoming>, DriverError> {
    let mut all = Vec::new();
    while all.len() < limit {
        let got = receive(sqs, url, 1, 1, visibility).await?;
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    Ok(all)
}
