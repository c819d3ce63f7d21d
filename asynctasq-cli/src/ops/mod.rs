//! Operating queues from a shell: counts, flushing, dead tasks, dispatch by name, health.
//!
//! Every command goes through the [`Driver`] contract, so it works on every backend; what a
//! backend cannot do (exact counts, listing dead tasks) is said in the output or the error.
//!
//! # JSON output (`--json`), a stable schema
//! * `queue status`: `{"driver": "sqlite", "exact": true, "queues": {"<queue>": {"ready": 0,
//!   "scheduled": 0, "leased": 0, "dead": 0, "oldest_ready_age_ms": 0, "totals": {"succeeded": 0,
//!   "failed": 0}, "paused": false, "max_leased": null, "per_key": null, "rate": null}}}`;
//!   `max_leased` and `per_key` are the queue's caps on live leases, in all and per task key,
//!   and `rate` its cap on starts, `{"starts", "window_ms", "per_key"}` (`queue limit`), each
//!   null when none; `exact` is false where the backend's counts are approximate, and a
//!   queue's `"estimated": true` (absent otherwise) says its counts were estimated (PostgreSQL
//!   past `exact_counts`, 10,000 tasks in a state by default);
//!   `oldest_ready_age_ms` (how long the oldest ready task has been due; scheduled tasks never
//!   count) and `totals` (tasks acked and dead-lettered over the queue's life, kept by the
//!   backend) are absent where the backend cannot tell (RabbitMQ, SQS).
//! * `queue limit`: `{"queue", "max_leased", "per_key", "rate"}` (each null when not set).
//! * `dead list`: `{"dead": [<dead task>...]}`; `dead show`: one `<dead task>`, where a dead
//!   task is `{"id", "queue", "task", "attempt", "max_attempts", "error", "dead_at",
//!   "created_at", "args", "decode_error"}` (times in Unix milliseconds; `args` the decoded
//!   arguments or null, `decode_error` why they could not be decoded or null).
//! * `dispatch`: `{"id": "<task id>", "queue": "<queue>", "outcome": "new" | "exists" |
//!   "duplicate"}` (`exists`: a task with the `--id` given was already stored; `duplicate`: the
//!   task's unique key is held by the task `"existing": "<task id>"`; either way nothing was
//!   dispatched); with `--args-file`: `{"dispatched": N, "skipped": N, "queue"}` (`skipped`:
//!   lines whose id or unique key was held).
//! * `task show`: `{"id", "queue", "state", "task", "attempt", "max_attempts", "at",
//!   "last_error", "created_at", "args", "decode_error", "result", "cancel_requested",
//!   "errors", "holder", "started_at", "progress"}`, where `state` is `scheduled`, `ready`,
//!   `leased`, `dead`, `succeeded` or `cancelled`, `at` is its due time, its lease's expiry,
//!   when it died or when it succeeded, `result` is what a succeeded task returned as JSON
//!   (`{"too_large": size}` when it was over the worker's limit; null when none), `errors` its
//!   error history (`[{"attempt", "at", "error", "worker"}]`), `holder` the worker holding its
//!   lease, `started_at` when its latest delivery was claimed, and `stuck` whether a leased
//!   task has run past twice its timeout (or an hour without one).
//! * `task wait`: `{"id", "outcome", "result", "error"}`, where `outcome` is `succeeded`,
//!   `dead`, `expired` or `timed_out`.
//! * `schedule list`: `{"driver", "keeps_schedules", "schedules": [{"name", "pattern", "tz",
//!   "queue", "next_fire", "last_fire", "paused", "declared"}]}`: times in RFC 3339 (null when
//!   none), `declared` false for a schedule the backend keeps that this binary does not declare
//!   (its pattern, zone and queue then null).
//! * `workers`: `{"workers": [{"id", "host", "pid", "queues", "concurrency", "version",
//!   "started_at", "heartbeat_at", "heartbeat_ms", "expires_at", "in_flight", "counts": {"started",
//!   "succeeded", "retried", "dead", "released", "lease_lost"}, "stale", "running": [{"id", "task",
//!   "queue", "started_at", "age_ms", "stuck"}]}]}`; `stale` is true for a worker that missed two
//!   heartbeats (its record expires after five); `running` is what it ran at its last heartbeat
//!   (at most 100, oldest first), `stuck` true for a run past twice its timeout (or an hour).

mod dead;
mod dispatch;
mod doctor;
mod format;
mod migrate;
mod purge;
mod queue;
mod schedule;
mod task;
mod workers;

pub(crate) use self::dead::{DeadCommand, dead_list, dead_purge, dead_retry, dead_show};
pub(crate) use self::dispatch::{DispatchArgs, dispatch};
pub(crate) use self::doctor::doctor;
pub(crate) use self::migrate::migrate;
pub(crate) use self::purge::flush;
pub(crate) use self::queue::{LimitArgs, QueueCommand, limit, pause, status};
pub(crate) use self::schedule::{ScheduleCommand, schedule, schedule_flag};
pub(crate) use self::task::{Settled, TaskCommand, task_cancel, task_delete, task_list, task_show, task_wait};
pub(crate) use self::workers::workers;
