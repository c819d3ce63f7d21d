//! The driver conformance suite: the runnable form of the [`Driver`] contract.
//!
//! Every backend calls [`conformance_tests!`](crate::conformance_tests) once in its tests with
//! a factory for a fresh driver; that expands to one `#[tokio::test]` per rule in [`rules`],
//! named as the rule it checks, plus `declared_capabilities_match_the_driver`.
//!
//! A driver that lacks a [`Capability`] declares it in the call; the rules needing it are then
//! generated as `#[ignore = "driver lacks <capability>"]`, so every skip shows as *ignored*, with
//! its reason, in the test output. An undeclared gap fails its rules, and a declaration that
//! does not match [`Driver::supports`] fails `declared_capabilities_match_the_driver`.
//!
//! ```text
//! asynctasq_core::conformance_tests!(|| async { Arc::new(MemoryDriver::new()) as Arc<dyn Driver> });
//! asynctasq_core::conformance_tests!(make_rabbitmq_driver, lacks: [Fencing, ListDead]);
//! ```
//!
//! Every rule uses queue names of its own (`<rule>-<random>`), so rules run in parallel on a
//! shared server and leave other tests' data alone. Waits use [`eventually`] with generous
//! deadlines, never fixed sleeps, except where a rule must show that something does *not*
//! happen for a while.

pub mod bad_input;
pub mod rules;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::driver::{Capability, Driver};
use crate::envelope::{ENVELOPE_VERSION, Envelope, TaskId};

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
        // Short enough for SQS (queue names of at most 80 characters, prefix and suffix included).
        let short: String = self.rule.chars().take(40).collect();
        format!("{short}-{label}-{}", self.suffix)
    }

    /// An envelope for `queue`, due now, with a lease of `lease`.
    pub fn envelope(&self, queue: &str, lease: Duration) -> Envelope {
        let now = SystemClock.now();
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

    /// Asserts that the driver has `capability`: a rule runs only for drivers that did not
    /// declare the gap, so an undeclared one is a failure, never a silent pass.
    pub fn requires(&self, capability: Capability) {
        assert!(
            self.driver.supports(capability),
            "rule {} needs {capability:?}, which driver {} lacks: declare it with `conformance_tests!(…, lacks: [{capability:?}])`",
            self.rule,
            self.driver.name()
        );
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

/// Every capability a driver can lack, for [`check_declared`].
pub const CAPABILITIES: [Capability; 8] = Capability::ALL;

/// Asserts that `lacks` (from a `conformance_tests!` call) is exactly what `driver` does not
/// support.
pub fn check_declared(driver: &dyn Driver, lacks: &[Capability]) {
    for capability in CAPABILITIES {
        assert_eq!(
            driver.supports(capability),
            !lacks.contains(&capability),
            "driver {} {} {capability:?} but the conformance_tests! call {} it",
            driver.name(),
            if driver.supports(capability) { "supports" } else { "lacks" },
            if lacks.contains(&capability) { "declares it lacks" } else { "does not declare that it lacks" },
        );
    }
}

/// Expands to one test per conformance rule for the driver made by `$factory`, an expression
/// callable as `$factory()` returning a future of `Arc<dyn Driver>`. Capabilities the driver
/// lacks are listed after `lacks:`; the rules needing them become ignored tests.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!($factory, lacks: []);
    };
    ($factory:expr, lacks: [$($lack:ident),* $(,)?]) => {
        #[::tokio::test]
        async fn declared_capabilities_match_the_driver() {
            let driver: ::std::sync::Arc<dyn $crate::Driver> = ($factory)().await;
            $crate::testing::check_declared(&*driver, &[$($crate::Capability::$lack),*]);
        }
        $crate::conformance_tests!(@rules $factory; [$($lack)*];
            enqueued_task_is_delivered_with_attempt_one: None,
            dequeue_of_an_empty_queue_returns_nothing: None,
            leased_task_is_invisible_until_settled: None,
            ack_deletes_the_task: None,
            expired_lease_redelivers_with_next_attempt: None,
            settling_a_lost_lease_reports_lease_lost: Fencing,
            extend_lease_keeps_task_invisible_past_its_first_lease: ExtendLease,
            nack_with_delay_hides_task_until_due: None,
            release_returns_task_without_spending_an_attempt: None,
            dead_task_is_never_delivered: None,
            dead_letter_records_error_and_attempt: ListDead,
            requeue_dead_resets_attempts: None,
            purge_dead_empties_the_dead_store: None,
            queues_are_isolated: None,
            delayed_enqueue_is_invisible_until_due: None,
            task_due_before_claimed_ones_is_still_delivered: None,
            dequeue_returns_at_most_max_in_due_order: None,
            bulk_enqueue_then_drain_loses_nothing: None,
            concurrent_consumers_never_double_deliver: None,
            stats_count_ready_scheduled_leased_and_dead: ExactStats,
            purge_removes_ready_but_not_leased: None,
            purge_removes_scheduled_tasks: PurgeScheduled,
            purge_waiting_deletes_only_what_it_is_asked_for: None,
            queues_lists_every_queue_holding_tasks: None,
            wait_ready_wakes_on_enqueue: WakeOnEnqueue,
            wait_ready_returns_when_a_delayed_task_falls_due: None,
            dequeue_never_waits_longer_than_its_bound: None,
            server_info_tells_version_clock_and_schema: ServerInfo,
            wait_ready_on_an_idle_queue_ends_within_its_timeout_and_a_request_deadline: None,
            hostile_queue_names_are_rejected: None,
            hostile_task_names_are_stored_as_data_or_refused: None,
            stop_prefetch_gives_back_undelivered_tasks_unspent: None,
            registered_worker_is_listed_until_deregistered_or_expired: WorkerRegistry
        );
    };
    (@rules $factory:expr; $lacks:tt; $($rule:ident: $cap:ident),* $(,)?) => {
        $( $crate::__conformance_rule!($factory, $rule, $cap, $lacks, $lacks); )*
    };
}

/// One rule's test: ignored when the capability it needs is among the declared gaps. Matches
/// the capability against each declared gap in turn (macro_rules can compare idents only by
/// literal arms, hence one arm per capability).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rule {
    ($f:expr, $rule:ident, None, $all:tt, $scan:tt) => { $crate::__conformance_rule!(@run $f, $rule); };
    ($f:expr, $rule:ident, $cap:ident, $all:tt, []) => { $crate::__conformance_rule!(@run $f, $rule); };
    ($f:expr, $rule:ident, Fencing, $all:tt, [Fencing $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks Fencing"); };
    ($f:expr, $rule:ident, ExtendLease, $all:tt, [ExtendLease $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks ExtendLease"); };
    ($f:expr, $rule:ident, ListDead, $all:tt, [ListDead $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks ListDead"); };
    ($f:expr, $rule:ident, ExactStats, $all:tt, [ExactStats $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks ExactStats"); };
    ($f:expr, $rule:ident, WakeOnEnqueue, $all:tt, [WakeOnEnqueue $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks WakeOnEnqueue"); };
    ($f:expr, $rule:ident, PurgeScheduled, $all:tt, [PurgeScheduled $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks PurgeScheduled"); };
    ($f:expr, $rule:ident, WorkerRegistry, $all:tt, [WorkerRegistry $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks WorkerRegistry"); };
    ($f:expr, $rule:ident, ServerInfo, $all:tt, [ServerInfo $($rest:ident)*]) => { $crate::__conformance_rule!(@skip $rule, "driver lacks ServerInfo"); };
    ($f:expr, $rule:ident, $cap:ident, $all:tt, [$head:ident $($rest:ident)*]) => { $crate::__conformance_rule!($f, $rule, $cap, $all, [$($rest)*]); };
    (@run $f:expr, $rule:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rule() {
            let driver: ::std::sync::Arc<dyn $crate::Driver> = ($f)().await;
            $crate::testing::rules::$rule($crate::testing::Harness::new(driver, stringify!($rule))).await;
        }
    };
    (@skip $rule:ident, $reason:literal) => {
        #[::tokio::test]
        #[ignore = $reason]
        async fn $rule() {}
    };
}

/// The ids of deliveries, for set comparisons.
pub fn ids(deliveries: &[crate::Delivery]) -> Vec<TaskId> {
    deliveries.iter().map(|d| d.lease.id).collect()
}
