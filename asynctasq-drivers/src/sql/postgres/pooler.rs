//! PostgreSQL behind a pooler in transaction mode (PgBouncer's `pool_mode = transaction`).
//!
//! # What breaks, and why
//! Such a pooler lends a server connection to a client for one transaction, then to the next
//! client. sqlx speaks the extended protocol: a statement is parsed (`Parse`, `Sync`), and only
//! then bound and executed (`Bind`, `Execute`, `Sync`). Outside a transaction each `Sync` ends
//! one, so the pooler may run the two halves on two different servers:
//! - a **named** statement (sqlx's default, cached per client connection) is missing on the
//!   second server, or already exists there under the same name from another client
//!   (`prepared statement "sqlx_s_1" already exists`, seen at once against PgBouncer 1.18);
//! - an **unnamed** one on the second server is whatever another client parsed last.
//!
//! PgBouncer 1.21+ can track named statements itself (`max_prepared_statements`); 1.18, what
//! Debian ships, cannot.
//!
//! # What the driver does with `pgbouncer=true`
//! Every statement is unnamed ([`Unnamed`]: parsed again each time, nothing left on a server)
//! and runs inside a transaction: a statement of its own on the pool ([`Exec`] wraps it in
//! `BEGIN`/`COMMIT`, which pins one server for both halves), or the transaction the driver
//! already holds ([`On`]). Nothing relies on session state: no `LISTEN` through the pooler
//! (wake-ups and notices come from a direct connection, `listen_url`, or else by polling),
//! no session `SET`, and migrations (sqlx takes a session-level advisory lock) run on the
//! direct connection or not at all. The cost is a parse per statement and two more round
//! trips for a statement outside a transaction (measured in BENCHMARKS.md, "PostgreSQL behind
//! PgBouncer").

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Database, Either, Error, Execute, Executor, PgConnection, PgPool, Postgres, SqlStr};

/// A statement sent unnamed: sqlx parses it as the unnamed statement and keeps no name on the
/// server or in its cache.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(self) -> SqlStr {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement> {
        None
    }

    fn take_arguments(&mut self) -> Result<Option<<Postgres as Database>::Arguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// Statements on the pool: as they are, or behind a pooler each unnamed in a transaction of its
/// own.
#[derive(Clone, Debug)]
pub(super) struct Exec {
    pub(super) pool: PgPool,
    pub(super) pooled: bool,
}

impl<'c> Executor<'c> for &'c Exec {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return (&self.pool).fetch_many(query);
        }
        let pool = &self.pool;
        futures_util::stream::once(async move {
            let mut tx = pool.begin().await?;
            let steps: Vec<Either<PgQueryResult, PgRow>> = (&mut *tx).fetch_many(Unnamed(query)).try_collect().await?;
            tx.commit().await?;
            Ok::<_, Error>(futures_util::stream::iter(steps.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return (&self.pool).fetch_optional(query);
        }
        let pool = &self.pool;
        async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(Unnamed(query)).await?;
            tx.commit().await?;
            Ok(row)
        }
        .boxed()
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        (&self.pool).prepare_with(sql, parameters)
    }
}

/// Statements on a connection the driver holds in a transaction: as they are, or unnamed
/// behind a pooler.
#[derive(Debug)]
pub(super) struct On<'c> {
    pub(super) conn: &'c mut PgConnection,
    pub(super) pooled: bool,
}

impl<'c> Executor<'c> for On<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.pooled { self.conn.fetch_many(Unnamed(query)) } else { self.conn.fetch_many(query) }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.pooled { self.conn.fetch_optional(Unnamed(query)) } else { self.conn.fetch_optional(query) }
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, Result<PgStatement, Error>>
    where
        'c: 'e,
    {
        self.conn.prepare_with(sql, parameters)
    }
}
