//! The RabbitMQ driver.
//!
//! Queues and arguments are in [`topology`], headers in `message.rs`; this module keeps the
//! delivery contract on top of them.
//!
//! # Leases
//! A delivery is the lease: the task stays unacknowledged on the consumer's channel while it
//! runs. Each worker consumes every queue it serves with `basic_consume` on a channel of its
//! own, with a prefetch of the worker's concurrency ([`Driver::prefetch_hint`]; twice that for
//! a worker of several queues, the running tasks plus one refill; 64 without a hint, or
//! [`RabbitMqConfig::prefetch`]); deliveries wait in a local buffer until
//! [`dequeue`](Driver::dequeue) hands them out, and [`wait_ready`](Driver::wait_ready) wakes
//! on the next delivery, so nothing polls the broker.
//!
//! * **Crashes.** When a worker dies or loses its connection, the broker requeues every
//!   unacknowledged delivery of its channels, and the quorum queue counts it in
//!   `x-delivery-count`, so the redelivery is the next attempt. That includes the deliveries
//!   it had prefetched but not started: a crash counts them as an attempt too, as a delivery
//!   that never settled. So a worker of one queue holds no more than it runs, and a crash costs
//!   an attempt only of tasks it could have started; a worker of several queues holds one
//!   refill more per queue (see above). A worker that stops gracefully gives them back
//!   uncounted ([`Driver::stop_prefetch`]).
//! * **Lease expiry and fencing.** The driver tracks the expiry of each lease it handed out;
//!   a lease that runs out without being settled or extended is rejected with `requeue` (the
//!   queue counts the attempt), and a settle or extend with a lease the driver no longer holds
//!   (expired, or its channel closed) fails with [`DriverError::LeaseLost`]. Only the process
//!   holding a delivery can settle it, so fencing is exact.
//! * **Long tasks.** RabbitMQ closes a channel whose delivery stays unacknowledged longer than
//!   the broker's `consumer_timeout` (30 minutes by default), requeueing *every* delivery of the
//!   channel. So that one long task cannot cost its neighbours their leases, the driver never
//!   extends a lease past `consumer_timeout` minus a margin after the delivery
//!   ([`RabbitMqConfig::consumer_timeout`], which must match the broker): a task still running
//!   then loses its lease (the worker abandons the run) and is requeued as its next attempt.
//!   For longer tasks, raise `consumer_timeout` in `rabbitmq.conf` and pass the same value.
//!   Buffered deliveries not taken within 30 s are given back the same way, uncounted.
//! * **Settling.** Ack is `basic.ack`. Retry (nack with a delay), release and dead-lettering
//!   publish a copy (with confirms) carrying the new attempt count, due time and error in
//!   headers, then ack the delivery: if the process dies in between, the task exists twice
//!   (at least once, never zero times).
//! * **Order.** A bulk enqueue is published in due order; a released or retried task goes to
//!   the back of its queue.
//!
//! # Connection loss
//! Every call first checks the connection; a closed one is replaced (with backoff between
//! failed attempts, 100 ms doubling to [`RabbitMqConfig::reconnect_max`]), the topology is
//! declared again and consumers start again on the next `dequeue` or `wait_ready`. Leases of
//! the old connection are lost (the broker has requeued them), and settling them reports
//! [`DriverError::LeaseLost`].
//!
//! A connection can also die silently (half-open: a dropped NAT entry, a frozen peer), and
//! then lapin reports nothing until the AMQP heartbeat runs out. So the driver asks for a short
//! heartbeat ([`RabbitMqConfig::heartbeat`], 5 s: lapin closes a connection that has heard
//! nothing for twice that, and the broker its side as fast, requeueing its deliveries), and
//! every call has a deadline ([`RabbitMqConfig::request_timeout`]): a call that runs out marks
//! its connection dead, and the next call opens a new one and restarts the consumers.
//!
//! # Capabilities
//! No worker registry ([`Capability::WorkerRegistry`]): a broker has no place for records that
//! are rewritten and expire; `asynctasq workers` says so.
//!
//! Everything else but [`Capability::ExactStats`]: AMQP reports a queue's ready count, not its
//! unacknowledged deliveries, so `stats().leased` counts the leases of this handle only, and
//! `ready` adds this handle's prefetched deliveries to the broker's count. Listing dead tasks
//! reads them with `basic.get` and returns them to the dead queue when done.

//!
//! # Layout
//! `session.rs` keeps the connection and replaces it; `consumer.rs` buffers
//! deliveries; `leases.rs` holds the leases handed out and expires them; `publish.rs` sends
//! with confirms; `delay.rs` routes delayed tasks through the delay buckets; `dead.rs` and
//! `registry.rs` read the dead queues and the queue registry. This module keeps the config and
//! the [`Driver`] impl, composing them.

mod consumer;
mod dead;
mod delay;
mod error;
mod leases;
mod message;
mod publish;
mod registry;
mod session;
pub mod topology;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use asynctasq_core::DriverError;
use asynctasq_core::clock::{Clock, SystemClock};
use asynctasq_core::driver::{Ack, Capability, DeadSelector, DeadTask, Delivery, Driver, EnqueueOutcome, Lease, QueueStats, Waiting};
use asynctasq_core::envelope::{Envelope, TaskId, millis, validate_queue_name};
use lapin::options::{BasicAckOptions, QueuePurgeOptions};
use tokio::sync::Notify;

use self::consumer::{Buffered, Consumer, Owner};
use self::error::lapin_err;
use self::leases::{Held, Leases};
use self::message::Meta;
use self::publish::{Route, confirmed, send};
use self::session::{Session, Sessions};
use self::topology::Names;
use crate::sync::lock;
use asynctasq_core::redact_url;

/// Settings of a [`RabbitMqDriver`].
#[derive(Clone, Debug)]
pub struct RabbitMqConfig {
    /// `amqp://user:password@host:port/vhost` (the default vhost is `%2f`).
    pub url: String,
    /// Prefix of every queue name (default `asynctasq`); letters, digits and `_ - .` only.
    pub prefix: String,
    /// Deliveries each consumer may hold (buffered or running); `None` makes it
    /// [`Driver::prefetch_hint`]'s (a worker's concurrency, twice that for several queues), or
    /// 64 without a hint.
    pub prefetch: Option<u16>,
    /// The broker's `consumer_timeout` (default 30 minutes, RabbitMQ's default); leases never
    /// outlive it (see the module docs).
    pub consumer_timeout: Duration,
    /// Longest wait between reconnect attempts (default 5 s).
    pub reconnect_max: Duration,
    /// The AMQP heartbeat asked of the broker (default 5 s) unless the URL sets `heartbeat=`.
    /// A connection that carries nothing from the broker for twice this is closed and
    /// replaced, and the broker closes its side as fast, requeueing what it had delivered on it.
    pub heartbeat: Duration,
    /// Longest any call may wait for the broker (default 5 s; a bulk enqueue gets this per
    /// thousand tasks, `wait_ready` on top of its wait). A call that runs out marks the
    /// connection dead: the next call opens a new one.
    pub request_timeout: Duration,
}

impl RabbitMqConfig {
    /// Settings from a URL whose query may set `prefix`, `prefetch`, `consumer_timeout`,
    /// `reconnect_max` and `request_timeout`; AMQP's own `heartbeat`, `frame_max`,
    /// `channel_max`, `connection_timeout` and `auth_mechanism` pass through. An unknown option
    /// is an error naming it.
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        let mut q = crate::url::Query::parse("RabbitMQ", url);
        let mut config = Self::new(q.base());
        q.set_string("prefix", &mut config.prefix);
        config.prefetch = q.number("prefetch")?;
        q.set_duration("consumer_timeout", &mut config.consumer_timeout)?;
        q.set_duration("reconnect_max", &mut config.reconnect_max)?;
        q.set_duration("request_timeout", &mut config.request_timeout)?;
        config.url = q.finish(
            &["prefix", "prefetch", "consumer_timeout", "reconnect_max", "request_timeout"],
            &["heartbeat", "frame_max", "channel_max", "connection_timeout", "auth_mechanism"],
        )?;
        Ok(config)
    }

    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "asynctasq".into(),
            prefetch: None,
            consumer_timeout: Duration::from_secs(30 * 60),
            reconnect_max: Duration::from_secs(5),
            heartbeat: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

const DEFAULT_PREFETCH: usize = 64;
/// Longest a prefetched delivery waits in the buffer before it is given back.
const BUFFER_HOLD: Duration = Duration::from_secs(30);
/// How often leases are checked for expiry.
const REAP_EVERY: Duration = Duration::from_millis(50);

/// Tasks in RabbitMQ. Cloning gives another handle on the same connection and consumers.
#[derive(Clone)]
pub struct RabbitMqDriver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RabbitMqDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMqDriver")
            .field("url", &redact_url(&self.inner.config.url))
            .field("prefix", &self.inner.config.prefix)
            .finish()
    }
}

struct Inner {
    config: RabbitMqConfig,
    sessions: Sessions,
    consumers: Mutex<HashMap<String, Arc<Consumer>>>,
    /// Serialises consumer creation, so one queue never gets two consumers.
    consumer_start: tokio::sync::Mutex<()>,
    consumer_seq: AtomicU64,
    leases: Leases,
    /// Signalled when any consumer buffers a delivery or stops.
    arrivals: Notify,
    prefetch_hint: AtomicUsize,
    /// When this handle last published a due task to each queue.
    published: Mutex<HashMap<String, Instant>>,
}

fn validate_prefix(prefix: &str) -> Result<(), DriverError> {
    if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Err(DriverError::Config(format!("invalid RabbitMQ queue prefix `{prefix}`: use 1 to 64 letters, digits, `_`, `-` or `.`")));
    }
    Ok(())
}

impl RabbitMqDriver {
    /// Connects with default settings.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Self::connect_with(RabbitMqConfig::from_url(url)?).await
    }

    /// Connects with `config`; fails if the broker cannot be reached.
    pub async fn connect_with(config: RabbitMqConfig) -> Result<Self, DriverError> {
        validate_prefix(&config.prefix)?;
        for node in session::nodes(&config.url) {
            if let Err(reason) = node.parse::<lapin::uri::AMQPUri>() {
                return Err(DriverError::Config(format!("invalid RabbitMQ URL {}: {reason}", redact_url(&node))));
            }
        }
        if config.consumer_timeout < Duration::from_secs(10) {
            return Err(DriverError::Config("RabbitMQ consumer_timeout must be at least 10 s".into()));
        }
        if config.heartbeat < Duration::from_secs(1) || config.heartbeat > Duration::from_secs(u64::from(u16::MAX)) {
            return Err(DriverError::Config("RabbitMQ heartbeat must be between 1 s and 65535 s".into()));
        }
        if config.request_timeout.is_zero() {
            return Err(DriverError::Config("RabbitMQ request timeout must be longer than zero".into()));
        }
        let inner = Arc::new(Inner {
            sessions: Sessions::new(&config.url, &config.prefix, config.heartbeat, config.reconnect_max),
            config,
            consumers: Mutex::default(),
            consumer_start: tokio::sync::Mutex::new(()),
            consumer_seq: AtomicU64::new(0),
            leases: Leases::default(),
            arrivals: Notify::new(),
            prefetch_hint: AtomicUsize::new(0),
            published: Mutex::default(),
        });
        inner.session().await?;
        tokio::spawn(reap(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// The queue name prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// Deletes every RabbitMQ queue of task queue `queue` (work, dead and delay queues) with
    /// whatever they hold, and returns how many messages went with them. Tasks leased at the
    /// time are lost with their queue: stop the workers of the queue first.
    pub async fn delete_queue(&self, queue: &str) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let c = lock(&self.inner.consumers).remove(queue);
        if let Some(c) = c {
            drop(c.cancel().await);
        }
        let session = self.inner.session().await?;
        let admin = session.admin().await?;
        let names = Names::new(&self.inner.config.prefix, queue);
        let mut deleted = 0u64;
        for name in [&names.work, &names.dead].into_iter().chain(&names.buckets) {
            deleted += u64::from(
                admin
                    .queue_delete(name.as_str().into(), lapin::options::QueueDeleteOptions::default())
                    .await
                    .map_err(|e| lapin_err("deleting a queue", e))?,
            );
        }
        lock(&session.declared).remove(queue);
        lock(&session.buckets).retain(|b| !names.buckets.contains(b));
        registry::forget(&session, &self.inner.config.prefix, queue).await?;
        Ok(deleted)
    }
}

impl Inner {
    /// Runs one call of the driver within `limit`; a call that runs out marks the connection it
    /// ran on as dead (a half-open connection answers nothing and reports nothing), so the next
    /// call opens a new one.
    async fn bounded<T>(&self, doing: &str, limit: Duration, call: impl Future<Output = Result<T, DriverError>>) -> Result<T, DriverError> {
        let generation = self.sessions.generation();
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => {
                if self.sessions.poison(generation) {
                    tracing::warn!(url = %redact_url(&self.config.url), generation, "RabbitMQ call got no answer within {limit:?}; replacing the connection");
                }
                self.arrivals.notify_waiters();
                Err(DriverError::timed_out(format!("RabbitMQ: {doing}"), limit))
            }
        }
    }

    /// The deadline of a bulk enqueue: the request timeout per started thousand tasks.
    fn limit_for(&self, tasks: usize) -> Duration {
        self.config.request_timeout * u32::try_from(tasks.div_ceil(1000).max(1)).unwrap_or(u32::MAX)
    }

    /// The live session; replacing a lost one drops the consumers and leases it carried.
    async fn session(&self) -> Result<Arc<Session>, DriverError> {
        self.sessions.get(|generation| self.forget_generation(generation)).await
    }

    /// Drops the consumers and leases of a closed connection: the broker requeued them.
    fn forget_generation(&self, generation: u64) {
        let dead: Vec<Arc<Consumer>> = {
            let mut consumers = lock(&self.consumers);
            let dead = consumers.values().filter(|c| c.generation == generation).cloned().collect();
            consumers.retain(|_, c| c.generation != generation);
            dead
        };
        for c in &dead {
            consumer::clear(c);
        }
        self.leases.forget(|c| c.generation == generation);
        self.arrivals.notify_waiters();
    }

    /// Publishes one message to `queue`'s queue for `routing`, and waits for its confirm.
    async fn publish(&self, queue: &str, routing: Route, body: &[u8], meta: &Meta) -> Result<(), DriverError> {
        let session = self.session().await?;
        let names = session.ensure_topology(queue).await?;
        let key = match routing {
            Route::Work => names.work.as_str(),
            Route::Dead => names.dead.as_str(),
            Route::Delay(ms) => delay::bucket(&session, &names, ms).await?,
        };
        session.publish_on(key, body, meta).await?;
        if matches!(routing, Route::Work) {
            self.note_published(queue);
        }
        Ok(())
    }

    fn note_published(&self, queue: &str) {
        let mut published = lock(&self.published);
        match published.get_mut(queue) {
            Some(at) => *at = Instant::now(),
            None => {
                published.insert(queue.to_owned(), Instant::now());
            }
        }
    }

    fn published_recently(&self, queue: &str) -> bool {
        lock(&self.published).get(queue).is_some_and(|at| at.elapsed() < Duration::from_secs(1))
    }

    fn live_consumer(&self, queue: &str) -> Option<Arc<Consumer>> {
        lock(&self.consumers).get(queue).filter(|c| c.is_live() && self.sessions.usable(c.generation)).cloned()
    }

    /// The consumer of `queue`, started if there is none.
    async fn consumer(self: &Arc<Self>, queue: &str) -> Result<Arc<Consumer>, DriverError> {
        if let Some(c) = self.live_consumer(queue) {
            return Ok(c);
        }
        let _one_at_a_time = self.consumer_start.lock().await;
        if let Some(c) = self.live_consumer(queue) {
            return Ok(c);
        }
        let session = self.session().await?;
        let names = session.ensure_topology(queue).await?;
        let prefetch = match (self.config.prefetch, self.prefetch_hint.load(Ordering::Relaxed)) {
            (Some(p), _) => usize::from(p.max(1)),
            (None, 0) => DEFAULT_PREFETCH,
            (None, hint) => hint.min(usize::from(u16::MAX)),
        };
        let seq = self.consumer_seq.fetch_add(1, Ordering::Relaxed);
        let owner: Weak<dyn Owner> = Arc::downgrade(self) as Weak<Self>;
        let c = Consumer::start(&session, queue, &names, seq, prefetch, owner).await?;
        lock(&self.consumers).insert(queue.to_owned(), c.clone());
        Ok(c)
    }

    fn take_held(&self, lease: &Lease) -> Result<Held, DriverError> {
        match self.leases.take(&lease.token) {
            Some(h) if h.consumer.channel.status().connected() && self.sessions.usable(h.consumer.generation) => Ok(h),
            _ => Err(DriverError::LeaseLost(lease.id)),
        }
    }

    /// Publishes a copy of a held delivery with new headers, then acks the delivery. On a
    /// failed publish the lease is kept (it expires as usual).
    async fn move_held(&self, lease: &Lease, h: Held, route: Route, meta: Meta) -> Result<(), DriverError> {
        if let Err(e) = self.publish(&h.consumer.queue, route, &h.data, &meta).await {
            self.leases.put_back(lease.token.clone(), h);
            return Err(e);
        }
        h.consumer.ack_moved(h.tag).await;
        Ok(())
    }

    /// Gives back deliveries never handed to the engine: a copy goes to the back of the work
    /// queue with the attempts it had, and the delivery is acked. If the copy cannot be
    /// published the delivery is rejected with requeue (which counts an attempt) instead.
    async fn give_back(&self, c: &Arc<Consumer>, items: Vec<Buffered>) {
        for b in items {
            let meta = Meta { not_before: None, ..b.meta };
            match self.publish(&c.queue, Route::Work, &b.data, &meta).await {
                Ok(()) => c.ack_moved(b.tag).await,
                Err(error) => {
                    tracing::warn!(%error, queue = %c.queue, "could not give back a prefetched task; requeueing it");
                    c.requeue(b.tag).await;
                }
            }
        }
    }
}

impl Owner for Inner {
    fn early(self: Arc<Self>, consumer: Arc<Consumer>, delivery: Buffered, not_before: u64) {
        tokio::spawn(async move { delay::redelay(self.session().await, consumer, delivery, not_before).await });
    }

    fn arrived(&self) {
        self.arrivals.notify_waiters();
    }

    fn died(&self, c: &Arc<Consumer>) {
        {
            let mut consumers = lock(&self.consumers);
            if consumers.get(&c.queue).is_some_and(|x| Arc::ptr_eq(x, c)) {
                consumers.remove(&c.queue);
            }
        }
        if !c.channel.status().connected() {
            consumer::clear(c);
            self.leases.forget(|h| std::ptr::eq(h, Arc::as_ptr(c)));
        }
    }
}

/// Rejects (with requeue) leases past their expiry and gives back buffered deliveries held too
/// long. Runs while the driver lives.
async fn reap(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.leases.expire().await;
        let hold = BUFFER_HOLD.min(inner.config.consumer_timeout / 2);
        let Some(cutoff) = Instant::now().checked_sub(hold) else { continue };
        let consumers: Vec<Arc<Consumer>> = lock(&inner.consumers).values().cloned().collect();
        for c in consumers {
            let stale = c.take_stale(cutoff);
            if !stale.is_empty() {
                tracing::debug!(queue = %c.queue, count = stale.len(), "giving back prefetched tasks nobody took");
                inner.give_back(&c, stale).await;
            }
        }
    }
}

#[async_trait]
impl Driver for RabbitMqDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        self.inner
            .bounded("enqueue", self.inner.limit_for(tasks.len()), async move {
                for t in tasks {
                    validate_queue_name(&t.queue)?;
                }
                asynctasq_core::unique::refuse(tasks)?;
                if tasks.is_empty() {
                    return Ok(Vec::new());
                }
                let inner = &self.inner;
                let session = inner.session().await?;
                let mut names = HashMap::new();
                for t in tasks {
                    if !names.contains_key(t.queue.as_str()) {
                        names.insert(t.queue.as_str(), session.ensure_topology(&t.queue).await?);
                    }
                }
                // Due order, so a batch is delivered earliest-due first.
                let mut order: Vec<&Envelope> = tasks.iter().collect();
                order.sort_by_key(|e| e.not_before);
                let now = SystemClock.now();
                let mut confirms = Vec::with_capacity(order.len());
                for e in order {
                    let body = e.encode()?;
                    let n = &names[e.queue.as_str()];
                    let delayed = e.not_before > now;
                    let meta = Meta { not_before: delayed.then_some(e.not_before), message_id: Some(e.id.to_string()), ..Meta::default() };
                    let key = if delayed { delay::bucket(&session, n, e.not_before - now).await? } else { n.work.as_str() };
                    let confirm = send(&session.publisher, key, &body, &meta).await?;
                    confirms.push((confirm, key.to_owned()));
                }
                for (confirm, key) in confirms {
                    confirmed(confirm, &key).await?;
                }
                for t in tasks.iter().filter(|t| t.not_before <= now) {
                    inner.note_published(&t.queue);
                }
                // A broker keeps no index of its messages: every envelope is published.
                Ok(EnqueueOutcome::all_new(tasks.len()))
            })
            .await
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        self.inner
            .bounded("dequeue", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                if max == 0 {
                    return Ok(Vec::new());
                }
                let c = self.inner.consumer(queue).await?;
                let mut taken = c.take(max);
                if taken.is_empty() && c.has_credit() {
                    let ready = topology::ready_count(&c.channel, &c.work).await?;
                    // The broker counts a task as taken the moment it dispatches it, before it reaches
                    // this process. A delivery is on its way when tasks are ready and we have credit,
                    // when the consumer has not yet received what was ready when it started, or (for a
                    // short while) when this handle just published to the queue.
                    let wait = if ready > 0 || c.expects_more() {
                        Duration::from_millis(200)
                    } else if self.inner.published_recently(queue) {
                        Duration::from_millis(50)
                    } else {
                        Duration::ZERO
                    };
                    taken = c.take(max);
                    if taken.is_empty() && !wait.is_zero() {
                        c.take_waiting(&mut taken, max, wait, &self.inner.arrivals, |_, t| t.is_empty()).await;
                    }
                }
                // A consumer that just started receives its backlog one delivery at a time: fill the
                // batch from what is still on its way rather than hand out the first arrival alone.
                if !taken.is_empty() && taken.len() < max && c.expects_more() {
                    let more = |c: &Consumer, t: &[Buffered]| t.len() < max && c.expects_more();
                    c.take_waiting(&mut taken, max, Duration::from_millis(200), &self.inner.arrivals, more).await;
                }
                Ok(self.inner.leases.hand_out(&c, taken, self.inner.config.consumer_timeout))
            })
            .await
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner
            .bounded("wait ready", timeout + self.inner.config.request_timeout, async move {
                let mut consumers = Vec::with_capacity(queues.len());
                for q in queues {
                    validate_queue_name(q)?;
                    consumers.push(self.inner.consumer(q).await?);
                }
                let arrived = self.inner.arrivals.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if consumers.iter().any(|c| c.buffered() > 0 || !c.is_live()) {
                    return Ok(());
                }
                let _ = tokio::time::timeout(timeout, arrived).await;
                Ok(())
            })
            .await
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        // The broker forgets an acked message: nothing of an ack is kept (`Capability::Results`).
        self.inner
            .bounded("ack", self.inner.config.request_timeout, async move {
                let (acks, mut lost) = self.inner.leases.take_all(acks.iter().map(|a| &a.lease));
                let results = futures_util::future::join_all(
                    acks.iter().map(|(_, h)| h.consumer.channel.basic_ack(h.tag, BasicAckOptions::default())),
                )
                .await;
                for ((id, h), result) in acks.iter().zip(results) {
                    h.consumer.settled(1);
                    if result.is_err() {
                        // The channel closed: the broker requeues the delivery.
                        lost.push(*id);
                    }
                }
                Ok(lost)
            })
            .await
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        self.inner
            .bounded("nack", self.inner.config.request_timeout, async move {
                let h = self.inner.take_held(lease)?;
                let delay_ms = millis(delay);
                let meta = Meta {
                    spent: h.attempt,
                    not_before: (delay_ms > 0).then(|| SystemClock.now() + delay_ms),
                    error: Some(error.to_owned()),
                    dead_at: None,
                    message_id: Some(h.id.to_string()),
                    replayed: h.meta.replayed,
                };
                let route = if delay_ms > 0 { Route::Delay(delay_ms) } else { Route::Work };
                self.inner.move_held(lease, h, route, meta).await
            })
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        self.inner
            .bounded("release", self.inner.config.request_timeout, async move {
                let h = self.inner.take_held(lease)?;
                let meta = Meta {
                    spent: h.attempt.saturating_sub(1),
                    not_before: None,
                    dead_at: None,
                    message_id: Some(h.id.to_string()),
                    error: h.meta.error.clone(),
                    replayed: h.meta.replayed,
                };
                self.inner.move_held(lease, h, Route::Work, meta).await
            })
            .await
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, _keep: Duration) -> Result<(), DriverError> {
        self.inner
            .bounded("dead letter", self.inner.config.request_timeout, async move {
                let h = self.inner.take_held(lease)?;
                let meta = Meta {
                    spent: h.attempt,
                    not_before: None,
                    error: Some(error.to_owned()),
                    dead_at: Some(SystemClock.now()),
                    message_id: h.meta.message_id.clone().or_else(|| Some(h.id.to_string())),
                    replayed: h.meta.replayed,
                };
                self.inner.move_held(lease, h, Route::Dead, meta).await
            })
            .await
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        self.inner.bounded("extend lease", self.inner.config.request_timeout, async move { self.inner.leases.extend(lease, by) }).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        self.inner
            .bounded("stats", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                let session = self.inner.session().await?;
                let names = session.ensure_topology(queue).await?;
                let ((ready, dead), buckets) = futures_util::future::try_join(
                    async { topology::declare_base(&session.admin().await?, &names, session.replicated).await },
                    topology::existing_buckets(&session.conn, &names),
                )
                .await?;
                let buffered = lock(&self.inner.consumers).get(queue).map_or(0, |c| c.buffered() as u64);
                let leased = self.inner.leases.count(queue);
                // A queue's head cannot be read without consuming it, so the age of the oldest
                // ready task is not known (`OldestReadyAge` undeclared).
                let scheduled = buckets.iter().map(|(_, n)| n).sum();
                // And an acked message leaves the broker with nothing to count it by: no totals.
                Ok(QueueStats { ready: ready + buffered, scheduled, leased, dead, oldest_ready_age: None, totals: None, estimated: false })
            })
            .await
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        self.inner
            .bounded("queues", self.inner.config.request_timeout, async move {
                let session = self.inner.session().await?;
                let mut out = Vec::new();
                for name in registry::read(&session, &self.inner.config.prefix).await? {
                    let s = self.stats(&name).await?;
                    if s.ready + s.scheduled + s.leased + s.dead > 0 {
                        out.push(name);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        if which != Waiting::Both {
            return Err(DriverError::Unsupported("deleting ready and scheduled tasks separately"));
        }
        self.inner
            .bounded("purge", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                let session = self.inner.session().await?;
                let names = session.ensure_topology(queue).await?;
                let admin = session.admin().await?;
                let mut purged = 0u64;
                let buckets = topology::existing_buckets(&session.conn, &names).await?;
                for name in std::iter::once(&names.work).chain(buckets.iter().map(|(i, _)| &names.buckets[*i])) {
                    purged += u64::from(
                        admin.queue_purge(name.as_str().into(), QueuePurgeOptions::default()).await.map_err(|e| lapin_err("purging", e))?,
                    );
                }
                let c = lock(&self.inner.consumers).get(queue).cloned();
                if let Some(c) = c {
                    let buffered = c.take(usize::MAX);
                    purged += buffered.len() as u64;
                    for b in buffered {
                        c.ack_moved(b.tag).await;
                    }
                }
                Ok(purged)
            })
            .await
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        self.inner
            .bounded("dead", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                dead::list(&*self.inner.session().await?, queue, limit).await
            })
            .await
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        self.inner
            .bounded("requeue dead", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                dead::requeue(&*self.inner.session().await?, queue, which).await
            })
            .await
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        self.inner
            .bounded("purge dead", self.inner.config.request_timeout, async move {
                validate_queue_name(queue)?;
                let session = self.inner.session().await?;
                let names = session.ensure_topology(queue).await?;
                let admin = session.admin().await?;
                Ok(u64::from(
                    admin
                        .queue_purge(names.dead.as_str().into(), QueuePurgeOptions::default())
                        .await
                        .map_err(|e| lapin_err("purging dead tasks", e))?,
                ))
            })
            .await
    }

    fn prefetch_hint(&self, tasks: usize, queues: usize) {
        // Several queues: room for a full refill on top of the running tasks, so a slot freed
        // before its ack reaches the broker still finds its queue's next task buffered and the
        // engine's priority order decides, not the order in which credit comes back. One
        // queue has no order to keep: a worker holds no more than it runs, so a crash costs
        // an attempt only of tasks it had started.
        let prefetch = if queues > 1 { tasks.saturating_mul(2) } else { tasks };
        self.inner.prefetch_hint.store(prefetch, Ordering::Relaxed);
    }

    async fn stop_prefetch(&self) -> Result<(), DriverError> {
        self.inner
            .bounded("stop prefetch", self.inner.config.request_timeout, async move {
                let consumers: Vec<Arc<Consumer>> = lock(&self.inner.consumers).drain().map(|(_, c)| c).collect();
                for c in consumers {
                    let buffered = c.cancel().await;
                    self.inner.give_back(&c, buffered).await;
                    c.settled(0);
                }
                Ok(())
            })
            .await
    }

    fn supports(&self, capability: Capability) -> bool {
        !matches!(
            capability,
            Capability::ExactStats
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
        "rabbitmq"
    }
}
