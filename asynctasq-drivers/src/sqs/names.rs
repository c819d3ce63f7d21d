//! SQS queue names of a task queue.
//!
//! | Task queue    | Work queue              | Dead-letter queue            |
//! |---------------|-------------------------|------------------------------|
//! | `emails`      | `<prefix>emails`        | `<prefix>emails-dead`        |
//! | `orders.fifo` | `<prefix>orders.fifo`   | `<prefix>orders-dead.fifo`   |
//!
//! SQS names are at most 80 characters of `A-Z a-z 0-9 _ -` plus a final `.fifo`, so task
//! queue names with other dots, names ending in `-dead` (they would collide with a dead-letter
//! queue) and names too long for the prefix are refused with the reason.

use asynctasq_core::DriverError;
use asynctasq_core::envelope::validate_queue_name;

const MAX: usize = 80;
const DEAD: &str = "-dead";
const FIFO: &str = ".fifo";

/// The SQS queues behind one task queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Names {
    pub(super) work: String,
    pub(super) dead: String,
    pub(super) fifo: bool,
}

/// Checks a queue name prefix: SQS characters only, short enough to leave room for names.
pub(super) fn validate_prefix(prefix: &str) -> Result<(), DriverError> {
    if prefix.len() > 40 {
        return Err(DriverError::Config(format!("SQS queue prefix is {} characters; the limit is 40", prefix.len())));
    }
    if let Some(bad) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
        return Err(DriverError::Config(format!("SQS queue prefix `{prefix}` contains {bad:?}; use letters, digits, `_` or `-`")));
    }
    Ok(())
}

/// The SQS names of task queue `queue`.
pub(super) fn names(prefix: &str, queue: &str) -> Result<Names, DriverError> {
    validate_queue_name(queue)?;
    let (base, fifo) = match queue.strip_suffix(FIFO) {
        Some(base) => (base, true),
        None => (queue, false),
    };
    if base.contains('.') {
        return Err(DriverError::Config(format!("queue name `{queue}` contains `.`; SQS allows a dot only in a final `.fifo`")));
    }
    if base.ends_with(DEAD) {
        return Err(DriverError::Config(format!("queue name `{queue}` ends in `{DEAD}`, which on SQS names dead-letter queues")));
    }
    let suffix = if fifo { FIFO } else { "" };
    let names = Names { work: format!("{prefix}{base}{suffix}"), dead: format!("{prefix}{base}{DEAD}{suffix}"), fifo };
    if names.dead.len() > MAX {
        return Err(DriverError::Config(format!(
            "queue name `{queue}` is too long for SQS: its dead-letter queue `{}` would have {} characters; the limit is {MAX}",
            names.dead,
            names.dead.len()
        )));
    }
    Ok(names)
}

/// The task queue an SQS queue name (work or dead) belongs to, if it is one of ours.
pub(super) fn task_queue(prefix: &str, sqs_name: &str) -> Option<String> {
    let rest = sqs_name.strip_prefix(prefix)?;
    let (rest, suffix) = match rest.strip_suffix(FIFO) {
        Some(r) => (r, FIFO),
        None => (rest, ""),
    };
    let base = rest.strip_suffix(DEAD).unwrap_or(rest);
    let queue = format!("{base}{suffix}");
    names(prefix, &queue).is_ok().then_some(queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_and_dead_names_round_trip_to_the_task_queue() {
        let n = names("app-", "orders.fifo").expect("valid");
        assert_eq!((n.work.as_str(), n.dead.as_str(), n.fifo), ("app-orders.fifo", "app-orders-dead.fifo", true));
        assert_eq!(task_queue("app-", &n.work).as_deref(), Some("orders.fifo"));
        assert_eq!(task_queue("app-", &n.dead).as_deref(), Some("orders.fifo"));
        assert_eq!(task_queue("app-", "app-emails-dead").as_deref(), Some("emails"));
        assert_eq!(task_queue("app-", "other-emails"), None);
    }

    #[test]
    fn names_sqs_cannot_hold_are_refused_with_the_reason() {
        let long = "q".repeat(76);
        for (queue, why) in [("a.b", "contains `.`"), ("x-dead", "ends in `-dead`"), (long.as_str(), "too long"), ("a b", "contains ' '")] {
            let err = names("p-", queue).expect_err(queue).to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(validate_prefix("bad.prefix").is_err());
        assert!(validate_prefix("asynctasq-").is_ok());
    }
}
