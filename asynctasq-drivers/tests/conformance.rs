//! Every driver of this crate against the shared conformance suite, one module per backend,
//! each opened through [`asynctasq_drivers::connect`] with names of its own per test: a key,
//! table or queue prefix (`asynctasq-test-*`, `asynctasq_test_*`, `at-*`) that `scripts/test`
//! sweeps, on the server at the backend's `ASYNCTASQ_TEST_*` variable (default the local one).

mod common;
#[allow(unused_imports)]
use common::{env_or, own};

/// The conformance suite for one backend: module `$name`, built with feature `$feature`, on
/// a driver opened for each test from the URL `$url` makes (or by the body `$make` of an
/// `async fn`).
macro_rules! conformance_on {
    ($feature:literal, $name:ident, url: $url:expr $(, lacks: $lacks:tt)?) => {
        conformance_on!($feature, $name, driver: {
            let url: String = $url;
            asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("{} must be reachable (scripts/test starts it): {e}", stringify!($name)))
        } $(, lacks: $lacks)?);
    };
    ($feature:literal, $name:ident, driver: $make:expr $(, lacks: $lacks:tt)?) => {
        #[cfg(feature = $feature)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn driver() -> std::sync::Arc<dyn asynctasq_core::Driver> {
                $make
            }

            asynctasq_core::conformance_tests!(driver $(, lacks: $lacks)?);
        }
    };
}

// A fresh database file per test, removed with the process's temp dir.
conformance_on!("sqlite", sqlite, url: format!("sqlite://{}/conformance.db", tempfile::tempdir().expect("temp dir").keep().display()), lacks: [ResultNotify, CancelNotify]);
conformance_on!("redis", redis, url: format!("{}?prefix=asynctasq-test-{}:", env_or("ASYNCTASQ_TEST_REDIS_URL", "redis://127.0.0.1:6379"), own()));
conformance_on!("postgres", postgres, url: format!("{}?table_prefix=asynctasq_test_{}&max_connections=4", env_or("ASYNCTASQ_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"), own()));
conformance_on!("mysql", mysql, url: format!("{}?table_prefix=asynctasq_test_{}&max_connections=4", env_or("ASYNCTASQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"), own()), lacks: [ResultNotify, CancelNotify]);
// On the vhost of `ASYNCTASQ_TEST_RABBITMQ_URL` (`scripts/test` makes one per run and deletes it).
conformance_on!("rabbitmq", rabbitmq, url: format!("{}?prefix=asynctasq-test-{}", env_or("ASYNCTASQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"), own()), lacks: [ExactStats, WorkerRegistry, ServerInfo, OldestReadyAge, Totals, IdempotentEnqueue, UniqueKeys, ScheduleClaims, TaskLookup, Results, Cancel, ResultNotify, CancelNotify, Progress, ErrorHistory, DeadExpiry, PauseQueues, Browse, QueueLimits, KeyedLimits, RateLimits]);
// On moto (which `scripts/test` starts) with its dummy credentials, which no URL carries.
conformance_on!("sqs", sqs, driver: {
    let mut config = asynctasq_drivers::SqsConfig::local(env_or("ASYNCTASQ_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566"));
    config.queue_prefix = format!("at-{}-", own());
    // moto's send takes time linear in the queue's length: 16 parallel batches into a queue of
    // 1,000 tasks run past the 5 s default, and the SDK's retry of a send moto did store puts
    // the batch in twice (measured: 1,050 stored of 1,000 sent). Real SQS answers in ms.
    config.request_timeout = std::time::Duration::from_secs(30);
    std::sync::Arc::new(asynctasq_drivers::SqsDriver::connect(config).await.expect("SQS (moto) must be reachable (scripts/test starts it)"))
}, lacks: [Fencing, ExactStats, PurgeScheduled, WorkerRegistry, ServerInfo, OldestReadyAge, Totals, IdempotentEnqueue, UniqueKeys, ScheduleClaims, TaskLookup, Results, Cancel, ResultNotify, CancelNotify, Progress, ErrorHistory, DeadExpiry, PauseQueues, Browse, QueueLimits, KeyedLimits, RateLimits]);
