//! The SQLite driver: the embedded default, no server needed.
//!
//! # Schema
//! Three tables, created by the migrations in `migrations/sqlite/` (applied on connect, tracked
//! in `asynctasq_migrations`, so they live beside an application's own sqlx migrations):
//!
//! * `asynctasq_tasks`: one row per live task. `visible_at` (Unix ms) is the due time while the
//!   task waits and the lease expiry while it is leased, so "ready" is a single index range
//!   `(queue, visible_at <= now)` for new tasks, retries and tasks of crashed workers alike; no
//!   reaper is needed. `lease_token` is a random 64-bit fence set by each claim.
//! * `asynctasq_dead`: dead tasks with the error, attempt count and time.
//! * `asynctasq_totals`: tasks acked and dead-lettered per queue and day, for `queue status`,
//!   counted by a trigger on the delete that settles each task (so an ack stays one statement).
//! * A succeeded task is kept in its own row until its time to live passes: the ack's one
//!   `UPDATE` clears the lease, sets `result` and `kept_until`, and moves `visible_at` to
//!   2^62 (`KEPT`) plus the ack's time, above every due time (migration 0011). Live
//!   tasks are the range of the due index below it. The claims' once-a-second sweep deletes
//!   expired ones by a partial index on `kept_until`.
//! * `asynctasq_results`: cancelled tasks kept until their time to live passes (a trigger
//!   deletes each live row as its record goes in), and succeeded tasks kept before 0011.
//!
//! A cancel of a leased task sets the live row's `cancel` (the kept record's time to live):
//! claims skip the row, its lease extension reports the cancel, and the once-a-second sweep
//! settles it as cancelled once no lease holds it (a partial index holds the flagged rows).
//!
//! Settled rows are deleted (ack), moved (dead-letter, cancel) or kept in place below the live
//! ones (a kept result).
//!
//! # Concurrency and speed
//! The database runs in WAL mode with `synchronous = NORMAL` (durable against process crashes;
//! a power loss may drop the last commits). A claim is one `UPDATE … RETURNING` over the due
//! index, acks of many tasks are one `DELETE` joined against a JSON list of `(seq, token)`
//! pairs, and bulk enqueue is multi-row `INSERT`s in one transaction, so each round trip to
//! SQLite serves many tasks.
//!
//! # Waking workers
//! Every write that makes a task ready signals handles of the same [`SqliteDriver`] (clones
//! share it) at once. Other processes writing the same file are noticed by a fallback poll
//! ([`SqliteConfig::poll_interval`], 250 ms by default); SQLite offers no cross-process
//! notification.

mod limits;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use asynctasq_core::DriverError;
use asynctasq_core::driver::TaskState;
use asynctasq_core::driver::{
    Ack, CancelOutcome, Capability, DeadSelector, DeadTask, DeleteOutcome, Delivery, Driver, EnqueueOutcome, Lease, QueueLimits,
    QueueStats, ScheduleState, ServerInfo, TaskRecord, Waiting, WorkerInfo,
};
use asynctasq_core::envelope::{Envelope, TaskId, UnixMillis, validate_queue_name};
use asynctasq_core::progress::Progress;
use asynctasq_core::unique::{UniqueLock, until_code, until_of};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use super::unique;
use super::{
    Found, Sweeper, dead_task, delivery, held, map_err, migrator, ms, now, parse_token, schema_state, task_record, wait_for_due,
    worker_rows,
};
use crate::consumer::Consumer;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tasks and dead tables", include_str!("../../../migrations/sqlite/0001_tasks.sql")),
    (2, "worker registry", include_str!("../../../migrations/sqlite/0002_workers.sql")),
    (3, "settled totals per queue", include_str!("../../../migrations/sqlite/0003_totals.sql")),
    (4, "replayed mark on tasks", include_str!("../../../migrations/sqlite/0004_replayed.sql")),
    (5, "kept results", include_str!("../../../migrations/sqlite/0005_results.sql")),
    (6, "cancellation", include_str!("../../../migrations/sqlite/0006_cancel.sql")),
    (7, "task progress", include_str!("../../../migrations/sqlite/0007_progress.sql")),
    (8, "error history", include_str!("../../../migrations/sqlite/0008_errors.sql")),
    (9, "dead expiry", include_str!("../../../migrations/sqlite/0009_dead_expiry.sql")),
    (10, "lease holder", include_str!("../../../migrations/sqlite/0010_holder.sql")),
    (11, "results kept in place", include_str!("../../../migrations/sqlite/0011_kept_in_place.sql")),
    (12, "started time", include_str!("../../../migrations/sqlite/0012_started.sql")),
    (13, "paused queues", include_str!("../../../migrations/sqlite/0013_paused.sql")),
    (14, "unique keys", include_str!("../../../migrations/sqlite/0014_unique.sql")),
    (15, "schedules", include_str!("../../../migrations/sqlite/0015_schedules.sql")),
    (16, "queue limits", include_str!("../../../migrations/sqlite/0016_limits.sql")),
    (17, "queue rates", include_str!("../../../migrations/sqlite/0017_rates.sql")),
];
/// Rows per INSERT statement in bulk enqueue (at most 6 binds each and one more, well under
/// SQLite's 32766).
const INSERT_CHUNK: usize = 1000;

/// Settings of a [`SqliteDriver`].
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db` (created if missing) or `sqlite::memory:`.
    pub url: String,
    /// Connections in the pool (default 1). SQLite has one writer at a time, and nearly every
    /// driver call writes; with several connections they contend for the write lock, and
    /// SQLite's busy handler waits in millisecond steps. One connection queues this process's
    /// calls instead (measured: ~20% more throughput and a third of the latency). Other
    /// processes on the same file still wait up to `busy_timeout`.
    pub max_connections: u32,
    /// How long a write waits for another process's write lock before failing (default 5 s).
    pub busy_timeout: Duration,
    /// How often a waiting worker re-checks for tasks written by *other processes* (default
    /// 250 ms). Writes through the same driver wake waiting workers at once.
    pub poll_interval: Duration,
    /// Apply pending migrations on connect (default true; `asynctasq migrate --dry-run` and
    /// `doctor` connect without).
    pub migrate: bool,
}

impl SqliteConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 1,
            busy_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            migrate: true,
        }
    }

    /// Settings from a URL: `sqlite://PATH?migrate=false&max_connections=4&busy_timeout=5s&poll_interval=250ms`
    /// (SQLite's own `mode`, `cache`, `immutable` and `vfs` pass through). An unknown option is an
    /// error naming it.
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        let mut q = crate::url::Query::parse("SQLite", url);
        let mut config = Self::new(q.base());
        q.set_flag("migrate", &mut config.migrate)?;
        q.set_number("max_connections", &mut config.max_connections)?;
        q.set_duration("busy_timeout", &mut config.busy_timeout)?;
        q.set_duration("poll_interval", &mut config.poll_interval)?;
        config.url = q.finish(&["migrate", "max_connections", "busy_timeout", "poll_interval"], &["mode", "cache", "immutable", "vfs"])?;
        Ok(config)
    }
}

/// Tasks in a SQLite database. Cloning gives another handle on the same pool.
#[derive(Clone, Debug)]
pub struct SqliteDriver {
    pool: SqlitePool,
    notify: Arc<Notify>,
    poll_interval: Duration,
    sweeper: Arc<Sweeper>,
    consumer: Arc<Consumer>,
    /// Queues found with a cap per key, whose claims take the keyed claim (`limits.rs`).
    limited: Arc<crate::sql::limited::Limited>,
}

impl SqliteDriver {
    /// The records of `ids` (at most [`super::FIND_BATCH`]) stored now, in one statement, in
    /// no particular order; an id stored nowhere has none.
    async fn find_many(&self, ids: &[Vec<u8>]) -> Result<Vec<TaskRecord>, DriverError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // `now` is ?1, the ids ?2 on.
        let list = format!("IN ({})", (2..ids.len() + 2).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "));
        let sql = super::find_sql("asynctasq_tasks", "asynctasq_dead", "asynctasq_results", [list.as_str(); 3], ["?1"; 2], true);
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now());
        for id in ids {
            query = query.bind(id.as_slice());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(|e| map_err("find", e))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (queue, envelope): (String, Vec<u8>) = (row.get(0), row.get(1));
                let (leased, found) = (row.get::<i64, _>(4) == 1, Found::of(row.get(6)));
                let cancel_requested = row.get::<i64, _>(8) == 1;
                let id = TaskId::from_slice(&row.get::<Vec<u8>, _>(13)).unwrap_or_default();
                task_record(
                    id,
                    &queue,
                    &envelope,
                    row.get::<i64, _>(2) as u32,
                    row.get(3),
                    leased,
                    row.get(5),
                    found,
                    row.get(7),
                    cancel_requested,
                    row.get(9),
                    row.get(10),
                )
                .with_holder(row.get(11))
                .with_started(row.get::<Option<i64>, _>(12).map(|at| at.max(0) as u64))
            })
            .collect())
    }

    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Self::connect_with(SqliteConfig::from_url(url)?).await
    }

    /// Opens the database described by `config` and applies migrations if asked.
    pub async fn connect_with(config: SqliteConfig) -> Result<Self, DriverError> {
        let options = SqliteConnectOptions::from_str(&config.url)
            .map_err(|e| DriverError::Config(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout);
        let in_memory = config.url.contains(":memory:") || config.url.contains("mode=memory");
        let mut pool = SqlitePoolOptions::new().max_connections(if in_memory { 1 } else { config.max_connections.max(1) });
        if in_memory {
            // Each connection to `:memory:` is a separate database: keep exactly one, forever.
            pool = pool.min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        let pool = pool.connect_with(options).await.map_err(|e| match e {
            sqlx::Error::Database(_) | sqlx::Error::Io(_) => DriverError::unavailable(
                format!("cannot open the SQLite database {} (check the path exists and is writable)", config.url),
                e,
            ),
            other => map_err(&format!("cannot open the SQLite database {}", config.url), other),
        })?;
        let driver = Self {
            pool,
            notify: Arc::new(Notify::new()),
            poll_interval: config.poll_interval,
            sweeper: Arc::default(),
            consumer: Arc::default(),
            limited: Arc::default(),
        };
        if config.migrate {
            driver.migrate().await?;
        }
        Ok(driver)
    }

    /// Applies pending migrations (idempotent; `connect` already does this).
    pub async fn migrate(&self) -> Result<(), DriverError> {
        migrator(MIGRATIONS, "asynctasq", '"')
            .run(&self.pool)
            .await
            .map_err(|e| DriverError::backend("applying SQLite migrations failed", e))
    }

    /// The connection pool, for transactional enqueue and for tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores tasks inside the caller's transaction (or on any connection of this database):
    /// they exist exactly when that transaction commits. Waiting workers of this driver are
    /// woken at once and find the tasks when the commit lands, or at their next poll.
    ///
    /// ```no_run
    /// # async fn f(driver: asynctasq_drivers::SqliteDriver, envelope: asynctasq_core::Envelope) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = driver.pool().begin().await?;
    /// // ... the caller's own writes on &mut *tx ...
    /// driver.enqueue_in(&mut tx, &[envelope]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in(&self, conn: &mut SqliteConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        if tasks.iter().any(|t| t.unique.is_some()) {
            return self.enqueue_unique(conn, tasks).await;
        }
        self.insert(conn, tasks).await
    }

    /// Enqueues a batch holding unique tasks: reads the locks of its keys and their owners'
    /// states, writes the locks it takes and the holders it rewrites, then inserts the rest
    /// (see `sql::unique`). The caller's transaction makes it one step.
    async fn enqueue_unique(&self, conn: &mut SqliteConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let at = now();
        let keys = serde_json::to_string(&unique::keys(tasks)).map_err(|e| DriverError::Config(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT l.queue, l.unique_key, l.owner, l.hold, l.expires_at, t.attempt, t.lease_token IS NOT NULL, \
                    t.cancel > 0 OR t.kept_until IS NOT NULL \
             FROM json_each(?1) k JOIN asynctasq_unique l ON l.queue = k.value ->> 0 AND l.unique_key = k.value ->> 1 \
             LEFT JOIN asynctasq_tasks t ON t.id = l.owner",
        )
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_err("enqueue", e))?;
        let mut held = unique::Held::new();
        for row in rows {
            let Some(owner) = TaskId::from_slice(&row.get::<Vec<u8>, _>(2)) else { continue };
            let lock = UniqueLock { owner, until: until_of(row.get(3)), expires_at: row.get::<i64, _>(4) as u64 };
            let state = row.get::<Option<i64>, _>(5).map(|attempt| (attempt, row.get(6), row.get(7)));
            held.insert((row.get(0), row.get(1)), (lock, unique::owner_state(state)));
        }
        let plan = unique::plan(tasks, &held, at as u64)?;
        if !plan.take.is_empty() {
            let rows: Vec<_> = plan
                .take
                .iter()
                .map(|t| {
                    let mut owner = String::new();
                    push_hex(&mut owner, t.lock.owner.as_bytes());
                    (&t.queue, &t.key, owner, until_code(t.lock.until), t.lock.expires_at)
                })
                .collect();
            sqlx::query(
                "INSERT INTO asynctasq_unique (queue, unique_key, owner, hold, expires_at) \
                 SELECT value ->> 0, value ->> 1, unhex(value ->> 2), value ->> 3, value ->> 4 FROM json_each(?1) WHERE true \
                 ON CONFLICT (queue, unique_key) DO UPDATE SET owner = excluded.owner, hold = excluded.hold, expires_at = excluded.expires_at",
            )
            .bind(serde_json::to_string(&rows).map_err(|e| DriverError::Config(e.to_string()))?)
            .execute(&mut *conn)
            .await
            .map_err(|e| map_err("enqueue", e))?;
        }
        for r in &plan.rewrite {
            sqlx::query(
                "UPDATE asynctasq_tasks SET envelope = ?2, lease_ms = ?3, visible_at = COALESCE(?4, visible_at) \
                 WHERE id = ?1 AND attempt = 0 AND lease_token IS NULL",
            )
            .bind(r.id.as_bytes().as_slice())
            .bind(r.envelope.as_slice())
            .bind(r.lease_ms as i64)
            .bind(r.due.map(|d| d as i64))
            .execute(&mut *conn)
            .await
            .map_err(|e| map_err("enqueue", e))?;
        }
        let inserted = self.insert(conn, &plan.insert).await?;
        Ok(plan.outcomes(inserted))
    }

    /// Inserts tasks, each unless its id is stored.
    async fn insert(&self, conn: &mut SqliteConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let mut rows = Vec::with_capacity(tasks.len());
        for t in tasks {
            validate_queue_name(&t.queue)?;
            rows.push((t, t.encode()?));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        let at = now();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let keyed = chunk.iter().any(|(t, _)| t.key.is_some());
            let insert = || {
                let mut q = sqlx::query(insert_sql(chunk.len(), keyed));
                for (t, bytes) in chunk {
                    q = q
                        .bind(t.id.as_bytes().as_slice())
                        .bind(t.queue.as_str())
                        .bind(bytes.as_slice())
                        .bind(t.lease_ms as i64)
                        .bind(t.not_before as i64);
                    if keyed {
                        q = q.bind(t.key.as_deref());
                    }
                }
                q.bind(at)
            };
            let mut inserted = insert().execute(&mut *conn).await.map_err(|e| map_err("enqueue", e))?.rows_affected();
            if inserted == chunk.len() as u64 {
                outcomes.extend(std::iter::repeat_n(EnqueueOutcome::New, chunk.len()));
                continue;
            }
            // A succeeded task kept in place whose time to live has passed (not swept yet) frees
            // its id: deleted, and the chunk inserted again (skipping what went in).
            let mut ids = String::from("[");
            for (i, (t, _)) in chunk.iter().enumerate() {
                ids.push_str(if i == 0 { "\"" } else { ",\"" });
                push_hex(&mut ids, t.id.as_bytes());
                ids.push('"');
            }
            ids.push(']');
            let freed =
                sqlx::query("DELETE FROM asynctasq_tasks WHERE kept_until <= ?1 AND id IN (SELECT unhex(value) FROM json_each(?2))")
                    .bind(at)
                    .bind(ids)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| map_err("enqueue", e))?;
            if freed.rows_affected() > 0 {
                inserted += insert().execute(&mut *conn).await.map_err(|e| map_err("enqueue", e))?.rows_affected();
            }
            // Some ids were already stored. The rows this statement inserted got the highest
            // rowids (one writer at a time, each new rowid one past the largest), so they are
            // the last `inserted` rows by `seq`.
            let ids: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT id FROM asynctasq_tasks WHERE seq > (SELECT max(seq) FROM asynctasq_tasks) - ? ORDER BY seq")
                    .bind(inserted as i64)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| map_err("enqueue", e))?;
            let stored: HashSet<TaskId> = ids.iter().filter_map(|id| TaskId::from_slice(id)).collect();
            outcomes.extend(EnqueueOutcome::from_stored(chunk.iter().map(|(t, _)| t.id), &stored));
        }
        self.woke();
        Ok(outcomes)
    }

    fn woke(&self) {
        self.notify.notify_waiters();
    }

    /// Deletes the kept results whose time to live has passed, and settles as cancelled the
    /// flagged tasks no lease holds any more (see [`Sweeper`]). A failure costs nothing but
    /// time until the next sweep: expired records are never reported, and no claim delivers a
    /// flagged task.
    async fn sweep(&self, now: i64) {
        let swept =
            sqlx::query("DELETE FROM asynctasq_results WHERE id IN (SELECT id FROM asynctasq_results WHERE expires_at <= ?1 LIMIT 10000)")
                .bind(now)
                .execute(&self.pool)
                .await;
        let dead =
            sqlx::query("DELETE FROM asynctasq_dead WHERE seq IN (SELECT seq FROM asynctasq_dead WHERE expires_at <= ?1 LIMIT 10000)")
                .bind(now)
                .execute(&self.pool)
                .await;
        // Kept in place: no lease, so `asynctasq_tasks_settled` does not count them again.
        let kept =
            sqlx::query("DELETE FROM asynctasq_tasks WHERE seq IN (SELECT seq FROM asynctasq_tasks WHERE kept_until <= ?1 LIMIT 10000)")
                .bind(now)
                .execute(&self.pool)
                .await;
        // By the partial index of flagged rows; the trigger `asynctasq_results_kept` deletes
        // each live row as its record goes in.
        let cancelled = sqlx::query(
            "INSERT OR REPLACE INTO asynctasq_results (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
             SELECT id, queue, envelope, attempt, NULL, ?1, ?1 + cancel, 'cancelled' FROM asynctasq_tasks \
             WHERE cancel > 0 AND (lease_token IS NULL OR visible_at <= ?1) LIMIT 1000",
        )
        .bind(now)
        .execute(&self.pool)
        .await;
        let unique = sqlx::query(
            "DELETE FROM asynctasq_unique WHERE (queue, unique_key) IN \
             (SELECT queue, unique_key FROM asynctasq_unique WHERE expires_at <= ?1 LIMIT 10000)",
        )
        .bind(now)
        .execute(&self.pool)
        .await;
        // A full batch of any table: more are waiting, and the next sweep comes sooner.
        let most = [&swept, &dead, &kept, &unique].iter().filter_map(|r| r.as_ref().ok()).map(|r| r.rows_affected()).max();
        self.sweeper.swept(now, most.unwrap_or(0));
        if let Err(e) = swept.and(dead).and(kept).and(cancelled).and(unique) {
            tracing::debug!(error = %e, "sweeping expired results failed; the next claim tries again");
        }
    }

    /// Keeps the task at `seq` as cancelled for `keep` (`None`: as long as its cancel asked),
    /// when `token` still holds its lease and, with `None`, a cancel flagged it. The trigger
    /// `asynctasq_results_kept` deletes the live row. Returns whether it was settled.
    async fn settle_cancelled_in(conn: &mut SqliteConnection, seq: i64, token: i64, keep: Option<Duration>) -> Result<bool, DriverError> {
        let keep = keep.map(ms);
        // Flagged first, so the totals trigger leaves the delete out.
        let flagged = sqlx::query(
            "UPDATE asynctasq_tasks SET cancel = MAX(COALESCE(?3, cancel), 1) WHERE seq = ?1 AND lease_token = ?2 AND (?3 IS NOT NULL OR cancel > 0)",
        )
        .bind(seq)
        .bind(token)
        .bind(keep)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_err("settle a cancelled task", e))?;
        if flagged.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT OR REPLACE INTO asynctasq_results (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
             SELECT id, queue, envelope, attempt, NULL, ?2, ?2 + COALESCE(?3, cancel), 'cancelled' FROM asynctasq_tasks WHERE seq = ?1",
        )
        .bind(seq)
        .bind(now())
        .bind(keep)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_err("settle a cancelled task", e))?;
        Ok(true)
    }
}

/// [`KEPT`](super::KEPT) as SQL text, for `concat!`.
macro_rules! kept {
    () => {
        "4611686018427387904"
    };
}

/// The insert of `rows` tasks that skips every id already stored, live (the unique index), dead
/// or kept as succeeded (until its time to live, the last bind): enqueue is idempotent by id.
/// It is one statement under SQLite's single write lock, so nothing can store or move an id
/// between the check and the insert. It returns no rows:
/// `RETURNING id` sends each row back from sqlx's SQLite thread on its own, which made bulk
/// enqueue 0.70 as fast; the row count tells whether anything was skipped.
fn insert_sql(rows: usize, keyed: bool) -> AssertSqlSafe<String> {
    // Tasks with a key (for per-key limits) carry it in a sixth column; a chunk without one
    // keeps the plain statement.
    let mut sql = String::from(if keyed {
        "INSERT INTO asynctasq_tasks (id, queue, envelope, lease_ms, visible_at, limit_key) \
         SELECT column1, column2, column3, column4, column5, column6 FROM (VALUES "
    } else {
        "INSERT INTO asynctasq_tasks (id, queue, envelope, lease_ms, visible_at) \
         SELECT column1, column2, column3, column4, column5 FROM (VALUES "
    });
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(if keyed { "(?,?,?,?,?,?)" } else { "(?,?,?,?,?)" });
    }
    // The WHERE also keeps SQLite from reading ON CONFLICT as part of a join.
    sql.push_str(
        ") AS v WHERE NOT EXISTS (SELECT 1 FROM asynctasq_dead d WHERE d.id = v.column1) \
         AND NOT EXISTS (SELECT 1 FROM asynctasq_results r WHERE r.id = v.column1 AND r.expires_at > ?) ON CONFLICT (id) DO NOTHING",
    );
    // Only placeholders are interpolated; every value is bound.
    AssertSqlSafe(sql)
}

#[async_trait]
impl Driver for SqliteDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("enqueue", e))?;
        let outcomes = self.enqueue_in(&mut tx, tasks).await?;
        tx.commit().await.map_err(|e| map_err("enqueue", e))?;
        self.woke();
        Ok(outcomes)
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        validate_queue_name(queue)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let token: i64 = fastrand::i64(..);
        let now = now();
        if self.limited.contains(queue)
            && let Some(got) = self.claim_counted(queue, max).await?
        {
            return Ok(got);
        }
        let holder = self.consumer.get();
        // A queue with a cap takes at most the cap less its live leases, counted in this very
        // statement (the write transaction excludes every other claim); without a limits row
        // the count is never run. A queue with a cap per key or a rate is left to the counted
        // claim (`limits.rs`).
        let rows = sqlx::query(concat!(
            "UPDATE asynctasq_tasks SET attempt = attempt + 1, lease_token = ?1, visible_at = ?2 + lease_ms, holder = ?5, started_at = ?2 \
             WHERE seq IN (SELECT seq FROM asynctasq_tasks WHERE queue = ?3 AND visible_at <= ?2 AND cancel = 0 \
                           AND NOT EXISTS (SELECT 1 FROM asynctasq_paused WHERE queue = ?3) \
                           AND NOT EXISTS (SELECT 1 FROM asynctasq_limits WHERE queue = ?3 AND (per_key IS NOT NULL OR rate IS NOT NULL)) \
                           ORDER BY visible_at, seq \
                           LIMIT COALESCE((SELECT MAX(0, MIN(?4, max_leased - ( \
                               SELECT COUNT(*) FROM asynctasq_tasks WHERE queue = ?3 AND visible_at > ?2 \
                               AND lease_token IS NOT NULL AND visible_at < ",
            kept!(),
            "))) FROM asynctasq_limits WHERE queue = ?3), ?4)) \
             RETURNING seq, id, envelope, attempt, visible_at, replayed",
        ))
        .bind(token)
        .bind(now)
        .bind(queue)
        .bind(max as i64)
        .bind(holder.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("dequeue", e))?;
        if self.sweeper.due(now) {
            self.sweep(now).await;
        }
        if rows.is_empty() && self.is_counted(queue).await? {
            return Ok(self.claim_counted(queue, max).await?.unwrap_or_default());
        }
        // RETURNING gives no order; the batch holds the earliest due, handed out by insertion.
        let mut rows = rows;
        rows.sort_unstable_by_key(|row| row.get::<i64, _>(0));
        Ok(rows
            .iter()
            .map(|row| {
                let (id, envelope): (Vec<u8>, Vec<u8>) = (row.get(1), row.get(2));
                delivery(queue, row.get(0), token, &id, &envelope, row.get::<i64, _>(3) as u32, row.get(4)).replayed(row.get(5))
            })
            .collect())
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        for q in queues {
            validate_queue_name(q)?;
        }
        let names = format!("[{}]", queues.iter().map(|q| format!("\"{q}\"")).collect::<Vec<_>>().join(","));
        let next_due: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT MIN(visible_at) FROM asynctasq_tasks WHERE queue IN (SELECT value FROM json_each(?1)) \
             AND queue NOT IN (SELECT queue FROM asynctasq_paused) AND visible_at < ",
            kept!()
        ))
        .bind(names)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_err("wait", e))?;
        wait_for_due(notified, next_due, timeout.min(self.poll_interval)).await;
        Ok(())
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        // `[seq, token, keep_ms, result as hex or null]` per ack, one JSON list for the batch.
        let mut list = String::from("[");
        let mut by_seq = std::collections::HashMap::with_capacity(acks.len());
        let (mut lost, mut keeps, mut all_keep) = (Vec::new(), false, true);
        for Ack { lease, keep, result } in acks {
            let Ok((seq, token)) = parse_token(lease) else {
                lost.push(lease.id);
                continue;
            };
            if !by_seq.is_empty() {
                list.push(',');
            }
            list.push_str(&format!("[{seq},{token},{},", ms(*keep)));
            match result {
                Some(r) => {
                    list.push('"');
                    push_hex(&mut list, r);
                    list.push_str("\"]");
                }
                None => list.push_str("null]"),
            }
            keeps |= !keep.is_zero();
            all_keep &= !keep.is_zero();
            by_seq.insert(seq, lease.id);
        }
        list.push(']');
        // The trigger `asynctasq_tasks_settled` counts each deleted row in the totals.
        let delete = sqlx::query_scalar(
            "DELETE FROM asynctasq_tasks WHERE seq IN ( \
                 SELECT t.seq FROM json_each(?1) AS j JOIN asynctasq_tasks AS t \
                 ON t.seq = j.value ->> 0 AND t.lease_token = j.value ->> 1 WHERE (j.value ->> 2) = 0) \
             RETURNING seq",
        )
        .bind(list.as_str());
        // The held rows that keep a record stay where they are, as succeeded (migration 0011):
        // no claim reaches a `visible_at` from `KEPT` on, and `asynctasq_tasks_kept` counts
        // them. A cancel that came too late for the run is dropped with the lease.
        let keep = sqlx::query_scalar(concat!(
            "UPDATE asynctasq_tasks AS t SET lease_token = NULL, visible_at = ",
            kept!(),
            " + ?2, kept_until = ?2 + (j.value ->> 2), \
             result = unhex(j.value ->> 3), cancel = 0, progress = NULL \
             FROM json_each(?1) AS j WHERE t.seq = j.value ->> 0 AND t.lease_token = j.value ->> 1 AND (j.value ->> 2) > 0 \
             RETURNING id",
        ))
        .bind(list.as_str())
        .bind(now());
        let (deleted, kept): (Vec<i64>, Vec<Vec<u8>>) = match (keeps, all_keep) {
            (false, _) => (delete.fetch_all(&self.pool).await.map_err(|e| map_err("ack", e))?, Vec::new()),
            (true, true) => (Vec::new(), keep.fetch_all(&self.pool).await.map_err(|e| map_err("ack", e))?),
            (true, false) => {
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("ack", e))?;
                let kept = keep.fetch_all(&mut *tx).await.map_err(|e| map_err("ack", e))?;
                let deleted = delete.fetch_all(&mut *tx).await.map_err(|e| map_err("ack", e))?;
                tx.commit().await.map_err(|e| map_err("ack", e))?;
                (deleted, kept)
            }
        };
        let kept: HashSet<TaskId> = kept.iter().filter_map(|id| TaskId::from_slice(id)).collect();
        by_seq.retain(|_, id| !kept.contains(id));
        for seq in deleted {
            by_seq.remove(&seq);
        }
        lost.extend(by_seq.into_values());
        Ok(lost)
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        let (seq, token) = parse_token(lease)?;
        // The failure joins the task's history (an empty error records nothing).
        let done = sqlx::query(
            "UPDATE asynctasq_tasks SET lease_token = NULL, visible_at = ?1, last_error = ?2, \
             errors = CASE WHEN ?2 = '' THEN errors \
                      ELSE json_insert(COALESCE(errors, '[]'), '$[#]', json_object('attempt', attempt, 'at', ?5, 'error', ?2, 'worker', holder)) END \
             WHERE seq = ?3 AND lease_token = ?4",
        )
        .bind(now().saturating_add(ms(delay)))
        .bind(error)
        .bind(seq)
        .bind(token)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("nack", e))?;
        held(done.rows_affected(), lease)?;
        self.woke();
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        let (seq, token) = parse_token(lease)?;
        let done = sqlx::query(
            "UPDATE asynctasq_tasks SET lease_token = NULL, visible_at = ?1, attempt = MAX(attempt - 1, 0) \
             WHERE seq = ?2 AND lease_token = ?3",
        )
        .bind(now())
        .bind(seq)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("release", e))?;
        held(done.rows_affected(), lease)?;
        self.woke();
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        let (seq, token) = parse_token(lease)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("dead-letter", e))?;
        // A cancelled task is not dead-lettered: it ends cancelled.
        if Self::settle_cancelled_in(&mut tx, seq, token, None).await? {
            return tx.commit().await.map_err(|e| map_err("dead-letter", e));
        }
        let at = now();
        let moved = sqlx::query(
            "INSERT INTO asynctasq_dead (id, queue, envelope, attempt, lease_ms, error, dead_at, errors, expires_at, started_at, limit_key) \
             SELECT id, queue, envelope, attempt, lease_ms, ?1, ?2, \
                    json_insert(COALESCE(errors, '[]'), '$[#]', json_object('attempt', attempt, 'at', ?2, 'error', ?1, 'worker', holder)), ?5, started_at, limit_key \
             FROM asynctasq_tasks WHERE seq = ?3 AND lease_token = ?4",
        )
        .bind(error)
        .bind(at)
        .bind(seq)
        .bind(token)
        .bind(at.saturating_add(ms(keep)))
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("dead-letter", e))?;
        held(moved.rows_affected(), lease)?;
        sqlx::query("DELETE FROM asynctasq_tasks WHERE seq = ?1")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("dead-letter", e))?;
        // The delete above is counted as failed by the trigger `asynctasq_tasks_settled`.
        tx.commit().await.map_err(|e| map_err("dead-letter", e))
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let (seq, token) = parse_token(lease)?;
        let expires_at = now().saturating_add(ms(by));
        // A flagged task's lease is not extended; its cancel is reported instead.
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE asynctasq_tasks SET visible_at = CASE WHEN cancel = 0 THEN ?1 ELSE visible_at END \
             WHERE seq = ?2 AND lease_token = ?3 RETURNING cancel",
        )
        .bind(expires_at)
        .bind(seq)
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| map_err("extend lease", e))?;
        match cancel {
            None => Err(DriverError::LeaseLost(lease.id)),
            Some(0) => Ok(Lease { expires_at: expires_at as u64, ..lease.clone() }),
            Some(_) => Err(DriverError::CancelRequested(lease.id)),
        }
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        validate_queue_name(queue)?;
        let at = now();
        let row = sqlx::query(concat!(
            // A parked task (from 2^50: see `limits.rs`) is ready, due at its time less the offset.
            "SELECT \
               COALESCE(SUM(visible_at <= ?2 OR visible_at >= 1125899906842624), 0), \
               COALESCE(SUM(visible_at > ?2 AND visible_at < 1125899906842624 AND lease_token IS NULL), 0), \
               COALESCE(SUM(visible_at > ?2 AND visible_at < 1125899906842624 AND lease_token IS NOT NULL), 0), \
               (SELECT COUNT(*) FROM asynctasq_dead WHERE queue = ?1), \
               MIN(CASE WHEN visible_at <= ?2 THEN visible_at WHEN visible_at >= 1125899906842624 THEN visible_at - 1125899906842624 END), \
               (SELECT COALESCE(SUM(succeeded), 0) FROM asynctasq_totals WHERE queue = ?1), \
               (SELECT COALESCE(SUM(failed), 0) FROM asynctasq_totals WHERE queue = ?1) \
             FROM asynctasq_tasks WHERE queue = ?1 AND visible_at < ",
            kept!()
        ))
        .bind(queue)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_err("stats", e))?;
        Ok(super::queue_stats(at, [0, 1, 2, 3].map(|i| row.get::<i64, _>(i)), row.get(4), [row.get(5), row.get(6)]))
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        sqlx::query_scalar(concat!(
            "SELECT DISTINCT queue FROM asynctasq_tasks WHERE visible_at < ",
            kept!(),
            " UNION SELECT DISTINCT queue FROM asynctasq_dead ORDER BY 1"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("list queues", e))
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let sql = match which {
            Waiting::Both => concat!(
                "DELETE FROM asynctasq_tasks WHERE queue = ?1 AND (lease_token IS NULL OR visible_at <= ?2) AND visible_at < ",
                kept!()
            ),
            // A parked task (from 2^50: see `limits.rs`) is ready, waiting for its key's room.
            Waiting::Ready => concat!(
                "DELETE FROM asynctasq_tasks WHERE queue = ?1 AND (visible_at <= ?2 OR (visible_at >= 1125899906842624 AND visible_at < ",
                kept!(),
                "))"
            ),
            Waiting::Scheduled => {
                "DELETE FROM asynctasq_tasks WHERE queue = ?1 AND lease_token IS NULL AND visible_at > ?2 AND visible_at < 1125899906842624"
            }
        };
        let at = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("purge", e))?;
        // A leased row deleted is counted as settled by `asynctasq_tasks_settled`; what a purge
        // removes with a lease on it (an expired one) is cleared first, so it is not counted.
        if which != Waiting::Scheduled {
            sqlx::query("UPDATE asynctasq_tasks SET lease_token = NULL WHERE queue = ?1 AND visible_at <= ?2 AND lease_token IS NOT NULL")
                .bind(queue)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("purge", e))?;
        }
        let done = sqlx::query(sql).bind(queue).bind(at).execute(&mut *tx).await.map_err(|e| map_err("purge", e))?;
        tx.commit().await.map_err(|e| map_err("purge", e))?;
        Ok(done.rows_affected())
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        validate_queue_name(queue)?;
        let rows = sqlx::query(
            "SELECT id, envelope, attempt, error, dead_at, errors FROM asynctasq_dead \
                 WHERE queue = ?1 AND (expires_at IS NULL OR expires_at > ?3) ORDER BY seq LIMIT ?2",
        )
        .bind(queue)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(now())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| map_err("list dead", e))?;
        Ok(rows
            .iter()
            .map(|row| {
                let (id, envelope): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                dead_task(queue, &id, &envelope, row.get::<i64, _>(2) as u32, row.get(3), row.get(4), row.get(5))
            })
            .collect())
    }

    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        // The statement's first row, as a lookup of one always took (results, live, dead).
        Ok(self.find_many(&[id.as_bytes().to_vec()]).await?.into_iter().next())
    }

    async fn list(&self, queue: &str, state: TaskState, offset: usize, limit: usize) -> Result<Vec<TaskRecord>, DriverError> {
        validate_queue_name(queue)?;
        let mut n = 0;
        let sql = super::list_sql("asynctasq_tasks", "asynctasq_dead", "asynctasq_results", state, true, || {
            n += 1;
            format!("?{n}")
        });
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(queue)
            .bind(now())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list tasks", e))?;
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::FIND_BATCH) {
            found.extend(self.find_many(chunk).await?);
        }
        Ok(super::in_order(&ids, found, state))
    }

    async fn dead_after(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<asynctasq_core::DeadPage, DriverError> {
        validate_queue_name(queue)?;
        let mut n = 0;
        let sql = super::dead_after_sql("asynctasq_dead", || {
            n += 1;
            format!("?{n}")
        });
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(queue)
            .bind(super::dead_cursor(after)?)
            .bind(now())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list dead tasks", e))?;
        let ids: Vec<Vec<u8>> = rows.iter().map(|(id, _)| id.clone()).collect();
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::FIND_BATCH) {
            found.extend(self.find_many(chunk).await?);
        }
        Ok(super::dead_page(rows, found, limit))
    }

    async fn delete(&self, id: TaskId) -> Result<DeleteOutcome, DriverError> {
        let (at, key) = (now(), id.as_bytes().as_slice());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("delete", e))?;
        // Whether it is leased, and whether it is a kept task past its time to live.
        let found: Option<(bool, bool)> = sqlx::query_as(
            "SELECT lease_token IS NOT NULL AND visible_at > ?2, kept_until IS NOT NULL AND kept_until <= ?2 \
             FROM asynctasq_tasks WHERE id = ?1",
        )
        .bind(key)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_err("delete", e))?;
        let outcome = match found {
            Some((true, _)) => DeleteOutcome::Leased,
            Some((false, expired)) => {
                // Its lease cleared first: `asynctasq_tasks_settled` counts only settled rows.
                for sql in ["UPDATE asynctasq_tasks SET lease_token = NULL WHERE id = ?1", "DELETE FROM asynctasq_tasks WHERE id = ?1"] {
                    sqlx::query(sql).bind(key).execute(&mut *tx).await.map_err(|e| map_err("delete", e))?;
                }
                if expired { DeleteOutcome::NotFound } else { DeleteOutcome::Deleted }
            }
            None => {
                let dead = sqlx::query("DELETE FROM asynctasq_dead WHERE id = ?1").bind(key).execute(&mut *tx).await;
                let kept = sqlx::query_scalar::<_, i64>("DELETE FROM asynctasq_results WHERE id = ?1 RETURNING expires_at")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await;
                let dead = dead.map_err(|e| map_err("delete", e))?.rows_affected() > 0;
                let kept = kept.map_err(|e| map_err("delete", e))?.is_some_and(|expires_at| expires_at > at);
                if dead || kept { DeleteOutcome::Deleted } else { DeleteOutcome::NotFound }
            }
        };
        tx.commit().await.map_err(|e| map_err("delete", e))?;
        Ok(outcome)
    }

    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<(), DriverError> {
        let (seq, token) = parse_token(lease)?;
        let done = sqlx::query("UPDATE asynctasq_tasks SET progress = ?1 WHERE seq = ?2 AND lease_token = ?3")
            .bind(progress.encode()?)
            .bind(seq)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("record progress", e))?;
        held(done.rows_affected(), lease)
    }

    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        let at = now();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("cancel", e))?;
        // Flagged first, whatever its state: a leased task keeps the flag; a waiting one goes
        // to the results as cancelled, its live row deleted by `asynctasq_results_kept` (and
        // left out of the totals for its flag).
        let leased: Option<bool> = sqlx::query_scalar(
            "UPDATE asynctasq_tasks SET cancel = MAX(?2, 1) WHERE id = ?1 AND kept_until IS NULL \
             RETURNING lease_token IS NOT NULL AND visible_at > ?3",
        )
        .bind(id.as_bytes().as_slice())
        .bind(ms(keep))
        .bind(at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| map_err("cancel", e))?;
        let outcome = match leased {
            Some(true) => CancelOutcome::Requested,
            Some(false) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO asynctasq_results (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
                     SELECT id, queue, envelope, attempt, NULL, ?2, ?2 + ?3, 'cancelled' FROM asynctasq_tasks WHERE id = ?1",
                )
                .bind(id.as_bytes().as_slice())
                .bind(at)
                .bind(ms(keep))
                .execute(&mut *tx)
                .await
                .map_err(|e| map_err("cancel", e))?;
                CancelOutcome::Removed
            }
            None => {
                let settled: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM asynctasq_dead WHERE id = ?1) \
                     OR EXISTS (SELECT 1 FROM asynctasq_results WHERE id = ?1 AND expires_at > ?2) \
                     OR EXISTS (SELECT 1 FROM asynctasq_tasks WHERE id = ?1 AND kept_until > ?2)",
                )
                .bind(id.as_bytes().as_slice())
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| map_err("cancel", e))?;
                if settled { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound }
            }
        };
        tx.commit().await.map_err(|e| map_err("cancel", e))?;
        Ok(outcome)
    }

    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        let (seq, token) = parse_token(lease)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("settle a cancelled task", e))?;
        if !Self::settle_cancelled_in(&mut tx, seq, token, Some(keep)).await? {
            return Err(DriverError::LeaseLost(lease.id));
        }
        tx.commit().await.map_err(|e| map_err("settle a cancelled task", e))
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let ids: String = match &which {
            DeadSelector::All => String::new(),
            DeadSelector::Ids(ids) => {
                let hex: Vec<String> = ids.iter().map(|id| format!("\"{}\"", hex(id.as_bytes()))).collect();
                format!("[{}]", hex.join(","))
            }
        };
        let all = matches!(which, DeadSelector::All);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("requeue dead", e))?;
        // The selected dead rows, as a reusable filter: all of the queue, or those whose id is
        // in the JSON list of hex ids.
        let moved = sqlx::query(
            "INSERT INTO asynctasq_tasks (id, queue, envelope, attempt, lease_ms, visible_at, replayed, errors, limit_key) \
             SELECT id, queue, envelope, 0, lease_ms, ?3, 1, errors, limit_key FROM asynctasq_dead \
             WHERE queue = ?1 AND (?4 OR lower(hex(id)) IN (SELECT value FROM json_each(?2))) ORDER BY seq",
        )
        .bind(queue)
        .bind(if all { "[]".to_owned() } else { ids.clone() })
        .bind(now())
        .bind(all)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("requeue dead", e))?;
        sqlx::query("DELETE FROM asynctasq_dead WHERE queue = ?1 AND (?3 OR lower(hex(id)) IN (SELECT value FROM json_each(?2)))")
            .bind(queue)
            .bind(if all { "[]".to_owned() } else { ids })
            .bind(all)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("requeue dead", e))?;
        tx.commit().await.map_err(|e| map_err("requeue dead", e))?;
        self.woke();
        Ok(moved.rows_affected())
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        validate_queue_name(queue)?;
        let done = sqlx::query("DELETE FROM asynctasq_dead WHERE queue = ?1")
            .bind(queue)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("purge dead", e))?;
        Ok(done.rows_affected())
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        let info = worker.encode()?;
        let mut tx = self.pool.begin().await.map_err(|e| map_err("register worker", e))?;
        sqlx::query("DELETE FROM asynctasq_workers WHERE expires_at <= ?1")
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err("register worker", e))?;
        sqlx::query(
            "INSERT INTO asynctasq_workers (id, expires_at, info) VALUES (?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, info = excluded.info",
        )
        .bind(&worker.id)
        .bind(worker.expires_at as i64)
        .bind(info)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("register worker", e))?;
        tx.commit().await.map_err(|e| map_err("register worker", e))
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        sqlx::query("DELETE FROM asynctasq_workers WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| map_err("deregister worker", e))?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT info FROM asynctasq_workers WHERE expires_at > ?1 ORDER BY id")
            .bind(now())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list workers", e))?;
        Ok(worker_rows(rows))
    }

    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        let version: String =
            sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&self.pool).await.map_err(|e| map_err("read the SQLite version", e))?;
        let has_table: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'asynctasq_migrations'")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| map_err("read the migrations", e))?;
        let applied = if has_table > 0 {
            let v: Vec<i64> = sqlx::query_scalar("SELECT version FROM asynctasq_migrations WHERE success ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("read the migrations", e))?;
            Some(v)
        } else {
            None
        };
        // The database is a file on this host: its clock is this host's.
        Ok(ServerInfo { version: Some(format!("SQLite {version}")), clock_ms: None, schema: Some(schema_state(MIGRATIONS, applied)) })
    }

    fn supports(&self, capability: Capability) -> bool {
        // SQLite offers no notification across processes: waiters poll, and a cancel is read
        // by the next lease renewal.
        !matches!(capability, Capability::ResultNotify | Capability::CancelNotify)
    }

    async fn claim_slot(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        validate_queue_name(queue)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(|e| map_err("claim a slot", e))?;
        let claimed = sqlx::query(
            "INSERT INTO asynctasq_schedules (name, last_slot) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE \
             SET last_slot = excluded.last_slot WHERE paused = 0 AND (last_slot IS NULL OR last_slot < excluded.last_slot)",
        )
        .bind(name)
        .bind(slot as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err("claim a slot", e))?
        .rows_affected()
            == 1;
        if claimed && let Some(task) = task {
            self.enqueue_in(&mut tx, std::slice::from_ref(task)).await?;
        }
        tx.commit().await.map_err(|e| map_err("claim a slot", e))?;
        self.woke();
        Ok(claimed)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>, DriverError> {
        let rows: Vec<(String, Option<i64>, bool)> =
            sqlx::query_as("SELECT name, last_slot, paused FROM asynctasq_schedules ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err("list schedules", e))?;
        Ok(rows.into_iter().map(|(name, last, paused)| ScheduleState { name, last_slot: last.map(|s| s as u64), paused }).collect())
    }

    async fn set_schedule_paused(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        sqlx::query(
            "INSERT INTO asynctasq_schedules (name, paused) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        )
        .bind(name)
        .bind(paused)
        .execute(&self.pool)
        .await
        .map_err(|e| map_err("pause a schedule", e))?;
        Ok(())
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        let sql = if paused {
            "INSERT OR IGNORE INTO asynctasq_paused (queue) VALUES (?1)"
        } else {
            "DELETE FROM asynctasq_paused WHERE queue = ?1"
        };
        let done = sqlx::query(sql).bind(queue).execute(&self.pool).await.map_err(|e| map_err("pause", e))?;
        if !paused && done.rows_affected() > 0 {
            self.woke();
        }
        Ok(())
    }

    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        asynctasq_core::limits::check_limits(&limits, |c| self.supports(c))?;
        self.store_limits(queue, limits).await?;
        // A raised limit may make tasks claimable.
        self.woke();
        Ok(())
    }

    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        self.list_limits().await
    }

    async fn paused(&self) -> Result<Vec<String>, DriverError> {
        sqlx::query_scalar("SELECT queue FROM asynctasq_paused ORDER BY 1")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err("list paused", e))
    }

    fn consumer(&self, name: &str) {
        self.consumer.set(name);
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` as lowercase hex (what SQLite's `unhex` reads back).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}
