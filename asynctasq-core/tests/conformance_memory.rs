//! The in-memory driver against the shared conformance suite, once as it is and once claiming
//! to lack every optional capability (which shows the suite's declared, visible skips).

use std::sync::Arc;

use asynctasq_core::{Driver, MemoryDriver};

mod full {
    use super::*;

    asynctasq_core::conformance_tests!(|| async { Arc::new(MemoryDriver::new()) as Arc<dyn Driver> });
}

mod lacking_every_optional_capability {
    use super::*;

    asynctasq_core::conformance_tests!(
        || async { Arc::new(MemoryDriver::new().lacking(&asynctasq_core::testing::CAPABILITIES)) as Arc<dyn Driver> },
        lacks: [
            Fencing,
            ExtendLease,
            ListDead,
            ExactStats,
            WakeOnEnqueue,
            PurgeScheduled,
            WorkerRegistry,
            ServerInfo,
            OldestReadyAge,
            Totals,
            IdempotentEnqueue,
            TaskLookup,
            Results,
            Cancel,
            ResultNotify,
            CancelNotify,
            Progress,
            ErrorHistory,
            DeadExpiry,
            PauseQueues,
            UniqueKeys,
            ScheduleClaims,
            Browse,
            QueueLimits,
            KeyedLimits,
            RateLimits
        ]
    );
}

#[test]
#[should_panic(expected = "lacks Fencing but the conformance_tests! call does not declare")]
fn an_undeclared_gap_fails_the_declaration_check() {
    let driver = MemoryDriver::new().lacking(&[asynctasq_core::Capability::Fencing]);
    asynctasq_core::testing::check_declared(&driver, &[]);
}

#[test]
#[should_panic(expected = "supports ListDead but the conformance_tests! call declares it lacks it")]
fn a_gap_declared_for_a_capable_driver_fails_the_declaration_check() {
    asynctasq_core::testing::check_declared(&MemoryDriver::new(), &[asynctasq_core::Capability::ListDead]);
}
