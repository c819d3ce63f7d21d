//! Queue limits across processes: four worker processes never hold more than a queue's caps,
//! checked continuously from the backend's leased tasks and afterwards from the runs' ledger;
//! a worker killed while holding keyed tasks frees their places within one lease; four worker
//! processes under a rate per key start no more than the rate in any window of a 30 s run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use asynctasq_core::driver::TaskState;
use asynctasq_core::limits::Rate;
use asynctasq_core::{Overrides, QueueLimits};
use asynctasq_tests::{Backend, Ledgered, Setup, shared_mysql_url, shared_postgres_url, shared_redis_url};
use sqlx::Row;

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// Dispatches `n` ledgered tasks to `queue`, task `i` keyed `k{i % keys}`, sleeping `sleep_ms`.
async fn dispatch_keyed(s: &Setup, queue: &str, n: u64, keys: u64, sleep_ms: u64, lease: Duration) {
    let mut batch = Vec::new();
    for i in 0..n {
        let o = Overrides { queue: Some(queue.into()), key: Some(format!("k{}", i % keys)), lease: Some(lease), ..Default::default() };
        batch.push(s.client.envelope(&Ledgered { n: i, sleep_ms }, &o).expect("envelope"));
        if batch.len() == 1000 || i + 1 == n {
            s.client.enqueue(std::mem::take(&mut batch)).await.expect("enqueue");
        }
    }
}

/// The most runs at once, in all and of one key, from the ledger's start and end times (an
/// end at the same millisecond as a start counts first: the run settles before the next
/// claim of its place).
async fn most_at_once(s: &Setup, keys: u64) -> (i64, i64) {
    let mut events = Vec::new();
    for (table, step) in [("started", 1i64), ("ledger", -1)] {
        let sql = format!("SELECT n, at_ms FROM {table}");
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&s.ledger).await.expect("read ledger") {
            events.push((row.get::<i64, _>(1), step, row.get::<i64, _>(0) as u64 % keys));
        }
    }
    events.sort_unstable();
    let (mut all, mut most, mut by_key, mut most_key) = (0i64, 0i64, HashMap::new(), 0i64);
    for (_, step, key) in events {
        all += step;
        most = most.max(all);
        let n = by_key.entry(key).or_insert(0i64);
        *n += step;
        most_key = most_key.max(*n);
    }
    (most, most_key)
}

/// Four worker processes (20 slots each) drain 20,000 tasks over 50 keys under a cap of 30
/// leased and 2 per key: a sampler reading the backend's leased tasks every few milliseconds
/// never sees more, and neither do the runs' own start and end times.
async fn four_processes_never_exceed_the_queue_and_key_limits(backend: Backend) {
    const TASKS: u64 = 20_000;
    const KEYS: u64 = 50;
    const CAP: usize = 30;
    const PER_KEY: usize = 2;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "limited-fleet";
    s.driver.set_limits(q, QueueLimits::max_leased(CAP as u32).with_per_key(Some(PER_KEY as u32))).await.expect("limits");
    dispatch_keyed(&s, q, TASKS, KEYS, 1, Duration::from_secs(30)).await;
    let mut workers: Vec<_> = (0..4).map(|_| s.spawn_worker(WORKER, q, 20, &[])).collect();

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (driver, done) = (s.driver.clone(), done.clone());
        tokio::spawn(async move {
            let (mut samples, mut over) = (0u64, Vec::new());
            while !done.load(Ordering::SeqCst) {
                let leased = driver.list(q, TaskState::Leased, 0, 1000).await.expect("list leased");
                let mut by_key: HashMap<String, usize> = HashMap::new();
                for t in &leased {
                    if let Some(k) = t.envelope.as_ref().ok().and_then(|e| e.key.clone()) {
                        *by_key.entry(k).or_default() += 1;
                    }
                }
                let worst = by_key.values().copied().max().unwrap_or(0);
                if leased.len() > CAP || worst > PER_KEY {
                    over.push((leased.len(), worst));
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (samples, over)
        })
    };
    let t = Instant::now();
    while !s.drained(q).await {
        assert!(t.elapsed() < Duration::from_secs(300), "drained within 5 minutes");
        for w in &mut workers {
            assert!(w.running(), "no worker process died");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::SeqCst);
    let (samples, over) = sampler.await.expect("sampler");
    assert!(samples >= 20, "the leases were sampled throughout ({samples} samples)");
    assert!(over.is_empty(), "samples over a limit (leased, most of one key): {over:?} of {samples}");
    let completions = s.completions().await;
    assert_eq!(completions.len() as u64, TASKS, "every task ran");
    let (most, most_key) = most_at_once(&s, KEYS).await;
    assert!(most <= CAP as i64 && most_key <= PER_KEY as i64, "runs at once: {most} in all, {most_key} of one key");
    assert_eq!(most_key, PER_KEY as i64, "the per-key limit was reached: it bound");
    eprintln!("{TASKS} tasks in {:?}: {samples} samples, at most {most} at once, {most_key} of one key", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_exceed_the_queue_and_key_limits_on_sqlite() {
    four_processes_never_exceed_the_queue_and_key_limits(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_exceed_the_queue_and_key_limits_on_redis() {
    four_processes_never_exceed_the_queue_and_key_limits(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_exceed_the_queue_and_key_limits_on_postgres() {
    four_processes_never_exceed_the_queue_and_key_limits(Backend::Postgres(shared_postgres_url())).await;
}

/// A worker killed with SIGKILL while it runs one task of each of five keys (1 per key) holds
/// their places only until its leases run out: a second worker starts a task of every key
/// within one lease of the kill.
async fn a_killed_worker_frees_its_key_slots_within_one_lease(backend: Backend) {
    let lease = Duration::from_secs(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "keyed-crash";
    s.driver.set_limits(q, QueueLimits::per_key(1)).await.expect("limits");
    dispatch_keyed(&s, q, 10, 5, 60_000, lease).await;
    let mut first = s.spawn_worker(WORKER, q, 10, &[]);
    let started = |pid: Option<u32>| {
        let ledger = s.ledger.clone();
        async move {
            let rows = sqlx::query("SELECT n, pid FROM started").fetch_all(&ledger).await.expect("read ledger");
            rows.iter()
                .filter(|r| pid.is_none_or(|p| r.get::<i64, _>(1) == i64::from(p)))
                .map(|r| r.get::<i64, _>(0) as u64 % 5)
                .collect::<Vec<_>>()
        }
    };
    let t = Instant::now();
    while started(None).await.len() < 5 {
        assert!(t.elapsed() < Duration::from_secs(30), "the first worker starts one task per key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = started(None).await;
    held.sort_unstable();
    assert_eq!(held, vec![0, 1, 2, 3, 4], "one task of each key, no more: the others wait for a place");
    first.kill();
    let killed = Instant::now();
    let mut second = s.spawn_worker(WORKER, q, 10, &[]);
    let pid = second.child().id();
    loop {
        let mut keys = started(Some(pid)).await;
        keys.sort_unstable();
        keys.dedup();
        if keys.len() == 5 {
            break;
        }
        assert!(killed.elapsed() < lease + Duration::from_secs(3), "every key's place freed within one lease of the kill: {keys:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("every key's place taken again {:?} after the kill (lease {lease:?})", killed.elapsed());
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_frees_its_key_slots_within_one_lease_on_sqlite() {
    a_killed_worker_frees_its_key_slots_within_one_lease(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_frees_its_key_slots_within_one_lease_on_redis() {
    a_killed_worker_frees_its_key_slots_within_one_lease(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_frees_its_key_slots_within_one_lease_on_postgres() {
    a_killed_worker_frees_its_key_slots_within_one_lease(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_frees_its_key_slots_within_one_lease_on_mysql() {
    a_killed_worker_frees_its_key_slots_within_one_lease(Backend::MySql(shared_mysql_url())).await;
}

/// The most starts of one key in any window of `window_ms` (a window holds the starts at
/// `[t, t + window_ms)`), from the ledger's start times, and the key and time where it is met.
fn most_in_a_window(starts: &HashMap<u64, Vec<i64>>, window_ms: i64) -> (usize, u64, i64) {
    let mut most = (0, 0, 0);
    for (&key, times) in starts {
        let mut first = 0;
        for (last, &at) in times.iter().enumerate() {
            while times[first] + window_ms <= at {
                first += 1;
            }
            if last + 1 - first > most.0 {
                most = (last + 1 - first, key, times[first]);
            }
        }
    }
    most
}

/// Four worker processes (10 slots each) drain 10 keys' tasks under a rate of 5 starts per
/// second per key for 30 s (or, `per_key` false, 50 per second for the whole queue for 10 s): no
/// key (or the queue) starts more than the rate in any window of the rate's length, wherever it
/// begins, and each reaches it in some window (the rate binds and is used), and the run takes
/// as long as the rate says. A start's time is its claim's ([`TaskContext::claimed_at`],
/// recorded by each run in the ledger), which is what the rate counts; when the runs began, a
/// little later, is printed beside.
///
/// [`TaskContext::claimed_at`]: asynctasq_core::TaskContext::claimed_at
async fn four_processes_never_start_more_than_the_rate(backend: Backend, per_key: bool) {
    const KEYS: u64 = 10;
    const WINDOW_MS: i64 = 1000;
    let (starts, seconds) = if per_key { (5u32, 30u64) } else { (50, 10) };
    let tasks = if per_key { KEYS } else { 1 } * starts as u64 * seconds;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "rate-fleet";
    let rate = Rate::new(starts, Duration::from_millis(WINDOW_MS as u64));
    let rate = if per_key { rate.per_key() } else { rate };
    s.driver.set_limits(q, QueueLimits::rate(rate)).await.expect("limits");
    dispatch_keyed(&s, q, tasks, KEYS, 1, Duration::from_secs(30)).await;
    let t = Instant::now();
    let mut workers: Vec<_> = (0..4).map(|_| s.spawn_worker(WORKER, q, 10, &[])).collect();
    while !s.drained(q).await {
        assert!(t.elapsed() < Duration::from_secs(3 * seconds), "drained within three times the rate's time");
        for w in &mut workers {
            assert!(w.running(), "no worker process died");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t.elapsed();
    let rows = sqlx::query("SELECT n, claimed_ms, at_ms FROM started").fetch_all(&s.ledger).await.expect("read ledger");
    assert_eq!(rows.len() as u64, tasks, "every task started once");
    // Starts by key, or all under one for a rate of the whole queue: claimed, and begun.
    let (mut claimed, mut begun): (HashMap<u64, Vec<i64>>, HashMap<u64, Vec<i64>>) = (HashMap::new(), HashMap::new());
    for row in &rows {
        let by = if per_key { row.get::<i64, _>(0) as u64 % KEYS } else { 0 };
        claimed.entry(by).or_default().push(row.get::<i64, _>(1));
        begun.entry(by).or_default().push(row.get::<i64, _>(2));
    }
    for times in claimed.values_mut().chain(begun.values_mut()) {
        times.sort_unstable();
    }
    let (most, key, at) = most_in_a_window(&claimed, WINDOW_MS);
    assert!(most <= starts as usize, "{most} claimed in the window from {at} (key k{key}; rate {rate})");
    for (key, times) in &claimed {
        let (most, _, _) = most_in_a_window(&HashMap::from([(*key, times.clone())]), WINDOW_MS);
        assert_eq!(most, starts as usize, "the rate was reached in some window (key k{key}): it bound");
    }
    let floor = Duration::from_millis((seconds - 1) * WINDOW_MS as u64);
    assert!(took >= floor, "{tasks} starts under {rate} take at least {floor:?}, took {took:?}");
    let (by_begin, _, _) = most_in_a_window(&begun, WINDOW_MS);
    eprintln!("{tasks} tasks in {took:?} under {rate}: at most {most} claimed in any window ({by_begin} by when the runs began)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_rate_on_sqlite() {
    four_processes_never_start_more_than_the_rate(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_queue_rate_on_sqlite() {
    four_processes_never_start_more_than_the_rate(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_queue_rate_on_redis() {
    four_processes_never_start_more_than_the_rate(Backend::Redis(shared_redis_url()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_queue_rate_on_postgres() {
    four_processes_never_start_more_than_the_rate(Backend::Postgres(shared_postgres_url()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_rate_on_redis() {
    four_processes_never_start_more_than_the_rate(Backend::Redis(shared_redis_url()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_start_more_than_the_rate_on_postgres() {
    four_processes_never_start_more_than_the_rate(Backend::Postgres(shared_postgres_url()), true).await;
}

/// Limits set through one handle bind a handle of its own (another pool, as another process
/// holds): it lists them, and the two handles' claims count each other's leases and starts. A
/// cap of 2, 1 per key, and 3 starts per minute for the queue; tasks of keys a, a, b, c.
async fn limits_set_through_one_handle_bind_every_handle(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let (one, other) = (s.driver.clone(), s.another_handle().await);
    let q = "two-handles";
    let limits = QueueLimits::max_leased(2).with_per_key(Some(1)).with_rate(Some(Rate::new(3, Duration::from_secs(60))));
    one.set_limits(q, limits).await.expect("limits");
    assert!(other.limits().await.expect("limits").contains(&(q.to_owned(), limits)), "the other handle lists them");
    for key in ["a", "a", "b", "c"] {
        let o = Overrides { queue: Some(q.into()), key: Some(key.into()), ..Default::default() };
        s.client.enqueue(vec![s.client.envelope(&Ledgered { n: 0, sleep_ms: 0 }, &o).expect("envelope")]).await.expect("enqueue");
    }
    let keys = |got: &[asynctasq_core::Delivery]| {
        got.iter().map(|d| d.envelope.as_ref().expect("decodes").key.clone().unwrap_or_default()).collect::<Vec<_>>()
    };
    let first = other.dequeue(q, 10).await.expect("dequeue");
    assert_eq!(keys(&first), ["a", "b"], "the other handle: the cap of 2, one per key");
    assert!(one.dequeue(q, 10).await.expect("dequeue").is_empty(), "this handle: the other's leases fill the cap");
    other.ack(&asynctasq_core::Ack::each(&first.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
    let second = one.dequeue(q, 10).await.expect("dequeue");
    assert_eq!(second.len(), 1, "this handle: one start left of the rate's 3, the other's two counted: {:?}", keys(&second));
    one.ack(&asynctasq_core::Ack::each(&second.iter().map(|d| d.lease.clone()).collect::<Vec<_>>())).await.expect("ack");
    assert!(other.dequeue(q, 10).await.expect("dequeue").is_empty(), "the other handle: the rate is spent, whoever started them");
    one.set_limits(q, QueueLimits::default()).await.expect("clear");
    assert_eq!(other.dequeue(q, 10).await.expect("dequeue").len(), 1, "cleared through one handle, gone for the other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_through_one_handle_bind_every_handle_on_sqlite() {
    limits_set_through_one_handle_bind_every_handle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_through_one_handle_bind_every_handle_on_redis() {
    limits_set_through_one_handle_bind_every_handle(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_through_one_handle_bind_every_handle_on_postgres() {
    limits_set_through_one_handle_bind_every_handle(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_set_through_one_handle_bind_every_handle_on_mysql() {
    limits_set_through_one_handle_bind_every_handle(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_exceed_the_queue_and_key_limits_on_mysql() {
    four_processes_never_exceed_the_queue_and_key_limits(Backend::MySql(shared_mysql_url())).await;
}
