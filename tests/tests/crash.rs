//! Real worker processes on SQLite: a SIGKILLed worker's tasks come back and are finished by
//! another, and a SIGTERMed worker releases its unfinished tasks at once. Every completion is
//! recorded in a ledger outside the queue.

use std::time::Duration;

use asynctasq_core::Driver;
use asynctasq_tests::{Setup, eventually, sigterm};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    const N: u64 = 400;
    const CONCURRENCY: u32 = 4;
    s.dispatch("crash", N, 40, Duration::from_secs(1)).await;

    let mut a = s.worker(WORKER, "crash", CONCURRENCY).spawn().expect("start worker a");
    let mut b = s.worker(WORKER, "crash", CONCURRENCY).spawn().expect("start worker b");
    eventually(Duration::from_secs(60), "a fifth of the tasks to complete", || async { s.completions().await.len() as u64 >= N / 5 }).await;

    a.kill().expect("SIGKILL worker a");
    a.wait().expect("reap worker a");
    let remaining_at_kill = N - s.completions().await.len() as u64;
    assert!(remaining_at_kill > 0, "the kill happened mid-run");
    let mut c = s.worker(WORKER, "crash", CONCURRENCY).spawn().expect("restart a worker");

    eventually(Duration::from_secs(90), "every task to complete", || async { s.completions().await.len() as u64 == N }).await;
    eventually(Duration::from_secs(10), "the queue to drain", || async {
        let st = s.driver.stats("crash").await.expect("stats");
        st.ready + st.scheduled + st.leased == 0
    })
    .await;
    for w in [&b, &c] {
        sigterm(w);
    }
    assert!(b.wait().expect("wait b").success(), "worker b exits cleanly on SIGTERM");
    assert!(c.wait().expect("wait c").success(), "worker c exits cleanly on SIGTERM");

    let completions = s.completions().await;
    assert_eq!(completions.len() as u64, N, "no task lost");
    let duplicates: u32 = completions.values().map(|c| c - 1).sum();
    assert!(duplicates <= CONCURRENCY, "only the killed worker's in-flight tasks may run twice, got {duplicates} duplicates");
    assert_eq!(s.driver.stats("crash").await.expect("stats").dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_unfinished_tasks_for_the_next_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    // Tasks far longer than the grace period, with a lease long enough that only an explicit
    // release can bring them back within the test.
    s.dispatch("deploy", 3, 3_000, Duration::from_secs(300)).await;
    let mut old = s.worker(WORKER, "deploy", 3).args(["--shutdown-grace", "200ms"]).spawn().expect("start old worker");
    eventually(Duration::from_secs(30), "the old worker to lease all tasks", || async {
        s.driver.stats("deploy").await.expect("stats").leased == 3
    })
    .await;
    sigterm(&old);
    assert!(old.wait().expect("wait old").success(), "graceful stop exits 0");
    let st = s.driver.stats("deploy").await.expect("stats");
    assert_eq!((st.ready, st.leased), (3, 0), "unfinished tasks were released, ready at once");
    assert!(s.completions().await.is_empty(), "nothing finished on the old worker");

    let mut new = s.worker(WORKER, "deploy", 3).arg("--stop-when-empty").spawn().expect("start new worker");
    assert!(new.wait().expect("wait new").success());
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
    let mut worker = s.worker(WORKER, "impatient", 2).args(["--shutdown-grace", "10m"]).spawn().expect("start worker");
    eventually(Duration::from_secs(30), "both tasks to be leased", || async {
        s.driver.stats("impatient").await.expect("stats").leased == 2
    })
    .await;
    sigterm(&worker);
    // The first signal alone would wait ten minutes for the tasks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(worker.try_wait().expect("poll").is_none(), "the first signal waits for running tasks");
    sigterm(&worker);
    let exited = tokio::task::spawn_blocking(move || worker.wait()).await.expect("join").expect("wait");
    assert!(exited.success());
    let st = s.driver.stats("impatient").await.expect("stats");
    assert_eq!((st.ready, st.leased), (2, 0), "running tasks were released on the way out");
}
