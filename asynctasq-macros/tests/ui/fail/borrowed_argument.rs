#[asynctasq_core::task]
async fn borrowed(name: &str) {
    let _ = name;
}

fn main() {}
