//! Where a task's options come from: per dispatch, then `#[task]`, then the worker's default,
//! then the built-in. On the in-memory driver and a paused clock.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{Client, Driver, Event, MemoryDriver, RetryPolicy, TaskError, TokioClock, Worker, WorkerBuilder, task};

/// Always fails, retryably.
#[task]
async fn always_fails(n: u32) -> Result<(), TaskError> {
    Err(TaskError::retry(format!("failure {n}")))
}

/// Always fails, with five attempts and a fixed 3 s retry of its own.
#[task(max_attempts = 5, retry = "fixed", backoff = "3s")]
async fn fails_with_options(n: u32) -> Result<(), TaskError> {
    Err(TaskError::retry(format!("failure {n}")))
}

fn setup() -> (Arc<MemoryDriver>, Client) {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    (driver.clone(), Client::new(driver).with_clock(clock))
}

/// Runs a worker (configured by `configure`) until the queue is empty; returns the attempts
/// each task got and the retry delays it was given, in order.
async fn run(driver: &Arc<MemoryDriver>, configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder) -> (u64, Vec<Duration>) {
    let builder = Worker::builder(driver.clone()).queues("default").expect("queues").stop_when_empty(true);
    let worker = configure(builder).build().expect("build");
    let mut events = worker.events().subscribe();
    let counts = worker.start().await.expect("run");
    let mut delays = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::TaskRetryScheduled { delay, .. } = e {
            delays.push(delay);
        }
    }
    (counts.started, delays)
}

const FAST: RetryPolicy = RetryPolicy::Fixed(Duration::from_millis(10));

#[tokio::test(start_paused = true)]
async fn max_attempts_come_from_the_dispatch_then_the_task_then_the_worker_then_the_built_in() {
    let (driver, client) = setup();
    client.dispatch(AlwaysFails { n: 1 }).max_attempts(2).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(FAST).default_max_attempts(4)).await.0, 2, "per dispatch wins over the worker");

    client.dispatch(FailsWithOptions { n: 2 }).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(FAST).default_max_attempts(4)).await.0, 5, "#[task] wins over the worker");

    client.dispatch(AlwaysFails { n: 3 }).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(FAST).default_max_attempts(4)).await.0, 4, "the worker's default fills what nothing set");

    client.dispatch(AlwaysFails { n: 4 }).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(FAST)).await.0, 3, "the built-in is 3");
}

#[tokio::test(start_paused = true)]
async fn retry_policy_comes_from_the_dispatch_then_the_task_then_the_worker_then_the_built_in() {
    let (driver, client) = setup();
    let worker_policy = RetryPolicy::Fixed(Duration::from_secs(11));

    client.dispatch(FailsWithOptions { n: 1 }).max_attempts(2).retry(RetryPolicy::Fixed(Duration::from_secs(7))).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(worker_policy.clone())).await.1, vec![Duration::from_secs(7)], "per dispatch wins");

    client.dispatch(FailsWithOptions { n: 2 }).max_attempts(2).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(worker_policy.clone())).await.1, vec![Duration::from_secs(3)], "#[task] wins over the worker");

    client.dispatch(AlwaysFails { n: 3 }).max_attempts(2).await.expect("dispatch");
    assert_eq!(run(&driver, |b| b.retry(worker_policy.clone())).await.1, vec![Duration::from_secs(11)], "the worker's policy");

    client.dispatch(AlwaysFails { n: 4 }).max_attempts(3).await.expect("dispatch");
    let (_, delays) = run(&driver, |b| b).await;
    assert_eq!(delays.len(), 2);
    assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1), "built-in: 1 s with jitter, {delays:?}");
    assert!(delays[1] >= Duration::from_secs(1) && delays[1] <= Duration::from_secs(2), "then doubled, {delays:?}");
}

#[tokio::test(start_paused = true)]
async fn worker_defaults_out_of_range_are_refused() {
    let (driver, _) = setup();
    let build = |b: WorkerBuilder| b.build().map(|_| ()).expect_err("refused").to_string();
    let base = || Worker::builder(driver.clone()).queues("default").expect("queues");
    assert!(build(base().default_max_attempts(0)).contains("max attempts"));
    assert!(build(base().default_lease(Duration::from_millis(1))).contains("lease"));
}

#[tokio::test(start_paused = true)]
async fn run_at_makes_a_task_due_at_that_time_and_a_past_time_due_at_once() {
    let (driver, client) = setup();
    let in_an_hour = std::time::UNIX_EPOCH + Duration::from_millis(asynctasq_core::Clock::now(&TokioClock::new()) + 3_600_000);
    let later = client.dispatch(AlwaysFails { n: 1 }).run_at(in_an_hour).await.expect("dispatch");
    let past = client.dispatch(AlwaysFails { n: 2 }).run_at(std::time::UNIX_EPOCH).await.expect("dispatch");
    let replaced = client.dispatch(AlwaysFails { n: 3 }).run_at(in_an_hour).delay(Duration::ZERO).await.expect("dispatch");
    let state = |id| {
        let driver = driver.clone();
        async move { driver.find(id).await.expect("find").expect("stored") }
    };
    let r = state(later).await;
    let expected = in_an_hour.duration_since(std::time::UNIX_EPOCH).expect("after the epoch").as_millis() as u64;
    assert_eq!((r.state, r.at), (asynctasq_core::driver::TaskState::Scheduled, expected), "due at the time given");
    assert_eq!(state(past).await.state, asynctasq_core::driver::TaskState::Ready, "a time past: due at once");
    assert_eq!(state(replaced).await.state, asynctasq_core::driver::TaskState::Ready, "a later delay replaces it");
}
