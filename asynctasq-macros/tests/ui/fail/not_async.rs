#[asynctasq_core::task]
fn not_async(n: u64) {
    let _ = n;
}

fn main() {}
