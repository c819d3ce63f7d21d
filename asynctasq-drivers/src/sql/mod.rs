//! SQL backends. Each database has its own module with its SQL written out; what they share
//! is error mapping and the migrations' shape.

/// The body of `from_url` of a SQL server's config (PostgreSQL, MySQL): `Self::new` of the URL
/// without its query, then the options both take (`table_prefix`, `migrate`,
/// `max_connections`, `poll_interval`, `request_timeout`); the `native` options pass through to
/// the database client, and any other is an error naming it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
macro_rules! server_config_from_url {
    ($backend:literal, $url:expr, native: [$($native:literal),* $(,)?] $(, own: [$($own:literal),*] => |$q:ident, $c:ident| $set:block)?) => {{
        let mut q = crate::url::Query::parse($backend, $url);
        let mut config = Self::new(q.base());
        q.set_string("table_prefix", &mut config.table_prefix);
        q.set_flag("migrate", &mut config.migrate)?;
        q.set_number("max_connections", &mut config.max_connections)?;
        q.set_duration("poll_interval", &mut config.poll_interval)?;
        q.set_duration("request_timeout", &mut config.request_timeout)?;
        $({
            let ($q, $c) = (&mut q, &mut config);
            $set
        })?
        config.url = q.finish(&["table_prefix", "migrate", "max_connections", "poll_interval", "request_timeout" $($(, $own)*)?], &[$($native),*])?;
        Ok(config)
    }};
}

#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod limited;
#[cfg(feature = "postgres")]
mod listener;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod pool;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod sweep;
mod unique;

pub(crate) use sweep::Sweeper;

use asynctasq_core::DriverError;
use asynctasq_core::driver::{DeadTask, Delivery, Lease, TaskRecord, TaskState};
use asynctasq_core::envelope::{Envelope, TaskId};

/// The lease token of the SQL backends is `seq:token`: the row's primary key (so settling needs
/// no lookup by id) and the claim's random fence.
pub(crate) fn parse_token(lease: &Lease) -> Result<(i64, i64), DriverError> {
    lease.token.split_once(':').and_then(|(s, t)| Some((s.parse().ok()?, t.parse().ok()?))).ok_or(DriverError::LeaseLost(lease.id))
}

/// A statement fenced by `seq` and token touched no row: the lease is gone.
pub(crate) fn held(rows: u64, lease: &Lease) -> Result<(), DriverError> {
    if rows == 0 { Err(DriverError::LeaseLost(lease.id)) } else { Ok(()) }
}

/// Now in Unix milliseconds, as the SQL backends store time.
pub(crate) fn now() -> i64 {
    use asynctasq_core::clock::{Clock, SystemClock};
    SystemClock.now() as i64
}

/// One queue's stats at `at` from the columns every SQL driver's stats query returns, in this
/// order: ready, scheduled, leased and dead counts, `MIN(visible_at)` among ready rows, and the
/// succeeded and failed totals.
pub(crate) fn queue_stats(at: i64, counts: [i64; 4], earliest_ready: Option<i64>, totals: [i64; 2]) -> asynctasq_core::QueueStats {
    let [ready, scheduled, leased, dead] = counts.map(|n| u64::try_from(n).unwrap_or(0));
    let [succeeded, failed] = totals.map(|n| u64::try_from(n).unwrap_or(0));
    asynctasq_core::QueueStats {
        ready,
        scheduled,
        leased,
        dead,
        oldest_ready_age: Some(oldest_ready_age(at, earliest_ready)),
        totals: Some(asynctasq_core::Totals { succeeded, failed }),
        estimated: false,
    }
}

/// How long the earliest due ready task (`MIN(visible_at)` among ready rows, if any) has been due
/// at `at`: zero when none is ready.
pub(crate) fn oldest_ready_age(at: i64, earliest: Option<i64>) -> std::time::Duration {
    std::time::Duration::from_millis(earliest.map_or(0, |e| u64::try_from(at.saturating_sub(e)).unwrap_or(0)))
}

/// A duration in whole milliseconds for a BIGINT column.
pub(crate) fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(asynctasq_core::envelope::millis(d)).unwrap_or(i64::MAX)
}

/// The day (Unix ms / 86,400,000) under which a settlement at `at` is totalled.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn day(at: i64) -> i64 {
    at.div_euclid(86_400_000)
}

/// Counter rows one write may pick from (PostgreSQL and MySQL): concurrent acks of one queue
/// then rarely wait on the same row lock.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const TOTAL_SHARDS: i64 = 16;

/// A shard for one write, from the lease token (random per claim).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn shard(token: i64) -> i64 {
    token.rem_euclid(TOTAL_SHARDS)
}

/// Acked tasks per queue, in queue order (the order counter rows are locked in, so two writers
/// never wait on each other's rows crosswise).
#[cfg(feature = "mysql")]
pub(crate) fn acked_per_queue<'a>(acked: impl IntoIterator<Item = &'a Lease>) -> std::collections::BTreeMap<&'a str, i64> {
    let mut per_queue = std::collections::BTreeMap::new();
    for lease in acked {
        *per_queue.entry(lease.queue.as_str()).or_insert(0) += 1;
    }
    per_queue
}

/// A delivery from a claimed row: the lease token is `seq:token`.
pub(crate) fn delivery(queue: &str, seq: i64, token: i64, id: &[u8], envelope: &[u8], attempt: u32, expires_at: i64) -> Delivery {
    let lease = Lease {
        id: TaskId::from_slice(id).unwrap_or_default(),
        queue: queue.to_owned(),
        token: format!("{seq}:{token}"),
        expires_at: expires_at as u64,
    };
    Delivery::new(lease, attempt, Envelope::decode(envelope))
}

/// A dead task from a row of the dead table.
pub(crate) fn dead_task(
    queue: &str,
    id: &[u8],
    envelope: &[u8],
    attempt: u32,
    error: String,
    dead_at: i64,
    errors: Option<String>,
) -> DeadTask {
    DeadTask::new(TaskId::from_slice(id).unwrap_or_default(), queue, attempt, error, dead_at as u64, Envelope::decode(envelope))
        .with_errors(errors.as_deref())
}

/// The lookup by id every SQL driver runs, over the kept results `r` (those not expired at
/// `now`), the live tasks `t` and the dead `d` in one statement (one snapshot, so a task moving
/// between them is seen in one or the other): queue, envelope, attempt, `finished_at`,
/// `visible_at` or `dead_at`, whether leased (0/1), the last error, where it was found
/// ([`Found`]: 0 live, 1 dead, 2 succeeded, 3 cancelled), the result, whether a cancel is
/// requested (0/1), the progress, the error history, the holder, the start and the id; `id`
/// are what follows the id column in each part's `WHERE` (`= ?1` for one task, `IN (…)` or
/// `= ANY($1)` for many), in the order the statement reads them (`now` comes between the
/// first and the second). With
/// `in_place` (SQLite), a live row may be a succeeded task kept in place ([`KEPT`]), found
/// until its `kept_until`; `now` is then read once more, after the second id.
pub(crate) fn find_sql(t: &str, d: &str, r: &str, id: [&str; 3], now: [&str; 2], in_place: bool) -> String {
    let [first, second, third] = id;
    let [now, dead_now] = now;
    let (at, found, result, kept) = if in_place {
        (
            format!("CASE WHEN kept_until IS NULL THEN visible_at ELSE visible_at - {KEPT} END"),
            "CASE WHEN kept_until IS NULL THEN 0 ELSE 2 END",
            "result",
            format!(" AND (kept_until IS NULL OR kept_until > {now})"),
        )
    } else {
        ("visible_at".to_owned(), "0", "NULL", String::new())
    };
    // The results first: PostgreSQL types a UNION's columns pair by pair, and the result column
    // is NULL in the other two.
    format!(
        "SELECT queue, envelope, attempt, finished_at, 0, NULL, CASE WHEN state = 'cancelled' THEN 3 ELSE 2 END, result, 0, NULL, NULL, NULL, started_at, id \
         FROM {r} WHERE id {first} AND expires_at > {now} \
         UNION ALL SELECT queue, envelope, attempt, {at}, CASE WHEN lease_token IS NULL THEN 0 ELSE 1 END, last_error, {found}, {result}, \
         CASE WHEN cancel > 0 THEN 1 ELSE 0 END, progress, errors, holder, started_at, id FROM {t} WHERE id {second}{kept} \
         UNION ALL SELECT queue, envelope, attempt, dead_at, 0, error, 1, NULL, 0, NULL, errors, NULL, started_at, id FROM {d} WHERE id {third} \
         AND (expires_at IS NULL OR expires_at > {dead_now})"
    )
}

/// Where a succeeded task kept in place starts its `visible_at` (SQLite): 2^62 plus when it
/// finished, above every due time (a Unix ms clock reaches 2^62 in 146 million years). A
/// queue's live tasks are the range of its due index below it.
pub(crate) const KEPT: i64 = 1 << 62;

/// Where parked tasks' `visible_at` starts (`asynctasq_core::limits::PARKED`), for SQL text.
pub(crate) const PARKED: i64 = asynctasq_core::limits::PARKED as i64;

/// The ids of a page of `queue`'s tasks in `state` ([`Driver::list`]), earliest first: a query
/// over the live tasks `t`, the dead `d` or the kept results `r`, whose placeholders come from
/// `p` (called once per placeholder, in order) and are bound, in order: the queue, `now`, the
/// limit and the offset. The listing reads each task by id next (one indexed read a task: an
/// operator's page, not a hot path), and keeps those still in `state`.
pub(crate) fn list_sql(t: &str, d: &str, r: &str, state: TaskState, in_place: bool, mut p: impl FnMut() -> String) -> String {
    let (queue, now) = (p(), p());
    let (limit, offset) = (p(), p());
    let page = format!("LIMIT {limit} OFFSET {offset}");
    match state {
        TaskState::Dead => {
            format!("SELECT id FROM {d} WHERE queue = {queue} AND (expires_at IS NULL OR expires_at > {now}) ORDER BY seq {page}")
        }
        // Kept in place (SQLite, numbered placeholders: each is read twice), or moved before.
        TaskState::Succeeded if in_place => format!(
            "SELECT id FROM (SELECT id, seq, visible_at - {KEPT} AS f FROM {t} \
                             WHERE queue = {queue} AND visible_at >= {KEPT} AND kept_until > {now} \
                             UNION ALL SELECT id, 0, finished_at FROM {r} WHERE queue = {queue} AND expires_at > {now} AND state = 'succeeded') \
             ORDER BY f, seq, id {page}"
        ),
        TaskState::Succeeded | TaskState::Cancelled => {
            let kept = if state == TaskState::Succeeded { "succeeded" } else { "cancelled" };
            format!("SELECT id FROM {r} WHERE queue = {queue} AND expires_at > {now} AND state = '{kept}' ORDER BY finished_at, id {page}")
        }
        // A parked task (`asynctasq_core::limits`) is ready: listed after the due ones.
        TaskState::Ready => format!(
            "SELECT id FROM {t} WHERE queue = {queue} AND (visible_at <= {now} OR (visible_at >= {PARKED} AND visible_at < {KEPT})) \
             ORDER BY visible_at, seq {page}"
        ),
        TaskState::Leased => format!(
            "SELECT id FROM {t} WHERE queue = {queue} AND visible_at > {now} AND visible_at < {PARKED} AND lease_token IS NOT NULL \
             ORDER BY visible_at, seq {page}"
        ),
        _ => format!(
            "SELECT id FROM {t} WHERE queue = {queue} AND visible_at > {now} AND visible_at < {PARKED} AND lease_token IS NULL \
             ORDER BY visible_at, seq {page}"
        ),
    }
}

/// The ids and sequence numbers of a page of `queue`'s dead tasks `d` after a cursor
/// ([`Driver::dead_after`]): placeholders from `p`, bound in order: the queue, the cursor (the
/// last page's last `seq`; -1 before the first), `now`, the limit. One range of the
/// `(queue, seq)` index, however deep the page.
pub(crate) fn dead_after_sql(d: &str, mut p: impl FnMut() -> String) -> String {
    let (queue, after, now, limit) = (p(), p(), p(), p());
    format!(
        "SELECT id, seq FROM {d} WHERE queue = {queue} AND seq > {after} AND (expires_at IS NULL OR expires_at > {now}) \
         ORDER BY seq LIMIT {limit}"
    )
}

/// The `seq` a dead-letter cursor names (-1 for none), or why it is not one.
pub(crate) fn dead_cursor(after: Option<&str>) -> Result<i64, DriverError> {
    Ok(asynctasq_core::DeadPage::cursor(after)?.unwrap_or(-1))
}

/// The page of dead tasks whose ids and `seq`s `rows` are (in order), `found` their records,
/// `limit` the page's size.
pub(crate) fn dead_page(rows: Vec<(Vec<u8>, i64)>, found: Vec<TaskRecord>, limit: usize) -> asynctasq_core::DeadPage {
    let next = (rows.len() == limit && limit > 0).then(|| rows.last().map(|(_, seq)| seq.to_string())).flatten();
    let ids: Vec<Vec<u8>> = rows.iter().map(|(id, _)| id.clone()).collect();
    let seqs: std::collections::HashMap<Vec<u8>, i64> = rows.into_iter().collect();
    let tasks = in_order(&ids, found, TaskState::Dead)
        .into_iter()
        .map(|r| {
            let seq = seqs.get(r.id.as_bytes().as_slice()).copied().unwrap_or_default();
            (r, seq.to_string())
        })
        .collect();
    asynctasq_core::DeadPage::new(tasks, next)
}

/// Of `found` (the records of a page's `ids`, read in one statement of [`find_sql`]), those
/// still in `state`, in the order of `ids`.
pub(crate) fn in_order(ids: &[Vec<u8>], found: Vec<TaskRecord>, state: TaskState) -> Vec<TaskRecord> {
    // An id's first row wins, as in a lookup of one.
    let mut by_id = std::collections::HashMap::with_capacity(found.len());
    for r in found {
        by_id.entry(r.id).or_insert(r);
    }
    ids.iter().filter_map(|id| TaskId::from_slice(id)).filter_map(|id| by_id.remove(&id)).filter(|r| r.state == state).collect()
}

/// How many ids one statement of [`find_sql`] looks up at most (a page of the listing is
/// smaller; SQLite allows 32,766 placeholders, MySQL 65,535).
pub(crate) const FIND_BATCH: usize = 500;

/// Where a row of [`find_sql`] came from (its seventh column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The live tasks.
    Live,
    /// The dead tasks.
    Dead,
    /// The kept results, as succeeded.
    Succeeded,
    /// The kept results, as cancelled.
    Cancelled,
}

impl Found {
    /// The kind of the seventh column's value.
    pub(crate) fn of(kind: i64) -> Self {
        match kind {
            1 => Found::Dead,
            2 => Found::Succeeded,
            3 => Found::Cancelled,
            _ => Found::Live,
        }
    }
}

/// The [`TaskRecord`] of one row of [`find_sql`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn task_record(
    id: TaskId,
    queue: &str,
    envelope: &[u8],
    attempt: u32,
    at: i64,
    leased: bool,
    error: Option<String>,
    found: Found,
    result: Option<Vec<u8>>,
    cancel_requested: bool,
    progress: Option<Vec<u8>>,
    errors: Option<String>,
) -> TaskRecord {
    let at = at.max(0) as u64;
    let (state, at) = match found {
        Found::Dead => (TaskState::Dead, at),
        Found::Cancelled => (TaskState::Cancelled, at),
        Found::Succeeded => return TaskRecord::succeeded(id, queue, attempt, at, result, Envelope::decode(envelope)),
        // A parked task's time is offset (see `asynctasq_core::limits`).
        Found::Live => (TaskState::of_live(leased, at, now().max(0) as u64), asynctasq_core::limits::unparked(at)),
    };
    TaskRecord::new(id, queue, state, attempt, at, error, Envelope::decode(envelope))
        .cancel_requested(cancel_requested)
        .with_progress(progress.as_deref())
        .with_errors(errors.as_deref())
}

/// Checks a table-name prefix: a lowercase SQL identifier of at most 40 characters, so the
/// names built from it never need more than plain double quotes.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn validate_table_prefix(prefix: &str) -> Result<(), DriverError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DriverError::Config(format!(
            "table prefix `{}` must be 1 to 40 characters of a-z, 0-9 and `_`, not starting with a digit",
            prefix.chars().take(40).collect::<String>()
        )))
    }
}

/// Maps a sqlx error to a driver error: connection trouble is transient, the rest is not.
/// sqlx errors never carry the connection URL, so nothing secret reaches the message.
pub(crate) fn map_err(doing: &str, error: sqlx::Error) -> DriverError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            DriverError::unavailable(doing.to_owned(), error)
        }
        sqlx::Error::Database(ref db) if is_busy(db.as_ref()) => DriverError::unavailable(doing.to_owned(), error),
        other => DriverError::backend(doing.to_owned(), other),
    }
}

/// A failed connect: a malformed URL is a configuration error, anything else names the server
/// (with the URL's password hidden).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn connect_err(backend: &str, url: &str, error: sqlx::Error) -> DriverError {
    let shown = asynctasq_core::redact_url(url);
    match error {
        sqlx::Error::Configuration(_) => DriverError::Config(format!("invalid {backend} URL {shown}")),
        other => map_err(&format!("cannot connect to {backend} at {shown}"), other),
    }
}

/// The migrator of a backend's migration templates, with table names from `prefix` (quoted
/// with `quote`), tracked in `<prefix>_migrations` so it lives beside an application's own.
pub(crate) fn migrator(migrations: &[(i64, &'static str, &str)], prefix: &str, quote: char) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let migrations = migrations
        .iter()
        .map(|(v, d, sql)| {
            let sql = sqlx::AssertSqlSafe(fill_names(sql, prefix, quote)).into_sql_str();
            Migration::new(*v, (*d).into(), MigrationType::Simple, sql, false)
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(format!("{prefix}_migrations"));
    migrator
}

/// The schema's state from the versions recorded as applied (`None`: no migrations table).
pub(crate) fn schema_state(migrations: &[(i64, &'static str, &str)], applied: Option<Vec<i64>>) -> asynctasq_core::SchemaState {
    let applied = applied.unwrap_or_default();
    let pending = migrations.iter().filter(|(v, _, _)| !applied.contains(v)).map(|(v, d, _)| (*v, (*d).to_owned())).collect();
    asynctasq_core::SchemaState { applied, pending }
}

/// Where the next claim of each queue may start in the due index `(queue, visible_at, seq)`.
///
/// Acks delete rows and claims move them to the end of the index (their lease expiry), so on
/// PostgreSQL and MySQL the head of a busy queue's index fills with dead entries until vacuum
/// or purge removes them, and a claim scanning from the head walks them all: its cost would
/// grow with the tasks processed (measured on PostgreSQL: 20,000 tasks/s for 10,000 tasks,
/// 3,500/s for 1,000,000). A claim instead starts at the due time of the earliest task the
/// previous claim took; what lies before it was taken (or is being taken) already.
///
/// A row can land before the cursor and stay claimable: a claim whose transaction rolled back,
/// a task enqueued with a due time in the past, a crashed worker's task whose lease expired. So
/// each queue gets a full scan from the head at least every [`FULL_SCAN_EVERY`], and whenever
/// a bounded claim finds nothing.
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(Debug, Default)]
pub(crate) struct ClaimCursors {
    queues: std::sync::Mutex<std::collections::HashMap<String, Cursor>>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
#[derive(Debug)]
struct Cursor {
    low: i64,
    full_scan_at: std::time::Instant,
}

/// How often a queue's claim scans its due index from the head.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) const FULL_SCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl ClaimCursors {
    /// The lowest due time the next claim of `queue` needs to look at (`i64::MIN`: a full scan).
    pub(crate) fn low(&self, queue: &str) -> i64 {
        let mut queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match queues.get_mut(queue) {
            Some(c) if c.full_scan_at.elapsed() < FULL_SCAN_EVERY => c.low,
            Some(c) => {
                c.full_scan_at = std::time::Instant::now();
                i64::MIN
            }
            None => {
                queues.insert(queue.to_owned(), Cursor { low: i64::MIN, full_scan_at: std::time::Instant::now() });
                i64::MIN
            }
        }
    }

    /// A claim of `queue` took tasks due at `due` and later (`None`: it took nothing).
    pub(crate) fn claimed(&self, queue: &str, due: Option<i64>) {
        let mut queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(c), Some(due)) = (queues.get_mut(queue), due) {
            c.low = due;
        }
    }
}

/// Waits for `notified` (a write through this driver) or until `next_due`, the earliest
/// scheduled task or lease expiry, at most `cap`; returns at once when a task is already due.
/// Register `notified` before reading `next_due`, so a write in between still wakes the wait.
pub(crate) async fn wait_for_due(
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    next_due: Option<i64>,
    cap: std::time::Duration,
) {
    let now = now();
    let wait = match next_due {
        Some(due) if due <= now => return,
        Some(due) => cap.min(std::time::Duration::from_millis((due - now) as u64)),
        None => cap,
    };
    tokio::select! {
        _ = notified => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

/// Worth retrying: SQLite's "database is locked"/"busy" after the busy timeout; a
/// serialization failure or deadlock victim (SQLSTATE 40001/40P01); a connection the server
/// closed or killed (class 08, PostgreSQL's 57P01–57P03 after `pg_terminate_backend` or a
/// restart, MySQL's 70100 after `KILL`). The next call gets a fresh connection from the pool.
fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code();
    let code = code.as_deref().unwrap_or_default();
    matches!(code, "5" | "6" | "261" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "70100") || code.starts_with("08")
}

/// Runs `$attempt` (an expression producing a `Result<_, DriverError>` future) again when it
/// fails with a transient error (a deadlock victim, a busy database), up to 5 times with a short
/// random pause: InnoDB picks deadlock victims among concurrent claims and acks, and the remedy
/// it documents is to retry the transaction.
#[cfg(feature = "mysql")]
macro_rules! retry_transient {
    ($attempt:expr) => {{
        let mut tries = 0u64;
        loop {
            match $attempt.await {
                Err(e) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=5) * tries)).await;
                }
                other => break other,
            }
        }
    }};
}
#[cfg(feature = "mysql")]
pub(crate) use retry_transient;

/// `?,?,…` with `n` placeholders, for `IN (…)` lists.
#[cfg(feature = "mysql")]
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// A migration template with the table and index names filled in (validated, quoted with `q`).
pub(crate) fn fill_names(sql: &str, prefix: &str, quote: char) -> String {
    let name = |suffix: &str| format!("{quote}{prefix}_{suffix}{quote}");
    sql.replace("{tasks_due}", &name("tasks_due"))
        .replace("{tasks_parked}", &name("tasks_parked"))
        .replace("{parked}", &name("parked"))
        .replace("{tasks_cancelled}", &name("tasks_cancelled"))
        .replace("{dead_queue}", &name("dead_queue"))
        .replace("{dead_expiry}", &name("dead_expiry"))
        .replace("{tasks}", &name("tasks"))
        .replace("{dead}", &name("dead"))
        .replace("{workers}", &name("workers"))
        .replace("{totals}", &name("totals"))
        .replace("{results_expiry}", &name("results_expiry"))
        .replace("{results}", &name("results"))
        .replace("{paused}", &name("paused"))
        .replace("{unique_expiry}", &name("unique_expiry"))
        .replace("{unique}", &name("unique"))
        .replace("{schedules}", &name("schedules"))
        .replace("{limits}", &name("limits"))
        .replace("{held}", &name("held"))
        .replace("{claim_capped}", &name("claim_capped"))
        .replace("{starts_at}", &name("starts_at"))
        .replace("{starts}", &name("starts"))
}

/// Decodes registry rows, skipping (with a warning) any that do not decode.
pub(crate) fn worker_rows(rows: Vec<Vec<u8>>) -> Vec<asynctasq_core::driver::WorkerInfo> {
    rows.iter()
        .filter_map(|bytes| match asynctasq_core::driver::WorkerInfo::decode(bytes) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(%error, "skipping an undecodable worker registry row");
                None
            }
        })
        .collect()
}
