#[asynctasq_core::task(max_attempts = 0)]
async fn zero_attempts(n: u64) {
    let _ = n;
}

fn main() {}
