//! SQS behaviour beyond the conformance suite, against moto (`scripts/test` starts it):
//! foreign bodies, oversized tasks, delays past SQS's 15-minute maximum, retries past the
//! 12-hour visibility window, and FIFO queues.
#![cfg(feature = "sqs")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use asynctasq_core::envelope::{Envelope, unix_millis};
use asynctasq_core::testing::{Harness, bad_input, eventually};
use asynctasq_core::{Driver, DriverError};
use asynctasq_drivers::{SqsConfig, SqsDriver};

async fn driver(config: impl FnOnce(&mut SqsConfig)) -> Arc<SqsDriver> {
    let endpoint = std::env::var("ASYNCTASQ_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into());
    let mut c = SqsConfig::local(endpoint);
    c.queue_prefix = format!("at-{:08x}-", fastrand::u32(..));
    config(&mut c);
    Arc::new(SqsDriver::connect(c).await.expect("SQS (moto) must be reachable (scripts/test starts it)"))
}

/// A no-op task envelope for `queue`, due now.
fn envelope(queue: &str, lease: Duration) -> Envelope {
    Harness::new(Arc::new(asynctasq_core::MemoryDriver::new()), "sqs").envelope(queue, lease)
}

fn now() -> u64 {
    unix_millis(SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_sent_straight_into_a_work_queue_are_dead_lettered_with_the_reason_and_good_tasks_still_run() {
    use base64::Engine as _;
    let driver = driver(|_| {}).await;
    let url = driver.queue_url("raw").await.expect("queue");
    let mut inputs = bad_input::inputs("raw");
    for input in &inputs {
        let body = base64::engine::general_purpose::STANDARD.encode(&input.bytes);
        // SQS refuses an empty body: the empty record goes as a blank, undecodable all the same.
        let body = if body.is_empty() { " ".to_owned() } else { body };
        driver.client().send_message().queue_url(&url).message_body(body).send().await.expect("send raw");
    }
    driver.client().send_message().queue_url(&url).message_body("not base64 at all!").send().await.expect("send raw");
    inputs.push(bad_input::BadInput {
        label: "body that is not base64",
        id: asynctasq_core::TaskId::new(),
        bytes: Vec::new(),
        reason: "not base64".into(),
    });
    bad_input::dispatch_good(&(driver.clone() as Arc<dyn Driver>), "raw", 5).await;
    bad_input::drain_and_check(driver.clone(), "raw", &inputs, 5).await;
    assert_eq!(driver.purge_dead("raw").await.expect("purge dead"), inputs.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_task_is_refused_at_dispatch_and_nothing_of_the_call_is_sent() {
    let driver = driver(|_| {}).await;
    let small = envelope("big", Duration::from_secs(30));
    let mut big = envelope("big", Duration::from_secs(30));
    big.payload = vec![0xc4; 300 * 1024];
    let err = driver.enqueue(&[small, big.clone()]).await.expect_err("over 256 KiB must be refused");
    assert!(matches!(err, DriverError::TooLarge { id, limit: 262_144, .. } if id == big.id), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&big.id.to_string()) && message.contains("262144"), "{message}");
    assert_eq!(driver.stats("big").await.expect("stats").ready, 0, "the small task of the same call was not sent either");
    // Just under the limit goes through (base64 makes 190 KiB of payload about 254 KiB).
    let mut fits = envelope("big", Duration::from_secs(30));
    fits.payload = vec![0xc4; 190 * 1024];
    driver.enqueue(&[fits]).await.expect("a task under the limit is sent");
    assert_eq!(driver.stats("big").await.expect("stats").ready, 1);
}

/// SQS delays a message by at most 15 minutes; the test shortens that maximum to 1 s, so a
/// task delayed by 4 s crosses it four times, as a 20-minute delay crosses the real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_delayed_past_the_sqs_maximum_is_not_run_early_and_not_lost() {
    let driver = driver(|c| c.max_delay = Duration::from_secs(1)).await;
    let mut e = envelope("later", Duration::from_secs(30));
    e.not_before = now() + 4_000;
    driver.enqueue(std::slice::from_ref(&e)).await.expect("enqueue");
    let d = eventually(Duration::from_secs(20), "the delayed task", || async {
        let got = driver.dequeue("later", 10).await.expect("dequeue");
        assert!(got.is_empty() || now() + 50 >= e.not_before, "delivered {} ms early", e.not_before.saturating_sub(now()));
        got.into_iter().next()
    })
    .await;
    assert_eq!((d.lease.id, d.attempt), (e.id, 1), "early receives are not attempts");
    assert!(driver.ack(&[d.lease.into()]).await.expect("ack").is_empty());
    assert_eq!(driver.stats("later").await.expect("stats").counts(), [0; 4], "no copy is left behind");
}

/// A retry whose delay ends past SQS's visibility window (12 hours; shortened to 3 s here)
/// is sent again due at the right time, as the next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_past_the_visibility_window_is_resent_as_the_next_attempt() {
    let driver = driver(|c| c.max_visibility = Duration::from_secs(3)).await;
    driver.enqueue(&[envelope("retry", Duration::from_secs(2))]).await.expect("enqueue");
    let first = driver.dequeue("retry", 1).await.expect("dequeue").remove(0);
    let nacked_at = now();
    driver.nack(&first.lease, Duration::from_secs(5), "later").await.expect("nack");
    let again =
        eventually(Duration::from_secs(20), "the retry", || async { driver.dequeue("retry", 1).await.expect("dequeue").pop() }).await;
    assert!(now() + 50 >= nacked_at + 5_000, "not before its delay");
    assert_eq!((again.lease.id, again.attempt), (first.lease.id, 2));
    assert!(driver.ack(&[again.lease.into()]).await.expect("ack").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queues_keep_group_order_drop_repeated_dispatches_and_refuse_delays() {
    let driver = driver(|_| {}).await;
    let q = "orders.fifo";
    let tasks: Vec<Envelope> = (0..3)
        .map(|_| {
            let mut e = envelope(q, Duration::from_secs(30));
            e.headers = BTreeMap::from([(asynctasq_drivers::sqs::GROUP_HEADER.to_owned(), "customer-7".to_owned())]).into_iter().collect();
            e
        })
        .collect();
    driver.enqueue(&tasks).await.expect("enqueue");
    driver.enqueue(&tasks[..1]).await.expect("a repeated dispatch is accepted");
    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        let got = eventually(Duration::from_secs(10), "the next task of the group", || async {
            let got = driver.dequeue(q, 10).await.expect("dequeue");
            (!got.is_empty()).then_some(got)
        })
        .await;
        for d in got {
            delivered.push(d.lease.id);
            driver.ack(&[d.lease.into()]).await.expect("ack");
        }
    }
    assert_eq!(delivered, tasks.iter().map(|e| e.id).collect::<Vec<_>>(), "one group runs in dispatch order");
    assert!(driver.dequeue(q, 10).await.expect("dequeue").is_empty(), "the repeated dispatch was dropped by deduplication");

    let mut later = envelope(q, Duration::from_secs(30));
    later.not_before = now() + 60_000;
    let err = driver.enqueue(&[later]).await.expect_err("FIFO queues take no per-task delay");
    assert!(err.to_string().contains("FIFO"), "{err}");

    driver.enqueue(&[envelope(q, Duration::from_secs(30))]).await.expect("enqueue");
    let d = driver.dequeue(q, 1).await.expect("dequeue").remove(0);
    driver.nack(&d.lease, Duration::from_millis(500), "retry").await.expect("a retry hides the message");
    let again = eventually(Duration::from_secs(10), "the retry", || async { driver.dequeue(q, 1).await.expect("dequeue").pop() }).await;
    assert_eq!((again.lease.id, again.attempt), (d.lease.id, 2));
}

/// On a FIFO queue a task's key is its message group: across two handles no key ever has two
/// tasks leased at once, other keys run beside it, and every task runs once. A cap of one per
/// key is accepted there (and listed); every other limit, and any limit on a standard queue,
/// is refused, by the driver and by a worker asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queues_run_one_task_per_key_at_a_time_and_refuse_every_other_limit() {
    use asynctasq_core::{QueueLimits, Worker};
    use std::collections::HashMap;
    use std::sync::Mutex;

    let prefix = format!("at-{:08x}-", fastrand::u32(..));
    let a = driver(|c| c.queue_prefix = prefix.clone()).await;
    let b = driver(|c| c.queue_prefix = prefix.clone()).await;
    let q = "keyed.fifo";
    let tasks: Vec<Envelope> = (0..24)
        .map(|i| {
            let mut e = envelope(q, Duration::from_secs(30));
            e.key = Some(format!("customer-{}", i % 4));
            e
        })
        .collect();
    a.enqueue(&tasks).await.expect("enqueue");

    #[derive(Default)]
    struct Seen {
        running: HashMap<String, usize>,
        most_of_one_key: usize,
        most_at_once: usize,
        ran: Vec<asynctasq_core::TaskId>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let consume = |driver: Arc<SqsDriver>| {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while seen.lock().expect("lock").ran.len() < 24 && std::time::Instant::now() < deadline {
                let got = driver.dequeue(q, 10).await.expect("dequeue");
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                {
                    let mut s = seen.lock().expect("lock");
                    for d in &got {
                        let key = d.envelope.as_ref().expect("decodes").key.clone().expect("a keyed task");
                        let n = s.running.entry(key).or_default();
                        *n += 1;
                        let n = *n;
                        s.most_of_one_key = s.most_of_one_key.max(n);
                        let at_once = s.running.values().sum::<usize>();
                        s.most_at_once = s.most_at_once.max(at_once);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                {
                    let mut s = seen.lock().expect("lock");
                    for d in &got {
                        let key = d.envelope.as_ref().expect("decodes").key.clone().unwrap_or_default();
                        *s.running.get_mut(&key).expect("running") -= 1;
                        s.ran.push(d.lease.id);
                    }
                }
                driver.ack(&got.into_iter().map(|d| d.lease.into()).collect::<Vec<_>>()).await.expect("ack");
            }
        })
    };
    let (one, two) = (consume(a.clone()), consume(b.clone()));
    one.await.expect("first consumer");
    two.await.expect("second consumer");
    {
        let s = seen.lock().expect("lock");
        let mut ran = s.ran.clone();
        ran.sort();
        let mut sent: Vec<_> = tasks.iter().map(|e| e.id).collect();
        sent.sort();
        assert_eq!(ran, sent, "every task ran once");
        assert_eq!(s.most_of_one_key, 1, "never two tasks of one key leased at once");
        assert!(s.most_at_once >= 2, "other keys ran beside a running key (at most {} at once)", s.most_at_once);
    }

    a.set_limits(q, QueueLimits::per_key(1)).await.expect("one per key is what a FIFO queue enforces");
    let listed = a.limits().await.expect("limits");
    assert!(listed.contains(&(q.to_owned(), QueueLimits::per_key(1))), "{listed:?}");
    for (queue, limits) in
        [(q, QueueLimits::per_key(2)), (q, QueueLimits::max_leased(5)), (q, QueueLimits::default()), ("plain", QueueLimits::per_key(1))]
    {
        let err = a.set_limits(queue, limits).await.expect_err("a limit SQS cannot enforce is refused");
        assert!(matches!(err, DriverError::Unsupported(_)), "{queue} {limits:?}: {err}");
    }
    let worker = |queue: &str, limits: QueueLimits| {
        Worker::builder(a.clone()).queues(queue).expect("queues").limit(queue, limits).expect("limit").build()
    };
    assert!(worker(q, QueueLimits::per_key(1)).is_ok(), "a worker may ask a FIFO queue for one per key");
    let Err(refused) = worker(q, QueueLimits::per_key(2)) else { panic!("two per key is refused") };
    assert!(refused.to_string().contains("sqs cannot enforce"), "{refused}");
    let Err(refused) = worker("plain", QueueLimits::per_key(1)) else { panic!("a standard queue takes no limit") };
    assert!(refused.to_string().contains("sqs cannot enforce"), "{refused}");
    a.delete_queue(q).await.expect("delete");
}

#[tokio::test]
async fn a_bad_endpoint_is_named_without_credentials() {
    let mut c = SqsConfig::local("http://127.0.0.1:1");
    c.credentials = Some(asynctasq_drivers::sqs::Credentials::new("AKIDEXAMPLE", "s3cr3t-value", None, None, "test"));
    c.max_attempts = 1;
    let err = SqsDriver::connect(c).await.expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("s3cr3t-value"), "{message}");
    let err = SqsDriver::connect(SqsConfig::local("127.0.0.1:4566")).await.expect_err("no scheme");
    assert!(err.to_string().contains("http://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_queue_url_prefix_existing_queues_are_used_and_none_is_created() {
    let creator = driver(|_| {}).await;
    let url = creator.queue_url("made").await.expect("create the queue");
    let url_prefix =
        url.strip_suffix("made").and_then(|u| u.strip_suffix(creator.queue_prefix())).expect("url ends in the name").to_owned();
    let prefix = creator.queue_prefix().to_owned();
    let addressed = driver(|c| {
        c.queue_prefix = prefix;
        c.queue_url_prefix = Some(url_prefix);
    })
    .await;
    addressed.enqueue(&[envelope("made", Duration::from_secs(30))]).await.expect("enqueue to the existing queue");
    assert_eq!(addressed.dequeue("made", 10).await.expect("dequeue").len(), 1);
    let err = addressed.enqueue(&[envelope("missing", Duration::from_secs(30))]).await.expect_err("the queue does not exist");
    let message = err.to_string();
    assert!(message.contains("missing") && message.contains("does not exist") && message.contains("create it first"), "{message}");
    assert!(!addressed.queues().await.expect("queues").contains(&"missing".to_owned()), "no queue was created");
}
