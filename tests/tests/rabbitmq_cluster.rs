//! RabbitMQ clusters of the test's own (three nodes each on free loopback ports, their own data;
//! the shared broker untouched): the conformance suite through a URL naming every node (the
//! registry and dead-letter queues are quorum queues there), and a failover: the node holding
//! the work queue's leader is stopped mid-run, and the worker and the producer carry on through
//! the URL's other nodes.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use asynctasq_core::Driver;
use asynctasq_tests::{Backend, OwnRabbitCluster, Setup};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

mod conformance {
    use super::*;

    /// The cluster the conformance rules share (the failover test stops a node of its own).
    fn cluster() -> &'static OwnRabbitCluster {
        static CLUSTER: OnceLock<OwnRabbitCluster> = OnceLock::new();
        CLUSTER.get_or_init(OwnRabbitCluster::start)
    }

    async fn driver() -> Arc<dyn Driver> {
        let url = format!("{}?prefix=asynctasq-test-{:08x}", cluster().url(), fastrand::u32(..));
        asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("the test's own RabbitMQ cluster must be reachable: {e}"))
    }

    asynctasq_core::conformance_tests!(driver, lacks: [ExactStats, WorkerRegistry, ServerInfo, OldestReadyAge, Totals, IdempotentEnqueue, UniqueKeys, ScheduleClaims, TaskLookup, Results, Cancel, ResultNotify, CancelNotify, Progress, ErrorHistory, DeadExpiry, PauseQueues, Browse, QueueLimits, KeyedLimits, RateLimits]);
}

/// The node leading quorum queue `queue` (`rabbitmqctl list_queues name leader`).
fn leader(cluster: &OwnRabbitCluster, asked: usize, queue: &str) -> Option<String> {
    cluster.nodes[asked].rabbitmqctl_output(&["list_queues", "name", "leader", "--no-table-headers"]).lines().find_map(|l| {
        l.split_whitespace()
            .collect::<Vec<_>>()
            .split_first()
            .filter(|(n, _)| **n == queue)
            .and_then(|(_, rest)| rest.first().map(|s| (*s).to_owned()))
    })
}

/// 1,000 tasks dispatched, a worker (concurrency 8) draining them; a quarter in, the node
/// leading the work queue stops (`stop_app`); 1,000 more are dispatched after. Every task runs;
/// a task runs twice only if it was in flight on the stopped node (at most the worker's
/// deliveries held: its prefetch and the acks on their way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_queue_leaders_node_loses_nothing_and_the_worker_moves_to_a_survivor() {
    let mut cluster = OwnRabbitCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::RabbitMq(cluster.url())).await;
    let prefix = s.backend_args.iter().skip_while(|a| *a != "--rabbitmq-prefix").nth(1).expect("prefix").clone();
    let work = format!("{prefix}:fo");
    s.dispatch("fo", 1000, 2, Duration::from_secs(30)).await;
    let mut worker = s.spawn_worker(WORKER, "fo", 8, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.completions().await.len() < 250 {
        assert!(Instant::now() < deadline, "the worker started within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = leader(&cluster, 1, &work).unwrap_or_else(|| panic!("queue {work} has a leader"));
    let at = cluster.nodes.iter().position(|n| n.node() == leader).unwrap_or_else(|| panic!("leader {leader} is one of ours"));
    assert!(cluster.nodes[at].rabbitmqctl(&["stop_app"]), "stop_app on the leader's node");
    let stopped = Instant::now();
    let overrides = asynctasq_core::Overrides { queue: Some("fo".into()), lease: Some(Duration::from_secs(30)), ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = (1000..2000).map(|n| asynctasq_tests::Ledgered { n, sleep_ms: 2 });
        match s.client.dispatch_many(tasks, overrides.clone()).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "dispatching after the stop failed for 60 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = s.completions().await;
        if done.len() == 2000 {
            let twice = done.values().filter(|runs| **runs > 1).count();
            eprintln!(
                "leader on node {at} stopped; new leader {:?}; 2,000 ran, {twice} twice, in {:.1} s",
                self::leader(&cluster, (at + 1) % 3, &work),
                stopped.elapsed().as_secs_f64()
            );
            assert!(twice <= 24, "at most the deliveries the worker held ran twice: {twice}");
            break;
        }
        assert!(Instant::now() < deadline, "{} of 2,000 ran within 120 s of the stop", done.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.running(), "the worker is still running");
    worker.sigterm();
    assert!(worker.exited_ok().await, "the worker stops cleanly");
    drop(cluster.nodes.remove(at));
}
