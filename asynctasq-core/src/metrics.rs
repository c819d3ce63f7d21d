//! What the engine counts and times, through the [`metrics`] facade: recorded in the client and
//! the executor where each thing happens (never from the event bus, which drops events when a
//! subscriber lags), and exported by whatever recorder the process installs (the worker's
//! `/metrics` route installs its Prometheus recorder, feature `http`).
//!
//! Recording is off until [`enable`] is called (the HTTP listener calls it when it installs its
//! recorder): off, the engine skips every lookup and timing, so a worker without metrics pays
//! one relaxed atomic load per recording point. A process that installs a `metrics` recorder of
//! its own calls [`enable`] after installing it.
//!
//! Labels are bounded: queue, task name, outcome, op; never an id or an argument. Counters carry
//! (queue, task); the histograms carry one of the two (run time by task, wait time by queue),
//! so 100 queues × 50 tasks make 5,000 counter series, not 10,000 histograms of 19 lines each.
//! A task name no handler is registered for is counted as `(unknown)`, so a stream of garbage
//! names cannot grow the label set.
//!
//! # Why handles are cached per queue and task
//! `metrics::counter!(name, labels)` builds its key and looks it up in the recorder's registry on
//! every call: with a queue and a task name as owned strings that is two allocations and a hash
//! per call, eight calls per task. The executor instead fetches one set of handles per
//! (queue, task) the first time it sees the pair and then only bumps atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use ::metrics::{Counter, Histogram};

/// Every metric name, in Prometheus conventions (see README "Monitoring").
pub mod names {
    /// Counter, labels `queue`, `task`: tasks stored by a client.
    pub const TASKS_ENQUEUED: &str = "asynctasq_tasks_enqueued_total";
    /// Counter, labels `queue`, `task`: deliveries handed to an executor.
    pub const TASKS_STARTED: &str = "asynctasq_tasks_started_total";
    /// Counter, labels `queue`, `task`, `outcome` (`succeeded`, `retried`, `dead`, `released`,
    /// `lease_lost`): deliveries settled.
    pub const TASKS_FINISHED: &str = "asynctasq_tasks_finished_total";
    /// Histogram, label `task`: how long the handler ran (a property of the task, whatever queue
    /// it ran from).
    pub const TASK_RUN_SECONDS: &str = "asynctasq_task_run_seconds";
    /// Histogram, label `queue`: from when a task was due to when it started (a property of the
    /// queue's backlog, whatever the task).
    pub const TASK_WAIT_SECONDS: &str = "asynctasq_task_wait_seconds";
    /// Gauge, labels `queue`, `state` (`ready`, `scheduled`, `leased`, `dead`): tasks in the
    /// backend, sampled every few seconds.
    pub const QUEUE_TASKS: &str = "asynctasq_queue_tasks";
    /// Gauge, label `queue`: age of the oldest task that is due and not leased (scheduled tasks
    /// never count); 0 when none is ready. Absent on backends that cannot tell.
    pub const QUEUE_OLDEST_READY_AGE: &str = "asynctasq_queue_oldest_ready_age_seconds";
    /// Gauge: tasks running in this worker.
    pub const WORKER_IN_FLIGHT: &str = "asynctasq_worker_in_flight";
    /// Gauge: the most tasks this worker runs at once.
    pub const WORKER_CONCURRENCY: &str = "asynctasq_worker_concurrency";
    /// Counter, labels `queue`, `task`: runs that went past their stuck threshold (twice their
    /// timeout, or an hour), counted once per run.
    pub const TASKS_STUCK: &str = "asynctasq_tasks_stuck_total";
    /// Counter, label `queue`: lease renewals that reached the backend.
    pub const LEASE_EXTENSIONS: &str = "asynctasq_lease_extensions_total";
    /// Histogram, label `op`: how long each driver call of the engine took.
    pub const DRIVER_OP_SECONDS: &str = "asynctasq_driver_op_seconds";
    /// Counter, label `op`: driver calls of the engine that failed.
    pub const DRIVER_ERRORS: &str = "asynctasq_driver_errors_total";
}

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Turns recording on for this process: call it once a `metrics` recorder is installed (the
/// worker's HTTP listener does so itself). Handles taken before stay no-ops.
pub fn enable() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// Whether the engine records metrics (see [`enable`]).
pub fn enabled() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The handles of every pair while recording is off: no-ops, shared.
static OFF: LazyLock<Arc<TaskMetrics>> = LazyLock::new(|| {
    Arc::new(TaskMetrics {
        started: Counter::noop(),
        run: Histogram::noop(),
        wait: Histogram::noop(),
        extended: Counter::noop(),
        finished: std::array::from_fn(|_| Counter::noop()),
    })
});

/// How a settled delivery ended, as the `outcome` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    Succeeded,
    Retried,
    Dead,
    Released,
    LeaseLost,
    Cancelled,
}

/// The handles of one (queue, task) pair.
#[derive(Debug)]
pub(crate) struct TaskMetrics {
    pub(crate) started: Counter,
    pub(crate) run: Histogram,
    pub(crate) wait: Histogram,
    pub(crate) extended: Counter,
    finished: [Counter; 6],
}

impl TaskMetrics {
    fn new(queue: &str, task: &str) -> Self {
        let (q, t) = (queue.to_owned(), task.to_owned());
        let finished = |outcome: &'static str| ::metrics::counter!(names::TASKS_FINISHED, "queue" => q.clone(), "task" => t.clone(), "outcome" => outcome);
        Self {
            started: ::metrics::counter!(names::TASKS_STARTED, "queue" => q.clone(), "task" => t.clone()),
            run: ::metrics::histogram!(names::TASK_RUN_SECONDS, "task" => t.clone()),
            wait: ::metrics::histogram!(names::TASK_WAIT_SECONDS, "queue" => q.clone()),
            extended: ::metrics::counter!(names::LEASE_EXTENSIONS, "queue" => q.clone()),
            finished: [
                finished("succeeded"),
                finished("retried"),
                finished("dead"),
                finished("released"),
                finished("lease_lost"),
                finished("cancelled"),
            ],
        }
    }

    /// Counts one settled delivery.
    pub(crate) fn finished(&self, how: Finished) {
        self.finished[how as usize].increment(1);
    }
}

/// One queue's handles, by task name.
type ByTask = HashMap<Arc<str>, Arc<TaskMetrics>>;

/// The handle cache of one worker (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct EngineMetrics {
    by_task: RwLock<HashMap<Arc<str>, ByTask>>,
}

/// The label for a task name no handler is registered for.
pub(crate) const UNKNOWN_TASK: &str = "(unknown)";

/// [`UNKNOWN_TASK`] as the executor's task names are kept, made once.
pub(crate) static UNKNOWN: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(UNKNOWN_TASK));

impl EngineMetrics {
    /// The handles of `task` on `queue` (a name the worker has no handler for is `(unknown)`).
    pub(crate) fn task(&self, queue: &Arc<str>, task: &Arc<str>) -> Arc<TaskMetrics> {
        if !enabled() {
            return OFF.clone();
        }
        if let Some(m) = self.by_task.read().unwrap_or_else(|e| e.into_inner()).get(&**queue).and_then(|t| t.get(&**task)) {
            return m.clone();
        }
        let mut map = self.by_task.write().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.clone()).or_default().entry(task.clone()).or_insert_with(|| Arc::new(TaskMetrics::new(queue, task))).clone()
    }
}

/// Records one driver call of the engine: its time and, when it failed, an error.
pub(crate) fn driver_op(op: &'static str, took: Duration, failed: bool) {
    if !enabled() {
        return;
    }
    ::metrics::histogram!(names::DRIVER_OP_SECONDS, "op" => op).record(took.as_secs_f64());
    if failed {
        ::metrics::counter!(names::DRIVER_ERRORS, "op" => op).increment(1);
    }
}

/// Counts a run of `task` on `queue` that went past its stuck threshold.
pub(crate) fn stuck(queue: &str, task: &str) {
    if !enabled() {
        return;
    }
    ::metrics::counter!(names::TASKS_STUCK, "queue" => queue.to_owned(), "task" => task.to_owned()).increment(1);
}

/// Counts `n` tasks of `task` stored on `queue` by a client.
pub(crate) fn enqueued(queue: &str, task: &str, n: u64) {
    if !enabled() {
        return;
    }
    ::metrics::counter!(names::TASKS_ENQUEUED, "queue" => queue.to_owned(), "task" => task.to_owned()).increment(n);
}
