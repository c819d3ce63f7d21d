//! Blocking tasks (`#[task]` on a plain `fn`) run on the worker's bounded blocking pool, so
//! CPU-bound bodies never starve the async runtime: leases are renewed, async tasks start on
//! time, nothing is delivered twice. Real time on a two-thread runtime, as on this 2-core box.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use asynctasq_core::{Client, Event, MemoryDriver, TaskContext, Worker, task};

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Spins a core for `ms` (a CPU-bound body), stopping early if asked to.
#[task(queue = "mixed", lease = "600ms")]
fn crunch(ctx: TaskContext, ms: u64) {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < Duration::from_millis(ms) && !ctx.is_cancelled() {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

/// An async task that does nothing: its start latency is what the test measures.
#[task(queue = "mixed")]
async fn tick(n: u32) {
    let _ = n;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bound_blocking_tasks_keep_leases_and_let_async_tasks_start_on_time() {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    for _ in 0..4 {
        client.dispatch(Crunch { ms: 2_000 }).await.expect("dispatch");
    }
    let worker = Worker::builder(driver.clone())
        .queues("mixed")
        .expect("queues")
        .concurrency(24)
        .blocking_threads(2)
        .stop_when_empty(true)
        .build()
        .expect("build");
    let mut events = worker.events().subscribe();
    let run = tokio::spawn(worker.start());
    // 20 async tasks, one every 100 ms while the CPU-bound ones run.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..20 {
        client.dispatch(Tick { n }).await.expect("dispatch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = run.await.expect("join").expect("run");
    assert_eq!((counts.started, counts.succeeded, counts.lease_lost, counts.retried), (24, 24, 0, 0), "{counts:?}");
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 2, "at most --blocking-threads bodies at once");
    let mut waits = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::TaskStarted { task, waited } = e
            && &*task.name == "tick"
        {
            waits.push(waited);
        }
    }
    waits.sort();
    assert_eq!(waits.len(), 20);
    let p99 = waits[waits.len() * 99 / 100 - 1];
    assert!(p99 < Duration::from_millis(50), "async tasks waited up to {p99:?} (all: {waits:?})");
}
