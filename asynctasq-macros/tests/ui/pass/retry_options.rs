use std::time::Duration;

use asynctasq_core::{RetryPolicy, Task, task};

#[task(retry = "exponential", backoff = "30s", backoff_cap = "1h", jitter = false)]
async fn exponential(n: u64) {
    let _ = n;
}

#[task(retry = "fixed", backoff = "10s")]
async fn fixed(n: u64) {
    let _ = n;
}

#[task(backoff = "2s")]
async fn backoff_alone(n: u64) {
    let _ = n;
}

fn main() {
    assert_eq!(
        Exponential::options().retry,
        Some(RetryPolicy::Exponential { base: Duration::from_secs(30), max: Duration::from_secs(3600), jitter: false })
    );
    assert_eq!(Fixed::options().retry, Some(RetryPolicy::Fixed(Duration::from_secs(10))));
    assert_eq!(
        BackoffAlone::options().retry,
        Some(RetryPolicy::Exponential { base: Duration::from_secs(2), max: Duration::from_secs(3600), jitter: true })
    );
}
