//! SQL backends. Each database has its own module with its SQL written out; what they share
//! is error mapping and the migrations' shape.

#[cfg(feature = "sqlite")]
pub mod sqlite;

use asynctasq_core::DriverError;

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

/// SQLite's "database is locked"/"busy" after the busy timeout: another process holds the
/// write lock for long; worth retrying.
fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("5" | "6" | "261" | "517"))
}
