#[asynctasq_core::task(retries = 3)]
async fn unknown_option(n: u64) {
    let _ = n;
}

fn main() {}
