//! SQL server faults: the worker's connections are killed mid-run (`pg_terminate_backend` on
//! PostgreSQL, including its LISTEN connection; `KILL CONNECTION` on MySQL/MariaDB); nothing
//! is lost and the worker carries on.

use std::time::Duration;

use asynctasq_tests::{Backend, Setup, shared_mysql_url, shared_postgres_url};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");
const N: u64 = 300;

/// Runs N tasks through one worker process while `kill` (returning how many connections it
/// killed) is applied three times mid-run.
async fn connection_kill_loses_nothing<F, Fut>(backend: Backend, mut kill: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let prefix = s.backend_args.last().expect("table prefix").clone();
    s.survives_fault(WORKER, "kill", N, || async {
        let mut killed = 0;
        for _ in 0..3 {
            killed += kill(prefix.clone()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(killed > 0, "some connections were killed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_kill_mid_run_loses_nothing_on_postgres() {
    let admin = sqlx::PgPool::connect(&shared_postgres_url()).await.expect("admin connection");
    connection_kill_loses_nothing(Backend::Postgres(shared_postgres_url()), |prefix| {
        let admin = admin.clone();
        async move {
            // Every backend whose last statement touched this test's tables.
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
            )
            .bind(prefix)
            .fetch_all(&admin)
            .await
            .expect("terminate");
            killed.len()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_kill_mid_run_loses_nothing_on_mysql() {
    let admin = sqlx::MySqlPool::connect(&shared_mysql_url()).await.expect("admin connection");
    connection_kill_loses_nothing(Backend::MySql(shared_mysql_url()), |prefix| {
        let admin = admin.clone();
        async move {
            // Every other connection to the test database that is idle or running our SQL; the
            // worker's pool holds the only ones touching this test's tables.
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND db = DATABASE() \
                 AND (info IS NULL OR info LIKE CONCAT('%', ?, '%')) AND user = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)",
            )
            .bind(prefix)
            .fetch_all(&admin)
            .await
            .expect("list connections");
            let mut killed = 0;
            for id in ids {
                if sqlx::query(sqlx::AssertSqlSafe(format!("KILL CONNECTION {id}"))).execute(&admin).await.is_ok() {
                    killed += 1;
                }
            }
            killed
        }
    })
    .await;
}
