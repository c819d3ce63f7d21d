//! What a worker runs right now: each run from its start to its end, for the registry record
//! (`workers`) and for spotting runs that look stuck (past twice their timeout, or an hour
//! without one), which the heartbeat reports once each (event, log line, metric).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::envelope::{TaskId, UnixMillis};
use crate::event::TaskInfo;
use crate::workers::{RUNNING_LISTED, RunningTask, stuck_after};

/// The runs of a worker, by task id.
#[derive(Debug, Default)]
pub(crate) struct Running(Mutex<HashMap<TaskId, Run>>);

#[derive(Debug)]
struct Run {
    task: TaskInfo,
    started_at: UnixMillis,
    stuck_after: Duration,
    reported: bool,
}

impl Running {
    /// `task` started at `started_at`, with `timeout`.
    pub(crate) fn start(&self, task: &TaskInfo, started_at: UnixMillis, timeout: Option<Duration>) {
        let run = Run { task: task.clone(), started_at, stuck_after: stuck_after(timeout), reported: false };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(task.id, run);
    }

    /// The run of `id` ended.
    pub(crate) fn end(&self, id: TaskId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// The runs at `now`, oldest first (at most [`RUNNING_LISTED`]), and the ones that went past
    /// their threshold since the last look, with how long they have run.
    pub(crate) fn look(&self, now: UnixMillis) -> (Vec<RunningTask>, Vec<(TaskInfo, Duration)>) {
        let mut runs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut newly = Vec::new();
        let mut listed: Vec<RunningTask> = runs
            .values_mut()
            .map(|run| {
                let running_for = Duration::from_millis(now.saturating_sub(run.started_at));
                let stuck = running_for >= run.stuck_after;
                if stuck && !run.reported {
                    run.reported = true;
                    newly.push((run.task.clone(), running_for));
                }
                RunningTask {
                    id: run.task.id,
                    name: run.task.name.to_string(),
                    queue: run.task.queue.to_string(),
                    started_at: run.started_at,
                    stuck,
                }
            })
            .collect();
        listed.sort_unstable_by_key(|r| r.started_at);
        listed.truncate(RUNNING_LISTED);
        (listed, newly)
    }
}

/// `running_for` to the second, as `1h 2m 3s`.
pub(crate) fn human(running_for: Duration) -> String {
    let s = running_for.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, sec) => format!("{h}h {m}m {sec}s"),
    }
}
