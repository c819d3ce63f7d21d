//! PostgreSQL and MySQL behaviour beyond the shared suite, one module per backend from one
//! macro: transactional enqueue, idempotent migrations, bad rows, hostile table names.
#![cfg(any(feature = "postgres", feature = "mysql"))]

/// Expands module `$module` of tests for one SQL server backend, on the database at `$var`
/// (default `$default`) with tables of each test's own (`asynctasq_test_*`, dropped by
/// `scripts/test`); `$insert` is the raw INSERT (with that backend's placeholders) of a task
/// row.
macro_rules! sql_server_tests {
    ($feature:literal, $module:ident, $driver:ident, $config:ident, $var:literal, $default:literal, $insert:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use std::sync::Arc;

            use asynctasq_core::{Client, Driver, DriverError, Overrides};
            use asynctasq_drivers::{$config, $driver};

            fn config() -> $config {
                let url = std::env::var($var).unwrap_or_else(|_| $default.into());
                let own = format!("{url}?table_prefix=asynctasq_test_{:08x}&max_connections=4", fastrand::u32(..));
                $config::from_url(&own).expect("a valid URL")
            }

            async fn driver() -> Arc<$driver> {
                Arc::new($driver::connect_with(config()).await.expect("the database must be reachable (scripts/test starts it)"))
            }

            fn envelope(driver: &Arc<$driver>, queue: &str) -> asynctasq_core::Envelope {
                let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
                Client::new(driver.clone()).envelope_from_payload("t", vec![0x90], &overrides, &Default::default()).expect("envelope")
            }

            #[tokio::test]
            async fn kept_results_are_swept_within_a_second_of_their_ttl() {
                let config = config();
                let table = format!("{}_results", config.table_prefix);
                let driver =
                    Arc::new($driver::connect_with(config).await.expect("the database must be reachable (scripts/test starts it)"));
                let pool = driver.pool().clone();
                let stored = || {
                    let (pool, sql) = (pool.clone(), format!("SELECT COUNT(*) FROM {table}"));
                    async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.expect("count") as u64 }
                };
                asynctasq_core::testing::kept_results_are_swept_by_later_claims(driver.clone(), "swept", 20, stored).await;
            }

            #[tokio::test]
            async fn task_enqueued_in_a_committed_transaction_exists() {
                let driver = driver().await;
                let mut tx = driver.pool().begin().await.expect("begin");
                driver.enqueue_in(&mut tx, &[envelope(&driver, "tx")]).await.expect("enqueue in tx");
                assert_eq!(driver.stats("tx").await.expect("stats").ready, 0, "invisible before the commit");
                tx.commit().await.expect("commit");
                assert_eq!(driver.dequeue("tx", 10).await.expect("dequeue").len(), 1, "delivered after the commit");
            }

            #[tokio::test]
            async fn task_enqueued_in_a_rolled_back_transaction_never_exists() {
                let driver = driver().await;
                let mut tx = driver.pool().begin().await.expect("begin");
                driver.enqueue_in(&mut tx, &[envelope(&driver, "tx")]).await.expect("enqueue in tx");
                tx.rollback().await.expect("rollback");
                assert_eq!(driver.stats("tx").await.expect("stats").counts(), [0; 4]);
                assert!(driver.dequeue("tx", 10).await.expect("dequeue").is_empty());
            }

            #[tokio::test]
            async fn migrations_are_idempotent() {
                let c = config();
                let first = $driver::connect_with(c.clone()).await.expect("first connect migrates");
                first.migrate().await.expect("again is a no-op");
                let second = $driver::connect_with(c.clone()).await.expect("reconnect");
                let sql = format!("SELECT COUNT(*) FROM {}_migrations", c.table_prefix);
                let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&second.pool()).await.expect("count");
                assert_eq!(
                    applied, 16,
                    "each migration (tasks and dead, worker registry, totals, replayed mark, kept results, cancellation, progress, error history) recorded once"
                );
            }

            #[tokio::test]
            async fn hostile_table_prefixes_are_refused() {
                for bad in ["", "a\"; DROP TABLE x; --", "a`b", "Upper", "9lives", "has space", &"x".repeat(41)] {
                    let mut c = config();
                    c.table_prefix = bad.to_owned();
                    let err = $driver::connect_with(c).await.expect_err("must refuse");
                    assert!(matches!(err, DriverError::Config(_)), "{bad:?}: {err}");
                }
            }

            #[tokio::test]
            async fn bad_rows_written_straight_into_the_table_are_dead_lettered_with_the_reason_and_good_tasks_still_run() {
                let c = config();
                let driver = Arc::new($driver::connect_with(c.clone()).await.expect("connect"));
                let sql = format!($insert, c.table_prefix);
                let inputs = asynctasq_core::testing::bad_input::inputs("raw");
                for input in &inputs {
                    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                        .bind(input.id.as_bytes().to_vec())
                        .bind(input.bytes.clone())
                        .execute(&driver.pool())
                        .await
                        .expect("raw row");
                }
                asynctasq_core::testing::bad_input::dispatch_good(&(driver.clone() as Arc<dyn Driver>), "raw", 5).await;
                asynctasq_core::testing::bad_input::drain_and_check(driver, "raw", &inputs, 5).await;
            }
        }
    };
}

sql_server_tests! { "postgres", postgres, PostgresDriver, PostgresConfig, "ASYNCTASQ_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test",
"INSERT INTO {}_tasks (id, queue, envelope, lease_ms, visible_at) VALUES ($1, 'raw', $2, 30000, 0)" }
sql_server_tests! { "mysql", mysql, MySqlDriver, MySqlConfig, "ASYNCTASQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test",
"INSERT INTO {}_tasks (id, queue, envelope, lease_ms, visible_at) VALUES (?, 'raw', ?, 30000, 0)" }

/// PostgreSQL counts each state of a queue exactly up to `exact_counts` and estimates past it
/// from a sample of the table's pages, saying so (a table this small is sampled whole, so the
/// estimates are the truth here); a queue below the bound is counted exactly and not marked;
/// the queues are listed by skipping through the index.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_counts_past_exact_counts_are_estimated_and_marked() {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use asynctasq_core::envelope::unix_millis;
    use asynctasq_core::{Client, Driver, Overrides};
    use asynctasq_drivers::{PostgresConfig, PostgresDriver};

    let url = std::env::var("ASYNCTASQ_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let own = format!("{url}?table_prefix=asynctasq_test_{:08x}&max_connections=4&exact_counts=50", fastrand::u32(..));
    let driver = Arc::new(
        PostgresDriver::connect_with(PostgresConfig::from_url(&own).expect("a valid URL"))
            .await
            .expect("the database must be reachable (scripts/test starts it)"),
    );
    let envelopes = |queue: &str, n: usize, delay: Duration| -> Vec<asynctasq_core::Envelope> {
        let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
        (0..n)
            .map(|_| {
                let mut e =
                    Client::new(driver.clone()).envelope_from_payload("t", vec![0x90], &overrides, &Default::default()).expect("envelope");
                e.not_before = unix_millis(SystemTime::now() + delay);
                e
            })
            .collect()
    };
    driver.enqueue(&envelopes("big", 400, Duration::ZERO)).await.expect("enqueue ready");
    driver.enqueue(&envelopes("big", 120, Duration::from_secs(3600))).await.expect("enqueue scheduled");
    let leased = driver.dequeue("big", 3).await.expect("dequeue");
    assert_eq!(leased.len(), 3);
    driver.enqueue(&envelopes("big-dying", 80, Duration::ZERO)).await.expect("enqueue");
    for d in driver.dequeue("big-dying", 80).await.expect("dequeue") {
        driver.dead_letter(&d.lease, "boom", Duration::from_secs(3600)).await.expect("dead letter");
    }
    driver.enqueue(&envelopes("small", 10, Duration::ZERO)).await.expect("enqueue");

    let big = driver.stats("big").await.expect("stats");
    assert_eq!(big.counts(), [397, 120, 3, 0], "{big:?}");
    assert!(big.estimated, "past the bound the counts are estimates, and say so");
    let dying = driver.stats("big-dying").await.expect("stats");
    assert_eq!(dying.counts(), [0, 0, 0, 80], "{dying:?}");
    assert!(dying.estimated, "the dead are estimated past the bound too");
    let small = driver.stats("small").await.expect("stats");
    assert_eq!(small.counts(), [10, 0, 0, 0], "{small:?}");
    assert!(!small.estimated, "below the bound every count is exact");
    assert!(small.oldest_ready_age.is_some());
    assert_eq!(driver.queues().await.expect("queues"), ["big", "big-dying", "small"]);
}
