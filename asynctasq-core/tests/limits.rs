//! Queue limits in the engine: a limit given to one worker's builder binds every worker on the
//! backend, a worker at the limit polls instead of spinning, and a backend that cannot enforce
//! a limit refuses it. On the in-memory driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asynctasq_core::driver::{Ack, DeadSelector, DeadTask, Delivery, EnqueueOutcome, Lease, QueueStats, Waiting};
use asynctasq_core::{Capability, Client, Driver, DriverError, Envelope, MemoryDriver, QueueLimits, TaskId, Worker, task};

/// Runs of `held` now, and the most at once.
static HELD: AtomicUsize = AtomicUsize::new(0);
static MOST_HELD: AtomicUsize = AtomicUsize::new(0);

/// Holds its place for `ms`.
#[task]
async fn held(n: u32, ms: u64) {
    let now = HELD.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_HELD.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    HELD.fetch_sub(1, Ordering::SeqCst);
    let _ = n;
}

/// Holds its place for `ms` (the polling test's own task, so the tests can run side by side).
#[task]
async fn slow(n: u32, ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let _ = n;
}

#[tokio::test(start_paused = true)]
async fn a_limit_given_to_one_worker_binds_every_worker_on_the_backend() {
    let driver = Arc::new(MemoryDriver::with_clock(Arc::new(asynctasq_core::TokioClock::new())));
    let client = Client::new(driver.clone()).with_clock(Arc::new(asynctasq_core::TokioClock::new()));
    for n in 0..30 {
        client.dispatch(Held { n, ms: 50 }).queue("limited").await.expect("dispatch");
    }
    let limited = Worker::builder(driver.clone())
        .queues("limited")
        .expect("queues")
        .concurrency(8)
        .limit("limited", QueueLimits::max_leased(3))
        .expect("limit")
        .max_tasks(15)
        .build()
        .expect("build");
    let started = limited.start();
    // The other worker knows nothing of the limit, and starts once it is stored.
    let other = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let worker =
            Worker::builder(driver.clone()).queues("limited").expect("queues").concurrency(8).max_tasks(15).build().expect("build");
        worker.start().await
    };
    let (a, b) = tokio::join!(started, other);
    assert_eq!(a.expect("run").succeeded + b.expect("run").succeeded, 30, "every task ran");
    assert_eq!(MOST_HELD.load(Ordering::SeqCst), 3, "never more than the limit at once, across both workers (and the limit was reached)");
}

/// A driver counting its claims.
struct Counting {
    inner: MemoryDriver,
    dequeues: AtomicUsize,
}

#[async_trait::async_trait]
impl Driver for Counting {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        self.inner.enqueue(tasks).await
    }
    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        self.dequeues.fetch_add(1, Ordering::SeqCst);
        self.inner.dequeue(queue, max).await
    }
    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner.wait_ready(queues, timeout).await
    }
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        self.inner.ack(acks).await
    }
    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        self.inner.nack(lease, delay, error).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        self.inner.release(lease).await
    }
    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        self.inner.dead_letter(lease, error, keep).await
    }
    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        self.inner.extend_lease(lease, by).await
    }
    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        self.inner.stats(queue).await
    }
    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        self.inner.queues().await
    }
    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        self.inner.purge_waiting(queue, which).await
    }
    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        self.inner.dead(queue, limit).await
    }
    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        self.inner.requeue_dead(queue, which).await
    }
    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        self.inner.purge_dead(queue).await
    }
    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        self.inner.set_limits(queue, limits).await
    }
    fn supports(&self, capability: Capability) -> bool {
        self.inner.supports(capability)
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

/// On the real clock: a spinning worker would claim tens of thousands of times in the run.
#[tokio::test]
async fn a_worker_at_the_limit_polls_its_queue_instead_of_spinning() {
    let driver = Arc::new(Counting { inner: MemoryDriver::new(), dequeues: AtomicUsize::new(0) });
    let client = Client::new(driver.clone());
    for n in 0..3 {
        client.dispatch(Slow { n, ms: 300 }).queue("one-at-a-time").await.expect("dispatch");
    }
    let worker = Worker::builder(driver.clone())
        .queues("one-at-a-time")
        .expect("queues")
        .concurrency(4)
        .limit("one-at-a-time", QueueLimits::max_leased(1))
        .expect("limit")
        .max_tasks(3)
        .build()
        .expect("build");
    let t = std::time::Instant::now();
    assert_eq!(worker.start().await.expect("run").succeeded, 3);
    let (took, claims) = (t.elapsed(), driver.dequeues.load(Ordering::SeqCst));
    assert!(took >= Duration::from_millis(900), "one at a time: {took:?}");
    assert!(claims < 200, "{claims} claims in {took:?}: a worker at its limit must back off between looks");
    assert!(took < Duration::from_millis(900 + 3 * 250), "each place is taken within the longest back-off once freed: {took:?}");
}

#[tokio::test]
async fn a_limit_is_refused_by_a_backend_that_cannot_enforce_it() {
    let driver = Arc::new(MemoryDriver::new().lacking(&[Capability::QueueLimits]));
    let built = Worker::builder(driver).queues("q").expect("queues").limit("q", QueueLimits::max_leased(2)).expect("limit").build();
    let Err(refused) = built else { panic!("a limit the backend cannot enforce must be refused") };
    assert!(refused.to_string().contains("queue `q` has a limit, which memory cannot enforce"), "{refused}");
}

#[tokio::test]
async fn a_rate_is_refused_by_a_backend_that_cannot_enforce_one() {
    let rate = QueueLimits::rate(asynctasq_core::limits::Rate::new(5, Duration::from_secs(1)));
    let driver = Arc::new(MemoryDriver::new().lacking(&[Capability::RateLimits]));
    let built = Worker::builder(driver).queues("q").expect("queues").limit("q", rate).expect("limit").build();
    let Err(refused) = built else { panic!("a rate the backend cannot enforce must be refused") };
    assert!(
        refused.to_string().contains("queue `q`: limiting a queue's rate is not supported by this driver (memory cannot enforce it)"),
        "{refused}"
    );
}

/// Runs of `exported` now and the most at once; runs of `exported` and `filler` together.
static EXPORTING: AtomicUsize = AtomicUsize::new(0);
static MOST_EXPORTING: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

fn begin(counter: &AtomicUsize, most: &AtomicUsize) {
    let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
}

#[task]
async fn exported(n: u32) {
    begin(&EXPORTING, &MOST_EXPORTING);
    begin(&RUNNING, &MOST_RUNNING);
    tokio::time::sleep(Duration::from_millis(100)).await;
    EXPORTING.fetch_sub(1, Ordering::SeqCst);
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    let _ = n;
}

#[task]
async fn filler(n: u32) {
    begin(&RUNNING, &MOST_RUNNING);
    tokio::time::sleep(Duration::from_millis(100)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    let _ = n;
}

#[tokio::test(start_paused = true)]
async fn a_queue_concurrency_caps_that_queue_in_this_worker_and_the_others_fill_the_rest() {
    let clock = Arc::new(asynctasq_core::TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock);
    for n in 0..10 {
        client.dispatch(Exported { n }).queue("export").await.expect("dispatch");
        client.dispatch(Filler { n }).queue("default").await.expect("dispatch");
    }
    // `export` first in strict order: without the cap it would take every slot.
    let worker = Worker::builder(driver.clone())
        .queues("export,default")
        .expect("queues")
        .concurrency(6)
        .queue_concurrency("export", 2)
        .stop_when_empty(true)
        .build()
        .expect("build");
    let t = tokio::time::Instant::now();
    assert_eq!(worker.start().await.expect("run").succeeded, 20);
    assert_eq!(MOST_EXPORTING.load(Ordering::SeqCst), 2, "at most 2 of `export` at once (and 2 were reached)");
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 6, "the other queue filled the rest of the worker");
    // 10 exports two at a time take 500 ms; a place is taken again as soon as it frees.
    assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());
}

#[test]
fn a_queue_concurrency_must_name_one_of_the_workers_queues_and_be_at_least_one() {
    let driver = Arc::new(MemoryDriver::new());
    let build = |q: &str, n: usize| Worker::builder(driver.clone()).queues("a,b").expect("queues").queue_concurrency(q, n).build().err();
    let unknown = build("c", 2).expect("refused");
    assert!(unknown.to_string().contains("names `c`, which is not one of the worker's queues"), "{unknown}");
    let zero = build("a", 0).expect("refused");
    assert!(zero.to_string().contains("queue concurrency of `a` must be at least 1"), "{zero}");
    assert!(build("a", 1).is_none());
}

#[task(key = customer)]
async fn per_customer(customer: u64, n: u32) {
    let _ = (customer, n);
}

#[tokio::test]
async fn a_tasks_key_comes_from_the_dispatch_else_its_key_field_and_a_bad_one_is_refused() {
    let client = Client::new(Arc::new(MemoryDriver::new()));
    let key = |o: &asynctasq_core::Overrides| client.envelope(&PerCustomer { customer: 7, n: 1 }, o).map(|e| e.key);
    assert_eq!(key(&Default::default()).expect("envelope"), Some("7".to_owned()), "the field, as text");
    let given = asynctasq_core::Overrides { key: Some("vip".into()), ..Default::default() };
    assert_eq!(key(&given).expect("envelope"), Some("vip".to_owned()), "the dispatch's wins");
    assert_eq!(client.envelope(&Slow { n: 1, ms: 1 }, &Default::default()).expect("envelope").key, None, "no key unless one is given");
    for bad in [String::new(), "x".repeat(256), "a\0b".into()] {
        let o = asynctasq_core::Overrides { key: Some(bad.clone()), ..Default::default() };
        let err = key(&o).expect_err("refused");
        assert!(err.to_string().contains("a task's key must"), "{bad:?}: {err}");
    }
}
