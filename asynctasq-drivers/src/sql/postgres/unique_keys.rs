//! Unique tasks on PostgreSQL (see `sql::unique`): a batch holding unique tasks is stored by
//! one statement when no row holds any of its keys, and by the general path when one does.

use std::collections::{HashMap, HashSet};

use asynctasq_core::DriverError;
use asynctasq_core::driver::EnqueueOutcome;
use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::unique::{UniqueLock, until_code, until_of};
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgConnection};

use super::{PostgresDriver, Rows, q};
use crate::sql::{map_err, now, unique};

impl PostgresDriver {
    /// Enqueues a batch holding unique tasks in `conn`'s transaction (see `sql::unique`): first
    /// as if no row held any of its keys (the common case: one statement), and where one does,
    /// by the general path.
    pub(super) async fn enqueue_unique(&self, conn: &mut PgConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let at = now();
        let fresh = unique::plan(tasks, &unique::Held::new(), at as u64)?;
        if let Some(outcomes) = self.enqueue_fresh(conn, &fresh).await? {
            return Ok(outcomes);
        }
        self.enqueue_held(conn, tasks, at).await
    }

    /// The batch as planned for keys no row holds, in one statement (`unique_fast`: the locks
    /// and the tasks that took them, the plain insert of the bulk path) inside a savepoint.
    /// `None`, with the savepoint rolled back, when a key was held or an id stored.
    async fn enqueue_fresh(&self, conn: &mut PgConnection, plan: &unique::Plan) -> Result<Option<Vec<EnqueueOutcome>>, DriverError> {
        let step = |sql: &'static str| sqlx::query(sql);
        step("SAVEPOINT asynctasq_unique").execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        let rows = Rows::of(&plan.insert)?;
        let keyed: Vec<bool> = plan.insert.iter().map(|t| t.unique.is_some()).collect();
        // In key order, as every unique enqueue takes keys: two never wait on each other crosswise.
        let mut sorted: Vec<&unique::Take> = plan.take.iter().collect();
        sorted.sort_unstable_by(|a, b| (&a.queue, &a.key).cmp(&(&b.queue, &b.key)));
        let takes = Takes::of(sorted.into_iter().map(|t| (&t.queue, &t.key, t.lock)));
        let query = takes.bind(rows.bind(sqlx::query(q(&self.inner.sql.unique_fast))).push(&keyed));
        let stored = match query.execute(self.inner.on(&mut *conn)).await {
            Ok(done) => done.rows_affected() == plan.insert.len() as u64,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => false,
            Err(e) => return Err(map_err("enqueue", e)),
        };
        if !stored {
            step("ROLLBACK TO SAVEPOINT asynctasq_unique").execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
            return Ok(None);
        }
        step("RELEASE SAVEPOINT asynctasq_unique").execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        if let Some(keys) = &rows.keys {
            // The fast path's insert is the plain one: the keys of its keyed tasks come after.
            let query = sqlx::query(q(&self.inner.sql.set_keys)).bind(&rows.ids).bind(keys);
            query.execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        }
        self.notify_queues(conn, &rows).await?;
        Ok(Some(plan.outcomes(EnqueueOutcome::all_new(plan.insert.len()))))
    }

    /// Enqueues a batch holding unique tasks, some of whose keys a row holds.
    ///
    /// # Why four steps
    /// A key no row holds yet (the common case) is taken by one insert that also serialises
    /// racing enqueues of it (`unique_fresh`). The other keys' rows are locked and read
    /// (`unique_held`, in key order, so two enqueues never wait crosswise), and only then their
    /// owners' states, in a statement of its own: under READ COMMITTED a new statement sees
    /// what the transaction that held the row lock committed, where a join in the locking
    /// statement would read the owner from before it.
    async fn enqueue_held(&self, conn: &mut PgConnection, tasks: &[Envelope], at: i64) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let sql = &self.inner.sql;
        let mut first: HashMap<(&str, &str), &Envelope> = HashMap::new();
        for t in tasks {
            if let Some(u) = &t.unique {
                first.entry((t.queue.as_str(), u.key.as_str())).or_insert(t);
            }
        }
        let keys = unique::keys(tasks);
        let candidates = Takes::of(keys.iter().map(|(q, k)| {
            let t = first[&(q.as_str(), k.as_str())];
            let u = t.unique.as_ref().expect("a unique task");
            (q, k, UniqueLock { owner: t.id, until: u.until, expires_at: at as u64 + u.ttl_ms })
        }));
        let fresh: HashSet<(String, String)> = candidates
            .bind(sqlx::query_as(q(&sql.unique_fresh)))
            .fetch_all(self.inner.on(&mut *conn))
            .await
            .map_err(|e| map_err("enqueue", e))?
            .into_iter()
            .collect();
        let (queues, names): (Vec<&str>, Vec<&str>) =
            keys.iter().filter(|k| !fresh.contains(*k)).map(|(q, k)| (q.as_str(), k.as_str())).unzip();
        let mut held = unique::Held::new();
        if !queues.is_empty() {
            let locks: Vec<(String, String, Vec<u8>, i16, i64)> = sqlx::query_as(q(&sql.unique_held))
                .bind(&queues)
                .bind(&names)
                .fetch_all(self.inner.on(&mut *conn))
                .await
                .map_err(|e| map_err("enqueue", e))?;
            let owners: Vec<&[u8]> = locks.iter().map(|l| l.2.as_slice()).collect();
            let states: HashMap<Vec<u8>, (i64, bool, bool)> = sqlx::query_as::<_, (Vec<u8>, i32, bool, bool)>(q(&sql.unique_owners))
                .bind(&owners)
                .fetch_all(self.inner.on(&mut *conn))
                .await
                .map_err(|e| map_err("enqueue", e))?
                .into_iter()
                .map(|(id, attempt, leased, gone)| (id, (i64::from(attempt), leased, gone)))
                .collect();
            for (queue, key, owner, hold, expires_at) in locks {
                let Some(id) = TaskId::from_slice(&owner) else { continue };
                let lock = UniqueLock { owner: id, until: until_of(hold.into()), expires_at: expires_at as u64 };
                held.insert((queue, key), (lock, unique::owner_state(states.get(&owner).copied())));
            }
        }
        let plan = unique::plan(tasks, &held, at as u64)?;
        // A fresh key's lock was written by `unique_fresh`, as the plan would write it.
        let takes =
            Takes::of(plan.take.iter().filter(|t| !fresh.contains(&(t.queue.clone(), t.key.clone()))).map(|t| (&t.queue, &t.key, t.lock)));
        if !takes.queues.is_empty() {
            takes.bind(sqlx::query(q(&sql.unique_take))).execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        }
        for r in &plan.rewrite {
            let query = sqlx::query(q(&sql.unique_rewrite)).bind(r.id.as_bytes().as_slice()).bind(&r.envelope).bind(r.lease_ms as i64);
            query.bind(r.due.map(|d| d as i64)).execute(self.inner.on(&mut *conn)).await.map_err(|e| map_err("enqueue", e))?;
        }
        let inserted = if plan.insert.is_empty() {
            Vec::new()
        } else {
            let rows = Rows::of(&plan.insert)?;
            let inserted = self.insert_skipping(conn, &rows, &plan.insert).await?;
            self.notify_queues(conn, &rows).await?;
            inserted
        };
        Ok(plan.outcomes(inserted))
    }
}

/// `bind` on a query of any kind (plain, `as`, scalar), so one set of arrays binds to each.
pub(super) trait PgBind<'q>: Sized {
    fn push<T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>>(self, value: T) -> Self;
}

impl<'q> PgBind<'q> for sqlx::query::Query<'q, Postgres, PgArguments> {
    fn push<T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> PgBind<'q> for sqlx::query::QueryAs<'q, Postgres, O, PgArguments> {
    fn push<T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> PgBind<'q> for sqlx::query::QueryScalar<'q, Postgres, O, PgArguments> {
    fn push<T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Unique locks to write, as `UNNEST` arrays.
struct Takes<'a> {
    queues: Vec<&'a str>,
    keys: Vec<&'a str>,
    owners: Vec<Vec<u8>>,
    holds: Vec<i16>,
    expiries: Vec<i64>,
}

impl<'a> Takes<'a> {
    fn of(locks: impl Iterator<Item = (&'a String, &'a String, UniqueLock)>) -> Self {
        let mut takes = Takes { queues: Vec::new(), keys: Vec::new(), owners: Vec::new(), holds: Vec::new(), expiries: Vec::new() };
        for (queue, key, lock) in locks {
            takes.queues.push(queue);
            takes.keys.push(key);
            takes.owners.push(lock.owner.as_bytes().to_vec());
            takes.holds.push(until_code(lock.until));
            takes.expiries.push(i64::try_from(lock.expires_at).unwrap_or(i64::MAX));
        }
        takes
    }

    fn bind<'q, Q: PgBind<'q>>(&'q self, query: Q) -> Q {
        query.push(&self.queues).push(&self.keys).push(&self.owners).push(&self.holds).push(&self.expiries)
    }
}
