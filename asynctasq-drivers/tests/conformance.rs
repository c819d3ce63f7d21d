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

#[cfg(feature = "redis")]
mod redis {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::{RedisConfig, RedisDriver};

    /// A key prefix of its own per test (`asynctasq-test-*`, swept by `scripts/test`), on the
    /// Redis at `ASYNCTASQ_TEST_REDIS_URL` (default the local one).
    async fn driver() -> Arc<dyn Driver> {
        let url = std::env::var("ASYNCTASQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut config = RedisConfig::new(url);
        config.prefix = format!("asynctasq-test-{:08x}:", fastrand::u32(..));
        Arc::new(RedisDriver::connect_with(config).await.expect("Redis must be reachable (scripts/test starts it)"))
    }

    asynctasq_core::conformance_tests!(driver);
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::{PostgresConfig, PostgresDriver};

    /// Tables of its own per test (`asynctasq_test_*`, dropped by `scripts/test`), in the
    /// database at `ASYNCTASQ_TEST_POSTGRES_URL` (default the local `test` database).
    async fn driver() -> Arc<dyn Driver> {
        let url = std::env::var("ASYNCTASQ_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut config = PostgresConfig::new(url);
        config.table_prefix = format!("asynctasq_test_{:08x}", fastrand::u32(..));
        config.max_connections = 4;
        Arc::new(PostgresDriver::connect_with(config).await.expect("PostgreSQL must be reachable (scripts/test starts it)"))
    }

    asynctasq_core::conformance_tests!(driver);
}

#[cfg(feature = "mysql")]
mod mysql {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::{MySqlConfig, MySqlDriver};

    /// Tables of its own per test (`asynctasq_test_*`, dropped by `scripts/test`), in the
    /// database at `ASYNCTASQ_TEST_MYSQL_URL` (default the local MariaDB `test` database).
    async fn driver() -> Arc<dyn Driver> {
        let url = std::env::var("ASYNCTASQ_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut config = MySqlConfig::new(url);
        config.table_prefix = format!("asynctasq_test_{:08x}", fastrand::u32(..));
        config.max_connections = 4;
        Arc::new(MySqlDriver::connect_with(config).await.expect("MySQL must be reachable (scripts/test starts it)"))
    }

    asynctasq_core::conformance_tests!(driver);
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::{RabbitMqConfig, RabbitMqDriver};

    /// Queues of its own per test (prefix `asynctasq-test-*`), on the broker and vhost at
    /// `ASYNCTASQ_TEST_RABBITMQ_URL` (`scripts/test` makes a vhost per run and deletes it).
    async fn driver() -> Arc<dyn Driver> {
        let url = std::env::var("ASYNCTASQ_TEST_RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        let mut config = RabbitMqConfig::new(url);
        config.prefix = format!("asynctasq-test-{:08x}", fastrand::u32(..));
        Arc::new(RabbitMqDriver::connect_with(config).await.expect("RabbitMQ must be reachable (scripts/test starts it)"))
    }

    asynctasq_core::conformance_tests!(driver, lacks: [ExactStats, WorkerRegistry, ServerInfo]);
}

#[cfg(feature = "sqs")]
mod sqs {
    use std::sync::Arc;

    use asynctasq_core::Driver;
    use asynctasq_drivers::{SqsConfig, SqsDriver};

    /// SQS queues of its own per test (prefix `at-<random>-`), on the SQS endpoint at
    /// `ASYNCTASQ_TEST_SQS_ENDPOINT` (moto, which `scripts/test` starts).
    pub(crate) async fn driver() -> Arc<dyn Driver> {
        let endpoint = std::env::var("ASYNCTASQ_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
        let mut config = SqsConfig::local(endpoint);
        config.queue_prefix = format!("at-{:08x}-", fastrand::u32(..));
        Arc::new(SqsDriver::connect(config).await.expect("SQS (moto) must be reachable (scripts/test starts it)"))
    }

    asynctasq_core::conformance_tests!(driver, lacks: [Fencing, ExactStats, PurgeScheduled, WorkerRegistry, ServerInfo]);
}
