//! Shared pieces of the end-to-end tests: a ledger of completed runs kept outside the queue,
//! a queue backend with tasks for the `ledger-worker` binary, and Redis servers of a test's own.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{Client, Driver, Overrides, Task, TaskContext, TaskResult};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

pub mod chaos;
mod own;
mod pgbouncer;
pub mod proxy;
mod redis_cluster;

pub use own::{OwnMariaDb, OwnPostgres, OwnRabbit, OwnRabbitCluster, OwnRedis, OwnServer};
pub use pgbouncer::OwnPgBouncer;
pub use redis_cluster::OwnRedisCluster;

/// The arguments of the `ledgered` task of the `ledger-worker` binary (same wire name and
/// fields; the binary holds the handler).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Ledgered {
    /// Which task of the run this is.
    pub n: u64,
    /// How long the run sleeps before recording itself.
    pub sleep_ms: u64,
}

impl Task for Ledgered {
    const NAME: &'static str = "ledgered";
    async fn run(self, _ctx: TaskContext) -> TaskResult {
        unreachable!("dispatch-only here; the ledger-worker binary runs it")
    }
}

/// The arguments of the `fails_once` task of the `ledger-worker` binary: its first attempt is
/// recorded and fails with a retry after `retry_ms`; the second is recorded and succeeds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FailsOnce {
    /// Which task of the run this is.
    pub n: u64,
    /// The retry delay after the first attempt.
    pub retry_ms: u64,
}

impl Task for FailsOnce {
    const NAME: &'static str = "fails_once";
    async fn run(self, _ctx: TaskContext) -> TaskResult {
        unreachable!("dispatch-only here; the ledger-worker binary runs it")
    }
}

/// Where a test's tasks live.
pub enum Backend {
    /// A SQLite file in the test's directory.
    Sqlite,
    /// Redis at this URL, under a key prefix of the test's own.
    Redis(String),
    /// PostgreSQL at this URL, in tables of the test's own.
    Postgres(String),
    /// MySQL or MariaDB at this URL, in tables of the test's own.
    MySql(String),
    /// RabbitMQ at this URL, in queues of the test's own.
    RabbitMq(String),
    /// SQS at this endpoint (moto), in queues of the test's own.
    Sqs(String),
}

/// A test's queue backend, ledger database and the flags worker processes need.
pub struct Setup {
    /// Flags selecting the backend, for `ledger-worker` and `asynctasq`.
    pub backend_args: Vec<String>,
    /// Environment worker processes need for the backend (SQS credentials).
    pub backend_env: Vec<(String, String)>,
    /// `sqlite://…/ledger.db`.
    pub ledger_url: String,
    /// The ledger, for counting.
    pub ledger: SqlitePool,
    /// A client on the queue backend.
    pub client: Client,
    /// The queue driver.
    pub driver: Arc<dyn Driver>,
}

impl Setup {
    /// A SQLite queue and a ledger under `dir`.
    pub async fn new(dir: &Path) -> Self {
        Self::on(dir, Backend::Sqlite).await
    }

    /// A queue on `backend` and a ledger under `dir`.
    pub async fn on(dir: &Path, backend: Backend) -> Self {
        let ledger_url = format!("sqlite://{}/ledger.db?mode=rwc", dir.display());
        let ledger = SqlitePool::connect(&ledger_url).await.expect("open ledger");
        sqlx::query("PRAGMA journal_mode = WAL").execute(&ledger).await.expect("wal");
        for table in ["ledger", "started"] {
            let sql = format!(
                "CREATE TABLE {table} (n INTEGER NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, at_ms INTEGER NOT NULL, claimed_ms INTEGER)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&ledger).await.expect("create ledger");
        }
        let mut backend_env = Vec::new();
        let (driver, backend_args): (Arc<dyn Driver>, Vec<String>) = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/queue.db", dir.display());
                let driver = Arc::new(asynctasq_drivers::SqliteDriver::connect(&url).await.expect("open queue"));
                (driver, vec!["--driver".into(), "sqlite".into(), "--database-url".into(), url])
            }
            Backend::Redis(url) => {
                let prefix = format!("asynctasq-test-{:08x}:", fastrand_u32());
                let mut config = asynctasq_drivers::RedisConfig::from_url(&url).expect("a valid Redis URL");
                config.prefix = prefix.clone();
                let driver = Arc::new(asynctasq_drivers::RedisDriver::connect_with(config).await.expect("Redis must be reachable"));
                (driver, vec!["--driver".into(), "redis".into(), "--redis-url".into(), url, "--redis-prefix".into(), prefix])
            }
            Backend::Postgres(url) => {
                let prefix = format!("asynctasq_test_{:08x}", fastrand_u32());
                let mut config = asynctasq_drivers::PostgresConfig::new(&url);
                config.table_prefix = prefix.clone();
                let driver = Arc::new(asynctasq_drivers::PostgresDriver::connect_with(config).await.expect("PostgreSQL must be reachable"));
                (driver, vec!["--driver".into(), "postgres".into(), "--database-url".into(), url, "--table-prefix".into(), prefix])
            }
            Backend::MySql(url) => {
                let prefix = format!("asynctasq_test_{:08x}", fastrand_u32());
                let mut config = asynctasq_drivers::MySqlConfig::new(&url);
                config.table_prefix = prefix.clone();
                let driver = Arc::new(asynctasq_drivers::MySqlDriver::connect_with(config).await.expect("MySQL must be reachable"));
                (driver, vec!["--driver".into(), "mysql".into(), "--database-url".into(), url, "--table-prefix".into(), prefix])
            }
            Backend::RabbitMq(url) => {
                let prefix = format!("asynctasq-test-{:08x}", fastrand_u32());
                let mut config = asynctasq_drivers::RabbitMqConfig::new(&url);
                config.prefix = prefix.clone();
                let driver = Arc::new(asynctasq_drivers::RabbitMqDriver::connect_with(config).await.expect("RabbitMQ must be reachable"));
                (driver, vec!["--driver".into(), "rabbitmq".into(), "--rabbitmq-url".into(), url, "--rabbitmq-prefix".into(), prefix])
            }
            Backend::Sqs(endpoint) => {
                let prefix = format!("at-{:08x}-", fastrand_u32());
                let driver = Arc::new(
                    asynctasq_drivers::SqsDriver::connect(sqs_config(&endpoint, &prefix)).await.expect("SQS (moto) must be reachable"),
                );
                backend_env = SQS_TEST_ENV.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
                let args = ["--driver", "sqs", "--sqs-endpoint-url", &endpoint, "--sqs-queue-prefix", &prefix, "--sqs-receive-calls", "1"];
                (driver, args.iter().map(|a| (*a).to_owned()).collect())
            }
        };
        let client = Client::new(driver.clone());
        Self { backend_args, backend_env, ledger_url, ledger, client, driver }
    }

    /// Another handle on this setup's backend, connected anew (its own pool or connections):
    /// what a second process would hold. SQLite, Redis, PostgreSQL and MySQL.
    pub async fn another_handle(&self) -> Arc<dyn Driver> {
        let arg = |name: &str| {
            let at = self.backend_args.iter().position(|a| a == name).unwrap_or_else(|| panic!("{name} in {:?}", self.backend_args));
            self.backend_args[at + 1].clone()
        };
        match self.backend_args[1].as_str() {
            "sqlite" => Arc::new(asynctasq_drivers::SqliteDriver::connect(&arg("--database-url")).await.expect("open queue")),
            "redis" => {
                let mut config = asynctasq_drivers::RedisConfig::from_url(&arg("--redis-url")).expect("a valid Redis URL");
                config.prefix = arg("--redis-prefix");
                Arc::new(asynctasq_drivers::RedisDriver::connect_with(config).await.expect("Redis must be reachable"))
            }
            "postgres" => {
                let mut config = asynctasq_drivers::PostgresConfig::new(arg("--database-url"));
                config.table_prefix = arg("--table-prefix");
                Arc::new(asynctasq_drivers::PostgresDriver::connect_with(config).await.expect("PostgreSQL must be reachable"))
            }
            "mysql" => {
                let mut config = asynctasq_drivers::MySqlConfig::new(arg("--database-url"));
                config.table_prefix = arg("--table-prefix");
                Arc::new(asynctasq_drivers::MySqlDriver::connect_with(config).await.expect("MySQL must be reachable"))
            }
            other => panic!("no second handle for {other} here"),
        }
    }

    /// Dispatches tasks `0..n` to `queue`, each sleeping `sleep_ms`, leased for `lease`.
    pub async fn dispatch(&self, queue: &str, n: u64, sleep_ms: u64, lease: Duration) {
        let overrides = Overrides { queue: Some(queue.into()), lease: Some(lease), ..Default::default() };
        self.client.dispatch_many((0..n).map(|n| Ledgered { n, sleep_ms }), overrides).await.expect("dispatch");
    }

    /// Completed runs per task number.
    pub async fn completions(&self) -> HashMap<u64, u32> {
        let rows = sqlx::query("SELECT n, COUNT(*) FROM ledger GROUP BY n").fetch_all(&self.ledger).await.expect("read ledger");
        rows.into_iter().map(|r| (r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u32)).collect()
    }

    /// Whether the queue holds nothing ready, scheduled or leased (false while the backend is
    /// unreachable, so fault tests can poll through an outage).
    pub async fn drained(&self, queue: &str) -> bool {
        match self.driver.stats(queue).await {
            Ok(st) => st.ready + st.scheduled + st.leased == 0,
            Err(e) if e.is_transient() => false,
            Err(e) => panic!("stats: {e}"),
        }
    }

    /// Starts a `ledger-worker worker` process on this setup's backend and ledger, killed if
    /// the test ends first.
    pub fn spawn_worker(&self, exe: &str, queues: &str, concurrency: u32, extra: &[&str]) -> Proc {
        Proc(Some(self.worker(exe, queues, concurrency).args(extra).spawn().expect("start a worker process")))
    }

    /// Starts a worker like [`spawn_worker`](Self::spawn_worker) whose backend address
    /// `target` (`127.0.0.1:PORT`, as in the backend's URL) is replaced by `127.0.0.1:port`: a
    /// proxy of the test's own in between.
    pub fn spawn_worker_via(&self, exe: &str, queues: &str, concurrency: u32, target: &str, port: u16) -> Proc {
        let via = format!("127.0.0.1:{port}");
        let args: Vec<String> = self.backend_args.iter().map(|a| a.replace(target, &via)).collect();
        assert!(args.iter().any(|a| a.contains(&via)), "the worker's backend URL names {target}: {args:?}");
        Proc(Some(self.worker_on(exe, &args, queues, concurrency).spawn().expect("start a worker process")))
    }

    /// Starts a worker like [`spawn_worker`](Self::spawn_worker) with backend flags of the
    /// caller's (this setup's, changed).
    pub fn spawn_worker_on(&self, exe: &str, backend_args: &[String], queues: &str, concurrency: u32, extra: &[&str]) -> Proc {
        Proc(Some(self.worker_on(exe, backend_args, queues, concurrency).args(extra).spawn().expect("start a worker process")))
    }

    /// A `ledger-worker worker` command on this setup's backend and ledger.
    pub fn worker(&self, exe: &str, queues: &str, concurrency: u32) -> Command {
        self.worker_on(exe, &self.backend_args, queues, concurrency)
    }

    fn worker_on(&self, exe: &str, backend_args: &[String], queues: &str, concurrency: u32) -> Command {
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .args(backend_args)
            .args(["--queues", queues, "--concurrency", &concurrency.to_string()])
            .env("ASYNCTASQ_TEST_LEDGER", &self.ledger_url)
            .env("ASYNCTASQ_LOG", "warn")
            .envs(self.backend_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }
}

/// A random number for names of a test's own (no RNG crate needed: `RandomState` is seeded randomly).
pub fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// A child process that is SIGKILLed if still running when dropped (a failing test must not
/// leave workers behind).
pub struct Proc(Option<Child>);

impl Proc {
    /// The child.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("process present until drop")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&mut self) {
        sigterm(self.child());
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let child = self.child();
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Waits (up to 30 s) until the process has its SIGTERM handler in place (bit 15 of
    /// `SigCgt` in `/proc/PID/status`): before that, no program can make a signal anything but
    /// the default action, so a test of how it handles one starts its clock here.
    pub async fn catches_sigterm(&mut self) {
        let path = format!("/proc/{}/status", self.child().id());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = std::fs::read_to_string(&path).unwrap_or_default();
            let caught = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map_or("0", str::trim);
            if u64::from_str_radix(caught, 16).is_ok_and(|mask| mask & (1 << (15 - 1)) != 0) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out after 30 s waiting for the process to catch SIGTERM");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child().try_wait().expect("poll child").is_none()
    }

    /// Waits for it to exit; true when it exited with status 0.
    pub async fn exited_ok(mut self) -> bool {
        let mut child = self.0.take().expect("process present until drop");
        tokio::task::spawn_blocking(move || child.wait().expect("wait")).await.expect("join").success()
    }
}

impl From<Child> for Proc {
    fn from(child: Child) -> Self {
        Self(Some(child))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Polls `check` every 50 ms until it holds, or panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `host:port` of a URL (`redis://127.0.0.1:6379` → `127.0.0.1:6379`), for
/// [`Setup::spawn_worker_via`].
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or_default().to_owned()
}

/// The shared PostgreSQL database the test script starts (`ASYNCTASQ_TEST_POSTGRES_URL`).
pub fn shared_postgres_url() -> String {
    std::env::var("ASYNCTASQ_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The shared MariaDB/MySQL database the test script starts (`ASYNCTASQ_TEST_MYSQL_URL`).
pub fn shared_mysql_url() -> String {
    std::env::var("ASYNCTASQ_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// The shared RabbitMQ the test script starts (`ASYNCTASQ_TEST_RABBITMQ_URL`: a vhost of the
/// test run's own, deleted afterwards; default the local broker's `/`).
pub fn shared_rabbitmq_url() -> String {
    std::env::var("ASYNCTASQ_TEST_RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The SQS endpoint the test script starts (moto; `ASYNCTASQ_TEST_SQS_ENDPOINT`).
pub fn shared_sqs_endpoint() -> String {
    std::env::var("ASYNCTASQ_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// What worker processes on moto need in their environment: a region and any static
/// credentials (moto accepts every key).
pub const SQS_TEST_ENV: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")];

/// Driver settings for moto at `endpoint` with queue name prefix `prefix`.
pub fn sqs_config(endpoint: &str, prefix: &str) -> asynctasq_drivers::SqsConfig {
    let mut config = asynctasq_drivers::SqsConfig::local(endpoint);
    config.queue_prefix = prefix.to_owned();
    config
}

/// The shared Redis the test script starts (`ASYNCTASQ_TEST_REDIS_URL`, default local).
pub fn shared_redis_url() -> String {
    std::env::var("ASYNCTASQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
