#[asynctasq_core::task]
async fn pattern((a, b): (u32, u32)) {
    let _ = (a, b);
}

fn main() {}
