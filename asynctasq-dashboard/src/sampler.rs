//! The throughput behind the overview's sparklines: every [`EVERY`], the settled totals of each
//! queue (succeeded plus failed, [`Capability::Totals`]) are read once, and the rate between
//! two reads is kept, [`KEPT`] points per queue. One read per queue per interval, whoever
//! watches; nothing when the backend keeps no totals.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use asynctasq_core::driver::Capability;

use crate::App;

/// How often the totals are read.
pub(crate) const EVERY: Duration = Duration::from_secs(5);
/// Points kept per queue: ten minutes at [`EVERY`].
pub(crate) const KEPT: usize = 120;

/// Rates per queue, oldest first.
#[derive(Default)]
pub(crate) struct History {
    inner: Mutex<HashMap<String, Series>>,
}

#[derive(Default)]
struct Series {
    last: Option<(Instant, u64)>,
    rates: VecDeque<f64>,
}

impl History {
    /// Notes `settled` tasks of `queue` in total at `at`.
    pub(crate) fn record(&self, queue: &str, at: Instant, settled: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let series = inner.entry(queue.to_owned()).or_default();
        if let Some((then, before)) = series.last {
            let secs = at.duration_since(then).as_secs_f64();
            if secs > 0.0 {
                // Totals only grow; a purge of the counts starts the series over.
                series.rates.push_back(settled.saturating_sub(before) as f64 / secs);
                if series.rates.len() > KEPT {
                    series.rates.pop_front();
                }
            }
        }
        series.last = Some((at, settled));
    }

    /// The rates of `queue`, oldest first.
    pub(crate) fn rates(&self, queue: &str) -> Vec<f64> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.get(queue).map(|s| s.rates.iter().copied().collect()).unwrap_or_default()
    }
}

/// Starts reading the totals, until the dashboard is dropped.
pub(crate) fn start(app: &Arc<App>) {
    if !app.driver.supports(Capability::Totals) {
        return;
    }
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !sample(&app).await {
                return;
            }
        }
    });
}

/// One read of every queue's totals; `false` once the dashboard is gone.
async fn sample(app: &Weak<App>) -> bool {
    let Some(app) = app.upgrade() else { return false };
    let Ok(queues) = app.driver.queues().await else { return true };
    for queue in queues {
        if let Ok(stats) = app.driver.stats(&queue).await
            && let Some(totals) = stats.totals
        {
            app.history.record(&queue, Instant::now(), totals.succeeded + totals.failed);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_settled_tasks_between_two_reads_per_second() {
        let history = History::default();
        let t = Instant::now();
        history.record("q", t, 100);
        history.record("q", t + Duration::from_secs(5), 150);
        history.record("q", t + Duration::from_secs(10), 150);
        assert_eq!(history.rates("q"), vec![10.0, 0.0]);
        assert!(history.rates("other").is_empty());
    }
}
