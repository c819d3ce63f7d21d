//! Trace context through the task on every backend (`asynctasq_core::trace`): each dispatch
//! is a producer span, each delivery a consumer span that is the child of its dispatch on the
//! first attempt and a new trace linked to it on a retry and on a dead task's replay. Spans are collected by the
//! OpenTelemetry SDK's in-memory exporter behind one `tracing-opentelemetry` layer for the
//! whole test process; each test reads the spans of its own queue.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use asynctasq_core::testing::Jobs;
use asynctasq_core::{Driver, Overrides, RetryPolicy, TaskContext, TaskError, task};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

mod common;
#[allow(unused_imports)]
use common::{env_or, own};

/// Succeeds.
#[task]
async fn traced(n: u32) -> Result<(), TaskError> {
    let _ = n;
    Ok(())
}

/// Fails on its first attempt, then succeeds.
#[task]
async fn traced_flaky(ctx: TaskContext) -> Result<(), TaskError> {
    if ctx.attempt() == 1 { Err(TaskError::retry("first attempt fails")) } else { Ok(()) }
}

/// Always fails: dispatched with one attempt, it dies, and its replay dies again.
#[task]
async fn traced_doomed() -> Result<(), TaskError> {
    Err(TaskError::retry("always fails"))
}

/// The exporter every span of this process ends in.
fn exporter() -> &'static InMemorySpanExporter {
    static INSTALLED: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    &INSTALLED
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("asynctasq-test"));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only subscriber of this process");
            (exporter, provider)
        })
        .0
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Dispatches 10 tasks one by one, 5 in one batch, one that fails once and one that dies,
/// inside a caller's span; drains them, replays the dead one and drains it again; checks every
/// span of the queue.
async fn first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(driver: Arc<dyn Driver>) {
    let spans = exporter();
    let queue = format!("trace-{}", own());
    let system = asynctasq_core::trace::system(driver.name()).to_owned();
    let jobs = Jobs::on(driver.clone()).retry(RetryPolicy::Fixed(Duration::ZERO));
    let client = jobs.client();
    let request = tracing::info_span!("request");
    async {
        for n in 0..10 {
            client.dispatch(Traced { n }).queue(&queue).await.expect("dispatch");
        }
        let batch = Overrides { queue: Some(queue.clone()), ..Overrides::default() };
        client.dispatch_many((10..15).map(|n| Traced { n }), batch).await.expect("dispatch many");
        client.dispatch(TracedFlaky {}).queue(&queue).await.expect("dispatch");
        let once = Overrides { queue: Some(queue.clone()), max_attempts: Some(1), ..Overrides::default() };
        client.dispatch_many([TracedDoomed {}], once).await.expect("dispatch");
    }
    .instrument(request)
    .await;
    let until = Instant::now() + Duration::from_secs(60);
    let (mut succeeded, mut dead) = (0, 0);
    while succeeded < 16 || dead < 1 {
        assert!(Instant::now() < until, "16 tasks succeed and one dies within a minute ({succeeded} and {dead} did)");
        let counts = jobs.drain(&queue).await.expect("drain");
        (succeeded, dead) = (succeeded + counts.succeeded, dead + counts.dead);
    }
    assert_eq!(driver.requeue_dead(&queue, asynctasq_core::DeadSelector::All).await.expect("replay"), 1);
    while dead < 2 {
        assert!(Instant::now() < until, "the replayed task dies again within a minute");
        dead += jobs.drain(&queue).await.expect("drain").dead;
    }
    driver.purge(&queue).await.expect("purge");
    driver.purge_dead(&queue).await.expect("purge dead");

    let finished = spans.get_finished_spans().expect("finished spans");
    let ours = |kind: SpanKind| -> Vec<&SpanData> {
        finished
            .iter()
            .filter(|s| s.span_kind == kind && attribute(s, "messaging.destination.name").as_deref() == Some(queue.as_str()))
            .collect()
    };
    let (sends, processes) = (ours(SpanKind::Producer), ours(SpanKind::Consumer));
    assert_eq!(sends.len(), 13, "one send span per dispatch call, a batch is one");
    assert_eq!(processes.len(), 19, "one process span per delivery: 17 first attempts, one retry and one replay");
    let trace = sends[0].span_context.trace_id();
    for send in &sends {
        assert_eq!(send.name, format!("send {queue}"));
        assert_eq!(send.span_context.trace_id(), trace, "every send continues the caller's trace");
        assert_eq!(attribute(send, "messaging.system").as_deref(), Some(system.as_str()));
        assert_eq!(attribute(send, "messaging.operation.type").as_deref(), Some("send"));
    }
    assert_eq!(sends.iter().filter(|s| attribute(s, "messaging.batch.message_count").as_deref() == Some("5")).count(), 1);
    let send_of = |id| sends.iter().find(|s| s.span_context.span_id() == id);
    let (mut firsts, mut replays) = (0, 0);
    for process in &processes {
        assert_eq!(process.name, format!("process {queue}"));
        assert_eq!(attribute(process, "messaging.system").as_deref(), Some(system.as_str()));
        assert_eq!(attribute(process, "messaging.operation.type").as_deref(), Some("process"));
        assert!(attribute(process, "messaging.message.id").is_some_and(|id| id.len() == 36), "the task id: {process:?}");
        let attempt = attribute(process, "task.attempt").expect("task.attempt");
        let name = attribute(process, "task.name").expect("task.name");
        let replay = name == "traced_doomed" && !process.links.is_empty();
        if attempt == "1" && !replay {
            firsts += 1;
            let parent = send_of(process.parent_span_id).unwrap_or_else(|| panic!("attempt 1 is a child of its send span: {process:?}"));
            assert_eq!(process.span_context.trace_id(), parent.span_context.trace_id());
            assert!(process.links.is_empty(), "a child needs no link");
        } else {
            if replay {
                replays += 1;
                assert_eq!(attempt, "1", "a replay starts over at attempt 1");
            } else {
                assert_eq!((attempt.as_str(), name.as_str()), ("2", "traced_flaky"));
            }
            assert_ne!(process.span_context.trace_id(), trace, "a retry or replay starts a trace of its own");
            assert_eq!(process.parent_span_id, opentelemetry::trace::SpanId::INVALID, "and is a root span: {process:?}");
            let links: Vec<_> = process.links.iter().collect();
            assert_eq!(links.len(), 1, "a retry or replay links to its dispatch: {process:?}");
            assert!(send_of(links[0].span_context.span_id()).is_some(), "the link points at the send span");
        }
    }
    assert_eq!(firsts, 17, "every first attempt continued its dispatch's trace");
    assert_eq!(replays, 1, "the replay is a new trace linked to the dispatch, not the dispatch's child");
    let failed: Vec<_> = processes.iter().filter(|p| matches!(p.status, opentelemetry::trace::Status::Error { .. })).collect();
    assert_eq!(failed.len(), 3, "the failed runs are marked as errors: the retried one and both deaths");
}

#[tokio::test]
async fn trace_context_continues_on_memory() {
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(Arc::new(asynctasq_core::MemoryDriver::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn trace_context_continues_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/trace.db", dir.path().display());
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(asynctasq_drivers::connect(&url).await.expect("sqlite")).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn trace_context_continues_on_redis() {
    let url = format!("{}?prefix=asynctasq-test-{}:", env_or("ASYNCTASQ_TEST_REDIS_URL", "redis://127.0.0.1:6379"), own());
    let driver = asynctasq_drivers::connect(&url).await.expect("Redis must be reachable (scripts/test starts it)");
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(driver).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn trace_context_continues_on_postgres() {
    let base = env_or("ASYNCTASQ_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let url = format!("{base}?table_prefix=asynctasq_test_{}&max_connections=2", own());
    let driver = asynctasq_drivers::connect(&url).await.expect("PostgreSQL must be reachable (scripts/test starts it)");
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(driver).await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn trace_context_continues_on_mysql() {
    let base = env_or("ASYNCTASQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    let url = format!("{base}?table_prefix=asynctasq_test_{}&max_connections=2", own());
    let driver = asynctasq_drivers::connect(&url).await.expect("MySQL must be reachable (scripts/test starts it)");
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(driver).await;
}

#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn trace_context_continues_on_rabbitmq() {
    let base = env_or("ASYNCTASQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let url = format!("{base}?prefix=asynctasq-test-{}", own());
    let driver = asynctasq_drivers::connect(&url).await.expect("RabbitMQ must be reachable (scripts/test starts it)");
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(driver).await;
}

#[cfg(feature = "sqs")]
#[tokio::test]
async fn trace_context_continues_on_sqs() {
    let mut config = asynctasq_drivers::SqsConfig::local(env_or("ASYNCTASQ_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566"));
    config.queue_prefix = format!("at-{}-", own());
    let driver = asynctasq_drivers::SqsDriver::connect(config).await.expect("SQS (moto) must be reachable (scripts/test starts it)");
    first_attempts_are_children_of_their_dispatch_and_retries_link_to_it(Arc::new(driver)).await;
}
