//! Redis Cluster, on a cluster of this test binary's own (six nodes on free loopback ports,
//! three masters with a replica each; see `OwnRedisCluster`): the whole conformance suite, and
//! queues spread over every master drained by a worker process with none lost.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use asynctasq_core::Driver;
use asynctasq_tests::{Backend, OwnRedisCluster, Setup};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// The cluster the tests of this binary share, started by the first that needs it and stopped
/// with the process.
fn cluster() -> &'static OwnRedisCluster {
    static CLUSTER: OnceLock<OwnRedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(OwnRedisCluster::start)
}

mod conformance {
    use super::*;

    async fn driver() -> Arc<dyn Driver> {
        let url = format!("{}?prefix=asynctasq-test-{:08x}:", cluster().url(), fastrand::u32(..));
        asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("the test's own cluster must be reachable: {e}"))
    }

    asynctasq_core::conformance_tests!(driver);
}

/// Twelve queues whose slots fall on all three masters, 6,000 tasks in all, drained by one
/// worker process waiting on every queue at once: each task runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_on_every_master_drain_with_none_lost_or_repeated() {
    let cluster = cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Redis(cluster.url())).await;
    let queues: Vec<String> = (0..12).map(|i| format!("spread{i}")).collect();
    let prefix = s.backend_args.iter().skip_while(|a| *a != "--redis-prefix").nth(1).expect("prefix").clone();
    let masters: std::collections::BTreeSet<u16> = queues.iter().map(|q| cluster.master_of(&format!("{prefix}{{{q}}}:waiting"))).collect();
    assert_eq!(masters.len(), 3, "the queues' slots fall on every master");

    let mut worker = s.spawn_worker(WORKER, &queues.join(","), 20, &[]);
    // Dispatched after the worker is waiting, in rounds, so its blocking waits across nodes
    // are what wakes it.
    let per_queue = 500u64;
    for (i, q) in queues.iter().enumerate() {
        let overrides = asynctasq_core::Overrides { queue: Some(q.clone()), ..Default::default() };
        let tasks = (0..per_queue).map(|n| asynctasq_tests::Ledgered { n: i as u64 * per_queue + n, sleep_ms: 0 });
        s.client.dispatch_many(tasks, overrides).await.expect("dispatch");
        if i % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let total = per_queue * queues.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = s.completions().await;
        if done.len() as u64 == total {
            assert!(done.values().all(|runs| *runs == 1), "a task ran twice: {:?}", done.iter().filter(|(_, r)| **r > 1).take(5).collect::<Vec<_>>());
            break;
        }
        assert!(Instant::now() < deadline, "{} of {total} tasks ran within 60 s", done.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for q in &queues {
        assert!(s.drained(q).await, "queue {q} is empty");
    }
    worker.sigterm();
    assert!(worker.exited_ok().await, "the worker stops cleanly");
}
