//! Shutdown of real worker processes: a SIGTERMed worker releases its unfinished tasks unspent,
//! and a second signal stops at once. (Kills, restarts and deploys on every backend are in the
//! reliability suite, `chaos.rs`.)

use std::time::Duration;

use asynctasq_tests::{Proc, Setup, eventually};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// A worker (with `flags`) that holds all `n` tasks of `queue`, each running `task_ms`, under
/// leases of 300 s: long enough that only an explicit release brings a task back.
async fn worker_holding(s: &Setup, queue: &str, n: u64, task_ms: u64, flags: &[&str]) -> Proc {
    s.dispatch(queue, n, task_ms, Duration::from_secs(300)).await;
    let worker = s.spawn_worker(WORKER, queue, n as u32, flags);
    eventually(Duration::from_secs(30), "the worker to lease every task", || async {
        s.driver.stats(queue).await.expect("stats").leased == n
    })
    .await;
    worker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_unfinished_tasks_for_the_next_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    // Tasks far longer than the grace period.
    let mut old = worker_holding(&s, "deploy", 3, 3_000, &["--shutdown-grace", "200ms"]).await;
    old.sigterm();
    assert!(old.exited_ok().await, "graceful stop exits 0");
    let st = s.driver.stats("deploy").await.expect("stats");
    assert_eq!((st.ready, st.leased), (3, 0), "unfinished tasks were released, ready at once");
    assert!(s.completions().await.is_empty(), "nothing finished on the old worker");

    let new = s.spawn_worker(WORKER, "deploy", 3, &["--stop-when-empty"]);
    assert!(new.exited_ok().await);
    let completions = s.completions().await;
    assert_eq!(completions.len(), 3, "the next worker finished every task");
    let attempts: Vec<i64> = sqlx::query_scalar("SELECT attempt FROM ledger").fetch_all(&s.ledger).await.expect("attempts");
    assert!(attempts.iter().all(|a| *a == 1), "released runs did not spend an attempt: {attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_signal_stops_at_once_and_still_releases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let mut worker = worker_holding(&s, "impatient", 2, 60_000, &["--shutdown-grace", "10m"]).await;
    worker.sigterm();
    // The first signal alone would wait ten minutes for the tasks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(worker.running(), "the first signal waits for running tasks");
    worker.sigterm();
    assert!(worker.exited_ok().await);
    let st = s.driver.stats("impatient").await.expect("stats");
    assert_eq!((st.ready, st.leased), (2, 0), "running tasks were released on the way out");
}
