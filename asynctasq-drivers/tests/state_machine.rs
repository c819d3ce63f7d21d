//! The task state machine, checked against the reference model: random sequences of enqueue,
//! claim, ack, nack, release, dead-letter, lease expiry, requeue and purge run in lockstep on
//! the in-memory driver (the model) and on a backend, and every observable state must agree:
//! counts per state, which tasks a claim returns and at which attempt, which settlements find
//! their lease lost, and the dead store.
//!
//! Run on SQLite (24 cases), on Redis, PostgreSQL and MySQL (8 cases each, every case on keys
//! or tables of its own) and on RabbitMQ and SQS (4 cases each). Those two follow the model as
//! closely as their capabilities allow ([`Follow`]): their counts and claims are compared once
//! they have settled (a broker counts a delivery before it arrives; SQS hands out at most 10
//! messages per receive), and the sequence never settles a lease there after it expired. An
//! expired lease nobody has claimed since still settles on the model and the SQL and Redis
//! backends, while the broker takes it back at expiry (both keep the contract: a lease is
//! lost once the task can be delivered again), and SQS cannot fence at all.

mod common;
#[allow(unused_imports)]
use common::{env_or, own};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::{Capability, DeadSelector, Driver, DriverError, Envelope, Lease, MemoryDriver, TaskId};
use proptest::prelude::*;

const Q: &str = "model";
/// How long a backend without exact counts may take to show the model's state.
const SETTLE: Duration = Duration::from_secs(5);

/// How closely a backend can follow the model, from its capabilities.
#[derive(Clone, Copy, Debug)]
struct Follow {
    /// Counts are exact and a claim gets every ready task at once ([`Capability::ExactStats`]);
    /// otherwise both are compared once they settle, within [`SETTLE`].
    exact: bool,
    /// Leases are settled after they expired, as the model settles them: exact backends with
    /// [`Capability::Fencing`]. Otherwise the sequence forgets every lease once it expired.
    settles_expired: bool,
    /// The tasks' lease; `Expire` sleeps past it. SQS counts visibility in whole seconds.
    lease: Duration,
}

impl Follow {
    fn of(driver: &dyn Driver) -> Self {
        let exact = driver.supports(Capability::ExactStats);
        let lease = if exact { Duration::from_millis(400) } else { Duration::from_secs(1) };
        Self { exact, settles_expired: exact && driver.supports(Capability::Fencing), lease }
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Enqueue a task, due now or in an hour.
    Enqueue {
        delayed: bool,
    },
    /// Claim every ready task.
    Claim,
    /// Settle the k-th lease held (by task id order) in some way.
    Ack(usize),
    Nack(usize),
    Release(usize),
    DeadLetter(usize),
    /// Sleep until every lease taken so far has expired.
    Expire,
    RequeueOneDead(usize),
    RequeueAllDead,
    PurgeDead,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|delayed| Op::Enqueue { delayed }),
        4 => Just(Op::Claim),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Nack),
        1 => any::<usize>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::DeadLetter),
        1 => Just(Op::Expire),
        1 => any::<usize>().prop_map(Op::RequeueOneDead),
        1 => Just(Op::RequeueAllDead),
        1 => Just(Op::PurgeDead),
    ]
}

/// One driver under the sequence, with the leases it holds by task id.
struct Side {
    driver: Arc<dyn Driver>,
    held: BTreeMap<TaskId, Lease>,
}

fn envelope(id: TaskId, delayed: bool, lease: Duration) -> Envelope {
    let mut e = asynctasq_core::testing::envelope(Q, lease);
    e.id = id;
    e.max_attempts = 100;
    if delayed {
        e.not_before += 3_600_000;
    }
    e
}

/// What an operation showed, in a form both drivers must produce alike.
#[derive(Debug, PartialEq)]
enum Seen {
    Nothing,
    Claimed(Vec<(TaskId, u32)>),
    Settled(Result<(), &'static str>),
    Moved(u64),
}

fn outcome(r: Result<(), DriverError>) -> Seen {
    Seen::Settled(match r {
        Ok(()) => Ok(()),
        Err(DriverError::LeaseLost(_)) => Err("lease lost"),
        Err(e) => panic!("unexpected error: {e}"),
    })
}

impl Side {
    /// The k-th held lease (by task id), if any is held.
    fn pick(&self, k: usize) -> Option<Lease> {
        (!self.held.is_empty()).then(|| self.held.values().nth(k % self.held.len()).cloned().expect("index in range"))
    }

    /// Applies `op`; a claim goes on until it has `claim_until` tasks or [`SETTLE`] passes
    /// (0: one dequeue).
    async fn apply(&mut self, op: &Op, new_id: TaskId, dead_ids: &[TaskId], follow: Follow, claim_until: usize) -> Seen {
        let d = &self.driver;
        match *op {
            Op::Enqueue { delayed } => {
                d.enqueue(&[envelope(new_id, delayed, follow.lease)]).await.expect("enqueue");
                Seen::Nothing
            }
            Op::Claim => {
                let mut got: Vec<(TaskId, u32)> = Vec::new();
                let deadline = tokio::time::Instant::now() + SETTLE;
                loop {
                    for delivery in d.dequeue(Q, 1000).await.expect("dequeue") {
                        got.push((delivery.lease.id, delivery.attempt));
                        self.held.insert(delivery.lease.id, delivery.lease);
                    }
                    if got.len() >= claim_until || tokio::time::Instant::now() > deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                got.sort();
                Seen::Claimed(got)
            }
            Op::Ack(k) => match self.pick(k) {
                Some(lease) => {
                    self.held.remove(&lease.id);
                    let lost = d.ack(&[lease.clone().into()]).await.expect("ack");
                    outcome(if lost.contains(&lease.id) { Err(DriverError::LeaseLost(lease.id)) } else { Ok(()) })
                }
                None => Seen::Nothing,
            },
            Op::Nack(k) => match self.pick(k) {
                Some(lease) => {
                    self.held.remove(&lease.id);
                    outcome(d.nack(&lease, Duration::ZERO, "failed").await)
                }
                None => Seen::Nothing,
            },
            Op::Release(k) => match self.pick(k) {
                Some(lease) => {
                    self.held.remove(&lease.id);
                    outcome(d.release(&lease).await)
                }
                None => Seen::Nothing,
            },
            Op::DeadLetter(k) => match self.pick(k) {
                Some(lease) => {
                    self.held.remove(&lease.id);
                    outcome(d.dead_letter(&lease, "gave up", Duration::from_secs(3600)).await)
                }
                None => Seen::Nothing,
            },
            // The sequence sleeps past every lease before both sides see this.
            Op::Expire => Seen::Nothing,
            Op::RequeueOneDead(k) => match dead_ids.get(k % dead_ids.len().max(1)) {
                Some(id) => Seen::Moved(d.requeue_dead(Q, DeadSelector::Ids(vec![*id])).await.expect("requeue")),
                None => Seen::Nothing,
            },
            Op::RequeueAllDead => Seen::Moved(d.requeue_dead(Q, DeadSelector::All).await.expect("requeue")),
            Op::PurgeDead => Seen::Moved(d.purge_dead(Q).await.expect("purge dead")),
        }
    }

    /// The dead store: ids with their attempts and errors.
    async fn dead(&self) -> Vec<(TaskId, u32, String)> {
        let mut dead: Vec<_> = self.driver.dead(Q, 1000).await.expect("dead").into_iter().map(|t| (t.id, t.attempt, t.error)).collect();
        dead.sort();
        dead
    }
}

async fn run(ops: Vec<Op>, real: Arc<dyn Driver>) -> Result<(), TestCaseError> {
    let name = real.name();
    let follow = Follow::of(&*real);
    let mut model = Side { driver: Arc::new(MemoryDriver::new()), held: BTreeMap::new() };
    let mut real = Side { driver: real, held: BTreeMap::new() };
    for (step, op) in ops.iter().enumerate() {
        let id = TaskId::new();
        let dead: Vec<TaskId> = model.dead().await.into_iter().map(|(id, _, _)| id).collect();
        if let Op::Expire = op {
            tokio::time::sleep(follow.lease + Duration::from_millis(150)).await;
            if !follow.settles_expired {
                model.held.clear();
                real.held.clear();
            }
        }
        let expected = model.apply(op, id, &dead, follow, 0).await;
        let claim_until = match (&expected, follow.exact) {
            (Seen::Claimed(all), false) => all.len(),
            _ => 0,
        };
        let got = real.apply(op, id, &dead, follow, claim_until).await;
        prop_assert_eq!(&got, &expected, "step {} {:?}: {} differs from the model", step, op, name);
        // The counts; the oldest ready age is a clock reading that differs by the time between
        // the two calls, so only its agreement with the counts is checked.
        let m = model.driver.stats(Q).await.expect("stats");
        let r = settled(follow, || async { real.driver.stats(Q).await.expect("stats").counts() }, &m.counts()).await;
        prop_assert_eq!(r, m.counts(), "step {} {:?}: counts differ", step, op);
        if let Some(age) = real.driver.stats(Q).await.expect("stats").oldest_ready_age {
            prop_assert!(m.ready > 0 || age.is_zero() || !follow.exact, "step {} {:?}: an age with nothing ready: {:?}", step, op, age);
        }
        let m = model.dead().await;
        let r = settled(follow, || real.dead(), &m).await;
        prop_assert_eq!(r, m, "step {} {:?}: dead stores differ", step, op);
    }
    Ok(())
}

/// What `read` shows: at once on an exact backend, else once it equals `expected` or
/// [`SETTLE`] has passed.
async fn settled<T: PartialEq, F, Fut>(follow: Follow, read: F, expected: &T) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let got = read().await;
        if follow.exact || &got == expected || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `ops` on the model and on the driver `make` opens.
fn check<F, Fut>(ops: Vec<Op>, make: F) -> Result<(), TestCaseError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Arc<dyn Driver>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async { run(ops, make().await).await })
}

/// One backend's property: `$cases` random sequences of up to `$ops` operations, each on a
/// driver `$make` opens (an `async` block, after the `$setup` statements), in lockstep with the
/// model.
macro_rules! follows_the_model {
    ($feature:literal, $name:ident, $cases:literal, $ops:literal, { $($setup:tt)* } => $make:expr) => {
        #[cfg(feature = $feature)]
        proptest! {
            #![proptest_config(ProptestConfig { cases: $cases, max_shrink_iters: 32, ..ProptestConfig::default() })]

            #[test]
            fn $name(ops in proptest::collection::vec(op(), 1..$ops)) {
                $($setup)*
                check(ops, || $make)?;
            }
        }
    };
}

follows_the_model!("sqlite", sqlite_keeps_the_same_states_as_the_model, 24, 40, {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/model.db", dir.path().display());
} => async move {
    Arc::new(asynctasq_drivers::SqliteDriver::connect(&url).await.expect("sqlite")) as Arc<dyn Driver>
});

/// The driver at `$var` (default `default`) with the URL options `options`, in which `{own}`
/// becomes a suffix of this case's own: one seam for every backend.
async fn connect(var: &str, default: &str, options: &str) -> Arc<dyn Driver> {
    let url = format!("{}?{}", env_or(var, default), options.replace("{own}", &own()));
    asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("{e}"))
}

follows_the_model! { "redis", redis_keeps_the_same_states_as_the_model, 8, 40, {} =>
connect("ASYNCTASQ_TEST_REDIS_URL", "redis://127.0.0.1:6379", "prefix=asynctasq-test-{own}:") }
follows_the_model! { "postgres", postgres_keeps_the_same_states_as_the_model, 8, 40, {} =>
connect("ASYNCTASQ_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test", "table_prefix=asynctasq_test_{own}&max_connections=2") }
follows_the_model! { "mysql", mysql_keeps_the_same_states_as_the_model, 8, 40, {} =>
connect("ASYNCTASQ_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test", "table_prefix=asynctasq_test_{own}&max_connections=2") }
follows_the_model! { "rabbitmq", rabbitmq_keeps_the_same_states_as_the_model, 4, 30, {} =>
connect("ASYNCTASQ_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f", "prefix=asynctasq-test-{own}") }

follows_the_model!("sqs", sqs_keeps_the_same_states_as_the_model, 4, 30, {} => async {
    let mut config = asynctasq_drivers::SqsConfig::local(env_or("ASYNCTASQ_TEST_SQS_ENDPOINT", "http://127.0.0.1:4566"));
    config.queue_prefix = format!("at-{}-", own());
    Arc::new(asynctasq_drivers::SqsDriver::connect(config).await.expect("SQS (moto)")) as Arc<dyn Driver>
});
