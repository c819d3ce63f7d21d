//! Real worker processes: a SIGKILLed worker's tasks come back and are finished by another (on
//! every server backend), and a SIGTERMed worker releases its unfinished tasks at once. Every
//! completion is recorded in a ledger outside the queue.

use std::time::Duration;

use asynctasq_tests::{
    Backend, Setup, eventually, shared_mysql_url, shared_postgres_url, shared_rabbitmq_url, shared_redis_url, shared_sqs_endpoint,
};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// Two workers drain N tasks; one is SIGKILLed mid-run and a replacement started. Every task
/// completes, and only the killed worker's in-flight tasks may run twice.
async fn sigkill_mid_run_loses_no_task(backend: Backend) {
    sigkill_mid_run_loses_no_task_within(backend, 0).await;
}

/// As above, allowing `races` more duplicates from the server itself.
async fn sigkill_mid_run_loses_no_task_within(backend: Backend, races: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    const N: u64 = 400;
    const CONCURRENCY: u32 = 4;
    let queue = "crash";
    s.dispatch(queue, N, 40, Duration::from_secs(1)).await;

    let mut a = s.spawn_worker(WORKER, queue, CONCURRENCY, &[]);
    let mut b = s.spawn_worker(WORKER, queue, CONCURRENCY, &[]);
    eventually(Duration::from_secs(60), "a fifth of the tasks to complete", || async { s.completions().await.len() as u64 >= N / 5 }).await;

    a.kill();
    let remaining_at_kill = N - s.completions().await.len() as u64;
    assert!(remaining_at_kill > 0, "the kill happened mid-run");
    let mut c = s.spawn_worker(WORKER, queue, CONCURRENCY, &[]);

    eventually(Duration::from_secs(90), "every task to complete", || async { s.completions().await.len() as u64 == N }).await;
    eventually(Duration::from_secs(10), "the queue to drain", || s.drained(queue)).await;
    b.sigterm();
    c.sigterm();
    assert!(b.exited_ok().await, "worker b exits cleanly on SIGTERM");
    assert!(c.exited_ok().await, "worker c exits cleanly on SIGTERM");

    let completions = s.completions().await;
    assert_eq!(completions.len() as u64, N, "no task lost");
    let duplicates: u32 = completions.values().map(|c| c - 1).sum();
    assert!(duplicates <= CONCURRENCY + races, "only the killed worker's in-flight tasks may run twice, got {duplicates} duplicates");
    assert_eq!(s.driver.stats(queue).await.expect("stats").dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_sqlite() {
    sigkill_mid_run_loses_no_task(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_redis() {
    sigkill_mid_run_loses_no_task(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_postgres() {
    sigkill_mid_run_loses_no_task(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_mysql() {
    sigkill_mid_run_loses_no_task(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_rabbitmq() {
    sigkill_mid_run_loses_no_task(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_task_on_sqs() {
    // moto's receive takes no lock: two workers' receives at the same instant can both take a
    // message (seen: 0 to 3 such duplicates per run of 400). AWS receives do not race so.
    sigkill_mid_run_loses_no_task_within(Backend::Sqs(shared_sqs_endpoint()), 8).await;
}

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
