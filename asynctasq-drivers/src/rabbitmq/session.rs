//! The connection and its lifecycle: one [`Session`] (a connection with its publishing and
//! admin channels) at a time, replaced when it closes or a call times out on it, with backoff
//! between failed connects.
//!
//! Each session has a generation. Consumers and leases remember the generation they were made
//! on, so when a session is replaced the driver can drop exactly what the broker requeued.
//!
//! # A cluster's nodes
//! A URL may name several nodes of one cluster, `amqp://user:pw@h1:5672,h2:5672,h3:5672/vhost`
//! (same credentials, vhost and options). A new session connects to the node the last one was
//! on, else to the next that answers, in turn: when a node stops, the driver's next session is
//! on a surviving node, where the quorum work queues' replicas elect a new leader and go on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asynctasq_core::DriverError;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};

use super::error::lapin_err;
use super::message::Meta;
use super::publish::{confirmed, send};
use super::topology::{self, Names};
use crate::sync::lock;
use asynctasq_core::redact_url;

/// A connection with its channels.
pub(super) struct Session {
    pub(super) generation: u64,
    pub(super) conn: Connection,
    prefix: String,
    /// Publishes, in confirm mode.
    pub(super) publisher: Channel,
    /// Declares, purges and counts; reopened if the broker closes it.
    admin: tokio::sync::Mutex<Channel>,
    /// Task queues whose work and dead queues were declared on this connection.
    pub(super) declared: Mutex<HashSet<String>>,
    /// Delay bucket queues declared on this connection.
    pub(super) buckets: Mutex<HashSet<String>>,
    /// The URL names several nodes: the registry and dead-letter queues are quorum queues.
    pub(super) replicated: bool,
}

impl Session {
    /// Whether the connection and its publishing channel are open, as far as lapin knows.
    pub(super) fn is_live(&self) -> bool {
        self.conn.status().connected() && self.publisher.status().connected()
    }

    /// The admin channel, reopened if the broker closed it.
    pub(super) async fn admin(&self) -> Result<Channel, DriverError> {
        let mut admin = self.admin.lock().await;
        if !admin.status().connected() {
            *admin = self.channel().await?;
        }
        Ok(admin.clone())
    }

    /// A new channel of this connection.
    pub(super) async fn channel(&self) -> Result<Channel, DriverError> {
        self.conn.create_channel().await.map_err(|e| lapin_err("opening a channel", e))
    }

    /// The registry queue was deleted: declare everything again before the next use.
    pub(super) fn registry_gone(&self) {
        lock(&self.declared).clear();
    }

    /// Publishes one message and waits for the broker's confirm.
    pub(super) async fn publish_on(&self, routing_key: &str, body: &[u8], meta: &Meta) -> Result<(), DriverError> {
        confirmed(send(&self.publisher, routing_key, body, meta).await?, routing_key).await
    }

    /// The names of `queue`'s queues, declared once per connection and added to the registry.
    pub(super) async fn ensure_topology(&self, queue: &str) -> Result<Names, DriverError> {
        let names = Names::new(&self.prefix, queue);
        if lock(&self.declared).contains(queue) {
            return Ok(names);
        }
        let admin = self.admin().await?;
        topology::declare_base(&admin, &names, self.replicated).await?;
        topology::declare_registry(&admin, &self.prefix, self.replicated).await?;
        self.publish_on(&topology::registry(&self.prefix), queue.as_bytes(), &Meta::default()).await?;
        lock(&self.declared).insert(queue.to_owned());
        Ok(names)
    }
}

#[derive(Default)]
struct Reconnect {
    failures: u32,
    next_try: Option<Instant>,
}

/// The URLs of each node `url` names (itself, for one node).
pub(super) fn nodes(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_owned()] };
    let (authority, tail) = rest.find(['/', '?']).map_or((rest, ""), |i| rest.split_at(i));
    let (userinfo, hosts) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
    let at = if userinfo.is_empty() { String::new() } else { format!("{userinfo}@") };
    hosts.split(',').filter(|h| !h.is_empty()).map(|host| format!("{scheme}://{at}{host}{tail}")).collect()
}

/// The current session, and what it takes to open the next one.
pub(super) struct Sessions {
    /// The URL as given (for messages), and one per node it names.
    url: String,
    nodes: Vec<String>,
    /// The node the last session connected to.
    node: std::sync::atomic::AtomicUsize,
    prefix: String,
    heartbeat: Duration,
    reconnect_max: Duration,
    current: tokio::sync::Mutex<Option<Arc<Session>>>,
    generation: AtomicU64,
    /// The generation of a connection a call timed out on (0: none): dead, though lapin may
    /// not know it yet.
    poisoned: AtomicU64,
    reconnect: Mutex<Reconnect>,
}

impl Sessions {
    /// No session yet: the first [`get`](Self::get) connects.
    pub(super) fn new(url: &str, prefix: &str, heartbeat: Duration, reconnect_max: Duration) -> Self {
        Self {
            url: url.to_owned(),
            nodes: nodes(url),
            node: std::sync::atomic::AtomicUsize::new(0),
            prefix: prefix.to_owned(),
            heartbeat,
            reconnect_max,
            current: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            poisoned: AtomicU64::new(0),
            reconnect: Mutex::default(),
        }
    }

    /// The generation of the latest session (0 before the first).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Marks session `generation` dead; true the first time.
    pub(super) fn poison(&self, generation: u64) -> bool {
        generation != 0 && self.poisoned.swap(generation, Ordering::Relaxed) != generation
    }

    /// Whether session `generation` is usable: not marked dead by a timed-out call.
    pub(super) fn usable(&self, generation: u64) -> bool {
        self.poisoned.load(Ordering::Relaxed) != generation
    }

    /// The live session, reconnecting (with backoff between failures) if it is gone;
    /// `replaced` hears the generation of a session given up, whose deliveries the broker
    /// requeues.
    pub(super) async fn get(&self, replaced: impl FnOnce(u64)) -> Result<Arc<Session>, DriverError> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref().filter(|s| s.is_live() && self.usable(s.generation)) {
            return Ok(s.clone());
        }
        if let Some(old) = current.take() {
            tracing::warn!(url = %redact_url(&self.url), "RabbitMQ connection lost; reconnecting");
            replaced(old.generation);
            // Closing tells the broker at once to requeue what it delivered on the old
            // connection; on a half-open one the close gets no answer, and the heartbeat ends it.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), old.conn.close(200, "asynctasq: replaced".into())).await;
            });
        }
        if let Some(at) = lock(&self.reconnect).next_try
            && Instant::now() < at
        {
            return Err(DriverError::Unavailable {
                message: format!("RabbitMQ at {} is unreachable; retrying shortly", redact_url(&self.url)),
                source: None,
            });
        }
        match self.open().await {
            Ok(s) => {
                *lock(&self.reconnect) = Reconnect::default();
                let s = Arc::new(s);
                *current = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                let mut r = lock(&self.reconnect);
                r.failures += 1;
                let wait = (Duration::from_millis(100) * 2u32.saturating_pow(r.failures.min(10) - 1)).min(self.reconnect_max);
                r.next_try = Some(Instant::now() + wait);
                Err(e)
            }
        }
    }

    /// A session on the node the last one was on, else on the next node that answers.
    async fn open(&self) -> Result<Session, DriverError> {
        let first = self.node.load(Ordering::Relaxed);
        let mut failed = None;
        for i in 0..self.nodes.len() {
            let at = (first + i) % self.nodes.len();
            match self.open_on(&self.nodes[at]).await {
                Ok(session) => {
                    self.node.store(at, Ordering::Relaxed);
                    return Ok(session);
                }
                Err(e @ DriverError::Config(_)) => return Err(e),
                Err(e) => {
                    if self.nodes.len() > 1 {
                        tracing::warn!(node = %redact_url(&self.nodes[at]), error = %e, "RabbitMQ node unreachable; trying the next");
                    }
                    failed = Some(e);
                }
            }
        }
        Err(failed.unwrap_or_else(|| DriverError::Config(format!("RabbitMQ URL {} names no node", redact_url(&self.url)))))
    }

    async fn open_on(&self, url: &str) -> Result<Session, DriverError> {
        let props = ConnectionProperties::default().with_connection_name("asynctasq".into());
        let unreachable = |e| DriverError::unavailable(format!("cannot connect to RabbitMQ at {}", redact_url(url)), e);
        let mut uri: lapin::uri::AMQPUri =
            url.parse().map_err(|reason| DriverError::Config(format!("invalid RabbitMQ URL {}: {reason}", redact_url(url))))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(u16::try_from(self.heartbeat.as_secs().max(1)).unwrap_or(u16::MAX));
        }
        // With several nodes, a node that does not answer must leave time for the next.
        let within = if self.nodes.len() > 1 { Duration::from_secs(3) } else { Duration::from_secs(10) };
        let conn = tokio::time::timeout(within, Connection::connect_uri(uri, props))
            .await
            .map_err(|_| DriverError::Unavailable {
                message: format!("connecting to RabbitMQ at {} timed out", redact_url(url)),
                source: None,
            })?
            .map_err(unreachable)?;
        let publisher = conn.create_channel().await.map_err(|e| lapin_err("opening a channel", e))?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| lapin_err("enabling publisher confirms", e))?;
        let admin = conn.create_channel().await.map_err(|e| lapin_err("opening a channel", e))?;
        topology::declare_registry(&admin, &self.prefix, self.nodes.len() > 1).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(url = %redact_url(url), generation, "connected to RabbitMQ");
        Ok(Session {
            generation,
            conn,
            prefix: self.prefix.clone(),
            publisher,
            admin: tokio::sync::Mutex::new(admin),
            declared: Mutex::default(),
            buckets: Mutex::default(),
            replicated: self.nodes.len() > 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::nodes;

    #[test]
    fn a_url_of_several_nodes_gives_each_the_credentials_vhost_and_options() {
        assert_eq!(nodes("amqp://g:p@h:5672/%2f"), vec!["amqp://g:p@h:5672/%2f"]);
        assert_eq!(
            nodes("amqp://g:p@h1:5672,h2:5673/v?heartbeat=5"),
            vec!["amqp://g:p@h1:5672/v?heartbeat=5", "amqp://g:p@h2:5673/v?heartbeat=5"]
        );
        assert_eq!(nodes("amqps://h1,h2"), vec!["amqps://h1", "amqps://h2"]);
    }
}
