//! Choosing a backend at run time from a URL.

use std::sync::Arc;

use asynctasq_core::{Driver, DriverError, MemoryDriver};

/// Connects to the backend the URL's scheme names: `sqlite:`, `redis:`, `postgres:`, `mysql:`, `amqp:` or `memory:`. Errors name the
/// problem and never include the URL's password.
pub async fn connect(url: &str) -> Result<Arc<dyn Driver>, DriverError> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "memory" => Ok(Arc::new(MemoryDriver::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(crate::SqliteDriver::connect(url).await?)),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Ok(Arc::new(crate::MySqlDriver::connect(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(crate::PostgresDriver::connect(url).await?)),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(Arc::new(crate::RedisDriver::connect(url).await?)),
        #[cfg(feature = "rabbitmq")]
        "amqp" | "amqps" => Ok(Arc::new(crate::RabbitMqDriver::connect(url).await?)),
        "" => Err(DriverError::Config("empty database URL".into())),
        other => Err(DriverError::Config(format!(
            "unsupported URL scheme `{other}` in {}; this build supports: {}",
            redact_url(url),
            supported().join(", ")
        ))),
    }
}

fn supported() -> Vec<&'static str> {
    let mut v = vec!["memory:"];
    if cfg!(feature = "sqlite") {
        v.push("sqlite://");
    }
    if cfg!(feature = "redis") {
        v.push("redis://");
    }
    if cfg!(feature = "postgres") {
        v.push("postgres://");
    }
    if cfg!(feature = "mysql") {
        v.push("mysql://");
    }
    if cfg!(feature = "rabbitmq") {
        v.push("amqp://");
    }
    v
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') { format!("{scheme}://{user}:***@{host}{tail}") } else { format!("{scheme}://{user}@{host}{tail}") }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_never_show_passwords() {
        assert_eq!(redact_url("postgres://u:s3cret@127.0.0.1:5432/db"), "postgres://u:***@127.0.0.1:5432/db");
        assert_eq!(redact_url("redis://:pw@127.0.0.1/0?x=1"), "redis://:***@127.0.0.1/0?x=1");
        assert_eq!(redact_url("amqp://guest@h/%2f"), "amqp://guest@h/%2f");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert!(!redact_url("mysql://root:p@ss:w@rd@127.0.0.1/t").contains("ss:w"));
    }

    #[tokio::test]
    async fn unknown_scheme_is_named_and_the_password_hidden() {
        let Err(err) = connect("nosuch://user:topsecret@127.0.0.1/x").await else { panic!("must be unsupported") };
        let msg = err.to_string();
        assert!(msg.contains("nosuch") && !msg.contains("topsecret"), "{msg}");
    }
}
