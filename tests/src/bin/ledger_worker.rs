//! A worker binary for end-to-end tests: the stock CLI entry point with tasks that record each
//! completed run in a ledger database outside the queue (`ASYNCTASQ_TEST_LEDGER`), so a test
//! can count completions across killed and restarted processes.

use std::process::ExitCode;
use std::time::Duration;

use asynctasq_core::{TaskContext, TaskError, task};
use sqlx::sqlite::SqlitePool;
use tokio::sync::OnceCell;

static LEDGER: OnceCell<SqlitePool> = OnceCell::const_new();

async fn ledger() -> Result<&'static SqlitePool, TaskError> {
    LEDGER
        .get_or_try_init(|| async {
            let url = std::env::var("ASYNCTASQ_TEST_LEDGER").map_err(|_| TaskError::fatal("ASYNCTASQ_TEST_LEDGER is not set"))?;
            SqlitePool::connect(&url).await.map_err(TaskError::from)
        })
        .await
}

/// Records the start of the run, sleeps `sleep_ms`, then records its completion.
#[task]
async fn ledgered(ctx: TaskContext, n: u64, sleep_ms: u64) -> Result<(), TaskError> {
    insert("started", &ctx, n).await?;
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    record(&ctx, n).await
}

/// Records the completion `(n, attempt, pid, at_ms)` in the ledger.
async fn record(ctx: &TaskContext, n: u64) -> Result<(), TaskError> {
    insert("ledger", ctx, n).await
}

/// Inserts `(n, attempt, pid, now in ms, when the delivery was claimed)` into `table` of the
/// ledger database.
async fn insert(table: &str, ctx: &TaskContext, n: u64) -> Result<(), TaskError> {
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let sql = format!("INSERT INTO {table} (n, attempt, pid, at_ms, claimed_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(n as i64)
        .bind(i64::from(ctx.attempt()))
        .bind(i64::from(std::process::id()))
        .bind(at_ms)
        .bind(ctx.claimed_at() as i64)
        .execute(ledger().await?)
        .await?;
    Ok(())
}

/// Adds two numbers: a task with a result, for following a task from the command line.
#[task]
async fn sum(a: i64, b: i64) -> Result<i64, TaskError> {
    Ok(a + b)
}

/// Records `(n, attempt, pid)` in the ledger, then fails its first attempt with a retry after
/// `retry_ms`.
#[task]
async fn fails_once(ctx: TaskContext, n: u64, retry_ms: u64) -> Result<(), TaskError> {
    record(&ctx, n).await?;
    if ctx.attempt() == 1 {
        return Err(TaskError::retry_after("failing the first attempt on purpose", Duration::from_millis(retry_ms)));
    }
    Ok(())
}

fn main() -> ExitCode {
    asynctasq_cli::main()
}
