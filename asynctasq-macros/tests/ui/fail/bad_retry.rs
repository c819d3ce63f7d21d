#[asynctasq_core::task(retry = "linear")]
async fn linear(n: u64) {
    let _ = n;
}

#[asynctasq_core::task(retry = "fixed", backoff = "5s", backoff_cap = "1m")]
async fn fixed_with_cap(n: u64) {
    let _ = n;
}

#[asynctasq_core::task(backoff = "1h", backoff_cap = "1m")]
async fn cap_below_backoff(n: u64) {
    let _ = n;
}

#[asynctasq_core::task(retry = "fixed", jitter = true)]
async fn fixed_with_jitter(n: u64) {
    let _ = n;
}

fn main() {}
