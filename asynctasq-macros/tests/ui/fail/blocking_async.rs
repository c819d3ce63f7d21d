#[asynctasq_core::task(blocking)]
async fn not_really_blocking(n: u64) {
    let _ = n;
}

fn main() {}
