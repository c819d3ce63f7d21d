//! Redis-specific behaviour beyond the shared suite: bytes written straight into a queue, the
//! event publisher, dead-task retention.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::testing::bad_input;
use asynctasq_core::{Client, DeadSelector, Driver, Events, Overrides, Registry, Worker};
use asynctasq_drivers::{RedisConfig, RedisDriver, RedisEventPublisher};

fn url() -> String {
    std::env::var("ASYNCTASQ_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn driver(config: impl FnOnce(&mut RedisConfig)) -> Arc<RedisDriver> {
    let mut c = RedisConfig::new(url());
    c.prefix = format!("asynctasq-test-{:08x}:", fastrand::u32(..));
    config(&mut c);
    Arc::new(RedisDriver::connect_with(c).await.expect("Redis must be reachable (scripts/test starts it)"))
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url()).expect("url").get_multiplexed_async_connection().await.expect("connect")
}

#[tokio::test]
async fn bytes_written_straight_into_a_queue_are_dead_lettered_with_the_reason_and_good_tasks_still_run() {
    let driver = driver(|_| {}).await;
    let mut con = raw().await;
    let base = format!("{}{{raw}}", driver.prefix());
    let inputs = bad_input::inputs("raw");
    let mut pipe = redis::pipe();
    for input in &inputs {
        let member = input.id.to_string();
        pipe.cmd("HSET").arg(format!("{base}:env")).arg(&member).arg(&input.bytes[..]).ignore();
        pipe.cmd("ZADD").arg(format!("{base}:waiting")).arg(0).arg(&member).ignore();
    }
    // A member whose envelope is missing altogether.
    pipe.cmd("ZADD").arg(format!("{base}:waiting")).arg(0).arg("no-envelope").ignore();
    let _: () = pipe.query_async(&mut con).await.expect("raw writes");
    bad_input::dispatch_good(&(driver.clone() as Arc<dyn Driver>), "raw", 5).await;
    let mut expected = inputs;
    expected.push(bad_input::BadInput {
        label: "member without an envelope",
        id: asynctasq_core::TaskId::new(),
        bytes: Vec::new(),
        reason: "undecodable envelope".into(),
    });
    bad_input::drain_and_check(driver.clone(), "raw", &expected, 5).await;
    assert_eq!(driver.purge_dead("raw").await.expect("purge dead"), expected.len() as u64);
}

#[tokio::test]
async fn dead_tasks_are_bounded_by_count() {
    let driver = driver(|c| c.dead_max_count = 3).await;
    let client = Client::new(driver.clone());
    let overrides = Overrides { queue: Some("bounded".into()), ..Default::default() };
    let envelopes: Vec<_> =
        (0..5).map(|i| client.envelope_from_payload("t", vec![i], &overrides, &Default::default()).expect("envelope")).collect();
    client.enqueue(envelopes).await.expect("enqueue");
    for d in driver.dequeue("bounded", 10).await.expect("dequeue") {
        driver.dead_letter(&d.lease, "no", Duration::from_secs(3600)).await.expect("dead-letter");
    }
    let dead = driver.dead("bounded", 10).await.expect("dead");
    assert_eq!(dead.len(), 3, "only the newest three are kept");
    assert_eq!(driver.stats("bounded").await.expect("stats").dead, 3);
    assert_eq!(driver.requeue_dead("bounded", DeadSelector::All).await.expect("requeue"), 3);
    assert_eq!(driver.purge("bounded").await.expect("purge"), 3);
    let mut con = raw().await;
    let left: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}{{bounded}}:t:*", driver.prefix())).query_async(&mut con).await.expect("keys");
    assert!(left.is_empty(), "trimmed and purged tasks leave no hashes behind: {left:?}");
}

#[tokio::test]
async fn worker_events_are_published_as_messagepack() {
    let driver = driver(|_| {}).await;
    let channel = format!("{}events", driver.prefix());
    let client = redis::Client::open(url()).expect("url");
    let mut subscriber = client.get_connection().expect("connect");
    let ch = channel.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(&ch).expect("subscribe");
        pubsub.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        ready_tx.send(()).expect("signal");
        let mut names = Vec::new();
        while let Ok(msg) = pubsub.get_message() {
            let payload: Vec<u8> = msg.get_payload().expect("bytes");
            let event: asynctasq_core::Event = rmp_serde::from_slice(&payload).expect("a MessagePack event");
            let name = format!("{event:?}").split([' ', '(', '{']).next().unwrap_or_default().to_owned();
            let stop = name == "WorkerStopped";
            names.push(name);
            if stop {
                break;
            }
        }
        names
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("subscribed");
    let events = Events::default();
    let publisher = RedisEventPublisher::start(&client, &events, channel).await.expect("publisher");
    let overrides = Overrides { queue: Some("ev".into()), ..Default::default() };
    let c = Client::new(driver.clone());
    c.enqueue(vec![c.envelope_from_payload("unknown.task", vec![0x80], &overrides, &Default::default()).expect("envelope")])
        .await
        .expect("enqueue");
    let worker =
        Worker::builder(driver.clone()).registry(Registry::new()).queues("ev").expect("queues").stop_when_empty(true).events(events);
    worker.build().expect("build").start().await.expect("run");
    let names = tokio::task::spawn_blocking(move || listener.join().expect("listener")).await.expect("join");
    publisher.stop();
    assert_eq!(names, vec!["WorkerStarted", "TaskDeadLettered", "WorkerStopped"]);
}

#[tokio::test]
async fn dead_tasks_are_bounded_by_age() {
    let driver = driver(|c| c.dead_max_age = Duration::from_millis(100)).await;
    let client = Client::new(driver.clone());
    let overrides = Overrides { queue: Some("aged".into()), ..Default::default() };
    let envelopes: Vec<_> =
        (0..3).map(|i| client.envelope_from_payload("t", vec![i], &overrides, &Default::default()).expect("envelope")).collect();
    let last = envelopes[2].id;
    client.enqueue(envelopes).await.expect("enqueue");
    let mut leased = driver.dequeue("aged", 10).await.expect("dequeue");
    let newest = leased.pop().expect("three leased");
    for d in &leased {
        driver.dead_letter(&d.lease, "old", Duration::from_secs(3600)).await.expect("dead-letter");
    }
    // Age is what is being tested: let the first two grow old.
    tokio::time::sleep(Duration::from_millis(300)).await;
    driver.dead_letter(&newest.lease, "new", Duration::from_secs(3600)).await.expect("dead-letter");
    let dead = driver.dead("aged", 10).await.expect("dead");
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), vec![last], "dead tasks past the age limit are dropped");
    assert_eq!(driver.purge_dead("aged").await.expect("purge"), 1);
}

#[tokio::test]
async fn kept_results_are_swept_within_a_second_of_their_ttl() {
    let driver = driver(|_| {}).await;
    let base = format!("{}{{swept}}", driver.prefix());
    let stored = || {
        let base = base.clone();
        async move {
            let mut con = raw().await;
            let mut total = 0u64;
            for key in ["done", "done_env", "done_at", "done_result"] {
                let kind: String = redis::cmd("TYPE").arg(format!("{base}:{key}")).query_async(&mut con).await.expect("type");
                let cmd = if kind == "zset" { "ZCARD" } else { "HLEN" };
                let n: u64 = redis::cmd(cmd).arg(format!("{base}:{key}")).query_async(&mut con).await.expect("count");
                total = total.max(n);
            }
            total
        }
    };
    asynctasq_core::testing::kept_results_are_swept_by_later_claims(driver.clone(), "swept", 20, stored).await;
}
