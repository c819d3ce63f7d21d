//! A unique task is dispatched through the client as any other: its key is derived from its
//! name and the fields `#[task(unique(by = ..))]` names, or given per dispatch; a duplicate
//! stores nothing, is reported with its holder, and `.await` gives the holder's id; a backend
//! without unique keys refuses it before anything is stored.

use std::sync::Arc;
use std::time::Duration;

use asynctasq_core::driver::EnqueueOutcome;
use asynctasq_core::{Capability, Client, Driver, DriverError, MemoryDriver, Overrides, UniqueMode, UniqueUntil, Uniqueness, task};

#[task(queue = "unique", unique(by = [user]))]
async fn sync_user(user: u64, reason: String) {
    let _ = (user, reason);
}

#[task(queue = "unique")]
async fn report(day: u32) {
    let _ = day;
}

async fn ready(driver: &MemoryDriver) -> u64 {
    driver.stats("unique").await.expect("stats").ready
}

#[tokio::test]
async fn a_task_unique_by_a_field_is_stored_once_per_value_of_that_field() {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    let (first, outcome) = client.dispatch(SyncUser { user: 7, reason: "signup".into() }).outcome().await.expect("dispatch");
    assert_eq!(outcome, EnqueueOutcome::New);
    let (_, again) = client.dispatch(SyncUser { user: 7, reason: "login".into() }).outcome().await.expect("dispatch");
    assert_eq!(again, EnqueueOutcome::Duplicate { existing: first }, "other fields do not make it another key");
    assert_eq!(client.dispatch(SyncUser { user: 7, reason: "x".into() }).await.expect("dispatch"), first, "`.await` gives the holder");
    let (_, other) = client.dispatch(SyncUser { user: 8, reason: "signup".into() }).outcome().await.expect("dispatch");
    assert_eq!(other, EnqueueOutcome::New, "another user is another key");
    let (_, elsewhere) =
        client.dispatch(SyncUser { user: 7, reason: "signup".into() }).queue("unique-2").outcome().await.expect("dispatch");
    assert_eq!(elsewhere, EnqueueOutcome::New, "keys are per queue");
    assert_eq!(ready(&driver).await, 2);
}

#[tokio::test]
async fn a_dispatch_makes_any_task_unique_by_a_key_it_gives() {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    let first = client.dispatch(Report { day: 1 }).unique_key("daily-report").await.expect("dispatch");
    let (_, again) = client.dispatch(Report { day: 2 }).unique_key("daily-report").outcome().await.expect("dispatch");
    assert_eq!(again, EnqueueOutcome::Duplicate { existing: first });
    client.dispatch(Report { day: 2 }).await.expect("without a key the task is plain");
    let policy = Uniqueness { until: UniqueUntil::Start, ttl: Duration::from_secs(60), mode: UniqueMode::Replace };
    let (_, replaced) = client.dispatch(Report { day: 3 }).unique_key("daily-report").unique(policy).outcome().await.expect("dispatch");
    assert_eq!(replaced, EnqueueOutcome::Duplicate { existing: first }, "the stored lock decides; the dispatch's mode acts");
    let got = driver.dequeue("unique", 10).await.expect("dequeue");
    let holder = got.iter().find(|d| d.lease.id == first).expect("the holder");
    let args: Report = rmp_serde::from_slice(&holder.envelope.as_ref().expect("decodes").payload).expect("arguments");
    assert_eq!(args.day, 3, "replaced with the last dispatch's arguments");
}

#[tokio::test]
async fn dispatch_many_gives_each_duplicate_its_holders_id() {
    let driver = Arc::new(MemoryDriver::new());
    let client = Client::new(driver.clone());
    let batch = [1, 2, 1, 3, 2].map(|user| SyncUser { user, reason: String::new() });
    let ids = client.dispatch_many(batch, Overrides::default()).await.expect("dispatch");
    assert_eq!((ids[2], ids[4]), (ids[0], ids[1]), "repeats in the batch name the first of their key");
    assert_eq!(ready(&driver).await, 3);
    let keyed = Overrides { unique_key: Some("k".into()), ..Overrides::default() };
    let err = client.dispatch_many([Report { day: 1 }], keyed).await.expect_err("a key names one task");
    assert!(matches!(err, DriverError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_unique_dispatch_is_refused_where_the_backend_keeps_no_keys() {
    let driver = Arc::new(MemoryDriver::new().lacking(&[Capability::UniqueKeys]));
    let client = Client::new(driver.clone() as Arc<dyn Driver>);
    let err = client.dispatch(SyncUser { user: 1, reason: String::new() }).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("unique task"), "{err}");
    let err = client.dispatch(Report { day: 1 }).unique_key("k").await.expect_err("refused");
    assert!(err.to_string().contains("unique task"), "{err}");
    client.dispatch(Report { day: 1 }).await.expect("a plain dispatch works");
    assert_eq!(ready(&driver).await, 1, "nothing of the refused dispatches stored");
}
