//! The registry: task names to handlers.
//!
//! `#[task]` submits a [`TaskRegistration`] at link time (through the `inventory` crate), so
//! [`Registry::linked`] sees every annotated task in the binary with no list to maintain.
//! [`Registry::register`] adds tasks by hand (a task type implemented without the macro, or a
//! test that wants an exact set).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use crate::error::WorkerError;
use crate::task::{Task, TaskContext, TaskError, TaskOptions, TaskResult};

/// A running handler.
pub type HandlerFuture = Pin<Box<dyn Future<Output = TaskResult> + Send + 'static>>;

/// Decodes a payload and runs the task.
pub type HandlerFn = fn(TaskContext, Vec<u8>) -> HandlerFuture;

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
}

impl TaskRegistration {
    /// The registration of task type `T`.
    pub const fn of<T: Task>() -> Self {
        Self { name: T::NAME, handler: run_encoded::<T>, options: T::options, args_from_json: encode_json::<T> }
    }
}

fn encode_json<T: Task>(json: &str) -> Result<Vec<u8>, String> {
    let args: T = serde_json::from_str(json).map_err(|e| e.to_string())?;
    rmp_serde::to_vec_named(&args).map_err(|e| e.to_string())
}

inventory::collect!(TaskRegistration);

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
