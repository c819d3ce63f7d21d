//! PostgreSQL and MySQL behaviour beyond the shared suite, one module per backend from one
//! macro: transactional enqueue, idempotent migrations, bad rows, hostile table names.

/// Expands the tests for one SQL server backend. `$config()` makes a config with tables of the
/// test's own; `$insert` is the raw INSERT (with that backend's placeholders) of a task row.
macro_rules! sql_server_tests {
    ($driver:ident, $config:expr, $insert:literal) => {
        use std::sync::Arc;

        use asynctasq_core::{Client, Driver, DriverError, Overrides, Registry, Worker};

        async fn driver() -> Arc<$driver> {
            Arc::new($driver::connect_with($config()).await.expect("the database must be reachable (scripts/test starts it)"))
        }

        fn envelope(driver: &Arc<$driver>, queue: &str) -> asynctasq_core::Envelope {
            let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
            Client::new(driver.clone()).envelope_from_payload("t", vec![0x90], &overrides, &Default::default()).expect("envelope")
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
            assert_eq!(driver.stats("tx").await.expect("stats"), Default::default());
            assert!(driver.dequeue("tx", 10).await.expect("dequeue").is_empty());
        }

        #[tokio::test]
        async fn migrations_are_idempotent() {
            let c = $config();
            let first = $driver::connect_with(c.clone()).await.expect("first connect migrates");
            first.migrate().await.expect("again is a no-op");
            let second = $driver::connect_with(c.clone()).await.expect("reconnect");
            let sql = format!("SELECT COUNT(*) FROM {}_migrations", c.table_prefix);
            let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(second.pool()).await.expect("count");
            assert_eq!(applied, 2, "each migration (tasks and dead, worker registry) recorded once");
        }

        #[tokio::test]
        async fn hostile_table_prefixes_are_refused() {
            for bad in ["", "a\"; DROP TABLE x; --", "a`b", "Upper", "9lives", "has space", &"x".repeat(41)] {
                let mut c = $config();
                c.table_prefix = bad.to_owned();
                let err = $driver::connect_with(c).await.expect_err("must refuse");
                assert!(matches!(err, DriverError::Config(_)), "{bad:?}: {err}");
            }
        }

        #[tokio::test]
        async fn garbage_rows_in_the_table_are_dead_lettered_with_the_reason() {
            let c = $config();
            let driver = Arc::new($driver::connect_with(c.clone()).await.expect("connect"));
            let sql = format!($insert, c.table_prefix);
            for (i, bytes) in [&b""[..], b"\xc1\xc1", b"\x81\xa7version\x09"].iter().enumerate() {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(vec![i as u8; 16])
                    .bind(*bytes)
                    .execute(driver.pool())
                    .await
                    .expect("raw row");
            }
            let worker = Worker::builder(driver.clone()).registry(Registry::new()).queues("raw").expect("queues").stop_when_empty(true);
            let counts = worker.build().expect("build").start().await.expect("worker survives garbage");
            assert_eq!((counts.dead, counts.retried), (3, 0));
            let dead = driver.dead("raw", 10).await.expect("dead");
            assert!(dead.iter().all(|d| d.error.starts_with("undecodable envelope")));
            assert!(dead.iter().any(|d| d.error.contains("unknown envelope version 9")));
        }
    };
}

#[cfg(feature = "postgres")]
mod postgres {
    use asynctasq_drivers::{PostgresConfig, PostgresDriver};

    fn config() -> PostgresConfig {
        let url = std::env::var("ASYNCTASQ_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut c = PostgresConfig::new(url);
        c.table_prefix = format!("asynctasq_test_{:08x}", fastrand::u32(..));
        c.max_connections = 4;
        c
    }

    sql_server_tests!(
        PostgresDriver,
        config,
        "INSERT INTO {}_tasks (id, queue, envelope, lease_ms, visible_at) VALUES ($1, 'raw', $2, 30000, 0)"
    );
}

#[cfg(feature = "mysql")]
mod mysql {
    use asynctasq_drivers::{MySqlConfig, MySqlDriver};

    fn config() -> MySqlConfig {
        let url = std::env::var("ASYNCTASQ_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut c = MySqlConfig::new(url);
        c.table_prefix = format!("asynctasq_test_{:08x}", fastrand::u32(..));
        c.max_connections = 4;
        c
    }

    sql_server_tests!(
        MySqlDriver,
        config,
        "INSERT INTO {}_tasks (id, queue, envelope, lease_ms, visible_at) VALUES (?, 'raw', ?, 30000, 0)"
    );
}
