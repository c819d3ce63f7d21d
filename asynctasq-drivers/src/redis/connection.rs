//! Connections to Redis that a silent network fault cannot wedge.
//!
//! # Why not `redis::aio::ConnectionManager`
//! The crate's manager reconnects when a request fails with a dropped connection, but a request
//! that *times out* leaves it on the same connection. A connection that went half-open (a NAT
//! or load-balancer entry dropped, a frozen peer: no FIN, no RST) never reports itself dropped,
//! so every later request times out on it too, forever: a worker that is alive and does
//! nothing. Here a request that fails with a timeout or an I/O error discards the connection it
//! ran on, and the next request opens a new one.
//!
//! # Deadlines
//! Every request is bounded twice: by the connection's response timeout
//! ([`RedisConfig::response_timeout`](super::RedisConfig::response_timeout)), and by a
//! client-side deadline slightly longer, so even a request the crate itself never times out
//! ends. The blocking wait (`BLPOP`) has a connection of its own without a response timeout,
//! since it waits on the server by design; it gets a server-side timeout (the wait) and a
//! client-side deadline of the wait plus the response timeout.
//!
//! TCP keepalive (probes after 5 s idle, every 2 s) and `TCP_USER_TIMEOUT` (10 s) are set on
//! every socket as a second line of defence: they end connections whose packets vanish, which
//! the deadlines above would otherwise find only at the next request.
//!
//! # One server or a cluster
//! A [`Target`] is either; the connection above is then the crate's multiplexed connection or
//! its cluster connection (one multiplexed connection per node, following `MOVED` and
//! failovers), with the same deadlines and the same replacement. What a cluster needs besides
//! is in `cluster.rs`.
//!
//! # Waiting for replicas
//! Redis replicates asynchronously: a master that fails right after a write can lose it, and a
//! replica promoted in its place never had it. With [`Replicas`] set, every script call (each
//! state change is one) is followed by `WAIT n timeout` on the same connection to the same
//! node, so the call returns once `n` replicas hold its writes. A `WAIT` that times out with
//! fewer is logged, not failed: the write did happen on the master.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
use ::redis::{AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value};
use asynctasq_core::DriverError;

use super::cluster;

use crate::sync::lock;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The client-side deadline's margin over the response timeout.
const MARGIN: Duration = Duration::from_millis(500);

fn tcp() -> TcpSettings {
    let keepalive = TcpKeepalive::new().with_time(Duration::from_secs(5)).with_interval(Duration::from_secs(2)).with_retries(3);
    let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let tcp = tcp.set_user_timeout(Duration::from_secs(10));
    tcp
}

/// A client whose sockets carry TCP keepalive and a user timeout.
pub(super) fn client(url: &str) -> Result<Client, RedisError> {
    Client::open(url.into_connection_info()?.set_tcp_settings(tcp()))
}

/// Where requests go: one server, or a Redis Cluster.
#[derive(Clone)]
pub(super) enum Target {
    /// One server.
    Single(Client),
    /// A cluster: a client for requests (with the response timeout), one for blocking waits
    /// (without), and a client per node the URL names (for subscriptions).
    Cluster(Box<Cluster>),
}

/// What a [`Target::Cluster`] holds.
#[derive(Clone)]
pub(super) struct Cluster {
    requests: ClusterClient,
    blocking: ClusterClient,
    nodes: Vec<Client>,
}

impl Target {
    /// The target `url` names (`redis+cluster://` for a cluster; see `cluster::nodes`).
    pub(super) fn from_url(url: &str, response_timeout: Duration) -> Result<Self, String> {
        let Some(nodes) = cluster::nodes(url) else { return client(url).map(Self::Single).map_err(|e| e.to_string()) };
        let nodes = nodes?;
        let builder = |timeout: Option<Duration>| {
            let builder = ClusterClientBuilder::new(nodes.clone()).tcp_settings(tcp()).connection_timeout(CONNECT_TIMEOUT);
            match timeout {
                Some(t) => builder.response_timeout(t),
                None => builder.overall_response_timeout(None),
            }
            .build()
            .map_err(|e| e.to_string())
        };
        Ok(Self::Cluster(Box::new(Cluster {
            requests: builder(Some(response_timeout))?,
            blocking: builder(None)?,
            nodes: nodes.iter().map(|n| client(n)).collect::<Result<_, _>>().map_err(|e| e.to_string())?,
        })))
    }

    /// The client of the server, or of the first node the URL names.
    pub(super) fn client(&self) -> &Client {
        match self {
            Self::Single(client) => client,
            Self::Cluster(cluster) => &cluster.nodes[0],
        }
    }

    /// The server's clients to subscribe through: the one server, or each node in turn.
    pub(super) fn subscribers(&self) -> Vec<Client> {
        match self {
            Self::Single(client) => vec![client.clone()],
            Self::Cluster(cluster) => cluster.nodes.clone(),
        }
    }

    /// Where it is, for errors.
    fn shown(&self) -> String {
        let at = |client: &Client| match client.get_connection_info().addr() {
            ::redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            addr => addr.to_string(),
        };
        match self {
            Self::Single(client) => format!("Redis at {}", at(client)),
            Self::Cluster(cluster) => format!("the Redis Cluster at {}", cluster.nodes.iter().map(at).collect::<Vec<_>>().join(",")),
        }
    }
}

/// How many replicas each state change waits for, and for how long at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Replicas {
    /// Replicas that must hold a write (`WAIT`'s first argument).
    pub(super) count: u32,
    /// The longest a write waits for them.
    pub(super) timeout: Duration,
}

/// A live connection to the target.
#[derive(Clone)]
enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => Box::pin(cluster::split(c, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

impl Link {
    /// `WAIT` on the connection (to the node of each of `routes`, on a cluster) that ran the
    /// script calls among `cmds`; nothing if there were none.
    async fn wait_replicas<'a>(&mut self, replicas: Replicas, cmds: impl Iterator<Item = &'a Cmd>) -> Result<(), RedisError> {
        let mut routes: Vec<Option<::redis::cluster_routing::Route>> = Vec::new();
        for route in cmds.filter_map(cluster::script_route) {
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        if routes.is_empty() {
            return Ok(());
        }
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(replicas.count).arg(asynctasq_core::envelope::millis(replicas.timeout).max(1));
        let acked: Vec<i64> = match self {
            Self::Single(c) => vec![wait.query_async(c).await?],
            Self::Cluster(c) => {
                use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                let mut acked = Vec::with_capacity(routes.len());
                for route in routes.into_iter().flatten() {
                    let value = c.route_command(wait.clone(), RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route))).await?;
                    acked.push(::redis::from_redis_value(value)?);
                }
                acked
            }
        };
        if let Some(fewest) = acked.into_iter().min().filter(|n| *n < i64::from(replicas.count)) {
            tracing::warn!(replicas = fewest, wanted = replicas.count, timeout = ?replicas.timeout, "a Redis write reached fewer replicas than asked within its wait");
        }
        Ok(())
    }
}

fn is_dead(e: &RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error()
}

/// One multiplexed connection for every request but the blocking wait, replaced when a request
/// on it times out or fails with an I/O error.
pub(super) struct Connections {
    target: Target,
    response_timeout: Duration,
    /// The live connection and its generation.
    current: Mutex<Option<(u64, Link)>>,
    /// Serialises connecting, so a burst of requests after a fault opens one connection.
    connecting: tokio::sync::Mutex<u64>,
    /// The connection for `BLPOP`, which would stall everything multiplexed with it.
    blocking: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// The blocking waits on a cluster (a connection per wake list).
    waits: Option<cluster::Waits>,
    /// What each script call waits for after it ran.
    replicas: Option<Replicas>,
}

impl Connections {
    /// Connects once, so a wrong address fails at startup.
    pub(super) async fn open(target: Target, response_timeout: Duration, replicas: Option<Replicas>) -> Result<Self, DriverError> {
        let at = target.shown();
        let waits = match &target {
            Target::Cluster(c) => Some(cluster::Waits::new(c.blocking.clone(), response_timeout)),
            Target::Single(_) => None,
        };
        let this = Self {
            target,
            response_timeout,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(0),
            blocking: tokio::sync::Mutex::new(None),
            waits,
            replicas,
        };
        this.connection().await.map_err(|e| match map_err("connect", e) {
            DriverError::Unavailable { source, .. } => DriverError::Unavailable { message: format!("cannot connect to {at}"), source },
            DriverError::Backend { source, .. } => DriverError::Backend { message: format!("cannot connect to {at}"), source },
            other => other,
        })?;
        Ok(this)
    }

    /// The live connection, opening one if there is none.
    async fn connection(&self) -> Result<(u64, Link), RedisError> {
        if let Some((generation, conn)) = lock(&self.current).as_ref() {
            return Ok((*generation, conn.clone()));
        }
        let mut generation = self.connecting.lock().await;
        if let Some((g, conn)) = lock(&self.current).as_ref() {
            return Ok((*g, conn.clone()));
        }
        let conn = match &self.target {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(self.response_timeout));
                Link::Single(client.get_multiplexed_async_connection_with_config(&config).await?)
            }
            Target::Cluster(c) => Link::Cluster(c.requests.get_async_connection().await?),
        };
        *generation += 1;
        if *generation > 1 {
            tracing::info!(generation = *generation, "opened a new Redis connection in place of a failed one");
        }
        *lock(&self.current) = Some((*generation, conn.clone()));
        Ok((*generation, conn))
    }

    /// Forgets connection `generation` (if it is still the current one): it failed.
    fn discard(&self, generation: u64) {
        let mut current = lock(&self.current);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(generation, "Redis connection failed; the next request opens a new one");
            *current = None;
        }
    }

    /// Runs one request on the live connection, within the deadline; a timeout or I/O failure
    /// discards the connection.
    async fn request<T, F, Fut>(&self, request: F) -> Result<T, RedisError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let (generation, conn) = self.connection().await?;
        match tokio::time::timeout(self.response_timeout + MARGIN, request(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if is_dead(&e) {
                    self.discard(generation);
                }
                Err(e)
            }
            Err(_) => {
                self.discard(generation);
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {:?}", self.response_timeout + MARGIN))
                    .into())
            }
        }
    }

    /// `BLPOP keys` for at most `wait` (server side), bounded by `wait` plus the response
    /// timeout (client side), on the blocking connection.
    pub(super) async fn blpop(&self, keys: &[String], wait: Duration) -> Result<(), DriverError> {
        if let Some(waits) = &self.waits {
            return waits.blpop(keys, wait).await;
        }
        let mut slot = self.blocking.lock().await;
        if slot.is_none() {
            let config = AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT)).set_response_timeout(None);
            let conn = self.target.client().get_multiplexed_async_connection_with_config(&config).await.map_err(|e| map_err("wait", e))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        // BLPOP takes seconds with millisecond precision; 0 would mean "forever".
        let secs = (asynctasq_core::envelope::millis(wait).max(1) as f64) / 1000.0;
        let deadline = wait + self.response_timeout;
        let mut blpop = ::redis::cmd("BLPOP");
        blpop.arg(keys).arg(secs);
        match tokio::time::timeout(deadline, blpop.query_async::<Option<(String, String)>>(conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                *slot = None;
                Err(map_err("wait", e))
            }
            Err(_) => {
                *slot = None;
                tracing::warn!(?deadline, "Redis blocking wait got no answer; the next wait opens a new connection");
                Err(DriverError::timed_out("redis: wait", deadline))
            }
        }
    }
}

/// A handle on the shared [`Connections`], usable wherever the `redis` crate takes a
/// connection (commands, pipelines, scripts): each request gets the deadline and the
/// replacement of a failed connection.
#[derive(Clone)]
pub(super) struct Conn(pub(super) Arc<Connections>);

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let replicas = self.0.replicas;
        Box::pin(self.0.request(move |mut c| async move {
            let value = c.req_packed_command(cmd).await?;
            if let Some(replicas) = replicas {
                c.wait_replicas(replicas, std::iter::once(cmd)).await?;
            }
            Ok(value)
        }))
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        let replicas = self.0.replicas;
        Box::pin(self.0.request(move |mut c| async move {
            let values = c.req_packed_commands(pipeline, offset, count).await?;
            if let Some(replicas) = replicas {
                c.wait_replicas(replicas, pipeline.cmd_iter()).await?;
            }
            Ok(values)
        }))
    }

    fn get_db(&self) -> i64 {
        match &self.0.target {
            Target::Single(client) => client.get_connection_info().redis_settings().db(),
            Target::Cluster(_) => 0,
        }
    }
}

/// Maps a Redis error: a lost, refused or timed-out connection is [`DriverError::Unavailable`]
/// (retried by the engine); anything else the server said is [`DriverError::Backend`].
pub(crate) fn map_err(doing: &str, e: ::redis::RedisError) -> DriverError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() || e.is_unrecoverable_error() {
        DriverError::unavailable(format!("redis: {doing}"), e)
    } else {
        DriverError::backend(format!("redis: {doing}"), e)
    }
}
