//! What was enqueued, as the assertions see it: [`Enqueued`] sets, the [`Filter`] on queue and
//! delay, and the `assert_enqueued!` / `refute_enqueued!` macros.

use std::fmt;
use std::time::Duration;

use super::jobs::Jobs;
use super::recorder::Entry;
use crate::envelope::Envelope;
use crate::task::Task;

/// A set of enqueued tasks to assert on: from [`Jobs::all_enqueued`] or [`Jobs::during`].
#[derive(Clone, Debug)]
pub struct Enqueued {
    tasks: Vec<EnqueuedTask>,
    tolerance: Duration,
}

/// One enqueued task.
#[derive(Clone, Debug)]
pub struct EnqueuedTask {
    /// What the driver stored.
    pub envelope: Envelope,
    /// How long after its dispatch it is due.
    pub delay: Duration,
}

impl EnqueuedTask {
    /// The arguments as JSON, for messages (`null` when they do not decode).
    pub fn args_json(&self) -> serde_json::Value {
        rmp_serde::from_slice(&self.envelope.payload).unwrap_or(serde_json::Value::Null)
    }
}

impl Enqueued {
    pub(super) fn of(entries: Vec<Entry>, tolerance: Duration) -> Self {
        let tasks = entries
            .into_iter()
            .map(|e| EnqueuedTask {
                delay: Duration::from_millis(e.envelope.not_before.saturating_sub(e.envelope.created_at)),
                envelope: e.envelope,
            })
            .collect();
        Self { tasks, tolerance }
    }

    /// The tasks, in enqueue order.
    pub fn tasks(&self) -> &[EnqueuedTask] {
        &self.tasks
    }

    /// How many tasks there are.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The tasks of type `T` that pass `filter`, decoded, each with its record.
    pub fn decoded<T: Task>(&self, filter: &Filter) -> Vec<(T, &EnqueuedTask)> {
        self.tasks
            .iter()
            .filter(|t| t.envelope.name == T::NAME && filter.passes(t, self.tolerance))
            .filter_map(|t| rmp_serde::from_slice::<T>(&t.envelope.payload).ok().map(|v| (v, t)))
            .collect()
    }

    /// How many tasks of type `T` pass `filter` and `matches` (what the assertion macros use).
    pub fn count<T: Task>(&self, filter: &Filter, matches: impl Fn(&T) -> bool) -> usize {
        self.decoded::<T>(filter).iter().filter(|(t, _)| matches(t)).count()
    }
}

impl fmt::Display for Enqueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tasks.is_empty() {
            return f.write_str("nothing was enqueued");
        }
        writeln!(f, "enqueued ({}):", self.tasks.len())?;
        for t in &self.tasks {
            writeln!(f, "  {} on `{}`, delay {:?}: {}", t.envelope.name, t.envelope.queue, t.delay, t.args_json())?;
        }
        Ok(())
    }
}

/// What else an enqueued task must match: its queue, its delay (within the tolerance).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    queue: Option<String>,
    delay: Option<Duration>,
    tolerance: Option<Duration>,
}

impl Filter {
    /// Only tasks in `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only tasks due `delay` after their dispatch, give or take the tolerance.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// The tolerance on `delay` (default: the helpers', 1 s).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    fn passes(&self, t: &EnqueuedTask, tolerance: Duration) -> bool {
        let tolerance = self.tolerance.unwrap_or(tolerance);
        self.queue.as_ref().is_none_or(|q| *q == t.envelope.queue) && self.delay.is_none_or(|d| t.delay.abs_diff(d) <= tolerance)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(q) = &self.queue {
            write!(f, " on `{q}`")?;
        }
        if let Some(d) = self.delay {
            write!(f, " with delay {d:?}")?;
        }
        Ok(())
    }
}

/// What the assertion macros take: [`Jobs`] or an [`Enqueued`] set.
pub trait AsEnqueued {
    /// The enqueued tasks to assert on.
    fn as_enqueued(&self) -> Enqueued;
}

impl AsEnqueued for Jobs {
    fn as_enqueued(&self) -> Enqueued {
        self.all_enqueued()
    }
}

impl AsEnqueued for Enqueued {
    fn as_enqueued(&self) -> Enqueued {
        self.clone()
    }
}

impl<T: AsEnqueued> AsEnqueued for &T {
    fn as_enqueued(&self) -> Enqueued {
        (**self).as_enqueued()
    }
}

/// Counts the enqueued tasks matching a pattern, for `assert_enqueued!` and
/// `refute_enqueued!`: `(count, what was asked, the enqueued set)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __enqueued_matching {
    ($jobs:expr, $($ty:ident)::+ { $($fields:tt)* } $(if $guard:expr)? $(, $key:ident = $value:expr)* $(,)?) => {{
        let enqueued = $crate::testing::AsEnqueued::as_enqueued(&$jobs);
        let filter = $crate::testing::Filter::default() $(.$key($value))*;
        #[allow(unused_variables)]
        let n = enqueued.count::<$($ty)::+>(&filter, |__t| matches!(__t, $($ty)::+ { $($fields)* } $(if $guard)?));
        (n, format!("`{}`{}", stringify!($($ty)::+ { $($fields)* }), filter), enqueued)
    }};
}

/// Asserts that a task matching a pattern was enqueued (and not delivered since):
/// `assert_enqueued!(jobs, SendWelcome { user_id: 42, .. })` (a guard may follow:
/// `SendWelcome { template, .. } if template.starts_with("hi")`), optionally with `queue = "…"`,
/// `delay = Duration` and `tolerance = Duration`. `jobs` is a [`Jobs`] or an [`Enqueued`] set
/// from [`Jobs::during`]. The failure message lists what was enqueued.
#[macro_export]
macro_rules! assert_enqueued {
    ($($args:tt)*) => {{
        let (n, what, enqueued) = $crate::__enqueued_matching!($($args)*);
        if n == 0 {
            panic!("expected a task matching {what}, but none was enqueued; {enqueued}");
        }
    }};
}

/// Asserts that no task matching a pattern was enqueued (and not delivered since); the
/// counterpart of [`assert_enqueued!`](crate::assert_enqueued), with the same arguments.
#[macro_export]
macro_rules! refute_enqueued {
    ($($args:tt)*) => {{
        let (n, what, enqueued) = $crate::__enqueued_matching!($($args)*);
        if n > 0 {
            panic!("expected no task matching {what}, but {n} was enqueued; {enqueued}");
        }
    }};
}
