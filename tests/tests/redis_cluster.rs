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
            assert!(
                done.values().all(|runs| *runs == 1),
                "a task ran twice: {:?}",
                done.iter().filter(|(_, r)| **r > 1).take(5).collect::<Vec<_>>()
            );
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

/// What a failover did to a run: tasks whose dispatch returned, of them how many never ran,
/// how many ran twice, and how many of those dispatched after the new master took over ran.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug, in the tests' report
struct Failover {
    acknowledged: usize,
    lost: usize,
    ran_twice: usize,
    after: usize,
    after_ran: usize,
}

/// A worker process drains one queue while four producers each dispatch a batch of 20 tasks
/// every 25 ms (at most 3,200 a second, about what the worker keeps up with); 1.5 s in, the master holding the queue's slot is killed
/// (`SIGKILL`) with writes in flight. Dispatching goes on through the failover and 3 s past
/// it; then the worker gets 60 s to finish.
async fn fail_over_mid_run(options: &str) -> Failover {
    let mut cluster = OwnRedisCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Arc::new(Setup::on(dir.path(), Backend::Redis(format!("{}{options}", cluster.url()))).await);
    let prefix = s.backend_args.iter().skip_while(|a| *a != "--redis-prefix").nth(1).expect("prefix").clone();
    let master = cluster.master_of(&format!("{prefix}{{fo}}:waiting"));
    let _worker = s.spawn_worker(WORKER, "fo", 20, &[]);

    // Producer p dispatches tasks p, p + 4, p + 8, …; each returns what was acknowledged, and
    // which of it after the promotion.
    let promoted = Arc::new(OnceLock::<Instant>::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let (s, promoted, stop) = (s.clone(), promoted.clone(), stop.clone());
            tokio::spawn(async move {
                let overrides = asynctasq_core::Overrides { queue: Some("fo".into()), ..Default::default() };
                let (mut acknowledged, mut after, mut next) = (Vec::new(), Vec::new(), p);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let batch: Vec<u64> = (0..20).map(|i| next + 4 * i).collect();
                    next += 80;
                    let was_promoted = promoted.get().is_some();
                    let tasks = batch.iter().map(|&n| asynctasq_tests::Ledgered { n, sleep_ms: 2 });
                    match s.client.dispatch_many(tasks, overrides.clone()).await {
                        Ok(_) if was_promoted => {
                            after.extend(batch.iter().copied());
                            acknowledged.extend(batch);
                        }
                        Ok(_) => acknowledged.extend(batch),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                (acknowledged, after)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.crash(master);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.owner(&format!("{prefix}{{fo}}:waiting")).is_none_or(|owner| owner == master) {
        assert!(Instant::now() < deadline, "the replica was not promoted within a minute");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    promoted.set(Instant::now()).expect("promoted once");
    // The old master comes back, as a replica of the new one.
    cluster.restart(master);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acknowledged, mut after) = (Vec::new(), Vec::new());
    for producer in producers {
        let (a, b) = producer.await.expect("producer");
        acknowledged.extend(a);
        after.extend(b);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.drained("fo").await {
        assert!(Instant::now() < deadline, "the worker did not drain the queue within 60 s of the failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = s.completions().await;
    Failover {
        acknowledged: acknowledged.len(),
        lost: acknowledged.iter().filter(|n| !done.contains_key(n)).count(),
        ran_twice: done.values().filter(|runs| **runs > 1).count(),
        after: after.len(),
        after_ran: after.iter().filter(|n| done.contains_key(n)).count(),
    }
}

/// With asynchronous replication (the default), a failover may lose what the old master
/// acknowledged in its last moments and repeat what it had settled; the worker reconnects to
/// the new master and runs everything dispatched after it took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_continues_on_the_promoted_replica_after_its_master_fails() {
    let run = fail_over_mid_run("").await;
    eprintln!("failover without WAIT: {run:?}");
    assert!(run.after > 0, "tasks were dispatched after the failover: {run:?}");
    assert_eq!(run.after_ran, run.after, "every task dispatched to the new master ran: {run:?}");
}

/// With `wait_replicas=1` every state change returns once the replica holds it, so the
/// promoted replica has every acknowledged dispatch: none is lost, and what runs twice is at
/// most what was in flight when the master failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_failover_loses_no_acknowledged_task() {
    let run = fail_over_mid_run("?wait_replicas=1&wait_timeout=500ms").await;
    eprintln!("failover with WAIT 1: {run:?}");
    assert_eq!(run.lost, 0, "no acknowledged task is lost: {run:?}");
    assert!(run.ran_twice <= 40, "at most the tasks in flight (20 running, 20 being dispatched) ran twice: {run:?}");
    assert_eq!(run.after_ran, run.after, "every task dispatched to the new master ran: {run:?}");
}
