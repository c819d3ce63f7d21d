//! The connection pool of a server SQL backend (PostgreSQL, MySQL), replaced whole when a call
//! on it gets no answer.
//!
//! # Why replace the pool
//! sqlx has no client-side deadline on a query, so a connection that went half-open (a
//! dropped NAT entry, a frozen peer: no FIN, no RST) hangs whatever runs on it. Every call of
//! the driver therefore runs under a deadline (`request_timeout`). When one runs out, the
//! connection it held is dead, and so, in all likelihood, is every other connection opened
//! through the same path, idle ones included: sqlx would hand those out one after another,
//! each costing another full deadline (and pinging a released connection, which it does on
//! every release, hangs without end on a half-open one, holding its pool slot). So the pool is
//! retired at once and a new one, connecting lazily, takes its place: the next call opens
//! fresh connections. A retired pool closes each connection as it comes back, without the
//! ping, so nothing of it hangs.
//!
//! A timeout in a healthy system (a server too slow to answer within the deadline) costs a
//! reconnect of the pool, which is cheap next to a deadline that never ends.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use asynctasq_core::DriverError;
use sqlx::pool::{Pool, PoolOptions};
use sqlx::{ConnectOptions, Connection, Database};

/// The live pool of a driver and how to make its successor.
pub(crate) struct Pools<DB: Database> {
    current: RwLock<Current<DB>>,
    options: PoolOptions<DB>,
    connect: <DB::Connection as Connection>::Options,
    request_timeout: Duration,
    backend: &'static str,
}

struct Current<DB: Database> {
    generation: u64,
    pool: Pool<DB>,
    retired: Arc<AtomicBool>,
}

impl<DB: Database> Pools<DB> {
    /// Opens the first pool (connecting now, so a wrong address fails at startup). `options`
    /// are the pool's settings; each pool gets an acquire timeout of `request_timeout`.
    pub(crate) async fn open(
        backend: &'static str,
        options: PoolOptions<DB>,
        connect: <DB::Connection as Connection>::Options,
        request_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        // One connection first, bounded: a refused connection or a bad password is reported at
        // once with its cause (the pool would retry it until its acquire timeout and report
        // only that it timed out).
        let probe = tokio::time::timeout(request_timeout, <DB::Connection as Connection>::connect_with(&connect))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let _ = probe.close().await;
        let retired = Arc::new(AtomicBool::new(false));
        let pool = Self::options_for(&options, &retired, request_timeout).connect_with(connect.clone()).await?;
        Ok(Self { current: RwLock::new(Current { generation: 1, pool, retired }), options, connect, request_timeout, backend })
    }

    fn options_for(options: &PoolOptions<DB>, retired: &Arc<AtomicBool>, request_timeout: Duration) -> PoolOptions<DB> {
        let retired = retired.clone();
        options.clone().acquire_timeout(request_timeout).after_release(move |_, _| {
            let keep = !retired.load(Ordering::Relaxed);
            Box::pin(async move { Ok(keep) })
        })
    }

    /// The live pool (a cheap handle).
    pub(crate) fn pool(&self) -> Pool<DB> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).pool.clone()
    }

    fn generation(&self) -> u64 {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).generation
    }

    /// The deadline of one call.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Replaces pool `generation` (if still current) by a new one that connects lazily.
    fn retire(&self, generation: u64) {
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.generation != generation {
            return;
        }
        let retired = Arc::new(AtomicBool::new(false));
        let pool = Self::options_for(&self.options, &retired, self.request_timeout).connect_lazy_with(self.connect.clone());
        let old = std::mem::replace(&mut *current, Current { generation: generation + 1, pool, retired });
        drop(current);
        old.retired.store(true, Ordering::Relaxed);
        tracing::warn!(backend = self.backend, generation, "a call got no answer; replacing the connection pool");
        tokio::spawn(async move {
            // Connections in use come back (and are closed) when their calls end; one stuck on
            // a dead socket is dropped with the pool.
            let _ = tokio::time::timeout(Duration::from_secs(5), old.pool.close()).await;
        });
    }

    /// [`bounded`](Self::bounded) by the request timeout: the deadline of every call but the
    /// waits and bulk enqueues.
    pub(crate) async fn call<T>(&self, doing: &str, call: impl Future<Output = Result<T, DriverError>>) -> Result<T, DriverError> {
        self.bounded(doing, self.request_timeout, call).await
    }

    /// Runs one call of the driver within `limit`; a call that runs out retires the pool it
    /// started on, so the next call uses new connections.
    pub(crate) async fn bounded<T>(
        &self,
        doing: &str,
        limit: Duration,
        call: impl Future<Output = Result<T, DriverError>>,
    ) -> Result<T, DriverError> {
        let generation = self.generation();
        let call = std::pin::pin!(call);
        tokio::select! {
            result = call => result,
            () = tokio::time::sleep(limit) => {
                // Retired before the call's future (and the connection it holds) is dropped, so
                // that connection is closed on its way back, not pinged.
                self.retire(generation);
                Err(DriverError::timed_out(format!("{}: {doing}", self.backend), limit))
            }
        }
    }
}

/// Connect options from a URL, as sqlx parses them.
pub(crate) fn connect_options<O: ConnectOptions>(url: &str) -> Result<O, sqlx::Error> {
    url.parse::<O>()
}
