//! The Redis driver.
//!
//! # Key layout
//! Every key starts with a configurable prefix (default `asynctasq:`) and every per-queue key
//! carries the queue in a hash tag, so one queue's keys share a Redis Cluster slot and each
//! script touches one slot:
//!
//! | Key | Type | Holds |
//! |---|---|---|
//! | `{prefix}{{queue}}:waiting` | sorted set | task ids scored by due time (ms); ready when the score ≤ now |
//! | `{prefix}{{queue}}:leased` | sorted set | task ids scored by lease expiry (ms) |
//! | `{prefix}{{queue}}:dead` | sorted set | dead task ids scored by death time, bounded by count and age |
//! | `{prefix}{{queue}}:dead_expiry` | sorted set | dead task ids scored by when each expires (its dead letter's time to live) |
//! | `{prefix}{{queue}}:paused` | string | present while the queue is paused: the claim script takes nothing |
//! | `{prefix}paused` | set | names of the paused queues, for listing (outside every queue's slot) |
//! | `{prefix}{{queue}}:limits` | hash | `max_leased`, `per_key`, `rate`, `rate_window_ms`, `rate_per_key`: the queue's caps and rate, while one is set; the claim script counts `leased` and `starts` against them |
//! | `{prefix}limits` | hash | queue → `max_leased|per_key|rate|rate_window_ms|rate_per_key`, for listing (outside every queue's slot) |
//! | `{prefix}{{queue}}:starts` | sorted set | the rate's log of starts: `key NUL n NUL token` → when a claim started `n` of the key's tasks (for the whole queue `NUL cum NUL n NUL token`, `cum` how many the log counted before), dropped a second after it left the window |
//! | `{prefix}{{queue}}:keys` | hash | task id → its key, for tasks that have one (per-key limits) |
//! | `{prefix}{{queue}}:parked`, `…:parked_keys` | sorted set, set | parked tasks by key and due time (`key NUL due NUL id`, scores 0), and the keys that have some: a task of a key at its limit stays in `waiting` with its score offset by 2^50 until its key has room |
//! | `{prefix}{{queue}}:wake` | list | wake-up tokens for blocked workers (at most 16) |
//! | `{prefix}{{queue}}:env` | hash | task id → MessagePack envelope |
//! | `{prefix}{{queue}}:lease_ms` | hash | task id → lease duration |
//! | `{prefix}{{queue}}:attempt` | hash | task id → deliveries so far |
//! | `{prefix}{{queue}}:token` | hash | task id → fencing token of the live lease, naming its consumer after an `@` |
//! | `{prefix}{{queue}}:error` | hash | task id → last error (the reason, once dead) |
//! | `{prefix}{{queue}}:totals` | hash | `succeeded`, `failed`: tasks acked and dead-lettered, counted by the script that settles them |
//! | `{prefix}{{queue}}:replayed` | hash | task id → `1` for a task moved back from the dead tasks (its deliveries are [`Delivery::replayed`]) |
//! | `{prefix}queues` | set | names of queues ever enqueued to |
//! | `{prefix}{{workers}}` | hash | worker id → MessagePack [`WorkerInfo`] (the worker registry) |
//! | `{prefix}{{workers}}:expires` | sorted set | worker id scored by record expiry (ms) |
//!
//! Per-queue hashes rather than a hash per task let a batch of a thousand tasks be stored or
//! claimed with a handful of bulk commands (`HSET`/`HMGET`/`ZADD` over many fields), which is
//! what makes bulk enqueue and claims cheap on the server.
//!
//! Queue names are validated ([`validate_queue_name`]) and the prefix may not contain `{` or
//! `}`, so no name can escape its hash tag or the prefix.
//!
//! # Atomicity
//! Every state change is one Lua script (in `scripts/`, each declaring all the keys of its
//! queue (`scripts/_common.lua` lists them), which share one hash slot; loaded once and invoked by SHA; a
//! `NOSCRIPT` after a server restart reloads it): enqueue, claim (which first moves expired
//! leases back to waiting, so crash recovery needs no reaper), ack, nack/release, dead-letter
//! with retention, extend, stats, purge, list and requeue dead. The fencing token of each claim
//! is stored on the task, and every settle checks it, so a worker that lost its lease changes
//! nothing.
//!
//! # Waking workers
//! Each write that makes a task due pushes a token onto the queue's `wake` list; an idle worker
//! blocks in `BLPOP` on the wake lists of its queues (on a connection of its own, without the
//! default 500 ms response timeout) until a token arrives or the earliest scheduled task or
//! lease expiry falls due, so delayed tasks and retries start on time without a scheduler
//! process and without polling.
//!
//! # Connection loss
//! Every request has a deadline, and a request that times out or fails on the connection
//! discards it: the next request opens a new one (see `connection.rs` for why the crate's own
//! reconnecting manager is not enough against half-open connections). A failed call is reported
//! as [`DriverError::Unavailable`] (the engine retries settles and backs off fetches). Tasks live in Redis, so nothing in flight is lost as long as Redis keeps its
//! data (use AOF for durability across server restarts).

mod browse;
mod cluster;
mod connection;
mod events;
mod find;
mod notices;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use self::connection::map_err;
use self::connection::{Conn, Connections, Target};
pub use self::events::{DEFAULT_EVENTS_CHANNEL, RedisEventPublisher};
use ::redis::{Script, Value};
use async_trait::async_trait;
use asynctasq_core::clock::{Clock, SystemClock};
use asynctasq_core::driver::{
    Ack, CancelOutcome, Capability, DeadSelector, DeadTask, Delivery, Driver, EnqueueOutcome, Lease, QueueLimits, QueueStats,
    ScheduleState, ServerInfo, TaskRecord, Totals, Waiting, WorkerInfo,
};
use asynctasq_core::envelope::{Envelope, TaskId, UnixMillis, millis, validate_queue_name};
use asynctasq_core::redact_url;
use asynctasq_core::{CodecError, DriverError};

/// Settings of a [`RedisDriver`].
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key (default `asynctasq:`); letters, digits and `_ - . :` only.
    pub prefix: String,
    /// Most dead tasks kept per queue (default 10,000); the oldest go first.
    pub dead_max_count: u64,
    /// Longest any dead task is kept, whatever its own time to live (the worker's failure TTL,
    /// which deletes it first; default 180 days, a cap like Sidekiq's dead set's).
    pub dead_max_age: Duration,
    /// Longest any request may wait for its answer before it fails and its connection is
    /// replaced (default 5 s). The blocking wait gets this on top of its wait. A worker whose
    /// connections go half-open works again within about twice this.
    pub response_timeout: Duration,
    /// Replicas each state change waits for (`WAIT`) before it returns; 0 (the default) waits
    /// for none. See "Durability" in the README for what it buys on a failover and costs.
    pub wait_replicas: u32,
    /// The longest a state change waits for `wait_replicas` (default 1 s); a write that reached
    /// fewer in time is logged, not failed.
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// Settings from a URL whose query may set `prefix`, `dead_max_count`, `dead_max_age`,
    /// `response_timeout` (alias `request_timeout`), `wait_replicas` and `wait_timeout`; the
    /// Redis client's own `protocol` and `db` pass through. An unknown option is an error
    /// naming it. `redis+cluster://host:port,host:port` names a Redis Cluster by its nodes.
    pub fn from_url(url: &str) -> Result<Self, DriverError> {
        let mut q = crate::url::Query::parse("Redis", url);
        let mut config = Self::new(q.base());
        q.set_string("prefix", &mut config.prefix);
        q.set_number("dead_max_count", &mut config.dead_max_count)?;
        q.set_duration("dead_max_age", &mut config.dead_max_age)?;
        q.set_duration("request_timeout", &mut config.response_timeout)?;
        q.set_duration("response_timeout", &mut config.response_timeout)?;
        q.set_number("wait_replicas", &mut config.wait_replicas)?;
        q.set_duration("wait_timeout", &mut config.wait_timeout)?;
        config.url = q.finish(
            &["prefix", "dead_max_count", "dead_max_age", "response_timeout", "request_timeout", "wait_replicas", "wait_timeout"],
            &["protocol", "db"],
        )?;
        Ok(config)
    }

    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "asynctasq:".into(),
            dead_max_count: 10_000,
            dead_max_age: Duration::from_secs(180 * 24 * 3600),
            response_timeout: Duration::from_secs(5),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// The Lua scripts, loaded once per process.
struct Scripts {
    enqueue: Script,
    limits: Script,
    claim: Script,
    ack: Script,
    requeue_leased: Script,
    dead_letter: Script,
    extend: Script,
    stats: Script,
    purge: Script,
    dead_list: Script,
    requeue_dead: Script,
    purge_dead: Script,
    cancel: Script,
    settle_cancelled: Script,
    progress: Script,
    delete: Script,
    schedule: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/enqueue.lua"))),
            limits: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/limits.lua"))),
            claim: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/claim.lua"))),
            ack: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/ack.lua"))),
            requeue_leased: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/requeue_leased.lua"))),
            dead_letter: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/dead_letter.lua"))),
            extend: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/extend.lua"))),
            stats: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/stats.lua"))),
            purge: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/purge.lua"))),
            dead_list: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/dead_list.lua"))),
            requeue_dead: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/requeue_dead.lua"))),
            purge_dead: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/purge_dead.lua"))),
            cancel: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/cancel.lua"))),
            settle_cancelled: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/settle_cancelled.lua"))),
            progress: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/progress.lua"))),
            delete: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/delete.lua"))),
            schedule: Script::new(concat!(include_str!("scripts/_common.lua"), include_str!("scripts/schedule.lua"))),
        }
    }
}

/// Tasks in Redis. Cloning gives another handle on the same connections.
#[derive(Clone)]
pub struct RedisDriver {
    inner: Arc<Inner>,
}

struct Inner {
    client: ::redis::Client,
    /// The clients to subscribe to notices through (each node of a cluster in turn).
    subscribers: Vec<::redis::Client>,
    /// Notices heard on the prefix's channel, and the subscriber feeding them (started by the
    /// first `notices` call).
    notices: Arc<asynctasq_core::NoticeBus>,
    subscriber: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
    conns: Arc<Connections>,
    scripts: Scripts,
    prefix: String,
    dead_max_count: u64,
    dead_max_age: Duration,
    consumer: crate::consumer::Consumer,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(subscriber) = self.subscriber.get() {
            subscriber.abort();
        }
    }
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver").field("prefix", &self.inner.prefix).finish_non_exhaustive()
    }
}

/// Keys of one queue, in the order every script declares them (see `scripts/_common.lua`).
struct QueueKeys {
    waiting: String,
    leased: String,
    dead: String,
    wake: String,
    env: String,
    lease_ms: String,
    attempt: String,
    token: String,
    error: String,
    totals: String,
    replayed: String,
    done: String,
    done_env: String,
    done_at: String,
    done_result: String,
    cancel: String,
    progress: String,
    errors: String,
    dead_expiry: String,
    paused: String,
    unique: String,
    unique_expiry: String,
    limits: String,
    keys: String,
    parked: String,
    parked_keys: String,
    starts: String,
    /// The queue's schedules (the schedule script's key 28, after every script's 27).
    schedules: String,
}

impl QueueKeys {
    /// Every key, in the scripts' order.
    fn all(&self) -> [&String; 27] {
        [
            &self.waiting,
            &self.leased,
            &self.dead,
            &self.wake,
            &self.env,
            &self.lease_ms,
            &self.attempt,
            &self.token,
            &self.error,
            &self.totals,
            &self.replayed,
            &self.done,
            &self.done_env,
            &self.done_at,
            &self.done_result,
            &self.cancel,
            &self.progress,
            &self.errors,
            &self.dead_expiry,
            &self.paused,
            &self.unique,
            &self.unique_expiry,
            &self.limits,
            &self.keys,
            &self.parked,
            &self.parked_keys,
            &self.starts,
        ]
    }

    /// A call of `script` with the queue's keys.
    fn invoke<'a>(&self, script: &'a Script) -> ::redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        for key in self.all() {
            call.key(key);
        }
        call
    }
}

/// Most tasks one claim or ack script handles (Lua's `unpack` has a stack limit).
const SCRIPT_BATCH: usize = 1000;

fn now() -> u64 {
    SystemClock.now()
}

/// The lease token is `id|token`: the task's member in the queue's sets (kept verbatim, so even
/// a foreign member that is not a UUID can be settled) and the claim's fence.
fn split_token(lease: &Lease) -> Result<(&str, &str), DriverError> {
    lease.token.rsplit_once('|').ok_or(DriverError::LeaseLost(lease.id))
}

fn held(done: i64, lease: &Lease) -> Result<(), DriverError> {
    if done == 0 { Err(DriverError::LeaseLost(lease.id)) } else { Ok(()) }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => std::str::from_utf8(bytes(other)?).ok()?.parse().ok(),
    }
}

/// The score of a one-member `ZRANGE … WITHSCORES` reply (`[member, score]` in RESP2,
/// `[[member, score]]` in RESP3), if it has a member.
fn first_score(v: &Value) -> Option<u64> {
    let Value::Array(items) = v else { return None };
    match items.as_slice() {
        [Value::Array(pair), ..] => pair.get(1).and_then(find::score),
        [_, score, ..] => find::score(score),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    bytes(v).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

/// The envelope stored for the task `id`. A member with no stored envelope decodes like empty
/// bytes: an undecodable envelope. The id is the member's: a unique task's holder rewritten by
/// a `Replace` or `Debounce` dispatch keeps that dispatch's envelope bytes, written by the
/// enqueue script, which cannot re-encode them with the holder's id.
fn decode(id: TaskId, raw: Option<&[u8]>) -> Result<Envelope, CodecError> {
    Envelope::decode(raw.unwrap_or_default()).map(|e| Envelope { id, ..e })
}

/// A task's unique key as the enqueue script reads it: '' for none, else
/// `until|ttl_ms|mode|key` (the key last: it may hold a `|`).
fn unique_spec(t: &Envelope) -> String {
    use asynctasq_core::unique::{UniqueMode, until_code};
    let Some(u) = &t.unique else { return String::new() };
    let mode = match u.mode {
        UniqueMode::Skip => 0,
        UniqueMode::Replace => 1,
        UniqueMode::Debounce => 2,
    };
    format!("{}|{}|{mode}|{}", until_code(u.until), u.ttl_ms, u.key)
}

fn member_id(member: &str) -> TaskId {
    member.parse().unwrap_or_default()
}

impl RedisDriver {
    /// Connects with default settings.
    pub async fn connect(url: &str) -> Result<Self, DriverError> {
        Self::connect_with(RedisConfig::from_url(url)?).await
    }

    /// Connects with `config` and loads the scripts.
    pub async fn connect_with(config: RedisConfig) -> Result<Self, DriverError> {
        if config.prefix.chars().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))) {
            return Err(DriverError::Config(format!(
                "redis key prefix `{}` may only contain letters, digits, `_`, `-`, `.` or `:`",
                config.prefix
            )));
        }
        if config.wait_replicas > 0 && config.wait_timeout >= config.response_timeout {
            return Err(DriverError::Config(format!(
                "redis wait_timeout ({:?}) must be shorter than response_timeout ({:?}): a write waits for its replicas within its response time",
                config.wait_timeout, config.response_timeout
            )));
        }
        let target = Target::from_url(&config.url, config.response_timeout)
            .map_err(|e| DriverError::Config(format!("invalid Redis URL {}: {e}", redact_url(&config.url))))?;
        let client = target.client().clone();
        let subscribers = target.subscribers();
        let replicas =
            (config.wait_replicas > 0).then_some(connection::Replicas { count: config.wait_replicas, timeout: config.wait_timeout });
        let conns = Arc::new(Connections::open(target, config.response_timeout, replicas).await?);
        let mut conn = Conn(conns.clone());
        let scripts = Scripts::new();
        for s in [
            &scripts.enqueue,
            &scripts.limits,
            &scripts.claim,
            &scripts.ack,
            &scripts.requeue_leased,
            &scripts.dead_letter,
            &scripts.extend,
            &scripts.stats,
            &scripts.purge,
            &scripts.dead_list,
            &scripts.requeue_dead,
            &scripts.purge_dead,
            &scripts.cancel,
            &scripts.settle_cancelled,
            &scripts.progress,
            &scripts.delete,
        ] {
            s.load_async(&mut conn).await.map_err(|e| map_err("loading scripts", e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                subscribers,
                notices: Arc::default(),
                subscriber: std::sync::OnceLock::new(),
                conns,
                scripts,
                prefix: config.prefix,
                dead_max_count: config.dead_max_count.max(1),
                dead_max_age: config.dead_max_age,
                consumer: crate::consumer::Consumer::default(),
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The client, e.g. for an event publisher on the same server (on a cluster: of the first
    /// node the URL names; a message published there reaches every node's subscribers).
    pub fn client(&self) -> &::redis::Client {
        &self.inner.client
    }

    fn keys(&self, queue: &str) -> Result<QueueKeys, DriverError> {
        validate_queue_name(queue)?;
        let base = format!("{}{{{queue}}}", self.inner.prefix);
        Ok(QueueKeys {
            waiting: format!("{base}:waiting"),
            leased: format!("{base}:leased"),
            dead: format!("{base}:dead"),
            wake: format!("{base}:wake"),
            env: format!("{base}:env"),
            lease_ms: format!("{base}:lease_ms"),
            attempt: format!("{base}:attempt"),
            token: format!("{base}:token"),
            error: format!("{base}:error"),
            totals: format!("{base}:totals"),
            replayed: format!("{base}:replayed"),
            done: format!("{base}:done"),
            done_env: format!("{base}:done_env"),
            done_at: format!("{base}:done_at"),
            done_result: format!("{base}:done_result"),
            cancel: format!("{base}:cancel"),
            progress: format!("{base}:progress"),
            errors: format!("{base}:errors"),
            dead_expiry: format!("{base}:dead_expiry"),
            paused: format!("{base}:paused"),
            unique: format!("{base}:unique"),
            unique_expiry: format!("{base}:unique_expiry"),
            limits: format!("{base}:limits"),
            keys: format!("{base}:keys"),
            parked: format!("{base}:parked"),
            parked_keys: format!("{base}:parked_keys"),
            starts: format!("{base}:starts"),
            schedules: format!("{base}:schedules"),
        })
    }

    /// The worker registry's hash and expiry index (one hash slot).
    fn worker_keys(&self) -> (String, String) {
        (format!("{}{{workers}}", self.inner.prefix), format!("{}{{workers}}:expires", self.inner.prefix))
    }

    /// The registry of limits: queue -> cap, for listing them (each one's cap is kept in its
    /// queue's slot, where its claims run).
    fn limits_key(&self) -> String {
        format!("{}limits", self.inner.prefix)
    }

    /// The registry of schedules: name -> queue, for listing them (each one's state is kept in
    /// its queue's slot, where its claims run).
    fn schedules_key(&self) -> String {
        format!("{}schedules", self.inner.prefix)
    }

    async fn register_schedule(&self, name: &str, queue: &str) -> Result<(), DriverError> {
        ::redis::cmd("HSET")
            .arg(self.schedules_key())
            .arg(name)
            .arg(queue)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(|e| map_err("register a schedule", e))
    }

    fn queues_key(&self) -> String {
        format!("{}queues", self.inner.prefix)
    }

    /// The set of paused queues' names (listing only: each queue's own `paused` key, in its
    /// slot, is what claims read).
    fn paused_key(&self) -> String {
        format!("{}paused", self.inner.prefix)
    }

    fn conn(&self) -> Conn {
        Conn(self.inner.conns.clone())
    }

    async fn requeue_leased(&self, lease: &Lease, visible_at: u64, error: &str, release: bool) -> Result<(), DriverError> {
        let k = self.keys(&lease.queue)?;
        let (member, token) = split_token(lease)?;
        let done: i64 = k
            .invoke(&self.inner.scripts.requeue_leased)
            .arg(member)
            .arg(token)
            .arg(visible_at)
            .arg(error)
            .arg(if release { "1" } else { "0" })
            .arg(now())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err(if release { "release" } else { "nack" }, e))?;
        held(done, lease)
    }

    /// The earliest due time or lease expiry among `queues`, if any task is there, leaving out
    /// paused queues (their tasks are due for no one): one round trip.
    async fn next_due(&self, queues: &[String]) -> Result<Option<u64>, DriverError> {
        let mut pipe = ::redis::pipe();
        for q in queues {
            let k = self.keys(q)?;
            pipe.cmd("EXISTS").arg(&k.paused);
            pipe.cmd("ZRANGE").arg(&k.waiting).arg(0).arg(0).arg("WITHSCORES");
            pipe.cmd("ZRANGE").arg(&k.leased).arg(0).arg(0).arg("WITHSCORES");
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("wait", e))?;
        Ok(replies.chunks_exact(3).filter(|r| int(&r[0]) != Some(1)).flat_map(|r| [&r[1], &r[2]]).filter_map(first_score).min())
    }
}

#[async_trait]
impl Driver for RedisDriver {
    async fn enqueue(&self, tasks: &[Envelope]) -> Result<Vec<EnqueueOutcome>, DriverError> {
        let mut by_queue: BTreeMap<&str, Vec<(usize, &Envelope, Vec<u8>)>> = BTreeMap::new();
        for (i, t) in tasks.iter().enumerate() {
            validate_queue_name(&t.queue)?;
            by_queue.entry(t.queue.as_str()).or_default().push((i, t, t.encode()?));
        }
        // One round trip for the whole batch: a script per queue plus the queue registry, pipelined.
        let mut pipe = ::redis::pipe();
        for (queue, batch) in &by_queue {
            let k = self.keys(queue)?;
            for chunk in batch.chunks(SCRIPT_BATCH) {
                // A chunk with a keyed task sends each task's key too (see `scripts/enqueue.lua`).
                let keyed = chunk.iter().any(|(_, t, _)| t.key.is_some());
                let cmd = pipe.cmd("EVALSHA").arg(self.inner.scripts.enqueue.get_hash()).arg(k.all().len()).arg(&k.all()[..]).arg(now());
                cmd.arg(if keyed { 6 } else { 5 });
                for (_, t, env) in chunk {
                    cmd.arg(t.id.to_string()).arg(env.as_slice()).arg(t.lease_ms).arg(t.not_before).arg(unique_spec(t));
                    if keyed {
                        cmd.arg(t.key.as_deref().unwrap_or(""));
                    }
                }
            }
            pipe.cmd("SADD").arg(self.queues_key()).arg(*queue).ignore();
        }
        if by_queue.is_empty() {
            return Ok(Vec::new());
        }
        let result: Result<Vec<Vec<Value>>, _> = pipe.query_async(&mut self.conn()).await;
        let stored = match result {
            Err(e) if e.kind() == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) => {
                // The server lost its script cache (restart): reload and send once more. Every
                // EVALSHA of the pipeline failed alike and wrote nothing.
                self.inner.scripts.enqueue.load_async(&mut self.conn()).await.map_err(|e| map_err("enqueue", e))?;
                pipe.query_async::<Vec<Vec<Value>>>(&mut self.conn()).await.map_err(|e| map_err("enqueue", e))?
            }
            other => other.map_err(|e| map_err("enqueue", e))?,
        };
        // The scripts' answers come in the order they were sent: queue by queue, chunk by chunk.
        let mut outcomes = vec![EnqueueOutcome::Exists; tasks.len()];
        let sent = by_queue.values().flat_map(|batch| batch.iter().map(|(i, _, _)| *i));
        for (i, answer) in sent.zip(stored.into_iter().flatten()) {
            match int(&answer) {
                Some(1) => outcomes[i] = EnqueueOutcome::New,
                Some(_) => {}
                None => outcomes[i] = EnqueueOutcome::Duplicate { existing: member_id(&text(&answer)) },
            }
        }
        Ok(outcomes)
    }

    async fn dequeue(&self, queue: &str, max: usize) -> Result<Vec<Delivery>, DriverError> {
        let k = self.keys(queue)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        // The token is random, then the claim's time after a `.` (when the run started) and the
        // consumer after an `@` (never a `|`, which ends the member in a lease's token): read
        // back by `find`, by each failure's history and by the kept record.
        let at = now();
        let token = match self.inner.consumer.get() {
            Some(holder) => format!("{:016x}.{at}@{}", fastrand::u64(..), holder.replace('|', "_")),
            None => format!("{:016x}.{at}", fastrand::u64(..)),
        };
        let reply: Vec<Value> = k
            .invoke(&self.inner.scripts.claim)
            .arg(at)
            .arg(max.min(SCRIPT_BATCH))
            .arg(&token)
            .arg(30_000)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("dequeue", e))?;
        Ok(reply
            .chunks_exact(5)
            .map(|c| {
                let member = text(&c[0]);
                let attempt = int(&c[1]).unwrap_or(1) as u32;
                let expires_at = int(&c[2]).unwrap_or_default() as u64;
                let lease = Lease { id: member_id(&member), queue: queue.to_owned(), token: format!("{member}|{token}"), expires_at };
                let envelope = decode(lease.id, bytes(&c[3]));
                Delivery::new(lease, attempt, envelope).replayed(int(&c[4]) == Some(1))
            })
            .collect())
    }

    async fn wait_ready(&self, queues: &[String], timeout: Duration) -> Result<(), DriverError> {
        if queues.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(());
        }
        let wake_keys = queues.iter().map(|q| self.keys(q).map(|k| k.wake)).collect::<Result<Vec<_>, _>>()?;
        let mut wait = timeout;
        if let Some(due) = self.next_due(queues).await? {
            let now = now();
            if due <= now {
                return Ok(());
            }
            wait = wait.min(Duration::from_millis(due - now));
        }
        self.inner.conns.blpop(&wake_keys, wait).await
    }

    async fn ack(&self, acks: &[Ack]) -> Result<Vec<TaskId>, DriverError> {
        let mut by_queue: BTreeMap<&str, Vec<(&str, &str, &Ack)>> = BTreeMap::new();
        let mut lost = Vec::new();
        for ack in acks {
            match split_token(&ack.lease) {
                Ok((member, token)) => by_queue.entry(ack.lease.queue.as_str()).or_default().push((member, token, ack)),
                Err(_) => lost.push(ack.lease.id),
            }
        }
        for (queue, all) in by_queue {
            let k = self.keys(queue)?;
            for batch in all.chunks(SCRIPT_BATCH) {
                let mut call = k.invoke(&self.inner.scripts.ack);
                call.arg(now());
                for (member, token, ack) in batch {
                    call.arg(*member).arg(*token).arg(millis(ack.keep)).arg(ack.result.as_deref().unwrap_or_default());
                }
                let lost_members: Vec<String> = call.invoke_async(&mut self.conn()).await.map_err(|e| map_err("ack", e))?;
                for m in lost_members {
                    if let Some((_, _, ack)) = batch.iter().find(|(member, _, _)| *member == m) {
                        lost.push(ack.lease.id);
                    }
                }
            }
        }
        Ok(lost)
    }

    async fn nack(&self, lease: &Lease, delay: Duration, error: &str) -> Result<(), DriverError> {
        self.requeue_leased(lease, now().saturating_add(millis(delay)), error, false).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), DriverError> {
        self.requeue_leased(lease, now(), "", true).await
    }

    async fn dead_letter(&self, lease: &Lease, error: &str, keep: Duration) -> Result<(), DriverError> {
        let k = self.keys(&lease.queue)?;
        let (member, token) = split_token(lease)?;
        let now = now();
        let done: i64 = k
            .invoke(&self.inner.scripts.dead_letter)
            .arg(member)
            .arg(token)
            .arg(error)
            .arg(now)
            .arg(self.inner.dead_max_count)
            .arg(now.saturating_sub(millis(self.inner.dead_max_age)))
            .arg(now.saturating_add(millis(keep)))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("dead-letter", e))?;
        held(done, lease)
    }

    async fn extend_lease(&self, lease: &Lease, by: Duration) -> Result<Lease, DriverError> {
        let k = self.keys(&lease.queue)?;
        let (member, token) = split_token(lease)?;
        let expires_at = now().saturating_add(millis(by));
        let done: i64 = k
            .invoke(&self.inner.scripts.extend)
            .arg(member)
            .arg(token)
            .arg(expires_at)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("extend lease", e))?;
        if done == 2 {
            return Err(DriverError::CancelRequested(lease.id));
        }
        held(done, lease)?;
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, DriverError> {
        let k = self.keys(queue)?;
        let at = now();
        let (ready, scheduled, leased, dead, earliest, succeeded, failed): (u64, u64, u64, u64, i64, u64, u64) =
            k.invoke(&self.inner.scripts.stats).arg(at).invoke_async(&mut self.conn()).await.map_err(|e| map_err("stats", e))?;
        let age = if earliest < 0 { 0 } else { at.saturating_sub(earliest as u64) };
        let totals = Some(Totals { succeeded, failed });
        Ok(QueueStats { ready, scheduled, leased, dead, oldest_ready_age: Some(Duration::from_millis(age)), totals, estimated: false })
    }

    async fn register_worker(&self, worker: &WorkerInfo) -> Result<(), DriverError> {
        let (info, expires) = self.worker_keys();
        let now = now();
        let mut conn = self.conn();
        let gone: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(&expires)
            .arg("-inf")
            .arg(now)
            .query_async(&mut conn)
            .await
            .map_err(|e| map_err("register worker", e))?;
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        if !gone.is_empty() {
            pipe.cmd("HDEL").arg(&info).arg(&gone).ignore().cmd("ZREM").arg(&expires).arg(&gone).ignore();
        }
        pipe.cmd("HSET").arg(&info).arg(&worker.id).arg(worker.encode()?).ignore();
        pipe.cmd("ZADD").arg(&expires).arg(worker.expires_at).arg(&worker.id).ignore();
        pipe.query_async::<()>(&mut conn).await.map_err(|e| map_err("register worker", e))
    }

    async fn deregister_worker(&self, id: &str) -> Result<(), DriverError> {
        let (info, expires) = self.worker_keys();
        let mut pipe = ::redis::pipe();
        pipe.atomic().cmd("HDEL").arg(&info).arg(id).ignore().cmd("ZREM").arg(&expires).arg(id).ignore();
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| map_err("deregister worker", e))
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, DriverError> {
        let (info, expires) = self.worker_keys();
        let mut conn = self.conn();
        let mut ids: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(&expires)
            .arg(format!("({}", now()))
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(|e| map_err("list workers", e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let blobs: Vec<Option<Vec<u8>>> =
            ::redis::cmd("HMGET").arg(&info).arg(&ids).query_async(&mut conn).await.map_err(|e| map_err("list workers", e))?;
        Ok(blobs.into_iter().flatten().filter_map(|b| WorkerInfo::decode(&b).ok()).collect())
    }

    async fn queues(&self) -> Result<Vec<String>, DriverError> {
        let mut names: Vec<String> =
            ::redis::cmd("SMEMBERS").arg(self.queues_key()).query_async(&mut self.conn()).await.map_err(|e| map_err("list queues", e))?;
        names.retain(|n| validate_queue_name(n).is_ok());
        names.sort();
        if names.is_empty() {
            return Ok(names); // an empty pipeline is an error in redis-rs
        }
        let mut pipe = ::redis::pipe();
        for n in &names {
            let k = self.keys(n)?;
            pipe.cmd("EXISTS").arg(&k.waiting).arg(&k.leased).arg(&k.dead);
        }
        let present: Vec<u64> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("list queues", e))?;
        Ok(names.into_iter().zip(present).filter(|(_, n)| *n > 0).map(|(q, _)| q).collect())
    }

    async fn purge_waiting(&self, queue: &str, which: Waiting) -> Result<u64, DriverError> {
        if which != Waiting::Both {
            return Err(DriverError::Unsupported("deleting ready and scheduled tasks separately"));
        }
        let k = self.keys(queue)?;
        k.invoke(&self.inner.scripts.purge).arg(now()).invoke_async(&mut self.conn()).await.map_err(|e| map_err("purge", e))
    }

    async fn dead(&self, queue: &str, limit: usize) -> Result<Vec<DeadTask>, DriverError> {
        let k = self.keys(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let reply: Vec<Value> = k
            .invoke(&self.inner.scripts.dead_list)
            .arg(limit.min(1 << 53))
            .arg(now())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("list dead", e))?;
        Ok(reply
            .chunks_exact(6)
            .map(|c| {
                let member = text(&c[0]);
                let attempt = int(&c[2]).unwrap_or_default() as u32;
                let dead_at = int(&c[4]).unwrap_or_default() as u64;
                let history = bytes(&c[5]).map(|b| String::from_utf8_lossy(b).into_owned());
                DeadTask::new(member_id(&member), queue, attempt, text(&c[3]), dead_at, decode(member_id(&member), bytes(&c[1])))
                    .with_errors(history.as_deref())
            })
            .collect())
    }

    async fn find(&self, id: TaskId) -> Result<Option<TaskRecord>, DriverError> {
        self.find_task(id).await
    }

    async fn list(
        &self,
        queue: &str,
        state: asynctasq_core::TaskState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, DriverError> {
        self.list_tasks(queue, state, offset, limit).await
    }

    async fn dead_after(&self, queue: &str, after: Option<&str>, limit: usize) -> Result<asynctasq_core::DeadPage, DriverError> {
        self.dead_page(queue, after, limit).await
    }

    async fn delete(&self, id: TaskId) -> Result<asynctasq_core::DeleteOutcome, DriverError> {
        let Some(queue) = self.queue_of(id).await? else { return Ok(asynctasq_core::DeleteOutcome::NotFound) };
        let done: i64 = self
            .keys(&queue)?
            .invoke(&self.inner.scripts.delete)
            .arg(id.to_string())
            .arg(now())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("delete", e))?;
        Ok(match done {
            1 => asynctasq_core::DeleteOutcome::Deleted,
            2 => asynctasq_core::DeleteOutcome::Leased,
            _ => asynctasq_core::DeleteOutcome::NotFound,
        })
    }

    fn notices(&self, kind: asynctasq_core::NoticeKind) -> Option<tokio::sync::broadcast::Receiver<TaskId>> {
        let rx = self.inner.notices.subscribe(kind);
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        self.inner.subscriber.get_or_init(|| {
            let channel = notices::channel(&self.inner.prefix);
            runtime.spawn(notices::subscribe(self.inner.subscribers.clone(), channel, self.inner.notices.clone()))
        });
        Some(rx)
    }

    async fn cancel(&self, id: TaskId, keep: Duration) -> Result<CancelOutcome, DriverError> {
        // The queue that holds the id; the script decides there, atomically.
        let Some(queue) = self.queue_of(id).await? else { return Ok(CancelOutcome::NotFound) };
        let k = self.keys(&queue)?;
        let done: i64 = k
            .invoke(&self.inner.scripts.cancel)
            .arg(id.to_string())
            .arg(now())
            .arg(millis(keep))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("cancel", e))?;
        Ok(match done {
            1 => CancelOutcome::Removed,
            2 => CancelOutcome::Requested,
            3 => CancelOutcome::AlreadyFinished,
            _ => CancelOutcome::NotFound,
        })
    }

    async fn progress(&self, lease: &Lease, progress: &asynctasq_core::Progress) -> Result<(), DriverError> {
        let k = self.keys(&lease.queue)?;
        let (member, token) = split_token(lease)?;
        let done: i64 = k
            .invoke(&self.inner.scripts.progress)
            .arg(member)
            .arg(token)
            .arg(progress.encode()?)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("record progress", e))?;
        held(done, lease)
    }

    async fn settle_cancelled(&self, lease: &Lease, keep: Duration) -> Result<(), DriverError> {
        let k = self.keys(&lease.queue)?;
        let (member, token) = split_token(lease)?;
        let done: i64 = k
            .invoke(&self.inner.scripts.settle_cancelled)
            .arg(member)
            .arg(token)
            .arg(now())
            .arg(millis(keep))
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| map_err("settle a cancelled task", e))?;
        held(done, lease)
    }

    async fn requeue_dead(&self, queue: &str, which: DeadSelector) -> Result<u64, DriverError> {
        let k = self.keys(queue)?;
        let mut call = k.invoke(&self.inner.scripts.requeue_dead);
        call.arg(now());
        match &which {
            DeadSelector::All => {
                call.arg("all");
            }
            DeadSelector::Ids(ids) => {
                call.arg("ids");
                for id in ids {
                    call.arg(id.to_string());
                }
            }
        }
        call.invoke_async(&mut self.conn()).await.map_err(|e| map_err("requeue dead", e))
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, DriverError> {
        let k = self.keys(queue)?;
        k.invoke(&self.inner.scripts.purge_dead).invoke_async(&mut self.conn()).await.map_err(|e| map_err("purge dead", e))
    }

    async fn server_info(&self) -> Result<ServerInfo, DriverError> {
        let (info, (secs, micros)): (String, (i64, i64)) = ::redis::pipe()
            .cmd("INFO")
            .arg("server")
            .cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| map_err("read server information", e))?;
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim);
        // Valkey answers as Redis for compatibility and adds its own version field.
        let version = match (field("valkey_version"), field("redis_version")) {
            (Some(v), _) => Some(format!("Valkey {v}")),
            (None, Some(v)) => Some(format!("Redis {v}")),
            (None, None) => None,
        };
        Ok(ServerInfo { version, clock_ms: Some((secs * 1000 + micros / 1000) as u64), schema: None })
    }

    fn supports(&self, _capability: Capability) -> bool {
        true
    }

    async fn claim_slot(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        let k = self.keys(queue)?;
        let mut call = k.invoke(&self.inner.scripts.schedule);
        call.key(&k.schedules).arg("claim").arg(name).arg(slot).arg(now());
        if let Some(t) = task {
            call.arg(t.id.to_string()).arg(t.encode()?).arg(t.lease_ms).arg(t.not_before);
        }
        let claimed: i64 = call.invoke_async(&mut self.conn()).await.map_err(|e| map_err("claim a slot", e))?;
        self.register_schedule(name, queue).await?;
        Ok(claimed == 1)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleState>, DriverError> {
        let registry: BTreeMap<String, String> = ::redis::cmd("HGETALL")
            .arg(self.schedules_key())
            .query_async(&mut self.conn())
            .await
            .map_err(|e| map_err("list schedules", e))?;
        if registry.is_empty() {
            // An empty pipeline is an error to the client, not an empty answer.
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for (name, queue) in &registry {
            pipe.cmd("HGET").arg(self.keys(queue)?.schedules).arg(name);
        }
        let stored: Vec<Option<String>> = pipe.query_async(&mut self.conn()).await.map_err(|e| map_err("list schedules", e))?;
        let mut states: Vec<ScheduleState> = registry
            .into_iter()
            .zip(stored)
            .map(|((name, _), value)| {
                let value = value.unwrap_or_default();
                let (last, paused) = value.split_once('|').unwrap_or(("", "0"));
                ScheduleState { name, last_slot: last.parse().ok(), paused: paused == "1" }
            })
            .collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(states)
    }

    async fn set_schedule_paused(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        let k = self.keys(queue)?;
        let mut call = k.invoke(&self.inner.scripts.schedule);
        call.key(&k.schedules).arg(if paused { "pause" } else { "resume" }).arg(name);
        call.invoke_async::<i64>(&mut self.conn()).await.map_err(|e| map_err("pause a schedule", e))?;
        self.register_schedule(name, queue).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), DriverError> {
        let k = self.keys(queue)?;
        let mut pipe = ::redis::pipe();
        if paused {
            pipe.cmd("SET").arg(&k.paused).arg(1).ignore();
            pipe.cmd("SADD").arg(self.paused_key()).arg(queue).ignore();
        } else {
            pipe.cmd("DEL").arg(&k.paused).ignore();
            pipe.cmd("SREM").arg(self.paused_key()).arg(queue).ignore();
            // Blocked workers look again.
            pipe.cmd("LPUSH").arg(&k.wake).arg(1).ignore();
            pipe.cmd("LTRIM").arg(&k.wake).arg(0).arg(15).ignore();
        }
        pipe.query_async::<()>(&mut self.conn()).await.map_err(|e| map_err("pause", e))
    }

    async fn set_limits(&self, queue: &str, limits: QueueLimits) -> Result<(), DriverError> {
        let k = self.keys(queue)?;
        asynctasq_core::limits::check_limits(&limits, |c| self.supports(c))?;
        let count = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
        let (max_leased, per_key) = (count(limits.max_leased), count(limits.per_key));
        let rate = limits.rate.map(|r| (r.starts.to_string(), r.window_ms.to_string(), if r.per_key { "1" } else { "0" }));
        let (starts, window_ms, rate_per_key) = rate.unwrap_or_default();
        let mut call = k.invoke(&self.inner.scripts.limits);
        call.arg(&max_leased).arg(&per_key).arg(&starts).arg(&window_ms).arg(rate_per_key);
        call.invoke_async::<()>(&mut self.conn()).await.map_err(|e| map_err("limit a queue", e))?;
        // The registry, for listing (outside the queue's slot, so written after):
        // "max_leased|per_key|rate|window_ms|per key (1/0)", empty where unset.
        let mut registry = ::redis::cmd(if limits.is_none() { "HDEL" } else { "HSET" });
        registry.arg(self.limits_key()).arg(queue);
        if !limits.is_none() {
            registry.arg(format!("{max_leased}|{per_key}|{starts}|{window_ms}|{rate_per_key}"));
        }
        registry.query_async::<()>(&mut self.conn()).await.map_err(|e| map_err("limit a queue", e))
    }

    async fn limits(&self) -> Result<Vec<(String, QueueLimits)>, DriverError> {
        let caps: std::collections::BTreeMap<String, String> =
            ::redis::cmd("HGETALL").arg(self.limits_key()).query_async(&mut self.conn()).await.map_err(|e| map_err("list limits", e))?;
        let count = |n: Option<&str>| n.and_then(|n| n.parse::<u32>().ok());
        Ok(caps
            .into_iter()
            .map(|(queue, v)| {
                let mut fields = v.split('|');
                let (max_leased, per_key) = (count(fields.next()), count(fields.next()));
                let starts = count(fields.next());
                let window_ms = fields.next().and_then(|w| w.parse::<u64>().ok());
                let rate = starts.zip(window_ms).map(|(n, ms)| {
                    let rate = asynctasq_core::limits::Rate::new(n, Duration::from_millis(ms));
                    if fields.next() == Some("1") { rate.per_key() } else { rate }
                });
                (queue, QueueLimits::default().with_max_leased(max_leased).with_per_key(per_key).with_rate(rate))
            })
            .collect())
    }

    async fn paused(&self) -> Result<Vec<String>, DriverError> {
        let mut names: Vec<String> =
            ::redis::cmd("SMEMBERS").arg(self.paused_key()).query_async(&mut self.conn()).await.map_err(|e| map_err("list paused", e))?;
        names.sort();
        Ok(names)
    }

    fn consumer(&self, name: &str) {
        self.inner.consumer.set(name);
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
