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
//! * **Sends are at least once.** A send whose answer does not come within
//!   [`SqsConfig::request_timeout`] is retried by the SDK; if SQS had stored the first one, a
//!   standard queue holds the task twice (FIFO queues drop the copy: the task id is the
//!   deduplication id). Real SQS answers a batch send in milliseconds; moto's send time grows
//!   with the queue's length, so tests that fill a queue with 1,000 tasks give it more time.
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
//! # One task per key, on FIFO queues
//! A task's message group is its `group` header, else its key ([`Envelope::key`]), else its
//! id. SQS hands out none of a group while one of its messages is in flight, but hands out
//! several of a group in one receive: the buffer keeps a group's later messages until this
//! handle settles the one it leased out. So on a FIFO queue at most one task per key runs at a
//! time across every worker, and `QueueLimits::per_key(1)` is accepted there (nothing is
//! stored: it always holds); every other limit is refused ([`Capability::QueueLimits`] is
//! lacking).
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

//!
//! # Layout
//! `client.rs` wraps the SDK client (queue URLs, request counts, error mapping); `batch.rs`
//! makes the batched calls; `buffer.rs` keeps received messages and the long polls;
//! `leases.rs` hands messages out as leases and records them; `message.rs` is the message
//! format and `names.rs` the queue names. This module keeps the config and the [`Driver`]
//! impl, composing them.

mod batch;
mod buffer;
mod client;
mod leases;
mod message;
mod names;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};
use asynctasq_core::driver::{
    Ack, Capability, DeadSelector, DeadTask, Delivery, Driver, EnqueueOutcome, Lease, QueueLimits, QueueStats, Waiting,
};
use asynctasq_core::envelope::{Envelope, TaskId, millis, validate_queue_name};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::Notify;

use self::batch::BATCH;
use self::buffer::{Buffers, Polls};
pub use self::client::Requests;
use self::client::{Call, Queue, Sqs, sdk_error, stale_receipt};
use self::leases::{Leases, secs};
pub use self::message::GROUP_HEADER;
use self::message::{Death, Incoming, Meta, Outgoing, clip_error};
use self::names::{names, task_queue, validate_prefix};
pub use aws_sdk_sqs::config::Credentials;

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
                asynctasq_core::redact_url(&asynctasq_core::envelope::excerpt(url))
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

struct Inner {
    sqs: Sqs,
    config: SqsConfig,
    buffers: Buffers,
    polls: Polls,
    leases: Leases,
    ready: Notify,
    stopped: AtomicBool,
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
        self.inner.polls.abort_all();
    }
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
            sqs: Sqs::new(client, &config.queue_prefix, config.queue_url_prefix.clone(), config.request_timeout, config.max_message_bytes),
            leases: Leases::new(config.first_lease),
            config,
            buffers: Buffers::default(),
            polls: Polls::default(),
            ready: Notify::new(),
            stopped: AtomicBool::new(false),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The prefix of this handle's SQS queue names.
    pub fn queue_prefix(&self) -> &str {
        self.inner.sqs.queue_prefix()
    }

    /// The SDK client, for SQS operations the driver does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.sqs.client
    }

    /// The URL of task queue `queue`'s work queue, created if missing (unless a URL prefix is
    /// set).
    pub async fn queue_url(&self, queue: &str) -> Result<String, DriverError> {
        Ok(self.inner.sqs.queue_or_create(queue).await?.url)
    }

    /// SQS requests this handle has made so far, by kind (what AWS bills), for benchmarks.
    pub fn requests(&self) -> Requests {
        self.inner.sqs.requests()
    }

    /// Deletes the SQS queues of task queue `queue` (work and dead), with everything in them.
    /// For tests and benchmarks; not part of the [`Driver`] contract.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), DriverError> {
        let sqs = &self.inner.sqs;
        let n = names(sqs.queue_prefix(), queue)?;
        for name in [&n.work, &n.dead] {
            if let Some(url) = sqs.url(name, false, false).await? {
                sqs.count(Call::Other, 1);
                sqs.client.delete_queue().queue_url(&url).send().await.map_err(|e| sdk_error("deleting an SQS queue", e))?;
                sqs.forget(name);
            }
        }
        Ok(())
    }
}

impl Inner {
    /// A FIFO group of `queue` leased out here was settled: a waiting worker may now take the
    /// group's next buffered message.
    fn group_freed(&self, queue: &str) {
        if self.buffers.len(queue) > 0 {
            self.ready.notify_waiters();
        }
    }

    /// Receives into the buffer of `q`; messages not due yet are sent again with the rest of
    /// their delay. Returns how many were buffered.
    async fn fetch(&self, q: &Queue, calls: usize, wait: u32) -> Result<usize, DriverError> {
        let visibility = self.leases.receive_visibility(&q.name);
        let got = batch::receive(&self.sqs, &q.url, calls, wait, visibility).await?;
        let now = SystemClock.now();
        let (early, due): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| !q.names.fifo && m.meta.not_before > now);
        if !early.is_empty() {
            let metas: Vec<Meta> = early.into_iter().map(|m| m.meta).collect();
            self.postpone(q, metas).await?;
        }
        let n = due.len();
        if n > 0 {
            self.buffers.add(&q.name, due, now, now + u64::from(visibility) * 1000);
        }
        Ok(n)
    }

    /// Sends copies of messages received before they were due, with the rest of their delay,
    /// then deletes the early copies. The early receive is not an attempt.
    async fn postpone(&self, q: &Queue, metas: Vec<Meta>) -> Result<(), DriverError> {
        let now = SystemClock.now();
        let max_delay = secs(millis(self.config.max_delay));
        let copies = metas
            .iter()
            .map(|m| {
                (Outgoing::copy(m, m.attempt().saturating_sub(1), m.not_before), secs(m.not_before.saturating_sub(now)).min(max_delay))
            })
            .collect();
        self.replace(&q.url, q, copies, &metas).await
    }

    /// Sends back, ready at once and without spending their receive, messages this handle
    /// received but will not run.
    async fn give_back(&self, q: &Queue, metas: Vec<Meta>) -> Result<(), DriverError> {
        if metas.is_empty() {
            return Ok(());
        }
        let now = SystemClock.now();
        let copies = metas.iter().map(|m| (Outgoing::copy(m, m.attempt().saturating_sub(1), now), 0)).collect();
        self.replace(&q.url, q, copies, &metas).await
    }

    /// Sends `copies` to `q`, then deletes the originals (`metas`) from `from`: if the process
    /// dies in between, the task exists twice, never zero times.
    async fn replace(&self, from: &str, q: &Queue, copies: Vec<(Outgoing, u32)>, metas: &[Meta]) -> Result<(), DriverError> {
        batch::send(&self.sqs, &q.url, q.names.fifo, copies).await?;
        let receipts: Vec<&str> = metas.iter().map(|m| m.receipt.as_str()).collect();
        batch::delete(&self.sqs, from, &receipts).await?;
        Ok(())
    }

    /// Starts a long poll of `queue` unless one is running.
    fn ensure_poll(self: &Arc<Self>, q: Queue) {
        let inner = Arc::clone(self);
        let wait = secs(millis(self.config.wait_time));
        let name = q.name.clone();
        self.polls.ensure(&name, move || {
            tokio::spawn(async move {
                let receiving = inner.polls.receive_lock(&q.name);
                let fetched = {
                    let _one_receive = receiving.lock().await;
                    inner.fetch(&q, 1, wait).await
                };
                match fetched {
                    Ok(_) => {
                        if inner.stopped.load(Ordering::SeqCst) {
                            let metas: Vec<Meta> = inner.buffers.take_all(&q.name).into_iter().map(|b| b.msg.meta).collect();
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
            })
        });
    }

    /// The dead-letter queue of task queue `queue`, if both exist.
    async fn dead_queue(&self, queue: &str) -> Result<Option<(Queue, String)>, DriverError> {
        let Some(q) = self.sqs.queue(queue, false).await? else { return Ok(None) };
        Ok(self.sqs.dead_url(&q, false).await?.map(|url| (q, url)))
    }
}

#[async_trait]
impl Driver for SqsDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        asynctasq_core::unique::refuse(tasks)?;
        let mut by_queue: HashMap<&str, Vec<&Envelope>> = HashMap::new();
        for t in tasks {
            validate_queue_name(&t.queue)?;
            names(self.inner.sqs.queue_prefix(), &t.queue)?;
            by_queue.entry(t.queue.as_str()).or_default().push(t);
        }
        let now = SystemClock.now();
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
            let q = self.inner.sqs.queue_or_create(queue).await?;
            batch::send(&self.inner.sqs, &q.url, q.names.fifo, items).await?;
        }
        // SQS cannot look a message up by id: every envelope is sent.
        Ok(EnqueueOutcome::all_new(tasks.len()))
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        let inner = &self.inner;
        let q = inner.sqs.queue_or_create(queue).await?;
        inner.stopped.store(false, Ordering::SeqCst);
        // A FIFO group's messages go out one at a time: none of a group leased out or taken.
        let mut busy = inner.leases.busy_groups(queue);
        let mut take = |n: usize| {
            let got = inner.buffers.take(queue, n, &busy);
            busy.extend(got.iter().filter_map(|b| b.msg.meta.group.clone()));
            got
        };
        let mut taken = take(max);
        // A running long poll takes whatever arrives; otherwise receive now.
        if taken.len() < max && !inner.polls.polling(queue) {
            let receiving = inner.polls.receive_lock(queue);
            let one_receive = match receiving.try_lock() {
                Ok(guard) => Some(guard),
                Err(_) if inner.polls.polling(queue) => None,
                Err(_) => Some(receiving.lock().await),
            };
            if let Some(_one_receive) = one_receive {
                taken.extend(take(max - taken.len()));
                if taken.len() < max {
                    let calls = (max - taken.len()).div_ceil(BATCH).clamp(1, inner.config.receive_calls.max(1));
                    inner.fetch(&q, calls, 0).await?;
                    taken.extend(take(max - taken.len()));
                }
            }
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        inner.leases.lease_out(&inner.sqs, &q, taken).await
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner.stopped.store(false, Ordering::SeqCst);
        let notified = self.inner.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.inner.buffers.any(queues, |q| self.inner.leases.busy_groups(q)) {
            return Ok(());
        }
        for queue in queues {
            let q = self.inner.sqs.queue_or_create(queue).await?;
            self.inner.ensure_poll(q);
        }
        let _ = tokio::time::timeout(timeout, notified).await;
        Ok(())
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        // SQS forgets a deleted message: nothing of an ack is kept (`Capability::Results`).
        let mut lost = Vec::new();
        let mut by_queue: HashMap<&str, Vec<&Lease>> = HashMap::new();
        for l in acks.iter().map(|a| &a.lease) {
            by_queue.entry(l.queue.as_str()).or_default().push(l);
        }
        for (queue, leases) in by_queue {
            let q = self.inner.sqs.queue_or_create(queue).await?;
            let receipts: Vec<&str> = leases.iter().map(|l| l.token.as_str()).collect();
            let failed = batch::delete(&self.inner.sqs, &q.url, &receipts).await?;
            if self.inner.leases.forget(&leases) {
                self.inner.group_freed(queue);
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
        let held = self.inner.leases.settle(lease)?;
        let q = self.inner.sqs.queue_or_create(&lease.queue).await?;
        let now = SystemClock.now();
        let window_end = held.received_at + millis(self.inner.config.max_visibility);
        let due = now + millis(delay);
        if q.names.fifo || due + 5_000 <= window_end {
            let hide = secs(due.min(window_end.saturating_sub(5_000)).saturating_sub(now));
            self.inner.sqs.hide(&q.url, &lease.token, lease.id, hide, "hiding an SQS message for its retry").await?;
            // The group's later messages received with it may run while this one waits for
            // its retry (one at a time still: this one is not running).
            if held.meta.group.is_some() {
                self.inner.group_freed(&q.name);
            }
            return Ok(());
        }
        let copy = Outgoing::copy(&held.meta, held.attempt, due);
        let delay_secs = secs(millis(delay)).min(secs(millis(self.inner.config.max_delay)));
        // Only standard queues get here (FIFO retries hide the message).
        self.inner.replace(&q.url, &q, vec![(copy, delay_secs)], &[held.meta]).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        let held = self.inner.leases.settle(lease)?;
        let q = self.inner.sqs.queue_or_create(&lease.queue).await?;
        let grouped = held.meta.group.is_some();
        self.inner.give_back(&q, vec![held.meta]).await?;
        if grouped {
            self.inner.group_freed(&q.name);
        }
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, _keep: Duration) -> Result<(), DriverError> {
        let held = self.inner.leases.settle(lease)?;
        let q = self.inner.sqs.queue_or_create(&lease.queue).await?;
        let dead_url = self.inner.sqs.dead_url(&q, true).await?.ok_or_else(|| DriverError::Config("no SQS dead-letter queue".into()))?;
        let mut copy = Outgoing::copy(&held.meta, 0, held.meta.not_before);
        copy.death = Some(Death { error: clip_error(error), attempt: held.attempt, dead_at: SystemClock.now() });
        batch::send(&self.inner.sqs, &dead_url, q.names.fifo, vec![(copy, 0)]).await?;
        batch::delete(&self.inner.sqs, &q.url, &[lease.token.as_str()]).await?;
        if held.meta.group.is_some() {
            self.inner.group_freed(&q.name);
        }
        Ok(())
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let q = self.inner.sqs.queue_or_create(&lease.queue).await?;
        let now = SystemClock.now();
        let received_at = self.inner.leases.received_at(lease)?;
        let window_end = received_at + millis(self.inner.config.max_visibility);
        let until = (now + millis(by)).min(window_end);
        if until <= now {
            return Err(DriverError::LeaseLost(lease.id));
        }
        let hide = secs(until - now);
        self.inner.sqs.hide(&q.url, &lease.token, lease.id, hide, "extending an SQS lease").await?;
        let expires_at = now + u64::from(hide) * 1000;
        self.inner.leases.extended(lease, expires_at);
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let sqs = &self.inner.sqs;
        let Some(q) = sqs.queue(queue, false).await? else { return Ok(QueueStats::default()) };
        let attrs = |url: String, names: &'static [QueueAttributeName]| {
            let mut req = sqs.client.get_queue_attributes().queue_url(url);
            for n in names {
                req = req.attribute_names(n.clone());
            }
            req.send()
        };
        use QueueAttributeName::{
            ApproximateNumberOfMessages as Visible, ApproximateNumberOfMessagesDelayed as Delayed,
            ApproximateNumberOfMessagesNotVisible as Hidden,
        };
        sqs.count(Call::Other, 1);
        let work = attrs(q.url.clone(), &[Visible, Hidden, Delayed]).await.map_err(|e| sdk_error("reading SQS queue counts", e))?;
        let get = |map: Option<&HashMap<QueueAttributeName, String>>, name: QueueAttributeName| -> u64 {
            map.and_then(|m| m.get(&name)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        let dead = match sqs.dead_url(&q, false).await? {
            Some(url) => {
                sqs.count(Call::Other, 1);
                let out = attrs(url, &[Visible, Hidden]).await.map_err(|e| sdk_error("reading SQS queue counts", e))?;
                get(out.attributes(), Visible) + get(out.attributes(), Hidden)
            }
            None => 0,
        };
        let buffered = self.inner.buffers.len(queue) as u64;
        let leased = self.inner.leases.count(queue);
        let hidden = get(work.attributes(), Hidden);
        Ok(QueueStats {
            ready: get(work.attributes(), Visible) + buffered,
            scheduled: get(work.attributes(), Delayed) + hidden.saturating_sub(leased + buffered),
            leased,
            dead,
            // SQS tells no message's due time without receiving it (CloudWatch's
            // ApproximateAgeOfOldestMessage is another service, and counts delayed messages).
            oldest_ready_age: None,
            // A deleted message leaves nothing behind to count, and SQS has no counter to keep.
            totals: None,
            // SQS's counts are approximate throughout (`ExactStats` is lacking): `estimated`
            // marks estimates of a backend that counts exactly.
            estimated: false,
        })
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let sqs = &self.inner.sqs;
        let prefix = sqs.queue_prefix();
        let mut found = std::collections::BTreeSet::new();
        let mut token = None;
        loop {
            sqs.count(Call::Other, 1);
            let out = sqs
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

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        if which == Waiting::Scheduled {
            return Err(DriverError::Unsupported("deleting scheduled tasks (SQS cannot reach delayed or hidden messages)"));
        }
        let Some(q) = self.inner.sqs.queue(queue, false).await? else { return Ok(0) };
        let mut receipts: Vec<String> = self.inner.buffers.take_all(queue).into_iter().map(|b| b.msg.meta.receipt).collect();
        receipts.extend(batch::drain(&self.inner.sqs, &q.url, 60, usize::MAX).await?.into_iter().map(|m| m.meta.receipt));
        let refs: Vec<&str> = receipts.iter().map(String::as_str).collect();
        let failed = batch::delete(&self.inner.sqs, &q.url, &refs).await?;
        Ok((receipts.len() - failed.len()) as u64)
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        let Some((_, url)) = self.inner.dead_queue(queue).await? else { return Ok(Vec::new()) };
        let got = batch::drain(&self.inner.sqs, &url, 30, limit).await?;
        let receipts: Vec<(&str, u32)> = got.iter().map(|m| (m.meta.receipt.as_str(), 0)).collect();
        batch::change_visibility(&self.inner.sqs, &url, &receipts).await?;
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
        let Some((q, url)) = self.inner.dead_queue(queue).await? else { return Ok(0) };
        let got = batch::drain(&self.inner.sqs, &url, 60, usize::MAX).await?;
        let (chosen, others): (Vec<_>, Vec<_>) = got.into_iter().partition(|m| match &which {
            DeadSelector::All => true,
            DeadSelector::Ids(ids) => ids.contains(&m.meta.id),
        });
        let back: Vec<(&str, u32)> = others.iter().map(|m| (m.meta.receipt.as_str(), 0)).collect();
        batch::change_visibility(&self.inner.sqs, &url, &back).await?;
        if chosen.is_empty() {
            return Ok(0);
        }
        let now = SystemClock.now();
        let copies = chosen.iter().map(|m| (Outgoing { replayed: true, ..Outgoing::copy(&m.meta, 0, now) }, 0)).collect();
        let metas: Vec<Meta> = chosen.into_iter().map(|m| m.meta).collect();
        self.inner.replace(&url, &q, copies, &metas).await?;
        Ok(metas.len() as u64)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        let Some((_, url)) = self.inner.dead_queue(queue).await? else { return Ok(0) };
        let got = batch::drain(&self.inner.sqs, &url, 60, usize::MAX).await?;
        let receipts: Vec<&str> = got.iter().map(|m| m.meta.receipt.as_str()).collect();
        let failed = batch::delete(&self.inner.sqs, &url, &receipts).await?;
        Ok((receipts.len() - failed.len()) as u64)
    }

    fn check_limits(&self, queue: &str, limits: &QueueLimits) -> Result<(), DriverError> {
        if queue.ends_with(".fifo") && *limits == QueueLimits::default().with_per_key(Some(1)) {
            return Ok(());
        }
        Err(DriverError::Unsupported(if queue.ends_with(".fifo") {
            "limiting a queue beyond one task per key (what SQS FIFO queues enforce by message group)"
        } else {
            "limiting a queue (SQS enforces only one task per key at a time, on FIFO queues)"
        }))
    }

    /// Accepts a cap of one per key on a FIFO queue, which SQS always enforces there (a task's
    /// key is its message group); nothing is stored. Refuses every other limit, and lifting it.
    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        self.check_limits(queue, &limits)
    }

    /// Every FIFO queue, with its cap of one per key.
    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let fifo = self.queues().await?.into_iter().filter(|q| q.ends_with(".fifo"));
        Ok(fifo.map(|q| (q, QueueLimits::default().with_per_key(Some(1)))).collect())
    }

    async fn stop_prefetch(&self) -> Result<(), DriverError> {
        self.inner.stopped.store(true, Ordering::SeqCst);
        self.inner.polls.abort_all();
        for queue in self.inner.buffers.queues() {
            let metas: Vec<Meta> = self.inner.buffers.take_all(&queue).into_iter().map(|b| b.msg.meta).collect();
            if metas.is_empty() {
                continue;
            }
            let q = self.inner.sqs.queue_or_create(&queue).await?;
            self.inner.give_back(&q, metas).await?;
        }
        Ok(())
    }

    fn supports(&self, capability: Capability) -> bool {
        !matches!(
            capability,
            Capability::Fencing
                | Capability::ExactStats
                | Capability::PurgeScheduled
                | Capability::WorkerRegistry
                | Capability::ServerInfo
                | Capability::OldestReadyAge
                | Capability::Totals
                | Capability::IdempotentEnqueue
                | Capability::UniqueKeys
                | Capability::ScheduleClaims
                | Capability::TaskLookup
                | Capability::Results
                | Capability::Cancel
                | Capability::ResultNotify
                | Capability::CancelNotify
                | Capability::Progress
                | Capability::ErrorHistory
                | Capability::DeadExpiry
                | Capability::PauseQueues
                | Capability::Browse
                | Capability::QueueLimits
                | Capability::KeyedLimits
                | Capability::RateLimits
        )
    }

    fn name(&self) -> &'static str {
        "sqs"
    }
}
