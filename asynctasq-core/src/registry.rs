//! The registry: task names to handlers.
//!
//! `#[task]` submits a [`TaskRegistration`] at link time (through the `inventory` crate), so
//! [`Registry::linked`] sees every annotated task in the binary with no list to maintain.
//! [`Registry::register`] adds tasks by hand (a task type implemented without the macro, or a
//! test that wants an exact set).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::error::{CodecError, WorkerError};
use crate::task::{Task, TaskContext, TaskError, TaskOptions, TaskResult};

/// A running handler.
pub type HandlerFuture = Pin<Box<dyn Future<Output = TaskResult> + Send + 'static>>;

/// Decodes a payload and runs the task.
pub type HandlerFn = fn(TaskContext, Vec<u8>) -> HandlerFuture;

/// Decodes a payload and gives the bytes its unique key is derived from
/// ([`Task::unique_fields`]).
pub type UniqueFieldsFn = fn(&[u8]) -> Result<Option<Vec<u8>>, CodecError>;

/// Decodes a payload and gives the task's key ([`Task::key`]).
pub type KeyFn = fn(&[u8]) -> Result<Option<String>, CodecError>;

/// One task known to the registry.
#[derive(Clone, Copy, Debug)]
pub struct TaskRegistration {
    /// The task's wire name.
    pub name: &'static str,
    /// Decodes the arguments and runs the task.
    pub handler: HandlerFn,
    /// The task's default options.
    pub options: fn() -> TaskOptions,
    /// Checks JSON arguments against the task's type and encodes them as its payload (for
    /// dispatching by name from a shell); the error says what does not fit.
    pub args_from_json: fn(&str) -> Result<Vec<u8>, String>,
    /// The bytes a payload's unique key is derived from ([`Task::unique_fields`] of the decoded
    /// arguments), so a dispatch by name derives the key a typed dispatch does.
    pub unique_fields: UniqueFieldsFn,
    /// The task's key ([`Task::key`] of the decoded arguments), so a dispatch by name gives the
    /// key a typed dispatch does.
    pub key: KeyFn,
    /// The schedule `#[task(cron = "…")]` declares, which every worker of the binary runs.
    pub cron: Option<CronSpec>,
}

/// A schedule as `#[task(cron = "…", tz = "…", catch_up = "…")]` writes it (checked when a
/// worker starts: see `crate::schedule::Schedule::declared`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CronSpec {
    /// The cron pattern (5 fields, or 6 with seconds first).
    pub pattern: &'static str,
    /// The IANA time zone (`UTC` unless given).
    pub tz: &'static str,
    /// `none`, `latest` or `all:N`.
    pub catch_up: &'static str,
}

impl TaskRegistration {
    /// The registration of task type `T`.
    pub const fn of<T: Task>() -> Self {
        Self {
            name: T::NAME,
            handler: run_encoded::<T>,
            options: T::options,
            args_from_json: encode_json::<T>,
            unique_fields: unique_fields_of::<T>,
            key: key_of::<T>,
            cron: None,
        }
    }

    /// The registration, with the schedule `#[task(cron = "…")]` declares.
    pub const fn with_cron(self, pattern: &'static str, tz: &'static str, catch_up: &'static str) -> Self {
        Self { cron: Some(CronSpec { pattern, tz, catch_up }), ..self }
    }
}

fn unique_fields_of<T: Task>(payload: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    rmp_serde::from_slice::<T>(payload).map_err(CodecError::Decode)?.unique_fields()
}

fn key_of<T: Task>(payload: &[u8]) -> Result<Option<String>, CodecError> {
    Ok(rmp_serde::from_slice::<T>(payload).map_err(CodecError::Decode)?.key())
}

fn encode_json<T: Task>(json: &str) -> Result<Vec<u8>, String> {
    let args: T = serde_json::from_str(json).map_err(|e| e.to_string())?;
    // serde drops fields the type does not have; a typo in a shell must not vanish silently.
    // The type stays lenient on the wire (a newer producer may add fields), so this is checked
    // here: every field given must come back when the arguments are written out again.
    if let (Ok(serde_json::Value::Object(given)), Ok(serde_json::Value::Object(known))) =
        (serde_json::from_str::<serde_json::Value>(json), serde_json::to_value(&args))
        && let Some(unknown) = given.keys().find(|k| !known.contains_key(*k))
    {
        let expected: Vec<String> = known.keys().map(|k| format!("`{k}`")).collect();
        return Err(format!(
            "unknown field `{unknown}`, expected {}",
            if expected.is_empty() { "no fields".into() } else { expected.join(", ") }
        ));
    }
    rmp_serde::to_vec_named(&args).map_err(|e| e.to_string())
}

inventory::collect!(TaskRegistration);

/// Marks a library crate as one holding `#[task]` functions: write `asynctasq_core::tasks_crate!();`
/// once in its `lib.rs`. The binary then names it with [`link_tasks!`](crate::link_tasks).
///
/// Why: the linker leaves out a library crate that nothing in the binary refers to, and with it
/// the link-time registrations of its tasks, so a worker would start knowing none of them. This
/// defines the function `link_tasks!` calls, which makes the reference.
#[macro_export]
macro_rules! tasks_crate {
    () => {
        /// Referenced by `asynctasq_core::link_tasks!` so the linker keeps this crate's tasks.
        #[doc(hidden)]
        #[inline(never)]
        pub fn __asynctasq_link_tasks() -> usize {
            ::core::hint::black_box(0)
        }
    };
}

/// Keeps the `#[task]` functions of library crates in this binary: call
/// `asynctasq_core::link_tasks!(my_tasks, other_tasks);` in `main` (each crate has
/// [`tasks_crate!`](crate::tasks_crate) in its `lib.rs`). A crate named here without
/// `tasks_crate!()` is a compile error, so it cannot be half done.
#[macro_export]
macro_rules! link_tasks {
    ($($krate:ident),+ $(,)?) => {
        $( ::core::hint::black_box($krate::__asynctasq_link_tasks()); )+
    };
}

fn run_encoded<T: Task>(ctx: TaskContext, payload: Vec<u8>) -> HandlerFuture {
    match rmp_serde::from_slice::<T>(&payload) {
        // Arguments that do not fit the type will not fit on the next attempt either.
        Err(e) => Box::pin(async move { Err(TaskError::fatal(format!("undecodable arguments for `{}`: {e}", T::NAME))) }),
        Ok(args) => Box::pin(args.run(ctx)),
    }
}

/// Task names to handlers.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    tasks: HashMap<&'static str, TaskRegistration>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every task registered with `#[task]` in this binary. Two tasks with one name are an error.
    pub fn linked() -> Result<Self, WorkerError> {
        let mut registry = Self::new();
        for registration in inventory::iter::<TaskRegistration> {
            registry.add(*registration)?;
        }
        Ok(registry)
    }

    /// Adds task type `T`.
    pub fn register<T: Task>(&mut self) -> Result<&mut Self, WorkerError> {
        self.add(TaskRegistration::of::<T>())?;
        Ok(self)
    }

    /// Adds a registration.
    pub fn add(&mut self, registration: TaskRegistration) -> Result<&mut Self, WorkerError> {
        if self.tasks.insert(registration.name, registration).is_some() {
            return Err(WorkerError::DuplicateTask(registration.name.to_owned()));
        }
        Ok(self)
    }

    /// The registration for a wire name.
    pub fn get(&self, name: &str) -> Option<&TaskRegistration> {
        self.tasks.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tasks.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// How many tasks are registered.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Welcome {
        user_id: u64,
        #[serde(default)]
        template: Option<String>,
    }

    impl Task for Welcome {
        const NAME: &'static str = "welcome";
        async fn run(self, _: TaskContext) -> TaskResult {
            Ok(())
        }
    }

    #[test]
    fn json_arguments_with_an_unknown_field_are_refused_naming_it() {
        let encode = TaskRegistration::of::<Welcome>().args_from_json;
        assert!(encode(r#"{"user_id": 42}"#).is_ok());
        assert!(encode(r#"{"user_id": 42, "template": "hi"}"#).is_ok());
        let err = encode(r#"{"user_id": 42, "usr_name": "x"}"#).expect_err("refused");
        assert!(err.contains("unknown field `usr_name`") && err.contains("`user_id`") && err.contains("`template`"), "{err}");
    }
}
