//! Errors of the library: what a driver, the codec and dispatch can fail with.

use crate::task_id::TaskId;

/// An error from a [`Driver`](crate::Driver) or from dispatching through a [`Client`](crate::Client).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The lease named in a settle or extend call is no longer held: it expired and another
    /// consumer took the task, or the task was already settled. Reported only by backends that
    /// can fence (see [`Capability::Fencing`](crate::Capability::Fencing)).
    #[error("lease lost for task {0}")]
    LeaseLost(TaskId),
    /// The task was asked to stop ([`Driver::cancel`](crate::Driver::cancel)): reported by
    /// [`Driver::extend_lease`](crate::Driver::extend_lease) instead of extending the lease.
    #[error("task {0} was cancelled")]
    CancelRequested(TaskId),
    /// The backend could not be reached or dropped the connection; retrying later may succeed.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed, without secrets.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend answered with an error that retrying will not fix (bad schema, bad query).
    #[error("backend error: {message}")]
    Backend {
        /// What failed, without secrets.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The configuration (URL, queue name, option) is invalid; the message names the problem.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A task is too large for the backend (SQS takes at most 256 KiB per message); nothing
    /// of the call was stored.
    #[error("task {id} is {size} bytes as stored by this backend, over its limit of {limit} bytes")]
    TooLarge {
        /// The task.
        id: TaskId,
        /// Its size as the backend would store it.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The driver does not offer this operation (see [`Driver::supports`](crate::Driver::supports)).
    #[error("{0} is not supported by this driver")]
    Unsupported(&'static str),
    /// Encoding a task failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl DriverError {
    /// A [`DriverError::Backend`] from any error, with a message saying what was being done.
    pub fn backend(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend { message: message.into(), source: Some(Box::new(source)) }
    }

    /// A [`DriverError::Unavailable`] from any error, with a message saying what was being done.
    pub fn unavailable(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable { message: message.into(), source: Some(Box::new(source)) }
    }

    /// A [`DriverError::Unavailable`] for a request that got no answer within `after`: the
    /// connection is presumed dead (half-open), and the driver's next request uses a new one.
    pub fn timed_out(doing: impl Into<String>, after: std::time::Duration) -> Self {
        Self::Unavailable { message: format!("{}: no answer within {after:?}", doing.into()), source: None }
    }

    /// Whether retrying the same call later may succeed (connection trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Encoding or decoding an envelope or task arguments failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a MessagePack envelope of a known shape (corrupt or foreign data).
    #[error("malformed envelope")]
    Decode(#[source] rmp_serde::decode::Error),
    /// The envelope was written by a newer, unknown version of the format.
    #[error("unknown envelope version {found} (this build reads up to {supported})")]
    UnknownVersion {
        /// The version found in the bytes.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The task arguments could not be decoded into the task's type.
    #[error("undecodable arguments for task `{task}`")]
    Arguments {
        /// The task's wire name.
        task: String,
        /// Why decoding failed.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// A value could not be encoded as MessagePack.
    #[error("unencodable value")]
    Encode(#[source] rmp_serde::encode::Error),
}

/// Why a worker could not be built or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Two tasks were registered under the same wire name.
    #[error("task name `{0}` is registered twice; task names must be unique")]
    DuplicateTask(String),
    /// The worker was given no queue to consume.
    #[error("no queues given; name at least one queue")]
    NoQueues,
    /// A queue specification (`name` or `name:weight`) is malformed.
    #[error("invalid queue specification `{spec}`: {reason}")]
    QueueSpec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An option has a value outside its range.
    #[error("invalid worker option: {0}")]
    Option(String),
    /// The worker's HTTP listener cannot start (address in use, feature `http` off, another
    /// metrics recorder installed).
    #[error("HTTP listener: {0}")]
    Http(String),
    /// The driver failed in a way the worker cannot carry on from.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// An error and its sources, joined with `": "` (the form kept as a dead task's reason). A
/// source whose message already ends the text (errors that print their source themselves, like
/// sqlx's) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("stats: {0}")]
        Repeats(#[source] std::io::Error),
        #[error("stats")]
        Hides(#[source] std::io::Error),
    }

    #[test]
    fn error_chain_names_every_source_once() {
        let io = || std::io::Error::other("table missing");
        assert_eq!(error_chain(&Outer::Repeats(io())), "stats: table missing");
        assert_eq!(error_chain(&Outer::Hides(io())), "stats: table missing");
    }
}
