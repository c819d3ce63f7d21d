//! The PostgreSQL driver.
//!
//! # Schema
//! Four tables named from a configurable prefix (default `asynctasq`: `asynctasq_tasks`,
//! `asynctasq_dead`, `asynctasq_totals`, `asynctasq_results`), created by the versioned
//! migrations in `migrations/postgres/` and tracked in `<prefix>_migrations`:
//!
//! * `<prefix>_tasks`: one row per live task. `visible_at` (Unix ms) is the due time while the
//!   task waits and the lease expiry while it is leased, so "claimable" is one range of the
//!   `(queue, visible_at, seq)` index for new tasks, retries and tasks of crashed workers alike,
//!   and no reaper is needed. `lease_token` is a random 64-bit fence set by each claim.
//! * `<prefix>_dead`: dead tasks with the error, attempt count and time.
//! * `<prefix>_totals`: tasks acked and dead-lettered per queue, day and shard, counted by the
//!   statement that settles them, for `queue status`.
//! * `<prefix>_results`: succeeded tasks kept with their results until their time to live
//!   passes, written by the ack statement that deletes the live row (`ack_keeping`) and swept
//!   by claims once a second.
//!
//! # Bloat
//! Settled rows leave the hot table (ack deletes, dead-letter moves), so it holds only live work
//! and its one secondary index is the claim's; a claim updates `visible_at` (an indexed column,
//! so not a HOT update), which autovacuum cleans as it would any queue table. Dead rows live in
//! their own table, out of the claim's way.
//!
//! # Round trips
//! A claim is one `WITH (SELECT … FOR UPDATE SKIP LOCKED) UPDATE … RETURNING`, starting at the
//! queue's claim cursor rather than the head of the index (see `ClaimCursors`: the head fills
//! with dead entries between vacuums, and walking them made claims slower as work went by); acks of
//! many tasks are one `DELETE … USING UNNEST(seqs, tokens)`; bulk enqueue is one
//! `INSERT … SELECT FROM UNNEST(…) … ON CONFLICT DO NOTHING RETURNING id` (idempotent by id); dead-lettering is one `WITH … DELETE … RETURNING` feeding an
//! `INSERT`. With `synchronous_commit` on each commit waits for an fsync, so the batching is
//! what makes throughput.
//!
//! # Waking workers
//! Writes that make a task due send `pg_notify('<prefix>_ready', queue)` in the same
//! transaction (so a task enqueued inside a caller's transaction wakes workers only when it
//! commits). Each driver keeps one `LISTEN` connection (`listener.rs`: replaced when it fails
//! or, silent for 5 s, does not answer a query) and wakes its waiting workers; waits are also
//! bounded by the earliest scheduled task and the poll interval, so delayed tasks start on time
//! and a lost notification costs at most one poll interval.
//!
//! # Connection faults
//! Every call runs under the request timeout; one that runs out replaces the pool
//! (`pool.rs`).

mod limits;
mod pooler;
mod stats;
mod unique_keys;

use std::collections::{BTreeSet, HashSet};
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
use asynctasq_core::notice::NoticeKind;
use asynctasq_core::progress::Progress;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::listener::{Channels, keep_listening, listen};
use super::pool::{self, Pools};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;

use self::unique_keys::PgBind;
use super::{
    ClaimCursors, Found, Sweeper, connect_err, day, dead_task, delivery, held, map_err, migrator, ms, now, parse_token, schema_state,
    shard, task_record, validate_table_prefix, wait_for_due, worker_rows,
};
use crate::consumer::Consumer;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tasks and dead tables", include_str!("../../../migrations/postgres/0001_tasks.sql")),
    (2, "worker registry", include_str!("../../../migrations/postgres/0002_workers.sql")),
    (3, "settled totals per queue", include_str!("../../../migrations/postgres/0003_totals.sql")),
    (4, "replayed mark on tasks", include_str!("../../../migrations/postgres/0004_replayed.sql")),
    (5, "kept results", include_str!("../../../migrations/postgres/0005_results.sql")),
    (6, "cancellation", include_str!("../../../migrations/postgres/0006_cancel.sql")),
    (7, "task progress", include_str!("../../../migrations/postgres/0007_progress.sql")),
    (8, "error history", include_str!("../../../migrations/postgres/0008_errors.sql")),
    (9, "dead expiry", include_str!("../../../migrations/postgres/0009_dead_expiry.sql")),
    (10, "lease holder", include_str!("../../../migrations/postgres/0010_holder.sql")),
    (11, "started time", include_str!("../../../migrations/postgres/0011_started.sql")),
    (12, "paused queues", include_str!("../../../migrations/postgres/0012_paused.sql")),
    (13, "unique keys", include_str!("../../../migrations/postgres/0013_unique.sql")),
    (14, "schedules", include_str!("../../../migrations/postgres/0014_schedules.sql")),
    (15, "queue limits", include_str!("../../../migrations/postgres/0015_limits.sql")),
    (16, "queue rates", include_str!("../../../migrations/postgres/0016_rates.sql")),
];

/// Settings of a [`PostgresDriver`].
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://user[:password]@host[:port]/database`.
    pub url: String,
    /// Prefix of the table names (default `asynctasq`): 1 to 40 characters of `a-z 0-9 _`.
    pub table_prefix: String,
    /// Connections in the pool (default 8).
    pub max_connections: u32,
    /// Apply pending migrations on connect (default true; `asynctasq migrate` does it explicitly).
    pub migrate: bool,
    /// Longest a waiting worker sleeps without a notification (default 1 s): the fallback if
    /// a notification is lost while the listener reconnects.
    pub poll_interval: Duration,
    /// Longest any call may wait for the server (default 5 s; a bulk enqueue gets this per
    /// thousand tasks, `wait_ready` on top of its wait). A call that runs out replaces the
    /// connection pool: the next call uses new connections.
    pub request_timeout: Duration,
    /// A pooler in transaction mode is in between (PgBouncer's `pool_mode = transaction`;
    /// `pgbouncer=true` in the URL): every statement runs unnamed inside a transaction, and
    /// nothing needs session state (see `pooler.rs`). Default false.
    pub pgbouncer: bool,
    /// A direct connection to the server, not through the pooler (`listen_url=` in the URL,
    /// percent-encoded): `LISTEN` for wake-ups and notices, and migrations, run there. Behind a
    /// pooler without it, waiting workers poll every `poll_interval`, result and cancel
    /// notices are not pushed (waits poll), and migrations are refused.
    pub listen_url: Option<String>,
    /// Each state of a queue is counted exactly up to this many tasks, and estimated from a
    /// sample of the table past it (`exact_counts=` in the URL; default 10,000): counting ten
    /// million takes seconds (see `stats.rs`).
    pub exact_counts: u64,
}

impl PostgresConfig {
    /// Settings from a URL whose query may set `table_prefix`, `migrate`, `max_connections`,
    /// `poll_interval`, `request_timeout`, `pgbouncer`, `listen_url` and `exact_counts` (the database client's
    /// own options, such as `sslmode`, pass through). An unknown option is an error naming it.
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        server_config_from_url!("PostgreSQL", url,
        native: ["sslmode", "sslrootcert", "sslcert", "sslkey", "statement-cache-capacity", "host", "hostaddr", "port", "dbname", "user", "password", "application_name", "options"],
        own: ["pgbouncer", "listen_url", "exact_counts"] => |q, config| {
            q.set_flag("pgbouncer", &mut config.pgbouncer)?;
            q.set_number("exact_counts", &mut config.exact_counts)?;
            config.listen_url = q.take("listen_url");
        })
    }

    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table_prefix: "asynctasq".into(),
            max_connections: 8,
            migrate: true,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            pgbouncer: false,
            listen_url: None,
            exact_counts: 10_000,
        }
    }
}

/// Every statement, built once from the table names (validated identifiers, double-quoted).
struct Sql {
    insert: String,
    /// `insert` and `insert_new` of a batch with keys (`$7`: each task's key, for per-key
    /// limits); `set_keys` stores the keys of tasks another statement inserted.
    insert_keyed: String,
    insert_new_keyed: String,
    set_keys: String,
    insert_new: String,
    dead_ids: String,
    notify: String,
    claim: String,
    ack: String,
    ack_keeping: String,
    sweep: String,
    sweep_cancelled: String,
    cancel_flag: String,
    cancel_remove: String,
    settled: String,
    settle_cancelled: String,
    nack: String,
    release: String,
    dead_letter: String,
    extend: String,
    stats: stats::StatsSql,
    next_due: String,
    purge: String,
    dead_list: String,
    find: String,
    requeue_dead: String,
    purge_dead: String,
    pause: String,
    resume: String,
    paused: String,
    unique_fast: String,
    unique_fresh: String,
    unique_held: String,
    unique_owners: String,
    unique_take: String,
    unique_rewrite: String,
    claim_slot: String,
    schedules: String,
    pause_schedule: String,
    limits: limits::LimitsSql,
}

impl Sql {
    fn new(prefix: &str) -> Self {
        let t = format!("\"{prefix}_tasks\"");
        let d = format!("\"{prefix}_dead\"");
        let n = format!("\"{prefix}_totals\"");
        let r = format!("\"{prefix}_results\"");
        let p = format!("\"{prefix}_paused\"");
        let u = format!("\"{prefix}_unique\"");
        let s = format!("\"{prefix}_schedules\"");
        let l = format!("\"{prefix}_limits\"");
        let k = format!("\"{prefix}_parked\"");
        let h = format!("\"{prefix}_held\"");
        let c = format!("\"{prefix}_claim_capped\"");
        let st = format!("\"{prefix}_starts\"");
        // A record kept under an id that expired unswept is replaced.
        let upsert = "ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, envelope = EXCLUDED.envelope, \
                      attempt = EXCLUDED.attempt, result = NULL, finished_at = EXCLUDED.finished_at, \
                      expires_at = EXCLUDED.expires_at, state = EXCLUDED.state";
        Self {
            // Idempotent by id: an id already live (the unique index) or dead is skipped, and
            // the ids stored come back. A dead-letter committing between this statement's
            // snapshot and its insert (the same id re-enqueued at that very moment) could let
            // the id be stored beside its dead copy; nothing else can.
            insert: format!(
                "INSERT INTO {t} (id, queue, envelope, lease_ms, visible_at) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[]) \
                 AS u(id, queue, envelope, lease_ms, visible_at) \
                 WHERE NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.id = u.id AND {r}.expires_at > $6) \
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            // Measured on 1,000-row batches: the plain insert 7.7-9.3 ms, with `ON CONFLICT`
            // 10.8-11.2 ms, and the dead-table check free (an empty anti-join): bulk enqueue of
            // new ids goes without the speculative insertion.
            insert_new: format!(
                "INSERT INTO {t} (id, queue, envelope, lease_ms, visible_at) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[]) \
                 AS u(id, queue, envelope, lease_ms, visible_at) \
                 WHERE NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.id = u.id AND {r}.expires_at > $6)"
            ),
            insert_keyed: format!(
                "INSERT INTO {t} (id, queue, envelope, lease_ms, visible_at, limit_key) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], $7::text[]) \
                 AS u(id, queue, envelope, lease_ms, visible_at, limit_key) \
                 WHERE NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.id = u.id AND {r}.expires_at > $6) \
                 ON CONFLICT (id) DO NOTHING RETURNING id"
            ),
            insert_new_keyed: format!(
                "INSERT INTO {t} (id, queue, envelope, lease_ms, visible_at, limit_key) \
                 SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], $7::text[]) \
                 AS u(id, queue, envelope, lease_ms, visible_at, limit_key) \
                 WHERE NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.id = u.id AND {r}.expires_at > $6)"
            ),
            set_keys: format!(
                "UPDATE {t} SET limit_key = k.key FROM UNNEST($1::bytea[], $2::text[]) AS k(id, key) \
                 WHERE {t}.id = k.id AND k.key IS NOT NULL"
            ),
            dead_ids: format!(
                "SELECT id FROM {d} WHERE id = ANY($1::bytea[]) \
                 UNION ALL SELECT id FROM {r} WHERE id = ANY($1::bytea[]) AND expires_at > $2"
            ),
            notify: "SELECT pg_notify($1, q) FROM UNNEST($2::text[]) AS q".into(),
            // A flagged task (a cancel whose lease ran out before the sweep) is claimed like any
            // other and its `cancel` returned: the driver settles it as cancelled instead of
            // delivering it. Not `cancel = 0` in the WHERE: on a table whose statistics lag (no
            // ANALYZE since it filled), that filter tipped the planner from the ordered index
            // scan to a bitmap scan and sort of the whole queue, 48 ms a claim at 30,000 tasks:
            // 0.15 of the drain rate from the second bench run on.
            claim: format!(
                "WITH c AS (SELECT seq, visible_at FROM {t} WHERE queue = $3 AND visible_at >= $5 AND visible_at <= $2 \
                            AND NOT EXISTS (SELECT 1 FROM {p} WHERE queue = $3) \
                            AND NOT EXISTS (SELECT 1 FROM {l} WHERE queue = $3) \
                            ORDER BY visible_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE {t} AS t SET attempt = t.attempt + 1, lease_token = $1, visible_at = $2 + t.lease_ms, holder = $6, started_at = $2 FROM c \
                 WHERE t.seq = c.seq RETURNING t.seq, t.id, t.envelope, t.attempt, t.visible_at, c.visible_at, t.replayed, t.cancel"
            ),
            // The counter rows are locked in queue order, so two acks never wait crosswise.
            ack: format!(
                "WITH acked AS (DELETE FROM {t} AS t USING UNNEST($1::bigint[], $2::bigint[]) AS a(seq, token) \
                                WHERE t.seq = a.seq AND t.lease_token = a.token RETURNING t.seq, t.queue), \
                      counted AS (INSERT INTO {n} AS n (queue, day, shard, succeeded) \
                                  SELECT queue, $3, $4, COUNT(*) FROM acked GROUP BY queue ORDER BY queue \
                                  ON CONFLICT (queue, day, shard) DO UPDATE SET succeeded = n.succeeded + EXCLUDED.succeeded) \
                 SELECT seq FROM acked"
            ),
            // The same, keeping the acks with a time to live ($5 ms; $6 their results, $7 now)
            // as succeeded rows in the same statement: a kept result exists exactly when its
            // task's ack committed, and a lost lease deletes nothing, so keeps nothing. The kept
            // ids are noticed on $8, 200 to a payload (a payload holds under 8,000 bytes); a
            // SELECT in a WITH runs only when read, hence the count.
            ack_keeping: format!(
                "WITH acked AS (DELETE FROM {t} AS t \
                                USING UNNEST($1::bigint[], $2::bigint[], $5::bigint[], $6::bytea[]) AS a(seq, token, keep, result) \
                                WHERE t.seq = a.seq AND t.lease_token = a.token \
                                RETURNING t.seq, t.id, t.queue, t.envelope, t.attempt, t.started_at, a.keep, a.result), \
                      counted AS (INSERT INTO {n} AS n (queue, day, shard, succeeded) \
                                  SELECT queue, $3, $4, COUNT(*) FROM acked GROUP BY queue ORDER BY queue \
                                  ON CONFLICT (queue, day, shard) DO UPDATE SET succeeded = n.succeeded + EXCLUDED.succeeded), \
                      kept AS (INSERT INTO {r} (id, queue, envelope, attempt, result, finished_at, expires_at, started_at) \
                               SELECT id, queue, envelope, attempt, result, $7, $7 + keep, started_at FROM acked WHERE keep > 0 \
                               ON CONFLICT (id) DO UPDATE SET queue = EXCLUDED.queue, envelope = EXCLUDED.envelope, \
                               attempt = EXCLUDED.attempt, result = EXCLUDED.result, finished_at = EXCLUDED.finished_at, \
                               started_at = EXCLUDED.started_at, \
                               expires_at = EXCLUDED.expires_at, state = EXCLUDED.state), \
                      noticed AS (SELECT pg_notify($8, 's:' || string_agg(encode(id, 'hex'), ',')) \
                                  FROM (SELECT id, (row_number() OVER ()) / 200 AS chunk FROM acked WHERE keep > 0) k GROUP BY chunk) \
                 SELECT seq FROM acked WHERE (SELECT count(*) FROM noticed) >= 0"
            ),
            // The expired kept results and dead tasks, in one round trip.
            // Expired unique locks by SKIP LOCKED: a lock an enqueue holds is its business (it
            // may be taking it over), and the sweep never waits on one.
            // Every sweep reads its index in order (`ORDER BY` the indexed column): over a table
            // never analysed the planner takes `expires_at <= $1` or `cancel > 0` to match a
            // third of the rows, so a `LIMIT` alone made it scan the table for the first few. With
            // ten million tasks the cancelled sweep took 1.6-3.9 s a second and the drain fell
            // to about 30 tasks a second; read in index order it takes 0.4 ms.
            // It returns the most rows it deleted from one table (a full batch brings the next
            // sweep forward, see `sql::sweep`).
            sweep: format!(
                "WITH results AS (DELETE FROM {r} WHERE id IN (SELECT id FROM {r} WHERE expires_at <= $1 \
                                  ORDER BY expires_at LIMIT 10000) RETURNING 1), \
                      locks AS (DELETE FROM {u} WHERE (queue, unique_key) IN (SELECT queue, unique_key FROM {u} \
                                WHERE expires_at <= $1 ORDER BY expires_at LIMIT 10000 FOR UPDATE SKIP LOCKED) RETURNING 1), \
                      dead AS (DELETE FROM {d} WHERE seq IN (SELECT seq FROM {d} WHERE expires_at <= $1 \
                               ORDER BY expires_at LIMIT 10000) RETURNING 1) \
                 SELECT GREATEST((SELECT count(*) FROM results), (SELECT count(*) FROM locks), (SELECT count(*) FROM dead))"
            ),
            // Flagged tasks no lease holds (ran out, nacked, released), by the partial index of
            // flagged rows, kept as cancelled for as long as their cancel asked.
            sweep_cancelled: format!(
                "WITH moved AS (DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} WHERE cancel > 0 \
                                AND (lease_token IS NULL OR visible_at <= $1) ORDER BY visible_at LIMIT 1000 FOR UPDATE SKIP LOCKED) \
                                RETURNING id, queue, envelope, attempt, cancel) \
                 INSERT INTO {r} AS r (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
                 SELECT id, queue, envelope, attempt, NULL, $1, $1 + cancel, 'cancelled' FROM moved {upsert} RETURNING id"
            ),
            // A cancel flags the task whatever its state, and learns the state from the row it
            // locked: leased (the lease is live) or waiting.
            cancel_flag: format!(
                "UPDATE {t} SET cancel = GREATEST($2, 1) WHERE id = $1 RETURNING lease_token IS NOT NULL AND visible_at > $3"
            ),
            // A waiting task, in the cancel's transaction after its flag: gone, kept cancelled.
            cancel_remove: format!(
                "WITH moved AS (DELETE FROM {t} WHERE id = $1 RETURNING id, queue, envelope, attempt) \
                 INSERT INTO {r} AS r (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
                 SELECT id, queue, envelope, attempt, NULL, $2, $2 + $3, 'cancelled' FROM moved {upsert}"
            ),
            settled: format!(
                "SELECT EXISTS (SELECT 1 FROM {d} WHERE id = $1) OR EXISTS (SELECT 1 FROM {r} WHERE id = $1 AND expires_at > $2)"
            ),
            // The holder settles its run as cancelled, kept for $4 ms; $4 NULL: only if flagged,
            // for as long as its cancel asked (a flagged task's dead letter).
            settle_cancelled: format!(
                "WITH moved AS (DELETE FROM {t} WHERE seq = $1 AND lease_token = $2 AND ($4::bigint IS NOT NULL OR cancel > 0) \
                                RETURNING id, queue, envelope, attempt, cancel) \
                 INSERT INTO {r} AS r (id, queue, envelope, attempt, result, finished_at, expires_at, state) \
                 SELECT id, queue, envelope, attempt, NULL, $3, $3 + COALESCE($4::bigint, cancel), 'cancelled' FROM moved {upsert}"
            ),
            // The failure joins the task's history (an empty error records nothing).
            nack: format!(
                "UPDATE {t} SET lease_token = NULL, visible_at = $1, last_error = $2, \
                 errors = CASE WHEN $2 = '' THEN errors ELSE (COALESCE(errors, '[]')::jsonb \
                          || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $5::bigint, 'error', $2::text, 'worker', holder)))::text END \
                 WHERE seq = $3 AND lease_token = $4"
            ),
            release: format!(
                "UPDATE {t} SET lease_token = NULL, visible_at = $1, attempt = GREATEST(attempt - 1, 0) \
                 WHERE seq = $2 AND lease_token = $3"
            ),
            // One row affected when the lease held (the counter's), none when it was lost.
            dead_letter: format!(
                "WITH moved AS (DELETE FROM {t} WHERE seq = $3 AND lease_token = $4 AND cancel = 0 \
                                RETURNING id, queue, envelope, attempt, lease_ms, errors, holder, started_at, limit_key), \
                      dead AS (INSERT INTO {d} (id, queue, envelope, attempt, lease_ms, error, dead_at, errors, expires_at, started_at, limit_key) \
                               SELECT id, queue, envelope, attempt, lease_ms, $1, $2, (COALESCE(errors, '[]')::jsonb \
                               || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', $2::bigint, 'error', $1::text, 'worker', holder)))::text, $7, started_at, limit_key \
                               FROM moved) \
                 INSERT INTO {n} AS n (queue, day, shard, failed) SELECT queue, $5, $6, 1 FROM moved \
                 ON CONFLICT (queue, day, shard) DO UPDATE SET failed = n.failed + 1"
            ),
            // A flagged task's lease is not extended; its cancel is reported instead.
            extend: format!(
                "UPDATE {t} SET visible_at = CASE WHEN cancel = 0 THEN $1 ELSE visible_at END \
                 WHERE seq = $2 AND lease_token = $3 RETURNING cancel"
            ),
            stats: stats::StatsSql::new(&t, &d, &n),
            // The first entry of each queue's range of the due index: `MIN` over `queue = ANY`
            // read every entry of the queues (3-5 s a wait over ten million tasks, 0.5 ms so).
            next_due: format!(
                "SELECT MIN(f.v) FROM UNNEST($1::text[]) AS w(queue) \
                 CROSS JOIN LATERAL (SELECT visible_at AS v FROM {t} AS t WHERE t.queue = w.queue ORDER BY t.visible_at LIMIT 1) f \
                 WHERE w.queue NOT IN (SELECT queue FROM {p})"
            ),
            purge: format!("DELETE FROM {t} WHERE queue = $1 AND (lease_token IS NULL OR visible_at <= $2)"),
            dead_list: format!(
                "SELECT id, envelope, attempt, error, dead_at, errors FROM {d} \
                 WHERE queue = $1 AND (expires_at IS NULL OR expires_at > $3) ORDER BY seq LIMIT $2"
            ),
            find: super::find_sql(&t, &d, &r, ["= ANY($1)"; 3], ["$2"; 2], false),
            requeue_dead: format!(
                "WITH moved AS (DELETE FROM {d} WHERE queue = $1 AND ($3 OR id = ANY($2)) \
                                RETURNING seq, id, queue, envelope, lease_ms, errors, limit_key) \
                 INSERT INTO {t} (id, queue, envelope, attempt, lease_ms, visible_at, replayed, errors, limit_key) \
                 SELECT id, queue, envelope, 0, lease_ms, $4, TRUE, errors, limit_key FROM moved ORDER BY seq"
            ),
            purge_dead: format!("DELETE FROM {d} WHERE queue = $1"),
            pause: format!("INSERT INTO {p} (queue) VALUES ($1) ON CONFLICT DO NOTHING"),
            resume: format!("DELETE FROM {p} WHERE queue = $1"),
            paused: format!("SELECT queue FROM {p} ORDER BY 1"),
            // A batch whose keys no row holds: the locks, and the tasks that took them (`$7`: the
            // task has a key) with the plain ones, by the bulk path's insert. Fewer rows than
            // tasks, or a unique violation, sends the batch to the general path.
            unique_fast: format!(
                "WITH taken AS (INSERT INTO {u} (queue, unique_key, owner, hold, expires_at) \
                                SELECT * FROM UNNEST($8::text[], $9::text[], $10::bytea[], $11::smallint[], $12::bigint[]) \
                                ON CONFLICT DO NOTHING RETURNING owner) \
                 INSERT INTO {t} (id, queue, envelope, lease_ms, visible_at) \
                 SELECT u.id, u.queue, u.envelope, u.lease_ms, u.visible_at \
                 FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], $7::bool[]) \
                 AS u(id, queue, envelope, lease_ms, visible_at, keyed) \
                 WHERE (NOT u.keyed OR u.id IN (SELECT owner FROM taken)) \
                 AND NOT EXISTS (SELECT 1 FROM {d} WHERE {d}.id = u.id) \
                 AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.id = u.id AND {r}.expires_at > $6)"
            ),
            // Unique keys (see `enqueue_held`). A key no row holds is taken by the batch's
            // first task with it; the insert waits for a concurrent enqueue inserting the same
            // key to end, and then skips it.
            unique_fresh: format!(
                "INSERT INTO {u} (queue, unique_key, owner, hold, expires_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::bigint[]) \
                 ON CONFLICT DO NOTHING RETURNING queue, unique_key"
            ),
            unique_held: format!(
                "SELECT queue, unique_key, owner, hold, expires_at FROM {u} \
                 WHERE (queue, unique_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
                 ORDER BY queue, unique_key FOR UPDATE"
            ),
            unique_owners: format!("SELECT id, attempt, lease_token IS NOT NULL, cancel > 0 FROM {t} WHERE id = ANY($1)"),
            unique_take: format!(
                "INSERT INTO {u} (queue, unique_key, owner, hold, expires_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::bigint[]) \
                 ON CONFLICT (queue, unique_key) DO UPDATE SET owner = EXCLUDED.owner, hold = EXCLUDED.hold, expires_at = EXCLUDED.expires_at"
            ),
            // The slot is claimed when the row is new, or newer than the stored one and the
            // schedule not paused; the row stays locked until the slot's task is stored.
            claim_slot: format!(
                "INSERT INTO {s} AS s (name, last_slot) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
                 SET last_slot = EXCLUDED.last_slot WHERE NOT s.paused AND (s.last_slot IS NULL OR s.last_slot < EXCLUDED.last_slot)"
            ),
            schedules: format!("SELECT name, last_slot, paused FROM {s} ORDER BY name"),
            limits: limits::LimitsSql::new(&t, &p, &l, &k, &h, &c, &st),
            pause_schedule: format!(
                "INSERT INTO {s} (name, paused) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused"
            ),
            unique_rewrite: format!(
                "UPDATE {t} SET envelope = $2, lease_ms = $3, visible_at = COALESCE($4, visible_at) \
                 WHERE id = $1 AND attempt = 0 AND lease_token IS NULL"
            ),
        }
    }
}

fn q(sql: &str) -> AssertSqlSafe<String> {
    // Every statement is built from validated, quoted table names; values are always bound.
    AssertSqlSafe(sql.to_owned())
}

/// Tasks in PostgreSQL. Cloning gives another handle on the same pool and listener.
#[derive(Clone)]
pub struct PostgresDriver {
    inner: Arc<Inner>,
}

struct Inner {
    pools: Arc<Pools<sqlx::Postgres>>,
    sql: Sql,
    cursors: ClaimCursors,
    /// Queues found limited, whose claims take the limited path (`limits.rs`).
    limited: limits::Limited,
    sweeper: Sweeper,
    consumer: Consumer,
    channel: String,
    /// Notices heard by the listener, and their channel.
    notices: Arc<asynctasq_core::NoticeBus>,
    notices_channel: String,
    prefix: String,
    notify: Arc<Notify>,
    poll_interval: Duration,
    /// The `LISTEN` connection's task; none behind a pooler without a direct connection.
    listener: Option<tokio::task::JoinHandle<()>>,
    /// A pooler in transaction mode is in between (see `pooler.rs`).
    pooled: bool,
    /// Counts past this many are estimated (see `stats.rs`).
    exact_counts: u64,
    /// The pools of a direct connection to the server (the main ones when there is no pooler):
    /// `LISTEN` and migrations.
    direct: Option<Arc<Pools<sqlx::Postgres>>>,
}

impl Inner {
    /// Runs one statement on the live pool; `doing` names it in the error.
    async fn execute(
        &self,
        doing: &str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<sqlx::postgres::PgQueryResult, DriverError> {
        query.execute(&self.exec()).await.map_err(|e| map_err(doing, e))
    }

    /// Where a statement outside a transaction runs: the live pool.
    fn exec(&self) -> pooler::Exec {
        pooler::Exec { pool: self.pools.pool(), pooled: self.pooled }
    }

    /// A connection the driver holds in a transaction, as an executor.
    fn on<'c>(&self, conn: &'c mut sqlx::PgConnection) -> pooler::On<'c> {
        pooler::On { conn, pooled: self.pooled }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl std::fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDriver").field("table_prefix", &self.inner.prefix).finish_non_exhaustive()
    }
}

impl PostgresDriver {
    /// The records of `ids` stored now, in one statement (`id = ANY($1)`), in no particular
    /// order; an id stored nowhere has none.
    async fn find_many(&self, ids: Vec<Vec<u8>>) -> Result<Vec<TaskRecord>, DriverError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.inner
            .pools
            .call("find", async move {
                let rows = sqlx::query(q(&self.inner.sql.find))
                    .bind(&ids)
                    .bind(now())
                    .fetch_all(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("find", e))?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let (queue, envelope): (String, Vec<u8>) = (row.get(0), row.get(1));
                        let (leased, found) = (row.get::<i32, _>(4) == 1, Found::of(row.get::<i32, _>(6).into()));
                        let cancel_requested = row.get::<i32, _>(8) == 1;
                        let (attempt, error) = (row.get::<i32, _>(2) as u32, row.get(5));
                        let id = TaskId::from_slice(&row.get::<Vec<u8>, _>(13)).unwrap_or_default();
                        task_record(
                            id,
                            &queue,
                            &envelope,
                            attempt,
                            row.get(3),
                            leased,
                            error,
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
            })
            .await
    }

    /// Connects with default settings and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Self::connect_with(PostgresConfig::from_url(url)?).await
    }

    /// Connects with `config`, applies migrations if asked, and starts the listener.
    pub async fn connect_with(config: PostgresConfig) -> Result<Self, DriverError> {
        validate_table_prefix(&config.table_prefix)?;
        if config.pgbouncer && config.migrate && config.listen_url.is_none() {
            return Err(DriverError::Config(
                "behind PgBouncer (pgbouncer=true) migrations need a direct connection to PostgreSQL: give listen_url=… (percent-encoded), \
                 or apply them against the server directly (`asynctasq migrate`) and set migrate=false"
                    .into(),
            ));
        }
        let pools =
            Arc::new(Self::open_pools(&config.url, config.max_connections.max(2), config.request_timeout, !config.pgbouncer).await?);
        // The direct connection's pool: LISTEN and migrations (behind a pooler); else the one.
        let direct = match (&config.listen_url, config.pgbouncer) {
            (Some(url), true) => Some(Arc::new(Self::open_pools(url, 2, config.request_timeout, true).await?)),
            (Some(_), false) => {
                return Err(DriverError::Config("listen_url is for a direct connection beside a pooler: set pgbouncer=true too".into()));
            }
            (None, true) => None,
            (None, false) => Some(pools.clone()),
        };
        let channel = format!("{}_ready", config.table_prefix);
        let notify = Arc::new(Notify::new());
        let channels = Channels { ready: channel.clone(), notices: format!("{}_notices", config.table_prefix), bus: Arc::default() };
        let (notices, notices_channel) = (channels.bus.clone(), channels.notices.clone());
        let listener = match &direct {
            Some(direct) => {
                let first = listen(direct, &channels).await?;
                Some(tokio::spawn(keep_listening(first, direct.clone(), channels, notify.clone())))
            }
            None => None,
        };
        let driver = Self {
            inner: Arc::new(Inner {
                pools,
                sql: Sql::new(&config.table_prefix),
                cursors: ClaimCursors::default(),
                limited: limits::Limited::default(),
                consumer: Consumer::default(),
                sweeper: Sweeper::default(),
                channel,
                notices,
                notices_channel,
                prefix: config.table_prefix.clone(),
                notify,
                poll_interval: config.poll_interval,
                listener,
                pooled: config.pgbouncer,
                exact_counts: config.exact_counts,
                direct,
            }),
        };
        if config.migrate {
            driver.migrate().await?;
        }
        Ok(driver)
    }

    /// The pools of `url`; `session` sets the session's idle-transaction timeout on each
    /// connection (not through a pooler, where a session is not the driver's).
    async fn open_pools(
        url: &str,
        max_connections: u32,
        request_timeout: Duration,
        session: bool,
    ) -> Result<Pools<sqlx::Postgres>, DriverError> {
        let connect = pool::connect_options::<PgConnectOptions>(url).map_err(|e| connect_err("PostgreSQL", url, e))?;
        let mut options = PgPoolOptions::new().max_connections(max_connections);
        if session {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // A transaction whose connection goes half-open stays open on the server,
                    // with its locks, until the server notices (hours, without keepalive). The
                    // driver's claims and settles are single statements; its transactions
                    // (enqueue, worker registry) never pause, so the server may end one left
                    // idle this long.
                    sqlx::query("SET idle_in_transaction_session_timeout = '60s'").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        Pools::open("PostgreSQL", options, connect, request_timeout).await.map_err(|e| connect_err("PostgreSQL", url, e))
    }

    /// Applies pending migrations (idempotent; concurrent callers are serialised by sqlx's
    /// advisory lock, held by the session: behind a pooler they run on the direct connection).
    pub async fn migrate(&self) -> Result<(), DriverError> {
        let Some(direct) = &self.inner.direct else {
            return Err(DriverError::Config(
                "behind PgBouncer migrations need a direct connection to PostgreSQL (listen_url=…): the pooler cannot hold their session lock".into(),
            ));
        };
        migrator(MIGRATIONS, &self.inner.prefix, '"')
            .run(&direct.pool())
            .await
            .map_err(|e| DriverError::backend("applying PostgreSQL migrations failed", e))
    }

    /// The connection pool (the live one: a call that gets no answer replaces it, see
    /// `pool.rs`).
    pub fn pool(&self) -> PgPool {
        self.inner.pools.pool()
    }

    /// Stores tasks inside the caller's transaction (or on any connection): they exist exactly
    /// when that transaction commits, and workers are notified at the commit.
    ///
    /// ```no_run
    /// # async fn f(driver: asynctasq_drivers::PostgresDriver, envelope: asynctasq_core::Envelope) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = driver.pool().begin().await?;
    /// // ... the caller's own writes on &mut *tx ...
    /// driver.enqueue_in(&mut tx, &[envelope]).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in(&self, conn: &mut PgConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        if tasks.iter().any(|t| t.unique.is_some()) {
            return self.enqueue_unique(conn, tasks).await;
        }
        let rows = Rows::of(tasks)?;
        let outcomes = self.insert_skipping(conn, &rows, tasks).await?;
        self.notify_queues(conn, &rows).await?;
        Ok(outcomes)
    }

    /// The insert that skips every id already stored and says which it stored: right inside
    /// any transaction, whatever the batch holds.
    async fn insert_skipping(&self, conn: &mut PgConnection, rows: &Rows, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let sql = if rows.keys.is_some() { &self.inner.sql.insert_keyed } else { &self.inner.sql.insert };
        let stored: Vec<Vec<u8>> =
            rows.bind_keyed(sqlx::query_scalar(q(sql))).fetch_all(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        let stored: HashSet<TaskId> = stored.iter().filter_map(|id| TaskId::from_slice(id)).collect();
        Ok(EnqueueOutcome::from_stored(tasks.iter().map(|t| t.id), &stored))
    }

    /// The bulk path's insert, for a batch of distinct ids: a plain insert that skips dead ids.
    /// `None` when an id is live (the unique index refused the statement, and with it the
    /// transaction, which the caller rolls back).
    async fn insert_new(
        &self,
        conn: &mut PgConnection,
        rows: &Rows,
        tasks: &[Envelope],
    ) -> Result<Option<Vec<EnqueueOutcome>>, DriverError> {
        let sql = if rows.keys.is_some() { &self.inner.sql.insert_new_keyed } else { &self.inner.sql.insert_new };
        match rows.bind_keyed(sqlx::query(q(sql))).execute(self.inner.on(&mut *conn)).await {
            Ok(done) if done.rows_affected() == tasks.len() as u64 => Ok(Some(EnqueueOutcome::all_new(tasks.len()))),
            Ok(_) => {
                let dead: Vec<Vec<u8>> = sqlx::query_scalar(q(&self.inner.sql.dead_ids))
                    .bind(&rows.ids)
                    .bind(rows.now)
                    .fetch_all(self.inner.on(&mut *conn))
                    .await
                    .map_err(|e| map_err("enqueue", e))?;
                let dead: HashSet<TaskId> = dead.iter().filter_map(|id| TaskId::from_slice(id)).collect();
                Ok(Some(tasks.iter().map(|t| if dead.contains(&t.id) { EnqueueOutcome::Exists } else { EnqueueOutcome::New }).collect()))
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(None),
            Err(e) => Err(map_err("enqueue", e)),
        }
    }

    async fn notify_queues(&self, conn: &mut PgConnection, rows: &Rows) -> Result<(), DriverError> {
        let distinct: Vec<&String> = rows.queues.iter().collect::<BTreeSet<_>>().into_iter().collect();
        sqlx::query(q(&self.inner.sql.notify))
            .bind(&self.inner.channel)
            .bind(&distinct)
            .execute(self.inner.on(&mut *conn))
            .await
            .map_err(|e| map_err("enqueue", e))?;
        Ok(())
    }

    /// Settles the run holding `token` on the task at `seq` as cancelled, kept for `keep`
    /// (`None`: only if a cancel flagged it, for as long as the cancel asked); returns the rows
    /// settled (0: the lease was lost, or nothing flagged it).
    async fn settle_cancelled_as(&self, id: TaskId, seq: i64, token: i64, keep: Option<Duration>) -> Result<u64, DriverError> {
        let query = sqlx::query(q(&self.inner.sql.settle_cancelled)).bind(seq).bind(token).bind(now()).bind(keep.map(ms));
        let settled = self.inner.execute("settle a cancelled task", query).await?.rows_affected();
        if settled > 0 {
            self.notice(NoticeKind::Settled, &[id]).await;
        }
        Ok(settled)
    }

    /// Notifies the listeners of every handle that `ids` were settled or asked to stop, after
    /// the write that did it committed. A failure costs listeners time (they poll), so it is
    /// logged, not returned.
    async fn notice(&self, kind: NoticeKind, ids: &[TaskId]) {
        for chunk in ids.chunks(200) {
            let payload = format!("{}:{}", kind.tag(), chunk.iter().map(ToString::to_string).collect::<Vec<_>>().join(","));
            let query = sqlx::query("SELECT pg_notify($1, $2)").bind(&self.inner.notices_channel).bind(payload);
            if let Err(error) = self.inner.execute("notify", query).await {
                tracing::debug!(%error, "a notice was not sent; listeners find out at their next poll");
            }
        }
    }

    async fn notify(&self, queue: &str) -> Result<(), DriverError> {
        self.inner.execute("notify", sqlx::query(q(&self.inner.sql.notify)).bind(&self.inner.channel).bind(vec![queue.to_owned()])).await?;
        Ok(())
    }
}

/// An enqueue batch as the insert's `UNNEST` arrays.
struct Rows {
    ids: Vec<Vec<u8>>,
    queues: Vec<String>,
    envs: Vec<Vec<u8>>,
    leases: Vec<i64>,
    due: Vec<i64>,
    /// When the batch is stored: kept results expiring after it still hold their ids.
    now: i64,
    /// Each task's key, when one has a key: the keyed variants of the inserts store them.
    keys: Option<Vec<Option<String>>>,
}

impl Rows {
    fn of(tasks: &[Envelope]) -> Result<Self, DriverError> {
        let n = tasks.len();
        let mut rows = Rows {
            ids: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            envs: Vec::with_capacity(n),
            leases: Vec::with_capacity(n),
            due: Vec::with_capacity(n),
            now: now(),
            keys: tasks.iter().any(|t| t.key.is_some()).then(|| tasks.iter().map(|t| t.key.clone()).collect()),
        };
        for t in tasks {
            validate_queue_name(&t.queue)?;
            rows.ids.push(t.id.as_bytes().to_vec());
            rows.queues.push(t.queue.clone());
            rows.envs.push(t.encode()?);
            rows.leases.push(t.lease_ms as i64);
            rows.due.push(t.not_before as i64);
        }
        Ok(rows)
    }

    fn bind<'q, Q: PgBind<'q>>(&'q self, query: Q) -> Q {
        query.push(&self.ids).push(&self.queues).push(&self.envs).push(&self.leases).push(&self.due).push(self.now)
    }

    /// [`bind`](Self::bind), and the keys for a keyed variant (`$7`).
    fn bind_keyed<'q, Q: PgBind<'q>>(&'q self, query: Q) -> Q {
        match &self.keys {
            Some(keys) => self.bind(query).push(keys),
            None => self.bind(query),
        }
    }
}

#[async_trait]
impl Driver for PostgresDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        self.inner
            .pools
            .bounded(
                "enqueue",
                self.inner.pools.request_timeout() * u32::try_from(tasks.len().div_ceil(1000).max(1)).unwrap_or(u32::MAX),
                async move {
                    if tasks.is_empty() {
                        return Ok(Vec::new());
                    }
                    let pool = self.inner.pools.pool();
                    if tasks.iter().any(|t| t.unique.is_some()) {
                        let mut tx = pool.begin().await.map_err(|e| map_err("enqueue", e))?;
                        let outcomes = self.enqueue_unique(&mut tx, tasks).await?;
                        tx.commit().await.map_err(|e| map_err("enqueue", e))?;
                        return Ok(outcomes);
                    }
                    let rows = Rows::of(tasks)?;
                    let mut tx = pool.begin().await.map_err(|e| map_err("enqueue", e))?;
                    // New ids, the bulk case, take the plain insert: the skipping one costs a
                    // speculative insertion per row (see `insert_new`); an id seen twice or
                    // already live takes the skipping insert in a new transaction.
                    let distinct = tasks.iter().map(|t| t.id).collect::<HashSet<_>>().len() == tasks.len();
                    let fast = if distinct { self.insert_new(&mut tx, &rows, tasks).await? } else { None };
                    let outcomes = match fast {
                        Some(outcomes) => outcomes,
                        None => {
                            tx.rollback().await.map_err(|e| map_err("enqueue", e))?;
                            tx = pool.begin().await.map_err(|e| map_err("enqueue", e))?;
                            self.insert_skipping(&mut tx, &rows, tasks).await?
                        }
                    };
                    self.notify_queues(&mut tx, &rows).await?;
                    tx.commit().await.map_err(|e| map_err("enqueue", e))?;
                    Ok(outcomes)
                },
            )
            .await
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        self.inner
            .pools
            .call("dequeue", async move {
                validate_queue_name(queue)?;
                if max == 0 {
                    return Ok(Vec::new());
                }
                let token: i64 = fastrand::i64(..);
                let (now, cursors) = (now(), &self.inner.cursors);
                let pool = self.inner.exec();
                let holder = self.inner.consumer.get();
                let claim = |low: i64| {
                    sqlx::query(q(&self.inner.sql.claim))
                        .bind(token)
                        .bind(now)
                        .bind(queue)
                        .bind(i64::try_from(max).unwrap_or(i64::MAX))
                        .bind(low)
                        .bind(holder.as_deref())
                        .fetch_all(&pool)
                };
                // A limited queue is skipped by the plain claim and taken by the limited one.
                let limited = limits::Claim { token, now, queue, max: i64::try_from(max).unwrap_or(i64::MAX), holder: holder.as_deref() };
                let mut rows = match self.inner.limited.contains(queue) {
                    true => self.claim_limited(&limited).await?,
                    false => None,
                };
                if rows.is_none() {
                    let low = cursors.low(queue);
                    let mut plain = claim(low).await.map_err(|e| map_err("dequeue", e))?;
                    if plain.is_empty() && low != i64::MIN {
                        plain = claim(i64::MIN).await.map_err(|e| map_err("dequeue", e))?;
                    }
                    if plain.is_empty() && self.is_limited(queue).await? {
                        plain = self.claim_limited(&limited).await?.unwrap_or_default();
                    }
                    rows = Some(plain);
                }
                let mut rows = rows.unwrap_or_default();
                cursors.claimed(queue, rows.iter().map(|row| row.get::<i64, _>(5)).min());
                if self.inner.sweeper.due(now) {
                    // Expired records are never reported, and no claim delivers a flagged task:
                    // a failed sweep costs time until the next.
                    let swept: Result<i64, _> = sqlx::query_scalar(q(&self.inner.sql.sweep))
                        .bind(now)
                        .fetch_one(&self.inner.exec())
                        .await
                        .map_err(|e| map_err("sweep results", e));
                    if let Ok(most) = &swept {
                        self.inner.sweeper.swept(now, u64::try_from(*most).unwrap_or(0));
                    }
                    let cancelled = sqlx::query_scalar(q(&self.inner.sql.sweep_cancelled))
                        .bind(now)
                        .fetch_all(&self.inner.exec())
                        .await
                        .map_err(|e| map_err("settle cancelled tasks", e));
                    if let Ok(ids) = &cancelled {
                        let ids: Vec<TaskId> = ids.iter().filter_map(|id: &Vec<u8>| TaskId::from_slice(id)).collect();
                        self.notice(NoticeKind::Settled, &ids).await;
                    }
                    if let Err(e) = swept.map(|_| ()).and(cancelled.map(|_| ())) {
                        tracing::debug!(error = %e, "sweeping expired results failed; the next claim tries again");
                    }
                }
                // RETURNING gives no order; the batch holds the earliest due, handed out by insertion.
                rows.sort_unstable_by_key(|row| row.get::<i64, _>(0));
                let mut deliveries = Vec::with_capacity(rows.len());
                for row in &rows {
                    let (id, envelope): (Vec<u8>, Vec<u8>) = (row.get(1), row.get(2));
                    if row.get::<i64, _>(7) > 0 {
                        // Flagged by a cancel: never delivered, it ends cancelled here.
                        // Should settling fail, the new lease runs out and the sweep settles it.
                        let task = TaskId::from_slice(&id).unwrap_or_default();
                        if let Err(error) = self.settle_cancelled_as(task, row.get(0), token, None).await {
                            tracing::debug!(%error, "settling a claimed cancelled task failed; the sweep settles it");
                        }
                        continue;
                    }
                    deliveries.push(
                        delivery(queue, row.get(0), token, &id, &envelope, row.get::<i32, _>(3) as u32, row.get(4)).replayed(row.get(6)),
                    );
                }
                Ok(deliveries)
            })
            .await
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner
            .pools
            .bounded("wait ready", timeout + self.inner.pools.request_timeout(), async move {
                let notified = self.inner.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                for q in queues {
                    validate_queue_name(q)?;
                }
                let due: Option<i64> = sqlx::query_scalar(q(&self.inner.sql.next_due))
                    .bind(queues)
                    .fetch_one(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("wait", e))?;
                wait_for_due(notified, due, timeout.min(self.inner.poll_interval)).await;
                Ok(())
            })
            .await
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        self.inner
            .pools
            .call("ack", async move {
                if acks.is_empty() {
                    return Ok(Vec::new());
                }
                let mut by_seq = std::collections::HashMap::with_capacity(acks.len());
                let (mut seqs, mut tokens, mut keeps, mut results, mut lost) = (vec![], vec![], vec![], vec![], vec![]);
                for Ack { lease, keep, result } in acks {
                    match parse_token(lease) {
                        Ok((seq, token)) => {
                            seqs.push(seq);
                            tokens.push(token);
                            keeps.push(ms(*keep));
                            results.push(result.as_deref());
                            by_seq.insert(seq, lease.id);
                        }
                        Err(_) => lost.push(lease.id),
                    }
                }
                let shard = shard(tokens.first().copied().unwrap_or(0));
                let at = now();
                // Only a batch that keeps something pays for carrying envelopes through the
                // delete and the results' index.
                let keeping = keeps.iter().any(|k| *k > 0);
                let sql = if keeping { &self.inner.sql.ack_keeping } else { &self.inner.sql.ack };
                let mut query = sqlx::query_scalar(q(sql)).bind(&seqs).bind(&tokens).bind(day(at)).bind(shard as i16);
                if keeping {
                    query = query.bind(&keeps).bind(&results).bind(at).bind(&self.inner.notices_channel);
                }
                let deleted: Vec<i64> = query.fetch_all(&self.inner.exec()).await.map_err(|e| map_err("ack", e))?;
                for seq in deleted {
                    by_seq.remove(&seq);
                }
                lost.extend(by_seq.into_values());
                Ok(lost)
            })
            .await
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("nack", async move {
                let (seq, token) = parse_token(lease)?;
                let done = self
                    .inner
                    .execute(
                        "nack",
                        sqlx::query(q(&self.inner.sql.nack))
                            .bind(now().saturating_add(ms(delay)))
                            .bind(error)
                            .bind(seq)
                            .bind(token)
                            .bind(now()),
                    )
                    .await?;
                held(done.rows_affected(), lease)?;
                self.notify(&lease.queue).await
            })
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("release", async move {
                let (seq, token) = parse_token(lease)?;
                let done = self.inner.execute("release", sqlx::query(q(&self.inner.sql.release)).bind(now()).bind(seq).bind(token)).await?;
                held(done.rows_affected(), lease)?;
                self.notify(&lease.queue).await
            })
            .await
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("dead letter", async move {
                let (seq, token) = parse_token(lease)?;
                let at = now();
                let done = self
                    .inner
                    .execute(
                        "dead-letter",
                        sqlx::query(q(&self.inner.sql.dead_letter))
                            .bind(error)
                            .bind(at)
                            .bind(seq)
                            .bind(token)
                            .bind(day(at))
                            .bind(shard(token) as i16)
                            .bind(at.saturating_add(ms(keep))),
                    )
                    .await?;
                if done.rows_affected() == 0 {
                    // A cancelled task is not dead-lettered: it ends cancelled.
                    let settled = self.settle_cancelled_as(lease.id, seq, token, None).await?;
                    return held(settled, lease);
                }
                self.notice(NoticeKind::Settled, &[lease.id]).await;
                Ok(())
            })
            .await
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        self.inner
            .pools
            .call("extend lease", async move {
                let (seq, token) = parse_token(lease)?;
                let expires_at = now().saturating_add(ms(by));
                let cancel: Option<i64> = sqlx::query_scalar(q(&self.inner.sql.extend))
                    .bind(expires_at)
                    .bind(seq)
                    .bind(token)
                    .fetch_optional(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("extend lease", e))?;
                match cancel {
                    None => Err(DriverError::LeaseLost(lease.id)),
                    Some(0) => Ok(Lease { expires_at: expires_at as u64, ..lease.clone() }),
                    Some(_) => Err(DriverError::CancelRequested(lease.id)),
                }
            })
            .await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        self.inner
            .pools
            .call("stats", async move {
                validate_queue_name(queue)?;
                self.inner.stats(queue).await
            })
            .await
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        self.inner
            .pools
            .call("queues", async move {
                sqlx::query_scalar(q(&self.inner.sql.stats.queues))
                    .fetch_all(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("list queues", e))
            })
            .await
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        self.inner
            .pools
            .call("purge waiting", async move {
                validate_queue_name(queue)?;
                let t = format!("\"{}_tasks\"", self.inner.prefix);
                let sql = match which {
                    Waiting::Both => self.inner.sql.purge.clone(),
                    // A parked task (see `limits.rs`) is ready, waiting for its key's room.
                    Waiting::Ready => {
                        format!("DELETE FROM {t} WHERE queue = $1 AND (visible_at <= $2 OR visible_at >= {})", crate::sql::PARKED)
                    }
                    Waiting::Scheduled => format!(
                        "DELETE FROM {t} WHERE queue = $1 AND lease_token IS NULL AND visible_at > $2 AND visible_at < {}",
                        crate::sql::PARKED
                    ),
                };
                let done = self.inner.execute("purge", sqlx::query(q(&sql)).bind(queue).bind(now())).await?;
                Ok(done.rows_affected())
            })
            .await
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        self.inner
            .pools
            .call("dead", async move {
                validate_queue_name(queue)?;
                let rows = sqlx::query(q(&self.inner.sql.dead_list))
                    .bind(queue)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .bind(now())
                    .fetch_all(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("list dead", e))?;
                Ok(rows
                    .iter()
                    .map(|row| {
                        let (id, envelope): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
                        dead_task(queue, &id, &envelope, row.get::<i32, _>(2) as u32, row.get(3), row.get(4), row.get(5))
                    })
                    .collect())
            })
            .await
    }

    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        // The statement's first row, as a lookup of one always took (results, live, dead).
        Ok(self.find_many(vec![id.as_bytes().to_vec()]).await?.into_iter().next())
    }

    async fn list(&self, queue: &str, state: TaskState, offset: usize, limit: usize) -> Result<Vec<TaskRecord>, DriverError> {
        validate_queue_name(queue)?;
        let ids: Vec<Vec<u8>> = self
            .inner
            .pools
            .call("list tasks", async move {
                let p = &self.inner.prefix;
                let (t, d, r) = (format!("\"{p}_tasks\""), format!("\"{p}_dead\""), format!("\"{p}_results\""));
                let mut n = 0;
                let sql = super::list_sql(&t, &d, &r, state, false, || {
                    n += 1;
                    format!("${n}")
                });
                // A page wants the due index's own order. Before autovacuum has analysed a table
                // filled in a burst, the planner guesses a few thousand rows and, past the first
                // page, reads the whole queue through a bitmap and sorts it: 750 ms for page 20
                // of a million fresh tasks, 0.6 ms once analysed (EXPLAIN ANALYZE). Sorting is
                // ruled out for this one read.
                let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("list tasks", e))?;
                sqlx::query("SET LOCAL enable_sort = off").execute(self.inner.on(&mut tx)).await.map_err(|e| map_err("list tasks", e))?;
                let ids = sqlx::query_scalar(q(&sql))
                    .bind(queue)
                    .bind(now())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                    .fetch_all(self.inner.on(&mut tx))
                    .await
                    .map_err(|e| map_err("list tasks", e))?;
                tx.commit().await.map_err(|e| map_err("list tasks", e))?;
                Ok(ids)
            })
            .await?;
        let found = self.find_many(ids.clone()).await?;
        Ok(super::in_order(&ids, found, state))
    }

    async fn dead_after(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<asynctasq_core::DeadPage, DriverError> {
        validate_queue_name(queue)?;
        let after = super::dead_cursor(after)?;
        let rows: Vec<(Vec<u8>, i64)> = self
            .inner
            .pools
            .call("list dead tasks", async move {
                let d = format!("\"{}_dead\"", self.inner.prefix);
                let mut n = 0;
                let sql = super::dead_after_sql(&d, || {
                    n += 1;
                    format!("${n}")
                });
                sqlx::query_as(q(&sql))
                    .bind(queue)
                    .bind(after)
                    .bind(now())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("list dead tasks", e))
            })
            .await?;
        let found = self.find_many(rows.iter().map(|(id, _)| id.clone()).collect()).await?;
        Ok(super::dead_page(rows, found, limit))
    }

    async fn delete(&self, id: TaskId) -> Result<DeleteOutcome, DriverError> {
        self.inner
            .pools
            .call("delete", async move {
                let p = &self.inner.prefix;
                let (at, key) = (now(), id.as_bytes().as_slice());
                let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("delete", e))?;
                let sql = format!("SELECT lease_token IS NOT NULL AND visible_at > $2 FROM \"{p}_tasks\" WHERE id = $1 FOR UPDATE");
                let leased: Option<bool> = sqlx::query_scalar(q(&sql))
                    .bind(key)
                    .bind(at)
                    .fetch_optional(self.inner.on(&mut tx))
                    .await
                    .map_err(|e| map_err("delete", e))?;
                let outcome = match leased {
                    Some(true) => DeleteOutcome::Leased,
                    Some(false) => {
                        let sql = format!("DELETE FROM \"{p}_tasks\" WHERE id = $1");
                        sqlx::query(q(&sql)).bind(key).execute(self.inner.on(&mut tx)).await.map_err(|e| map_err("delete", e))?;
                        DeleteOutcome::Deleted
                    }
                    None => {
                        let sql = format!("DELETE FROM \"{p}_dead\" WHERE id = $1");
                        let dead =
                            sqlx::query(q(&sql)).bind(key).execute(self.inner.on(&mut tx)).await.map_err(|e| map_err("delete", e))?;
                        let sql = format!("DELETE FROM \"{p}_results\" WHERE id = $1 RETURNING expires_at");
                        let kept: Option<i64> = sqlx::query_scalar(q(&sql))
                            .bind(key)
                            .fetch_optional(self.inner.on(&mut tx))
                            .await
                            .map_err(|e| map_err("delete", e))?;
                        if dead.rows_affected() > 0 || kept.is_some_and(|e| e > at) {
                            DeleteOutcome::Deleted
                        } else {
                            DeleteOutcome::NotFound
                        }
                    }
                };
                tx.commit().await.map_err(|e| map_err("delete", e))?;
                Ok(outcome)
            })
            .await
    }

    async fn progress(&self, lease: &Lease, progress: &Progress) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("record progress", async move {
                let (seq, token) = parse_token(lease)?;
                let sql = format!("UPDATE \"{}_tasks\" SET progress = $1 WHERE seq = $2 AND lease_token = $3", self.inner.prefix);
                let query = sqlx::query(q(&sql)).bind(progress.encode()?).bind(seq).bind(token);
                held(self.inner.execute("record progress", query).await?.rows_affected(), lease)
            })
            .await
    }

    fn notices(&self, kind: NoticeKind) -> Option<tokio::sync::broadcast::Receiver<TaskId>> {
        self.inner.listener.as_ref().map(|_| self.inner.notices.subscribe(kind))
    }

    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        self.inner
            .pools
            .call("cancel", async move {
                let (task, at, keep, id) = (id, now(), ms(keep), id.as_bytes().as_slice());
                let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("cancel", e))?;
                let leased: Option<bool> = sqlx::query_scalar(q(&self.inner.sql.cancel_flag))
                    .bind(id)
                    .bind(keep)
                    .bind(at)
                    .fetch_optional(self.inner.on(&mut tx))
                    .await
                    .map_err(|e| map_err("cancel", e))?;
                let outcome = match leased {
                    Some(true) => CancelOutcome::Requested,
                    Some(false) => {
                        sqlx::query(q(&self.inner.sql.cancel_remove))
                            .bind(id)
                            .bind(at)
                            .bind(keep)
                            .execute(self.inner.on(&mut tx))
                            .await
                            .map_err(|e| map_err("cancel", e))?;
                        CancelOutcome::Removed
                    }
                    None => {
                        let settled: bool = sqlx::query_scalar(q(&self.inner.sql.settled))
                            .bind(id)
                            .bind(at)
                            .fetch_one(self.inner.on(&mut tx))
                            .await
                            .map_err(|e| map_err("cancel", e))?;
                        if settled { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound }
                    }
                };
                tx.commit().await.map_err(|e| map_err("cancel", e))?;
                match outcome {
                    CancelOutcome::Removed => self.notice(NoticeKind::Settled, &[task]).await,
                    CancelOutcome::Requested => self.notice(NoticeKind::CancelRequested, &[task]).await,
                    _ => {}
                }
                Ok(outcome)
            })
            .await
    }

    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("settle cancelled", async move {
                let (seq, token) = parse_token(lease)?;
                held(self.settle_cancelled_as(lease.id, seq, token, Some(keep)).await?, lease)
            })
            .await
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        self.inner
            .pools
            .call("requeue dead", async move {
                validate_queue_name(queue)?;
                let (all, ids) = match which {
                    DeadSelector::All => (true, Vec::new()),
                    DeadSelector::Ids(ids) => (false, ids.iter().map(|i| i.as_bytes().to_vec()).collect::<Vec<_>>()),
                };
                let done = self
                    .inner
                    .execute("requeue dead", sqlx::query(q(&self.inner.sql.requeue_dead)).bind(queue).bind(&ids).bind(all).bind(now()))
                    .await?;
                if done.rows_affected() > 0 {
                    self.notify(queue).await?;
                }
                Ok(done.rows_affected())
            })
            .await
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        self.inner
            .pools
            .call("purge dead", async move {
                validate_queue_name(queue)?;
                let done = self.inner.execute("purge dead", sqlx::query(q(&self.inner.sql.purge_dead)).bind(queue)).await?;
                Ok(done.rows_affected())
            })
            .await
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("register worker", async move {
                let w = format!("\"{}_workers\"", self.inner.prefix);
                let info = worker.encode()?;
                let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("register worker", e))?;
                sqlx::query(q(&format!("DELETE FROM {w} WHERE expires_at <= $1")))
                    .bind(now())
                    .execute(self.inner.on(&mut tx))
                    .await
                    .map_err(|e| map_err("register worker", e))?;
                sqlx::query(q(&format!(
                    "INSERT INTO {w} (id, expires_at, info) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at, info = EXCLUDED.info"
                )))
                .bind(&worker.id)
                .bind(worker.expires_at as i64)
                .bind(info)
                .execute(self.inner.on(&mut tx))
                .await
                .map_err(|e| map_err("register worker", e))?;
                tx.commit().await.map_err(|e| map_err("register worker", e))
            })
            .await
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("deregister worker", async move {
                let sql = format!("DELETE FROM \"{}_workers\" WHERE id = $1", self.inner.prefix);
                self.inner.execute("deregister worker", sqlx::query(q(&sql)).bind(id)).await?;
                Ok(())
            })
            .await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        self.inner
            .pools
            .call("workers", async move {
                let sql = format!("SELECT info FROM \"{}_workers\" WHERE expires_at > $1 ORDER BY id", self.inner.prefix);
                let rows: Vec<Vec<u8>> =
                    sqlx::query_scalar(q(&sql)).bind(now()).fetch_all(&self.inner.exec()).await.map_err(|e| map_err("list workers", e))?;
                Ok(worker_rows(rows))
            })
            .await
    }

    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        self.inner
            .pools
            .call("server info", async move {
                let pool = &self.inner.exec();
                let (version, clock_ms): (String, i64) =
                    sqlx::query_as("SELECT current_setting('server_version'), (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                        .fetch_one(pool)
                        .await
                        .map_err(|e| map_err("read the PostgreSQL version", e))?;
                let table = format!("\"{}_migrations\"", self.inner.prefix);
                let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(&table)
                    .fetch_one(pool)
                    .await
                    .map_err(|e| map_err("read the migrations", e))?;
                let applied = if exists {
                    let sql = format!("SELECT version FROM {table} WHERE success ORDER BY version");
                    Some(sqlx::query_scalar(q(&sql)).fetch_all(pool).await.map_err(|e| map_err("read the migrations", e))?)
                } else {
                    None
                };
                Ok(ServerInfo {
                    version: Some(format!("PostgreSQL {version}")),
                    clock_ms: Some(clock_ms as u64),
                    schema: Some(schema_state(MIGRATIONS, applied)),
                })
            })
            .await
    }

    fn supports(&self, capability: Capability) -> bool {
        // Notices are pushed by the LISTEN connection, which a pooler cannot carry.
        !matches!(capability, Capability::ResultNotify | Capability::CancelNotify) || self.inner.listener.is_some()
    }

    async fn claim_slot(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        self.inner
            .pools
            .call("claim a slot", async move {
                validate_queue_name(queue)?;
                let mut tx = self.inner.pools.pool().begin().await.map_err(|e| map_err("claim a slot", e))?;
                let query = sqlx::query(q(&self.inner.sql.claim_slot)).bind(name).bind(slot as i64);
                let claimed = query.execute(self.inner.on(&mut tx)).await.map_err(|e| map_err("claim a slot", e))?.rows_affected() == 1;
                if claimed && let Some(task) = task {
                    self.enqueue_in(&mut tx, std::slice::from_ref(task)).await?;
                }
                tx.commit().await.map_err(|e| map_err("claim a slot", e))?;
                Ok(claimed)
            })
            .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>, DriverError> {
        self.inner
            .pools
            .call("list schedules", async move {
                let rows: Vec<(String, Option<i64>, bool)> = sqlx::query_as(q(&self.inner.sql.schedules))
                    .fetch_all(&self.inner.exec())
                    .await
                    .map_err(|e| map_err("list schedules", e))?;
                Ok(rows.into_iter().map(|(name, last, paused)| ScheduleState { name, last_slot: last.map(|s| s as u64), paused }).collect())
            })
            .await
    }

    async fn set_schedule_paused(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        validate_queue_name(queue)?;
        let query = sqlx::query(q(&self.inner.sql.pause_schedule)).bind(name).bind(paused);
        self.inner.pools.call("pause a schedule", self.inner.execute("pause a schedule", query)).await.map(|_| ())
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("pause", async move {
                validate_queue_name(queue)?;
                let sql = if paused { &self.inner.sql.pause } else { &self.inner.sql.resume };
                let done = self.inner.execute("pause", sqlx::query(q(sql)).bind(queue)).await?;
                if !paused && done.rows_affected() > 0 {
                    // Waiting workers of every process look again.
                    self.notify(queue).await?;
                }
                Ok(())
            })
            .await
    }

    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        self.inner
            .pools
            .call("limit a queue", async move {
                validate_queue_name(queue)?;
                asynctasq_core::limits::check_limits(&limits, |c| self.supports(c))?;
                self.store_limits(queue, limits).await?;
                // A raised limit may make tasks claimable: waiting workers of every process look again.
                self.notify(queue).await
            })
            .await
    }

    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        self.inner.pools.call("list limits", self.list_limits()).await
    }

    async fn paused(&self) -> Result<Vec<String>, DriverError> {
        self.inner
            .pools
            .call("list paused", async move {
                sqlx::query_scalar(q(&self.inner.sql.paused)).fetch_all(&self.inner.exec()).await.map_err(|e| map_err("list paused", e))
            })
            .await
    }

    fn consumer(&self, name: &str) {
        self.inner.consumer.set(name);
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}
