//! Configuring a worker: every option with its default, checked once in [`WorkerBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use super::deadline;
/// How long a cancelled run may take to stop on its own by default.
const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);
use super::queues::QueueOrder;
use super::{Priority, QueueSpec, Worker, WorkerHandle};
use crate::blocking::BlockingPool;
use crate::clock::{Clock, SystemClock};
use crate::driver::{Capability, Driver, QueueLimits};
use crate::error::WorkerError;
use crate::event::Events;
use crate::registry::Registry;
use crate::result::Keeping;
use crate::retry::RetryPolicy;

/// Configures a [`Worker`].
#[must_use]
pub struct WorkerBuilder {
    driver: Arc<dyn Driver>,
    registry: Option<Registry>,
    queues: Vec<QueueSpec>,
    priority: Priority,
    concurrency: usize,
    fetch_batch: Option<usize>,
    retry: RetryPolicy,
    default_timeout: Option<Duration>,
    default_max_attempts: Option<u32>,
    default_lease: Option<Duration>,
    keeping: Keeping,
    cancel_grace: Duration,
    blocking_threads: Option<usize>,
    shutdown_grace: Duration,
    max_tasks: Option<u64>,
    max_time: Option<Duration>,
    stop_when_empty: bool,
    idle_wait: Duration,
    heartbeat_interval: Duration,
    events: Events,
    id: Option<String>,
    call_deadline: Duration,
    handle: WorkerHandle,
    clock: Arc<dyn Clock>,
    http: Option<std::net::SocketAddr>,
    http_token: Option<String>,
    #[cfg(feature = "http")]
    http_routes: Option<axum::Router>,
    backend_url: Option<String>,
    ready_bound: Option<Duration>,
    collect_interval: Duration,
    #[cfg(feature = "cron")]
    schedules: Vec<crate::schedule::Schedule>,
    limits: Vec<(String, QueueLimits)>,
    queue_caps: Vec<(String, usize)>,
}

impl WorkerBuilder {
    /// Every option at its default.
    pub(super) fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            registry: None,
            queues: Vec::new(),
            priority: Priority::Strict,
            concurrency: 10,
            fetch_batch: None,
            retry: RetryPolicy::default(),
            default_timeout: None,
            default_max_attempts: None,
            default_lease: None,
            keeping: Keeping::default(),
            cancel_grace: DEFAULT_CANCEL_GRACE,
            blocking_threads: None,
            shutdown_grace: Duration::from_secs(30),
            max_tasks: None,
            max_time: None,
            stop_when_empty: false,
            idle_wait: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            events: Events::default(),
            id: None,
            call_deadline: deadline::DEFAULT_CALL_DEADLINE,
            handle: WorkerHandle::default(),
            clock: Arc::new(SystemClock),
            http: None,
            http_token: None,
            #[cfg(feature = "http")]
            http_routes: None,
            backend_url: None,
            ready_bound: None,
            collect_interval: Duration::from_secs(5),
            #[cfg(feature = "cron")]
            schedules: Vec::new(),
            limits: Vec::new(),
            queue_caps: Vec::new(),
        }
    }

    /// Task handlers to run (default: every `#[task]` linked into the binary).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Queues from a list: `high,default,low` (strict order) or `high:6,default:3,low:1`
    /// (weighted).
    pub fn queues(mut self, list: &str) -> Result<Self, WorkerError> {
        let (queues, priority) = QueueSpec::parse_list(list)?;
        self.queues = queues;
        self.priority = priority;
        Ok(self)
    }

    /// Queues and priority given directly.
    pub fn queue_specs(mut self, queues: Vec<QueueSpec>, priority: Priority) -> Self {
        self.queues = queues;
        self.priority = priority;
        self
    }

    /// Most tasks running at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Most tasks taken per fetch (default: the concurrency, capped at 100).
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.fetch_batch = Some(n);
        self
    }

    /// Retry policy for tasks that set none (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Timeout for tasks that set none (default: none).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// How long a succeeded task stays findable with its result, for tasks whose `#[task]` sets
    /// no `result_ttl` (default 24 h; `ZERO` keeps nothing, and the ack only deletes). On a
    /// backend without [`Capability::Results`](crate::Capability::Results) nothing is kept.
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.keeping.ttl = ttl;
        self
    }

    /// The largest encoded result kept (default 1 MiB). A task whose result is larger still
    /// succeeds; its record says the result was too large.
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.keeping.max_size = bytes;
        self
    }

    /// How long a dead-lettered or cancelled task stays findable, with its error history, when
    /// its `#[task]` sets no `failure_ttl` (default 7 days). Refused by [`build`](Self::build)
    /// on a backend whose dead tasks cannot expire ([`Capability::DeadExpiry`]); there the
    /// broker's own retention keeps them.
    pub fn failure_ttl(mut self, ttl: Duration) -> Self {
        self.keeping.failure_ttl = ttl;
        self.keeping.failure_ttl_set = true;
        self
    }

    /// How long a running task that was cancelled ([`Client::cancel`](crate::Client::cancel))
    /// may take to stop on its own, once its [`TaskContext`](crate::TaskContext) says it is
    /// cancelled, before it is aborted (default 5 s). It is settled as cancelled either way;
    /// a run that succeeds within the grace did its work and is acked.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Max attempts for tasks whose dispatch and `#[task]` set none (default: what the client
    /// stored, 3). Precedence: per dispatch, then `#[task]`, then this, then the built-in.
    pub fn default_max_attempts(mut self, n: u32) -> Self {
        self.default_max_attempts = Some(n);
        self
    }

    /// Lease for tasks whose dispatch and `#[task]` set none (default: what the client stored,
    /// 30 s). The backend claims each delivery with the stored lease; the first renewal, a
    /// third of the shorter of the two in, sets this one.
    pub fn default_lease(mut self, lease: Duration) -> Self {
        self.default_lease = Some(lease);
        self
    }

    /// Most blocking task bodies (`#[task]` on a plain `fn`) running at once, each on a thread
    /// of its own off the async runtime (default: the number of cores).
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = Some(n);
        self
    }

    /// How long a graceful stop waits for running tasks before releasing them (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Stop after taking exactly this many deliveries.
    pub fn max_tasks(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Stop gracefully after running this long.
    pub fn max_time(mut self, d: Duration) -> Self {
        self.max_time = Some(d);
        self
    }

    /// Stop once the queues hold nothing ready, scheduled or leased and nothing runs here.
    pub fn stop_when_empty(mut self, yes: bool) -> Self {
        self.stop_when_empty = yes;
        self
    }

    /// Longest single wait for work before fetching again (default 1 s); drivers that wake on
    /// enqueue return sooner.
    pub fn idle_wait(mut self, d: Duration) -> Self {
        self.idle_wait = d;
        self
    }

    /// How often the worker reports [`Event::WorkerHeartbeat`](crate::Event::WorkerHeartbeat) (default 5 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// The event bus to report to (default: a bus of its own, see [`Worker::events`]).
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The longest the engine waits for any one driver call (default 30 s) before it abandons
    /// the call as stalled, logs an error and carries on as after a dropped connection.
    /// Drivers bound their own requests well below this (a few seconds); this deadline is the
    /// backstop that keeps a driver bug from wedging the worker. `wait_ready` gets its wait on
    /// top.
    pub fn call_deadline(mut self, d: Duration) -> Self {
        self.call_deadline = d;
        self
    }

    /// The wall clock the worker reads (default [`SystemClock`]): give it the clock of the
    /// client and the in-memory driver (a [`TokioClock`](crate::TokioClock) on a paused test
    /// runtime) so all of them agree on time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Stop through `handle`, made before the worker (default: a handle of its own, see
    /// [`Worker::handle`]). A stop asked on it before the worker starts makes
    /// [`Worker::start`] return at once, having taken nothing.
    pub fn handle(mut self, handle: WorkerHandle) -> Self {
        self.handle = handle;
        self
    }

    /// Serves `/metrics`, `/health`, `/ready` and `/worker` on `addr` while the worker runs
    /// (feature `http`; without it, [`build`](Self::build) refuses). Installs the process's
    /// Prometheus recorder at start: install no other `metrics` recorder, and create the
    /// process's clients after it if their enqueue counts should show.
    pub fn http(mut self, addr: std::net::SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// The bearer token `/worker` asks of requests from off loopback (compared in constant
    /// time). Without one, `/worker` answers loopback only; the other routes never ask.
    pub fn http_token(mut self, token: impl Into<String>) -> Self {
        self.http_token = Some(token.into());
        self
    }

    /// More routes for the listener of [`http`](Self::http), served beside its own (feature
    /// `http`): the dashboard (`asynctasq-dashboard`'s `Dashboard::router`) on the worker's
    /// port. They bring their own access checks; `/metrics`, `/health`, `/ready` and
    /// `/worker` keep theirs.
    #[cfg(feature = "http")]
    pub fn http_routes(mut self, routes: axum::Router) -> Self {
        self.http_routes = Some(routes);
        self
    }

    /// The backend's URL as `/worker` shows it: its password is hidden before it is stored.
    pub fn backend_url(mut self, url: &str) -> Self {
        self.backend_url = Some(crate::redact_url(url));
        self
    }

    /// How long the fetch loop may sit in one backend call before `/ready` turns 503 (default:
    /// the idle wait plus 10 s).
    pub fn ready_bound(mut self, bound: Duration) -> Self {
        self.ready_bound = Some(bound);
        self
    }

    /// How often the HTTP listener's collector samples the queues' counts (default 5 s).
    pub fn collect_interval(mut self, every: Duration) -> Self {
        self.collect_interval = every;
        self
    }

    /// Runs `schedule` besides the `#[task(cron = "…")]` schedules of the binary: its slots are
    /// claimed by whichever worker that knows it claims first (see [`crate::schedule`]). A
    /// backend without [`Capability::ScheduleClaims`] refuses to start such a worker.
    #[cfg(feature = "cron")]
    pub fn schedule(mut self, schedule: crate::schedule::Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Stores `limits` for `queue` in the backend as the worker starts ([`Driver::set_limits`]),
    /// so every worker on the backend obeys them, this one's other queues and other processes
    /// included; the last one stored wins. A backend without [`Capability::QueueLimits`] (or
    /// [`Capability::KeyedLimits`], [`Capability::RateLimits`] for those kinds) refuses to
    /// build such a worker: a limit is never silently ignored.
    pub fn limit(mut self, queue: &str, limits: QueueLimits) -> Result<Self, WorkerError> {
        crate::envelope::validate_queue_name(queue).map_err(|e| WorkerError::QueueSpec { spec: queue.into(), reason: e.to_string() })?;
        self.limits.push((queue.to_owned(), limits));
        Ok(self)
    }

    /// Runs at most `n` of `queue`'s tasks at once in this worker, whatever its concurrency (a
    /// per-process cap that needs no backend support; for one across every worker see
    /// [`limit`](Self::limit)). The queue must be one of the worker's.
    pub fn queue_concurrency(mut self, queue: &str, n: usize) -> Self {
        self.queue_caps.push((queue.to_owned(), n));
        self
    }

    /// The worker's id in events (default: `host:pid:random`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Checks the configuration and builds the worker.
    pub fn build(self) -> Result<Worker, WorkerError> {
        if self.queues.is_empty() {
            return Err(WorkerError::NoQueues);
        }
        if self.concurrency == 0 {
            return Err(WorkerError::Option("concurrency must be at least 1".into()));
        }
        if self.call_deadline.is_zero() {
            return Err(WorkerError::Option("call deadline must be longer than zero".into()));
        }
        if self.default_max_attempts == Some(0) {
            return Err(WorkerError::Option("default max attempts must be at least 1".into()));
        }
        if self.default_lease.is_some_and(|d| d < Duration::from_millis(10)) {
            return Err(WorkerError::Option("default lease must be at least 10 ms".into()));
        }
        if self.blocking_threads == Some(0) {
            return Err(WorkerError::Option("blocking threads must be at least 1".into()));
        }
        if self.http.is_some() && !cfg!(feature = "http") {
            return Err(WorkerError::Http("this build has no HTTP listener: enable feature `http` of asynctasq-core".into()));
        }
        if self.collect_interval < Duration::from_millis(100) {
            return Err(WorkerError::Option("collect interval must be at least 100 ms".into()));
        }
        if self.fetch_batch == Some(0) {
            return Err(WorkerError::Option("fetch batch must be at least 1".into()));
        }
        let registry = match self.registry {
            Some(r) => r,
            None => Registry::linked()?,
        };
        if !self.driver.supports(Capability::DeadExpiry) {
            let by_task = registry.names().into_iter().find(|n| registry.get(n).is_some_and(|r| (r.options)().failure_ttl.is_some()));
            if self.keeping.failure_ttl_set || by_task.is_some() {
                let by = by_task.map_or("the worker".to_owned(), |n| format!("task `{n}`"));
                return Err(WorkerError::Option(format!(
                    "{by} sets a failure time to live, but {} keeps dead tasks by its own retention and cannot expire them",
                    self.driver.name()
                )));
            }
        }
        #[cfg(feature = "cron")]
        let schedules = {
            let mut schedules = self.schedules;
            for name in registry.names() {
                if let Some(declared) = registry.get(name).and_then(crate::schedule::Schedule::declared) {
                    schedules.push(declared.map_err(|e| WorkerError::Option(e.to_string()))?);
                }
            }
            let mut names: Vec<&str> = schedules.iter().map(|s| s.name()).collect();
            names.sort_unstable();
            if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(WorkerError::Option(format!("two schedules are named `{}`", twice[0])));
            }
            if !schedules.is_empty() && !self.driver.supports(Capability::ScheduleClaims) {
                return Err(WorkerError::Option(format!(
                    "schedule `{}` needs schedule claims, which {} cannot make (it keeps no state of ours to advance with the slot's task)",
                    schedules[0].name(),
                    self.driver.name()
                )));
            }
            schedules
        };
        for (queue, n) in &self.queue_caps {
            if *n == 0 {
                return Err(WorkerError::Option(format!("queue concurrency of `{queue}` must be at least 1")));
            }
            if !self.queues.iter().any(|q| q.name == *queue) {
                return Err(WorkerError::Option(format!("queue concurrency names `{queue}`, which is not one of the worker's queues")));
            }
        }
        for (queue, limits) in &self.limits {
            let Err(e) = self.driver.check_limits(queue, limits) else { continue };
            let name = self.driver.name();
            return Err(WorkerError::Option(if self.driver.supports(Capability::QueueLimits) {
                format!("queue `{queue}`: {e} ({name} cannot enforce it)")
            } else {
                format!("queue `{queue}` has a limit, which {name} cannot enforce (it hands tasks to its consumers on its own): {e}")
            }));
        }
        let id = self.id.unwrap_or_else(|| {
            // The real host name, as the registry records it (`$HOSTNAME` is a shell variable,
            // often not exported).
            let host = gethostname::gethostname().to_string_lossy().into_owned();
            format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
        });
        Ok(Worker {
            driver: self.driver,
            registry,
            order: QueueOrder::new(self.queues, self.priority),
            concurrency: self.concurrency,
            fetch_batch: self.fetch_batch.unwrap_or(self.concurrency.min(100)),
            retry: self.retry,
            default_timeout: self.default_timeout,
            default_max_attempts: self.default_max_attempts,
            default_lease: self.default_lease,
            keeping: self.keeping,
            cancel_grace: self.cancel_grace,
            blocking: self.blocking_threads.map_or_else(BlockingPool::per_core, BlockingPool::new),
            shutdown_grace: self.shutdown_grace,
            max_tasks: self.max_tasks,
            max_time: self.max_time,
            stop_when_empty: self.stop_when_empty,
            idle_wait: self.idle_wait,
            heartbeat_interval: self.heartbeat_interval,
            events: self.events,
            handle: self.handle,
            id,
            call_deadline: self.call_deadline,
            clock: self.clock,
            #[cfg(feature = "cron")]
            schedules,
            limits: self.limits,
            caps: super::queue_caps::QueueCaps::new(self.queue_caps),
            ready_bound: self.ready_bound.unwrap_or(self.idle_wait + Duration::from_secs(10)),
            http: self.http.map(|addr| crate::monitor::HttpConfig {
                addr,
                token: self.http_token,
                backend_url: self.backend_url,
                collect_interval: self.collect_interval,
                #[cfg(feature = "http")]
                routes: self.http_routes,
            }),
        })
    }
}
