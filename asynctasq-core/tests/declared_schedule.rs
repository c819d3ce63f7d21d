//! A `#[task(cron = "…")]` is run by every worker of the binary with no other setup: its
//! schedule is named after the task, and each slot runs once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asynctasq_core::{Driver, MemoryDriver, TokioClock, Worker, task};

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Runs at the top of every minute.
#[task(cron = "0 * * * * *", queue = "declared")]
async fn every_minute() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn a_declared_schedule_runs_in_every_worker_of_the_binary_each_slot_once() {
    // 2026-01-05T00:00:30Z: slots at 00:01 and 00:02 within 150 s.
    let clock = Arc::new(TokioClock::starting_at(1_767_571_230_000));
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (driver, clock) = (driver.clone(), clock.clone());
            tokio::spawn(async move {
                let worker = Worker::builder(driver).queues("declared").expect("queues").clock(clock).max_time(Duration::from_secs(150));
                worker.build().expect("worker").start().await.expect("run")
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 2, "two slots, each once, with two workers");
    let state = driver.schedules().await.expect("schedules").into_iter().find(|s| s.name == "every_minute").expect("named after the task");
    assert_eq!(state.last_slot, Some(1_767_571_320_000));
}
