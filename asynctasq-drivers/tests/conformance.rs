//! Every driver of this crate against the shared conformance suite, one module per backend.

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::SqliteDriver;

    /// A fresh database file per test, removed with the process's temp dir.
    async fn driver() -> Arc<dyn Driver> {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let url = format!("sqlite://{}/conformance.db", dir.display());
        Arc::new(SqliteDriver::connect(&url).await.expect("open SQLite"))
    }

    asynctasq_core::conformance_tests!(driver);
}
