//! The test helpers users write their task tests with: what was enqueued, one real run, and
//! drains that play out retries and delays on a clock that jumps.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use asynctasq_core::testing::{DrainError, Filter, Jobs, Performed};
use asynctasq_core::{Client, MemoryDriver, Overrides, TaskContext, TaskError, assert_enqueued, refute_enqueued, task};

#[task(queue = "emails")]
async fn send_welcome(user_id: u64, template: String) -> Result<(), TaskError> {
    let _ = (user_id, template);
    Ok(())
}

/// Fails `fails` times, then succeeds.
#[task(max_attempts = 6, backoff = "1h", backoff_cap = "24h", jitter = false)]
async fn flaky(ctx: TaskContext, fails: u32) -> Result<(), TaskError> {
    if ctx.attempt() <= fails { Err(TaskError::retry(format!("failure {}", ctx.attempt()))) } else { Ok(()) }
}

#[task]
async fn fatal() -> Result<(), TaskError> {
    Err(TaskError::fatal("cannot ever work"))
}

#[task]
async fn panics() {
    panic!("boom in the task");
}

#[task]
async fn slow(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

static PARENT_CLIENT: std::sync::Mutex<Option<Client>> = std::sync::Mutex::new(None);
static CHILD_RUNS: AtomicU32 = AtomicU32::new(0);

/// Enqueues a child through the client the test installed, as application code would.
#[task(queue = "family")]
async fn parent(n: u32) -> Result<(), TaskError> {
    let client = PARENT_CLIENT.lock().expect("lock").clone().expect("client installed");
    client.dispatch(Child { n }).await?;
    Ok(())
}

#[task(queue = "family")]
async fn child(n: u32) {
    CHILD_RUNS.fetch_add(n, Ordering::SeqCst);
}

#[tokio::test]
async fn assert_enqueued_matches_a_pattern_a_queue_and_a_delay_within_the_tolerance() {
    let jobs = Jobs::new();
    let client = jobs.client();
    client.dispatch(SendWelcome { user_id: 42, template: "hello".into() }).delay(Duration::from_secs(60)).await.expect("dispatch");
    assert_enqueued!(jobs, SendWelcome { user_id: 42, .. });
    assert_enqueued!(jobs, SendWelcome { user_id: 42, template } if template == "hello");
    assert_enqueued!(jobs, SendWelcome { .. }, queue = "emails", delay = Duration::from_millis(60_400));
    refute_enqueued!(jobs, SendWelcome { .. }, delay = Duration::from_secs(30));
    refute_enqueued!(jobs, SendWelcome { .. }, delay = Duration::from_millis(60_400), tolerance = Duration::from_millis(100));
    refute_enqueued!(jobs, SendWelcome { user_id: 7, .. });
    refute_enqueued!(jobs, SendWelcome { .. }, queue = "default");
    assert_eq!(jobs.enqueued::<SendWelcome>("emails").len(), 1);
    assert!(jobs.enqueued::<SendWelcome>("default").is_empty());
}

#[tokio::test]
async fn a_failed_assertion_prints_what_was_enqueued() {
    let jobs = Jobs::new();
    jobs.client().dispatch(SendWelcome { user_id: 42, template: "hello".into() }).await.expect("dispatch");
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| assert_enqueued!(jobs, SendWelcome { user_id: 7, .. })))
        .expect_err("must fail");
    let message = failed.downcast_ref::<String>().expect("message");
    assert!(message.contains("SendWelcome { user_id: 7, .. }"), "{message}");
    assert!(message.contains("send_welcome on `emails`") && message.contains(r#""user_id":42"#), "{message}");
    let failed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| refute_enqueued!(jobs, SendWelcome { .. }))).expect_err("must fail");
    assert!(failed.downcast_ref::<String>().expect("message").contains("but 1 was enqueued"));
}

#[tokio::test]
async fn during_sees_only_what_its_body_enqueued() {
    let jobs = Jobs::new();
    let client = jobs.client();
    client.dispatch(SendWelcome { user_id: 1, template: "setup".into() }).await.expect("setup");
    let ((), enqueued) =
        jobs.during(async { client.dispatch(SendWelcome { user_id: 2, template: "x".into() }).await.map(|_| ()).expect("dispatch") }).await;
    assert_eq!(enqueued.len(), 1);
    assert_enqueued!(enqueued, SendWelcome { user_id: 2, .. });
    refute_enqueued!(enqueued, SendWelcome { user_id: 1, .. });
    assert_enqueued!(jobs, SendWelcome { user_id: 1, .. });
}

#[tokio::test]
async fn perform_runs_the_real_executor_once() {
    let jobs = Jobs::new();
    assert_eq!(jobs.perform(SendWelcome { user_id: 1, template: "x".into() }).await, Performed::Succeeded);
    match jobs.perform(Flaky { fails: 1 }).await {
        Performed::Retried { delay, error } => {
            assert_eq!((delay, error.as_str()), (Duration::from_secs(3600), "failure 1"), "the task's own policy")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(jobs.perform(Fatal {}).await, Performed::Dead { error } if error.contains("cannot ever work")));
    assert!(matches!(jobs.perform(Panics {}).await, Performed::Retried { error, .. } if error.contains("panicked: boom in the task")));
    let timeout = Overrides { timeout: Some(Duration::from_millis(20)), ..Default::default() };
    assert!(
        matches!(jobs.perform_with(Slow { ms: 5_000 }, timeout).await, Performed::Retried { error, .. } if error.contains("timed out"))
    );
    let last = Overrides { max_attempts: Some(1), ..Default::default() };
    assert!(matches!(jobs.perform_with(Flaky { fails: 1 }, last).await, Performed::Dead { .. }), "attempts used up");
}

#[tokio::test]
async fn drain_with_scheduled_plays_a_day_of_retries_in_no_wall_time() {
    let jobs = Jobs::new();
    jobs.client().dispatch(Flaky { fails: 5 }).await.expect("dispatch");
    let started = Instant::now();
    let report = jobs.drain("default").with_scheduled().await.expect("drain");
    let wall = started.elapsed();
    assert_eq!((report.succeeded, report.retried, report.dead), (1, 5, 0));
    assert_eq!(report.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(wall < Duration::from_millis(50), "took {wall:?}");
}

#[tokio::test]
async fn drain_without_scheduled_leaves_retries_waiting() {
    let jobs = Jobs::new();
    jobs.client().dispatch(Flaky { fails: 5 }).await.expect("dispatch");
    jobs.client().dispatch(SendWelcome { user_id: 1, template: "x".into() }).delay(Duration::from_secs(60)).await.expect("dispatch");
    let report = jobs.drain("default").await.expect("drain");
    assert_eq!((report.succeeded, report.retried, report.dead), (0, 1, 0));
    assert_eq!(jobs.drain("emails").await.expect("drain").succeeded, 0, "not due yet");
    assert_eq!(jobs.drain("emails").with_scheduled().await.expect("drain").succeeded, 1);
}

#[tokio::test]
async fn drain_runs_tasks_enqueued_by_tasks_only_when_recursive() {
    let jobs = Jobs::new();
    *PARENT_CLIENT.lock().expect("lock") = Some(jobs.client());
    jobs.client().dispatch(Parent { n: 1 }).await.expect("dispatch");
    let report = jobs.drain("family").await.expect("drain");
    assert_eq!(report.succeeded, 1, "the parent only");
    assert_enqueued!(jobs, Child { n: 1 }, queue = "family");
    let before = CHILD_RUNS.load(Ordering::SeqCst);
    jobs.client().dispatch(Parent { n: 100 }).await.expect("dispatch");
    let report = jobs.drain("family").recursive().await.expect("drain");
    assert_eq!(report.succeeded, 3, "the new parent, its child and the first child");
    assert_eq!(CHILD_RUNS.load(Ordering::SeqCst) - before, 101);
    refute_enqueued!(jobs, Child { .. });
}

#[tokio::test]
async fn surface_errors_stops_at_the_first_failure() {
    let jobs = Jobs::new();
    jobs.client().dispatch(Fatal {}).await.expect("dispatch");
    match jobs.drain("default").surface_errors().await {
        Err(DrainError::Task(failure)) => assert!(failure.name == "fatal" && failure.error.contains("cannot ever work"), "{failure}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn with_scheduled_is_refused_on_the_system_clock() {
    let jobs = Jobs::on(std::sync::Arc::new(MemoryDriver::new()));
    assert!(matches!(jobs.drain("default").with_scheduled().await, Err(DrainError::NoManualClock)));
    let _ = Filter::default();
}
