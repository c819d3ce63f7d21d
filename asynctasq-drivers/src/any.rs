//! Choosing a backend at run time from a URL.

use std::sync::Arc;

use asynctasq_core::{Driver, DriverError, MemoryDriver};

use asynctasq_core::redact_url;

/// Connects to the backend the URL's scheme names, with the settings in its query (see each
/// `<Backend>Config::from_url`):
///
/// | Scheme | Backend | Example |
/// |---|---|---|
/// | `sqlite:` | SQLite | `sqlite://jobs.db?busy_timeout=10s` |
/// | `redis:`, `rediss:` | Redis | `redis://127.0.0.1:6379/0?prefix=app:` |
/// | `redis+cluster:`, `rediss+cluster:` | Redis Cluster | `redis+cluster://127.0.0.1:7000,127.0.0.1:7001?prefix=app:` |
/// | `postgres:`, `postgresql:` | PostgreSQL | `postgres://app@127.0.0.1/app?table_prefix=jobs&migrate=false` |
/// | `mysql:`, `mariadb:` | MySQL, MariaDB | `mysql://root@127.0.0.1/app?max_connections=16` |
/// | `amqp:`, `amqps:` | RabbitMQ | `amqp://guest:guest@127.0.0.1:5672/%2f?prefetch=32&heartbeat=5` |
/// | `sqs:` | AWS SQS | `sqs://us-east-1?endpoint=http://127.0.0.1:4566&queue_prefix=app-` |
/// | `memory:` | in-process (tests) | `memory:` |
///
/// An unknown query option is an error naming it. Errors name the problem and never include
/// the URL's password.
pub async fn connect(url: &str) -> Result<Arc<dyn Driver>, DriverError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match backend_of_scheme(scheme) {
        Some("memory") => Ok(Arc::new(MemoryDriver::new())),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => Ok(Arc::new(crate::SqliteDriver::connect(url).await?)),
        #[cfg(feature = "mysql")]
        Some("mysql") => Ok(Arc::new(crate::MySqlDriver::connect(url).await?)),
        #[cfg(feature = "postgres")]
        Some("postgres") => Ok(Arc::new(crate::PostgresDriver::connect(url).await?)),
        #[cfg(feature = "redis")]
        Some("redis") => Ok(Arc::new(crate::RedisDriver::connect(url).await?)),
        #[cfg(feature = "rabbitmq")]
        Some("rabbitmq") => Ok(Arc::new(crate::RabbitMqDriver::connect(url).await?)),
        #[cfg(feature = "sqs")]
        Some("sqs") => Ok(Arc::new(crate::SqsDriver::connect(crate::SqsConfig::from_url(url)?).await?)),
        _ if scheme.is_empty() => Err(DriverError::Config("empty database URL".into())),
        _ => Err(DriverError::Config(format!(
            "unsupported URL scheme `{scheme}` in {}; this build supports: {}",
            redact_url(url),
            supported().join(", ")
        ))),
    }
}

/// The backend a URL scheme names in this build (`"sqlite"`, `"redis"`, `"postgres"`,
/// `"mysql"`, `"rabbitmq"`, `"sqs"` or `"memory"`), as [`connect`] picks it; `None` for a
/// scheme of no backend compiled in.
pub fn backend_of_scheme(scheme: &str) -> Option<&'static str> {
    BACKENDS.into_iter().find(|(schemes, _, on)| *on && schemes.contains(&scheme)).map(|(_, name, _)| name)
}

/// Every backend: its URL schemes, its name and whether this build has it.
const BACKENDS: [(&[&str], &str, bool); 7] = [
    (&["memory"], "memory", true),
    (&["sqlite"], "sqlite", cfg!(feature = "sqlite")),
    (&["redis", "rediss", "redis+cluster", "rediss+cluster"], "redis", cfg!(feature = "redis")),
    (&["postgres", "postgresql"], "postgres", cfg!(feature = "postgres")),
    (&["mysql", "mariadb"], "mysql", cfg!(feature = "mysql")),
    (&["amqp", "amqps"], "rabbitmq", cfg!(feature = "rabbitmq")),
    (&["sqs"], "sqs", cfg!(feature = "sqs")),
];

fn supported() -> Vec<String> {
    let shown = |scheme: &str| if scheme == "memory" { format!("{scheme}:") } else { format!("{scheme}://") };
    BACKENDS.into_iter().filter(|(_, _, on)| *on).map(|(schemes, _, _)| shown(schemes[0])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "postgres", feature = "mysql", feature = "redis", feature = "rabbitmq", feature = "sqlite", feature = "sqs"))]
    #[tokio::test]
    async fn unknown_url_options_are_named_before_anything_connects() {
        for url in [
            "postgres://app:topsecret@127.0.0.1:1/db?tabel_prefix=jobs",
            "mysql://root@127.0.0.1:1/db?migrate=false&colour=blue",
            "redis://127.0.0.1:1?prefx=app:",
            "amqp://guest:topsecret@127.0.0.1:1/%2f?prefetchh=8",
            "sqlite://never-created.db?busy=5s",
            "sqs://us-east-1?endpont=http://127.0.0.1:1",
        ] {
            let Err(err) = connect(url).await else { panic!("{url} must be refused") };
            let msg = err.to_string();
            assert!(matches!(err, DriverError::Config(_)), "{url}: a configuration error, found before connecting: {msg}");
            assert!(msg.contains("unknown") && msg.contains("known:"), "{url}: {msg}");
            assert!(!msg.contains("topsecret"), "{msg}");
        }
        assert!(!std::path::Path::new("never-created.db").exists());
    }

    #[cfg(all(feature = "postgres", feature = "rabbitmq", feature = "sqs", feature = "redis", feature = "sqlite"))]
    #[test]
    fn every_config_takes_its_options_from_the_url() {
        use std::time::Duration;
        let pg = crate::PostgresConfig::from_url(
            "postgres://app@h/db?table_prefix=jobs&migrate=false&max_connections=3&request_timeout=2s&sslmode=disable",
        )
        .expect("valid");
        assert_eq!((pg.table_prefix.as_str(), pg.migrate, pg.max_connections), ("jobs", false, 3));
        assert_eq!((pg.request_timeout, pg.url.as_str()), (Duration::from_secs(2), "postgres://app@h/db?sslmode=disable"));
        let r = crate::RedisConfig::from_url("redis://h:6380/2?prefix=app:&response_timeout=1500ms").expect("valid");
        assert_eq!((r.prefix.as_str(), r.response_timeout, r.url.as_str()), ("app:", Duration::from_millis(1500), "redis://h:6380/2"));
        let a = crate::RabbitMqConfig::from_url("amqp://g:p@h/%2f?prefetch=16&heartbeat=10&consumer_timeout=1h").expect("valid");
        assert_eq!(
            (a.prefetch, a.consumer_timeout, a.url.as_str()),
            (Some(16), Duration::from_secs(3600), "amqp://g:p@h/%2f?heartbeat=10")
        );
        let q =
            crate::SqsConfig::from_url("sqs://eu-west-1?endpoint=http://127.0.0.1:4566&queue_prefix=app-&receive_calls=1").expect("valid");
        assert_eq!((q.region.as_deref(), q.endpoint_url.as_deref()), (Some("eu-west-1"), Some("http://127.0.0.1:4566")));
        assert_eq!((q.queue_prefix.as_str(), q.receive_calls), ("app-", 1));
        assert_eq!(crate::SqsConfig::from_url("sqs://").expect("valid").region, None, "the AWS chain's region");
        assert!(crate::SqsConfig::from_url("sqs://key:secret@us-east-1").is_err(), "credentials never come from the URL");
        let l = crate::SqliteConfig::from_url("sqlite://j.db?mode=rwc&busy_timeout=9s").expect("valid");
        assert_eq!((l.busy_timeout, l.url.as_str()), (Duration::from_secs(9), "sqlite://j.db?mode=rwc"));
    }

    #[tokio::test]
    async fn unknown_scheme_is_named_and_the_password_hidden() {
        let Err(err) = connect("nosuch://user:topsecret@127.0.0.1/x").await else { panic!("must be unsupported") };
        let msg = err.to_string();
        assert!(msg.contains("nosuch") && !msg.contains("topsecret"), "{msg}");
    }
}
