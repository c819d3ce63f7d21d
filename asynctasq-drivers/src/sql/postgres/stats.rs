//! Counting a queue (`queue status`, the dashboard, the monitor's gauges): exact up to a bound
//! in each state ([`PostgresConfig::exact_counts`](super::PostgresConfig::exact_counts),
//! default 10,000), estimated from a sample of the table's pages past it.
//!
//! # Why not `COUNT(*)`
//! A count reads every entry it counts. With ten million ready tasks, the one
//! `COUNT(*) FILTER (…)` over the queue's rows took 3.3–5.6 s (a table of 10.2 million rows,
//! `EXPLAIN ANALYZE`), so `queue status` timed out and the dashboard's readings stalled; the
//! distinct queues (`SELECT DISTINCT queue`) took 1.6 s more.
//!
//! # How
//! * **Bounded counts, one statement.** Each state is one range of the due index
//!   `(queue, visible_at, seq)`: ready (`visible_at` up to now), parked (from `PARKED`: ready,
//!   waiting for their key's room) and later (between: scheduled, or leased, told apart by
//!   `lease_token`); dead tasks are one range of `(queue, seq)`. Each is read to at most the
//!   bound plus one, in index order. Bitmap scans and sorts are ruled out for the statement
//!   (`SET LOCAL`): over a table never analysed the planner expects a few rows and builds a
//!   bitmap of the whole range, which took 0.95 s for the ready range alone; as index scans
//!   the statement takes 14–29 ms over the same table.
//! * **Past the bound, a sample.** `TABLESAMPLE SYSTEM` reads a random share of the table's
//!   pages (about [`SAMPLE_PAGES`] of them, or all of a small table) and the states are
//!   counted there and scaled up: 27 ms for ten million tasks. Three readings of 10,000,000
//!   ready tasks gave 10.06, 10.07 and 10.47 million, of 1,000,000 dead 0.97–1.01 million,
//!   and of 200,000 scheduled tasks packed into 4,000 pages 153,000–209,000. A state's
//!   estimate is never below what the bounded count saw. The stats then say
//!   [`estimated`](asynctasq_core::QueueStats::estimated); `queue status` marks them `~`
//!   (0.13–0.15 s for the whole command over that table).
//! * **The oldest ready task** is the first entry of the ready and parked ranges, and the
//!   queue names are found by skipping through the index (a recursive query, one probe per
//!   queue: 2 ms instead of 1.6 s).

use asynctasq_core::{DriverError, QueueStats};
use sqlx::Row;

use super::{Inner, map_err, now, q};
use crate::sql::PARKED;

/// Pages a sample reads, about: enough for a state spread over the table to be counted
/// within a few percent, few enough to read in tens of milliseconds.
pub(super) const SAMPLE_PAGES: f64 = 2_000.0;

/// The statements, built from the table names.
pub(super) struct StatsSql {
    /// The bounded counts: binds the queue, now and the bound plus one; returns ready,
    /// parked, scheduled, leased, later (scheduled and leased read), dead, the earliest ready
    /// due time, the totals, and the pages of the tasks and dead tables.
    pub(super) bounded: String,
    /// The live states in a sample: binds the queue, now and the percentage of pages.
    pub(super) sample: String,
    /// The dead tasks in a sample: binds the queue and the percentage of pages.
    pub(super) dead_sample: String,
    /// The queues holding live or dead tasks, sorted, found by skipping through the indexes.
    pub(super) queues: String,
}

impl StatsSql {
    /// The statements over tasks `t`, dead tasks `d` and totals `n` (quoted names).
    pub(super) fn new(t: &str, d: &str, n: &str) -> Self {
        let parked = PARKED;
        let pages = |table: &str| format!("pg_relation_size('{}') / current_setting('block_size')::bigint", table.replace('\'', "''"));
        Self {
            bounded: format!(
                "WITH later AS (SELECT lease_token IS NULL AS waiting FROM {t} \
                                WHERE queue = $1 AND visible_at > $2 AND visible_at < {parked} ORDER BY visible_at LIMIT $3) \
                 SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM {t} WHERE queue = $1 AND visible_at <= $2 \
                                               ORDER BY visible_at LIMIT $3) r), \
                        (SELECT COUNT(*) FROM (SELECT 1 FROM {t} WHERE queue = $1 AND visible_at >= {parked} \
                                               ORDER BY visible_at LIMIT $3) p), \
                        (SELECT COUNT(*) FILTER (WHERE waiting) FROM later), \
                        (SELECT COUNT(*) FILTER (WHERE NOT waiting) FROM later), \
                        (SELECT COUNT(*) FROM later), \
                        (SELECT COUNT(*) FROM (SELECT 1 FROM {d} WHERE queue = $1 ORDER BY seq LIMIT $3) x), \
                        LEAST((SELECT visible_at FROM {t} WHERE queue = $1 AND visible_at <= $2 ORDER BY visible_at LIMIT 1), \
                              (SELECT visible_at - {parked} FROM {t} WHERE queue = $1 AND visible_at >= {parked} \
                               ORDER BY visible_at LIMIT 1)), \
                        (SELECT COALESCE(SUM(succeeded), 0)::bigint FROM {n} WHERE queue = $1), \
                        (SELECT COALESCE(SUM(failed), 0)::bigint FROM {n} WHERE queue = $1), \
                        {}, {}",
                pages(t),
                pages(d)
            ),
            sample: format!(
                "SELECT COUNT(*) FILTER (WHERE visible_at <= $2 OR visible_at >= {parked}), \
                        COUNT(*) FILTER (WHERE visible_at > $2 AND visible_at < {parked} AND lease_token IS NULL), \
                        COUNT(*) FILTER (WHERE visible_at > $2 AND visible_at < {parked} AND lease_token IS NOT NULL) \
                 FROM {t} TABLESAMPLE SYSTEM ($3) WHERE queue = $1"
            ),
            dead_sample: format!("SELECT COUNT(*) FROM {d} TABLESAMPLE SYSTEM ($2) WHERE queue = $1"),
            queues: format!(
                "WITH RECURSIVE live AS ((SELECT queue FROM {t} ORDER BY queue LIMIT 1) \
                                         UNION ALL \
                                         SELECT (SELECT queue FROM {t} WHERE queue > live.queue ORDER BY queue LIMIT 1) \
                                         FROM live WHERE live.queue IS NOT NULL), \
                                dead AS ((SELECT queue FROM {d} ORDER BY queue LIMIT 1) \
                                         UNION ALL \
                                         SELECT (SELECT queue FROM {d} WHERE queue > dead.queue ORDER BY queue LIMIT 1) \
                                         FROM dead WHERE dead.queue IS NOT NULL) \
                 SELECT queue FROM live WHERE queue IS NOT NULL \
                 UNION SELECT queue FROM dead WHERE queue IS NOT NULL ORDER BY 1"
            ),
        }
    }
}

impl Inner {
    /// The counts of `queue` (see the module docs): one statement, and a sample of the
    /// tasks or dead table when a state passes the bound.
    pub(super) async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let err = |e| map_err("stats", e);
        let at = now();
        let bound = i64::try_from(self.exact_counts).unwrap_or(i64::MAX);
        let mut tx = self.pools.pool().begin().await.map_err(err)?;
        // Index scans in index order, stopping at the bound (see the module docs).
        sqlx::query("SET LOCAL enable_bitmapscan = off").execute(self.on(&mut tx)).await.map_err(err)?;
        sqlx::query("SET LOCAL enable_sort = off").execute(self.on(&mut tx)).await.map_err(err)?;
        let row = sqlx::query(q(&self.sql.stats.bounded))
            .bind(queue)
            .bind(at)
            .bind(bound.saturating_add(1))
            .fetch_one(self.on(&mut tx))
            .await
            .map_err(err)?;
        let n = |i: usize| row.get::<i64, _>(i);
        let (mut ready, mut scheduled, mut leased, later, mut dead) = (n(0) + n(1), n(2), n(3), n(4), n(5));
        let earliest: Option<i64> = row.get(6);
        let totals = [n(7), n(8)];
        let (task_pages, dead_pages) = (n(9), n(10));
        let mut estimated = false;
        if n(0) > bound || n(1) > bound || later > bound {
            let percent = sample_percent(task_pages);
            let s =
                sqlx::query(q(&self.sql.stats.sample)).bind(queue).bind(at).bind(percent).fetch_one(self.on(&mut tx)).await.map_err(err)?;
            if n(0) > bound || n(1) > bound {
                ready = scaled(s.get(0), percent, ready);
            }
            if later > bound {
                scheduled = scaled(s.get(1), percent, scheduled);
                leased = scaled(s.get(2), percent, leased);
            }
            estimated = true;
        }
        if dead > bound {
            let percent = sample_percent(dead_pages);
            let sampled: i64 = sqlx::query_scalar(q(&self.sql.stats.dead_sample))
                .bind(queue)
                .bind(percent)
                .fetch_one(self.on(&mut tx))
                .await
                .map_err(err)?;
            dead = scaled(sampled, percent, dead);
            estimated = true;
        }
        tx.commit().await.map_err(err)?;
        let mut stats = crate::sql::queue_stats(at, [ready, scheduled, leased, dead], earliest, totals);
        stats.estimated = estimated;
        Ok(stats)
    }
}

/// The percentage of a table's `pages` a sample reads: about [`SAMPLE_PAGES`], all of a
/// small table.
pub(super) fn sample_percent(pages: i64) -> f64 {
    if pages <= 0 {
        return 100.0;
    }
    (100.0 * SAMPLE_PAGES / pages as f64).clamp(0.000_1, 100.0)
}

/// A state's count from a sample of `percent` of the pages that saw `sampled` of it, never
/// below the `seen` the bounded count read.
pub(super) fn scaled(sampled: i64, percent: f64, seen: i64) -> i64 {
    ((sampled as f64 * 100.0 / percent).round() as i64).max(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_about_two_thousand_pages_or_a_whole_small_table() {
        assert_eq!(sample_percent(0), 100.0);
        assert_eq!(sample_percent(1_500), 100.0);
        assert!((sample_percent(200_000) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn an_estimate_scales_the_sample_and_never_undercuts_what_was_counted() {
        assert_eq!(scaled(100_100, 1.0, 10_001), 10_010_000);
        assert_eq!(scaled(0, 1.0, 10_001), 10_001);
        assert_eq!(scaled(40, 100.0, 10_001), 10_001);
    }
}
