//! The worker's scheduler: every schedule the worker knows, its due slots claimed at their time
//! (see [`crate::schedule`]). Every worker runs one; the backend's claims decide which worker's
//! claim of a slot stores its task, so no worker is special and none has to stay up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::deadline::bounded;
use crate::client::{Client, Overrides};
use crate::clock::Clock;
use crate::driver::Driver;
use crate::envelope::{Envelope, UnixMillis};
use crate::error::DriverError;
use crate::registry::Registry;
use crate::schedule::Schedule;

/// Longest the scheduler sleeps between looks, whatever the next slot: a clock that jumps, or a
/// schedule resumed elsewhere, is seen within this.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// After a failed look, the next one.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often the backend's clock is read again (see [`Skew`]).
const SKEW_EVERY: Duration = Duration::from_secs(600);

/// How far the backend's clock is ahead of this worker's (ms, negative when behind): slots are
/// due by the backend's clock where it has one (PostgreSQL, MySQL, Redis), so workers whose
/// clocks drift apart still agree on when a slot has come. Zero where the backend has none.
struct Skew {
    ms: i64,
    read_at: Option<tokio::time::Instant>,
}

impl Skew {
    /// The skew, read again from the backend when [`SKEW_EVERY`] has passed (a failed read
    /// keeps the last one).
    async fn of(&mut self, driver: &dyn Driver, clock: &dyn Clock, limit: Duration) -> i64 {
        if self.read_at.is_some_and(|at| at.elapsed() < SKEW_EVERY) {
            return self.ms;
        }
        let before = clock.now();
        if let Ok(info) = bounded("server_info", limit, driver.server_info()).await
            && let Some(server) = info.clock_ms
        {
            // The server read its clock about halfway through the round trip.
            let local = before + clock.now().saturating_sub(before) / 2;
            self.ms = server as i64 - local as i64;
        }
        self.read_at = Some(tokio::time::Instant::now());
        self.ms
    }
}

/// The slot tasks of the worker's schedules, built as a dispatch of each builds its task.
pub(super) struct Slots {
    schedules: Vec<Schedule>,
    client: Client,
    registry: Registry,
}

impl Slots {
    pub(super) fn new(schedules: Vec<Schedule>, driver: Arc<dyn Driver>, clock: Arc<dyn Clock>, registry: Registry) -> Self {
        Self { schedules, client: Client::new(driver).with_clock(clock), registry }
    }

    /// The task of `schedule`'s `slot`: the id the slot derives, the task's options, due at the
    /// slot (or now, for a slot already past).
    fn task(&self, schedule: &Schedule, slot: UnixMillis) -> Result<Envelope, DriverError> {
        let overrides = Overrides {
            queue: schedule.queue_name().map(str::to_owned),
            id: Some(schedule.task_id(slot)),
            run_at: Some(std::time::UNIX_EPOCH + Duration::from_millis(slot)),
            ..Overrides::default()
        };
        match self.registry.get(schedule.task()) {
            Some(task) => self.client.envelope_of(task, schedule.payload().to_vec(), &overrides),
            None => self.client.envelope_from_payload(schedule.task(), schedule.payload().to_vec(), &overrides, &Default::default()),
        }
    }

    /// Claims what is due at `now` of every schedule, `since` being when this worker first
    /// looked; returns the slots it fired (claimed with their task).
    async fn look(&self, driver: &dyn Driver, since: UnixMillis, now: UnixMillis, limit: Duration) -> Result<usize, DriverError> {
        let stored: HashMap<String, _> =
            bounded("schedules", limit, driver.schedules()).await?.into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut fired = 0;
        for schedule in &self.schedules {
            let state = stored.get(schedule.name());
            if state.is_some_and(|s| s.paused) {
                continue;
            }
            let due = schedule.due(state.and_then(|s| s.last_slot), since, now);
            for slot in due.fire {
                let task = self.task(schedule, slot)?;
                if bounded("claim_slot", limit, driver.claim_slot(schedule.name(), &task.queue, slot, Some(&task))).await? {
                    fired += 1;
                    tracing::info!(schedule = schedule.name(), slot, task.id = %task.id, queue = %task.queue, "schedule fired");
                }
            }
            if let Some(slot) = due.skip_to {
                let queue = self.task(schedule, slot)?.queue;
                if bounded("claim_slot", limit, driver.claim_slot(schedule.name(), &queue, slot, None)).await? {
                    tracing::info!(schedule = schedule.name(), slot, "missed slots skipped (catch-up: none)");
                }
            }
        }
        Ok(fired)
    }

    /// When to look next after `now`: the earliest next slot, at most [`LOOK_AT_MOST_EVERY`] away.
    fn next_look(&self, now: UnixMillis) -> Duration {
        let next = self.schedules.iter().filter_map(|s| s.next_after(now)).min();
        // A millisecond past the slot: a timer rounding down must not wake a hair before it.
        next.map_or(LOOK_AT_MOST_EVERY, |at| Duration::from_millis(at.saturating_sub(now) + 1).min(LOOK_AT_MOST_EVERY))
    }
}

/// Runs the scheduler until aborted.
pub(super) async fn run(slots: Slots, driver: Arc<dyn Driver>, clock: Arc<dyn Clock>, limit: Duration) {
    let mut skew = Skew { ms: 0, read_at: None };
    let by_backend = |local: UnixMillis, skew: i64| local.saturating_add_signed(skew);
    let since = by_backend(clock.now(), skew.of(&*driver, &*clock, limit).await);
    loop {
        let skew = skew.of(&*driver, &*clock, limit).await;
        let now = by_backend(clock.now(), skew);
        let wait = match slots.look(&*driver, since, now, limit).await {
            Ok(_) => slots.next_look(by_backend(clock.now(), skew)),
            Err(error) => {
                tracing::warn!(%error, "the scheduler could not claim due slots; trying again");
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}
