//! Shutdown of real worker processes: a SIGTERMed worker releases its unfinished tasks unspent,
//! and a second signal stops at once. (Kills, restarts and deploys on every backend are in the
//! reliability suite, `chaos.rs`.)

use std::time::Duration;

use asynctasq_tests::{Setup, eventually};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_unfinished_tasks_for_the_next_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    // Tasks far longer than the grace period, with a lease long enough that only an explicit
    // release can bring them back within the test.
    s.dispatch("deploy", 3, 3_000, Duration::from_secs(300)).await;
    let mut old = s.spawn_worker(WORKER, "deploy", 3, &["--shutdown-grace", "200ms"]);
    eventually(Duration::from_secs(30), "the old worker to lease all tasks", || async {
        s.driver.stats("deploy").await.expect("stats").leased == 3
    })
    .await;
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
    s.dispatch("impatient", 2, 60_000, Duration::from_secs(300)).await;
    let mut worker = s.spawn_worker(WORKER, "impatient", 2, &["--shutdown-grace", "10m"]);
    eventually(Duration::from_secs(30), "both tasks to be leased", || async {
        s.driver.stats("impatient").await.expect("stats").leased == 2
    })
    .await;
    worker.sigterm();
    // The first signal alone would wait ten minutes for the tasks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(worker.running(), "the first signal waits for running tasks");
    worker.sigterm();
    assert!(worker.exited_ok().await);
    let st = s.driver.stats("impatient").await.expect("stats");
    assert_eq!((st.ready, st.leased), (2, 0), "running tasks were released on the way out");
}
