//! Per-key limits on SQLite ([`Capability::KeyedLimits`]; see `asynctasq_core::limits`): the
//! claim of a queue with a cap per key, in one write transaction, so no other claim runs
//! between its count and its leases.
//!
//! # Why a claim of its own
//! The plain claim is one `UPDATE … RETURNING` (a cap on the whole queue fits in its `LIMIT`).
//! A cap per key needs the live leases by key, the parked keys that have room again, and a pick
//! over the due tasks in order, some leased and some parked: statements of their own in a
//! `BEGIN IMMEDIATE` transaction. The plain claim skips a queue with a cap per key, so only
//! those queues pay for it.
//!
//! [`Capability::KeyedLimits`]: asynctasq_core::Capability::KeyedLimits

use std::collections::HashMap;

use asynctasq_core::DriverError;
use asynctasq_core::driver::{Delivery, QueueLimits};
use asynctasq_core::limits::{PARKED, pick, scan_bound, unpark_room};
use sqlx::Row;

use super::SqliteDriver;
use crate::sql::limited::stored_limits;
use crate::sql::{delivery, map_err, now};

/// Most parked keys one claim looks at for room.
const UNPARK_KEYS: i64 = 100;

impl SqliteDriver {
    /// Claims of a queue with a cap per key; `None` when it has none (any more), for the plain
    /// claim to take it.
    pub(super) async fn claim_keyed(&self, queue: &str, max: usize) -> Result<Option<Vec<Delivery>>, DriverError> {
        let err = |e| map_err("dequeue", e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let limits: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT max_leased, per_key FROM asynctasq_limits WHERE queue = ?1")
                .bind(queue)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        let Some((cap, Some(per_key))) = limits else {
            self.limited.mark(queue, false);
            return Ok(None);
        };
        self.limited.mark(queue, true);
        let per_key = u32::try_from(per_key.max(0)).unwrap_or(u32::MAX);
        let (token, at, holder) = (fastrand::i64(..), now(), self.consumer.get());
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
        let all: i64 = leased.iter().map(|(_, n)| n).sum();
        let by_key: HashMap<String, usize> = leased.into_iter().filter_map(|(k, n)| Some((k?, n as usize))).collect();
        let room = match cap {
            Some(cap) => max.min(usize::try_from(cap - all).unwrap_or(0)),
            None => max,
        };
        // Parked keys with room again get their earliest parked tasks back, as many as fit.
        let parked: Vec<String> = sqlx::query_scalar("SELECT limit_key FROM asynctasq_parked WHERE queue = ?1 LIMIT ?2")
            .bind(queue)
            .bind(UNPARK_KEYS)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        for key in parked {
            let room = unpark_room(&key, &by_key, per_key);
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
        let chosen = pick(candidates.iter().map(|(_, k)| k.as_deref()), &by_key, Some(per_key), room);
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
        let mut rows = sqlx::query(
            "UPDATE asynctasq_tasks SET attempt = attempt + 1, lease_token = ?1, visible_at = ?2 + lease_ms, holder = ?3, started_at = ?2 \
             WHERE seq IN (SELECT value FROM json_each(?4)) RETURNING seq, id, envelope, attempt, visible_at, replayed",
        )
        .bind(token)
        .bind(at)
        .bind(holder.as_deref())
        .bind(seqs(&chosen.take))
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
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

    /// Stores `limits` for `queue`: a row while one is set. Without a cap per key, nothing holds
    /// the queue's parked tasks back any more: they are unparked in the same transaction.
    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let err = |e| map_err("limit a queue", e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        if limits.is_none() {
            sqlx::query("DELETE FROM asynctasq_limits WHERE queue = ?1").bind(queue).execute(&mut *tx).await.map_err(err)?;
        } else {
            sqlx::query("INSERT OR REPLACE INTO asynctasq_limits (queue, max_leased, per_key) VALUES (?1, ?2, ?3)")
                .bind(queue)
                .bind(limits.max_leased.map(i64::from))
                .bind(limits.per_key.map(i64::from))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        if limits.per_key.is_none() {
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
        let rows: Vec<(String, Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT queue, max_leased, per_key FROM asynctasq_limits ORDER BY queue")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(|(q, max, per_key)| (q, stored_limits(max, per_key))).collect())
    }

    /// Whether `queue` has a cap per key, asked when the plain claim found nothing (it skips
    /// such a queue); remembered, so the next claims go to the keyed claim at once.
    pub(super) async fn is_keyed(&self, queue: &str) -> Result<bool, DriverError> {
        let keyed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM asynctasq_limits WHERE queue = ?1 AND per_key IS NOT NULL)")
            .bind(queue)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err("dequeue", e))?;
        self.limited.mark(queue, keyed);
        Ok(keyed)
    }
}
