//! Unique keys hold under load: 100,000 dispatches from 16 concurrent producers over 1,000
//! keys store exactly one task per key, on every backend that keeps keys, and every dispatch
//! of a key is told the same holder.

use std::collections::{HashMap, HashSet};

use asynctasq_core::{Overrides, TaskId, task};
use asynctasq_tests::*;

/// A task unique by its key alone: the producer and draw differ between duplicates.
#[task(unique(by = [key]))]
async fn keyed(key: u64, producer: u64, draw: u64) {
    let _ = (key, producer, draw);
}

const PRODUCERS: u64 = 16;
const DISPATCHES: u64 = 100_000;
const KEYS: u64 = 1_000;
const BATCH: u64 = 50;

async fn many_producers_store_one_task_per_key(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let queue = "unique-load";
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let client = s.client.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(producer);
                let overrides = Overrides { queue: Some(queue.into()), ..Overrides::default() };
                let mut told: Vec<(u64, TaskId)> = Vec::new();
                for round in 0..DISPATCHES / PRODUCERS / BATCH {
                    let keys: Vec<u64> = (0..BATCH).map(|_| rng.u64(..KEYS)).collect();
                    let tasks = keys.iter().enumerate().map(|(i, &key)| Keyed { key, producer, draw: round * BATCH + i as u64 });
                    let ids = client.dispatch_many(tasks, overrides.clone()).await.expect("dispatch");
                    told.extend(keys.into_iter().zip(ids));
                }
                told
            })
        })
        .collect();
    let mut holders: HashMap<u64, HashSet<TaskId>> = HashMap::new();
    let mut dispatched = 0;
    for p in producers {
        for (key, id) in p.await.expect("producer") {
            holders.entry(key).or_default().insert(id);
            dispatched += 1;
        }
    }
    assert_eq!(dispatched, (DISPATCHES / PRODUCERS / BATCH) * BATCH * PRODUCERS);
    let split: Vec<_> = holders.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(split.is_empty(), "keys whose dispatches were told different holders: {:?}", &split[..split.len().min(5)]);
    let stats = s.driver.stats(queue).await.expect("stats");
    assert_eq!(stats.ready, holders.len() as u64, "one stored task per key, {} keys drawn", holders.len());
    assert!(holders.len() as u64 > KEYS * 99 / 100, "the draws covered the keys: {}", holders.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_store_one_task_per_key_on_sqlite() {
    many_producers_store_one_task_per_key(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_store_one_task_per_key_on_redis() {
    many_producers_store_one_task_per_key(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_store_one_task_per_key_on_postgres() {
    many_producers_store_one_task_per_key(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_store_one_task_per_key_on_mysql() {
    many_producers_store_one_task_per_key(Backend::MySql(shared_mysql_url())).await;
}
