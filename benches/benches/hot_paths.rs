//! Micro-benchmarks of the per-task hot paths: building, encoding and decoding an envelope,
//! finding a task's handler, computing a retry delay, recording a task's metrics.
//!
//! ```text
//! cargo bench -p asynctasq-benches --bench hot_paths
//! ```

#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{Client, Envelope, MemoryDriver, Overrides, Registry, RetryPolicy, task};
use criterion::{Criterion, criterion_group, criterion_main};

/// A task with the arguments of a typical job: an id, an address, a flag.
#[task(queue = "emails")]
async fn send_welcome(user_id: u64, address: String, vip: bool) {
    black_box((user_id, address, vip));
}

/// Nine more registered tasks, so the lookup is not in a registry of one.
macro_rules! filler_tasks {
    ($($name:ident),*) => { $( #[task] async fn $name(n: u64) { black_box(n); } )* };
}
filler_tasks!(t1, t2, t3, t4, t5, t6, t7, t8, t9);

fn envelope(c: &mut Criterion) {
    let client = Client::new(Arc::new(MemoryDriver::new()));
    let task = SendWelcome { user_id: 42, address: "someone@example.com".into(), vip: false };
    let overrides = Overrides::default();
    c.bench_function("envelope/build", |b| b.iter(|| client.envelope(black_box(&task), &overrides).expect("envelope")));
    let env = client.envelope(&task, &overrides).expect("envelope");
    c.bench_function("envelope/encode", |b| b.iter(|| black_box(&env).encode().expect("encode")));
    let bytes = env.encode().expect("encode");
    println!("an encoded envelope is {} bytes", bytes.len());
    c.bench_function("envelope/decode", |b| b.iter(|| Envelope::decode(black_box(&bytes)).expect("decode")));
}

fn registry(c: &mut Criterion) {
    let registry = Registry::linked().expect("registry");
    assert!(registry.len() >= 10, "the bench's tasks are linked");
    c.bench_function("registry/get", |b| b.iter(|| registry.get(black_box("send_welcome")).is_some()));
    c.bench_function("registry/get_unknown", |b| b.iter(|| registry.get(black_box("no_such_task")).is_none()));
}

fn backoff(c: &mut Criterion) {
    let policy = RetryPolicy::default();
    c.bench_function("backoff/exponential_jitter", |b| b.iter(|| policy.delay(black_box(5))));
    let fixed = RetryPolicy::Fixed(Duration::from_secs(1));
    c.bench_function("backoff/fixed", |b| b.iter(|| fixed.delay(black_box(5))));
}

/// What the executor records per task while `--http` is on, through the recorder the worker's
/// listener installs: a handle lookup by (queue, task) under a read lock (as
/// `EngineMetrics::task` does), a start, a wait and a run sample, an outcome.
fn recording(c: &mut Criterion) {
    use asynctasq_core::metrics::names;
    use std::collections::HashMap;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let worker = asynctasq_core::Worker::builder(Arc::new(MemoryDriver::new()))
        .queues("emails")
        .expect("queues")
        .http(([127, 0, 0, 1], port).into())
        .build()
        .expect("worker");
    let handle = worker.handle();
    let running = rt.spawn(worker.start());
    while !asynctasq_core::metrics::enabled() {
        std::thread::sleep(Duration::from_millis(10));
    }
    struct Handles {
        started: metrics::Counter,
        succeeded: metrics::Counter,
        run: metrics::Histogram,
        wait: metrics::Histogram,
    }
    let (queue, task): (Arc<str>, Arc<str>) = ("emails".into(), "send_welcome".into());
    let handles = Arc::new(Handles {
        started: metrics::counter!(names::TASKS_STARTED, "queue" => "emails", "task" => "send_welcome"),
        succeeded: metrics::counter!(names::TASKS_FINISHED, "queue" => "emails", "task" => "send_welcome", "outcome" => "succeeded"),
        run: metrics::histogram!(names::TASK_RUN_SECONDS, "task" => "send_welcome"),
        wait: metrics::histogram!(names::TASK_WAIT_SECONDS, "queue" => "emails"),
    });
    type ByQueue = HashMap<Arc<str>, HashMap<Arc<str>, Arc<Handles>>>;
    let cache: std::sync::RwLock<ByQueue> =
        std::sync::RwLock::new(HashMap::from([(queue.clone(), HashMap::from([(task.clone(), handles)]))]));
    c.bench_function("metrics/record_one_task", |b| {
        b.iter(|| {
            let h = cache.read().expect("lock").get(black_box(&*queue)).and_then(|t| t.get(black_box(&*task))).cloned().expect("cached");
            h.started.increment(1);
            h.wait.record(black_box(0.003));
            h.run.record(black_box(0.0001));
            h.succeeded.increment(1);
        })
    });
    handle.stop();
    rt.block_on(running).expect("join").expect("worker");
}

criterion_group!(hot_paths, envelope, registry, backoff, recording);
criterion_main!(hot_paths);
