//! Testing: helpers for testing your tasks ([`Jobs`], [`assert_enqueued!`](crate::assert_enqueued))
//! and, for driver authors, the driver conformance suite: the runnable form of the [`Driver`]
//! contract.
//!
//! # The conformance suite
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
mod enqueued;
mod jobs;
mod recorder;
pub mod rules;
mod sweep;

pub use self::enqueued::{AsEnqueued, Enqueued, EnqueuedTask, Filter};
pub use self::jobs::{Drain, DrainError, DrainReport, Jobs, Performed, TaskFailure};
pub use self::sweep::{SWEEP_TTL, kept_results_are_swept_by_later_claims};

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

    /// A harness for `rule`, which needs capability `needs`, on `driver`: asserts that the
    /// driver has it (a rule runs only for drivers that did not declare the gap, so an
    /// undeclared one is a failure, never a silent pass).
    pub fn for_rule(driver: Arc<dyn Driver>, rule: &'static str, needs: Option<Capability>) -> Self {
        let h = Self::new(driver, rule);
        if let Some(capability) = needs {
            h.requires(capability);
        }
        h
    }

    /// A queue name unique to this rule and run.
    pub fn queue(&self, label: &str) -> String {
        // Short enough for SQS (queue names of at most 80 characters, prefix and suffix included).
        let short: String = self.rule.chars().take(40).collect();
        format!("{short}-{label}-{}", self.suffix)
    }

    /// An envelope for `queue`, due now, with a lease of `lease`.
    pub fn envelope(&self, queue: &str, lease: Duration) -> Envelope {
        envelope(queue, lease)
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
pub const CAPABILITIES: [Capability; Capability::ALL.len()] = Capability::ALL;

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
        $crate::__conformance_rules!(__conformance_tests_of([$] $factory; [$($lack)*]));
    };
}

/// The tests of the rules [`__conformance_rules!`](crate::__conformance_rules) lists for one
/// driver: a rule whose capability is among the declared gaps is ignored, with the gap as the
/// reason; every other rule runs. `$d` is a `$`, so the helper macro defined here can have
/// metavariables of its own: it has one literal arm per declared gap, which is how a
/// `macro_rules` macro tells whether a rule's capability is among them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests_of {
    ([$d:tt] $f:expr; [$($lack:ident)*]; $($rule:ident: $cap:ident),* $(,)?) => {
        macro_rules! __conformance_test {
            $(
                ($d rule:ident, $lack) => {
                    $crate::__ignored_rule!($d rule, $lack);
                };
            )*
            ($d rule:ident, $d cap:ident) => {
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d rule() {
                    let driver: ::std::sync::Arc<dyn $crate::Driver> = ($f)().await;
                    let needs = $crate::__conformance_need!($d cap);
                    $crate::testing::rules::$d rule($crate::testing::Harness::for_rule(driver, stringify!($d rule), needs)).await;
                }
            };
        }
        $( __conformance_test!($rule, $cap); )*
    };
}

/// The capability a rule needs, from its entry in the rule list (`None`: none).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_need {
    (None) => {
        ::std::option::Option::None
    };
    ($cap:ident) => {
        ::std::option::Option::Some($crate::Capability::$cap)
    };
}

/// A no-op task's envelope for `queue` (a new id, 5 attempts), due now, with a lease of
/// `lease`: what rules and driver tests enqueue.
pub fn envelope(queue: &str, lease: Duration) -> Envelope {
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
        defaulted: Default::default(),
        unique: None,
        key: None,
    }
}

/// The ids of deliveries, for set comparisons.
pub fn ids(deliveries: &[crate::Delivery]) -> Vec<TaskId> {
    deliveries.iter().map(|d| d.lease.id).collect()
}
