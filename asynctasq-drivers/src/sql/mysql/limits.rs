//! Queue limits on MySQL ([`Capability::QueueLimits`]): a limited queue's claim locks its
//! limits row, counts the queue's live leases and takes at most the cap less that count, in
//! the claim's own transaction.
//!
//! # Why the plain claim skips limited queues
//! The lock is on an existing row: a claim that locked a queue's row whether or not it exists
//! would take a gap lock under REPEATABLE READ for every unlimited queue and serialise all
//! their claims. So the plain claim leaves a queue with a limits row alone (`NOT EXISTS`), a
//! claim that found nothing asks whether the queue is limited, and the limited path locks
//! only rows that exist. The count is the transaction's first consistent read, taken after the
//! lock: it sees every claim that held the lock before.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits

use asynctasq_core::DriverError;
use asynctasq_core::driver::{Delivery, QueueLimits};

use super::{MySqlDriver, q};
use crate::sql::limited::stored_limits;
use crate::sql::{map_err, now};

impl MySqlDriver {
    /// Claims of a limited queue; `None` when it has no limit (any more), for the plain claim.
    pub(super) async fn dequeue_limited(&self, queue: &str, max: usize) -> Result<Option<Vec<Delivery>>, DriverError> {
        let (t, l) = (&self.inner.tasks, &self.inner.limits);
        let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("dequeue", e))?;
        let cap: Option<Option<i32>> = sqlx::query_scalar(q(format!("SELECT max_leased FROM {l} WHERE queue = ? FOR UPDATE")))
            .bind(queue)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| map_err("dequeue", e))?;
        let Some(Some(cap)) = cap else {
            self.inner.limited.mark(queue, false);
            return Ok(None);
        };
        self.inner.limited.mark(queue, true);
        let at = now();
        let leased: i64 =
            sqlx::query_scalar(q(format!("SELECT COUNT(*) FROM {t} WHERE queue = ? AND visible_at > ? AND lease_token IS NOT NULL")))
                .bind(queue)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| map_err("dequeue", e))?;
        let room = (i64::from(cap) - leased).clamp(0, i64::try_from(max).unwrap_or(i64::MAX));
        if room == 0 {
            tx.commit().await.map_err(|e| map_err("dequeue", e))?;
            return Ok(Some(Vec::new()));
        }
        let rows = sqlx::query(q(format!(
            "SELECT seq, id, envelope, attempt, lease_ms, visible_at, replayed FROM {t} \
             WHERE queue = ? AND visible_at <= ? AND cancel = 0 \
             AND NOT EXISTS (SELECT 1 FROM {p} WHERE queue = ?) ORDER BY visible_at, seq LIMIT ? FOR UPDATE SKIP LOCKED",
            p = self.inner.paused
        )))
        .bind(queue)
        .bind(at)
        .bind(queue)
        .bind(room)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| map_err("dequeue", e))?;
        self.lease(tx, queue, rows, at).await.map(Some)
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

    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let l = &self.inner.limits;
        let query = match limits.max_leased {
            Some(n) => sqlx::query(q(format!(
                "INSERT INTO {l} (queue, max_leased) VALUES (?, ?) ON DUPLICATE KEY UPDATE max_leased = VALUES(max_leased)"
            )))
            .bind(queue)
            .bind(i32::try_from(n).unwrap_or(i32::MAX)),
            None => sqlx::query(q(format!("DELETE FROM {l} WHERE queue = ?"))).bind(queue),
        };
        self.inner.execute("limit a queue", query).await?;
        // A raised limit may make tasks claimable.
        self.inner.notify.notify_waiters();
        Ok(())
    }

    pub(super) async fn list_limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let rows: Vec<(String, Option<i32>)> =
            sqlx::query_as(q(format!("SELECT queue, max_leased FROM {} ORDER BY queue", self.inner.limits)))
                .fetch_all(&self.inner.pools.pool())
                .await
                .map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(|(queue, max)| (queue, stored_limits((max.map(i64::from), None, None, None, false)))).collect())
    }
}
