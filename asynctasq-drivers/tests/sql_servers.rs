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
