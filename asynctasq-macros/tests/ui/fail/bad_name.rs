#[asynctasq_core::task(name = "has spaces")]
async fn bad_name(n: u64) {
    let _ = n;
}

fn main() {}
