//! Cancellation under races and crashes: a cancel that removed a task means it never starts,
//! however the cancel and the claims interleave; and a task cancelled while its worker dies
//! (kill -9) ends cancelled instead of running again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asynctasq_core::driver::TaskState;
use asynctasq_core::{CancelOutcome, Client, Driver, MemoryDriver, Overrides, Registry, TaskContext, TaskError, TaskId, Worker, task};
use asynctasq_drivers::{MySqlConfig, MySqlDriver, PostgresConfig, PostgresDriver, RedisConfig, RedisDriver, SqliteDriver};
use asynctasq_tests::{Backend, Ledgered, Setup, eventually, fastrand_u32, shared_mysql_url, shared_postgres_url, shared_redis_url};

/// Every task that started running, by id.
static STARTED: Mutex<Option<HashSet<TaskId>>> = Mutex::new(None);

/// Records that it started, then works for a few milliseconds, stopping early if cancelled.
#[task]
async fn step(ctx: TaskContext, ms: u64) -> Result<(), TaskError> {
    STARTED.lock().expect("lock").get_or_insert_default().insert(ctx.id());
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        () = ctx.cancelled() => Err(TaskError::retry("cancelled")),
    }
}

fn started(id: &TaskId) -> bool {
    STARTED.lock().expect("lock").as_ref().is_some_and(|s| s.contains(id))
}

/// Dispatches `n` tasks while a worker runs them and a canceller cancels each 0 to 10 ms after
/// its dispatch. A cancel that reports the task removed must mean it never started; every task
/// ends succeeded or cancelled, and none is left waiting.
async fn cancels_racing_claims_never_start_a_removed_task(driver: Arc<dyn Driver>, n: u64) {
    let queue = format!("cancel-race-{:08x}", fastrand_u32());
    let mut registry = Registry::new();
    registry.register::<Step>().expect("register");
    let worker = Worker::builder(driver.clone()).registry(registry).queues(&queue).expect("queue").concurrency(20).build().expect("build");
    let handle = worker.handle();
    let running = tokio::spawn(worker.start());
    let client = Client::new(driver.clone());
    let overrides = Overrides { queue: Some(queue.clone()), ..Default::default() };
    let mut cancels = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(100) {
        let batch = (start..(start + 100).min(n)).map(|i| Step { ms: 1 + i % 5 });
        for id in client.dispatch_many(batch, overrides.clone()).await.expect("dispatch") {
            let client = client.clone();
            cancels.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(u64::from(fastrand_u32() % 10_000))).await;
                (id, client.cancel(id).await.expect("cancel"))
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcomes: Vec<(TaskId, CancelOutcome)> =
        futures_util::future::join_all(cancels).await.into_iter().map(|j| j.expect("ran")).collect();
    let removed: Vec<TaskId> = outcomes.iter().filter(|(_, o)| *o == CancelOutcome::Removed).map(|(id, _)| *id).collect();
    eventually(Duration::from_secs(60), "every task to be settled", || async {
        driver.stats(&queue).await.expect("stats").counts() == [0, 0, 0, 0]
    })
    .await;
    let started_after_removal: Vec<&TaskId> = removed.iter().filter(|id| started(id)).collect();
    assert!(started_after_removal.is_empty(), "{} of {} removed tasks started anyway", started_after_removal.len(), removed.len());
    for (id, outcome) in &outcomes {
        let state = driver.find(*id).await.expect("find").map(|r| r.state);
        let expected: &[TaskState] = match outcome {
            CancelOutcome::Removed => &[TaskState::Cancelled],
            CancelOutcome::Requested => &[TaskState::Cancelled, TaskState::Succeeded],
            CancelOutcome::AlreadyFinished => &[TaskState::Succeeded],
            CancelOutcome::NotFound => &[],
        };
        assert!(state.is_some_and(|s| expected.contains(&s)), "task {id}: cancel said {outcome:?}, now {state:?}");
    }
    let by = |o: CancelOutcome| outcomes.iter().filter(|(_, x)| *x == o).count();
    eprintln!(
        "{n} cancels: {} removed, {} requested, {} already finished",
        removed.len(),
        by(CancelOutcome::Requested),
        by(CancelOutcome::AlreadyFinished)
    );
    let claimed_first = by(CancelOutcome::Requested) + by(CancelOutcome::AlreadyFinished);
    assert!(!removed.is_empty() && claimed_first > 0, "the race covered both sides of the claims");
    handle.stop();
    running.await.expect("the worker ran").expect("the worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_claims_never_start_a_removed_task_on_memory() {
    cancels_racing_claims_never_start_a_removed_task(Arc::new(MemoryDriver::new()), 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_claims_never_start_a_removed_task_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let driver = SqliteDriver::connect(&format!("sqlite://{}/race.db", dir.path().display())).await.expect("open");
    cancels_racing_claims_never_start_a_removed_task(Arc::new(driver), 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_claims_never_start_a_removed_task_on_redis() {
    let mut config = RedisConfig::from_url(&shared_redis_url()).expect("url");
    config.prefix = format!("asynctasq-test-{:08x}:", fastrand_u32());
    let driver = RedisDriver::connect_with(config).await.expect("the shared Redis (scripts/test starts it)");
    cancels_racing_claims_never_start_a_removed_task(Arc::new(driver), 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_claims_never_start_a_removed_task_on_postgres() {
    let mut config = PostgresConfig::new(shared_postgres_url());
    config.table_prefix = format!("asynctasq_test_{:08x}", fastrand_u32());
    let driver = PostgresDriver::connect_with(config).await.expect("the shared PostgreSQL");
    cancels_racing_claims_never_start_a_removed_task(Arc::new(driver), 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_racing_claims_never_start_a_removed_task_on_mysql() {
    let mut config = MySqlConfig::new(shared_mysql_url());
    config.table_prefix = format!("asynctasq_test_{:08x}", fastrand_u32());
    let driver = MySqlDriver::connect_with(config).await.expect("the shared MariaDB");
    cancels_racing_claims_never_start_a_removed_task(Arc::new(driver), 500).await;
}

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// A worker process runs a long task; the task is cancelled and the worker is killed (-9) at
/// once, before it can hear of the cancel. Another worker takes over the queue: the task ends
/// cancelled when its lease runs out, and never runs again.
async fn a_cancelled_task_whose_worker_is_killed_ends_cancelled(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let queue = "doomed";
    let sent = s.client.dispatch(Ledgered { n: 0, sleep_ms: 60_000 }).queue(queue).lease(Duration::from_secs(2));
    let id = sent.await.expect("dispatch");
    let mut first = s.spawn_worker(WORKER, queue, 1, &[]);
    eventually(Duration::from_secs(30), "the task to start", || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM started").fetch_one(&s.ledger).await.expect("read ledger") == 1
    })
    .await;
    assert_eq!(s.client.cancel(id).await.expect("cancel"), CancelOutcome::Requested, "the task is running");
    first.kill();
    let second = s.spawn_worker(WORKER, queue, 1, &[]);
    eventually(Duration::from_secs(20), "the task to end cancelled", || async {
        s.driver.find(id).await.expect("find").is_some_and(|r| r.state == TaskState::Cancelled)
    })
    .await;
    // Give the second worker time to take the task, had it been handed out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(second);
    let starts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM started").fetch_one(&s.ledger).await.expect("read ledger");
    assert_eq!(starts, 1, "the task ran once, on the killed worker, and never again");
    assert!(s.completions().await.is_empty(), "it never completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_whose_worker_is_killed_ends_cancelled_on_sqlite() {
    a_cancelled_task_whose_worker_is_killed_ends_cancelled(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_whose_worker_is_killed_ends_cancelled_on_redis() {
    a_cancelled_task_whose_worker_is_killed_ends_cancelled(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_whose_worker_is_killed_ends_cancelled_on_postgres() {
    a_cancelled_task_whose_worker_is_killed_ends_cancelled(Backend::Postgres(shared_postgres_url())).await;
}
