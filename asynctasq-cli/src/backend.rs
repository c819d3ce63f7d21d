//! Choosing the backend: the flags users know become one URL, and one
//! [`asynctasq_drivers::connect`] opens it.
//!
//! The URL's scheme picks the backend (`--url`, or the URL of `--database-url`, `--redis-url`,
//! `--rabbitmq-url`, or the SQS flags); `--driver` is needed only to use a backend's default
//! address. Option flags fold into the URL's query (`--table-prefix jobs` →
//! `?table_prefix=jobs`; see each `<Backend>Config::from_url`). Flags that contradict each other
//! (`--driver` against the URL's scheme, two URLs, an option of another backend, a flag and the
//! same option in the URL) are a usage error naming both: nothing is silently ignored.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::Usage;

/// Which backend to use and where it is.
#[derive(Debug, Args)]
pub(crate) struct BackendArgs {
    /// The backend's URL; its scheme picks the backend: sqlite://, redis://, postgres://,
    /// mysql://, amqp://, sqs://REGION?endpoint=… (options in the query, see the README).
    #[arg(long, global = true, env = "ASYNCTASQ_URL", hide_env_values = true)]
    url: Option<String>,
    /// Backend to use when no URL names it [default: sqlite].
    #[arg(long, global = true, value_enum, env = "ASYNCTASQ_DRIVER")]
    driver: Option<DriverKind>,
    /// Database URL (any backend's URL works; its scheme picks the backend) [default for
    /// sqlite: sqlite://asynctasq.db].
    #[arg(
        long,
        global = true,
        env = "ASYNCTASQ_DATABASE_URL",
        hide_env_values = true,
        visible_alias = "postgres-dsn",
        alias = "mysql-dsn"
    )]
    database_url: Option<String>,
    /// Redis URL [default: redis://127.0.0.1:6379].
    #[cfg(feature = "redis")]
    #[arg(long, global = true, env = "ASYNCTASQ_REDIS_URL", hide_env_values = true, hide_short_help = true)]
    redis_url: Option<String>,
    /// Redis password (the seed system's flag; folded into the URL and never shown).
    #[cfg(feature = "redis")]
    #[arg(long, global = true, env = "ASYNCTASQ_REDIS_PASSWORD", hide_env_values = true, hide_short_help = true)]
    redis_password: Option<String>,
    /// Redis database number (the seed system's flag; the URL's path `/N`).
    #[cfg(feature = "redis")]
    #[arg(long, global = true, env = "ASYNCTASQ_REDIS_DB", hide_short_help = true)]
    redis_db: Option<u32>,
    /// Accepted for the seed system's scripts: asynctasq multiplexes every Redis request on one
    /// connection (plus one for blocking waits), so there is no pool to size; a warning says so.
    #[cfg(feature = "redis")]
    #[arg(long, global = true, hide_short_help = true)]
    redis_max_connections: Option<u32>,
    /// Connections in the PostgreSQL pool (the URL's `max_connections`) [default: 8].
    #[cfg(feature = "postgres")]
    #[arg(long, global = true, env = "ASYNCTASQ_POSTGRES_MAX_POOL_SIZE", hide_short_help = true)]
    postgres_max_pool_size: Option<u32>,
    /// PostgreSQL is reached through PgBouncer in transaction pooling mode (the URL's
    /// `pgbouncer=true`): statements run unnamed, each in a transaction, and nothing relies on
    /// the session.
    #[cfg(feature = "postgres")]
    #[arg(long, global = true, env = "ASYNCTASQ_PGBOUNCER", hide_short_help = true)]
    pgbouncer: bool,
    /// With --pgbouncer: a direct PostgreSQL URL (not through the pooler) for LISTEN wake-ups
    /// and migrations (the URL's `listen_url`) [default: none: workers poll, migrations are
    /// refused].
    #[cfg(feature = "postgres")]
    #[arg(long, global = true, env = "ASYNCTASQ_LISTEN_URL", hide_env_values = true, hide_short_help = true, value_name = "URL")]
    listen_url: Option<String>,
    /// Connections in the MySQL pool (the URL's `max_connections`) [default: 8].
    #[cfg(feature = "mysql")]
    #[arg(long, global = true, env = "ASYNCTASQ_MYSQL_MAX_POOL_SIZE", hide_short_help = true)]
    mysql_max_pool_size: Option<u32>,
    /// Deliveries each RabbitMQ consumer may hold, buffered or running (the URL's `prefetch`)
    /// [default: the worker's concurrency; twice that with several queues].
    #[cfg(feature = "rabbitmq")]
    #[arg(long, global = true, env = "ASYNCTASQ_RABBITMQ_PREFETCH", visible_alias = "rabbitmq-prefetch-count", hide_short_help = true)]
    rabbitmq_prefetch: Option<u16>,
    /// Prefix of the table names of the SQL server backends (`<prefix>_tasks`, `<prefix>_dead`)
    /// [default: asynctasq].
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[arg(long, global = true, env = "ASYNCTASQ_TABLE_PREFIX", hide_short_help = true)]
    table_prefix: Option<String>,
    /// Prefix of every Redis key [default: asynctasq:].
    #[cfg(feature = "redis")]
    #[arg(long, global = true, env = "ASYNCTASQ_REDIS_PREFIX", hide_short_help = true)]
    redis_prefix: Option<String>,
    /// AMQP URL [default: amqp://guest:guest@127.0.0.1:5672/%2f].
    #[cfg(feature = "rabbitmq")]
    #[arg(long, global = true, env = "ASYNCTASQ_RABBITMQ_URL", hide_env_values = true, hide_short_help = true)]
    rabbitmq_url: Option<String>,
    /// Prefix of every RabbitMQ queue name (`<prefix>:<queue>`, `<prefix>:<queue>:dead`, ...)
    /// [default: asynctasq].
    #[cfg(feature = "rabbitmq")]
    #[arg(long, global = true, env = "ASYNCTASQ_RABBITMQ_PREFIX", hide_short_help = true)]
    rabbitmq_prefix: Option<String>,
    /// The broker's `consumer_timeout`; no lease outlives it (raise both for longer tasks)
    /// [default: 30m].
    #[cfg(feature = "rabbitmq")]
    #[arg(long, global = true, env = "ASYNCTASQ_RABBITMQ_CONSUMER_TIMEOUT", value_parser = humantime::parse_duration, hide_short_help = true)]
    rabbitmq_consumer_timeout: Option<Duration>,
    /// AMQP heartbeat asked of RabbitMQ; a connection that hears nothing for twice this is
    /// replaced [default: 5s].
    #[cfg(feature = "rabbitmq")]
    #[arg(long, global = true, env = "ASYNCTASQ_RABBITMQ_HEARTBEAT", value_parser = positive_duration, hide_short_help = true)]
    rabbitmq_heartbeat: Option<Duration>,
    /// AWS region for SQS [default: the AWS chain's, e.g. AWS_REGION]. Credentials come from the
    /// AWS chain (environment, profile) and are never logged.
    #[cfg(feature = "sqs")]
    #[arg(long, global = true, env = "ASYNCTASQ_SQS_REGION", hide_short_help = true)]
    sqs_region: Option<String>,
    /// SQS endpoint instead of AWS's, e.g. a local moto server `http://127.0.0.1:4566`.
    #[cfg(feature = "sqs")]
    #[arg(long, global = true, env = "ASYNCTASQ_SQS_ENDPOINT_URL", hide_short_help = true)]
    sqs_endpoint_url: Option<String>,
    /// Address existing queues as `<url prefix><queue prefix><queue>` without looking them up,
    /// and never create queues (e.g. `https://sqs.us-east-1.amazonaws.com/123456789012/`).
    #[cfg(feature = "sqs")]
    #[arg(long, global = true, env = "ASYNCTASQ_SQS_QUEUE_URL_PREFIX", hide_short_help = true)]
    sqs_queue_url_prefix: Option<String>,
    /// Prefix of every SQS queue name (`<prefix><queue>`, `<prefix><queue>-dead`) [default:
    /// asynctasq-].
    #[cfg(feature = "sqs")]
    #[arg(long, global = true, env = "ASYNCTASQ_SQS_QUEUE_PREFIX", hide_short_help = true)]
    sqs_queue_prefix: Option<String>,
    /// Receive calls one fetch makes in parallel (1 for moto, which can hand a message to two
    /// parallel receives) [default: 10].
    #[cfg(feature = "sqs")]
    #[arg(long, global = true, env = "ASYNCTASQ_SQS_RECEIVE_CALLS", hide_short_help = true)]
    sqs_receive_calls: Option<usize>,
    /// Longest one request to a server backend may wait for its answer; one that runs out
    /// treats its connection as dead and the next request opens a new one. A worker whose
    /// connections go silently dead (half-open) works again within about twice this
    /// [default: 5s].
    #[arg(long, global = true, env = "ASYNCTASQ_REQUEST_TIMEOUT", value_parser = positive_duration, hide_short_help = true)]
    request_timeout: Option<Duration>,
}

/// A duration longer than zero (`5s`, `500ms`).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// The backends this build can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DriverKind {
    /// The embedded SQLite database (no server).
    Sqlite,
    /// Redis (6.2 or newer).
    #[cfg(feature = "redis")]
    Redis,
    /// PostgreSQL (12 or newer).
    #[cfg(feature = "postgres")]
    Postgres,
    /// MySQL 8 or MariaDB 10.6 and newer.
    #[cfg(feature = "mysql")]
    Mysql,
    /// RabbitMQ (3.10 or newer).
    #[cfg(feature = "rabbitmq")]
    Rabbitmq,
    /// AWS SQS (or a local moto server).
    #[cfg(feature = "sqs")]
    Sqs,
    /// In-process memory: for code and tests; refused by the commands (nothing would last).
    Memory,
}

impl DriverKind {
    /// The backend a URL scheme names, as `connect` picks it.
    fn of_scheme(scheme: &str) -> Option<Self> {
        let name = asynctasq_drivers::backend_of_scheme(scheme)?;
        <Self as clap::ValueEnum>::value_variants().iter().copied().find(|k| k.name() == name)
    }

    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    /// Whether the backend keeps a schema (and runs migrations).
    fn is_sql(self) -> bool {
        match self {
            Self::Sqlite => true,
            #[cfg(feature = "postgres")]
            Self::Postgres => true,
            #[cfg(feature = "mysql")]
            Self::Mysql => true,
            _ => false,
        }
    }
}

/// The backend and the URL that opens it.
pub(crate) struct Plan {
    /// The backend.
    pub(crate) kind: DriverKind,
    /// The URL as given or defaulted, without the options folded in from flags.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) base: String,
    /// The URL with every option, for [`asynctasq_drivers::connect`].
    pub(crate) url: String,
}

fn usage(message: String) -> anyhow::Error {
    Usage(message).into()
}

fn shown(url: &str) -> String {
    asynctasq_core::envelope::excerpt(&asynctasq_drivers::redact_url(url))
}

/// Percent-encodes a value for a query string.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl BackendArgs {
    /// The one URL the flags name, checked for contradictions. SQL backends skip their
    /// migrations unless `migrate`.
    pub(crate) fn plan(&self, migrate: bool) -> anyhow::Result<Plan> {
        let mut urls: Vec<(&str, String)> = Vec::new();
        if let Some(u) = &self.url {
            urls.push(("--url", u.clone()));
        }
        if let Some(u) = &self.database_url {
            urls.push(("--database-url", u.clone()));
        }
        #[cfg(feature = "redis")]
        if let Some(u) = &self.redis_url {
            urls.push(("--redis-url", u.clone()));
        }
        #[cfg(feature = "rabbitmq")]
        if let Some(u) = &self.rabbitmq_url {
            urls.push(("--rabbitmq-url", u.clone()));
        }
        if let [(a, _), (b, _), ..] = urls.as_slice() {
            return Err(usage(format!("{a} and {b} both say where the backend is; give one")));
        }
        let given = urls.pop();
        let (kind, base) = match (&given, self.driver) {
            (Some((flag, url)), driver) => {
                let scheme = url.split(':').next().unwrap_or_default();
                let Some(kind) = DriverKind::of_scheme(scheme) else {
                    let known = DriverKind::value_variants().iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
                    return Err(usage(format!("{flag} {}: unknown scheme `{scheme}`; this build knows {known}", shown(url))));
                };
                if let Some(d) = driver.filter(|d| *d != kind) {
                    return Err(usage(format!(
                        "--driver {} contradicts {flag} {}, a {} URL; give one of them",
                        d.name(),
                        shown(url),
                        kind.name()
                    )));
                }
                (kind, url.clone())
            }
            (None, driver) => {
                let kind = driver.unwrap_or(DriverKind::Sqlite);
                (kind, self.default_url(kind)?)
            }
        };
        #[cfg(feature = "redis")]
        let base = self.redis_auth(kind, base)?;
        let mut options: Vec<(&str, String, &str)> = Vec::new();
        self.options(kind, migrate, &mut options)?;
        let mut url = base.clone();
        let query = url.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
        for (key, value, flag) in options {
            if query.split('&').any(|p| p.split('=').next() == Some(key)) {
                if flag.is_empty() {
                    continue; // a default the URL overrides
                }
                return Err(usage(format!("{flag} and the URL's `{key}=` both set {key}; give one")));
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{key}={}", encode(&value)));
        }
        Ok(Plan { kind, base, url })
    }

    /// The seed system's `--redis-password` and `--redis-db`, folded into a Redis URL.
    #[cfg(feature = "redis")]
    fn redis_auth(&self, kind: DriverKind, url: String) -> anyhow::Result<String> {
        if self.redis_max_connections.is_some() {
            tracing::warn!("--redis-max-connections has no effect: every Redis request shares one multiplexed connection");
        }
        if self.redis_password.is_none() && self.redis_db.is_none() {
            return Ok(url);
        }
        if kind != DriverKind::Redis {
            let flag = if self.redis_password.is_some() { "--redis-password" } else { "--redis-db" };
            return Err(usage(format!("{flag} applies to Redis, not to the {} backend", kind.name())));
        }
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url.as_str()));
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (userinfo, host) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
        let userinfo = match (&self.redis_password, userinfo) {
            (Some(_), Some(u)) if u.contains(':') => {
                return Err(usage("--redis-password and the URL's password both set the password; give one".into()));
            }
            (Some(pw), u) => Some(format!("{}:{}", u.unwrap_or_default(), encode(pw))),
            (None, u) => u.map(str::to_owned),
        };
        let (db, query) = path.split_once('?').map_or((path, None), |(d, q)| (d, Some(q)));
        let db = match (self.redis_db, db) {
            (Some(_), d) if !d.is_empty() => return Err(usage("--redis-db and the URL's /DB both set the database; give one".into())),
            (Some(n), _) => n.to_string(),
            (None, d) => d.to_owned(),
        };
        let mut out = format!("{scheme}://");
        if let Some(u) = userinfo {
            out.push_str(&u);
            out.push('@');
        }
        out.push_str(host);
        if !db.is_empty() {
            out.push('/');
            out.push_str(&db);
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Ok(out)
    }

    /// Where a backend is when no URL is given.
    fn default_url(&self, kind: DriverKind) -> anyhow::Result<String> {
        Ok(match kind {
            DriverKind::Sqlite => "sqlite://asynctasq.db".to_owned(),
            #[cfg(feature = "redis")]
            DriverKind::Redis => "redis://127.0.0.1:6379".to_owned(),
            #[cfg(feature = "postgres")]
            DriverKind::Postgres => return Err(usage("--driver postgres needs --database-url (or --url, ASYNCTASQ_DATABASE_URL)".into())),
            #[cfg(feature = "mysql")]
            DriverKind::Mysql => return Err(usage("--driver mysql needs --database-url (or --url, ASYNCTASQ_DATABASE_URL)".into())),
            #[cfg(feature = "rabbitmq")]
            DriverKind::Rabbitmq => "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            #[cfg(feature = "sqs")]
            DriverKind::Sqs => format!("sqs://{}", self.sqs_region.as_deref().unwrap_or_default()),
            DriverKind::Memory => "memory:".to_owned(),
        })
    }

    /// The options the flags set for `kind`, as `(query key, value, flag)`; a flag of another
    /// backend is a usage error. An empty flag marks a default the URL may override.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql", feature = "redis", feature = "rabbitmq", feature = "sqs")),
        allow(unused_variables)
    )]
    fn options(&self, kind: DriverKind, migrate: bool, out: &mut Vec<(&'static str, String, &'static str)>) -> anyhow::Result<()> {
        let foreign = |flag: &str, wants: &str| usage(format!("{flag} applies to {wants}, not to the {} backend", kind.name()));
        let sql = kind.is_sql();
        if sql && !migrate {
            out.push(("migrate", "false".into(), ""));
        }
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        if let Some(p) = &self.table_prefix {
            if !kind.is_sql() || kind == DriverKind::Sqlite {
                return Err(foreign("--table-prefix", "PostgreSQL and MySQL"));
            }
            out.push(("table_prefix", p.clone(), "--table-prefix"));
        }
        #[cfg(feature = "redis")]
        if let Some(p) = &self.redis_prefix {
            if kind != DriverKind::Redis {
                return Err(foreign("--redis-prefix", "Redis"));
            }
            out.push(("prefix", p.clone(), "--redis-prefix"));
        }
        #[cfg(feature = "postgres")]
        if let Some(n) = self.postgres_max_pool_size {
            if kind != DriverKind::Postgres {
                return Err(foreign("--postgres-max-pool-size", "PostgreSQL"));
            }
            out.push(("max_connections", n.to_string(), "--postgres-max-pool-size"));
        }
        #[cfg(feature = "postgres")]
        if self.pgbouncer {
            if kind != DriverKind::Postgres {
                return Err(foreign("--pgbouncer", "PostgreSQL"));
            }
            out.push(("pgbouncer", "true".into(), "--pgbouncer"));
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.listen_url {
            if kind != DriverKind::Postgres {
                return Err(foreign("--listen-url", "PostgreSQL"));
            }
            out.push(("listen_url", url.clone(), "--listen-url"));
        }
        #[cfg(feature = "mysql")]
        if let Some(n) = self.mysql_max_pool_size {
            if kind != DriverKind::Mysql {
                return Err(foreign("--mysql-max-pool-size", "MySQL"));
            }
            out.push(("max_connections", n.to_string(), "--mysql-max-pool-size"));
        }
        #[cfg(feature = "rabbitmq")]
        {
            let is = kind == DriverKind::Rabbitmq;
            for (flag, key, value) in [
                ("--rabbitmq-prefetch", "prefetch", self.rabbitmq_prefetch.map(|n| n.to_string())),
                ("--rabbitmq-prefix", "prefix", self.rabbitmq_prefix.clone()),
                ("--rabbitmq-consumer-timeout", "consumer_timeout", self.rabbitmq_consumer_timeout.map(millis)),
                ("--rabbitmq-heartbeat", "heartbeat", self.rabbitmq_heartbeat.map(|d| d.as_secs().max(1).to_string())),
            ] {
                if let Some(v) = value {
                    if !is {
                        return Err(foreign(flag, "RabbitMQ"));
                    }
                    out.push((key, v, flag));
                }
            }
        }
        #[cfg(feature = "sqs")]
        {
            let is = kind == DriverKind::Sqs;
            if self.sqs_region.is_some() && !is {
                return Err(foreign("--sqs-region", "SQS"));
            }
            for (flag, key, value) in [
                ("--sqs-endpoint-url", "endpoint", self.sqs_endpoint_url.clone()),
                ("--sqs-queue-url-prefix", "queue_url_prefix", self.sqs_queue_url_prefix.clone()),
                ("--sqs-queue-prefix", "queue_prefix", self.sqs_queue_prefix.clone()),
                ("--sqs-receive-calls", "receive_calls", self.sqs_receive_calls.map(|n| n.to_string())),
            ] {
                if let Some(v) = value {
                    if !is {
                        return Err(foreign(flag, "SQS"));
                    }
                    out.push((key, v, flag));
                }
            }
        }
        if !matches!(kind, DriverKind::Sqlite | DriverKind::Memory)
            && let Some(d) = self.request_timeout
        {
            out.push(("request_timeout", millis(d), "--request-timeout"));
        }
        Ok(())
    }

    /// The backend's URL with its password hidden, for the worker's `/worker` page.
    pub(crate) fn shown_url(&self) -> Option<String> {
        self.plan(false).ok().map(|plan| asynctasq_drivers::redact_url(&plan.url))
    }

    /// The Redis URL of the backend, for the event publisher.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_base(&self) -> anyhow::Result<Option<String>> {
        let plan = self.plan(false)?;
        Ok((plan.kind == DriverKind::Redis).then(|| plan.base.split('?').next().unwrap_or_default().to_owned()))
    }
}

/// Connects to the backend the flags name; SQL backends apply pending migrations if `migrate`.
pub(crate) async fn connect(backend: &BackendArgs, migrate: bool) -> anyhow::Result<std::sync::Arc<dyn asynctasq_core::Driver>> {
    let plan = backend.plan(migrate)?;
    if plan.kind == DriverKind::Memory {
        return Err(usage(
            "--driver memory keeps tasks inside one process and loses them when it exits, so a command on it does nothing \
             that lasts; use MemoryDriver from code (tests), or the embedded default --driver sqlite"
                .into(),
        ));
    }
    #[cfg(feature = "sqs")]
    if plan.kind == DriverKind::Sqs {
        let at = backend.sqs_endpoint_url.as_deref().map(asynctasq_drivers::redact_url).unwrap_or_else(|| "AWS".into());
        return anyhow::Context::with_context(asynctasq_drivers::connect(&plan.url).await, || format!("cannot connect to SQS at {at}"));
    }
    Ok(asynctasq_drivers::connect(&plan.url).await?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        backend: BackendArgs,
    }

    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        Flags::try_parse_from(std::iter::once("x").chain(args.iter().copied())).expect("flags parse").backend.plan(true)
    }

    #[test]
    fn the_url_scheme_picks_the_backend_and_flags_fold_into_the_url() {
        let p =
            plan(&["--database-url", "postgres://app@127.0.0.1/app", "--table-prefix", "jobs", "--request-timeout", "2s"]).expect("valid");
        assert_eq!(p.kind, DriverKind::Postgres);
        assert_eq!(p.url, "postgres://app@127.0.0.1/app?table_prefix=jobs&request_timeout=2000ms");
        let p = plan(&["--driver", "redis", "--database-url", "redis://127.0.0.1:6380"]).expect("valid");
        assert_eq!((p.kind, p.url.as_str()), (DriverKind::Redis, "redis://127.0.0.1:6380"), "the URL is used, not ignored");
        let p = plan(&["--driver", "sqs", "--sqs-region", "us-east-1", "--sqs-endpoint-url", "http://127.0.0.1:4566"]).expect("valid");
        assert_eq!(p.url, "sqs://us-east-1?endpoint=http%3A%2F%2F127.0.0.1%3A4566");
        assert_eq!(plan(&[]).expect("valid").url, "sqlite://asynctasq.db", "the embedded default");
    }

    #[test]
    fn the_seed_systems_flags_fold_into_the_url() {
        let p = plan(&["--driver", "redis", "--redis-password", "s3cret/x", "--redis-db", "2"]).expect("valid");
        assert_eq!(p.url, "redis://:s3cret%2Fx@127.0.0.1:6379/2");
        let p = plan(&["--postgres-dsn", "postgres://app@h/db", "--postgres-max-pool-size", "20"]).expect("valid");
        assert_eq!(p.url, "postgres://app@h/db?max_connections=20");
        let p = plan(&["--url", "amqp://g:p@h/%2f", "--rabbitmq-prefetch-count", "4"]).expect("valid");
        assert_eq!(p.url, "amqp://g:p@h/%2f?prefetch=4");
        assert!(plan(&["--url", "redis://:a@h", "--redis-password", "b"]).err().expect("two passwords").is::<Usage>());
        assert!(plan(&["--url", "postgres://h/db", "--redis-db", "1"]).err().expect("a Redis flag").is::<Usage>());
    }

    #[test]
    fn contradicting_flags_are_usage_errors_naming_both() {
        for (args, names) in [
            (vec!["--driver", "postgres", "--url", "redis://127.0.0.1"], ["--driver postgres", "--url"]),
            (vec!["--url", "redis://127.0.0.1", "--redis-url", "redis://127.0.0.2"], ["--url", "--redis-url"]),
            (vec!["--database-url", "postgres://h/db", "--redis-prefix", "x:"], ["--redis-prefix", "postgres"]),
            (vec!["--url", "postgres://h/db?table_prefix=a", "--table-prefix", "b"], ["--table-prefix", "table_prefix="]),
        ] {
            let err = plan(&args).err().unwrap_or_else(|| panic!("{args:?} must be refused"));
            assert!(err.is::<Usage>(), "{args:?}: a usage error");
            let msg = err.to_string();
            assert!(names.iter().all(|n| msg.contains(n)), "{args:?}: {msg}");
        }
    }
}
