//! Running deliveries one at a time through the engine's own executor, outside a worker's
//! fetch loop: what the test helpers' `perform` and `drain` use, so a task fails in a test
//! exactly as it would in production (decode, timeout, panic capture, retry decision, events).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::deadline::{self, Beacon};
use super::executor;
use super::shared::{Counters, Shared};
use crate::blocking::BlockingPool;
use crate::clock::Clock;
use crate::driver::{Delivery, Driver};
use crate::event::{Event, Events};
use crate::registry::Registry;
use crate::retry::RetryPolicy;

/// The executor of one worker, without its fetch loop.
pub(crate) struct Runner {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    acker: JoinHandle<()>,
    events: broadcast::Receiver<Event>,
}

impl Runner {
    /// An executor on `driver` with `registry`, settling failures by `retry`.
    pub(crate) fn new(driver: Arc<dyn Driver>, registry: Registry, retry: RetryPolicy, clock: Arc<dyn Clock>) -> Self {
        let events = Events::default();
        let receiver = events.subscribe();
        let counters = Arc::new(Counters::default());
        let (acks, ack_rx) = mpsc::channel(64);
        let limit = deadline::DEFAULT_CALL_DEADLINE;
        let acker = tokio::spawn(executor::ack_loop(driver.clone(), events.clone(), counters.clone(), ack_rx, limit, Beacon::new("ack")));
        let shared = Arc::new(Shared {
            driver,
            registry,
            retry,
            default_timeout: None,
            default_max_attempts: None,
            default_lease: None,
            keeping: crate::result::Keeping::default(),
            cancel_grace: Duration::from_secs(5),
            cancel_watch: None,
            blocking: BlockingPool::per_core(),
            events,
            counters: counters.clone(),
            acks,
            ack_credits: Arc::new(tokio::sync::Semaphore::new(64)),
            deadline: limit,
            clock,
            abandon: CancellationToken::new(),
            metrics: crate::metrics::EngineMetrics::default(),
            running: Default::default(),
        });
        Self { shared, counters, acker, events: receiver }
    }

    /// Runs `delivery` to its settlement (its ack included) and returns the events it caused.
    pub(crate) async fn run(&mut self, delivery: Delivery) -> Vec<Event> {
        executor::execute(self.shared.clone(), delivery).await;
        while self.counters.pending_acks.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut seen = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            seen.push(event);
        }
        seen
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.acker.abort();
    }
}
