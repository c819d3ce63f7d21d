//! Time as the in-memory driver and the engine read it.
//!
//! Production uses [`SystemClock`]. [`TokioClock`] follows tokio's clock, so a test running on a
//! paused runtime (`#[tokio::test(start_paused = true)]`) sees leases expire and delays pass the
//! moment the runtime is idle, without real sleeps.

use std::time::{Duration, SystemTime};

use crate::envelope::{UnixMillis, unix_millis};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now(&self) -> UnixMillis;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        unix_millis(SystemTime::now())
    }
}

/// Wall-clock time derived from tokio's clock: the system time when the clock was made plus
/// the tokio time elapsed since. Pausing or advancing tokio's clock moves this one too.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base_wall: UnixMillis,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the current system time.
    pub fn new() -> Self {
        Self::starting_at(unix_millis(SystemTime::now()))
    }

    /// A clock that reads `wall` (Unix ms) now and follows tokio's time from there: a test on
    /// a paused runtime sets the calendar (a daylight-saving change) its schedules meet.
    pub fn starting_at(wall: UnixMillis) -> Self {
        Self { base_wall: wall, base: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> UnixMillis {
        let elapsed: Duration = tokio::time::Instant::now().saturating_duration_since(self.base);
        self.base_wall + elapsed.as_millis() as u64
    }
}

/// A clock that moves only when told: [`ManualClock::advance`] and [`ManualClock::set`]. The
/// test helpers ([`Jobs`](crate::testing::Jobs)) give it to the in-memory driver, so a drain
/// can jump to each due time and a day of retries takes no wall time.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    /// A clock standing at the current system time.
    pub fn new() -> Self {
        Self::at(unix_millis(SystemTime::now()))
    }

    /// A clock standing at `now`.
    pub fn at(now: UnixMillis) -> Self {
        Self { now: std::sync::atomic::AtomicU64::new(now) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(crate::envelope::millis(by), std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves the clock to `now`, if that is later than where it stands (it never goes back).
    pub fn set(&self, now: UnixMillis) {
        self.now.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.now.load(std::sync::atomic::Ordering::SeqCst)
    }
}
