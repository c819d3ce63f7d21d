//! The SQS client, what it has asked of SQS, and its errors: [`Sqs`] wraps the SDK client
//! with the queue URL cache and request counters, and maps SDK errors onto the driver's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use asynctasq_core::DriverError;
use asynctasq_core::envelope::TaskId;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;

use super::names::{Names, names};
use crate::sync::lock;

/// SQS requests made by one driver handle, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// `SendMessageBatch` calls.
    pub send: u64,
    /// `ReceiveMessage` calls, long polls included.
    pub receive: u64,
    /// `DeleteMessageBatch` calls.
    pub delete: u64,
    /// `ChangeMessageVisibility` and its batch form (lease changes, retries, heartbeats).
    pub visibility: u64,
    /// Everything else (queue lookups and creation, counts, listing; the connect check).
    pub other: u64,
}

impl Requests {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.send + self.receive + self.delete + self.visibility + self.other
    }

    /// The requests made since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            send: self.send - earlier.send,
            receive: self.receive - earlier.receive,
            delete: self.delete - earlier.delete,
            visibility: self.visibility - earlier.visibility,
            other: self.other - earlier.other,
        }
    }
}

/// A kind of request, as [`Requests`] counts them.
#[derive(Clone, Copy)]
pub(super) enum Call {
    Send,
    Receive,
    Delete,
    Visibility,
    Other,
}

/// One task queue's SQS queues, resolved.
#[derive(Clone, Debug)]
pub(super) struct Queue {
    pub(super) name: String,
    pub(super) names: Names,
    pub(super) url: String,
}

/// The SDK client with the queue URLs it has resolved and the requests it has made.
pub(super) struct Sqs {
    pub(super) client: Client,
    queue_prefix: String,
    queue_url_prefix: Option<String>,
    /// Longest a request may take (a long poll: on top of its wait).
    pub(super) request_timeout: Duration,
    /// Largest message SQS takes.
    pub(super) max_message_bytes: usize,
    urls: Mutex<HashMap<String, String>>,
    requests: [AtomicU64; 5],
}

impl Sqs {
    /// Queues named `queue_prefix` + task queue; with a `queue_url_prefix` their URLs are that
    /// prefix + name, and no queue is ever created.
    pub(super) fn new(
        client: Client,
        queue_prefix: &str,
        queue_url_prefix: Option<String>,
        request_timeout: Duration,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            client,
            queue_prefix: queue_prefix.to_owned(),
            queue_url_prefix,
            request_timeout,
            max_message_bytes,
            urls: Mutex::default(),
            requests: Default::default(),
        }
    }

    pub(super) fn queue_prefix(&self) -> &str {
        &self.queue_prefix
    }

    /// Counts `n` requests of kind `call`.
    pub(super) fn count(&self, call: Call, n: usize) {
        self.requests[call as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The requests made so far (the connect check counted as one).
    pub(super) fn requests(&self) -> Requests {
        let get = |c: Call| self.requests[c as usize].load(Ordering::Relaxed);
        Requests {
            send: get(Call::Send),
            receive: get(Call::Receive),
            delete: get(Call::Delete),
            visibility: get(Call::Visibility),
            other: get(Call::Other) + 1,
        }
    }

    /// An SDK error of a call on queue `url`; a missing queue is named, with why it was not
    /// created.
    pub(super) fn error<E, R>(&self, url: &str, what: &str, e: SdkError<E, R>) -> DriverError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        if !missing_queue(e.code()) {
            return sdk_error(what, e);
        }
        lock(&self.urls).retain(|_, u| u != url);
        let why =
            if self.queue_url_prefix.is_some() { " (with a queue URL prefix the driver creates no queue: create it first)" } else { "" };
        DriverError::Config(format!("SQS queue {url} does not exist{why}"))
    }

    /// The URL of SQS queue `name`, creating it when `create` (and no URL prefix is set).
    pub(super) async fn url(&self, name: &str, fifo: bool, create: bool) -> Result<Option<String>, DriverError> {
        if let Some(url) = lock(&self.urls).get(name) {
            return Ok(Some(url.clone()));
        }
        let url = if let Some(prefix) = &self.queue_url_prefix {
            Some(format!("{prefix}{name}"))
        } else {
            self.count(Call::Other, 1);
            match self.client.get_queue_url().queue_name(name).send().await {
                Ok(out) => out.queue_url().map(str::to_owned),
                Err(e) if missing_queue(e.code()) => {
                    if !create {
                        return Ok(None);
                    }
                    self.count(Call::Other, 1);
                    let mut req = self.client.create_queue().queue_name(name);
                    if fifo {
                        req = req.attributes(QueueAttributeName::FifoQueue, "true");
                    }
                    let out = req.send().await.map_err(|e| sdk_error(&format!("creating SQS queue {name}"), e))?;
                    out.queue_url().map(str::to_owned)
                }
                Err(e) => return Err(sdk_error(&format!("looking up SQS queue {name}"), e)),
            }
        };
        if let Some(url) = &url {
            lock(&self.urls).insert(name.to_owned(), url.clone());
        }
        Ok(url)
    }

    /// Forgets the URL of SQS queue `name` (deleted).
    pub(super) fn forget(&self, name: &str) {
        lock(&self.urls).remove(name);
    }

    /// Task queue `queue` with its work queue's URL (`None` when it does not exist and
    /// `create` is false).
    pub(super) async fn queue(&self, queue: &str, create: bool) -> Result<Option<Queue>, DriverError> {
        let names = names(&self.queue_prefix, queue)?;
        let url = self.url(&names.work, names.fifo, create).await?;
        Ok(url.map(|url| Queue { name: queue.to_owned(), names, url }))
    }

    /// Task queue `queue`, its SQS queue created if missing.
    pub(super) async fn queue_or_create(&self, queue: &str) -> Result<Queue, DriverError> {
        self.queue(queue, true).await?.ok_or_else(|| DriverError::Config(format!("SQS queue for `{queue}` cannot be created")))
    }

    /// The URL of `q`'s dead-letter queue (`None` when it does not exist and `create` is false).
    pub(super) async fn dead_url(&self, q: &Queue, create: bool) -> Result<Option<String>, DriverError> {
        self.url(&q.names.dead, q.names.fifo, create).await
    }

    /// Hides the message of task `id` with `receipt` for `secs` seconds; a stale receipt is a
    /// lost lease.
    pub(super) async fn hide(&self, url: &str, receipt: &str, id: TaskId, secs: u32, what: &str) -> Result<(), DriverError> {
        self.count(Call::Visibility, 1);
        match self.client.change_message_visibility().queue_url(url).receipt_handle(receipt).visibility_timeout(secs as i32).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code().is_some_and(stale_receipt) => Err(DriverError::LeaseLost(id)),
            Err(e) => Err(sdk_error(what, e)),
        }
    }
}

/// A driver error from an SDK error: connection trouble, throttling and server errors are
/// transient ([`DriverError::Unavailable`]), the rest name SQS's code and message.
pub(super) fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> DriverError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            code.contains("Throttl") || code.contains("Unavailable") || code.contains("InternalError")
        }
        _ => true,
    };
    let message = match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{what}: {code}: {msg}"),
        (Some(code), None) => format!("{what}: {code}"),
        _ => format!("{what}: {}", DisplayErrorContext(&e)),
    };
    if transient {
        DriverError::Unavailable { message, source: Some(Box::new(e)) }
    } else {
        DriverError::Backend { message, source: Some(Box::new(e)) }
    }
}

fn missing_queue(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist"))
}

/// Whether SQS refused a receipt handle as stale (the message was received again).
pub(super) fn stale_receipt(code: &str) -> bool {
    code.contains("ReceiptHandleIsInvalid") || code.contains("MessageNotInflight") || code.contains("InvalidParameterValue")
}
