#[asynctasq_core::task(timeout = "soon")]
async fn bad_duration(n: u64) {
    let _ = n;
}

fn main() {}
