//! Input no client of ours wrote, for each backend's "bytes written straight into its storage"
//! test: every backend must dead-letter each of these with its reason, at attempt 1, while the
//! good tasks around them run.
//!
//! ```text
//! let inputs = bad_input::inputs("raw");
//! for input in &inputs { /* write input.bytes into the backend, bypassing the client */ }
//! bad_input::dispatch_good(&driver, "raw", 5).await;
//! bad_input::drain_and_check(driver, "raw", &inputs, 5).await;
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::driver::Driver;
use crate::envelope::{ENVELOPE_VERSION, Envelope, TaskId};
use crate::task::{Task, TaskContext, TaskResult};
use crate::{Client, Overrides, Registry, Worker};

/// One record a backend could hold that did not come from our client.
#[derive(Debug)]
pub struct BadInput {
    /// What it is.
    pub label: &'static str,
    /// The id to store it under where the backend keeps ids beside the bytes (SQL rows, Redis
    /// members); the envelope's own id when the bytes decode.
    pub id: TaskId,
    /// The bytes as stored.
    pub bytes: Vec<u8>,
    /// Words its dead-letter reason must contain.
    pub reason: String,
}

/// The good task the worker runs around the bad input.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Good {
    /// Which good task this is.
    pub n: u64,
}

impl Task for Good {
    const NAME: &'static str = "testing.good";
    async fn run(self, _ctx: TaskContext) -> TaskResult {
        Ok(())
    }
}

/// The bad records for `queue`: empty bytes, random bytes, a truncated envelope, an envelope of
/// an unknown version, a valid envelope of an unknown task name, and one whose arguments do not
/// decode as its task's.
pub fn inputs(queue: &str) -> Vec<BadInput> {
    let valid = |name: &str, payload: Vec<u8>| Envelope {
        version: ENVELOPE_VERSION,
        id: TaskId::new(),
        name: name.into(),
        queue: queue.into(),
        payload,
        attempt: 0,
        max_attempts: 3,
        timeout_ms: None,
        lease_ms: 30_000,
        created_at: 0,
        not_before: 0,
        headers: Default::default(),
        defaulted: Default::default(),
        unique: None,
        key: None,
    };
    let full = valid(Good::NAME, rmp_serde::to_vec_named(&Good { n: 0 }).expect("encode")).encode().expect("encode");
    // Deterministic "random" bytes (a fixed seed), so a run can never draw a decodable record.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let random: Vec<u8> = (0..64).map(|_| rng.u8(..)).collect();
    let unknown = valid("no.such.task", vec![0x80]);
    let bad_args = valid(Good::NAME, vec![0xc1]);
    let undecodable = "undecodable envelope";
    vec![
        BadInput { label: "empty", id: TaskId::new(), bytes: Vec::new(), reason: undecodable.into() },
        BadInput { label: "random bytes", id: TaskId::new(), bytes: random, reason: undecodable.into() },
        BadInput { label: "truncated envelope", id: TaskId::new(), bytes: full[..full.len() / 2].to_vec(), reason: undecodable.into() },
        BadInput {
            label: "unknown version",
            id: TaskId::new(),
            bytes: b"\x81\xa7version\x09".to_vec(),
            reason: "unknown envelope version 9".into(),
        },
        BadInput {
            label: "unknown task name",
            id: unknown.id,
            bytes: unknown.encode().expect("encode"),
            reason: "unknown task name `no.such.task`".into(),
        },
        BadInput {
            label: "undecodable arguments",
            id: bad_args.id,
            bytes: bad_args.encode().expect("encode"),
            reason: format!("undecodable arguments for `{}`", Good::NAME),
        },
    ]
}

/// Dispatches `n` good tasks to `queue` through the client.
pub async fn dispatch_good(driver: &Arc<dyn Driver>, queue: &str, n: u64) {
    let overrides = Overrides { queue: Some(queue.into()), ..Default::default() };
    Client::new(driver.clone()).dispatch_many((0..n).map(|n| Good { n }), overrides).await.expect("dispatch good tasks");
}

/// Runs a worker over `queue` until it is empty, then checks that it survived, that every good
/// task succeeded, and that every bad input is dead at attempt 1 with its reason.
pub async fn drain_and_check(driver: Arc<dyn Driver>, queue: &str, inputs: &[BadInput], good: u64) {
    let mut registry = Registry::new();
    registry.register::<Good>().expect("register");
    let worker = Worker::builder(driver.clone()).registry(registry).queues(queue).expect("queues").stop_when_empty(true);
    let run = worker.build().expect("build").start();
    let counts =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("the worker drains the queue").expect("the worker survives");
    assert_eq!((counts.succeeded, counts.dead, counts.retried), (good, inputs.len() as u64, 0), "{counts:?}");
    let mut dead = driver.dead(queue, 1000).await.expect("dead");
    let errors: Vec<String> = dead.iter().map(|d| d.error.clone()).collect();
    assert_eq!(dead.len(), inputs.len(), "{errors:?}");
    // Reasons matching the fewest records first, so a generic one ("undecodable envelope")
    // cannot take the record a specific one needs.
    let mut wanted: Vec<&BadInput> = inputs.iter().collect();
    wanted.sort_by_key(|i| errors.iter().filter(|e| e.contains(&i.reason)).count());
    for input in wanted {
        let at = dead.iter().position(|d| d.error.contains(&input.reason));
        let at = at.unwrap_or_else(|| panic!("{} dead-lettered with \"{}\"; reasons: {errors:?}", input.label, input.reason));
        let d = dead.remove(at);
        assert_eq!(d.attempt, 1, "{} dead at its first attempt", input.label);
    }
    assert_eq!(driver.stats(queue).await.expect("stats").ready, 0);
}
