//! The settle decision: what happens to a delivery once its run has an outcome.
//!
//! One pure function of the outcome, the attempt, the task's max attempts and its retry policy,
//! so the rule can be read in one place and checked for every combination (the property tests
//! below): a success is acked; a fatal failure, or any failure on the last attempt, is
//! dead-lettered with its reason; any other failure is retried after the delay the task asked
//! for, or else after its retry policy's delay for that attempt.

use std::time::Duration;

use crate::retry::RetryPolicy;
use crate::task::Disposition;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler returned success.
    Succeeded,
    /// The handler failed (an error, a panic, a timeout): the message and what it asked for.
    Failed { message: String, disposition: Disposition },
}

/// What to do with the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Delete the task: it is done.
    Ack,
    /// Return it to its queue, ready after `delay`, with `error` as its last error.
    Retry { delay: Duration, error: String },
    /// Move it to the dead-letter store with `reason`.
    Dead { reason: String },
}

/// The decision for delivery number `attempt` (1-based) of a task allowed `max_attempts`.
pub(crate) fn decide(outcome: Outcome, attempt: u32, max_attempts: u32, policy: &RetryPolicy) -> Settle {
    let (message, disposition) = match outcome {
        Outcome::Succeeded => return Settle::Ack,
        Outcome::Failed { message, disposition } => (message, disposition),
    };
    match disposition {
        Disposition::Fatal => Settle::Dead { reason: message },
        _ if attempt >= max_attempts => Settle::Dead { reason: format!("{message} (attempt {attempt} of {max_attempts})") },
        Disposition::RetryAfter(delay) => Settle::Retry { delay, error: message },
        Disposition::Retry => Settle::Retry { delay: policy.delay(attempt), error: message },
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn disposition() -> impl Strategy<Value = Disposition> {
        prop_oneof![
            Just(Disposition::Retry),
            Just(Disposition::Fatal),
            (0u64..100_000).prop_map(|ms| Disposition::RetryAfter(Duration::from_millis(ms))),
        ]
    }

    fn policy() -> impl Strategy<Value = RetryPolicy> {
        prop_oneof![
            (0u64..10_000).prop_map(|ms| RetryPolicy::Fixed(Duration::from_millis(ms))),
            (1u64..10_000, 1u64..100_000, any::<bool>()).prop_map(|(base, max, jitter)| RetryPolicy::Exponential {
                base: Duration::from_millis(base),
                max: Duration::from_millis(max),
                jitter
            }),
        ]
    }

    proptest! {
        #[test]
        fn a_success_is_always_acked(attempt in 1u32..100, max in 1u32..100, policy in policy()) {
            prop_assert_eq!(decide(Outcome::Succeeded, attempt, max, &policy), Settle::Ack);
        }

        #[test]
        fn a_failure_is_dead_exactly_when_fatal_or_out_of_attempts(
            attempt in 1u32..100, max in 1u32..100, disposition in disposition(), policy in policy(), message in "[a-z ]{1,20}"
        ) {
            let fatal = disposition == Disposition::Fatal;
            let settled = decide(Outcome::Failed { message: message.clone(), disposition }, attempt, max, &policy);
            match settled {
                Settle::Dead { reason } => {
                    prop_assert!(fatal || attempt >= max, "dead only when fatal or out of attempts");
                    prop_assert!(reason.starts_with(&message), "the reason keeps the task's message: {}", reason);
                    if !fatal {
                        prop_assert!(reason.contains(&format!("attempt {attempt} of {max}")), "{}", reason);
                    }
                }
                Settle::Retry { delay, error } => {
                    prop_assert!(!fatal && attempt < max, "retried only with attempts left");
                    prop_assert_eq!(error, message);
                    match (disposition, &policy) {
                        (Disposition::RetryAfter(asked), _) => prop_assert_eq!(delay, asked, "the task's own delay wins"),
                        (_, RetryPolicy::Fixed(d)) => prop_assert_eq!(delay, *d),
                        (_, RetryPolicy::Exponential { max: cap, .. }) => prop_assert!(delay <= *cap, "never past the cap"),
                    }
                }
                Settle::Ack => prop_assert!(false, "a failure is never acked"),
            }
        }
    }
}
