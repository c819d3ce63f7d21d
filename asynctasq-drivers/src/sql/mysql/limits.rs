//! Queue limits on MySQL ([`Capability::QueueLimits`], [`Capability::KeyedLimits`],
//! [`Capability::RateLimits`]; see `asynctasq_core::limits`): a limited queue's claim locks its
//! limits row, counts the queue's live leases (by key, with a cap per key) and its starts in
//! the rate's window, and takes at most what the limits leave, in the claim's own transaction.
//!
//! # Why the plain claim skips limited queues
//! The lock is on an existing row: a claim that locked a queue's row whether or not it exists
//! would take a gap lock under REPEATABLE READ for every unlimited queue and serialise all
//! their claims. So the plain claim leaves a queue with a limits row alone (`NOT EXISTS`), a
//! claim that found nothing asks whether the queue is limited, and the limited path locks
//! only rows that exist. The counts are the transaction's first consistent reads, taken after
//! the lock: they see every claim that held the lock before.
//!
//! # Limits per key
//! With a cap per key or a rate per key, the claim unparks the parked keys that have room
//! again, picks over the due tasks in order (`asynctasq_core::limits::pick`), parks those of
//! keys without room and leases the rest, as on PostgreSQL. Parked tasks are found through the
//! due index (their `visible_at` past 2^50), so the tasks table keeps no index more.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits
//! [`Capability::KeyedLimits`]: asynctasq_core::Capability::KeyedLimits
//! [`Capability::RateLimits`]: asynctasq_core::Capability::RateLimits

use std::collections::BTreeSet;

use asynctasq_core::DriverError;
use asynctasq_core::driver::{Delivery, QueueLimits};
use asynctasq_core::limits::{Counts, RATE_LOG_SLACK, pick, scan_bound, unpark_room};
use sqlx::mysql::MySqlConnection;

use super::{MySqlDriver, PARKED, placeholders, q};
use crate::sql::limited::{LimitsRow, NamedLimitsRow, QueueLog, limits_row, named_limits, stored_limits};
use crate::sql::{map_err, now};

/// Most parked keys one claim looks at for room.
const UNPARK_KEYS: i64 = 100;

/// The limits table's columns, in [`LimitsRow`]'s order.
const LIMITS_COLUMNS: &str = "CAST(max_leased AS SIGNED), CAST(per_key AS SIGNED), rate, rate_window_ms, rate_per_key";

impl MySqlDriver {
    /// Claims of a limited queue; `None` when it has no limit (any more), for the plain claim.
    pub(super) async fn dequeue_limited(&self, queue: &str, max: usize) -> Result<Option<Vec<Delivery>>, DriverError> {
        let (t, l) = (&self.inner.tasks, &self.inner.limits);
        let err = |e| map_err("dequeue", e);
        let mut tx = self.inner.pools.pool().begin().await.map_err(err)?;
        let row: Option<LimitsRow> = sqlx::query_as(q(format!("SELECT {LIMITS_COLUMNS} FROM {l} WHERE queue = ? FOR UPDATE")))
            .bind(queue)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
        let limits = row.map(stored_limits).unwrap_or_default();
        if limits.is_none() {
            self.inner.limited.mark(queue, false);
            return Ok(None);
        }
        self.inner.limited.mark(queue, true);
        let at = now();
        let mut counts = Counts::default();
        if limits.caps_leases() {
            let leased: Vec<(Option<String>, i64)> = sqlx::query_as(q(format!(
                "SELECT limit_key, COUNT(*) FROM {t} WHERE queue = ? AND visible_at > ? AND visible_at < {PARKED} \
                 AND lease_token IS NOT NULL GROUP BY limit_key"
            )))
            .bind(queue)
            .bind(at)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            counts.leased = leased.into_iter().map(|(k, n)| (k.unwrap_or_default(), usize::try_from(n).unwrap_or(0))).collect();
        }
        let queue_log = self.count_starts(&mut tx, queue, &limits, at, &mut counts).await?;
        let room = limits.room(max, &counts);
        if limits.keyed() {
            self.unpark(&mut tx, queue, &limits, &counts).await?;
        }
        if room == 0 {
            tx.commit().await.map_err(err)?;
            return Ok(Some(Vec::new()));
        }
        let candidates: Vec<(i64, Option<String>)> = sqlx::query_as(q(format!(
            "SELECT seq, limit_key FROM {t} WHERE queue = ? AND visible_at <= ? AND cancel = 0 \
             AND NOT EXISTS (SELECT 1 FROM {p} WHERE queue = ?) ORDER BY visible_at, seq LIMIT ? FOR UPDATE SKIP LOCKED",
            p = self.inner.paused
        )))
        .bind(queue)
        .bind(at)
        .bind(queue)
        .bind(if limits.keyed() { scan_bound(room) } else { room } as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let chosen = pick(candidates.iter().map(|(_, k)| k.as_deref()), &limits, &counts, room);
        let starts = limits.starts_to_log(chosen.take.iter().map(|&i| candidates[i].1.as_deref()));
        self.log_starts(&mut tx, queue, at, starts, queue_log.as_ref()).await?;
        if !chosen.park.is_empty() {
            let seqs: Vec<i64> = chosen.park.iter().map(|&i| candidates[i].0).collect();
            let sql = format!("UPDATE {t} SET visible_at = visible_at + {PARKED} WHERE seq IN ({})", placeholders(seqs.len()));
            let mut park = sqlx::query(q(sql));
            for seq in &seqs {
                park = park.bind(seq);
            }
            park.execute(&mut *tx).await.map_err(err)?;
            let keys: BTreeSet<&str> = chosen.park.iter().filter_map(|&i| candidates[i].1.as_deref()).collect();
            let sql =
                format!("INSERT IGNORE INTO {} (queue, limit_key) VALUES {}", self.inner.parked, vec!["(?, ?)"; keys.len()].join(","));
            let mut note = sqlx::query(q(sql));
            for key in keys {
                note = note.bind(queue).bind(key);
            }
            note.execute(&mut *tx).await.map_err(err)?;
        }
        if chosen.take.is_empty() {
            tx.commit().await.map_err(err)?;
            return Ok(Some(Vec::new()));
        }
        let seqs: Vec<i64> = chosen.take.iter().map(|&i| candidates[i].0).collect();
        let sql = format!(
            "SELECT seq, id, envelope, attempt, lease_ms, visible_at, replayed FROM {t} WHERE seq IN ({}) ORDER BY visible_at, seq",
            placeholders(seqs.len())
        );
        let mut query = sqlx::query(q(sql));
        for seq in &seqs {
            query = query.bind(seq);
        }
        let rows = query.fetch_all(&mut *tx).await.map_err(err)?;
        self.lease(tx, queue, rows, at).await.map(Some)
    }

    /// Counts the starts within the rate's window into `counts` (by key, or for the queue from
    /// two entries of its log, which it returns), after pruning what left the window.
    async fn count_starts(
        &self,
        conn: &mut MySqlConnection,
        queue: &str,
        limits: &QueueLimits,
        at: i64,
        counts: &mut Counts,
    ) -> Result<Option<QueueLog>, DriverError> {
        let Some(rate) = limits.rate else { return Ok(None) };
        let (s, err) = (&self.inner.starts, |e| map_err("dequeue", e));
        let since = at - i64::try_from(rate.window_ms).unwrap_or(i64::MAX);
        sqlx::query(q(format!("DELETE FROM {s} WHERE queue = ? AND at <= ?")))
            .bind(queue)
            .bind(since - RATE_LOG_SLACK as i64)
            .execute(&mut *conn)
            .await
            .map_err(err)?;
        if rate.per_key {
            let started: Vec<(String, i64)> = sqlx::query_as(q(format!(
                "SELECT limit_key, CAST(SUM(n) AS SIGNED) FROM {s} WHERE queue = ? AND limit_key <> '' AND at > ? GROUP BY limit_key"
            )))
            .bind(queue)
            .bind(since)
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
            counts.started = started.into_iter().map(|(k, n)| (k, usize::try_from(n).unwrap_or(0))).collect();
            return Ok(None);
        }
        let log = QueueLog::read(
            sqlx::query_as(q(format!(
                "SELECT (SELECT at FROM {s} WHERE queue = ? AND limit_key = '' ORDER BY at DESC, cum DESC LIMIT 1), \
                        (SELECT cum + n FROM {s} WHERE queue = ? AND limit_key = '' ORDER BY at DESC, cum DESC LIMIT 1), \
                        (SELECT cum FROM {s} WHERE queue = ? AND limit_key = '' AND at > ? ORDER BY at, cum LIMIT 1)"
            )))
            .bind(queue)
            .bind(queue)
            .bind(queue)
            .bind(since)
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?,
        );
        counts.started.insert(String::new(), log.started());
        Ok(Some(log))
    }

    /// Logs a claim's starts at `at`: a queue-wide rate's one entry after what `queue_log` read,
    /// a rate per key's entries by key.
    async fn log_starts(
        &self,
        conn: &mut MySqlConnection,
        queue: &str,
        at: i64,
        starts: Vec<(String, usize)>,
        queue_log: Option<&QueueLog>,
    ) -> Result<(), DriverError> {
        if starts.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} (queue, limit_key, at, n, cum) VALUES {}",
            self.inner.starts,
            vec!["(?, ?, ?, ?, ?)"; starts.len()].join(",")
        );
        let mut insert = sqlx::query(q(sql));
        for (key, n) in &starts {
            let (at, cum) = match queue_log {
                Some(log) if key.is_empty() => log.next(at),
                _ => (at, 0),
            };
            insert = insert.bind(queue).bind(key.as_str()).bind(at).bind(*n as i64).bind(cum);
        }
        insert.execute(&mut *conn).await.map_err(|e| map_err("dequeue", e))?;
        Ok(())
    }

    /// Unparks, for each noted key of `queue` with room, its earliest parked tasks, as many as
    /// it has room for; a key left without parked tasks is forgotten.
    async fn unpark(&self, conn: &mut MySqlConnection, queue: &str, limits: &QueueLimits, counts: &Counts) -> Result<(), DriverError> {
        let (t, k, err) = (&self.inner.tasks, &self.inner.parked, |e| map_err("dequeue", e));
        let parked: Vec<String> = sqlx::query_scalar(q(format!("SELECT limit_key FROM {k} WHERE queue = ? LIMIT {UNPARK_KEYS}")))
            .bind(queue)
            .fetch_all(&mut *conn)
            .await
            .map_err(err)?;
        for key in parked {
            let room = unpark_room(&key, limits, counts);
            if room == 0 {
                continue;
            }
            // MySQL cannot `UPDATE … ORDER BY … LIMIT` through a subquery on the same table: the
            // statement orders and limits itself.
            let back = sqlx::query(q(format!(
                "UPDATE {t} SET visible_at = visible_at - {PARKED} WHERE queue = ? AND visible_at >= {PARKED} AND limit_key = ? \
                 ORDER BY visible_at, seq LIMIT ?"
            )))
            .bind(queue)
            .bind(&key)
            .bind(i64::try_from(room).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(err)?;
            if back.rows_affected() < room as u64 {
                sqlx::query(q(format!("DELETE FROM {k} WHERE queue = ? AND limit_key = ?")))
                    .bind(queue)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Whether `queue` has a limit, asked when the plain claim found nothing (it skips a
    /// limited queue); remembered, so the next claims go to the limited path at once.
    pub(super) async fn is_limited(&self, queue: &str) -> Result<bool, DriverError> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE queue = ?)", self.inner.limits);
        let limited: bool =
            sqlx::query_scalar(q(sql)).bind(queue).fetch_one(&self.inner.pools.pool()).await.map_err(|e| map_err("dequeue", e))?;
        self.inner.limited.mark(queue, limited);
        Ok(limited)
    }

    /// Stores `limits` for `queue`: a row while one is set. Without limits per key, nothing
    /// holds the queue's parked tasks back any more: they are unparked in the same transaction;
    /// without a rate, its log goes.
    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let (t, l, err) = (&self.inner.tasks, &self.inner.limits, |e| map_err("limit a queue", e));
        let mut tx = self.inner.pools.pool().begin().await.map_err(err)?;
        if limits.is_none() {
            sqlx::query(q(format!("DELETE FROM {l} WHERE queue = ?"))).bind(queue).execute(&mut *tx).await.map_err(err)?;
        } else {
            let (max_leased, per_key, rate, window_ms, rate_per_key) = limits_row(&limits);
            sqlx::query(q(format!(
                "INSERT INTO {l} (queue, max_leased, per_key, rate, rate_window_ms, rate_per_key) VALUES (?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE max_leased = VALUES(max_leased), per_key = VALUES(per_key), rate = VALUES(rate), \
                 rate_window_ms = VALUES(rate_window_ms), rate_per_key = VALUES(rate_per_key)"
            )))
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
            sqlx::query(q(format!("DELETE FROM {} WHERE queue = ?", self.inner.starts)))
                .bind(queue)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if !limits.keyed() {
            sqlx::query(q(format!("UPDATE {t} SET visible_at = visible_at - {PARKED} WHERE queue = ? AND visible_at >= {PARKED}")))
                .bind(queue)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            sqlx::query(q(format!("DELETE FROM {} WHERE queue = ?", self.inner.parked)))
                .bind(queue)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        // A raised limit may make tasks claimable.
        self.inner.notify.notify_waiters();
        Ok(())
    }

    pub(super) async fn list_limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let rows: Vec<NamedLimitsRow> =
            sqlx::query_as(q(format!("SELECT queue, {LIMITS_COLUMNS} FROM {} ORDER BY queue", self.inner.limits)))
                .fetch_all(&self.inner.pools.pool())
                .await
                .map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(named_limits).collect())
    }
}
