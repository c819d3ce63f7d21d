//! Redis faults on a server of the test's own (never the shared one): connection kills and a
//! server restart mid-run lose nothing, and the worker carries on without exiting.

use std::time::Duration;

use asynctasq_tests::{Backend, OwnRedis, Setup, eventually};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");
const N: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_run_loses_nothing_and_the_worker_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = OwnRedis::start(dir.path());
    let s = Setup::on(dir.path(), Backend::Redis(redis.url())).await;
    s.dispatch("kill", N, 20, Duration::from_secs(2)).await;
    let mut worker = s.spawn_worker(WORKER, "kill", 8, &[]);
    eventually(Duration::from_secs(60), "a quarter of the tasks to complete", || async { s.completions().await.len() as u64 >= N / 4 })
        .await;
    for _ in 0..3 {
        redis.kill_clients();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.running(), "the worker survives dropped connections");
    eventually(Duration::from_secs(90), "every task to complete", || async { s.completions().await.len() as u64 == N }).await;
    eventually(Duration::from_secs(10), "the queue to drain", || s.drained("kill")).await;
    assert!(worker.running(), "the worker is still running");
    worker.sigterm();
    assert!(worker.exited_ok().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = OwnRedis::start(dir.path());
    let s = Setup::on(dir.path(), Backend::Redis(redis.url())).await;
    s.dispatch("restart", N, 20, Duration::from_secs(2)).await;
    let mut worker = s.spawn_worker(WORKER, "restart", 8, &[]);
    eventually(Duration::from_secs(60), "a quarter of the tasks to complete", || async { s.completions().await.len() as u64 >= N / 4 })
        .await;
    redis.restart(Duration::from_millis(1500));
    assert!(worker.running(), "the worker survives the restart");
    eventually(Duration::from_secs(90), "every task to complete", || async { s.completions().await.len() as u64 == N }).await;
    eventually(Duration::from_secs(10), "the queue to drain", || s.drained("restart")).await;
    let duplicates: u32 = s.completions().await.values().map(|c| c - 1).sum();
    assert!(duplicates <= 8, "only tasks in flight at the restart may run twice: {duplicates}");
    worker.sigterm();
    assert!(worker.exited_ok().await);
}
