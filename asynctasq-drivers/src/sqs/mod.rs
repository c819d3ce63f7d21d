//! The AWS SQS driver.
//!
//! Queue names are in `names.rs`, the message format in `message.rs`; this module keeps the
//! delivery contract on top of SQS's standard and FIFO queues.
//!
//! # Leases
//! The lease is the message's visibility timeout. Receives ask for the lease the queue's tasks
//! last asked for ([`SqsConfig::first_lease`] until one is seen); a task whose lease differs gets
//! its own with `ChangeMessageVisibility` before it is handed out, and the worker's heartbeat
//! extends it the same way. SQS caps a message's visibility at 12 hours after it was received,
//! so no lease (and no heartbeat) reaches past that.
//!
//! * **Attempts** come from SQS's receive count: a delivery's attempt is the `asynctasq.base`
//!   attribute (attempts spent before this copy) plus `ApproximateReceiveCount`. A worker that
//!   dies mid-task leaves the message to reappear when its visibility runs out, as the next
//!   attempt.
//! * **Fencing: none.** SQS may accept a delete or visibility change with the receipt handle of
//!   an earlier receive, so a consumer whose lease ran out can still ack the task under its new
//!   holder. Keep leases longer than tasks run (the heartbeat does), and make tasks idempotent.
//!   Where SQS does refuse a stale receipt handle, the driver reports the lease lost.
//! * **Retries** (`nack`) change the message's visibility to the retry delay: the message is
//!   neither deleted nor sent again, and SQS counts the next receive. The retry's error is not
//!   stored (it is in the worker's events and logs); a dead copy keeps the last error. A retry
//!   delay that would end more than 12 hours after the receive sends a copy due at the right
//!   time instead (standard queues) or is cut to the 12 hours (FIFO queues).
//! * **Release** (graceful shutdown) and giving back prefetched messages send a copy whose base
//!   takes back the receive, then delete the original: if the process dies in between, the task
//!   exists twice (at least once, never zero times).
//!
//! # Delays
//! SQS delays a message by at most 15 minutes (`DelaySeconds`). The due time travels in the
//! `asynctasq.not-before` attribute; a message received before it is due is sent again with
//! the rest of its delay (at most 15 minutes at a time) and the early copy deleted, with its
//! base adjusted so the early receive is not an attempt. So a task delayed by a day is never
//! run early and never lost; it costs two requests per 15 minutes of waiting. FIFO queues take
//! no per-message delay, so a delayed dispatch to a `.fifo` queue is refused with a clear
//! error; retries on FIFO queues work (they hide the message).
//!
//! # Fetching
//! [`wait_ready`](Driver::wait_ready) long-polls each queue (`WaitTimeSeconds`, up to
//! [`SqsConfig::wait_time`]) in a task of its own and keeps what arrives in a local buffer;
//! [`dequeue`](Driver::dequeue) hands out buffered messages first, earliest due first, and
//! otherwise receives full batches of 10 at once (several calls in parallel for large requests),
//! buffering the rest. Acks are batched deletes, sends are batched (10 messages and at most
//! [`SqsConfig::max_message_bytes`] per call). At full batches a task costs a tenth of a send,
//! a receive and a delete.
//!
//! # Dead letters, purge, stats
//! Each work queue has a dead-letter queue (`<name>-dead`, created when first needed) holding
//! dead copies with the error, attempt and time as attributes. Listing dead tasks receives them
//! and makes them visible again at once; requeueing sends fresh copies to the work queue.
//! `purge` receives and deletes the ready messages: SQS cannot reach a delayed or hidden
//! message, and its own `PurgeQueue` would also delete leased ones, so scheduled tasks survive
//! a purge ([`Capability::PurgeScheduled`] is lacking). Stats are SQS's approximate counts
//! (eventually consistent on AWS) with this handle's leases and buffer taken into account.
//!
//! No worker registry ([`Capability::WorkerRegistry`]): SQS holds messages, not records that are
//! rewritten and expire; `asynctasq workers` says so.
//!
//! # Queues
//! Queues are created on demand (`GetQueueUrl`, then `CreateQueue`), or, with
//! [`SqsConfig::queue_url_prefix`], addressed as `<url prefix><name>` and never created.
//! Read-only calls (`stats`, `dead`, `purge`) never create a queue.

mod message;
mod names;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use asynctasq_core::DriverError;
use asynctasq_core::driver::{Capability, DeadSelector, DeadTask, Delivery, Driver, Lease, QueueStats, Waiting};
use asynctasq_core::envelope::{Envelope, TaskId, millis, unix_millis, validate_queue_name};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::message::GROUP_HEADER;
use self::message::{Death, Incoming, Meta, Outgoing, clip_error};
use self::names::{Names, names, task_queue, validate_prefix};
pub use aws_sdk_sqs::config::Credentials;

/// Batch calls in flight at once for one bulk operation.
const WAVE: usize = 16;
/// SQS's most messages per receive and per batch call.
const BATCH: usize = 10;

/// Settings of an [`SqsDriver`].
#[derive(Clone, Debug)]
pub struct SqsConfig {
    /// AWS region; `None` takes it from the standard chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint URL instead of AWS's (a local server such as moto: `http://127.0.0.1:4566`).
    pub endpoint_url: Option<String>,
    /// Prefix of every SQS queue name (`<prefix><queue>`, `<prefix><queue>-dead`).
    pub queue_prefix: String,
    /// Address queues as `<url prefix><prefix><queue>` (for example
    /// `https://sqs.us-east-1.amazonaws.com/123456789012/`) without looking them up, and never
    /// create them.
    pub queue_url_prefix: Option<String>,
    /// Static credentials; `None` uses the standard AWS chain (environment, profile, IMDS).
    pub credentials: Option<Credentials>,
    /// SQS's message size limit, which also bounds one batch call (256 KiB).
    pub max_message_bytes: usize,
    /// SQS's longest `DelaySeconds` (15 minutes). Tests shorten it to exercise long delays.
    pub max_delay: Duration,
    /// SQS's longest visibility after a receive (12 hours). Tests shorten it.
    pub max_visibility: Duration,
    /// Longest long poll (`WaitTimeSeconds`, at most 20 s; default 5 s). A poll's answer lost
    /// to a half-open connection is noticed only when the poll's deadline (this plus
    /// `request_timeout`) runs out, so the default keeps an idle worker's recovery from a
    /// silent connection loss near 10 s; 20 s saves empty receives (a few per minute per queue
    /// and worker) at the cost of a 25 s recovery.
    pub wait_time: Duration,
    /// Visibility of receives from a queue before the driver has seen its tasks' lease.
    pub first_lease: Duration,
    /// Attempts of one SDK call (throttling and transient errors are retried with backoff).
    pub max_attempts: u32,
    /// Longest one attempt of a call may wait for its answer (default 5 s; a long poll gets
    /// this on top of its wait). An attempt that runs out is dropped with its HTTP connection
    /// and retried on a new one, so a half-open connection costs one attempt.
    pub request_timeout: Duration,
    /// Receive calls one `dequeue` makes in parallel for a large request (each takes up to 10
    /// messages). One handle never runs two receives of one queue at once otherwise: moto
    /// (the local test server) can hand one message to two parallel receives, so tests set 1.
    pub receive_calls: usize,
}

impl SqsConfig {
    /// Settings from a URL: `sqs://REGION?endpoint=http://127.0.0.1:4566&queue_prefix=app-`
    /// (`sqs://` alone: the region of the AWS chain). The query may set `endpoint`,
    /// `queue_prefix`, `queue_url_prefix`, `receive_calls`, `wait_time`, `request_timeout`,
    /// `max_attempts` and `first_lease`; credentials always come from the AWS chain
    /// (environment, profile), never from the URL. An unknown option is an error naming it.
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        let mut q = crate::url::Query::parse("SQS", url);
        let Some(region) = q.base().strip_prefix("sqs://").or_else(|| q.base().strip_prefix("sqs:")) else {
            return Err(DriverError::Config(format!("an SQS URL starts with sqs:// (got `{}`)", asynctasq_core::envelope::excerpt(url))));
        };
        let region = region.trim_end_matches('/');
        if region.contains(['/', '@', ':']) {
            return Err(DriverError::Config(format!(
                "an SQS URL is sqs://REGION?options, with credentials from the AWS chain (got `{}`)",
                crate::redact::redact_url(&asynctasq_core::envelope::excerpt(url))
            )));
        }
        let mut config = Self::new((!region.is_empty()).then(|| region.to_owned()));
        config.endpoint_url = q.take("endpoint");
        q.set_string("queue_prefix", &mut config.queue_prefix);
        config.queue_url_prefix = q.take("queue_url_prefix");
        q.set_number("receive_calls", &mut config.receive_calls)?;
        q.set_duration("wait_time", &mut config.wait_time)?;
        q.set_duration("request_timeout", &mut config.request_timeout)?;
        q.set_number("max_attempts", &mut config.max_attempts)?;
        q.set_duration("first_lease", &mut config.first_lease)?;
        q.finish(
            &[
                "endpoint",
                "queue_prefix",
                "queue_url_prefix",
                "receive_calls",
                "wait_time",
                "request_timeout",
                "max_attempts",
                "first_lease",
            ],
            &[],
        )?;
        Ok(config)
    }

    /// Settings for `region` (or the standard chain's region when `None`) with SQS's limits.
    pub fn new(region: Option<String>) -> Self {
        Self {
            region,
            endpoint_url: None,
            queue_prefix: "asynctasq-".into(),
            queue_url_prefix: None,
            credentials: None,
            max_message_bytes: 256 * 1024,
            max_delay: Duration::from_secs(15 * 60),
            max_visibility: Duration::from_secs(12 * 3600),
            wait_time: Duration::from_secs(5),
            first_lease: Duration::from_secs(30),
            max_attempts: 6,
            receive_calls: 10,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Settings for a local SQS server such as moto at `endpoint` (`http://127.0.0.1:4566`):
    /// region `us-east-1`, static dummy credentials, and one receive call at a time (moto can
    /// hand one message to two parallel receives).
    pub fn local(endpoint: impl Into<String>) -> Self {
        let mut config = Self::new(Some("us-east-1".into()));
        config.endpoint_url = Some(endpoint.into());
        config.credentials = Some(Credentials::new("local", "local", None, None, "asynctasq-local"));
        config.receive_calls = 1;
        config
    }
}

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

#[derive(Clone, Copy)]
enum Call {
    Send,
    Receive,
    Delete,
    Visibility,
    Other,
}

/// A task handed out by this handle and not settled yet.
#[derive(Debug)]
struct Held {
    meta: Meta,
    queue: String,
    attempt: u32,
    received_at: u64,
    expires_at: u64,
}

/// A received message waiting in the local buffer.
#[derive(Debug)]
struct Buffered {
    msg: Incoming,
    received_at: u64,
    visible_until: u64,
}

/// One task queue's SQS queues, resolved.
#[derive(Clone, Debug)]
struct Queue {
    name: String,
    names: Names,
    url: String,
}

struct Inner {
    client: Client,
    config: SqsConfig,
    urls: Mutex<HashMap<String, String>>,
    buffers: Mutex<HashMap<String, VecDeque<Buffered>>>,
    held: Mutex<HashMap<String, Held>>,
    visibility: Mutex<HashMap<String, u32>>,
    polls: Mutex<HashMap<String, JoinHandle<()>>>,
    receiving: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ready: Notify,
    stopped: AtomicBool,
    requests: [AtomicU64; 5],
}

/// The SQS backend: see the module documentation for how the contract maps onto SQS.
pub struct SqsDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqsDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsDriver")
            .field("region", &self.inner.config.region)
            .field("endpoint_url", &self.inner.config.endpoint_url)
            .field("queue_prefix", &self.inner.config.queue_prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for SqsDriver {
    fn drop(&mut self) {
        for (_, poll) in lock(&self.inner.polls).drain() {
            poll.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    unix_millis(SystemTime::now())
}

/// Whole seconds covering `ms`.
fn secs(ms: u64) -> u32 {
    ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32
}

/// A driver error from an SDK error: connection trouble, throttling and server errors are
/// transient ([`DriverError::Unavailable`]), the rest name SQS's code and message.
fn sdk_error<E, R>(what: &str, e: SdkError<E, R>) -> DriverError
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

fn stale_receipt(code: &str) -> bool {
    code.contains("ReceiptHandleIsInvalid") || code.contains("MessageNotInflight") || code.contains("InvalidParameterValue")
}

impl SqsDriver {
    /// Connects with `config` and checks that SQS answers (one `ListQueues` call), so a bad
    /// endpoint, region or missing credentials fail here with the reason.
    pub async fn connect(config: SqsConfig) -> Result<Self, DriverError> {
        validate_prefix(&config.queue_prefix)?;
        if let Some(ep) = &config.endpoint_url
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(DriverError::Config(format!("SQS endpoint URL `{ep}` must start with http:// or https://")));
        }
        if config.request_timeout.is_zero() {
            return Err(DriverError::Config("SQS request timeout must be longer than zero".into()));
        }
        if config.wait_time > Duration::from_secs(20) {
            return Err(DriverError::Config("SQS long polls last at most 20 s (wait_time)".into()));
        }
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(config.request_timeout).build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(ep) = &config.endpoint_url {
            loader = loader.endpoint_url(ep);
        }
        if let Some(c) = &config.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(DriverError::Config("no AWS region: pass --sqs-region or set AWS_REGION".into()));
        }
        let client = Client::new(&sdk);
        let where_ = config.endpoint_url.clone().unwrap_or_else(|| "AWS".into());
        client
            .list_queues()
            .queue_name_prefix(&config.queue_prefix)
            .max_results(1)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().retry_config(RetryConfig::standard().with_max_attempts(2)))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("SQS at {where_} did not answer"), e))?;
        let inner = Inner {
            client,
            config,
            urls: Mutex::default(),
            buffers: Mutex::default(),
            held: Mutex::default(),
            visibility: Mutex::default(),
            polls: Mutex::default(),
            receiving: Mutex::default(),
            ready: Notify::new(),
            stopped: AtomicBool::new(false),
            requests: Default::default(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The prefix of this handle's SQS queue names.
    pub fn queue_prefix(&self) -> &str {
        &self.inner.config.queue_prefix
    }

    /// The SDK client, for SQS operations the driver does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The URL of task queue `queue`'s work queue, created if missing (unless a URL prefix is
    /// set).
    pub async fn queue_url(&self, queue: &str) -> Result<String, DriverError> {
        Ok(self.inner.queue_or_create(queue).await?.url)
    }

    /// SQS requests this handle has made so far, by kind (what AWS bills), for benchmarks.
    pub fn requests(&self) -> Requests {
        let get = |c: Call| self.inner.requests[c as usize].load(Ordering::Relaxed);
        Requests {
            send: get(Call::Send),
            receive: get(Call::Receive),
            delete: get(Call::Delete),
            visibility: get(Call::Visibility),
            other: get(Call::Other) + 1,
        }
    }

    /// Deletes the SQS queues of task queue `queue` (work and dead), with everything in them.
    /// For tests and benchmarks; not part of the [`Driver`] contract.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), DriverError> {
        let n = names(&self.inner.config.queue_prefix, queue)?;
        for name in [&n.work, &n.dead] {
            if let Some(url) = self.inner.url(name, false, false).await? {
                self.inner.count(Call::Other, 1);
                self.inner.client.delete_queue().queue_url(&url).send().await.map_err(|e| sdk_error("deleting an SQS queue", e))?;
                lock(&self.inner.urls).remove(name.as_str());
            }
        }
        Ok(())
    }
}

impl Inner {
    fn count(&self, call: Call, n: usize) {
        self.requests[call as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    /// An SDK error of a call on queue `url`; a missing queue is named, with why it was not
    /// created.
    fn error<E, R>(&self, url: &str, what: &str, e: SdkError<E, R>) -> DriverError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        if !missing_queue(e.code()) {
            return sdk_error(what, e);
        }
        lock(&self.urls).retain(|_, u| u != url);
        let why = if self.config.queue_url_prefix.is_some() {
            " (with a queue URL prefix the driver creates no queue: create it first)"
        } else {
            ""
        };
        DriverError::Config(format!("SQS queue {url} does not exist{why}"))
    }

    /// The URL of SQS queue `name`, creating it when `create` (and no URL prefix is set).
    async fn url(&self, name: &str, fifo: bool, create: bool) -> Result<Option<String>, DriverError> {
        if let Some(url) = lock(&self.urls).get(name) {
            return Ok(Some(url.clone()));
        }
        let url = if let Some(prefix) = &self.config.queue_url_prefix {
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

    /// Task queue `queue` with its work queue's URL (`None` when it does not exist and
    /// `create` is false).
    async fn queue(&self, queue: &str, create: bool) -> Result<Option<Queue>, DriverError> {
        let names = names(&self.config.queue_prefix, queue)?;
        let url = self.url(&names.work, names.fifo, create).await?;
        Ok(url.map(|url| Queue { name: queue.to_owned(), names, url }))
    }

    async fn queue_or_create(&self, queue: &str) -> Result<Queue, DriverError> {
        self.queue(queue, true).await?.ok_or_else(|| DriverError::Config(format!("SQS queue for `{queue}` cannot be created")))
    }

    async fn dead_url(&self, q: &Queue, create: bool) -> Result<Option<String>, DriverError> {
        self.url(&q.names.dead, q.names.fifo, create).await
    }

    /// Sends message copies, each with its delay in seconds, in batches within SQS's limits.
    /// Nothing is sent when one copy is too large.
    async fn send(&self, url: &str, fifo: bool, items: Vec<(Outgoing, u32)>) -> Result<(), DriverError> {
        let limit = self.config.max_message_bytes;
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
            self.count(Call::Send, wave.len());
            let calls = wave.into_iter().map(|entries| self.client.send_message_batch().queue_url(url).set_entries(Some(entries)).send());
            for result in join_all(calls).await {
                let out = result.map_err(|e| self.error(url, "sending tasks to SQS", e))?;
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
    async fn in_batches<T, F, Fut>(&self, kind: Call, items: &[T], call: F) -> Result<Vec<(usize, String)>, DriverError>
    where
        F: Fn(usize, &[T]) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<(String, String)>, DriverError>>,
    {
        let mut failed = Vec::new();
        for (w, wave) in items.chunks(BATCH * WAVE).enumerate() {
            let calls = wave.chunks(BATCH).enumerate().map(|(b, chunk)| call(w * BATCH * WAVE + b * BATCH, chunk));
            self.count(kind, wave.len().div_ceil(BATCH));
            for out in join_all(calls).await {
                failed.extend(out?.into_iter().map(|(id, code)| (id.parse().unwrap_or(usize::MAX), code)));
            }
        }
        Ok(failed)
    }

    /// Deletes messages by receipt handle; returns the indexes SQS refused, with the code.
    async fn delete(&self, url: &str, receipts: &[&str]) -> Result<Vec<(usize, String)>, DriverError> {
        self.in_batches(Call::Delete, receipts, |first, chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id((first + i).to_string()).receipt_handle(*r).build())
                .collect::<Result<Vec<_>, _>>();
            async move {
                let entries = entries.map_err(|e| DriverError::backend("building an SQS request", e))?;
                let out = self
                    .client
                    .delete_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| sdk_error("deleting SQS messages", e))?;
                Ok(out.failed().iter().map(|f| (f.id().to_owned(), f.code().to_owned())).collect())
            }
        })
        .await
    }

    /// Sets the visibility of messages; returns the indexes SQS refused.
    async fn change_visibility(&self, url: &str, items: &[(&str, u32)]) -> Result<Vec<usize>, DriverError> {
        let failed = self
            .in_batches(Call::Visibility, items, |first, chunk| {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (r, secs))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id((first + i).to_string())
                            .receipt_handle(*r)
                            .visibility_timeout(*secs as i32)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>();
                async move {
                    let entries = entries.map_err(|e| DriverError::backend("building an SQS request", e))?;
                    let out = self
                        .client
                        .change_message_visibility_batch()
                        .queue_url(url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .map_err(|e| sdk_error("changing SQS message visibility", e))?;
                    Ok(out.failed().iter().map(|f| (f.id().to_owned(), f.code().to_owned())).collect())
                }
            })
            .await?;
        Ok(failed.into_iter().map(|(i, _)| i).collect())
    }

    /// Receives up to `calls` batches in parallel, hidden for `visibility` seconds.
    async fn receive(&self, url: &str, calls: usize, wait: u32, visibility: u32) -> Result<Vec<Incoming>, DriverError> {
        self.count(Call::Receive, calls);
        let receives = (0..calls).map(|_| {
            self.client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(BATCH as i32)
                .visibility_timeout(visibility as i32)
                .wait_time_seconds(wait as i32)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .customize()
                .config_override(
                    aws_sdk_sqs::config::Builder::default().timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(Duration::from_secs(u64::from(wait)) + self.config.request_timeout)
                            .build(),
                    ),
                )
                .send()
        });
        let (mut got, mut error) = (Vec::new(), None);
        for result in join_all(receives).await {
            match result {
                Ok(out) => got.extend(out.messages().iter().filter_map(Incoming::parse)),
                Err(e) => error = Some(self.error(url, "receiving from SQS", e)),
            }
        }
        match error {
            Some(e) if got.is_empty() => Err(e),
            _ => Ok(got),
        }
    }

    /// The visibility receives from `queue` ask for: the lease its tasks last asked for.
    fn receive_visibility(&self, queue: &str) -> u32 {
        lock(&self.visibility).get(queue).copied().unwrap_or_else(|| secs(millis(self.config.first_lease)))
    }

    /// Receives into the buffer of `q`; messages not due yet are sent again with the rest of
    /// their delay. Returns how many were buffered.
    async fn fetch(&self, q: &Queue, calls: usize, wait: u32) -> Result<usize, DriverError> {
        let visibility = self.receive_visibility(&q.name);
        let got = self.receive(&q.url, calls, wait, visibility).await?;
        let now = now_ms();
        let (early, due): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| !q.names.fifo && m.meta.not_before > now);
        if !early.is_empty() {
            let metas: Vec<Meta> = early.into_iter().map(|m| m.meta).collect();
            self.postpone(q, metas).await?;
        }
        let n = due.len();
        if n > 0 {
            let mut buffers = lock(&self.buffers);
            let buffer = buffers.entry(q.name.clone()).or_default();
            buffer.extend(due.into_iter().map(|msg| Buffered { msg, received_at: now, visible_until: now + u64::from(visibility) * 1000 }));
            buffer.make_contiguous().sort_by_key(|b| b.msg.meta.not_before);
        }
        Ok(n)
    }

    /// Sends copies of messages received before they were due, with the rest of their delay,
    /// then deletes the early copies. The early receive is not an attempt.
    async fn postpone(&self, q: &Queue, metas: Vec<Meta>) -> Result<(), DriverError> {
        let now = now_ms();
        let max_delay = secs(millis(self.config.max_delay));
        let copies = metas
            .iter()
            .map(|m| {
                (Outgoing::copy(m, (m.attempt()).saturating_sub(1), m.not_before), secs(m.not_before.saturating_sub(now)).min(max_delay))
            })
            .collect();
        self.send(&q.url, q.names.fifo, copies).await?;
        let receipts: Vec<&str> = metas.iter().map(|m| m.receipt.as_str()).collect();
        self.delete(&q.url, &receipts).await?;
        Ok(())
    }

    /// Sends back, ready at once and without spending their receive, messages this handle
    /// received but will not run.
    async fn give_back(&self, q: &Queue, metas: Vec<Meta>) -> Result<(), DriverError> {
        if metas.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let copies = metas.iter().map(|m| (Outgoing::copy(m, m.attempt().saturating_sub(1), now), 0)).collect();
        self.send(&q.url, q.names.fifo, copies).await?;
        let receipts: Vec<&str> = metas.iter().map(|m| m.receipt.as_str()).collect();
        self.delete(&q.url, &receipts).await?;
        Ok(())
    }

    /// Takes up to `max` buffered messages of `queue`, dropping those whose visibility has
    /// (nearly) run out: SQS delivers them again.
    fn take(&self, queue: &str, max: usize) -> Vec<Buffered> {
        let now = now_ms();
        let mut buffers = lock(&self.buffers);
        let Some(buffer) = buffers.get_mut(queue) else { return Vec::new() };
        buffer.retain(|b| b.visible_until > now + 500);
        let n = max.min(buffer.len());
        buffer.drain(..n).collect()
    }

    /// Leases buffered messages out: gives each the visibility its task asks for and records it.
    async fn lease_out(&self, q: &Queue, taken: Vec<Buffered>) -> Result<Vec<Delivery>, DriverError> {
        let now = now_ms();
        let fallback = millis(self.config.first_lease);
        let wants: Vec<u32> = taken.iter().map(|b| secs(b.msg.meta.lease_ms.unwrap_or(fallback)).max(1)).collect();
        let adjust: Vec<usize> = (0..taken.len())
            .filter(|&i| {
                let left = taken[i].visible_until.saturating_sub(now);
                let want = u64::from(wants[i]) * 1000;
                left < want * 2 / 3 || left > want + 1000
            })
            .collect();
        let mut dropped = Vec::new();
        if !adjust.is_empty() {
            let items: Vec<(&str, u32)> = adjust.iter().map(|&i| (taken[i].msg.meta.receipt.as_str(), wants[i])).collect();
            dropped = self.change_visibility(&q.url, &items).await?.into_iter().filter_map(|f| adjust.get(f).copied()).collect();
        }
        if let Some(last) = taken.iter().zip(&wants).rev().find(|(b, _)| b.msg.meta.lease_ms.is_some()) {
            lock(&self.visibility).insert(q.name.clone(), *last.1);
        }
        let mut held = lock(&self.held);
        held.retain(|_, h| h.expires_at + 3_600_000 > now);
        let mut out = Vec::with_capacity(taken.len());
        for (i, b) in taken.into_iter().enumerate() {
            if dropped.contains(&i) {
                continue;
            }
            let expires_at = if adjust.contains(&i) { now + u64::from(wants[i]) * 1000 } else { b.visible_until };
            let Incoming { meta, envelope } = b.msg;
            let attempt = meta.attempt();
            let lease = Lease { id: meta.id, queue: q.name.clone(), token: meta.receipt.clone(), expires_at };
            held.insert(meta.receipt.clone(), Held { meta, queue: q.name.clone(), attempt, received_at: b.received_at, expires_at });
            out.push(Delivery::new(lease, attempt, envelope));
        }
        Ok(out)
    }

    /// The record of a lease this handle handed out, removed; lost when it has none.
    fn settle(&self, lease: &Lease) -> Result<Held, DriverError> {
        lock(&self.held).remove(&lease.token).ok_or(DriverError::LeaseLost(lease.id))
    }

    /// Starts a long poll of `queue` unless one is running.
    fn ensure_poll(self: &Arc<Self>, q: Queue) {
        let mut polls = lock(&self.polls);
        if polls.get(&q.name).is_some_and(|p| !p.is_finished()) {
            return;
        }
        let inner = Arc::clone(self);
        let name = q.name.clone();
        let wait = secs(millis(self.config.wait_time));
        polls.insert(
            name,
            tokio::spawn(async move {
                let receiving = inner.receive_lock(&q.name);
                let fetched = {
                    let _one_receive = receiving.lock().await;
                    inner.fetch(&q, 1, wait).await
                };
                match fetched {
                    Ok(_) => {
                        if inner.stopped.load(Ordering::SeqCst) {
                            let metas: Vec<Meta> = inner.take(&q.name, usize::MAX).into_iter().map(|b| b.msg.meta).collect();
                            if let Err(error) = inner.give_back(&q, metas).await {
                                tracing::warn!(queue = %q.name, %error, "giving back prefetched SQS messages failed; they return when their visibility ends");
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(queue = %q.name, %error, "SQS long poll failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                inner.ready.notify_waiters();
            }),
        );
    }

    /// The lock that keeps one handle to one receive of `queue` at a time.
    fn receive_lock(&self, queue: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.receiving).entry(queue.to_owned()).or_default())
    }

    fn polling(&self, queue: &str) -> bool {
        lock(&self.polls).get(queue).is_some_and(|p| !p.is_finished())
    }

    fn has_buffered(&self, queues: &[String]) -> bool {
        let buffers = lock(&self.buffers);
        queues.iter().any(|q| buffers.get(q).is_some_and(|b| !b.is_empty()))
    }

    /// Receives every message of `url` it can (hidden for `visibility` seconds), up to `limit`.
    /// Long polls of 1 s: a short poll on AWS samples some of its servers and can come back
    /// empty while messages remain.
    async fn drain(&self, url: &str, visibility: u32, limit: usize) -> Result<Vec<Incoming>, DriverError> {
        let mut all = Vec::new();
        while all.len() < limit {
            let got = self.receive(url, 1, 1, visibility).await?;
            if got.is_empty() {
                break;
            }
            all.extend(got);
        }
        Ok(all)
    }
}

#[async_trait]
impl Driver for SqsDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<(), DriverError> {
        let mut by_queue: HashMap<&str, Vec<&Envelope>> = HashMap::new();
        for t in tasks {
            validate_queue_name(&t.queue)?;
            names(&self.inner.config.queue_prefix, &t.queue)?;
            by_queue.entry(t.queue.as_str()).or_default().push(t);
        }
        let now = now_ms();
        let max_delay = secs(millis(self.inner.config.max_delay));
        let mut prepared = Vec::new();
        for (queue, envelopes) in by_queue {
            let fifo = queue.ends_with(".fifo");
            let mut items = Vec::with_capacity(envelopes.len());
            for e in envelopes {
                if fifo && e.not_before > now + 999 {
                    return Err(DriverError::Config(format!(
                        "queue `{queue}` is an SQS FIFO queue, which takes no per-task delay; dispatch without a delay or use a standard queue"
                    )));
                }
                let o = Outgoing::dispatch(e)?;
                let limit = self.inner.config.max_message_bytes;
                if o.size() > limit {
                    return Err(DriverError::TooLarge { id: e.id, size: o.size(), limit });
                }
                items.push((o, secs(e.not_before.saturating_sub(now)).min(max_delay)));
            }
            prepared.push((queue, items));
        }
        for (queue, items) in prepared {
            let q = self.inner.queue_or_create(queue).await?;
            self.inner.send(&q.url, q.names.fifo, items).await?;
        }
        Ok(())
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        let q = self.inner.queue_or_create(queue).await?;
        self.inner.stopped.store(false, Ordering::SeqCst);
        let mut taken = self.inner.take(queue, max);
        // A running long poll takes whatever arrives; otherwise receive now.
        if taken.len() < max && !self.inner.polling(queue) {
            let receiving = self.inner.receive_lock(queue);
            let one_receive = match receiving.try_lock() {
                Ok(guard) => Some(guard),
                Err(_) if self.inner.polling(queue) => None,
                Err(_) => Some(receiving.lock().await),
            };
            if let Some(_one_receive) = one_receive {
                taken.extend(self.inner.take(queue, max - taken.len()));
                if taken.len() < max {
                    let calls = (max - taken.len()).div_ceil(BATCH).clamp(1, self.inner.config.receive_calls.max(1));
                    self.inner.fetch(&q, calls, 0).await?;
                    taken.extend(self.inner.take(queue, max - taken.len()));
                }
            }
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.lease_out(&q, taken).await
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner.stopped.store(false, Ordering::SeqCst);
        let notified = self.inner.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.inner.has_buffered(queues) {
            return Ok(());
        }
        for queue in queues {
            let q = self.inner.queue_or_create(queue).await?;
            self.inner.ensure_poll(q);
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }

    async fn ack(&self, leases: &[Lease]) -> Result<Vec<TaskId>, DriverError> {
        let mut lost = Vec::new();
        let mut by_queue: HashMap<&str, Vec<&Lease>> = HashMap::new();
        for l in leases {
            by_queue.entry(l.queue.as_str()).or_default().push(l);
        }
        for (queue, leases) in by_queue {
            let q = self.inner.queue_or_create(queue).await?;
            let receipts: Vec<&str> = leases.iter().map(|l| l.token.as_str()).collect();
            let failed = self.inner.delete(&q.url, &receipts).await?;
            {
                let mut held = lock(&self.inner.held);
                for l in &leases {
                    held.remove(&l.token);
                }
            }
            for (i, code) in failed {
                let Some(l) = leases.get(i) else { continue };
                if !stale_receipt(&code) {
                    return Err(DriverError::Backend { message: format!("SQS refused to delete task {}: {code}", l.id), source: None });
                }
                lost.push(l.id);
            }
        }
        Ok(lost)
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        let _ = error;
        let held = self.inner.settle(lease)?;
        let q = self.inner.queue_or_create(&lease.queue).await?;
        let now = now_ms();
        let window_end = held.received_at + millis(self.inner.config.max_visibility);
        let due = now + millis(delay);
        if q.names.fifo || due + 5_000 <= window_end {
            let hide = secs(due.min(window_end.saturating_sub(5_000)).saturating_sub(now));
            self.inner.count(Call::Visibility, 1);
            return match self
                .inner
                .client
                .change_message_visibility()
                .queue_url(&q.url)
                .receipt_handle(&lease.token)
                .visibility_timeout(hide as i32)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.code().is_some_and(stale_receipt) => Err(DriverError::LeaseLost(lease.id)),
                Err(e) => Err(sdk_error("hiding an SQS message for its retry", e)),
            };
        }
        let copy = Outgoing::copy(&held.meta, held.attempt, due);
        let delay_secs = secs(millis(delay)).min(secs(millis(self.inner.config.max_delay)));
        self.inner.send(&q.url, false, vec![(copy, delay_secs)]).await?;
        self.inner.delete(&q.url, &[lease.token.as_str()]).await?;
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        let held = self.inner.settle(lease)?;
        let q = self.inner.queue_or_create(&lease.queue).await?;
        self.inner.give_back(&q, vec![held.meta]).await
    }

    async fn dead_letter(&self, lease: &Lease, error: &str) -> Result<(), DriverError> {
        let held = self.inner.settle(lease)?;
        let q = self.inner.queue_or_create(&lease.queue).await?;
        let dead_url = self.inner.dead_url(&q, true).await?.ok_or_else(|| DriverError::Config("no SQS dead-letter queue".into()))?;
        let mut copy = Outgoing::copy(&held.meta, 0, held.meta.not_before);
        copy.death = Some(Death { error: clip_error(error), attempt: held.attempt, dead_at: now_ms() });
        self.inner.send(&dead_url, q.names.fifo, vec![(copy, 0)]).await?;
        self.inner.delete(&q.url, &[lease.token.as_str()]).await?;
        Ok(())
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let q = self.inner.queue_or_create(&lease.queue).await?;
        let now = now_ms();
        let received_at = lock(&self.inner.held).get(&lease.token).map(|h| h.received_at).ok_or(DriverError::LeaseLost(lease.id))?;
        let window_end = received_at + millis(self.inner.config.max_visibility);
        let until = (now + millis(by)).min(window_end);
        if until <= now {
            return Err(DriverError::LeaseLost(lease.id));
        }
        let hide = secs(until - now);
        self.inner.count(Call::Visibility, 1);
        match self
            .inner
            .client
            .change_message_visibility()
            .queue_url(&q.url)
            .receipt_handle(&lease.token)
            .visibility_timeout(hide as i32)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code().is_some_and(stale_receipt) => return Err(DriverError::LeaseLost(lease.id)),
            Err(e) => return Err(sdk_error("extending an SQS lease", e)),
        }
        let expires_at = now + u64::from(hide) * 1000;
        if let Some(h) = lock(&self.inner.held).get_mut(&lease.token) {
            h.expires_at = expires_at;
        }
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let Some(q) = self.inner.queue(queue, false).await? else { return Ok(QueueStats::default()) };
        let attrs = |url: String, names: &'static [QueueAttributeName]| {
            let mut req = self.inner.client.get_queue_attributes().queue_url(url);
            for n in names {
                req = req.attribute_names(n.clone());
            }
            req.send()
        };
        use QueueAttributeName::{
            ApproximateNumberOfMessages as Visible, ApproximateNumberOfMessagesDelayed as Delayed,
            ApproximateNumberOfMessagesNotVisible as Hidden,
        };
        self.inner.count(Call::Other, 1);
        let work = attrs(q.url.clone(), &[Visible, Hidden, Delayed]).await.map_err(|e| sdk_error("reading SQS queue counts", e))?;
        let get = |map: Option<&HashMap<QueueAttributeName, String>>, name: QueueAttributeName| -> u64 {
            map.and_then(|m| m.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let dead = match self.inner.dead_url(&q, false).await? {
            Some(url) => {
                self.inner.count(Call::Other, 1);
                let out = attrs(url, &[Visible, Hidden]).await.map_err(|e| sdk_error("reading SQS queue counts", e))?;
                get(out.attributes(), Visible) + get(out.attributes(), Hidden)
            }
            None => 0,
        };
        let now = now_ms();
        let buffered = lock(&self.inner.buffers).get(queue).map_or(0, VecDeque::len) as u64;
        let leased = lock(&self.inner.held).values().filter(|h| h.queue == queue && h.expires_at > now).count() as u64;
        let hidden = get(work.attributes(), Hidden);
        Ok(QueueStats {
            ready: get(work.attributes(), Visible) + buffered,
            scheduled: get(work.attributes(), Delayed) + hidden.saturating_sub(leased + buffered),
            leased,
            dead,
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let prefix = &self.inner.config.queue_prefix;
        let mut found = std::collections::BTreeSet::new();
        let mut token = None;
        loop {
            self.inner.count(Call::Other, 1);
            let out = self
                .inner
                .client
                .list_queues()
                .queue_name_prefix(prefix)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("listing SQS queues", e))?;
            for url in out.queue_urls() {
                if let Some(q) = url.rsplit('/').next().and_then(|name| task_queue(prefix, name)) {
                    found.insert(q);
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(found.into_iter().collect());
            }
        }
    }

    async fn purge(&self, queue: &str) -> Result<u64, DriverError> {
        let Some(q) = self.inner.queue(queue, false).await? else { return Ok(0) };
        let mut receipts: Vec<String> = self.inner.take(queue, usize::MAX).into_iter().map(|b| b.msg.meta.receipt).collect();
        receipts.extend(self.inner.drain(&q.url, 60, usize::MAX).await?.into_iter().map(|m| m.meta.receipt));
        let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
        let failed = self.inner.delete(&q.url, &refs).await?;
        Ok((receipts.len() - failed.len()) as u64)
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        match which {
            Waiting::Ready | Waiting::Both => self.purge(queue).await,
            Waiting::Scheduled => Err(DriverError::Unsupported("deleting scheduled tasks (SQS cannot reach delayed or hidden messages)")),
        }
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        let Some(q) = self.inner.queue(queue, false).await? else { return Ok(Vec::new()) };
        let Some(url) = self.inner.dead_url(&q, false).await? else { return Ok(Vec::new()) };
        let got = self.inner.drain(&url, 30, limit).await?;
        let receipts: Vec<(&str, u32)> = got.iter().map(|m| (m.meta.receipt.as_str(), 0)).collect();
        self.inner.change_visibility(&url, &receipts).await?;
        let mut dead: Vec<DeadTask> = got
            .into_iter()
            .map(|Incoming { meta, envelope }| {
                let death = meta.death.clone().unwrap_or(Death { error: String::new(), attempt: meta.attempt(), dead_at: 0 });
                DeadTask::new(meta.id, queue, death.attempt, death.error, death.dead_at, envelope)
            })
            .collect();
        dead.sort_by_key(|d| d.dead_at);
        dead.truncate(limit);
        Ok(dead)
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        let Some(q) = self.inner.queue(queue, false).await? else { return Ok(0) };
        let Some(url) = self.inner.dead_url(&q, false).await? else { return Ok(0) };
        let got = self.inner.drain(&url, 60, usize::MAX).await?;
        let (chosen, others): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| match &which {
            DeadSelector::All => true,
            DeadSelector::Ids(ids) => ids.contains(&m.meta.id),
        });
        let back: Vec<(&str, u32)> = others.iter().map(|m| (m.meta.receipt.as_str(), 0)).collect();
        self.inner.change_visibility(&url, &back).await?;
        if chosen.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let copies = chosen.iter().map(|m| (Outgoing::copy(&m.meta, 0, now), 0)).collect();
        self.inner.send(&q.url, q.names.fifo, copies).await?;
        let receipts: Vec<&str> = chosen.iter().map(|m| m.meta.receipt.as_str()).collect();
        self.inner.delete(&url, &receipts).await?;
        Ok(chosen.len() as u64)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        let Some(q) = self.inner.queue(queue, false).await? else { return Ok(0) };
        let Some(url) = self.inner.dead_url(&q, false).await? else { return Ok(0) };
        let got = self.inner.drain(&url, 60, usize::MAX).await?;
        let receipts: Vec<&str> = got.iter().map(|m| m.meta.receipt.as_str()).collect();
        let failed = self.inner.delete(&url, &receipts).await?;
        Ok((receipts.len() - failed.len()) as u64)
    }

    async fn stop_prefetch(&self) -> Result<(), DriverError> {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let polls: Vec<_> = lock(&self.inner.polls).drain().map(|(_, p)| p).collect();
        for p in &polls {
            p.abort();
        }
        let queues: Vec<String> = lock(&self.inner.buffers).keys().cloned().collect();
        for queue in queues {
            let metas: Vec<Meta> = self.inner.take(&queue, usize::MAX).into_iter().map(|b| b.msg.meta).collect();
            if metas.is_empty() {
                continue;
            }
            let q = self.inner.queue_or_create(&queue).await?;
            self.inner.give_back(&q, metas).await?;
        }
        Ok(())
    }

    fn supports(&self, capability: Capability) -> bool {
        !matches!(
            capability,
            Capability::Fencing | Capability::ExactStats | Capability::PurgeScheduled | Capability::WorkerRegistry | Capability::ServerInfo
        )
    }

    fn name(&self) -> &'static str {
        "sqs"
    }
}
