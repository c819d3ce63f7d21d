//! Redis Cluster: the URL that names one, requests that span hash slots, and the blocking wait
//! across nodes.
//!
//! # What changes on a cluster
//! Nothing in the key layout: every key of a queue carries the queue in a hash tag, so each
//! script's keys share one slot and run on the node that owns it, and queues spread over the
//! cluster's slots (see the key table in `mod.rs`). The `redis` crate's cluster client routes
//! each command and script by its first key and follows `MOVED` and failovers. Three things do
//! not carry over from one server and are handled here:
//!
//! - **Pipelines across slots.** A pipeline (several queues' next due times, a batch's scripts
//!   for several queues) is sent to one node, and the client refuses one whose keys live in
//!   several slots. [`split`] cuts such a pipeline into one per slot, sends them at once and
//!   puts the answers back in order; a pipeline whose keys share a slot goes as it is.
//! - **The blocking wait.** `BLPOP` on the wake lists of several queues is refused across
//!   slots, and a `BLPOP` holds its connection until it returns. [`Waits`] gives each wake
//!   list a connection of its own and a `BLPOP` of its own, and returns when the first one
//!   pops a token; the others stay in flight (they end at their server-side timeout, which is
//!   the wait) and are awaited again by the next wait rather than sent twice, so a token is
//!   never popped by a wait nobody listens to for longer than one wait.
//! - **Commands without a key** (`INFO`, `TIME`): sent to one node at random, which is what
//!   they ask (the server's version and clock are the cluster's).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, SlotAddr};
use ::redis::{Arg, Cmd, Pipeline, RedisError, RedisResult, Value};
use asynctasq_core::DriverError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::connection::map_err;

/// The schemes that name a cluster.
const SCHEMES: [(&str, &str); 2] = [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")];

/// The nodes a `redis+cluster://[user:password@]host:port,host:port[/]` URL names, each as a
/// single-server URL carrying the credentials; `None` for a URL of one server. A cluster has
/// database 0 only, so a path naming another is an error.
pub(super) fn nodes(url: &str) -> Option<Result<Vec<String>, String>> {
    let (rest, scheme) = SCHEMES.iter().find_map(|(cluster, single)| url.strip_prefix(cluster).map(|rest| (rest, *single)))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !(path.is_empty() || path == "0") {
        return Some(Err(format!("a Redis Cluster has database 0 only, not `{path}`")));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts.split(',').filter(|h| !h.is_empty()).map(|host| format!("{scheme}{userinfo}{host}")).collect();
    if nodes.is_empty() {
        return Some(Err("a Redis Cluster URL names at least one node: redis+cluster://host:port,host:port".into()));
    }
    Some(Ok(nodes))
}

/// The slot a script call runs in (`Some(None)` for a script without keys); `None` for a
/// command that is not a script call.
pub(super) fn script_route(cmd: &Cmd) -> Option<Option<Route>> {
    let name = cmd.args_iter().next().and_then(|a| if let Arg::Simple(bytes) = a { Some(bytes.to_ascii_uppercase()) } else { None })?;
    matches!(name.as_slice(), b"EVALSHA" | b"EVAL").then(|| route(cmd))
}

/// The slot of a command's first key: argument 3 of `EVALSHA`/`EVAL` with keys, else
/// argument 1; `None` for a command without one.
fn route(cmd: &Cmd) -> Option<Route> {
    let args: Vec<&[u8]> = cmd.args_iter().filter_map(|a| if let Arg::Simple(bytes) = a { Some(bytes) } else { None }).collect();
    let name = args.first()?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            args.get(3)?
        }
        b"INFO" | b"TIME" | b"PING" | b"SCRIPT" => return None,
        _ => args.get(1)?,
    };
    Some(Route::with_key(key, SlotAddr::Master))
}

/// Sends `pipeline` (not a transaction) as one pipeline per slot, at once, and returns the
/// answers in the pipeline's order. A pipeline of one slot goes as it is.
pub(super) async fn split(conn: &ClusterConnection, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
    use ::redis::aio::ConnectionLike;
    let routes: Vec<Option<Route>> = pipeline.cmd_iter().map(route).collect();
    let first = routes.iter().flatten().next().copied();
    let one_slot = routes.iter().all(|r| r.is_none() || *r == first);
    if pipeline.is_transaction() || one_slot {
        return conn.clone().req_packed_commands(pipeline, offset, count).await;
    }
    let mut groups: HashMap<Option<Route>, (Pipeline, Vec<usize>)> = HashMap::new();
    for (i, (cmd, route)) in pipeline.cmd_iter().zip(routes).enumerate() {
        let (pipe, at) = groups.entry(route).or_insert_with(|| (::redis::pipe(), Vec::new()));
        pipe.add_command(cmd.clone());
        at.push(i);
    }
    let sent = groups.into_values().map(|(pipe, at)| {
        let mut conn = conn.clone();
        async move {
            let values = conn.req_packed_commands(&pipe, 0, pipe.len()).await?;
            Ok::<_, RedisError>((values, at))
        }
    });
    let mut values = vec![Value::Nil; pipeline.len()];
    for (answers, at) in futures_util::future::try_join_all(sent).await? {
        for (value, i) in answers.into_iter().zip(at) {
            values[i] = value;
        }
    }
    Ok(values.into_iter().skip(offset).take(count).collect())
}

/// A wake list's connection between waits: idle, or still in a `BLPOP` of an earlier wait.
enum Wait {
    Idle(ClusterConnection),
    /// The `BLPOP` and the time past which it is taken for lost.
    Busy(JoinHandle<RedisResult<ClusterConnection>>, Instant),
}

/// Blocking waits on a cluster: one connection and one `BLPOP` per wake list (see the module
/// doc).
pub(super) struct Waits {
    client: ClusterClient,
    response_timeout: Duration,
    lists: tokio::sync::Mutex<HashMap<String, Wait>>,
}

impl Waits {
    /// Waits on connections of `client`, which must have no response timeout of its own (a
    /// `BLPOP` waits on the server by design); each is bounded here by its wait plus
    /// `response_timeout`.
    pub(super) fn new(client: ClusterClient, response_timeout: Duration) -> Self {
        Self { client, response_timeout, lists: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// Returns when a token is popped from one of `keys`, or a `BLPOP` ends empty, or after
    /// `wait` (plus the response timeout, past which a silent connection is dropped).
    pub(super) async fn blpop(&self, keys: &[String], wait: Duration) -> Result<(), DriverError> {
        let mut lists = self.lists.lock().await;
        let mut busy: Vec<(String, JoinHandle<RedisResult<ClusterConnection>>, Instant)> = Vec::with_capacity(keys.len());
        for key in keys {
            let (handle, lost_at) = match lists.remove(key) {
                Some(Wait::Busy(handle, lost_at)) => (handle, lost_at),
                Some(Wait::Idle(conn)) => self.start(Some(conn), key, wait),
                None => self.start(None, key, wait),
            };
            busy.push((key.clone(), handle, lost_at));
        }
        let deadline = Instant::now() + wait + self.response_timeout;
        let first = std::future::poll_fn(|cx| {
            for (i, (_, handle, _)) in busy.iter_mut().enumerate() {
                if let Poll::Ready(done) = Pin::new(handle).poll(cx) {
                    return Poll::Ready((i, done));
                }
            }
            Poll::Pending
        });
        let outcome = match tokio::time::timeout_at(deadline, first).await {
            Ok((i, done)) => {
                let (key, _, _) = busy.swap_remove(i);
                match done {
                    Ok(Ok(conn)) => {
                        lists.insert(key, Wait::Idle(conn));
                        Ok(())
                    }
                    Ok(Err(e)) => Err(map_err("wait", e)),
                    Err(join) => Err(DriverError::unavailable("redis: wait", join)),
                }
            }
            Err(_) => Ok(()),
        };
        let now = Instant::now();
        for (key, handle, lost_at) in busy {
            if now < lost_at {
                lists.insert(key, Wait::Busy(handle, lost_at));
            } else {
                tracing::warn!(list = %key, "Redis Cluster blocking wait got no answer; the next wait opens a new connection");
                handle.abort();
            }
        }
        outcome
    }

    /// A `BLPOP key` for at most `wait` on `conn` (or a new connection), in a task of its own.
    fn start(&self, conn: Option<ClusterConnection>, key: &str, wait: Duration) -> (JoinHandle<RedisResult<ClusterConnection>>, Instant) {
        let client = self.client.clone();
        let key = key.to_owned();
        // BLPOP takes seconds with millisecond precision; 0 would mean "forever".
        let secs = (asynctasq_core::envelope::millis(wait).max(1) as f64) / 1000.0;
        let handle = tokio::spawn(async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => client.get_async_connection().await?,
            };
            ::redis::cmd("BLPOP").arg(&key).arg(secs).query_async::<Option<(String, String)>>(&mut conn).await?;
            Ok(conn)
        });
        (handle, Instant::now() + wait + self.response_timeout)
    }
}

impl Drop for Waits {
    fn drop(&mut self) {
        for wait in self.lists.get_mut().values() {
            if let Wait::Busy(handle, _) = wait {
                handle.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_each_node_with_its_credentials() {
        assert_eq!(nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(
            nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
            Some(Ok(vec!["redis://127.0.0.1:7000".into(), "redis://127.0.0.1:7001".into()]))
        );
        assert_eq!(
            nodes("rediss+cluster://u:pw@h1:7000,h2:7001/"),
            Some(Ok(vec!["rediss://u:pw@h1:7000".into(), "rediss://u:pw@h2:7001".into()]))
        );
        assert!(nodes("redis+cluster://h:7000/3").is_some_and(|n| n.is_err_and(|e| e.contains("database 0 only"))));
        assert!(nodes("redis+cluster://").is_some_and(|n| n.is_err()));
    }

    #[test]
    fn commands_route_by_their_first_key_and_scripts_by_their_first_declared_key() {
        let by_key = |key: &str| Some(Route::with_key(key, SlotAddr::Master));
        assert_eq!(route(::redis::cmd("ZRANGE").arg("a:{q1}:waiting").arg(0)), by_key("q1"));
        assert_eq!(route(::redis::cmd("EVALSHA").arg("abc").arg(2).arg("a:{q2}:x").arg("a:{q2}:y")), by_key("q2"));
        assert_eq!(route(::redis::cmd("EVALSHA").arg("abc").arg(0)), None);
        assert_eq!(route(::redis::cmd("INFO").arg("server")), None);
    }
}
