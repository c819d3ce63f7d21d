//! The dashboard in a real browser (Debian's headless Chromium driven by playwright-core; see
//! `tests/e2e/dashboard.mjs`), on SQLite and Redis, with a real worker running the tasks:
//! overview, search by id, a dead task retried and seen succeeding, another deleted, the queue
//! paused and resumed. `scripts/test` installs Chromium and playwright-core when missing; a
//! machine without them fails here, it never skips.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use asynctasq_core::driver::{Driver, TaskState};
use asynctasq_core::{Client, Overrides, Registry, TaskError, TaskId, Worker, task};
use asynctasq_dashboard::Dashboard;
use asynctasq_drivers::{RedisConfig, RedisDriver, SqliteDriver};
use asynctasq_tests::{fastrand_u32, shared_redis_url};

/// While set, `flaky` fails for good (dead at its first failure).
static FAILING: AtomicBool = AtomicBool::new(true);

/// Fails while [`FAILING`] is set, then succeeds with its input doubled.
#[task(max_attempts = 1, result_ttl = "1h")]
async fn flaky(n: u64) -> Result<u64, TaskError> {
    if FAILING.load(Ordering::SeqCst) { Err(TaskError::fatal("the mail server refused the message")) } else { Ok(n * 2) }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the browser script against a dashboard over `driver` with a worker on the same backend.
async fn in_a_browser(driver: Arc<dyn Driver>, backend: &str) {
    let queue = format!("dash-{:08x}", fastrand_u32());
    let mut registry = Registry::new();
    registry.register::<Flaky>().expect("register");
    let worker = Worker::builder(driver.clone()).registry(registry).queues(&queue).expect("queue").concurrency(4).build().expect("build");
    let handle = worker.handle();
    let running = tokio::spawn(worker.start());

    // Two tasks die (the retried one and the deleted one); a few succeed once the failing stops.
    let client = Client::new(driver.clone());
    let overrides = Overrides { queue: Some(queue.clone()), ..Default::default() };
    let dead: Vec<TaskId> = client.dispatch_many((0..2).map(|n| Flaky { n }), overrides.clone()).await.expect("dispatch");
    for _ in 0..200 {
        if driver.stats(&queue).await.expect("stats").dead == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(driver.stats(&queue).await.expect("stats").dead, 2, "both tasks died");
    FAILING.store(false, Ordering::SeqCst);
    client.dispatch_many((10..15).map(|n| Flaky { n }), overrides).await.expect("dispatch");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dashboard = Dashboard::new(driver.clone(), backend);
    let serving = tokio::spawn(dashboard.serve(listener, async move {
        let _ = stopped.await;
    }));

    let out = repo().join("target/e2e").join(format!("dashboard-{backend}"));
    let script = repo().join("tests/e2e/dashboard.mjs");
    let (retry, delete) = (dead[0].to_string(), dead[1].to_string());
    let ran = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(script).args([url.as_str(), queue.as_str(), &retry, &delete]).arg(&out).output()
    })
    .await
    .expect("joined")
    .expect("node runs (scripts/test installs it, Chromium and playwright-core)");
    let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    assert!(ran.status.success(), "the browser run failed: {said}");

    // What the browser did, read back from the backend.
    let retried = driver.find(dead[0]).await.expect("find").expect("kept");
    assert_eq!(retried.state, TaskState::Succeeded, "the retried task succeeded");
    assert!(driver.find(dead[1]).await.expect("find").is_none(), "the deleted task is gone");
    assert!(driver.paused().await.expect("paused").is_empty(), "the queue was resumed");

    let _ = stop.send(());
    serving.await.expect("joined").expect("served");
    handle.stop();
    running.await.expect("joined").expect("the worker stopped cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_deletes_and_pauses_in_a_browser_on_sqlite_and_redis() {
    // One test, the backends in turn: `FAILING` is shared by the whole binary.
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteDriver::connect(&format!("sqlite://{}/dash.db", dir.path().display())).await.expect("open");
    in_a_browser(Arc::new(sqlite), "sqlite").await;

    FAILING.store(true, Ordering::SeqCst);
    let mut config = RedisConfig::from_url(&shared_redis_url()).expect("url");
    config.prefix = format!("asynctasq-test-{:08x}:", fastrand_u32());
    let redis = RedisDriver::connect_with(config).await.expect("the shared Redis (scripts/test starts it)");
    in_a_browser(Arc::new(redis), "redis").await;
}
