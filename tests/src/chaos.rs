//! Chaos scenarios: real `ledger-worker` processes, a known set of N uniquely numbered tasks,
//! a fault, and the ledger (outside the queue) read at the end. Each scenario returns a
//! [`Report`] (tasks, lost, duplicates, tasks in flight at the faults, how long orphaned tasks
//! took to run again, the longest stall) and checks the promise: no task lost, duplicates only
//! from tasks in flight at a fault, orphans back within two leases.
//!
//! With `ASYNCTASQ_RELIABILITY_OUT` set, every report is appended to that file as one JSON
//! line; `scripts/reliability` renders them into `RELIABILITY.md`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asynctasq_core::Overrides;

use crate::proxy::{Freeze, FreezingProxy};
use crate::{Ledgered, OwnServer, Proc, Setup, eventually};

/// Milliseconds since the epoch, the clock the ledger's `at_ms` uses.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One run of a task as the ledger saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Run {
    /// The task's number.
    pub n: u64,
    /// The attempt the worker reported.
    pub attempt: i64,
    /// The worker process.
    pub pid: i64,
    /// When it started (in `started`) or completed (in `ledger`).
    pub at_ms: i64,
}

impl Run {
    fn key(&self) -> (u64, i64, i64) {
        (self.n, self.attempt, self.pid)
    }
}

/// A fault the scenario applied.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// When it was applied.
    pub at_ms: i64,
    /// The worker process it stopped (`None`: it hit every worker, e.g. a server restart).
    pub pid: Option<i64>,
    /// The most tasks it can leave unsettled, so run twice: what the workers it hit held
    /// leases on. A worker holds its running tasks (at most its concurrency) and the acks of
    /// finished ones still on their way (one batch, as many again at most while the backend
    /// is down), so [`unsettled`] per worker hit.
    pub bound: u64,
}

/// What one scenario on one backend came to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The backend's name.
    pub backend: String,
    /// Tasks dispatched.
    pub tasks: u64,
    /// Tasks never completed.
    pub lost: u64,
    /// Completions beyond the first of each task.
    pub duplicates: u64,
    /// Runs started and not completed when a fault hit (summed over faults).
    pub in_flight: u64,
    /// Duplicates the promise allows: the faults' bounds, plus the server's own races.
    pub allowed_duplicates: u64,
    /// Runs a fault cut short (they never completed).
    pub orphans: u64,
    /// The longest time from a fault until one of its orphans started again (ms).
    pub recovery_ms: Option<i64>,
    /// The longest gap between completions from the first fault to the end (ms).
    pub stall_ms: i64,
    /// The tasks' lease (ms).
    pub lease_ms: u64,
    /// How long the scenario took (s).
    pub seconds: f64,
    /// The test that ran it (`module::test`), to run it again.
    #[serde(default)]
    pub test: String,
    /// For half-open faults: the time from the fault until the worker started the first task
    /// dispatched after it (which it can only have received on a new connection), in ms.
    #[serde(default)]
    pub resumed_ms: Option<i64>,
}

impl Report {
    /// Builds the report from the ledger's runs.
    #[allow(clippy::too_many_arguments)]
    pub fn analyse(
        scenario: &str,
        backend: &str,
        tasks: u64,
        lease: Duration,
        races: u64,
        started: &[Run],
        completed: &[Run],
        faults: &[Fault],
        seconds: f64,
    ) -> Self {
        let distinct: HashSet<u64> = completed.iter().map(|r| r.n).collect();
        let completed_at: HashMap<(u64, i64, i64), i64> = completed.iter().map(|r| (r.key(), r.at_ms)).collect();
        let mut in_flight = 0;
        let mut orphans = 0;
        let mut recovery_ms: Option<i64> = None;
        for fault in faults {
            let hit = started.iter().filter(|r| r.at_ms <= fault.at_ms && fault.pid.is_none_or(|p| p == r.pid));
            for run in hit {
                let done = completed_at.get(&run.key());
                if done.is_some_and(|&at| at <= fault.at_ms) {
                    continue;
                }
                in_flight += 1;
                if done.is_some() {
                    continue;
                }
                orphans += 1;
                let again =
                    started.iter().filter(|r| r.n == run.n && r.at_ms >= fault.at_ms && r.key() != run.key()).min_by_key(|r| r.at_ms);
                if let Some(again) = again {
                    // An attempt skipped between the two runs is a delivery that never started:
                    // claimed by a worker a later fault stopped first. The task came back from
                    // that fault, so recovery counts from the last fault before it ran again.
                    let from = if again.attempt > run.attempt + 1 {
                        faults.iter().map(|f| f.at_ms).filter(|&at| at <= again.at_ms).max().unwrap_or(fault.at_ms)
                    } else {
                        fault.at_ms
                    };
                    recovery_ms = Some(recovery_ms.unwrap_or(0).max(again.at_ms - from));
                }
            }
        }
        let first_fault = faults.iter().map(|f| f.at_ms).min().unwrap_or(i64::MAX);
        let mut times: Vec<i64> = completed.iter().map(|r| r.at_ms).filter(|&t| t >= first_fault).collect();
        times.sort_unstable();
        let stall_ms = std::iter::once(first_fault).chain(times.iter().copied()).zip(times.iter()).map(|(a, b)| b - a).max().unwrap_or(0);
        Self {
            scenario: scenario.into(),
            backend: backend.into(),
            tasks,
            lost: tasks - distinct.len() as u64,
            duplicates: completed.len() as u64 - distinct.len() as u64,
            in_flight,
            allowed_duplicates: faults.iter().map(|f| f.bound).sum::<u64>() + races,
            orphans,
            recovery_ms,
            stall_ms,
            lease_ms: lease.as_millis() as u64,
            seconds,
            // Test bodies run on the test's own thread, named after the test.
            test: std::thread::current().name().unwrap_or_default().to_owned(),
            resumed_ms: None,
        }
    }

    /// Records the report (stdout, and `ASYNCTASQ_RELIABILITY_OUT` when set), then asserts the
    /// promise: nothing lost, duplicates within the allowance, orphans back within two leases.
    pub fn check(self) -> Self {
        self.record();
        assert_eq!(self.lost, 0, "no task lost: {self:?}");
        assert!(self.duplicates <= self.allowed_duplicates, "duplicates only from tasks in flight at a fault: {self:?}");
        if let Some(recovery) = self.recovery_ms {
            assert!(recovery <= 2 * self.lease_ms as i64, "orphaned tasks run again within two leases: {self:?}");
        }
        self
    }

    fn record(&self) {
        static FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let line = serde_json::to_string(self).expect("report to JSON");
        println!("reliability: {line}");
        if let Ok(path) = std::env::var("ASYNCTASQ_RELIABILITY_OUT") {
            use std::io::Write;
            let _guard = FILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open the reliability file");
            writeln!(file, "{line}").expect("append a report");
        }
    }
}

impl Setup {
    /// Every run the ledger saw start.
    pub async fn started_runs(&self) -> Vec<Run> {
        self.runs("started").await
    }

    /// Every run the ledger saw complete.
    pub async fn completed_runs(&self) -> Vec<Run> {
        self.runs("ledger").await
    }

    async fn runs(&self, table: &str) -> Vec<Run> {
        let sql = format!("SELECT n, attempt, pid, at_ms FROM {table}");
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.ledger).await.expect("read ledger");
        rows.into_iter().map(|(n, attempt, pid, at_ms)| Run { n: n as u64, attempt, pid, at_ms }).collect()
    }

    /// Whether worker `pid` has a run started and not completed.
    async fn busy(&self, pid: i64) -> bool {
        let count = |table: &str| {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE pid = ?1");
            async move { sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(pid).fetch_one(&self.ledger).await.expect("read ledger") }
        };
        count("started").await > count("ledger").await
    }

    async fn completed_count(&self) -> u64 {
        self.completions().await.len() as u64
    }
}

/// A chaos run: the setup, the worker binary and the scenario's shape.
pub struct Chaos<'a> {
    /// The backend and ledger.
    pub setup: &'a Setup,
    /// The `ledger-worker` binary.
    pub exe: &'a str,
    /// The backend's name, for the report.
    pub backend: &'a str,
    /// Duplicates the server itself may add (moto's unlocked receive), beyond the faults'.
    pub races: u64,
}

/// The most tasks one worker of `concurrency` can hold unsettled at an instant: its running
/// tasks plus the successes waiting for their ack, which the worker caps at twice its
/// concurrency (so a stuck ack holds back further claims).
pub fn unsettled(concurrency: u32) -> u64 {
    3 * u64::from(concurrency)
}

/// The queue every scenario uses (each setup has names of its own).
const QUEUE: &str = "chaos";

/// The attempts a chaos task gets. A delivery cut short by a fault is an attempt spent (the
/// contract: a crash counts), and a task can be cut short once per fault, or twice when its
/// redelivery sits claimed and not yet started in a worker that is killed too. The scenarios
/// test that no task is lost, not attempt exhaustion, so no task may run out of attempts.
const ATTEMPTS: u32 = 25;

/// Dispatch options of every chaos task.
fn overrides(lease: Duration) -> Overrides {
    Overrides { queue: Some(QUEUE.into()), lease: Some(lease), max_attempts: Some(ATTEMPTS), ..Default::default() }
}

impl Chaos<'_> {
    async fn report(&self, scenario: &str, tasks: u64, lease: Duration, faults: &[Fault], began: std::time::Instant) -> Report {
        let (started, completed) = (self.setup.started_runs().await, self.setup.completed_runs().await);
        let seconds = began.elapsed().as_secs_f64();
        Report::analyse(scenario, self.backend, tasks, lease, self.races, &started, &completed, faults, seconds)
    }

    /// Dispatches tasks `0..tasks` at once.
    async fn dispatch_all(&self, tasks: u64, sleep_ms: u64, lease: Duration) {
        self.dispatch_range(0, tasks, sleep_ms, lease).await;
    }

    /// Dispatches tasks `from..to` at once.
    async fn dispatch_range(&self, from: u64, to: u64, sleep_ms: u64, lease: Duration) {
        self.setup.client.dispatch_many((from..to).map(|n| Ledgered { n, sleep_ms }), overrides(lease)).await.expect("dispatch");
    }

    /// Dispatches tasks `from..to` in batches at `rate` tasks per second.
    async fn produce(&self, from: u64, to: u64, rate: u64, sleep_ms: u64, lease: Duration) {
        let overrides = overrides(lease);
        let batch = (rate / 10).max(1);
        let mut next = from;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while next < to {
            tick.tick().await;
            let end = (next + batch).min(to);
            self.setup.client.dispatch_many((next..end).map(|n| Ledgered { n, sleep_ms }), overrides.clone()).await.expect("dispatch");
            next = end;
        }
    }

    async fn finish(&self, tasks: u64, workers: Vec<Proc>) {
        let s = self.setup;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while s.completed_count().await < tasks {
            if tokio::time::Instant::now() >= deadline {
                panic!("timed out after 120s waiting for every task to complete: {}", self.diagnose(tasks).await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eventually(Duration::from_secs(30), "the queue to drain", || s.drained(QUEUE)).await;
        for mut w in workers {
            w.sigterm();
            assert!(w.exited_ok().await, "a surviving worker exits cleanly on SIGTERM");
        }
    }

    /// What a stuck scenario looks like: the tasks never completed, their runs, the queue's
    /// counts and its dead tasks.
    async fn diagnose(&self, tasks: u64) -> String {
        let s = self.setup;
        let done = s.completions().await;
        let missing: Vec<u64> = (0..tasks).filter(|n| !done.contains_key(n)).collect();
        let started = s.started_runs().await;
        let runs: Vec<&Run> = started.iter().filter(|r| missing.iter().take(10).any(|&n| n == r.n)).collect();
        let stats = s.driver.stats(QUEUE).await;
        let dead = s.driver.dead(QUEUE, 5).await.map(|d| d.into_iter().map(|d| (d.attempt, d.error)).collect::<Vec<_>>());
        format!(
            "{} missing (first: {:?}); their runs: {runs:?}; queue: {stats:?}; dead: {dead:?}; now {}",
            missing.len(),
            &missing[..missing.len().min(10)],
            now_ms()
        )
    }

    /// Scenario 1: two workers under a steady load; one is SIGKILLed mid-run and restarted.
    pub async fn kill_and_restart(&self, tasks: u64, rate: u64, task_ms: u64) -> Report {
        const CONCURRENCY: u32 = 4;
        let lease = Duration::from_secs(2);
        let began = std::time::Instant::now();
        let mut a = self.setup.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[]);
        let b = self.setup.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[]);
        let mut faults = Vec::new();
        let produce = self.produce(0, tasks, rate, task_ms, lease);
        let chaos = async {
            let s = self.setup;
            eventually(Duration::from_secs(60), "a fifth of the tasks to complete", || async { s.completed_count().await >= tasks / 5 })
                .await;
            let pid = i64::from(a.child().id());
            eventually(Duration::from_secs(10), "the victim to be running a task", || s.busy(pid)).await;
            faults.push(Fault { at_ms: now_ms(), pid: Some(pid), bound: unsettled(CONCURRENCY) });
            a.kill();
            self.setup.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[])
        };
        let ((), a2) = tokio::join!(produce, chaos);
        assert!(self.setup.completed_count().await < tasks, "the kill happened mid-run");
        self.finish(tasks, vec![b, a2]).await;
        let report = self.report("kill -9 one of two, restart it", tasks, lease, &faults, began).await.check();
        assert!(report.orphans > 0, "the kill cut a run short: {report:?}");
        report
    }

    /// Scenario 2: three workers under a steady load; every `every` one of them (in turn) is
    /// SIGKILLed and restarted, `kills` times.
    pub async fn repeated_kills(&self, tasks: u64, rate: u64, task_ms: u64, kills: usize, every: Duration) -> Report {
        const CONCURRENCY: u32 = 4;
        let lease = Duration::from_secs(2);
        let began = std::time::Instant::now();
        let mut workers: Vec<Proc> = (0..3).map(|_| self.setup.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[])).collect();
        let mut faults = Vec::new();
        let produce = self.produce(0, tasks, rate, task_ms, lease);
        let chaos = async {
            for k in 0..kills {
                tokio::time::sleep(every).await;
                let w = &mut workers[k % 3];
                let pid = i64::from(w.child().id());
                eventually(Duration::from_secs(10), "the victim to be running a task", || self.setup.busy(pid)).await;
                faults.push(Fault { at_ms: now_ms(), pid: Some(pid), bound: unsettled(CONCURRENCY) });
                w.kill();
                *w = self.setup.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[]);
            }
        };
        tokio::join!(produce, chaos);
        assert!(self.setup.completed_count().await < tasks, "the kills happened mid-run");
        self.finish(tasks, workers).await;
        let report = self.report(&format!("kill -9 every {every:?}, {kills} times"), tasks, lease, &faults, began).await.check();
        assert!(report.orphans >= kills as u64, "every kill cut a run short: {report:?}");
        report
    }

    /// Attempts a kill -9 loop costs: three workers (concurrency 4, `extra` flags) under a
    /// steady load of tasks allowed one attempt each; every `every` one of them (in turn) is
    /// SIGKILLed and restarted, `kills` times. A task that a killed worker held, running or
    /// still in its buffer, has spent its attempt and is dead-lettered at its next delivery.
    /// Returns how many tasks died (every other task completes).
    pub async fn dead_after_kills(&self, tasks: u64, rate: u64, task_ms: u64, kills: usize, every: Duration, extra: &[&str]) -> u64 {
        const CONCURRENCY: u32 = 4;
        let lease = Duration::from_secs(2);
        let s = self.setup;
        let mut workers: Vec<Proc> = (0..3).map(|_| s.spawn_worker(self.exe, QUEUE, CONCURRENCY, extra)).collect();
        let overrides = Overrides { max_attempts: Some(1), ..overrides(lease) };
        let produce = async {
            let batch = (rate / 10).max(1);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut next = 0;
            while next < tasks {
                tick.tick().await;
                let end = (next + batch).min(tasks);
                s.client.dispatch_many((next..end).map(|n| Ledgered { n, sleep_ms: task_ms }), overrides.clone()).await.expect("dispatch");
                next = end;
            }
        };
        let chaos = async {
            for k in 0..kills {
                tokio::time::sleep(every).await;
                let w = &mut workers[k % 3];
                let pid = i64::from(w.child().id());
                eventually(Duration::from_secs(10), "the victim to be running a task", || s.busy(pid)).await;
                w.kill();
                *w = s.spawn_worker(self.exe, QUEUE, CONCURRENCY, extra);
            }
        };
        tokio::join!(produce, chaos);
        let dead = || async { s.driver.stats(QUEUE).await.map(|st| st.dead).unwrap_or(0) };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while (s.completions().await.len() as u64) + dead().await < tasks || !s.drained(QUEUE).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for every task to complete or die: {}",
                self.diagnose(tasks).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for mut w in workers {
            w.sigterm();
            assert!(w.exited_ok().await, "a surviving worker exits cleanly on SIGTERM");
        }
        // A task can both complete and die: finished, then killed before its ack.
        let dead = dead().await;
        assert!(s.completions().await.len() as u64 + dead >= tasks, "every task completed or died, none is lost");
        dead
    }

    /// Scenarios 3 and 4: two workers drain a backlog; `fault` (a server restart, connection
    /// kills) hits once a quarter is done, `hits` times over. Both workers keep running through
    /// it; each hit may leave every running task of both workers unsettled.
    pub async fn server_fault<F, Fut>(&self, scenario: &str, tasks: u64, hits: u64, fault: F) -> Report
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        const CONCURRENCY: u32 = 4;
        let lease = Duration::from_secs(2);
        let s = self.setup;
        let began = std::time::Instant::now();
        self.dispatch_all(tasks, 20, lease).await;
        let mut workers: Vec<Proc> = (0..2).map(|_| s.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[])).collect();
        eventually(Duration::from_secs(60), "a quarter of the tasks to complete", || async { s.completed_count().await >= tasks / 4 })
            .await;
        let faults = [Fault { at_ms: now_ms(), pid: None, bound: hits * 2 * unsettled(CONCURRENCY) }];
        fault().await;
        for w in &mut workers {
            assert!(w.running(), "the workers survive the fault");
        }
        self.finish(tasks, workers).await;
        self.report(scenario, tasks, lease, &faults, began).await.check()
    }

    /// Scenario 3: the test's own server restarts (down 1.5 s) once a quarter of the tasks are
    /// done.
    pub async fn server_restart<S: OwnServer>(&self, server: &mut S, tasks: u64) -> Report {
        self.server_fault("server restart", tasks, 1, || async { server.restart(Duration::from_millis(1500)) }).await
    }

    /// Scenario 4: every client connection to the test's own server is closed three times,
    /// `gap` apart, once a quarter of the tasks are done.
    pub async fn connection_kills<S: OwnServer>(&self, server: &S, tasks: u64, gap: Duration) -> Report {
        self.server_fault("connection kill x3", tasks, 3, || async {
            let mut killed = 0;
            for _ in 0..3 {
                killed += server.kill_connections();
                tokio::time::sleep(gap).await;
            }
            assert!(killed > 0, "some connections were killed");
        })
        .await
    }

    /// Scenario 5: a deploy. The old worker runs tasks longer than its grace period and gets
    /// SIGTERM; it exits 0, its unfinished tasks are released at once (not at lease expiry) and
    /// the new worker finishes everything, none run twice.
    pub async fn graceful_deploy(&self) -> Report {
        const CONCURRENCY: u32 = 8;
        // One full set: every task is running on the old worker when it is told to stop, so
        // the released ones are next in line for the new worker.
        const TASKS: u64 = CONCURRENCY as u64;
        let s = self.setup;
        // A lease far longer than the test: only an explicit release brings tasks back in time.
        let lease = Duration::from_secs(300);
        let began = std::time::Instant::now();
        self.dispatch_all(TASKS, 2_000, lease).await;
        let mut old = s.spawn_worker(self.exe, QUEUE, CONCURRENCY, &["--shutdown-grace", "300ms"]);
        eventually(Duration::from_secs(30), "the old worker to start a full set of tasks", || async {
            s.started_runs().await.len() as u64 >= u64::from(CONCURRENCY)
        })
        .await;
        let faults = [Fault { at_ms: now_ms(), pid: Some(i64::from(old.child().id())), bound: unsettled(CONCURRENCY) }];
        old.sigterm();
        assert!(old.exited_ok().await, "the old worker exits 0 after its grace period");
        let new = s.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[]);
        self.finish(TASKS, vec![new]).await;
        let report = self.report("graceful deploy (SIGTERM, grace < task)", TASKS, lease, &faults, began).await.check();
        assert!(report.orphans > 0, "the old worker was cut short mid-task: {report:?}");
        assert_eq!(report.duplicates, 0, "released tasks were not finished twice: {report:?}");
        let back = report.recovery_ms.expect("released tasks ran again");
        assert!(back < 3_000, "released tasks ran again at once, not at lease expiry: {report:?}");
        report
    }

    /// Scenario 6: tasks three times longer than their lease, kept by heartbeats, on two
    /// workers: every task starts exactly once.
    pub async fn longer_than_lease(&self) -> Report {
        const TASKS: u64 = 12;
        const CONCURRENCY: u32 = 4;
        let s = self.setup;
        let lease = Duration::from_secs(1);
        let began = std::time::Instant::now();
        self.dispatch_all(TASKS, 3_000, lease).await;
        let workers: Vec<Proc> = (0..2).map(|_| s.spawn_worker(self.exe, QUEUE, CONCURRENCY, &[])).collect();
        self.finish(TASKS, workers).await;
        let report = self.report("task 3x its lease, heartbeats on", TASKS, lease, &[], began).await.check();
        let started = s.started_runs().await;
        assert_eq!(started.len() as u64, TASKS, "no task started twice: {started:?}");
        assert_eq!(report.duplicates, 0);
        report
    }
}

/// The promise after a half-open fault: the worker processes new tasks again within this
/// (2 × the drivers' default request timeout of 5 s, plus reconnect backoff; see the README).
pub const HALF_OPEN_RECOVERY: Duration = Duration::from_secs(15);

impl Chaos<'_> {
    /// Scenario 7: one worker reaches the backend through a proxy of the test's own
    /// (`target` is the backend's `127.0.0.1:PORT`); mid-run (`idle` false: a backlog is being
    /// worked) or while the worker is idle in its blocking wait (`idle` true), every connection
    /// the proxy carries goes half-open (`mode`), and more tasks are dispatched directly. The
    /// worker must notice on its own deadlines, open new connections and finish everything:
    /// new tasks start within [`HALF_OPEN_RECOVERY`], the tasks it held come back within two
    /// leases, nothing is lost, the worker is still running (and exits 0 on SIGTERM).
    pub async fn half_open(&self, target: &str, mode: Freeze, idle: bool) -> Report {
        const CONCURRENCY: u32 = 4;
        const BEFORE: u64 = 120;
        const AFTER: u64 = 120;
        // Two leases must cover the recovery: held tasks come back only once the worker (the
        // only one) reaches the backend again.
        let lease = Duration::from_secs(8);
        let s = self.setup;
        let proxy = FreezingProxy::start(target).await;
        let began = std::time::Instant::now();
        self.dispatch_range(0, BEFORE, 20, lease).await;
        let mut worker = s.spawn_worker_via(self.exe, QUEUE, CONCURRENCY, target, proxy.port());
        let pid = i64::from(worker.child().id());
        if idle {
            eventually(Duration::from_secs(60), "the first tasks to complete", || async { s.completed_count().await >= BEFORE }).await;
            // Long enough for the worker to be inside its blocking wait on the backend.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        } else {
            eventually(Duration::from_secs(60), "a third of the tasks to complete", || async { s.completed_count().await >= BEFORE / 3 })
                .await;
        }
        let connections = proxy.accepted();
        let fault = Fault { at_ms: now_ms(), pid: Some(pid), bound: unsettled(CONCURRENCY) };
        proxy.freeze(mode);
        self.dispatch_range(BEFORE, BEFORE + AFTER, 20, lease).await;
        eventually(HALF_OPEN_RECOVERY + lease * 2 + Duration::from_secs(30), "every task to complete after the fault", || async {
            s.completed_count().await >= BEFORE + AFTER
        })
        .await;
        assert!(worker.running(), "the worker survives its connections going half-open");
        assert!(proxy.accepted() > connections, "the worker opened new connections after the fault");
        self.finish(BEFORE + AFTER, vec![worker]).await;
        let name = format!(
            "half-open ({}, {})",
            if mode == Freeze::Both { "both ways" } else { "answers only" },
            if idle { "idle" } else { "mid-run" }
        );
        let mut report = self.report(&name, BEFORE + AFTER, lease, &[fault], began).await;
        let resumed = s.started_runs().await.iter().filter(|r| r.n >= BEFORE).map(|r| r.at_ms).min().expect("new tasks started");
        report.resumed_ms = Some(resumed - fault.at_ms);
        let report = report.check();
        assert!(
            report.resumed_ms.is_some_and(|ms| ms <= HALF_OPEN_RECOVERY.as_millis() as i64),
            "new tasks start within {HALF_OPEN_RECOVERY:?} of the fault: {report:?}"
        );
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u64, pid: i64, at_ms: i64) -> Run {
        Run { n, attempt: 1, pid, at_ms }
    }

    #[test]
    fn analysis_counts_lost_duplicates_orphans_and_recovery() {
        // Task 0 done before the kill at t=100; task 1 cut short on pid 1 and rerun by pid 2 at
        // t=900; task 2 completed by pid 1 after the kill's timestamp (in flight, not an
        // orphan) and again by pid 2; task 3 never completed.
        let started = [run(0, 1, 10), run(1, 1, 50), run(1, 2, 900), run(2, 1, 60), run(2, 2, 300), run(3, 2, 400)];
        let completed = [run(0, 1, 50), run(1, 2, 950), run(2, 1, 101), run(2, 2, 350)];
        let faults = [Fault { at_ms: 100, pid: Some(1), bound: 4 }];
        let r = Report::analyse("s", "b", 4, Duration::from_secs(1), 0, &started, &completed, &faults, 1.0);
        assert_eq!((r.lost, r.duplicates, r.in_flight, r.orphans), (1, 1, 2, 1));
        assert_eq!(r.recovery_ms, Some(800));
        assert_eq!(r.stall_ms, 600, "from t=350 to t=950");
        assert_eq!(r.allowed_duplicates, 4);
    }

    #[test]
    fn recovery_of_a_redelivery_cut_short_before_it_started_counts_from_the_later_fault() {
        // Task 0 runs as attempt 1 on pid 1, killed at t=100; attempt 2 is claimed by pid 2,
        // killed at t=1100 before it started; attempt 3 starts at t=3200 on pid 3.
        let started = [run(0, 1, 50), Run { n: 0, attempt: 3, pid: 3, at_ms: 3200 }];
        let completed = [Run { n: 0, attempt: 3, pid: 3, at_ms: 3300 }];
        let faults = [Fault { at_ms: 100, pid: Some(1), bound: 4 }, Fault { at_ms: 1100, pid: Some(2), bound: 4 }];
        let r = Report::analyse("s", "b", 1, Duration::from_secs(2), 0, &started, &completed, &faults, 1.0);
        assert_eq!(r.recovery_ms, Some(2100));
        // Attempt 2 starting at t=3200 is a plain redelivery: counted from the kill at t=100.
        let started = [run(0, 1, 50), Run { n: 0, attempt: 2, pid: 3, at_ms: 3200 }];
        let r = Report::analyse("s", "b", 1, Duration::from_secs(2), 0, &started, &completed, &faults, 1.0);
        assert_eq!(r.recovery_ms, Some(3100));
    }
}
