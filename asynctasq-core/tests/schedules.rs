//! Schedules in the worker engine, on the in-memory driver and a paused tokio clock set to the
//! calendar each test needs: every slot fired once however many workers run it, missed slots
//! after downtime per the catch-up policy, and the daylight-saving matrix (a gap, a repeated
//! hour, a half-hour zone, a midnight gap) as workers meet it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use asynctasq_core::schedule::{CatchUp, Schedule};
use asynctasq_core::{Driver, MemoryDriver, TaskContext, TokioClock, Worker, task};

/// Each test's runs: the wall time (Unix ms, by the test's clock) of each, by key.
static RUNS: LazyLock<Mutex<HashMap<String, Vec<u64>>>> = LazyLock::new(Default::default);
/// Each test's calendar: its clock's wall time at the tokio instant it started.
static CALENDAR: LazyLock<Mutex<HashMap<String, (u64, tokio::time::Instant)>>> = LazyLock::new(Default::default);

/// Records when it ran, by the test's calendar.
#[task(queue = "scheduled")]
async fn tick(_ctx: TaskContext, key: String) {
    let (wall, start) = CALENDAR.lock().expect("calendar")[&key];
    let now = wall + tokio::time::Instant::now().duration_since(start).as_millis() as u64;
    RUNS.lock().expect("runs").entry(key).or_default().push(now);
}

fn at(s: &str) -> u64 {
    s.parse::<jiff::Zoned>().expect("a zoned time").timestamp().as_millisecond() as u64
}

fn runs(key: &str) -> Vec<u64> {
    RUNS.lock().expect("runs").get(key).cloned().unwrap_or_default()
}

/// A memory store on a clock at `wall`, and a test key whose calendar it is.
fn calendar(wall: u64) -> (Arc<MemoryDriver>, Arc<TokioClock>, String) {
    let key = format!("k{}", uuid::Uuid::now_v7().simple());
    CALENDAR.lock().expect("calendar").insert(key.clone(), (wall, tokio::time::Instant::now()));
    let clock = Arc::new(TokioClock::starting_at(wall));
    (Arc::new(MemoryDriver::with_clock(clock.clone())), clock, key)
}

fn schedule(name: &str, pattern: &str, key: &str) -> Schedule {
    Schedule::of(pattern, &Tick { key: key.to_owned() }).expect("schedule").renamed(name).expect("name")
}

/// A worker of `driver` running `schedules` for `run_for` of tokio time.
async fn work(driver: &Arc<MemoryDriver>, clock: &Arc<TokioClock>, schedules: Vec<Schedule>, run_for: Duration) {
    let mut builder = Worker::builder(driver.clone()).queues("scheduled").expect("queues").clock(clock.clone()).max_time(run_for);
    for s in schedules {
        builder = builder.schedule(s);
    }
    builder.build().expect("worker").start().await.expect("run");
}

#[tokio::test(start_paused = true)]
async fn every_slot_fires_once_however_many_workers_claim_it() {
    let (driver, clock, key) = calendar(at("2026-01-05T00:00:00.500Z[UTC]"));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (driver, clock, s) = (driver.clone(), clock.clone(), schedule("every-10s", "*/10 * * * * *", &key));
            tokio::spawn(async move { work(&driver, &clock, vec![s], Duration::from_secs(65)).await })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let want: Vec<u64> = (1..=6).map(|n| at("2026-01-05T00:00:00Z[UTC]") + n * 10_000).collect();
    let mut got = runs(&key);
    got.sort_unstable();
    assert_eq!(got.len(), 6, "six slots in a minute, each once: {got:?}");
    for (ran, slot) in got.iter().zip(&want) {
        assert!(*ran >= *slot && *ran - *slot < 1_000, "slot {slot} ran at {ran}: on time");
    }
    let state = driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == "every-10s").expect("kept");
    assert_eq!(state.last_slot, Some(want[5]), "the last slot claimed");
}

/// A schedule whose last slot was an hour ago (the fleet was down), started with `catch_up`:
/// the runs of its first second.
async fn after_downtime(catch_up: CatchUp) -> usize {
    let start = at("2026-01-05T10:00:30Z[UTC]");
    let (driver, clock, key) = calendar(start);
    driver.claim_slot("minutely", "scheduled", start - 3_600_030, None).await.expect("an old claim");
    let s = schedule("minutely", "* * * * *", &key).catch_up(catch_up);
    work(&driver, &clock, vec![s], Duration::from_secs(1)).await;
    runs(&key).len()
}

#[tokio::test(start_paused = true)]
async fn missed_slots_after_downtime_follow_the_catch_up_policy() {
    assert_eq!(after_downtime(CatchUp::Latest).await, 1, "latest: the most recent missed slot, once");
    assert_eq!(after_downtime(CatchUp::None).await, 0, "none: the latest slot, 30 s old, was missed too");
    assert_eq!(after_downtime(CatchUp::All(3)).await, 3, "all, up to 3: the three most recent");
}

/// The wall times at which a worker that runs from `from` for `hours` ran the `pattern`
/// schedule read in `tz`.
async fn runs_through(from: &str, hours: u64, pattern: &str, tz: &str) -> Vec<u64> {
    let (driver, clock, key) = calendar(at(from));
    let s = schedule("dst", pattern, &key).tz(tz).expect("zone");
    work(&driver, &clock, vec![s], Duration::from_secs(hours * 3600)).await;
    runs(&key)
}

/// Each run happened at its slot (within a second: the scheduler wakes at the slot).
fn ran_at(runs: &[u64], slots: &[&str]) {
    assert_eq!(runs.len(), slots.len(), "runs {runs:?} for slots {slots:?}");
    for (ran, slot) in runs.iter().zip(slots) {
        let slot_ms = at(slot);
        assert!(*ran >= slot_ms && *ran - slot_ms < 1_000, "slot {slot} ran at {ran} ({} ms late)", ran.saturating_sub(slot_ms));
    }
}

#[tokio::test(start_paused = true)]
async fn a_slot_in_a_spring_forward_gap_runs_at_the_end_of_the_gap() {
    let runs = runs_through("2026-03-29T01:00:00[Europe/Berlin]", 3, "30 2 * * *", "Europe/Berlin").await;
    ran_at(&runs, &["2026-03-29T03:00:00[Europe/Berlin]"]);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_time_slot_in_a_repeated_hour_runs_once() {
    let runs = runs_through("2026-10-25T01:00:00+02:00[Europe/Berlin]", 4, "30 2 * * *", "Europe/Berlin").await;
    ran_at(&runs, &["2026-10-25T02:30:00+02:00[Europe/Berlin]"]);
}

#[tokio::test(start_paused = true)]
async fn an_interval_runs_on_both_passes_of_a_repeated_hour() {
    let runs = runs_through("2026-10-25T01:50:00+02:00[Europe/Berlin]", 2, "*/30 * * * *", "Europe/Berlin").await;
    ran_at(
        &runs,
        &[
            "2026-10-25T02:00:00+02:00[Europe/Berlin]",
            "2026-10-25T02:30:00+02:00[Europe/Berlin]",
            "2026-10-25T02:00:00+01:00[Europe/Berlin]",
            "2026-10-25T02:30:00+01:00[Europe/Berlin]",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_hour_zone_moves_a_slot_in_its_gap_to_the_gap_end() {
    let runs = runs_through("2026-10-04T01:00:00[Australia/Lord_Howe]", 3, "15 2 * * *", "Australia/Lord_Howe").await;
    ran_at(&runs, &["2026-10-04T02:30:00[Australia/Lord_Howe]"]);
}

#[tokio::test(start_paused = true)]
async fn a_midnight_slot_on_a_day_that_starts_at_one_runs_at_one() {
    let runs = runs_through("2026-03-07T22:00:00[America/Havana]", 4, "0 0 * * *", "America/Havana").await;
    ran_at(&runs, &["2026-03-08T01:00:00[America/Havana]"]);
}

#[test]
fn a_worker_with_a_schedule_refuses_to_start_where_the_backend_cannot_claim() {
    let driver = Arc::new(MemoryDriver::new().lacking(&[asynctasq_core::Capability::ScheduleClaims]));
    let s = schedule("nightly", "0 3 * * *", "k");
    let err = Worker::builder(driver).queues("scheduled").expect("queues").schedule(s).build().expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("nightly") && text.contains("schedule claims") && text.contains("memory"), "{text}");
}
