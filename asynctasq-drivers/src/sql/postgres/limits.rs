//! Queue limits on PostgreSQL ([`Capability::QueueLimits`], [`Capability::KeyedLimits`]; see
//! `asynctasq_core::limits`): a limited queue's claims lock its limits row, count the queue's
//! live leases (by key, with a cap per key) and take at most what the caps leave.
//!
//! # Why a transaction of its own
//! Under READ COMMITTED a statement reads from the snapshot it started with. A claim that
//! locked the limits row and counted the leases in one statement would count from before the
//! claim it waited for had committed, and both would take the same places. So the row is
//! locked by one statement and the leases counted by the next, whose snapshot sees every
//! claim that held the lock before. That costs a transaction (five round trips instead of
//! one) on limited queues only: the plain claim stays one statement, and skips a limited queue
//! (`NOT EXISTS` on the limits table), which sends its claims here. A cap per key adds the
//! count by key, the unparking of keys with room, and a pick over the due tasks in Rust
//! (`asynctasq_core::limits::pick`): a few more statements, under the same lock. So does a rate
//! ([`Capability::RateLimits`]): the starts of its window counted from the log (`{starts}`,
//! pruned of what is well past the window), and the claim's own starts logged; a rate for the
//! whole queue is counted and logged in the one call of the capped claim's function, a rate
//! per key here.
//!
//! # Why the leases are counted in a table of their own
//! Counting the tasks table's leased rows (`visible_at` past now, a token) read the index range
//! of the coming lease expiries, which also holds the dead entries of every task acked within a
//! lease: at 20,000 tasks/s and 30 s leases, 45,000 entries and 12 ms a count (`EXPLAIN
//! ANALYZE`), which held a non-binding cap's drain to 0.3 of the plain one. So a limited
//! claim records each lease it takes in `{held}` (queue, seq, token, key), and the next claim
//! first deletes the records whose lease ended (a probe by `seq` each: acked, retried, expired
//! or taken over), then counts what is left: the live leases, at the cost of about as many
//! probes as there are leases. The claims read `held` by index scans only (bitmap scans off
//! for them): an index scan marks the dead entries it passes, so the next claim skips them,
//! where a bitmap scan reads every deleted record again until vacuum: with bitmap scans, a
//! non-binding cap drained at 0.32 of the plain rate; with index scans, 0.98.
//!
//! [`Capability::QueueLimits`]: asynctasq_core::Capability::QueueLimits
//! [`Capability::KeyedLimits`]: asynctasq_core::Capability::KeyedLimits
//! [`Capability::RateLimits`]: asynctasq_core::Capability::RateLimits

use std::collections::BTreeSet;

use asynctasq_core::DriverError;
use asynctasq_core::driver::QueueLimits;
use asynctasq_core::limits::{Counts, PARKED, RATE_LOG_SLACK, pick, scan_bound, unpark_room};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::{PostgresDriver, q};
use crate::sql::limited::{LimitsRow, NamedLimitsRow, QueueLog, counted, limits_row, named_limits, stored_limits};
use crate::sql::map_err;

pub(super) use crate::sql::limited::Limited;

/// Most parked keys one claim looks at for room.
const UNPARK_KEYS: i64 = 100;

/// The statements of queue limits, built once from the table names.
pub(super) struct LimitsSql {
    lock: String,
    prune: String,
    capped: String,
    leased: String,
    parked_keys: String,
    unpark: String,
    forget_key: String,
    candidates: String,
    lease: String,
    lease_uncounted: String,
    park: String,
    note_parked: String,
    unpark_all: String,
    forget_all: String,
    seed: String,
    drop_held: String,
    has: String,
    set: String,
    clear: String,
    list: String,
    prune_starts: String,
    started: String,
    queue_log: String,
    log_starts: String,
    log_queue_start: String,
    drop_starts: String,
}

/// The limits table's columns, in [`LimitsRow`]'s order.
const LIMITS_COLUMNS: &str = "max_leased::bigint, per_key::bigint, rate, rate_window_ms, rate_per_key";

impl LimitsSql {
    pub(super) fn new(t: &str, p: &str, l: &str, k: &str, h: &str, c: &str, st: &str) -> Self {
        Self {
            lock: format!("SELECT {LIMITS_COLUMNS} FROM {l} WHERE queue = $1 FOR UPDATE"),
            prune: format!(
                "DELETE FROM {h} AS h WHERE h.queue = $1 AND NOT EXISTS \
                 (SELECT 1 FROM {t} AS t WHERE t.seq = h.seq AND t.lease_token = h.token AND t.visible_at > $2)"
            ),
            // The claim of a queue capped in all or limited to a rate in all: the function of
            // migrations 15 and 16, in one call (the plain claim's columns; `seq` -1: no
            // limits, -2: limits per key).
            capped: format!("SELECT * FROM {c}($1, $2, $3, $4, $5, $6)"),
            leased: format!("SELECT limit_key, COUNT(*) FROM {h} WHERE queue = $1 GROUP BY limit_key"),
            parked_keys: format!("SELECT limit_key FROM {k} WHERE queue = $1 LIMIT {UNPARK_KEYS}"),
            unpark: format!(
                "UPDATE {t} SET visible_at = visible_at - {PARKED} WHERE seq IN ( \
                     SELECT seq FROM {t} WHERE queue = $1 AND limit_key = $2 AND visible_at >= {PARKED} ORDER BY seq LIMIT $3)"
            ),
            forget_key: format!("DELETE FROM {k} WHERE queue = $1 AND limit_key = $2"),
            candidates: format!(
                "SELECT seq, limit_key FROM {t} WHERE queue = $1 AND visible_at <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM {p} WHERE queue = $1) ORDER BY visible_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED"
            ),
            lease: format!(
                "WITH u AS (UPDATE {t} AS t SET attempt = t.attempt + 1, lease_token = $1, visible_at = $2 + t.lease_ms, holder = $3, started_at = $2 \
                            FROM (SELECT seq, visible_at FROM {t} WHERE seq = ANY($4)) AS c WHERE t.seq = c.seq \
                            RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at AS due, t.replayed, t.cancel, t.queue, t.limit_key), \
                      h AS (INSERT INTO {h} (queue, seq, token, limit_key) SELECT queue, seq, $1, limit_key FROM u \
                            ON CONFLICT (queue, seq) DO UPDATE SET token = EXCLUDED.token) \
                 SELECT seq, id, envelope, attempt, visible_at, due, replayed, cancel FROM u"
            ),
            // Under a rate alone no lease is counted, so none is recorded in `held`.
            lease_uncounted: format!(
                "UPDATE {t} AS t SET attempt = t.attempt + 1, lease_token = $1, visible_at = $2 + t.lease_ms, holder = $3, started_at = $2 \
                 FROM (SELECT seq, visible_at FROM {t} WHERE seq = ANY($4)) AS c WHERE t.seq = c.seq \
                 RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at AS due, t.replayed, t.cancel"
            ),
            park: format!("UPDATE {t} SET visible_at = visible_at + {PARKED} WHERE seq = ANY($1)"),
            note_parked: format!("INSERT INTO {k} (queue, limit_key) SELECT $1, UNNEST($2::text[]) ON CONFLICT DO NOTHING"),
            unpark_all: format!("UPDATE {t} SET visible_at = visible_at - {PARKED} WHERE queue = $1 AND visible_at >= {PARKED}"),
            forget_all: format!("DELETE FROM {k} WHERE queue = $1"),
            // The leases taken before the limit was set count too.
            seed: format!(
                "INSERT INTO {h} (queue, seq, token, limit_key) SELECT queue, seq, lease_token, limit_key FROM {t} \
                 WHERE queue = $1 AND lease_token IS NOT NULL AND visible_at > $2 AND visible_at < {PARKED} ON CONFLICT DO NOTHING"
            ),
            drop_held: format!("DELETE FROM {h} WHERE queue = $1"),
            has: format!("SELECT EXISTS (SELECT 1 FROM {l} WHERE queue = $1)"),
            set: format!(
                "INSERT INTO {l} (queue, max_leased, per_key, rate, rate_window_ms, rate_per_key) \
                 VALUES ($1, $2::integer, $3::integer, $4, $5, $6) \
                 ON CONFLICT (queue) DO UPDATE SET max_leased = EXCLUDED.max_leased, per_key = EXCLUDED.per_key, \
                 rate = EXCLUDED.rate, rate_window_ms = EXCLUDED.rate_window_ms, rate_per_key = EXCLUDED.rate_per_key"
            ),
            clear: format!("DELETE FROM {l} WHERE queue = $1"),
            list: format!("SELECT queue, {LIMITS_COLUMNS} FROM {l} ORDER BY queue"),
            prune_starts: format!("DELETE FROM {st} WHERE queue = $1 AND at <= $2"),
            started: format!(
                "SELECT limit_key, SUM(n)::bigint FROM {st} WHERE queue = $1 AND limit_key <> '' AND at > $2 GROUP BY limit_key"
            ),
            // A queue-wide rate's log, read by two probes (`QueueLog`).
            queue_log: format!(
                "SELECT l.at, l.cum + l.n, (SELECT cum FROM {st} WHERE queue = $1 AND limit_key = '' AND at > $2 ORDER BY at, cum LIMIT 1) \
                 FROM (SELECT NULL) AS one LEFT JOIN LATERAL \
                 (SELECT at, cum, n FROM {st} WHERE queue = $1 AND limit_key = '' ORDER BY at DESC, cum DESC LIMIT 1) AS l ON true"
            ),
            log_queue_start: format!("INSERT INTO {st} (queue, limit_key, at, n, cum) VALUES ($1, '', $2, $3, $4)"),
            log_starts: format!(
                "INSERT INTO {st} (queue, limit_key, at, n) SELECT $1, k, $2, n FROM UNNEST($3::text[], $4::bigint[]) AS u(k, n)"
            ),
            drop_starts: format!("DELETE FROM {st} WHERE queue = $1"),
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
        let err = |e| map_err("dequeue", e);
        // A queue capped in all is claimed by one call of the capped claim's function, from the
        // queue's claim cursor, and from the head when that finds nothing (as the plain claim).
        let pool = self.inner.exec();
        let capped = |low: i64| {
            sqlx::query(q(&sql.capped))
                .bind(claim.token)
                .bind(claim.now)
                .bind(claim.queue)
                .bind(claim.max)
                .bind(claim.holder)
                .bind(low)
                .fetch_all(&pool)
        };
        let low = self.inner.cursors.low(claim.queue);
        let mut rows = capped(low).await.map_err(err)?;
        if rows.is_empty() && low != i64::MIN {
            rows = capped(i64::MIN).await.map_err(err)?;
        }
        match rows.first().map(|row| row.get::<i64, _>(0)) {
            Some(-1) => {
                self.inner.limited.mark(claim.queue, false);
                return Ok(None);
            }
            Some(-2) => {}
            _ => {
                self.inner.limited.mark(claim.queue, true);
                return Ok(Some(rows));
            }
        }
        self.inner.limited.mark(claim.queue, true);
        let mut tx = self.inner.pools.pool().begin().await.map_err(err)?;
        // Index scans, which mark the dead entries of `held` they pass (a bitmap scan does not,
        // and reads them all again at every claim: see the module docs).
        sqlx::query("SET LOCAL enable_bitmapscan = off").execute(self.inner.on(&mut tx)).await.map_err(err)?;
        let row: Option<LimitsRow> =
            sqlx::query_as(q(&sql.lock)).bind(claim.queue).fetch_optional(self.inner.on(&mut tx)).await.map_err(err)?;
        let limits = row.map(stored_limits).unwrap_or_default();
        if !counted(&limits) {
            // The limits changed between the two looks: the next claim looks again.
            tx.commit().await.map_err(err)?;
            return Ok(Some(Vec::new()));
        }
        if limits.caps_leases() {
            sqlx::query(q(&sql.prune)).bind(claim.queue).bind(claim.now).execute(self.inner.on(&mut tx)).await.map_err(err)?;
        }
        let rows = self.claim_counted(&mut tx, claim, &limits).await?;
        tx.commit().await.map_err(err)?;
        Ok(Some(rows))
    }

    /// The claim of a queue with a cap per key or a rate, in `conn`'s transaction under the
    /// limits row's lock: live leases by key, starts in the rate's window, parked keys with room
    /// unparked, then the due tasks picked in order, leased or parked, and the starts logged.
    async fn claim_counted(&self, conn: &mut PgConnection, claim: &Claim<'_>, limits: &QueueLimits) -> Result<Vec<PgRow>, DriverError> {
        let sql = &self.inner.sql.limits;
        let err = |e| map_err("dequeue", e);
        let mut counts = Counts::default();
        if limits.caps_leases() {
            let leased: Vec<(Option<String>, i64)> =
                sqlx::query_as(q(&sql.leased)).bind(claim.queue).fetch_all(self.inner.on(&mut *conn)).await.map_err(err)?;
            counts.leased = leased.into_iter().map(|(k, n)| (k.unwrap_or_default(), usize::try_from(n).unwrap_or(0))).collect();
        }
        let mut queue_log = None;
        if let Some(rate) = limits.rate {
            let since = claim.now - i64::try_from(rate.window_ms).unwrap_or(i64::MAX);
            let old = since - RATE_LOG_SLACK as i64;
            sqlx::query(q(&sql.prune_starts)).bind(claim.queue).bind(old).execute(self.inner.on(&mut *conn)).await.map_err(err)?;
            if rate.per_key {
                let started: Vec<(String, i64)> = sqlx::query_as(q(&sql.started))
                    .bind(claim.queue)
                    .bind(since)
                    .fetch_all(self.inner.on(&mut *conn))
                    .await
                    .map_err(err)?;
                counts.started = started.into_iter().map(|(k, n)| (k, usize::try_from(n).unwrap_or(0))).collect();
            } else {
                let log = QueueLog::read(
                    sqlx::query_as(q(&sql.queue_log))
                        .bind(claim.queue)
                        .bind(since)
                        .fetch_one(self.inner.on(&mut *conn))
                        .await
                        .map_err(err)?,
                );
                counts.started.insert(String::new(), log.started());
                queue_log = Some(log);
            }
        }
        let room = limits.room(usize::try_from(claim.max).unwrap_or(0), &counts);
        // Only limits per key park: without them, setting the limits unparked every task.
        let parked: Vec<String> = if limits.keyed() {
            sqlx::query_scalar(q(&sql.parked_keys)).bind(claim.queue).fetch_all(self.inner.on(&mut *conn)).await.map_err(err)?
        } else {
            Vec::new()
        };
        for key in parked {
            let free = unpark_room(&key, limits, &counts);
            if free == 0 {
                continue;
            }
            let back = sqlx::query(q(&sql.unpark))
                .bind(claim.queue)
                .bind(&key)
                .bind(free as i64)
                .execute(self.inner.on(&mut *conn))
                .await
                .map_err(err)?;
            if back.rows_affected() < free as u64 {
                sqlx::query(q(&sql.forget_key)).bind(claim.queue).bind(&key).execute(self.inner.on(&mut *conn)).await.map_err(err)?;
            }
        }
        if room == 0 {
            return Ok(Vec::new());
        }
        let candidates: Vec<(i64, Option<String>)> = sqlx::query_as(q(&sql.candidates))
            .bind(claim.queue)
            .bind(claim.now)
            .bind(if limits.keyed() { scan_bound(room) } else { room } as i64)
            .fetch_all(self.inner.on(&mut *conn))
            .await
            .map_err(err)?;
        let chosen = pick(candidates.iter().map(|(_, k)| k.as_deref()), limits, &counts, room);
        let starts = limits.starts_to_log(chosen.take.iter().map(|&i| candidates[i].1.as_deref()));
        if let (Some(log), [(key, n)]) = (&queue_log, starts.as_slice())
            && key.is_empty()
        {
            let (at, cum) = log.next(claim.now);
            let entry = sqlx::query(q(&sql.log_queue_start)).bind(claim.queue).bind(at).bind(*n as i64).bind(cum);
            entry.execute(self.inner.on(&mut *conn)).await.map_err(err)?;
        } else if !starts.is_empty() {
            let (keys, counts): (Vec<String>, Vec<i64>) = starts.into_iter().map(|(k, n)| (k, n as i64)).unzip();
            let log = sqlx::query(q(&sql.log_starts)).bind(claim.queue).bind(claim.now).bind(&keys).bind(&counts);
            log.execute(self.inner.on(&mut *conn)).await.map_err(err)?;
        }
        if !chosen.park.is_empty() {
            let seqs: Vec<i64> = chosen.park.iter().map(|&i| candidates[i].0).collect();
            sqlx::query(q(&sql.park)).bind(&seqs).execute(self.inner.on(&mut *conn)).await.map_err(err)?;
            let keys: BTreeSet<&str> = chosen.park.iter().filter_map(|&i| candidates[i].1.as_deref()).collect();
            let keys: Vec<&str> = keys.into_iter().collect();
            sqlx::query(q(&sql.note_parked)).bind(claim.queue).bind(&keys).execute(self.inner.on(&mut *conn)).await.map_err(err)?;
        }
        let seqs: Vec<i64> = chosen.take.iter().map(|&i| candidates[i].0).collect();
        let lease = if limits.caps_leases() { &sql.lease } else { &sql.lease_uncounted };
        sqlx::query(q(lease))
            .bind(claim.token)
            .bind(claim.now)
            .bind(claim.holder)
            .bind(&seqs)
            .fetch_all(self.inner.on(&mut *conn))
            .await
            .map_err(err)
    }

    /// Whether `queue` has a limit, asked when the plain claim found nothing (it skips a
    /// limited queue); remembered, so the next claims go to the limited path at once.
    pub(super) async fn is_limited(&self, queue: &str) -> Result<bool, DriverError> {
        let limited: bool = sqlx::query_scalar(q(&self.inner.sql.limits.has))
            .bind(queue)
            .fetch_one(&self.inner.exec())
            .await
            .map_err(|e| map_err("dequeue", e))?;
        self.inner.limited.mark(queue, limited);
        Ok(limited)
    }

    /// Stores `limits` for `queue`. Without limits per key, nothing holds the queue's parked
    /// tasks back any more: they are unparked in the same transaction; without a rate, its log
    /// of starts goes.
    pub(super) async fn store_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let sql = &self.inner.sql.limits;
        let err = |e| map_err("limit a queue", e);
        let mut tx = self.inner.pools.pool().begin().await.map_err(err)?;
        if limits.is_none() {
            sqlx::query(q(&sql.clear)).bind(queue).execute(self.inner.on(&mut tx)).await.map_err(err)?;
            sqlx::query(q(&sql.drop_held)).bind(queue).execute(self.inner.on(&mut tx)).await.map_err(err)?;
        } else {
            let (max_leased, per_key, rate, window_ms, rate_per_key) = limits_row(&limits);
            let query = sqlx::query(q(&sql.set)).bind(queue).bind(max_leased).bind(per_key).bind(rate).bind(window_ms).bind(rate_per_key);
            query.execute(self.inner.on(&mut tx)).await.map_err(err)?;
            sqlx::query(q(&sql.seed)).bind(queue).bind(crate::sql::now()).execute(self.inner.on(&mut tx)).await.map_err(err)?;
        }
        if limits.rate.is_none() {
            sqlx::query(q(&sql.drop_starts)).bind(queue).execute(self.inner.on(&mut tx)).await.map_err(err)?;
        }
        if !limits.keyed() {
            sqlx::query(q(&sql.unpark_all)).bind(queue).execute(self.inner.on(&mut tx)).await.map_err(err)?;
            sqlx::query(q(&sql.forget_all)).bind(queue).execute(self.inner.on(&mut tx)).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    pub(super) async fn list_limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let rows: Vec<NamedLimitsRow> =
            sqlx::query_as(q(&self.inner.sql.limits.list)).fetch_all(&self.inner.exec()).await.map_err(|e| map_err("list limits", e))?;
        Ok(rows.into_iter().map(named_limits).collect())
    }
}
