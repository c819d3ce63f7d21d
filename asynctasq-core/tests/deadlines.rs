//! The engine's deadlines on a paused clock: a driver call that never answers (a driver bug, a
//! connection the driver did not notice was dead) costs one call deadline, never the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asynctasq_core::driver::{Ack, Capability, DeadSelector, DeadTask, Delivery, EnqueueOutcome, Lease, QueueStats, Waiting};
use asynctasq_core::envelope::{Envelope, TaskId};
use asynctasq_core::{Client, Driver, DriverError, MemoryDriver, TokioClock, Worker, task};

/// Counts its runs.
static RUNS: AtomicUsize = AtomicUsize::new(0);

#[task(queue = "deadlines")]
async fn counted() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Counts the runs of the backlog an ack that never answers holds up.
static HELD_UP: AtomicUsize = AtomicUsize::new(0);

#[task(queue = "held-up")]
async fn held_up() {
    HELD_UP.fetch_add(1, Ordering::SeqCst);
}

/// The in-memory driver, except that the first `dequeue` or `ack` (as set) never returns.
struct Hanging {
    inner: MemoryDriver,
    dequeues: AtomicUsize,
    acks: AtomicUsize,
}

async fn hang_once<T>(left: &AtomicUsize, call: impl Future<Output = T>) -> T {
    if left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        std::future::pending::<()>().await;
    }
    call.await
}

#[async_trait::async_trait]
impl Driver for Hanging {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        self.inner.enqueue(tasks).await
    }
    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        hang_once(&self.dequeues, self.inner.dequeue(queue, max)).await
    }
    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        self.inner.wait_ready(queues, timeout).await
    }
    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        hang_once(&self.acks, self.inner.ack(acks)).await
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
    fn supports(&self, capability: Capability) -> bool {
        self.inner.supports(capability) && !matches!(capability, Capability::WorkerRegistry | Capability::TaskLookup | Capability::Cancel)
    }
    fn name(&self) -> &'static str {
        "hanging"
    }
}

async fn run_one_task(dequeues: usize, acks: usize) -> (Duration, u64) {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(Hanging {
        inner: MemoryDriver::with_clock(clock.clone()),
        dequeues: AtomicUsize::new(dequeues),
        acks: AtomicUsize::new(acks),
    });
    Client::new(driver.clone()).with_clock(clock).dispatch(Counted {}).await.expect("dispatch");
    let worker = Worker::builder(driver)
        .queues("deadlines")
        .expect("queues")
        .call_deadline(Duration::from_secs(30))
        .stop_when_empty(true)
        .build()
        .expect("build");
    let started = tokio::time::Instant::now();
    let counts = tokio::time::timeout(Duration::from_secs(600), worker.start())
        .await
        .expect("a stalled driver call must not wedge the worker")
        .expect("the worker keeps running through a stalled call");
    (started.elapsed(), counts.succeeded)
}

#[tokio::test(start_paused = true)]
async fn a_dequeue_that_never_answers_costs_one_call_deadline_not_the_worker() {
    let before = RUNS.load(Ordering::SeqCst);
    let (took, succeeded) = run_one_task(1, 0).await;
    assert_eq!(succeeded, 1, "the task ran and was acked after the stalled fetch");
    assert!(RUNS.load(Ordering::SeqCst) > before);
    assert!(took >= Duration::from_secs(30), "the stalled call was waited out to its deadline: {took:?}");
    assert!(took < Duration::from_secs(40), "then the fetch loop went on at once: {took:?}");
}

#[tokio::test(start_paused = true)]
async fn an_ack_that_never_answers_is_abandoned_and_retried() {
    let (took, succeeded) = run_one_task(0, 1).await;
    assert_eq!(succeeded, 1, "the retried ack went through");
    assert!((Duration::from_secs(30)..Duration::from_secs(40)).contains(&took), "one deadline, then the retry: {took:?}");
}

#[tokio::test(start_paused = true)]
async fn while_an_ack_hangs_the_worker_holds_no_more_than_three_times_its_concurrency() {
    // A backend without fencing (SQS) runs again every task whose ack is late past its lease,
    // so what a worker holds unsettled must stay bounded while its acker is stuck: the running
    // tasks plus two concurrencies' worth of acks.
    const CONCURRENCY: usize = 4;
    let clock = Arc::new(TokioClock::new());
    let driver =
        Arc::new(Hanging { inner: MemoryDriver::with_clock(clock.clone()), dequeues: AtomicUsize::new(0), acks: AtomicUsize::new(1) });
    let client = Client::new(driver.clone()).with_clock(clock);
    client.dispatch_many((0..100).map(|_| HeldUp {}), Default::default()).await.expect("dispatch");
    let worker = Worker::builder(driver.clone())
        .queues("held-up")
        .expect("queues")
        .concurrency(CONCURRENCY)
        .call_deadline(Duration::from_secs(30))
        .stop_when_empty(true)
        .build()
        .expect("build");
    let run = tokio::spawn(worker.start());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let leased = driver.stats("held-up").await.expect("stats").leased;
    assert_eq!(HELD_UP.load(Ordering::SeqCst), 3 * CONCURRENCY, "runs while the first ack hangs");
    assert_eq!(leased, 3 * CONCURRENCY as u64, "leases held while the first ack hangs");
    let counts = run.await.expect("join").expect("the worker goes on after the deadline");
    assert_eq!(counts.succeeded, 100, "every task acked once the stuck ack is abandoned and retried");
}
