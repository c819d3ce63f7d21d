//! Schedules: a task dispatched at every slot of a cron pattern, each slot exactly once across
//! every worker that knows the schedule.
//!
//! # No leader
//! Every worker that knows a schedule computes its due slots and *claims* each one
//! ([`Driver::claim_slot`](crate::Driver::claim_slot)): the backend advances the schedule's
//! last slot only if the claimed one is newer, and stores the slot's task in the same atomic
//! step. The task's id is derived from the schedule's name and the slot, so a claim retried
//! after a lost answer stores nothing twice. No leader to elect, go stale or be lost with a slot
//! (Oban #1488, Sidekiq #6804); any number of workers, none of them special.
//!
//! # Time
//! Patterns are read by `croner` and times zones by `jiff` (the system's time zone database):
//! a slot in a spring-forward gap fires at the first valid time after it; a fixed-time slot in
//! a repeated fall-back hour fires once, at its first occurrence; an interval pattern (`*/15`
//! minutes) fires on both passes of the repeated hour, which are different instants.
//!
//! # After downtime
//! Slots that passed while no worker ran follow the schedule's [`CatchUp`].

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::envelope::{TaskId, UnixMillis};
use crate::error::DriverError;

/// What a schedule does with slots that passed while no worker ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CatchUp {
    /// Fires none of them: only a slot at most [`ON_TIME`] old fires.
    None,
    /// Fires the latest of them once (the default).
    #[default]
    Latest,
    /// Fires up to this many of them, the most recent, oldest first.
    All(u32),
}

impl std::str::FromStr for CatchUp {
    type Err = String;

    /// `none`, `latest`, or `all:N` (`all` alone: up to 100).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(CatchUp::None),
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All(100)),
            other => other
                .strip_prefix("all:")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .map(CatchUp::All)
                .ok_or_else(|| format!("unknown catch-up `{other}`; expected `none`, `latest`, `all` or `all:N` (N at least 1)")),
        }
    }
}

/// How late a slot may be claimed and still count as on time for [`CatchUp::None`]: a worker
/// that woke a little after the slot (the scheduler wakes at it) is not catching up; one that
/// started after a slot's time has missed it.
pub const ON_TIME: Duration = Duration::from_secs(5);

/// A cron schedule of one task.
#[derive(Clone, Debug)]
pub struct Schedule {
    name: String,
    pattern: String,
    cron: Cron,
    tz: TimeZone,
    tz_name: String,
    task: String,
    payload: Vec<u8>,
    queue: Option<String>,
    catch_up: CatchUp,
}

/// What a worker claims of a schedule at one look.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Slots to fire, oldest first.
    pub fire: Vec<UnixMillis>,
    /// A newer slot to advance to without firing it (missed slots a policy skips), claimed
    /// after `fire`.
    pub skip_to: Option<UnixMillis>,
}

impl Schedule {
    /// A schedule named `name` of the task `task` (its wire name) with the encoded arguments
    /// `payload`, at every slot of the cron `pattern` (5 fields, or 6 with seconds first), in
    /// UTC unless [`tz`](Self::tz) says.
    pub fn new(name: impl Into<String>, pattern: &str, task: impl Into<String>, payload: Vec<u8>) -> Result<Self, DriverError> {
        let name = name.into();
        crate::envelope::validate_task_name(&name).map_err(|_| DriverError::Config(format!("invalid schedule name `{name}`")))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| DriverError::Config(format!("invalid cron pattern `{pattern}` of schedule `{name}`: {e}")))?;
        Ok(Self {
            name,
            pattern: pattern.to_owned(),
            cron,
            tz: TimeZone::UTC,
            tz_name: "UTC".into(),
            task: task.into(),
            payload,
            queue: None,
            catch_up: CatchUp::default(),
        })
    }

    /// A schedule of the task `T`'s `args`, named after the task.
    pub fn of<T: crate::Task>(pattern: &str, args: &T) -> Result<Self, DriverError> {
        let payload = rmp_serde::to_vec_named(args).map_err(crate::error::CodecError::Encode)?;
        Self::new(T::NAME, pattern, T::NAME, payload)
    }

    /// The schedule under another name (two schedules of one task need two names).
    pub fn renamed(mut self, name: impl Into<String>) -> Result<Self, DriverError> {
        let name = name.into();
        crate::envelope::validate_task_name(&name).map_err(|_| DriverError::Config(format!("invalid schedule name `{name}`")))?;
        self.name = name;
        Ok(self)
    }

    /// Reads the pattern in the time zone `tz` (an IANA name such as `Europe/Berlin`).
    pub fn tz(mut self, tz: &str) -> Result<Self, DriverError> {
        self.tz =
            TimeZone::get(tz).map_err(|e| DriverError::Config(format!("unknown time zone `{tz}` of schedule `{}`: {e}", self.name)))?;
        self.tz_name = tz.to_owned();
        Ok(self)
    }

    /// Dispatches to `queue` instead of the task's.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// What to do with slots missed while no worker ran.
    pub fn catch_up(mut self, catch_up: CatchUp) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// The schedule's name: its identity in the backend.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The time zone's name.
    pub fn tz_name(&self) -> &str {
        &self.tz_name
    }

    /// The task's wire name.
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The task's encoded arguments.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The queue it dispatches to, when it names one (else the task's).
    pub fn queue_name(&self) -> Option<&str> {
        self.queue.as_deref()
    }

    /// The schedule a `#[task(cron = "…")]` declares: named after the task, its arguments
    /// none (a cron task takes none).
    pub fn declared(task: &crate::registry::TaskRegistration) -> Option<Result<Self, DriverError>> {
        let spec = task.cron?;
        Some((|| {
            let catch_up = spec.catch_up.parse().map_err(|e: String| DriverError::Config(format!("task `{}`: {e}", task.name)))?;
            let payload =
                rmp_serde::to_vec_named(&std::collections::BTreeMap::<String, ()>::new()).map_err(crate::error::CodecError::Encode)?;
            Ok(Self::new(task.name, spec.pattern, task.name, payload)?.tz(spec.tz)?.catch_up(catch_up))
        })())
    }

    /// Every schedule the tasks of `registry` declare (`#[task(cron = "…")]`), by name.
    pub fn declared_in(registry: &crate::Registry) -> Result<std::collections::BTreeMap<String, Self>, DriverError> {
        let mut schedules = std::collections::BTreeMap::new();
        for name in registry.names() {
            if let Some(declared) = registry.get(name).and_then(Self::declared) {
                let schedule = declared.map_err(|e| DriverError::Config(format!("the schedule of task `{name}`: {e}")))?;
                schedules.insert(schedule.name().to_owned(), schedule);
            }
        }
        Ok(schedules)
    }

    /// The queue its tasks go to: its own, else its task's in `registry`, else the default.
    pub fn queue_in(&self, registry: &crate::Registry) -> String {
        self.queue_name()
            .map(str::to_owned)
            .or_else(|| registry.get(self.task()).and_then(|t| (t.options)().queue))
            .unwrap_or_else(|| crate::client::DEFAULT_QUEUE.to_owned())
    }

    /// The catch-up policy.
    pub fn catch_up_policy(&self) -> CatchUp {
        self.catch_up
    }

    /// The first slot after `t`, if the pattern has one.
    pub fn next_after(&self, t: UnixMillis) -> Option<UnixMillis> {
        let zoned = self.zoned(t)?;
        self.cron.find_next_occurrence(&zoned, false).ok().map(|z| millis_of(z.timestamp()))
    }

    /// The latest slot at or before `t`, if the pattern has one.
    pub fn latest_at(&self, t: UnixMillis) -> Option<UnixMillis> {
        let zoned = self.zoned(t)?;
        self.cron.find_previous_occurrence(&zoned, true).ok().map(|z| millis_of(z.timestamp()))
    }

    /// What to claim at `now` when the stored last slot is `last` (`None`: never claimed; then
    /// only slots after `since`, when this worker first looked, count).
    pub fn due(&self, last: Option<UnixMillis>, since: UnixMillis, now: UnixMillis) -> Due {
        let after = last.unwrap_or(since);
        let Some(latest) = self.latest_at(now).filter(|s| *s > after) else { return Due::default() };
        match self.catch_up {
            CatchUp::Latest => Due { fire: vec![latest], skip_to: None },
            CatchUp::None if now - latest <= crate::envelope::millis(ON_TIME) => Due { fire: vec![latest], skip_to: None },
            CatchUp::None => Due { fire: Vec::new(), skip_to: Some(latest) },
            CatchUp::All(n) => {
                let mut fire = vec![latest];
                while fire.len() < n.max(1) as usize {
                    match self.latest_at(fire[fire.len() - 1] - 1) {
                        Some(s) if s > after => fire.push(s),
                        _ => break,
                    }
                }
                fire.reverse();
                Due { fire, skip_to: None }
            }
        }
    }

    /// The id of the task of `slot`: the same for every worker and every retry of the claim.
    pub fn task_id(&self, slot: UnixMillis) -> TaskId {
        let mut input = self.name.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(&slot.to_be_bytes());
        TaskId::from_bytes(*uuid::Uuid::new_v5(&SLOT_NAMESPACE, &input).as_bytes())
    }

    fn zoned(&self, t: UnixMillis) -> Option<jiff::Zoned> {
        let ts = Timestamp::from_millisecond(i64::try_from(t).ok()?).ok()?;
        Some(ts.to_zoned(self.tz.clone()))
    }
}

/// The UUIDv5 namespace of slot task ids: a fixed value, never to change.
const SLOT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x2f6a_9c1e_4b7d_5e80_a3c2_71d4_0e9b_5f13);

fn millis_of(ts: Timestamp) -> UnixMillis {
    u64::try_from(ts.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a civil time in a zone, `2026-03-29T03:00:00[Europe/Berlin]`; an offset picks
    /// one of a repeated hour's two instants: `2026-10-25T02:30:00+01:00[Europe/Berlin]`.
    fn at(s: &str) -> UnixMillis {
        millis_of(s.parse::<jiff::Zoned>().expect("a zoned time").timestamp())
    }

    fn daily(pattern: &str, tz: &str) -> Schedule {
        Schedule::new("s", pattern, "t", vec![0x80]).expect("pattern").tz(tz).expect("zone")
    }

    #[test]
    fn a_slot_in_a_spring_forward_gap_fires_at_the_first_valid_time_after_it() {
        let s = daily("30 2 * * *", "Europe/Berlin");
        assert_eq!(s.next_after(at("2026-03-28T12:00:00[Europe/Berlin]")), Some(at("2026-03-29T03:00:00[Europe/Berlin]")));
        assert_eq!(
            s.next_after(at("2026-03-29T03:00:00[Europe/Berlin]")),
            Some(at("2026-03-30T02:30:00[Europe/Berlin]")),
            "then daily again"
        );
    }

    #[test]
    fn a_fixed_time_slot_in_a_repeated_hour_fires_once_and_an_interval_on_both_passes() {
        let s = daily("30 2 * * *", "Europe/Berlin");
        let first = at("2026-10-25T02:30:00+02:00[Europe/Berlin]");
        assert_eq!(s.next_after(at("2026-10-24T12:00:00[Europe/Berlin]")), Some(first));
        assert_eq!(s.next_after(first), Some(at("2026-10-26T02:30:00[Europe/Berlin]")), "not again an hour later");
        let every_half_hour = daily("*/30 * * * *", "Europe/Berlin");
        let mut t = at("2026-10-25T01:45:00+02:00[Europe/Berlin]");
        let mut slots = Vec::new();
        for _ in 0..5 {
            t = every_half_hour.next_after(t).expect("a slot");
            slots.push(t);
        }
        let want = [
            "2026-10-25T02:00:00+02:00[Europe/Berlin]",
            "2026-10-25T02:30:00+02:00[Europe/Berlin]",
            "2026-10-25T02:00:00+01:00[Europe/Berlin]",
            "2026-10-25T02:30:00+01:00[Europe/Berlin]",
            "2026-10-25T03:00:00+01:00[Europe/Berlin]",
        ]
        .map(at);
        assert_eq!(slots, want, "every half hour of real time, through the repeated hour");
    }

    #[test]
    fn a_half_hour_shift_moves_a_slot_in_its_gap_to_the_gap_end() {
        // Lord Howe Island moves its clocks by 30 minutes: 02:00 becomes 02:30.
        let s = daily("15 2 * * *", "Australia/Lord_Howe");
        assert_eq!(s.next_after(at("2026-10-03T12:00:00[Australia/Lord_Howe]")), Some(at("2026-10-04T02:30:00[Australia/Lord_Howe]")));
    }

    #[test]
    fn a_midnight_slot_on_a_day_that_starts_at_one_fires_at_one() {
        // Havana springs forward at midnight: the day of the change starts at 01:00.
        let s = daily("0 0 * * *", "America/Havana");
        assert_eq!(s.next_after(at("2026-03-07T12:00:00[America/Havana]")), Some(at("2026-03-08T01:00:00[America/Havana]")));
        assert_eq!(s.next_after(at("2026-03-08T01:00:00[America/Havana]")), Some(at("2026-03-09T00:00:00[America/Havana]")));
    }

    #[test]
    fn missed_slots_follow_the_catch_up_policy() {
        let every_minute = |c| Schedule::new("s", "* * * * *", "t", vec![0x80]).expect("pattern").catch_up(c);
        let m = 60_000;
        let (last, now) = (100 * m, 110 * m + 500);
        assert_eq!(every_minute(CatchUp::Latest).due(Some(last), 0, now), Due { fire: vec![110 * m], skip_to: None });
        assert_eq!(
            every_minute(CatchUp::All(3)).due(Some(last), 0, now).fire,
            vec![108 * m, 109 * m, 110 * m],
            "the most recent, oldest first"
        );
        assert_eq!(every_minute(CatchUp::All(50)).due(Some(last), 0, now).fire.len(), 10, "never one at or before the last");
        assert_eq!(
            every_minute(CatchUp::None).due(Some(last), 0, now),
            Due { fire: vec![110 * m], skip_to: None },
            "the current slot is on time"
        );
        let hourly = Schedule::new("s", "0 * * * *", "t", vec![0x80]).expect("pattern").catch_up(CatchUp::None);
        let h = 60 * m;
        assert_eq!(hourly.due(Some(h), 0, 5 * h + 2 * m), Due { fire: vec![], skip_to: Some(5 * h) }, "missed slots are skipped");
        assert_eq!(every_minute(CatchUp::Latest).due(Some(110 * m), 0, now), Due::default(), "nothing new");
        assert_eq!(
            every_minute(CatchUp::Latest).due(None, 110 * m + 1, now),
            Due::default(),
            "a new schedule fires nothing before it was seen"
        );
    }

    #[test]
    fn a_slot_task_id_is_the_same_everywhere_and_differs_by_slot_and_schedule() {
        let s = Schedule::new("report", "* * * * *", "t", vec![0x80]).expect("pattern");
        assert_eq!(s.task_id(60_000), s.task_id(60_000));
        assert_ne!(s.task_id(60_000), s.task_id(120_000));
        assert_ne!(s.task_id(60_000), Schedule::new("other", "* * * * *", "t", vec![0x80]).expect("pattern").task_id(60_000));
    }

    #[test]
    fn bad_patterns_names_and_zones_are_refused_with_what_is_wrong() {
        let err = Schedule::new("s", "61 * * * *", "t", vec![]).expect_err("refused").to_string();
        assert!(err.contains("61 * * * *") && err.contains("`s`"), "{err}");
        let err = Schedule::new("s", "* * * * *", "t", vec![]).expect("pattern").tz("Mars/Olympus").expect_err("refused").to_string();
        assert!(err.contains("Mars/Olympus"), "{err}");
        assert!(Schedule::new("bad name", "* * * * *", "t", vec![]).is_err());
    }
}
