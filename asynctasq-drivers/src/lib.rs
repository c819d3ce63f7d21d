//! # asynctasq-drivers
//!
//! Backends for asynctasq, each behind a Cargo feature named after it, all implementing
//! [`asynctasq_core::Driver`] and passing its conformance suite.
//!
//! | Feature  | Default | Driver |
//! |----------|---------|--------|
//! | `sqlite` | yes     | [`SqliteDriver`]: embedded, no server (sqlx, bundled SQLite) |
//! | `redis`  | no      | `RedisDriver`: Redis 6.2+ through the `redis` crate, Lua scripts |
//! | `postgres` | no    | `PostgresDriver`: PostgreSQL through sqlx, SKIP LOCKED claims, LISTEN/NOTIFY |
//! | `mysql`  | no      | `MySqlDriver`: MySQL 8 / MariaDB 10.6+ through sqlx, SKIP LOCKED claims |
//! | `rabbitmq` | no    | `RabbitMqDriver`: RabbitMQ 3.10+ through `lapin`, quorum queues, TTL delay queues |
//! | `sqs`    | no      | `SqsDriver`: AWS SQS through `aws-sdk-sqs`, long polling, batched calls, FIFO queues |
//!
//! [`connect`] picks the backend from a URL scheme at run time:
//!
//! ```no_run
//! # async fn f() -> Result<(), asynctasq_core::DriverError> {
//! let driver = asynctasq_drivers::connect("sqlite://asynctasq.db").await?;
//! # Ok(()) }
//! ```

mod any;
#[cfg(any(feature = "redis", feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod consumer;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub mod sql;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(any(feature = "redis", feature = "rabbitmq", feature = "sqs"))]
mod sync;
mod url;

#[cfg(feature = "redis")]
pub use crate::redis::{RedisConfig, RedisDriver, RedisEventPublisher};
pub use any::{backend_of_scheme, connect};
pub use asynctasq_core::redact_url;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::{RabbitMqConfig, RabbitMqDriver};
#[cfg(feature = "mysql")]
pub use sql::mysql::{MySqlConfig, MySqlDriver};
#[cfg(feature = "postgres")]
pub use sql::postgres::{PostgresConfig, PostgresDriver};
#[cfg(feature = "sqlite")]
pub use sql::sqlite::{SqliteConfig, SqliteDriver};
#[cfg(feature = "sqs")]
pub use sqs::{Requests as SqsRequests, SqsConfig, SqsDriver};
