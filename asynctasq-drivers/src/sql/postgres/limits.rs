//! Queue limits on PostgreSQL ([`Capability::QueueLimits`]): a limited queue's claims lock its
//! limits row, count the queue's live leases and take at most the cap less that count.
//!
//! # Why a transaction of its own
//! Under READ COMMITTED a statement reads from the snapshot it started with. A claim that
//! locked the limits row and counted the leases in one statement would count from before the
//! claim it waited for had committed, and both would take the same places. So the row is
//! locked by one statement and the leases counted by the next, whose snapshot sees every
//! claim that held the lock before. That costs a transaction (four round trips instead of
//! one) on limited queues only: the plain claim stays one statement, and skips a limited queue
//! (`NOT EXISTS` on the limits table), which sends its claims here.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits

use asynctasq_core::DriverError;
use asynctasq_core::driver::QueueLimits;
use sqlx::postgres::PgRow;

use super::{PostgresDriver, q};
use crate::sql::map_err;

pub(super) use crate::sql::limited::Limited;

/// The statements of queue limits, built once from the table names.
pub(super) struct LimitsSql {
    lock: String,
    claim: String,
    has: String,
    set: String,
    clear: String,
    list: String,
}

impl LimitsSql {
    pub(super) fn new(t: &str, p: &str, l: &str) -> Self {
        Self {
            lock: format!("SELECT max_leased FROM {l} WHERE queue = $1 FOR UPDATE"),
            // The plain claim's columns, from every due task (no claim cursor: the count is the
            // work here), at most the cap less the live leases.
            claim: format!(
                "WITH c AS (SELECT seq, visible_at FROM {t} WHERE queue = $3 AND visible_at <= $2 \
                            AND NOT EXISTS (SELECT 1 FROM {p} WHERE queue = $3) \
                            ORDER BY visible_at, seq \
                            LIMIT GREATEST(0, LEAST($4, $6 - (SELECT COUNT(*) FROM {t} \
                                WHERE queue = $3 AND visible_at > $2 AND lease_token IS NOT NULL))) \
                            FOR UPDATE SKIP LOCKED) \
                 UPDATE {t} AS t SET attempt = t.attempt + 1, lease_token = $1, visible_at = $2 + t.lease_ms, holder = $5, started_at = $2 FROM c \
                 WHERE t.seq = c.seq RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at, t.replayed, t.cancel"
            ),
            has: format!("SELECT EXISTS (SELECT 1 FROM {l} WHERE queue = $1)"),
            set: format!(
                "INSERT INTO {l} (queue, max_leased) VALUES ($1, $2) ON CONFLICT (queue) DO UPDATE SET max_leased = EXCLUDED.max_leased"
            ),
            clear: format!("DELETE FROM {l} WHERE queue = $1"),
            list: format!("SELECT queue, max_leased FROM {l} ORDER BY queue"),
        }
    }
}

/// What a claim binds, shared by the plain and the limited claim.
pub(super) struct Claim<'a> {
    pub(super) token: i64,
    pub(super) now: i64,
    pub(super) queue: &'a str,
    pub(super) max: i64,
    pub(super) holder: Option<&'a str>,
}

impl PostgresDriver {
    /// Claims of a limited queue, in a transaction of their own (see the module docs); `None`
    /// when the queue has no limit (any more), for the plain claim to take it.
    pub(super) async fn claim_limited(&self, claim: &Claim<'_>) -> Result<Option<Vec<PgRow>>, DriverError> {
        let sql = &self.inner.sql.limits;
        let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("dequeue", e))?;
        let cap: Option<Option<i32>> =
            sqlx::query_scalar(q(&sql.lock)).bind(claim.queue).fetch_optional(&mut *tx).await.map_err(|e| map_err("dequeue", e))?;
        let Some(Some(cap)) = cap else {
            self.inner.limited.mark(claim.queue, false);
            return Ok(None);
        };
        self.inner.limited.mark(claim.queue, true);
        let rows = sqlx::query(q(&sql.claim))
            .bind(claim.token)
            .bind(claim.now)
            .bind(claim.queue)
            .bind(claim.max)
            .bind(claim.holder)
            .bind(i64::from(cap))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| map_err("dequeue", e))?;
        tx.commit().await.map_err(|e| map_err("dequeue", e))?;
        Ok(Some(rows))
    }

    /// Whether `queue` has a limit, asked when the plain claim found nothing (it skips a
    /// limited queue); remembered, so the next claims go to the limited path at once.
    pub(super) async fn is_limited(&self, queue: &str) -> Result<bool, DriverError> {
        let limited: bool = sqlx::query_scalar(q(&self.inner.sql.limits.has))
            .bind(queue)
            .fetch_one(&self.inner.pools.pool())
            .await
            .map_err(|e| map_err("dequeue", e))?;
        self.inner.limited.mark(queue, limited);
        Ok(limited)
    }

    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let sql = &self.inner.sql.limits;
        let query = match limits.max_leased {
            Some(n) => sqlx::query(q(&sql.set)).bind(queue).bind(i32::try_from(n).unwrap_or(i32::MAX)),
            None => sqlx::query(q(&sql.clear)).bind(queue),
        };
        self.inner.execute("limit a queue", query).await?;
        Ok(())
    }

    pub(super) async fn list_limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let rows: Vec<(String, Option<i32>)> = sqlx::query_as(q(&self.inner.sql.limits.list))
            .fetch_all(&self.inner.pools.pool())
            .await
            .map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(|(queue, max)| (queue, QueueLimits::default().with_max_leased(max.map(|n| n.max(0) as u32)))).collect())
    }
}
