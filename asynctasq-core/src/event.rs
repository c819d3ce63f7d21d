//! Events: what workers and clients report, to subscribers and to `tracing`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::envelope::TaskId;
use crate::workers::WorkerCounts;

/// Which task an event is about.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskInfo {
    /// The task's id.
    pub id: TaskId,
    /// The task's wire name (empty when the stored envelope was undecodable).
    pub name: Arc<str>,
    /// The queue.
    pub queue: Arc<str>,
    /// The delivery's number (0 for enqueue events).
    pub attempt: u32,
}

/// Something that happened in a worker or client.
///
/// Serializes (e.g. as MessagePack for a monitoring channel) as a map tagged by `event`, with
/// durations as `{secs, nanos}`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A worker began consuming.
    WorkerStarted {
        /// The worker's id.
        worker_id: String,
        /// The queues it consumes, in priority order.
        queues: Vec<String>,
        /// Its concurrency limit.
        concurrency: usize,
    },
    /// A worker is alive (sent every heartbeat interval).
    WorkerHeartbeat {
        /// The worker's id.
        worker_id: String,
        /// Tasks running now.
        in_flight: usize,
        /// Counters so far.
        counts: WorkerCounts,
    },
    /// A worker stopped consuming.
    WorkerStopped {
        /// The worker's id.
        worker_id: String,
        /// Final counters.
        counts: WorkerCounts,
    },
    /// A task was stored.
    TaskEnqueued(TaskInfo),
    /// A task began running.
    TaskStarted {
        /// The task.
        task: TaskInfo,
        /// How long it waited past its due time before starting (enqueue→start latency for
        /// tasks dispatched without delay).
        waited: Duration,
    },
    /// A run has gone past its threshold ([`stuck_after`](crate::workers::stuck_after): twice
    /// its timeout, or an hour without one) and still runs: reported once per run.
    TaskStuck {
        /// The task.
        task: TaskInfo,
        /// The worker running it.
        worker_id: String,
        /// How long it has run.
        running_for: Duration,
    },
    /// A task ran to completion and was acked.
    TaskSucceeded {
        /// The task.
        task: TaskInfo,
        /// How long the run took.
        duration: Duration,
    },
    /// A run failed and the task will be retried.
    TaskRetryScheduled {
        /// The task.
        task: TaskInfo,
        /// When the next attempt is due, from now.
        delay: Duration,
        /// The failure.
        error: String,
    },
    /// The task was moved to the dead-letter store.
    TaskDeadLettered {
        /// The task.
        task: TaskInfo,
        /// The reason.
        error: String,
    },
    /// The worker gave an unfinished task back at shutdown.
    TaskReleased(TaskInfo),
    /// The task's lease was lost while it ran; its result was not settled by this worker.
    LeaseLost(TaskInfo),
    /// A cancel stopped the task while it ran ([`Driver::cancel`](crate::Driver::cancel)); it
    /// was settled as cancelled, neither retried nor dead-lettered.
    TaskCancelled(TaskInfo),
}

/// A broadcast bus of [`Event`]s. Clones share the bus.
///
/// Subscribers that fall more than the capacity behind lose the oldest events (tokio's
/// broadcast semantics) rather than slowing workers down; size it for bursts you must see.
#[derive(Clone, Debug)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl Events {
    /// A bus holding up to `capacity` events per slow subscriber.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0 }
    }

    /// A new subscription, seeing events sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Sends the event made by `make`, which runs only if someone is subscribed.
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(make());
        }
    }
}
