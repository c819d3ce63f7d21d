//! RabbitMQ across processes: delays and retries set by one process are released by the broker
//! to another. (Broker restarts and connection losses are in the reliability suite, `chaos.rs`.)

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use asynctasq_core::Overrides;
use asynctasq_tests::{Backend, FailsOnce, Setup, eventually, shared_rabbitmq_url};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// Ledger rows per attempt: `attempt -> {n -> pid}`.
async fn runs(s: &Setup) -> HashMap<i64, HashMap<i64, i64>> {
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT n, attempt, pid FROM ledger").fetch_all(&s.ledger).await.expect("ledger");
    let mut out: HashMap<i64, HashMap<i64, i64>> = HashMap::new();
    for (n, attempt, pid) in rows {
        out.entry(attempt).or_default().insert(n, pid);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_and_retries_are_released_without_the_process_that_set_them() {
    const TASKS: u64 = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::RabbitMq(shared_rabbitmq_url())).await;
    // Delayed by this process, which never consumes the queue.
    let overrides = Overrides { queue: Some("later".into()), delay: Some(Duration::from_millis(1500)), ..Default::default() };
    s.client.dispatch_many((0..TASKS).map(|n| FailsOnce { n, retry_ms: 2000 }), overrides).await.expect("dispatch");
    let mut a = s.spawn_worker(WORKER, "later", 4, &[]);
    // Showing that nothing runs before the delay needs the time to pass.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(runs(&s).await.is_empty(), "no task runs before its delay");
    eventually(Duration::from_secs(30), "worker a to fail every first attempt", || async {
        runs(&s).await.get(&1).map_or(0, HashMap::len) as u64 == TASKS
    })
    .await;
    eventually(Duration::from_secs(10), "every retry to wait in a delay queue", || async {
        let st = s.driver.stats("later").await.expect("stats");
        st.scheduled == TASKS && st.ready == 0
    })
    .await;
    // Let worker a's acks of the failed deliveries land, then kill it: the retries it set up
    // now depend on the broker alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid_a = i64::from(a.child().id());
    a.kill();
    let mut b = s.spawn_worker(WORKER, "later", 4, &[]);
    let pid_b = i64::from(b.child().id());
    eventually(Duration::from_secs(30), "worker b to run every retry", || async {
        runs(&s).await.get(&2).map_or(0, HashMap::len) as u64 == TASKS
    })
    .await;
    let runs = runs(&s).await;
    assert!(runs[&1].values().all(|&p| p == pid_a), "first attempts ran on worker a");
    assert!(runs[&2].values().all(|&p| p == pid_b), "retries ran on worker b, released by the broker after a died");
    let all: HashSet<i64> = (0..TASKS as i64).collect();
    assert_eq!(runs[&2].keys().copied().collect::<HashSet<_>>(), all, "every task's retry ran");
    eventually(Duration::from_secs(10), "the queue to drain", || s.drained("later")).await;
    b.sigterm();
    assert!(b.exited_ok().await, "worker b exits cleanly on SIGTERM");
}
