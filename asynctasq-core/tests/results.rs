//! Results through the engine, on the in-memory driver and a paused clock: what a task returns
//! is kept with its ack for its time to live and read back by a waiting producer.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::driver::TaskState;
use asynctasq_core::{
    Awaited, Client, Driver, MemoryDriver, StoredResult, Task, TaskContext, TaskError, TaskResult, TokioClock, WaitError, Worker, task,
};
use serde::{Deserialize, Serialize};

/// Adds two numbers and returns the sum: its result.
#[task]
async fn sum(a: i64, b: i64) -> Result<i64, TaskError> {
    Ok(a + b)
}

/// A blocking task's result comes back the same way.
#[task]
fn shout(word: String) -> Result<String, TaskError> {
    Ok(word.to_uppercase())
}

/// Returns a string of `len` bytes.
#[task]
async fn long(len: usize) -> Result<String, TaskError> {
    Ok("x".repeat(len))
}

/// Returns nothing.
#[task]
async fn quiet() {}

/// Keeps nothing once it succeeded, whatever the worker says.
#[task(result_ttl = "0s")]
async fn forgetful() -> Result<u8, TaskError> {
    Ok(1)
}

/// Fails for good.
#[task]
async fn broken() -> Result<u8, TaskError> {
    Err(TaskError::fatal("no way"))
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    rows: u32,
    file: String,
}

/// A task implemented by hand sets its result on the context.
#[derive(Serialize, Deserialize)]
struct Export {
    rows: u32,
}

impl Task for Export {
    const NAME: &'static str = "results-export";

    async fn run(self, ctx: TaskContext) -> TaskResult {
        ctx.set_result(&Report { rows: self.rows, file: format!("export-{}.csv", self.rows) })
    }
}

fn setup() -> (Arc<MemoryDriver>, Client) {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock);
    (driver, client)
}

fn worker(driver: &Arc<MemoryDriver>) -> asynctasq_core::WorkerBuilder {
    let mut registry = asynctasq_core::Registry::linked().expect("registry");
    registry.register::<Export>().expect("register");
    Worker::builder(driver.clone()).registry(registry).queues("default").expect("queues").stop_when_empty(true)
}

const WAIT: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_task_s_returned_value_is_its_result() {
    let (driver, client) = setup();
    let id = client.dispatch(Sum { a: 2, b: 40 }).await.expect("dispatch");
    let counts = worker(&driver).build().expect("build").start().await.expect("run");
    assert_eq!(counts.succeeded, 1);
    assert_eq!(client.result::<i64>(id, WAIT).await.expect("wait"), Awaited::Succeeded(42));
    let record = driver.find(id).await.expect("find").expect("kept");
    assert_eq!((record.state, record.attempt), (TaskState::Succeeded, 1));
}

#[tokio::test(start_paused = true)]
async fn a_blocking_task_s_returned_value_is_its_result() {
    let (driver, client) = setup();
    let id = client.dispatch(Shout { word: "hey".into() }).await.expect("dispatch");
    worker(&driver).build().expect("build").start().await.expect("run");
    assert_eq!(client.result::<String>(id, WAIT).await.expect("wait"), Awaited::Succeeded("HEY".into()));
}

#[tokio::test(start_paused = true)]
async fn a_task_implemented_by_hand_sets_its_result_on_the_context() {
    let (driver, client) = setup();
    let id = client.dispatch(Export { rows: 40 }).await.expect("dispatch");
    worker(&driver).build().expect("build").start().await.expect("run");
    let expected = Report { rows: 40, file: "export-40.csv".into() };
    assert_eq!(client.result::<Report>(id, WAIT).await.expect("wait"), Awaited::Succeeded(expected));
}

#[tokio::test(start_paused = true)]
async fn a_task_returning_nothing_succeeds_with_no_result() {
    let (driver, client) = setup();
    let id = client.dispatch(Quiet {}).await.expect("dispatch");
    worker(&driver).build().expect("build").start().await.expect("run");
    assert_eq!(client.wait(id, WAIT).await.expect("wait"), Awaited::Succeeded(None), "succeeded, and nothing stored");
    assert_eq!(client.result::<()>(id, WAIT).await.expect("wait"), Awaited::Succeeded(()));
    assert_eq!(client.result::<Option<u8>>(id, WAIT).await.expect("wait"), Awaited::Succeeded(None));
}

#[tokio::test(start_paused = true)]
async fn a_result_over_the_limit_is_recorded_too_large_and_the_task_still_succeeds() {
    let (driver, client) = setup();
    let (small, big) =
        (client.dispatch(Long { len: 10 }).await.expect("dispatch"), client.dispatch(Long { len: 100 }).await.expect("dispatch"));
    let counts = worker(&driver).max_result_size(64).build().expect("build").start().await.expect("run");
    assert_eq!(counts.succeeded, 2, "both succeed");
    assert_eq!(client.result::<String>(small, WAIT).await.expect("wait"), Awaited::Succeeded("x".repeat(10)));
    let err = client.result::<String>(big, WAIT).await.expect_err("too large to read back");
    assert!(matches!(err, WaitError::TooLarge { size: 102 }), "{err:?}");
    assert_eq!(client.wait(big, WAIT).await.expect("wait"), Awaited::Succeeded(Some(StoredResult::TooLarge { size: 102 })));
}

#[tokio::test(start_paused = true)]
async fn the_task_s_result_ttl_wins_over_the_worker_s_and_a_kept_result_expires() {
    let (driver, client) = setup();
    let (forgotten, kept) =
        (client.dispatch(Forgetful {}).await.expect("dispatch"), client.dispatch(Sum { a: 1, b: 1 }).await.expect("dispatch"));
    worker(&driver).result_ttl(Duration::from_secs(10)).build().expect("build").start().await.expect("run");
    assert_eq!(client.wait(forgotten, WAIT).await.expect("wait"), Awaited::Expired, "result_ttl = \"0s\" keeps nothing");
    assert_eq!(client.result::<i64>(kept, WAIT).await.expect("wait"), Awaited::Succeeded(2), "kept by the worker's ttl");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(driver.find(kept).await.expect("find").is_some(), "still kept before its ttl");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(client.wait(kept, WAIT).await.expect("wait"), Awaited::Expired, "gone after its ttl");
}

#[tokio::test(start_paused = true)]
async fn a_task_that_failed_for_good_is_reported_dead_with_its_error() {
    let (driver, client) = setup();
    let id = client.dispatch(Broken {}).await.expect("dispatch");
    let counts = worker(&driver).build().expect("build").start().await.expect("run");
    assert_eq!(counts.dead, 1);
    assert_eq!(client.result::<u8>(id, WAIT).await.expect("wait"), Awaited::Dead("no way".into()));
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_a_task_still_waiting_times_out_at_its_timeout() {
    let (_driver, client) = setup();
    let id = client.dispatch(Sum { a: 1, b: 2 }).await.expect("dispatch");
    let started = tokio::time::Instant::now();
    assert_eq!(client.result::<i64>(id, Duration::from_secs(3)).await.expect("wait"), Awaited::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(3), "exactly its timeout on the paused clock");
}
