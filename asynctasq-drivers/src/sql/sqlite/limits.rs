//! Per-key limits and rates on SQLite ([`Capability::KeyedLimits`], [`Capability::RateLimits`];
//! see `asynctasq_core::limits`): the claim of a queue with a cap per key or a rate, in one
//! write transaction, so no other claim runs between its counts and its leases.
//!
//! # Why a claim of its own
//! The plain claim is one `UPDATE … RETURNING` (a cap on the whole queue fits in its `LIMIT`).
//! A cap per key needs the live leases by key, a rate the starts in its window from the log
//! (`asynctasq_starts`), then the parked keys that have room again, and a pick over the due
//! tasks in order, some leased and some parked, and the claim's starts logged: statements of
//! their own in a `BEGIN IMMEDIATE` transaction. The plain claim skips such a queue, so only
//! those queues pay for it.
//!
//! [`Capability::KeyedLimits`]: asynctasq_core::Capability::KeyedLimits
//! [`Capability::RateLimits`]: asynctasq_core::Capability::RateLimits

use asynctasq_core::DriverError;
use asynctasq_core::driver::{Delivery, QueueLimits};
use asynctasq_core::limits::{Counts, PARKED, RATE_LOG_SLACK, pick, scan_bound, unpark_room};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::SqliteDriver;
use crate::sql::limited::{LimitsRow, NamedLimitsRow, QueueLog, counted, limits_row, named_limits, stored_limits};
use crate::sql::{delivery, map_err, now};

/// Logs a claim's starts at `at` (see `QueueLimits::starts_to_log`), in its transaction: a
/// queue-wide rate's one entry after what `queue_log` read, a rate per key's entries by key.
async fn log_starts(
    tx: &mut SqliteConnection,
    queue: &str,
    at: i64,
    starts: Vec<(String, usize)>,
    queue_log: Option<&QueueLog>,
) -> Result<(), DriverError> {
    if starts.is_empty() {
        return Ok(());
    }
    if let (Some(log), [(key, n)]) = (queue_log, starts.as_slice())
        && key.is_empty()
    {
        let (at, cum) = log.next(at);
        sqlx::query("INSERT INTO asynctasq_starts (queue, limit_key, at, n, cum) VALUES (?1, '', ?2, ?3, ?4)")
            .bind(queue)
            .bind(at)
            .bind(*n as i64)
            .bind(cum)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("dequeue", e))?;
        return Ok(());
    }
    sqlx::query("INSERT INTO asynctasq_starts (queue, limit_key, at, n) SELECT ?1, value ->> 0, ?2, value ->> 1 FROM json_each(?3)")
        .bind(queue)
        .bind(at)
        .bind(serde_json::to_string(&starts).unwrap_or_default())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("dequeue", e))?;
    Ok(())
}

/// The limits table's columns, in [`LimitsRow`]'s order.
macro_rules! limits_columns {
    () => {
        "max_leased, per_key, rate, rate_window_ms, rate_per_key"
    };
}

/// Most parked keys one claim looks at for room.
const UNPARK_KEYS: i64 = 100;

impl SqliteDriver {
    /// Claims of a queue with a cap per key or a rate; `None` when it has neither (any more),
    /// for the plain claim to take it.
    pub(super) async fn claim_counted(&self, queue: &str, max: usize) -> Result<Option<Vec<Delivery>>, DriverError> {
        let err = |e| map_err("dequeue", e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let row: Option<LimitsRow> = sqlx::query_as(concat!("SELECT ", limits_columns!(), " FROM asynctasq_limits WHERE queue = ?1"))
            .bind(queue)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let limits = row.map(stored_limits).unwrap_or_default();
        if !counted(&limits) {
            self.limited.mark(queue, false);
            return Ok(None);
        }
        self.limited.mark(queue, true);
        let (token, at, holder) = (fastrand::i64(..), now(), self.consumer.get());
        let mut counts = Counts::default();
        // Live leases count only against a cap (a rate alone counts starts).
        if limits.caps_leases() {
            let leased: Vec<(Option<String>, i64)> = sqlx::query_as(
                "SELECT limit_key, COUNT(*) FROM asynctasq_tasks WHERE queue = ?1 AND lease_token IS NOT NULL \
                 AND visible_at > ?2 AND visible_at < ?3 GROUP BY limit_key",
            )
            .bind(queue)
            .bind(at)
            .bind(PARKED as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            counts.leased = leased.into_iter().map(|(k, n)| (k.unwrap_or_default(), n as usize)).collect();
        }
        let mut queue_log = None;
        if let Some(rate) = limits.rate {
            let since = at - i64::try_from(rate.window_ms).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM asynctasq_starts WHERE queue = ?1 AND at <= ?2")
                .bind(queue)
                .bind(since - RATE_LOG_SLACK as i64)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if rate.per_key {
                // By key: the entries within the window (at most the rate for each key).
                let started: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT limit_key, SUM(n) FROM asynctasq_starts WHERE queue = ?1 AND limit_key <> '' AND at > ?2 GROUP BY limit_key",
                )
                .bind(queue)
                .bind(since)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?;
                counts.started = started.into_iter().map(|(k, n)| (k, n as usize)).collect();
            } else {
                let log: (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
                    "SELECT (SELECT at FROM asynctasq_starts WHERE queue = ?1 AND limit_key = '' ORDER BY at DESC, cum DESC LIMIT 1) AS last_at, \
                            (SELECT cum + n FROM asynctasq_starts WHERE queue = ?1 AND limit_key = '' ORDER BY at DESC, cum DESC LIMIT 1) AS after, \
                            (SELECT cum FROM asynctasq_starts WHERE queue = ?1 AND limit_key = '' AND at > ?2 ORDER BY at, cum LIMIT 1) AS first",
                )
                .bind(queue)
                .bind(since)
                .fetch_one(&mut *tx)
                .await
                .map_err(err)?;
                let log = QueueLog::read(log);
                counts.started.insert(String::new(), log.started());
                queue_log = Some(log);
            }
        }
        let room = limits.room(max, &counts);
        // Parked keys with room again get their earliest parked tasks back, as many as fit (only
        // limits per key park: without them, setting the limits unparked every task).
        let parked: Vec<String> = if limits.keyed() {
            sqlx::query_scalar("SELECT limit_key FROM asynctasq_parked WHERE queue = ?1 LIMIT ?2")
                .bind(queue)
                .bind(UNPARK_KEYS)
                .fetch_all(&mut *tx)
                .await
                .map_err(err)?
        } else {
            Vec::new()
        };
        for key in parked {
            let room = unpark_room(&key, &limits, &counts);
            if room == 0 {
                continue;
            }
            let back = sqlx::query(
                "UPDATE asynctasq_tasks SET visible_at = visible_at - ?3 WHERE seq IN ( \
                     SELECT seq FROM asynctasq_tasks WHERE queue = ?1 AND limit_key = ?2 \
                     AND visible_at >= ?3 AND visible_at < ?4 ORDER BY seq LIMIT ?5)",
            )
            .bind(queue)
            .bind(&key)
            .bind(PARKED as i64)
            .bind(2 * PARKED as i64)
            .bind(room as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            if back.rows_affected() < room as u64 {
                sqlx::query("DELETE FROM asynctasq_parked WHERE queue = ?1 AND limit_key = ?2")
                    .bind(queue)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
        if room == 0 {
            tx.commit().await.map_err(err)?;
            return Ok(Some(Vec::new()));
        }
        let mut rows = if limits.keyed() {
            self.claim_picked(&mut tx, queue, (token, at, holder.as_deref()), (&limits, &counts, queue_log.as_ref()), room).await?
        } else {
            // Nothing to pick by key: one `UPDATE` as the plain claim's, bounded by the room.
            let rows = sqlx::query(
                "UPDATE asynctasq_tasks SET attempt = attempt + 1, lease_token = ?1, visible_at = ?2 + lease_ms, holder = ?3, started_at = ?2 \
                 WHERE seq IN (SELECT seq FROM asynctasq_tasks WHERE queue = ?4 AND visible_at <= ?2 AND cancel = 0 \
                               AND NOT EXISTS (SELECT 1 FROM asynctasq_paused WHERE queue = ?4) ORDER BY visible_at, seq LIMIT ?5) \
                 RETURNING seq, id, envelope, attempt, visible_at, replayed",
            )
            .bind(token)
            .bind(at)
            .bind(holder.as_deref())
            .bind(queue)
            .bind(room as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            log_starts(&mut tx, queue, at, limits.starts_to_log(rows.iter().map(|_| None)), queue_log.as_ref()).await?;
            rows
        };
        tx.commit().await.map_err(err)?;
        rows.sort_unstable_by_key(|row| row.get::<i64, _>(0));
        Ok(Some(
            rows.iter()
                .map(|row| {
                    let (id, envelope): (Vec<u8>, Vec<u8>) = (row.get(1), row.get(2));
                    delivery(queue, row.get(0), token, &id, &envelope, row.get::<i64, _>(3) as u32, row.get(4)).replayed(row.get(5))
                })
                .collect(),
        ))
    }

    /// The claim's pick by key, in `tx`: the due tasks in order (as many as a pick may look
    /// at), those of keys without room parked, the others leased, and their starts logged.
    async fn claim_picked(
        &self,
        tx: &mut SqliteConnection,
        queue: &str,
        (token, at, holder): (i64, i64, Option<&str>),
        (limits, counts, queue_log): (&QueueLimits, &Counts, Option<&QueueLog>),
        room: usize,
    ) -> Result<Vec<SqliteRow>, DriverError> {
        let err = |e| map_err("dequeue", e);
        let candidates: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT seq, limit_key FROM asynctasq_tasks WHERE queue = ?1 AND visible_at <= ?2 AND cancel = 0 \
             AND NOT EXISTS (SELECT 1 FROM asynctasq_paused WHERE queue = ?1) ORDER BY visible_at, seq LIMIT ?3",
        )
        .bind(queue)
        .bind(at)
        .bind(scan_bound(room) as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let chosen = pick(candidates.iter().map(|(_, k)| k.as_deref()), limits, counts, room);
        log_starts(tx, queue, at, limits.starts_to_log(chosen.take.iter().map(|&i| candidates[i].1.as_deref())), queue_log).await?;
        let seqs =
            |picked: &[usize]| serde_json::to_string(&picked.iter().map(|&i| candidates[i].0).collect::<Vec<_>>()).unwrap_or_default();
        if !chosen.park.is_empty() {
            sqlx::query("UPDATE asynctasq_tasks SET visible_at = visible_at + ?1 WHERE seq IN (SELECT value FROM json_each(?2))")
                .bind(PARKED as i64)
                .bind(seqs(&chosen.park))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            let keys: std::collections::BTreeSet<&str> = chosen.park.iter().filter_map(|&i| candidates[i].1.as_deref()).collect();
            sqlx::query("INSERT OR IGNORE INTO asynctasq_parked (queue, limit_key) SELECT ?1, value FROM json_each(?2)")
                .bind(queue)
                .bind(serde_json::to_string(&keys).unwrap_or_default())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        sqlx::query(
            "UPDATE asynctasq_tasks SET attempt = attempt + 1, lease_token = ?1, visible_at = ?2 + lease_ms, holder = ?3, started_at = ?2 \
             WHERE seq IN (SELECT value FROM json_each(?4)) RETURNING seq, id, envelope, attempt, visible_at, replayed",
        )
        .bind(token)
        .bind(at)
        .bind(holder)
        .bind(seqs(&chosen.take))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)
    }

    /// Stores `limits` for `queue`: a row while one is set. Without limits per key, nothing holds
    /// the queue's parked tasks back any more: they are unparked in the same transaction; without
    /// a rate, its log of starts goes.
    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let err = |e| map_err("limit a queue", e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        if limits.is_none() {
            sqlx::query("DELETE FROM asynctasq_limits WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(err)?;
        } else {
            let (max_leased, per_key, rate, window_ms, rate_per_key) = limits_row(&limits);
            sqlx::query(concat!(
                "INSERT OR REPLACE INTO asynctasq_limits (queue, ",
                limits_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .bind(queue)
            .bind(max_leased)
            .bind(per_key)
            .bind(rate)
            .bind(window_ms)
            .bind(rate_per_key)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        if limits.rate.is_none() {
            sqlx::query("DELETE FROM asynctasq_starts WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(err)?;
        }
        if !limits.keyed() {
            sqlx::query(
                "UPDATE asynctasq_tasks SET visible_at = visible_at - ?2 WHERE queue = ?1 AND visible_at >= ?2 AND visible_at < ?3",
            )
            .bind(queue)
            .bind(PARKED as i64)
            .bind(2 * PARKED as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            sqlx::query("DELETE FROM asynctasq_parked WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    pub(super) async fn list_limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let rows: Vec<NamedLimitsRow> =
            sqlx::query_as(concat!("SELECT queue, ", limits_columns!(), " FROM asynctasq_limits ORDER BY queue"))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(named_limits).collect())
    }

    /// Whether `queue` has a cap per key or a rate, asked when the plain claim found nothing (it
    /// skips such a queue); remembered, so the next claims go to the counted claim at once.
    pub(super) async fn is_counted(&self, queue: &str) -> Result<bool, DriverError> {
        let keyed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM asynctasq_limits WHERE queue = ?1 AND (per_key IS NOT NULL OR rate IS NOT NULL))",
        )
        .bind(queue)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_err("dequeue", e))?;
        self.limited.mark(queue, keyed);
        Ok(keyed)
    }
}
