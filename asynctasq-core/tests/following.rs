//! Following a running task through the engine, on the in-memory driver and a paused clock:
//! its progress is found while it runs; cancelled while waiting, it
//! never starts; a running one hears of the cancel from its lease, gets its grace to stop, is
//! aborted after it, and ends cancelled: neither retried nor dead-lettered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use asynctasq_core::driver::TaskState;
use asynctasq_core::{
    Awaited, CancelOutcome, Capability, Client, Driver, Event, MemoryDriver, TaskContext, TaskError, TokioClock, Worker, task,
};

/// Runs until its context says stop, then returns an error (what a well-behaved task does).
#[task(lease = "30s")]
async fn polite(ctx: TaskContext) -> Result<(), TaskError> {
    ctx.cancelled().await;
    Err(TaskError::retry("stopped"))
}

/// Never looks at its context: only an abort stops it.
#[task(lease = "30s")]
async fn stubborn() -> Result<(), TaskError> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

/// Notices the cancel but finishes its work anyway, within the grace.
#[task(lease = "30s")]
async fn finisher(ctx: TaskContext) -> Result<u32, TaskError> {
    ctx.cancelled().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(7)
}

fn setup() -> (Arc<MemoryDriver>, Client) {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock);
    (driver, client)
}

fn worker(driver: &Arc<MemoryDriver>) -> asynctasq_core::WorkerBuilder {
    Worker::builder(driver.clone()).queues("default").expect("queues").stop_when_empty(true).cancel_grace(Duration::from_secs(2))
}

/// Waits (on the paused clock) until the task is leased.
async fn until_leased(driver: &MemoryDriver, id: asynctasq_core::TaskId) {
    for _ in 0..1000 {
        if driver.find(id).await.expect("find").is_some_and(|r| r.state == TaskState::Leased) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the task was never leased");
}

/// Counts its starts: only the test that cancels it before it starts dispatches it (the other
/// tests of this file run at the same time and start `polite`).
static EARLY_STARTS: AtomicU32 = AtomicU32::new(0);

#[task]
async fn cancelled_early() -> Result<(), TaskError> {
    EARLY_STARTS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_task_cancelled_before_it_starts_never_runs() {
    let (driver, client) = setup();
    let id = client.dispatch(CancelledEarly {}).await.expect("dispatch");
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::Removed);
    let counts = worker(&driver).build().expect("build").start().await.expect("run");
    assert_eq!((counts.started, counts.cancelled), (0, 0), "nothing to run");
    assert_eq!(EARLY_STARTS.load(Ordering::SeqCst), 0, "the task never started");
    assert_eq!(client.wait(id, Duration::from_secs(1)).await.expect("wait"), Awaited::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_running_task_hears_of_its_cancel_at_once_where_the_backend_pushes_it() {
    let (driver, client) = setup();
    let id = client.dispatch(Polite {}).await.expect("dispatch");
    let run = tokio::spawn(worker(&driver).build().expect("build").start());
    until_leased(&driver, id).await;
    let asked = tokio::time::Instant::now();
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::Requested);
    let counts = run.await.expect("join").expect("run");
    // A run watches for notices from 50 ms in; the renewal alone would take 10 s.
    assert!(asked.elapsed() < Duration::from_millis(200), "heard from the notice, not the renewal: {:?}", asked.elapsed());
    assert_eq!(counts.cancelled, 1, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_running_task_hears_of_its_cancel_within_a_third_of_its_lease_and_ends_cancelled() {
    // Without notices: the lease renewal alone reports the cancel.
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()).lacking(&[Capability::CancelNotify]));
    let client = Client::new(driver.clone()).with_clock(clock);
    let id = client.dispatch(Polite {}).await.expect("dispatch");
    let built = worker(&driver).build().expect("build");
    let mut events = built.events().subscribe();
    let run = tokio::spawn(built.start());
    until_leased(&driver, id).await;
    let asked = tokio::time::Instant::now();
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::Requested);
    let counts = run.await.expect("join").expect("run");
    let took = asked.elapsed();
    assert!(
        took > Duration::from_millis(50) && took <= Duration::from_secs(10) + Duration::from_millis(100),
        "heard at the next renewal: {took:?}"
    );
    assert_eq!((counts.cancelled, counts.retried, counts.dead, counts.succeeded), (1, 0, 0, 0), "cancelled, not retried: {counts:?}");
    let record = driver.find(id).await.expect("find").expect("kept");
    assert_eq!((record.state, record.attempt), (TaskState::Cancelled, 1));
    let mut saw = false;
    while let Ok(event) = events.try_recv() {
        saw |= matches!(event, Event::TaskCancelled(ref t) if t.id == id);
    }
    assert!(saw, "the worker reports the cancel as an event");
    assert_eq!(client.wait(id, Duration::from_secs(1)).await.expect("wait"), Awaited::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_task_that_ignores_its_context_is_aborted_after_the_grace() {
    let (driver, client) = setup();
    let id = client.dispatch(Stubborn {}).await.expect("dispatch");
    let run = tokio::spawn(worker(&driver).build().expect("build").start());
    until_leased(&driver, id).await;
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::Requested);
    let asked = tokio::time::Instant::now();
    let counts = run.await.expect("join").expect("run");
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(13), "aborted after its grace: {took:?}");
    assert_eq!((counts.cancelled, counts.succeeded, counts.retried), (1, 0, 0), "{counts:?}");
    assert_eq!(driver.find(id).await.expect("find").expect("kept").state, TaskState::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_task_that_finishes_within_its_grace_is_acked() {
    let (driver, client) = setup();
    let id = client.dispatch(Finisher {}).await.expect("dispatch");
    let run = tokio::spawn(worker(&driver).build().expect("build").start());
    until_leased(&driver, id).await;
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::Requested);
    let counts = run.await.expect("join").expect("run");
    assert_eq!((counts.cancelled, counts.succeeded), (0, 1), "it did its work: {counts:?}");
    assert_eq!(client.result::<u32>(id, Duration::from_secs(1)).await.expect("wait"), Awaited::Succeeded(7));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_of_a_finished_task_changes_nothing() {
    let (driver, client) = setup();
    let id = client.dispatch(Finisher {}).await.expect("dispatch");
    assert_eq!(client.cancel(asynctasq_core::TaskId::new()).await.expect("cancel"), CancelOutcome::NotFound);
    let run = tokio::spawn(worker(&driver).build().expect("build").start());
    until_leased(&driver, id).await;
    client.cancel(id).await.expect("cancel");
    run.await.expect("join").expect("run");
    assert_eq!(client.cancel(id).await.expect("cancel"), CancelOutcome::AlreadyFinished, "acked and kept");
}

/// Reports progress in a tight loop, then waits to be cancelled.
#[task(lease = "30s")]
async fn chatty(ctx: TaskContext) -> Result<(), TaskError> {
    for i in 1..=10_000u32 {
        ctx.progress(i as f32 / 10_000.0, format!("step {i}")).expect("the in-memory driver keeps progress");
        if i % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ctx.cancelled().await;
    Err(TaskError::retry("stopped"))
}

#[tokio::test(start_paused = true)]
async fn progress_reported_in_a_tight_loop_is_found_while_the_task_runs() {
    let (driver, client) = setup();
    let id = client.dispatch(Chatty {}).await.expect("dispatch");
    let run = tokio::spawn(worker(&driver).build().expect("build").start());
    until_leased(&driver, id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = driver.find(id).await.expect("find").expect("live").progress.expect("reported");
    assert_eq!((p.fraction, p.message.as_str()), (1.0, "step 10000"), "the latest report is found");
    client.cancel(id).await.expect("cancel");
    run.await.expect("join").expect("run");
}

/// Fails for good at once; its dead record is kept for an hour.
#[task(failure_ttl = "1h")]
async fn doomed() -> Result<(), TaskError> {
    Err(TaskError::fatal("no such customer"))
}

/// Fails for good at once; kept for the worker's failure time to live.
#[task]
async fn also_doomed() -> Result<(), TaskError> {
    Err(TaskError::fatal("bad input"))
}

#[tokio::test(start_paused = true)]
async fn a_dead_task_is_kept_for_its_failure_ttl_then_expires() {
    let (driver, client) = setup();
    let own = client.dispatch(Doomed {}).await.expect("dispatch");
    let worker_default = client.dispatch(AlsoDoomed {}).await.expect("dispatch");
    let counts = worker(&driver).failure_ttl(Duration::from_secs(60)).build().expect("build").start().await.expect("run");
    assert_eq!(counts.dead, 2);
    let reason = |r: Option<asynctasq_core::TaskRecord>| r.map(|r| (r.state, r.last_error.unwrap_or_default()));
    assert_eq!(reason(driver.find(own).await.expect("find")), Some((TaskState::Dead, "no such customer".into())));
    assert_eq!(client.wait(worker_default, Duration::from_secs(1)).await.expect("wait"), Awaited::Dead("bad input".into()));

    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(driver.find(worker_default).await.expect("find").is_none(), "gone after the worker's failure TTL");
    assert_eq!(client.wait(worker_default, Duration::from_secs(1)).await.expect("wait"), Awaited::Expired);
    assert!(driver.find(own).await.expect("find").is_some(), "its #[task(failure_ttl)] keeps it longer");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(driver.find(own).await.expect("find").is_none(), "gone after its own failure TTL");
    assert_eq!(driver.stats("default").await.expect("stats").dead, 0, "and no longer counted");
}

#[tokio::test]
async fn a_failure_ttl_is_refused_where_dead_tasks_cannot_expire() {
    let driver = Arc::new(MemoryDriver::new().lacking(&[Capability::DeadExpiry]));
    let refused = Worker::builder(driver.clone()).queues("default").expect("queues").failure_ttl(Duration::from_secs(60)).build();
    let err = refused.expect_err("refused").to_string();
    assert!(err.contains("failure time to live") && err.contains("cannot expire"), "{err}");
    let err = Worker::builder(driver.clone()).queues("default").expect("queues").build().expect_err("a task sets one").to_string();
    assert!(err.contains("task `") && err.contains("failure time to live"), "names the task: {err}");
}
