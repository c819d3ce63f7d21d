//! Runs that look stuck: past twice their timeout, or an hour without one, a run is reported
//! once (an event and a warning) and marked in the worker's registry record, which lists what
//! the worker runs. On the in-memory driver and a paused clock.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::workers::stuck_after;
use asynctasq_core::{Client, Driver, Event, MemoryDriver, TokioClock, Worker, WorkerHandle, task};

/// Runs for `minutes`.
#[task]
async fn lingers(minutes: u64) {
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
}

#[test]
fn a_run_looks_stuck_after_twice_its_timeout_or_an_hour_without_one() {
    assert_eq!(stuck_after(Some(Duration::from_secs(90))), Duration::from_secs(180));
    assert_eq!(stuck_after(None), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_threshold_is_reported_once_and_marked_in_the_workers_record() {
    let clock = Arc::new(TokioClock::new());
    let driver = Arc::new(MemoryDriver::with_clock(clock.clone()));
    let client = Client::new(driver.clone()).with_clock(clock.clone());
    let long = client.dispatch(Lingers { minutes: 90 }).await.expect("dispatch");
    let handle = WorkerHandle::default();
    let worker = Worker::builder(driver.clone())
        .queues("default")
        .expect("queues")
        .clock(clock.clone())
        .handle(handle.clone())
        .id("stuck-test")
        .build()
        .expect("build");
    let mut events = worker.events().subscribe();
    let running = tokio::spawn(worker.start());
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    let short = client.dispatch(Lingers { minutes: 60 }).await.expect("dispatch");
    tokio::time::sleep(Duration::from_secs(30 * 60 + 10)).await;

    let record = driver.workers().await.expect("workers").into_iter().find(|w| w.id == "stuck-test").expect("registered");
    let marks: Vec<_> = record.running.iter().map(|r| (r.id, r.stuck)).collect();
    assert_eq!(marks, vec![(long, true), (short, false)], "both runs listed, oldest first; only the one past an hour is stuck");
    let mut stuck = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::TaskStuck { task, worker_id, running_for } = e {
            stuck.push((task.id, worker_id, running_for));
        }
    }
    assert_eq!(stuck.len(), 1, "reported once: {stuck:?}");
    let (id, worker_id, running_for) = &stuck[0];
    assert_eq!((id, worker_id.as_str()), (&long, "stuck-test"));
    assert!(*running_for >= Duration::from_secs(3600) && *running_for < Duration::from_secs(3600 + 10), "{running_for:?}");

    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    let record = driver.workers().await.expect("workers").into_iter().find(|w| w.id == "stuck-test").expect("registered");
    assert!(record.running.is_empty(), "finished runs are no longer listed: {:?}", record.running);
    while let Ok(e) = events.try_recv() {
        assert!(!matches!(e, Event::TaskStuck { .. }), "no second report");
    }
    handle.stop();
    running.await.expect("join").expect("run");
}
