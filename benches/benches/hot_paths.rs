//! Micro-benchmarks of the per-task hot paths: building, encoding and decoding an envelope,
//! finding a task's handler, computing a retry delay.
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

criterion_group!(hot_paths, envelope, registry, backoff);
criterion_main!(hot_paths);
