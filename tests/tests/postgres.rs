//! PostgreSQL faults: the worker's connections are terminated mid-run (`pg_terminate_backend`),
//! including its LISTEN connection; nothing is lost and the worker carries on.

use std::time::Duration;

use asynctasq_tests::{Backend, Setup, eventually, shared_postgres_url};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");
const N: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_kill_mid_run_loses_nothing_and_the_worker_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Postgres(shared_postgres_url())).await;
    let prefix = s.backend_args.last().expect("table prefix").clone();
    let admin = sqlx::PgPool::connect(&shared_postgres_url()).await.expect("admin connection");
    s.dispatch("kill", N, 20, Duration::from_secs(2)).await;
    let mut worker = s.spawn_worker(WORKER, "kill", 8, &[]);
    eventually(Duration::from_secs(60), "a quarter of the tasks to complete", || async { s.completions().await.len() as u64 >= N / 4 })
        .await;
    let mut killed = 0;
    for _ in 0..3 {
        // Every backend whose last statement touched this test's tables (the worker's pool and
        // its LISTEN connection, and this test's own driver).
        let n: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'",
        )
        .bind(&prefix)
        .fetch_all(&admin)
        .await
        .expect("terminate");
        killed += n.len();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(killed > 0, "some connections were terminated");
    assert!(worker.running(), "the worker survives terminated connections");
    eventually(Duration::from_secs(90), "every task to complete", || async { s.completions().await.len() as u64 == N }).await;
    eventually(Duration::from_secs(10), "the queue to drain", || s.drained("kill")).await;
    assert!(worker.running(), "the worker is still running");
    worker.sigterm();
    assert!(worker.exited_ok().await);
}
