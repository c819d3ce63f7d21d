//! Redis faults on a server of the test's own (never the shared one): connection kills and a
//! server restart mid-run lose nothing, and the worker carries on without exiting.

use std::time::Duration;

use asynctasq_tests::{Backend, OwnRedis, Setup};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");
const N: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_run_loses_nothing_and_the_worker_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = OwnRedis::start(dir.path());
    let s = Setup::on(dir.path(), Backend::Redis(redis.url())).await;
    s.survives_fault(WORKER, "kill", N, || async {
        for _ in 0..3 {
            redis.kill_clients();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut redis = OwnRedis::start(dir.path());
    let s = Setup::on(dir.path(), Backend::Redis(redis.url())).await;
    let completions = s.survives_fault(WORKER, "restart", N, || async { redis.restart(Duration::from_millis(1500)) }).await;
    let duplicates: u32 = completions.values().map(|c| c - 1).sum();
    assert!(duplicates <= 8, "only tasks in flight at the restart may run twice: {duplicates}");
}
