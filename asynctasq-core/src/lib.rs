//! # asynctasq-core
//!
//! The heart of asynctasq: the task model, the [`Driver`] contract every backend keeps, the
//! in-memory reference driver and the worker engine. Backends live in `asynctasq-drivers`; the
//! command line in `asynctasq-cli`.
//!
//! ```
//! use std::sync::Arc;
//! use asynctasq_core::{task, Client, MemoryDriver, TaskError, Worker};
//!
//! /// Adds two numbers (a task: registered at link time, dispatched by type).
//! #[task(queue = "math", max_attempts = 5)]
//! async fn add(a: i64, b: i64) -> Result<(), TaskError> {
//!     println!("{a} + {b} = {}", a + b);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let driver = Arc::new(MemoryDriver::new());
//! let client = Client::new(driver.clone());
//! client.dispatch(Add { a: 1, b: 2 }).await?;
//! let counts = Worker::builder(driver).queues("math")?.stop_when_empty(true).build()?.start().await?;
//! assert_eq!(counts.succeeded, 1);
//! # Ok(()) }
//! ```
//!
//! | Feature   | Default | What it adds |
//! |-----------|---------|--------------|
//! | `macros`  | yes     | `#[task]`, re-exported from `asynctasq-macros` |
//! | `cron`    | yes     | cron schedules ([`schedule`], `#[task(cron = "…")]`): `croner` patterns, `jiff` time zones |
//! | `testing` | no      | test helpers for your tasks (`testing::Jobs`, `assert_enqueued!`) and the driver conformance suite ([`conformance_tests!`]) |
//!
//! Vocabulary: a **task** is dispatched to a **queue**; a worker takes it under a **lease**
//! (visibility timeout); each delivery is an **attempt**; a task that cannot succeed is
//! **dead**-lettered with its error.

pub mod blocking;
pub mod client;
pub mod clock;
pub mod driver;
pub mod envelope;
pub mod error;
pub mod event;
pub mod follow;
pub mod history;
pub mod limits;
pub mod memory;
pub mod metrics;
mod monitor;
pub mod notice;
pub mod progress;
pub mod record;
mod redact;
pub mod registry;
pub mod result;
pub mod retry;
#[cfg(feature = "cron")]
pub mod schedule;
pub mod task;
pub mod task_id;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;
pub mod unique;
mod waiters;
pub mod worker;
pub mod workers;

pub use blocking::BlockingPool;
pub use client::{Client, Dispatch, Overrides};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use driver::{
    Ack, CancelOutcome, Capability, DeadPage, DeadSelector, DeadTask, DeleteOutcome, Delivery, Driver, EnqueueOutcome, Lease, QueueLimits,
    QueueStats, ScheduleState, SchemaState, ServerInfo, TaskRecord, TaskState, Totals, Waiting, WorkerInfo,
};
pub use envelope::{Defaulted, Envelope, TaskId};
pub use error::{CodecError, DriverError, WorkerError};
pub use event::{Event, Events, TaskInfo};
pub use follow::{Awaited, WaitError};
pub use history::AttemptError;
pub use memory::MemoryDriver;
pub use notice::{NoticeBus, NoticeKind};
pub use progress::Progress;
pub use redact::redact_url;
pub use registry::{Registry, TaskRegistration};
pub use result::{DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, ResultSlot, StoredResult};
pub use retry::RetryPolicy;
pub use task::{Disposition, IntoTaskResult, Task, TaskContext, TaskError, TaskOptions, TaskResult};
pub use unique::{UniqueMode, UniqueUntil, Uniqueness};
pub use worker::{Priority, QueueSpec, SAME_STOP, Worker, WorkerBuilder, WorkerCounts, WorkerHandle};

#[cfg(feature = "testing")]
#[doc(hidden)]
pub use asynctasq_macros::__ignored_rule;
#[cfg(feature = "macros")]
pub use asynctasq_macros::task;

/// Paths the `#[task]` expansion uses, so users need no direct dependency on serde,
/// inventory or rmp-serde. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use serde;
}
