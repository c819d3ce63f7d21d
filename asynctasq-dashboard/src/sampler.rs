//! The counts the pages show, read in the background, never on a page view.
//!
//! # Why the pages do not count
//! A SQL backend counts a queue's tasks by reading its index: with a million tasks stored,
//! SQLite takes about a third of a second per queue. The pages would pay that on every view,
//! once per queue, per viewer, every two seconds of the overview's refresh. Instead one task
//! reads every queue's counts at most every [`EVERY`] (longer when a reading is slow: at most
//! a tenth of the time goes to counting), whoever watches, and the pages show that reading
//! with its age. An action (a flush, a retry) asks for a new reading at once. With no page
//! view for [`IDLE`], the readings stop until the next view, so a dashboard on a worker's
//! listener that nobody opens adds no reads to the backend.
//!
//! From two readings of the settled totals (`Capability::Totals`) it also keeps each queue's
//! throughput, [`KEPT`] points, for the overview's sparklines.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use asynctasq_core::DriverError;
use asynctasq_core::driver::QueueStats;
use tokio::sync::Notify;

use crate::App;

/// The shortest time between two readings.
pub(crate) const EVERY: Duration = Duration::from_secs(2);
/// With no page view for this long, the readings stop until the next view (a dashboard on a
/// worker's listener that nobody opens costs nothing).
pub(crate) const IDLE: Duration = Duration::from_secs(60);
/// Throughput points kept per queue.
pub(crate) const KEPT: usize = 150;

/// The latest reading of every queue, and throughput by queue.
#[derive(Default)]
pub(crate) struct History {
    inner: Mutex<Inner>,
    /// Asks the sampler for a reading now.
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    latest: Option<Reading>,
    series: HashMap<String, Series>,
    /// When a page last asked for the counts.
    viewed: Option<Instant>,
}

/// Every queue's counts at one time.
#[derive(Clone)]
pub(crate) struct Reading {
    /// When it was taken.
    pub(crate) at: Instant,
    /// Each queue and its counts, by name.
    pub(crate) queues: Vec<(String, QueueStats)>,
}

impl Reading {
    /// The counts of `queue` in this reading.
    pub(crate) fn of(&self, queue: &str) -> Option<&QueueStats> {
        self.queues.iter().find(|(q, _)| q == queue).map(|(_, s)| s)
    }
}

#[derive(Default)]
struct Series {
    last: Option<(Instant, u64)>,
    rates: VecDeque<f64>,
}

impl History {
    /// Keeps `reading` as the latest, and the throughput since the one before.
    fn keep(&self, reading: Reading) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (queue, stats) in &reading.queues {
            if let Some(t) = stats.totals {
                let series = inner.series.entry(queue.clone()).or_default();
                record(series, reading.at, t.succeeded + t.failed);
            }
        }
        inner.latest = Some(reading);
    }

    /// The latest reading, if one was taken.
    pub(crate) fn latest(&self) -> Option<Reading> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).latest.clone()
    }

    /// The throughput of `queue` (tasks settled per second), oldest first.
    pub(crate) fn rates(&self, queue: &str) -> Vec<f64> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.series.get(queue).map(|s| s.rates.iter().copied().collect()).unwrap_or_default()
    }

    /// Notes a page view; whether the readings had stopped for want of one.
    fn view(&self) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.viewed.replace(Instant::now()).is_none_or(|then| then.elapsed() >= IDLE)
    }

    /// Whether a page asked for the counts within [`IDLE`].
    fn watched(&self) -> bool {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).viewed.is_some_and(|then| then.elapsed() < IDLE)
    }

    /// Asks for a new reading now (after an action changed the counts).
    pub(crate) fn refresh(&self) {
        self.wake.notify_one();
    }
}

fn record(series: &mut Series, at: Instant, settled: u64) {
    if let Some((then, before)) = series.last {
        let secs = at.duration_since(then).as_secs_f64();
        if secs > 0.0 {
            // Totals only grow; a purge of the counts starts the line at zero.
            series.rates.push_back(settled.saturating_sub(before) as f64 / secs);
            if series.rates.len() > KEPT {
                series.rates.pop_front();
            }
        }
    }
    series.last = Some((at, settled));
}

/// Reads every queue's counts once.
pub(crate) async fn read(app: &App) -> Result<Reading, DriverError> {
    let at = Instant::now();
    let names = app.driver.queues().await?;
    let mut queues = Vec::with_capacity(names.len());
    for name in names {
        let stats = app.driver.stats(&name).await?;
        queues.push((name, stats));
    }
    Ok(Reading { at, queues })
}

/// The latest reading, taken now when there is none yet or it is from before the readings
/// stopped (the first view after start, or after [`IDLE`] without one).
pub(crate) async fn latest(app: &App) -> Result<Reading, DriverError> {
    if app.history.view() {
        // The readings had stopped: they go on from now.
        app.history.refresh();
    }
    if let Some(r) = app.history.latest().filter(|r| r.at.elapsed() < IDLE) {
        return Ok(r);
    }
    let reading = read(app).await?;
    app.history.keep(reading.clone());
    Ok(reading)
}

/// Starts the readings, until the dashboard is dropped.
pub(crate) fn start(app: &Arc<App>) {
    let (weak, wake) = (Arc::downgrade(app), app.history.wake.clone());
    tokio::spawn(async move {
        loop {
            let Some(pause) = sample(&weak).await else { return };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = wake.notified() => {}
            }
            // Nobody looked lately: read again only once someone does (checking now and then
            // whether the dashboard is still there).
            loop {
                match weak.upgrade().map(|app| app.history.watched()) {
                    None => return,
                    Some(true) => break,
                    Some(false) => drop(tokio::time::timeout(IDLE, wake.notified()).await),
                }
            }
        }
    });
}

/// One reading, and how long to wait before the next; `None` once the dashboard is gone.
async fn sample(app: &Weak<App>) -> Option<Duration> {
    let app = app.upgrade()?;
    let t = Instant::now();
    match read(&app).await {
        Ok(reading) => app.history.keep(reading),
        Err(error) => tracing::debug!(%error, "dashboard: reading the queues' counts failed; reading again later"),
    }
    // At most a tenth of the time goes to counting.
    Some(EVERY.max(t.elapsed() * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_settled_tasks_between_two_readings_per_second() {
        let mut series = Series::default();
        let t = Instant::now();
        record(&mut series, t, 100);
        record(&mut series, t + Duration::from_secs(5), 150);
        record(&mut series, t + Duration::from_secs(10), 150);
        assert_eq!(series.rates.iter().copied().collect::<Vec<_>>(), vec![10.0, 0.0]);
    }
}
