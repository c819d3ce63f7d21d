//! RabbitMQ behaviour beyond the conformance suite: foreign bytes in a work queue, the lease
//! bound set by the broker's consumer timeout, the prefetch bound, and queue priority through
//! per-queue consumers.
#![cfg(feature = "rabbitmq")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use asynctasq_core::envelope::{Envelope, unix_millis};
use asynctasq_core::testing::{Harness, bad_input, eventually};
use asynctasq_core::{Client, Driver, Event, Overrides, Registry, Task, TaskContext, TaskResult, Worker};
use asynctasq_drivers::{RabbitMqConfig, RabbitMqDriver};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};

fn url() -> String {
    std::env::var("ASYNCTASQ_TEST_RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn driver(config: impl FnOnce(&mut RabbitMqConfig)) -> Arc<RabbitMqDriver> {
    let mut c = RabbitMqConfig::new(url());
    c.prefix = format!("asynctasq-test-{:08x}", fastrand::u32(..));
    config(&mut c);
    Arc::new(RabbitMqDriver::connect_with(c).await.expect("RabbitMQ must be reachable (scripts/test starts it)"))
}

/// A no-op task envelope for `queue`, due now.
fn envelope(queue: &str, lease: Duration) -> Envelope {
    Harness::new(Arc::new(asynctasq_core::MemoryDriver::new()), "rabbitmq").envelope(queue, lease)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_published_straight_into_a_work_queue_are_dead_lettered_with_the_reason_and_good_tasks_still_run() {
    let driver = driver(|_| {}).await;
    driver.stats("raw").await.expect("declares the queue");
    let conn = Connection::connect(&url(), ConnectionProperties::default()).await.expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let work = format!("{}:raw", driver.prefix());
    let inputs = bad_input::inputs("raw");
    for input in &inputs {
        channel
            .basic_publish("".into(), work.as_str().into(), BasicPublishOptions::default(), &input.bytes, BasicProperties::default())
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    bad_input::dispatch_good(&(driver.clone() as Arc<dyn Driver>), "raw", 5).await;
    bad_input::drain_and_check(driver.clone(), "raw", &inputs, 5).await;
    assert_eq!(driver.purge_dead("raw").await.expect("purge dead"), inputs.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lease_outlives_the_brokers_consumer_timeout() {
    let timeout = Duration::from_secs(10);
    let driver = driver(|c| c.consumer_timeout = timeout).await;
    driver.enqueue(&[envelope("long", Duration::from_secs(3600))]).await.expect("enqueue");
    let started = unix_millis(SystemTime::now());
    let d = driver.dequeue("long", 1).await.expect("dequeue").remove(0);
    let bound = started + timeout.as_millis() as u64;
    assert!(d.lease.expires_at < bound, "an hour's lease is cut to the consumer timeout less a margin");
    let extended = driver.extend_lease(&d.lease, Duration::from_secs(3600)).await.expect("extend");
    assert!(extended.expires_at < bound, "extending never passes the consumer timeout");
    // Past that bound the driver requeues the task itself, before the broker would close the
    // channel (and requeue every other delivery on it).
    let again = eventually(Duration::from_secs(20), "the task to come back after the bound", || async {
        driver.dequeue("long", 1).await.expect("dequeue").pop()
    })
    .await;
    assert_eq!((again.lease.id, again.attempt), (d.lease.id, 2), "the cut-off run counts as an attempt");
    assert!(matches!(driver.extend_lease(&extended, Duration::from_secs(1)).await, Err(asynctasq_core::DriverError::LeaseLost(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_holds_no_more_than_its_prefetch() {
    let a = driver(|c| c.prefetch = Some(3)).await;
    let mut config = RabbitMqConfig::new(url());
    config.prefix = a.prefix().to_owned();
    let b = RabbitMqDriver::connect_with(config).await.expect("second handle");
    let sent: Vec<_> = (0..10).map(|_| envelope("bounded", Duration::from_secs(60))).collect();
    a.enqueue(&sent).await.expect("enqueue");
    let mine = a.dequeue("bounded", 1).await.expect("dequeue");
    assert_eq!(mine.len(), 1);
    // a holds one lease and at most two prefetched tasks; the other seven stay with the broker.
    let mut theirs = Vec::new();
    while theirs.len() < 7 {
        let got = b.dequeue("bounded", 10).await.expect("dequeue");
        if got.is_empty() {
            b.wait_ready(&["bounded".to_owned()], Duration::from_secs(5)).await.expect("wait");
            continue;
        }
        theirs.extend(got);
    }
    assert_eq!(theirs.len(), 7, "another worker gets every task the first does not hold");
    assert!(theirs.iter().all(|d| d.attempt == 1));
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Nap {
    ms: u64,
}

impl Task for Nap {
    const NAME: &'static str = "rabbitmq.nap";
    async fn run(self, _ctx: TaskContext) -> TaskResult {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(())
    }
}

/// Runs `n` tasks from `queues` with one slot and returns the queue of each start, in order.
async fn start_order(driver: Arc<RabbitMqDriver>, queues: &str, n: u64) -> Vec<String> {
    let mut registry = Registry::new();
    registry.register::<Nap>().expect("register");
    let worker =
        Worker::builder(driver).registry(registry).queues(queues).expect("queues").concurrency(1).max_tasks(n).build().expect("build");
    let mut events = worker.events().subscribe();
    let counts = worker.start().await.expect("worker");
    assert_eq!(counts.succeeded, n);
    let mut order = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::TaskStarted { task, .. } = e {
            order.push(task.queue.to_string());
        }
    }
    order
}

async fn backlog(driver: &Arc<RabbitMqDriver>, queue: &str, n: u64) {
    let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
    Client::new(driver.clone()).dispatch_many((0..n).map(|_| Nap { ms: 1 }), overrides).await.expect("dispatch");
}

/// The queues of the first `n` starts of a worker of `queues`, after a backlog of `per_queue`
/// tasks in each of `backlogs` (dispatched in that order).
async fn first_starts(backlogs: [&str; 2], per_queue: u64, queues: &str, n: usize) -> Vec<String> {
    let driver = driver(|_| {}).await;
    for queue in backlogs {
        backlog(&driver, queue, per_queue).await;
    }
    let order = start_order(driver, queues, n as u64).await;
    assert_eq!(order.len(), n);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_priority_drains_the_higher_queue_first() {
    let order = first_starts(["low", "high"], 20, "high,low", 20).await;
    assert!(order.iter().all(|q| q == "high"), "the low queue ran while the high one had tasks: {order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_priority_shares_by_weight_and_starves_no_queue() {
    let order = first_starts(["heavy", "light"], 60, "heavy:3,light:1", 40).await;
    let heavy = order.iter().filter(|q| *q == "heavy").count();
    assert!((26..=34).contains(&heavy), "heavy:3,light:1 should give heavy ~30 of 40 starts, got {heavy}: {order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_queue_leaves_no_queue_behind() {
    let driver = driver(|_| {}).await;
    let mut later = envelope("doomed", Duration::from_secs(60));
    later.not_before += 60_000;
    driver.enqueue(&[envelope("doomed", Duration::from_secs(60)), later]).await.expect("enqueue");
    assert_eq!(driver.queues().await.expect("queues"), vec!["doomed".to_owned()]);
    assert_eq!(driver.delete_queue("doomed").await.expect("delete"), 2, "the ready and the delayed task went with it");
    assert!(driver.queues().await.expect("queues").is_empty());
    let conn = Connection::connect(&url(), ConnectionProperties::default()).await.expect("connect");
    let prefix = driver.prefix();
    for name in
        [format!("{prefix}:doomed"), format!("{prefix}:doomed:dead"), format!("{prefix}:doomed:delay:16384"), format!("{prefix}:queues")]
    {
        let channel = conn.create_channel().await.expect("channel");
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        assert!(channel.queue_declare(name.as_str().into(), passive, lapin::types::FieldTable::default()).await.is_err(), "{name} is gone");
    }
    driver.enqueue(&[envelope("doomed", Duration::from_secs(60))]).await.expect("the queue can be used again");
    assert_eq!(driver.delete_queue("doomed").await.expect("delete"), 1);
    assert_eq!(driver.delete_queue("doomed").await.expect("deleting it again (no registry left)"), 0);
    assert_eq!(driver.delete_queue("never-used").await.expect("deleting a queue never used"), 0);
}
