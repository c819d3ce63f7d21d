//! Schedules across worker processes: `cron-worker` processes fire every second's slot once
//! between them, on time, and the CLI lists, pauses, resumes and runs the schedule from
//! another process; a backend that cannot claim slots makes the worker refuse to start.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asynctasq_core::Capability;
use asynctasq_core::schedule::Schedule;
use asynctasq_tests::*;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_cron-worker");

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `cron-worker <args> <backend flags>`, its JSON output.
fn cli(s: &Setup, args: &[&str]) -> Value {
    let out = Command::new(EXE).args(args).args(&s.backend_args).envs(s.backend_env.iter().map(|(k, v)| (k, v))).output().expect("run");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The schedule as the binary declares it, for the ids its slots derive.
fn every_second() -> Schedule {
    let empty = rmp_serde::to_vec_named(&std::collections::BTreeMap::<String, ()>::new()).expect("encode");
    Schedule::new("every_second", "* * * * * *", "every_second", empty).expect("schedule")
}

/// A setup on `backend` whose ledger has the `fires` table `cron-worker` writes.
async fn with_fires(dir: &std::path::Path, backend: Backend) -> Setup {
    let s = Setup::on(dir, backend).await;
    sqlx::query("CREATE TABLE fires (id TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL, at_ms INTEGER NOT NULL)")
        .execute(&s.ledger)
        .await
        .expect("ledger table");
    s
}

/// The ledger's runs: task id -> the times (Unix ms) it ran.
async fn fires(s: &Setup) -> HashMap<String, Vec<u64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, at_ms FROM fires").fetch_all(&s.ledger).await.expect("read the ledger");
    let mut fires: HashMap<String, Vec<u64>> = HashMap::new();
    for (id, at) in rows {
        fires.entry(id).or_default().push(at as u64);
    }
    fires
}

async fn slots_fire_once_across_processes(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = with_fires(dir.path(), backend).await;
    let started = now_ms();
    let mut workers: Vec<Proc> = (0..3).map(|_| s.spawn_worker(EXE, "cron", 4, &[])).collect();
    tokio::time::sleep(Duration::from_secs(6)).await;
    for w in &mut workers {
        w.sigterm();
    }
    let stopped = now_ms();
    while workers.iter_mut().any(Proc::running) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let schedule = every_second();
    let fired = fires(&s).await;
    // Slots while every worker surely ran (a second after the start, a second before the stop).
    let (from, to) = (schedule.next_after(started + 1_000).expect("slot"), stopped - 1_000);
    let mut slot = from;
    let mut late = Vec::new();
    while slot <= to {
        let id = schedule.task_id(slot).to_string();
        let runs = fired.get(&id).unwrap_or_else(|| panic!("slot {slot} was missed: {fired:?}"));
        assert_eq!(runs.len(), 1, "slot {slot} ran once: {runs:?}");
        late.push(runs[0] - slot);
        slot = schedule.next_after(slot).expect("slot");
    }
    assert!(late.len() >= 3, "slots checked: {}", late.len());
    assert!(late.iter().all(|l| *l < 1_000), "each run within a second of its slot: {late:?}");
    let slots: std::collections::HashSet<String> =
        std::iter::successors(schedule.next_after(started - 1_000), |s| schedule.next_after(*s).filter(|n| *n <= stopped + 1_000))
            .map(|s| schedule.task_id(s).to_string())
            .collect();
    assert!(fired.keys().all(|id| slots.contains(id)), "every run is a slot's task, each slot one task id");

    let listed = cli(&s, &["schedule", "list", "--json"]);
    let row = listed["schedules"].as_array().expect("rows").iter().find(|r| r["name"] == "every_second").expect("listed").clone();
    assert_eq!((row["pattern"].as_str(), row["queue"].as_str(), row["paused"].as_bool()), (Some("* * * * * *"), Some("cron"), Some(false)));
    assert!(row["last_fire"].is_string() && row["next_fire"].is_string(), "{row}");

    let out = Command::new(EXE).args(["schedule", "pause", "every_second"]).args(&s.backend_args).output().expect("pause");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(cli(&s, &["schedule", "list", "--json"])["schedules"][0]["paused"], true);
    let before = fires(&s).await.len();
    let mut paused_worker = s.spawn_worker(EXE, "cron", 4, &[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    paused_worker.sigterm();
    let waited = Instant::now();
    while paused_worker.running() && waited.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fires(&s).await.len(), before, "a paused schedule fires nothing");
    let out = Command::new(EXE).args(["schedule", "resume", "every_second"]).args(&s.backend_args).output().expect("resume");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran = cli(&s, &["schedule", "run", "every_second", "--json"]);
    assert_eq!(ran["queue"], "cron", "{ran}");
    let stats = s.driver.stats("cron").await.expect("stats");
    assert_eq!(stats.ready, 1, "the task `schedule run` dispatched waits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_fire_once_across_processes_on_sqlite() {
    slots_fire_once_across_processes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_fire_once_across_processes_on_postgres() {
    slots_fire_once_across_processes(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_fire_once_across_processes_on_redis() {
    slots_fire_once_across_processes(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_schedules_refuses_to_start_where_the_backend_cannot_claim() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::RabbitMq(shared_rabbitmq_url())).await;
    assert!(!s.driver.supports(Capability::ScheduleClaims));
    let out = s.worker(EXE, "cron", 1).stderr(std::process::Stdio::piped()).output().expect("run");
    assert!(!out.status.success(), "the worker refused to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("every_second") && err.contains("schedule claims"), "saying why: {err}");
}

/// Five `cron-worker` processes run the every-second schedule while one of them, picked at
/// random every one to three seconds, is killed with SIGKILL and started again. Every slot
/// while they ran fired once (0 missed, 0 double: a slot's task runs again only when the
/// process running it was killed, at-least-once redelivery), and on time (p99 of the first
/// run's lateness ≤ 1 s). Runs `ASYNCTASQ_SCHEDULE_CHAOS_SECS` seconds (default 15; the
/// minutes-long run is `scripts/schedule-chaos`), and prints its figures as one JSON line.
async fn schedule_chaos(backend: Backend, label: &str) {
    let secs: u64 = std::env::var("ASYNCTASQ_SCHEDULE_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let dir = tempfile::tempdir().expect("temp dir");
    let s = with_fires(dir.path(), backend).await;
    let started = now_ms();
    let mut workers: Vec<Proc> = (0..5).map(|_| s.spawn_worker(EXE, "cron", 4, &[])).collect();
    let mut killed: Vec<u32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rng = fastrand::Rng::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.u64(1_000..3_000))).await;
        let victim = rng.usize(..workers.len());
        killed.push(workers[victim].child().id());
        workers[victim].kill();
        workers[victim] = s.spawn_worker(EXE, "cron", 4, &[]);
    }
    for w in &mut workers {
        w.sigterm();
    }
    let stopped = now_ms();
    while workers.iter_mut().any(Proc::running) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, pid, at_ms FROM fires ORDER BY at_ms").fetch_all(&s.ledger).await.expect("ledger");
    let mut runs: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
    for (id, pid, at) in rows {
        runs.entry(id).or_default().push((pid as u32, at as u64));
    }
    let schedule = every_second();
    let (mut slot, to) = (schedule.next_after(started + 2_000).expect("slot"), stopped - 2_000);
    let (mut missed, mut double, mut redelivered, mut late) = (Vec::new(), Vec::new(), 0, Vec::new());
    while slot <= to {
        match runs.get(&schedule.task_id(slot).to_string()) {
            None => missed.push(slot),
            Some(r) => {
                late.push(r[0].1.saturating_sub(slot));
                if r.len() > 1 {
                    // Run again: allowed only after the process running it was killed.
                    if r[..r.len() - 1].iter().all(|(pid, _)| killed.contains(pid)) {
                        redelivered += 1;
                    } else {
                        double.push(slot);
                    }
                }
            }
        }
        slot = schedule.next_after(slot).expect("slot");
    }
    late.sort_unstable();
    let p = |q: f64| late[((late.len() as f64 - 1.0) * q).round() as usize];
    let report = serde_json::json!({
        "scenario": "schedule-chaos", "backend": label, "seconds": secs, "processes": 5, "kills": killed.len(),
        "slots": late.len() + missed.len(), "missed": missed.len(), "double": double.len(), "redelivered": redelivered,
        "late_ms_p50": p(0.5), "late_ms_p99": p(0.99), "late_ms_max": p(1.0),
    });
    println!("{report}");
    assert!(missed.is_empty(), "missed slots {missed:?}: {report}");
    assert!(double.is_empty(), "slots fired twice {double:?}: {report}");
    assert!(p(0.99) <= 1_000, "lateness p99 within a second: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_survives_kill_9_of_its_workers_on_sqlite() {
    schedule_chaos(Backend::Sqlite, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_survives_kill_9_of_its_workers_on_postgres() {
    schedule_chaos(Backend::Postgres(shared_postgres_url()), "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_survives_kill_9_of_its_workers_on_redis() {
    schedule_chaos(Backend::Redis(shared_redis_url()), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_given_on_the_command_line_runs_and_a_bad_one_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = with_fires(dir.path(), Backend::Sqlite).await;
    for (spec, says) in [
        ("flagged;61 * * * *;every_second", "61 * * * *"),
        ("flagged;* * * * *;no_such_task", "no task `no_such_task`"),
        ("flagged;* * * * *;every_second;Mars/Olympus", "Mars/Olympus"),
        ("flagged", "NAME;PATTERN;TASK"),
    ] {
        let out = s.worker(EXE, "cron", 1).args(["--schedule", spec]).stderr(std::process::Stdio::piped()).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{spec}: a usage error");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{spec}: names the problem: {err}");
    }
    let mut worker = s.spawn_worker(EXE, "cron", 2, &["--schedule", "flagged;*/2 * * * * *;every_second;Europe/Berlin"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    worker.sigterm();
    while worker.running() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = cli(&s, &["schedule", "list", "--json"]);
    let row = listed["schedules"].as_array().expect("rows").iter().find(|r| r["name"] == "flagged").expect("kept by the backend").clone();
    assert!(row["last_fire"].is_string(), "it fired: {row}");
    assert_eq!(row["declared"], false, "the binary does not declare it: {row}");
}
