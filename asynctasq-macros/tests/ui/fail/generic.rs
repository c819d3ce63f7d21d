#[asynctasq_core::task]
async fn generic<T: Send>(value: T) {
    let _ = value;
}

fn main() {}
