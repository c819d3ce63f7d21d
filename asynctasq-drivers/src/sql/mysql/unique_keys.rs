//! Unique tasks on MySQL and MariaDB (see `sql::unique`), in the enqueue's transaction.

use std::collections::HashMap;

use asynctasq_core::DriverError;
use asynctasq_core::driver::EnqueueOutcome;
use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::unique::{UniqueLock, until_code, until_of};
use sqlx::mysql::MySqlConnection;

use super::{MySqlDriver, q};
use crate::sql::{map_err, now, placeholders, unique};

impl MySqlDriver {
    /// Enqueues a batch holding unique tasks in `conn`'s transaction (see `sql::unique`): keys
    /// no row holds are inserted for the batch's first task with each, then every key's row is
    /// locked and read, in key order, and its owner's state read by a locking read (the newest
    /// committed row, not the transaction's snapshot).
    ///
    /// # Why one unique enqueue per queue at a time
    /// Each queue has a row of its own under the empty key (no task's key: keys are 1 to 255
    /// bytes), and a unique enqueue locks it first, in queue order. Without it, InnoDB's gap
    /// and next-key locks of concurrent multi-row inserts into the key index deadlocked: 16
    /// producers of 50-task batches over 1,000 keys failed after five retries. PostgreSQL's
    /// speculative insertion locks no gaps and needs no such row.
    pub(super) async fn enqueue_unique(&self, conn: &mut MySqlConnection, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let (u, t) = (&self.inner.unique, &self.inner.tasks);
        let at = now();
        let mut first: HashMap<(&str, &str), &Envelope> = HashMap::new();
        for e in tasks {
            if let Some(k) = &e.unique {
                first.entry((e.queue.as_str(), k.key.as_str())).or_insert(e);
            }
        }
        let keys = unique::keys(tasks);
        let candidates: Vec<unique::Take> = keys
            .iter()
            .map(|(queue, key)| {
                let e = first[&(queue.as_str(), key.as_str())];
                let k = e.unique.as_ref().expect("a unique task");
                let lock = UniqueLock { owner: e.id, until: k.until, expires_at: at as u64 + k.ttl_ms };
                unique::Take { queue: queue.clone(), key: key.clone(), lock }
            })
            .collect();
        let mut queues: Vec<&str> = keys.iter().map(|(queue, _)| queue.as_str()).collect();
        queues.dedup();
        let sql = format!(
            "INSERT INTO {u} (queue, unique_key, owner, hold, expires_at) VALUES {} ON DUPLICATE KEY UPDATE hold = 2",
            vec!["(?, '', x'00000000000000000000000000000000', 2, 9223372036854775807)"; queues.len()].join(",")
        );
        let mut query = sqlx::query(q(sql));
        for queue in &queues {
            query = query.bind(*queue);
        }
        query.execute(&mut *conn).await.map_err(|e| map_err("enqueue", e))?;
        self.write_locks(conn, &candidates, "INSERT IGNORE INTO", "").await?;
        let sql = format!(
            "SELECT queue, unique_key, owner, hold, expires_at FROM {u} WHERE (queue, unique_key) IN ({}) ORDER BY queue, unique_key FOR UPDATE",
            vec!["(?,?)"; keys.len()].join(",")
        );
        let mut query = sqlx::query_as::<_, (String, String, Vec<u8>, i16, i64)>(q(sql));
        for (queue, key) in &keys {
            query = query.bind(queue).bind(key);
        }
        let locks = query.fetch_all(&mut *conn).await.map_err(|e| map_err("enqueue", e))?;
        let mut query = sqlx::query_as::<_, (Vec<u8>, i32, i64, i64)>(q(format!(
            "SELECT id, attempt, lease_token IS NOT NULL, cancel > 0 FROM {t} WHERE id IN ({}) LOCK IN SHARE MODE",
            placeholders(locks.len().max(1))
        )));
        for (_, _, owner, _, _) in &locks {
            query = query.bind(owner.as_slice());
        }
        if locks.is_empty() {
            query = query.bind(&[] as &[u8]);
        }
        let states: HashMap<Vec<u8>, (i64, bool, bool)> = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| map_err("enqueue", e))?
            .into_iter()
            .map(|(id, attempt, leased, gone)| (id, (i64::from(attempt), leased != 0, gone != 0)))
            .collect();
        let mut held = unique::Held::new();
        for (queue, key, owner, hold, expires_at) in locks {
            let Some(id) = TaskId::from_slice(&owner) else { continue };
            // The row this enqueue inserted for its own candidate: the key is free.
            if first.get(&(queue.as_str(), key.as_str())).is_some_and(|e| e.id == id) {
                continue;
            }
            let lock = UniqueLock { owner: id, until: until_of(hold.into()), expires_at: expires_at as u64 };
            held.insert((queue, key), (lock, unique::owner_state(states.get(&owner).copied())));
        }
        let plan = unique::plan(tasks, &held, at as u64)?;
        self.write_locks(
            conn,
            &plan.take,
            "INSERT INTO",
            " ON DUPLICATE KEY UPDATE owner = VALUES(owner), hold = VALUES(hold), expires_at = VALUES(expires_at)",
        )
        .await?;
        for r in &plan.rewrite {
            sqlx::query(q(format!(
                "UPDATE {t} SET envelope = ?, lease_ms = ?, visible_at = COALESCE(?, visible_at) WHERE id = ? AND attempt = 0 AND lease_token IS NULL"
            )))
            .bind(r.envelope.as_slice())
            .bind(r.lease_ms as i64)
            .bind(r.due.map(|d| d as i64))
            .bind(r.id.as_bytes().as_slice())
            .execute(&mut *conn)
            .await
            .map_err(|e| map_err("enqueue", e))?;
        }
        let inserted = self.insert_batch(conn, &plan.insert).await?;
        Ok(plan.outcomes(inserted))
    }

    /// Writes unique locks with `verb` (an insert) and `tail` (what a duplicate key does).
    async fn write_locks(&self, conn: &mut MySqlConnection, locks: &[unique::Take], verb: &str, tail: &str) -> Result<(), DriverError> {
        if locks.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "{verb} {} (queue, unique_key, owner, hold, expires_at) VALUES {}{tail}",
            self.inner.unique,
            vec!["(?,?,?,?,?)"; locks.len()].join(",")
        );
        let mut query = sqlx::query(q(sql));
        for l in locks {
            query = query
                .bind(&l.queue)
                .bind(&l.key)
                .bind(l.lock.owner.as_bytes().as_slice())
                .bind(until_code(l.lock.until))
                .bind(i64::try_from(l.lock.expires_at).unwrap_or(i64::MAX));
        }
        query.execute(&mut *conn).await.map_err(|e| map_err("enqueue", e))?;
        Ok(())
    }
}
