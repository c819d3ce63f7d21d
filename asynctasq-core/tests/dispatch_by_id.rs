//! A dispatch may name its task's id: dispatching an id already stored stores nothing, says
//! so, and announces nothing; a backend that cannot tell refuses the id.

use std::sync::Arc;

use asynctasq_core::driver::EnqueueOutcome;
use asynctasq_core::{Capability, Client, Driver, DriverError, Event, Events, MemoryDriver, Overrides, TaskId, task};

#[task(queue = "by-id")]
async fn charge(order: u64) {
    let _ = order;
}

#[tokio::test]
async fn a_second_dispatch_of_one_id_is_reported_and_stores_nothing() {
    let driver = Arc::new(MemoryDriver::new());
    let events = Events::default();
    let mut seen = events.subscribe();
    let client = Client::new(driver.clone()).with_events(events);
    let id = TaskId::new();
    assert_eq!(client.dispatch(Charge { order: 1 }).id(id).outcome().await.expect("dispatch"), (id, EnqueueOutcome::New));
    assert_eq!(client.dispatch(Charge { order: 2 }).id(id).outcome().await.expect("dispatch"), (id, EnqueueOutcome::Exists));
    assert_eq!(client.dispatch(Charge { order: 3 }).id(id).await.expect("dispatch"), id, "awaiting gives the id either way");
    assert_eq!(driver.stats("by-id").await.expect("stats").ready, 1, "one task for the id");
    let got = driver.dequeue("by-id", 10).await.expect("dequeue");
    let envelope = got[0].envelope.as_ref().expect("decodes");
    assert_eq!(envelope.payload, rmp_serde::to_vec_named(&Charge { order: 1 }).expect("encode"), "the first dispatch's arguments");
    let announced: Vec<Event> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    assert_eq!(announced.len(), 1, "only the stored task is announced: {announced:?}");
}

#[tokio::test]
async fn an_id_is_refused_by_a_driver_that_cannot_tell_whether_it_is_stored() {
    let driver = Arc::new(MemoryDriver::new().lacking(&[Capability::IdempotentEnqueue]));
    let client = Client::new(driver.clone());
    let err = client.dispatch(Charge { order: 1 }).id(TaskId::new()).await.expect_err("refused");
    assert!(matches!(err, DriverError::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("task id set by the caller"), "{err}");
    client.dispatch(Charge { order: 1 }).await.expect("a dispatch without an id works");
    assert_eq!(driver.stats("by-id").await.expect("stats").ready, 1, "only the dispatch without an id stored a task");
}

#[tokio::test]
async fn dispatch_many_takes_no_id() {
    let client = Client::new(Arc::new(MemoryDriver::new()));
    let overrides = Overrides { id: Some(TaskId::new()), ..Default::default() };
    let err = client.dispatch_many([Charge { order: 1 }, Charge { order: 2 }], overrides).await.expect_err("refused");
    assert!(err.to_string().contains("names one task"), "{err}");
}
