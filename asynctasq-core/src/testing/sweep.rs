//! A backend's own calls delete kept results once their time to live has passed: the check
//! every backend that keeps results runs with a count of its raw storage.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{Ack, Driver};

/// The time to live the check gives its records.
pub const SWEEP_TTL: Duration = Duration::from_secs(1);

/// Acks `n` tasks of `queue` keeping each for [`SWEEP_TTL`], checks `stored` counts them, then
/// claims from an idle queue every 50 ms (what an idle worker does) until `stored` counts none:
/// they must be gone within the time to live and a second, with a second more for a loaded
/// machine. Returns how long after the ack the storage was empty.
pub async fn kept_results_are_swept_by_later_claims<F, Fut>(driver: Arc<dyn Driver>, queue: &str, n: usize, mut stored: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u64>,
{
    let sent: Vec<_> = (0..n).map(|_| super::envelope(queue, Duration::from_secs(60))).collect();
    driver.enqueue(&sent).await.expect("enqueue");
    let got = driver.dequeue(queue, n).await.expect("dequeue");
    assert_eq!(got.len(), n, "every task delivered");
    let acks: Vec<Ack> = got.into_iter().map(|d| Ack { lease: d.lease, keep: SWEEP_TTL, result: Some(vec![0x91, 0x01]) }).collect();
    // From before the ack: the record's expiry is the backend's clock at the ack, in whole
    // milliseconds, plus the time to live, so it is gone no sooner than 1 ms short of the time
    // to live after this instant (a check from after the ack returned failed once at 999 ms).
    let acked = Instant::now();
    assert!(driver.ack(&acks).await.expect("ack").is_empty());
    assert_eq!(stored().await, n as u64, "the records are stored");
    loop {
        assert!(driver.dequeue(queue, 10).await.expect("dequeue").is_empty(), "nothing is delivered again");
        if stored().await == 0 {
            let took = acked.elapsed();
            assert!(took + Duration::from_millis(1) >= SWEEP_TTL, "not before their time to live: {took:?}");
            return took;
        }
        assert!(acked.elapsed() < SWEEP_TTL * 3, "still stored {:?} after the ack (time to live {SWEEP_TTL:?})", acked.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
