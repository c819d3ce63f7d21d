//! The test helpers users write their task tests with (`asynctasq_core::testing::Jobs`) work
//! the same over the backends users run integration tests on: SQLite, Redis and PostgreSQL,
//! with names of their own (swept by `scripts/test`).

use std::sync::Arc;

use asynctasq_core::testing::{DrainError, Jobs};
use asynctasq_core::{Driver, TaskContext, TaskError, assert_enqueued, refute_enqueued, task};

mod common;
#[allow(unused_imports)]
use common::{env_or, own};

/// Fails on its first attempt, then succeeds.
#[task]
async fn second_time_lucky(ctx: TaskContext, user_id: u64) -> Result<(), TaskError> {
    let _ = user_id;
    if ctx.attempt() == 1 { Err(TaskError::retry("first attempt fails")) } else { Ok(()) }
}

/// Enqueues, asserts on what was enqueued, drains (a retry stays scheduled on a real clock) and
/// refuses a drain that would need to move the backend's clock.
#[allow(dead_code)]
async fn the_helpers_work_on(driver: Arc<dyn Driver>) {
    let jobs = Jobs::on(driver);
    let queue = format!("jobs-{}", own());
    let client = jobs.client();
    client.dispatch(SecondTimeLucky { user_id: 42 }).queue(&queue).await.expect("dispatch");
    assert_enqueued!(jobs, SecondTimeLucky { user_id: 42 }, queue = queue.as_str());
    refute_enqueued!(jobs, SecondTimeLucky { user_id: 7 });
    assert_eq!(jobs.enqueued::<SecondTimeLucky>(&queue).len(), 1);
    let report = jobs.drain(&queue).await.expect("drain");
    assert_eq!((report.succeeded, report.retried, report.dead), (0, 1, 0));
    refute_enqueued!(jobs, SecondTimeLucky { .. }, queue = queue.as_str());
    assert!(matches!(jobs.drain(&queue).with_scheduled().await, Err(DrainError::NoManualClock)));
    assert!(!jobs.perform(SecondTimeLucky { user_id: 1 }).await.is_success(), "attempt 1 fails, as in production");
    jobs.driver().purge(&queue).await.expect("purge");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_helpers_work_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/jobs.db", dir.path().display());
    the_helpers_work_on(asynctasq_drivers::connect(&url).await.expect("sqlite")).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_helpers_work_on_redis() {
    let url = format!("{}?prefix=asynctasq-test-{}:", env_or("ASYNCTASQ_TEST_REDIS_URL", "redis://127.0.0.1:6379"), own());
    the_helpers_work_on(asynctasq_drivers::connect(&url).await.expect("Redis must be reachable (scripts/test starts it)")).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_helpers_work_on_postgres() {
    let base = env_or("ASYNCTASQ_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let url = format!("{base}?table_prefix=asynctasq_test_{}&max_connections=2", own());
    the_helpers_work_on(asynctasq_drivers::connect(&url).await.expect("PostgreSQL must be reachable (scripts/test starts it)")).await;
}
