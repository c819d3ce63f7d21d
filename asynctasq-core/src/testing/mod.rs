//! The driver conformance suite: the runnable form of the [`Driver`] contract.
//!
//! Every backend calls [`conformance_tests!`](crate::conformance_tests) once in its tests with
//! a factory for a fresh driver; that expands to one `#[tokio::test]` per rule in [`rules`],
//! named as the rule it checks. A rule that needs a [`Capability`] the driver lacks prints
//! `SKIPPED <rule>: driver <name> lacks <capability>` and passes, so skips show in
//! `--nocapture` output and are greppable in CI logs.
//!
//! ```text
//! asynctasq_core::conformance_tests!(|| async {
//!     std::sync::Arc::new(asynctasq_core::MemoryDriver::new()) as std::sync::Arc<dyn asynctasq_core::Driver>
//! });
//! ```
//!
//! Every rule uses queue names of its own (`<rule>-<random>`), so rules run in parallel on a
//! shared server and leave other tests' data alone. Waits use [`eventually`] with generous
//! deadlines, never fixed sleeps, except where a rule must show that something does *not*
//! happen for a while.

pub mod rules;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::driver::{Capability, Driver};
use crate::envelope::{ENVELOPE_VERSION, Envelope, TaskId, unix_millis};

/// One driver and the queue names of one rule.
pub struct Harness {
    /// The driver under test.
    pub driver: Arc<dyn Driver>,
    rule: &'static str,
    suffix: String,
}

impl Harness {
    /// A harness for `rule` on `driver`.
    pub fn new(driver: Arc<dyn Driver>, rule: &'static str) -> Self {
        Self { driver, rule, suffix: format!("{:08x}", fastrand::u32(..)) }
    }

    /// A queue name unique to this rule and run.
    pub fn queue(&self, label: &str) -> String {
        let short: String = self.rule.chars().take(60).collect();
        format!("{short}-{label}-{}", self.suffix)
    }

    /// An envelope for `queue`, due now, with a lease of `lease`.
    pub fn envelope(&self, queue: &str, lease: Duration) -> Envelope {
        let now = unix_millis(SystemTime::now());
        Envelope {
            version: ENVELOPE_VERSION,
            id: TaskId::new(),
            name: "conformance.noop".into(),
            queue: queue.to_owned(),
            payload: vec![0x90],
            attempt: 0,
            max_attempts: 5,
            timeout_ms: None,
            lease_ms: lease.as_millis() as u64,
            created_at: now,
            not_before: now,
            headers: Default::default(),
        }
    }

    /// Whether the driver has `capability`; prints the skip line when it does not.
    pub fn requires(&self, capability: Capability) -> bool {
        let ok = self.driver.supports(capability);
        if !ok {
            eprintln!("SKIPPED {}: driver {} lacks {capability:?}", self.rule, self.driver.name());
        }
        ok
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Expands to one test per conformance rule for the driver made by `$factory`, an expression
/// callable as `$factory()` returning a future of `Arc<dyn Driver>`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@rules $factory;
            enqueued_task_is_delivered_with_attempt_one,
            dequeue_of_an_empty_queue_returns_nothing,
            leased_task_is_invisible_until_settled,
            ack_deletes_the_task,
            expired_lease_redelivers_with_next_attempt,
            settling_a_lost_lease_reports_lease_lost,
            extend_lease_keeps_task_invisible_past_its_first_lease,
            nack_with_delay_hides_task_until_due,
            release_returns_task_without_spending_an_attempt,
            dead_letter_records_error_and_attempt,
            requeue_dead_resets_attempts,
            purge_dead_empties_the_dead_store,
            queues_are_isolated,
            delayed_enqueue_is_invisible_until_due,
            dequeue_returns_at_most_max_in_due_order,
            bulk_enqueue_then_drain_loses_nothing,
            concurrent_consumers_never_double_deliver,
            stats_count_ready_scheduled_leased_and_dead,
            purge_removes_ready_and_scheduled_but_not_leased,
            queues_lists_every_queue_holding_tasks,
            wait_ready_wakes_on_enqueue,
            wait_ready_returns_when_a_delayed_task_falls_due,
            hostile_queue_names_are_rejected
        );
    };
    (@rules $factory:expr; $($rule:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let driver: ::std::sync::Arc<dyn $crate::Driver> = ($factory)().await;
                $crate::testing::rules::$rule($crate::testing::Harness::new(driver, stringify!($rule))).await;
            }
        )*
    };
}

/// The ids of deliveries, for set comparisons.
pub fn ids(deliveries: &[crate::Delivery]) -> Vec<TaskId> {
    deliveries.iter().map(|d| d.lease.id).collect()
}
