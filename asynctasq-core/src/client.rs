//! Dispatch: turning typed tasks into envelopes in a driver.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::driver::{Capability, Driver, EnqueueOutcome};
use crate::envelope::{Defaulted, ENVELOPE_VERSION, Envelope, TaskId, millis, validate_queue_name};
use crate::error::{CodecError, DriverError};
use crate::event::{Event, Events, TaskInfo};
use crate::retry::{RETRY_HEADER, RetryPolicy};
use crate::task::{Task, TaskOptions};
use crate::trace;

/// Queue used when neither the task nor the dispatch names one.
pub const DEFAULT_QUEUE: &str = "default";
/// Deliveries allowed when neither the task nor the dispatch says.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Lease duration when neither the task nor the dispatch says.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// Dispatches tasks into a driver. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    driver: Arc<dyn Driver>,
    clock: Arc<dyn Clock>,
    events: Option<Events>,
    /// The waits of this client and its clones ([`Client::wait`]), started at the first.
    waiters: Arc<std::sync::OnceLock<Option<Arc<crate::waiters::Waiters>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("driver", &self.driver.name()).finish_non_exhaustive()
    }
}

impl Client {
    /// A client on `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self { driver, clock: Arc::new(SystemClock), events: None, waiters: Arc::default() }
    }

    /// Reads time from `clock` (for `created_at` and delays); tests pair it with the memory
    /// driver's clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sends a [`Event::TaskEnqueued`] per dispatched task to `events`.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = Some(events);
        self
    }

    /// The waits of this client, routed from one subscription to the driver's settled notices
    /// (`None` on a driver that does not push).
    pub(crate) fn waiters(&self) -> Option<&Arc<crate::waiters::Waiters>> {
        self.waiters.get_or_init(|| crate::waiters::Waiters::start(self.driver.as_ref())).as_ref()
    }

    /// The driver this client dispatches to.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// Starts a dispatch of `task`; set overrides on the builder, then `.await` it for the id.
    ///
    /// ```no_run
    /// # use asynctasq_core::{Client, Task, TaskContext, TaskResult};
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Resize { w: u32 }
    /// # impl Task for Resize { const NAME: &'static str = "resize";
    /// #   async fn run(self, _: TaskContext) -> TaskResult { Ok(()) } }
    /// # async fn f(client: Client) -> Result<(), asynctasq_core::DriverError> {
    /// let id = client.dispatch(Resize { w: 640 }).queue("images").delay(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn dispatch<T: Task>(&self, task: T) -> Dispatch<'_, T> {
        Dispatch { client: self, task, overrides: Overrides::default() }
    }

    /// Dispatches many tasks of one type with the same overrides in one driver call, and gives
    /// each one's id (for a unique task whose key was held, the holder's).
    pub async fn dispatch_many<T: Task>(
        &self,
        tasks: impl IntoIterator<Item = T>,
        overrides: Overrides,
    ) -> Result<Vec<TaskId>, DriverError> {
        if overrides.id.is_some() || overrides.unique_key.is_some() {
            return Err(DriverError::Config("a task id or unique key names one task: dispatch_many takes neither".into()));
        }
        let tasks: Vec<T> = tasks.into_iter().collect();
        let options = T::options();
        let span = self.send_span(resolve_queue(&overrides, &options), tasks.len());
        let headers = trace::headers_of(&span);
        let envelopes = tasks
            .iter()
            .map(|t| self.build(T::NAME, Payload::of(t, &overrides, &options)?, &overrides, &options, &headers))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<TaskId> = envelopes.iter().map(|e| e.id).collect();
        let outcomes = trace::around(span, self.enqueue(envelopes)).await?;
        Ok(ids.into_iter().zip(outcomes).map(|(id, outcome)| holder(id, outcome)).collect())
    }

    /// Builds the envelope for `task` with `overrides` (what dispatch stores). With the `otel`
    /// feature it carries the trace context of the current span (see [`trace`]).
    pub fn envelope<T: Task>(&self, task: &T, overrides: &Overrides) -> Result<Envelope, DriverError> {
        let options = T::options();
        self.build(T::NAME, Payload::of(task, overrides, &options)?, overrides, &options, &trace::current_headers())
    }

    /// Builds an envelope from an already encoded payload (the CLI's dispatch by name); a
    /// unique key, unless given, is derived from the whole payload. With the `otel` feature it
    /// carries the trace context of the current span (see [`trace`]).
    pub fn envelope_from_payload(
        &self,
        name: &str,
        payload: Vec<u8>,
        overrides: &Overrides,
        defaults: &TaskOptions,
    ) -> Result<Envelope, DriverError> {
        let payload = Payload { bytes: payload, unique_fields: None, key: None };
        self.build(name, payload, overrides, defaults, &trace::current_headers())
    }

    /// Builds the envelope of the registered task `task` from an encoded payload with its
    /// options (the CLI's dispatch by name): a unique key is derived as a typed dispatch of the
    /// task derives it. With the `otel` feature it carries the trace context of the current span.
    pub fn envelope_of(
        &self,
        task: &crate::registry::TaskRegistration,
        payload: Vec<u8>,
        overrides: &Overrides,
    ) -> Result<Envelope, DriverError> {
        let options = (task.options)();
        let fields = if overrides.unique_key.is_none() && (overrides.unique.is_some() || options.unique.is_some()) {
            (task.unique_fields)(&payload)?
        } else {
            None
        };
        let key = if overrides.key.is_none() { (task.key)(&payload)? } else { None };
        self.build(task.name, Payload { bytes: payload, unique_fields: fields, key }, overrides, &options, &trace::current_headers())
    }

    /// The envelope, with the trace headers `trace` unless the overrides set a `traceparent`;
    /// a unique key is derived from `unique_fields`, else from the whole payload.
    fn build(
        &self,
        name: &str,
        payload: Payload,
        overrides: &Overrides,
        defaults: &TaskOptions,
        trace: &[(String, String)],
    ) -> Result<Envelope, DriverError> {
        let Payload { bytes: payload, unique_fields, key } = payload;
        crate::envelope::validate_task_name(name)?;
        if overrides.id.is_some() && !self.driver.supports(Capability::IdempotentEnqueue) {
            return Err(DriverError::Unsupported("a task id set by the caller (the backend cannot tell whether it is already stored)"));
        }
        let queue = resolve_queue(overrides, defaults).to_owned();
        validate_queue_name(&queue)?;
        let max_attempts = overrides.max_attempts.or(defaults.max_attempts).unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(DriverError::Config("max attempts must be at least 1".into()));
        }
        let lease = overrides.lease.or(defaults.lease).unwrap_or(DEFAULT_LEASE);
        if lease < Duration::from_millis(10) {
            return Err(DriverError::Config("lease must be at least 10 ms".into()));
        }
        let mut headers = overrides.headers.clone();
        if let Some(policy) = &overrides.retry {
            headers.insert(RETRY_HEADER.to_owned(), policy.to_header());
        }
        if !trace.is_empty() && !headers.contains_key(trace::TRACEPARENT) {
            headers.extend(trace.iter().cloned());
        }
        // What nothing set, so a worker's defaults can take its place: the precedence is per
        // dispatch, then `#[task]`, then the worker's default, then the built-in.
        let mut defaulted = Defaulted::default();
        if overrides.max_attempts.or(defaults.max_attempts).is_none() {
            defaulted = defaulted | Defaulted::ATTEMPTS;
        }
        if overrides.lease.or(defaults.lease).is_none() {
            defaulted = defaulted | Defaulted::LEASE;
        }
        let unique = match (&overrides.unique_key, overrides.unique.or(defaults.unique)) {
            (None, None) => None,
            (key, policy) => {
                if !self.driver.supports(Capability::UniqueKeys) {
                    return Err(DriverError::Unsupported("a unique task (the backend keeps no index of its tasks' keys)"));
                }
                let key = key.clone().unwrap_or_else(|| crate::unique::derive_key(name, unique_fields.as_deref().unwrap_or(&payload)));
                Some(crate::unique::Unique::new(key, policy.unwrap_or_default())?)
            }
        };
        let now = self.clock.now();
        Ok(Envelope {
            version: ENVELOPE_VERSION,
            id: overrides.id.unwrap_or_default(),
            name: name.to_owned(),
            queue,
            payload,
            attempt: 0,
            max_attempts,
            timeout_ms: overrides.timeout.or(defaults.timeout).map(millis),
            lease_ms: millis(lease),
            created_at: now,
            not_before: match overrides.run_at {
                Some(at) => at.duration_since(std::time::UNIX_EPOCH).map_or(0, millis).max(now),
                None => now + overrides.delay.map(millis).unwrap_or(0),
            },
            headers,
            defaulted,
            unique,
            key: match overrides.key.clone().or(key) {
                Some(k) if k.is_empty() || k.len() > MAX_KEY_BYTES => {
                    return Err(DriverError::Config(format!("a task's key must be 1 to {MAX_KEY_BYTES} bytes long, not {}", k.len())));
                }
                Some(k) if k.contains('\0') => return Err(DriverError::Config("a task's key must not contain a NUL character".into())),
                k => k,
            },
        })
    }

    /// The producer span of one dispatch of `count` tasks to `queue` (see [`trace`]), for code
    /// that builds envelopes itself: build them inside it (`span.in_scope`) so they carry its
    /// trace context, and enqueue inside it. `dispatch` and `dispatch_many` make their own.
    pub fn send_span(&self, queue: &str, count: usize) -> tracing::Span {
        trace::send_span(trace::system(self.driver.name()), queue, count)
    }

    /// Stores ready-made envelopes and says, per envelope in order, whether it was stored or
    /// its id already was (see [`Driver::enqueue`]). Only new tasks are counted and announced.
    pub async fn enqueue(&self, envelopes: Vec<Envelope>) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let outcomes = self.driver.enqueue(&envelopes).await?;
        if outcomes.len() != envelopes.len() {
            return Err(DriverError::Backend {
                message: format!(
                    "driver {} reported {} enqueue outcomes for {} tasks",
                    self.driver.name(),
                    outcomes.len(),
                    envelopes.len()
                ),
                source: None,
            });
        }
        let stored = || envelopes.iter().zip(&outcomes).filter(|(_, o)| **o == EnqueueOutcome::New).map(|(e, _)| e);
        // One count per run of the same queue and task (a batch is usually one run).
        let mut run: Option<(&str, &str, u64)> = None;
        let counted: Vec<&Envelope> = if crate::metrics::enabled() { stored().collect() } else { Vec::new() };
        for e in counted {
            match &mut run {
                Some((q, t, n)) if *q == e.queue && *t == e.name => *n += 1,
                _ => {
                    if let Some((q, t, n)) = run.take() {
                        crate::metrics::enqueued(q, t, n);
                    }
                    run = Some((&e.queue, &e.name, 1));
                }
            }
        }
        if let Some((q, t, n)) = run {
            crate::metrics::enqueued(q, t, n);
        }
        if let Some(events) = &self.events {
            for e in stored() {
                events.emit(|| {
                    Event::TaskEnqueued(TaskInfo { id: e.id, name: e.name.as_str().into(), queue: e.queue.as_str().into(), attempt: 0 })
                });
            }
        }
        Ok(outcomes)
    }
}

/// The queue a dispatch goes to: the override's, else the task's, else [`DEFAULT_QUEUE`].
fn resolve_queue<'a>(overrides: &'a Overrides, defaults: &'a TaskOptions) -> &'a str {
    overrides.queue.as_deref().or(defaults.queue.as_deref()).unwrap_or(DEFAULT_QUEUE)
}

/// The id of the task that will run for a dispatch of `id`: its own, or for a duplicate the
/// holder's.
fn holder(id: TaskId, outcome: EnqueueOutcome) -> TaskId {
    match outcome {
        EnqueueOutcome::Duplicate { existing } => existing,
        _ => id,
    }
}

/// The bytes `task`'s unique key is derived from, when the dispatch makes it unique and the
/// key is not given.
fn unique_fields<T: Task>(task: &T, overrides: &Overrides, options: &TaskOptions) -> Result<Option<Vec<u8>>, DriverError> {
    if overrides.unique_key.is_some() || (overrides.unique.is_none() && options.unique.is_none()) {
        return Ok(None);
    }
    Ok(task.unique_fields()?)
}

/// A task's arguments as they go into its envelope: the encoded payload, the bytes a unique key
/// is derived from (when the dispatch makes it unique and gives no key), and the task's key.
struct Payload {
    bytes: Vec<u8>,
    unique_fields: Option<Vec<u8>>,
    key: Option<String>,
}

impl Payload {
    fn of<T: Task>(task: &T, overrides: &Overrides, options: &TaskOptions) -> Result<Self, DriverError> {
        Ok(Self { bytes: encode(task)?, unique_fields: unique_fields(task, overrides, options)?, key: task.key() })
    }
}

/// A task's arguments as the envelope's payload.
fn encode<T: Task>(task: &T) -> Result<Vec<u8>, DriverError> {
    Ok(rmp_serde::to_vec_named(task).map_err(CodecError::Encode)?)
}

/// Per-dispatch overrides of a task's options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Queue to use instead of the task's.
    pub queue: Option<String>,
    /// Delay before the task is due.
    pub delay: Option<Duration>,
    /// When the task is due, instead of after `delay` (a time already past: due at once).
    pub run_at: Option<std::time::SystemTime>,
    /// Deliveries allowed.
    pub max_attempts: Option<u32>,
    /// Longest one run may take.
    pub timeout: Option<Duration>,
    /// Lease duration.
    pub lease: Option<Duration>,
    /// Retry policy instead of the task's and the worker's.
    pub retry: Option<RetryPolicy>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// The task's id instead of a new one, for a dispatch that must happen at most once (a
    /// retried request, a message handled twice): enqueueing an id that is already stored
    /// stores nothing (see [`Driver::enqueue`]). Names one task, so `dispatch_many` refuses it;
    /// a driver without [`Capability::IdempotentEnqueue`] refuses it too.
    pub id: Option<TaskId>,
    /// The task's unique key instead of the one derived from its name and fields; makes the
    /// task unique even when its `#[task]` does not (with [`Overrides::unique`]'s policy, else
    /// the task's, else [`Uniqueness::default`](crate::Uniqueness)). Names one task, so
    /// `dispatch_many` refuses it.
    pub unique_key: Option<String>,
    /// The unique policy instead of the task's; makes the task unique, its key derived from
    /// its name and fields unless [`Overrides::unique_key`] gives it.
    pub unique: Option<crate::unique::Uniqueness>,
    /// The task's key instead of its `#[task(key = ..)]` field's: tasks of a queue sharing it
    /// share the queue's per-key limit ([`QueueLimits::per_key`](crate::QueueLimits::per_key)).
    pub key: Option<String>,
}

/// The longest task key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// A dispatch being configured; `.await` it to store the task and get its id.
#[must_use = "a dispatch does nothing until awaited"]
pub struct Dispatch<'a, T: Task> {
    client: &'a Client,
    task: T,
    overrides: Overrides,
}

impl<T: Task> Dispatch<'_, T> {
    /// Dispatches to `queue` instead of the task's default.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.overrides.queue = Some(queue.into());
        self
    }

    /// Makes the task due only after `delay` (replacing a [`run_at`](Self::run_at)).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.overrides.delay = Some(delay);
        self.overrides.run_at = None;
        self
    }

    /// Makes the task due at `at` (replacing a [`delay`](Self::delay)); a time already past
    /// makes it due at once. Whole milliseconds, by the producer's clock.
    pub fn run_at(mut self, at: std::time::SystemTime) -> Self {
        self.overrides.run_at = Some(at);
        self.overrides.delay = None;
        self
    }

    /// Allows `n` deliveries before dead-lettering.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.overrides.max_attempts = Some(n);
        self
    }

    /// Limits one run to `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.overrides.timeout = Some(timeout);
        self
    }

    /// Leases each delivery for `lease`.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.overrides.lease = Some(lease);
        self
    }

    /// Retries this task with `policy` instead of its `#[task]` or the worker's policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.overrides.retry = Some(policy);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.overrides.headers.insert(key.into(), value.into());
        self
    }

    /// Gives the task `id` instead of a new one: a dispatch of an id already stored stores
    /// nothing, so a retried request or a message handled twice dispatches its task once.
    /// [`outcome`](Self::outcome) tells which happened. Refused (when awaited) by a driver
    /// without [`Capability::IdempotentEnqueue`].
    pub fn id(mut self, id: TaskId) -> Self {
        self.overrides.id = Some(id);
        self
    }

    /// Makes the task unique under `key` (scoped to its queue): while a task holding the key
    /// is stored, this dispatch stores nothing and [`outcome`](Self::outcome) reports
    /// [`EnqueueOutcome::Duplicate`]. The policy is the task's `unique(..)`, else
    /// [`Uniqueness::default`](crate::Uniqueness) (held until done, for a day). Refused (when
    /// awaited) by a driver without [`Capability::UniqueKeys`].
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.overrides.unique_key = Some(key.into());
        self
    }

    /// Makes the task unique with `policy` instead of its `#[task]`'s (see [`crate::unique`]);
    /// the key is derived from the task's name and fields unless [`unique_key`](Self::unique_key)
    /// gives it.
    pub fn unique(mut self, policy: crate::unique::Uniqueness) -> Self {
        self.overrides.unique = Some(policy);
        self
    }

    /// Gives the task `key` instead of its `#[task(key = ..)]` field's: tasks of a queue sharing
    /// a key share the queue's per-key limit ([`QueueLimits::per_key`](crate::QueueLimits::per_key)).
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.overrides.key = Some(key.into());
        self
    }

    /// Dispatches and says whether the task was stored, its id already was, or its unique key
    /// is held by another task. `.await` gives the id of the task that will run: this one's, or
    /// for a duplicate the holder's.
    pub async fn outcome(self) -> Result<(TaskId, EnqueueOutcome), DriverError> {
        let client = self.client;
        let options = T::options();
        let span = client.send_span(resolve_queue(&self.overrides, &options), 1);
        let payload = Payload::of(&self.task, &self.overrides, &options)?;
        let envelope = client.build(T::NAME, payload, &self.overrides, &options, &trace::headers_of(&span))?;
        let id = envelope.id;
        span.record("messaging.message.id", tracing::field::display(id));
        let outcome = trace::around(span, client.enqueue(vec![envelope])).await?;
        Ok((id, outcome[0]))
    }
}

impl<'a, T: Task> IntoFuture for Dispatch<'a, T> {
    type Output = Result<TaskId, DriverError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (id, outcome) = self.outcome().await?;
            Ok(holder(id, outcome))
        })
    }
}
