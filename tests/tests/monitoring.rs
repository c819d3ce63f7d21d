//! The worker's HTTP listener, from outside a real worker process: `/metrics` counts a known run
//! exactly on SQLite, Redis and PostgreSQL, `/ready` follows the backend down and back up, and
//! `/worker` never shows a password.

use std::collections::HashMap;
use std::time::Duration;

use asynctasq_core::Overrides;
use asynctasq_tests::{Backend, FailsOnce, Ledgered, OwnRedis, OwnServer, Proc, Setup, eventually, shared_postgres_url, shared_redis_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// `GET path` on the listener: the status code and the body, or `None` while nothing listens.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Sums of each family in a Prometheus text page, by name and by the labels it is filtered on:
/// `value(page, "asynctasq_tasks_finished_total", &[("outcome", "dead")])`.
fn value(page: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').map_or((series, ""), |(n, rest)| (n, rest.trim_end_matches('}')));
            if n != name {
                return None;
            }
            let labels: HashMap<&str, &str> =
                labels.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, v.trim_matches('"'))).collect();
            want.iter().all(|(k, v)| labels.get(k) == Some(v)).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

fn has_family(page: &str, name: &str) -> bool {
    page.lines().any(|l| l.starts_with(name) && !l.starts_with('#'))
}

/// 12 tasks that succeed, 3 that fail once and then succeed, 4 that fail their only attempt:
/// 22 starts, 15 successes, 3 retries, 4 dead.
async fn known_run(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let queue = "monitored";
    let q = |max: Option<u32>| Overrides { queue: Some(queue.into()), max_attempts: max, ..Default::default() };
    s.client.dispatch_many((0..12).map(|n| Ledgered { n, sleep_ms: 0 }), q(None)).await.expect("dispatch");
    s.client.dispatch_many((100..103).map(|n| FailsOnce { n, retry_ms: 10 }), q(Some(3))).await.expect("dispatch");
    s.client.dispatch_many((200..204).map(|n| FailsOnce { n, retry_ms: 10 }), q(Some(1))).await.expect("dispatch");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = s.spawn_worker(WORKER, queue, 4, &["--http", &addr]);

    eventually(Duration::from_secs(30), "the worker to become ready", || async {
        get(port, "/ready").await.is_some_and(|(c, _)| c == 200)
    })
    .await;
    eventually(Duration::from_secs(30), "every task to settle", || async {
        let page = get(port, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
        value(&page, "asynctasq_tasks_finished_total", &[("outcome", "succeeded")]) == 15.0
            && value(&page, "asynctasq_tasks_finished_total", &[("outcome", "dead")]) == 4.0
    })
    .await;
    // The collector samples the queue every few seconds: wait for a sample of the empty queue.
    eventually(Duration::from_secs(15), "the queue gauges to show the dead tasks", || async {
        let page = get(port, "/metrics").await.map(|(_, b)| b).unwrap_or_default();
        value(&page, "asynctasq_queue_tasks", &[("queue", queue), ("state", "dead")]) == 4.0
    })
    .await;
    let (status, page) = get(port, "/metrics").await.expect("scrape");
    assert_eq!(status, 200);
    let on = |task: &'static str| [("queue", queue), ("task", task)];
    assert_eq!(value(&page, "asynctasq_tasks_started_total", &[("queue", queue)]), 22.0, "{page}");
    assert_eq!(value(&page, "asynctasq_tasks_started_total", &on("ledgered")), 12.0);
    assert_eq!(value(&page, "asynctasq_tasks_started_total", &on("fails_once")), 10.0);
    assert_eq!(value(&page, "asynctasq_tasks_finished_total", &[("outcome", "retried")]), 3.0);
    assert_eq!(value(&page, "asynctasq_tasks_finished_total", &[("outcome", "released")]), 0.0);
    assert_eq!(value(&page, "asynctasq_task_run_seconds_count", &[("task", "ledgered")]), 12.0, "every run is timed, by task");
    assert_eq!(value(&page, "asynctasq_task_run_seconds_count", &[("task", "fails_once")]), 10.0);
    assert_eq!(value(&page, "asynctasq_task_wait_seconds_count", &[("queue", queue)]), 22.0, "every start's wait is timed");
    assert_eq!(value(&page, "asynctasq_queue_tasks", &[("queue", queue), ("state", "ready")]), 0.0);
    assert_eq!(value(&page, "asynctasq_queue_oldest_ready_age_seconds", &[("queue", queue)]), 0.0);
    assert!(has_family(&page, "asynctasq_queue_oldest_ready_age_seconds"), "the age is sampled on every backend here");
    assert_eq!(value(&page, "asynctasq_worker_concurrency", &[]), 4.0);
    assert_eq!(value(&page, "asynctasq_worker_in_flight", &[]), 0.0);
    assert!(value(&page, "asynctasq_driver_op_seconds_count", &[("op", "dequeue")]) >= 1.0, "driver calls are timed");
    assert!(value(&page, "asynctasq_driver_op_seconds_count", &[("op", "ack")]) >= 1.0);
    assert!(!page.contains("\"n\""), "no task argument in a label");

    let (status, body) = get(port, "/worker").await.expect("/worker");
    assert_eq!(status, 200, "loopback needs no token: {body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(page["concurrency"], 4);
    assert_eq!(page["queues"][0]["name"], queue);
    assert_eq!(page["counts"]["dead"], 4);
    assert!(page["id"].as_str().is_some_and(|id| !id.is_empty()) && page["uptime_seconds"].is_u64(), "{page}");
    assert!(!body.contains("hunter2"), "/worker shows no password: {body}");
    if let Some(url) = page["backend"]["url"].as_str().filter(|u| u.starts_with("postgres")) {
        assert!(url.contains(":***@"), "the password is replaced, visibly: {url}");
    }
    worker.sigterm();
    assert!(worker.exited_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_run_exactly_on_sqlite() {
    known_run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_run_exactly_on_redis() {
    known_run(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_run_exactly_on_postgres_and_the_worker_page_hides_its_password() {
    // Trust authentication ignores the password, so a made-up one shows what /worker does with it.
    let url = shared_postgres_url().replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert!(url.contains("hunter2"), "the shared URL has the expected form: {url}");
    known_run(Backend::Postgres(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_with_the_reason_while_the_backend_is_down_and_200_once_it_is_back() {
    let mut redis = OwnRedis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Redis(redis.url())).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker: Proc = s.spawn_worker(WORKER, "probe", 2, &["--http", &addr, "--request-timeout", "1s"]);
    let status = |want: u16| async move { get(port, "/ready").await.is_some_and(|(c, _)| c == want) };
    eventually(Duration::from_secs(30), "ready while Redis answers", || status(200)).await;

    redis.stop();
    eventually(Duration::from_secs(20), "503 while Redis is down", || status(503)).await;
    let (_, body) = get(port, "/ready").await.expect("/ready answers while the backend is down");
    let reason: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(reason["ready"], false);
    assert!(reason["reason"].as_str().is_some_and(|r| r.contains("backend")), "the reason is given: {body}");
    assert_eq!(get(port, "/health").await.map(|(c, _)| c), Some(200), "alive all along");
    redis.start_again();
    eventually(Duration::from_secs(30), "ready again once Redis is back", || status(200)).await;
    worker.sigterm();
    assert!(worker.exited_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_sqlite_publishes_its_events_to_redis_for_any_subscriber() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Sqlite).await;
    let channel = format!("asynctasq-test-events-{:08x}", asynctasq_tests::fastrand_u32());
    let redis = redis::Client::open(shared_redis_url()).expect("Redis URL");
    let mut pubsub = redis.get_async_pubsub().await.expect("Redis must be reachable");
    pubsub.subscribe(&channel).await.expect("subscribe");
    let overrides = Overrides { queue: Some("evented".into()), ..Default::default() };
    s.client.dispatch_many((0..5).map(|n| Ledgered { n, sleep_ms: 0 }), overrides).await.expect("dispatch");
    let worker = s.spawn_worker(
        WORKER,
        "evented",
        2,
        &["--events-redis-url", &shared_redis_url(), "--events-channel", &channel, "--stop-when-empty"],
    );

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut messages = pubsub.on_message();
    let collected = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = messages.next().await {
            let event: asynctasq_core::Event = rmp_serde::from_slice(msg.get_payload_bytes()).expect("each message is a MessagePack event");
            let kind = serde_json::to_value(&event).expect("json")["event"].as_str().unwrap_or_default().to_owned();
            *seen.entry(kind.clone()).or_default() += 1;
            if kind == "worker_stopped" {
                break;
            }
        }
    })
    .await;
    assert!(collected.is_ok(), "the worker's events arrived: {seen:?}");
    assert_eq!(seen.get("worker_started"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("task_started"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("task_succeeded"), Some(&5), "{seen:?}");
    assert!(worker.exited_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_serves_beside_the_metrics_on_the_worker_listener_and_hides_the_password() {
    let url = shared_postgres_url().replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Postgres(url)).await;
    let queue = "dashboarded";
    let overrides = Overrides { queue: Some(queue.into()), max_attempts: Some(1), ..Default::default() };
    s.client.dispatch_many((0..3).map(|n| FailsOnce { n, retry_ms: 10 }), overrides).await.expect("dispatch");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut worker = s.spawn_worker(WORKER, queue, 2, &["--http", &addr, "--dashboard"]);
    eventually(Duration::from_secs(30), "the dead tasks on the dashboard", || async {
        get(port, &format!("/dead?queue={queue}")).await.is_some_and(|(c, b)| c == 200 && b.matches("/tasks/").count() == 3)
    })
    .await;
    for path in ["/", "/workers", "/queues/dashboarded", "/dead?queue=dashboarded"] {
        let (status, page) = get(port, path).await.expect("the dashboard answers");
        assert_eq!(status, 200, "{path}: {page}");
        assert!(!page.contains("hunter2"), "{path} shows no password: {page}");
    }
    let (_, overview) = get(port, "/").await.expect("overview");
    assert!(overview.contains("postgres://") && overview.contains(queue), "the redacted backend and the queue: {overview}");
    assert_eq!(get(port, "/metrics").await.map(|(c, _)| c), Some(200), "the worker's own routes stay");
    worker.sigterm();
    assert!(worker.exited_ok().await);
}
