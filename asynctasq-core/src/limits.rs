//! Limits on claiming a queue's tasks, stored in the backend and obeyed by every claim
//! ([`Driver::set_limits`](crate::Driver::set_limits)): a cap on the queue's live leases, a
//! cap on its live leases per task key ([`Envelope::key`](crate::Envelope::key)), and a cap on
//! its starts in any window of time ([`Rate`]), for the queue or per key.
//!
//! # Per-key limits: counted from live leases, and parking
//! "Running" is what holds a live lease: a claim counts the queue's live leases by key in its
//! own atomic step, so a crashed worker's places free themselves when its leases run out and
//! no counter can leak. A claim takes due tasks in order, skipping those whose key is at its
//! limit (counting what the claim itself takes), so a saturated key never holds back other
//! keys' tasks. The tasks it skipped are **parked**: moved out of the due range (their due time
//! offset by [`PARKED`], so every driver keeps them where it keeps waiting tasks) and their key
//! noted, so the next claims do not scan past them again. Each limited claim first unparks, for
//! the noted keys that have room again, as many of their parked tasks as there is room, earliest
//! first: a key's tasks run in order, and a parked task waits for a place, never for a timer.
//! [`pick`] is the decision every driver makes, on its candidates in due order.
//!
//! # Rates: a log of starts, exact in every window
//! A claim of a rate-limited queue logs what it starts: one entry per claim (its time and how
//! many it started; per key, one per key it started), and counts the entries newer than its
//! time less the window. A sliding log, not a fixed window (which lets up to twice the rate
//! through across a window's edge) nor a token bucket (which lets a burst through after the
//! window's first start): the starts in **every** window of that length, wherever it begins,
//! stay within the rate. Claims count every newer entry, also those logged by a claim whose
//! clock ran a little ahead, and entries are dropped only a second after they left the window
//! ([`RATE_LOG_SLACK`]). A key over its rate is parked like a key at its cap, and unparked by
//! the first claim after its window has room again. A redelivery is a start like any other.
//!
//! A queue-wide rate's entries also carry how many the log had counted before each, so a claim
//! counts any window from two entries (the newest, and the oldest within the window) however
//! many it holds; for that, an entry's time is never before the newest one's. The rate is exact
//! in the times the log records: where a claim reads its clock before it waits for the limits
//! lock (PostgreSQL, Redis), an entry may be logged a little later than that claim's own time,
//! by the wait (SQLite and MySQL read the clock under the lock).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::Capability;
use crate::envelope::UnixMillis;
use crate::error::DriverError;

/// Limits on claiming one queue's tasks, across every worker ([`Driver::set_limits`](crate::Driver::set_limits)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many of the queue's tasks leased at once, by all workers together; `None`:
    /// no cap. Zero holds every task back, like a pause.
    pub max_leased: Option<u32>,
    /// At most this many of the queue's tasks with one key ([`Envelope::key`](crate::Envelope::key))
    /// leased at once, by all workers together ([`Capability::KeyedLimits`]);
    /// `None`: no cap per key. Tasks without a key are not limited by it.
    #[serde(default)]
    pub per_key: Option<u32>,
    /// At most this many of the queue's tasks started (claimed) in any window of the rate's
    /// length, in all or per key ([`Rate`], [`Capability::RateLimits`]);
    /// `None`: no rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// A cap on starts: at most [`starts`](Rate::starts) claims of a queue's tasks in any window of
/// [`window_ms`](Rate::window_ms), counted for the whole queue or, [`per_key`](Rate::per_key),
/// for each task key apart (tasks without a key are then not limited by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Rate {
    /// Most starts in one window.
    pub starts: u32,
    /// The window's length, in milliseconds (at least 1).
    pub window_ms: u64,
    /// Whether the rate is counted per task key rather than for the whole queue.
    #[serde(default)]
    pub per_key: bool,
}

impl Rate {
    /// At most `starts` starts in any `window` (rounded to whole milliseconds, at least 1), for
    /// the whole queue.
    pub fn new(starts: u32, window: Duration) -> Self {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { starts, window_ms, per_key: false }
    }

    /// This rate, counted for each task key apart.
    pub fn per_key(mut self) -> Self {
        self.per_key = true;
        self
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }
}

/// Why a rate's text (`N/DURATION`) did not parse ([`Rate`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseRateError(String);

impl std::str::FromStr for Rate {
    type Err = ParseRateError;

    /// Parses `N/DURATION` (`100/1m`, `5/10s`, `2/1500ms`): at most N starts in any window of
    /// DURATION, for the whole queue.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| Err(ParseRateError(why));
        let Some((n, window)) = text.split_once('/') else {
            return fail(format!("`{text}` is not N/DURATION (e.g. 100/1m: at most 100 starts in any minute)"));
        };
        let Ok(n) = n.trim().parse::<u32>() else { return fail(format!("`{n}` is not a count of starts (a whole number)")) };
        let window = match humantime::parse_duration(window.trim()) {
            Ok(window) if window.as_millis() > 0 => window,
            Ok(_) => return fail(format!("the window `{text}` is shorter than a millisecond")),
            Err(e) => return fail(format!("`{window}` is not a duration ({e})")),
        };
        Ok(Rate::new(n, window))
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = if self.per_key { " per key" } else { "" };
        write!(f, "{}/{}ms{per}", self.starts, self.window_ms)
    }
}

impl QueueLimits {
    /// At most `n` of the queue's tasks leased at once.
    pub fn max_leased(n: u32) -> Self {
        Self { max_leased: Some(n), ..Self::default() }
    }

    /// At most `n` of the queue's tasks with one key leased at once.
    pub fn per_key(n: u32) -> Self {
        Self { per_key: Some(n), ..Self::default() }
    }

    /// At most `rate` starts in any window.
    pub fn rate(rate: Rate) -> Self {
        Self { rate: Some(rate), ..Self::default() }
    }

    /// These limits with the rate set to `rate` (`None`: none).
    pub fn with_rate(mut self, rate: Option<Rate>) -> Self {
        self.rate = rate;
        self
    }

    /// Whether a claim counts live leases: a cap in all or per key is set (a rate alone counts
    /// starts).
    pub fn caps_leases(&self) -> bool {
        self.max_leased.is_some() || self.per_key.is_some()
    }

    /// Whether a claim counts by key: a cap per key or a rate per key is set.
    pub fn keyed(&self) -> bool {
        self.per_key.is_some() || self.rate.is_some_and(|r| r.per_key)
    }

    /// These limits with the cap on live leases set to `n` (`None`: none).
    pub fn with_max_leased(mut self, n: Option<u32>) -> Self {
        self.max_leased = n;
        self
    }

    /// These limits with the cap per key set to `n` (`None`: none).
    pub fn with_per_key(mut self, n: Option<u32>) -> Self {
        self.per_key = n;
        self
    }

    /// Whether no limit is set.
    pub fn is_none(&self) -> bool {
        self.max_leased.is_none() && self.per_key.is_none() && self.rate.is_none()
    }

    /// How many a claim of up to `max` may take: `max`, less what the cap and a queue-wide rate
    /// leave, given the queue's live leases and its starts in the window ([`Counts`]).
    pub fn room(&self, max: usize, counts: &Counts) -> usize {
        let mut room = max;
        if let Some(cap) = self.max_leased {
            room = room.min((cap as usize).saturating_sub(counts.leased_all()));
        }
        if let Some(rate) = self.rate.filter(|r| !r.per_key) {
            room = room.min((rate.starts as usize).saturating_sub(counts.started_all()));
        }
        room
    }

    /// The room a key has, given the counts; `None` when keys are not limited.
    pub fn key_room(&self, key: &str, counts: &Counts) -> Option<usize> {
        let by_cap = self.per_key.map(|n| (n as usize).saturating_sub(counts.leased.get(key).copied().unwrap_or(0)));
        let by_rate =
            self.rate.filter(|r| r.per_key).map(|r| (r.starts as usize).saturating_sub(counts.started.get(key).copied().unwrap_or(0)));
        match (by_cap, by_rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What a claim that took tasks with these keys logs as started (see the module docs): for
    /// a queue-wide rate, one entry under the empty key (no task's key is empty); per key, one
    /// per key; nothing without a rate.
    pub fn starts_to_log<'a>(&self, taken: impl IntoIterator<Item = Option<&'a str>>) -> Vec<(String, usize)> {
        let Some(rate) = self.rate else { return Vec::new() };
        let mut log: Vec<(String, usize)> = Vec::new();
        for key in taken {
            let key = if rate.per_key {
                match key {
                    Some(key) => key,
                    None => continue,
                }
            } else {
                ""
            };
            match log.iter_mut().find(|(k, _)| k == key) {
                Some((_, n)) => *n += 1,
                None => log.push((key.to_owned(), 1)),
            }
        }
        log
    }
}

/// Refuses `limits` a backend cannot enforce, given what it `supports`, with an error naming
/// the kind of limit (a clear refusal, never a limit silently ignored).
pub fn check_limits(limits: &QueueLimits, supports: impl Fn(Capability) -> bool) -> Result<(), DriverError> {
    if limits.is_none() {
        return Ok(());
    }
    if !supports(Capability::QueueLimits) {
        return Err(DriverError::Unsupported("limiting a queue"));
    }
    if limits.keyed() && !supports(Capability::KeyedLimits) {
        return Err(DriverError::Unsupported("limiting a queue per key"));
    }
    if let Some(rate) = limits.rate {
        if !supports(Capability::RateLimits) {
            return Err(DriverError::Unsupported("limiting a queue's rate"));
        }
        if rate.window_ms == 0 {
            return Err(DriverError::Config("a rate's window must be at least 1 ms".into()));
        }
    }
    Ok(())
}

/// How long a start stays in a rate's log after it left the window: claims whose clocks differ
/// by less still count each other's starts (see the module docs).
pub const RATE_LOG_SLACK: UnixMillis = 1_000;

/// What a limited claim counted in its atomic step: the queue's live leases by key (unkeyed
/// ones under the empty key), and its starts in the rate's window by key (a queue-wide rate's
/// under the empty key).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Live leases by key; the unkeyed under `""`.
    pub leased: HashMap<String, usize>,
    /// Starts in the window by key; a queue-wide rate's under `""`.
    pub started: HashMap<String, usize>,
}

impl Counts {
    /// Every live lease of the queue.
    pub fn leased_all(&self) -> usize {
        self.leased.values().sum()
    }

    /// Every start in the window.
    pub fn started_all(&self) -> usize {
        self.started.values().sum()
    }
}

/// What a parked task's due time is offset by: past any real time (2^50 ms is 35,000 years),
/// below the SQLite driver's mark for results kept in place (2^62), and small enough that a
/// parked time stays exact as a double (Redis scores, Lua numbers: below 2^53).
pub const PARKED: UnixMillis = 1 << 50;

/// A due time or lease expiry as stored, with a parked task's offset taken off.
pub fn unparked(at: UnixMillis) -> UnixMillis {
    if (PARKED..2 * PARKED).contains(&at) { at - PARKED } else { at }
}

/// Most due tasks one limited claim looks at: the tasks it may take and those of saturated keys
/// it parks (`max` taken at most, so at most this many less `max` parked per claim).
pub fn scan_bound(max: usize) -> usize {
    max.saturating_mul(4).max(100)
}

/// What a claim does with its candidates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pick {
    /// Indexes of the candidates to lease, in due order.
    pub take: Vec<usize>,
    /// Indexes of the candidates to park: their key is at its limit.
    pub park: Vec<usize>,
}

/// Decides a limited claim: of `candidates` (each one's key, in due order), takes up to `room`,
/// each key at most its room under `limits` given `counts` ([`QueueLimits::key_room`]), less
/// what the claim takes; the candidates of a key without room met before `room` is reached are
/// parked.
pub fn pick<'a>(candidates: impl IntoIterator<Item = Option<&'a str>>, limits: &QueueLimits, counts: &Counts, room: usize) -> Pick {
    let mut pick = Pick::default();
    let mut taken: HashMap<&str, usize> = HashMap::new();
    for (i, key) in candidates.into_iter().enumerate() {
        if pick.take.len() >= room {
            break;
        }
        match key.and_then(|key| Some((key, limits.key_room(key, counts)?))) {
            Some((key, free)) => {
                let taken = taken.entry(key).or_default();
                if *taken < free {
                    *taken += 1;
                    pick.take.push(i);
                } else {
                    pick.park.push(i);
                }
            }
            None => pick.take.push(i),
        }
    }
    pick
}

/// How many of a parked key's tasks to unpark: its room under `limits` given `counts`; all of
/// them when keys are no longer limited.
pub fn unpark_room(key: &str, limits: &QueueLimits, counts: &Counts) -> usize {
    limits.key_room(key, counts).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(pairs: &[(&str, usize)]) -> Counts {
        Counts { leased: pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(), ..Counts::default() }
    }

    #[test]
    fn a_saturated_key_is_parked_and_the_others_are_taken_in_order() {
        let counts = leased(&[("a", 1)]);
        let keys = [Some("a"), Some("b"), None, Some("a"), Some("b"), Some("b"), Some("c")];
        let limits = QueueLimits::per_key(2);
        let p = pick(keys, &limits, &counts, 4);
        assert_eq!(p.take, vec![0, 1, 2, 4], "a has one place left, b two, an unkeyed task always fits");
        assert_eq!(p.park, vec![3], "a's second is parked; the scan stops at the room");
        let p = pick(keys, &limits, &counts, 10);
        assert_eq!((p.take, p.park), (vec![0, 1, 2, 4, 6], vec![3, 5]));
    }

    #[test]
    fn without_a_per_key_limit_everything_up_to_the_room_is_taken() {
        let p = pick([Some("a"), Some("a"), Some("a")], &QueueLimits::max_leased(5), &Counts::default(), 2);
        assert_eq!((p.take, p.park), (vec![0, 1], vec![]));
    }

    #[test]
    fn a_key_rate_and_a_key_cap_both_bind_and_the_tighter_wins() {
        let limits = QueueLimits::per_key(3).with_rate(Some(Rate::new(2, Duration::from_secs(1)).per_key()));
        let counts =
            Counts { leased: HashMap::from([("a".to_owned(), 2)]), started: HashMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)]) };
        assert_eq!(limits.key_room("a", &counts), Some(0), "a: one place by the cap, none by the rate");
        assert_eq!(limits.key_room("b", &counts), Some(1), "b: three places by the cap, one by the rate");
        let p = pick([Some("a"), Some("b"), Some("b"), None], &limits, &counts, 10);
        assert_eq!((p.take, p.park), (vec![1, 3], vec![0, 2]));
        assert_eq!(limits.starts_to_log([Some("b"), None]), vec![("b".to_owned(), 1)], "unkeyed starts are not counted per key");
    }

    #[test]
    fn a_queue_rate_bounds_the_room_and_logs_one_entry_per_claim() {
        let limits = QueueLimits::rate(Rate::new(5, Duration::from_secs(60)));
        let counts = Counts { started: HashMap::from([(String::new(), 3)]), ..Counts::default() };
        assert_eq!(limits.room(10, &counts), 2);
        assert_eq!(limits.key_room("a", &counts), None, "keys are not limited by a queue-wide rate");
        assert_eq!(limits.starts_to_log([Some("a"), None]), vec![(String::new(), 2)]);
        assert!(QueueLimits::max_leased(1).starts_to_log([None]).is_empty(), "nothing logged without a rate");
    }
}
