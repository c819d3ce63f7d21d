//! SQLite-specific behaviour beyond the shared suite: migrations, and bad rows written
//! straight into the table.
#![cfg(feature = "sqlite")]

use std::sync::Arc;

use asynctasq_core::Driver;
use asynctasq_core::testing::bad_input;
use asynctasq_drivers::SqliteDriver;

async fn fresh() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    (dir, url)
}

#[tokio::test]
async fn migrations_are_idempotent_across_connects() {
    let (_dir, url) = fresh().await;
    let first = SqliteDriver::connect(&url).await.expect("first connect migrates");
    first.migrate().await.expect("migrating again is a no-op");
    drop(first);
    let second = SqliteDriver::connect(&url).await.expect("reconnect");
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM asynctasq_migrations").fetch_one(second.pool()).await.expect("count");
    assert_eq!(
        applied, 17,
        "each migration (tasks and dead, worker registry, totals, replayed mark, kept results, cancellation, progress, error history) recorded once, in asynctasq's own table"
    );
}

#[tokio::test]
async fn bad_rows_written_straight_into_the_table_are_dead_lettered_with_the_reason_and_good_tasks_still_run() {
    let (_dir, url) = fresh().await;
    let driver = Arc::new(SqliteDriver::connect(&url).await.expect("connect"));
    let inputs = bad_input::inputs("raw");
    for input in &inputs {
        sqlx::query("INSERT INTO asynctasq_tasks (id, queue, envelope, lease_ms, visible_at) VALUES (?1, 'raw', ?2, 30000, 0)")
            .bind(input.id.as_bytes().to_vec())
            .bind(input.bytes.clone())
            .execute(driver.pool())
            .await
            .expect("insert raw row");
    }
    bad_input::dispatch_good(&(driver.clone() as Arc<dyn Driver>), "raw", 5).await;
    bad_input::drain_and_check(driver.clone(), "raw", &inputs, 5).await;
    let s = driver.stats("raw").await.expect("stats");
    assert_eq!((s.ready, s.leased, s.dead), (0, 0, inputs.len() as u64));
}

fn envelope(driver: &Arc<SqliteDriver>, queue: &str) -> asynctasq_core::Envelope {
    let overrides = asynctasq_core::Overrides { queue: Some(queue.into()), ..Default::default() };
    asynctasq_core::Client::new(driver.clone()).envelope_from_payload("t", vec![0x90], &overrides, &Default::default()).expect("envelope")
}

/// A fresh database with a transaction open that has enqueued one task to queue `tx`.
async fn enqueued_in_a_transaction() -> (tempfile::TempDir, Arc<SqliteDriver>, sqlx::Transaction<'static, sqlx::Sqlite>) {
    let (dir, url) = fresh().await;
    let driver = Arc::new(SqliteDriver::connect(&url).await.expect("connect"));
    let mut tx = driver.pool().begin().await.expect("begin");
    driver.enqueue_in(&mut tx, &[envelope(&driver, "tx")]).await.expect("enqueue in tx");
    (dir, driver, tx)
}

#[tokio::test]
async fn task_enqueued_in_a_committed_transaction_exists() {
    let (_dir, driver, tx) = enqueued_in_a_transaction().await;
    tx.commit().await.expect("commit");
    assert_eq!(driver.dequeue("tx", 10).await.expect("dequeue").len(), 1);
}

#[tokio::test]
async fn task_enqueued_in_a_rolled_back_transaction_never_exists() {
    let (_dir, driver, tx) = enqueued_in_a_transaction().await;
    tx.rollback().await.expect("rollback");
    assert_eq!(driver.stats("tx").await.expect("stats").counts(), [0; 4]);
}

#[tokio::test]
async fn kept_results_are_swept_within_a_second_of_their_ttl() {
    let (_dir, url) = fresh().await;
    let driver = Arc::new(SqliteDriver::connect(&url).await.expect("connect"));
    let pool = driver.pool().clone();
    let stored = || {
        let pool = pool.clone();
        // Kept in place (and records from before migration 0011 in the results table).
        let sql = "SELECT (SELECT COUNT(*) FROM asynctasq_tasks WHERE kept_until IS NOT NULL) + (SELECT COUNT(*) FROM asynctasq_results)";
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.expect("count") as u64 }
    };
    asynctasq_core::testing::kept_results_are_swept_by_later_claims(driver.clone(), "swept", 20, stored).await;
}
