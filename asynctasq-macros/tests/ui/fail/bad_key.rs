#[asynctasq_core::task(key = customer)]
async fn unknown_field(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(key = "user")]
async fn not_a_name(user: u64) {
    let _ = user;
}

fn main() {}
