//! The worker engine against the in-memory driver on a paused tokio clock: retries, timeouts,
//! panics, heartbeats, priorities, limits and shutdown, without real sleeps.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use asynctasq_core::{
    Client, DeadSelector, Driver, Event, MemoryDriver, Overrides, Registry, RetryPolicy, TaskContext, TaskError, TokioClock, Worker,
    WorkerCounts, WorkerError, WorkerHandle, task,
};

/// Per-test logs keyed by a unique key, since tests share the task types.
static LOG: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

fn log(key: &str, line: impl Into<String>) {
    LOG.lock().expect("log lock").entry(key.to_owned()).or_default().push(line.into());
}

fn lines(key: &str) -> Vec<String> {
    LOG.lock().expect("log lock").get(key).cloned().unwrap_or_default()
}

fn key() -> String {
    format!("k{:016x}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// Fails `fail_times` times (retryably), then succeeds.
#[task]
async fn flaky(ctx: TaskContext, key: String, fail_times: u32) -> Result<(), TaskError> {
    log(&key, format!("attempt {}", ctx.attempt()));
    if ctx.attempt() <= fail_times {
        return Err(TaskError::retry(format!("flaky failure {}", ctx.attempt())));
    }
    Ok(())
}

/// Always fails; fatally if asked.
#[task]
async fn doomed(key: String, fatal: bool) -> Result<(), TaskError> {
    log(&key, "run");
    if fatal { Err(TaskError::fatal("cannot ever work")) } else { Err(std::io::Error::other("disk on fire").into()) }
}

/// Panics on its first attempt.
#[task]
async fn panics_once(ctx: TaskContext, key: String) {
    log(&key, format!("attempt {}", ctx.attempt()));
    if ctx.attempt() == 1 {
        panic!("boom in task");
    }
}

/// Sleeps `ms` (tokio time), logging start and end.
#[task]
async fn sleeper(ctx: TaskContext, key: String, ms: u64) {
    log(&key, format!("start {}", ctx.attempt()));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    log(&key, format!("end {}", ctx.attempt()));
}

/// Logs its label (used to observe execution order).
#[task]
async fn record(key: String, label: String) {
    log(&key, label);
}

/// Asks for a retry after a fixed delay.
#[task(max_attempts = 2)]
async fn later(key: String) -> Result<(), TaskError> {
    log(&key, "run");
    Err(TaskError::retry_after("come back later", Duration::from_secs(5)))
}

fn setup() -> (Arc<MemoryDriver>, Client) {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock);
    (driver, client)
}

/// Runs a worker on `queue` until it is empty.
async fn drain(driver: &Arc<MemoryDriver>, queue: &str) -> WorkerCounts {
    let worker = Worker::builder(driver.clone()).queues(queue).expect("queues").stop_when_empty(true).build().expect("build");
    worker.start().await.expect("run")
}

/// Enqueues a task by wire name with a hand-made payload, as a foreign producer would.
async fn enqueue_named(client: &Client, name: &str, payload: Vec<u8>, queue: &str) {
    let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
    let envelope = client.envelope_from_payload(name, payload, &overrides, &Default::default()).expect("envelope");
    client.enqueue(vec![envelope]).await.expect("enqueue");
}

/// Starts `worker` in the background and returns once `n` lines are logged under `key`.
async fn start_and_wait_for(
    worker: Worker,
    key: &str,
    n: usize,
) -> (WorkerHandle, tokio::task::JoinHandle<Result<WorkerCounts, WorkerError>>) {
    let handle = worker.handle();
    let run = tokio::spawn(worker.start());
    while lines(key).len() < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (handle, run)
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::Fixed(Duration::from_millis(10))
}

#[tokio::test(start_paused = true)]
async fn failing_task_is_retried_then_dead_lettered_with_its_last_error() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Doomed { key: k.clone(), fatal: false }).max_attempts(3).await.expect("dispatch");
    let counts = Worker::builder(driver.clone())
        .queues("default")
        .expect("queues")
        .retry(fast_retries())
        .stop_when_empty(true)
        .build()
        .expect("build");
    let counts = counts.start().await.expect("run");
    assert_eq!((counts.retried, counts.dead, counts.succeeded), (2, 1, 0));
    assert_eq!(lines(&k).len(), 3, "ran once per attempt");
    let dead = driver.dead("default", 10).await.expect("dead");
    let mine =
        dead.iter().find(|d| d.envelope.as_ref().is_ok_and(|e| e.payload.windows(k.len()).any(|w| w == k.as_bytes()))).expect("dead task");
    assert_eq!(mine.attempt, 3);
    assert!(mine.error.contains("disk on fire") && mine.error.contains("attempt 3 of 3"), "{}", mine.error);
}

#[tokio::test(start_paused = true)]
async fn fatal_error_dead_letters_at_once() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Doomed { key: k.clone(), fatal: true }).queue("fatal").max_attempts(10).await.expect("dispatch");
    let counts = drain(&driver, "fatal").await;
    assert_eq!((counts.retried, counts.dead), (0, 1));
    let dead = driver.dead("fatal", 10).await.expect("dead");
    assert_eq!((dead[0].attempt, dead[0].error.as_str()), (1, "cannot ever work"));
}

#[tokio::test(start_paused = true)]
async fn timeout_is_a_retryable_failure() {
    let (driver, client) = setup();
    let k = key();
    client
        .dispatch(Sleeper { key: k.clone(), ms: 60_000 })
        .queue("slow")
        .timeout(Duration::from_millis(100))
        .max_attempts(2)
        .await
        .expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("slow").expect("queues").retry(fast_retries()).stop_when_empty(true).build();
    let counts = worker.expect("build").start().await.expect("run");
    assert_eq!((counts.retried, counts.dead), (1, 1));
    assert_eq!(lines(&k), vec!["start 1", "start 2"], "the timed-out runs were stopped");
    let dead = driver.dead("slow", 10).await.expect("dead");
    assert!(dead[0].error.starts_with("timed out after 100ms"), "{}", dead[0].error);
}

#[tokio::test(start_paused = true)]
async fn panic_is_caught_and_retried_without_stopping_the_worker() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(PanicsOnce { key: k.clone() }).queue("panics").await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("panics").expect("queues").retry(fast_retries()).stop_when_empty(true);
    let counts = worker.build().expect("build").start().await.expect("run");
    assert_eq!((counts.retried, counts.succeeded, counts.dead), (1, 1, 0));
    assert_eq!(lines(&k), vec!["attempt 1", "attempt 2"]);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_a_long_task_from_being_redelivered() {
    let (driver, client) = setup();
    let k = key();
    // Runs for 40 leases; two workers compete for the queue.
    client.dispatch(Sleeper { key: k.clone(), ms: 12_000 }).queue("long").lease(Duration::from_millis(300)).await.expect("dispatch");
    let a = Worker::builder(driver.clone()).queues("long").expect("queues").stop_when_empty(true).build().expect("build");
    let b = Worker::builder(driver.clone()).queues("long").expect("queues").stop_when_empty(true).build().expect("build");
    let (ca, cb) = tokio::join!(a.start(), b.start());
    let (ca, cb) = (ca.expect("a"), cb.expect("b"));
    assert_eq!(lines(&k), vec!["start 1", "end 1"], "the task ran exactly once");
    assert_eq!(ca.succeeded + cb.succeeded, 1);
    assert_eq!(ca.lease_lost + cb.lease_lost, 0);
}

#[tokio::test(start_paused = true)]
async fn lost_lease_is_not_settled_by_the_old_worker() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Sleeper { key: k.clone(), ms: 10_000 }).queue("stolen").lease(Duration::from_secs(3)).await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("stolen").expect("queues").build().expect("build");
    let (handle, run) = start_and_wait_for(worker, &k, 1).await;
    // Take the task away as if the worker had stalled past its lease.
    driver.expire_leases();
    let stolen = driver.dequeue("stolen", 1).await.expect("dequeue").pop().expect("the expired task is ready again");
    assert_eq!(stolen.attempt, 2);
    // The old worker's next heartbeat finds the lease lost and abandons its run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    handle.stop();
    let counts = run.await.expect("join").expect("run");
    assert_eq!((counts.lease_lost, counts.succeeded, counts.released), (1, 0, 0));
    assert_eq!(lines(&k), vec!["start 1"], "the abandoned run never finished");
    assert!(driver.ack(&[stolen.lease.into()]).await.expect("ack").is_empty(), "the new holder still owns the task");
}

#[tokio::test(start_paused = true)]
async fn strict_priority_drains_higher_queues_first() {
    let (driver, client) = setup();
    let k = key();
    for i in 0..5 {
        client.dispatch(Record { key: k.clone(), label: format!("low{i}") }).queue("s-low").await.expect("dispatch");
    }
    for i in 0..5 {
        client.dispatch(Record { key: k.clone(), label: format!("high{i}") }).queue("s-high").await.expect("dispatch");
    }
    let worker = Worker::builder(driver.clone()).queues("s-high,s-low").expect("queues").concurrency(1).stop_when_empty(true);
    worker.build().expect("build").start().await.expect("run");
    let order: Vec<String> = lines(&k).into_iter().map(|l| l[..l.len() - 1].to_owned()).collect();
    assert_eq!(order, [vec!["high".to_owned(); 5], vec!["low".to_owned(); 5]].concat());
}

#[tokio::test(start_paused = true)]
async fn weighted_priority_never_starves_a_queue() {
    let (driver, client) = setup();
    let k = key();
    let tasks = |label: &str| (0..70).map(|_| Record { key: k.clone(), label: label.to_owned() }).collect::<Vec<_>>();
    client.dispatch_many(tasks("high"), Overrides { queue: Some("w-high".into()), ..Default::default() }).await.expect("dispatch");
    client.dispatch_many(tasks("low"), Overrides { queue: Some("w-low".into()), ..Default::default() }).await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("w-high:6,w-low:1").expect("queues").concurrency(1).max_tasks(21);
    worker.build().expect("build").start().await.expect("run");
    let ran = lines(&k);
    assert_eq!(ran.len(), 21);
    let low = ran.iter().filter(|l| *l == "low").count();
    assert_eq!(low, 3, "low gets its 1-in-7 share while high is full: {ran:?}");
}

#[tokio::test(start_paused = true)]
async fn max_tasks_is_exact() {
    let (driver, client) = setup();
    let k = key();
    let tasks = (0..50).map(|i| Record { key: k.clone(), label: i.to_string() });
    client.dispatch_many(tasks, Overrides { queue: Some("limited".into()), ..Default::default() }).await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("limited").expect("queues").concurrency(8).max_tasks(13);
    let counts = worker.build().expect("build").start().await.expect("run");
    assert_eq!((counts.started, counts.succeeded), (13, 13));
    assert_eq!(lines(&k).len(), 13);
    assert_eq!(driver.stats("limited").await.expect("stats").ready, 37);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_releases_unfinished_tasks_without_spending_attempts() {
    let (driver, client) = setup();
    let k = key();
    for _ in 0..3 {
        client.dispatch(Sleeper { key: k.clone(), ms: 60_000 }).queue("deploy").await.expect("dispatch");
    }
    let worker =
        Worker::builder(driver.clone()).queues("deploy").expect("queues").concurrency(3).shutdown_grace(Duration::from_millis(500));
    let worker = worker.build().expect("build");
    let (handle, run) = start_and_wait_for(worker, &k, 3).await;
    handle.stop();
    let counts = run.await.expect("join").expect("run");
    assert_eq!((counts.released, counts.succeeded), (3, 0));
    let again = driver.dequeue("deploy", 10).await.expect("dequeue");
    assert_eq!(again.len(), 3, "released tasks are ready at once");
    assert!(again.iter().all(|d| d.attempt == 1), "release does not spend an attempt");
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_running_tasks_finish_within_the_grace_period() {
    let (driver, client) = setup();
    let k = key();
    for _ in 0..3 {
        client.dispatch(Sleeper { key: k.clone(), ms: 2_000 }).queue("finish").await.expect("dispatch");
    }
    let worker = Worker::builder(driver.clone()).queues("finish").expect("queues").concurrency(3).shutdown_grace(Duration::from_secs(30));
    let worker = worker.build().expect("build");
    let (handle, run) = start_and_wait_for(worker, &k, 3).await;
    handle.stop();
    let counts = run.await.expect("join").expect("run");
    assert_eq!((counts.succeeded, counts.released), (3, 0));
    assert_eq!(driver.stats("finish").await.expect("stats").counts(), [0; 4]);
}

#[tokio::test(start_paused = true)]
async fn stop_now_releases_running_tasks_at_once() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Sleeper { key: k.clone(), ms: 60_000 }).queue("now").await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("now").expect("queues").shutdown_grace(Duration::from_secs(3600)).build();
    let worker = worker.expect("build");
    let (handle, run) = start_and_wait_for(worker, &k, 1).await;
    let before = tokio::time::Instant::now();
    handle.stop_now();
    let counts = run.await.expect("join").expect("run");
    assert!(before.elapsed() < Duration::from_secs(1), "did not wait for the grace period");
    assert_eq!(counts.released, 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_task_name_is_dead_lettered_at_once() {
    let (driver, client) = setup();
    enqueue_named(&client, "no.such.task", vec![0x80], "unknown").await;
    let counts = drain(&driver, "unknown").await;
    assert_eq!((counts.dead, counts.retried), (1, 0));
    let dead = driver.dead("unknown", 1).await.expect("dead");
    assert!(dead[0].error.contains("unknown task name `no.such.task`"), "{}", dead[0].error);
    assert_eq!(dead[0].attempt, 1);
}

#[tokio::test(start_paused = true)]
async fn undecodable_envelope_is_dead_lettered_with_the_reason() {
    let (driver, client) = setup();
    driver.enqueue_raw("garbage", b"\xc1\x00not msgpack".to_vec()).expect("raw");
    let k = key();
    client.dispatch(Record { key: k.clone(), label: "good".into() }).queue("garbage").await.expect("dispatch");
    let counts = drain(&driver, "garbage").await;
    assert_eq!((counts.dead, counts.succeeded), (1, 1), "the good task around it still runs");
    let dead = driver.dead("garbage", 1).await.expect("dead");
    assert!(dead[0].error.starts_with("undecodable envelope"), "{}", dead[0].error);
    assert!(dead[0].envelope.is_err(), "the raw record is kept as it was");
}

#[tokio::test(start_paused = true)]
async fn undecodable_arguments_are_dead_lettered_at_once() {
    let (driver, client) = setup();
    // A map without the fields `record` needs.
    enqueue_named(&client, "record", vec![0x81, 0xa1, b'x', 0x01], "badargs").await;
    let counts = drain(&driver, "badargs").await;
    assert_eq!((counts.dead, counts.retried), (1, 0));
    let dead = driver.dead("badargs", 1).await.expect("dead");
    assert!(dead[0].error.contains("undecodable arguments for `record`"), "{}", dead[0].error);
}

#[tokio::test(start_paused = true)]
async fn crash_looping_task_is_dead_lettered_after_max_attempts() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Record { key: k.clone(), label: "x".into() }).queue("crashy").max_attempts(2).await.expect("dispatch");
    // Two deliveries whose workers "crash" (leases simply expire).
    for _ in 0..2 {
        assert_eq!(driver.dequeue("crashy", 1).await.expect("dequeue").len(), 1);
        driver.expire_leases();
    }
    let counts = drain(&driver, "crashy").await;
    assert_eq!(counts.dead, 1);
    assert!(lines(&k).is_empty(), "a task past its attempts does not run again");
    let dead = driver.dead("crashy", 1).await.expect("dead");
    assert!(dead[0].error.contains("exceeds max attempts 2"), "{}", dead[0].error);
    assert_eq!(driver.requeue_dead("crashy", DeadSelector::All).await.expect("requeue"), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_uses_the_given_delay() {
    let (driver, client) = setup();
    let k = key();
    client.dispatch(Later { key: k.clone() }).queue("later").await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("later").expect("queues").stop_when_empty(true).build().expect("build");
    let mut events = worker.events().subscribe();
    let started = tokio::time::Instant::now();
    let counts = worker.start().await.expect("run");
    assert_eq!((counts.retried, counts.dead), (1, 1), "max_attempts = 2 from #[task]");
    assert!(started.elapsed() >= Duration::from_secs(5), "the second attempt waited for the delay");
    let mut delays = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::TaskRetryScheduled { delay, .. } = e {
            delays.push(delay);
        }
    }
    assert_eq!(delays, vec![Duration::from_secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn events_report_each_step_of_a_task() {
    let (driver, client) = setup();
    let k = key();
    let id = client.dispatch(Flaky { key: k.clone(), fail_times: 1 }).queue("events").await.expect("dispatch");
    let worker = Worker::builder(driver.clone()).queues("events").expect("queues").retry(fast_retries()).stop_when_empty(true).build();
    let worker = worker.expect("build");
    let mut events = worker.events().subscribe();
    worker.start().await.expect("run");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        let step = match e {
            Event::WorkerStarted { .. } => "worker-started".to_owned(),
            Event::TaskStarted { task, .. } if task.id == id => format!("started {}", task.attempt),
            Event::TaskRetryScheduled { task, error, .. } if task.id == id => format!("retry {} {error}", task.attempt),
            Event::TaskSucceeded { task, .. } if task.id == id => format!("succeeded {}", task.attempt),
            Event::WorkerStopped { counts, .. } => format!("worker-stopped {}", counts.succeeded),
            _ => continue,
        };
        seen.push(step);
    }
    assert_eq!(seen, vec!["worker-started", "started 1", "retry 1 flaky failure 1", "started 2", "succeeded 2", "worker-stopped 1"]);
}

#[test]
fn duplicate_task_names_are_an_error_at_start_up() {
    let mut registry = Registry::new();
    registry.register::<Record>().expect("first registration");
    let err = registry.register::<Record>().expect_err("second registration");
    assert!(matches!(err, WorkerError::DuplicateTask(ref n) if n == "record"), "{err}");
}

#[test]
fn task_attribute_registers_every_task_at_link_time() {
    let registry = Registry::linked().expect("no duplicates");
    for name in ["flaky", "doomed", "panics_once", "sleeper", "record", "later"] {
        assert!(registry.get(name).is_some(), "{name} registered");
    }
}

#[test]
fn worker_options_out_of_range_are_refused() {
    let driver: Arc<dyn Driver> = Arc::new(MemoryDriver::new());
    assert!(matches!(Worker::builder(driver.clone()).build(), Err(WorkerError::NoQueues)));
    assert!(Worker::builder(driver.clone()).queues("a").expect("queues").concurrency(0).build().is_err());
    assert!(Worker::builder(driver).queues("a:0").is_err());
}

#[test]
fn worker_id_starts_with_the_real_host_name_as_the_registry_records_it() {
    let worker = Worker::builder(Arc::new(MemoryDriver::new())).queues("q").expect("queues").build().expect("build");
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert!(worker.id().starts_with(&format!("{host}:{}:", std::process::id())), "{} on host {host}", worker.id());
}

#[tokio::test(start_paused = true)]
async fn worker_client_and_memory_driver_share_one_clock() {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock.clone());
    let key = key();
    client.dispatch(Record { key: key.clone(), label: "late".into() }).queue("clock").await.expect("dispatch");
    // Half a minute of the test's clock passes before a worker looks.
    tokio::time::advance(Duration::from_secs(30)).await;
    let worker =
        Worker::builder(driver.clone()).queues("clock").expect("queues").clock(clock).stop_when_empty(true).build().expect("build");
    let mut events = worker.events().subscribe();
    worker.start().await.expect("run");
    let waited = std::iter::from_fn(|| events.try_recv().ok())
        .find_map(|e| match e {
            Event::TaskStarted { waited, .. } => Some(waited),
            _ => None,
        })
        .expect("a start event");
    assert!(waited >= Duration::from_secs(30), "the worker reads the same clock as the client: waited {waited:?}");
}
