//! Shared pieces of the end-to-end tests: a ledger of completed runs kept outside the queue,
//! and a queue database with tasks for the `ledger-worker` binary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{Client, Overrides, Task, TaskContext, TaskResult};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

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

/// A test's queue database, ledger database and the URLs for worker processes.
pub struct Setup {
    /// `sqlite://…/queue.db`.
    pub queue_url: String,
    /// `sqlite://…/ledger.db`.
    pub ledger_url: String,
    /// The ledger, for counting.
    pub ledger: SqlitePool,
    /// A client on the queue database.
    pub client: Client,
    /// The queue driver.
    pub driver: Arc<asynctasq_drivers::SqliteDriver>,
}

impl Setup {
    /// Creates both databases under `dir`.
    pub async fn new(dir: &Path) -> Self {
        let queue_url = format!("sqlite://{}/queue.db", dir.display());
        let ledger_url = format!("sqlite://{}/ledger.db?mode=rwc", dir.display());
        let ledger = SqlitePool::connect(&ledger_url).await.expect("open ledger");
        sqlx::query("PRAGMA journal_mode = WAL").execute(&ledger).await.expect("wal");
        sqlx::query("CREATE TABLE ledger (n INTEGER NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL)")
            .execute(&ledger)
            .await
            .expect("create ledger");
        let driver = Arc::new(asynctasq_drivers::SqliteDriver::connect(&queue_url).await.expect("open queue"));
        let client = Client::new(driver.clone());
        Self { queue_url, ledger_url, ledger, client, driver }
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

    /// A `ledger-worker worker` command on this setup's databases.
    pub fn worker(&self, exe: &str, queues: &str, concurrency: u32) -> std::process::Command {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["worker", "--database-url", &self.queue_url, "--queues", queues, "--concurrency", &concurrency.to_string()])
            .env("ASYNCTASQ_TEST_LEDGER", &self.ledger_url)
            .env("ASYNCTASQ_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        cmd
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
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
