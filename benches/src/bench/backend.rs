//! Connecting to the backend under test, with names of the run's own, and leaving it as found.

use std::sync::Arc;

use asynctasq_core::{Driver, DriverError};
use clap::ValueEnum;

/// A backend the harness can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DriverKind {
    /// SQLite (default: a fresh file in a temp dir).
    Sqlite,
    /// Redis (default redis://127.0.0.1:6379; keys `asynctasq-bench-<run>:*`).
    Redis,
    /// PostgreSQL (default postgres://postgres@127.0.0.1:5432/test; tables `asynctasq_bench_*`).
    Postgres,
    /// MySQL/MariaDB (default mysql://root@127.0.0.1:3306/test; tables `asynctasq_bench_*`).
    Mysql,
    /// RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/%2f; queues deleted at the end).
    Rabbitmq,
    /// SQS; the URL is the endpoint (default moto at http://127.0.0.1:4566).
    Sqs,
    /// In-process memory.
    Memory,
}

/// The backend of one run.
pub(crate) struct Backend {
    /// The driver under test.
    pub(crate) driver: Arc<dyn Driver>,
    /// The URL a child process of the same run connects to (`None` for memory).
    pub(crate) url: Option<String>,
    rabbit: Option<Arc<asynctasq_drivers::RabbitMqDriver>>,
    sqs: Option<Arc<asynctasq_drivers::SqsDriver>>,
    /// Redis: the run's key prefix, every key of which `remove` deletes.
    redis_prefix: Option<String>,
    /// PostgreSQL or MySQL: the database whose `asynctasq_bench_*` tables `leave` drops.
    sql: Option<DriverKind>,
}

/// The table prefix of every SQL run (the tables `leave` drops).
const TABLES: &str = "asynctasq_bench";

/// PostgreSQL: a drop for each of the run's tables and functions (`$1`: their `LIKE` pattern).
const POSTGRES_DROPS: &str = "SELECT format('DROP TABLE IF EXISTS %I CASCADE', tablename) FROM pg_tables \
     WHERE schemaname = current_schema() AND tablename LIKE $1 \
     UNION ALL SELECT format('DROP FUNCTION IF EXISTS %I', proname) FROM pg_proc \
     WHERE pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND proname LIKE $1";

/// MySQL: a drop for each of the run's tables (`?`: their `LIKE` pattern).
const MYSQL_DROPS: &str = "SELECT CONCAT('DROP TABLE IF EXISTS `', table_name, '`') FROM information_schema.tables \
     WHERE table_schema = DATABASE() AND table_name LIKE ?";

impl Backend {
    /// Connects to `kind` at `url` (or its default); `run` names the run's keys, and `scratch`
    /// holds the default SQLite file.
    pub(crate) async fn connect(kind: DriverKind, url: Option<String>, run: &str, scratch: &std::path::Path) -> Result<Self, DriverError> {
        let mut backend = Self {
            driver: Arc::new(asynctasq_core::MemoryDriver::new()),
            url: None,
            rabbit: None,
            sqs: None,
            redis_prefix: None,
            sql: None,
        };
        match kind {
            DriverKind::Sqlite => {
                let url = url.unwrap_or_else(|| format!("sqlite://{}/bench.db", scratch.display()));
                backend.driver = Arc::new(asynctasq_drivers::SqliteDriver::connect(&url).await?);
                backend.url = Some(url);
            }
            DriverKind::Redis => {
                let url = url.unwrap_or_else(|| "redis://127.0.0.1:6379".into());
                // The URL's own options (`dead_max_count`, …) apply; the run's prefix replaces any.
                let mut config = asynctasq_drivers::RedisConfig::from_url(&url)?;
                config.prefix = format!("asynctasq-bench-{run}:");
                backend.redis_prefix = Some(config.prefix.clone());
                backend.url = Some(config.url.clone());
                backend.driver = Arc::new(asynctasq_drivers::RedisDriver::connect_with(config).await?);
            }
            DriverKind::Postgres => {
                let url = url.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
                // The URL's own options (`pgbouncer`, `listen_url`, …) apply; the run's tables
                // replace any prefix.
                let mut config = asynctasq_drivers::PostgresConfig::from_url(&url)?;
                config.table_prefix = TABLES.into();
                backend.driver = Arc::new(asynctasq_drivers::PostgresDriver::connect_with(config).await?);
                backend.url = Some(url);
                backend.sql = Some(kind);
            }
            DriverKind::Mysql => {
                let url = url.unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".into());
                let mut config = asynctasq_drivers::MySqlConfig::new(&url);
                config.table_prefix = TABLES.into();
                backend.driver = Arc::new(asynctasq_drivers::MySqlDriver::connect_with(config).await?);
                backend.url = Some(url);
                backend.sql = Some(kind);
            }
            DriverKind::Rabbitmq => {
                let url = url.unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
                // The URL's own options (`?prefetch=`) apply.
                let mut config = asynctasq_drivers::RabbitMqConfig::from_url(&url)?;
                config.prefix = "asynctasq-bench".into();
                let driver = Arc::new(asynctasq_drivers::RabbitMqDriver::connect_with(config).await?);
                backend.rabbit = Some(driver.clone());
                backend.driver = driver;
                backend.url = Some(url);
            }
            DriverKind::Sqs => {
                let endpoint = url.unwrap_or_else(|| "http://127.0.0.1:4566".into());
                let mut config = asynctasq_drivers::SqsConfig::local(&endpoint);
                config.queue_prefix = "asynctasq-bench-".into();
                let driver = Arc::new(asynctasq_drivers::SqsDriver::connect(config).await?);
                backend.sqs = Some(driver.clone());
                backend.driver = driver;
                backend.url = Some(endpoint);
            }
            DriverKind::Memory => {}
        }
        Ok(backend)
    }

    /// The server's product and version, as the driver reports it.
    pub(crate) async fn server_version(&self) -> String {
        match self.driver.server_info().await {
            Ok(info) => info.version.unwrap_or_else(|| "not reported".into()),
            Err(DriverError::Unsupported(_)) => format!("not reported by the {} driver", self.driver.name()),
            Err(e) => format!("unknown ({e})"),
        }
    }

    /// SQS requests made so far (`None` on other backends).
    pub(crate) fn sqs_requests(&self) -> Option<asynctasq_drivers::SqsRequests> {
        self.sqs.as_ref().map(|d| d.requests())
    }

    /// Removes `queue` and everything in it.
    pub(crate) async fn remove(&self, queue: &str) -> Result<(), DriverError> {
        if let Some(rabbit) = &self.rabbit {
            rabbit.delete_queue(queue).await.map(|_| ())
        } else if let Some(sqs) = &self.sqs {
            sqs.delete_queue(queue).await
        } else {
            if self.driver.supports(asynctasq_core::Capability::QueueLimits) {
                self.driver.set_limits(queue, asynctasq_core::QueueLimits::default()).await?;
            }
            self.driver.purge(queue).await?;
            self.driver.purge_dead(queue).await?;
            self.forget_redis_keys().await
        }
    }

    /// Leaves a SQL server as the run found it: drops the `asynctasq_bench_*` tables (and
    /// PostgreSQL's functions of limited claims) the driver's migrations made. Other backends
    /// are left clean by [`remove`](Self::remove).
    pub(crate) async fn leave(&self) -> Result<(), DriverError> {
        use sqlx::Connection;
        let (Some(kind), Some(url)) = (self.sql, &self.url) else { return Ok(()) };
        let fail = |e: sqlx::Error| DriverError::backend("dropping the run's tables", e);
        let like = format!("{}\\_%", TABLES.replace('_', "\\_"));
        // Strip the driver's own URL options (`?pgbouncer=…`), which sqlx does not know.
        let plain = url.split('?').next().unwrap_or(url);
        // The drops, read from the catalog, go back as one script on the same connection.
        let script = |drops: Vec<String>| sqlx::raw_sql(sqlx::AssertSqlSafe(drops.join(";\n")));
        if kind == DriverKind::Postgres {
            let mut conn = sqlx::PgConnection::connect(plain).await.map_err(fail)?;
            let drops: Vec<String> = sqlx::query_scalar(POSTGRES_DROPS).bind(&like).fetch_all(&mut conn).await.map_err(fail)?;
            if !drops.is_empty() {
                script(drops).execute(&mut conn).await.map_err(fail)?;
            }
        } else {
            let mut conn = sqlx::MySqlConnection::connect(plain).await.map_err(fail)?;
            let drops: Vec<String> = sqlx::query_scalar(MYSQL_DROPS).bind(&like).fetch_all(&mut conn).await.map_err(fail)?;
            if !drops.is_empty() {
                script(drops).execute(&mut conn).await.map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Redis: deletes every key of the run (purging leaves the queue registry, the wake list,
    /// the totals and unique locks behind, which a later run on the same server would carry).
    async fn forget_redis_keys(&self) -> Result<(), DriverError> {
        let (Some(prefix), Some(url)) = (&self.redis_prefix, &self.url) else { return Ok(()) };
        let fail = |e: redis::RedisError| DriverError::backend("deleting the run's Redis keys", e);
        // A cluster's keys live on its masters, each its own slots' (one key per UNLINK there:
        // the run's queues are in different slots).
        let (servers, one_by_one) = match url.strip_prefix("redis+cluster://") {
            Some(rest) => {
                let hosts = rest.split(['/', '?']).next().unwrap_or_default();
                (hosts.split(',').map(|h| format!("redis://{h}")).collect(), true)
            }
            None => (vec![url.clone()], false),
        };
        for server in servers {
            let client = redis::Client::open(server.as_str()).map_err(fail)?;
            let mut conn = client.get_multiplexed_async_connection().await.map_err(fail)?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.map_err(fail)?;
            if one_by_one && !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                continue;
            }
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.map_err(fail)?;
            for chunk in keys.chunks(if one_by_one { 1 } else { 500 }) {
                redis::cmd("UNLINK").arg(chunk).query_async::<()>(&mut conn).await.map_err(fail)?;
            }
        }
        Ok(())
    }
}
