//! A worker binary for end-to-end schedule tests: the stock CLI entry point with one cron task,
//! fired every second, that records each run (its task id, which names its slot) in a ledger
//! database outside the queue (`ASYNCTASQ_TEST_LEDGER`, table `fires`).

use std::process::ExitCode;

use asynctasq_core::{TaskContext, TaskError, task};
use sqlx::sqlite::SqlitePool;
use tokio::sync::OnceCell;

static LEDGER: OnceCell<SqlitePool> = OnceCell::const_new();

/// Records `(id, attempt, pid, at_ms)` of each run.
#[task(cron = "* * * * * *", queue = "cron", catch_up = "latest")]
async fn every_second(ctx: TaskContext) -> Result<(), TaskError> {
    let ledger = LEDGER
        .get_or_try_init(|| async {
            let url = std::env::var("ASYNCTASQ_TEST_LEDGER").map_err(|_| TaskError::fatal("ASYNCTASQ_TEST_LEDGER is not set"))?;
            SqlitePool::connect(&url).await.map_err(TaskError::from)
        })
        .await?;
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    sqlx::query("INSERT INTO fires (id, attempt, pid, at_ms) VALUES (?1, ?2, ?3, ?4)")
        .bind(ctx.id().to_string())
        .bind(i64::from(ctx.attempt()))
        .bind(i64::from(std::process::id()))
        .bind(at_ms)
        .execute(ledger)
        .await?;
    Ok(())
}

fn main() -> ExitCode {
    asynctasq_cli::main()
}
