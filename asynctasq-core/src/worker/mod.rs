//! The worker engine: fetches tasks from a driver, runs them under leases, settles them.
//!
//! ```no_run
//! # async fn f(driver: std::sync::Arc<dyn asynctasq_core::Driver>) -> Result<(), asynctasq_core::WorkerError> {
//! use asynctasq_core::Worker;
//! let worker = Worker::builder(driver).queues("high,default")?.concurrency(20).build()?;
//! worker.handle().stop_on_signals().expect("signal handlers");
//! let counts = worker.start().await?;
//! println!("{} tasks succeeded", counts.succeeded);
//! # Ok(()) }
//! ```
//!
//! How it works: one loop waits for free concurrency slots, fetches as many tasks as there are
//! free slots (trying queues in priority order), and spawns one executor per task. An executor
//! runs the handler in its own tokio task (so panics are caught), renews the lease every third
//! of its length while it runs, and settles the result: successes go to a batching acker,
//! failures are retried with backoff or dead-lettered. When nothing is ready the loop blocks in
//! [`Driver::wait_ready`] instead of polling.

mod builder;
pub(crate) mod deadline;
mod executor;
mod fetcher;
mod heartbeat;
mod lease;
#[cfg(feature = "testing")]
pub(crate) mod once;
mod queue_caps;
mod queues;
mod running;
#[cfg(feature = "cron")]
mod scheduler;
mod settle;
pub(crate) mod shared;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::builder::WorkerBuilder;
use self::deadline::{Beacon, bounded};
use self::heartbeat::{heartbeats, registry_record};
use self::queues::QueueOrder;
pub use self::queues::{Priority, QueueSpec};
use self::shared::{ACK_CREDITS_PER_SLOT, Counters, Shared};
pub use self::shutdown::{SAME_STOP, WorkerHandle};
use crate::blocking::BlockingPool;
use crate::clock::Clock;
use crate::driver::Driver;
use crate::error::WorkerError;
use crate::event::{Event, Events};
use crate::monitor::Monitor;
use crate::registry::Registry;
use crate::retry::RetryPolicy;
pub use crate::workers::WorkerCounts;

/// Longest a busy worker waits for more free slots before fetching (see the fetch loop).
pub(crate) const BACKLOG_GATHER: Duration = Duration::from_millis(2);

/// A configured worker; [`Worker::start`] runs it until it is stopped.
pub struct Worker {
    driver: Arc<dyn Driver>,
    registry: Registry,
    order: QueueOrder,
    concurrency: usize,
    fetch_batch: usize,
    retry: RetryPolicy,
    default_timeout: Option<Duration>,
    default_max_attempts: Option<u32>,
    default_lease: Option<Duration>,
    keeping: crate::result::Keeping,
    cancel_grace: Duration,
    blocking: BlockingPool,
    shutdown_grace: Duration,
    max_tasks: Option<u64>,
    max_time: Option<Duration>,
    stop_when_empty: bool,
    idle_wait: Duration,
    heartbeat_interval: Duration,
    events: Events,
    handle: WorkerHandle,
    id: String,
    call_deadline: Duration,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "cron")]
    schedules: Vec<crate::schedule::Schedule>,
    /// Limits stored in the backend as the worker starts.
    limits: Vec<(String, crate::driver::QueueLimits)>,
    /// This process's own caps on queues' running tasks.
    caps: std::sync::Arc<queue_caps::QueueCaps>,
    ready_bound: Duration,
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    http: Option<crate::monitor::HttpConfig>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).field("driver", &self.driver.name()).finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts configuring a worker on `driver`.
    pub fn builder(driver: Arc<dyn Driver>) -> WorkerBuilder {
        WorkerBuilder::new(driver)
    }

    /// Starts the HTTP listener and its collector, when asked for: their tasks.
    #[cfg(feature = "http")]
    async fn listen(
        &self,
        monitor: &Arc<Monitor>,
        counters: &Arc<Counters>,
        stop: &CancellationToken,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, WorkerError> {
        let Some(config) = &self.http else { return Ok(Vec::new()) };
        let subject = crate::monitor::http::Subject {
            id: &self.id,
            queues: self.order.specs().iter().map(|q| (q.name.clone(), q.weight)).collect(),
            priority: match self.order.priority() {
                Priority::Strict => "strict",
                Priority::Weighted => "weighted",
            },
            concurrency: self.concurrency,
            driver: &self.driver,
            call_deadline: self.call_deadline,
        };
        crate::monitor::http::start(config, subject, monitor, counters, stop).await
    }

    /// A handle that stops this worker.
    pub fn handle(&self) -> WorkerHandle {
        self.handle.clone()
    }

    /// The worker's event bus.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until stopped (handle, signal, `max_tasks`, `max_time`, `stop_when_empty`) and
    /// returns what it did. Unfinished tasks are released before it returns.
    pub async fn start(mut self) -> Result<WorkerCounts, WorkerError> {
        // Before anything is claimed: this worker's own first claims obey them too.
        for (queue, limits) in &self.limits {
            bounded("set_limits", self.call_deadline, self.driver.set_limits(queue, *limits)).await?;
        }
        let counters = Arc::new(Counters::default());
        let (ack_tx, ack_rx) = mpsc::channel(self.concurrency.max(64) * 4);
        let (fetching, acking) = (Beacon::new("fetch"), Beacon::new("ack"));
        // The listener first: a port in use fails the start before anything is claimed.
        let monitor = Arc::new(Monitor::new(fetching.clone(), self.ready_bound));
        let listening = CancellationToken::new();
        #[cfg(feature = "http")]
        let listener = self.listen(&monitor, &counters, &listening).await?;
        let watchdog = tokio::spawn(deadline::watch(vec![fetching.clone(), acking.clone()], self.call_deadline, Duration::from_secs(5)));
        let acker = tokio::spawn(executor::ack_loop(
            self.driver.clone(),
            self.events.clone(),
            counters.clone(),
            ack_rx,
            self.call_deadline,
            acking,
        ));
        let cancel_watch = lease::CancelWatch::start(&*self.driver);
        let shared = Arc::new(Shared {
            driver: self.driver.clone(),
            registry: std::mem::take(&mut self.registry),
            retry: self.retry.clone(),
            default_timeout: self.default_timeout,
            default_max_attempts: self.default_max_attempts,
            default_lease: self.default_lease,
            keeping: self.keeping,
            cancel_grace: self.cancel_grace,
            cancel_watch: cancel_watch.as_ref().map(|(watch, _)| watch.clone()),
            blocking: self.blocking.clone(),
            events: self.events.clone(),
            counters: counters.clone(),
            acks: ack_tx,
            ack_credits: Arc::new(tokio::sync::Semaphore::new(ACK_CREDITS_PER_SLOT * self.concurrency)),
            deadline: self.call_deadline,
            clock: self.clock.clone(),
            abandon: CancellationToken::new(),
            metrics: crate::metrics::EngineMetrics::default(),
            running: Arc::new(running::Running::default()),
        });
        let names = self.order.names();
        tracing::info!(worker.id = %self.id, queues = ?names, concurrency = self.concurrency, driver = self.driver.name(), "worker started");
        self.events.emit(|| Event::WorkerStarted { worker_id: self.id.clone(), queues: names.clone(), concurrency: self.concurrency });
        let record = registry_record(&self.id, &names, self.concurrency, self.heartbeat_interval, self.clock.clone());
        let registered = self.driver.supports(crate::driver::Capability::WorkerRegistry);
        let limit = self.call_deadline;
        if registered
            && let Err(error) =
                bounded("register_worker", limit, self.driver.register_worker(&record.beat(0, counters.snapshot(), Vec::new()))).await
        {
            tracing::warn!(%error, "could not record the worker in the registry; retrying at the next heartbeat");
        }
        let beats = tokio::spawn(heartbeats(
            heartbeat::Beat {
                worker_id: self.id.clone(),
                events: self.events.clone(),
                counters: counters.clone(),
                running: shared.running.clone(),
                clock: self.clock.clone(),
            },
            self.heartbeat_interval,
            registered.then(|| (self.driver.clone(), record)),
            limit,
        ));

        #[cfg(feature = "cron")]
        let scheduler = (!self.schedules.is_empty()).then(|| {
            let slots = scheduler::Slots::new(
                std::mem::take(&mut self.schedules),
                self.driver.clone(),
                self.clock.clone(),
                shared.registry.clone(),
            );
            tokio::spawn(scheduler::run(slots, self.driver.clone(), self.clock.clone(), limit))
        });

        let mut running = JoinSet::new();
        self.driver.prefetch_hint(self.concurrency, names.len());
        self.driver.consumer(&self.id);
        let fetched = self.fetch_loop(&shared, &names, &mut running, &fetching, &monitor).await;
        // A stopping worker claims no more slots: the workers that run on claim them.
        #[cfg(feature = "cron")]
        if let Some(scheduler) = scheduler {
            scheduler.abort();
        }
        monitor.stopped();
        if let Err(error) = bounded("stop_prefetch", limit, self.driver.stop_prefetch()).await {
            tracing::warn!(%error, "could not give back prefetched tasks; they return when the connection closes");
        }

        // Graceful part: let running tasks finish within the grace period.
        let graceful_wait = async { while running.join_next().await.is_some() {} };
        tokio::select! {
            () = graceful_wait => {}
            () = tokio::time::sleep(self.shutdown_grace) => {
                tracing::warn!(grace = ?self.shutdown_grace, "shutdown grace period over; releasing unfinished tasks");
            }
            () = self.handle.immediate.cancelled() => {}
        }
        shared.abandon.cancel();
        while running.join_next().await.is_some() {}
        drop(shared);
        let _ = acker.await;
        beats.abort();
        watchdog.abort();
        if let Some((_, feeding)) = cancel_watch {
            feeding.abort();
        }
        listening.cancel();
        #[cfg(feature = "http")]
        for task in listener {
            let _ = task.await;
        }
        if registered && let Err(error) = bounded("deregister_worker", limit, self.driver.deregister_worker(&self.id)).await {
            tracing::warn!(%error, "could not remove the worker from the registry; its record expires by itself");
        }
        let counts = counters.snapshot();
        tracing::info!(worker.id = %self.id, ?counts, "worker stopped");
        self.events.emit(|| Event::WorkerStopped { worker_id: self.id.clone(), counts });
        fetched.map(|()| counts)
    }
}
